"""Board builds with the real open toolchain, and the board verbs of the command line
(build, infer, bench)."""

import dataclasses
import json
import re
import types

import pytest

from conftest import TEST_MODELS, ZOO, stand_in_report
from tfl2rtl.api import generate, load
from tfl2rtl.boards.build import BOARDS, DEFAULT_BAUD, FMAX_SOURCES, NAME, board_clock
from tfl2rtl.boards.report import PARTS, logic_by_part
from tfl2rtl.cli import main
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.stages import SERIAL_REQUANT_INTERVAL
from tfl2rtl.report import format_schedule

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
VWW = ZOO / "mlperf_tiny" / "vww_96_int8.tflite"
AD01 = ZOO / "mlperf_tiny" / "ad01_int8.tflite"
MICRO_SPEECH = ZOO / "tflite_micro" / "micro_speech_quantized.tflite"


def test_icebreaker_bitstream_and_report(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(HELLO_WORLD), "--board", "icebreaker", "-o", str(out),
                 "--fold", "full", "--clock-mhz", "24.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    resources = report["resources"]
    assert resources["DSP"] == {"used": 6, "available": 8}  # 3 MACs, 3 serial requantizers
    assert 0 < resources["LUT"]["used"] < resources["LUT"]["available"] == 5280
    assert 0 < resources["BRAM"]["used"] <= 30
    # The fastest PLL clock at or below 24.5 MHz: 12 MHz * 65 / 32 (3 Mbaud at 8 1/8
    # cycles a bit).
    expected = board_clock(BOARDS["icebreaker"], 24.5, DEFAULT_BAUD)
    assert expected.parameters == {"DIVR": 0, "DIVF": 64, "DIVQ": 5, "FILTER_RANGE": 1}
    assert report["clock_mhz"] == 24.375 and report["fmax_mhz"] > 24.375
    assert report["meets_timing"]
    assert report["clock"].startswith(expected.describe() + "; --clock-mhz 24.5")
    # The 16x16 layer on one multiplier: 16 neurons of 16 cycles, the serial requantizer's
    # 5-cycle windows overlapping with them behind the register slice (the plan the board
    # flow makes, which tests/test_sim_random.py checks against the hardware).
    plan = generate(HELLO_WORLD, fold="full", requant_interval=SERIAL_REQUANT_INTERVAL)
    assert report["cycles_per_inference"] == plan.initiation_interval == 16 * 16
    assert report["inferences_per_second"] == pytest.approx(
        24.375e6 / plan.initiation_interval, rel=1e-3)
    assert report["baud"] == 3_000_000
    # Of the 6 DSP blocks, the 3 MAC multipliers multiply activations by weights; the
    # ceiling is every one of the 8 doing a MAC each cycle.
    graph = load(HELLO_WORLD)
    assert (report["macs"], report["mac_dsps"]) == (graph.macs, 3)
    assert report["mac_dsp_share"] == pytest.approx(3 / 6, abs=1e-4)
    assert report["dsp_ceiling_share"] == pytest.approx(
        graph.macs * report["inferences_per_second"] / (8 * 24.375e6), rel=1e-3)
    # The LUTs Yosys mapped, by part: each part has some, and each takes a logic cell.
    parts = report["logic_by_part"]
    assert list(parts) == list(PARTS) and all(parts.values())
    assert sum(parts.values()) <= resources["LUT"]["used"]
    assert "LUTs by part (Yosys, before packing): accelerator " in (
        out / "report.txt").read_text()
    bitstream = out / "tfl2rtl_icebreaker.bin"
    assert bitstream.stat().st_size > 100_000  # an UP5K image is about 104 kB
    assert json.loads((out / "report.json").read_text())["board"] == "icebreaker"
    assert "Fmax" in (out / "report.txt").read_text()
    assert "DSP blocks multiplying activations by weights: 3 of 6 used (50%)" in (
        out / "report.txt").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["board"]["uart_divisor"] == 8.125  # 24.375 MHz / 3 Mbaud
    assert manifest["board"]["uart_clock_mhz"] == 24.375  # the UART on the PLL's clock
    assert manifest["board"]["pll"]["DIVF"] == 64
    assert manifest["board"]["clock_mhz"] == 24.375
    assert (out / "logs" / "yosys.log").exists()


@pytest.mark.long  # two builds, 100-115 s; the stand-in tests below check the policy
def test_the_build_finds_the_clock_the_routed_design_meets(tmp_path, capsys, monkeypatch):
    """Without --clock-mhz the first build aims at the board's estimate (here raised to
    60 MHz, far above what hello_world's design reaches on the UP5K, so that it misses
    whatever the placement), then builds again below the Fmax reached (nextpnr's, or the
    lower bound of the SB_MAC16 and block RAM timing) and steps up while a met build's
    Fmax clears a faster clock; the bitstream runs at a PLL clock it meets.  (Two
    builds at most here, of the fully folded design, for the suite's time: what the
    step up does is the next test's.)"""
    import re

    from tfl2rtl.boards import build as board_build

    icebreaker = dataclasses.replace(BOARDS["icebreaker"], clock_estimate_mhz=60.0)
    monkeypatch.setitem(BOARDS, "icebreaker", icebreaker)
    monkeypatch.setattr(board_build, "MAX_CLOCK_ATTEMPTS", 2)
    out = tmp_path / "out"
    assert main(["build", str(HELLO_WORLD), "--board", "icebreaker", "-o", str(out),
                 "--fold", "full"]) == 0
    err = capsys.readouterr().err.splitlines()
    sources = "|".join(re.escape(words) for words in FMAX_SOURCES.values())
    missed = re.compile(rf"tfl2rtl: timing missed at ([\d.]+) MHz \(({sources}) ([\d.]+) "
                        r"MHz\); building again for ([\d.]+) MHz or below")
    stepped = re.compile(rf"tfl2rtl: timing met at ([\d.]+) MHz with ({sources}) ([\d.]+) "
                         r"MHz; building again for ([\d.]+) MHz")
    # Follow the search build by build: the clock each one ran at, and what set it.
    clock, source, met, aimed = None, None, None, []
    for line in err:
        if found := missed.fullmatch(line):
            fmax, at = float(found[3]), float(found[1])
            assert fmax < at <= icebreaker.clock_estimate_mhz
            aimed.append(at)
            clock, source = board_clock(icebreaker, float(found[4]), DEFAULT_BAUD), found[2]
        elif found := stepped.fullmatch(line):
            assert clock is not None and float(found[1]) == pytest.approx(clock.output_mhz,
                                                                           abs=1e-3)
            met = (clock, source)
            clock, source = board_clock(icebreaker, float(found[3]), DEFAULT_BAUD), found[2]
    assert aimed, err  # the first build missed
    kept = any("keeping the bitstream at" in line for line in err)
    chosen, source = met if kept else (clock, source)
    report = json.loads((out / "report.json").read_text())
    assert report["clock_mhz"] == pytest.approx(chosen.output_mhz, abs=1e-4)
    assert report["meets_timing"] and report["fmax_mhz"] >= report["clock_mhz"]
    assert report["clock"].startswith(f"{chosen.describe()}; {source} reached")
    # nextpnr's log of the first build, which missed (its critical paths), is kept.
    assert "Critical path" in (out / "logs" / f"missed-{aimed[0]:.6g}MHz-{NAME}.tim").read_text()
    # The iCE40's hard blocks bound the clock too, and the report says which bound won.
    assert report["fmax_mhz"] == min(report["nextpnr_fmax_mhz"], report["datasheet_fmax_mhz"])
    assert report["fmax_set_by"] == ("datasheet" if report["datasheet_fmax_mhz"]
                                     < report["nextpnr_fmax_mhz"] else "nextpnr")


def test_the_clock_search_steps_back_up_with_a_new_seed(monkeypatch, tmp_path):
    """The search policy of build_board_clocked over a stand-in for one board build
    whose Fmax depends on the clock and the seed, as nextpnr's does (the real builds
    run in the test above): a miss lowers the clock, a met build whose Fmax clears a
    faster PLL clock is built again there with a new seed, a faster build that misses
    is followed by one in between while that is above the clock met, and the slower
    bitstream stays the result when nothing faster is met.  (On a ULX3S whose routed
    designs are not re-clocked, as on the other boards: the next test has the
    re-clocked search.)"""
    from tfl2rtl.boards import build as board_build
    from tfl2rtl.boards.report import BuildReport

    board = dataclasses.replace(BOARDS["ulx3s-85f"], reclock=False)
    monkeypatch.setitem(BOARDS, "ulx3s-85f", board)
    first = board_clock(board, board.clock_estimate_mhz, DEFAULT_BAUD).output_mhz
    # seed None (the first build) reaches 57 MHz at any clock; seed 2 reaches 72.8 MHz;
    # seed 3 reaches 60 MHz, seed 4 56 MHz.
    reached = {None: 57.1, 2: 72.8, 3: 60.0, 4: 56.0}
    calls, given_logs = [], []

    def one_build(design, board_name, out_dir, *, clock, seed, clock_reason,
                  earlier_logs=None, **kwargs):
        calls.append((clock.output_mhz, seed))
        given_logs.append(sorted(earlier_logs or {}))
        fmax = reached[seed]
        if fmax < clock.output_mhz:
            raise board_build.TimingMissed("missed", fmax, clock.output_mhz, "nextpnr",
                                           logs={"tfl2rtl_board.tim": b"paths"})
        return BuildReport(board=board_name, model="m", bitstream="b", resources={},
                           fmax_mhz=fmax, clock_mhz=clock.output_mhz,
                           cycles_per_inference=1, multipliers=1, baud=DEFAULT_BAUD,
                           link_bytes=1, clock=clock_reason)

    monkeypatch.setattr(board_build, "build_board", one_build)
    lines = []
    # (a design with every product in a DSP block: the board's first estimate)
    design = types.SimpleNamespace(network_plan=types.SimpleNamespace(logic_multipliers=0))
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path,
                                             progress=lines.append)
    lowered = board_clock(board, 57.1 * board_build.CLOCK_MARGIN, DEFAULT_BAUD).output_mhz
    faster = board_clock(board, 72.8, DEFAULT_BAUD).output_mhz
    between = board_clock(board, 60.0 * board_build.CLOCK_MARGIN, DEFAULT_BAUD).output_mhz
    assert lowered < between < faster == first
    # The fourth build, in between, misses too (seed 4 reaches 56 MHz): the search
    # keeps the bitstream met at the lowered clock.
    assert between > 56.0
    assert calls == [(first, None), (lowered, 2), (faster, 3), (between, 4)]
    # The builds after a miss keep its nextpnr log beside their own.
    missed_log = f"missed-{first:.6g}MHz-tfl2rtl_board.tim"
    assert given_logs == [[], [missed_log], [missed_log], [missed_log]]
    assert report.clock_mhz == lowered and "(nextpnr --seed 2)" in report.clock
    assert lines[1] == (f"timing met at {lowered:.6g} MHz with nextpnr's Fmax 72.8 MHz; "
                        f"building again for {faster:.6g} MHz")
    assert lines[2] == (f"timing missed at {faster:.6g} MHz (nextpnr's Fmax 60.0 MHz); "
                        f"building again for {60.0 * board_build.CLOCK_MARGIN:.4g} MHz or "
                        "below")
    assert lines[3].endswith(f"keeping the bitstream at {lowered:.6g} MHz")

    # The build in between meets its clock: it is the result.
    reached[4] = 57.5
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path)
    assert calls[3] == (between, 4) and report.clock_mhz == between
    assert report.clock == (f"nextpnr's Fmax reached 60.0 MHz at {faster:.6g} MHz: built "
                            f"again at most {100 * board_build.CLOCK_MARGIN:g}% of that "
                            "(nextpnr --seed 4)")
    # With one build less, the miss at the faster clock ends the search.
    attempts = board_build.MAX_CLOCK_ATTEMPTS
    monkeypatch.setattr(board_build, "MAX_CLOCK_ATTEMPTS", 3)
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path)
    assert len(calls) == 3 and report.clock_mhz == lowered
    monkeypatch.setattr(board_build, "MAX_CLOCK_ATTEMPTS", attempts)

    # When the faster build meets its clock, it is the result, and the search goes on
    # up while the Fmax clears a faster clock and builds remain.
    reached.update({3: 75.0, 4: 74.0})
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path)
    higher = board_clock(board, 75.0, DEFAULT_BAUD).output_mhz
    assert higher > faster and len(calls) == board_build.MAX_CLOCK_ATTEMPTS
    assert calls[2:] == [(faster, 3), (higher, 4)] and report.clock_mhz == faster

    # --placement-seed N: the first build's seed, the later builds' counted on from it;
    # with --clock-mhz the one build takes it, and its report's clock line says so.
    reached.update({5: 57.1, 7: 72.8, 8: 60.0, 9: 56.0})
    calls.clear()
    board_build.build_board_clocked(design, "ulx3s-85f", tmp_path, seed=5)
    assert calls == [(first, 5), (lowered, 7), (faster, 8), (between, 9)]
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path, seed=7,
                                             clock_mhz=70)
    assert calls == [(board_clock(board, 70, DEFAULT_BAUD).output_mhz, 7)]
    assert report.clock == "--clock-mhz 70 (nextpnr --seed 7)"

    # A first miss within NARROW_MISS of its clock is built again at that clock with
    # another seed before the search steps down.
    narrow = round(board_build.NARROW_MISS * first + 0.1, 1)
    reached.update({None: narrow, 2: 72.8})
    calls.clear()
    lines.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path,
                                             progress=lines.append)
    assert calls == [(first, None), (first, 2)] and report.clock_mhz == first
    assert lines == [f"timing missed at {first:.6g} MHz (nextpnr's Fmax {narrow:.1f} MHz); "
                     "building again at the same clock with another placement seed"]
    assert report.clock.endswith("built again with another placement (nextpnr --seed 2)")

    # A first build that meets its clock with an Fmax that clears no faster PLL clock is
    # built again, with another seed, at the fastest clock within NARROW_MISS of that
    # Fmax; when that one misses, the first bitstream stays the result.
    above = board_clock(board, faster + 5, DEFAULT_BAUD).output_mhz  # (the next clock up)
    just = round(above * board_build.NARROW_MISS + 0.05, 1)
    reach = board_clock(board, just / board_build.NARROW_MISS, DEFAULT_BAUD).output_mhz
    assert board_clock(board, just, DEFAULT_BAUD).output_mhz == first < reach
    reached.update({None: just, 2: reach - 0.01})
    calls.clear()
    lines.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path,
                                             progress=lines.append)
    assert calls == [(first, None), (reach, 2)] and report.clock_mhz == first
    assert lines[0] == (f"timing met at {first:.6g} MHz with nextpnr's Fmax {just:.1f} MHz; "
                        f"building again for {reach:.6g} MHz with another placement seed")
    assert lines[-1].endswith(f"keeping the bitstream at {first:.6g} MHz")
    # When it meets, it is the result (and its Fmax clears no faster clock: the end).
    reached[2] = reach + 0.01
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path)
    assert calls == [(first, None), (reach, 2)] and report.clock_mhz == reach
    assert report.clock == (f"nextpnr's Fmax reached {just:.1f} MHz at {first:.6g} MHz: "
                            "built again within 3% above it with another placement "
                            "(nextpnr --seed 2)")
    # Not after a first miss: a build met later with little to spare is the result.
    reached.update({None: 57.1, 2: lowered + 0.01})
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path)
    assert calls == [(first, None), (lowered, 2)] and report.clock_mhz == lowered


