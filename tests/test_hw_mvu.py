# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
import numpy as np
import pytest

from conftest import ecp5_mapped
from streams import DSP_PLATFORM, STALL_MODES, get, put, simulate
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.fixedpoint import signed_bits
from tfl2rtl.hw.mvu import LOGIC_PRODUCTS_PER_ENABLE, MatrixVectorUnit
from tfl2rtl.hw.pipeline import fabric_product

SHAPES = [  # out_depth, in_depth, pe, simd
    (6, 10, 1, 1),
    (6, 10, 2, 5),
    (6, 10, 3, 2),
    (6, 10, 6, 10),  # fully parallel: one cycle per vector
    (16, 1, 4, 1),  # hello_world's first layer
    (1, 16, 1, 4),  # and its last
    (4, 64, 2, 32),  # three adder-tree stages (tree_stages(32) == 3)
    (3, 17, 3, 17),  # an odd tree: 17 products, 5 levels
]


def random_layer(out_depth, in_depth, rng):
    weights = rng.integers(-128, 128, (out_depth, in_depth))
    weights[0, :] = -128  # the extremes of the products
    bias = rng.integers(-5000, 5000, out_depth)
    return weights, bias


def run_mvu(dut, vectors, mode, seed=0, cycles=None, platform=None):
    """Stream ``vectors`` through ``dut`` (elaborated for ``platform``); return the
    accumulators, one row per vector."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    beats = vectors.reshape(-1, dut.simd).tolist()
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, beats, in_timing)

    async def consumer(ctx):
        count = len(vectors) * dut.neuron_folds
        for payload in await get(ctx, dut.o, count, out_timing, cycles=cycles):
            results.append((payload.group, [payload.acc[p] for p in range(dut.pe)]))

    simulate(dut, producer, consumer, platform=platform)
    groups = [group for group, _ in results]
    assert groups == list(range(dut.neuron_folds)) * len(vectors)
    return np.array([accs for _, accs in results]).reshape(len(vectors), dut.out_depth)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("out_depth, in_depth, pe, simd", SHAPES)
def test_matrix_vector_products(out_depth, in_depth, pe, simd, mode):
    rng = np.random.default_rng(out_depth * 100 + in_depth)
    weights, bias = random_layer(out_depth, in_depth, rng)
    vectors = rng.integers(-128, 128, (6, in_depth))
    vectors[0, :] = -128
    expected = vectors @ weights.T + bias
    # The tightest accumulator that holds the results: partial sums may wrap.
    acc_width = signed_bits(int(min(expected.min(), bias.min())),
                            int(max(expected.max(), bias.max())))
    dut = MatrixVectorUnit(weights, bias, acc_width=acc_width, pe=pe, simd=simd)
    got = run_mvu(dut, vectors, mode, seed=pe * simd)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("out_depth, in_depth, pe, simd", [(6, 10, 2, 5), (3, 17, 3, 17),
                                                          (4, 64, 2, 32)])
def test_int16_inputs(out_depth, in_depth, pe, simd, mode, platform):
    # A 16x8 layer's int16 inputs, at both ends of their range against int8 weights at
    # theirs: every product is exact, at the same latency and interval.
    rng = np.random.default_rng(out_depth + in_depth)
    weights, bias = random_layer(out_depth, in_depth, rng)
    weights[1, :] = 127
    vectors = rng.integers(-32768, 32768, (5, in_depth))
    vectors[0, :], vectors[1, :] = -32768, 32767
    expected = vectors @ weights.T + bias
    acc_width = signed_bits(int(min(expected.min(), bias.min())),
                            int(max(expected.max(), bias.max())))
    dut = MatrixVectorUnit(weights, bias, acc_width=acc_width, pe=pe, simd=simd, act_bits=16)
    cycles = []
    got = run_mvu(dut, vectors, mode, seed=pe, platform=platform,
                  cycles=cycles if mode == "streaming" else None)
    np.testing.assert_array_equal(got, expected)
    if mode == "streaming":
        sf = dut.synapse_folds
        assert cycles[0] == sf + dut.latency and np.all(np.diff(cycles) == sf)


LAYER_SEQUENCES = [  # (out_depth, in_depth) per layer, pe, simd
    ([(16, 4), (8, 16), (4, 8), (4, 4)], 4, 4),  # the jet MLP's shape, scaled down
    ([(4, 2), (6, 4), (2, 6)], 2, 2),  # one group a layer, then three, then one
    ([(1, 1), (3, 1), (1, 3)], 1, 1),  # hello_world's shape, scaled down
    ([(2, 6)] * 10, 2, 3),  # ten layers of one group of two slices
]


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shapes, pe, simd", LAYER_SEQUENCES)
def test_layer_sequences(shapes, pe, simd, mode, platform):
    # A sequential engine's layers sharing the unit: each pass takes every layer's
    # vector in turn and gives every layer's groups, ``group`` counting across them, at
    # the documented interval.
    rng = np.random.default_rng(len(shapes) * 10 + pe)
    layers = [random_layer(o, i, rng) for o, i in shapes]
    passes = 4
    inputs = [rng.integers(-128, 128, (passes, i)) for _, i in shapes]
    expected = np.concatenate([x @ w.T + b for x, (w, b) in zip(inputs, layers, strict=True)],
                              axis=1)
    biases = np.concatenate([b for _, b in layers])
    acc_width = signed_bits(int(min(expected.min(), biases.min())),
                            int(max(expected.max(), biases.max())))
    dut = MatrixVectorUnit([w for w, _ in layers], [b for _, b in layers],
                           acc_width=acc_width, pe=pe, simd=simd)
    assert dut.layers == shapes
    cycles = []
    got = run_mvu(dut, np.concatenate(inputs, axis=1), mode, seed=pe, platform=platform,
                  cycles=cycles if mode == "streaming" else None)
    np.testing.assert_array_equal(got, expected)
    if mode == "streaming":  # the input never waits: one weight row a cycle
        assert dut.cycles_per_vector == sum(o // pe * (i // simd) for o, i in shapes)
        ends = np.array(cycles[dut.neuron_folds - 1::dut.neuron_folds])
        assert np.all(np.diff(ends) == dut.cycles_per_vector)


LAYER_REPEATS = [  # (out_depth, in_depth) per layer, vectors per layer, pe, simd
    ([(4, 6), (2, 4), (6, 2)], (3, 1, 2), 2, 2),  # a conv's pixels, a vector, two pixels
    ([(2, 2), (2, 4)], (5, 4), 2, 2),  # one row a vector: every row repeats
    ([(3, 3), (1, 3), (3, 1)], (1, 2, 1), 1, 1),  # the last layer one row, its first too
    ([(4, 8), (4, 4)], (1, 3), 4, 4),  # the repeating layer last
]


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shapes, repeats, pe, simd", LAYER_REPEATS)
def test_layer_repeats(shapes, repeats, pe, simd, mode, platform):
    # A sequential engine's convolutions: layer k takes repeats[k] vectors in a row (its
    # output pixels' patches), each through the layer's rows and groups, ``group``
    # counting the layer's own groups each time, at the documented interval.
    rng = np.random.default_rng(len(shapes) + sum(repeats))
    layers = [random_layer(o, i, rng) for o, i in shapes]
    passes = 3
    inputs = [[rng.integers(-128, 128, (r, i)) for (_, i), r in zip(shapes, repeats,
                                                                   strict=True)]
              for _ in range(passes)]
    firsts = np.cumsum([0] + [o // pe for o, _ in shapes])
    expected, groups = [], []
    for vectors in inputs:
        for k, (x, (w, b)) in enumerate(zip(vectors, layers, strict=True)):
            expected.append((x @ w.T + b).reshape(-1))
            groups += list(range(firsts[k], firsts[k + 1])) * len(x)
    expected = np.concatenate(expected)
    biases = np.concatenate([b for _, b in layers])
    acc_width = signed_bits(int(min(expected.min(), biases.min())),
                            int(max(expected.max(), biases.max())))
    dut = MatrixVectorUnit([w for w, _ in layers], [b for _, b in layers],
                           acc_width=acc_width, pe=pe, simd=simd, repeats=repeats)
    assert dut.cycles_per_vector == sum(o // pe * (i // simd) * r
                                        for (o, i), r in zip(shapes, repeats, strict=True))
    in_timing, out_timing = STALL_MODES[mode](pe + simd)
    beats = np.concatenate([x.reshape(-1, simd) for vectors in inputs for x in vectors])
    results, cycles = [], []

    async def producer(ctx):
        await put(ctx, dut.i, beats.tolist(), in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, len(groups), out_timing, cycles=cycles):
            results.append((payload.group, [payload.acc[p] for p in range(pe)]))

    simulate(dut, producer, consumer, platform=platform)
    assert [g for g, _ in results] == groups
    np.testing.assert_array_equal(np.concatenate([a for _, a in results]), expected)
    if mode == "streaming":  # the input never waits: one weight row a cycle
        per_pass = len(groups) // passes
        ends = np.array(cycles[per_pass - 1::per_pass])
        assert np.all(np.diff(ends) == dut.cycles_per_vector)


LAYER_FRESH = [  # (out_depth, in_depth) per layer, repeats, fresh, pe, simd
    ([(4, 6), (4, 4), (2, 4)], (2, 3, 1), (False, True, False), 2, 2),  # a depthwise layer
    ([(6, 3)], (1,), (True,), 3, 1),  # one layer, every group fresh
    ([(4, 2), (2, 2)], (1, 2), (True, True), 2, 1),
]


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shapes, repeats, fresh, pe, simd", LAYER_FRESH)
def test_fresh_groups(shapes, repeats, fresh, pe, simd, mode):
    # A depthwise layer's channel blocks: each group of a fresh layer takes a vector of
    # its own, the others share theirs.
    rng = np.random.default_rng(len(shapes) * 7 + pe)
    layers = [random_layer(o, i, rng) for o, i in shapes]
    passes = 2
    beats, expected, groups = [], [], []
    firsts = np.cumsum([0] + [o // pe for o, _ in shapes])
    for _ in range(passes):
        for k, ((o, i), (w, b)) in enumerate(zip(shapes, layers, strict=True)):
            for _ in range(repeats[k]):
                if fresh[k]:
                    x = rng.integers(-128, 128, (o // pe, i))
                    acc = np.concatenate([w[g * pe:(g + 1) * pe] @ x[g] + b[g * pe:(g + 1) * pe]
                                          for g in range(o // pe)])
                else:
                    x = rng.integers(-128, 128, (1, i))
                    acc = (x @ w.T + b).reshape(-1)
                beats.append(x.reshape(-1, simd))
                expected.append(acc)
                groups += list(range(firsts[k], firsts[k + 1]))
    expected = np.concatenate(expected)
    biases = np.concatenate([b for _, b in layers])
    acc_width = signed_bits(int(min(expected.min(), biases.min())),
                            int(max(expected.max(), biases.max())))
    dut = MatrixVectorUnit([w for w, _ in layers], [b for _, b in layers],
                           acc_width=acc_width, pe=pe, simd=simd, repeats=repeats,
                           fresh=fresh)
    in_timing, out_timing = STALL_MODES[mode](pe)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, np.concatenate(beats).tolist(), in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, len(groups), out_timing):
            results.append((payload.group, [payload.acc[p] for p in range(pe)]))

    simulate(dut, producer, consumer)
    assert [g for g, _ in results] == groups
    np.testing.assert_array_equal(np.concatenate([a for _, a in results]), expected)


@pytest.mark.parametrize("repeats, message", [
    ((1,), r"^repeats \(1,\): one count of at least 1 for each of the 2 layers$"),
    ((2, 0), r"^repeats \(2, 0\): one count"),
])
def test_rejects_repeats_that_do_not_match(repeats, message):
    with pytest.raises(Tfl2RtlError, match=message):
        MatrixVectorUnit([np.ones((2, 2))] * 2, [np.zeros(2)] * 2, acc_width=12,
                         repeats=repeats)


def test_rejects_repeats_with_streamed_weights():
    with pytest.raises(Tfl2RtlError, match="^a layer's rows cannot repeat with streamed"):
        MatrixVectorUnit([np.ones((2, 2))] * 2, [np.zeros(2)] * 2, acc_width=12,
                         repeats=(2, 1), weight_stream=True)


def test_rejects_a_sequence_with_a_depth_pe_does_not_divide():
    with pytest.raises(Tfl2RtlError, match="^PE=2 does not divide the output depth 3"):
        MatrixVectorUnit([np.ones((2, 2), int), np.ones((3, 2), int)], [[0, 0], [0, 0, 0]],
                         acc_width=20, pe=2)


def test_rejects_products_in_logic_for_int16_inputs():
    with pytest.raises(Tfl2RtlError, match="^products in logic are built for int8 inputs"):
        MatrixVectorUnit(np.ones((2, 2), int), [0, 0], acc_width=20, act_bits=16,
                         products_in_logic=True)


@pytest.mark.parametrize("out_depth, in_depth, pe, simd", SHAPES)
def test_initiation_interval_and_latency(out_depth, in_depth, pe, simd):
    rng = np.random.default_rng(7)
    weights, bias = random_layer(out_depth, in_depth, rng)
    dut = MatrixVectorUnit(weights, bias, acc_width=24, pe=pe, simd=simd)
    vectors = rng.integers(-128, 128, (3, in_depth))
    cycles = []
    run_mvu(dut, vectors, "streaming", cycles=cycles)
    # Beat k of vector 0 is taken at edge k + 1, so its last one at edge synapse_folds;
    # every group then takes synapse_folds cycles.
    sf = dut.synapse_folds
    expected = [sf + dut.latency + k * sf for k in range(len(cycles))]
    assert cycles == expected
    assert dut.cycles_per_vector == dut.neuron_folds * dut.synapse_folds


@pytest.mark.parametrize("out_depth, in_depth, pe, simd", SHAPES)
def test_products_from_the_platform_hook(out_depth, in_depth, pe, simd):
    """With a platform's product hook (a DSP block holding the operand and product
    registers), the same accumulators under stalls and backpressure, at the same
    documented latency and interval."""
    rng = np.random.default_rng(out_depth * 100 + in_depth)
    weights, bias = random_layer(out_depth, in_depth, rng)
    vectors = rng.integers(-128, 128, (6, in_depth))
    dut = MatrixVectorUnit(weights, bias, acc_width=24, pe=pe, simd=simd)
    got = run_mvu(dut, vectors, "stalls", seed=pe + simd, platform=DSP_PLATFORM)
    np.testing.assert_array_equal(got, vectors @ weights.T + bias)
    cycles = []
    run_mvu(dut, vectors[:3], "streaming", cycles=cycles, platform=DSP_PLATFORM)
    sf = dut.synapse_folds
    assert cycles == [sf + dut.latency + k * sf for k in range(len(cycles))]


class _Banked:
    """A stand-in platform with :data:`tfl2rtl.hw.weights.WEIGHT_BANKS_HOOK`: banks of
    four rows, so that the test layers' memories have from one to fifteen."""

    weight_bank_rows = staticmethod(lambda width: 4)


