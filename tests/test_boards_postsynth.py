"""Post-synthesis simulation: the accelerator as Yosys maps it to iCE40 and ECP5 cells,
simulated with the cell models that ship with Yosys (and, for the ECP5 MULT18X18D and
DP16KD, tfl2rtl's own), equals the golden model."""

import re

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO, long_case
from tfl2rtl import design
from tfl2rtl.api import load
from tfl2rtl.boards.build import BOARDS
from tfl2rtl.boards.fit import dsp_estimate, sequential_design
from tfl2rtl.boards.postsynth import (
    ECP5_DP16KD,
    ECP5_MULT18X18D,
    cell_models,
    netlist_models,
    synthesize_netlist,
)
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.folding import full_fold
from tfl2rtl.sim.board_runner import simulate_netlist
from tfl2rtl.sim.runner import FLASH_DESIGN, golden_vectors
from tfl2rtl.verify import random_inputs

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
MICRO_SPEECH = ZOO / "tflite_micro" / "micro_speech_quantized.tflite"
INT16X8 = TEST_MODELS / "int16x8.tflite"
JET = TEST_MODELS / "jet_mlp_int8.tflite"
UINT8_LEGACY = TEST_MODELS / "uint8_legacy.tflite"


def _conv_chain(directory):
    """:func:`tflite_writer.conv_chain_model` with depthwise convolutions and pools, in
    ``directory``."""
    from tflite_writer import conv_chain_model

    path = directory / "conv_chain.tflite"
    path.write_bytes(conv_chain_model(depthwise=True, pools=True))
    return path


def _cell_count(text: str, cell: str) -> int:
    """How many instances of ``cell`` a netlist written by ``write_verilog`` has."""
    return len(re.findall(rf"^  {cell} ", text, re.M))


def _yosys_stat(log: str, cell: str) -> int:
    """The count of ``cell`` in the last ``stat`` of a Yosys log."""
    return int(re.findall(rf"^ +(\d+) +{cell}$", log, re.M)[-1])


