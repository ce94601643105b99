"""Choosing the architecture on a board: ``--arch auto`` builds the sequential engine
where no dataflow design fits, and an engine whose logic overflows is lowered to the
next smaller one (:func:`tfl2rtl.boards.build.build_graph`,
:func:`tfl2rtl.boards.fit.sequential_design`).  Apart from tests/test_boards_build.py so
that the two files' real builds run on different workers."""

import json
import re

import pytest

from conftest import TEST_MODELS, stand_in_report
from tfl2rtl.api import load
from tfl2rtl.boards.build import BOARDS
from tfl2rtl.cli import main


@pytest.mark.long  # two Yosys and two nextpnr runs: 230-280 s
def test_auto_builds_the_sequential_engine_where_no_dataflow_design_fits(tmp_path, capsys):
    """The jet MLP's dataflow design needs more DSP blocks than the iCEBreaker has even
    fully folded (the DSP estimate says so, before any synthesis); the default ``--arch
    auto`` then builds the sequential engine, saying why, in its progress and in the
    report.  The fastest engine whose
    DSP blocks fit (two serial requantizer lanes) overflows the logic cells in nextpnr,
    and the build goes on with the next smaller one (one lane), saying so."""
    out = tmp_path / "out"
    assert main(["build", str(TEST_MODELS / "jet_mlp_int8.tflite"), "--board", "icebreaker",
                 "-o", str(out), "--clock-mhz", "24"]) == 0
    err = capsys.readouterr().err
    why = (re.escape("the dataflow design does not fit (jet_mlp_int8.tflite does not fit "
                     "icebreaker: DSP overflows (") + r"(\d+)"
           + re.escape(" needed, 8 available); even fully folded it does not fit: choose a "
                       "larger board)"))
    found = re.search(rf"^tfl2rtl: {why}: building the sequential engine$", err, re.M)
    assert found and int(found[1]) > 8
    lowered = re.findall(r"^tfl2rtl: LUT overflows with the engine of (\d+) x (\d+) "
                         r"multipliers and (\d+) requantizer lanes?; trying (\d+) x (\d+) "
                         r"multipliers and (\d+) requantizer lanes?$", err, re.M)
    assert len(lowered) == 1 and int(lowered[0][2]) > int(lowered[0][5]) == 1
    # Yosys ran for the two engines only.
    assert err.count("synthesis (Yosys) ...") == 2
    report = json.loads((out / "report.json").read_text())
    assert report["architecture"] == "sequential"
    assert re.fullmatch(f"sequential engine: {why}", report["notes"][-2])
    assert report["notes"][-1].startswith("the engine did not fit with ")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schedule"]["requant_lanes"] == 1
    assert manifest["architecture"] == "sequential"
    assert report["resources"]["DSP"]["used"] <= 8 and report["meets_timing"]
    assert "(sequential engine)" in (out / "report.txt").read_text().splitlines()[0]


def test_auto_lowers_an_engine_whose_logic_overflows(monkeypatch, tmp_path):
    """The policy of the test above over a stand-in for the clocked build (the suite's
    form of it; the real tools run in the long runs): the jet MLP's dataflow design is
    dropped by the DSP estimate before any build, the first engine's logic overflows, and
    the next smaller engine is built, saying so in the progress and the report's notes."""
    from tfl2rtl.boards import build as board_build
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.fit import engine_size, sequential_design

    graph, board = load(TEST_MODELS / "jet_mlp_int8.tflite"), BOARDS["icebreaker"]
    first = sequential_design(graph, board)
    second = sequential_design(graph, board, below=first)
    built, lines = [], []

    def clocked(design, board_name, out_dir, *, notes, **kwargs):
        built.append(design)
        if len(built) == 1:
            raise DoesNotFit("jet_mlp_int8.tflite does not fit icebreaker: LUT overflows "
                             "(5686 ICESTORM_LC needed, 5280 available)", "LUT")
        return stand_in_report(board_name, design, notes)

    monkeypatch.setattr(board_build, "build_board_clocked", clocked)
    report = board_build.build_graph(graph, "icebreaker", tmp_path, progress=lines.append)
    assert [d.architecture for d in built] == ["sequential"] * 2
    assert [engine_size(d) for d in built] == [engine_size(first), engine_size(second)]
    why = re.escape("the dataflow design does not fit (jet_mlp_int8.tflite does not fit "
                    "icebreaker: DSP overflows (") + r"\d+ needed, 8 available\)"
    assert re.fullmatch(f"{why}.*: building the sequential engine", lines[0])
    assert re.fullmatch(r"LUT overflows with the engine of (\d+) x (\d+) multipliers and "
                        r"(\d+) requantizer lanes?; trying (\d+) x (\d+) multipliers and "
                        r"1 requantizer lane", lines[1])
    assert len(lines) == 2
    assert re.fullmatch(f"sequential engine: {why}.*", report.notes[-2])
    assert report.notes[-1].startswith("the engine did not fit with ")


