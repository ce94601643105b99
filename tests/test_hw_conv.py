# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""CONV_2D layers of real and written models in hardware, against the golden model."""

import dataclasses

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO
from streams import STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.conv import Conv2DLayer
from tfl2rtl.hw.window import window_out_hw
from tflite_writer import GraphWriter

CONV = TEST_MODELS / "conv_int8.tflite"
CNN = TEST_MODELS / "cnn_int8.tflite"
CNN16 = TEST_MODELS / "cnn_int16x8.tflite"  # 16x8: int16 activations
KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"

_GRAPHS = {}


def real_node(path, index):
    """The ``index``-th CONV_2D node of a model and its input's value range."""
    if path not in _GRAPHS:
        _GRAPHS[path] = load(path)
    graph = _GRAPHS[path]
    node = [n for n in graph.nodes if isinstance(n, ir.Conv2D)][index]
    return node, graph.tensors[node.input].value_range


def written_node(tmp_path, in_shape, out_c, *, kernel=(3, 3), stride=(1, 1),
                 dilation=(1, 1), padding="SAME", activation="NONE", seed=0):
    """A CONV_2D written with tflite_writer and loaded like a user's model."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, (out_c, *kernel, in_shape[2]))
    weights[0, 0, 0, 0] = -128
    bias = rng.integers(-3000, 3001, out_c)
    fan_in = kernel[0] * kernel[1] * in_shape[2]
    w_scales = 0.02 * 2.0 ** rng.uniform(-1, 0, out_c) / np.sqrt(fan_in)
    g = GraphWriter()
    x = g.tensor((1, *in_shape), "int8", 0.05, int(rng.integers(-20, 21)))
    y = g.conv_2d(x, weights, w_scales, bias, (0.1, int(rng.integers(-10, 11))),
                  stride=stride, padding=padding, dilation=dilation, activation=activation)
    path = tmp_path / "conv.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = load(path)
    (node,) = graph.nodes
    return node, graph.tensors[node.input].value_range


def cropped(node, hw):
    """``node`` on an ``hw`` input: a copy with ``out_hw`` recomputed (the padding kept)."""
    out_hw = window_out_hw(hw, node.weights.shape[1:3], node.stride, node.dilation,
                           node.padding)
    return dataclasses.replace(node, out_hw=out_hw)


def images(value_range, shape, rng):
    """A uniform image and one of the range's two ends only."""
    lo, hi = value_range
    uniform = rng.integers(lo, hi, shape, endpoint=True)
    ends = np.where(rng.random(shape) < 0.5, lo, hi)
    return np.stack([uniform, ends]).astype(np.int8 if -128 <= lo <= hi <= 127 else np.int16)


