"""Payload layouts shared by the hardware components' streams."""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

__all__ = ["int8_lanes", "accumulator_layout"]


def int8_lanes(lanes: int) -> data.ArrayLayout:
    """``lanes`` int8 values side by side; lane 0 is the lowest-numbered element."""
    return data.ArrayLayout(signed(8), lanes)


def accumulator_layout(acc_width: int, lanes: int, groups: int) -> data.StructLayout:
    """``lanes`` accumulators of the channels ``group * lanes + lane``.

    ``group`` counts ``0 .. groups - 1`` and is zero bits wide when there is one group.
    """
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), lanes),
        "group": unsigned(ceil_log2(groups)),
    })
