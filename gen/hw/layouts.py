"""Payload layouts shared by the hardware components' streams."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

__all__ = ["int8_lanes", "signed_lanes", "pack_lanes", "accumulator_layout"]


def int8_lanes(lanes: int) -> data.ArrayLayout:
    """``lanes`` int8 values side by side; lane 0 is the lowest-numbered element."""
    return signed_lanes(8, lanes)


def signed_lanes(bits: int, lanes: int) -> data.ArrayLayout:
    """``lanes`` signed ``bits``-bit values side by side (weights of 8 or 9 bits)."""
    return data.ArrayLayout(signed(bits), lanes)


def pack_lanes(rows: np.ndarray, bits: int) -> list[int]:
    """Each row of ``rows`` (``[n, lanes]`` integers of ``bits`` signed bits) as the
    integer a :func:`signed_lanes` memory row holds: lane 0 in the lowest bits.  (Packed
    in numpy for 8 bits: Amaranth converts a memory's nested initial rows slowly.)"""
    rows = np.asarray(rows, dtype=np.int64)
    if bits == 8:
        size = rows.shape[1]
        data_ = rows.astype(np.int8).tobytes()
        return [int.from_bytes(data_[k:k + size], "little")
                for k in range(0, len(data_), size)]
    mask = (1 << bits) - 1
    return [sum((int(v) & mask) << (bits * lane) for lane, v in enumerate(row))
            for row in rows.tolist()]


def accumulator_layout(acc_width: int, lanes: int, groups: int) -> data.StructLayout:
    """``lanes`` accumulators of the channels ``group * lanes + lane``.

    ``group`` counts ``0 .. groups - 1`` and is zero bits wide when there is one group.
    """
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), lanes),
        "group": unsigned(ceil_log2(groups)),
    })
