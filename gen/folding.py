"""Folding: how many multipliers each layer gets (PE output neurons x SIMD input lanes).

A fully connected layer with ``out_depth`` neurons over ``accum_depth`` inputs needs
``(out_depth / pe) * (accum_depth / simd)`` cycles per input vector with ``pe * simd``
multipliers.  In a streaming dataflow design the slowest layer sets the initiation
interval, so :func:`auto_fold` balances the layers for the smallest interval the
multiplier budget allows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import ir
from .errors import Tfl2RtlError

__all__ = ["Fold", "folded_layers", "layer_cycles", "auto_fold", "load_fold", "full_fold"]


@dataclass(frozen=True)
class Fold:
    pe: int
    simd: int

    @property
    def multipliers(self) -> int:
        return self.pe * self.simd


def folded_layers(graph: ir.Graph) -> dict[int, ir.FullyConnected]:
    """The foldable layers, by their index in ``graph.nodes``."""
    return {i: n for i, n in enumerate(graph.nodes) if isinstance(n, ir.FullyConnected)}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layer_cycles(node: ir.FullyConnected, fold: Fold) -> int:
    out_depth, accum_depth = node.weights.shape
    return (out_depth // fold.pe) * (accum_depth // fold.simd)


def _check(node: ir.FullyConnected, fold: Fold, where: str) -> None:
    out_depth, accum_depth = node.weights.shape
    if fold.pe < 1 or out_depth % fold.pe or fold.simd < 1 or accum_depth % fold.simd:
        raise Tfl2RtlError(
            f"{where}: pe={fold.pe}, simd={fold.simd} does not divide the layer "
            f"({out_depth} outputs x {accum_depth} inputs); pe must divide {out_depth} "
            f"and simd must divide {accum_depth}"
        )


def full_fold(graph: ir.Graph) -> dict[int, Fold]:
    """Every layer on one multiplier (the smallest design)."""
    return {i: Fold(1, 1) for i in folded_layers(graph)}


def auto_fold(graph: ir.Graph, max_multipliers: int, min_interval: int = 1) -> dict[int, Fold]:
    """The folding with the smallest initiation interval within ``max_multipliers``.

    ``min_interval`` is a bound set elsewhere (the stream edges moving a few elements per
    cycle): no layer is made faster than it, so no multiplier is spent for nothing.

    For a target interval ``T`` every layer takes its cheapest folding that needs at
    most ``T`` cycles; the cost of ``T`` only falls as ``T`` grows, so the smallest
    affordable ``T`` among the layers' possible cycle counts is the optimum.  Ties
    prefer wider SIMD (fewer neuron folds, so less replay of the input vector).
    """
    layers = folded_layers(graph)
    if max_multipliers < len(layers):
        raise Tfl2RtlError(
            f"--max-multipliers {max_multipliers} is below one multiplier per layer "
            f"({len(layers)} layers); give at least {len(layers)}"
        )
    options = {}
    for i, node in layers.items():
        out_depth, accum_depth = node.weights.shape
        options[i] = sorted(
            (Fold(pe, simd) for pe in _divisors(out_depth) for simd in _divisors(accum_depth)),
            key=lambda f: (f.multipliers, -f.simd),
        )

    def cheapest(target: int) -> dict[int, Fold]:
        return {i: next(f for f in options[i] if layer_cycles(layers[i], f) <= target)
                for i in layers}

    targets = sorted({layer_cycles(layers[i], f) for i in layers for f in options[i]})
    fastest = max(layer_cycles(n, options[i][-1]) for i, n in layers.items())
    targets = [t for t in targets if t >= max(fastest, min_interval)] or [max(targets)]
    for target in targets:
        fold = cheapest(target)
        if sum(f.multipliers for f in fold.values()) <= max_multipliers:
            return fold
    return full_fold(graph)  # unreachable: the largest target costs one per layer


def load_fold(graph: ir.Graph, path: str | Path) -> dict[int, Fold]:
    """Read a folding file: ``{"layers": {"<node index>": {"pe": P, "simd": S}, ...}}``.
    Layers it does not name get ``pe = simd = 1``."""
    try:
        spec = json.loads(Path(path).read_text())
        entries = spec["layers"]
        given = {int(k): Fold(int(v["pe"]), int(v["simd"])) for k, v in entries.items()}
    except FileNotFoundError:
        raise Tfl2RtlError(f"{path}: no such folding file") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Tfl2RtlError(
            f"{path}: not a folding file ({exc}); expected "
            '{"layers": {"0": {"pe": 4, "simd": 8}, ...}}'
        ) from None
    layers = folded_layers(graph)
    fold = full_fold(graph)
    for i, f in given.items():
        if i not in layers:
            raise Tfl2RtlError(f"{path}: layer {i} is not a foldable layer; foldable layers: "
                               + ", ".join(str(k) for k in layers))
        _check(layers[i], f, f"{path}: layer {i}")
        fold[i] = f
    return fold
