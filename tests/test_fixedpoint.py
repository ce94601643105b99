"""The integer primitives against exact rational arithmetic (Python ints)."""

import math
from fractions import Fraction

import numpy as np
import pytest

from tfl2rtl import fixedpoint as fp

INT32 = [fp.INT32_MIN, fp.INT32_MIN + 1, -(1 << 30), -65536, -5, -1, 0, 1, 5, 65535,
         1 << 30, fp.INT32_MAX - 1, fp.INT32_MAX]


def round_half_away(q: Fraction) -> int:
    whole = math.floor(abs(q))
    if abs(q) - whole >= Fraction(1, 2):
        whole += 1
    return whole if q >= 0 else -whole


def random_int32(n, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.integers(fp.INT32_MIN, fp.INT32_MAX, n, endpoint=True),
                           np.array(INT32)])


def test_srdhm_is_high_product_rounded_half_up():
    a = random_int32(3000, 1)
    b = random_int32(3000, 2)[: a.size]
    # exact halves of both signs: +-k * 2**30 / 2**31 for odd k
    a = np.concatenate([a, [-1, 1, -3, 3, -5, fp.INT32_MIN]])
    b = np.concatenate([b, [1 << 30] * 5 + [fp.INT32_MIN]])
    got = fp.saturating_rounding_doubling_high_mul(a, b)
    for x, y, g in zip(a.tolist(), b.tolist(), got.tolist(), strict=True):
        if x == y == fp.INT32_MIN:
            assert g == fp.INT32_MAX
        else:
            assert g == math.floor(Fraction(x * y, 1 << 31) + Fraction(1, 2))
    np.testing.assert_array_equal(got[-6:-1], [0, 1, -1, 2, -2])


@pytest.mark.parametrize("exponent", [0, 1, 2, 7, 16, 30, 31])
def test_rounding_divide_by_pot_half_away_from_zero(exponent):
    x = random_int32(2000, exponent)
    halves = np.array([(2 * k + 1) << max(exponent - 1, 0) for k in range(-4, 4)])
    x = np.concatenate([x, halves[(halves >= fp.INT32_MIN) & (halves <= fp.INT32_MAX)]])
    got = fp.rounding_divide_by_pot(x, exponent)
    want = [round_half_away(Fraction(v, 1 << exponent)) for v in x.tolist()]
    np.testing.assert_array_equal(got, want)


def test_double_rounding_is_asymmetric():
    # 5 * 2**30 / 2**31 = 2.5 rounds to 3 and back to 3 / 2 = 1.5 -> 2; -5 gives -2.5 -> -3,
    # then -1.5 -> -1 because RoundingDivideByPOT's threshold differs for negatives.
    got = fp.multiply_by_quantized_multiplier([5, -5], 1 << 30, -1)
    np.testing.assert_array_equal(got, [2, -1])


def test_mbqm_per_channel_shifts_broadcast():
    x = np.array([[1000, -1000, 77777]])
    mult = np.array([1 << 30, 1518500250, fp.INT32_MAX])
    shift = np.array([-3, 2, -31])
    got = fp.multiply_by_quantized_multiplier(x, mult, shift)
    want = [fp.multiply_by_quantized_multiplier(v, m, s).item()
            for v, m, s in zip(x[0], mult, shift, strict=True)]
    np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("real", [1e-12, 2.0 ** -31, 0.0013301224037636943, 0.25, 0.5,
                                  0.999999999, 1.0, 1.5, 123.456])
def test_quantize_multiplier_reconstructs(real):
    q, shift = fp.quantize_multiplier(real)
    if real < 2.0 ** -32:
        assert (q, shift) == (0, 0)
        return
    assert (1 << 30) <= q < (1 << 31)
    assert abs(q * 2.0 ** (shift - 31) - real) <= real * 2.0 ** -30


def test_tflite_round_halves_away_from_zero():
    assert [fp.tflite_round(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1, 2, 3, -1, -3]
    assert fp.tflite_round(0.49999999999999994) == 0  # x + 0.5 would round up here


def test_signed_bits():
    assert fp.signed_bits(-128, 127) == 8
    assert fp.signed_bits(-129, 0) == 9
    assert fp.signed_bits(0, 128) == 9
    assert fp.signed_bits(0, 0) == 1


def test_int64_mbqm_rounds_once_half_up_with_a_16_bit_multiplier():
    mbqm64 = fp.multiply_by_quantized_multiplier_int64
    # multiplier 2**30 (one half) reduces to 2**14: x / 2 rounded, halves towards +inf
    half = 1 << 30
    np.testing.assert_array_equal(mbqm64(np.array([5, -5, 3, -3, 4]), half, 0),
                                  [3, -2, 2, -1, 2])
    # 5 / 4 = 1.25: one rounding gives 1, the int32 path's double rounding 2
    assert int(mbqm64(5, half, -1)) == 1
    assert int(fp.multiply_by_quantized_multiplier(5, half, -1)) == 2
    # the reduction (m + 2**15) >> 16 drops the low 16 bits, saturating at 0x7FFF
    assert int(mbqm64(1 << 20, half + (1 << 15) - 1, -1)) == (1 << 20) // 4
    assert int(mbqm64(1 << 20, half + (1 << 15), -1)) == (1 << 20) // 4 + 16
    assert int(mbqm64(1 << 16, 0x7FFF0000, 0)) == int(mbqm64(1 << 16, (1 << 31) - 1, 0))
    assert int(mbqm64(1 << 16, 0x7FFF0000, 0)) == 0x7FFF * 2
    # a left shift (shift > 0); a result beyond int32 wraps, as the C cast does
    assert int(mbqm64(3 << 20, half, 2)) == 3 << 21
    assert int(mbqm64(3 << 30, half, 1)) == (3 << 30) - (1 << 32)
