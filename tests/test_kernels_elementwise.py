"""The int8 elementwise tables against TensorFlow Lite Micro, and gemmlowp's logistic/tanh.

Most tests build a one-operator int8 model in memory (``tflite_writer.single_op_model``),
run it in the TFLM interpreter on every one of the 256 input values and compare with
:func:`lut_table`.  A second group runs the
committed ``activations_int8.tflite`` with all intermediate tensors preserved and checks
each activation's output against the table indexed by the op's actual input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tflite
from tflite_micro.python.tflite_micro import runtime

from conftest import TEST_MODELS
from tfl2rtl import fixedpoint as fp
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.kernels import elementwise as ew
from tflite_writer import single_op_model

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)

# --------------------------------------------------------------------------------------
# A one-operator model and the TFLM interpreter
# --------------------------------------------------------------------------------------


def tflm_interpreter(model: bytes, elements: int):
    return runtime.Interpreter.from_bytes(model, arena_size=4 * elements + (1 << 16))


def run_tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    """TFLM's output of a one-op model for the int8 input ``x``."""
    interpreter = tflm_interpreter(model, x.size)
    interpreter.set_input(x, 0)
    interpreter.invoke()
    return interpreter.get_output(0)


def all_values_input(rng, rows=4):
    """Every int8 value once per row: ascending, then shuffled rows."""
    shuffled = [rng.permutation(ALL_INT8) for _ in range(rows - 1)]
    return np.stack([ALL_INT8, *shuffled])


def assert_table_matches_tflm(op, input_quant, output_quant, rng, **options):
    """``lut_table`` equals TFLM on every int8 input; returns the elements compared."""
    x = all_values_input(rng)
    expected = run_tflm(single_op_model(op, x.shape, input_quant, output_quant, **options), x)
    table = ew.lut_table(op, *input_quant, *output_quant, **options)
    assert table.dtype == np.int8 and table.shape == (256,)
    np.testing.assert_array_equal(table[x.astype(np.int64) + 128], expected)
    return x.size


# --------------------------------------------------------------------------------------
# Every op against TFLM, over a spread of quantizations
# --------------------------------------------------------------------------------------

#: Input scales from tiny (everything within one step of zero) to huge (saturated).
SCALES = (1e-4, 0.003, 0.0117, 0.02, 0.05, 0.1, 0.37, 1.0, 3.3, 20.0)
ZERO_POINTS = (-128, -5, 0, 17, 127)


def quantizations(seed, count=12):
    """``count`` (input_quant, output_quant) pairs: the SCALES x ZERO_POINTS corners plus
    random log-uniform scales with the output scale within a factor 8 of the input's."""
    rng = np.random.default_rng(seed)
    pairs = []
    for scale, zero_point in zip(SCALES, ZERO_POINTS * 2, strict=True):
        pairs.append(((scale, zero_point), (scale, zero_point)))
    for _ in range(count):
        scale = float(np.exp(rng.uniform(math.log(1e-3), math.log(2.0))))
        out_scale = scale * float(np.exp(rng.uniform(-math.log(8), math.log(8))))
        pairs.append(
            ((scale, int(rng.integers(-128, 128))), (out_scale, int(rng.integers(-128, 128))))
        )
    return pairs


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("zero_point", ZERO_POINTS)
def test_logistic_matches_tflm(scale, zero_point):
    rng = np.random.default_rng(1)
    assert assert_table_matches_tflm("LOGISTIC", (scale, zero_point), (1 / 256, -128), rng) == 1024


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("zero_point", ZERO_POINTS)
def test_tanh_matches_tflm(scale, zero_point):
    rng = np.random.default_rng(2)
    assert assert_table_matches_tflm("TANH", (scale, zero_point), (1 / 128, 0), rng) == 1024


