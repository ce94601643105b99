"""The design clock of a board build: the FPGA's own PLL multiplies the board's oscillator
up to the clock the routed design meets.

Each family's PLL is described by :class:`PLLFamily` (the primitive, its dividers and the
frequency limits of the vendor's documentation); :func:`pll_settings` lists every output
frequency it can make from an oscillator, exactly (a :class:`~fractions.Fraction` of Hz),
with the parameters that make it, and :func:`choose_pll` picks the fastest one at or below
a bound at which the UART's divisor stays within :data:`UART_TOLERANCE` of the baud rate.

:class:`PLLClock` is the component a board top uses: it instantiates the family's
primitive on the oscillator, gives its output as the clock of the parent's domain and holds
that domain in reset until the PLL has locked (and while the reset button is pressed),
then releases it synchronously.  It is the only place that knows the primitives: the board's
platform (its ``family``) selects the entry of :data:`PLL_FAMILIES`.

:func:`reclock_config` sets the ECP5 PLL of a routed design (nextpnr's textual
configuration, before ``ecppack``) to another setting: where nothing else in the design
depends on the clock's frequency (the board's UART on the oscillator's clock, see
:attr:`tfl2rtl.boards.board.Board.reclock`), the routed design then runs at the fastest
clock its Fmax clears without a second place and route.

The primitives have no simulation models in Yosys' cell libraries (only blackboxes);
``rtl_templates/pll_models.v`` has ours, written from the vendors' documentation: each one
accepts exactly the parameter sets :func:`pll_settings` makes (and stops the simulation on
any other), and generates the output frequency those parameters give from the input clock
it measures.
"""

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from amaranth.hdl import ClockSignal, Instance, Module, Signal
from amaranth.lib import cdc, io, wiring
from amaranth.lib.wiring import In, Out

from tfl2rtl.errors import Tfl2RtlError

__all__ = ["PLLFamily", "PLLSetting", "PLL_FAMILIES", "pll_settings", "choose_pll",
           "uart_error", "UART_TOLERANCE", "PLLClock", "pll_models", "reclock_config"]

#: The largest relative difference between the baud rate a UART divisor gives at a PLL
#: frequency and the one asked for, for :func:`choose_pll`.  A 10-bit frame sampled in
#: the middle of each bit tolerates about 4% between both ends; the board's USB bridge
#: has its own divider error, so the FPGA's side keeps to a quarter of that.  (With the
#: divisor in 1/16 cycles, every clock of 4 cycles a bit or more is within 0.8%.)
UART_TOLERANCE = 0.01

MHZ = 1_000_000


@dataclass(frozen=True)
class PLLFamily:
    """One family's PLL primitive: ``primitive`` (its cell name) and the limits of the
    vendor's documentation, in Hz: ``pfd`` (the phase detector's input, after the input
    divider), ``vco`` and ``output``, each ``(low, high)`` inclusive."""

    family: str
    primitive: str
    document: str
    pfd: tuple[float, float]
    vco: tuple[float, float]
    output: tuple[float, float]


PLL_FAMILIES = {
    # SB_PLL40_PAD with FEEDBACK_PATH "SIMPLE": f_out = f_in * (DIVF + 1) / ((DIVR + 1) *
    # 2**DIVQ), f_vco = f_out * 2**DIVQ.  DIVR 0..15, DIVF 0..127, DIVQ 1..6.
    "ice40": PLLFamily("ice40", "SB_PLL40_PAD",
                       "Lattice TN1251, iCE40 sysCLOCK PLL Design and Usage Guide",
                       pfd=(10 * MHZ, 133 * MHZ), vco=(533 * MHZ, 1066 * MHZ),
                       output=(16 * MHZ, 275 * MHZ)),
    # EHXPLLL fed back from CLKOP: f_out = f_in * CLKFB_DIV / CLKI_DIV, f_vco = f_out *
    # CLKOP_DIV.  CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128.
    "ecp5": PLLFamily("ecp5", "EHXPLLL",
                      "Lattice TN1263, ECP5 and ECP5-5G sysClock PLL/DLL Design and Usage "
                      "Guide", pfd=(3.125 * MHZ, 400 * MHZ), vco=(400 * MHZ, 800 * MHZ),
                      output=(3.125 * MHZ, 400 * MHZ)),
    # rPLL with internal feedback: f_out = f_in * (FBDIV_SEL + 1) / (IDIV_SEL + 1),
    # f_vco = f_out * ODIV_SEL.  IDIV_SEL and FBDIV_SEL 0..63, ODIV_SEL one of
    # ODIV_CHOICES.  The VCO range is the narrower of the GW1N(R) family's figures.
    "gowin": PLLFamily("gowin", "rPLL",
                       "Gowin UG286, Gowin Clock User Guide; DS117, GW1NR series datasheet",
                       pfd=(3 * MHZ, 400 * MHZ), vco=(400 * MHZ, 1000 * MHZ),
                       output=(3.125 * MHZ, 500 * MHZ)),
}

