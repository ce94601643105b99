"""int8 elementwise activations exactly as TensorFlow Lite Micro computes them.

An int8 -> int8 elementwise op is a function of one of 256 input values, so any of them
can be stored as a 256-entry table; :func:`lut_table` builds that table by running the
op's exact TFLM integer kernel on every input value.

Each op is written as TFLM writes it: a ``*_params`` function for the prepare step (the
multipliers, shifts and bounds TFLM derives from the tensors' float32 scales) and an
``*_int8`` function for the evaluation, vectorised over an array of int8 values.  The
sources followed are ``tensorflow/lite/micro/kernels/<op>*.cc`` and
``tensorflow/lite/kernels/internal/reference/``.

Quirks of TFLM that these reproduce on purpose:

* LOGISTIC assumes an output scale of 1/256 (zero point -128, which it checks) and TANH
  an output scale of 1/128 and zero point 0 (which it does not check): the output
  quantization of the tensor is otherwise ignored.
* RELU6 does not requantize: it clamps the input value to ``[zero_point, q(6.0)]`` on
  the *input* scale and ignores the output tensor's quantization.
* ELU is a table TFLM fills in float32 with ``expf``.

The multipliers follow the TFLM build the project tests against (the pinned
``tflite-micro`` wheel, built from upstream commit 8f6596d): it forms the ratios of scales
of RELU, ABS, LEAKY_RELU and HARD_SWISH in double from the float32 scales, where older
TFLM sources divide in float32 first.  The two differ in the last bit of the multiplier
often enough to change table entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Tfl2RtlError
from ..fixedpoint import (
    down_scale_int32_to_int16_multiplier,
    logistic,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    rounding_divide_by_pot_int16,
    saturating_rounding_doubling_high_mul_int16,
    tanh,
    tflite_round,
    wrap_int16,
    wrap_int32,
)
from .softmax import calculate_input_radius

__all__ = [
    "SUPPORTED_OPS",
    "lut_table",
    "LogisticParams",
    "logistic_params",
    "logistic_int8",
    "TanhParams",
    "tanh_params",
    "tanh_int8",
    "HardSwishParams",
    "hard_swish_params",
    "hard_swish_int8",
    "LeakyReluParams",
    "leaky_relu_params",
    "leaky_relu_int8",
    "ReluParams",
    "relu_params",
    "relu_int8",
    "Relu6Params",
    "relu6_params",
    "relu6_int8",
    "AbsParams",
    "abs_params",
    "abs_int8",
    "RequantizeParams",
    "requantize_params",
    "requantize_int8",
    "elu_table",
]

INT8_MIN = -128
INT8_MAX = 127
_INT16_MIN = -(1 << 15)
_INT16_MAX = (1 << 15) - 1


def _f32(x: float) -> float:
    """A double holding ``x`` rounded to float32, as TFLite stores scales and options."""
    return float(np.float32(x))


def _f32_ratio(a: float, b: float) -> float:
    """``double(a) / double(b)`` of two float32 scales."""
    return _f32(a) / _f32(b)


def _clamp_int8(x) -> np.ndarray:
    return np.clip(x, INT8_MIN, INT8_MAX)


def _frexp_multiplier(real_multiplier: float) -> tuple[int, int]:
    """The inline ``std::frexp`` quantization of LOGISTIC and TANH's prepare steps:
    ``round(q * 2**31)`` cast to int32 without ``QuantizeMultiplier``'s ``q == 1`` fixup."""
    q, shift = math.frexp(real_multiplier)
    return int(wrap_int32(tflite_round(q * (1 << 31)))), shift


def _saturate_beyond_radius(output, input_value, input_range_radius: int):
    """LOGISTIC and TANH's bypass: ``input <= -radius`` gives -128, else ``input >= radius``
    gives 127 (a zero radius sends 0 to -128: the first test wins)."""
    output = np.where(input_value >= input_range_radius, INT8_MAX, output)
    return np.where(input_value <= -input_range_radius, INT8_MIN, output)


# --- LOGISTIC ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticParams:
    """``OpDataLogistic`` for int8 (``logistic_common.cc``)."""

    input_zero_point: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


