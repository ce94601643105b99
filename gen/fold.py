"""A folding and the divisors it is chosen from, without dependencies: the leaf that
:mod:`tfl2rtl.folding` (which chooses foldings) and :mod:`tfl2rtl.hw` (which builds
them) both import."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fold", "divisors", "divisors_text"]


@dataclass(frozen=True)
class Fold:
    """``pe`` parallel outputs (channels, neurons or elements) by ``simd`` parallel inputs
    per cycle; what they mean for each op is in :mod:`tfl2rtl.hw.stages`."""

    pe: int
    simd: int

    @property
    def multipliers(self) -> int:
        """``pe * simd``: the MAC multipliers of a fully connected or convolution layer
        (see :meth:`tfl2rtl.hw.stages.Stage.multipliers` for the others)."""
        return self.pe * self.simd


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending: the lane counts and foldings that split ``n``
    channels (or elements) evenly."""
    return [d for d in range(1, n + 1) if n % d == 0]


def divisors_text(n: int) -> str:
    """:func:`divisors` of ``n`` for a message: ``"1, 2, 4"``."""
    return ", ".join(map(str, divisors(n)))
