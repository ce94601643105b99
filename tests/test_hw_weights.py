# amaranth: UnusedElaboratable=no
"""LoadableMemory: rows written from the load stream, read back like a memory's."""

import random

import numpy as np
import pytest

from streams import STALL_MODES, load_beats, put, simulate
from tfl2rtl.boards.spram import spram_tiles
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.weights import LoadableMemory, load_payloads


def run(dut: LoadableMemory, beats, timing, reads):
    """Send ``beats`` on ``load``, then read rows ``reads``; returns the rows read and
    ``loaded`` before and after the load."""
    got, flags = [], []

    async def bench(ctx):
        flags.append(ctx.get(dut.loaded))
        await put(ctx, dut.load, beats, timing)
        await ctx.tick()  # the last row is written one cycle after its last byte
        await ctx.tick()
        flags.append(ctx.get(dut.loaded))
        for row in reads:
            ctx.set(dut.addr, row)
            ctx.set(dut.en, 1)
            await ctx.tick()
            ctx.set(dut.en, 0)
            got.append(ctx.get(dut.data))

    simulate(dut, bench)
    return got, flags


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("row_bytes, depth, chunk", [
    (1, 16, 5), (4, 64, 12), (3, 7, 1000), (8, 33, 8), (2, 1, 1)])
def test_loads_every_row_in_runs(row_bytes, depth, chunk, mode):
    rng = np.random.default_rng(row_bytes * depth)
    rows = rng.integers(0, 256, depth * row_bytes, dtype=np.uint8).tobytes()
    dut = LoadableMemory(8 * row_bytes, depth, memory_id=3)
    payloads = list(load_payloads(3, rows, row_bytes, chunk))
    # Runs repeated and out of order first (they do not make it ``loaded``), then in
    # order; beats for other memories in between, which it must ignore.
    shuffled = payloads[::-1] if len(payloads) > 1 else []
    random.Random(depth).shuffle(shuffled)
    payloads = shuffled + payloads
    noise = [bytes([2, 0, 0]) + bytes(row_bytes), bytes([4, 0, 0]) + bytes(2 * row_bytes)]
    beats = load_beats([*noise[:1], *payloads, *noise[1:]])
    got, flags = run(dut, beats, STALL_MODES[mode](depth)[0], range(depth))
    expected = [int.from_bytes(rows[k * row_bytes:(k + 1) * row_bytes], "little")
                for k in range(depth)]
    assert got == expected
    assert flags == [0, 1]


def test_rows_beyond_the_depth_are_dropped_and_loaded_waits_for_the_last_row():
    dut = LoadableMemory(16, 4, memory_id=0)
    # Rows 0 and 1, then a run from row 3 with one row too many (row 4 does not exist):
    # row 2 is never written.
    beats = load_beats([bytes([0, 0, 0, 1, 2, 3, 4]), bytes([0, 3, 0, 7, 8, 9, 10])])
    got, flags = run(dut, beats, None, range(4))
    assert got == [0x0201, 0x0403, 0, 0x0807]
    assert flags == [0, 0]  # row 2 is missing

    partial = LoadableMemory(16, 4, memory_id=0)
    got, flags = run(partial, load_beats([bytes([0, 0, 0, 1, 2, 3, 4])]), None, [1])
    assert got == [0x0403] and flags == [0, 0]


def test_spram_tiles_and_bad_shapes():
    assert spram_tiles(8, 100) == 1
    assert spram_tiles(64, 16384) == 4
    assert spram_tiles(72, 10) == 5
    assert spram_tiles(8, 16385) == 2  # two banks
    assert spram_tiles(20, 40000) == 6
    with pytest.raises(Tfl2RtlError):
        LoadableMemory(12, 4, 0)
    with pytest.raises(Tfl2RtlError):
        LoadableMemory(8, 4, 256)
    with pytest.raises(Tfl2RtlError, match="whole rows"):
        list(load_payloads(0, bytes(5), 2))


def test_payloads_cover_the_rows_once_in_whole_rows():
    rows = bytes(range(60))
    payloads = list(load_payloads(9, rows, 6, chunk=20))
    assert all(p[0] == 9 and (len(p) - 3) % 6 == 0 and len(p) - 3 <= 20 for p in payloads)
    rebuilt = bytearray(60)
    for p in payloads:
        start = 6 * int.from_bytes(p[1:3], "little")
        rebuilt[start:start + len(p) - 3] = p[3:]
    assert bytes(rebuilt) == rows

