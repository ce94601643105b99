# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""ADD, table lookups, CONCATENATION and PAD in hardware, against the golden model."""

import dataclasses
import math

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO, long_case
from streams import DSP_PLATFORM, STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.elementwise import (
    ADD_PRODUCTS_HOOK,
    AddLayer,
    ConcatLayer,
    LeakyReluInt16Layer,
    LutLayer,
    PadLayer,
    RequantizeLayer,
)
from tflite_writer import GraphWriter

RESNET = ZOO / "mlperf_tiny" / "pretrainedResnet_quant.tflite"
ACTIVATIONS = TEST_MODELS / "activations_int8.tflite"


class _AddProducts:
    """A stand-in platform with :data:`~tfl2rtl.hw.elementwise.ADD_PRODUCTS_HOOK` (the
    iCE40's): ADD scales its inputs by multipliers, in the fabric or, with
    ``registered``, through the DSP product hook too (as :data:`streams.DSP_PLATFORM`)."""

    def __init__(self, registered: bool):
        setattr(self, ADD_PRODUCTS_HOOK, True)
        if registered:
            self.get_registered_product = DSP_PLATFORM.get_registered_product


#: The forms of an int8 ADD's input scaling: tables (no platform; with the DSP hook, which
#: then reaches only the output requantizer), and multipliers in the fabric or through
#: the DSP product hook.
ADD_FORMS = {"tables": None, "tables_dsp_hook": DSP_PLATFORM,
             "multipliers": _AddProducts(False), "multipliers_dsp_hook": _AddProducts(True)}


def nodes_of(graph, kind):
    return [node for node in graph.nodes if isinstance(node, kind)]


def written(tmp_path, build):
    """Write the model ``build(g)`` makes (it returns ``(inputs, outputs)``), load it and
    return the graph."""
    g = GraphWriter()
    inputs, outputs = build(g)
    path = tmp_path / "model.tflite"
    path.write_bytes(g.finish(inputs, outputs))
    return load(path)


def beats(tensors, lanes):
    """The beats of a list of tensors, back to back, in NHWC element order."""
    return np.concatenate([np.reshape(t, -1) for t in tensors]).reshape(-1, lanes).tolist()


