"""int8 arithmetic exactly as XNNPACK computes it inside LiteRT's default delegate.

XNNPACK requantizes in float32 where TFLite's reference kernels use integer fixed point,
and it rounds half to even (``lrintf``, ``cvtps2dq``, the "magic bias" addition) where
TFLite rounds half away from zero.  Every function here names the XNNPACK routine it
reproduces (``src/microparams-init.c``, ``src/subgraph/*.c``, the ``qs8`` micro-kernels
and the reference kernels XNNPACK turns into 256-entry tables).  Each was measured
against ``ai-edge-litert`` 2.3.0 on x86-64 (AVX-512), every element of every tensor; see
the README's "Rounding profiles".

float32 arithmetic is done in numpy float32, whose ``*``, ``/`` and ``+`` are the
correctly rounded IEEE operations C's ``float`` arithmetic performs (x86-64 evaluates
``float`` expressions in single precision, ``FLT_EVAL_METHOD == 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import Tfl2RtlError
from . import libm

__all__ = [
    "INT8_MIN",
    "INT8_MAX",
    "qs8_quantize",
    "activation_range",
    "requantization_scale",
    "fp32_requantize",
    "AddParams",
    "add_params",
    "add_qs8",
    "MeanParams",
    "mean_params",
    "mean_qs8",
    "f32_to_qs8",
    "sigmoid_table",
    "tanh_table",
    "elu_table",
    "LeakyReluParams",
    "leaky_relu_params",
    "leaky_relu_qs8",
]

INT8_MIN = -128
INT8_MAX = 127

_F32 = np.float32


def qs8_quantize(value: float, scale: float, zero_point: int, dtype: str = "int8") -> int:
    """``xnn_qs8_quantize``: ``lrintf(clamp(value / scale + zero_point, -128, 127))``, all
    in float32; ``lrintf`` rounds half to even.  ``value`` may be +-inf.  ``dtype``
    ``"uint8"`` is ``xnn_qu8_quantize``, the same over [0, 255]."""
    info = np.iinfo(dtype)
    with np.errstate(over="ignore"):
        q = _F32(value) / _F32(scale) + _F32(zero_point)
    q = min(max(q, _F32(info.min)), _F32(info.max))
    return int(np.rint(q))


#: The float range of each fused activation, as the XNNPACK delegate's
#: ``ConvertActivationToOutputRange`` gives it.
_ACTIVATION_FLOAT_RANGE = {
    "NONE": (-np.inf, np.inf),
    "RELU": (0.0, np.inf),
    "RELU_N1_TO_1": (-1.0, 1.0),
    "RELU6": (0.0, 6.0),
}


def activation_range(activation: str, output_scale: float,
                     output_zero_point: int, dtype: str = "int8") -> tuple[int, int]:
    """The int8 (or, for a ``qu8`` operator, uint8) clamp of a fused activation: its float
    bounds quantized by :func:`qs8_quantize` (TFLite instead rounds ``bound / scale`` half
    away from zero and adds the zero point as an integer)."""
    try:
        low, high = _ACTIVATION_FLOAT_RANGE[activation]
    except KeyError:
        raise Tfl2RtlError(f"the XNNPACK delegate does not take the fused activation "
                           f"{activation}") from None
    return (qs8_quantize(low, output_scale, output_zero_point, dtype),
            qs8_quantize(high, output_scale, output_zero_point, dtype))


def requantization_scale(input_scale: float, weight_scales, output_scale: float) -> np.ndarray:
    """``init_requantization_scale_qx8_qc8w`` (convolution) and its fully-connected twin:
    ``input_scale * kernel_scale[c] / output_scale`` in float32, left to right.  XNNPACK
    refuses a layer whose scale reaches 256 (LiteRT then runs its builtin kernel)."""
    weight_scales = np.asarray(weight_scales, dtype=_F32).reshape(-1)
    return (_F32(input_scale) * weight_scales) / _F32(output_scale)


def fp32_requantize(acc, scale) -> np.ndarray:
    """The ``fp32`` requantization of XNNPACK's ``qs8``/``qc8w`` GEMM, IGEMM and DWCONV
    micro-kernels, before the output zero point: ``lrintf(float(acc) * scale)``.

    The int32 accumulator is converted to float32 (rounding to nearest even beyond 2**24),
    multiplied by the float32 scale of its channel (last axis) and rounded half to even.
    The kernels clamp in float before converting; clipping at +-2**24 here keeps the
    conversion exact and changes no result after the int8 clamp.
    """
    scaled = np.asarray(acc).astype(_F32) * np.asarray(scale, dtype=_F32)
    return np.rint(np.clip(scaled, -(2.0**24), 2.0**24)).astype(np.int64)


@dataclass(frozen=True)
class AddParams:
    """``xnn_qs8_add_minmax_params``: 21-bit multipliers, a common shift, one bias; the
    output saturates to ``[output_min, output_max]`` (int8, or uint8 for ``qu8``)."""

    a_multiplier: int
    b_multiplier: int
    shift: int
    bias: int
    output_zero_point: int
    output_min: int = INT8_MIN
    output_max: int = INT8_MAX


def add_params(a_scale: float, a_zero_point: int, b_scale: float, b_zero_point: int,
               output_scale: float, output_zero_point: int, dtype: str = "int8") -> AddParams:
    """``xnn_init_qs8_add_minmax_scalar_params`` (``qu8``'s for ``dtype="uint8"``: the
    same multipliers, shift and bias, a uint8 output range).

    The input-to-output scale ratios are float32 divisions.  The shift puts the larger
    ratio's multiplier in [2**20, 2**21): ``shift = 20 - exponent(max ratio)``.  Each
    multiplier is ``lrintf(ratio * 2**shift)`` (half to even); the bias folds in the
    rounding constant ``2**(shift - 1)`` and both zero points.
    """
    a_output_scale = _F32(a_scale) / _F32(output_scale)
    b_output_scale = _F32(b_scale) / _F32(output_scale)
    max_abs_output_scale = max(abs(a_output_scale), abs(b_output_scale))
    max_scale_exponent = int(np.frexp(max_abs_output_scale)[1]) - 1
    shift = 20 - max_scale_exponent
    if not 12 <= shift <= 30:
        raise Tfl2RtlError(f"ADD: input/output scale ratio {max_abs_output_scale:g} is "
                           "outside XNNPACK's range [2**-10, 2**8)")
    a_multiplier = int(np.rint(np.ldexp(a_output_scale, shift)))
    b_multiplier = int(np.rint(np.ldexp(b_output_scale, shift)))
    rounding = 1 << (shift - 1)
    bias = rounding - a_multiplier * int(a_zero_point) - b_multiplier * int(b_zero_point)
    info = np.iinfo(dtype)
    return AddParams(a_multiplier, b_multiplier, shift, bias, int(output_zero_point),
                     int(info.min), int(info.max))


def add_qs8(a, b, params: AddParams) -> np.ndarray:
    """``xnn_qs8_vadd_minmax_ukernel``: ``(bias + a * a_multiplier + b * b_multiplier)``
    shifted right arithmetically (so halves round up), plus the output zero point,
    saturated to the output range.  Broadcasting follows numpy's (XNNPACK's strides are
    the same)."""
    acc = (params.bias + np.asarray(a, np.int64) * params.a_multiplier
           + np.asarray(b, np.int64) * params.b_multiplier)
    return np.clip((acc >> params.shift) + params.output_zero_point, params.output_min,
                   params.output_max)


@dataclass(frozen=True)
class MeanParams:
    """The qs8 MEAN of XNNPACK's ``reduce-nd`` operator: an int32 sum of the raw int8
    values, converted by the reference ``int32 -> qint8`` kernel."""

    scale: np.float32
    output_zero_point: np.float32


def mean_params(input_scale: float, input_zero_point: int, output_scale: float,
                output_zero_point: int, count: int) -> MeanParams:
    """``xnn_init_qs8_reduce_scalar_params`` then ``xnn_update_qs8_reduce_scalar_params``:
    ``scale = (input_scale / output_scale) * (1.0f / count)`` in float32; the input zero
    point moves into a float32 output zero point ``zp_out - (count * zp_in) * scale``."""
    scale = (_F32(input_scale) / _F32(output_scale)) * (_F32(1.0) / _F32(count))
    zero_point = _F32(output_zero_point) - _F32(count * int(input_zero_point)) * scale
    return MeanParams(scale=_F32(scale), output_zero_point=_F32(zero_point))


def mean_qs8(total, params: MeanParams) -> np.ndarray:
    """``quantize<int8>(float(sum) * scale + zero_point)``: XNNPACK's reference
    ``round_float_to_int`` (``nearbyint``, half to even), saturated to int8."""
    value = np.asarray(total).astype(_F32) * params.scale + params.output_zero_point
    return np.clip(np.rint(value), INT8_MIN, INT8_MAX).astype(np.int64)


def f32_to_qs8(x, output_scale: float, output_zero_point: int,
               dtype="int8") -> np.ndarray:
    """``xnn_f32_qs8_vcvt_ukernel`` (QUANTIZE float32 -> int8): ``x * (1.0f / scale)``
    in float32, rounded half to even, plus the zero point, saturated; NaN gives -128
    (``cvtps2dq`` turns it into INT32_MIN).  ``dtype="uint8"`` is the ``qu8`` kernel,
    saturated to [0, 255] (measured on a legacy uint8 model's float32 input)."""
    info = np.iinfo(dtype)
    inv_scale = _F32(1.0) / _F32(output_scale)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.asarray(x, dtype=_F32) * inv_scale
        scaled = np.where(np.isnan(scaled), -(2.0**31), np.clip(scaled, -(2.0**31), 32767))
    return np.clip(np.rint(scaled).astype(np.int64) + int(output_zero_point),
                   info.min, info.max)


def _reference_table(function, input_scale: float, input_zero_point: int,
                     output_scale: float, output_zero_point: int,
                     dtype: str = "int8") -> np.ndarray:
    """``init_lut_op_with_config``: XNNPACK runs its float reference kernel once on every
    int8 (``qu8``: uint8) value and keeps the 256 results as a table (indexed here by
    ``q - min``).  ``dequantize``: ``(float(q) - zero_point) * scale``; ``quantize``:
    ``nearbyint(y * (1.0f / output_scale) + zero_point)`` saturated to the dtype."""
    info = np.iinfo(dtype)
    q = np.arange(info.min, info.max + 1)
    x = (q.astype(_F32) - _F32(input_zero_point)) * _F32(input_scale)
    y = np.asarray(function(x), dtype=_F32)
    value = y * (_F32(1.0) / _F32(output_scale)) + _F32(output_zero_point)
    return np.clip(np.rint(value), info.min, info.max).astype(dtype)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """XNNPACK's reference ``SigmoidOp<float>``: 1 above 100, 0 below -100, else
    ``float(e / (1 + e))`` with ``e = exp(double(x))`` (the C library's ``exp``)."""
    e = libm.exp(np.clip(x, -100, 100).astype(np.float64))  # beyond +-100: replaced below
    y = (e / (1.0 + e)).astype(_F32)
    return np.where(x > 100, _F32(1), np.where(x < -100, _F32(0), y))


def sigmoid_table(input_scale, input_zero_point, output_scale, output_zero_point,
                  dtype="int8"):
    """LOGISTIC: a table from the float reference sigmoid."""
    return _reference_table(_sigmoid, input_scale, input_zero_point, output_scale,
                            output_zero_point, dtype)


def _tanh(x: np.ndarray) -> np.ndarray:
    """XNNPACK's reference ``TanHOp``: ``std::tanh(float)``, the C library's ``tanhf``."""
    return libm.tanhf(x)


def tanh_table(input_scale, input_zero_point, output_scale, output_zero_point,
               dtype="int8"):
    """TANH: a table from the float reference tanh."""
    return _reference_table(_tanh, input_scale, input_zero_point, output_scale,
                            output_zero_point, dtype)


def elu_table(input_scale, input_zero_point, output_scale, output_zero_point):
    """ELU (alpha 1, as the delegate defines it): XNNPACK's reference ``ELUOp``,
    ``x < 0 ? alpha * expm1f(x) : x``."""
    def elu(x):
        return np.where(x < 0, _F32(1.0) * libm.expm1f(x), x).astype(_F32)

    return _reference_table(elu, input_scale, input_zero_point, output_scale,
                            output_zero_point)


@dataclass(frozen=True)
class LeakyReluParams:
    """``xnn_qs8_lrelu_params``: Q8 multipliers for each side of the input zero point."""

    input_zero_point: int
    positive_multiplier: int
    negative_multiplier: int
    output_zero_point: int


def leaky_relu_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int, negative_slope: float) -> LeakyReluParams:
    """``xnn_init_qs8_lrelu_scalar_params``: ``positive_scale = input_scale /
    output_scale`` and ``negative_scale = positive_scale * negative_slope`` in float32,
    each as ``lrintf(256 * scale)``."""
    positive_scale = _F32(input_scale) / _F32(output_scale)
    negative_scale = positive_scale * _F32(negative_slope)
    return LeakyReluParams(
        input_zero_point=int(input_zero_point),
        positive_multiplier=int(np.rint(_F32(256.0) * positive_scale)),
        negative_multiplier=int(np.rint(_F32(256.0) * negative_scale)),
        output_zero_point=int(output_zero_point),
    )


def leaky_relu_qs8(x, params: LeakyReluParams) -> np.ndarray:
    """``xnn_qs8_vlrelu_ukernel``: ``(d * multiplier + 128) >> 8`` with ``d = x - zp_in``
    and the negative multiplier for ``d < 0`` (the AVX2 kernel's ``mulhrs`` on
    ``d << 7`` rounds the same way), plus the output zero point, saturated to int8."""
    d = np.asarray(x, np.int64) - params.input_zero_point
    multiplier = np.where(d < 0, params.negative_multiplier, params.positive_multiplier)
    return np.clip(((d * multiplier + 128) >> 8) + params.output_zero_point,
                   INT8_MIN, INT8_MAX)
