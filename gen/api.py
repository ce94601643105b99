"""The Python API.  Everything the command line does is one of these functions."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import golden, ir
from .errors import Tfl2RtlError
from .lower import lower
from .profile_diff import DiffReport, diff_graph
from .report import describe
from .tflite_reader import read_model
from .verify import VerifyReport, load_inputs, random_inputs, verify_graph

if TYPE_CHECKING:
    from .design import Design

__all__ = ["load", "inspect", "run", "verify", "diff", "diff_text", "dump_tensors", "generate",
           "simulate", "SimReport", "DiffReport", "build", "infer", "InferResult", "bench"]


#: The quantization modes the hardware generator builds (``generate``, ``simulate``,
#: ``build``); the golden model, ``inspect`` and ``verify`` take every integer mode.
HARDWARE_MODES = ("int8", "uint8-legacy", "int16x8")
_MODE_NAMES = {"uint8-legacy": "legacy uint8 (uint8 activations and weights)",
               "int16x8": "16x8 (int16 activations, int8 weights)"}


def load(path: str | os.PathLike, flow: str = "default") -> ir.Graph:
    """Read a ``.tflite`` file, check it is a full-integer model (int8, legacy uint8 or
    16x8) and lower it to the fixed-point IR.  Raises :class:`Tfl2RtlError` with a
    one-line reason otherwise."""
    return lower(read_model(path), flow=flow)


def inspect(path: str | os.PathLike, profile: str | None = None, schedule: bool = False,
            max_multipliers: int | None = None, weights: str | None = None) -> dict:
    """Describe a model layer by layer (see :func:`tfl2rtl.report.describe`), with what
    ``profile``'s arithmetic uses for each layer under ``"arithmetic"`` (default:
    :func:`tfl2rtl.golden.default_profile`, ``tflm`` unless the model is legacy uint8).

    With ``schedule``, also the sequential engine's schedule under ``"schedule"``
    (:meth:`tfl2rtl.design.Design.schedule_summary`), planned as ``generate --arch
    sequential`` plans it within ``max_multipliers``, its weights on chip or (``weights``
    ``"flash"``) in flash; a model the engine does not take raises its refusal."""
    graph = load(path)
    info = describe(graph, profile=profile)
    if schedule:
        info["schedule"] = generate(graph, max_multipliers=max_multipliers,
                                    arch="sequential",
                                    weights=weights or "chip").schedule_summary()
    elif max_multipliers is not None or weights is not None:
        option = "--max-multipliers sizes" if max_multipliers is not None else \
            "--weights places the weights of"
        raise Tfl2RtlError(f"{option} the engine of --schedule; add --schedule")
    return info


def run(path_or_graph, inputs, profile: str | None = None) -> golden.GoldenResult:
    """Run the golden model on one input set and return every tensor it computed
    (``profile`` defaults as in :func:`inspect`)."""
    graph = path_or_graph if isinstance(path_or_graph, ir.Graph) else load(path_or_graph)
    return golden.run(graph, inputs, profile=profile)


def verify(path: str | os.PathLike, samples: int = 100, profile: str | None = None,
           inputs: list[str] | None = None, seed: int = 0,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Compare the golden model with the profile's interpreter on ``samples`` random inputs
    (plus every input in the ``.npy`` files ``inputs``), every tensor, exactly.

    ``profile`` defaults to ``tflm``, or ``litert-ref`` for a legacy uint8 model; a
    profile whose runtime has no kernels for the model's mode (``tflm`` for uint8) is
    refused in one line naming the profiles that apply."""
    if samples < 0:
        raise Tfl2RtlError("--samples must be zero or more")
    graph = load(path)
    golden.get_profile(profile or golden.default_profile(graph)).check_applies(graph)
    input_sets = random_inputs(graph, samples, seed=seed)
    for f in inputs or []:
        input_sets += load_inputs(graph, f)
    if not input_sets:
        raise Tfl2RtlError("nothing to verify: give --samples above 0 or --input files")
    return verify_graph(graph, input_sets, profile=profile, progress=progress)


