# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
import itertools
import random

import numpy as np
import pytest

from conftest import TEST_MODELS, long_case
from streams import DSP_PLATFORM, STALL_MODES, Timing, get, put, simulate
from tfl2rtl import fixedpoint as fp
from tfl2rtl import golden
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.pipeline import fabric_product
from tfl2rtl.hw.requant import (
    COMPACT_INTERVAL,
    INT64_STAGES,
    STAGES,
    Int64Requantizer,
    Requantizer,
    RoundingRequantizer,
    lane_multipliers,
    matches_double_rounding,
    reduced_multipliers,
)
from tfl2rtl.ir import Requant
from tfl2rtl.lower import hardware_form

EXTREME_MULTIPLIERS = [0, 1, 1 << 30, fp.INT32_MAX, fp.INT32_MIN, -1, 1_518_500_250, 12_345]
EXTREME_SHIFTS = [-31, -30, -17, -1, 0, 1, 30, 31]
#: The two forms of a requantizer lane on one 16x16 multiplier: serial products (a
#: pipeline stepping every few cycles) and compact (one beat at a time).
ONE_MULTIPLIER = {"serial": {"serial_products": True}, "compact": {"compact": True}}


def make_requant(multiplier, shift):
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    return Requant(multiplier=multiplier, shift=shift, real_scale=np.zeros(multiplier.shape))


def reference(acc, channel, dut: Requantizer, requant: Requant):
    """What TFLite computes, from :mod:`tfl2rtl.fixedpoint`."""
    multiplier = np.broadcast_to(requant.multiplier, (dut.channels,))[channel]
    shift = np.broadcast_to(requant.shift, (dut.channels,))[channel]
    scaled = fp.multiply_by_quantized_multiplier(fp.wrap_int32(acc), multiplier, shift)
    return np.clip(fp.wrap_int32(scaled + dut.output_offset[channel]), dut.act_min[channel],
                   dut.act_max[channel])


def interesting_accumulators(multiplier, shift, acc_width, rng: np.random.Generator, count):
    """Accumulators for one channel: the ends of the range, values around zero, random
    ones, and ones whose result lands near every int8 value and its negative half-way
    points (found by dividing by the real multiplier)."""
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    accs = [lo, lo + 1, hi, hi - 1, 0, 1, -1, 2, -2, -3, 3, -5, 5]
    accs += [int(a) for a in rng.integers(lo, hi, 4, endpoint=True)]
    real = multiplier * 2.0 ** (shift - 31)
    if real != 0:
        targets = rng.integers(-140, 140, count) + rng.choice([0, 0.5, -0.5], count)
        jitter = rng.integers(-2, 3, count)
        accs += [int(round(t / real)) + int(d) for t, d in zip(targets, jitter, strict=True)]
    return [min(max(acc, lo), hi) for acc in accs]


