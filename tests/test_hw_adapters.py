import math
import random

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from streams import STALL_MODES, Timing, get, put, simulate
from tfl2rtl.hw.adapters import (
    AccumulatorSplitter,
    BeatPad,
    BeatTrim,
    Broadcast,
    LaneConverter,
    SkidBuffer,
    StreamFIFO,
)


def run_converter(dut, elements, mode, cycles=None):
    in_timing, out_timing = STALL_MODES[mode](dut.in_lanes * 10 + dut.out_lanes)
    results = []

    async def producer(ctx):
        beats = np.reshape(elements, (-1, dut.in_lanes)).tolist()
        await put(ctx, dut.i, beats, in_timing)

    async def consumer(ctx):
        count = len(elements) // dut.out_lanes
        for payload in await get(ctx, dut.o, count, out_timing, cycles=cycles):
            results.extend(payload[lane] for lane in range(dut.out_lanes))

    simulate(dut, producer, consumer)
    return results


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("in_lanes, out_lanes", [(1, 4), (4, 1), (3, 2), (2, 3), (4, 4), (1, 1)])
def test_lane_converter_keeps_order(in_lanes, out_lanes, mode):
    rng = np.random.default_rng(in_lanes * out_lanes)
    count = 12 * math.lcm(in_lanes, out_lanes)
    elements = rng.integers(-128, 128, count).tolist()
    dut = LaneConverter(signed(8), in_lanes, out_lanes)
    np.testing.assert_array_equal(run_converter(dut, elements, mode), elements)


@pytest.mark.parametrize("in_lanes, out_lanes",
                         [(1, 4), (4, 1), (3, 2), (2, 3), (1, 1), (5, 3), (3, 5), (8, 1)])
def test_lane_converter_throughput(in_lanes, out_lanes):
    # The narrower side moves a beat every cycle once the converter is running.
    elements = list(range(-120, 120))
    dut = LaneConverter(signed(8), in_lanes, out_lanes)
    cycles = []
    run_converter(dut, elements, "streaming", cycles=cycles)
    per_cycle = min(in_lanes, out_lanes)
    elapsed = cycles[-1] - cycles[0]
    assert elapsed <= len(elements) / per_cycle - out_lanes / per_cycle + 1


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("in_lanes, out_lanes", [(4, 1), (6, 2), (6, 3)])
def test_accumulator_splitter(in_lanes, out_lanes, mode):
    groups = 5
    dut = AccumulatorSplitter(20, in_lanes, out_lanes, groups)
    rng = np.random.default_rng(in_lanes + out_lanes)
    beats = [(int(rng.integers(0, groups)), rng.integers(-2**19, 2**19, in_lanes).tolist())
             for _ in range(30)]
    in_timing, out_timing = STALL_MODES[mode](in_lanes)
    got = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": accs, "group": g} for g, accs in beats], in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, len(beats) * dut.ratio, out_timing):
            got.append((payload.group, [payload.acc[j] for j in range(out_lanes)]))

    simulate(dut, producer, consumer)
    expected = [(g * dut.ratio + k, accs[k * out_lanes:(k + 1) * out_lanes])
                for g, accs in beats for k in range(dut.ratio)]
    assert got == expected


def pass_through(dut, values, count, timings, cycles=None) -> list:
    """``values`` into ``dut.i`` and ``count`` payloads out of ``dut.o``, under
    ``timings`` (the input's and the output's); the edges they left at in ``cycles``."""
    in_timing, out_timing = timings
    got = []

    async def producer(ctx):
        await put(ctx, dut.i, values, in_timing)

    async def consumer(ctx):
        got.extend(await get(ctx, dut.o, count, out_timing, cycles=cycles))

    simulate(dut, producer, consumer)
    return got


