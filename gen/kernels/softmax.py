"""int8 SOFTMAX exactly as TensorFlow Lite Micro computes it.

Two halves, as in TFLM:

* :func:`softmax_params` is the prepare step (``CalculateSoftmaxParams`` in
  ``micro/kernels/softmax_common.cc``): ``PreprocessSoftmaxScaling`` turns ``beta`` and the
  input scale into a Q31 multiplier and left shift for the input differences, and
  ``CalculateInputRadius`` gives ``diff_min``, the most negative difference whose
  exponential still counts.
* :func:`softmax_int8` is the evaluation (``reference_ops::Softmax`` in
  ``kernels/internal/reference/softmax.h``) in gemmlowp fixed point, vectorised over all
  rows: per row, the differences from the row maximum are scaled to Q5.26, exponentiated
  to Q0.31, summed in Q12.19, the sum inverted with ``GetReciprocal`` and every
  exponential scaled by that reciprocal down to the int8 output (scale 1/256, zero point
  -128).

The gemmlowp primitives live in :mod:`tfl2rtl.fixedpoint`.

int16 SOFTMAX (16x8 models) is another kernel, ``reference_ops::SoftmaxInt16``: two
513-entry int16 tables that ``gen_lut`` samples from ``exp`` on [-10, 0] and ``1 / (1 +
x)`` on [0, 1], read with linear interpolation (``LUTLookup``); :func:`softmax_int16_params`
and :func:`softmax_int16` (output scale 1/32768, zero point 0).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import Tfl2RtlError
from ..fixedpoint import (
    count_leading_zeros,
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_greater_than_one,
    quantize_multiplier,
    rescale,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap_int16,
    wrap_int32,
)

__all__ = [
    "SCALED_DIFF_INTEGER_BITS",
    "ACCUMULATION_INTEGER_BITS",
    "OUTPUT_SCALE",
    "OUTPUT_ZERO_POINT",
    "preprocess_softmax_scaling",
    "calculate_input_radius",
    "softmax_params",
    "softmax_int8",
    "gen_lut",
    "lut_lookup_int16",
    "softmax_int16_params",
    "softmax_int16_tables",
    "softmax_int16",
]

#: Integer bits of the scaled input differences (Q5.26): differences down to -32.
SCALED_DIFF_INTEGER_BITS = 5
#: Integer bits of the sum of exponentials (Q12.19): up to 4096 terms of at most 1.
ACCUMULATION_INTEGER_BITS = 12
#: The only int8 output quantization TFLM accepts for int8 SOFTMAX.
OUTPUT_SCALE = 1.0 / 256.0
OUTPUT_ZERO_POINT = -128

_INT8_MIN = -128
_INT8_MAX = 127
_OUTPUT_BITS = 8


def preprocess_softmax_scaling(
    beta: float, input_scale: float, input_integer_bits: int
) -> tuple[int, int]:
    """TFLite ``PreprocessSoftmaxScaling`` (double-rounding build).

    ``beta * input_scale`` expressed on a Q``input_integer_bits`` scale, capped at
    ``2**31 - 1``, as ``QuantizeMultiplierGreaterThanOne`` ``(multiplier, left_shift)``.
    """
    max_real_multiplier = float((1 << 31) - 1)
    real_multiplier = min(
        beta * input_scale * float(1 << (31 - input_integer_bits)), max_real_multiplier
    )
    if not real_multiplier > 1.0:
        raise Tfl2RtlError(
            f"SOFTMAX: beta * input_scale = {beta * input_scale:g} is too small for TFLite's "
            "int8 softmax (QuantizeMultiplierGreaterThanOne needs a multiplier above 1)"
        )
    multiplier, left_shift = quantize_multiplier(real_multiplier)
    return multiplier, left_shift


def calculate_input_radius(
    input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31
) -> int:
    """TFLite ``CalculateInputRadius``: the largest input magnitude that, shifted left by
    ``input_left_shift``, stays below the Q``input_integer_bits`` maximum."""
    max_input_rescaled = (
        1.0
        * ((1 << input_integer_bits) - 1)
        * 2.0 ** (total_signed_bits - input_integer_bits)
        / 2.0**input_left_shift
    )
    return int(math.floor(max_input_rescaled))


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """TFLM's int8-in, int8-out ``CalculateSoftmaxParams``.

    ``beta`` and ``input_scale`` are float32 in the model (``TfLiteSoftmaxParams::beta``,
    ``TfLiteTensor::params.scale``) and widened to double, so they are rounded to float32
    first.  Returns ``(input_multiplier, input_left_shift, diff_min)``.
    """
    beta = float(np.float32(beta))
    input_scale = float(np.float32(input_scale))
    input_multiplier, input_left_shift = preprocess_softmax_scaling(
        beta, input_scale, SCALED_DIFF_INTEGER_BITS
    )
    diff_min = -calculate_input_radius(SCALED_DIFF_INTEGER_BITS, input_left_shift)
    return input_multiplier, input_left_shift, diff_min


def softmax_int8(x, input_multiplier: int, input_left_shift: int, diff_min: int,
                 out_dtype=np.int8) -> np.ndarray:
    """``reference_ops::Softmax`` for int8 input and int8 output, over the last axis (or
    uint8 and uint8 with ``out_dtype=np.uint8``: LiteRT's reference kernel for a legacy
    uint8 model, the same template).

    ``x`` is any int8-valued array; every row (all leading axes) is one softmax.  The
    output has scale 1/256 and zero point -128 (uint8: 0, the dtype's minimum).  The loop
    structure of the C++ kernel is kept: pass one sums the exponentials of the differences
    that reach ``diff_min``, pass two scales each exponential by the reciprocal of that sum.
    """
    input_data = np.asarray(x)
    if input_data.ndim == 0:
        raise Tfl2RtlError("SOFTMAX: the input needs at least one dimension")
    input_data = input_data.astype(np.int64)

    max_in_row = input_data.max(axis=-1, keepdims=True)
    input_diff = input_data - max_in_row
    in_range = input_diff >= diff_min

    # The Q5.26 scaled difference and its exponential (Q0.31).  Out-of-range differences
    # may overflow the left shift; they are masked out below, as the C++ skips them.
    input_diff_rescaled = multiply_by_quantized_multiplier_greater_than_one(
        input_diff, input_multiplier, input_left_shift
    )
    exp_in_0 = exp_on_negative_values(input_diff_rescaled, SCALED_DIFF_INTEGER_BITS)

    # Pass one: the Q12.19 sum of exponentials, a wrapping int32 accumulation.
    exp_in_accum = rescale(exp_in_0, 0, ACCUMULATION_INTEGER_BITS)
    sum_of_exps = wrap_int32(np.where(in_range, exp_in_accum, 0).sum(axis=-1, keepdims=True))

    shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
    exponent = num_bits_over_unit + 31 - _OUTPUT_BITS
    if np.any((exponent < 0) | (exponent > 31)):
        raise Tfl2RtlError(
            "SOFTMAX: the sum of exponentials of a row reaches 512 (512 or more near-equal "
            "values in a row); TFLite's int8 softmax aborts on this (TFLITE_CHECK)"
        )

    # Pass two: exp / sum, rounded to the 8-bit output and offset by the output minimum.
    unsat_output = rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted_scale, exp_in_0), exponent
    )
    info = np.iinfo(out_dtype)
    shifted_output = unsat_output + info.min
    output = np.where(in_range, np.clip(shifted_output, info.min, info.max), info.min)
    return output.astype(out_dtype)


def gen_lut(func, input_min: float, input_max: float, output_min: float, output_max: float,
            float_type=np.float32) -> np.ndarray:
    """TFLite's ``gen_lut<FloatT, int16_t, int16_t>``: a 513-entry int16 table of ``func``
    over ``[input_min, input_max]`` in 512 steps (the last entry only gives the last
    slope).  Each entry is the sample, corrected by half the error the linear
    interpolation makes at the step's midpoint, all in ``FloatT`` arithmetic with
    ``TfLiteRound`` (half away from zero).  TFLite Micro's SOFTMAX uses ``FloatT = float``.
    """
    f = float_type
    nb_steps = 512
    step = (f(input_max) - f(input_min)) / f(nb_steps)
    half_step = step / f(2)
    output_scaling_inv = f(65536) / (f(output_max) - f(output_min))

    def round_(v):
        return np.sign(v) * np.floor(np.abs(v) + f(0.5))

    i = np.arange(nb_steps).astype(f)
    val = func(f(input_min) + i * step).astype(f)
    val_midpoint = func(f(input_min) + i * step + half_step).astype(f)
    val_next = func(f(input_min) + (i + f(1)) * step).astype(f)
    sample_val = round_(val * output_scaling_inv)
    midpoint_interp_val = round_((val_next * output_scaling_inv
                                  + round_(val * output_scaling_inv)) / f(2))
    midpoint_val = round_(val_midpoint * output_scaling_inv)
    midpoint_err = midpoint_interp_val - midpoint_val
    bias = round_(midpoint_err / f(2))
    lut = np.empty(nb_steps + 1, np.int64)
    lut[:nb_steps] = np.clip(sample_val - bias, -32768, 32767)
    last = round_(np.asarray(func(np.asarray([input_max], f))).astype(f) * output_scaling_inv)
    lut[nb_steps] = np.clip(last[0], -32768, 32767)
    return lut


def lut_lookup_int16(value, lut: np.ndarray) -> np.ndarray:
    """``LUTLookup`` for an int16 input and table: entry ``256 + (value >> 7)`` plus the
    slope to the next entry times the low 7 bits, rounded (``(slope * offset + 64) >>
    7``), cast to int16."""
    value = np.asarray(value, np.int64)
    index = 256 + (value >> 7)
    offset = value & 0x7F
    base = lut[index]
    slope = lut[index + 1] - base
    delta = (slope * offset + 64) >> 7
    return wrap_int16(base + delta)


def softmax_int16_params(beta: float, input_scale: float) -> tuple[int, int]:
    """TFLM's int16 ``CalculateSoftmaxParams``: ``QuantizeMultiplier(double(input_scale)
    * double(beta) / (10 / 65535))``, so that input differences of [-65535, 0] become
    [-10, 0]; returns ``(input_multiplier, input_left_shift)``."""
    real = float(np.float32(input_scale)) * float(np.float32(beta)) / (10.0 / 65535.0)
    return quantize_multiplier(real)


def _softmax_int16_luts(float_type=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The two tables of ``SoftmaxPrepare`` for int16: ``exp`` on [-10, 0] and
    ``1 / (1 + x)`` on [0, 1], both mapped to [-1, 1]."""
    from . import libm

    f = float_type
    exp = libm.expf if f is np.float32 else libm.exp
    exp_lut = gen_lut(lambda v: exp(np.asarray(v, f)), -10.0, 0.0, -1.0, 1.0, f)
    one_over_one_plus_x_lut = gen_lut(lambda v: f(1) / (f(1) + np.asarray(v, f)), 0.0, 1.0,
                                      -1.0, 1.0, f)
    return exp_lut, one_over_one_plus_x_lut


