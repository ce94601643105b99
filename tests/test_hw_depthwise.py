# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""DEPTHWISE_CONV_2D layers of real and written models in hardware, against the golden
model."""

import dataclasses

import numpy as np
import pytest
from amaranth.back.rtlil import convert
from amaranth.hdl import Fragment, Module, Signal, signed
from amaranth.sim import Simulator

from conftest import TEST_MODELS, ZOO, long_case, long_cases
from streams import DSP_PLATFORM, STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.depthwise import (
    DepthwiseConv2DLayer,
    DepthwiseUnit,
    logic_product,
)
from tfl2rtl.hw.requant import Requantizer
from tfl2rtl.hw.window import window_beats, window_out_hw
from tfl2rtl.lower import hardware_form
from tflite_writer import GraphWriter

KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"
VWW = ZOO / "mlperf_tiny" / "vww_96_int8.tflite"
MICRO_SPEECH = ZOO / "tflite_micro" / "micro_speech_quantized.tflite"

_GRAPHS = {}


def real_node(path, index):
    """The ``index``-th DEPTHWISE_CONV_2D node of a model and its input's value range."""
    if path not in _GRAPHS:
        _GRAPHS[path] = load(path)
    graph = _GRAPHS[path]
    node = [n for n in graph.nodes if isinstance(n, ir.DepthwiseConv2D)][index]
    return node, graph.tensors[node.input].value_range


def written_node(tmp_path, in_shape, *, kernel=(3, 3), multiplier=1, stride=(1, 1),
                 dilation=(1, 1), padding="SAME", activation="NONE", seed=0):
    """A DEPTHWISE_CONV_2D written with tflite_writer and loaded like a user's model."""
    rng = np.random.default_rng(seed)
    channels = in_shape[2] * multiplier
    weights = rng.integers(-128, 128, (1, *kernel, channels))
    weights[0, 0, 0, 0] = -128
    bias = rng.integers(-3000, 3001, channels)
    w_scales = 0.02 * 2.0 ** rng.uniform(-1, 0, channels)
    g = GraphWriter()
    x = g.tensor((1, *in_shape), "int8", 0.05, int(rng.integers(-20, 21)))
    y = g.depthwise_conv_2d(x, weights, w_scales, bias, (0.25, int(rng.integers(-10, 11))),
                            depth_multiplier=multiplier, stride=stride, padding=padding,
                            dilation=dilation, activation=activation)
    path = tmp_path / "depthwise.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = load(path)
    (node,) = graph.nodes
    return node, graph.tensors[node.input].value_range


