"""What a board build measured: :class:`BuildReport` (resources, Fmax, cycles and
inferences per second, the link's rate), read from the tools' outputs by
:func:`build_report`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.stages import COMPACT_REQUANT_INTERVAL

from .board import Board, count
from .fit import mac_dsps
from .protocol import Identity
from .timing import TimingBound, clocked_mac_margin, ice40_bound

__all__ = ["BuildReport", "build_report", "logic_by_part", "FRAME_BYTES", "PARTS"]

#: The frame overhead of one inference over the link: request and reply headers, CRCs.
FRAME_BYTES = 2 * (4 + 2)


#: The parts of a board design :func:`logic_by_part` counts, with what each holds.
PARTS = {
    "accelerator": "the design (the dataflow network or the sequential engine)",
    "link": "the host link, the UART and the register slices around the design",
    "board": "clock, reset and I/O",
}


def logic_by_part(netlist: dict, kinds: tuple[str, ...]) -> dict[str, int]:
    """The logic cells (types starting with one of ``kinds``: the board's LUT cells) of
    a Yosys JSON netlist of the board design by part (:data:`PARTS`), from each cell's
    name: Yosys names a mapped LUT after the net it drives, whose flattened name starts
    with the hierarchy (``top.accelerator.*`` the design, the rest of ``top.*`` the link;
    any other name, without hierarchy included, the board's).  Before packing: the
    placed logic cells (``LUT`` in :attr:`BuildReport.resources`) also count carries and
    flip-flops without a LUT."""
    top = next((m for m in netlist["modules"].values()
                if int(str(m.get("attributes", {}).get("top", 0)), 2)), None)
    parts = dict.fromkeys(PARTS, 0)
    for name, cell in (top or {"cells": {}})["cells"].items():
        if not cell["type"].startswith(kinds):
            continue
        path = name.lstrip("\\")
        parts["accelerator" if path.startswith("top.accelerator.") else
              "link" if path.startswith("top.") else "board"] += 1
    return parts


@dataclass
class BuildReport:
    """What a board build produced and measured.  ``resources``: name -> ``(used,
    available)``; ``clock_mhz`` the clock the bitstream runs at (the PLL's real output,
    described by ``clock``: its parameters and what set it), ``fmax_mhz`` the highest
    clock the routed design meets: nextpnr's Fmax (``nextpnr_fmax_mhz``) or, where it is
    lower, the bound of the hard blocks' own timing that nextpnr does not model
    (``bound``, on the iCE40: :func:`tfl2rtl.boards.timing.ice40_bound`);
    ``cycles_per_inference`` the
    design's initiation interval (one inference per that many cycles when streaming),
    ``inferences_per_second`` that at ``clock_mhz``, and ``link_inferences_per_second``
    what the UART at ``baud`` carries (inputs in, outputs back): every figure is at the
    clock the bitstream runs."""

    board: str
    model: str
    bitstream: str
    resources: dict[str, tuple[int, int]]
    fmax_mhz: float
    clock_mhz: float
    cycles_per_inference: int
    multipliers: int
    baud: int
    link_bytes: int
    clock: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    nextpnr_fmax_mhz: float | None = None
    bound: TimingBound | None = None
    #: MACs per inference, and the DSP blocks that multiply activations by weights
    #: (:func:`tfl2rtl.boards.fit.mac_dsps`).
    macs: int = 0
    mac_dsps: int = 0
    #: MAC multipliers built in LUTs rather than DSP blocks
    #: (:func:`tfl2rtl.boards.fit.fitting_design`).
    logic_multipliers: int = 0
    #: ``"dataflow"`` or ``"sequential"`` (:attr:`tfl2rtl.design.Design.architecture`).
    architecture: str = "dataflow"
    #: The LUTs Yosys mapped, by part of the board design (:func:`logic_by_part`).
    logic_by_part: dict[str, int] = field(default_factory=dict)
    #: The flash image written beside the bitstream (bitstream and weights) when the
    #: weights are in flash (:func:`tfl2rtl.boards.build.write_flash_image`), else "".
    flash_image: str = ""

    def __post_init__(self):
        if self.nextpnr_fmax_mhz is None:
            self.nextpnr_fmax_mhz = self.fmax_mhz

    @property
    def fmax_limit(self) -> str:
        """What sets :attr:`fmax_mhz`: ``"nextpnr"`` or ``"datasheet"`` (the bound)."""
        return "datasheet" if self.bound and self.bound.mhz < self.nextpnr_fmax_mhz \
            else "nextpnr"

    @property
    def meets_timing(self) -> bool:
        return self.fmax_mhz >= self.clock_mhz

    @property
    def inferences_per_second(self) -> float:
        return self.clock_mhz * 1e6 / self.cycles_per_inference

    @property
    def dsp_blocks(self) -> tuple[int, int]:
        """The hard multipliers used, and the most int8 products the chip's have a cycle:
        ``DSP`` blocks, and on the Gowin GW1NR-9 also its 9x9 ones (``DSP9``: each
        18x18 multiplier is two of them, so the chip does at most 40 int8 products a
        cycle, in 20 18x18 or 40 9x9 multipliers)."""
        used = sum(self.resources.get(k, (0, 0))[0] for k in ("DSP", "DSP9"))
        available = max(self.resources.get(k, (0, 0))[1] for k in ("DSP", "DSP9"))
        return used, available

    @property
    def mac_dsp_share(self) -> float | None:
        """The share of the DSP blocks used (:attr:`dsp_blocks`) that multiply
        activations by weights (the others requantize and scale); None without DSP
        blocks."""
        used = self.dsp_blocks[0]
        return self.mac_dsps / used if used else None

    @property
    def dsp_ceiling_share(self) -> float | None:
        """MACs per second over the chip's DSP MAC ceiling (every DSP block doing one MAC
        a cycle at this clock, :attr:`dsp_blocks`); None without DSP blocks."""
        available = self.dsp_blocks[1]
        if not available:
            return None
        return self.macs * self.inferences_per_second / (available * self.clock_mhz * 1e6)

    @property
    def link_inferences_per_second(self) -> float:
        return self.baud / (10 * self.link_bytes)

    def to_json(self) -> dict:
        return {
            "board": self.board, "model": self.model, "bitstream": self.bitstream,
            "architecture": self.architecture,
            "resources": {k: {"used": u, "available": a} for k, (u, a) in
                          self.resources.items()},
            "clock_mhz": round(self.clock_mhz, 4), "clock": self.clock,
            "fmax_mhz": round(self.fmax_mhz, 2), "meets_timing": self.meets_timing,
            "nextpnr_fmax_mhz": round(self.nextpnr_fmax_mhz, 2),
            "datasheet_fmax_mhz": round(self.bound.mhz, 2) if self.bound else None,
            "datasheet_bound": self.bound.reason if self.bound else None,
            "fmax_set_by": self.fmax_limit,
            "cycles_per_inference": self.cycles_per_inference,
            "multipliers": self.multipliers,
            "logic_multipliers": self.logic_multipliers,
            "inferences_per_second": round(self.inferences_per_second, 1),
            "macs": self.macs, "mac_dsps": self.mac_dsps,
            "mac_dsp_share": _rounded(self.mac_dsp_share),
            "dsp_ceiling_share": _rounded(self.dsp_ceiling_share),
            "baud": self.baud,
            "link_inferences_per_second": round(self.link_inferences_per_second, 1),
            "logic_by_part": self.logic_by_part,
            "flash_image": self.flash_image or None,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "notes": self.notes,
        }

    def line(self) -> str:
        """The one-line summary."""
        used = ", ".join(f"{k} {u}/{a}" for k, (u, a) in self.resources.items())
        engine = " (sequential engine)" if self.architecture == "sequential" else ""
        if self.flash_image:
            engine = " (sequential engine, weights in flash)"
        return (f"{self.model} on {self.board}{engine}: {used}; clock {self.clock_mhz:.4g} MHz "
                f"(Fmax {self.fmax_mhz:.1f} MHz"
                f"{', the datasheet bound' if self.fmax_limit == 'datasheet' else ''}"
                f"{'' if self.meets_timing else ', MISSED'}); "
                f"{self.cycles_per_inference} cycles per inference, "
                f"{self.inferences_per_second:,.0f} inferences/s; link "
                f"{self.link_inferences_per_second:,.0f} inferences/s at {self.baud} baud")

    def text(self) -> str:
        lines = [self.line(), "", f"{'resource':<8} {'used':>8} {'available':>10} {'%':>6}"]
        for k, (u, a) in self.resources.items():
            lines.append(f"{k:<8} {u:>8} {a:>10} {100 * u / a if a else 0:>5.1f}%")
        lines += [
            "",
            f"clock: {self.clock_mhz:.6g} MHz ({self.clock}); nextpnr's Fmax "
            f"{self.nextpnr_fmax_mhz:.2f} MHz" + (
                f"; the hard blocks' datasheet timing allows {self.bound.mhz:.2f} MHz "
                f"({self.bound.reason}); the "
                f"{'datasheet bound' if self.fmax_limit == 'datasheet' else 'nextpnr Fmax'}"
                " sets the limit" if self.bound else ""),
            f"cycles per inference (initiation interval): {self.cycles_per_inference}",
            f"inferences per second at {self.clock_mhz:.6g} MHz: "
            f"{self.inferences_per_second:,.1f}",
            f"UART link at {self.baud} baud: {self.link_bytes} bytes per inference, "
            f"{self.link_inferences_per_second:,.1f} inferences per second",
        ]
        if self.mac_dsp_share is not None:
            used, available = self.dsp_blocks
            lines.append(
                f"DSP blocks multiplying activations by weights: {self.mac_dsps} of {used} "
                f"used ({100 * self.mac_dsp_share:.0f}%); {self.macs:,} MACs per inference "
                f"are {100 * self.dsp_ceiling_share:.1f}% of the chip's DSP MAC ceiling "
                f"({available} DSP blocks x {self.clock_mhz:.4g} MHz)")
        if self.logic_multipliers:
            lines.append(f"MAC multipliers in logic (LUTs): {self.logic_multipliers} of "
                         f"{self.multipliers}")
        if any(self.logic_by_part.values()):
            mapped = sum(self.logic_by_part.values())
            lines.append("LUTs by part (Yosys, before packing): " + ", ".join(
                f"{part} {n:,} ({100 * n / mapped:.0f}%)"
                for part, n in self.logic_by_part.items()))
        lines += [
            "tool times: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()),
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def slowest_fmax(placed: dict) -> float:
    """nextpnr's Fmax of the slowest clock domain in its ``--report`` JSON ``placed``
    (MHz; 0 when it gives none)."""
    return min((entry["achieved"] for entry in placed.get("fmax", {}).values()),
               default=0.0)


def build_report(design, board: Board, build: Path, name: str, identity: Identity,
                 clock_hz: float, baud: int, seconds: dict, clock: str = "") -> BuildReport:
    """The report of ``design`` built for ``board`` in the folder ``build`` (as module
    ``name``) to run at ``clock_hz`` (described by ``clock``): Yosys' cells
    (``<name>.cells.json``) and mapped netlist (:attr:`Board.netlist`), and nextpnr's
    utilisation and Fmax (``<name>.report.json``)."""
    cells = json.loads((build / f"{name}.cells.json").read_text())["design"]
    cells = cells["num_cells_by_type"]
    placed = json.loads((build / f"{name}.report.json").read_text())
    utilization = {cell: entry["used"] for cell, entry in placed["utilization"].items()}
    resources = {}
    for resource, available in board.available.items():
        kinds = board.placed.get(resource)
        used = (count(utilization, kinds) if kinds is not None
                else count(cells, board.cells[resource]))
        resources[resource] = (used, available)
    notes = []
    plan = design.network_plan
    serial = (plan.schedule.requant_interval > 1 if design.architecture == "sequential"
              else any(stage.serial_requantizer for stage in plan.stages))
    compact = design.architecture != "sequential" and any(
        stage.compact_requantizer for stage in plan.stages)
    if board.serial_requantizer and (serial or compact):
        forms = ((["one result per 3-5 cycles"] if serial else [])
                 + ([f"compact where a layer has the time, one result per "
                     f"{COMPACT_REQUANT_INTERVAL} cycles"] if compact else []))
        notes.append(f"requantizers share one 16x16 multiplier per lane ({'; '.join(forms)});"
                     " the cycles per inference count them")
    nextpnr_fmax = slowest_fmax(placed)
    bound = None
    netlist = json.loads((build / board.netlist.format(name=name)).read_text())
    if board.family == "ice40":
        try:
            bound = ice40_bound(placed, cells, clocked=clocked_mac_margin(netlist))
        except ValueError as uncovered:  # no clock this build could be trusted at
            raise Tfl2RtlError(f"the routed design's clock cannot be bounded: {uncovered} "
                               "(a tfl2rtl bug: please report it with the model)") from None
    if identity.memories:
        loaded = sum(m.rows * m.row_bytes for m in identity.memories)
        nodes = ", ".join(str(m.node) for m in identity.memories)
        notes.append(f"the weights of node(s) {nodes} ({loaded:,} bytes) are in SPRAM, "
                     "which the bitstream cannot fill: the host loads them after "
                     "configuration (tfl2rtl infer does it when the board asks)")
    return BuildReport(
        board=board.name, model=Path(design.graph.source).name, bitstream="",
        resources=resources, fmax_mhz=min(nextpnr_fmax, bound.mhz) if bound else nextpnr_fmax,
        nextpnr_fmax_mhz=nextpnr_fmax, bound=bound,
        clock_mhz=clock_hz / 1e6, clock=clock, cycles_per_inference=design.initiation_interval,
        multipliers=design.multipliers, baud=baud,
        macs=int(design.graph.macs), mac_dsps=mac_dsps(design, board),
        logic_multipliers=design.network_plan.logic_multipliers,
        architecture=design.architecture,
        logic_by_part=logic_by_part(netlist, board.cells["LUT"]),
        link_bytes=identity.input.nbytes + identity.output.nbytes + FRAME_BYTES,
        seconds=seconds, notes=notes)