def test_a_board_that_reclocks_places_and_routes_once(monkeypatch, tmp_path):
    """On the ULX3S (:attr:`Board.reclock`) the default build is one place and route,
    aimed at the board's estimate, its routed design re-clocked (build_board with
    ``reclock``); only when that clock falls short of the aim by more than NARROW_MISS
    is it placed and routed again with another seed, that bitstream kept only when it
    runs faster (build_board raises TimingMissed otherwise, writing nothing).
    --clock-mhz builds at that clock and is not re-clocked."""
    from tfl2rtl.boards import build as board_build

    board = BOARDS["ulx3s-85f"]
    assert board.reclock and not BOARDS["icebreaker"].reclock
    first = board_clock(board, board.clock_estimate_mhz, DEFAULT_BAUD).output_mhz
    calls, lines = [], []
    # the clock each seed's routed design is re-clocked to
    reached = {None: first, 2: 70.0, 5: 60.0, 7: 59.0}

    def one_build(design, board_name, out_dir, *, clock, seed, clock_reason,
                  constraint_mhz=None, reclock=False, faster_than=None, **kwargs):
        calls.append((clock.output_mhz, seed, constraint_mhz, reclock, faster_than))
        runs = reached[seed] if reclock else clock.output_mhz
        if faster_than is not None and runs <= faster_than:
            raise board_build.TimingMissed("no faster", runs + 0.2, clock.output_mhz)
        return types.SimpleNamespace(clock_mhz=runs, clock=clock_reason)

    monkeypatch.setattr(board_build, "build_board", one_build)
    design = types.SimpleNamespace(network_plan=types.SimpleNamespace(logic_multipliers=0))
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path,
                                             progress=lines.append)
    aim = "placed and routed aiming at the first estimate for ecp5, 72 MHz"
    assert calls == [(first, None, board.clock_estimate_mhz, True, None)]
    assert report.clock == aim and lines == []
    # Short of the aim: placed again with seed 2, which runs faster and is the result.
    reached[None] = 60.0
    calls.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path,
                                             progress=lines.append)
    assert calls == [(first, None, 72.0, True, None), (first, 2, 72.0, True, 60.0)]
    assert report.clock_mhz == 70.0
    assert report.clock == f"{aim} (nextpnr --seed 2; the first placement ran at 60 MHz)"
    assert lines == [f"the routed design runs at 60 MHz, short of the {first:.6g} MHz "
                     "aimed at: placing again with nextpnr --seed 2, kept if faster"]
    # The second placement no faster: the first bitstream stays (seeds counted from 5).
    calls.clear()
    lines.clear()
    report = board_build.build_board_clocked(design, "ulx3s-85f", tmp_path, seed=5,
                                             progress=lines.append)
    assert calls == [(first, 5, 72.0, True, None), (first, 7, 72.0, True, 60.0)]
    assert report.clock_mhz == 60.0 and report.clock == f"{aim} (nextpnr --seed 5)"
    assert lines[-1] == ("the second placement reached 59.2 MHz; keeping the bitstream at "
                         "60 MHz")
    calls.clear()
    board_build.build_board_clocked(design, "ulx3s-85f", tmp_path, clock_mhz=60, seed=3)
    assert calls == [(60.0, 3, None, False, None)]
    monkeypatch.undo()
    with pytest.raises(Tfl2RtlError, match="for icebreaker cannot be re-clocked"):
        board_build.build_board(design, "icebreaker", tmp_path, reclock=True)