_LOGISTIC_INPUT_INTEGER_BITS = 4


def logistic_params(input_scale: float, input_zero_point: int) -> LogisticParams:
    """``CalculateArithmeticOpDataLogistic``: the input on a Q4.27 scale."""
    input_real_multiplier = _f32(input_scale) * float(1 << (31 - _LOGISTIC_INPUT_INTEGER_BITS))
    input_multiplier, input_left_shift = _frexp_multiplier(input_real_multiplier)
    return LogisticParams(
        input_zero_point=int(input_zero_point),
        input_range_radius=calculate_input_radius(_LOGISTIC_INPUT_INTEGER_BITS, input_left_shift),
        input_multiplier=input_multiplier,
        input_left_shift=input_left_shift,
    )


def logistic_int8(x, params: LogisticParams) -> np.ndarray:
    """``reference_integer_ops::Logistic`` (int8): gemmlowp ``logistic`` on Q4.27, rounded
    to Q0.8 and offset by -128; inputs beyond the radius saturate to -128 / 127."""
    input_value = np.asarray(x, dtype=np.int64) - params.input_zero_point
    input_in_q4 = multiply_by_quantized_multiplier(
        input_value, params.input_multiplier, params.input_left_shift
    )
    output_in_q0 = logistic(input_in_q4, _LOGISTIC_INPUT_INTEGER_BITS)
    output_in_q23 = rounding_divide_by_pot(output_in_q0, 31 - 8)
    output = _clamp_int8(output_in_q23 + INT8_MIN)
    output = _saturate_beyond_radius(output, input_value, params.input_range_radius)
    return output.astype(np.int8)


# --- TANH -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TanhParams:
    """``OpData`` of ``micro/kernels/tanh.cc`` for int8."""

    input_zero_point: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


_TANH_INPUT_INTEGER_BITS = 4


def tanh_params(input_scale: float, input_zero_point: int) -> TanhParams:
    """``CalculateArithmeticOpData`` of TANH: the input on a Q4.27 scale."""
    input_real_multiplier = _f32(input_scale) * float(1 << (31 - _TANH_INPUT_INTEGER_BITS))
    input_multiplier, input_left_shift = _frexp_multiplier(input_real_multiplier)
    return TanhParams(
        input_zero_point=int(input_zero_point),
        input_range_radius=calculate_input_radius(_TANH_INPUT_INTEGER_BITS, input_left_shift),
        input_multiplier=input_multiplier,
        input_left_shift=input_left_shift,
    )


def tanh_int8(x, params: TanhParams) -> np.ndarray:
    """``reference_integer_ops::Tanh`` (int8): gemmlowp ``tanh`` on Q4.27, rounded to Q0.7
    with no output offset; inputs beyond the radius saturate to -128 / 127."""
    input_value = np.asarray(x, dtype=np.int64) - params.input_zero_point
    input_in_q4 = multiply_by_quantized_multiplier(
        input_value, params.input_multiplier, params.input_left_shift
    )
    output_in_q0 = tanh(input_in_q4, _TANH_INPUT_INTEGER_BITS)
    output = _clamp_int8(rounding_divide_by_pot(output_in_q0, 31 - 7))
    output = _saturate_beyond_radius(output, input_value, params.input_range_radius)
    return output.astype(np.int8)


# --- HARD_SWISH -------------------------------------------------------------------------


@dataclass(frozen=True)
class HardSwishParams:
    """TFLite's ``HardSwishParams``: two Q0.15 multipliers with exponents."""

    input_zero_point: int
    output_zero_point: int
    reluish_multiplier_fixedpoint_int16: int
    reluish_multiplier_exponent: int
    output_multiplier_fixedpoint_int16: int
    output_multiplier_exponent: int


