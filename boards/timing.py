"""The iCE40 UltraPlus hard blocks' own timing, where nextpnr has none.

nextpnr-ice40 has no timing model for the ``SB_MAC16``: every DSP port counts as a
register with 0.1 ns clock-to-output and 0.1 ns setup (its placeholders), and the
``SB_SPRAM256KA`` and ``SB_RAM40_4K`` inputs get the same 0.1 ns setup.  Yosys maps
tfl2rtl's multipliers to ``SB_MAC16`` cells in their bypass configuration (no register,
the 16x16 product straight to the output; their clock is tied low), so nextpnr times
the path into a multiplier and the path out of it as two separate paths in a clock
domain of their own (``$PACKER_GND_NET``) and never adds the multiplier's own delay.

:func:`ice40_bound` puts that delay back from the figures of Lattice's iCEcube2 timing
data for the UP5K (worst corner), as Project IceStorm recorded them
(``icefuzz/timings_up5k.txt``, the data nextpnr's own LUT and block RAM timing comes
from): the slowest routed path into any multiplier input, plus the multiplier's
input-to-output delay, plus the slowest routed path out of any multiplier output,
less the placeholders.  Pairing the slowest path in with the slowest path out (they
may belong to different multipliers) over-estimates the real path, never
under-estimates it: the bound is safe.  Paths between registers get the difference
between the real setup of the block RAM and SPRAM inputs and the placeholder added
where the design has those blocks (the slowest such path is not reported apart), and
``SB_MAC16`` cells with internal registers, which nextpnr times as registers with the
placeholders whatever lies between the register and the port, get their real
clock-to-output and setup the same way, plus the multiplier's delay on a side where it
lies between (:func:`clocked_mac_margin`); the paths inside such a cell, which nextpnr
does not see at all, are bounded by :data:`SB_MAC16_INTERNAL_NS`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimingBound", "ice40_bound", "clocked_mac_margin", "SB_MAC16_BYPASS_NS",
           "SB_MAC16_INTERNAL_NS", "PLACEHOLDER_NS"]

#: nextpnr-ice40's clock-to-output and setup for ports it has no figure for.
PLACEHOLDER_NS = 0.1
#: ``SB_MAC16`` in bypass, 16x16 product: input (A or B) to output (O), worst corner
#: (``SB_MAC16_MUL_S_16X16_BYPASS`` and ``..._U_...``: 9.05 ns from B, 8.88 from A).
SB_MAC16_BYPASS_NS = 9.05
#: ``SB_MAC16`` with registers: clock to output (worst of the registered
#: configurations, 2.12 ns in 8x8 mode) and the slowest setup of a data or hold input
#: (0.45 ns, OLOADBOT).
SB_MAC16_CLOCK_TO_OUT_NS = 2.12
SB_MAC16_SETUP_NS = 0.45
#: The 32-bit adder and accumulator in bypass, input to output (``ADS_U_32P32_BYPASS``),
#: and what a path between a clocked SB_MAC16's own registers takes at most: out of a
#: register, through the multiplier and the adder, into a register.
SB_MAC16_ADDER_NS = 5.26
SB_MAC16_INTERNAL_NS = (SB_MAC16_CLOCK_TO_OUT_NS + SB_MAC16_BYPASS_NS + SB_MAC16_ADDER_NS
                        + SB_MAC16_SETUP_NS)
#: The slowest setup of an ``SB_SPRAM256KA`` input (CHIPSELECT, 0.40 ns) and of an
#: ``SB_RAM40_4K`` input (MASK, 0.52 ns).
SPRAM_SETUP_NS = 0.40
EBR_SETUP_NS = 0.52
#: The clock domain nextpnr gives cells whose clock input is tied low.
TIED_CLOCK = "$PACKER_GND_NET"
#: The ``SB_MAC16`` parameters of its input registers and of its product pipeline.
INPUT_REGISTERS = ("A_REG", "B_REG", "C_REG", "D_REG")
PIPELINE_REGISTERS = ("TOP_8x8_MULT_REG", "BOT_8x8_MULT_REG", "PIPELINE_16x16_MULT_REG1",
                      "PIPELINE_16x16_MULT_REG2")


@dataclass(frozen=True)
class TimingBound:
    """The highest clock the hard blocks' own timing allows (``mhz``), the period it
    comes from (``period_ns``) and how (``reason``, one line)."""

    mhz: float
    period_ns: float
    reason: str


def _path_ns(path: dict, *, drop_first: bool = False, drop_last: bool = False) -> float:
    steps = path["path"]
    first = 1 if drop_first and steps and steps[0]["type"] == "clk-to-q" else 0
    last = len(steps) - 1 if drop_last and steps and steps[-1]["type"] == "setup" else len(steps)
    return sum(step["delay"] for step in steps[first:last])


def _flag(parameters: dict, name: str) -> bool:
    return bool(int(str(parameters.get(name, "0")), 2))


def _output_registered(p: dict, half: str) -> bool:
    """Whether the ``half`` (``"TOP"`` or ``"BOT"``) output of an ``SB_MAC16`` with
    parameters ``p`` leaves a register: the accumulator (select 01), the 8x8 product
    behind its register (10) or the 16x16 product behind the last pipeline stage (11);
    select 00 is the adder's combinational output."""
    select = str(p.get(f"{half}OUTPUT_SELECT", "00"))[-2:]
    return (select == "01" or (select == "10" and _flag(p, f"{half}_8x8_MULT_REG"))
            or (select == "11" and _flag(p, "PIPELINE_16x16_MULT_REG2")))


