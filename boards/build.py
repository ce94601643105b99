"""Bitstreams for real boards: the accelerator behind the UART host link, built with the
open toolchain from the ``yowasp-*`` wheels on an amaranth-boards platform.

:func:`build_graph` plans a model for a board and builds it (lowering a default budget
whose logic overflows); :func:`build_board` builds one planned design.  Each build
elaborates :class:`BoardDesign` (a :class:`~tfl2rtl.boards.link.BoardTop` on the
board's UART, its ``busy`` on an LED) for the board's platform
(:meth:`tfl2rtl.boards.board.Board.make_platform`), which supplies the clock from the
board's oscillator and a reset (the platform's power-on reset, and a button where
:attr:`~tfl2rtl.boards.board.Board.reset` names one).  Then Yosys, nextpnr and the
packer run one after the other (:func:`tfl2rtl.boards.tools.run`), each step reported
through ``progress``, and :func:`build_board` writes the bitstream and a report
(:mod:`tfl2rtl.boards.report`) into the output folder, atomically.

The pieces live beside this module: the board table and its platform hooks in
:mod:`.board`, weight placement (SPRAM on the iCE40 UP5K, which the host loads over the
link) in :mod:`.memory`, the DSP estimate, the budget search and the fit advice in
:mod:`.fit`, the tools in :mod:`.tools`, the report in :mod:`.report`.  A design that
does not fit raises :class:`DoesNotFit` with one line naming the resource and a
folding that would fit (or why none does).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import io, wiring

from tfl2rtl import design as gen
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.output import staged_directory

from .board import BOARDS, Board, DoesNotFit, board_named, toolchain_env
from .fit import check_cells, check_placement, dsp_estimate, fitting_budget
from .link import BoardTop
from .memory import check_memory, place_weights
from .protocol import Identity
from .report import BuildReport, build_report
from .tools import himbaechel_arguments, run, tool
from .uart import divisor_for

__all__ = ["Board", "BOARDS", "BoardDesign", "BuildReport", "DoesNotFit", "build_board",
           "build_graph", "board_named", "check_memory", "place_weights", "dsp_estimate",
           "fitting_budget", "toolchain_env", "DEFAULT_BAUD"]

DEFAULT_BAUD = 115200
NAME = "tfl2rtl_board"


class BoardDesign(wiring.Component):
    """``top`` on the platform's first UART (``rx``, ``tx``), ``busy`` on its LED
    ``led`` (none when None).  Its ports are the platform's pins, requested in
    :meth:`elaborate`: the signature is empty."""

    def __init__(self, top: BoardTop, led: str | None = "led"):
        self.top = top
        self.led = led
        super().__init__({})

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


def build_graph(graph, board_name: str, out_dir: str | os.PathLike, *, fold="auto",
                max_multipliers: int | None = None, lanes: int = 1,
                baud: int = DEFAULT_BAUD, progress: Callable[[str], None] | None = None
                ) -> BuildReport:
    """Plan ``graph`` for the board ``board_name`` (with its requantizers) and build it
    with :func:`build_board`.

    Without ``max_multipliers``, ``--fold auto`` uses the board's own budget, lowered
    until the DSP blocks suffice (:func:`fitting_budget`); when nextpnr then finds the
    logic (LUTs or flip-flops) too large, the next smaller design is built instead,
    down to one multiplier per layer (``progress`` and the report's notes say so)."""
    target = board_named(board_name)
    check_memory(graph, target)
    say = progress or (lambda message: None)
    interval = target.requant_interval
    chosen = max_multipliers is None and fold in (None, "auto")
    budget = (fitting_budget(graph, target, lanes=lanes, requant_interval=interval)
              if max_multipliers is None else max_multipliers)
    design = gen.plan(graph, fold, budget, lanes=lanes, requant_interval=interval)
    first = design
    notes = []
    while True:
        try:
            return build_board(design, board_name, out_dir, baud=baud, progress=progress,
                               notes=notes)
        except DoesNotFit as overflow:
            if not chosen or overflow.resource not in ("LUT", "FF"):
                raise
            try:  # the largest design with fewer multipliers
                smaller = gen.plan(graph, "auto", design.multipliers - 1, lanes=lanes,
                                   requant_interval=interval)
            except Tfl2RtlError:  # already one multiplier per layer
                raise overflow from None
            say(f"{overflow.resource} overflows with {design.multipliers} multipliers; "
                f"trying --max-multipliers {design.multipliers - 1}")
            design = smaller
            notes = [f"the logic did not fit with {first.multipliers} multipliers "
                     f"(--max-multipliers {budget}, {overflow.resource} overflowed): built "
                     f"with {design.multipliers}, initiation interval "
                     f"{design.initiation_interval} cycles instead of "
                     f"{first.initiation_interval}"]


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
            try:
                elapsed = run([tools[program], *arguments], build, log)
            except Tfl2RtlError:
                if program.startswith("nextpnr"):
                    check_placement(design, board, log, build / f"{NAME}.tim")
                raise
            seconds[program.split("-")[0]] = elapsed
            say(f"{label} done in {elapsed:.1f} s")
            if program == "yosys":
                stat = json.loads((build / f"{NAME}.cells.json").read_text())
                check_cells(design, board, stat["design"]["num_cells_by_type"])
        report = build_report(design, board, build, NAME, identity, clock_hz, baud, seconds)
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