class _BankedProducts(_Banked):
    get_registered_product = staticmethod(fabric_product)


@pytest.mark.parametrize("platform, logic", [(_Banked(), False), (_BankedProducts(), False),
                                             (_BankedProducts(), True)],
                         ids=["fabric", "hook", "logic"])
@pytest.mark.parametrize("out_depth, in_depth, pe, simd", SHAPES)
def test_weights_in_banks(out_depth, in_depth, pe, simd, platform, logic):
    """A weight memory deeper than the platform's bank (WEIGHT_BANKS_HOOK) read in banks,
    each into a register: the same accumulators under stalls and backpressure, at the
    same documented latency and interval, on each path (products in the fabric, from
    the product hook, in logic); last banks shorter than the others among them."""
    rng = np.random.default_rng(out_depth * 100 + in_depth + 2)
    weights, bias = random_layer(out_depth, in_depth, rng)
    vectors = rng.integers(-128, 128, (6, in_depth))
    dut = MatrixVectorUnit(weights, bias, acc_width=24, pe=pe, simd=simd,
                           products_in_logic=logic)
    got = run_mvu(dut, vectors, "stalls", seed=pe * simd, platform=platform)
    np.testing.assert_array_equal(got, vectors @ weights.T + bias)
    cycles = []
    run_mvu(dut, vectors[:3], "streaming", cycles=cycles, platform=platform)
    sf = dut.synapse_folds
    assert cycles == [sf + dut.latency + k * sf for k in range(len(cycles))]