@pytest.mark.long  # two ULX3S builds of a small design, about 2 minutes
def test_a_ulx3s_build_is_reclocked_to_its_fmax(tmp_path):
    """A real ULX3S build with ``reclock``: the bitstream runs at the fastest PLL clock at
    or below nextpnr's Fmax (here above the clock aimed at), and the report, its reason
    and the manifest's PLL say so; the same build again with ``faster_than`` that clock
    raises TimingMissed and leaves the first output as it was."""
    from tfl2rtl.boards.build import TimingMissed, build_board

    board = BOARDS["ulx3s-85f"]
    dense = generate(TEST_MODELS / "dense10_int8.tflite", fold="auto", max_multipliers=4)
    aimed = board_clock(board, 50, DEFAULT_BAUD)
    out = tmp_path / "out"
    lines = []
    report = build_board(dense, "ulx3s-85f", out, clock=aimed, reclock=True,
                         progress=lines.append)
    runs = board_clock(board, report.nextpnr_fmax_mhz, DEFAULT_BAUD)
    assert report.clock_mhz == runs.output_mhz > aimed.output_mhz and report.meets_timing
    change = (f"nextpnr's Fmax {report.nextpnr_fmax_mhz:.1f} MHz aiming at 50 MHz: the "
              f"routed design re-clocked to {runs.output_mhz:.6g} MHz (its PLL set again, "
              "no second place and route)")
    assert change in lines and report.clock == f"{runs.describe()}; {change}"
    manifest = json.loads((out / "manifest.json").read_text())["board"]
    assert manifest["clock_mhz"] == pytest.approx(runs.output_mhz)
    assert {k: manifest["pll"][k] for k in runs.parameters} == runs.parameters
    assert manifest["uart_clock_mhz"] == 25.0
    written = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with pytest.raises(TimingMissed, match="no faster than the"):
        build_board(dense, "ulx3s-85f", out, clock=aimed, reclock=True,
                    faster_than=report.clock_mhz)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == written