def hard_swish_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> HardSwishParams:
    """``HardSwishPrepare``: the "high-res" input scale is ``input_scale / 128`` (a float32
    product); the relu-ish scale maps 3.0 to 32768.  The ratios are taken in double."""
    hires_input_scale = float(np.float32(1.0 / 128.0) * np.float32(input_scale))
    reluish_scale = 3.0 / 32768.0
    output_multiplier = hires_input_scale / _f32(output_scale)
    output_multiplier_int32, output_multiplier_exponent = quantize_multiplier(output_multiplier)
    if output_multiplier_exponent > 0:
        raise Tfl2RtlError(
            "HARD_SWISH: input_scale / (128 * output_scale) must be below 1 for TFLite "
            f"(got {output_multiplier:g})"
        )
    reluish_multiplier = hires_input_scale / reluish_scale
    reluish_multiplier_int32, reluish_multiplier_exponent = quantize_multiplier(reluish_multiplier)
    return HardSwishParams(
        input_zero_point=int(input_zero_point),
        output_zero_point=int(output_zero_point),
        reluish_multiplier_fixedpoint_int16=down_scale_int32_to_int16_multiplier(
            reluish_multiplier_int32
        ),
        reluish_multiplier_exponent=reluish_multiplier_exponent,
        output_multiplier_fixedpoint_int16=down_scale_int32_to_int16_multiplier(
            output_multiplier_int32
        ),
        output_multiplier_exponent=output_multiplier_exponent,
    )


def _saturating_left_shift_int16(value, amount: int):
    """``reference_ops::SaturatingLeftShift``: ``value * 2**amount`` clamped to int16."""
    return np.clip(np.asarray(value, dtype=np.int64) * (1 << amount), _INT16_MIN, _INT16_MAX)


def _saturating_doubling_high_mul_int16(a, b):
    """``reference_ops::SaturatingDoublingHighMul`` (SQDMULH): ``a * b / 2**15`` truncated
    toward zero, ``-32768 * -32768`` saturating to 32767."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    high = wrap_int16(np.sign(ab) * (np.abs(ab) >> 15))
    return np.where((a == b) & (a == _INT16_MIN), _INT16_MAX, high)


def hard_swish_int8(x, params: HardSwishParams) -> np.ndarray:
    """``reference_ops::HardSwish`` (quantized): ``x * relu6(x + 3) / 6`` in 16-bit fixed
    point.  ``x`` on the high-res scale times a relu-ish factor in [0, 1] that is
    ``(x + 3) / 6`` saturated at both ends."""
    srdhm16 = saturating_rounding_doubling_high_mul_int16
    input_value = wrap_int16(np.asarray(x, dtype=np.int64) - params.input_zero_point)
    input_value_on_hires_input_scale = wrap_int16(input_value * (1 << 7))
    input_value_on_preshift_output_scale = srdhm16(
        input_value_on_hires_input_scale, params.output_multiplier_fixedpoint_int16
    )
    # The relu-ish value: x rescaled so that 3.0 is 32768 (saturating), mapped to [0, 1].
    reluish_value = input_value_on_hires_input_scale
    exponent = params.reluish_multiplier_exponent
    if exponent > 0:
        reluish_value = _saturating_left_shift_int16(reluish_value, exponent - 1)
    reluish_value = srdhm16(reluish_value, params.reluish_multiplier_fixedpoint_int16)
    if exponent > 0:
        reluish_value = _saturating_left_shift_int16(reluish_value, 1)
    if exponent < 0:
        reluish_value = rounding_divide_by_pot_int16(reluish_value, -exponent)
    reluish_value = wrap_int16((reluish_value + (1 << 15)) >> 1)
    preshift_output_value = _saturating_doubling_high_mul_int16(
        reluish_value, input_value_on_preshift_output_scale
    )
    output_value = rounding_divide_by_pot_int16(
        preshift_output_value, -params.output_multiplier_exponent
    )
    output_value = wrap_int16(output_value + params.output_zero_point)
    return _clamp_int8(output_value).astype(np.int8)


# --- LEAKY_RELU -------------------------------------------------------------------------


@dataclass(frozen=True)
class LeakyReluParams:
    """TFLite's ``LeakyReluParams`` for int8: one multiplier per side of zero."""

    input_offset: int
    output_offset: int
    output_multiplier_alpha: int
    output_shift_alpha: int
    output_multiplier_identity: int
    output_shift_identity: int


