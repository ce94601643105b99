"""The whole board top (UART, host link, accelerator) in Verilator, with the host
driver's own protocol code on the serial line (tfl2rtl.sim.board_runner)."""

import dataclasses

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO, long_case, long_cases
from tfl2rtl import design
from tfl2rtl.api import load
from tfl2rtl.boards.link import BoardTop
from tfl2rtl.boards.protocol import Identity
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.stages import SERIAL_REQUANT_INTERVAL
from tfl2rtl.sim import board_runner
from tfl2rtl.sim.board_runner import BAD_FRAMES, simulate_board
from tfl2rtl.sim.runner import golden_vectors
from tfl2rtl.verify import random_inputs

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
MLP = TEST_MODELS / "mlp_uint8.tflite"


def board_top(path, fold="auto", lanes=1):
    graph = load(path)
    plan = design.plan(graph, fold, lanes=lanes)
    top = BoardTop(plan.network(), Identity.of_graph(graph, lanes), divisor=4,
                   timeout_bytes=8)
    return graph, top


def vectors(graph, count):
    return np.stack([s[0].reshape(-1) for s in random_inputs(graph, count, seed=1)])


@pytest.mark.parametrize("path, lanes, count", [
    pytest.param(HELLO_WORLD, 1, 6, id="hello_world"),
    long_case(MLP, 2, 2, id="mlp_uint8_2_lanes"),
    long_case(TEST_MODELS / "mlp_int16x8.tflite", 2, 2, id="mlp_int16x8_2_lanes")])
def test_host_driver_talks_to_the_simulated_board(path, lanes, count, tmp_path):
    graph, top = board_top(path, lanes=lanes)
    x = vectors(graph, count)
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path)  # raises on any difference
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.identity == top.identity
    assert run.errors == {name: name for name in BAD_FRAMES}
    assert run.mismatches == 0


def test_the_sequential_engine_as_the_icebreaker_build_plans_it(tmp_path):
    """The jet MLP's sequential engine for the iCEBreaker (the fastest whose DSP
    estimate fits: serial requantizer lanes, SOFTMAX behind it with its multiplies in
    logic, which gives its DSP block to the requantizer) behind the UART link: the host
    driver and every bad frame, unchanged."""
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import dsp_estimate, sequential_design

    graph = load(TEST_MODELS / "jet_mlp_int8.tflite")
    board = BOARDS["icebreaker"]
    plan = sequential_design(graph, board)
    assert plan.architecture == "sequential"
    assert dsp_estimate(plan, board) <= board.available["DSP"]
    assert plan.network_plan.schedule.requant_interval > 1
    assert [t.products_in_logic for t in plan.network_plan.tail] == [True]
    top = BoardTop(plan.network(), Identity.of_design(plan), divisor=4, timeout_bytes=8)
    x = vectors(graph, 4)
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path)
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.errors == {name: name for name in BAD_FRAMES}


def test_weights_in_flash_through_the_host_driver(tmp_path):
    """The small legacy uint8 MLP as the iCEBreaker builds an engine whose weights are
    in flash (``--weights flash``): the board top reads them from the flash model, and
    the host driver, its identity and every bad frame are unchanged."""
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import sequential_design

    graph = load(TEST_MODELS / "uint8_legacy.tflite")
    plan = sequential_design(graph, BOARDS["icebreaker"], weights="flash")
    assert plan.weights_in_flash
    top = BoardTop(plan.network(), Identity.of_design(plan), divisor=4, timeout_bytes=8)
    assert top.flash
    x = vectors(graph, 3)
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path)
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.identity == top.identity
    assert (run.identity.architecture, run.identity.weights) == ("sequential", "flash")
    assert run.errors == {name: name for name in BAD_FRAMES}


def test_a_wrong_expectation_is_reported(tmp_path):
    graph, top = board_top(HELLO_WORLD, fold="full")
    x = vectors(graph, 2)
    expected = golden_vectors(graph, x)
    wrong = expected.copy()
    wrong[1, 0] += 1
    run = simulate_board(top, x, wrong, tmp_path, bad_frames=False, check=False)
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.mismatches == 1 and run.errors == {}
    with pytest.raises(Tfl2RtlError, match="1 outputs through the UART differ from the "
                                           "golden model; the first is element 0 of "
                                           "vector 1"):
        board_runner._check(run, top.identity, wrong, bad_frames=False)


