"""Lowering: integer parameters, folded zero points, accumulator widths, clear errors."""

from fractions import Fraction

import numpy as np
import pytest

from conftest import ERROR_MODELS, INT8_TEST_MODELS, TEST_MODELS, ZOO_MODELS, model_id
from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.lower import (
    FLOWS,
    FoldInputOffset,
    RangeAnalysis,
    Uint8AsInt8,
    hardware_form,
    import_model,
    lower,
)
from tfl2rtl.tflite_reader import read_model

ALL_INT8 = ZOO_MODELS + INT8_TEST_MODELS
WEIGHTED = (ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D)
#: Writer-made models of the other integer modes, by mode.
MODE_MODELS = {"uint8_legacy.tflite": "uint8-legacy", "ops_uint8_legacy.tflite": "uint8-legacy",
               "ops_int16x8.tflite": "int16x8", "int16x8.tflite": "int16x8"}


def test_default_flow_is_explicit():
    assert [type(p) for p in FLOWS["default"].passes] == [FoldInputOffset, RangeAnalysis]


@pytest.mark.parametrize("path", ALL_INT8, ids=model_id)
def test_lowers_every_op(path):
    model = read_model(path)
    graph = lower(model)
    assert len(graph.nodes) == len(model.operators)
    for node in graph.nodes:
        assert graph.tensors[node.output].tflite_index == model.operators[
            node.tflite_op_index].outputs[0]
        if isinstance(node, WEIGHTED):
            op = model.operators[node.tflite_op_index]
            inp, w, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
            r = node.requant
            assert r.multiplier.size in (1, node.bias.size)
            # PopulateConvolutionQuantizationParams: the file's float32 scales, in double
            reals = np.float64(inp.scale) * w.scales.astype(np.float64) / np.float64(out.scale)
            np.testing.assert_array_equal(r.real_scale,
                                          np.broadcast_to(reals, r.real_scale.shape))
            for real, m, s in zip(r.real_scale, r.multiplier, r.shift, strict=True):
                assert_q31(float(real), int(m), int(s))
            assert node.act_min <= node.act_max


def assert_q31(real: float, multiplier: int, shift: int):
    """``(multiplier, shift)`` is ``real`` as TFLite's ``QuantizeMultiplier`` defines it:
    ``multiplier * 2**(shift - 31)`` within half a unit of the multiplier's last bit, the
    multiplier in ``[2**30, 2**31)``; ``(0, 0)`` for reals below ``2**-32``.  Exact
    (rationals), so it does not repeat the float steps of the implementation."""
    if multiplier == 0:
        assert shift == 0 and real < 2.0**-32, (real, multiplier, shift)
        return
    assert (1 << 30) <= multiplier < (1 << 31), (real, multiplier, shift)
    error = abs(Fraction(multiplier) * Fraction(2) ** (shift - 31) - Fraction(real))
    assert error <= Fraction(2) ** (shift - 32), (real, multiplier, shift)


@pytest.mark.parametrize("path", ALL_INT8, ids=model_id)
def test_folded_bias_is_exact_and_acc_bits_suffice(path):
    graph = lower(read_model(path))
    rng = np.random.default_rng(0)
    for node in graph.nodes:
        if not isinstance(node, WEIGHTED):
            continue
        t = graph.tensors[node.input]
        lo, hi = t.value_range
        shape = (2,) + t.shape[1:]
        x = rng.integers(lo, hi + 1, size=shape)
        if isinstance(node, ir.FullyConnected):
            # inputs that drive every output channel to its extremes
            w = node.weights
            x = np.stack([np.where(w[0] > 0, hi, lo), np.where(w[0] > 0, lo, hi)])
        reference = golden.accumulate(node, x)
        folded = golden.accumulate(node, x, folded=True)
        np.testing.assert_array_equal(reference, folded)
        limit = 1 << (node.acc_bits - 1)
        assert -limit <= reference.min() and reference.max() < limit


@pytest.mark.parametrize("name,words", sorted(ERROR_MODELS.items()))
def test_non_integer_models_get_one_line_with_the_fix(name, words):
    with pytest.raises(Tfl2RtlError) as info:
        lower(read_model(TEST_MODELS / name))
    message = str(info.value)
    assert words in message and "representative_dataset" in message
    assert "TFLITE_BUILTINS_INT8" in message and "\n" not in message


def test_unsupported_op_is_named_with_its_position(zoo):
    model = read_model(zoo / "tflite_micro" / "hello_world_int8.tflite")
    model.operators[1].name = "MUL"
    with pytest.raises(Tfl2RtlError, match=r"operator 1 \(MUL\) is not supported"):
        import_model(model)


def test_out_of_order_graph_is_rejected(zoo):
    model = read_model(zoo / "tflite_micro" / "hello_world_int8.tflite")
    model.operators.reverse()
    with pytest.raises(Tfl2RtlError, match="before any operator writes it"):
        import_model(model)


def test_activation_clamps_follow_float32_quantization(zoo):
    graph = lower(read_model(zoo / "tflite_micro" / "person_detect.tflite"))
    relu6 = [n for n in graph.nodes if isinstance(n, ir.Conv2D)][0]
    out = graph.tensors[relu6.output]
    six = np.float32(6.0) / np.float32(out.scale)
    assert relu6.act_max == min(127, out.zero_point + int(np.floor(six + 0.5)))
    assert relu6.act_min == max(-128, out.zero_point)


