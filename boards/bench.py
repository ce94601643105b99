"""One table of what each model costs and how fast it runs, hardware against TFLite Micro.

:func:`bench` measures, per model: MACs, weights, multipliers, cycles per inference and
initiation interval, MAC efficiency, the compile time from ``.tflite`` to Verilog, and
the time one TFLite Micro inference takes on this machine; with a board, also the
bitstream build's Fmax, LUT/DSP/BRAM and inferences per second.  A model that cannot be
built gets a row that says why.  :func:`plot` draws throughput against resources.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tfl2rtl.errors import Tfl2RtlError

__all__ = ["BenchRow", "bench", "format_table", "plot", "is_own_plot", "tflm_seconds",
           "default_models", "NOMINAL_MHZ", "BENCH_ARCHITECTURES"]

#: The clock inferences per second are quoted at without a board build.
NOMINAL_MHZ = 100.0


@dataclass
class BenchRow:
    """One model's figures; ``error`` says why some are missing: the reason of every step
    that failed, in order (:meth:`fail`)."""

    model: str
    #: ``"dataflow"`` or ``"sequential"``: the design the figures are of (with
    #: ``--arch auto`` and a board, the one the build chose).
    architecture: str | None = None
    macs: int | None = None
    weights: int | None = None
    multipliers: int | None = None
    #: Of :attr:`multipliers`, those built in LUTs.
    logic_multipliers: int | None = None
    cycles_per_inference: int | None = None
    initiation_interval: int | None = None
    mac_efficiency: float | None = None
    compile_seconds: float | None = None
    tflm_ms: float | None = None
    board: str | None = None
    fmax_mhz: float | None = None
    #: The clock the built bitstream runs at (its PLL's output), None without a build.
    board_clock_mhz: float | None = None
    resources: dict[str, tuple[int, int]] = field(default_factory=dict)
    inferences_per_second: float | None = None
    #: What the board's UART carries (inputs in, outputs back), with a build.
    link_inferences_per_second: float | None = None
    #: With a build: the share of the DSP blocks used that multiply activations by
    #: weights, and MACs per second over the chip's DSP MAC ceiling (every DSP block one
    #: MAC a cycle at the bitstream's clock).
    mac_dsp_share: float | None = None
    dsp_ceiling_share: float | None = None
    #: A sequential row's schedule (:meth:`tfl2rtl.design.Design.schedule_summary`; with
    #: a build, of the engine built).
    schedule: dict | None = None
    error: str | None = None

    def fail(self, reason: str) -> None:
        """Record why a step failed, after the reasons already recorded."""
        self.error = reason if self.error is None else f"{self.error}; {reason}"

    @property
    def clock_mhz(self) -> float:
        """The clock ``inferences_per_second`` is at: the bitstream's, or
        :data:`NOMINAL_MHZ` without a build."""
        return self.board_clock_mhz if self.board_clock_mhz else NOMINAL_MHZ

    def to_json(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "resources"}
        out["resources"] = {k: {"used": u, "available": a}
                            for k, (u, a) in self.resources.items()}
        for key in ("mac_efficiency", "compile_seconds", "tflm_ms", "fmax_mhz",
                    "board_clock_mhz", "inferences_per_second", "link_inferences_per_second",
                    "mac_dsp_share", "dsp_ceiling_share"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


def default_models(zoo: str | os.PathLike | None = None) -> list[Path]:
    """The model zoo (``zoo``, else ``$TFL2RTL_ZOO``, else the copies committed in
    ``tests/models/zoo``) and the full-integer test models (int8 and uint8 edges, and
    float32 edges, which the host quantizes and dequantizes around the hardware)."""
    tests = Path(__file__).resolve().parents[1] / "tests" / "models"
    zoo = Path(zoo) if zoo else Path(os.environ.get("TFL2RTL_ZOO", tests / "zoo"))
    return sorted(zoo.glob("*/*.tflite")) + [
        tests / name for name in ("dense10_int8.tflite", "mlp_uint8.tflite",
                                  "conv_int8.tflite", "cnn_int8.tflite",
                                  "conv_float_io.tflite", "cnn_float_io.tflite",
                                  "mlp_float_io.tflite")
        if (tests / name).exists()]


def tflm_seconds(path: str | os.PathLike, graph, runs: int = 20) -> float:
    """Mean seconds of one TFLite Micro inference (reference kernels) on this machine,
    after one warm-up run."""
    from tflite_micro.python.tflite_micro import runtime

    from tfl2rtl.reference import arena_size
    from tfl2rtl.verify import random_inputs

    data = Path(path).read_bytes()
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_size(data))
    x = random_inputs(graph, 1)[0][0]
    interpreter.set_input(x, 0)
    interpreter.invoke()
    began = time.perf_counter()
    for _ in range(runs):
        interpreter.set_input(x, 0)
        interpreter.invoke()
    return (time.perf_counter() - began) / runs


#: What ``bench --arch`` takes: an architecture of :data:`tfl2rtl.design.ARCHITECTURES`,
#: or ``both`` (a row for each of the dataflow design and the sequential engine).
BENCH_ARCHITECTURES = ("both", "auto", "dataflow", "sequential")


def _row(path: Path, board: str | None, max_multipliers: int | None,
         progress: Callable[[str], None], arch: str = "auto") -> BenchRow:
    from tfl2rtl import design as gen
    from tfl2rtl.hw.network import to_verilog
    from tfl2rtl.lower import lower
    from tfl2rtl.tflite_reader import read_model

    row = BenchRow(model=path.name, board=board,
                   architecture="sequential" if arch == "sequential" else "dataflow")
    try:
        graph = lower(read_model(path))
    except Tfl2RtlError as exc:
        row.fail(str(exc))
        return row
    row.macs = int(graph.macs)
    row.weights = int(sum(n.weights.size for n in graph.nodes
                          if getattr(n, "weights", None) is not None))
    try:
        row.tflm_ms = 1e3 * tflm_seconds(path, graph)
    except RuntimeError as exc:  # the interpreter's own failure: report, keep benchmarking
        row.fail(f"TFLite Micro failed: {exc}")
    interval, budget = 1, max_multipliers
    if board is not None:  # the board's requantizers and, by default, its DSP budget
        from tfl2rtl.hw.stages import SERIAL_REQUANT_INTERVAL

        from .build import board_named, fitting_design

        target = board_named(board)
        interval = SERIAL_REQUANT_INTERVAL if target.serial_requantizer else 1
    try:
        began = time.perf_counter()
        if arch == "sequential":
            from .fit import sequential_design

            design = (sequential_design(graph, target, max_multipliers=budget)
                      if board is not None else
                      gen.plan(graph, "auto", gen.DEFAULT_MAX_MULTIPLIERS if budget is None
                               else budget, arch="sequential"))
        elif board is not None and budget is None:  # as a default build plans it
            design = fitting_design(graph, target, requant_interval=interval)
        else:
            design = gen.plan(graph, "auto", gen.DEFAULT_MAX_MULTIPLIERS if budget is None
                              else budget, requant_interval=interval)
        to_verilog(design.network())
        row.compile_seconds = time.perf_counter() - began
    except Tfl2RtlError as exc:
        row.fail(f"cannot build yet: {exc}")
        return row
    row.multipliers = design.multipliers
    row.logic_multipliers = design.network_plan.logic_multipliers
    row.cycles_per_inference = row.initiation_interval = design.initiation_interval
    row.mac_efficiency = design.mac_efficiency
    if design.architecture == "sequential" and board is None:  # a build's: its manifest's
        row.schedule = design.schedule_summary()
    if board is not None:
        from .build import build_graph

        try:  # as `tfl2rtl build` does it (a default budget whose logic overflows lowered)
            with tempfile.TemporaryDirectory(prefix="tfl2rtl-bench-") as scratch:
                report = build_graph(graph, board, Path(scratch) / "out",
                                     max_multipliers=max_multipliers, arch=arch,
                                     progress=lambda m: progress(f"{path.name}: {m}"))
                manifest = json.loads((Path(scratch) / "out" / "manifest.json").read_text())
        except Tfl2RtlError as exc:
            row.fail(str(exc))
            return row
        row.architecture = report.architecture
        row.schedule = manifest.get("schedule")
        row.fmax_mhz = report.fmax_mhz
        row.board_clock_mhz = report.clock_mhz
        row.link_inferences_per_second = report.link_inferences_per_second
        row.mac_dsp_share = report.mac_dsp_share
        row.dsp_ceiling_share = report.dsp_ceiling_share
        row.resources = report.resources
        row.multipliers = report.multipliers
        row.logic_multipliers = report.logic_multipliers
        row.cycles_per_inference = row.initiation_interval = report.cycles_per_inference
        row.mac_efficiency = graph.macs / (report.multipliers * report.cycles_per_inference)
    row.inferences_per_second = row.clock_mhz * 1e6 / row.cycles_per_inference
    return row


def bench(models: list[str | os.PathLike] | None = None, board: str | None = None,
          max_multipliers: int | None = None,
          progress: Callable[[str], None] | None = None,
          arch: str = "both") -> list[BenchRow]:
    """A :class:`BenchRow` per model (default :func:`default_models`) and architecture,
    planned with ``--fold auto`` within ``max_multipliers`` (by default 64, or with
    ``board`` as a build for that board plans it:
    :func:`tfl2rtl.boards.fit.fitting_design`, :func:`~tfl2rtl.boards.fit.
    sequential_design`); with ``board``, each one also built (synthesis, place and
    route) for that board, with the board's requantizers.

    ``arch`` (:data:`BENCH_ARCHITECTURES`): ``"both"`` (the default) gives each model a
    dataflow row and a sequential row, side by side (a model the engine does not take
    gets the reason in its sequential row); ``"auto"`` one row, of the design a build
    chooses (with ``board``: the dataflow design, or the sequential engine where the
    dataflow design does not fit); ``"dataflow"`` or ``"sequential"`` that one only."""
    if arch not in BENCH_ARCHITECTURES:
        raise Tfl2RtlError(f"unknown architecture {arch!r}; choose one of "
                           + ", ".join(BENCH_ARCHITECTURES))
    say = progress or (lambda message: None)
    paths = [Path(m) for m in models] if models else default_models()
    if not paths:
        raise Tfl2RtlError("no models to benchmark")
    rows = []
    for path in paths:
        for kind in ("dataflow", "sequential") if arch == "both" else (arch,):
            say(f"{path.name} ({kind}) ...")
            rows.append(_row(path, board, max_multipliers, say, kind))
    return rows


def _cell(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[BenchRow]) -> str:
    """The rows as a text table; rows with an error get it on a line of their own, and
    after the table each sequential row's schedule
    (:func:`tfl2rtl.report.format_schedule`)."""
    from tfl2rtl.report import format_schedule

    header = ("model", "arch", "MACs", "weights", "mult", "in logic", "cycles/inf", "II",
              "MAC eff", "Fmax", "clock", "LUT", "FF", "DSP", "MAC DSP", "DSP ceil", "BRAM",
              "inf/s", "link inf/s", "compile s", "TFLM ms")
    lines = []
    for r in rows:
        res = {k: f"{u}/{a}" for k, (u, a) in r.resources.items()}
        lines.append((r.model, _cell(r.architecture), _cell(r.macs, ","), _cell(r.weights, ","),
                       _cell(r.multipliers), _cell(r.logic_multipliers),
                       _cell(r.cycles_per_inference, ","),
                       _cell(r.initiation_interval, ","), _cell(r.mac_efficiency, ".2f"),
                       _cell(r.fmax_mhz, ".1f"), _cell(r.board_clock_mhz, ".4g"),
                       res.get("LUT", "-"), res.get("FF", "-"), res.get("DSP", "-"),
                       _cell(r.mac_dsp_share, ".0%"), _cell(r.dsp_ceiling_share, ".1%"),
                       res.get("BRAM", "-"), _cell(r.inferences_per_second, ",.0f"),
                       _cell(r.link_inferences_per_second, ",.0f"),
                       _cell(r.compile_seconds, ".2f"), _cell(r.tflm_ms, ".3f")))
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    out = ["  ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    for r, line in zip(rows, lines, strict=True):
        out.append("  ".join(f"{x:<{w}}" if i == 0 else f"{x:>{w}}"
                             for i, (x, w) in enumerate(zip(line, widths, strict=True))))
        if r.error:
            out.append(f"    {r.model} ({r.architecture}): {r.error}")
    if not any(r.board_clock_mhz for r in rows):
        out.append(f"inf/s at a nominal {NOMINAL_MHZ:g} MHz (no board build: give --board "
                   "for the clock, Fmax and resources)")
    else:
        out.append("inf/s at the clock each bitstream runs at (its PLL's); link inf/s: "
                   "what the UART carries; MAC DSP: the DSP blocks used that multiply "
                   "activations by weights; DSP ceil: MACs/s over every DSP block of the "
                   "chip doing one MAC a cycle at that clock")
    for r in rows:
        if r.schedule is not None:
            out.append(f"{r.model} (sequential) {format_schedule(r.schedule)}")
    return "\n".join(out) + "\n"


def plot(rows: list[BenchRow], path: str | os.PathLike) -> Path:
    """A PNG of inferences per second against resources (LUTs when built for a board,
    else multipliers), one labelled point per model and architecture that has both (a
    sequential engine's label ends in ``(seq)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    built = any(r.resources for r in rows)
    points = [(r.resources["LUT"][0] if built else r.multipliers, r.inferences_per_second,
               r.model.removesuffix(".tflite")
               + (" (seq)" if r.architecture == "sequential" else ""))
              for r in rows if r.inferences_per_second and (r.resources if built
                                                            else r.multipliers)]
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=110)
    for x, y, name in points:
        axes.scatter([x], [y])
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("LUTs used" if built else "multipliers")
    clock = "at the bitstream's clock" if built else f"at {NOMINAL_MHZ:g} MHz"
    axes.set_ylabel(f"inferences per second ({clock})")
    axes.set_title("tfl2rtl: throughput against resources")
    axes.grid(True, which="both", alpha=0.3)
    if not points:
        axes.text(0.5, 0.5, "no model could be built", transform=axes.transAxes,
                  ha="center")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": PLOT_SOFTWARE})
    plt.close(figure)
    return path


#: The PNG ``Software`` text of :func:`plot`'s files, by which tfl2rtl knows them.
PLOT_SOFTWARE = "tfl2rtl bench"


def is_own_plot(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a plot :func:`plot` wrote (a PNG whose ``Software`` text is
    :data:`PLOT_SOFTWARE`): the only file ``bench --plot`` replaces."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return (head.startswith(b"\x89PNG\r\n\x1a\n")
            and b"tEXtSoftware\x00" + PLOT_SOFTWARE.encode() in head)