@pytest.mark.parametrize("family, model, fold, vectors, cells", [
    # The serial requantizers on DSPs.
    pytest.param("ice40", HELLO_WORLD, "full", 32,
                 {"SB_MAC16": 6, "SB_RAM40_4K": None, "SB_LUT4": None}, id="ice40-hello_world"),
    # One MULT18X18D per multiplier of the fully folded model, its requantizers
    # unshared (two products each in the DSP blocks' own registers, simulated with
    # tfl2rtl's model: its accumulators have 17 and 18 bits, so the products by their
    # high bits are a negation and, for 18 bits, sums in LUTs), except the middle
    # layer's MAC product, which is in logic (as a board build plans layers beyond the
    # DSP blocks): 3 - 1 + 6 MULT18X18D.  Its memories are small enough for LUT RAM.
    # (A long run: 100 s.)
    long_case("ecp5", HELLO_WORLD, "full, unshared, products in logic", 32,
              {"MULT18X18D": 8, "TRELLIS_DPR16X4": None, "LUT4": None, "CCU2C": None,
               "TRELLIS_FF": None}, id="ecp5-hello_world-logic"),
    # Its weights, line buffer, FIFOs and exponential ROM in DP16KD block RAM (1-, 4-,
    # 9-, 18- and 36-bit ports, ROMs among them, simulated with tfl2rtl's model); the
    # planner gives both its layers serial requantizers (one MULT18X18D per lane, with
    # its own registers); its fully connected layer's 16,000 weight rows in banks of
    # 2,048 (WEIGHT_BANKS_HOOK), each read into a register of its own.  (A long run:
    # 140-160 s; the suite's ECP5 netlist is test_an_ecp5_netlist_of_an_add_reads_its_tables.)
    long_case("ecp5", MICRO_SPEECH, "auto", 2,
              {"MULT18X18D": None, "DP16KD": None, "TRELLIS_DPR16X4": None, "LUT4": None},
              id="ecp5-micro_speech"),
    # A 16x8 model (int16 streams; its float32 edges stay on the host): int16 x int8
    # products and the Int64Requantizer's chunk products (unsigned 16-bit chunks by the
    # signed reduced multiplier, a signed top chunk) in the DSP blocks.  Long runs (125 s
    # on the iCE40, 108 s on the ECP5).
    long_case("ice40", INT16X8, "auto", 4, {"SB_MAC16": None, "SB_LUT4": None},
              id="ice40-int16x8"),
    long_case("ecp5", INT16X8, "auto", 4, {"MULT18X18D": None, "LUT4": None},
              id="ecp5-int16x8"),
    # The sequential engine as the iCEBreaker builds it for a model whose weights are in
    # flash (the small legacy uint8 MLP): the flash reader's pins on the flash model,
    # the 9-bit weights' offsets, the rounding requantizer's 16x16 partial products on
    # SB_MAC16s, its SOFTMAX a stage of its own (a long run: 110-120 s).  The jet MLP's
    # engine as the iCEBreaker builds it (one serial requantizer lane, its weights in
    # block RAM; 100 s), a long run too.
    long_case("ice40", UINT8_LEGACY, "sequential, flash", 4,
              {"SB_MAC16": None, "SB_LUT4": None}, id="ice40-uint8-flash"),
    long_case("ice40", JET, "sequential", 6,
              {"SB_MAC16": None, "SB_RAM40_4K": None, "SB_LUT4": None},
              id="ice40-jet-sequential"),
    # The sequential engine of a written chain of convolutions, depthwise convolutions
    # and pools (tflite_writer.conv_chain_model) as the iCEBreaker builds it with its
    # weights in flash: the rows copied from the flash model into SPRAM at start-up, the
    # activation memory's two regions in SPRAM, the patch walks and pool in logic (a
    # long run).
    long_case("ice40", _conv_chain, "sequential, flash", 4,
              {"SB_MAC16": None, "SB_SPRAM256KA": None, "SB_LUT4": None},
              id="ice40-conv-sequential-flash"),
])
def test_netlist_equals_the_golden_model(family, model, fold, vectors, cells, tmp_path,
                                         summary):
    model = model(tmp_path) if callable(model) else model
    graph = load(model)
    flash = None
    if fold == "sequential":
        icebreaker = BOARDS["icebreaker"]
        plan = sequential_design(graph, icebreaker,
                                 below=sequential_design(graph, icebreaker))
        assert plan.architecture == "sequential"
    elif fold == "sequential, flash":
        plan = sequential_design(graph, BOARDS["icebreaker"], weights="flash")
        assert plan.weights_in_flash
        flash = (plan.network_plan.flash_image(), plan.network_plan.flash_base)
    else:  # an explicit folding keeps every layer's requantizer lanes as they are
        plan = design.plan(graph, full_fold(graph) if fold.startswith("full, unshared")
                           else fold)
    if fold.endswith("products in logic"):
        plan = design.products_in_logic(plan, [plan.network_plan.stages[1].index])
    if model == MICRO_SPEECH:
        assert all(s.serial_requantizer for s in plan.network_plan.stages
                   if s.node.op != "SOFTMAX")
    netlist = synthesize_netlist(plan.network(), family, tmp_path,
                                 **({"name": FLASH_DESIGN} if flash else {}))
    text = netlist.read_text()
    log = (tmp_path / "yosys.log").read_text()
    for cell, count in cells.items():
        assert _cell_count(text, cell) == _yosys_stat(log, cell) > 0, cell
        if count is not None:
            assert _cell_count(text, cell) == count, cell
    # (the hardware's graph: a model's float32 edges are the host's)
    x = np.stack([s[0].reshape(-1) for s in random_inputs(plan.graph, vectors, seed=4)])
    expected = golden_vectors(plan.graph, x)
    runs = simulate_netlist(netlist, netlist_models(family, tmp_path / "models"), lanes=1,
                            in_size=x.shape[1], out_size=expected.shape[1], inputs=x,
                            expected=expected, build_dir=tmp_path / "sim",
                            interval=plan.initiation_interval,
                            flash=flash)  # raises on a difference
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
    counted = ", ".join(f"{_cell_count(text, cell)} {cell}" for cell in cells)
    summary(f"{family} netlist of {model.stem} ({counted}): {vectors} inputs in "
            f"{len(runs)} runs equal to the golden model")
    if family == "ecp5" and model == HELLO_WORLD:
        # The negative control: the same netlist with a MULT18X18D model that misses
        # its A0 port (reads bit 0 of A as 0) computes wrong outputs.  (A wrong sign
        # mode does not show here: it changes only P[35:18], and the int8 products and
        # the requantizers' partial products of this model never depend on those bits.)
        source = ECP5_MULT18X18D.read_text()
        wrong = tmp_path / "wrong_mult18x18d.v"
        wrong.write_text(source.replace("A2, A1, A0};", "A2, A1, 1'b0};"))
        assert wrong.read_text() != source
        with pytest.raises(Tfl2RtlError, match="outputs differ from the golden model"):
            simulate_netlist(netlist, [*netlist_models(family, tmp_path / "models")[:-2], wrong,
                                       ECP5_DP16KD], lanes=1, in_size=1,
                             out_size=1, inputs=x, expected=expected,
                             build_dir=tmp_path / "wrong", interval=plan.initiation_interval)


