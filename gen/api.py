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
from .report import describe
from .tflite_reader import read_model
from .verify import VerifyReport, load_inputs, random_inputs, verify_graph

if TYPE_CHECKING:
    from .design import Design

__all__ = ["load", "inspect", "run", "verify", "dump_tensors", "generate", "simulate",
           "SimReport"]


def load(path: str | os.PathLike, flow: str = "default") -> ir.Graph:
    """Read a ``.tflite`` file, check it is a full-integer int8 model and lower it to the
    fixed-point IR.  Raises :class:`Tfl2RtlError` with a one-line reason otherwise."""
    return lower(read_model(path), flow=flow)


def inspect(path: str | os.PathLike) -> dict:
    """Describe a model layer by layer (see :func:`tfl2rtl.report.describe`)."""
    return describe(load(path))


def run(path_or_graph, inputs, profile: str = "tflm") -> golden.GoldenResult:
    """Run the golden model on one input set and return every tensor it computed."""
    graph = path_or_graph if isinstance(path_or_graph, ir.Graph) else load(path_or_graph)
    return golden.run(graph, inputs, profile=profile)


def verify(path: str | os.PathLike, samples: int = 100, profile: str = "tflm",
           inputs: list[str] | None = None, seed: int = 0,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Compare the golden model with the profile's interpreter on ``samples`` random inputs
    (plus every input in the ``.npy`` files ``inputs``), every tensor, exactly."""
    if samples < 0:
        raise Tfl2RtlError("--samples must be zero or more")
    graph = load(path)
    input_sets = random_inputs(graph, samples, seed=seed)
    for f in inputs or []:
        input_sets += load_inputs(graph, f)
    if not input_sets:
        raise Tfl2RtlError("nothing to verify: give --samples above 0 or --input files")
    return verify_graph(graph, input_sets, profile=profile, progress=progress)


def dump_tensors(result: golden.GoldenResult, graph: ir.Graph, directory: str) -> list[Path]:
    """Write every tensor of ``result`` as ``NNN_<name>.npy`` (in execution order) plus an
    ``index.txt``; written to a temporary folder first and moved into place whole."""
    from .output import staged_directory

    order = list(graph.inputs) + [n.output for n in graph.nodes]
    written = []
    with staged_directory(directory) as tmp:
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


def generate(path_or_graph, out_dir: str | os.PathLike | None = None, fold="auto",
             max_multipliers: int | None = None, lanes: int = 1) -> Design:
    """Plan the hardware for a model (folding ``"auto"`` within ``max_multipliers``,
    ``"full"``, a fold JSON file or a ``{node: Fold}`` dict) and, given ``out_dir``,
    write its Verilog, memory images and ``manifest.json`` there (atomically)."""
    from . import design as gen

    budget = gen.DEFAULT_MAX_MULTIPLIERS if max_multipliers is None else max_multipliers
    design = gen.plan(_graph(path_or_graph), fold, budget, lanes=lanes)
    if out_dir is not None:
        gen.write(design, out_dir)
    return design


@dataclass
class SimReport:
    """What :func:`simulate` measured.  ``cycles_per_inference`` is the streaming run's
    cycles divided by the inputs (back to back, no stalls), ``initiation_interval`` the
    steady-state cycles between consecutive outputs, ``ideal_cycles`` MACs divided by
    multipliers, ``mac_efficiency`` ideal cycles over the initiation interval."""

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
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "inputs": self.inputs, "mismatches": self.mismatches,
                "cycles_per_inference": round(self.cycles_per_inference, 2),
                "initiation_interval": self.initiation_interval,
                "first_latency": self.first_latency,
                "ideal_cycles": round(self.ideal_cycles, 2),
                "mac_efficiency": round(self.mac_efficiency, 4),
                "multipliers": self.multipliers, "folding": self.folding,
                "seconds": round(self.build_seconds, 1)}


def simulate(path_or_graph, inputs: int = 50, input_files: list[str] | None = None,
             fold="auto", max_multipliers: int | None = None, lanes: int = 1, seed: int = 0,
             build_dir: str | os.PathLike | None = None,
             waves: str | os.PathLike | None = None) -> SimReport:
    """Generate the design, build it with Verilator and stream ``inputs`` random inputs
    (plus those in ``input_files``) through it under cocotb, comparing every output with
    the golden model; once straight and once with random stalls and backpressure.

    ``waves``: write a VCD waveform of both runs to this file (see
    :func:`tfl2rtl.sim.runner.simulate_network`)."""
    from .sim.runner import golden_vectors, simulate_network

    graph = _graph(path_or_graph)
    design = generate(graph, fold=fold, max_multipliers=max_multipliers, lanes=lanes)
    sets = random_inputs(graph, inputs, seed=seed)
    for f in input_files or []:
        sets += load_inputs(graph, f)
    if not sets:
        raise Tfl2RtlError("nothing to simulate: give --inputs above 0 or --input files")
    vectors = np.stack([s[0].reshape(-1) for s in sets])
    expected = golden_vectors(graph, vectors)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfl2rtl-sim-") as scratch:
        runs = simulate_network(design.network(), vectors, expected,
                                build_dir or scratch, seed=seed, check=False, waves=waves)
    streaming = runs["streaming"]
    intervals = sorted(streaming.intervals)
    interval = intervals[len(intervals) // 2] if intervals else streaming.cycles
    return SimReport(
        model=graph.source, inputs=len(sets),
        mismatches=sum(r.mismatches + r.tlast_errors for r in runs.values()),
        cycles_per_inference=streaming.cycles / len(sets), initiation_interval=interval,
        first_latency=streaming.first_latency, ideal_cycles=design.ideal_cycles,
        mac_efficiency=design.ideal_cycles / interval, multipliers=design.multipliers,
        folding=design.fold_source, build_seconds=time.monotonic() - started,
    )