def test_banks_are_a_power_of_two_rows():
    class Odd:
        weight_bank_rows = staticmethod(lambda width: 3)

    dut = MatrixVectorUnit(np.ones((4, 4), int), [0] * 4, acc_width=20)
    with pytest.raises(ValueError, match="^weight banks of 3 rows: not a power of two$"):
        run_mvu(dut, np.ones((1, 4), int), "streaming", platform=Odd())


@pytest.mark.parametrize("out_depth, in_depth, pe, simd", SHAPES)
def test_products_in_logic(out_depth, in_depth, pe, simd):
    """With products in logic, the same accumulators under stalls and backpressure, at
    the same documented latency and interval, on a platform with a product hook too
    (which the unit then does not use)."""
    rng = np.random.default_rng(out_depth * 100 + in_depth + 1)
    weights, bias = random_layer(out_depth, in_depth, rng)
    vectors = rng.integers(-128, 128, (6, in_depth))
    vectors[1, :] = 127
    dut = MatrixVectorUnit(weights, bias, acc_width=24, pe=pe, simd=simd,
                           products_in_logic=True)
    got = run_mvu(dut, vectors, "stalls", seed=pe + simd, platform=DSP_PLATFORM)
    np.testing.assert_array_equal(got, vectors @ weights.T + bias)
    cycles = []
    run_mvu(dut, vectors[:3], "streaming", cycles=cycles)
    sf = dut.synapse_folds
    assert cycles == [sf + dut.latency + k * sf for k in range(len(cycles))]