#: The Gowin rPLL's output dividers (its ``ODIV_SEL`` values).
ODIV_CHOICES = (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)
#: The GW1NR-9C's ``DEVICE`` parameter (the Tang Nano 9K's chip).
GOWIN_DEVICE = "GW1NR-9C"


@dataclass(frozen=True)
class PLLSetting:
    """One configuration of a family's PLL: the oscillator ``input_hz``, the ``output_hz``
    its ``parameters`` produce (exact), and the VCO frequency."""

    family: str
    input_hz: Fraction
    output_hz: Fraction
    vco_hz: Fraction
    parameters: dict = field(compare=False)

    @property
    def output_mhz(self) -> float:
        return float(self.output_hz) / MHZ

    def describe(self) -> str:
        """``"48 MHz from 12 MHz (SB_PLL40_PAD DIVR=0 DIVF=63 DIVQ=4 ...)"``."""
        params = " ".join(f"{k}={v}" for k, v in self.parameters.items())
        return (f"{_mhz(self.output_hz)} MHz from {_mhz(self.input_hz)} MHz "
                f"({PLL_FAMILIES[self.family].primitive} {params})")


def _mhz(hz: Fraction) -> str:
    return f"{float(hz) / MHZ:.6g}"


def _within(value, limits) -> bool:
    return limits[0] <= value <= limits[1]


def _ice40_filter_range(pfd: Fraction) -> int:
    """The loop filter setting for a phase detector frequency (TN1251's table, as
    Lattice's and IceStorm's PLL calculators choose it)."""
    for limit, setting in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if pfd < limit * MHZ:
            return setting
    return 6


def _ice40(f_in: Fraction):
    limits = PLL_FAMILIES["ice40"]
    for divr, divq in itertools.product(range(16), range(1, 7)):
        pfd = f_in / (divr + 1)
        if not _within(pfd, limits.pfd):
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            out = vco / 2 ** divq
            if _within(vco, limits.vco) and _within(out, limits.output):
                yield out, vco, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                 "FILTER_RANGE": _ice40_filter_range(pfd)}


def _ecp5(f_in: Fraction):
    limits = PLL_FAMILIES["ecp5"]
    for clki, clkfb in itertools.product(range(1, 129), range(1, 81)):
        pfd = f_in / clki
        out = pfd * clkfb
        if not (_within(pfd, limits.pfd) and _within(out, limits.output)):
            continue
        # The smallest output divider that lifts the VCO into its range.
        clkop = next((d for d in range(1, 129) if _within(out * d, limits.vco)), None)
        if clkop is not None:
            yield out, out * clkop, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb,
                                     "CLKOP_DIV": clkop, "CLKOP_CPHASE": clkop - 1,
                                     "CLKOP_FPHASE": 0}


def _gowin(f_in: Fraction):
    limits = PLL_FAMILIES["gowin"]
    for idiv, fbdiv in itertools.product(range(64), range(64)):
        pfd = f_in / (idiv + 1)
        out = pfd * (fbdiv + 1)
        if not (_within(pfd, limits.pfd) and _within(out, limits.output)):
            continue
        odiv = next((d for d in ODIV_CHOICES if _within(out * d, limits.vco)), None)
        if odiv is not None:
            yield out, out * odiv, {"IDIV_SEL": idiv, "FBDIV_SEL": fbdiv,
                                    "ODIV_SEL": odiv}


_ENUMERATE = {"ice40": _ice40, "ecp5": _ecp5, "gowin": _gowin}


def pll_settings(family: str, input_hz: float) -> list[PLLSetting]:
    """Every output frequency ``family``'s PLL makes from ``input_hz`` within the
    documented limits, each once (with the first parameter set found for it, in the
    enumeration order of the dividers), fastest first."""
    try:
        enumerate_ = _ENUMERATE[family]
    except KeyError:
        raise Tfl2RtlError(f"no PLL known for the {family} family") from None
    f_in = Fraction(input_hz)
    seen = {}
    for out, vco, parameters in enumerate_(f_in):
        seen.setdefault(out, PLLSetting(family, f_in, out, vco, parameters))
    return sorted(seen.values(), key=lambda s: -s.output_hz)


def uart_error(clock_hz: float, baud: int) -> float:
    """The relative baud-rate error of the UART divisor :func:`tfl2rtl.boards.uart.
    divisor_for` gives at ``clock_hz`` (the nearest multiple of 1/16 of a cycle)."""
    from .uart import DIVISOR_STEPS

    divisor = max(1, round(DIVISOR_STEPS * float(clock_hz) / baud)) / DIVISOR_STEPS
    return abs(float(clock_hz) / divisor / baud - 1)


