"""int8 SOFTMAX against TensorFlow Lite Micro, and the gemmlowp pieces it is built from.

The softmax of real models is compared on the SOFTMAX op's own input and output, read
from TFLM with every intermediate tensor preserved.  Because those inputs are whatever
the model's last layer produces, a second group runs one-operator SOFTMAX models (built
in memory with ``tflite_writer.single_op_model``) over a sweep of input
scales, betas, row lengths and input patterns.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import tflite
from test_kernels_elementwise import (
    ACTIVATIONS_MODEL,
    model_ops,
    random_images,
    run_preserving,
    run_tflm,
)

from conftest import ZOO_MODELS, model_id
from tfl2rtl import fixedpoint as fp
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.kernels.softmax import preprocess_softmax_scaling, softmax_int8, softmax_params
from tflite_writer import single_op_model

# --------------------------------------------------------------------------------------
# Real models
# --------------------------------------------------------------------------------------

SOFTMAX_MODELS = [p for p in ZOO_MODELS if any(op[0] == "SOFTMAX" for op in model_ops(p))]
if ACTIVATIONS_MODEL.exists():
    SOFTMAX_MODELS.append(ACTIVATIONS_MODEL)


def _input_shape(path):
    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    return tuple(int(d) for d in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy())


def test_zoo_has_softmax_models():
    names = {p.stem for p in SOFTMAX_MODELS}
    assert {
        "kws_ref_model",
        "pretrainedResnet_quant",
        "vww_96_int8",
        "person_detect",
        "micro_speech_quantized",
    } <= names


@pytest.mark.parametrize("path", SOFTMAX_MODELS, ids=model_id)
def test_softmax_of_real_models_matches_tflm(path):
    """200 random inputs per model: softmax_int8 of TFLM's SOFTMAX input is TFLM's
    SOFTMAX output."""
    ops = [op for op in model_ops(path) if op[0] == "SOFTMAX"]
    params = [softmax_params(opts["beta"], iq[0]) for _, _, _, iq, _, opts in ops]
    for _, _, _, _, output_quant, _ in ops:
        assert output_quant == (1 / 256, -128)
    rng = np.random.default_rng(zlib.crc32(path.stem.encode()))
    images = random_images(rng, 200, _input_shape(path))
    compared = 0
    for tensor in run_preserving(path, images):
        for (_, inp, out, _, _, _), p in zip(ops, params, strict=True):
            x = tensor(inp)
            np.testing.assert_array_equal(softmax_int8(x, *p), tensor(out))
            compared += x.size
    assert compared >= 200 * 2 * len(ops)


# --------------------------------------------------------------------------------------
# One-operator sweeps
# --------------------------------------------------------------------------------------

#: (input_scale, beta): the real-model range, tiny (large diff_min, few steps per unit),
#: huge (every non-maximal input vanishes) and the capped multiplier 2**31 - 1.
SCALE_BETA = [
    (0.0146, 1.0),
    (0.0917, 1.0),
    (0.1447, 1.0),
    (0.2010, 1.0),
    (0.05, 0.5),
    (0.05, 2.0),
    (0.003, 1.0),
    (1e-4, 1.0),
    (1.0, 1.0),
    (4.0, 1.0),
    (20.0, 1.0),
    (64.0, 1.0),
    (0.3, 0.25),
]


def softmax_inputs(rng, rows, depth):
    """Rows of several kinds: uniform, near the maximum (differences around diff_min),
    all equal, a single peak over -128, and two-valued."""
    kinds = [
        lambda: rng.integers(-128, 128, depth),
        lambda: 127 - rng.integers(0, 40, depth),
        lambda: np.full(depth, rng.integers(-128, 128)),
        lambda: np.where(np.arange(depth) == rng.integers(depth), rng.integers(-127, 128), -128),
        lambda: rng.choice([int(rng.integers(-128, 128)), int(rng.integers(-128, 128))], depth),
        lambda: np.clip(rng.normal(0, rng.uniform(1, 60), depth).round(), -128, 127),
    ]
    return np.stack([kinds[r % len(kinds)]() for r in range(rows)]).astype(np.int8)


@pytest.mark.parametrize("depth", [1, 2, 3, 10, 64, 255, 400])
@pytest.mark.parametrize("scale, beta", SCALE_BETA)
def test_softmax_sweep_matches_tflm(scale, beta, depth):
    rng = np.random.default_rng(depth * 1000 + int(scale * 1000))
    rows = max(6, 3000 // depth)
    x = softmax_inputs(rng, rows, depth)
    model = single_op_model("SOFTMAX", x.shape, (scale, 7), (1 / 256, -128), beta=beta)
    expected = run_tflm(model, x)
    np.testing.assert_array_equal(softmax_int8(x, *softmax_params(beta, scale)), expected)


def test_softmax_every_difference_matches_tflm():
    """Rows ``[127, 127 - d]`` for every difference d = 0 .. 255, at several scales."""
    d = np.arange(256)
    x = np.stack([np.full(256, 127), 127 - d], axis=1).astype(np.int8)
    for scale in (0.01, 0.0625, 0.1, 0.17, 0.5):
        expected = run_tflm(single_op_model("SOFTMAX", x.shape, (scale, 0), (1 / 256, -128)), x)
        np.testing.assert_array_equal(softmax_int8(x, *softmax_params(1.0, scale)), expected)


def test_softmax_vectorises_over_leading_axes():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (3, 4, 5, 10)).astype(np.int8)
    params = softmax_params(1.0, 0.1)
    expected = np.stack([softmax_int8(row, *params) for row in x.reshape(-1, 10)])
    np.testing.assert_array_equal(softmax_int8(x, *params), expected.reshape(x.shape))
    expected_tflm = run_tflm(single_op_model("SOFTMAX", x.shape, (0.1, 0), (1 / 256, -128)), x)
    np.testing.assert_array_equal(softmax_int8(x, *params), expected_tflm)


def test_softmax_output_properties():
    """The maximum of a row is its largest output; a lone value is 127 (1 - 1/256)."""
    params = softmax_params(1.0, 0.1)
    assert softmax_int8(np.array([5], np.int8), *params).tolist() == [127]
    assert softmax_int8(np.array([-128, 127], np.int8), *params).tolist() == [-128, 127]
    equal = softmax_int8(np.full((1, 4), 9, np.int8), *params)
    np.testing.assert_array_equal(equal, np.full((1, 4), 64 - 128))  # 1/4 = 64/256


def test_softmax_rejects_rows_tflm_aborts_on():
    """The output shift is ``floor(log2(sum)) + 23``, which TFLM checks is at most 31: a
    sum of exponentials of 512 or more aborts TFLM (so it is not run here)."""
    params = softmax_params(1.0, 1e-4)
    out = softmax_int8(np.zeros((1, 511), np.int8), *params)  # sum 511: shift 31
    np.testing.assert_array_equal(out, np.full((1, 511), round(256 / 511) - 128))
    with pytest.raises(Tfl2RtlError, match="SOFTMAX"):
        softmax_int8(np.zeros((1, 512), np.int8), *params)


# --------------------------------------------------------------------------------------
# Prepare-time parameters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(-4, 20))
def test_softmax_params_for_power_of_two_scales(k):
    """For ``beta * scale = 2**-k`` the real multiplier ``2**(26 - k)`` is exactly
    ``2**30 * 2**(-31) * 2**(27 - k)``, and diff_min is ``-floor(31 * 2**26 / 2**(27-k))``."""
    multiplier, left_shift, diff_min = softmax_params(1.0, 2.0**-k)
    assert (multiplier, left_shift) == (1 << 30, 27 - k)
    assert diff_min == -math.floor(31 * 2**26 / 2 ** (27 - k))


def test_softmax_params_cap_the_multiplier():
    """Above ``beta * scale = 32`` the multiplier is capped at ``2**31 - 1``: only the
    row maximum survives (diff_min is 0)."""
    assert softmax_params(1.0, 64.0) == (fp.INT32_MAX, 31, 0)
    assert softmax_params(2.0, 32.0) == (fp.INT32_MAX, 31, 0)


def test_softmax_params_round_to_float32():
    """Beta and the scale are float32 in the model: a double that rounds to the same
    float32 gives the same parameters."""
    assert softmax_params(0.7, 0.1) == softmax_params(float(np.float32(0.7)), 0.1)
    # ... which differ from those of the double 0.7:
    scale32 = float(np.float32(0.1))
    assert softmax_params(0.7, 0.1)[:2] != preprocess_softmax_scaling(0.7, scale32, 5)
    assert softmax_params(1.0, 0.1) == softmax_params(1.0, scale32)
    assert softmax_params(1.0, 0.1) == softmax_params(1.0, np.nextafter(scale32, 1.0))
    assert softmax_params(1.0, 0.1) != softmax_params(1.0, float(np.nextafter(np.float32(0.1), 1)))


def test_softmax_params_reject_tiny_beta_times_scale():
    """``beta * scale * 2**26 <= 1`` fails TFLM's QuantizeMultiplierGreaterThanOne check.
    At ``2**-25``, just above it, the real multiplier ``beta * scale * 2**26`` is 2: q31
    ``2**30`` with left shift 2, and ``diff_min`` is ``-CalculateInputRadius(5, 2)`` =
    ``-floor(31 * 2**26 / 2**2)``; TFLM runs the model and agrees."""
    assert softmax_params(1.0, 2.0**-25) == (1 << 30, 2, -((31 << 26) >> 2))
    x = softmax_inputs(np.random.default_rng(4), 60, 10)
    model = single_op_model("SOFTMAX", x.shape, (2.0**-25, 7), (1 / 256, -128))
    np.testing.assert_array_equal(softmax_int8(x, *softmax_params(1.0, 2.0**-25)),
                                  run_tflm(model, x))
    with pytest.raises(Tfl2RtlError, match="SOFTMAX"):
        softmax_params(1.0, 2.0**-26)
    with pytest.raises(Tfl2RtlError, match="SOFTMAX"):
        softmax_params(1e-9, 0.1)


# --------------------------------------------------------------------------------------
# gemmlowp pieces
# --------------------------------------------------------------------------------------


def test_gemmlowp_constants_are_the_rounded_reals():
    """gemmlowp checks each fixed-point constant against its real value (FromDouble:
    round to nearest); so do we."""
    for exponent, raw in fp._EXP_BARREL:
        assert raw == round(math.exp(-(2.0**exponent)) * 2**31), exponent
    assert [e for e, _ in fp._EXP_BARREL] == list(range(-2, 5))
    assert fp._EXP_MINUS_ONE_EIGHTH == round(math.exp(-1 / 8) * 2**31)
    assert fp._ONE_THIRD == round(2**31 / 3)
    assert fp._48_OVER_17 == round(48 / 17 * 2**29)
    assert fp._NEG_32_OVER_17 == round(-32 / 17 * 2**29)


#: The Taylor polynomial of exp around -1/8 stops at x**4 with |x| <= 1/8: its remainder
#: is below (1/8)**5 / 5! ~ 2.5e-7, under 2**-21 with room for rounding in the products.
EXP_ERROR_BOUND = 2**-21


@pytest.mark.parametrize("integer_bits", range(0, 7))
def test_exp_on_negative_values_of_zero_is_one(integer_bits):
    assert fp.exp_on_negative_values(0, integer_bits) == fp.INT32_MAX


@pytest.mark.parametrize("integer_bits", [0, 1, 4, 5, 6])
def test_exp_on_negative_values_is_accurate_and_monotonic(integer_bits):
    lowest = -(1 << 31) if integer_bits < 6 else -(32 << (31 - integer_bits))
    a = np.unique(
        np.concatenate(
            [
                np.linspace(lowest, 0, 200_001).astype(np.int64),
                np.arange(-5000, 1),  # the smallest differences
            ]
        )
    )
    y = fp.exp_on_negative_values(a, integer_bits)
    real = np.exp(a / 2.0 ** (31 - integer_bits))
    assert np.abs(y / 2**31 - real).max() < EXP_ERROR_BOUND
    assert np.all(np.diff(y) >= 0)
    assert y.min() >= 0


def test_exp_on_negative_values_clamps_below_minus_32():
    """With more than 5 integer bits inputs below -32 give exactly 0; the barrel shifter
    alone (no factor for exp(-32)) would give exp(-1) for -33."""
    one = 1 << 25  # Q6.25
    for a in (-32 * one - 1, -33 * one, -40 * one, -63 * one):
        assert fp.exp_on_negative_values(a, 6) == 0
    assert fp.exp_on_negative_values(-1 * one, 6) > 0


def test_exp_barrel_shifter_powers_of_two():
    """``exp(-2**e)`` for the barrel-shifter exponents, in Q5.26: the Taylor part gives
    exp(-1/4), the constants the rest."""
    for e in range(-2, 5):
        a = -(1 << (26 + e))
        real = math.exp(-(2.0**e))
        assert abs(int(fp.exp_on_negative_values(a, 5)) / 2**31 - real) < EXP_ERROR_BOUND, e


def test_exp_on_interval_endpoints():
    near_zero = fp.exp_on_interval_between_negative_one_quarter_and_0_excl(-1)
    quarter = fp.exp_on_interval_between_negative_one_quarter_and_0_excl(-(1 << 29))
    assert abs(int(near_zero) / 2**31 - 1) < EXP_ERROR_BOUND  # exp(0-)
    assert abs(int(quarter) / 2**31 - math.exp(-0.25)) < EXP_ERROR_BOUND


def test_one_over_one_plus_x_ends_and_accuracy():
    a = np.concatenate([np.linspace(0, fp.INT32_MAX, 100_001).astype(np.int64), [0, fp.INT32_MAX]])
    y = fp.one_over_one_plus_x_for_x_in_0_1(a)
    real = 1 / (1 + a / 2**31)
    # Three Newton steps from the 48/17 - 32/17 d start leave ~1e-9 relative error; the
    # rest is rounding of a handful of products (a few units of 2**-31).
    assert np.abs(y / 2**31 - real).max() < 2**-27
    assert np.all(np.diff(y[:-2]) <= 0)  # decreasing
    assert fp.one_over_one_plus_x_for_x_in_0_1(0) == fp.INT32_MAX  # 1/(1+0) saturates
    assert abs(int(fp.one_over_one_plus_x_for_x_in_0_1(fp.INT32_MAX)) - (1 << 30)) < 16


def test_one_minus_x_over_one_plus_x_ends_and_accuracy():
    a = np.linspace(0, fp.INT32_MAX, 100_001).astype(np.int64)
    y = fp.one_minus_x_over_one_plus_x_for_x_in_0_1(a)
    real = (1 - a / 2**31) / (1 + a / 2**31)
    assert np.abs(y / 2**31 - real).max() < 2**-27
    assert np.all(np.diff(y) <= 0)


def test_rounding_half_sum():
    rng = np.random.default_rng(4)
    a = np.concatenate([rng.integers(-(2**31), 2**31, 5000), [fp.INT32_MAX, -(2**31), -3, 3]])
    b = np.concatenate([rng.integers(-(2**31), 2**31, 5000), [fp.INT32_MAX, -(2**31), 2, -2]])
    total = [int(x) + int(y) for x, y in zip(a, b, strict=True)]
    expected = [(t + (1 if t >= 0 else -1)) // 2 if t >= 0 else -((-t + 1) // 2) for t in total]
    np.testing.assert_array_equal(fp.rounding_half_sum(a, b), expected)


def test_rescale():
    assert fp.rescale(fp.INT32_MAX, 0, 12) == 1 << 19  # one in Q12.19 (rounded)
    assert fp.rescale(1 << 19, 12, 0) == fp.INT32_MAX  # saturates
    assert fp.rescale(-(1 << 19), 12, 0) == -(1 << 31)
    assert fp.rescale(3, 2, 0) == 12


def test_count_leading_zeros():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.integers(-(2**31), 2**31, 5000), [0, 1, -1, fp.INT32_MAX]])
    expected = [32 - (int(v) & 0xFFFFFFFF).bit_length() for v in x]
    np.testing.assert_array_equal(fp.count_leading_zeros(x), expected)


@pytest.mark.parametrize("terms", [1, 2, 3, 10, 100, 255, 256, 511])
def test_get_reciprocal_of_sums_of_ones(terms):
    """A Q12.19 sum of ``terms`` exponentials exp(0) (each 2**19 after Rescale), the two
    ends of what int8 softmax accepts (1 and 511 terms): ``2**num_bits_over_unit / sum``
    comes back."""
    total = terms << 19
    scale, num_bits_over_unit = fp.get_reciprocal(total, 12)
    assert num_bits_over_unit == terms.bit_length() - 1  # floor(log2(sum))
    real = 2.0**num_bits_over_unit / terms  # in (1/2, 1]
    assert abs(int(scale) / 2**31 - real) < 2**-27
    if terms & (terms - 1) == 0:  # a power of two: 1/(1+0)
        assert scale == fp.INT32_MAX