@pytest.mark.long
def test_an_engine_with_its_weights_in_flash_builds_with_its_flash_image(tmp_path, capsys):
    """``--weights flash`` on the iCEBreaker (the small legacy uint8 MLP): the engine's
    flash pins on the board's SPI flash; beside the bitstream the flash image, which is
    the bitstream at 0 and the engine's weights at their base, and the report says so and
    how to program it."""
    from tfl2rtl.boards.fit import sequential_design

    out = tmp_path / "out"
    model = TEST_MODELS / "uint8_legacy.tflite"
    assert main(["build", str(model), "--board", "icebreaker", "-o", str(out), "--weights",
                 "flash", "--clock-mhz", "24"]) == 0
    printed = capsys.readouterr().out
    assert "wrote " + str(out) + ": tfl2rtl_icebreaker.bin, flash_icebreaker.bin" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["architecture"] == "sequential" and report["meets_timing"]
    assert report["flash_image"] == "flash_icebreaker.bin"
    assert any("`iceprog flash_icebreaker.bin`" in note for note in report["notes"])
    plan = sequential_design(load(model), BOARDS["icebreaker"], weights="flash").network_plan
    image = (out / "flash_icebreaker.bin").read_bytes()
    bitstream = (out / "tfl2rtl_icebreaker.bin").read_bytes()
    weights = plan.flash_image()
    assert image[:len(bitstream)] == bitstream
    assert set(image[len(bitstream):plan.flash_base]) == {0xFF}
    assert image[plan.flash_base:] == weights
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["flash"] == {"base": plan.flash_base, "bytes": len(weights),
                                 "image": "flash_icebreaker.bin", "image_base": 0}
    assert "(sequential engine, weights in flash)" in (out / "report.txt").read_text()


def test_smaller_sequential_engines_and_their_advice():
    """After a logic overflow a build asks for the fastest smaller engine
    (``sequential_design(below=)``): fewer requantizer lanes, or as many and fewer
    multipliers, until there is none; the overflow's advice for an engine names a
    smaller engine, not a dataflow folding.  The jet MLP's SOFTMAX gives its DSP block
    to the engine (its multiplies in logic) where that makes it faster."""
    from tfl2rtl.boards.fit import _suggest, engine_size, sequential_design

    board = BOARDS["icebreaker"]
    graph = load(TEST_MODELS / "jet_mlp_int8.tflite")
    design = sequential_design(graph, board)
    assert [t.products_in_logic for t in design.network_plan.tail] == [True]
    sizes = [engine_size(design)]
    while (smaller := sequential_design(graph, board, below=design)) is not None:
        assert engine_size(smaller) < engine_size(design)
        design = smaller
        sizes.append(engine_size(design))
    assert sizes[0][0] > 1 and sizes[-1] == (1, 1) and len(sizes) > 3
    assert _suggest(design, board, "LUT", 6000, 5280) == (
        "even the smallest engine does not fit: choose a larger board")
    bigger = sequential_design(graph, board)
    assert _suggest(bigger, board, "LUT", 6000, 5280) == (
        f"a smaller engine needs less (--max-multipliers {bigger.multipliers - 1} or fewer)")