def test_logistic_and_tanh_ignore_the_output_scale():
    """TFLM assumes 1/256 (LOGISTIC) and 1/128 with zero point 0 (TANH) whatever the
    output tensor says; only LOGISTIC's zero point is checked."""
    rng = np.random.default_rng(3)
    assert_table_matches_tflm("LOGISTIC", (0.05, 3), (0.01, -128), rng)
    assert_table_matches_tflm("TANH", (0.05, 3), (0.02, 40), rng)
    np.testing.assert_array_equal(
        ew.lut_table("TANH", 0.05, 3, 0.02, 40), ew.lut_table("TANH", 0.05, 3, 1 / 128, 0)
    )


def test_logistic_and_tanh_with_zero_radius():
    """With input scale 20 the Q4.27 radius is 0: ``input <= -radius`` wins at zero."""
    assert ew.logistic_params(20.0, 0).input_range_radius == 0
    assert ew.lut_table("LOGISTIC", 20.0, 0, 1 / 256, -128)[128] == -128
    assert ew.lut_table("TANH", 20.0, 0, 1 / 128, 0)[128] == -128
    rng = np.random.default_rng(4)
    assert_table_matches_tflm("LOGISTIC", (20.0, 0), (1 / 256, -128), rng)
    assert_table_matches_tflm("TANH", (20.0, 0), (1 / 128, 0), rng)


@pytest.mark.parametrize("op", ["RELU", "RELU6", "ABS", "QUANTIZE", "ELU", "HARD_SWISH"])
@pytest.mark.parametrize("case", range(22))
def test_rescaling_ops_match_tflm(op, case):
    input_quant, output_quant = quantizations(seed=10)[case]
    rng = np.random.default_rng(case)
    assert assert_table_matches_tflm(op, input_quant, output_quant, rng) == 1024


@pytest.mark.parametrize("alpha", [0.01, 0.2, 0.3, 1.0, 1.7, -0.5, -2.5])
@pytest.mark.parametrize("case", range(0, 22, 3))
def test_leaky_relu_matches_tflm(alpha, case):
    input_quant, output_quant = quantizations(seed=20)[case]
    rng = np.random.default_rng(case)
    assert_table_matches_tflm("LEAKY_RELU", input_quant, output_quant, rng, alpha=alpha)


@pytest.mark.parametrize(
    "op, input_quant, output_quant, options",
    [
        ("RELU", (0.83, 41), (0.76, -60), {}),
        ("RELU", (0.611, 11), (0.564, 99), {}),
        ("ABS", (0.012, 121), (0.016, -78), {}),
        ("ABS", (0.825, -46), (0.264, 81), {}),
        ("LEAKY_RELU", (0.21, 30), (0.102, 13), {"alpha": -0.25}),
        ("LEAKY_RELU", (0.21, -71), (0.024, -38), {"alpha": -0.13}),
        ("LEAKY_RELU", (0.37, 17), (0.05, 100), {"alpha": -0.5}),
        ("HARD_SWISH", (0.127, -121), (0.986, -1), {}),
        ("HARD_SWISH", (0.127, -85), (0.435, 37), {}),
    ],
)
def test_scale_ratios_are_taken_in_double(op, input_quant, output_quant, options):
    """Quantizations whose table differs if the ratio of scales is first rounded to
    float32 (as older TFLM sources do): the pinned TFLM divides in double."""
    rng = np.random.default_rng(5)
    assert_table_matches_tflm(op, input_quant, output_quant, rng, **options)


@pytest.mark.parametrize(
    "input_quant, output_quant",
    [
        ((0.011766692623496056, 97), (0.005453248042613268, 37)),
        ((0.012662588618695736, 48), (0.0053513688035309315, -26)),
        ((0.04184531792998314, 110), (0.10274864733219147, -58)),
    ],
)
def test_elu_is_expf_minus_one_in_float32(input_quant, output_quant):
    """Quantizations where ``expm1`` (one rounding) and TFLM's ``expf(x) - 1.0f`` (two
    float32 roundings) give different entries."""
    x = ALL_INT8.astype(np.float64)
    real = np.float32(input_quant[0]) * (x - input_quant[1]).astype(np.float32)
    one_rounding = np.where(real < 0, np.expm1(np.minimum(real, 0)).astype(np.float32), real)
    rescaled = (one_rounding * (np.float32(1) / np.float32(output_quant[0]))).astype(np.float64)
    rounded = np.copysign(np.floor(np.abs(rescaled) + 0.5), rescaled)  # half away from 0
    expm1_table = np.clip(rounded + output_quant[1], -128, 127)
    assert np.any(ew.lut_table("ELU", *input_quant, *output_quant) != expm1_table)
    assert_table_matches_tflm("ELU", input_quant, output_quant, np.random.default_rng(9))


