"""Where two golden profiles part ways: run both on the same inputs, tensor by tensor."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import golden, ir
from .errors import Tfl2RtlError

__all__ = ["TensorDiff", "DiffReport", "diff_graph", "format_text"]


@dataclass
class TensorDiff:
    """One tensor over all inputs: ``elements`` compared, ``differing`` of them,
    ``max_abs_diff`` and a histogram ``{|difference|: count}`` of the differing ones."""

    tensor: str
    op: str
    node: int | None
    elements: int = 0
    differing: int = 0
    max_abs_diff: float = 0.0
    histogram: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"tensor": self.tensor, "op": self.op, "node": self.node,
                "elements": self.elements, "differing": self.differing,
                "max_abs_diff": self.max_abs_diff,
                "histogram": {_key(k): v for k, v in sorted(self.histogram.items())}}


def _key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class DiffReport:
    """:func:`diff_graph`'s result: tensors in execution order (graph inputs first)."""

    model: str
    profiles: tuple[str, str]
    samples: int = 0
    tensors: list[TensorDiff] = field(default_factory=list)

    @property
    def differing_tensors(self) -> list[TensorDiff]:
        return [t for t in self.tensors if t.differing]

    @property
    def first_difference(self) -> TensorDiff | None:
        return next(iter(self.differing_tensors), None)

    def to_json(self) -> dict:
        first = self.first_difference
        return {"model": self.model, "profiles": list(self.profiles), "samples": self.samples,
                "elements": sum(t.elements for t in self.tensors),
                "differing_elements": sum(t.differing for t in self.tensors),
                "differing_tensors": len(self.differing_tensors),
                "first_difference": first.tensor if first else None,
                "tensors": [t.to_json() for t in self.tensors]}


def diff_graph(graph: ir.Graph, input_sets, profiles=("tflm", "litert")) -> DiffReport:
    """Run the golden model under both ``profiles`` on every input set and count, per
    tensor, the elements whose values differ and by how much."""
    if len(profiles) != 2:
        raise Tfl2RtlError(f"diff compares two profiles, {len(profiles)} given")
    first, second = (golden.get_profile(p).prepare(graph) for p in profiles)
    if first.name == second.name:
        raise Tfl2RtlError(f"diff needs two different profiles, got {first.name!r} twice")
    report = DiffReport(model=graph.source, profiles=(first.name, second.name))
    order = [(name, "(input)", None) for name in graph.inputs]
    order += [(node.output, node.op, k) for k, node in enumerate(graph.nodes)]
    report.tensors = [TensorDiff(tensor=n, op=op, node=k) for n, op, k in order]
    for inputs in input_sets:
        a = golden.run(graph, inputs, profile=first)
        b = golden.run(graph, inputs, profile=second)
        for entry in report.tensors:
            x = a.tensors[entry.tensor]
            d = np.abs(x.astype(np.float64) - b.tensors[entry.tensor].astype(np.float64))
            entry.elements += int(x.size)
            nonzero = d[d != 0]
            entry.differing += int(nonzero.size)
            if nonzero.size:
                entry.max_abs_diff = max(entry.max_abs_diff, float(nonzero.max()))
                values, counts = np.unique(nonzero, return_counts=True)
                entry.histogram.update(dict(zip(values.tolist(), counts.tolist(),
                                                strict=True)))
        report.samples += 1
    return report


#: Longer tensor names are cut in the table (the JSON keeps them whole).
_NAME = 40


def format_text(report: DiffReport) -> str:
    """A table: one row per tensor, with the histogram of the differences."""
    a, b = report.profiles
    lines = [f"diff {a} vs {b}: {report.model}, {report.samples} input"
             f"{'s' if report.samples != 1 else ''}"]
    names = [t.tensor if len(t.tensor) <= _NAME else t.tensor[:_NAME - 3] + "..."
             for t in report.tensors]
    width = max(len(n) for n in names + ["tensor"])
    lines.append(f"{'node':>4}  {'op':<17} {'tensor':<{width}} {'elements':>9} "
                 f"{'differ':>8} {'max':>4}  by how much (|difference|: elements)")
    for t, name in zip(report.tensors, names, strict=True):
        node = "" if t.node is None else str(t.node)
        histogram = "  ".join(f"{_key(k)}: {v}" for k, v in sorted(t.histogram.items()))
        lines.append(f"{node:>4}  {t.op:<17} {name:<{width}} {t.elements:>9} "
                     f"{t.differing:>8} {_key(t.max_abs_diff) if t.differing else '':>4}  "
                     f"{histogram}".rstrip())
    first = report.first_difference
    total = sum(t.differing for t in report.tensors)
    if first is None:
        lines.append(f"{a} and {b} agree on every element of every tensor")
    else:
        lines.append(f"{total} elements differ in {len(report.differing_tensors)} of "
                     f"{len(report.tensors)} tensors; the first is {first.tensor!r} "
                     f"(node {first.node}, {first.op})")
    return "\n".join(lines)