def softmax_int16_tables() -> tuple[np.ndarray, np.ndarray]:
    """The two 513-entry int16 tables :func:`softmax_int16` looks up (TFLM's, computed in
    float32): ``exp`` on [-10, 0] and ``1 / (1 + x)`` on [0, 1]."""
    return _softmax_int16_luts(np.float32)


def softmax_int16(x, input_multiplier: int, input_left_shift: int,
                  float_type=np.float32) -> np.ndarray:
    """``reference_ops::SoftmaxInt16`` over the last axis: per row, each difference from
    the row maximum is scaled (``MultiplyByQuantizedMultiplier``), recentred by +32767,
    saturated to int16 and looked up in the exp table (Q0.15); the int32 sum of those is
    normalised by its leading zeros, recentred and looked up in the ``1 / (1 + x)`` table;
    each exponential times that reciprocal is shifted right with rounding by
    ``31 - headroom_plus_one`` and clamped to [0, 32767]."""
    exp_lut, one_over_one_plus_x_lut = _softmax_int16_luts(float_type)
    input_data = np.asarray(x).astype(np.int64)
    if input_data.ndim == 0:
        raise Tfl2RtlError("SOFTMAX: the input needs at least one dimension")
    max_in_row = input_data.max(axis=-1, keepdims=True)
    input_diff = input_data - max_in_row
    scaled_diff = multiply_by_quantized_multiplier(input_diff, input_multiplier,
                                                   input_left_shift)
    sat_sym_scaled_diff = np.clip(scaled_diff + 32767, -32768, 32767)
    exp_results_q015 = lut_lookup_int16(sat_sym_scaled_diff, exp_lut)
    sum_of_exps = wrap_int32(exp_results_q015.sum(axis=-1, keepdims=True))

    headroom_plus_one = count_leading_zeros(sum_of_exps)
    shifted_sum = ((sum_of_exps << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    sym_shifted_sum = shifted_sum - ((1 << 15) + (1 << 16))
    sat_sym_shifted_sum = np.clip(sym_shifted_sum, -32768, 32767)
    reciprocal_scale_q015 = lut_lookup_int16(sat_sym_shifted_sum, one_over_one_plus_x_lut)

    right_shift = 31 - headroom_plus_one
    rounding = np.int64(1) << (right_shift - 1)
    result = (exp_results_q015 * reciprocal_scale_q015 + rounding) >> right_shift
    return np.clip(result, 0, 32767).astype(np.int16)