def test_relu6_clamps_on_the_input_scale():
    """TFLM's RELU6 clamps to [zero_point, q(6)] of the input and ignores the output
    quantization: a table equals the clamped input whatever the output scale."""
    rng = np.random.default_rng(6)
    for output_quant in [(0.1, 0), (0.05, -128), (1.0, 50)]:
        assert_table_matches_tflm("RELU6", (0.05, -20), output_quant, rng)
        table = ew.lut_table("RELU6", 0.05, -20, *output_quant)
        np.testing.assert_array_equal(table, np.clip(ALL_INT8, -20, -20 + 120))


def test_relu_clamps_at_the_output_zero_point():
    table = ew.lut_table("RELU", 0.1, 10, 0.05, -30)
    assert table.min() == -30 and table[0] == -30  # negative inputs clamp to real 0
    assert table[255] == 127  # large inputs saturate


def test_hard_swish_rejects_what_tflm_rejects():
    """``input_scale / (128 * output_scale) >= 1`` gives a positive exponent: TFLM's
    prepare fails and so does the table."""
    model = single_op_model("HARD_SWISH", (1, 256), (20.0, 0), (0.05, 0))
    with pytest.raises(RuntimeError):
        tflm_interpreter(model, 256)
    with pytest.raises(Tfl2RtlError, match="HARD_SWISH"):
        ew.lut_table("HARD_SWISH", 20.0, 0, 0.05, 0)


def test_logistic_needs_output_zero_point_minus_128():
    model = single_op_model("LOGISTIC", (1, 256), (0.1, 0), (1 / 256, 0))
    with pytest.raises(RuntimeError):
        tflm_interpreter(model, 256)
    with pytest.raises(Tfl2RtlError, match="LOGISTIC"):
        ew.lut_table("LOGISTIC", 0.1, 0, 1 / 256, 0)


def test_relu_n1_to_1_has_no_tflm_kernel():
    """A stand-alone RELU_N1_TO_1 does not run in TFLM, so there is no table to match."""
    model = single_op_model("RELU_N1_TO_1", (1, 256), (0.01, 0), (0.01, 0))
    with pytest.raises(RuntimeError):
        tflm_interpreter(model, 256)
    with pytest.raises(Tfl2RtlError, match="RELU_N1_TO_1"):
        ew.lut_table("RELU_N1_TO_1", 0.01, 0, 0.01, 0)


@pytest.mark.parametrize(
    "op, kwargs, words",
    [
        ("GELU", {}, "GELU"),
        ("CONV_2D", {}, "CONV_2D"),
        ("TANH", {"dtype": "uint8"}, "int8"),
        ("TANH", {"dtype": "int16"}, "int8"),
        ("TANH", {"alpha": 0.1}, "alpha"),
        ("LEAKY_RELU", {}, "alpha"),
    ],
)
def test_unsupported_requests_raise(op, kwargs, words):
    with pytest.raises(Tfl2RtlError, match=words) as info:
        ew.lut_table(op, 0.1, 0, 0.1, 0, **kwargs)
    assert "\n" not in str(info.value)
    assert info.value.args[0].startswith(op)


def test_op_names_are_case_insensitive():
    np.testing.assert_array_equal(
        ew.lut_table("tanh", 0.05, 0, 1 / 128, 0), ew.lut_table("TANH", 0.05, 0, 1 / 128, 0)
    )


# --------------------------------------------------------------------------------------
# The activations in a converted model
# --------------------------------------------------------------------------------------