def run(dut, inputs, out_elements, mode, seed=0, cycles=None, platform=None):
    """Stream ``inputs`` (``[(port, beats)]``, each port with its own random stalls) into
    ``dut`` (elaborated for ``platform``) and return the ``out_elements`` elements it
    sends on ``o``."""
    lanes = dut.lanes
    results = []
    producers = []
    for k, (port, payloads) in enumerate(inputs):
        timing = STALL_MODES[mode](seed + 100 * k)[0]

        async def producer(ctx, port=port, payloads=payloads, timing=timing):
            await put(ctx, port, payloads, timing)

        producers.append(producer)

    async def consumer(ctx):
        out_timing = STALL_MODES[mode](seed + 50)[1]
        for payload in await get(ctx, dut.o, out_elements // lanes, out_timing, cycles=cycles):
            results.extend(payload[lane] for lane in range(lanes))

    simulate(dut, *producers, consumer, platform=platform)
    return np.array(results, dtype=np.int64)


# --------------------------------------------------------------------------------------
# ADD
# --------------------------------------------------------------------------------------


def add_inputs(rng, shape, value_range, zero_point, count):
    """``count`` tensors: uniform over ``value_range``, the int8 extremes, and values
    within 1 of the zero point (where a large right shift rounds halves)."""
    lo, hi = value_range
    x = rng.integers(lo, hi, (count, *shape), endpoint=True)
    kind = rng.random(x.shape)
    x = np.where(kind < 0.2, rng.choice([-128, 127], x.shape), x)
    near = np.clip(zero_point + rng.integers(-1, 2, x.shape), -128, 127)
    return np.where(kind > 0.6, near, x).astype(np.int8)


def check_add(graph, node, shape, lanes, mode, seed, count=2, platform=None,
              serial_requantizer=False):
    rng = np.random.default_rng(seed)
    xs = [add_inputs(rng, shape, graph.tensors[name].value_range,
                     graph.tensors[name].zero_point, count) for name in node.inputs]
    # Every pair of extremes, and each extreme against the other input's zero point.
    pairs = [(-128, -128), (-128, 127), (127, -128), (127, 127)]
    for k, (a, b) in enumerate(pairs):
        xs[0].reshape(-1)[k], xs[1].reshape(-1)[k] = a, b
    dut = AddLayer(node, shape, lanes=lanes, serial_requantizer=serial_requantizer)
    got = run(dut, [(dut.a, beats(xs[0], lanes)), (dut.b, beats(xs[1], lanes))],
              xs[0].size, mode, seed, platform=platform)
    expected = golden.add(node, xs[0], xs[1])
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    return expected


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("form", ["tables", "multipliers"])
@pytest.mark.parametrize("index, lanes, serial", [(0, 1, False), (1, 4, True), (2, 16, False)])
def test_resnet_adds(index, lanes, serial, form, mode):
    graph = load(RESNET)
    nodes = nodes_of(graph, ir.Add)
    assert len(nodes) == 3
    node = nodes[index]
    channels = graph.tensors[node.output].shape[-1]
    expected = check_add(graph, node, (1, 2, 3, channels), lanes, mode, seed=index,
                         platform=ADD_FORMS[form], serial_requantizer=serial)
    assert len(np.unique(expected)) > 20  # not all clamped


def _add_model(s1, z1, s2, z2, out_quant, activation="NONE", shape=(1, 2, 3, 4)):
    def build(g):
        x1 = g.tensor(shape, "int8", s1, z1)
        x2 = g.tensor(shape, "int8", s2, z2)
        return [x1, x2], [g.add(x1, x2, out_quant, activation=activation)]
    return build


#: Written ADDs: (input 1 scale and zero point, log2(s2 / s1), input 2 zero point, output
#: scale relative to the larger input scale and zero point, activation, the shift of the
#: smaller input's multiplier that this gives).  Where that shift is large the smaller
#: input only shows (as a few output steps) where the other one is at its zero point,
#: which add_inputs makes common.
WRITTEN_ADDS = {
    "equal scales": (0.05, 3, 0.0, -7, (1.7, 5), "NONE", 0),
    "shift -6": (0.01, 127, 5.5, -128, (2**-6, 0), "RELU_N1_TO_1", -6),
    "shift -13": (0.02, -128, -12.7, -128, (2**-10, 0), "RELU", -13),
    "shift -20": (0.1, 100, -20.0, -3, (2**-16, -20), "NONE", -20),
    "shift -31": (0.1, 0, -30.3, 0, (2**-15, 1), "NONE", -31),
    "zero multiplier": (0.3, -40, -34.0, 7, (1.3, -100), "RELU6", 0),
}


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("form", ["tables", "multipliers"])
@pytest.mark.parametrize("case", WRITTEN_ADDS)
def test_written_adds(case, form, mode, tmp_path):
    s1, z1, log2_ratio, z2, (relative, z_out), activation, shift = WRITTEN_ADDS[case]
    s2 = float(np.float32(s1 * 2.0**log2_ratio))
    out_scale = float(np.float32(max(s1, s2) * relative))
    graph = written(tmp_path, _add_model(s1, z1, s2, z2, (out_scale, z_out), activation))
    (node,) = nodes_of(graph, ir.Add)
    # The scales reach the corner the case is named after.
    smaller = node.input2_requant if s2 < s1 else node.input1_requant
    assert int(smaller.shift[0]) == shift
    assert (int(smaller.multiplier[0]) == 0) == (case == "zero multiplier")
    expected = check_add(graph, node, (1, 2, 3, 4), 2, mode, seed=len(case), count=4,
                         platform=ADD_FORMS[form])
    assert np.any((expected > node.act_min) & (expected < node.act_max))  # not all clamped


@pytest.mark.parametrize("left_shift, multiplier, shift", [
    (0, 1 << 30, 0),  # q / 2: every odd q is a half, rounded up
    (0, 1 << 30, -1),  # then / 2 again, negative halves away from zero
    (0, (1 << 30) + 1, 0),  # just off the halves: the multiplier's last bit decides
    (0, (1 << 30) - 1, -1),
    (0, 1_518_500_250, -2),
    (0, -1_518_500_250, -1),  # a negative multiplier (the IR allows one)
    (0, -(1 << 31), 0),
    (0, (1 << 31) - 1, -3),
    (2, 1_073_741_823, 1),  # a positive shift joins the left shift
    (8, 1_300_000_001, -9),
    (20, 1_518_500_250, -20),
    (20, 1_400_000_000, -24),
    (20, 1_518_500_250, -27),
])
@pytest.mark.parametrize("form", ["tables", "multipliers", "multipliers_dsp_hook"])
def test_add_input_rescaling_seen_directly(left_shift, multiplier, shift, form):
    # With an identity output requantization (multiplier 2**30, shift 1: out = raw sum),
    # a zero second multiplier and a small left shift, the output is the first input's
    # rescaled value itself, so every rounding of it shows.  TFLite's ADD (left shift 20,
    # input shifts <= 0) scales the inputs up by 2**19 or more and its output rounds
    # these roundings away; from input shift -28 on they are 0 for every int8 input.
    graph = load(RESNET)
    node = dataclasses.replace(
        nodes_of(graph, ir.Add)[0], left_shift=left_shift, input1_offset=-5,
        input1_requant=ir.Requant(np.array([multiplier]), np.array([shift]), np.zeros(1)),
        input2_requant=ir.Requant(np.array([0]), np.array([0]), np.zeros(1)),
        output_requant=ir.Requant(np.array([1 << 30]), np.array([1]), np.zeros(1)),
        output_offset=0)
    rng = np.random.default_rng(left_shift - shift)
    shape = (1, 1, 16, 16)
    xs = [rng.permutation(np.arange(-128, 128)).astype(np.int8).reshape(shape),
          rng.integers(-128, 128, shape).astype(np.int8)]
    dut = AddLayer(node, shape, lanes=4)
    got = run(dut, [(dut.a, beats(xs[0], 4)), (dut.b, beats(xs[1], 4))], 256, "stalls",
              seed=left_shift, platform=ADD_FORMS[form])
    expected = golden.add(node, *xs)
    np.testing.assert_array_equal(got.reshape(shape), expected)
    assert len(np.unique(expected)) >= 3


@pytest.mark.parametrize("serial", [False, True], ids=["parallel", "serial"])
@pytest.mark.parametrize("form", ADD_FORMS)
def test_add_latency_and_throughput(form, serial):
    graph = load(RESNET)
    node = nodes_of(graph, ir.Add)[1]
    shape, lanes = (1, 1, 3, 32), 8
    dut = AddLayer(node, shape, lanes=lanes, serial_requantizer=serial)
    interval = dut._requantizer.interval
    assert interval == (5 if serial else 1)  # ResNet's output multiplier: 4 products
    rng = np.random.default_rng(0)
    xs = rng.integers(-128, 128, (2, 3, *shape)).astype(np.int8)
    cycles = []
    got = run(dut, [(dut.a, beats(xs[0], lanes)), (dut.b, beats(xs[1], lanes))],
              xs[0].size, "streaming", cycles=cycles, platform=ADD_FORMS[form])
    np.testing.assert_array_equal(got, golden.add(node, xs[0], xs[1]).reshape(-1))
    # The first result leaves latency edges after its beats entered (a serial
    # requantizer's first window may start up to an interval later); then one a beat.
    assert 1 + dut.latency <= cycles[0] < 1 + dut.latency + interval
    assert np.all(np.diff(cycles) == interval)
    assert len(cycles) * interval == 3 * dut.cycles_per_vector


def test_an_add_table_is_the_golden_scaling_of_every_int8():
    """Each input's table (:class:`~tfl2rtl.hw.elementwise._TableScaler`) holds, for every
    int8 ``q``, the golden model's scaled input: its ADD of ``q`` with an identity output
    requantization (``2**30``, shift 1) and the other input's multiplier 0, before the
    clamp."""
    from tfl2rtl.hw.elementwise import _ScaledInput, _TableScaler

    identity = ir.Requant(np.array([1 << 30]), np.array([1]), np.zeros(1))
    nothing = ir.Requant(np.array([0]), np.array([0]), np.zeros(1))
    q = np.arange(-128, 128).astype(np.int8)
    for node in nodes_of(load(RESNET), ir.Add):
        for which, other in ((1, 2), (2, 1)):
            table = _TableScaler(_ScaledInput(node, which)).table()
            probe = dataclasses.replace(node, output_requant=identity, output_offset=0,
                                        **{f"input{other}_requant": nothing})
            pair = (q, np.zeros_like(q))[::1 if which == 1 else -1]
            expected = golden.PROFILES["tflm"].add(probe, *pair)
            np.testing.assert_array_equal(np.roll(table, -128), expected)
            assert len(np.unique(table)) == 256  # the left shift of 20 keeps them apart


def test_add_rejects(tmp_path):
    graph = load(RESNET)
    node = nodes_of(graph, ir.Add)[0]
    with pytest.raises(Tfl2RtlError, match=r"^ADD of shapes \(1, 2, 2, 16\) and \(1, 1, 1, 16\)"):
        AddLayer(node, [(1, 2, 2, 16), (1, 1, 1, 16)])
    with pytest.raises(Tfl2RtlError, match=r"^ADD: 3 lanes do not divide the 16 channels$"):
        AddLayer(node, (1, 2, 2, 16), lanes=3)
    per_channel = dataclasses.replace(node.input1_requant, multiplier=np.array([1 << 30] * 2),
                                      shift=np.array([-1, -1]))
    with pytest.raises(Tfl2RtlError, match=r"^ADD input1 multiplier has 2 multipliers"):
        AddLayer(dataclasses.replace(node, input1_requant=per_channel), (1, 1, 1, 16))
    wide = dataclasses.replace(node.input2_requant, shift=np.array([4]))
    with pytest.raises(Tfl2RtlError, match=r"^ADD input2: \(q -4\) << 24 overflows int32"):
        AddLayer(dataclasses.replace(node, input2_requant=wide), (1, 1, 1, 16))
    loud = dataclasses.replace(node.output_requant, multiplier=np.array([(1 << 31) - 1]),
                               shift=np.array([12]))
    with pytest.raises(Tfl2RtlError, match=r"^ADD output requantization plus offset"):
        AddLayer(dataclasses.replace(node, output_requant=loud), (1, 1, 1, 16))
    # A broadcasting ADD from a written model.
    def build(g):
        x1 = g.tensor((1, 2, 2, 4), "int8", 0.1, 0)
        x2 = g.tensor((1, 1, 1, 4), "int8", 0.1, 0)
        return [x1, x2], [g.add(x1, x2, (0.2, 0))]

    written_graph = written(tmp_path, build)
    (broadcasting,) = nodes_of(written_graph, ir.Add)
    shapes = [written_graph.tensors[name].shape for name in broadcasting.inputs]
    with pytest.raises(Tfl2RtlError, match="no broadcasting"):
        AddLayer(broadcasting, shapes)


# --------------------------------------------------------------------------------------
# LUT
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("index, lanes", [(0, 1), (1, 4), (2, 32), (3, 8)])
def test_activation_luts(index, lanes, mode):
    graph = load(ACTIVATIONS)
    nodes = nodes_of(graph, ir.Lut)
    assert [n.function for n in nodes] == ["LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH"]
    node = nodes[index]
    shape = graph.tensors[node.input].shape
    # Every int8 value, shuffled, as 256 / 32 = 8 tensors.
    x = np.random.default_rng(index).permutation(np.arange(-128, 128)).astype(np.int8)
    x = x.reshape(-1, *shape)
    dut = LutLayer(node, shape, lanes=lanes)
    got = run(dut, [(dut.i, beats(x, lanes))], x.size, mode, seed=index)
    expected = golden.lut(node, x)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    assert len(np.unique(expected)) > 50


def test_lut_latency_and_rejects():
    graph = load(ACTIVATIONS)
    node = nodes_of(graph, ir.Lut)[0]
    dut = LutLayer(node, (1, 32), lanes=4)
    x = np.arange(-128, 128).astype(np.int8)
    cycles = []
    got = run(dut, [(dut.i, beats(x, 4))], x.size, "streaming", cycles=cycles)
    np.testing.assert_array_equal(got, golden.lut(node, x))
    assert cycles[0] == 1 + dut.latency
    assert np.all(np.diff(cycles) == 1)
    assert len(cycles) == 8 * dut.cycles_per_vector
    with pytest.raises(Tfl2RtlError, match=r"^LOGISTIC: 3 lanes do not divide the 32 channels$"):
        LutLayer(node, (1, 32), lanes=3)
    short = dataclasses.replace(node, table=node.table[:255])
    with pytest.raises(Tfl2RtlError, match=r"^LOGISTIC table of 255 entries"):
        LutLayer(short, (1, 32))


# --------------------------------------------------------------------------------------
# CONCATENATION
# --------------------------------------------------------------------------------------


def concat_graph(tmp_path, shapes, axis):
    def build(g):
        xs = [g.tensor(shape, "int8", 0.05, -3) for shape in shapes]
        return xs, [g.concatenation(xs, axis)]
    graph = written(tmp_path, build)
    (node,) = nodes_of(graph, ir.Concatenation)
    return node, [graph.tensors[name].shape for name in node.inputs]


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shapes, axis, lanes", [
    ([(1, 2, 2, 4), (1, 2, 2, 8), (1, 2, 2, 4)], 3, 4),
    ([(1, 2, 3, 2), (1, 2, 3, 1)], 3, 1),
    ([(1, 1, 2, 3), (1, 2, 2, 3)], 1, 3),
    ([(1, 2, 1, 2), (1, 2, 3, 2), (1, 2, 2, 2)], 2, 2),
    ([(1, 2, 2, 2), (2, 2, 2, 2)], 0, 4),
    ([(1, 3, 2, 4)], 3, 2),
])
def test_concatenation(shapes, axis, lanes, mode, tmp_path):
    node, in_shapes = concat_graph(tmp_path, shapes, axis)
    assert in_shapes == shapes and node.axis == axis
    rng = np.random.default_rng(len(shapes) + axis)
    count = 3
    xs = [rng.integers(-128, 128, (count, *shape)).astype(np.int8) for shape in shapes]
    dut = ConcatLayer(node, shapes, lanes=lanes)
    got = run(dut, [(dut.i[k], beats(x, lanes)) for k, x in enumerate(xs)],
              sum(x.size for x in xs), mode, seed=lanes + axis)
    expected = [golden.concatenation(node, *(x[n] for x in xs)) for n in range(count)]
    np.testing.assert_array_equal(got, np.reshape(expected, -1))


