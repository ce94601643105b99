"""The ``litert`` and ``litert-ref`` golden profiles against LiteRT (``ai-edge-litert``),
on every tensor of every model, plus the measured facts the profiles rest on.

``litert`` follows ``Interpreter(model_path=...)`` with its default resolver: the XNNPACK
delegate and LiteRT's optimized builtin kernels.  ``litert-ref`` follows the
``BUILTIN_REF`` resolver.  LiteRT's intermediates are read from a copy of the model in
which every tensor is a graph output (:mod:`tfl2rtl.litert_model`); the tests below also
check that this copy runs the same arithmetic as the original file.
"""

import numpy as np
import pytest

from conftest import INT8_TEST_MODELS, TEST_MODELS, ZOO_MODELS, model_id
from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.fixedpoint import rounding_divide_by_pot, saturating_rounding_doubling_high_mul
from tfl2rtl.kernels import libm, xnnpack
from tfl2rtl.litert_model import expose_all_tensors
from tfl2rtl.litert_params import BUILTIN, XNNPACK, prepare_litert
from tfl2rtl.lower import lower
from tfl2rtl.profile_diff import diff_graph
from tfl2rtl.reference import LiteRtInterpreter, reference_interpreter
from tfl2rtl.tflite_reader import read_model
from tfl2rtl.verify import random_inputs, verify_graph
from tflite_writer import GraphWriter, single_op_model

MODELS = ZOO_MODELS + INT8_TEST_MODELS
SAMPLES = 100
REF_SAMPLES = 20


def _graph(path):
    return lower(read_model(path))


def _non_constant(graph):
    return sum(1 for t in graph.tensors.values() if t.data is None)


@pytest.mark.parametrize("path", MODELS, ids=model_id)
def test_bit_exact_with_litert_on_every_tensor(path):
    graph = _graph(path)
    report = verify_graph(graph, random_inputs(graph, SAMPLES, seed=2), profile="litert")
    assert (report.profile, report.samples) == ("litert", SAMPLES)
    assert report.tensors_compared == SAMPLES * _non_constant(graph)
    assert report.mismatches == []


@pytest.mark.parametrize("path", MODELS, ids=model_id)
def test_bit_exact_with_litert_reference_kernels(path):
    graph = _graph(path)
    report = verify_graph(graph, random_inputs(graph, REF_SAMPLES, seed=3),
                          profile="litert-ref")
    assert (report.profile, report.samples) == ("litert-ref", REF_SAMPLES)
    assert report.tensors_compared == REF_SAMPLES * _non_constant(graph)
    assert report.mismatches == []


def test_real_digits_through_litert():
    """Real inputs, float at the edges: XNNPACK's QUANTIZE rounds half to even."""
    graph = _graph(TEST_MODELS / "conv_float_io.tflite")
    digits = np.load(TEST_MODELS / "digits_samples.npy").astype(np.float32)
    sets = [[d.reshape(graph.tensors[graph.inputs[0]].shape)] for d in digits]
    for profile in ("litert", "litert-ref"):
        assert verify_graph(graph, sets, profile=profile).mismatches == []


@pytest.mark.parametrize("path", MODELS, ids=model_id)
def test_the_original_file_computes_the_same(path):
    """Exposing every tensor changes neither the partitioning nor the arithmetic: the
    unmodified file in a default ``Interpreter`` (default threads) gives the golden
    outputs, and the delegate makes as many partitions."""
    from ai_edge_litert.interpreter import Interpreter

    graph = _graph(path)
    data = path.read_bytes()
    exposed = expose_all_tensors(data)
    if exposed.repaired:  # person_detect: LiteRT refuses the file itself
        with pytest.raises(ValueError, match="quantized_dimension"):
            Interpreter(model_content=data)
        data = _repaired_only(data, exposed.repaired)
    original = Interpreter(model_content=data)
    original.allocate_tensors()
    everything = Interpreter(model_content=exposed.content)
    everything.allocate_tensors()
    assert _partitions(original) == _partitions(everything)
    prepared = golden.PROFILES["litert"].prepare(graph)
    inputs = [d["index"] for d in original.get_input_details()]
    outputs = [d["index"] for d in original.get_output_details()]
    for x in random_inputs(graph, 10, seed=4):
        for index, value in zip(inputs, x, strict=True):
            original.set_tensor(index, value)
        original.invoke()
        want = golden.run(graph, x, profile=prepared).outputs
        for index, expected in zip(outputs, want, strict=True):
            np.testing.assert_array_equal(original.get_tensor(index).reshape(expected.shape),
                                          expected)


