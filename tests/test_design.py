"""generate: deterministic files, a manifest that matches the design, clean failures."""

import json
import subprocess
import sys

import numpy as np
import pytest

import tfl2rtl
from tfl2rtl.folding import Fold


@pytest.fixture(scope="module")
def hello(zoo):
    return tfl2rtl.load(zoo / "tflite_micro" / "hello_world_int8.tflite")


def test_files_and_manifest(hello, tmp_path):
    design = tfl2rtl.generate(hello, tmp_path / "out", fold={0: Fold(1, 1), 1: Fold(4, 8),
                                                               2: Fold(1, 16)})
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["multipliers"] == 1 + 32 + 16 == design.multipliers
    assert [(layer["pe"], layer["simd"]) for layer in manifest["layers"]] == [
        (1, 1), (4, 8), (1, 16)]
    assert manifest["initiation_interval"] == design.initiation_interval == max(
        layer["cycles_per_vector"] for layer in manifest["layers"])
    assert manifest["ideal_cycles"] == round(hello.macs / design.multipliers, 3)
    top = (tmp_path / "out" / "tfl2rtl_top.v").read_text()
    for port in manifest["ports"]:
        assert port in top
    for layer, node in zip(manifest["layers"], hello.nodes, strict=True):
        lines = (tmp_path / "out" / layer["weights"]).read_text().split()
        weights = np.array([int(v, 16) for v in lines], np.uint8).view(np.int8)
        np.testing.assert_array_equal(weights, node.weights.reshape(-1))
        bias_lines = (tmp_path / "out" / layer["bias"]).read_text().split()
        bits = 4 * len(bias_lines[0])
        bias = [int(v, 16) - (1 << bits) * (int(v, 16) >> (bits - 1)) for v in bias_lines]
        np.testing.assert_array_equal(bias, node.folded_bias)


def test_byte_identical_in_two_processes(zoo, tmp_path):
    model = zoo / "mlperf_tiny" / "ad01_int8.tflite"
    script = ("import sys, tfl2rtl; tfl2rtl.generate(sys.argv[1], sys.argv[2], "
              "max_multipliers=32)")
    for out in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(model), str(tmp_path / out)],
                       check=True)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    assert len(files) == 3 + 2 * 10  # the Verilog, the manifest, tfl2rtl's output marker
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_unbuildable_model_leaves_output_untouched(tmp_path):
    from tfl2rtl.output import MARKER, staged_directory

    out = tmp_path / "out"
    with staged_directory(out) as tmp:  # an earlier output, which generate may replace
        (tmp / "keep.txt").write_text("previous")
    from tflite_writer import GraphWriter

    g = GraphWriter()  # a MEAN over the channels after a convolution: no hardware
    x = g.tensor((1, 4, 4, 2), "int8", 0.05, 1)
    h = g.conv_2d(x, np.arange(-3, 3).reshape(3, 1, 1, 2), 0.01, None, (0.05, -2))
    model = tmp_path / "mean.tflite"
    model.write_bytes(g.finish([x], [g.mean(h, (3,), (0.05, -2))]))
    graph = tfl2rtl.load(model)
    with pytest.raises(tfl2rtl.Tfl2RtlError, match=r"^node 1 \(MEAN\): MEAN over axes "
                       r"\(3,\) of a 4-D tensor has no hardware"):
        tfl2rtl.generate(graph, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mean.tflite", "out"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"]
    assert (out / "keep.txt").read_text() == "previous"


def test_layers_with_time_to_spare_get_serial_requantizers():
    """share_requantizers gives each requantizing layer the form with the fewest
    requantizer multipliers that keeps the interval: on ad01 (ten FULLY_CONNECTED
    layers) at the ULX3S's budget some layers take serial products, the interval is
    the unshared plan's, and the DSP estimate is lower by what the forms save (its
    multipliers are all q31: four partial products a parallel lane, two of them in LUTs
    for its layers of narrow accumulators)."""
    from amaranth.hdl import Fragment

    from conftest import ZOO
    from tfl2rtl import design
    from tfl2rtl.api import load
    from tfl2rtl.boards.board import board_named
    from tfl2rtl.boards.fit import dsp_estimate, mac_dsps
    from tfl2rtl.hw.requant import lane_multipliers

    graph = load(ZOO / "mlperf_tiny" / "ad01_int8.tflite")
    shared = design.plan(graph, "auto", 96)
    unshared = design.plan(graph, dict(shared.fold))  # explicit: lanes as folded
    assert shared.initiation_interval == unshared.initiation_interval
    serial = [s for s in shared.network_plan.stages if s.serial_requantizer]
    assert serial and not any(s.serial_requantizer for s in unshared.network_plan.stages)
    layers = {entry["node"]: entry for entry in shared.layers()}
    assert {k for k, entry in layers.items() if entry.get("serial_requantizer")} \
        == {s.index for s in serial}
    saved = 0
    for s, u in zip(shared.network_plan.stages, unshared.network_plan.stages, strict=True):
        built = s.build()
        # Elaborated, so that its parts do not warn as unused when garbage collected (in
        # whichever test runs then).
        Fragment.get(built, None)
        requant = getattr(built, "dense", built).requant
        assert requant.serial_products == s.serial_requantizer
        assert built.cycles_per_vector == s.cycles_per_vector <= shared.initiation_interval
        node = s.node
        products = lane_multipliers(node.requant.multiplier, node.requant.shift,
                                    node.acc_bits)
        assert requant.multipliers == s.out_lanes * (1 if s.serial_requantizer else products)
        saved += u.out_lanes * products - requant.multipliers
    board = board_named("ulx3s-85f")
    assert mac_dsps(shared, board) == mac_dsps(unshared, board)
    assert dsp_estimate(unshared, board) - dsp_estimate(shared, board) == saved > 0


def test_layers_with_time_on_the_ice40_get_compact_requantizers_or_serial_ones():
    """On the iCE40 (requantizers with serial products) the layers of micro_speech whose
    outputs come at most every COMPACT_REQUANT_INTERVAL cycles a lane get compact
    requantizers; ``without_compact_requantizers`` makes them serial at the same lanes:
    the same multipliers and DSP blocks, no more cycles, and the built requantizers
    say which form they are."""
    from amaranth.hdl import Fragment

    from conftest import ZOO
    from tfl2rtl import design
    from tfl2rtl.api import load
    from tfl2rtl.boards.board import board_named
    from tfl2rtl.boards.fit import dsp_estimate

    board = board_named("icebreaker")
    graph = load(ZOO / "tflite_micro" / "micro_speech_quantized.tflite")
    compact = design.plan(graph, "auto", 8, requant_interval=board.requant_interval)
    serial = design.without_compact_requantizers(compact)
    compacted = {s.index for s in compact.network_plan.stages if s.compact_requantizer}
    assert compacted and not any(s.compact_requantizer for s in serial.network_plan.stages)
    layers = {entry["node"]: entry for entry in compact.layers()}
    assert {k for k, entry in layers.items() if entry.get("compact_requantizer")} == compacted
    assert serial.multipliers == compact.multipliers
    assert dsp_estimate(serial, board) == dsp_estimate(compact, board)
    assert serial.initiation_interval <= compact.initiation_interval
    for c, s in zip(compact.network_plan.stages, serial.network_plan.stages, strict=True):
        assert (c.fold, c.requant_lanes) == (s.fold, s.requant_lanes)
        assert s.serial_requantizer == (c.serial_requantizer or c.index in compacted)
        if c.index in compacted:
            for plan, form in ((c, "compact"), (s, "serial_products")):
                built = plan.build()
                Fragment.get(built, None)
                assert getattr(built.requant, form)