ACTIVATIONS_MODEL = TEST_MODELS / "activations_int8.tflite"
_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def model_ops(path):
    """``(name, input tensor, output tensor, input quant, output quant, options)`` of each
    single-input operator of a .tflite file."""
    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        opcode = model.OperatorCodes(op.OpcodeIndex())
        name = _OP_NAMES[max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())]
        quant = []
        for index in (op.Inputs(0), op.Outputs(0)):
            q = graph.Tensors(index).Quantization()
            quant.append((float(q.Scale(0)), int(q.ZeroPoint(0))))
        options = {}
        table = op.BuiltinOptions()
        if name == "LEAKY_RELU":
            leaky = tflite.LeakyReluOptions()
            leaky.Init(table.Bytes, table.Pos)
            options["alpha"] = leaky.Alpha()
        elif name == "SOFTMAX":
            softmax = tflite.SoftmaxOptions()
            softmax.Init(table.Bytes, table.Pos)
            options["beta"] = softmax.Beta()
        ops.append((name, op.Inputs(0), op.Outputs(0), quant[0], quant[1], options))
    return ops


def random_images(rng, count, shape):
    """Uniform, sparse (mostly -128) and two-level int8 images, to spread the
    activations' inputs."""
    images = []
    for k in range(count):
        kind = k % 3
        if kind == 0:
            x = rng.integers(-128, 128, size=shape)
        elif kind == 1:
            x = np.where(rng.random(shape) < 0.15, rng.integers(-128, 128, size=shape), -128)
        else:
            x = np.where(rng.random(shape) < 0.5, 127, -128)
        images.append(x.astype(np.int8))
    return images


def run_preserving(path, images):
    """Every tensor of the model for each image, from TFLM with all tensors kept."""
    interpreter = runtime.Interpreter.from_file(
        str(path), intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
    )
    for image in images:
        interpreter.set_input(image, 0)
        interpreter.invoke()
        yield lambda index, it=interpreter: it.GetTensor(index, 0)["tensor_data"]


def test_activations_model_matches_tables():
    """Each elementwise activation's TFLM output equals its table at the TFLM input."""
    ops = [op for op in model_ops(ACTIVATIONS_MODEL) if op[0] in ew.SUPPORTED_OPS]
    assert {op[0] for op in ops} >= {"LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH"}
    tables = [ew.lut_table(name, *iq, *oq, **opts) for name, _, _, iq, oq, opts in ops]
    rng = np.random.default_rng(7)
    images = random_images(rng, 300, (1, 28, 28, 1))
    seen = [set() for _ in ops]
    compared = 0
    for tensor in run_preserving(ACTIVATIONS_MODEL, images):
        for k, (_, inp, out, _, _, _) in enumerate(ops):
            x = tensor(inp).astype(np.int64)
            np.testing.assert_array_equal(tables[k][x + 128], tensor(out))
            seen[k].update(np.unique(x).tolist())
            compared += x.size
    assert compared == 300 * sum(32 for _ in ops)
    for (name, *_), values in zip(ops, seen, strict=True):
        assert len(values) >= 128, f"{name} saw only {len(values)} input values"


# --------------------------------------------------------------------------------------
# gemmlowp's logistic and tanh
# --------------------------------------------------------------------------------------

Q4 = 1 << 27  # one in Q4.27


def test_fixedpoint_logistic_exact_properties():
    a = np.arange(-15 * Q4, 15 * Q4, 4099, dtype=np.int64)
    y = fp.logistic(a, 4)
    assert fp.logistic(0, 4) == 1 << 30  # exactly one half
    # logistic(-a) = 1 - logistic(a), with one = INT32_MAX, holds by construction.
    np.testing.assert_array_equal(y + fp.logistic(-a, 4), np.where(a == 0, 1 << 31, fp.INT32_MAX))
    assert np.all(np.diff(y) >= 0)  # monotonic
    assert y.min() >= 0 and y.max() <= fp.INT32_MAX


def test_fixedpoint_logistic_is_accurate():
    a = np.arange(-15 * Q4, 15 * Q4, 7919, dtype=np.int64)
    exact = 1 / (1 + np.exp(-a / Q4))
    error = np.abs(fp.logistic(a, 4) / 2**31 - exact)
    assert error.max() < 2**-22  # far below one int8 (or int16) output step


