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
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import Tfl2RtlError
from ..fixedpoint import (
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier_greater_than_one,
    quantize_multiplier,
    rescale,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
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


def softmax_int8(x, input_multiplier: int, input_left_shift: int, diff_min: int) -> np.ndarray:
    """``reference_ops::Softmax`` for int8 input and int8 output, over the last axis.

    ``x`` is any int8-valued array; every row (all leading axes) is one softmax.  The
    output has scale 1/256 and zero point -128.  The loop structure of the C++ kernel is
    kept: pass one sums the exponentials of the differences that reach ``diff_min``,
    pass two scales each exponential by the reciprocal of that sum.
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
    shifted_output = unsat_output + _INT8_MIN
    output = np.where(in_range, np.clip(shifted_output, _INT8_MIN, _INT8_MAX), _INT8_MIN)
    return output.astype(np.int8)