@pytest.mark.parametrize("name", sorted(MODE_MODELS))
def test_legacy_uint8_and_16x8_lower_with_their_own_dtypes(name):
    """uint8 weights keep their zero point (``filter_offset``), 16x8 layers accumulate in
    int64 with int64 biases; the folded form stays exact and ``acc_bits`` covers it."""
    model = read_model(TEST_MODELS / name)
    graph = lower(model)
    assert graph.quantization == MODE_MODELS[name]
    assert graph.mode.startswith(MODE_MODELS[name])
    rng = np.random.default_rng(1)
    for node in graph.nodes:
        if not isinstance(node, WEIGHTED):
            continue
        w = model.tensors[model.operators[node.tflite_op_index].inputs[1]]
        assert node.filter_offset == -w.zero_point
        np.testing.assert_array_equal(node.weight_scales, w.scales)
        if graph.quantization == "uint8-legacy":
            assert w.dtype == "uint8" and node.accumulator == "int32"
        else:
            assert node.filter_offset == 0 and node.accumulator == "int64"
            assert graph.tensors[node.input].dtype == "int16"
        t = graph.tensors[node.input]
        lo, hi = t.value_range
        x = rng.integers(lo, hi + 1, size=(2,) + t.shape[1:])
        reference = golden.accumulate(node, x)
        np.testing.assert_array_equal(reference, golden.accumulate(node, x, folded=True))
        limit = 1 << (node.acc_bits - 1)
        assert -limit <= reference.min() and reference.max() < limit


def test_16x8_refuses_an_int16_tensor_with_a_zero_point(tmp_path):
    import sys

    sys.path.insert(0, str(TEST_MODELS.parent))
    from tflite_writer import GraphWriter

    g = GraphWriter()
    x = g.tensor((1, 4), "int16", 0.01, 3, name="input")
    y = g.tensor((1, 4), "int16", 0.01, 0)
    g.op("RESHAPE", [x, g.const(np.array([1, 4], np.int32))], [y], new_shape=[1, 4])
    path = tmp_path / "zp.tflite"
    path.write_bytes(g.finish([x], [y]))
    with pytest.raises(Tfl2RtlError, match=r"operator 0 \(RESHAPE\): int16 tensor 'input' "
                                           r"has zero point 3; TFLite's 16x8 kernels need "
                                           r"zero point 0"):
        lower(read_model(path))


UINT8_HARDWARE_MODELS = ["uint8_legacy.tflite", "mlp_uint8_legacy.tflite",
                         "cnn_uint8_legacy.tflite"]


@pytest.mark.parametrize("name", UINT8_HARDWARE_MODELS)
def test_uint8_hardware_form_is_the_uint8_graph_less_128(name):
    """The flow ``uint8-hardware`` (:class:`Uint8AsInt8`): the int8 graph whose every
    tensor is the legacy uint8 graph's less 128 under the same profile (LiteRT's
    reference kernels), with the weights' zero point in 9-bit weights and filter offset 0;
    the model's graph is left as it was, and an int8 graph is its own hardware form."""
    graph = lower(read_model(TEST_MODELS / name))
    weights = [n.weights.copy() for n in graph.nodes if hasattr(n, "filter_offset")]
    form = hardware_form(graph)
    assert form.quantization == "int8" and graph.quantization == "uint8-legacy"
    assert [type(p) for p in FLOWS["uint8-hardware"].passes] == [
        Uint8AsInt8, FoldInputOffset, RangeAnalysis]
    weighted = [(n, h) for n, h in zip(graph.nodes, form.nodes, strict=True)
                if hasattr(n, "filter_offset")]
    for (node, hw), w in zip(weighted, weights, strict=True):
        np.testing.assert_array_equal(node.weights, w)
        np.testing.assert_array_equal(hw.weights, w + node.filter_offset)
        assert hw.filter_offset == 0 and hw.weight_bits == 9
        assert hw.input_offset == node.input_offset + 128
        assert hw.acc_bits <= 32
    assert any(np.abs(hw.weights).max() > 128 for _, hw in weighted)
    rng = np.random.default_rng(len(name))
    t_in = graph.tensors[graph.inputs[0]]
    for _ in range(3):
        x = rng.integers(0, 256, t_in.shape).astype(np.uint8)
        want = golden.run(graph, [x], profile="litert-ref").tensors
        got = golden.run(form, [(x.astype(np.int16) - 128).astype(np.int8)],
                         profile="litert-ref").tensors
        for tensor, value in want.items():
            assert value.dtype == np.uint8 and got[tensor].dtype == np.int8
            np.testing.assert_array_equal(got[tensor].astype(np.int16),
                                          value.astype(np.int16) - 128)
    int8 = lower(read_model(INT8_TEST_MODELS[0]))
    assert hardware_form(int8) is int8


def test_uint8_hardware_form_refuses_average_pooling():
    graph = lower(read_model(TEST_MODELS / "ops_uint8_legacy.tflite"))
    with pytest.raises(Tfl2RtlError, match=r"^node \d+ \(AVERAGE_POOL_2D\) of a legacy uint8 "
                                           r"model has no int8 hardware form \(its rounding "
                                           r"of halves differs in int8\)$"):
        hardware_form(graph)