def cropped(node, hw):
    """``node`` on an ``hw`` input: a copy with ``out_hw`` recomputed.  The padding is kept,
    so the crop must be one on which TFLite would pad the same way."""
    kernel = node.weights.shape[:2]
    if any(node.padding):  # SAME: the total padding splits with the extra row at the end
        same = []
        for size, k, s, d in zip(hw, kernel, node.stride, node.dilation, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            same.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = same
        assert node.padding == (top, left, bottom, right), f"a {hw} crop pads differently"
    out_hw = window_out_hw(hw, kernel, node.stride, node.dilation, node.padding)
    return dataclasses.replace(node, out_hw=out_hw)


def images(value_range, shape, rng):
    """A uniform image and one of the range's two ends only."""
    lo, hi = value_range
    uniform = rng.integers(lo, hi, shape, endpoint=True)
    ends = np.where(rng.random(shape) < 0.5, lo, hi)
    return np.stack([uniform, ends]).astype(np.int8 if -128 <= lo <= hi <= 127 else np.int16)


def window_stream(node, xs, pe):
    """The window beats (order "depthwise") of every image in ``xs``, back to back."""
    beats = [window_beats(x, node.weights.shape[:2], node.stride, node.dilation,
                          node.padding, -node.input_offset, pe, "depthwise")
             for x in xs]
    return [{"data": d.tolist(), "pad": int(p)}
            for data, pad in beats for d, p in zip(data, pad, strict=True)]


def run_unit(node, xs, pe, mode, seed=0, requantize=False, cycles=None, platform=None):
    """Window beats into a DepthwiseUnit (and a Requantizer after it), elaborated for
    ``platform``: the outputs as ``(images, out_h, out_w, out_c)``."""
    unit = DepthwiseUnit(node, pe=pe)
    out_c = node.weights.shape[2]
    dut, out = unit, unit.o
    if requantize:
        requant = Requantizer(node.requant, channels=out_c, output_offset=node.output_offset,
                              act_min=node.act_min, act_max=node.act_max,
                              acc_width=node.acc_bits, lanes=unit.lanes)
        dut = Module()
        dut.submodules.unit = unit
        dut.submodules.requant = requant
        dut.d.comb += [requant.i.payload.eq(unit.o.payload), requant.i.valid.eq(unit.o.valid),
                       unit.o.ready.eq(requant.i.ready)]
        out = requant.o
    in_timing, out_timing = STALL_MODES[mode](seed)
    beats = window_stream(node, xs, unit.in_lanes)
    count = len(xs) * node.out_hw[0] * node.out_hw[1] * unit.blocks
    results, groups = [], []

    async def producer(ctx):
        await put(ctx, unit.i, beats, in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, out, count, out_timing, cycles=cycles):
            if requantize:
                results.extend(payload[j] for j in range(unit.lanes))
            else:
                results.extend(payload.acc[j] for j in range(unit.lanes))
                groups.append(payload.group)

    simulate(dut, producer, consumer, platform=platform)
    if not requantize:
        np.testing.assert_array_equal(groups, np.arange(count) % unit.blocks)
    return unit, np.array(results, np.int64).reshape(len(xs), *node.out_hw, out_c)


#: name: (node maker taking tmp_path, input (H, W, C), pe: output channels per cycle).  The
#: real nodes are cropped to sizes on which TFLite's SAME padding is the node's own.
CASES = {
    "kws_pe8": (lambda _: real_node(KWS, 0), (3, 5, 64), 8),
    "kws_pe64": (lambda _: real_node(KWS, 2), (4, 3, 64), 64),
    # 16 channels, stride 2, padding (0, 0, 1, 1)
    "vww_stride2_pe4": (lambda _: real_node(VWW, 1), (4, 6, 16), 4),
    # 10x8, stride 2, padding (4, 3, 5, 3), depth multiplier 8 from one channel
    "micro_speech": (lambda _: real_node(MICRO_SPEECH, 0), (11, 8, 1), 8),
    # the same with 1 and 2 multipliers: each window beat held 8 and 4 cycles
    "micro_speech_pe1": (lambda _: real_node(MICRO_SPEECH, 0), (11, 8, 1), 1),
    "micro_speech_pe2": (lambda _: real_node(MICRO_SPEECH, 0), (11, 8, 1), 2),
    "multiplier2_pe4": (lambda t: written_node(t, (4, 5, 4), multiplier=2), (4, 5, 4), 4),
    "dilation2": (lambda t: written_node(t, (6, 5, 3), dilation=(2, 2), activation="RELU6"),
                  (6, 5, 3), 3),
    "stride2_same_odd": (lambda t: written_node(t, (5, 7, 2), stride=(2, 2), seed=1),
                         (5, 7, 2), 1),
    "one_channel_valid": (lambda t: written_node(t, (4, 5, 1), kernel=(2, 3),
                                                 padding="VALID", seed=2), (4, 5, 1), 1),
    "1x1_stride2": (lambda t: written_node(t, (5, 4, 2), kernel=(1, 1), stride=(2, 2),
                                           padding="VALID", seed=4), (5, 4, 2), 2),
    "1x1_multiplier3": (lambda t: written_node(t, (2, 3, 4), kernel=(1, 1), multiplier=3,
                                               seed=3), (2, 3, 4), 6),
}
#: CASES with micro_speech on one multiplier a long run (conftest.LONG): 8-10 s a run
#: in Amaranth's simulator; two multipliers (each window beat held 4 cycles) stay.
SUITE_CASES = long_cases(CASES, {"micro_speech_pe1"})


def case_node(case, tmp_path):
    make, shape, pe = CASES[case]
    node, value_range = make(tmp_path)
    return cropped(node, shape[:2]), value_range, shape, pe


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("case", SUITE_CASES)
def test_unit_accumulators(tmp_path, case, mode):
    node, value_range, shape, pe = case_node(case, tmp_path)
    xs = images(value_range, shape, np.random.default_rng(len(case)))
    _, got = run_unit(node, xs, pe, mode, seed=pe)
    np.testing.assert_array_equal(got, golden.accumulate(node, xs, folded=True))


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("case", ["micro_speech", "micro_speech_pe2", "multiplier2_pe4",
                                  "dilation2"])
def test_unit_with_requantizer(tmp_path, case, mode):
    node, value_range, shape, pe = case_node(case, tmp_path)
    xs = images(value_range, shape, np.random.default_rng(len(case) + 1))
    _, got = run_unit(node, xs, pe, mode, seed=pe + 1, requantize=True)
    expected = golden.depthwise_conv_2d(node, xs)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 3  # not all clamped


@pytest.mark.parametrize("case", ["kws_pe8", "micro_speech", "micro_speech_pe2",
                                  "multiplier2_pe4", "1x1_multiplier3"])
def test_unit_with_the_product_hook(tmp_path, case):
    """Products from the platform's hook (a DSP block holding the operand and product
    registers), requantized through it too: the golden outputs under stalls, and the
    same timing as without."""
    node, value_range, shape, pe = case_node(case, tmp_path)
    xs = images(value_range, shape, np.random.default_rng(len(case) + 1))
    _, got = run_unit(node, xs, pe, "stalls", seed=pe + 1, requantize=True,
                      platform=DSP_PLATFORM)
    np.testing.assert_array_equal(got, golden.depthwise_conv_2d(node, xs))
    timings = []
    for platform in (None, DSP_PLATFORM):
        cycles = []
        run_unit(node, xs[:1], pe, "streaming", cycles=cycles, platform=platform)
        timings.append(cycles)
    assert timings[0] == timings[1]


@pytest.mark.parametrize("pe", [1, 2, 4])
def test_unit_timing(tmp_path, pe):
    node, value_range = written_node(tmp_path, (3, 4, 4), kernel=(2, 3), multiplier=2)
    xs = images(value_range, (3, 4, 4), np.random.default_rng(0))
    cycles = []
    unit, _ = run_unit(node, xs, pe, "streaming", cycles=cycles)
    # In streaming mode the k-th beat (counting from 1) is taken at edge k * steps (pe 1
    # holds each beat 2 cycles for the depth multiplier 2), so the first block's last one
    # at edge taps * steps; then one accumulator beat every taps * steps cycles, across
    # the image boundary too.
    assert unit.steps == (2 if pe == 1 else 1) and unit.throughput == 1 / unit.steps
    assert cycles[0] == unit.taps * unit.steps + unit.latency
    assert set(np.diff(cycles)) == {unit.taps * unit.steps}


def run_layer(dut, xs, mode, seed=0, cycles=None, top=None):
    """Images ``xs`` (NHWC) through a DepthwiseConv2DLayer, back to back (``top``: what
    to simulate instead of ``dut``, e.g. its fragment for a platform)."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    lanes = dut.requant_lanes
    count = len(xs) * int(np.prod(dut.out_shape)) // lanes
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, xs.reshape(-1, dut.in_lanes).tolist(), in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, dut.o, count, out_timing, cycles=cycles):
            results.extend(payload[j] for j in range(lanes))

    simulate(dut if top is None else top, producer, consumer)
    dtype = np.int16 if dut.act_bits == 16 else np.int8
    return np.array(results, dtype).reshape(len(xs), *dut.out_shape)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("case", SUITE_CASES)
def test_layer(tmp_path, case, mode):
    node, value_range, shape, pe = case_node(case, tmp_path)
    xs = images(value_range, shape, np.random.default_rng(len(case) + 2))
    dut = DepthwiseConv2DLayer(node, shape, pe=pe)
    assert dut.in_shape == shape
    assert dut.multipliers == pe
    assert dut.in_lanes == max(pe // node.depth_multiplier, 1)
    got = run_layer(dut, xs, mode, seed=pe + 2)
    expected = golden.depthwise_conv_2d(node, xs)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 3  # not all clamped


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("pe, requant_lanes", [(4, 2), (8, None), (1, None)])
def test_16x8_layer(pe, requant_lanes, mode):
    """cnn_int16x8's DEPTHWISE_CONV_2D (3x3 SAME, 8 channels, int16 values, int64
    accumulators, an Int64Requantizer) on a 5x6 crop, against the golden model."""
    node, value_range = real_node(TEST_MODELS / "cnn_int16x8.tflite", 0)
    shape = (5, 6, 8)
    node = cropped(node, shape[:2])
    xs = images(value_range, shape, np.random.default_rng(pe))
    dut = DepthwiseConv2DLayer(node, shape, pe=pe, requant_lanes=requant_lanes)
    assert dut.act_bits == 16 and xs.dtype == np.int16
    cycles = []
    got = run_layer(dut, xs, mode, seed=pe, cycles=cycles if mode == "streaming" else None)
    expected = golden.depthwise_conv_2d(node, xs)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 3
    if mode == "streaming":
        assert cycles[0] == dut.window.lead_beats + dut.latency


@pytest.mark.parametrize("case", ["kws_pe8", "micro_speech", "micro_speech_pe2",
                                  "vww_stride2_pe4", "dilation2", "1x1_stride2"])
def test_layer_timing(tmp_path, case):
    node, value_range, shape, pe = case_node(case, tmp_path)
    dut = DepthwiseConv2DLayer(node, shape, pe=pe)
    rng = np.random.default_rng(0)
    xs = np.concatenate([images(value_range, shape, rng) for _ in range(2)])[:3]
    cycles = []
    run_layer(dut, xs, "streaming", cycles=cycles)
    # In streaming mode the k-th input beat (counting from 1) is taken at edge k.
    assert cycles[0] == dut.window.lead_beats + dut.latency
    beats = int(np.prod(dut.out_shape)) // dut.requant_lanes
    image_done = cycles[beats - 1::beats]
    assert set(np.diff(image_done[1:])) == {dut.cycles_per_vector}
    steps_per_image = (dut.out_shape[0] * dut.out_shape[1] * shape[2] // dut.in_lanes
                       * node.weights.shape[0] * node.weights.shape[1] * dut.unit.steps)
    input_beats = shape[0] * shape[1] * shape[2] // dut.in_lanes
    assert dut.cycles_per_vector == max(steps_per_image, input_beats)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("case, requant_lanes", [
    ("micro_speech", 1), ("micro_speech", 2), ("micro_speech_pe2", 1), ("multiplier2_pe4", 1),
    ("kws_pe8", 4)])
def test_layer_with_fewer_requantizer_lanes(tmp_path, case, requant_lanes, mode):
    """An accumulator splitter hands each beat of the unit's accumulators to fewer
    requantizer lanes; the outputs are the same, and when the splitting takes longer than
    the window positions, it sets the interval (``cycles_per_vector``, measured)."""
    node, value_range, shape, pe = case_node(case, tmp_path)
    xs = images(value_range, shape, np.random.default_rng(len(case) + 2))
    dut = DepthwiseConv2DLayer(node, shape, pe=pe, requant_lanes=requant_lanes)
    assert dut.requant_lanes == requant_lanes and len(dut.o.payload.as_value()) == 8 * requant_lanes
    cycles = []
    got = run_layer(dut, np.concatenate([xs, xs[:1]]), mode, seed=pe + 5,
                    cycles=cycles if mode == "streaming" else None)
    np.testing.assert_array_equal(got[:len(xs)], golden.depthwise_conv_2d(node, xs))
    if mode == "streaming":
        beats = int(np.prod(dut.out_shape)) // requant_lanes
        image_done = cycles[beats - 1::beats]
        assert set(np.diff(image_done[1:])) == {dut.cycles_per_vector}
    with pytest.raises(Tfl2RtlError, match="requantizer lanes do not divide"):
        DepthwiseConv2DLayer(node, shape, pe=pe, requant_lanes=3 * dut.unit.lanes)


def test_rejects_pe_that_does_not_divide_the_channels(tmp_path):
    node, _ = real_node(VWW, 1)
    with pytest.raises(Tfl2RtlError,
                       match=r"^PE=3 does not divide the 16 output channels in whole input "
                             r"channels or parts of one \(depth multiplier 1\); choose one of "
                             r"1, 2, 4, 8, 16$"):
        DepthwiseUnit(node, pe=3)
    # micro_speech: 8 output channels from one input channel
    with pytest.raises(Tfl2RtlError, match=r"\(depth multiplier 8\); choose one of 1, 2, 4, 8$"):
        DepthwiseUnit(real_node(MICRO_SPEECH, 0)[0], pe=16)
    # depth multiplier 3 on 4 channels: 2 divides the 12 output channels, but it is
    # neither a multiple nor a divisor of 3
    written, _ = written_node(tmp_path, (2, 3, 4), kernel=(1, 1), multiplier=3)
    with pytest.raises(Tfl2RtlError, match=r"\(depth multiplier 3\); choose one of 1, 3, 6, 12$"):
        DepthwiseUnit(written, pe=2)


def test_layer_rejects_pe_that_does_not_divide_the_channels():
    node, _ = real_node(KWS, 0)
    with pytest.raises(Tfl2RtlError, match=r"^PE=3 does not divide the 64 output channels "):
        DepthwiseConv2DLayer(cropped(node, (3, 5)), (3, 5, 64), pe=3)


def test_layer_rejects_an_input_the_node_was_not_built_for():
    node, _ = real_node(KWS, 0)
    with pytest.raises(Tfl2RtlError, match=r"^a 3x5 input gives a 3x5 output, the node says "
                                           r"25x5$"):
        DepthwiseConv2DLayer(node, (3, 5, 64), pe=8)


@pytest.mark.parametrize("weight_bits", [8, 9], ids=["int8", "nine_bit"])
def test_logic_product_is_exact_for_every_pair(weight_bits):
    """Every int8 activation by every weight of ``weight_bits`` bits: int8, and the 9-bit
    weights of a legacy uint8 model's hardware form (``w - zw``)."""
    a, b = Signal(signed(8)), Signal(signed(weight_bits))
    y = Signal(signed(8 + weight_bits))
    m = Module()
    m.d.comb += y.eq(logic_product(a, b))
    wrong = []

    async def bench(ctx):
        for w in range(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1)):
            ctx.set(b, w)
            for x in range(-128, 128):
                ctx.set(a, x)
                if ctx.get(y) != x * w:
                    wrong.append((x, w))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert wrong == []


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("case, requant_lanes", [("micro_speech", 2),
                                                  long_case("micro_speech_pe1", 1)])
