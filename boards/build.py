"""Bitstreams for real boards: the accelerator behind the UART host link, built with the
open toolchain from the ``yowasp-*`` wheels on an amaranth-boards platform.

:func:`build_graph` plans a model for a board and builds it (lowering a default budget
whose logic overflows); :func:`build_board` builds one planned design.  Each build
elaborates :class:`BoardDesign` (a :class:`~tfl2rtl.boards.link.BoardTop` on the
board's UART, its ``busy`` on an LED) for the board's platform
(:meth:`tfl2rtl.boards.board.Board.make_platform`), clocked by the FPGA's PLL from the
board's oscillator (:mod:`tfl2rtl.boards.clocks`) and held in reset until the PLL locks
and while the button :attr:`~tfl2rtl.boards.board.Board.reset` names is pressed.
:func:`build_board_clocked` finds the clock: the fastest the routed design meets,
re-clocking the routed design on the ULX3S (:func:`reclock_design`), building again
below nextpnr's Fmax when a build misses its clock on the other boards.  Then Yosys,
nextpnr and the packer run one after the other (:func:`tfl2rtl.boards.tools.run`), each
step reported through ``progress``, and :func:`build_board` writes the bitstream and a
report (:mod:`tfl2rtl.boards.report`) into the output folder, atomically.

The pieces live beside this module: the board table and its platform hooks in
:mod:`.board`, weight placement (SPRAM on the iCE40 UP5K, which the host loads over the
link) in :mod:`.memory`, the DSP estimate, the budget search and the fit advice in
:mod:`.fit`, the tools in :mod:`.tools`, the report in :mod:`.report`.  A design that
does not fit raises :class:`DoesNotFit` with one line naming the resource and a
folding that would fit (or why none does).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Module
from amaranth.lib import io, wiring

from tfl2rtl import design as gen
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.output import staged_directory

from .board import BOARDS, Board, DoesNotFit, board_named, toolchain_env
from .clocks import PLLClock, PLLSetting, choose_pll, reclock_config
from .fit import (
    check_cells,
    check_dsp_estimate,
    check_placement,
    dsp_estimate,
    fitting_budget,
    fitting_design,
    sequential_design,
)
from .link import BoardTop
from .memory import check_memory, place_weights
from .protocol import Identity
from .report import BuildReport, build_report, slowest_fmax
from .tools import RouterWatch, ToolStalled, himbaechel_arguments, run, tool
from .uart import divisor_for

__all__ = ["Board", "BOARDS", "BoardDesign", "BuildReport", "DoesNotFit", "build_board",
           "build_plan",
           "build_graph", "build_board_clocked", "board_clock", "board_named",
           "check_memory", "place_weights", "dsp_estimate",
           "fitting_budget", "fitting_design", "toolchain_env", "DEFAULT_BAUD", "TimingMissed",
           "MAX_CLOCK_ATTEMPTS", "CLOCK_MARGIN"]

#: The UART's rate when none is given: the boards' USB bridges (the iCEBreaker's FT2232H,
#: the ULX3S's FT231X, the Tang Nano 9K's BL702) all carry 3 Mbaud.
DEFAULT_BAUD = 3_000_000
NAME = "tfl2rtl_board"
#: Builds :func:`build_board_clocked` tries before it gives up on meeting a clock.
MAX_CLOCK_ATTEMPTS = 4
#: After a build misses its clock, the next one aims this far below the Fmax reached.
CLOCK_MARGIN = 0.97
#: A first miss this close to the clock (Fmax at least this share of it) is built again
#: at the same clock with another seed before the search steps down: placement alone
#: moves an iCE40 design's Fmax by 5-15% (hello_world at 40.5 MHz: 40.46 with nextpnr's
#: default seed, 40.60 with seed 2).  Likewise a first build that meets its clock with an
#: Fmax that clears no faster PLL clock is built again with another seed at the fastest
#: clock within this share of its Fmax, when that is faster.
NARROW_MISS = 0.97
#: Placements :func:`build_board_clocked` tries for one build when nextpnr's placer gives
#: up below 100% utilisation, or its router stops converging
#: (:class:`~tfl2rtl.boards.tools.RouterWatch`; both :attr:`DoesNotFit.at_limit`) before
#: the design counts as overflowing: so near the limit, room depends on the seed (the
#: Conv2D test model's smallest design, 4,984 of the UP5K's 5,280 logic cells, is placed
#: at 30.375 MHz with --seed 2 and not at 24 MHz with nextpnr's default seed).  Retry
#: ``k`` runs nextpnr with ``--seed`` the build's own plus ``PLACEMENT_SEED_STEP * k``.
PLACEMENT_ATTEMPTS = 3
PLACEMENT_SEED_STEP = 100
#: What a :attr:`BuildReport.fmax_limit <tfl2rtl.boards.report.BuildReport.fmax_limit>`
#: names, in words.
FMAX_SOURCES = {"nextpnr": "nextpnr's Fmax",
                "datasheet": "the hard blocks' datasheet timing"}


class TimingMissed(Tfl2RtlError):
    """The routed design's Fmax (``fmax_mhz``, set by ``limit``, a key of
    :data:`FMAX_SOURCES`) is below the clock it was built to run at (``clock_mhz``);
    ``logs`` has nextpnr's log and timing report of that build (file name -> contents),
    its critical paths among them."""

    def __init__(self, message: str, fmax_mhz: float, clock_mhz: float,
                 limit: str = "nextpnr", logs: dict[str, bytes] | None = None):
        super().__init__(message)
        self.fmax_mhz = fmax_mhz
        self.clock_mhz = clock_mhz
        self.limit = limit
        self.logs = dict(logs or {})


class BoardDesign(wiring.Component):
    """``top`` on the platform's first UART (``rx``, ``tx``), ``busy`` on its LED
    ``led`` (none when None), clocked by the board's PLL at ``clock``
    (:class:`~tfl2rtl.boards.clocks.PLLClock` on the platform's oscillator) and held in
    reset until the PLL locks and while the button ``reset`` (a platform resource, or
    None) is pressed; a top whose UART has a domain of its own
    (:attr:`~tfl2rtl.boards.link.BoardTop.uart_domain`) gets the oscillator's clock
    there; place and route aims at ``constraint_mhz`` when given (above the
    clock: :func:`build_board_clocked`).  An accelerator whose weights are in flash (a
    sequential engine's ``flash_*`` ports) gets the platform resource ``flash`` (chip
    select, clock and IO0..IO3).  Its ports are the platform's pins, requested in
    :meth:`elaborate`: the signature is empty."""

    def __init__(self, top: BoardTop, clock: PLLSetting, led: str | None = "led",
                 reset: str | None = None, constraint_mhz: float | None = None,
                 flash: str | None = None):
        self.top = top
        self.flash = flash
        self.clock = clock
        self.constraint_mhz = constraint_mhz
        self.led = led
        self.reset = reset
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        if self.top.uart_domain is not None:  # the UART on the oscillator's clock
            m.domains += ClockDomain(self.top.uart_domain)
        oscillator = platform.request(platform.default_clk, dir="-")
        m.submodules.clock = clock = PLLClock(
            self.clock, oscillator,
            constraint_hz=None if self.constraint_mhz is None else self.constraint_mhz * 1e6,
            reference_domain=self.top.uart_domain)
        m.d.comb += ClockSignal("sync").eq(clock.clk)
        if self.reset is not None:
            m.submodules.button = button = io.Buffer(
                "i", platform.request(self.reset, 0, dir="-"))
            m.d.comb += clock.reset.eq(button.i)
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        if self.led is not None:
            m.submodules.led = led = io.Buffer("o", platform.request(self.led, 0, dir="-"))
            m.d.comb += led.o.eq(top.busy)
        if top.flash:
            if self.flash is None:
                raise Tfl2RtlError("the design reads its weights from flash, and the board "
                                   "has no flash resource for it")
            pins = platform.request(self.flash, 0, dir="-")
            m.submodules.flash_cs = cs = io.Buffer("o", pins.cs)  # (active high: PinsN)
            m.submodules.flash_clk = clk = io.Buffer("o", pins.clk)
            m.submodules.flash_dq = dq = io.Buffer("io", pins.dq)
            m.d.comb += [
                cs.o.eq(~top.flash_cs_n), clk.o.eq(top.flash_sck), dq.o.eq(top.flash_io_o),
                dq.oe.eq(top.flash_io_oe), top.flash_io_i.eq(dq.i),
            ]
        return m


def build_graph(graph, board_name: str, out_dir: str | os.PathLike, *, fold="auto",
                max_multipliers: int | None = None, lanes: int = 1,
                baud: int = DEFAULT_BAUD, clock_mhz: float | None = None,
                progress: Callable[[str], None] | None = None,
                arch: str = "auto", seed: int | None = None,
                weights: str = "auto") -> BuildReport:
    """Plan ``graph`` for the board ``board_name`` (with its requantizers) and build it
    with :func:`build_board_clocked` (at ``clock_mhz``, or the fastest clock the routed
    design meets; ``seed`` is nextpnr's for its first build).  ``arch="sequential"``
    builds a sequential engine instead (:func:`~tfl2rtl.boards.fit.sequential_design`:
    the fastest whose DSP estimate fits, or within ``max_multipliers``).
    ``arch="auto"`` builds the dataflow design and, when even its smallest design does
    not fit (:class:`DoesNotFit`), the sequential engine, saying why in ``progress`` and
    in the report's notes; a model the engine does not take either gets one error with
    both reasons.  With
    ``max_multipliers`` or a fold file the user sizes the dataflow design: ``auto``
    then builds that design only.

    Without ``max_multipliers``, ``--fold auto`` builds the fastest design whose DSP
    estimate fits, some layers' products in logic where the board allows
    (:func:`fitting_design`); when Yosys then maps more DSP or block RAM blocks than the
    device has, or nextpnr finds the logic (LUTs or flip-flops) too large
    (:data:`LOWERED_ON`), the next smaller design
    is built instead, down to one multiplier per layer (``progress`` and the report's
    notes say so).  Each of these designs is built with its compact requantizers (the
    iCE40's, where a layer has the time) serial first
    (:func:`tfl2rtl.design.without_compact_requantizers`: the same cycles, a faster clock
    for more LUTs); when its logic overflows, compact at the same multipliers before a
    smaller design.  With ``max_multipliers`` (or a fold file) every product is a
    multiplier.

    ``weights`` (``"auto"``, ``"chip"`` or ``"flash"``): where a sequential engine keeps
    its weights (:func:`~tfl2rtl.boards.fit.sequential_design`); ``"flash"`` with
    ``arch="auto"`` builds the engine.  A model whose weights exceed the board's block RAM
    and SPRAM (:func:`~tfl2rtl.boards.memory.check_memory`) is built as the engine with
    its weights in flash, unless ``arch="dataflow"`` or the board has no flash reader."""
    target = board_named(board_name)
    say = progress or (lambda message: None)
    interval = target.requant_interval
    if arch not in gen.ARCHITECTURES:
        raise Tfl2RtlError(f"unknown architecture {arch!r}; choose one of "
                           + ", ".join(gen.ARCHITECTURES))
    if weights not in ("auto", "chip", "flash"):
        raise Tfl2RtlError(f"weights in {weights!r}: choose one of auto, chip, flash")
    if weights == "flash" and arch == "dataflow":
        raise Tfl2RtlError("--weights flash is for the sequential engine; the dataflow "
                           "design keeps its weights on chip")
    if weights == "flash" and arch == "auto":
        arch = "sequential"
    try:
        check_memory(graph, target)
    except DoesNotFit as overflow:
        if arch == "dataflow" or target.flash is None or weights == "chip":
            raise
        # Only a sequential engine reading its weights from flash holds them.
        try:
            design = sequential_design(graph, target, lanes=lanes,
                                       max_multipliers=max_multipliers, weights="flash")
        except DoesNotFit as too_large:
            raise DoesNotFit(f"{overflow}; the sequential engine, which would read the "
                             "weights from flash, does not fit either: "
                             f"{_without_prefix(too_large, graph, target)}",
                             too_large.resource) from None
        except Tfl2RtlError as refusal:
            raise DoesNotFit(f"{overflow}; the sequential engine, which would read the "
                             f"weights from flash, does not take it yet: "
                             f"{_without_advice(refusal)}", overflow.resource) from None
        gen.check_sequential_fold(fold)
        why = "the weights do not fit on chip"
        say(f"{why}: building the sequential engine, its weights in flash")
        return _build_engine(design, graph, board_name, out_dir, baud=baud,
                             clock_mhz=clock_mhz, progress=progress,
                             lowered=max_multipliers is None,
                             notes=[f"sequential engine, weights in flash: {why}"], seed=seed)
    if arch == "auto":
        try:
            return build_graph(graph, board_name, out_dir, fold=fold,
                               max_multipliers=max_multipliers, lanes=lanes, baud=baud,
                               clock_mhz=clock_mhz, progress=progress, arch="dataflow",
                               seed=seed)
        except DoesNotFit as overflow:
            if max_multipliers is not None or fold not in (None, "auto"):
                raise  # a dataflow design the user sized: the advice is theirs
            reason, resource = str(overflow), overflow.resource
        try:
            design = sequential_design(graph, target, lanes=lanes,
                                       max_multipliers=max_multipliers, weights=weights)
        except Tfl2RtlError as refusal:
            raise DoesNotFit(f"{reason}; the sequential engine does not take it either: "
                             f"{_without_advice(refusal)}", resource) from None
        why = f"the dataflow design does not fit ({reason})"
        say(f"{why}: building the sequential engine")
        return _build_engine(design, graph, board_name, out_dir, baud=baud,
                             clock_mhz=clock_mhz, progress=progress, lowered=True,
                             notes=[f"sequential engine: {why}"], seed=seed)
    if arch == "sequential":
        gen.check_sequential_fold(fold)
        design = sequential_design(graph, target, lanes=lanes,
                                   max_multipliers=max_multipliers, weights=weights)
        return _build_engine(design, graph, board_name, out_dir, baud=baud,
                             clock_mhz=clock_mhz, progress=progress,
                             lowered=max_multipliers is None, seed=seed)
    chosen = max_multipliers is None and fold in (None, "auto")
    if chosen:
        design = fitting_design(graph, target, lanes=lanes, requant_interval=interval)
        check_dsp_estimate(design, target)  # not even the smallest design fits
        if design.network_plan.logic_multipliers:
            say(f"{design.multipliers} multipliers, {design.network_plan.logic_multipliers}"
                " of them in logic (the DSP blocks do the rest)")
    else:
        budget = (fitting_budget(graph, target, lanes=lanes, requant_interval=interval)
                  if max_multipliers is None else max_multipliers)
        design = gen.plan(graph, fold, budget, lanes=lanes, requant_interval=interval)
    # A default design's compact requantizers are serial ones (shorter paths, a faster
    # clock); after a LUT overflow, the compact ones at the same multipliers.
    if chosen:
        design, compact_form = _serial_first(design)
    else:
        compact_form = None
    first = design
    lowered_note = compact_note = None
    while True:
        notes = [note for note in (lowered_note, compact_note) if note]
        try:
            return build_board_clocked(design, board_name, out_dir, baud=baud,
                                       clock_mhz=clock_mhz, progress=progress, notes=notes,
                                       seed=seed)
        except DoesNotFit as overflow:
            if not chosen or overflow.resource not in LOWERED_ON:
                raise
            if overflow.resource == "LUT" and compact_form is not None:
                say(f"LUT overflows with {design.multipliers} multipliers and serial "
                    "requantizers; trying compact ones")
                compact_note = (f"the design did not fit with {design.multipliers} "
                                "multipliers and serial requantizers (LUT overflowed): built "
                                "with compact ones where a layer has the time")
                design, compact_form = compact_form, None
                continue
            # the fastest design with fewer multipliers
            smaller = fitting_design(graph, target, lanes=lanes, requant_interval=interval,
                                     below=design.multipliers)
            if smaller is None:  # already one multiplier per layer
                raise overflow from None
            smaller, compact_form = _serial_first(smaller)
            in_logic = smaller.network_plan.logic_multipliers
            say(f"{overflow.resource} overflows with {design.multipliers} multipliers; "
                f"trying {smaller.multipliers}"
                + (f" ({in_logic} in logic)" if in_logic else ""))
            design, compact_note = smaller, None
            lowered_note = (f"the design did not fit with {first.multipliers} multipliers "
                            f"({overflow.resource} overflowed): built "
                            f"with {design.multipliers}, initiation interval "
                            f"{design.initiation_interval} cycles instead of "
                            f"{first.initiation_interval}")


def _serial_first(design):
    """``design`` with its compact requantizers serial, and the compact ``design`` to
    fall back on after a LUT overflow (None when it has no compact requantizers)."""
    if not any(s.compact_requantizer for s in design.network_plan.stages):
        return design, None
    return gen.without_compact_requantizers(design), design


def _without_prefix(overflow: DoesNotFit, graph, board: Board) -> str:
    """An overflow's message without its ``<model> does not fit <board>: ``."""
    return str(overflow).removeprefix(f"{Path(graph.source).name} does not fit "
                                      f"{board.name}: ")


def _without_advice(refusal: Exception) -> str:
    """The engine's refusal without its advice to build the dataflow design or to keep
    the weights on chip (which is what did not fit)."""
    return str(refusal).removesuffix("; use --arch dataflow").removesuffix(
        "; use --weights chip")


#: The resources whose overflow makes a default build try the next smaller design: the
#: DSP blocks and the logic, and the block RAM, whose weight memories are as wide as
#: their layers' multipliers (a shallow memory of a wide row fills few of a block's
#: words: vww_96_int8's default design needed 210 DP16KD of 208), and the routing, when
#: nextpnr's router does not converge with any of the :data:`PLACEMENT_ATTEMPTS` seeds.
LOWERED_ON = ("LUT", "FF", "DSP", "BRAM", "routing")


def _engine_text(design) -> str:
    plan = design.network_plan
    lanes = plan.schedule.requant_lanes
    return (f"{plan.schedule.pe} x {plan.schedule.simd} multipliers and {lanes} requantizer "
            f"lane{'s' if lanes > 1 else ''}")


def _build_engine(design, graph, board_name: str, out_dir, *, baud: int,
                  clock_mhz: float | None, progress, lowered: bool,
                  notes: list[str] | tuple[str, ...] = (),
                  seed: int | None = None) -> BuildReport:
    """Build a sequential engine with :func:`build_board_clocked`; with ``lowered`` (the
    engine the board planner chose), an engine whose logic (LUTs or flip-flops)
    overflows in nextpnr is replaced by the next smaller one
    (:func:`~tfl2rtl.boards.fit.sequential_design` ``below=``), saying so."""
    say = progress or (lambda message: None)
    first, notes = design, list(notes)
    while True:
        try:
            return build_board_clocked(design, board_name, out_dir, baud=baud,
                                       clock_mhz=clock_mhz, progress=progress,
                                       notes=notes, seed=seed)
        except DoesNotFit as overflow:
            if not lowered or overflow.resource not in ("LUT", "FF", "routing"):
                raise
            smaller = sequential_design(graph, board_named(board_name),
                                        lanes=design.lanes, below=design,
                                        weights=design.network_plan.weights)
            if smaller is None:
                raise overflow from None
            say(f"{overflow.resource} overflows with the engine of {_engine_text(design)}; "
                f"trying {_engine_text(smaller)}")
            design = smaller
            notes = [n for n in notes if not n.startswith("the engine did not fit")] + [
                f"the engine did not fit with {_engine_text(first)} "
                f"({overflow.resource} overflowed): built with {_engine_text(design)}, at "
                f"most {design.initiation_interval} cycles per inference instead of "
                f"{first.initiation_interval}"]


#: The flash image a build writes beside the bitstream when the weights are in flash.
FLASH_IMAGE = "flash_{board}.bin"


def write_flash_image(plan, bitstream: bytes, board: Board, out_dir: Path) -> str:
    """Write ``flash_<board>.bin`` into ``out_dir``: ``bitstream`` at address 0 (where
    the FPGA configures from), erased bytes (0xFF) up to ``plan.flash_base`` and the
    engine's weights there (:meth:`~tfl2rtl.hw.engine.SequentialPlan.flash_image`).
    Returns the report's note saying how to program it."""
    weights = plan.flash_image()
    if len(bitstream) > plan.flash_base:
        raise Tfl2RtlError(f"the bitstream ({len(bitstream):,} bytes) overlaps the weights "
                           f"at flash address {plan.flash_base:#x}")
    name = FLASH_IMAGE.format(board=board.name)
    image = bitstream + b"\xff" * (plan.flash_base - len(bitstream)) + weights
    (out_dir / name).write_bytes(image)
    ways = " or ".join(f"`{command.format(image=name)}` ({source})"
                       for command, source in board.flash_program)
    return (f"weights in flash: {len(weights):,} bytes at {plan.flash_base:#x}; program "
            f"{name} (bitstream and weights) into the board's flash with {ways}")


def board_clock(board: Board, limit_mhz: float, baud: int) -> PLLSetting:
    """The fastest clock ``board``'s PLL makes from its oscillator at or below
    ``limit_mhz`` that carries ``baud`` (:func:`tfl2rtl.boards.clocks.choose_pll`; any
    clock on a board whose UART runs on the oscillator, :attr:`Board.reclock`)."""
    oscillator = board.make_platform().default_clk_frequency
    return choose_pll(board.family, oscillator, limit_mhz * 1e6,
                      None if board.reclock else baud)


def uart_clock_hz(board: Board, clock: PLLSetting) -> float:
    """The clock of ``board``'s UART with its PLL at ``clock``: the PLL's, or the
    oscillator's where the UART runs on it (:attr:`Board.reclock`)."""
    return float(clock.input_hz if board.reclock else clock.output_hz)


def uart_divisor(board: Board, clock: PLLSetting, baud: int):
    """The UART's cycles per bit on ``board`` with its PLL at ``clock``
    (:func:`uart_clock_hz`)."""
    return divisor_for(uart_clock_hz(board, clock), baud)


def build_board_clocked(design, board_name: str, out_dir: str | os.PathLike, *,
                        baud: int = DEFAULT_BAUD, clock_mhz: float | None = None,
                        progress: Callable[[str], None] | None = None,
                        notes: list[str] | tuple[str, ...] = (),
                        seed: int | None = None) -> BuildReport:
    """Build ``design`` with :func:`build_board` at a clock the routed design meets;
    ``seed`` (when given) is nextpnr's ``--seed`` for the first build.

    With ``clock_mhz``: at the fastest PLL clock at or below it (:func:`board_clock`);
    a design that misses it raises :class:`TimingMissed` naming the Fmax reached.
    Without, on a board with :attr:`Board.reclock`: one build, aimed at the board's
    estimate for the design (:meth:`~tfl2rtl.boards.board.Board.first_clock_mhz`), its
    routed design re-clocked to the fastest PLL clock its Fmax clears (``progress``
    says so); when that clock is short of the one aimed at by more than
    :data:`NARROW_MISS`, the design is placed and routed once more with another seed
    (placement alone moves ResNet-8's Fmax between 62.8 and 78.9 MHz), and that
    bitstream replaces the first only when it runs faster.  Without, on the other
    boards: the first build runs at that estimate; when nextpnr's Fmax falls short, the
    next runs at most at :data:`CLOCK_MARGIN` times that Fmax (``progress``
    says so), except that a first miss within :data:`NARROW_MISS` of its clock is built
    again at that clock with another seed, and a first build that meets its clock with an
    Fmax that clears no faster PLL clock is built again at the fastest clock within
    :data:`NARROW_MISS` of that Fmax, if that is faster (another placement may reach
    it).  When a build meets its clock with an Fmax that clears a faster PLL clock than
    any met so far, the next build tries that clock
    (a bitstream at the slower clock stays written: a faster build that misses leaves it
    in place); when that one misses, the next tries the clock in between, at most
    :data:`CLOCK_MARGIN` times the Fmax it reached, if that is still faster than the
    clock met (and never again a clock at or above one that missed).  Place and route keeps
    aiming at the first estimate (nextpnr works less hard for a lower target, and its
    Fmax follows the target down), and every build after the first runs nextpnr with its
    own ``--seed`` (the attempt's number, counted on from ``seed``), so a clock tried
    again is placed afresh.  At
    most :data:`MAX_CLOCK_ATTEMPTS` builds in all; the result is the fastest met, and
    its ``logs/`` also hold nextpnr's log (critical paths included) of each build
    before it that missed, as ``missed-<clock>MHz-<file>``."""
    board = board_named(board_name)
    say = progress or (lambda message: None)
    seeded = "" if seed is None else f" (nextpnr --seed {seed})"
    if clock_mhz is not None:
        setting = board_clock(board, clock_mhz, baud)
        return _build_placed(design, board_name, out_dir, baud=baud, clock=setting,
                             clock_reason=f"--clock-mhz {clock_mhz:g}{seeded}",
                             progress=progress, notes=notes, seed=seed)
    estimate = board.first_clock_mhz(design)
    setting = board_clock(board, estimate, baud)
    kind = (" with products in logic" if estimate != board.clock_estimate_mhz else "")
    if board.reclock:
        aim = f"placed and routed aiming at the first estimate for {board.family}{kind}, " \
              f"{estimate:g} MHz"
        first = _build_placed(design, board_name, out_dir, baud=baud, clock=setting,
                              clock_reason=aim + seeded, constraint_mhz=estimate,
                              progress=progress, notes=notes, seed=seed, reclock=True)
        if first.clock_mhz >= NARROW_MISS * setting.output_mhz:
            return first
        again = (seed or 0) + 2  # (the seed of the other boards' second build)
        say(f"the routed design runs at {first.clock_mhz:.6g} MHz, short of the "
            f"{setting.output_mhz:.6g} MHz aimed at: placing again with nextpnr --seed "
            f"{again}, kept if faster")
        try:
            return _build_placed(
                design, board_name, out_dir, baud=baud, clock=setting,
                clock_reason=(f"{aim} (nextpnr --seed {again}; the first placement ran at "
                              f"{first.clock_mhz:.6g} MHz)"),
                constraint_mhz=estimate, progress=progress, notes=notes, seed=again,
                reclock=True, faster_than=first.clock_mhz)
        except (TimingMissed, DoesNotFit) as slower:
            reached = (f"reached {slower.fmax_mhz:.1f} MHz" if isinstance(slower, TimingMissed)
                       else f"did not fit ({slower.resource})")
            say(f"the second placement {reached}; keeping the bitstream at "
                f"{first.clock_mhz:.6g} MHz")
            return first
    reason = f"the first estimate for {board.family}{kind}, {estimate:g} MHz, was met"
    best: BuildReport | None = None
    ceiling = math.inf  # the slowest clock that missed after one was met, in Hz
    missed_logs: dict[str, bytes] = {}
    for attempt in range(1, MAX_CLOCK_ATTEMPTS + 1):
        # the attempt's own seed after the first (counted on from the one given)
        this_seed = seed if attempt == 1 else (seed or 0) + attempt
        if this_seed is not None:
            reason += f" (nextpnr --seed {this_seed})"
        try:
            report = _build_placed(design, board_name, out_dir, baud=baud, clock=setting,
                                   clock_reason=reason, constraint_mhz=estimate,
                                   progress=progress, notes=notes, seed=this_seed,
                                   earlier_logs=missed_logs)
        except TimingMissed as missed:
            missed_logs.update({f"missed-{setting.output_mhz:.6g}MHz-{name}": contents
                                for name, contents in missed.logs.items()})
            if best is not None:
                ceiling = min(ceiling, float(setting.output_hz))
                between = board_clock(board, missed.fmax_mhz * CLOCK_MARGIN, baud)
                if (attempt == MAX_CLOCK_ATTEMPTS
                        or between.output_mhz <= best.clock_mhz
                        or float(between.output_hz) >= ceiling):
                    say(f"timing missed at {setting.output_mhz:.6g} MHz "
                        f"({FMAX_SOURCES[missed.limit]} {missed.fmax_mhz:.1f} MHz); keeping "
                        f"the bitstream at {best.clock_mhz:.6g} MHz")
                    return best
            elif attempt == MAX_CLOCK_ATTEMPTS:
                raise
            if (best is None and attempt == 1
                    and missed.fmax_mhz >= NARROW_MISS * setting.output_mhz):
                reason = (f"{FMAX_SOURCES[missed.limit]} reached {missed.fmax_mhz:.1f} MHz "
                          f"at {setting.output_mhz:.6g} MHz: built again with another "
                          "placement")
                say(f"timing missed at {setting.output_mhz:.6g} MHz "
                    f"({FMAX_SOURCES[missed.limit]} {missed.fmax_mhz:.1f} MHz); building "
                    "again at the same clock with another placement seed")
                continue
            limit = min(missed.fmax_mhz * CLOCK_MARGIN, setting.output_mhz * CLOCK_MARGIN)
            reason = (f"{FMAX_SOURCES[missed.limit]} reached {missed.fmax_mhz:.1f} MHz at "
                      f"{setting.output_mhz:.6g} MHz: built again at most "
                      f"{100 * CLOCK_MARGIN:g}% of that")
            say(f"timing missed at {setting.output_mhz:.6g} MHz ({FMAX_SOURCES[missed.limit]} "
                f"{missed.fmax_mhz:.1f} MHz); building again for {limit:.4g} MHz or below")
            setting = board_clock(board, limit, baud)
            continue
        best = report
        faster = board_clock(board, report.fmax_mhz, baud)
        if attempt == 1 and faster.output_hz <= setting.output_hz:
            # Met with little to spare: the fastest clock another placement may reach.
            reach = board_clock(board, report.fmax_mhz / NARROW_MISS, baud)
            if reach.output_hz > setting.output_hz:
                say(f"timing met at {setting.output_mhz:.6g} MHz with "
                    f"{FMAX_SOURCES[report.fmax_limit]} {report.fmax_mhz:.1f} MHz; building "
                    f"again for {reach.output_mhz:.6g} MHz with another placement seed")
                reason = (f"{FMAX_SOURCES[report.fmax_limit]} reached {report.fmax_mhz:.1f} "
                          f"MHz at {setting.output_mhz:.6g} MHz: built again within "
                          f"{100 * (1 - NARROW_MISS):.0f}% above it with another placement")
                setting = reach
                continue
        if (attempt == MAX_CLOCK_ATTEMPTS or faster.output_hz <= setting.output_hz
                or float(faster.output_hz) >= ceiling):
            return best
        say(f"timing met at {setting.output_mhz:.6g} MHz with {FMAX_SOURCES[report.fmax_limit]} "
            f"{report.fmax_mhz:.1f} MHz; building again for {faster.output_mhz:.6g} MHz")
        reason = (f"{FMAX_SOURCES[report.fmax_limit]} reached {report.fmax_mhz:.1f} MHz at "
                  f"{setting.output_mhz:.6g} MHz: built again at that Fmax")
        setting = faster
    raise AssertionError("unreachable")


def reclock_design(board: Board, build: Path, clock: PLLSetting, baud: int
                   ) -> tuple[PLLSetting, str]:
    """After place and route in ``build`` on a board with :attr:`Board.reclock`: the
    fastest PLL clock at or below nextpnr's Fmax (the slowest of the design's clocks;
    its timing does not depend on the clock it aimed at), written into the routed
    configuration (``<NAME>.config``, which the packer reads next) when it is not
    ``clock``; returns the clock and a line saying what changed (empty when nothing)."""
    placed = json.loads((build / f"{NAME}.report.json").read_text())
    fmax = slowest_fmax(placed)
    if fmax <= 0:
        raise Tfl2RtlError("nextpnr reported no Fmax for the routed design: it cannot be "
                           "re-clocked (a tfl2rtl bug: please report it)")
    fastest = board_clock(board, fmax, baud)
    if fastest.output_hz == clock.output_hz:
        return clock, ""
    config = build / f"{NAME}.config"
    config.write_text(reclock_config(config.read_text(), clock, fastest))
    return fastest, (f"nextpnr's Fmax {fmax:.1f} MHz aiming at {clock.output_mhz:.6g} MHz: "
                     f"the routed design re-clocked to {fastest.output_mhz:.6g} MHz (its "
                     "PLL set again, no second place and route)")


def _check_early_cells(design, board: Board, build: Path, say) -> None:
    """After Yosys failed: raise :class:`DoesNotFit` when it stopped at
    :func:`early_cell_check` (the cells it counted then overflow the device)."""
    early = build / EARLY_CELLS
    if not early.exists() or (build / f"{NAME}.cells.json").exists():
        return
    cells = json.loads(early.read_text())["design"]["num_cells_by_type"]
    try:
        check_cells(design, board, cells)
    except DoesNotFit:
        say("synthesis (Yosys) stopped once the memories and multipliers were mapped")
        raise


def _build_placed(design, board_name: str, out_dir, *, seed: int | None,
                  clock_reason: str, progress: Callable[[str], None] | None,
                  **kwargs) -> BuildReport:
    """:func:`build_board`, placed again with another seed (up to
    :data:`PLACEMENT_ATTEMPTS` in all) while nextpnr's placer gives up at the utilisation
    limit or its router stops converging (:attr:`DoesNotFit.at_limit`); the report's
    clock line names the seed that placed it."""
    say = progress or (lambda message: None)
    this_seed, reason = seed, clock_reason
    for attempt in range(1, PLACEMENT_ATTEMPTS + 1):
        try:
            return build_board(design, board_name, out_dir, seed=this_seed,
                               clock_reason=reason, progress=progress, **kwargs)
        except DoesNotFit as overflow:
            if not overflow.at_limit or attempt == PLACEMENT_ATTEMPTS:
                raise
            tried = "nextpnr's default seed" if this_seed is None else f"--seed {this_seed}"
            this_seed = (seed or 0) + PLACEMENT_SEED_STEP * attempt
            what = ("router did not converge" if overflow.resource == "routing"
                    else "placer gave up at the utilisation limit")
            reason = (f"{clock_reason}; placed with nextpnr --seed {this_seed} (the {what} "
                      f"with {tried})")
            say(f"nextpnr's {what} with {tried}; placing again with --seed {this_seed}")
    raise AssertionError("unreachable")


#: The cells Yosys has mapped when :attr:`Board.early_cells` stops its synthesis
#: command (the DSP and block RAM counts are final then).
EARLY_CELLS = f"{NAME}.early_cells.json"


def early_cell_check(board: Board) -> list[str]:
    """The Yosys commands, for a board with :attr:`Board.early_cells`, that write the
    cells mapped so far (:data:`EARLY_CELLS`) and stop the script when the DSP or block
    RAM cells exceed the device (a failed ``select -assert-max``); none otherwise."""
    if not board.early_cells:
        return []
    checks = [f"tee -q -o {EARLY_CELLS} stat -json"]
    for resource in ("DSP", "BRAM"):
        if resource in board.cells:
            kinds = " ".join(f"t:{kind}" for kind in board.cells[resource])
            checks.append(f"select -assert-max {board.available.get(resource, 0)} {kinds}")
    return checks


def build_plan(design, board: Board, identity: Identity, clock: PLLClock, baud: int,
               aim_mhz: float):
    """The Amaranth build plan (files and tool commands, ``build_<NAME>.json``) of
    ``design`` (with its weights placed) behind the host link on ``board``, clocked by
    ``clock`` and placed and routed aiming at ``aim_mhz``; the Yosys script also writes
    the mapped cells' counts, ``<NAME>.cells.json`` (and on a board with
    :attr:`Board.early_cells` the DSP and block RAM cells' before the logic is mapped,
    stopping when they overflow: :func:`early_cell_check`)."""
    top = BoardTop(design.network(), identity, divisor=uart_divisor(board, clock, baud),
                   uart_domain="uart" if board.reclock else None)
    overrides = {k: v.format(name=NAME, clock_mhz=f"{aim_mhz:.6g}")
                 for k, v in board.overrides.items()}
    overrides["script_after_synth"] = "\n".join(
        [*early_cell_check(board),
         *(command.format(name=NAME) for command in board.synth_after),
         f"tee -q -o {NAME}.cells.json stat -json"])
    return board.make_platform().prepare(
        BoardDesign(top, clock, board.led, board.reset, constraint_mhz=aim_mhz,
                    flash=board.flash), name=NAME, **overrides)


def build_board(design, board_name: str, out_dir: str | os.PathLike, *,
                baud: int = DEFAULT_BAUD, clock: PLLSetting | None = None,
                clock_reason: str = "", constraint_mhz: float | None = None,
                progress: Callable[[str], None] | None = None,
                keep_build: bool = False, notes: list[str] | tuple[str, ...] = (),
                seed: int | None = None, earlier_logs: dict[str, bytes] | None = None,
                reclock: bool = False, faster_than: float | None = None) -> BuildReport:
    """Build ``design`` (a :class:`tfl2rtl.design.Design`) for the board ``board_name``
    (a key of :data:`BOARDS`) to run at ``clock`` (a PLL setting; default: the fastest at
    or below the board's :attr:`~tfl2rtl.boards.board.Board.clock_estimate_mhz`, see
    :func:`board_clock`) with its UART at ``baud``, and write into ``out_dir``
    (atomically: all of it or nothing): the bitstream ``tfl2rtl_<board>.<ext>``,
    ``report.json``, ``report.txt``, ``manifest.json`` (the design's, plus the board,
    its clock and the link), for an engine whose weights are in flash the flash image
    (:func:`write_flash_image`), and the tools' logs in ``logs/`` (with ``keep_build``,
    the whole build folder in ``build/``).

    ``progress`` gets a line before and after each long step; ``clock_reason`` (what set
    the clock) and ``notes`` go into the report.  ``constraint_mhz`` (at least the clock)
    is the frequency place and route aims at; ``seed`` (when given) is nextpnr's
    ``--seed``; ``earlier_logs`` (file name -> contents: the logs of builds that missed
    their clock, :attr:`TimingMissed.logs`) go into ``logs/`` beside this build's.
    With ``reclock`` (on a board with :attr:`Board.reclock`), the routed design's PLL is
    then set to the fastest clock at or below nextpnr's Fmax (:func:`reclock_design`),
    faster or slower than ``clock``, and the bitstream packed at that clock; with
    ``faster_than`` (MHz) a re-clocked design no faster than that raises
    :class:`TimingMissed` (writing nothing: a faster bitstream is already written).
    Raises :class:`DoesNotFit` when the design needs more of a resource than the device
    has, and :class:`TimingMissed` (writing nothing) when the routed design's Fmax is
    below the clock."""
    board = board_named(board_name)
    if reclock and not board.reclock:
        raise Tfl2RtlError(f"a routed design for {board.name} cannot be re-clocked")
    say = progress or (lambda message: None)
    earlier_logs = earlier_logs or {}
    in_flash = design.weights_in_flash
    if not in_flash:
        check_memory(design.graph, board)
    design = place_weights(design, board)
    if clock is None:
        clock = board_clock(board, board.clock_estimate_mhz, baud)
    clock_hz = float(clock.output_hz)
    identity = Identity.of_design(design)
    seconds = {}

    began = time.perf_counter()
    say(f"elaborating {Path(design.graph.source).name} for {board.description} at "
        f"{clock.output_mhz:.6g} MHz")
    plan = build_plan(design, board, identity, clock, baud,
                      max(clock.output_mhz, constraint_mhz or 0.0))
    seconds["elaborate"] = time.perf_counter() - began

    with tempfile.TemporaryDirectory(prefix="tfl2rtl-board-") as scratch:
        build = Path(scratch) / "build"
        plan.extract(build)
        commands = json.loads((build / f"build_{NAME}.json").read_text())["commands"]
        tools = {name: tool(script) for name, script in board.tools.items()}
        steps = {"yosys": "synthesis (Yosys)", "nextpnr": "place and route (nextpnr)"}
        for command in commands:
            program = command[0]
            label = next((v for k, v in steps.items() if program.startswith(k)),
                         f"packing ({program})")
            say(f"{label} ...")
            log = build / f"{program}.log"
            arguments = command[1:]
            if board.tools[program].startswith("yowasp-nextpnr-himbaechel"):
                arguments = himbaechel_arguments(arguments)
            if program.startswith("nextpnr") and seed is not None:
                arguments = [*arguments, "--seed", str(seed)]
            routing = program.startswith("nextpnr")
            try:
                elapsed = run([tools[program], *arguments], build, log,
                              watch=RouterWatch() if routing else None,
                              watched=build / f"{NAME}.tim" if routing else None)
            except ToolStalled as stalled:
                raise DoesNotFit(f"{Path(design.graph.source).name} does not fit "
                                 f"{board.name}: routing does not converge ({stalled.reason})",
                                 "routing", at_limit=True) from None
            except Tfl2RtlError:
                if program.startswith("nextpnr"):
                    check_placement(design, board, log, build / f"{NAME}.tim")
                if program == "yosys":
                    _check_early_cells(design, board, build, say)
                raise
            seconds[program.split("-")[0]] = elapsed
            say(f"{label} done in {elapsed:.1f} s")
            if routing and reclock:
                clock, change = reclock_design(board, build, clock, baud)
                if change:
                    say(change)
                    clock_reason = f"{clock_reason}; {change}" if clock_reason else change
                    clock_hz = float(clock.output_hz)
            if program == "yosys":
                stat = json.loads((build / f"{NAME}.cells.json").read_text())
                check_cells(design, board, stat["design"]["num_cells_by_type"])
        description = clock.describe() + (f"; {clock_reason}" if clock_reason else "")
        report = build_report(design, board, build, NAME, identity, clock_hz, baud, seconds,
                              clock=description)
        report.notes += notes
        if faster_than is not None and clock.output_mhz <= faster_than:
            raise TimingMissed(
                f"{report.model} on {board.name} reaches {report.fmax_mhz:.1f} MHz, no "
                f"faster than the {faster_than:.6g} MHz built before", report.fmax_mhz,
                clock.output_mhz, report.fmax_limit)
        if not report.meets_timing:
            raise TimingMissed(
                f"{report.model} on {board.name} reaches {report.fmax_mhz:.1f} MHz "
                f"({FMAX_SOURCES[report.fmax_limit]}), short "
                f"of the {clock.output_mhz:.6g} MHz clock: choose --clock-mhz "
                f"{int(report.fmax_mhz)} or lower, or leave it out to let the build "
                f"find the clock", report.fmax_mhz, clock.output_mhz, report.fmax_limit,
                logs={log.name: log.read_bytes() for log in
                      [*build.glob("*.tim"), *build.glob("*.report.json")]})

        bitstream = build / f"{NAME}.{board.bitstream}"
        with staged_directory(out_dir) as tmp:
            target = f"tfl2rtl_{board.name}.{board.bitstream}"
            shutil.copyfile(bitstream, tmp / target)
            report.bitstream = target
            if in_flash:
                report.flash_image = FLASH_IMAGE.format(board=board.name)
                report.notes += [write_flash_image(design.network_plan, bitstream.read_bytes(),
                                                   board, tmp)]
            (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
            (tmp / "report.txt").write_text(report.text())
            manifest = design.manifest()
            manifest["board"] = {"name": board.name, "description": board.description,
                                 "clock_mhz": clock_hz / 1e6,
                                 "pll": {"primitive": clock.describe(),
                                         **clock.parameters},
                                 "oscillator_mhz": float(clock.input_hz) / 1e6,
                                 "baud": baud,
                                 "uart_divisor": float(uart_divisor(board, clock, baud)),
                                 "uart_clock_mhz": uart_clock_hz(board, clock) / 1e6,
                                 "identity": identity.pack().hex(),
                                 "loaded_weights": [m.node for m in identity.memories]}
            if in_flash:
                manifest["flash"].update(image=report.flash_image, image_base=0)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            (tmp / "logs").mkdir()
            for log in [*build.glob("*.log"), *build.glob("*.rpt"), *build.glob("*.tim"),
                        *build.glob("*.report.json")]:
                shutil.copyfile(log, tmp / "logs" / log.name)
            for name, contents in earlier_logs.items():
                (tmp / "logs" / name).write_bytes(contents)
            if keep_build:
                shutil.copytree(build, tmp / "build")
    return report