def run_with_loading(plan, model, tmp_path, *, count, divisor, family):
    """``plan``'s board top in Verilator (elaborated for ``family``'s hooks): the driver
    is refused with NOT_LOADED, loads the weights, and ``count`` inferences equal the
    golden model's.  Returns the run."""
    graph = plan.graph
    top = BoardTop(plan.network(), Identity.of_design(plan), divisor=divisor,
                   timeout_bytes=8)
    x = vectors(graph, count)
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path, bad_frames=False, model=model,
                         family=family)
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.before_loading == "NOT_LOADED"
    return run


@pytest.mark.parametrize("family", [
    long_case(None, id="rtl"), pytest.param("ice40", id="ice40_spram"),
    long_case("ecp5", id="ecp5_registered_dsp")])
def test_the_driver_loads_the_weights_of_a_design_that_asks_for_them(family, tmp_path):
    """hello_world with every weight memory loadable: the first inference is refused,
    ``Client.load_weights`` fills the memories over the UART, and then every output
    equals the golden model's.  Once with inferred memories, once elaborated for the
    iCE40, where the memories are ``SB_SPRAM256KA`` blocks (Yosys' cell model) and the
    requantizers serial, once for the ECP5, where every pipelined product is a
    ``MULT18X18D`` with its own registers (tfl2rtl's cell model)."""
    graph = load(HELLO_WORLD)
    plan = design.plan(graph, {0: (4, 1), 1: (4, 2), 2: (1, 4)})
    plan = dataclasses.replace(plan, network_plan=plan.network_plan.with_loadable(
        [s.index for s in plan.network_plan.stages if s.stage.loadable]))
    identity = Identity.of_design(plan)
    assert [m.node for m in identity.memories] == [0, 1, 2]
    run = run_with_loading(plan, HELLO_WORLD, tmp_path, count=4, divisor=4, family=family)
    source = (tmp_path / "board_top.v").read_text()
    if family == "ice40":  # 32-, 64- and 32-bit rows: 2 + 4 + 2 blocks
        assert source.count("SB_SPRAM256KA ") == 8
    if family == "ecp5":  # the 16 MAC products, and the requantizers' partial products
        assert source.count("MULT18X18D ") > 16
        assert source.count("MULT18X18D ") == source.count('.REG_OUTPUT_CLK("CLK0")')
    assert run.weights_loaded == sum(m.rows * m.row_bytes for m in identity.memories) == 288


@pytest.mark.long  # 50 s; the one-bank SPRAM case runs in the suite
def test_weights_in_two_spram_banks(tmp_path):
    """conv_int8 folded to one multiplier per layer, as on the iCEBreaker: its
    FULLY_CONNECTED weights are 20,280 one-byte rows, more than one SPRAM block holds, so
    they span two banks of ``SB_SPRAM256KA`` (Yosys' model); the driver loads them over
    the UART and the outputs equal the golden model's.  (A slower UART than the other
    tests': the layer takes its input more slowly than 4 cycles per bit bring it.)"""
    from tfl2rtl.boards.spram import spram_tiles

    model = TEST_MODELS / "conv_int8.tflite"
    graph = load(model)
    plan = design.plan(graph, "full", requant_interval=SERIAL_REQUANT_INTERVAL)
    plan = dataclasses.replace(plan, network_plan=plan.network_plan.with_loadable([3]))
    identity = Identity.of_design(plan)
    (memory,) = identity.memories
    assert memory.rows == 20280 and spram_tiles(8 * memory.row_bytes, memory.rows) == 2
    run = run_with_loading(plan, model, tmp_path, count=2, divisor=32, family="ice40")
    assert run.weights_loaded == 20280
    verilog = (tmp_path / "board_top.v").read_text()
    assert verilog.count("SB_SPRAM256KA ") == 2


