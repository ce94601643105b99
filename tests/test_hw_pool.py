# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""MAX_POOL_2D, AVERAGE_POOL_2D and MEAN of real and written models in hardware, against
the golden model."""

import dataclasses

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO
from streams import DSP_PLATFORM, STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.pool import MeanLayer, Pool2DLayer, PoolUnit, reciprocal_shift, window_counts
from tfl2rtl.hw.window import window_beats
from tflite_writer import GraphWriter

KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"
RESNET = ZOO / "mlperf_tiny" / "pretrainedResnet_quant.tflite"
CNN = TEST_MODELS / "cnn_int8.tflite"
CONV = TEST_MODELS / "conv_int8.tflite"

_GRAPHS = {}


def real_node(path, kind):
    """The (only) node of type ``kind`` in a model."""
    if path not in _GRAPHS:
        _GRAPHS[path] = load(path)
    (node,) = [n for n in _GRAPHS[path].nodes if isinstance(n, kind)]
    return node


def written_pool(tmp_path, op, in_hw, kernel, *, stride=(1, 1), padding="VALID",
                 activation="NONE", quant=(0.05, -10)):
    """A pooling node written with tflite_writer and loaded like a user's model."""
    g = GraphWriter()
    x = g.tensor((1, *in_hw, 1), "int8", *quant)
    y = g.pool_2d(op, x, kernel, stride=stride, padding=padding, activation=activation)
    path = tmp_path / "pool.tflite"
    path.write_bytes(g.finish([x], [y]))
    (node,) = load(path).nodes
    return node


def written_mean(tmp_path, shape, axes, in_quant, out_quant):
    g = GraphWriter()
    x = g.tensor((1, *shape), "int8", *in_quant)
    y = g.mean(x, axes, out_quant, keep_dims=False)
    path = tmp_path / "mean.tflite"
    path.write_bytes(g.finish([x], [y]))
    (node,) = load(path).nodes
    return node


def images(shape, rng, count=2):
    """``count`` images: a random one, one of -128/127 only, then all -128, all 127."""
    sets = [rng.integers(-128, 128, shape),
            np.where(rng.random(shape) < 0.5, -128, 127),
            np.full(shape, -128), np.full(shape, 127)]
    return np.stack(sets[:count]).astype(np.int8)