@pytest.mark.parametrize("platform, logic", [(None, False), (DSP_PLATFORM, False),
                                             (None, True)], ids=["fabric", "hook", "logic"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("out_depth, in_depth, pe, simd", [(6, 10, 2, 5), (3, 17, 3, 17)])
def test_nine_bit_weights(out_depth, in_depth, pe, simd, mode, platform, logic):
    """9-bit weights (a legacy uint8 layer's ``w - zw``): exact products at both ends of
    both operands, under stalls, in the fabric, through the product hook and in logic,
    at the same latency."""
    rng = np.random.default_rng(out_depth * 100 + in_depth)
    weights = rng.integers(-256, 256, (out_depth, in_depth))
    weights[0, :], weights[-1, 0] = -256, 255
    bias = rng.integers(-5000, 5000, out_depth)
    vectors = rng.integers(-128, 128, (6, in_depth))
    vectors[0, :] = -128
    vectors[1, 0] = 127
    expected = vectors @ weights.T + bias
    dut = MatrixVectorUnit(weights, bias, acc_width=24, pe=pe, simd=simd, weight_bits=9,
                           products_in_logic=logic)
    got = run_mvu(dut, vectors, mode, seed=pe * simd, platform=platform)
    np.testing.assert_array_equal(got, expected)
    cycles = []
    run_mvu(dut, vectors[:3], "streaming", cycles=cycles, platform=platform)
    sf = dut.synapse_folds
    assert cycles == [sf + dut.latency + k * sf for k in range(len(cycles))]


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shapes, pe, simd, weight_bits", [
    ([(16, 4), (8, 16), (4, 8), (4, 4)], 4, 4, 8),
    ([(4, 2), (6, 4), (2, 6)], 2, 2, 9),
    ([(6, 10)], 2, 5, 8),
])
def test_weights_from_a_stream(shapes, pe, simd, weight_bits, mode, platform):
    # The weights arrive on ``w`` (the sequential engine's weights from flash), one row
    # per issued row, in the order of ``weight_rows``, pass after pass, with stalls of
    # their own: the same accumulators; with rows always there, the same timing as from
    # the memory.
    rng = np.random.default_rng(len(shapes) + pe * 10 + weight_bits)
    low = -(1 << (weight_bits - 1))
    layers = [(rng.integers(low, -low, (o, i)), rng.integers(-5000, 5000, o))
              for o, i in shapes]
    layers[0][0][0, :] = low
    passes = 3
    inputs = [rng.integers(-128, 128, (passes, i)) for _, i in shapes]
    expected = np.concatenate([x @ w.T + b for x, (w, b) in zip(inputs, layers, strict=True)],
                              axis=1)
    weights, biases = [w for w, _ in layers], [b for _, b in layers]
    dut = MatrixVectorUnit(weights, biases, acc_width=24, pe=pe, simd=simd,
                           weight_bits=weight_bits, weight_stream=True)
    assert dut.row_bits == pe * simd * weight_bits
    rows = dut.weight_rows() * passes
    in_timing, out_timing = STALL_MODES[mode](pe * simd)
    w_timing = STALL_MODES[mode](pe * simd + 7)[0]
    beats = np.concatenate(inputs, axis=1).reshape(-1, simd).tolist()
    results, cycles = [], []

    async def rows_in(ctx):
        await put(ctx, dut.w, rows, w_timing)

    async def producer(ctx):
        await put(ctx, dut.i, beats, in_timing)

    async def consumer(ctx):
        count = passes * dut.neuron_folds
        for payload in await get(ctx, dut.o, count, out_timing,
                                 cycles=cycles if mode == "streaming" else None):
            results.append([payload.acc[p] for p in range(dut.pe)])

    simulate(dut, rows_in, producer, consumer, platform=platform)
    np.testing.assert_array_equal(np.array(results).reshape(passes, -1), expected)
    if mode == "streaming":
        memory = MatrixVectorUnit(weights, biases, acc_width=24, pe=pe, simd=simd,
                                  weight_bits=weight_bits)
        on_chip = []
        run_mvu(memory, np.concatenate(inputs, axis=1), "streaming", cycles=on_chip,
                platform=platform)
        assert cycles == on_chip