def test_layer_with_products_in_logic(tmp_path, case, requant_lanes, mode):
    """With ``products_in_logic`` the unit has no ``*`` left (so no DSP block), and the
    layer still equals the golden model."""
    node, value_range, shape, pe = case_node(case, tmp_path)
    xs = images(value_range, shape, np.random.default_rng(9))
    dut = DepthwiseConv2DLayer(node, shape, pe=pe, requant_lanes=requant_lanes,
                               products_in_logic=True)
    got = run_layer(dut, xs, mode, seed=3)
    np.testing.assert_array_equal(got, golden.depthwise_conv_2d(node, xs))
    rtlil = convert(DepthwiseUnit(node, pe=pe, products_in_logic=True))
    assert "$mul" not in rtlil and "$mul" in convert(DepthwiseUnit(node, pe=pe))


UINT8_CNN = TEST_MODELS / "cnn_uint8_legacy.tflite"


def uint8_depthwise(hw):
    """The legacy uint8 CNN's DEPTHWISE_CONV_2D (3x3 SAME, 8 channels) and its hardware
    form (9-bit weights ``w - zw``, int8 stream), both cropped to ``hw``."""
    graph = load(UINT8_CNN)
    index = next(i for i, n in enumerate(graph.nodes) if isinstance(n, ir.DepthwiseConv2D))
    form = hardware_form(graph)
    return cropped(graph.nodes[index], hw), cropped(form.nodes[index], hw)


