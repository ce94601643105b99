"""The Python API.  Everything the command line does is one of these functions."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import golden, ir
from .errors import Tfl2RtlError
from .lower import lower
from .report import describe
from .tflite_reader import read_model
from .verify import VerifyReport, load_inputs, random_inputs, verify_graph

__all__ = ["load", "inspect", "run", "verify", "dump_tensors"]


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
    golden.get_profile(profile)
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