def test_reclock_design_sets_the_pll_to_the_fastest_clock_the_fmax_clears(tmp_path):
    """After place and route: the slowest clock domain's Fmax sets the clock (the
    oscillator's domain's as well as the PLL's), faster or slower than the clock aimed
    at; the routed configuration's PLL words are rewritten only when the clock
    changes."""
    from tfl2rtl.boards.build import reclock_design
    from tfl2rtl.boards.clocks import _ecp5_words, reclock_config

    board = BOARDS["ulx3s-85f"]
    aimed = board_clock(board, 72, DEFAULT_BAUD)
    words = "".join(f"word: {k} {v}\n" for k, v in _ecp5_words(aimed).items())
    config = (".device LFE5U-85F\n\n.tile_group MIB_R4C0:PLL0_UL MIB_R5C0:PLL1_UL\n"
              f"{words}enum: MODE EHXPLLL\n\n.tile R2C2:PLC2\n")
    for fmax, other in ((63.3, 190.0), (190.0, 84.2), (aimed.output_mhz + 0.4, 300.0)):
        (tmp_path / f"{NAME}.config").write_text(config)
        (tmp_path / f"{NAME}.report.json").write_text(json.dumps(
            {"fmax": {"$glbnet$clk": {"achieved": fmax, "constraint": 72},
                      "$glbnet$osc": {"achieved": other, "constraint": 25}}}))
        clock, line = reclock_design(board, tmp_path, aimed, DEFAULT_BAUD)
        expected = board_clock(board, min(fmax, other), DEFAULT_BAUD)
        assert clock == expected
        written = (tmp_path / f"{NAME}.config").read_text()
        if expected == aimed:
            assert line == "" and written == config
        else:
            assert line == (f"nextpnr's Fmax {min(fmax, other):.1f} MHz aiming at "
                            f"{aimed.output_mhz:.6g} MHz: the routed design re-clocked to "
                            f"{expected.output_mhz:.6g} MHz (its PLL set again, no second "
                            "place and route)")
            assert written == reclock_config(config, aimed, expected)


@pytest.mark.parametrize("resource, what", [
    ("LUT", "placer gave up at the utilisation limit"),
    ("routing", "router did not converge"),
])
def test_a_placer_giving_up_at_the_limit_places_again_with_another_seed(resource, what,
                                                                       monkeypatch,
                                                                       tmp_path):
    """The placement policy over a stand-in for one board build (the real placer's
    give-up is read from nextpnr's log in test_the_placer_giving_up_at_the_utilisation_
    limit_is_a_logic_overflow, the router's stall in tests/test_boards_tools.py): a
    placer that gives up below 100% utilisation, or a router that stops converging, is
    run again with other seeds, up to PLACEMENT_ATTEMPTS builds; a count that overflows
    is not placed again."""
    from tfl2rtl.boards import build as board_build
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.report import BuildReport

    placed_by, calls, lines = set(), [], []

    def one_build(design, board_name, out_dir, *, clock, seed, clock_reason, **kwargs):
        calls.append(seed)
        if seed not in placed_by:
            raise DoesNotFit(f"{resource} overflows", resource,
                             at_limit=placed_by != {"never"})
        return BuildReport(board=board_name, model="m", bitstream="b", resources={},
                           fmax_mhz=30.0, clock_mhz=clock.output_mhz,
                           cycles_per_inference=1, multipliers=1, baud=DEFAULT_BAUD,
                           link_bytes=1, clock=clock_reason)

    monkeypatch.setattr(board_build, "build_board", one_build)
    step = board_build.PLACEMENT_SEED_STEP
    design = types.SimpleNamespace(network_plan=types.SimpleNamespace(logic_multipliers=0))
    placed_by.add(3 + 2 * step)  # the third placement finds room
    report = board_build.build_board_clocked(design, "icebreaker", tmp_path, clock_mhz=24,
                                             seed=3, progress=lines.append)
    assert calls == [3, 3 + step, 3 + 2 * step] and board_build.PLACEMENT_ATTEMPTS == 3
    assert report.clock == (f"--clock-mhz 24 (nextpnr --seed 3); placed with nextpnr "
                            f"--seed {3 + 2 * step} (the {what} with --seed {3 + step})")
    assert lines == [f"nextpnr's {what} with --seed 3; placing again with --seed {3 + step}",
                     f"nextpnr's {what} with --seed {3 + step}; placing again with --seed "
                     f"{3 + 2 * step}"]
    # None finds room: the last overflow is the build's; a count over the device's is
    # not placed again.
    for placed, tries in ((set(), 3), ({"never"}, 1)):
        placed_by.clear()
        placed_by.update(placed)
        calls.clear()
        with pytest.raises(DoesNotFit):
            board_build.build_board_clocked(design, "icebreaker", tmp_path, clock_mhz=24)
        assert len(calls) == tries and calls[0] is None


@pytest.mark.long  # a whole build, 50 s; TimingMissed's line is the clock search's too
def test_a_clock_the_design_cannot_meet_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(HELLO_WORLD), "--board", "icebreaker", "-o", str(out),
                 "--clock-mhz", "100", "--fold", "full"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("tfl2rtl: error: hello_world_int8.tflite on icebreaker "
                                "reaches ")
    assert "short of the 99 MHz clock: choose --clock-mhz " in lines[-1]
    assert "Traceback" not in "".join(lines) and not out.exists()