def choose_pll(family: str, input_hz: float, limit_hz: float, baud: int | None,
               minimum_divisor: int = 4) -> PLLSetting:
    """The fastest setting of ``family``'s PLL at or below ``limit_hz`` at which ``baud``
    has at least ``minimum_divisor`` clock cycles per bit, within
    :data:`UART_TOLERANCE` (any, with ``baud`` None: the UART runs on another clock).
    Raises :class:`Tfl2RtlError` when none is."""
    for setting in pll_settings(family, input_hz):
        if setting.output_hz > limit_hz:
            continue
        if baud is None:
            return setting
        if (setting.output_hz >= minimum_divisor * baud
                and uart_error(setting.output_hz, baud) <= UART_TOLERANCE):
            return setting
    if baud is None:
        raise Tfl2RtlError(
            f"the {PLL_FAMILIES[family].primitive} PLL makes no clock at or below "
            f"{limit_hz / MHZ:g} MHz from {input_hz / MHZ:g} MHz: choose another "
            "--clock-mhz")
    raise Tfl2RtlError(
        f"the {PLL_FAMILIES[family].primitive} PLL makes no clock at or below "
        f"{limit_hz / MHZ:g} MHz from {input_hz / MHZ:g} MHz that carries {baud} baud "
        f"(at least {minimum_divisor} cycles a bit, within {100 * UART_TOLERANCE:g}%): "
        f"choose another --clock-mhz or --baud")


#: The words of an ECP5 ``EHXPLLL`` in nextpnr's textual configuration that
#: :func:`reclock_config` rewrites: name -> (width in bits, the value written for a
#: parameter value: nextpnr writes each divider less one, each phase as it is; the
#: words run from the most significant bit).  Checked against nextpnr's own output for
#: other settings by tests/test_boards_clocks.py.
ECP5_PLL_WORDS = {
    "CLKI_DIV": (7, lambda v: v - 1), "CLKFB_DIV": (7, lambda v: v - 1),
    "CLKOP_DIV": (7, lambda v: v - 1), "CLKOP_CPHASE": (7, lambda v: v),
    "CLKOP_FPHASE": (3, lambda v: v),
}


def _ecp5_words(setting: PLLSetting) -> dict[str, str]:
    words = {}
    for name, (width, encode) in ECP5_PLL_WORDS.items():
        value = encode(setting.parameters[name])
        if not 0 <= value < 1 << width:
            raise Tfl2RtlError(f"{name}={setting.parameters[name]} does not fit the "
                               f"EHXPLLL's {width}-bit word")
        words[name] = format(value, f"0{width}b")
    return words


def reclock_config(text: str, old: PLLSetting, new: PLLSetting) -> str:
    """nextpnr's textual ECP5 configuration ``text`` (``--textcfg``, the input of
    ``ecppack``) with its one ``EHXPLLL`` set from ``old`` to ``new``: the words of
    :data:`ECP5_PLL_WORDS` in the PLL's tile group, each of which must hold ``old``'s
    value (anything else is refused: another PLL, a configuration from another
    design).  Both settings are the ECP5's, from the same oscillator."""
    if old.family != "ecp5" or new.family != "ecp5" or old.input_hz != new.input_hz:
        raise Tfl2RtlError("only an ECP5 PLL is re-clocked, from the same oscillator")
    lines = text.split("\n")
    groups = [k for k, line in enumerate(lines) if line.startswith(".tile_group ")
              and any(lines[j] == "enum: MODE EHXPLLL"
                      for j in range(k + 1, _section_end(lines, k)))]
    if len(groups) != 1:
        raise Tfl2RtlError(f"the routed configuration has {len(groups)} EHXPLLL "
                           "primitives, not one: it cannot be re-clocked")
    start = groups[0]
    section = range(start + 1, _section_end(lines, start))
    before, after = _ecp5_words(old), _ecp5_words(new)
    for name in ECP5_PLL_WORDS:
        found = [j for j in section if lines[j].startswith(f"word: {name} ")]
        if len(found) != 1 or lines[found[0]] != f"word: {name} {before[name]}":
            raise Tfl2RtlError(f"the routed configuration's EHXPLLL {name} is not the "
                               f"one it was built with ({old.describe()})")
        lines[found[0]] = f"word: {name} {after[name]}"
    return "\n".join(lines)


def _section_end(lines: list[str], start: int) -> int:
    """The line after the section that begins at ``lines[start]`` (up to the next line
    that begins with a dot)."""
    return next((j for j in range(start + 1, len(lines)) if lines[j].startswith(".")),
                len(lines))


