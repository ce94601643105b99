"""Folding: how much of each layer is computed per cycle.

Every node with hardware is a stage (:mod:`tfl2rtl.hw.stages`).  A fully connected layer
with ``out_depth`` neurons over ``accum_depth`` inputs needs ``(out_depth / pe) *
(accum_depth / simd)`` cycles per inference with ``pe * simd`` multipliers; a
convolution needs that per output pixel; a depthwise convolution ``pe`` output channels at
a time; pools and elementwise ops move ``pe`` elements per beat and count nothing against
the multiplier budget, which holds the MAC multipliers only (average pooling, MEAN and ADD
multiply too, outside it: :mod:`tfl2rtl.hw.stages`).  In a streaming dataflow design the
slowest stage sets the initiation interval, so :func:`auto_fold` balances all stages for
the smallest interval the multiplier budget allows.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

from . import ir
from .errors import Tfl2RtlError
from .fold import Fold

__all__ = ["Fold", "stages", "folded_layers", "layer_cycles", "auto_fold", "load_fold",
           "full_fold"]


def stages(graph: ir.Graph) -> dict:
    """Every node with hardware, as a :class:`tfl2rtl.hw.stages.Stage`, by its index in
    ``graph.nodes``."""
    from .hw.stages import stage_for

    found = {}
    for i in range(len(graph.nodes)):
        stage = stage_for(graph, i)
        if stage is not None:
            found[i] = stage
    return found


def folded_layers(graph: ir.Graph) -> dict:
    """The stages whose folding can be chosen, by node index."""
    return {i: s for i, s in stages(graph).items() if s.foldable}


def layer_cycles(stage, fold: Fold) -> int:
    """Cycles per inference of ``stage`` folded by ``fold``."""
    return stage.cycles(fold)


def full_fold(graph: ir.Graph) -> dict[int, Fold]:
    """Every stage at its smallest: one multiplier per layer, one element per beat
    elsewhere."""
    return {i: Fold(1, 1) for i in folded_layers(graph)}


def _cost(stage, fold: Fold) -> tuple:
    """Cheapest first: fewest multipliers, then fewest lanes, then wider SIMD (fewer
    neuron folds, so less replay of the input)."""
    return stage.multipliers(fold), fold.pe * fold.simd, -fold.simd


def auto_fold(graph: ir.Graph, max_multipliers: int, min_interval: int = 1,
              requant_interval: int = 1) -> dict[int, Fold]:
    """The folding with the smallest initiation interval within ``max_multipliers``
    (``requant_interval``: cycles per requantizer beat on the target).

    ``min_interval`` is a bound set elsewhere (the stream edges moving a few elements per
    cycle): no stage is made faster than it, nor faster than a stage whose folding is
    fixed (a softmax), so nothing is spent for nothing.

    For a target interval ``T`` every stage takes its cheapest folding that needs at most
    ``T`` cycles.  That costs fewer multipliers the larger ``T`` is, so the smallest
    affordable ``T`` among the stages' possible cycle counts (found by bisection) is the
    optimum.
    """
    every = stages(graph)
    layers = {i: s for i, s in every.items() if s.foldable}
    options = {i: sorted(s.options(), key=lambda f, s=s: _cost(s, f))
               for i, s in layers.items()}
    least = sum(s.multipliers(options[i][0]) for i, s in layers.items())
    if max_multipliers < least:
        raise Tfl2RtlError(
            f"--max-multipliers {max_multipliers} is below the smallest design's "
            f"{least} multipliers (one per layer); "
            f"give at least {least}"
        )
    cycles = {i: {f: s.cycles(f, requant_interval=requant_interval) for f in options[i]}
              for i, s in layers.items()}
    floor = max([min_interval]
                + [min(c.values()) for c in cycles.values()]
                + [s.cycles(s.options()[0], requant_interval=requant_interval)
                   for i, s in every.items() if i not in layers])

    def cheapest(target: int) -> dict[int, Fold]:
        return {i: next(f for f in options[i] if cycles[i][f] <= target) for i in layers}

    def affordable(target: int) -> bool:
        fold = cheapest(target)
        return sum(layers[i].multipliers(f) for i, f in fold.items()) <= max_multipliers

    targets = sorted({c for per in cycles.values() for c in per.values() if c >= floor}
                     | {floor})
    # ``affordable`` is monotone in the target and true for the largest one.
    first = bisect.bisect_left(range(len(targets)), True,
                               key=lambda k: affordable(targets[k]))
    return cheapest(targets[min(first, len(targets) - 1)])


def load_fold(graph: ir.Graph, path: str | Path) -> dict[int, Fold]:
    """Read a folding file: ``{"layers": {"<node index>": {"pe": P, "simd": S}, ...}}``
    (``simd`` defaults to 1).  Stages it does not name get ``pe = simd = 1``."""
    try:
        spec = json.loads(Path(path).read_text())
        entries = spec["layers"]
        given = {int(k): Fold(int(v["pe"]), int(v.get("simd", 1))) for k, v in entries.items()}
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
        try:
            layers[i].check(f)
        except Tfl2RtlError as exc:
            raise Tfl2RtlError(f"{path}: {exc}") from None
        fold[i] = f
    return fold