@pytest.mark.long
def test_a_design_that_does_not_fit_names_the_resource(tmp_path, capsys):
    # 16 multipliers and their requantizers cannot fit 8 DSP blocks; the previous
    # contents stay untouched (a folder with other files is written into only with
    # --force).
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    status = main(["build", str(HELLO_WORLD), "--board", "icebreaker", "-o", str(out),
                   "--max-multipliers", "16", "--force"])
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if line.startswith("tfl2rtl: error:")]
    assert status == 2
    assert lines[-1] == err[0] and "Traceback" not in "".join(lines)
    assert "synthesis (Yosys) ..." in lines[1]  # progress lines come before it
    assert err[0].startswith("tfl2rtl: error: hello_world_int8.tflite does not fit "
                             "icebreaker: DSP overflows (")
    assert "--max-multipliers " in err[0] and "would fit" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("resource, overflow", [
    ("BRAM", "BRAM overflows (210 needed, 208 available)"),
    ("LUT", "LUT overflows (91020 TRELLIS_COMB needed, 83640 available)"),
    ("routing", "routing does not converge (router2 is not converging: 76 iterations, "
                "overused wires no lower than 158 since iteration 51)"),
])
def test_a_default_design_that_overflows_is_lowered(resource, overflow, monkeypatch,
                                                    tmp_path):
    """The lowering policy of build_graph over a stand-in for the clocked build whose
    Yosys maps more DP16KD than the ULX3S has for ad01's two largest designs, as it did
    for vww_96_int8's default design (210 of 208, measured), whose nextpnr router stops
    converging with every seed, or whose nextpnr finds too many logic cells (the real
    overflow and lowering, through nextpnr's own log, run in tests/test_boards_arch.py
    for the sequential engine, a long run): each overflow is dropped for the next smaller design,
    saying so, and the report's notes keep the first."""
    from tfl2rtl.boards import build as board_build
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.fit import fitting_design

    graph, board = load(AD01), BOARDS["ulx3s-85f"]
    designs = [fitting_design(graph, board, requant_interval=board.requant_interval)]
    for _ in range(2):
        designs.append(fitting_design(graph, board, requant_interval=board.requant_interval,
                                      below=designs[-1].multipliers))
    tried, lines = [], []

    def clocked(design, board_name, out_dir, *, notes, **kwargs):
        tried.append(design.multipliers)
        if design.multipliers > designs[2].multipliers:
            raise DoesNotFit(f"ad01_int8.tflite does not fit ulx3s-85f: {overflow}", resource)
        return stand_in_report(board_name, design, notes)

    monkeypatch.setattr(board_build, "build_board_clocked", clocked)
    report = board_build.build_graph(graph, "ulx3s-85f", tmp_path, progress=lines.append)
    assert tried == [design.multipliers for design in designs]
    assert report.multipliers == designs[2].multipliers
    steps = [line for line in lines if "overflows" in line]
    assert steps == [f"{resource} overflows with {designs[k].multipliers} multipliers; trying "
                     f"{designs[k + 1].multipliers}"
                     + (f" ({designs[k + 1].network_plan.logic_multipliers} in logic)"
                        if designs[k + 1].network_plan.logic_multipliers else "")
                     for k in range(2)]
    assert report.notes[-1].startswith(
        f"the design did not fit with {designs[0].multipliers} multipliers ({resource} "
        f"overflowed): built with {designs[2].multipliers}")


@pytest.mark.parametrize("overflows", [1, 2, 3])
def test_an_ice40_build_tries_serial_requantizers_before_compact_ones(overflows, monkeypatch,
                                                                      tmp_path):
    """The lowering policy of build_graph for compact requantizers, over a stand-in for
    the clocked build whose logic overflows ``overflows`` times: each of micro_speech's
    default iCEBreaker designs is built with its compact requantizers serial first (a
    faster clock), and after a LUT overflow with the compact ones at the same
    multipliers, before the next smaller design; the report's notes say what was built."""
    from tfl2rtl import design as gen
    from tfl2rtl.boards import build as board_build
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.fit import fitting_design

    def compact(design):
        return any(s.compact_requantizer for s in design.network_plan.stages)

    graph = load(ZOO / "tflite_micro" / "micro_speech_quantized.tflite")
    board = BOARDS["icebreaker"]
    fitted = fitting_design(graph, board, requant_interval=board.requant_interval)
    smaller = fitting_design(graph, board, requant_interval=board.requant_interval,
                             below=fitted.multipliers)
    assert compact(fitted) and compact(smaller)
    tried, lines = [], []

    def clocked(design, board_name, out_dir, *, notes, **kwargs):
        tried.append((design.multipliers, compact(design)))
        if len(tried) <= overflows:
            raise DoesNotFit("micro_speech does not fit icebreaker: LUT overflows "
                             "(5876 ICESTORM_LC needed, 5280 available)", "LUT")
        return stand_in_report(board_name, design, notes)

    monkeypatch.setattr(board_build, "build_board_clocked", clocked)
    report = board_build.build_graph(graph, "icebreaker", tmp_path, progress=lines.append)
    assert tried == [(fitted.multipliers, False), (fitted.multipliers, True),
                     (smaller.multipliers, False), (smaller.multipliers, True)][:overflows + 1]

    def serial_step(multipliers):
        return (f"LUT overflows with {multipliers} multipliers and serial requantizers; "
                "trying compact ones")

    def compact_note(multipliers):
        return (f"the design did not fit with {multipliers} multipliers and serial "
                "requantizers (LUT overflowed): built with compact ones where a layer has "
                "the time")

    lowered = (f"the design did not fit with {fitted.multipliers} multipliers (LUT "
               f"overflowed): built with {smaller.multipliers}, initiation interval "
               f"{smaller.initiation_interval} cycles instead of "
               f"{fitted.initiation_interval}")
    assert lines == [serial_step(fitted.multipliers),
                     f"LUT overflows with {fitted.multipliers} multipliers; trying "
                     f"{smaller.multipliers}",
                     serial_step(smaller.multipliers)][:overflows]
    assert report.notes == {1: [compact_note(fitted.multipliers)], 2: [lowered],
                            3: [lowered, compact_note(smaller.multipliers)]}[overflows]
    # Serial first only where compact ones were chosen: the same model's design on the
    # ULX3S, whose requantizers are never compact, is left as it is.
    ulx3s = fitting_design(graph, BOARDS["ulx3s-85f"])
    assert not compact(ulx3s)
    assert gen.without_compact_requantizers(ulx3s).network_plan == ulx3s.network_plan


def test_weights_beyond_the_chip_go_to_flash(monkeypatch, tmp_path):
    """The seed's uint8 MNIST MLP (456 KB of weights) on the iCEBreaker: build_graph
    goes straight to the sequential engine with its weights in flash, saying why (over
    a stand-in for the clocked build; the real build of a flash engine runs in
    tests/test_boards_arch.py); ``--weights chip`` keeps the refusal, and the ULX3S,
    whose flash is not wired yet, refuses a flash engine in one line."""
    from tfl2rtl.boards import build as board_build
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.fit import sequential_design

    graph = load(TEST_MODELS / "mlp_uint8_legacy.tflite")
    built, lines = [], []

    def clocked(design, board_name, out_dir, *, notes, **kwargs):
        built.append(design)
        return stand_in_report(board_name, design, notes)

    monkeypatch.setattr(board_build, "build_board_clocked", clocked)
    report = board_build.build_graph(graph, "icebreaker", tmp_path, progress=lines.append)
    (design,) = built
    assert design.architecture == "sequential" and design.weights_in_flash
    assert lines == ["the weights do not fit on chip: building the sequential engine, its "
                     "weights in flash"]
    assert report.notes == ["sequential engine, weights in flash: the weights do not fit on "
                            "chip"]
    with pytest.raises(DoesNotFit, match="^mlp_uint8_legacy.tflite does not fit icebreaker: "
                                         "BRAM overflows"):
        board_build.build_graph(graph, "icebreaker", tmp_path, weights="chip")
    with pytest.raises(Tfl2RtlError, match="^ulx3s-85f: tfl2rtl does not read weights from "
                                           "its flash yet"):
        sequential_design(graph, BOARDS["ulx3s-85f"], weights="flash")
    assert len(built) == 1