def run_layer(dut, xs, mode, seed=0, cycles=None):
    """Stream ``xs`` back to back through ``dut``: the outputs, ``(images, *out_shape)``."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    lanes = dut.requant_lanes
    count = len(xs) * int(np.prod(dut.out_shape)) // lanes
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, xs.reshape(-1, dut.simd).tolist(), in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, count, out_timing, cycles=cycles):
            results.extend(payload[lane] for lane in range(lanes))

    simulate(dut, producer, consumer)
    dtype = np.int16 if dut.act_bits == 16 else np.int8
    return np.array(results, dtype=dtype).reshape(len(xs), *dut.out_shape)


def check(node, value_range, hw, mode, *, pe, simd, requant_lanes=None, seed=0):
    """Run ``node`` on two ``hw`` images; in streaming mode also check the timing."""
    node = cropped(node, hw)
    in_shape = (*hw, node.weights.shape[3])
    dut = Conv2DLayer(node, in_shape, pe=pe, simd=simd, requant_lanes=requant_lanes)
    xs = images(value_range, in_shape, np.random.default_rng(seed))
    cycles = []
    got = run_layer(dut, xs, mode, seed=seed, cycles=cycles)
    expected = golden.conv_2d(node, xs)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 4  # not all clamped
    if mode == "streaming":
        # The first output waits for the rows of the first windows (input beat lead_beats,
        # taken at edge lead_beats); the second image follows at the initiation interval.
        assert cycles[0] == dut.lead_beats + dut.latency
        beats = len(cycles) // len(xs)
        assert cycles[2 * beats - 1] - cycles[beats - 1] == dut.cycles_per_vector
    return dut


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("path, index, hw, pe, simd, requant_lanes", [
    (CONV, 0, (6, 5), 3, 1, None),  # 3x3 VALID, one input channel
    (CNN, 0, (7, 5), 8, 1, 2),  # stride 2 SAME on an odd input, one input channel
    (CNN, 1, (3, 4), 4, 8, None),  # 3x3 SAME, 16 -> 16
    (CNN, 2, (5, 5), 8, 16, None),  # dilation 2
    (CNN, 3, (4, 3), 8, 16, 2),  # 1x1: requantization is the bottleneck
    (CNN, 4, (5, 4), 24, 16, 8),  # stride 2 SAME, 16 -> 24
    (CNN16, 0, (7, 6), 4, 1, 2),  # 16x8: stride 2, asymmetric padding, one input channel
    (CNN16, 3, (4, 5), 8, 4, None),  # 16x8: 3x3 SAME, 8 -> 8
    (CNN16, 4, (5, 5), 16, 16, 4),  # 16x8: stride 2 SAME, 16 -> 16
], ids=["conv_int8", "cnn-stride2", "cnn-3x3", "cnn-dilation2", "cnn-1x1", "cnn-16to24",
        "cnn16x8-stride2", "cnn16x8-3x3", "cnn16x8-16to16"])
def test_real_layers(path, index, hw, pe, simd, requant_lanes, mode):
    node, value_range = real_node(path, index)
    check(node, value_range, hw, mode, pe=pe, simd=simd, requant_lanes=requant_lanes,
          seed=index)


@pytest.mark.parametrize("mode", STALL_MODES)
def test_kws_first_layer(mode):
    # 10x4 kernel, one input channel, stride 2, SAME padding (4, 1, 5, 1) on 49x10; here
    # on 13 of the 49 rows, which TFLite would pad the same way.
    node, value_range = real_node(KWS, 0)
    assert node.weights.shape[1:] == (10, 4, 1) and node.padding == (4, 1, 5, 1)
    dut = check(node, value_range, (13, 10), mode, pe=64, simd=1, requant_lanes=16)
    assert dut.out_shape == (7, 5, 64) and dut.multipliers == 64


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("in_shape, out_c, options, pe, simd", [
    ((4, 5, 6), 4, {"kernel": (1, 1)}, 2, 3),
    ((7, 5, 3), 4, {"stride": (2, 2)}, 4, 3),
    ((7, 6, 2), 2, {"dilation": (2, 2), "activation": "RELU"}, 1, 2),
    ((5, 4, 1), 3, {"kernel": (2, 3), "padding": "VALID"}, 3, 1),
    ((6, 5, 4), 8, {"kernel": (1, 1), "stride": (2, 2), "padding": "VALID"}, 8, 4),
], ids=["1x1", "stride2-same-odd", "dilation2-relu", "single-channel-valid",
        "1x1-stride2"])
def test_written_layers(tmp_path, in_shape, out_c, options, pe, simd, mode):
    node, value_range = written_node(tmp_path, in_shape, out_c, **options, seed=out_c)
    check(node, value_range, in_shape[:2], mode, pe=pe, simd=simd, seed=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"simd": 3}, r"^SIMD=3 does not divide the 16 input channels; choose one of "
                  r"1, 2, 4, 8, 16$"),
    ({"pe": 5}, r"^PE=5 does not divide the 24 output channels; choose one of "
                r"1, 2, 3, 4, 6, 8, 12, 24$"),
    ({"pe": 4, "requant_lanes": 3}, r"^3 requantizer lanes do not divide PE=4$"),
])
def test_rejects_foldings(kwargs, message):
    node, _ = real_node(CNN, 4)
    with pytest.raises(Tfl2RtlError, match=message):
        Conv2DLayer(node, (7, 7, 16), **kwargs)


def test_rejects_a_mismatched_input():
    node, _ = real_node(CNN, 4)
    with pytest.raises(Tfl2RtlError, match=r"^a 7x7x8 input does not match the filter's 16 "
                                           r"input channels$"):
        Conv2DLayer(node, (7, 7, 8))
    with pytest.raises(Tfl2RtlError, match=r"^a 9x7 input gives a 5x4 output, the node says "
                                           r"4x4$"):
        Conv2DLayer(node, (9, 7, 16))