def leaky_relu_params(
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    alpha: float,
) -> LeakyReluParams:
    """``CalculateOpDataLeakyRelu``: ``input_scale * alpha / output_scale`` and
    ``input_scale / output_scale``, in double from the float32 values."""
    alpha_multiplier = _f32(input_scale) * _f32(alpha) / _f32(output_scale)
    identity_multiplier = _f32_ratio(input_scale, output_scale)
    output_multiplier_alpha, output_shift_alpha = quantize_multiplier(alpha_multiplier)
    output_multiplier_identity, output_shift_identity = quantize_multiplier(identity_multiplier)
    return LeakyReluParams(
        input_offset=int(input_zero_point),
        output_offset=int(output_zero_point),
        output_multiplier_alpha=output_multiplier_alpha,
        output_shift_alpha=output_shift_alpha,
        output_multiplier_identity=output_multiplier_identity,
        output_shift_identity=output_shift_identity,
    )


def leaky_relu_int8(x, params: LeakyReluParams, dtype: str = "int8") -> np.ndarray:
    """``reference_ops::QuantizeLeakyRelu``: the identity multiplier for ``x >= zero`` and
    the alpha multiplier below, a negative alpha applied as a negated product; clamped to
    ``dtype`` (``"int16"``: the same template in a 16x8 model)."""
    input_value = np.asarray(x, dtype=np.int64) - params.input_offset
    is_alpha_negative = params.output_multiplier_alpha < 0
    safe_alpha_multiplier = int(wrap_int32(abs(params.output_multiplier_alpha)))
    identity = multiply_by_quantized_multiplier(
        input_value, params.output_multiplier_identity, params.output_shift_identity
    )
    scaled_alpha_value = multiply_by_quantized_multiplier(
        input_value, safe_alpha_multiplier, params.output_shift_alpha
    )
    if is_alpha_negative:
        scaled_alpha_value = -scaled_alpha_value
    unclamped_output = params.output_offset + np.where(
        input_value >= 0, identity, scaled_alpha_value
    )
    info = np.iinfo(dtype)
    return np.clip(unclamped_output, info.min, info.max).astype(dtype)


# --- RELU -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReluParams:
    """The int8 part of TFLite's ``ReluParams`` as ``CalculateReluOpData`` fills it."""

    input_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    quantized_activation_min: int
    quantized_activation_max: int


def relu_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> ReluParams:
    """``CalculateReluOpData<int8_t>``: requantize by ``input_scale / output_scale`` and
    clamp below at the output zero point."""
    output_multiplier, output_shift = quantize_multiplier(_f32_ratio(input_scale, output_scale))
    return ReluParams(
        input_offset=int(input_zero_point),
        output_offset=int(output_zero_point),
        output_multiplier=output_multiplier,
        output_shift=output_shift,
        quantized_activation_min=max(INT8_MIN, int(output_zero_point)),
        quantized_activation_max=INT8_MAX,
    )


def relu_int8(x, params: ReluParams) -> np.ndarray:
    """``ReluQuantized<int8_t>``: requantize, then clamp to the activation range."""
    clamped = params.output_offset + multiply_by_quantized_multiplier(
        np.asarray(x, dtype=np.int64) - params.input_offset,
        params.output_multiplier,
        params.output_shift,
    )
    clamped = np.maximum(params.quantized_activation_min, clamped)
    clamped = np.minimum(params.quantized_activation_max, clamped)
    return clamped.astype(np.int8)


# --- RELU6 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relu6Params:
    """``Relu6OpData``: 0.0 and 6.0 quantized on the input scale."""

    zero: int
    six: int


def relu6_params(input_scale: float, input_zero_point: int) -> Relu6Params:
    """``Relu6Prepare``: ``FloatToQuantizedType<int8_t>(6.0f, scale, zero_point)``."""
    six = tflite_round(float(np.float32(6.0) / np.float32(input_scale))) + int(input_zero_point)
    return Relu6Params(zero=int(input_zero_point), six=min(INT8_MAX, max(INT8_MIN, six)))


