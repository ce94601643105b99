"""TFLite's integer arithmetic, vectorised in numpy.

Every function takes and returns ``np.int64`` arrays (or anything ``np.asarray`` accepts)
holding int32 values (the int64 accumulators of a 16x8 layer for
:func:`multiply_by_quantized_multiplier_int64`), and reproduces the C++ integer semantics
of TFLite's reference kernels exactly, including C's truncating division and the
asymmetric double rounding of ``MultiplyByQuantizedMultiplier``.  int64 is wide enough
for every intermediate: the largest is the product of two int32 values plus a nudge, or
an int64 accumulator below 2**47 times a 16-bit multiplier, below 2**62 in magnitude.

The names follow ``tensorflow/lite/kernels/internal/common.h`` and gemmlowp's
``fixedpoint.h`` so a reader can put the two side by side.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "wrap_int32",
    "c_div",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "saturating_rounding_multiply_by_pot",
    "multiply_by_quantized_multiplier",
    "multiply_by_quantized_multiplier_greater_than_one",
    "multiply_by_quantized_multiplier_int64",
    "quantize_multiplier",
    "tflite_round",
    "signed_bits",
    "wrap_int16",
    "rounding_half_sum",
    "rescale",
    "exp_on_interval_between_negative_one_quarter_and_0_excl",
    "exp_on_negative_values",
    "one_over_one_plus_x_for_x_in_0_1",
    "one_minus_x_over_one_plus_x_for_x_in_0_1",
    "logistic",
    "tanh",
    "count_leading_zeros",
    "get_reciprocal",
    "saturating_rounding_doubling_high_mul_int16",
    "rounding_divide_by_pot_int16",
    "down_scale_int32_to_int16_multiplier",
]


def _i64(x):
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x):
    """Reduce ``x`` modulo 2**32 into the int32 range (two's complement wrap-around)."""
    x = _i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def c_div(a, b):
    """C's integer division: the quotient truncated toward zero."""
    a = _i64(a)
    b = _i64(b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``floor(a * b / 2**31 + 1/2)``.

    Halves round towards +infinity (the nudge is ``2**30`` for non-negative products and
    ``1 - 2**30`` for negative ones, then C division truncates): ``-0.5 -> 0``,
    ``-1.5 -> -1``.  The one overflowing case (``a == b == INT32_MIN``) saturates to
    ``INT32_MAX``.
    """
    a = _i64(a)
    b = _i64(b)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = c_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    ``exponent`` may be an array (one shift per channel) in ``[0, 31]``.
    """
    x = _i64(x)
    exponent = _i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int):
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` for a scalar exponent."""
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    shifted = wrap_int32(x << exponent)
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))


def multiply_by_quantized_multiplier(x, quantized_multiplier, shift):
    """TFLite's double-rounding ``MultiplyByQuantizedMultiplier(x, multiplier, shift)``.

    ``shift`` is TFLite's signed exponent: positive shifts left before the high multiply,
    negative rounds right after it.  ``x * 2**left_shift`` wraps like the int32 C code.
    """
    x = _i64(x)
    shift = _i64(shift)
    left_shift = np.maximum(shift, 0)
    right_shift = np.maximum(-shift, 0)
    scaled = wrap_int32(x << left_shift)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(scaled, quantized_multiplier), right_shift
    )


def multiply_by_quantized_multiplier_int64(x, quantized_multiplier, shift):
    """TFLite's ``MultiplyByQuantizedMultiplier(int64_t x, int32_t multiplier, int shift)``,
    the requantization of the 16x8 kernels' int64 accumulators: a single rounding.

    The q31 multiplier is first reduced to 16 bits, ``(m + 2**15) >> 16`` (``0x7FFF`` from
    ``0x7FFF0000`` on); then ``(x * reduced + 2**(total_shift - 1)) >> total_shift`` with
    ``total_shift = 15 - shift``: an arithmetic shift, so halves round up (towards
    +infinity), unlike the int32 path's double rounding.  The result is cast to int32
    (wrapping; the kernel only DCHECKs it fits).  The kernel assumes ``|x| < 2**47``, so
    ``x * reduced`` stays below 2**62 and int64 holds it.
    """
    x = _i64(x)
    quantized_multiplier = _i64(quantized_multiplier)
    reduced_multiplier = np.where(quantized_multiplier < 0x7FFF0000,
                                  (quantized_multiplier + (1 << 15)) >> 16, 0x7FFF)
    total_shift = 15 - _i64(shift)
    rounding = np.int64(1) << (total_shift - 1)
    return wrap_int32((x * reduced_multiplier + rounding) >> total_shift)


def multiply_by_quantized_multiplier_greater_than_one(x, quantized_multiplier, left_shift):
    """TFLite's ``MultiplyByQuantizedMultiplierGreaterThanOne`` (no rounding shift)."""
    scaled = wrap_int32(_i64(x) << _i64(left_shift))
    return saturating_rounding_doubling_high_mul(scaled, quantized_multiplier)


def tflite_round(x: float) -> int:
    """``TfLiteRound`` (``std::round``): nearest integer, halves away from zero."""
    magnitude = abs(x)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:  # exact: no "x + 0.5" that could round up
        whole += 1
    return int(math.copysign(whole, x))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: a double as ``(q31 multiplier, shift)``.

    ``real_multiplier ~= multiplier * 2**(shift - 31)`` with the multiplier in
    ``[2**30, 2**31)``; zero and multipliers below about ``2**-31`` give ``(0, 0)``.
    """
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return q_fixed, shift


def signed_bits(lo: int, hi: int) -> int:
    """The width of the smallest two's complement integer that holds ``[lo, hi]``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


# ---------------------------------------------------------------------------------------
# gemmlowp's fixed-point math functions (``fixedpoint/fixedpoint.h``).
#
# A ``FixedPoint<int32_t, k>`` holds ``raw / 2**(31 - k)``: ``k`` integer bits, ``31 - k``
# fractional bits.  Here a fixed-point value is just its raw int32 (in an int64 array) and
# the integer-bit count is an explicit argument.  gemmlowp's ``+``/``-`` are plain int32
# additions (wrapping), its ``*`` is ``SaturatingRoundingDoublingHighMul`` and the
# integer bits of a product are the sum of the operands' integer bits.

_EXP_MINUS_ONE_EIGHTH = 1895147668  # exp(-1/8) in Q0.31
_ONE_THIRD = 715827883  # 1/3 in Q0.31
# exp(-2**e) in Q0.31 for the barrel shifter of exp_on_negative_values, e = -2 .. 4.
_EXP_BARREL = (
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)
_48_OVER_17 = 1515870810  # 48/17 in Q2.29
_NEG_32_OVER_17 = -1010580540  # -32/17 in Q2.29


def _add(a, b):
    """gemmlowp ``Add`` on int32: a plain, wrapping addition."""
    return wrap_int32(_i64(a) + _i64(b))


def _sub(a, b):
    """gemmlowp ``Sub`` on int32: a plain, wrapping subtraction."""
    return wrap_int32(_i64(a) - _i64(b))


def wrap_int16(x):
    """Reduce ``x`` modulo 2**16 into the int16 range (C's conversion to ``int16_t``)."""
    x = _i64(x)
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def rounding_half_sum(a, b):
    """gemmlowp ``RoundingHalfSum`` on int32: ``(a + b) / 2`` rounded half away from zero."""
    total = _i64(a) + _i64(b)
    return c_div(total + np.where(total >= 0, 1, -1), 2)


def rescale(x, src_integer_bits: int, dst_integer_bits: int):
    """gemmlowp ``Rescale<dst>`` of a ``FixedPoint<int32_t, src>``: the same real value with
    ``dst`` integer bits, by a saturating (left) or rounding (right) power-of-two shift."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp: ``exp(a)`` for a Q0.31 ``a`` in ``[-1/4, 0)``, as Q0.31.

    A fourth-order Taylor expansion around -1/8: with ``x = a + 1/8``,
    ``exp(a) = exp(-1/8) * (1 + x + x**2/2 + x**3/6 + x**4/24)``.
    """
    srdhm = saturating_rounding_doubling_high_mul
    x = _add(a, 1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    x4_over_24_plus_x3_over_6_plus_x2_over_2 = rounding_divide_by_pot(
        _add(srdhm(_add(x4_over_4, x3), _ONE_THIRD), x2), 1
    )
    return _add(
        _EXP_MINUS_ONE_EIGHTH,
        srdhm(_EXP_MINUS_ONE_EIGHTH, _add(x, x4_over_24_plus_x3_over_6_plus_x2_over_2)),
    )


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp ``exp_on_negative_values``: ``exp(a)`` for ``a <= 0`` in Q``integer_bits``,
    returned as Q0.31 (``exp(0)`` saturates to ``INT32_MAX``).

    ``a`` is split into ``(a mod 1/4) - 1/4`` in ``[-1/4, 0)``, handled by the Taylor
    polynomial, and a multiple of 1/4 whose binary digits select factors ``exp(-2**e)``.
    """
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = _sub(a & (one_quarter - 1), one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0)
    )
    remainder = _sub(a_mod_quarter_minus_one_quarter, a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = np.int64(1) << (fractional_bits + exponent)
            result = np.where(
                (remainder & bit) != 0,
                saturating_rounding_doubling_high_mul(result, multiplier),
                result,
            )
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32.0
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_of_half_denominator(half_denominator):
    """The Newton-Raphson iteration shared by gemmlowp's two ``..._for_x_in_0_1``:
    ``1 / half_denominator`` (half_denominator in [1/2, 1]) as Q2.29, three steps from
    ``48/17 - 32/17 * d``."""
    srdhm = saturating_rounding_doubling_high_mul
    one_q2 = 1 << 29
    x = _add(_48_OVER_17, srdhm(half_denominator, _NEG_32_OVER_17))
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus_half_denominator_times_x = _sub(one_q2, half_denominator_times_x)
        x = _add(x, rescale(srdhm(x, one_minus_half_denominator_times_x), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp: ``1 / (1 + a)`` for a Q0.31 ``a`` in ``[0, 1)``, as Q0.31."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = _newton_reciprocal_of_half_denominator(half_denominator)
    # ExactMulByPot<-1> reinterprets the Q2.29 value as Q1.30, halving it.
    return rescale(x, 1, 0)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp: ``(1 - a) / (1 + a)`` for a Q0.31 ``a`` in ``[0, 1)``, as Q0.31."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = _newton_reciprocal_of_half_denominator(half_denominator)
    return rescale(_sub(x, 1 << 29), 2, 0)


def logistic(a, integer_bits: int):
    """gemmlowp ``logistic``: ``1 / (1 + exp(-a))`` for Q``integer_bits`` ``a``, as Q0.31
    (``logistic(0)`` is exactly 1/2; negative inputs use ``1 - logistic(-a)``)."""
    a = _i64(a)
    positive = a > 0
    abs_input = np.where(positive, a, wrap_int32(-a))
    result_if_positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap_int32(-abs_input), integer_bits)
    )
    result_if_negative = _sub(INT32_MAX, result_if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, result_if_positive, result_if_negative))


def tanh(a, integer_bits: int):
    """gemmlowp ``tanh`` for Q``integer_bits`` ``a``, as Q0.31:
    ``(1 - exp(-2|a|)) / (1 + exp(-2|a|))`` with the sign of ``a``."""
    a = _i64(a)
    negative = a < 0
    n = np.where(negative, a, wrap_int32(-a))
    # ExactMulByPot<1>: the same raw value read with one more integer bit is 2 * n.
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, wrap_int32(-t), t))


def count_leading_zeros(x):
    """TFLite ``CountLeadingZeros`` of ``x`` read as a uint32 (32 for zero)."""
    x = _i64(x) & 0xFFFFFFFF
    # Below 2**53 a float64 holds x exactly, so frexp's exponent is its bit length.
    bit_length = np.frexp(x.astype(np.float64))[1]
    return np.where(x == 0, 32, 32 - bit_length).astype(np.int64)


def get_reciprocal(x, x_integer_digits: int):
    """TFLite ``GetReciprocal``: for a positive Q``x_integer_digits`` ``x``, returns
    ``(shifted_scale, num_bits_over_unit)`` with ``shifted_scale`` the Q0.31 value
    ``2**num_bits_over_unit / x`` (in (1/2, 1]).

    ``x`` is normalised to ``1 + f`` with ``f`` in [0, 1) by its leading zeros and
    ``1 / (1 + f)`` is taken with :func:`one_over_one_plus_x_for_x_in_0_1`.
    """
    x = _i64(x)
    headroom_plus_one = count_leading_zeros(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x & 0xFFFFFFFF) << headroom_plus_one) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def saturating_rounding_doubling_high_mul_int16(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16: ``round(a * b / 2**15)``,
    halves away from zero, ``-32768 * -32768`` saturating to 32767."""
    a = _i64(a)
    b = _i64(b)
    overflow = (a == b) & (a == -(1 << 15))
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    return np.where(overflow, (1 << 15) - 1, wrap_int16(c_div(ab + nudge, 1 << 15)))


def rounding_divide_by_pot_int16(x, exponent):
    """gemmlowp ``RoundingDivideByPOT`` on int16 values.

    Like :func:`rounding_divide_by_pot` for exponents up to 15.  gemmlowp builds its mask
    as an ``int16_t``, so from 16 on the mask wraps to -1 and the result degenerates to
    ``+1`` for ``x >= 0`` and ``-1`` for ``x < 0``; that is reproduced.
    """
    x = _i64(x)
    exponent = _i64(exponent)
    mask = wrap_int16((np.int64(1) << exponent) - 1)
    remainder = wrap_int16(x & mask)
    threshold = wrap_int16((mask >> 1) + (x < 0))
    return wrap_int16((x >> exponent) + (remainder > threshold))


def down_scale_int32_to_int16_multiplier(multiplier: int) -> int:
    """TFLite ``DownScaleInt32ToInt16Multiplier``: a Q0.31 multiplier rounded to Q0.15."""
    if multiplier >= INT32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (multiplier + (1 << 15)) >> 16