def run_stream(dut, beats, out_count, mode, seed=0, cycles=None, platform=None):
    """Send ``beats`` to ``dut.i`` and return the ``out_count`` beats of ``dut.o`` as an
    ``(out_count, lanes)`` array (on ``platform``: DSP_PLATFORM for the product hook)."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, beats, in_timing)

    async def consumer(ctx):
        results.extend(await get(ctx, dut.o, out_count, out_timing, cycles=cycles))

    simulate(dut, producer, consumer, platform=platform)
    dtype = np.int16 if getattr(dut, "act_bits", 8) == 16 else np.int8
    return np.array([[p[lane] for lane in range(dut.pe)] for p in results], dtype)


def golden_pool(node, xs):
    run = golden.max_pool_2d if isinstance(node, ir.MaxPool2D) else golden.average_pool_2d
    return run(node, xs)


def pool_unit(node, in_hw, pe):
    kind = "max" if isinstance(node, ir.MaxPool2D) else "average"
    counts = window_counts(in_hw, node.filter, node.stride, node.padding)
    return PoolUnit(kind, window=node.filter[0] * node.filter[1], pe=pe,
                    act_min=node.act_min, act_max=node.act_max, counts=counts)


def window_stream(node, xs, pe):
    """The window beats (order "depthwise", pad value 0) of the images, back to back."""
    beats = []
    for x in xs:
        data, pad = window_beats(x, node.filter, node.stride, (1, 1), node.padding, 0, pe,
                                 "depthwise")
        beats += [{"data": d, "pad": int(p)} for d, p in zip(data.tolist(), pad, strict=True)]
    return beats


def check_pool_unit(node, xs, pe, mode, seed=0, platform=None):
    """PoolUnit fed with window_beats, against the golden pooling of ``xs``."""
    dut = pool_unit(node, xs.shape[1:3], pe)
    expected = golden_pool(node, xs)
    got = run_stream(dut, window_stream(node, xs, pe), expected.size // pe, mode, seed,
                     platform=platform)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    return expected


# --------------------------------------------------------------------------------------
# The division
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [range(1, 126), range(1, 65), [125], [64], [4, 6, 9]])
def test_division_is_exact_for_every_count_and_sum(counts):
    """``(|sum| + count // 2) * reciprocal >> shift == (|sum| + count // 2) // count`` for
    every count and every sum of ``count`` int8 values, and the quotient fits the 8 bits
    the unit keeps."""
    dut = PoolUnit("average", window=max(counts), counts=counts)
    for count in counts:
        sums = np.arange(-128 * count, 127 * count + 1, dtype=np.int64)
        magnitude = np.abs(sums) + count // 2
        quotient = (magnitude * dut.reciprocals[count]) >> dut.shift
        np.testing.assert_array_equal(quotient, magnitude // count, err_msg=f"count {count}")
        assert quotient.max() == 128
    assert dut.shift == reciprocal_shift(counts)


def test_unit_rounds_like_golden_at_every_quotient_step():
    """The simulated unit (counts 1 to 24 from its reciprocal ROM, 64 lanes) against
    golden.average_pool_2d on both sides of every rounding step of every count: each sum
    of ``count`` int8 values whose ``|sum| + count // 2`` is a multiple of ``count`` or one
    below (every sum for counts 1 and 2), as a (1, count) window whose values add up to
    it, the rest of the 24-beat window padding."""
    window, pe = 24, 64
    dut = PoolUnit("average", window=window, pe=pe)
    beats, expected = [], []
    for count in range(1, window + 1):
        sums = np.arange(-128 * count, 127 * count + 1)
        step = (np.abs(sums) + count // 2) % count
        sums = sums[(step == 0) | (step == count - 1)]
        whole, extra = np.divmod(sums, count)  # extra values of whole + 1
        x = whole[None, :] + (np.arange(count)[:, None] < extra[None, :])
        x = np.pad(x, ((0, 0), (0, -len(sums) % pe)))  # zero windows fill the last beat
        node = ir.AveragePool2D(inputs=("x",), outputs=("y",), filter=(1, count),
                                stride=(1, 1), padding=(0, 0, 0, 0), act_min=-128,
                                act_max=127)
        expected.append(golden.average_pool_2d(node, x[None, None].astype(np.int8)))
        for lanes in np.split(x, x.shape[1] // pe, axis=1):
            beats += [{"data": lanes[b].tolist() if b < count else [0] * pe,
                       "pad": int(b >= count)} for b in range(window)]
    for platform in (None, DSP_PLATFORM):  # products in the fabric, from DSP blocks
        got = run_stream(dut, beats, len(beats) // window, "streaming", platform=platform)
        np.testing.assert_array_equal(got.reshape(-1),
                                      np.concatenate([e.reshape(-1) for e in expected]))


# --------------------------------------------------------------------------------------
# PoolUnit on window_beats
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("path, kind, hw, channels, pe", [
    (KWS, ir.AveragePool2D, (25, 5), 64, 16),  # the global 25x5 pool
    (RESNET, ir.AveragePool2D, (8, 8), 64, 32),  # the global 8x8 pool
    (CONV, ir.MaxPool2D, (5, 7), 12, 4),  # 2x2 stride 2 on odd sizes (cut from 26x26)
    (CNN, ir.AveragePool2D, (5, 4), 16, 2),  # 2x2 stride 2 (cut from 15x15)
])
def test_real_nodes_on_window_beats(path, kind, hw, channels, pe, mode):
    node = real_node(path, kind)
    xs = images((*hw, channels), np.random.default_rng(pe))
    check_pool_unit(node, xs, pe, mode, seed=pe)
    if kind is ir.AveragePool2D:  # the products from a platform's DSP blocks too
        check_pool_unit(node, xs, pe, mode, seed=pe, platform=DSP_PLATFORM)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("op", ["MAX_POOL_2D", "AVERAGE_POOL_2D"])
@pytest.mark.parametrize("in_hw, kernel, stride, padding, activation, channels, pe, counts", [
    ((5, 5), (5, 5), (1, 1), "SAME", "NONE", 2, 2, [9, 12, 15, 16, 20, 25]),
    ((4, 5), (3, 3), (2, 2), "SAME", "RELU6", 4, 2, [4, 6, 9]),  # stride 2, odd width
    ((3, 3), (2, 3), (2, 1), "SAME", "RELU_N1_TO_1", 3, 3, [2, 3, 4, 6]),
    ((3, 5), (2, 2), (2, 2), "SAME", "NONE", 2, 2, [1, 2, 4]),  # stride 2 on odd sizes
    ((5, 3), (1, 1), (2, 2), "VALID", "RELU", 4, 4, [1]),  # 1x1 filter, stride 2
])
def test_written_nodes_on_window_beats(tmp_path, op, in_hw, kernel, stride, padding,
                                       activation, channels, pe, counts, mode):
    node = written_pool(tmp_path, op, in_hw, kernel, stride=stride, padding=padding,
                        activation=activation)
    # The in-bounds counts the windows have (so the ROM and its border rows are used).
    assert window_counts(in_hw, kernel, stride, node.padding) == counts
    xs = images((*in_hw, channels), np.random.default_rng(channels), count=4)
    expected = check_pool_unit(node, xs, pe, mode, seed=channels)
    if activation != "NONE":
        assert expected.min() == node.act_min > -128 or expected.max() == node.act_max < 127


@pytest.mark.parametrize("kind, window", [("max", 4), ("average", 4), ("average", 1),
                                          ("max", 1)])
def test_pool_unit_timing(kind, window):
    dut = PoolUnit(kind, window=window, pe=2)
    rng = np.random.default_rng(window)
    beats = [{"data": rng.integers(-128, 128, 2).tolist(), "pad": 0}
             for _ in range(6 * window)]
    for platform in (None, DSP_PLATFORM):
        cycles = []
        run_stream(dut, beats, 6, "streaming", cycles=cycles, platform=platform)
        # The last beat of the first window is taken at edge `window`.
        assert cycles[0] == window + dut.latency
        assert set(np.diff(cycles)) == {dut.cycles_per_window}


# --------------------------------------------------------------------------------------
# MEAN
# --------------------------------------------------------------------------------------


def check_mean(node, xs, pe, mode, seed=0, cycles=None):
    dut = MeanLayer(node, xs.shape[1:], pe=pe, act_bits=8 * xs.dtype.itemsize)
    expected = golden.mean(node, xs)
    beats = xs.reshape(-1, pe).tolist()
    got = run_stream(dut, beats, expected.size // pe, mode, seed, cycles=cycles)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    return dut, expected


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("pe", [1, 6, 24])
def test_cnn_mean(pe, mode):
    node = real_node(CNN, ir.Mean)
    xs = images((4, 4, 24), np.random.default_rng(pe), count=3)
    check_mean(node, xs, pe, mode, seed=pe)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shape, in_quant, out_quant, pe", [
    ((3, 5, 6), (0.1, 127), (0.2, 127), 2),  # zero points at their ends
    ((3, 5, 6), (0.05, -128), (0.1, -128), 3),
    ((2, 2, 4), (0.02, 5), (0.01, 0), 4),  # one channel block: a row read while written
    ((1, 7, 2), (0.03, -7), (0.004, 12), 1),
    ((1, 1, 4), (0.03, -7), (0.01, 12), 2),  # one pixel: first and last at once
])
def test_written_means(tmp_path, shape, in_quant, out_quant, pe, mode):
    node = written_mean(tmp_path, shape, [1, 2], in_quant, out_quant)
    xs = images(shape, np.random.default_rng(pe), count=4)
    _, expected = check_mean(node, xs, pe, mode, seed=pe)
    assert len(np.unique(expected)) > 2


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shape, scales, pe", [
    ((3, 3, 4), (1 / 4096, 1 / 2048), 2),
    ((5, 2, 3), (1 / 1024, 1 / 4096), 3),  # the mean scaled up: outputs clamp at both ends
    ((1, 1, 2), (1 / 512, 1 / 512), 1),  # one pixel
])
def test_int16_means(tmp_path, shape, scales, pe, mode):
    """A 16x8 model's MEAN (int16 in and out, zero points 0) against the golden model
    (TFLite Micro's int16 mean): images at both ends of int16 and random."""
    from test_golden_random import ModeLayers

    g = GraphWriter("16x8 MEAN")
    layers = ModeLayers(g, "int16")
    x = g.tensor((1, *shape), "int16", scales[0], 0)
    path = tmp_path / "mean16.tflite"
    path.write_bytes(g.finish([x], [layers.mean(x, [1, 2], (scales[1], 0),
                                                keep_dims=False)]))
    (node,) = load(path).nodes
    rng = np.random.default_rng(pe)
    xs = np.stack([rng.integers(-32768, 32768, shape), np.full(shape, -32768),
                   np.full(shape, 32767), rng.integers(-32768, 32768, shape)])
    _, expected = check_mean(node, xs.astype(np.int16), pe, mode, seed=pe)
    assert len(np.unique(expected)) > 2


def test_mean_timing():
    node = real_node(CNN, ir.Mean)
    xs = images((4, 4, 24), np.random.default_rng(0), count=4)
    cycles = []
    dut, _ = check_mean(node, xs, 4, "streaming", cycles=cycles)
    # Beat k is taken at edge k + 1; output beat 0 follows the first beat of the last pixel.
    assert cycles[0] == (dut.pixels - 1) * dut.blocks + 1 + dut.latency
    per_image = np.array(cycles).reshape(len(xs), dut.blocks)
    assert set(np.diff(per_image, axis=1).ravel()) == {1}  # one beat per cycle
    assert set(np.diff(per_image[:, 0])) == {dut.cycles_per_vector}  # no bubble


def test_mean_rejects_other_axes(tmp_path):
    node = written_mean(tmp_path, (3, 5, 6), [2], (0.1, 0), (0.1, 0))
    with pytest.raises(Tfl2RtlError, match=r"^MEAN over axes \(2,\) of a 4-D tensor: only "
                                           r"axes \(1, 2\) of an NHWC image are supported"):
        MeanLayer(node, (3, 5, 6))


def test_mean_rejects_pe_that_does_not_divide():
    node = real_node(CNN, ir.Mean)
    with pytest.raises(Tfl2RtlError, match=r"^PE=5 does not divide the 24 channels; "
                                           r"choose one of 1, 2, 3, 4, 6, 8, 12, 24$"):
        MeanLayer(node, (4, 4, 24), pe=5)


def test_mean_rejects_scaled_sums_near_the_int32_limits(tmp_path):
    # An input scale 2**26 times the output's: the scaled sums exceed int32, where the
    # Requantizer's int32 offset addition would wrap but golden.mean does not.
    node = written_mean(tmp_path, (2, 2, 4), [1, 2], (1.0, 0), (2.0**-26, 0))
    with pytest.raises(Tfl2RtlError, match=r"^MEAN's scaled sums can reach the int32 limits"):
        MeanLayer(node, (2, 2, 4))


# --------------------------------------------------------------------------------------
# Pool2DLayer: SlidingWindow and PoolUnit
# --------------------------------------------------------------------------------------


def check_layer(node, xs, pe, mode, seed=0, cycles=None):
    dut = Pool2DLayer(node, xs.shape[1:], pe=pe)
    expected = golden_pool(node, xs)
    assert expected.shape[1:] == dut.out_shape
    beats = xs.reshape(-1, pe).tolist()
    got = run_stream(dut, beats, expected.size // pe, mode, seed, cycles=cycles)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    return dut, expected


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("path, kind, hw, channels, pe", [
    (KWS, ir.AveragePool2D, (25, 5), 64, 64),
    (KWS, ir.AveragePool2D, (25, 5), 3, 1),  # cut to 3 channels
    (RESNET, ir.AveragePool2D, (8, 8), 64, 16),
    (CONV, ir.MaxPool2D, (5, 7), 12, 4),
    (CNN, ir.AveragePool2D, (5, 5), 16, 2),  # VALID leaves the last row and column out
])
def test_real_layers(path, kind, hw, channels, pe, mode):
    node = real_node(path, kind)
    xs = images((*hw, channels), np.random.default_rng(pe))
    check_layer(node, xs, pe, mode, seed=pe)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("op, in_hw, kernel, stride, padding, activation, channels, pe", [
    ("AVERAGE_POOL_2D", (5, 5), (5, 5), (1, 1), "SAME", "NONE", 2, 1),
    ("MAX_POOL_2D", (4, 5), (3, 3), (2, 2), "SAME", "RELU6", 4, 2),
    ("AVERAGE_POOL_2D", (3, 5), (2, 2), (2, 2), "SAME", "RELU_N1_TO_1", 2, 2),
    ("AVERAGE_POOL_2D", (5, 3), (1, 1), (2, 2), "VALID", "RELU", 4, 4),
])
def test_written_layers(tmp_path, op, in_hw, kernel, stride, padding, activation, channels,
                        pe, mode):
    node = written_pool(tmp_path, op, in_hw, kernel, stride=stride, padding=padding,
                        activation=activation)
    xs = images((*in_hw, channels), np.random.default_rng(channels), count=3)
    check_layer(node, xs, pe, mode, seed=channels)


@pytest.mark.parametrize("op, in_hw, kernel, stride, padding, channels, pe", [
    ("AVERAGE_POOL_2D", (5, 5), (3, 3), (1, 1), "SAME", 2, 1),  # the windows dominate
    ("MAX_POOL_2D", (5, 3), (1, 1), (2, 2), "VALID", 4, 2),  # the input dominates
    ("AVERAGE_POOL_2D", (4, 3), (4, 3), (4, 3), "VALID", 4, 4),  # global
])
def test_layer_timing(tmp_path, op, in_hw, kernel, stride, padding, channels, pe):
    node = written_pool(tmp_path, op, in_hw, kernel, stride=stride, padding=padding)
    xs = images((*in_hw, channels), np.random.default_rng(0), count=4)
    cycles = []
    dut, expected = check_layer(node, xs, pe, "streaming", cycles=cycles)
    # Input beat k is taken at edge k + 1 while the window keeps up.
    assert cycles[0] == dut.window.lead_beats + dut.latency
    per_image = expected[0].size // pe
    image_done = np.array(cycles[per_image - 1::per_image])
    assert set(np.diff(image_done)) == {dut.cycles_per_vector}
    h, w, c = dut.in_shape
    out_h, out_w, _ = dut.out_shape
    assert dut.cycles_per_vector == max(h * w, out_h * out_w * kernel[0] * kernel[1]) * c // pe


def test_layer_rejects_pe_that_does_not_divide():
    node = real_node(CONV, ir.MaxPool2D)
    with pytest.raises(Tfl2RtlError, match=r"^PE=5 does not divide the 12 channels; "
                                           r"choose one of 1, 2, 3, 4, 6, 12$"):
        Pool2DLayer(node, (26, 26, 12), pe=5)


# --------------------------------------------------------------------------------------
# int16 activations (16x8 models)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("counts", [range(1, 26), [64], [4, 6, 9]])
def test_int16_division_is_exact_for_every_count_and_sum(counts):
    """As for int8, over every sum of ``count`` int16 values: the quotient fits the 16
    bits the unit keeps."""
    dut = PoolUnit("average", window=max(counts), counts=counts, act_bits=16,
                   act_min=-32768, act_max=32767)
    for count in counts:
        sums = np.arange(-32768 * count, 32767 * count + 1, dtype=np.int64)
        magnitude = np.abs(sums) + count // 2
        quotient = (magnitude * dut.reciprocals[count]) >> dut.shift
        np.testing.assert_array_equal(quotient, magnitude // count, err_msg=f"count {count}")
        assert quotient.max() == 32768
    assert dut.shift == reciprocal_shift(counts, 16) >= reciprocal_shift(counts)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("kind", [ir.MaxPool2D, ir.AveragePool2D])
@pytest.mark.parametrize("in_hw, kernel, stride, padding, channels, pe", [
    ((5, 5), (3, 3), (1, 1), (1, 1, 1, 1), 2, 2),  # SAME: border counts 4 to 9
    ((4, 5), (2, 2), (2, 2), (0, 0, 0, 1), 4, 2),
])
def test_int16_layers(kind, in_hw, kernel, stride, padding, channels, pe, mode):
    """Pool2DLayer on int16 images (random, the ends of int16, all -32768, all 32767),
    against the golden pooling, with a clamp inside int16."""
    node = kind(inputs=("x",), outputs=("y",), filter=kernel, stride=stride, padding=padding,
                act_min=-30000, act_max=32767)
    rng = np.random.default_rng(channels)
    shape = (*in_hw, channels)
    xs = np.stack([rng.integers(-32768, 32768, shape),
                   np.where(rng.random(shape) < 0.5, -32768, 32767),
                   np.full(shape, -32768), np.full(shape, 32767)]).astype(np.int16)
    dut = Pool2DLayer(node, shape, pe=pe, act_bits=16)
    expected = golden_pool(node, xs)
    beats = [row.tolist() for row in xs.reshape(-1, pe)]
    got = run_stream(dut, beats, expected.size // pe, mode, seed=pe)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    assert expected.dtype == np.int16 and expected.min() == -30000


def test_pool_multipliers_are_the_units():
    """:func:`~tfl2rtl.hw.pool.pool_multipliers` (the DSP estimate's count) gives what the
    layer's unit has: one a lane for kws's 25x5 average (a reciprocal of 125), none for
    ResNet's 8x8 one (1/64, a shift) or a maximum, one a lane for a SAME average with
    border counts (a ROM of reciprocals)."""
    from amaranth.hdl import Fragment

    from tfl2rtl.hw.pool import pool_multipliers

    kws, resnet = load(KWS), load(RESNET)
    average = next(n for n in kws.nodes if isinstance(n, ir.AveragePool2D))
    same = dataclasses.replace(average, filter=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1))
    maximum = ir.MaxPool2D(**{f.name: getattr(same, f.name)
                              for f in dataclasses.fields(ir.MaxPool2D)})
    cases = [(kws, average, 4, 4), (resnet, next(n for n in resnet.nodes
                                                 if isinstance(n, ir.AveragePool2D)), 8, 0),
             (kws, same, 2, 2), (kws, maximum, 2, 0)]
    for graph, node, pe, expected in cases:
        shape = graph.tensors[node.input].shape[1:]
        layer = Pool2DLayer(node, shape, pe=pe)
        # Elaborated, so that its parts do not warn as unused when garbage collected (in
        # whichever test runs then).
        Fragment.get(layer, None)
        assert pool_multipliers(node, shape, pe) == layer.unit.multipliers == expected
