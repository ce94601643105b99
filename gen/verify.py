"""Compare the golden model with a real TFLite interpreter on every tensor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import golden, ir
from .errors import Tfl2RtlError
from .reference import reference_interpreter

__all__ = ["VerifyReport", "verify_graph", "random_inputs", "load_inputs"]


@dataclass
class VerifyReport:
    """What :func:`verify_graph` compared.  ``mismatches`` lists one entry per
    (sample, tensor) pair that differed: tensor name, elements differing, largest
    difference.  ``notes`` says what the reference needed (a repaired model file)."""

    model: str
    profile: str
    samples: int = 0
    tensors_compared: int = 0
    elements_compared: int = 0
    mismatches: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.tensors_compared > 0

    def to_json(self) -> dict:
        return {"model": self.model, "profile": self.profile, "samples": self.samples,
                "tensors_compared": self.tensors_compared, "mismatches": len(self.mismatches),
                "elements_compared": self.elements_compared,
                "mismatch_details": self.mismatches[:50], "notes": self.notes}


def _input_range(graph: ir.Graph, name: str) -> tuple[float, float]:
    """The float range a float input can represent after the model's QUANTIZE."""
    for node in graph.nodes:
        if name in node.inputs and isinstance(node, ir.Quantize):
            info = np.iinfo(np.dtype(graph.tensors[node.output].dtype))
            return (node.scale * (info.min - node.zero_point),
                    node.scale * (info.max - node.zero_point))
    return -1.0, 1.0


def random_inputs(graph: ir.Graph, count: int, seed: int = 0) -> list[list[np.ndarray]]:
    """``count`` input sets covering each input's full integer range (or float range)."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        one = []
        for name in graph.inputs:
            t = graph.tensors[name]
            if t.dtype in ir.INT_RANGES:
                lo, hi = ir.INT_RANGES[t.dtype]
                one.append(rng.integers(lo, hi + 1, size=t.shape).astype(t.dtype))
            else:
                lo, hi = _input_range(graph, name)
                one.append(rng.uniform(lo, hi, size=t.shape).astype(t.dtype))
        sets.append(one)
    return sets


def load_inputs(graph: ir.Graph, path: str) -> list[list[np.ndarray]]:
    """Read a ``.npy`` holding one input (the input's shape) or a batch ``[N, *shape]``."""
    if len(graph.inputs) != 1:
        raise Tfl2RtlError("--input files are supported for single-input models only")
    t = graph.tensors[graph.inputs[0]]
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Tfl2RtlError(f"{path}: cannot read it as a .npy array ({exc})") from None
    if x.dtype != np.dtype(t.dtype):
        hint = ""
        if t.scale is not None and x.dtype.kind == "f":
            hint = (f"; quantize it first: q = round(x / {t.scale:.8g}) + {t.zero_point}, "
                    f"clipped to {t.dtype}")
        raise Tfl2RtlError(f"{path} holds {x.dtype} but the model input is {t.dtype}{hint}")
    if x.size == t.size:
        return [[x.reshape(t.shape)]]
    if x.size % t.size == 0:
        return [[s.reshape(t.shape)] for s in x.reshape(-1, *t.shape)]
    raise Tfl2RtlError(f"{path} has shape {x.shape}; the model input has shape {t.shape} "
                       "(give one input or a batch [N, ...] of them)")


def _bits(values: np.ndarray) -> np.ndarray:
    """Integers as they are; floats as their bit patterns (``-0.0`` is not ``0.0``)."""
    if values.dtype.kind == "f":
        return values.view(f"u{values.dtype.itemsize}")
    return values


def verify_graph(graph: ir.Graph, input_sets, profile: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Run golden and reference on each input set; compare every non-constant tensor
    exactly (float32 tensors by their bit patterns).

    The reference is the interpreter the profile follows (:mod:`tfl2rtl.reference`):
    TensorFlow Lite Micro for ``tflm``, LiteRT's default interpreter for ``litert``,
    LiteRT's ``BUILTIN_REF`` resolver for ``litert-ref``.  ``profile`` defaults to
    :func:`tfl2rtl.golden.default_profile` (``tflm``; ``litert-ref`` for legacy uint8);
    one whose runtime lacks the model's mode is refused before anything runs."""
    prepared = golden.get_profile(profile or golden.default_profile(graph)).prepare(graph)
    report = VerifyReport(model=graph.source, profile=prepared.name)
    reference = reference_interpreter(graph.source, prepared.name)
    repaired = getattr(reference, "repaired", [])
    if repaired:
        report.notes.append(
            f"LiteRT refuses the file as it is (quantized_dimension beyond the rank of "
            f"{len(repaired)} tensors, e.g. 1-D biases); compared with a copy that has "
            "quantized_dimension 0 there, which no kernel reads")
    compared = [n for n, t in graph.tensors.items()
                if t.tflite_index is not None and t.data is None]
    indices = [graph.tensors[n].tflite_index for n in compared]
    for k, inputs in enumerate(input_sets):
        ours = golden.run(graph, inputs, profile=prepared)
        theirs = reference.invoke(inputs, indices)
        for name in compared:
            want = theirs[graph.tensors[name].tflite_index].reshape(graph.tensors[name].shape)
            got = ours.tensors[name]
            report.tensors_compared += 1
            report.elements_compared += got.size
            if got.dtype != want.dtype or not np.array_equal(_bits(got), _bits(want)):
                diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
                report.mismatches.append({
                    "sample": k, "tensor": name, "elements": int((diff != 0).sum()),
                    "max_abs_diff": float(diff.max()),
                })
        report.samples += 1
        if progress:
            progress(k + 1, len(input_sets))
    return report
