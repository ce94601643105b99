# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""The window stream: its definition (window_beats) against the golden model, and the
SlidingWindow hardware against that definition."""

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO
from streams import STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.window import SlidingWindow, window_beats
from tflite_writer import GraphWriter

KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"
CONV_MODELS = [TEST_MODELS / "conv_int8.tflite", TEST_MODELS / "cnn_int8.tflite", KWS]


def nodes_of(path, kind):
    graph = load(path)
    return graph, [node for node in graph.nodes if isinstance(node, kind)]


# --------------------------------------------------------------------------------------
# window_beats, the stream format's definition
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONV_MODELS, ids=lambda p: p.stem)
def test_conv_order_dot_weights_is_the_accumulator(path):
    """Order "conv" is TFLite's filter order: each window times the weights reshaped to
    [out_c, KH * KW * C] plus folded_bias gives golden.accumulate, padding included."""
    graph, nodes = nodes_of(path, ir.Conv2D)
    rng = np.random.default_rng(0)
    for node in nodes[:3]:
        shape = graph.tensors[node.input].shape
        x = rng.integers(-128, 128, shape).astype(np.int8)
        out_c, kh, kw, in_c = node.weights.shape
        simd = in_c // 2 if in_c % 2 == 0 else 1
        data, pad = window_beats(x[0], (kh, kw), node.stride, node.dilation, node.padding,
                                 -node.input_offset, simd, "conv")
        assert data.shape == (np.prod(node.out_hw) * kh * kw * in_c // simd, simd)
        windows = data.reshape(-1, kh * kw * in_c).astype(np.int64)
        acc = windows @ node.weights.reshape(out_c, -1).T.astype(np.int64) + node.folded_bias
        expected = golden.accumulate(node, x, folded=True)
        np.testing.assert_array_equal(acc.reshape(expected.shape), expected)
        assert pad.any() == any(node.padding)


@pytest.mark.parametrize("simd", [1, 4, 64])
def test_depthwise_order_gives_the_depthwise_accumulator(simd):
    graph, nodes = nodes_of(KWS, ir.DepthwiseConv2D)
    node = nodes[0]
    assert node.depth_multiplier == 1 and any(node.padding)
    x = np.random.default_rng(simd).integers(
        -128, 128, graph.tensors[node.input].shape).astype(np.int8)
    kh, kw, channels = node.weights.shape
    data, _ = window_beats(x[0], (kh, kw), node.stride, node.dilation, node.padding,
                           -node.input_offset, simd, "depthwise")
    # [pixel, channel block, kh * kw, lane]
    windows = data.reshape(-1, channels // simd, kh * kw, simd).astype(np.int64)
    weights = node.weights.reshape(kh * kw, channels // simd, simd).transpose(1, 0, 2)
    acc = (windows * weights).sum(axis=2).reshape(-1, channels) + node.folded_bias
    expected = golden.accumulate(node, x, folded=True)
    np.testing.assert_array_equal(acc.reshape(expected.shape), expected)


@pytest.mark.parametrize("order", ["conv", "depthwise"])
def test_pad_flags_mark_the_padding(tmp_path, order):
    """The maximum over a window's unpadded beats is MAX_POOL_2D (which ignores padding),
    on a SAME-padded odd input with stride 2; padded beats hold pad_value."""
    g = GraphWriter()
    x_index = g.tensor((1, 7, 5, 4), "int8", 0.1, 0)
    y_index = g.pool_2d("MAX_POOL_2D", x_index, (3, 2), stride=(2, 2), padding="SAME")
    path = tmp_path / "max_pool.tflite"
    path.write_bytes(g.finish([x_index], [y_index]))
    (node,) = load(path).nodes
    assert any(node.padding)
    x = np.random.default_rng(1).integers(-128, 128, (1, 7, 5, 4)).astype(np.int8)
    data, pad = window_beats(x[0], node.filter, node.stride, (1, 1), node.padding, 99, 2,
                             order)
    assert (data[pad] == 99).all()
    assert pad.any() and not pad.all()
    # [pixel, kh * kw * 2 blocks] in either order: the maximum does not care.
    masked = np.where(pad[:, None], -1000, data.astype(np.int64))
    windows = masked.reshape(-1, 6 * 2, 2)
    if order == "conv":
        windows = windows.reshape(-1, 6, 2, 2)
    else:
        windows = windows.reshape(-1, 2, 6, 2).transpose(0, 2, 1, 3)
    maxima = windows.max(axis=1).reshape(-1, 4)
    expected = golden.max_pool_2d(node, x)
    np.testing.assert_array_equal(maxima.reshape(expected.shape), expected)


# --------------------------------------------------------------------------------------
# SlidingWindow
# --------------------------------------------------------------------------------------

#: (H, W, C), kernel, stride, dilation, (top, left, bottom, right), simd, order
SHAPES = {
    "3x3 same": ((5, 4, 2), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, "conv"),
    "3x3 same depthwise": ((5, 4, 2), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 2, "depthwise"),
    "1x1": ((4, 5, 3), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1, "conv"),
    "1x1 stride 2": ((4, 5, 3), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 3, "conv"),
    "stride 2 same odd": ((7, 5, 2), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 1, "conv"),
    "stride 2 same odd depthwise": ((7, 5, 2), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 1,
                                    "depthwise"),
    "stride 2 same even": ((8, 6, 2), (3, 3), (2, 2), (1, 1), (0, 0, 1, 1), 2, "conv"),
    "stride 2 valid leftovers": ((7, 8, 1), (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), 1, "conv"),
    "2x2 stride 2 pool": ((6, 8, 2), (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), 2, "depthwise"),
    "stride 3 kernel 2": ((6, 5, 2), (2, 2), (3, 3), (1, 1), (0, 0, 0, 0), 1, "depthwise"),
    "dilation 2 same": ((7, 7, 1), (3, 3), (1, 1), (2, 2), (2, 2, 2, 2), 1, "conv"),
    "dilation 2 valid": ((7, 6, 1), (3, 3), (1, 1), (2, 2), (0, 0, 0, 0), 1, "conv"),
    "kws 10x4": ((9, 4, 1), (10, 4), (2, 2), (1, 1), (4, 1, 5, 1), 1, "conv"),
    "global 8x8": ((8, 8, 2), (8, 8), (1, 1), (1, 1), (0, 0, 0, 0), 1, "depthwise"),
    "global 25x5": ((25, 5, 1), (25, 5), (1, 1), (1, 1), (0, 0, 0, 0), 1, "depthwise"),
    "height 1": ((1, 6, 2), (1, 3), (1, 1), (1, 1), (0, 1, 0, 1), 1, "conv"),
    "width 1": ((6, 1, 2), (3, 1), (1, 1), (1, 1), (1, 0, 1, 0), 2, "conv"),
    # One beat a row, read as soon as it is taken: in the cycle it is written.
    "1x1 width 1": ((5, 1, 2), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 2, "conv"),
    "pixel 1x1": ((1, 1, 4), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 4, "depthwise"),
    "asymmetric padding": ((5, 5, 1), (3, 3), (1, 1), (1, 1), (3, 0, 4, 2), 1, "conv"),
    "16 channels": ((3, 3, 16), (2, 2), (1, 1), (1, 1), (0, 0, 1, 1), 4, "depthwise"),
}

PAD_VALUE = -7


def run_window(dut, images, mode, seed=0, cycles=None):
    """Stream ``images`` back to back through ``dut``: the (data, pad) beats received."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    count = len(images) * dut.beats_out
    received = []

    async def producer(ctx):
        await put(ctx, dut.i, images.reshape(-1, dut.simd).tolist(), in_timing)

    async def consumer(ctx):
        received.extend(await get(ctx, dut.o, count, out_timing, cycles=cycles))

    simulate(dut, producer, consumer)
    data = np.array([[beat.data[lane] for lane in range(dut.simd)] for beat in received])
    pad = np.array([beat.pad for beat in received], dtype=bool)
    return data.reshape(-1, dut.simd), pad


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("name", SHAPES)
def test_sliding_window(name, mode):
    shape, kernel, stride, dilation, padding, simd, order = SHAPES[name]
    dut = SlidingWindow(shape, kernel, stride, dilation, padding, pad_value=PAD_VALUE,
                        simd=simd, order=order)
    images = np.random.default_rng(len(name)).integers(-128, 128, (3, *shape)).astype(np.int8)
    images[0].flat[:2] = [-128, 127]
    cycles = []
    data, pad = run_window(dut, images, mode, seed=len(name), cycles=cycles)
    expected = [window_beats(x, kernel, stride, dilation, padding, PAD_VALUE, simd, order)
                for x in images]
    np.testing.assert_array_equal(data, np.concatenate([d for d, _ in expected]))
    np.testing.assert_array_equal(pad, np.concatenate([p for _, p in expected]))
    assert dut.beats_out == len(expected[0][1])
    if mode == "streaming":
        # The first window starts once its rows are in (input beat lead_beats, taken at
        # edge lead_beats); back-to-back images then follow at the initiation interval.
        # (With no lead beats, the first window waits for no input.)
        first = dut.lead_beats + dut.latency if dut.lead_beats else dut.padding_latency
        assert cycles[0] == first
        image_done = cycles[dut.beats_out - 1::dut.beats_out]
        assert list(np.diff(image_done)) == [dut.cycles_per_vector] * 2


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("name", ["3x3 same", "stride 2 valid leftovers", "global 8x8",
                                  "kws 10x4"])