def test_fixedpoint_tanh_exact_properties():
    a = np.arange(-15 * Q4, 15 * Q4, 4099, dtype=np.int64)
    y = fp.tanh(a, 4)
    assert fp.tanh(0, 4) == 0
    np.testing.assert_array_equal(fp.tanh(-a, 4), -y)  # odd
    assert np.all(np.diff(y) >= 0)
    assert y.min() >= -fp.INT32_MAX and y.max() <= fp.INT32_MAX


def test_fixedpoint_tanh_is_accurate():
    a = np.arange(-15 * Q4, 15 * Q4, 7919, dtype=np.int64)
    error = np.abs(fp.tanh(a, 4) / 2**31 - np.tanh(a / Q4))
    assert error.max() < 2**-21


def test_logistic_and_tanh_tables_follow_the_functions():
    """Away from rounding boundaries the tables are the rounded real functions."""
    x = ALL_INT8.astype(np.int64)
    real = 0.05 * (x - 3)
    logistic = ew.lut_table("LOGISTIC", 0.05, 3, 1 / 256, -128).astype(np.int64)
    tanh = ew.lut_table("TANH", 0.05, 3, 1 / 128, 0).astype(np.int64)
    assert np.all(
        np.abs(logistic - np.clip(np.round(256 / (1 + np.exp(-real)) - 128), -128, 127)) <= 1
    )
    assert np.all(np.abs(tanh - np.clip(np.round(128 * np.tanh(real)), -128, 127)) <= 1)


# --------------------------------------------------------------------------------------
# HARD_SWISH's 16-bit helpers
# --------------------------------------------------------------------------------------


def _round_half_away(numerator: int, denominator: int) -> int:
    q, r = divmod(abs(numerator), denominator)
    q += 2 * r >= denominator
    return q if numerator >= 0 else -q


def test_int16_rounding_doubling_high_mul():
    rng = np.random.default_rng(8)
    a = np.concatenate([rng.integers(-32768, 32768, 2000), [-32768, -32768, 32767, 0]])
    b = np.concatenate([rng.integers(-32768, 32768, 2000), [-32768, 32767, 32767, -32768]])
    expected = [
        32767 if x == y == -32768 else _round_half_away(int(x) * int(y), 1 << 15)
        for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_array_equal(fp.saturating_rounding_doubling_high_mul_int16(a, b), expected)


def test_int16_rounding_divide_by_pot():
    x = np.arange(-32768, 32768, 7)
    for exponent in range(16):
        expected = [_round_half_away(int(v), 1 << exponent) for v in x]
        np.testing.assert_array_equal(fp.rounding_divide_by_pot_int16(x, exponent), expected)
    # From 16 on gemmlowp's int16 mask wraps to -1: +1 for x >= 0, -1 below.
    np.testing.assert_array_equal(fp.rounding_divide_by_pot_int16(x, 17), np.where(x >= 0, 1, -1))


def test_down_scale_int32_to_int16_multiplier():
    assert fp.down_scale_int32_to_int16_multiplier(1 << 30) == 1 << 14
    assert fp.down_scale_int32_to_int16_multiplier((1 << 30) + (1 << 15)) == (1 << 14) + 1
    assert fp.down_scale_int32_to_int16_multiplier((1 << 30) + (1 << 15) - 1) == 1 << 14
    assert fp.down_scale_int32_to_int16_multiplier(fp.INT32_MAX) == 32767


def test_hard_swish_table_follows_the_function():
    x = ALL_INT8.astype(np.int64)
    real = 0.05 * (x + 10)
    hard_swish = real * np.clip(real + 3, 0, 6) / 6
    expected = np.clip(np.round(hard_swish / 0.03) - 100, -128, 127)
    table = ew.lut_table("HARD_SWISH", 0.05, -10, 0.03, -100).astype(np.int64)
    assert np.all(np.abs(table - expected) <= 1)