def clocked_mac_margin(netlist: dict) -> tuple[int, float]:
    """``(count, ns)``: how many ``SB_MAC16`` cells of a Yosys JSON ``netlist`` have a
    register (a clock), and the most any of them adds to a register-to-register path
    beyond nextpnr's placeholders.  Each side of the cell is a register or not: an
    output behind a register (the accumulator, or the product's last pipeline stage)
    leaves after the clock-to-output, an output without one leaves that plus the
    multiplier's bypass delay after the clock (whatever register inside it starts
    from); inputs into a register need its setup, inputs that reach a register only
    through the multiplier need the bypass delay too."""
    count, worst = 0, 0.0
    for module in netlist["modules"].values():
        for cell in module["cells"].values():
            p = cell["parameters"] if cell["type"] == "SB_MAC16" else None
            if p is None or not any(_flag(p, n) for n in INPUT_REGISTERS + PIPELINE_REGISTERS):
                continue
            count += 1
            # (both operands: one of them without its register reaches the product's
            # register through the multiplier)
            registered_in = all(_flag(p, n) for n in ("A_REG", "B_REG"))
            registered_out = all(_output_registered(p, half) for half in ("TOP", "BOT"))
            out = SB_MAC16_CLOCK_TO_OUT_NS + (0 if registered_out else SB_MAC16_BYPASS_NS)
            into = SB_MAC16_SETUP_NS + (0 if registered_in else SB_MAC16_BYPASS_NS)
            worst = max(worst, out + into - 2 * PLACEHOLDER_NS)
    return count, worst


def ice40_bound(report: dict, cells: dict[str, int], *,
                clocked: tuple[int, float] = (0, 0.0)) -> TimingBound | None:
    """The bound of the hard blocks' timing on the design's clocks (those in
    ``report["fmax"]``), from
    nextpnr's ``--report`` JSON ``report`` (its critical paths by clock domain pair),
    Yosys' cell counts ``cells`` and the ``SB_MAC16`` cells with internal registers
    (``clocked``, see :func:`clocked_mac_margin`); None when the design has
    neither DSPs nor block RAM or SPRAM (nextpnr's figures are then complete).
    Refuses (``ValueError``) a report with a path from one bypass multiplier into
    another, which the bound does not cover."""
    own = {f"posedge {name}" for name in report.get("fmax", {}) if TIED_CLOCK not in name}
    paths = {(p["from"], p["to"]): p for p in report.get("critical_paths", [])}
    tied = {d for pair in paths for d in pair if TIED_CLOCK in d}
    if any(a in tied and b in tied for a, b in paths):
        raise ValueError("a path runs from one bypass SB_MAC16 into another: the "
                         "datasheet bound does not cover it")
    register_ns = max((_path_ns(p) for (a, b), p in paths.items() if a in own and b in own),
                      default=0.0)
    extra, blocks = 0.0, []
    if cells.get("SB_RAM40_4K"):
        extra, blocks = max(extra, EBR_SETUP_NS - PLACEHOLDER_NS), blocks + ["block RAM"]
    if cells.get("SB_SPRAM256KA"):
        extra, blocks = max(extra, SPRAM_SETUP_NS - PLACEHOLDER_NS), blocks + ["SPRAM"]
    if clocked[0]:
        extra = max(extra, clocked[1])
        blocks.append(f"{clocked[0]} clocked SB_MAC16")
    into = max((_path_ns(p, drop_last=True) for (a, b), p in paths.items()
                if a in own and b in tied), default=None)
    out_of = max((_path_ns(p, drop_first=True) for (a, b), p in paths.items()
                  if a in tied and b in own), default=None)
    if into is None and out_of is None and not blocks:
        return None
    candidates = []
    if blocks:
        candidates.append((register_ns + extra,
                           f"register paths {register_ns:.2f} ns + {extra:.2f} ns of "
                           f"{' and '.join(blocks)} setup and clock-to-output beyond "
                           "nextpnr's placeholders"))
    if into is not None or out_of is not None:
        into, out_of = into or 0.0, out_of or 0.0
        candidates.append((into + SB_MAC16_BYPASS_NS + out_of,
                           f"into an SB_MAC16 {into:.2f} ns + {SB_MAC16_BYPASS_NS} ns "
                           f"through its multiplier + out of it {out_of:.2f} ns"))
    if clocked[0]:
        candidates.append((SB_MAC16_INTERNAL_NS,
                           "inside a clocked SB_MAC16, register to register through its "
                           f"multiplier and adder, {SB_MAC16_INTERNAL_NS:.2f} ns"))
    period, reason = max(candidates)
    return TimingBound(mhz=1e3 / period, period_ns=period, reason=reason)