def test_rejects_streamed_weights_that_are_also_loaded():
    with pytest.raises(Tfl2RtlError, match=r"^streamed weights cannot also be loaded"):
        MatrixVectorUnit(np.ones((2, 2)), [0, 0], acc_width=24, memory_id=0,
                         weight_stream=True)


def test_rejects_weights_wider_than_weight_bits_and_loading_nine_bits():
    with pytest.raises(Tfl2RtlError, match=r"^the weights are not 8-bit signed integers$"):
        MatrixVectorUnit(np.full((2, 2), 128), [0, 0], acc_width=24)
    with pytest.raises(Tfl2RtlError, match=r"^the weights are not 9-bit signed integers$"):
        MatrixVectorUnit(np.full((2, 2), -257), [0, 0], acc_width=24, weight_bits=9)
    with pytest.raises(Tfl2RtlError, match=r"^9-bit weights cannot be loaded at run time"):
        MatrixVectorUnit(np.ones((2, 2)), [0, 0], acc_width=24, weight_bits=9, memory_id=0)


@pytest.mark.parametrize("pe, simd, message", [
    (4, 1, r"^PE=4 does not divide the output depth 6; choose one of 1, 2, 3, 6$"),
    (1, 3, r"^SIMD=3 does not divide the input depth 10; choose one of 1, 2, 5, 10$"),
    (0, 1, r"^PE=0 does not divide the output depth 6"),
])
def test_rejects_foldings_that_do_not_divide(pe, simd, message):
    weights, bias = random_layer(6, 10, np.random.default_rng(0))
    with pytest.raises(Tfl2RtlError, match=message):
        MatrixVectorUnit(weights, bias, acc_width=24, pe=pe, simd=simd)