def relu6_int8(x, params: Relu6Params) -> np.ndarray:
    """``Relu6Quantized<int8_t>``: clamp the raw input to ``[zero, six]``, no rescaling."""
    val = np.asarray(x, dtype=np.int64)
    clamped = np.where(val > params.six, params.six, np.where(val < params.zero, params.zero, val))
    return clamped.astype(np.int8)


# --- ABS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbsParams:
    """The int8 part of ``OpDataAbsRsqrt`` for ABS (``micro/kernels/elementwise.cc``)."""

    input_offset: int
    output_offset: int
    needs_rescale: bool
    multiplier: int
    shift: int


def abs_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> AbsParams:
    """``PrepareAbsRsqrt`` for ABS: a multiplier only when the float32 scales differ."""
    needs_rescale = bool(np.float32(input_scale) != np.float32(output_scale))
    multiplier, shift = (
        quantize_multiplier(_f32_ratio(input_scale, output_scale)) if needs_rescale else (0, 0)
    )
    return AbsParams(
        input_offset=int(input_zero_point),
        output_offset=int(output_zero_point),
        needs_rescale=needs_rescale,
        multiplier=multiplier,
        shift=shift,
    )


def abs_int8(x, params: AbsParams) -> np.ndarray:
    """``AbsEvalQuantized<int8_t>``: ``|x - zero_point|``, requantized if needed."""
    value = np.abs(np.asarray(x, dtype=np.int64) - params.input_offset)
    if params.needs_rescale:
        value = multiply_by_quantized_multiplier(value, params.multiplier, params.shift)
    return _clamp_int8(value + params.output_offset).astype(np.int8)


# --- QUANTIZE (int8 -> int8 requantization) ---------------------------------------------


@dataclass(frozen=True)
class RequantizeParams:
    """What QUANTIZE's prepare computes for an int8 -> int8 requantization."""

    input_zero_point: int
    output_zero_point: int
    effective_scale_multiplier: int
    effective_scale_shift: int


def requantize_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> RequantizeParams:
    """``PrepareQuantizeReference``: ``input_scale / output_scale`` divided in double."""
    multiplier, shift = quantize_multiplier(_f32_ratio(input_scale, output_scale))
    return RequantizeParams(
        input_zero_point=int(input_zero_point),
        output_zero_point=int(output_zero_point),
        effective_scale_multiplier=multiplier,
        effective_scale_shift=shift,
    )


def requantize_int8(x, params: RequantizeParams) -> np.ndarray:
    """``reference_ops::Requantize<int8_t, int8_t>`` (no fast path applies to int8 ->
    int8)."""
    output = (
        multiply_by_quantized_multiplier(
            np.asarray(x, dtype=np.int64) - params.input_zero_point,
            params.effective_scale_multiplier,
            params.effective_scale_shift,
        )
        + params.output_zero_point
    )
    return _clamp_int8(output).astype(np.int8)


# --- ELU --------------------------------------------------------------------------------


def _round_half_away_float32(x: np.ndarray) -> np.ndarray:
    """``std::round`` of float32 values (exact: done in float64)."""
    x = x.astype(np.float64)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def elu_table(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> np.ndarray:
    """ELU's ``PopulateLookupTable<int8_t>`` (``micro/kernels/elu.cc``), in float32:
    ``round(f(scale_in * (q - zp_in)) / scale_out) + zp_out`` with ``f(v) = expf(v) - 1``
    below zero and the identity above, for q = -128 .. 127."""
    val = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64)
    inverse_scale = np.float32(1.0) / np.float32(output_scale)
    dequantized = np.float32(input_scale) * (val - int(input_zero_point)).astype(np.float32)
    # glibc's expf is correctly rounded; a float64 exp rounded once to float32 matches it.
    negative_part = np.minimum(dequantized, np.float32(0.0)).astype(np.float64)
    expm1 = np.exp(negative_part).astype(np.float32) - np.float32(1.0)
    transformed = np.where(dequantized < np.float32(0.0), expm1, dequantized)
    rescaled = _round_half_away_float32((transformed * inverse_scale).astype(np.float32))
    quantized = (rescaled.astype(np.float32) + np.float32(output_zero_point)).astype(np.int64)
    return _clamp_int8(quantized).astype(np.int8)