def test_a_user_sized_design_whose_block_ram_overflows_gets_a_smaller_folding():
    """A design the user sized stops at Yosys' block RAM count with one line that names
    a smaller ``--max-multipliers`` (a stand-in count: the real overflow is vww's, which
    takes a 4-minute synthesis)."""
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.fit import check_cells

    design = generate(AD01, max_multipliers=130)
    with pytest.raises(DoesNotFit) as overflow:
        check_cells(design, BOARDS["ulx3s-85f"], {"DP16KD": 250, "MULT18X18D": 100})
    assert overflow.value.resource == "BRAM"
    found = re.fullmatch(
        r"ad01_int8\.tflite does not fit ulx3s-85f: BRAM overflows \(250 needed, 208 "
        r"available\); --max-multipliers (\d+) needs less \(block RAM shrinks with the "
        r"multipliers, its weight memories' rows narrower; initiation interval (\d+) "
        r"cycles instead of (\d+)\)", str(overflow.value))
    assert found, str(overflow.value)
    smaller = generate(AD01, max_multipliers=int(found[1]))
    assert smaller.multipliers < design.multipliers
    assert 250 * smaller.multipliers / design.multipliers <= 0.9 * 208
    assert (int(found[2]), int(found[3])) == (smaller.initiation_interval,
                                              design.initiation_interval)