def run_requantizer(dut, requant, beats, mode, seed=0, platform=None, deadline=100_000,
                    expect=reference):
    """Send ``beats`` (``(group, [acc per lane])``) to ``dut`` elaborated for
    ``platform``; return outputs and expected outputs (``expect(acc, channel, dut,
    requant)``)."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": accs, "group": group} for group, accs in beats],
                  in_timing)

    async def consumer(ctx):
        payloads = await get(ctx, dut.o, len(beats), out_timing)
        results.extend([payload[lane] for lane in range(dut.lanes)] for payload in payloads)

    simulate(dut, producer, consumer, platform=platform, deadline=deadline)
    expected = [
        [expect(acc, group * dut.lanes + lane, dut, requant) for lane, acc in enumerate(accs)]
        for group, accs in beats
    ]
    return np.array(results), np.array(expected)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_extreme_multipliers_and_shifts(mode, platform):
    pairs = list(itertools.product(EXTREME_MULTIPLIERS, EXTREME_SHIFTS))
    requant = make_requant(*zip(*pairs, strict=True))
    dut = Requantizer(requant, channels=len(pairs), output_offset=-3, act_min=-128,
                      act_max=127, acc_width=32)
    rng = np.random.default_rng(1)
    beats = [
        (channel, [int(acc)])
        for channel, (multiplier, shift) in enumerate(pairs)
        for acc in interesting_accumulators(multiplier, shift, 32, rng, 16)
    ]
    random.Random(2).shuffle(beats)
    got, expected = run_requantizer(dut, requant, beats, mode, platform=platform)
    np.testing.assert_array_equal(got, expected)
    # The values must not all be clamped, or the rounding would go untested.
    assert np.count_nonzero((expected > -128) & (expected < 127)) > len(beats) // 3


@pytest.mark.parametrize("mode", STALL_MODES)
def test_negative_half_way_cases(mode):
    # mbqm(x, 2**30, -r) rounds twice: x / 2 half towards +inf, then / 2**r half away
    # from zero.  Every x here hits a half-way point of one or both roundings.
    shifts = [-1, -2, -5, -31]
    requant = make_requant([1 << 30] * len(shifts), shifts)
    dut = Requantizer(requant, channels=len(shifts), output_offset=0, act_min=-128,
                      act_max=127, acc_width=32)
    beats = []
    for channel, shift in enumerate(shifts):
        half = 1 << (-shift - 1)
        for k in range(-6, 6):
            for acc in (2 * (2 * k + 1) * half, 2 * (2 * k + 1) * half + 1,
                        2 * (2 * k + 1) * half - 1, 2 * k + 1):
                beats.append((channel, [acc]))
    got, expected = run_requantizer(dut, requant, beats, mode)
    np.testing.assert_array_equal(got, expected)
    assert fp.multiply_by_quantized_multiplier(-5, 1 << 30, -1) == -1  # the asymmetry
    assert [-1] in got.tolist() and [2] in got.tolist()


@pytest.mark.parametrize("offset", [5, -5, 127, -128])
def test_output_offset_wraps_like_int32(offset):
    # multiplier ~1, no shift: q ~ acc, so accumulators at the ends of int32 make
    # q + output_offset wrap around in the C code's int32 addition.
    requant = make_requant([fp.INT32_MAX], [0])
    dut = Requantizer(requant, channels=1, output_offset=offset, act_min=-128, act_max=127,
                      acc_width=32)
    ends = [fp.INT32_MAX - k for k in range(260)] + [fp.INT32_MIN + k for k in range(260)]
    beats = [(0, [acc]) for acc in ends + list(range(-300, 300, 7))]
    got, expected = run_requantizer(dut, requant, beats, "streaming")
    np.testing.assert_array_equal(got, expected)
    # The end that wraps lands at the other bound (q = acc - 1 near INT32_MAX).
    near_end = expected[:260] if offset > 0 else expected[260:520]
    wrapped = np.count_nonzero(near_end == (-128 if offset > 0 else 127))
    assert abs(offset) - 1 <= wrapped <= abs(offset)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("acc_width", [9, 20, 40])
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_per_channel_lanes(mode, acc_width, platform):
    # Realistic per-channel parameters, 4 lanes, a narrow activation range, and (for 40
    # bits) accumulators that the int32 wrap must fold like the C code.
    rng = np.random.default_rng(acc_width)
    channels, lanes = 12, 4
    pairs = [fp.quantize_multiplier(s) for s in rng.uniform(1e-5, 0.02, channels)]
    pairs[5] = (pairs[5][0], 2)  # one left shift among them
    requant = make_requant(*zip(*pairs, strict=True))
    dut = Requantizer(requant, channels=channels, output_offset=17, act_min=-20, act_max=100,
                      acc_width=acc_width, lanes=lanes)
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    beats = []
    for _ in range(120):
        group = int(rng.integers(0, channels // lanes))
        accs = rng.integers(lo, hi, lanes, endpoint=True)
        accs[rng.random(lanes) < 0.3] = rng.choice([lo, hi, 0, -1])
        beats.append((group, [int(a) for a in accs]))
    got, expected = run_requantizer(dut, requant, beats, mode, seed=acc_width,
                                     platform=platform)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("acc_width, left", [(18, 0), (21, 0), (19, 2), (17, 4)])
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_high_products_in_logic(mode, acc_width, left, platform):
    """x of 18 to 21 bits (an accumulator shifted left by one shift for all channels):
    its products by x's high half come from LUTs (:func:`high_products_in_logic`), for
    multipliers of both signs and every width, accumulators over the whole range."""
    from tfl2rtl.hw.requant import NARROW_X_BITS, x_bits

    rng = np.random.default_rng(acc_width + 100 * left)
    multipliers = [-(1 << 31), (1 << 31) - 1, 1 << 30, -(1 << 30) - 1, 65_535, -1, 0,
                   1_518_500_250, *(int(v) for v in rng.integers(-(1 << 31), 1 << 31, 8))]
    rights = [0, -1, -5, -12, -31, *(int(v) for v in rng.integers(-31, 0, 11))]
    shifts = [left] * len(multipliers) if left else rights
    requant = make_requant(multipliers, shifts)
    channels, lanes = len(multipliers), 2
    assert 17 < x_bits(acc_width, requant.shift) <= NARROW_X_BITS
    dut = Requantizer(requant, channels=channels, output_offset=-7, act_min=-128,
                      act_max=127, acc_width=acc_width, lanes=lanes)
    assert dut.multipliers == lanes * 2
    beats = []
    for group in range(channels // lanes):
        per_lane = [interesting_accumulators(multipliers[group * lanes + lane],
                                             shifts[group * lanes + lane], acc_width, rng, 12)
                    for lane in range(lanes)]
        count = min(len(accs) for accs in per_lane)
        beats += [(group, [accs[k] for accs in per_lane]) for k in range(count)]
    random.Random(acc_width).shuffle(beats)
    got, expected = run_requantizer(dut, requant, beats, mode, seed=acc_width,
                                     platform=platform)
    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero((expected > -128) & (expected < 127)) > len(beats) // 4


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("form", ["parallel", "serial", "compact"])
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_per_channel_epilogues(mode, form, platform):
    # A sequential engine's layers through one requantizer: each channel its own offset
    # and clamp, including offsets that make the int32 addition wrap at either end and
    # ranges of one value, in two lanes whose channels differ within a group too.
    offsets = [0, 5, -5, 127, -128, 3, 1 << 20, -(1 << 20), -17, 9]
    act_min = [-128, -128, 0, -128, -20, 3, -128, -128, -1, -128]
    act_max = [127, 127, 127, 6, 100, 3, 127, 127, 1, 0]
    channels, lanes = len(offsets), 2
    requant = make_requant([fp.INT32_MAX] * channels, [0] * channels)  # q ~ acc
    dut = Requantizer(requant, channels=channels, output_offset=offsets, act_min=act_min,
                      act_max=act_max, acc_width=32, lanes=lanes,
                      **ONE_MULTIPLIER.get(form, {}))
    assert dut.per_channel_epilogue
    rng = np.random.default_rng(len(form))
    near = ([fp.INT32_MAX - k for k in range(0, 300, 3)]
            + [fp.INT32_MIN + k for k in range(0, 300, 3)] + list(range(-300, 300, 5))
            + [(1 << 20) + k for k in (-200, -1, 0, 1)] + [-(1 << 20) + k for k in (-1, 0, 1)])
    beats = [(int(rng.integers(0, channels // lanes)), [int(a) for a in rng.choice(near, 2)])
             for _ in range(300)]
    got, expected = run_requantizer(dut, requant, beats, mode, seed=3, platform=platform,
                                     deadline=400_000)
    np.testing.assert_array_equal(got, expected)
    for channel in range(channels):  # every channel's clamp is met
        lane, values = channel % lanes, expected[[g == channel // lanes for g, _ in beats]]
        assert {act_min[channel], act_max[channel]} <= set(values[:, lane].tolist())


def test_one_epilogue_for_all_channels_has_no_epilogue_rom():
    requant = make_requant([1 << 30] * 4, [-1] * 4)
    same = Requantizer(requant, channels=4, output_offset=[3] * 4, act_min=-128,
                       act_max=[127] * 4, acc_width=20, lanes=2)
    assert not same.per_channel_epilogue
    assert same.output_offset.tolist() == [3] * 4


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("multiplier, shift", [
    (1_300_000_000, -9),
    (-3, 2),  # a narrow signed constant, sign-extended before it is split
    (40_000, -1),  # an unsigned constant of 16 bits, no high half
])
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_per_tensor_parameters(multiplier, shift, mode, platform):
    # One multiplier and shift for all channels: constants, no ROM.
    requant = make_requant([multiplier], [shift])
    dut = Requantizer(requant, channels=6, output_offset=-128, act_min=-128, act_max=127,
                      acc_width=24, lanes=2)
    rng = np.random.default_rng(3)
    beats = [(int(rng.integers(0, 3)), [int(a) for a in rng.integers(-3000, 60000, 2)])
             for _ in range(100)]
    got, expected = run_requantizer(dut, requant, beats, mode, platform=platform)
    np.testing.assert_array_equal(got, expected)


def output_cycles(dut, count: int, platform=None) -> list[int]:
    """The edges at which ``count`` results leave a one-lane, two-channel requantizer fed
    a beat every cycle from cycle 0 (``acc = k``, group ``k % 2``)."""
    cycles = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": [i], "group": i % 2} for i in range(count)])

    async def consumer(ctx):
        await get(ctx, dut.o, count, cycles=cycles)

    simulate(dut, producer, consumer, platform=platform)
    return cycles


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_latency_and_throughput(platform):
    requant = make_requant([1 << 30, 1 << 30], [0, -3])
    dut = Requantizer(requant, channels=2, output_offset=0, act_min=-128, act_max=127,
                      acc_width=16)
    cycles = output_cycles(dut, 20, platform)
    # Both testbenches start at cycle 0; the first beat transfers at the first edge.
    assert cycles[0] == 1 + dut.latency
    assert np.all(np.diff(cycles) == 1)  # one result per cycle
    assert dut.latency == len(STAGES) and dut.throughput == 1


@pytest.mark.parametrize("serial", [False, True], ids=["parallel", "serial"])
def test_a_per_channel_epilogue_adds_a_stage(serial):
    requant = make_requant([1 << 30, 1 << 30], [0, -3])
    dut = Requantizer(requant, channels=2, output_offset=[0, 5], act_min=[-128, -10],
                      act_max=127, acc_width=16, serial_products=serial)
    cycles = output_cycles(dut, 12)
    # The first beat transfers at the first step: edge 1, or edge ``interval`` when serial.
    assert cycles[0] == dut.interval + dut.latency
    assert set(np.diff(cycles)) == {dut.interval}
    assert dut.latency == Requantizer.latency_for(dut.interval, True) \
        == len(STAGES) * dut.interval + 1


def test_stall_holds_output():
    # A result waiting on a stalled output must stay put until it is taken.
    requant = make_requant([1 << 30], [0])
    dut = Requantizer(requant, channels=1, output_offset=0, act_min=-128, act_max=127,
                      acc_width=16)
    seen = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": [2 * i], "group": 0} for i in range(4)])

    async def consumer(ctx):
        for _ in range(dut.latency + 6):
            await ctx.tick()
        seen.extend(await get(ctx, dut.o, 4, Timing(random.Random(4), pause=0.9)))

    simulate(dut, producer, consumer)
    assert [payload[0] for payload in seen] == [0, 1, 2, 3]


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 6, "lanes": 4}, r"^cannot requantize 6 channels in groups of 4 lanes"),
    ({"multiplier": [1, 2]}, r"^requantization has 2 multipliers and 2 shifts for 6 channels"),
    ({"shift": [-32]}, r"^requantization shifts -32 \.\. -32 are outside -31 \.\. 31$"),
    ({"multiplier": [1 << 31]}, r"^a requantization multiplier is outside int32$"),
    ({"act_min": -129}, r"^activation range \[-129, 127\] is not an int8 range$"),
    ({"act_min": 5, "act_max": 4}, r"^activation range \[5, 4\] is not an int8 range$"),
    ({"output_offset": 1 << 31}, r"^output offset 2147483648 is outside the int32 range"),
])
def test_rejects_bad_parameters(kwargs, message):
    args = {"multiplier": [1 << 30], "shift": [0], "channels": 6, "lanes": 1,
            "act_min": -128, "act_max": 127, "output_offset": 0}
    args.update(kwargs)
    multiplier, shift = args.pop("multiplier"), args.pop("shift")
    if len(shift) != len(multiplier):
        shift = shift * len(multiplier)
    with pytest.raises(Tfl2RtlError, match=message):
        Requantizer(make_requant(multiplier, shift), acc_width=32, **args)


# --- serial products: one shared 16x16 multiplier per lane (boards with few DSPs) -------


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("form", ONE_MULTIPLIER)
def test_one_multiplier_extreme_multipliers_and_shifts(form, mode, platform):
    pairs = list(itertools.product(EXTREME_MULTIPLIERS, EXTREME_SHIFTS))
    requant = make_requant(*zip(*pairs, strict=True))
    dut = Requantizer(requant, channels=len(pairs), output_offset=-3, act_min=-128,
                      act_max=127, acc_width=32, **ONE_MULTIPLIER[form])
    assert (dut.products, dut.interval, dut.multipliers) == (
        4, 5 if form == "serial" else COMPACT_INTERVAL, 1)
    rng = np.random.default_rng(5)
    beats = [
        (channel, [int(acc)])
        for channel, (multiplier, shift) in enumerate(pairs)
        for acc in interesting_accumulators(multiplier, shift, 32, rng, 6)
    ]
    random.Random(6).shuffle(beats)
    got, expected = run_requantizer(dut, requant, beats, mode, platform=platform)
    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero((expected > -128) & (expected < 127)) > len(beats) // 3


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("form", ONE_MULTIPLIER)
def test_one_multiplier_per_channel_lanes(form, mode, platform):
    # Four lanes of 40-bit accumulators, each lane with its own shared multiplier.
    rng = np.random.default_rng(40)
    channels, lanes = 12, 4
    pairs = [fp.quantize_multiplier(s) for s in rng.uniform(1e-5, 0.02, channels)]
    pairs[5] = (pairs[5][0], 2)
    pairs[7] = (-pairs[7][0], -3)  # a negative multiplier: a signed high half
    requant = make_requant(*zip(*pairs, strict=True))
    dut = Requantizer(requant, channels=channels, output_offset=17, act_min=-20,
                      act_max=100, acc_width=40, lanes=lanes, **ONE_MULTIPLIER[form])
    assert dut.multipliers == lanes
    lo, hi = -(1 << 39), (1 << 39) - 1
    beats = []
    for _ in range(80):
        accs = rng.integers(lo, hi, lanes, endpoint=True)
        accs[rng.random(lanes) < 0.3] = rng.choice([lo, hi, 0, -1])
        beats.append((int(rng.integers(0, channels // lanes)), [int(a) for a in accs]))
    got, expected = run_requantizer(dut, requant, beats, mode, seed=9, platform=platform)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("multiplier, shift", [(40_000, -1), (-3, 2), (1_300_000_000, -9)])
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("form", ONE_MULTIPLIER)
def test_one_multiplier_per_tensor(form, multiplier, shift, platform):
    # Constant multipliers; one of 16 unsigned bits needs two serial products only.
    requant = make_requant([multiplier], [shift])
    dut = Requantizer(requant, channels=6, output_offset=-128, act_min=-128, act_max=127,
                      acc_width=24, lanes=2, **ONE_MULTIPLIER[form])
    assert dut.interval == (COMPACT_INTERVAL if form == "compact"
                            else 3 if multiplier == 40_000 else 5)
    rng = np.random.default_rng(3)
    beats = [(int(rng.integers(0, 3)), [int(a) for a in rng.integers(-3000, 60000, 2)])
             for _ in range(60)]
    got, expected = run_requantizer(dut, requant, beats, "stalls", platform=platform)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_serial_products_interval_and_latency(platform):
    requant = make_requant([1 << 30, -(1 << 30)], [0, -3])
    dut = Requantizer(requant, channels=2, output_offset=0, act_min=-128, act_max=127,
                      acc_width=16, serial_products=True)
    count = 12
    cycles = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": [i], "group": i % 2} for i in range(count)])

    async def consumer(ctx):
        await get(ctx, dut.o, count, cycles=cycles)

    simulate(dut, producer, consumer, platform=platform)
    assert dut.interval == 5 and dut.latency == 5 * (len(STAGES) - 1) + 1
    assert np.all(np.diff(cycles) == dut.interval)  # one result per window
    # The first beat waits for the end of the first window, then takes `latency`.
    assert cycles[0] == dut.interval + dut.latency
    # The parallel form's four partial products, two of them (by x's high half, only
    # its sign for 16-bit accumulators) a negation
    assert Requantizer(requant, channels=2, output_offset=0, act_min=-128, act_max=127,
                       acc_width=16).multipliers == 2
    assert Requantizer(requant, channels=2, output_offset=0, act_min=-128, act_max=127,
                       acc_width=32).multipliers == 4


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_compact_interval_and_latency(platform):
    requant = make_requant([1 << 30, -(1 << 30)], [0, -3])
    dut = Requantizer(requant, channels=2, output_offset=0, act_min=-128, act_max=127,
                      acc_width=16, compact=True)
    cycles = output_cycles(dut, 12, platform)
    # One beat at a time: the first transfers at the first edge, each result can leave
    # ``latency`` edges after its beat, and the next beat enters as it is written.
    assert cycles[0] == 1 + dut.latency
    assert set(np.diff(cycles)) == {dut.interval}
    assert (dut.interval, dut.latency, dut.throughput) == (
        COMPACT_INTERVAL, COMPACT_INTERVAL + 1, 1 / COMPACT_INTERVAL)


@pytest.mark.parametrize("mode", STALL_MODES)
def test_compact_random_parameters(mode):
    # Random multipliers (both signs), every shift from -31 to 31, random accumulators
    # of 40 bits (wrapped to int32 first), per channel and per lane.
    rng = np.random.default_rng(63)
    channels, lanes = 126, 2
    multipliers = rng.integers(fp.INT32_MIN, fp.INT32_MAX, channels, endpoint=True)
    multipliers[::7] = rng.integers(1 << 30, 1 << 31, len(multipliers[::7]))
    shifts = np.tile(np.arange(-31, 32), 2)
    requant = make_requant(multipliers, shifts)
    dut = Requantizer(requant, channels=channels, output_offset=-7, act_min=-128,
                      act_max=127, acc_width=40, lanes=lanes, compact=True)
    beats = [(int(rng.integers(0, channels // lanes)),
              [int(a) for a in rng.integers(-(1 << 39), 1 << 39, lanes)]) for _ in range(600)]
    for group in range(channels // lanes):  # accumulators near the results' halves
        for lane in range(lanes):
            channel = group * lanes + lane
            near = interesting_accumulators(int(multipliers[channel]), int(shifts[channel]),
                                            32, rng, 3)
            beats += [(group, [a if k == lane else 0 for k in range(lanes)]) for a in near]
    random.Random(64).shuffle(beats)
    got, expected = run_requantizer(dut, requant, beats, mode, platform=None,
                                    deadline=400_000)
    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero((expected > -128) & (expected < 127)) > len(beats) // 4


def test_compact_and_serial_are_exclusive():
    with pytest.raises(Tfl2RtlError, match="^a requantizer is compact or has serial products"):
        Requantizer(make_requant([1], [0]), channels=1, output_offset=0, act_min=-128,
                    act_max=127, acc_width=8, compact=True, serial_products=True)


class CountingProducts:
    """The product hook in the fabric, counting the products it is asked for."""

    def __init__(self):
        self.products = []

    def get_registered_product(self, m, enable, a, b, name):
        self.products.append(name)
        return fabric_product(m, enable, a, b, name)


@pytest.mark.parametrize("multipliers, shifts, acc_width, per_lane", [
    # signed 32-bit multipliers, different in each channel: four partial products
    ([1_300_000_000, -5, -7, 1_000_000_001], [-9, 1, 0, -3], 24, 4),
    # accumulators of 16 bits shifted left by 1: x's high half is only its sign, and a
    # product by it a negation (no DSP block; Yosys finds the same)
    ([1_300_000_000, -5, -7, 1_000_000_001], [-9, 1, 0, -3], 16, 2),
    ([1_300_000_000, -5, -7, 1_000_000_001], [-9, 2, 0, -3], 16, 4),
    ([40_000, 12_345, 3, 65_535], [-9, 1, 0, -3], 24, 2),  # unsigned 16 bits: no high half
    ([1 << 30], [-3], 24, 0),  # one constant: halves 0 and 2**14, wiring, no DSP blocks
    # x of 18 to 21 bits with one left shift for all channels: the products by its few
    # high bits in LUTs (NARROW_X_BITS)
    ([1_300_000_000, -5, -7, 1_000_000_001], [-9, -1, 0, -3], 20, 2),
    ([1_300_000_000, -5, -7, 1_000_000_001], [2, 2, 2, 2], 19, 2),
    ([1_300_000_000, -5, -7, 1_000_000_001], [-9, 1, 0, -3], 20, 4),  # left shifts differ
    ([1_300_000_000, -5, -7, 1_000_000_001], [-9, -1, 0, -3], 22, 4),  # x too wide
])
def test_every_partial_product_comes_from_the_hook(multipliers, shifts, acc_width, per_lane):
    from amaranth.hdl import Fragment

    requant = make_requant(multipliers, shifts)
    dut = Requantizer(requant, channels=4, output_offset=0, act_min=-128, act_max=127,
                      acc_width=acc_width, lanes=2)
    platform = CountingProducts()
    Fragment.get(dut, platform)
    assert len(platform.products) == dut.lanes * per_lane
    if multipliers != [1 << 30]:  # (a constant's products by wiring are not counted)
        assert dut.multipliers == dut.lanes * per_lane
        assert lane_multipliers(requant.multiplier, requant.shift, acc_width) == per_lane
    # Serial products share one multiplier per lane: the hook's, enabled on every edge.
    serial = Requantizer(requant, channels=4, output_offset=0, act_min=-128, act_max=127,
                         acc_width=acc_width, lanes=2, serial_products=True)
    platform = CountingProducts()
    Fragment.get(serial, platform)
    assert platform.products == ["serial_product_0", "serial_product_1"]


class SerialPlatform:
    requantizer_serial_products = True


def test_platform_hook_selects_serial_products():
    # The same component elaborated for a platform with the hook: one multiplier.
    from amaranth.back import rtlil

    requant = make_requant([1_300_000_000, -5], [-9, 1])

    def multiplies(platform):
        dut = Requantizer(requant, channels=2, output_offset=0, act_min=-128,
                          act_max=127, acc_width=24)
        return rtlil.convert(dut, platform=platform).count("cell $mul ")

    assert multiplies(None) == 4
    assert multiplies(SerialPlatform()) == 1


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("multiplier, shift, lanes", [
    (1 << 30, -3, 1),  # acc / 32: every other accumulator ends in a half
    (1_518_500_250, -9, 2),
    (2_002_112_233, 0, 2),
    ((1 << 31) - 1, -12, 1),
])
def test_rounding_requantizer_rounds_once_halves_away_from_zero(multiplier, shift, lanes,
                                                               mode):
    """LiteRT's double FULLY_CONNECTED requantization, ``round(double(acc) * scale)``
    (the golden model's), for a scale of 31 bits and 20-bit accumulators, whose products
    a double holds exactly: halves of both signs, the accumulator's ends, random ones;
    under stalls."""
    acc_width, channels = 20, 4
    scale = multiplier * 2.0 ** (shift - 31)
    rng = np.random.default_rng(multiplier % 1000 + lanes)
    accs = interesting_accumulators(multiplier, shift, acc_width, rng, 60)
    accs += [int(round((k + 0.5) / scale)) for k in range(-140, 140, 7)]
    accs = [min(max(a, -(1 << 19)), (1 << 19) - 1) for a in accs]
    accs += [0] * (-len(accs) % lanes)
    dut = RoundingRequantizer(make_requant([multiplier], [shift]), channels=channels,
                              output_offset=-3, act_min=-128, act_max=120,
                              acc_width=acc_width, lanes=lanes)
    beats = [(k % (channels // lanes), accs[k * lanes:(k + 1) * lanes])
             for k in range(len(accs) // lanes)]
    in_timing, out_timing = STALL_MODES[mode](lanes)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": a, "group": g} for g, a in beats], in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, len(beats), out_timing):
            results.extend(payload[j] for j in range(lanes))

    simulate(dut, producer, consumer)
    want = np.clip(golden._double_requantize(np.array(accs), scale) - 3, -128, 120)
    np.testing.assert_array_equal(results, want)
    assert len(np.unique(want)) > 20


def test_rounding_requantizer_latency():
    dut = RoundingRequantizer(make_requant([1 << 30], [-3]), channels=1, output_offset=0,
                              act_min=-128, act_max=127, acc_width=12)
    cycles = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": [8 * k], "group": 0} for k in range(4)],
                  STALL_MODES["streaming"](0)[0])

    async def consumer(ctx):
        got = await get(ctx, dut.o, 4, STALL_MODES["streaming"](0)[1], cycles=cycles)
        assert [p[0] for p in got] == [0, 1, 1, 2]  # 0, 0.5, 1, 1.5 halves away from zero

    simulate(dut, producer, consumer)
    assert cycles == [1 + dut.latency + k for k in range(4)]


def test_double_rounding_check_reads_every_accumulator():
    """The planner's check: true for the legacy uint8 MLP's layers with their own
    multipliers, false with a multiplier 1/4096 off (a negative control) and with the
    integer requantizer's rounding twice over their whole range (what the check is for)."""
    graph = hardware_form(load(TEST_MODELS / "uint8_legacy.tflite"))
    node = graph.nodes[0]
    r = node.requant
    epilogue = dict(output_offset=node.output_offset, act_min=node.act_min,
                    act_max=node.act_max)
    span = (-(1 << 18), 1 << 18)
    args = (int(r.multiplier[0]), int(r.shift[0]), float(r.real_scale[0]))
    assert matches_double_rounding(*args, span, **epilogue)
    assert not matches_double_rounding(args[0] + (args[0] >> 12), *args[1:], span,
                                       **epilogue)
    acc = np.arange(*span)
    twice = np.clip(fp.multiply_by_quantized_multiplier(acc, *args[:2]) + node.output_offset,
                    node.act_min, node.act_max)
    once = np.clip(golden._double_requantize(acc, args[2]) + node.output_offset,
                   node.act_min, node.act_max)
    assert np.count_nonzero(twice != once) > 0


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("lanes", [1, 2])
def test_rounding_requantizer_with_per_channel_parameters(lanes, mode):
    """A sequential engine's layers sharing one rounding requantizer: every field
    differs between groups (from its ROM), each group with its own double scale; halves
    of both signs and random accumulators; under stalls."""
    acc_width, groups = 20, 3
    channels = groups * lanes
    rng = np.random.default_rng(lanes)
    per_group = [((1 << 30) + 12_345, -3, -3, -128, 120), (1_518_500_250, -9, 7, -100, 127),
                 ((1 << 31) - 1, 0, -128, -128, 127)]
    columns = [np.repeat(values, lanes) for values in zip(*per_group, strict=True)]
    multiplier, shift, offset, low, high = columns
    dut = RoundingRequantizer(make_requant(multiplier, shift), channels=channels,
                              output_offset=offset, act_min=low, act_max=high,
                              acc_width=acc_width, lanes=lanes)
    beats = []
    for k in range(150):
        g = k % groups
        scale = multiplier[g * lanes] * 2.0 ** (shift[g * lanes] - 31)
        if k % 2:
            half = int(rng.integers(-200, 200)) + 0.5
            accs = [int(round(half / scale)) for _ in range(lanes)]
        else:
            accs = rng.integers(-(1 << 19), 1 << 19, lanes).tolist()
        accs = [min(max(a, -(1 << 19)), (1 << 19) - 1) for a in accs]
        beats.append((g, accs))
    in_timing, out_timing = STALL_MODES[mode](lanes + 3)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, [{"acc": a, "group": g} for g, a in beats], in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, len(beats), out_timing):
            results.append([payload[j] for j in range(lanes)])

    simulate(dut, producer, consumer)
    want = []
    for g, accs in beats:
        c = g * lanes
        scale = multiplier[c] * 2.0 ** (shift[c] - 31)
        want.append(np.clip(golden._double_requantize(np.array(accs), scale) + offset[c],
                            low[c], high[c]))
    np.testing.assert_array_equal(results, want)