# --- the table --------------------------------------------------------------------------

#: Ops :func:`lut_table` builds, with the options each takes.
SUPPORTED_OPS: dict[str, tuple[str, ...]] = {
    "LOGISTIC": (),
    "TANH": (),
    "HARD_SWISH": (),
    "LEAKY_RELU": ("alpha",),
    "RELU": (),
    "RELU6": (),
    "ELU": (),
    "ABS": (),
    "QUANTIZE": (),
}

_NOT_IN_TFLM = {
    "RELU_N1_TO_1": "TFLite Micro has no RELU_N1_TO_1 kernel (only as a fused activation)",
    "RELU_0_TO_1": "TFLite Micro has no RELU_0_TO_1 kernel",
    "GELU": "TFLite Micro has no GELU kernel",
    "NEG": "TFLite Micro's NEG has no int8 kernel",
    "RSQRT": "int8 RSQRT is not supported: TFLite Micro fails on inputs below the zero point",
}


def lut_table(
    op: str,
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    dtype: str = "int8",
    **options,
) -> np.ndarray:
    """The 256-entry table of an int8 elementwise op: entry ``i`` is TFLM's output for
    the input value ``-128 + i``.

    ``op`` is the TFLite builtin name (``"LOGISTIC"``, ``"TANH"``, ``"HARD_SWISH"``,
    ``"LEAKY_RELU"`` with option ``alpha``, ``"RELU"``, ``"RELU6"``, ``"ELU"``, ``"ABS"``
    or ``"QUANTIZE"`` for int8 -> int8 requantization).  Scales are the tensors' float32
    scales.  Raises :class:`~tfl2rtl.errors.Tfl2RtlError` for an unsupported op, dtype
    or option, or quantization TFLM itself rejects.
    """
    name = str(op).upper()
    if name not in SUPPORTED_OPS:
        reason = _NOT_IN_TFLM.get(name, "not an int8 elementwise op this tool can tabulate")
        raise Tfl2RtlError(f"{name}: unsupported elementwise op ({reason})")
    if dtype != "int8":
        raise Tfl2RtlError(f"{name}: only int8 tables are supported, not {dtype}")
    unknown = sorted(set(options) - set(SUPPORTED_OPS[name]))
    if unknown:
        raise Tfl2RtlError(f"{name}: unknown option(s) {', '.join(unknown)}")
    if not (input_scale > 0 and output_scale > 0):
        raise Tfl2RtlError(f"{name}: scales must be positive")
    x = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64)
    if name == "LOGISTIC":
        if output_zero_point != INT8_MIN:
            raise Tfl2RtlError(
                f"LOGISTIC: TFLite needs an int8 output zero point of -128, not {output_zero_point}"
            )
        return logistic_int8(x, logistic_params(input_scale, input_zero_point))
    if name == "TANH":
        return tanh_int8(x, tanh_params(input_scale, input_zero_point))
    if name == "HARD_SWISH":
        return hard_swish_int8(
            x,
            hard_swish_params(input_scale, input_zero_point, output_scale, output_zero_point),
        )
    if name == "LEAKY_RELU":
        if "alpha" not in options:
            raise Tfl2RtlError("LEAKY_RELU: needs the option alpha")
        return leaky_relu_int8(
            x,
            leaky_relu_params(
                input_scale, input_zero_point, output_scale, output_zero_point, options["alpha"]
            ),
        )
    if name == "RELU":
        return relu_int8(
            x, relu_params(input_scale, input_zero_point, output_scale, output_zero_point)
        )
    if name == "RELU6":
        return relu6_int8(x, relu6_params(input_scale, input_zero_point))
    if name == "ABS":
        return abs_int8(
            x, abs_params(input_scale, input_zero_point, output_scale, output_zero_point)
        )
    if name == "QUANTIZE":
        return requantize_int8(
            x, requantize_params(input_scale, input_zero_point, output_scale, output_zero_point)
        )
    return elu_table(input_scale, input_zero_point, output_scale, output_zero_point)