def test_concatenation_throughput_and_rejects(tmp_path):
    shapes = [(1, 2, 2, 4), (1, 2, 2, 8)]
    node, _ = concat_graph(tmp_path, shapes, 3)
    dut = ConcatLayer(node, shapes, lanes=4)
    xs = [np.arange(16, dtype=np.int8).reshape(shapes[0]),
          -np.arange(1, 33, dtype=np.int8).reshape(shapes[1])]
    cycles = []
    got = run(dut, [(dut.i[k], beats(x, 4)) for k, x in enumerate(xs)], 48, "streaming",
              cycles=cycles)
    np.testing.assert_array_equal(got, golden.concatenation(node, *xs).reshape(-1))
    assert cycles[0] == 1 + dut.latency
    assert np.all(np.diff(cycles) == 1)
    assert len(cycles) == dut.cycles_per_vector
    with pytest.raises(Tfl2RtlError, match=r"^CONCATENATION along axis 3: 8 lanes do not "
                                           r"divide the 4 elements of \(1, 2, 2, 4\)"):
        ConcatLayer(node, shapes, lanes=8)
    with pytest.raises(Tfl2RtlError, match=r"^CONCATENATION of .* must be equal except"):
        ConcatLayer(node, [(1, 2, 2, 4), (1, 2, 3, 8)])