def test_rounding_requantizer_refuses_parameters_for_other_channel_counts():
    with pytest.raises(Tfl2RtlError, match=r"^2 values of multiplier for 3 channels: give "
                                           r"one, or one per channel$"):
        RoundingRequantizer(make_requant([1, 2], [0, 0]), channels=3, output_offset=0,
                            act_min=-128, act_max=127, acc_width=12)


# --- Int64Requantizer: a 16x8 layer's int64 accumulators, one rounding --------------------

INT64_MULTIPLIERS = [0, 1, 1 << 30, 0x7FFEFFFF, 0x7FFF0000, 0x7FFF8000, fp.INT32_MAX,
                     fp.INT32_MIN, -1, -(1 << 30) - 12_345, 1_518_500_250, 32_767 << 16]
INT64_SHIFTS = [-47, -40, -31, -16, -9, -1, 0, 1, 13, 14]


def reference_int64(acc, channel, dut: Int64Requantizer, requant: Requant):
    """What TFLite Micro's 16x8 kernels compute, from :mod:`tfl2rtl.fixedpoint`."""
    multiplier = np.broadcast_to(requant.multiplier, (dut.channels,))[channel]
    shift = np.broadcast_to(requant.shift, (dut.channels,))[channel]
    scaled = fp.multiply_by_quantized_multiplier_int64(acc, multiplier, shift)
    return np.clip(fp.wrap_int32(scaled + dut.output_offset), dut.act_min, dut.act_max)