def _partitions(interpreter) -> int:
    return sum(d["op_name"] == "DELEGATE" for d in interpreter._get_ops_details())


def _repaired_only(data: bytes, tensors) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for i in tensors:
        model.subgraphs[0].tensors[i].quantization.quantizedDimension = 0
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("path", MODELS, ids=model_id)
def test_the_profile_knows_which_kernel_runs_each_node(path):
    """XNNPACK takes every node the profile gives to it and no other: AVERAGE_POOL_2D,
    SOFTMAX, HARD_SWISH and the int8<->uint8 QUANTIZE run in LiteRT's builtin kernels."""
    graph = _graph(path)
    params = prepare_litert(graph)
    ours = sorted(node.tflite_op_index for node, p in params.items() if p.runtime == XNNPACK)
    assert ours == sorted(LiteRtInterpreter(str(path)).delegated)
    builtin = {node.tflite_op for node, p in params.items() if p.runtime == BUILTIN}
    assert builtin <= {"AVERAGE_POOL_2D", "SOFTMAX", "HARD_SWISH", "QUANTIZE"}


def test_person_detect_is_compared_through_a_repaired_copy(zoo):
    path = zoo / "tflite_micro" / "person_detect.tflite"
    graph = _graph(path)
    report = verify_graph(graph, random_inputs(graph, 2), profile="litert")
    assert report.ok and len(report.notes) == 1 and "quantized_dimension" in report.notes[0]
    assert verify_graph(graph, random_inputs(graph, 2)).notes == []


def test_the_check_notices_the_other_runtime(zoo):
    """LiteRT really is the reference: TFLM's golden tensors differ from it."""
    path = zoo / "mlperf_tiny" / "kws_ref_model.tflite"
    graph = _graph(path)
    x = random_inputs(graph, 1, seed=5)[0]
    theirs = LiteRtInterpreter(str(path)).invoke(x, [graph.tensors[graph.nodes[1].output]
                                                     .tflite_index])
    node = graph.nodes[1]
    want = next(iter(theirs.values())).reshape(graph.tensors[node.output].shape)
    ours_litert = golden.run(graph, x, profile="litert").tensors[node.output]
    ours_tflm = golden.run(graph, x).tensors[node.output]
    np.testing.assert_array_equal(ours_litert, want)
    assert np.count_nonzero(ours_tflm != want) > 0


def test_results_name_their_profile_and_unknown_profiles_fail(zoo):
    path = zoo / "tflite_micro" / "hello_world_int8.tflite"
    graph = _graph(path)
    x = [np.array([[10]], np.int8)]
    for name in ("tflm", "litert", "litert-ref"):
        assert golden.run(graph, x, profile=name).profile == name
    for call in (lambda: golden.run(graph, x, profile="xnnpack"),
                 lambda: verify_graph(graph, [x], profile="xnnpack"),
                 lambda: diff_graph(graph, [x], profiles=("tflm", "xnnpack"))):
        with pytest.raises(Tfl2RtlError, match="unknown profile 'xnnpack'; choose one of: "
                                               "tflm, litert, litert-ref"):
            call()
    with pytest.raises(Tfl2RtlError, match="no reference interpreter for profile 'x'"):
        reference_interpreter(str(path), "x")