# --------------------------------------------------------------------------------------
# PAD
# --------------------------------------------------------------------------------------


def pad_graph(tmp_path, shape, paddings, constant=None):
    def build(g):
        x = g.tensor(shape, "int8", 0.1, 9)
        return [x], [g.pad(x, paddings, constant=constant)]
    graph = written(tmp_path, build)
    (node,) = nodes_of(graph, ir.Pad)
    return node


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shape, paddings, constant, lanes", [
    ((1, 3, 2, 4), [[0, 0], [1, 2], [0, 3], [0, 0]], None, 4),
    ((1, 2, 2, 2), [[0, 0], [1, 1], [1, 1], [0, 0]], -128, 1),
    ((1, 2, 3, 4), [[0, 0], [0, 1], [2, 0], [2, 4]], 77, 2),
    ((1, 1, 2, 2), [[1, 1], [0, 0], [3, 1], [0, 2]], None, 2),
    ((1, 2, 2, 3), [[0, 0], [0, 0], [0, 0], [0, 0]], None, 3),
])
def test_pad(shape, paddings, constant, lanes, mode, tmp_path):
    node = pad_graph(tmp_path, shape, paddings, constant)
    assert node.pad_value == (9 if constant is None else constant)
    rng = np.random.default_rng(lanes)
    count = 3
    x = rng.integers(-128, 128, (count, *shape)).astype(np.int8)
    dut = PadLayer(node, shape, lanes=lanes)
    out_size = count * math.prod(dut.out_shape)
    got = run(dut, [(dut.i, beats(x, lanes))], out_size, mode, seed=lanes)
    expected = [golden.pad(node, x[n]) for n in range(count)]
    np.testing.assert_array_equal(got, np.reshape(expected, -1))