@pytest.mark.parametrize("mode", STALL_MODES)
def test_stream_fifo(mode):
    dut = StreamFIFO(signed(8), depth=5)
    rng = random.Random(0)
    values = [rng.randint(-128, 127) for _ in range(40)]
    assert pass_through(dut, values, len(values), STALL_MODES[mode](9)) == values


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("keep, period", [(5, 8), (1, 3), (4, 4), (1, 1)])
def test_beat_trim_keeps_the_first_beats_of_every_period(keep, period, mode):
    dut = BeatTrim(signed(8), keep, period)
    values = [(k * 7) % 256 - 128 for k in range(6 * period)]
    kept = [v for k, v in enumerate(values) if k % period < keep]
    assert pass_through(dut, values, len(kept), STALL_MODES[mode](period)) == kept


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("keep, period", [(1, 8), (3, 4), (4, 4), (1, 1)])
def test_beat_pad_follows_every_keep_beats_with_zeros(keep, period, mode):
    dut = BeatPad(signed(8), keep, period)
    values = [(k * 7) % 255 - 127 for k in range(6 * keep)]
    padded = [v for k in range(0, len(values), keep)
              for v in values[k:k + keep] + [0] * (period - keep)]
    assert pass_through(dut, values, len(padded), STALL_MODES[mode](period)) == padded


@pytest.mark.parametrize("mode", STALL_MODES)
def test_skid_buffer_keeps_every_beat_in_order(mode):
    dut = SkidBuffer(signed(8))
    rng = random.Random(1)
    values = [rng.randint(-128, 127) for _ in range(200)]
    cycles = []
    assert pass_through(dut, values, len(values), STALL_MODES[mode](11), cycles) == values
    if mode == "streaming":  # beat k taken at edge k + 1 leaves at edge k + 1 + latency
        assert cycles == [k + 1 + dut.latency for k in range(len(values))]


def test_skid_buffer_ready_is_a_register():
    """``i.ready`` does not follow ``o.ready`` in the same cycle: it is high while the
    spare register is empty, whatever ``o.ready`` does."""
    from amaranth.sim import Simulator

    dut = SkidBuffer(signed(8))
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for k, ready in enumerate([1, 0, 0, 1, 1, 0, 1, 1]):
            ctx.set(dut.i.payload, k)
            ctx.set(dut.o.ready, ready)
            seen.append((ready, ctx.get(dut.i.ready)))
            ctx.set(dut.o.ready, 1 - ready)  # flipping o.ready leaves i.ready as it was
            assert ctx.get(dut.i.ready) == seen[-1][1]
            ctx.set(dut.o.ready, ready)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert any(not r for _, r in seen)  # the spare register did fill and stall the input


def run_broadcast(dut, values, timings, in_timing=None, cycles=None):
    """Send ``values`` into ``dut`` and collect every output with its own timing; with
    ``cycles``, the transfer cycles of each output too."""
    got = [[] for _ in range(dut.count)]
    cycles = [[] for _ in range(dut.count)] if cycles is None else cycles

    async def producer(ctx):
        await put(ctx, dut.i, values, in_timing)

    def consumer(k):
        async def testbench(ctx):
            got[k].extend(await get(ctx, dut.o[k], len(values), timings[k], cycles[k]))
        return testbench

    simulate(dut, producer, *(consumer(k) for k in range(dut.count)))
    return got


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_broadcast_independent_backpressure(count, mode):
    dut = Broadcast(signed(8), count)
    rng = random.Random(count)
    values = [rng.randint(-128, 127) for _ in range(60)]
    in_timing = STALL_MODES[mode](count)[0]
    # Each output with its own random backpressure (heavier on the later ones).
    timings = [Timing(random.Random(10 * count + k), pause=0.2 + 0.25 * k)
               if mode == "stalls" else Timing() for k in range(count)]
    got = run_broadcast(dut, values, timings, in_timing)
    assert got == [values] * count


def test_broadcast_outputs_take_beats_independently():
    # Output 1 holds off for 12 cycles: output 0 still takes the first beat at once (its
    # valid does not wait for output 1's ready), but not the second before output 1 has
    # the first.  Without stalls every output gets a beat per cycle.
    dut = Broadcast(data.ArrayLayout(signed(8), 2), 2)
    values = [[k, -k] for k in range(10)]
    cycles = [[], []]

    class Late(Timing):
        def __init__(self):
            super().__init__()
            self.first = True

        def idle_cycles(self):
            idle, self.first = (12 if self.first else 0), False
            return idle

    got = run_broadcast(dut, values, [Timing(), Late()], cycles=cycles)
    assert got == [values, values]
    assert cycles[0][0] == 1 and cycles[1][0] == 13
    assert cycles[0][1] == cycles[1][0] + 1  # the second beat waited for output 1
    assert np.all(np.diff(cycles[0][1:]) == 1) and np.all(np.diff(cycles[1]) == 1)
    assert dut.latency == 0 and dut.throughput == 1