def test_an_unprepared_litert_profile_says_so(zoo):
    graph = _graph(zoo / "tflite_micro" / "hello_world_int8.tflite")
    with pytest.raises(Tfl2RtlError, match="needs its model parameters"):
        golden.fully_connected(graph.nodes[0], np.zeros((1, 1), np.int8),
                               golden.PROFILES["litert"])


def test_readme_worked_example(zoo):
    """The README's example, recomputed: hello_world's second FULLY_CONNECTED, output
    channel 11, for the input q = -124 (x = 0.0979)."""
    graph = _graph(zoo / "tflite_micro" / "hello_world_int8.tflite")
    x = [np.array([[-124]], np.int8)]
    tflm = golden.run(graph, x, profile="tflm")
    litert = golden.run(graph, x, profile="litert")
    node = graph.nodes[1]
    acc = int(golden.accumulate(node, tflm.tensors[node.input])[0, 11])
    assert acc == 4972
    assert not node.requant.per_channel  # one weight scale for the layer
    multiplier, shift = int(node.requant.multiplier[0]), int(node.requant.shift[0])
    assert (multiplier, shift) == (1561796795, -6)
    high = int(saturating_rounding_doubling_high_mul(acc, multiplier))
    assert high == 3616 and int(rounding_divide_by_pot(high, 6)) == 57  # 56.5 -> 57
    assert f"{acc * node.requant.real_scale[0]:.5f}" == "56.49966"
    scale = golden.PROFILES["litert"].prepare(graph).params(node).scale[0]
    assert scale == np.float32(0.011363567)
    assert f"{np.float32(acc) * scale:.6f}" == "56.499653"
    assert node.output_offset == -128
    assert tflm.tensors[node.output][0, 11] == 57 - 128 == -71
    assert litert.tensors[node.output][0, 11] == 56 - 128 == -72


def _tanh_model(tmp_path, scale, zero_point):
    path = tmp_path / "tanh.tflite"
    path.write_bytes(single_op_model("TANH", (1, 256), (scale, zero_point), (1 / 128, 0)))
    return path


@pytest.mark.parametrize("profile, scale, zero_point", [
    ("litert", 0.018713049590587616, -40), ("litert", 0.13566960394382477, 31),
    ("litert-ref", 0.015463483519852161, 64)])
def test_tanh_tables_need_the_c_library(tmp_path, monkeypatch, profile, scale, zero_point):
    """glibc's ``tanhf`` is not correctly rounded, and for these input scales that moves
    two table entries: LiteRT agrees with the C function, not with the exact value."""
    graph = _graph(_tanh_model(tmp_path, scale, zero_point))
    every_value = [[np.arange(-128, 128, dtype=np.int8).reshape(1, 256)]]
    assert verify_graph(graph, every_value, profile=profile).mismatches == []
    monkeypatch.setattr(libm, "tanhf", lambda x: np.tanh(np.asarray(x, np.float64)).astype(
        np.float32))  # correctly rounded
    mismatches = verify_graph(graph, every_value, profile=profile).mismatches
    assert [m["elements"] for m in mismatches] == [2]


@pytest.mark.parametrize("profile", ["litert", "litert-ref"])
def test_without_the_c_library_the_litert_profiles_refuse(tmp_path, monkeypatch, profile):
    """No loadable C math library: a table that needs it fails in one line instead of
    being computed with other functions (which would not be bit-exact)."""
    graph = _graph(_tanh_model(tmp_path, 0.018713049590587616, -40))
    monkeypatch.setattr(libm, "_LIBM", None)
    monkeypatch.setattr(libm, "_LOAD_ERROR", "libm.so.6: cannot open shared object file")
    with pytest.raises(Tfl2RtlError) as info:
        golden.run(graph, [np.zeros((1, 256), np.int8)], profile=profile)
    assert str(info.value) == (
        "the litert profiles compute tanhf with the C math library, as LiteRT does, and it "
        "cannot be loaded (libm.so.6: cannot open shared object file): without it they are "
        "not bit-exact (the tflm profile does not need it)")
    assert golden.run(graph, [np.zeros((1, 256), np.int8)]).profile == "tflm"