def diff(path_or_graph, inputs, profiles: tuple[str, str] | None = None) -> DiffReport:
    """Run the golden model under two profiles on the same inputs and count, tensor by
    tensor, how many elements differ and by how much.  ``profiles`` defaults to ``tflm``
    and ``litert`` (``litert-ref`` and ``litert`` for a legacy uint8 model).

    ``inputs`` is a ``.npy`` path (one input or a batch ``[N, ...]``), a list of them, or
    input sets as :func:`run` takes them.  The report lists the tensors in execution
    order with ``elements``, ``differing``, ``max_abs_diff`` and a histogram
    ``{|difference|: count}``; ``first_difference`` is where the profiles part ways::

        report = tfl2rtl.api.diff("model.tflite", "x.npy")        # tflm vs litert
        print(tfl2rtl.api.diff_text(report))
    """
    graph = _graph(path_or_graph)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    input_sets = []
    for item in inputs:
        if isinstance(item, (str, os.PathLike)):
            input_sets += load_inputs(graph, str(item))
        else:
            input_sets.append([item] if isinstance(item, np.ndarray) else list(item))
    if not input_sets:
        raise Tfl2RtlError("nothing to diff: give at least one input")
    if profiles is None:
        profiles = (golden.default_profile(graph), "litert")
    return diff_graph(graph, input_sets, profiles=tuple(profiles))


def diff_text(report: DiffReport) -> str:
    """:func:`diff`'s report as the table ``tfl2rtl diff`` prints."""
    from .profile_diff import format_text

    return format_text(report)


def dump_tensors(result: golden.GoldenResult, graph: ir.Graph, directory: str | os.PathLike,
                 force: bool = False) -> list[Path]:
    """Write every tensor of ``result`` as ``NNN_<name>.npy`` (in execution order) plus an
    ``index.txt``; written to a temporary folder first and moved into place whole, where
    :mod:`tfl2rtl.output` allows (``force``: beside files that are not tfl2rtl's)."""
    from .output import staged_directory

    order = list(graph.inputs) + [n.output for n in graph.nodes]
    written = []
    with staged_directory(directory, force=force, option="--dump") as tmp:
        lines = [f"profile {result.profile}"]
        for k, name in enumerate(order):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            fname = f"{k:03d}_{safe}.npy"
            np.save(tmp / fname, result.tensors[name])
            t = result.tensors[name]
            lines.append(f"{fname}\t{name}\t{t.dtype}\t{list(t.shape)}")
            written.append(Path(directory) / fname)
        (tmp / "index.txt").write_text("\n".join(lines) + "\n")
    return written


def _graph(path_or_graph) -> ir.Graph:
    return path_or_graph if isinstance(path_or_graph, ir.Graph) else load(path_or_graph)


def _hardware_graph(path_or_graph) -> ir.Graph:
    """The graph, if the hardware generator builds its quantization mode (see
    :data:`HARDWARE_MODES`); otherwise the one-line refusal."""
    graph = _graph(path_or_graph)
    mode = getattr(graph, "quantization", "int8")
    if mode not in HARDWARE_MODES:
        raise Tfl2RtlError(
            f"{graph.source or 'this model'} is a {_MODE_NAMES.get(mode, mode)} model: the "
            "hardware for this mode is not built yet (inspect, run and verify take it)")
    return graph