def test_pad_throughput_and_rejects(tmp_path):
    shape = (1, 2, 2, 2)
    node = pad_graph(tmp_path, shape, [[0, 0], [1, 1], [0, 2], [2, 0]])
    dut = PadLayer(node, shape, lanes=2)
    x = np.arange(8, dtype=np.int8).reshape(shape)
    cycles = []
    got = run(dut, [(dut.i, beats(x, 2))], math.prod(dut.out_shape), "streaming",
              cycles=cycles)
    np.testing.assert_array_equal(got, golden.pad(node, x).reshape(-1))
    assert cycles[0] == 1 + dut.latency
    assert np.all(np.diff(cycles) == 1)
    assert len(cycles) == dut.cycles_per_vector
    with pytest.raises(Tfl2RtlError, match=r"^PAD: 4 lanes do not divide the 2 channels$"):
        PadLayer(node, shape, lanes=4)
    odd = dataclasses.replace(node, paddings=((0, 0), (1, 1), (0, 2), (1, 0)))
    with pytest.raises(Tfl2RtlError, match=r"^PAD: 2 lanes do not divide the channel paddings"):
        PadLayer(odd, shape, lanes=2)


# --------------------------------------------------------------------------------------
# QUANTIZE between integers (RequantizeLayer)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("platform", [None, DSP_PLATFORM], ids=["fabric", "dsp_hook"])
@pytest.mark.parametrize("act_bits, ratio, zero_points", [
    (8, 0.37, (-5, 11)), (8, 3.1, (100, -128)),  # int8 -> int8, a left shift
    (16, 0.397, (0, 0)), (16, 5.5, (0, 0)), (16, 1 / 3000, (0, 0)),  # int16 -> int16
])
def test_requantize(act_bits, ratio, zero_points, platform, mode):
    """Every value of the type (int8), or both ends and random ones (int16), against
    golden.requantize (TFLite's reference_ops::Requantize), clamped at both ends."""
    from tfl2rtl.fixedpoint import quantize_multiplier

    multiplier, shift = quantize_multiplier(ratio)
    node = ir.Requantize(inputs=("x",), outputs=("y",), input_zero_point=zero_points[0],
                         output_zero_point=zero_points[1], flip_sign=False,
                         requant=ir.Requant(multiplier=np.array([multiplier]),
                                            shift=np.array([shift]),
                                            real_scale=np.array([ratio])))
    dtype = np.int8 if act_bits == 8 else np.int16
    info = np.iinfo(dtype)
    if act_bits == 8:
        x = np.arange(info.min, info.max + 1)
    else:
        x = np.concatenate([[info.min, info.max, 0, -1, 1],
                            np.random.default_rng(7).integers(info.min, info.max, 251)])
    x = x.astype(dtype)
    lanes = 2
    dut = RequantizeLayer(node, (len(x),), lanes=lanes, act_bits=act_bits)
    got = run(dut, [(dut.i, beats([x], lanes))], len(x), mode, platform=platform)
    expected = golden.requantize(node, x, dtype)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 20