def test_leaky_relu_outside_xnnpack_range_runs_in_litert(tmp_path):
    """alpha * input_scale / output_scale below 1/256: the delegate refuses it and
    LiteRT's reference kernel (float32 scale ratios) runs instead."""
    path = tmp_path / "lrelu.tflite"
    path.write_bytes(single_op_model("LEAKY_RELU", (1, 256), (0.0397, 3), (0.1064, -7),
                                     alpha=0.01))
    graph = _graph(path)
    node = graph.nodes[0]
    assert prepare_litert(graph)[node].runtime == BUILTIN
    assert LiteRtInterpreter(str(path)).delegated == []
    every_value = [[np.arange(-128, 128, dtype=np.int8).reshape(1, 256)]]
    assert verify_graph(graph, every_value, profile="litert").mismatches == []


def test_add_that_xnnpack_refuses_is_refused(tmp_path):
    g = GraphWriter()
    a = g.tensor((1, 4), "int8", 0.001, 0)
    b = g.tensor((1, 4), "int8", 0.5, 0)
    y = g.add(a, b, (2.0, 0))  # 0.001 / 2 is below XNNPACK's 1/1024
    path = tmp_path / "add.tflite"
    path.write_bytes(g.finish([a, b], [y]))
    graph = _graph(path)
    with pytest.raises(Tfl2RtlError, match=r"does not model node 0 \(ADD\).*1/1024"):
        golden.run(graph, [np.zeros((1, 4), np.int8)] * 2, profile="litert")
    assert LiteRtInterpreter(str(path)).delegated == []


def test_xnnpack_arithmetic_by_hand():
    """The primitives on values worked out by hand."""
    # half to even where TFLite rounds half away from zero
    assert list(xnnpack.fp32_requantize(np.array([5, 7, -5, -7]), np.float32(0.5))) == [
        2, 4, -2, -4]
    # fused RELU6 bound: 6 / 0.05 + 3 = 123 exactly; lrintf
    assert xnnpack.activation_range("RELU6", 0.05, 3) == (3, 123)
    assert xnnpack.activation_range("NONE", 0.05, 3) == (-128, 127)
    # ADD: ratios 0.5 and 0.25 -> shift 21, multipliers 2**20 and 2**19
    p = xnnpack.add_params(0.5, 1, 0.25, -2, 1.0, 5)
    assert (p.a_multiplier, p.b_multiplier, p.shift) == (1 << 20, 1 << 19, 21)
    # (x1 - 1) * 0.5 + (x2 + 2) * 0.25 = 3 * 0.5 + 2 * 0.25 = 2, + 5
    assert int(xnnpack.add_qs8(np.array(4), np.array(0), p)) == 7
    # LEAKY_RELU multipliers are Q8: 256 * 0.5 and 256 * 0.5 * 0.25
    lrelu = xnnpack.leaky_relu_params(1.0, 0, 2.0, 0, 0.25)
    assert (lrelu.positive_multiplier, lrelu.negative_multiplier) == (128, 32)
    assert list(xnnpack.leaky_relu_qs8(np.array([-8, -4, 3]), lrelu)) == [-1, 0, 2]
    assert xnnpack.qs8_quantize(2.5, 1.0, 0) == 2  # lrintf: half to even


def test_mean_is_a_float32_conversion():
    p = xnnpack.mean_params(0.5, -3, 0.25, 7, 4)
    assert p.scale == np.float32(0.5)  # (0.5 / 0.25) * (1 / 4)
    # sum of four raw values 1: (4 - 4 * -3) * 0.5 + 7 = 15
    assert int(xnnpack.mean_qs8(np.array(4), p)) == 15