def int64_accumulators(multiplier, shift, acc_width, rng, count, out_bits=16):
    """The ends of the range, values around zero, random ones, and ones whose result
    lands near every part of the output range and its half-way points."""
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    accs = [lo, lo + 1, hi, hi - 1, 0, 1, -1, 2, -2, -3, 3]
    accs += [int(a) for a in rng.integers(lo, hi, 4, endpoint=True)]
    reduced = int(reduced_multipliers(multiplier))
    real = reduced * 2.0 ** (shift - 15)
    if real != 0:
        span = 1 << (out_bits - 1)
        targets = rng.integers(-span - 20, span + 20, count) + rng.choice([0, 0.5, -0.5], count)
        jitter = rng.integers(-2, 3, count)
        accs += [int(round(t / real)) + int(d) for t, d in zip(targets, jitter, strict=True)]
    return [min(max(acc, lo), hi) for acc in accs]


def run_int64_requantizer(dut, requant, beats, mode, **options):
    return run_requantizer(dut, requant, beats, mode, expect=reference_int64, **options)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_int64_extreme_multipliers_and_shifts(mode, platform):
    pairs = list(itertools.product(INT64_MULTIPLIERS, INT64_SHIFTS))
    requant = make_requant(*zip(*pairs, strict=True))
    dut = Int64Requantizer(requant, channels=len(pairs), output_offset=-3, act_min=-32768,
                           act_max=32767, acc_width=48)
    rng = np.random.default_rng(5)
    beats = [(channel, [int(acc)])
             for channel, (multiplier, shift) in enumerate(pairs)
             for acc in int64_accumulators(multiplier, shift, 48, rng, 8)]
    random.Random(6).shuffle(beats)
    got, expected = run_int64_requantizer(dut, requant, beats, mode, platform=platform)
    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero((expected > -32768) & (expected < 32767)) > len(beats) // 3