def test_weights_beyond_block_ram_are_refused_before_synthesis(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(VWW), "--board", "icebreaker", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    # The engine that would copy its weights from flash into SPRAM: even the smallest's
    # weights and activations need more SPRAM blocks than the UP5K's four.
    refusal = re.fullmatch(re.escape(
        "tfl2rtl: error: vww_96_int8.tflite does not fit icebreaker: BRAM overflows: its "
        "219,064 bytes of weights and biases need 428 blocks, the device has 30 (15,360 "
        "bytes) and 131,072 bytes of SPRAM; no folding reduces the weights: choose a board "
        "with more: ulx3s-85f; the sequential engine, which would read the weights from "
        "flash, does not fit either: SPRAM overflows (") + r"(\d+) needed, 4 available: its "
        r"weights copied from flash (\d+) and its activation memory (\d+)\); " + re.escape(
        "even the smallest engine does not fit, and streaming a convolution's weights "
        "from flash layer by layer is not built yet"), err)
    assert refusal, err
    needed, weights, activations = map(int, refusal.groups())
    assert needed == weights + activations and weights > 4  # the weights alone
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_board_and_unreachable_port(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["build", str(HELLO_WORLD), "--board", "nexys", "-o", str(tmp_path / "o")])
    assert exit_status.value.code == 2
    capsys.readouterr()
    x = tmp_path / "x.npy"
    import numpy as np

    np.save(x, np.zeros((1, 1), np.int8))
    assert main(["infer", str(HELLO_WORLD), "--port", str(tmp_path / "ttyNONE"),
                 "--input", str(x)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfl2rtl: error: cannot open ") and len(err.splitlines()) == 1


def test_bench_table_json_and_plot(tmp_path, capsys):
    plot = tmp_path / "bench.png"
    models = [str(HELLO_WORLD), str(TEST_MODELS / "dense10_int8.tflite"),
              str(TEST_MODELS / "float32.tflite")]
    assert main(["bench", *models, str(TEST_MODELS / "conv_int8.tflite"), "--json",
                 "--plot", str(plot)]) == 0
    # By default both architectures, side by side: a row for each.
    listed = json.loads(capsys.readouterr().out)
    rows = {(row["model"], row["architecture"]): row for row in listed}
    assert len(rows) == len(listed) == 8
    for arch in ("dataflow", "sequential"):
        hello = rows["hello_world_int8.tflite", arch]
        plan = generate(HELLO_WORLD, arch=arch)  # as bench plans without a board
        assert hello["macs"] == plan.graph.macs == 288 and hello["weights"] == 288
        assert hello["multipliers"] == plan.multipliers
        assert hello["cycles_per_inference"] == hello["initiation_interval"] == (
            plan.initiation_interval)
        assert hello["tflm_ms"] > 0 and hello["compile_seconds"] > 0  # timings
        assert hello["error"] is None and hello["fmax_mhz"] is None
        assert "float32.tflite is a float32 model" in rows["float32.tflite", arch]["error"]
        # A sequential row carries its schedule (the one generate writes), a dataflow
        # row none.
        assert hello["schedule"] == (plan.schedule_summary() if arch == "sequential"
                                     else None)
    assert rows["conv_int8.tflite", "dataflow"]["error"] is None
    assert rows["conv_int8.tflite", "sequential"]["error"] is None  # pooled between layers
    assert rows["conv_int8.tflite", "sequential"]["schedule"]["tensors"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["bench", str(HELLO_WORLD), "--arch", "auto", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["model", "arch"]
    assert [line.split()[:2] for line in lines[1:-2]] == [
        ["hello_world_int8.tflite", "dataflow"]]  # auto, without a board: dataflow
    # In the text table, the sequential row's schedule follows the table.
    assert main(["bench", str(HELLO_WORLD), "--arch", "sequential", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    schedule = format_schedule(generate(HELLO_WORLD, arch="sequential").schedule_summary())
    assert f"hello_world_int8.tflite (sequential) {schedule}\n" in text


def test_bench_row_keeps_the_reason_of_every_failed_step(monkeypatch):
    """TFLite Micro's failure stays in the row when the design cannot be planned either."""
    from tfl2rtl.boards import bench

    def failing_tflm(path, graph, runs=20):
        raise RuntimeError("Interpreter invocation failed.")

    monkeypatch.setattr(bench, "tflm_seconds", failing_tflm)
    (row,) = bench.bench([HELLO_WORLD], max_multipliers=0, arch="dataflow")
    assert row.error.startswith("TFLite Micro failed: Interpreter invocation failed.; "
                                "cannot build yet: --max-multipliers 0 is below")
    assert row.tflm_ms is None and row.multipliers is None and row.macs == 288


def test_logic_by_part_reads_the_hierarchy_in_the_cell_names():
    """Yosys names a mapped LUT after the net it drives: the flattened hierarchy says
    whose it is; other cell types and modules are not counted."""
    cells = {"top.accelerator.stage0.acc_SB_LUT4_O": "SB_LUT4",
             "\\top.accelerator.fifo.level_SB_LUT4_O_1": "SB_LUT4",
             "top.link.state_SB_LUT4_O": "SB_LUT4",
             "top.accelerator_in_slice.valid_SB_LUT4_I3": "SB_LUT4",
             "top.receiver.bit_SB_LUT4_O": "SB_LUT4",
             "clock.reset_sync.stage_SB_LUT4_O": "SB_LUT4",
             "$abc$123$auto$lut": "SB_LUT4",
             "top.accelerator.stage0.acc_SB_DFF_Q": "SB_DFF",
             "top.accelerator.mac": "SB_MAC16"}
    netlist = {"modules": {
        "SB_LUT4": {"attributes": {}, "cells": {"x": {"type": "SB_LUT4"}}},
        "tfl2rtl_board": {"attributes": {"top": "00000000000000000000000000000001"},
                          "cells": {name: {"type": kind} for name, kind in cells.items()}}}}
    assert logic_by_part(netlist, ("SB_LUT4",)) == {"accelerator": 2, "link": 3, "board": 2}


def test_an_overflow_stops_synthesis_once_memories_and_multipliers_are_mapped(
        monkeypatch, tmp_path):
    """On the ULX3S, Yosys counts the DSP and block RAM cells as soon as the memories and
    multipliers are mapped, before the logic, and stops there when they overflow (on a
    ULX3S given one DSP block here): the build raises the overflow with the cells Yosys
    counted then, says that synthesis stopped early, and writes nothing.  The iCE40's
    script, whose Yosys runs are short, has no such check."""
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.build import build_board, build_plan
    from tfl2rtl.boards.protocol import Identity

    hello = generate(HELLO_WORLD, fold="full")
    ulx3s = BOARDS["ulx3s-85f"]
    one_dsp = dataclasses.replace(ulx3s, available={**ulx3s.available, "DSP": 1})
    for board, checked in ((one_dsp, True), (BOARDS["icebreaker"], False)):
        clock = board_clock(board, 24, DEFAULT_BAUD)
        script = build_plan(hello, board, Identity.of_design(hello), clock, DEFAULT_BAUD,
                            clock.output_mhz).files[f"{NAME}.ys"]
        assert ("select -assert-max 1 t:MULT18X18D" in script) is checked
        if checked:
            assert "select -assert-max 208 t:DP16KD" in script
            assert script.index("t:DP16KD") < script.index("abc -lut")
    monkeypatch.setitem(BOARDS, "ulx3s-85f", one_dsp)
    lines = []
    with pytest.raises(DoesNotFit, match=r"DSP overflows \((\d+) needed, 1 available\)") as e:
        build_board(hello, "ulx3s-85f", tmp_path / "out", progress=lines.append)
    assert e.value.resource == "DSP"
    assert lines[-1] == ("synthesis (Yosys) stopped once the memories and multipliers were "
                         "mapped")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_the_report_reads_the_netlist_the_platform_writes(board):
    """The netlist the report counts LUTs in (:attr:`Board.netlist`) is the one the
    platform's Yosys script writes and its nextpnr reads (the Gowin flow names it
    ``.syn.json``, the Lattice ones ``.json``; a Tang Nano build once stopped with a
    traceback for the difference)."""
    from tfl2rtl.boards.build import build_plan
    from tfl2rtl.boards.protocol import Identity

    hello = generate(HELLO_WORLD, fold="full")
    clock = board_clock(BOARDS[board], 24, DEFAULT_BAUD)
    plan = build_plan(hello, BOARDS[board], Identity.of_design(hello), clock,
                      DEFAULT_BAUD, clock.output_mhz)
    commands = json.loads(plan.files[f"build_{NAME}.json"])["commands"]
    nextpnr = next(command for command in commands if command[0].startswith("nextpnr"))
    netlist = BOARDS[board].netlist.format(name=NAME)
    assert nextpnr[nextpnr.index("--json") + 1] == netlist
    script = plan.files[f"{NAME}.ys"]
    assert netlist in script


def test_boards_know_their_devices():
    assert BOARDS["icebreaker"].make_platform().default_clk_frequency == 12e6
    platform = BOARDS["ulx3s-85f"].make_platform()
    assert platform.default_clk_frequency == 25e6 and platform.device == "LFE5U-85F"
    assert BOARDS["icebreaker"].make_platform().requantizer_serial_products
    assert BOARDS["tangnano9k"].make_platform().default_clk_frequency == 27e6


def test_himbaechel_arguments():
    from tfl2rtl.boards.tools import himbaechel_arguments

    arguments = ["--device", "D", "--family", "GW1N-9C", "--cst", "t.cst", "-q"]
    assert himbaechel_arguments(arguments) == [
        "--device", "D", "--vopt", "family=GW1N-9C", "--vopt", "cst=t.cst", "-q"]


def test_weights_beyond_block_ram_move_to_spram_on_the_icebreaker():
    """The largest weighted layers leave block RAM for loadable SPRAM memories while the
    weights take more than half of it; small models keep everything in the bitstream."""
    from tfl2rtl import design as gen
    from tfl2rtl.boards.build import place_weights
    from tfl2rtl.boards.spram import spram_tiles

    board = BOARDS["icebreaker"]
    for path, moved in [(MICRO_SPEECH, (2,)), (TEST_MODELS / "conv_int8.tflite", (3,)),
                        (HELLO_WORLD, ())]:
        graph = load(path)
        placed = place_weights(gen.plan(graph, "auto", 9, requant_interval=5), board)
        plan = placed.network_plan
        assert plan.loadable == moved, path.name
        tiles = sum(spram_tiles(8 * row_bytes, rows)
                    for _, rows, row_bytes in plan.loadable_memories())
        assert tiles <= board.available["SPRAM"]
    # No SPRAM on the ULX3S: nothing moves.
    graph = load(MICRO_SPEECH)
    design = gen.plan(graph, "auto", 9)
    assert place_weights(design, BOARDS["ulx3s-85f"]) is design


def test_the_default_budget_fits_the_dsp_blocks():
    from tfl2rtl import design as gen
    from tfl2rtl.boards.build import dsp_estimate, fitting_budget

    # A default above what the DSP blocks hold: the budget is lowered until the estimate
    # fits.
    ulx3s = dataclasses.replace(BOARDS["ulx3s-85f"], default_multipliers=200)
    graph = load(ZOO / "mlperf_tiny" / "kws_ref_model.tflite")
    budget = fitting_budget(graph, ulx3s)
    assert budget < ulx3s.default_multipliers
    assert dsp_estimate(gen.plan(graph, "auto", budget), ulx3s) <= ulx3s.available["DSP"]
    assert dsp_estimate(gen.plan(graph, "auto", budget + 1), ulx3s) \
        > ulx3s.available["DSP"] or budget + 1 > ulx3s.default_multipliers
    # kws's smallest design (one multiplier per layer) needs more than the iCEBreaker's
    # default budget: the budget is raised to it (the build then reports what overflows).
    icebreaker = BOARDS["icebreaker"]
    smallest = gen.plan(graph, "full", requant_interval=5).multipliers
    assert smallest > icebreaker.default_multipliers
    assert fitting_budget(graph, icebreaker, requant_interval=5) == smallest
    # micro_speech's fits within the default (its depthwise layer at 2 products a cycle).
    assert fitting_budget(load(MICRO_SPEECH), icebreaker, requant_interval=5) \
        == icebreaker.default_multipliers


def test_the_default_design_builds_products_in_logic_when_the_dsp_blocks_run_out():
    """On the ULX3S a default build takes more multipliers than the DSP blocks hold,
    the fewest of them in logic (whole layers) that make the DSP estimate fit, within
    the board's logic_multipliers: a shorter initiation interval than the design whose
    products are all in DSP blocks.  Without logic multipliers (the iCEBreaker, or a
    cap of 0) it is that design."""
    from tfl2rtl import design as gen
    from tfl2rtl.boards.build import dsp_estimate, fitting_budget, fitting_design

    ulx3s = BOARDS["ulx3s-85f"]
    available = ulx3s.available["DSP"]
    graph = load(ZOO / "mlperf_tiny" / "ad01_int8.tflite")
    in_dsps = gen.plan(graph, "auto", fitting_budget(graph, ulx3s))
    chosen = fitting_design(graph, ulx3s)
    logic = [s for s in chosen.network_plan.stages if s.products_in_logic]
    assert 0 < chosen.network_plan.logic_multipliers == sum(s.multipliers for s in logic) \
        <= ulx3s.logic_multipliers
    assert dsp_estimate(chosen, ulx3s) <= available
    assert chosen.initiation_interval < in_dsps.initiation_interval
    assert all(s.node.op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") for s in logic)
    # The fewest: without any one of those layers in logic, the DSP blocks do not suffice.
    for s in logic:
        fewer = gen.products_in_logic(chosen, {t.index for t in logic} - {s.index})
        assert dsp_estimate(fewer, ulx3s) > available
    assert all(e.get("products_in_logic", False) == (e["node"] in {s.index for s in logic})
               for e in chosen.manifest()["layers"])
    assert chosen.manifest()["logic_multipliers"] == chosen.network_plan.logic_multipliers
    # After an overflow, the next try has fewer multipliers.
    smaller = fitting_design(graph, ulx3s, below=chosen.multipliers)
    assert smaller.multipliers < chosen.multipliers
    assert dsp_estimate(smaller, ulx3s) <= available
    # No logic multipliers: the design of the DSP budget.
    plain = fitting_design(graph, dataclasses.replace(ulx3s, logic_multipliers=0))
    assert plain.network_plan.logic_multipliers == 0
    assert plain.multipliers == in_dsps.multipliers
    # The clock search starts at the board's estimate for designs with products in logic.
    assert ulx3s.logic_clock_estimate_mhz != ulx3s.clock_estimate_mhz
    assert ulx3s.first_clock_mhz(chosen) == ulx3s.logic_clock_estimate_mhz
    assert ulx3s.first_clock_mhz(plain) == ulx3s.clock_estimate_mhz
    icebreaker = BOARDS["icebreaker"]
    assert icebreaker.logic_multipliers == 0
    assert fitting_design(load(MICRO_SPEECH), icebreaker, requant_interval=5) \
        .network_plan.logic_multipliers == 0
    # A depthwise layer's products move as a matrix-vector unit's do (vww_96_int8's on
    # the ULX3S: the fewest multipliers that make the DSP estimate fit include them); a
    # layer without products (kws's average pool) is not moved.
    vww = fitting_design(load(ZOO / "mlperf_tiny" / "vww_96_int8.tflite"), ulx3s)
    ops = {s.node.op for s in vww.network_plan.stages if s.products_in_logic}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D"}
    kws = fitting_design(load(ZOO / "mlperf_tiny" / "kws_ref_model.tflite"), ulx3s)
    pool = next(s for s in kws.network_plan.stages if s.node.op == "AVERAGE_POOL_2D")
    with pytest.raises(Tfl2RtlError, match=rf"^node {pool.index} has no products "
                                           "that can be built in logic$"):
        gen.products_in_logic(kws, {pool.index})


def test_dsp_shares_count_the_gowin_nine_bit_multipliers():
    """On the Tang Nano 9K Yosys maps int8 products to MULT9X9 (``DSP9``) and wider
    ones to MULT18X18 (``DSP``), two 9x9 halves of the same blocks: the shares count
    both kinds used, and the ceiling is 40 int8 products a cycle (hello_world's build:
    10 MULT9X9 multiply weights, 5 MULT18X18 requantize)."""
    from tfl2rtl.boards.report import BuildReport

    report = BuildReport(board="tangnano9k", model="m", bitstream="b",
                         resources={"DSP": (5, 20), "DSP9": (10, 40)}, fmax_mhz=90.0,
                         clock_mhz=72.0, cycles_per_inference=32, multipliers=10,
                         baud=DEFAULT_BAUD, link_bytes=14, macs=288, mac_dsps=10)
    assert report.dsp_blocks == (15, 40)
    assert report.mac_dsp_share == pytest.approx(10 / 15)
    assert report.dsp_ceiling_share == pytest.approx(288 * 72e6 / 32 / (40 * 72e6))
    assert "10 of 15 used (67%)" in report.text()


def test_a_sequential_engine_with_float_edges_fills_the_dsp_blocks():
    """A model with float32 edges (mlp_float_io: QUANTIZE in, DEQUANTIZE out, the host
    computes them) gets the fastest engine whose DSP estimate fits the iCEBreaker, as an
    int8 model does, not the one-multiplier engine (its folding search once read the
    graph with its float edges, which the engine refuses)."""
    from tfl2rtl.boards.fit import dsp_estimate, sequential_design

    board = BOARDS["icebreaker"]
    design = sequential_design(load(TEST_MODELS / "mlp_float_io.tflite"), board)
    assert design.edges.any and design.architecture == "sequential"
    assert design.multipliers > 1
    assert dsp_estimate(design, board) <= board.available["DSP"]


def test_the_placer_giving_up_at_the_utilisation_limit_is_a_logic_overflow(tmp_path):
    """nextpnr's placer can fail below 100% of the logic cells ("Unable to find legal
    placement ... utilisation limit"): that is a LUT overflow, which a default build
    lowers, not a tool failure."""
    from tfl2rtl import design as gen
    from tfl2rtl.boards.board import DoesNotFit
    from tfl2rtl.boards.fit import check_placement

    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Device utilisation:\n"
                   "Info:            ICESTORM_LC:  5203/ 5280    98%\n"
                   "Info:           ICESTORM_RAM:    20/   30    66%\n"
                   "ERROR: Unable to find legal placement for all cells, design is probably "
                   "at utilisation limit.\n")
    design = gen.plan(load(HELLO_WORLD), "full")
    with pytest.raises(DoesNotFit, match=r"^hello_world_int8.tflite does not fit icebreaker: "
                                         r"LUT overflows \(nextpnr cannot place 5203 "
                                         r"ICESTORM_LC of 5280: the utilisation limit\); ") as e:
        check_placement(design, BOARDS["icebreaker"], log)
    assert e.value.resource == "LUT" and e.value.at_limit  # another seed may place it
    log.write_text("Info:            ICESTORM_LC:  5804/ 5280   109%\n")
    with pytest.raises(DoesNotFit, match=r"LUT overflows \(5804 ICESTORM_LC needed") as e:
        check_placement(design, BOARDS["icebreaker"], log)
    assert not e.value.at_limit  # no seed places more cells than the device has
    log.write_text("Info:            ICESTORM_LC:  5203/ 5280    98%\n")
    check_placement(design, BOARDS["icebreaker"], log)  # placed: nothing to say