def test_rejects_bias_wider_than_accumulator():
    with pytest.raises(Tfl2RtlError, match=r"^a bias does not fit the 8-bit accumulator$"):
        MatrixVectorUnit(np.ones((2, 2)), [1, 200], acc_width=8)


@pytest.mark.parametrize("products_in_logic", [False, True])
def test_each_neuron_keeps_its_copies_through_synthesis(tmp_path, products_in_logic):
    """Every neuron's registers move on a copy of the pipeline's enable, from a copy of
    the output's valid bit of its own: after Yosys' ECP5 synthesis (to its LUT mapping,
    where a merge of equal registers would have happened) there are still ``pe`` of
    them, each a flip-flop.  With products in logic each neuron also keeps its own
    operand register of the input lanes (every bit of ``x_1b`` feeds ``pe`` flip-flops),
    and every LOGIC_PRODUCTS_PER_ENABLE of its products (8 here: two) a copy of the
    enable of their own."""
    import collections

    from amaranth.back import verilog

    rng = np.random.default_rng(5)
    weights, bias = random_layer(8, 16, rng)
    dut = MatrixVectorUnit(weights, bias, acc_width=24, pe=4,
                           simd=8 if products_in_logic else 4,
                           products_in_logic=products_in_logic)
    module, _ = ecp5_mapped(verilog.convert(dut, name="top"), tmp_path)
    driven_by_flip_flops = {cell["connections"]["Q"][0] for cell in module["cells"].values()
                            if cell["type"] == "TRELLIS_FF"}
    copies = [f"out_valid_{p}" for p in range(dut.pe)]
    if products_in_logic:
        chunks = -(-dut.simd // LOGIC_PRODUCTS_PER_ENABLE)
        assert chunks == 2
        copies += [f"out_valid_logic_{k}" for k in range(dut.pe * chunks)]
    assert all(name in module["netnames"] for name in copies)  # none merged away
    bits = {module["netnames"][name]["bits"][0] for name in copies}
    assert len(bits) == len(copies) and bits <= driven_by_flip_flops
    if products_in_logic:
        loads = collections.Counter(cell["connections"]["DI"][0]
                                    for cell in module["cells"].values()
                                    if cell["type"] == "TRELLIS_FF")
        operand_bits = module["netnames"]["x_1b"]["bits"]
        assert [loads[bit] for bit in operand_bits] == [dut.pe] * len(operand_bits)