def test_int64_rounds_once_halves_up():
    # reduced = 2**14 and shift 0: acc / 2, halves towards +infinity (-1.5 -> -1, where
    # the int32 path's rounding divide would give -2).
    requant = make_requant([1 << 30], [0])
    dut = Int64Requantizer(requant, channels=1, output_offset=0, act_min=-32768,
                           act_max=32767, acc_width=16)
    beats = [(0, [acc]) for acc in range(-9, 10)]
    got, expected = run_int64_requantizer(dut, requant, beats, "streaming")
    np.testing.assert_array_equal(got, expected)
    assert got[:, 0].tolist() == [(acc + 1) // 2 for acc in range(-9, 10)]


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("acc_width", [8, 18, 19, 26, 34, 48])
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_int64_per_channel_lanes(mode, acc_width, platform):
    # Per-channel parameters as a 16x8 layer has them, 2 lanes, a narrow output range.
    rng = np.random.default_rng(acc_width)
    channels, lanes = 8, 2
    pairs = [fp.quantize_multiplier(s) for s in rng.uniform(1e-4, 0.9, channels)]
    requant = make_requant(*zip(*pairs, strict=True))
    dut = Int64Requantizer(requant, channels=channels, output_offset=11, act_min=-1000,
                           act_max=30000, acc_width=acc_width, lanes=lanes)
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    beats = []
    for _ in range(100):
        group = int(rng.integers(0, channels // lanes))
        accs = rng.integers(lo, hi, lanes, endpoint=True) >> int(rng.integers(0, acc_width))
        accs[rng.random(lanes) < 0.2] = rng.choice([lo, hi, 0, -1])
        beats.append((group, [int(a) for a in accs]))
    got, expected = run_int64_requantizer(dut, requant, beats, mode, seed=acc_width,
                                          platform=platform)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 20


@pytest.mark.parametrize("platform", [long_case(None, id="fabric"),
                                      long_case(DSP_PLATFORM, id="dsp_hook")])
def test_int64_every_accumulator_of_a_narrow_layer(platform):
    # Every 16-bit accumulator, through two channels at the ends of the multiplier range.
    requant = make_requant([0x7FFF8000, 1_100_000_000], [-2, 0])
    dut = Int64Requantizer(requant, channels=2, output_offset=0, act_min=-32768,
                           act_max=32767, acc_width=16, lanes=2)
    accs = np.arange(-(1 << 15), 1 << 15)
    beats = [(0, [int(a), int(b)]) for a, b in zip(accs, accs[::-1], strict=True)]
    got, expected = run_int64_requantizer(dut, requant, beats, "streaming", platform=platform,
                                          deadline=len(beats) + 100)
    np.testing.assert_array_equal(got, expected)


def test_int64_int8_results():
    requant = make_requant([1_400_000_000], [-3])
    dut = Int64Requantizer(requant, channels=2, output_offset=-128, act_min=-128,
                           act_max=127, acc_width=24, lanes=1, out_bits=8)
    rng = np.random.default_rng(9)
    beats = [(int(rng.integers(0, 2)), [int(rng.integers(-5000, 5000))]) for _ in range(200)]
    got, expected = run_int64_requantizer(dut, requant, beats, "stalls")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
def test_int64_latency_and_throughput(platform):
    requant = make_requant([1 << 30, 1 << 29], [0, -3])
    dut = Int64Requantizer(requant, channels=2, output_offset=0, act_min=-32768,
                           act_max=32767, acc_width=30)
    cycles = output_cycles(dut, 20, platform)
    assert cycles[0] == 1 + dut.latency
    assert np.all(np.diff(cycles) == 1)
    assert dut.latency == len(INT64_STAGES) and dut.throughput == 1
    assert dut.multipliers == 2  # a 30-bit accumulator: two 16-bit chunks


@pytest.mark.parametrize("kwargs, message", [
    ({"shift": [15]}, r"^requantization shifts 15 \.\. 15 are outside -47 \.\. 14, where"),
    ({"acc_width": 49}, r"^accumulator width 49 is outside 1 \.\. 48"),
    ({"act_min": -32769}, r"^activation range \[-32769, 32767\] is not an int16 range$"),
    ({"out_bits": 12}, r"^12-bit results: the int64 requantizer gives 8 or 16$"),
    ({"channels": 6, "lanes": 4}, r"^cannot requantize 6 channels in groups of 4 lanes"),
])
def test_int64_rejects_bad_parameters(kwargs, message):
    args = {"multiplier": [1 << 30], "shift": [0], "channels": 6, "lanes": 1,
            "act_min": -32768, "act_max": 32767, "output_offset": 0, "acc_width": 32}
    args.update(kwargs)
    multiplier, shift = args.pop("multiplier"), args.pop("shift")
    with pytest.raises(Tfl2RtlError, match=message):
        Int64Requantizer(make_requant(multiplier, shift), **args)