def generate(path_or_graph, out_dir: str | os.PathLike | None = None, fold="auto",
             max_multipliers: int | None = None, lanes: int = 1,
             requant_interval: int = 1, force: bool = False,
             arch: str = "auto", weights: str = "auto") -> Design:
    """Plan the hardware for a model (folding ``"auto"`` within ``max_multipliers``,
    ``"full"``, a fold JSON file or a ``{node: Fold}`` dict) and, given ``out_dir``,
    write its Verilog, memory images and ``manifest.json`` there (atomically, where
    :mod:`tfl2rtl.output` allows: a new or empty folder, or one tfl2rtl wrote; with
    ``force``, beside files that are not tfl2rtl's).  ``requant_interval``: cycles per
    requantizer beat on the target (5 where :func:`build` shares the requantizers'
    multipliers, on iCE40).  ``arch``: ``"dataflow"`` (a stage per layer),
    ``"sequential"`` (one shared unit driven by a schedule, :mod:`tfl2rtl.hw.engine`)
    or ``"auto"`` (without a board to fit: the dataflow design; see
    :func:`tfl2rtl.design.plan`).  ``weights``: where a sequential engine keeps its
    weights, ``"chip"`` (a ROM) or ``"flash"`` (the board's SPI flash: ``out_dir`` then
    also gets the flash's bytes, :data:`tfl2rtl.design.FLASH_WEIGHTS`); ``"auto"``
    without a board: on chip."""
    from . import design as gen
    from .output import Destination, check_folder

    if out_dir is not None:  # refused before anything is planned
        check_folder(out_dir, force=force)
    budget = gen.DEFAULT_MAX_MULTIPLIERS if max_multipliers is None else max_multipliers
    weights = "chip" if weights == "auto" else weights
    if weights == "flash" and arch != "sequential":
        raise Tfl2RtlError("--weights flash is for the sequential engine: add --arch "
                           "sequential")
    design = gen.plan(_hardware_graph(path_or_graph), fold, budget, lanes=lanes,
                      requant_interval=requant_interval, arch=arch, weights=weights)
    if out_dir is not None:
        gen.write(design, Destination(out_dir, force))
    return design


@dataclass
class SimReport:
    """What :func:`simulate` measured.  ``cycles_per_inference`` is the streaming run's
    cycles divided by the inputs (back to back, no stalls), ``initiation_interval`` the
    steady-state cycles between consecutive outputs, ``ideal_cycles`` MACs divided by
    multipliers, ``mac_efficiency`` ideal cycles over the initiation interval.
    ``layers`` is :meth:`tfl2rtl.design.Design.layers` (folding, cycles, multipliers and
    MAC efficiency per stage); ``verilator_seconds`` is the Verilator build,
    ``sim_seconds`` the two simulation runs, ``build_seconds`` the whole call.  For a
    model with float32 edges, ``extra`` holds ``host_edges`` (what the host computes:
    :meth:`tfl2rtl.edges.HostEdges.manifest`) and ``float_outputs_compared``; the
    JSON form carries ``extra``'s keys too."""

    model: str
    inputs: int
    mismatches: int
    cycles_per_inference: float
    initiation_interval: int
    first_latency: int
    ideal_cycles: float
    mac_efficiency: float
    multipliers: int
    folding: str
    build_seconds: float = 0.0
    verilator_seconds: float = 0.0
    sim_seconds: float = 0.0
    layers: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "inputs": self.inputs, "mismatches": self.mismatches,
                "cycles_per_inference": round(self.cycles_per_inference, 2),
                "initiation_interval": self.initiation_interval,
                "first_latency": self.first_latency,
                "ideal_cycles": round(self.ideal_cycles, 2),
                "mac_efficiency": round(self.mac_efficiency, 4),
                "multipliers": self.multipliers, "folding": self.folding,
                "seconds": round(self.build_seconds, 1),
                "verilator_seconds": round(self.verilator_seconds, 1),
                "sim_seconds": round(self.sim_seconds, 1),
                "layers": self.layers, **self.extra}