@pytest.mark.parametrize("platform", [None, DSP_PLATFORM, "logic"],
                         ids=["fabric", "hook", "logic"])
@pytest.mark.parametrize("mode", STALL_MODES)
def test_layer_with_nine_bit_weights(platform, mode):
    """A legacy uint8 layer's hardware form, products in the fabric, through the
    platform's product hook and in logic: the int8 outputs are the golden model's uint8
    ones (on the uint8 node and the uint8 images) less 128."""
    node, hw_node = uint8_depthwise((4, 5))
    assert hw_node.weight_bits == 9 and np.abs(hw_node.weights).max() > 128
    shape = (4, 5, 8)
    xs = images((-128, 127), shape, np.random.default_rng(5))
    in_logic = platform == "logic"
    dut = DepthwiseConv2DLayer(hw_node, shape, pe=4, requant_lanes=2,
                               products_in_logic=in_logic)
    top = None if platform is None or in_logic else Fragment.get(dut, platform)
    got = run_layer(dut, xs, mode, seed=6, top=top)
    reference = golden.depthwise_conv_2d(node, (xs.astype(np.int16) + 128).astype(np.uint8))
    np.testing.assert_array_equal(got.astype(np.int16), reference.astype(np.int16) - 128)
    assert len(np.unique(reference)) > 3  # not all clamped