def test_every_ir_node_type_of_the_models_is_covered():
    """The measured models exercise every op the profile models directly."""
    seen = set()
    for path in MODELS:
        seen |= {type(n) for n in _graph(path).nodes}
    assert seen >= {ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D, ir.MaxPool2D,
                    ir.AveragePool2D, ir.Add, ir.Mean, ir.Concatenation, ir.Pad, ir.Reshape,
                    ir.Softmax, ir.Requantize, ir.Quantize, ir.Dequantize, ir.Lut}



# --------------------------------------------------------------------------------------
# Random one-layer models: scales, zero points, shapes and fused activations drawn at
# random, every tensor compared with LiteRT (the zoo above fixes one set of each).
# --------------------------------------------------------------------------------------

ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]
ELEMENTWISE = ["LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH", "RELU", "RELU6", "ABS", "ELU"]
RANDOM_OPS = ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
              "AVERAGE_POOL_2D", "ADD", "MEAN", "SOFTMAX", "QUANTIZE", *ELEMENTWISE]
RANDOM_MODELS = 15


def _random_layer(kind: str, rng) -> tuple[bytes, tuple | None]:
    """A one-layer model; the shape to fill with every int8 value, if any."""

    def scale(lo=-10.0, hi=2.0):
        return float(np.float32(2.0 ** rng.uniform(lo, hi)))

    def zp():
        return int(rng.integers(-128, 128))

    def act():
        return str(rng.choice(ACTIVATIONS))

    g = GraphWriter()
    if kind in ELEMENTWISE:
        s_in, zp_in = scale(-8, 0), zp()
        x = g.tensor((1, 256), "int8", s_in, zp_in)
        same = rng.random() < 0.25 and kind not in ("HARD_SWISH", "LEAKY_RELU")
        quant = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}.get(
            kind, (s_in, zp_in) if same else (s_in * float(2 ** rng.uniform(-2, 3)), zp()))
        options = {"alpha": float(rng.choice([0.01, 0.1, 0.2, rng.uniform(0.01, 0.9)]))} \
            if kind == "LEAKY_RELU" else {}
        return g.finish([x], [g.elementwise(kind, x, quant, **options)]), (1, 256)
    if kind == "SOFTMAX":
        n = int(rng.integers(2, 300))
        x = g.tensor((1, n), "int8", scale(-8, 0), zp())
        return g.finish([x], [g.softmax(x, beta=float(rng.uniform(0.3, 3)))]), (1, n)
    if kind == "ADD":
        shape = (1, 4, 4, int(rng.integers(1, 9)))
        a, b = (g.tensor(shape, "int8", scale(), zp()) for _ in range(2))
        s_out = max(g.quant(a)[0], g.quant(b)[0]) * float(2 ** rng.uniform(-3, 3))
        return g.finish([a, b], [g.add(a, b, (s_out, zp()), activation=act())]), None
    if kind == "MEAN":
        x = g.tensor((1, *rng.integers(1, 9, 2), int(rng.integers(1, 6))), "int8", scale(),
                     zp())
        y = g.mean(x, [1, 2], (g.quant(x)[0] * float(2 ** rng.uniform(-2, 2)), zp()),
                   keep_dims=bool(rng.integers(2)))
        return g.finish([x], [y]), None
    if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        x = g.tensor((1, *rng.integers(3, 9, 2), int(rng.integers(1, 5))), "int8", scale(),
                     zp())
        # Filters and strides of 1 to 3: XNNPACK declines a stride larger than the filter
        # and leaves it to LiteRT's builtin kernel.
        y = g.pool_2d(kind, x, tuple(int(v) for v in rng.integers(1, 4, 2)),
                      stride=tuple(int(v) for v in rng.integers(1, 4, 2)), activation=act(),
                      padding=str(rng.choice(["SAME", "VALID"])))
        return g.finish([x], [y]), None
    if kind == "QUANTIZE":
        x = g.tensor((1, 64), "float32")
        return g.finish([x], [g.quantize(x, (scale(), zp()))]), None
    s_in = scale()
    if kind == "FULLY_CONNECTED":
        depth, out = int(rng.integers(1, 64)), int(rng.integers(1, 32))
        x = g.tensor((1, depth), "int8", s_in, zp())
        ws = np.float32(2.0 ** rng.uniform(-9, -5, out if rng.integers(2) else 1))
        s_out = s_in * float(ws.max()) * np.sqrt(depth) / 2 * float(2 ** rng.uniform(-1, 1))
        y = g.fully_connected(x, rng.integers(-127, 128, (out, depth)), ws,
                              rng.integers(-(1 << 20), 1 << 20, out), (s_out, zp()),
                              activation=act())
        return g.finish([x], [y]), None
    channels, k = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    x = g.tensor((1, *rng.integers(3, 9, 2), channels), "int8", s_in, zp())
    out = int(rng.integers(1, 8)) if kind == "CONV_2D" else channels * int(rng.integers(1, 3))
    ws = np.float32(2.0 ** rng.uniform(-9, -5, out))
    s_out = s_in * float(ws.max()) * k * np.sqrt(channels) / 2 * float(2 ** rng.uniform(-1, 1))
    common = dict(padding=str(rng.choice(["SAME", "VALID"])), activation=act(),
                  stride=(int(rng.integers(1, 3)),) * 2)
    if kind == "CONV_2D":
        y = g.conv_2d(x, rng.integers(-127, 128, (out, k, k, channels)), ws,
                      rng.integers(-5000, 5000, out), (s_out, zp()), **common)
    else:
        y = g.depthwise_conv_2d(x, rng.integers(-127, 128, (1, k, k, out)), ws,
                                rng.integers(-5000, 5000, out), (s_out, zp()),
                                depth_multiplier=out // channels, **common)
    return g.finish([x], [y]), None


def test_an_int8_max_pool_with_a_stride_beyond_its_filter_runs_in_the_builtin_kernel(
        tmp_path):
    """XNNPACK declines a MAX_POOL_2D whose stride exceeds its filter, in int8 as in
    uint8: LiteRT runs its builtin kernel, whose clamp is TFLite's (here a RELU6 bound
    XNNPACK would place one step away), and the litert profile says so."""
    g = GraphWriter()
    x = g.tensor((1, 6, 6, 3), "int8", 4.0, -27)
    y = g.pool_2d("MAX_POOL_2D", x, (1, 1), stride=(2, 2), activation="RELU6",
                  padding="VALID")
    path = tmp_path / "pool.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = _graph(path)
    assert prepare_litert(graph)[graph.nodes[0]].runtime == BUILTIN
    every = np.resize(np.arange(-128, 128), 108).astype(np.int8).reshape(1, 6, 6, 3)
    report = verify_graph(graph, [[every]] + random_inputs(graph, 2, seed=1),
                          profile="litert")
    assert report.mismatches == []


@pytest.mark.parametrize("profile", ["litert", "litert-ref"])
@pytest.mark.parametrize("kind", RANDOM_OPS)
def test_random_layers(tmp_path, kind, profile):
    rng = np.random.default_rng(RANDOM_OPS.index(kind) + 100 * (profile == "litert-ref"))
    path = tmp_path / "random.tflite"
    checked = 0
    for k in range(RANDOM_MODELS):
        data, fill = _random_layer(kind, rng)
        path.write_bytes(data)
        graph = _graph(path)
        sets = random_inputs(graph, 2, seed=k)
        if fill is not None:  # every int8 value, in order and shuffled
            every = np.resize(np.arange(-128, 128), int(np.prod(fill))).astype(np.int8)
            sets += [[every.reshape(fill)], [rng.permutation(every).reshape(fill)]]
        if kind == "ELU" and profile == "litert-ref":  # no such reference kernel
            with pytest.raises(Tfl2RtlError, match="no ELU kernel"):
                golden.run(graph, sets[0], profile=profile)
            with pytest.raises(Tfl2RtlError, match="Didn't find op for builtin opcode 'ELU'"):
                reference_interpreter(str(path), profile)
            checked += 1
            continue
        try:
            report = verify_graph(graph, sets, profile=profile)
        except Tfl2RtlError as exc:  # an ADD whose scales XNNPACK refuses
            assert kind == "ADD" and "1/1024" in str(exc)
            assert LiteRtInterpreter(str(path)).delegated == []
            continue
        assert report.mismatches == [], kind
        checked += 1
    assert checked >= RANDOM_MODELS - 2


def test_a_profile_prepared_for_another_graph_says_so(zoo):
    hello = _graph(zoo / "tflite_micro" / "hello_world_int8.tflite")
    other = _graph(zoo / "tflite_micro" / "hello_world_int8.tflite")
    prepared = golden.PROFILES["litert"].prepare(hello)
    with pytest.raises(Tfl2RtlError, match="prepared for another graph"):
        golden.run(other, [np.array([[1]], np.int8)], profile=prepared)


@pytest.mark.parametrize("name", ["cnn_float_io.tflite", "mlp_float_io.tflite"])
def test_float_edge_models_on_every_tensor(name):
    """The converter's default full-integer layout (float32 QUANTIZE in, DEQUANTIZE out),
    written by tests/models/make_writer_models.py: golden == TFLM, LiteRT and LiteRT's
    reference kernels on every tensor (float32 ones by bit pattern), on random inputs
    and on inputs exactly halfway between two quantization steps (where TFLM rounds away
    from zero and XNNPACK to even)."""
    graph = _graph(TEST_MODELS / name)
    quantize = graph.nodes[0]
    assert isinstance(quantize, ir.Quantize) and isinstance(graph.nodes[-1], ir.Dequantize)
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(7)
    ties = [[((rng.integers(-130, 130, shape) + 0.5) * np.float32(quantize.scale))
             .astype(np.float32)] for _ in range(10)]
    sets = random_inputs(graph, 40, seed=5) + ties
    for profile in ("tflm", "litert", "litert-ref"):
        report = verify_graph(graph, sets, profile=profile)
        assert report.tensors_compared == len(sets) * _non_constant(graph)
        assert report.mismatches == [], (profile, report.mismatches[:3])
    out = golden.run(graph, sets[0]).outputs[0]
    assert out.dtype == np.float32 and len(np.unique(out)) > 1


def test_pytorch_mobilenet_v2():
    """The TFLite Micro repository's pytorch_to_tflite MobileNet-V2 (an NCHW int8 input,
    TRANSPOSE first): golden == TFLM, LiteRT and LiteRT's reference kernels on every
    tensor, and its TRANSPOSE is a host edge (the hardware's port is NHWC)."""
    from tfl2rtl.edges import host_edges

    graph = _graph(TEST_MODELS / "pytorch_to_tflite" / "mobilenet_v2_quantized_1x3x224x224.tflite")
    ops = [node.op for node in graph.nodes]
    assert ops[:3] == ["TRANSPOSE", "PAD", "CONV_2D"] and len(ops) == 84
    edges = host_edges(graph)
    assert [i for i, _ in edges.before] == [0] and edges.transpose.perm == (0, 2, 3, 1)
    assert edges.hardware.tensors[edges.hardware.inputs[0]].shape == (1, 224, 224, 3)
    for profile, seed in (("tflm", 1), ("litert", 2), ("litert-ref", 3)):
        report = verify_graph(graph, random_inputs(graph, 1, seed=seed), profile=profile)
        assert report.tensors_compared == _non_constant(graph)
        assert report.mismatches == [], (profile, report.mismatches[:3])