def test_fewest_rows(name, mode):
    """With only min_rows rows the reader waits for the writer, but the stream is the
    same."""
    shape, kernel, stride, dilation, padding, simd, order = SHAPES[name]
    rows = SlidingWindow(shape, kernel, stride, dilation, padding).min_rows
    dut = SlidingWindow(shape, kernel, stride, dilation, padding, pad_value=PAD_VALUE,
                        simd=simd, order=order, rows=rows)
    assert dut.rows < dut.no_wait_rows
    images = np.random.default_rng(1).integers(-128, 128, (3, *shape)).astype(np.int8)
    cycles = []
    data, pad = run_window(dut, images, mode, seed=2, cycles=cycles)
    expected = [window_beats(x, kernel, stride, dilation, padding, PAD_VALUE, simd, order)
                for x in images]
    np.testing.assert_array_equal(data, np.concatenate([d for d, _ in expected]))
    np.testing.assert_array_equal(pad, np.concatenate([p for _, p in expected]))
    if mode == "streaming":
        image_done = cycles[dut.beats_out - 1::dut.beats_out]
        assert min(np.diff(image_done)) > dut.cycles_per_vector


def test_memory_rows():
    # A conv keeps its window's rows plus a stride's worth; a whole-image window double
    # buffers images so that the next one streams in while the current one is read.
    dut = SlidingWindow((28, 28, 1), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))
    assert dut.rows == 4
    dut = SlidingWindow((28, 28, 1), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0))
    assert (dut.min_rows, dut.rows) == (3, 6)
    dut = SlidingWindow((49, 10, 1), (10, 4), (2, 2), (1, 1), (4, 1, 5, 1))
    assert dut.rows == 12
    dut = SlidingWindow((25, 5, 64), (25, 5), (1, 1), (1, 1), (0, 0, 0, 0), simd=4,
                        order="depthwise")
    assert dut.rows == 50


@pytest.mark.parametrize("kwargs, message", [
    ({"simd": 3}, r"^SIMD=3 does not divide the 4 input channels; choose one of 1, 2, 4$"),
    ({"order": "nchw"}, r"^unknown window order 'nchw'"),
    ({"kernel": (6, 3)}, r"^a 6x3 window \(dilation 1x1\) does not fit the padded 5x5 input$"),
    ({"pad_value": 128}, r"^pad value 128 is not int8$"),
    ({"rows": 2}, r"^2 line buffer rows: this window needs 3 to 6$"),
])
def test_rejects(kwargs, message):
    args = {"kernel": (3, 3), "order": "conv", "simd": 1, "pad_value": 0, "rows": None,
            **kwargs}
    with pytest.raises(Tfl2RtlError, match=message):
        SlidingWindow((5, 5, 4), args["kernel"], (1, 1), (1, 1), (0, 0, 0, 0),
                      pad_value=args["pad_value"], simd=args["simd"], order=args["order"],
                      rows=args["rows"])