def test_micro_speech_as_the_icebreaker_build_plans_it(tmp_path):
    """micro_speech planned as ``tfl2rtl build --board icebreaker`` plans it: the
    default budget, serial requantizers, its depthwise layer on fewer multipliers than
    its depth multiplier (products in logic), the FULLY_CONNECTED weights in SPRAM, and
    the softmax.  Elaborated for the iCE40 with Yosys' cell models; the driver loads the
    weights, and two inferences equal the golden model's.  (A UART slower than 4 cycles
    a bit: the depthwise layer takes an input row more slowly than that brings one.)"""
    from tfl2rtl.boards.build import BOARDS, fitting_budget, place_weights

    model = ZOO / "tflite_micro" / "micro_speech_quantized.tflite"
    graph = load(model)
    icebreaker = BOARDS["icebreaker"]
    budget = fitting_budget(graph, icebreaker, requant_interval=SERIAL_REQUANT_INTERVAL)
    plan = place_weights(design.plan(graph, "auto", budget,
                                     requant_interval=SERIAL_REQUANT_INTERVAL), icebreaker)
    depthwise = plan.network_plan.stages[0]
    assert depthwise.fold.pe < depthwise.node.depth_multiplier
    assert [m.node for m in Identity.of_design(plan).memories] == [2]
    run = run_with_loading(plan, model, tmp_path, count=2, divisor=16, family="ice40")
    assert run.weights_loaded == 16000
    assert (tmp_path / "board_top.v").read_text().count("SB_SPRAM256KA ") == 1


#: Per family: the oscillator, a baud rate it divides exactly (the host's UART runs on
#: it) and a PLL clock (on the iCE40 one whose UART divisor has a fraction: 10.5 cycles a
#: bit).
PLL_BOARDS = {"ice40": (12e6, 3_000_000, 31.5e6), "ecp5": (25e6, 3_125_000, 50e6),
              "gowin": (27e6, 3_000_000, 60e6)}


@pytest.mark.parametrize("family", long_cases(sorted(PLL_BOARDS), {"ice40", "gowin"}))
def test_the_board_design_on_its_pll_model(family, tmp_path):
    """The board design as a build makes it (PLL on the oscillator, lock-gated reset, the
    UART divisor at the PLL's clock, or on the ECP5 the UART on the oscillator's clock
    behind asynchronous FIFOs) with our model of the family's PLL primitive, and the
    host's UART on the oscillator: the driver's inferences equal the golden model's and
    bad frames get their errors."""
    from tfl2rtl.boards.build import BOARDS, uart_divisor
    from tfl2rtl.boards.clocks import choose_pll

    oscillator, baud, limit = PLL_BOARDS[family]
    board = next(board for board in BOARDS.values() if board.family == family)
    assert board.reclock == (family == "ecp5")
    clock = choose_pll(family, oscillator, limit, None if board.reclock else baud)
    assert clock.output_hz == limit
    graph = load(HELLO_WORLD)
    plan = design.plan(graph, "auto")
    top = BoardTop(plan.network(), Identity.of_graph(graph, 1),
                   divisor=uart_divisor(board, clock, baud), timeout_bytes=8,
                   uart_domain="uart" if board.reclock else None)
    x = vectors(graph, 4)
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path, clock=clock,
                         host_divisor=round(oscillator / baud))
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.errors == {name: name for name in BAD_FRAMES} and run.mismatches == 0


@pytest.mark.parametrize("name", ["mlp_float_io.tflite", long_case("cnn_float_io.tflite"),
                                  long_case("nchw_float_io.tflite")])
def test_float_edges_through_the_host_driver(name, tmp_path):
    """A model with float32 edges: the board streams int8 (its identity says so), and
    the host driver path `tfl2rtl infer` takes (tfl2rtl.edges.HostEdges.infer: the
    model's own QUANTIZE and, for the NCHW model, TRANSPOSE, the driver, its DEQUANTIZE)
    gives the golden model's float32 outputs bit for bit, also after each bad frame;
    an output one float32 step off is a mismatch."""
    path = TEST_MODELS / name
    graph = load(path)
    plan = design.plan(graph, "auto")
    top = BoardTop(plan.network(), Identity.of_design(plan), divisor=4, timeout_bytes=8)
    assert (top.identity.input.dtype, top.identity.output.dtype) == ("int8", "int8")
    x = vectors(graph, 3)
    assert x.dtype == np.float32
    expected = golden_vectors(graph, x)
    assert expected.dtype == np.float32
    run = simulate_board(top, x, expected, tmp_path, model=path)
    assert run.outputs.dtype == np.float32
    np.testing.assert_array_equal(run.outputs.view(np.uint32), expected.view(np.uint32))
    assert run.errors == {name: name for name in BAD_FRAMES} and run.mismatches == 0
    wrong = expected.copy()
    wrong[2, 1] = np.nextafter(wrong[2, 1], np.float32(np.inf))
    with pytest.raises(Tfl2RtlError, match="1 outputs through the UART differ"):
        board_runner._check(dataclasses.replace(run, mismatches=1), top.identity, wrong,
                            bad_frames=True)