def pll_models() -> Path:
    """``rtl_templates/pll_models.v``: simulation models of the three primitives."""
    path = Path(__file__).resolve().parent.parent / "rtl_templates" / "pll_models.v"
    if not path.exists():
        raise Tfl2RtlError(f"the PLL simulation models {path} are missing from the "
                           "installation")
    return path


class PLLClock(wiring.Component):
    """The clock ``clk`` at ``setting``'s output frequency from the board's oscillator, and
    the reset of the clock domain ``domain`` (which the parent defines and clocks from
    ``clk``).

    ``oscillator`` is the platform's clock pin (``platform.request(default_clk,
    dir="-")``); ``reset`` an optional active-high reset input (the board's button,
    already buffered).  The domain stays in reset while the PLL has not locked or
    ``reset`` is high, and leaves it synchronously (:class:`amaranth.lib.cdc.
    ResetSynchronizer`).  ``locked`` is the PLL's lock output.  On a platform, ``clk``
    gets a clock constraint at ``constraint_hz`` (default: the setting's frequency; a
    higher one makes place and route aim above the clock the design will run at).

    With ``reference_domain`` (a domain the parent defines), the oscillator also clocks
    that domain (through its input buffer, on the ECP5 and Gowin; the iCE40's pad feeds
    only its PLL), reset while ``reset`` is high and released synchronously.

    Members
    -------
    clk : ``Out(1)``
    reset : ``In(1)``
    locked : ``Out(1)``
    """

    clk: Out(1)
    reset: In(1)
    locked: Out(1)

    def __init__(self, setting: PLLSetting, oscillator, domain: str = "sync",
                 constraint_hz: float | None = None, reference_domain: str | None = None):
        if reference_domain is not None and setting.family == "ice40":
            raise Tfl2RtlError("the iCE40's oscillator pad feeds only its PLL: no domain "
                               "runs on the oscillator's clock")
        self.reference_domain = reference_domain
        self.setting = setting
        self.oscillator = oscillator
        self.domain = domain
        self.constraint_hz = (float(setting.output_hz) if constraint_hz is None
                              else max(float(constraint_hz), float(setting.output_hz)))
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        setting = self.setting
        clock = self.clk
        if platform is not None and hasattr(platform, "add_clock_constraint"):
            platform.add_clock_constraint(clock, self.constraint_hz)
        lock = Signal()
        p = setting.parameters
        if setting.family == "ice40":
            # The oscillator pin is the PLL's own pad (SB_PLL40_PAD): no input buffer.
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                i_PACKAGEPIN=self.oscillator.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clock, o_LOCK=lock)
        else:
            m.submodules.osc = osc = io.Buffer("i", self.oscillator)
            if self.reference_domain is not None:
                m.d.comb += ClockSignal(self.reference_domain).eq(osc.i)
                m.submodules.reference_reset = cdc.ResetSynchronizer(
                    self.reset, domain=self.reference_domain)
            if setting.family == "ecp5":
                m.submodules.pll = Instance(
                    "EHXPLLL",
                    a_FREQUENCY_PIN_CLKI=_mhz(setting.input_hz),
                    a_FREQUENCY_PIN_CLKOP=_mhz(setting.output_hz),
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
                    a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                    p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                    p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                    p_FEEDBK_PATH="CLKOP", p_CLKI_DIV=p["CLKI_DIV"],
                    p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
                    p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
                    i_CLKI=osc.i, i_CLKFB=clock, i_RST=0, i_STDBY=0,
                    i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                    i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                    o_CLKOP=clock, o_LOCK=lock)
            elif setting.family == "gowin":
                m.submodules.pll = Instance(
                    "rPLL",
                    p_FCLKIN=_mhz(setting.input_hz), p_DEVICE=GOWIN_DEVICE,
                    p_IDIV_SEL=p["IDIV_SEL"], p_FBDIV_SEL=p["FBDIV_SEL"],
                    p_ODIV_SEL=p["ODIV_SEL"], p_DYN_IDIV_SEL="false",
                    p_DYN_FBDIV_SEL="false", p_DYN_ODIV_SEL="false",
                    p_CLKFB_SEL="internal",
                    i_CLKIN=osc.i, i_CLKFB=0, i_RESET=0, i_RESET_P=0,
                    i_FBDSEL=0, i_IDSEL=0, i_ODSEL=0, i_PSDA=0, i_DUTYDA=0, i_FDLY=0,
                    o_CLKOUT=clock, o_LOCK=lock)
            else:
                raise Tfl2RtlError(f"no PLL known for the {setting.family} family")
        m.d.comb += self.locked.eq(lock)
        m.submodules.reset_sync = cdc.ResetSynchronizer(~lock | self.reset,
                                                        domain=self.domain)
        return m