def test_an_ecp5_netlist_of_an_add_reads_its_tables(tmp_path, summary):
    """A written ADD at two lanes (its second input the TANH of the first, a table: another
    scale and zero point) as Yosys maps it to the ECP5: each input's scaling read from a
    256-entry table in DP16KD block RAM (simulated with tfl2rtl's model), the output
    requantizer's partial products in MULT18X18D; equal to the golden model on every
    int8 input."""
    from tflite_writer import GraphWriter

    g = GraphWriter()
    x = g.tensor((1, 2, 4, 16), "int8", 0.05, 3)
    y = g.add(x, g.elementwise("TANH", x, (1 / 128, 0)), (0.07, 5))
    path = tmp_path / "add.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = load(path)
    add = next(i for i, node in enumerate(graph.nodes) if node.op == "ADD")
    plan = design.plan(graph, {add: (2, 1)})
    netlist = synthesize_netlist(plan.network(), "ecp5", tmp_path)
    text = netlist.read_text()
    log = (tmp_path / "yosys.log").read_text()
    assert _cell_count(text, "DP16KD") == _yosys_stat(log, "DP16KD") == 2 * 2
    # the output requantizer's four partial products a lane, as a board build estimates
    mult18 = _cell_count(text, "MULT18X18D")
    assert mult18 == dsp_estimate(plan, BOARDS["ulx3s-85f"]) == 2 * 4
    # Every int8 value of the first input in both lanes (an even and an odd position).
    x = np.stack([np.roll(np.arange(-128, 128, dtype=np.int8), shift)[:128]
                  for shift in (0, 128, 1, 129)])
    for lane in (0, 1):
        assert set(x[:, lane::2].reshape(-1)) == set(range(-128, 128))
    expected = golden_vectors(plan.graph, x)
    runs = simulate_netlist(netlist, netlist_models("ecp5", tmp_path / "models"), lanes=1,
                            in_size=x.shape[1], out_size=expected.shape[1], inputs=x,
                            expected=expected, build_dir=tmp_path / "sim",
                            interval=plan.initiation_interval)  # raises on a difference
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
    summary(f"ecp5 netlist of a written ADD (4 DP16KD tables, {mult18} MULT18X18D): "
            f"{len(x)} inputs in {len(runs)} runs equal to the golden model")


def test_unknown_family():
    with pytest.raises(Tfl2RtlError, match="unknown family 'gowin'; choose one of: ice40, ecp5"):
        cell_models("gowin")