def test_requantize_rejects_a_sign_flip():
    node = ir.Requantize(inputs=("x",), outputs=("y",), input_zero_point=0,
                         output_zero_point=0, flip_sign=True,
                         requant=ir.Requant(multiplier=np.array([1 << 30]),
                                            shift=np.array([1]), real_scale=np.array([1.0])))
    with pytest.raises(Tfl2RtlError, match="moves no data through a stage of its own"):
        RequantizeLayer(node, (4,))


# --------------------------------------------------------------------------------------
# A 16x8 LEAKY_RELU (LeakyReluInt16Layer)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, ratio, input_zero_point", [
    long_case(0.01, 1.0, 0), long_case(0.3, 0.37, 0), long_case(0.9, 2.5, 0), (0.2, 1.3, 100)])
def test_int16_leaky_relu_on_every_input(alpha, ratio, input_zero_point):
    """Every int16 input, four lanes, against the golden table (TFLM's
    QuantizeLeakyRelu): in the suite an output scale above the input's with the zero
    point 100, in the long runs three more, one of them below (20-26 s each)."""
    from tfl2rtl.kernels.elementwise import leaky_relu_int8, leaky_relu_params

    params = leaky_relu_params(1 / 4096, input_zero_point, ratio / 4096, 0, alpha)
    x = np.arange(-32768, 32768)
    node = ir.Lut(inputs=("x",), outputs=("y",), function="LEAKY_RELU",
                  table=leaky_relu_int8(x, params, dtype="int16"), params=params)
    lanes = 4
    dut = LeakyReluInt16Layer(node, (len(x),), lanes=lanes)
    got = run(dut, [(dut.i, beats([x], lanes))], len(x), "stalls", seed=3)
    np.testing.assert_array_equal(got, golden.lut(node, x.astype(np.int16)))
    assert np.count_nonzero(got < 0) > 1000  # the alpha side is exercised


def test_int16_leaky_relu_refuses_a_negative_alpha():
    from tfl2rtl.kernels.elementwise import leaky_relu_params

    params = leaky_relu_params(1 / 4096, 0, 1 / 4096, 0, -0.5)
    node = ir.Lut(inputs=("x",), outputs=("y",), function="LEAKY_RELU",
                  table=np.zeros(65536, np.int16), params=params)
    with pytest.raises(Tfl2RtlError, match="negative alpha"):
        LeakyReluInt16Layer(node, (4,))