def simulate(path_or_graph, inputs: int = 50, input_files: list[str] | None = None,
             fold="auto", max_multipliers: int | None = None, lanes: int = 1, seed: int = 0,
             build_dir: str | os.PathLike | None = None,
             waves: str | os.PathLike | None = None, force: bool = False,
             arch: str = "auto", weights: str = "auto") -> SimReport:
    """Generate the design, build it with Verilator and stream ``inputs`` random inputs
    (plus those in ``input_files``) through it under cocotb, comparing every output with
    the golden model; once straight and once with random stalls and backpressure.

    A model with float32 edges takes float32 inputs and gives float32 outputs: the
    hardware streams the integer tensors, and its outputs, dequantized as the model's
    DEQUANTIZE does (:class:`tfl2rtl.edges.HostEdges`), are compared with the golden
    model's float32 outputs bit for bit (``extra["float_outputs_compared"]``).

    ``build_dir``: keep the Verilator build there (a folder :mod:`tfl2rtl.output`
    allows, with ``force`` beside other files; put in place when the run ends, also when
    it fails).  ``waves``: write a VCD waveform of both runs to this file (see
    :func:`tfl2rtl.sim.runner.simulate_network`; it replaces only a waveform tfl2rtl
    wrote).  ``arch`` and ``weights`` as :func:`generate` (weights in flash are read
    from a model of the flash, loaded with them)."""
    import contextlib

    from .output import check_file, check_folder, staged_directory, staged_file
    from .sim.runner import golden_vectors, is_own_waveform, simulate_network

    # Refused before anything is built.
    if build_dir is not None:
        check_folder(build_dir, force=force, option="--build-dir")
    if waves is not None:
        check_file(waves, ours=is_own_waveform, option="--waves")
    graph = _hardware_graph(path_or_graph)
    design = generate(graph, fold=fold, max_multipliers=max_multipliers, lanes=lanes,
                      arch=arch, weights=weights)
    sets = random_inputs(graph, inputs, seed=seed)
    for f in input_files or []:
        sets += load_inputs(graph, f)
    if not sets:
        raise Tfl2RtlError("nothing to simulate: give --inputs above 0 or --input files")
    edges = design.edges
    model_inputs = np.stack([s[0].reshape(-1) for s in sets])
    vectors = edges.to_hardware(model_inputs)
    expected = golden_vectors(design.graph, vectors)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        where = (stack.enter_context(tempfile.TemporaryDirectory(prefix="tfl2rtl-sim-"))
                 if build_dir is None else
                 stack.enter_context(staged_directory(build_dir, force=force,
                                                      keep_on_error=True,
                                                      option="--build-dir")))
        trace = None if waves is None else stack.enter_context(
            staged_file(waves, ours=is_own_waveform, option="--waves"))
        runs = simulate_network(design.network(), vectors, expected, where, seed=seed,
                                check=False, waves=trace)
    streaming = runs["streaming"]
    intervals = sorted(streaming.intervals)
    interval = intervals[len(intervals) // 2] if intervals else streaming.cycles
    mismatches = {name: r.mismatches for name, r in runs.items()}
    extra = {}
    if edges.dequantize is not None:  # the model's outputs: float32, bit for bit
        want = golden_vectors(graph, model_inputs).view(np.uint32)
        for name, r in runs.items():
            got = edges.from_hardware(r.outputs)
            mismatches[name] = int(np.count_nonzero(got.view(np.uint32) != want))
        extra["float_outputs_compared"] = len(runs) * int(want.size)
    if edges.any:
        extra["host_edges"] = edges.manifest()
    return SimReport(
        model=graph.source, inputs=len(sets),
        mismatches=sum(mismatches.values()) + sum(r.tlast_errors for r in runs.values()),
        cycles_per_inference=streaming.cycles / len(sets), initiation_interval=interval,
        first_latency=streaming.first_latency, ideal_cycles=design.ideal_cycles,
        mac_efficiency=design.ideal_cycles / interval, multipliers=design.multipliers,
        folding=design.fold_source, build_seconds=time.monotonic() - started,
        verilator_seconds=streaming.build_seconds,
        sim_seconds=sum(r.wall_seconds for r in runs.values()), layers=design.layers(),
        extra=extra,
    )


# --- boards: build a bitstream, talk to a board, benchmark -----------------------------


def build(path_or_graph, board: str, out_dir: str | os.PathLike, fold="auto",
          max_multipliers: int | None = None, lanes: int = 1, baud: int | None = None,
          clock_mhz: float | None = None, progress: Callable[[str], None] | None = None,
          arch: str = "auto", placement_seed: int | None = None, weights: str = "auto"):
    """Generate the design for a model, put it behind the UART host link on ``board``
    (see :data:`tfl2rtl.boards.build.BOARDS`), synthesize, place, route and pack it,
    and write the bitstream, ``report.json``, ``report.txt``, ``manifest.json`` and the
    tools' logs into ``out_dir`` (atomically, where :mod:`tfl2rtl.output` allows: checked
    before any tool runs; a :class:`tfl2rtl.output.Destination` carries ``--force``).

    The design runs on the FPGA's PLL clock: at ``clock_mhz`` (the fastest PLL clock at
    or below it; a design that misses it raises
    :class:`tfl2rtl.boards.build.TimingMissed`), or by default at the fastest clock the
    routed design meets (:func:`tfl2rtl.boards.build.build_board_clocked`).  ``baud``
    defaults to :data:`tfl2rtl.boards.build.DEFAULT_BAUD` (3 Mbaud).
    ``placement_seed`` is nextpnr's ``--seed`` for the first build (a clock search's
    later builds count on from it).

    Without ``max_multipliers``, ``--fold auto`` builds the fastest design whose DSP
    blocks suffice, with the products of some layers in logic where the board allows
    (:func:`tfl2rtl.boards.fit.fitting_design`); when Yosys or nextpnr then finds the
    DSP blocks or the logic (LUTs or flip-flops) too few, the next smaller design is
    built instead, down to one multiplier per layer (``progress`` and the report's notes
    say so: :func:`tfl2rtl.boards.build.build_graph`).  Returns the
    :class:`tfl2rtl.boards.build.BuildReport`; a design that does not fit raises
    :class:`tfl2rtl.boards.build.DoesNotFit` (a :class:`Tfl2RtlError`) naming the
    resource and a folding that would fit.  ``arch="sequential"`` builds the sequential
    engine (:func:`tfl2rtl.boards.fit.sequential_design`), ``arch="dataflow"`` the
    dataflow design only, and ``arch="auto"`` (the default) the dataflow design when it
    fits, else the sequential engine (``progress`` and the report's notes say which and
    why); a model whose weights do not fit on chip goes straight to the engine with its
    weights in flash, on a board that has one.  ``weights``: where the engine keeps its
    weights (``"auto"``: :func:`tfl2rtl.boards.fit.engine_weights`; ``"flash"`` also
    writes the flash image, bitstream and weights, into ``out_dir``)."""
    from .boards.build import DEFAULT_BAUD, build_graph
    from .output import check_folder

    check_folder(out_dir)  # refused before any tool runs
    return build_graph(_hardware_graph(path_or_graph), board, out_dir, fold=fold,
                       max_multipliers=max_multipliers, lanes=lanes,
                       baud=baud or DEFAULT_BAUD, clock_mhz=clock_mhz, progress=progress,
                       arch=arch, seed=placement_seed, weights=weights)


@dataclass
class InferResult:
    """One inference on a board: its ``output``, the golden model's (``golden``) and the
    board's :class:`tfl2rtl.boards.protocol.Identity`.  For a model with a float32
    output both are float32, and ``ok`` compares their bit patterns."""

    output: np.ndarray
    golden: np.ndarray
    identity: object
    #: Bytes of weights sent first because the board asked for them (``NOT_LOADED``).
    weights_loaded: int = 0

    @property
    def ok(self) -> bool:
        return self.output.dtype == self.golden.dtype and bool(np.array_equal(
            _bit_patterns(self.output), _bit_patterns(self.golden)))


def _bit_patterns(values: np.ndarray) -> np.ndarray:
    """Integers as they are, floats as the unsigned integers of their bits."""
    if values.dtype.kind == "f":
        return values.view(f"u{values.dtype.itemsize}")
    return values


def infer(path_or_graph, input_file: str, port: str | None = None, baud: int = 3_000_000,
          timeout: float = 5.0, transport=None,
          progress: Callable[[str], None] | None = None) -> InferResult:
    """Send the input in ``input_file`` (``.npy``, one input) to a board over the serial
    ``port`` (or any ``transport`` with ``write(bytes)`` and ``read(n)``), read the output
    back and compute the golden model's beside it.  The board must run this model: its
    identity (model SHA-256, shapes, dtypes) is checked first, and ``progress`` told its
    architecture and where its weights are.  A board whose weights are
    loaded at run time (SPRAM on the iCEBreaker) and answers ``NOT_LOADED`` gets them
    (:meth:`~tfl2rtl.boards.protocol.Client.load_weights`, ``progress`` told), and the
    inference is sent again.

    A model with float32 edges takes a float32 input and gives a float32 output: the
    host quantizes the input and dequantizes the board's output with the model's own
    edge nodes (:class:`tfl2rtl.edges.HostEdges`); the board streams the integers."""
    import hashlib

    from .boards.protocol import Client, SerialTransport
    from .edges import host_edges

    graph = _graph(path_or_graph)
    edges = host_edges(graph)
    input_sets = load_inputs(graph, input_file)
    if len(input_sets) != 1:
        raise Tfl2RtlError(f"{input_file} holds {len(input_sets)} inputs; infer takes one")
    x = input_sets[0][0]
    expected = golden.run(graph, [x]).outputs[0]
    own = transport is None
    if own:
        if port is None:
            raise Tfl2RtlError("give the board's serial --port")
        transport = SerialTransport(port, baud, timeout)
    try:
        client = Client(transport)
        identity = client.identity()
        digest = hashlib.sha256(Path(graph.source).read_bytes()).hexdigest()
        if identity.sha256 != digest:
            raise Tfl2RtlError(
                f"the board runs another model (SHA-256 {identity.sha256[:16]}...), not "
                f"{Path(graph.source).name} ({digest[:16]}...): build and program it first")
        if progress is not None:
            where = "in flash" if identity.weights == "flash" else "on chip"
            progress(f"the board runs {Path(graph.source).name} on the "
                     f"{identity.architecture} architecture, its weights {where}")
        output, loaded = edges.infer(client, x, progress=progress)
    finally:
        if own:
            transport.close()
    return InferResult(output=output, golden=expected, identity=identity,
                       weights_loaded=loaded)


def bench(models: list[str] | None = None, board: str | None = None,
          max_multipliers: int | None = None, plot: str | os.PathLike | None = None,
          progress: Callable[[str], None] | None = None, arch: str = "both") -> list:
    """Benchmark ``models`` (default: the model zoo and the full-integer test models): MACs,
    weights, multipliers, cycles per inference, initiation interval, MAC efficiency,
    compile time to Verilog and TFLite Micro's time per inference here; with ``board``
    also Fmax, LUT/DSP/BRAM and inferences per second from a bitstream build.  Models
    that cannot be built get a row with the reason.  ``arch``: ``"both"`` (a dataflow
    and a sequential-engine row per model), ``"auto"``, ``"dataflow"`` or
    ``"sequential"`` (:func:`tfl2rtl.boards.bench.bench`).  With ``plot``, a PNG of throughput
    against resources is written there (replacing only a plot tfl2rtl wrote: checked
    before anything runs).  Returns :class:`tfl2rtl.boards.bench.BenchRow` objects."""
    from .boards import bench as bench_module
    from .output import check_file, staged_file

    if plot is not None:
        check_file(plot, ours=bench_module.is_own_plot, option="--plot")
    rows = bench_module.bench(models, board=board, max_multipliers=max_multipliers,
                              progress=progress, arch=arch)
    if plot is not None:
        with staged_file(plot, ours=bench_module.is_own_plot, option="--plot") as tmp:
            bench_module.plot(rows, tmp)
    return rows


