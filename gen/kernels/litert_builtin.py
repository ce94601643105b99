"""The int8 kernels LiteRT's default interpreter runs itself, outside XNNPACK.

The XNNPACK delegate takes only float AVERAGE_POOL_2D, SOFTMAX and HARD_SWISH; for int8
tensors LiteRT runs its ``kGenericOptimized`` builtin kernels (``tflite/kernels/*.cc``
with ``internal/optimized/``).  Where they compute what TFLite Micro computes (AVERAGE_POOL_2D
rounds ``(sum +- count/2) / count`` like the reference; the uint8<->int8 QUANTIZE at the
edges is the same ``x ^ 0x80``) the TFLM code is reused; the two that differ are here:

* SOFTMAX: a float32 table of ``exp`` (``PopulateSoftmaxLookupTable``) instead of
  gemmlowp fixed point.
* HARD_SWISH: the reference integer kernel on x86 (the NEON path is ARM-only), but its
  multipliers come from float32 ratios of the scales, where TFLite Micro divides in double.
* LEAKY_RELU (when XNNPACK refuses its scales): the reference integer kernel with float32
  ratios.
* RELU and RELU6 (``QuantizedReluX``): a requantization, unlike TFLite Micro's RELU6,
  with a float32 scale ratio and bounds rounded with ``roundf``; ABS with a float32 ratio.
* LOGISTIC and TANH, which LiteRT's own kernels (not XNNPACK) compute as a table of a
  float32 function: used by the ``litert-ref`` profile (and, over 0..255, for a legacy
  uint8 model).
* QUANTIZE float32 -> int16 at a 16x8 model's input (XNNPACK takes no int16 operator):
  :func:`quantize_int16`, whose vector and scalar paths round differently.
"""

from __future__ import annotations

import numpy as np

from ..errors import Tfl2RtlError
from ..fixedpoint import down_scale_int32_to_int16_multiplier, quantize_multiplier
from . import libm
from .elementwise import HardSwishParams

__all__ = ["softmax_lookup_table", "softmax_int8", "hard_swish_params", "lut_populate_int8",
           "logistic_table", "tanh_table", "leaky_relu_params", "relu_int8",
           "abs_params", "quantize_int16"]

_F32 = np.float32


def softmax_lookup_table(input_scale: float, beta: float) -> np.ndarray:
    """``optimized_ops::PopulateSoftmaxLookupTable``:
    ``table[255 - val] = expf((-input_scale * beta) * val)`` for val in 0..255, float32.

    ``expf`` is the C library's (:mod:`tfl2rtl.kernels.libm`).
    """
    scale = -_F32(input_scale) * _F32(beta)
    val = np.arange(256)
    table = np.empty(256, _F32)
    table[255 - val] = _expf(scale * val.astype(_F32))
    return table


def softmax_int8(x, table: np.ndarray, output_scale: float, output_zero_point: int) -> np.ndarray:
    """``optimized_ops::Softmax<int8_t, int8_t>`` over the last axis (``<uint8_t,
    uint8_t>`` for a uint8 ``x``: the same table indexed by ``255 - max + x``, clamped to
    uint8).

    Per row: ``table_offset = &table[255 - max]`` so that ``table_offset[x] =
    exp(-input_scale * beta * (max - x))``; the float32 sum of those, accumulated left to
    right; ``inv_sum_exp = 1.0f / (sum_exp * output_scale)``; each output
    ``round(table_offset[x] * inv_sum_exp) + zero_point`` (``std::round``: half away from
    zero), clamped to int8.
    """
    input_data = np.asarray(x).astype(np.int64)
    if input_data.ndim == 0:
        raise Tfl2RtlError("SOFTMAX: the input needs at least one dimension")
    max_val = input_data.max(axis=-1, keepdims=True)
    exps = table[255 - max_val + input_data]
    # A sequential float32 sum, as the C++ loop does (numpy's sum would be pairwise).
    sum_exp = np.add.accumulate(exps, axis=-1, dtype=_F32)[..., -1:]
    inv_sum_exp = _F32(1.0) / (sum_exp * _F32(output_scale))
    prob_rescaled = (exps * inv_sum_exp).astype(np.float64)
    prob_rnd = np.sign(prob_rescaled) * np.floor(np.abs(prob_rescaled) + 0.5)
    info = np.iinfo(np.asarray(x).dtype if np.asarray(x).dtype == np.uint8 else np.int8)
    return np.clip(prob_rnd.astype(np.int64) + int(output_zero_point), info.min, info.max)


def hard_swish_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int) -> HardSwishParams:
    """LiteRT's ``HardSwishPrepare``: the same parameters as TFLite Micro's, but
    ``hires_input_scale / output_scale`` and ``hires_input_scale / (3 / 32768)`` are
    float32 divisions before ``QuantizeMultiplier``."""
    hires_input_scale = _F32(1.0 / 128.0) * _F32(input_scale)
    reluish_scale = _F32(3.0) / _F32(32768.0)
    output_multiplier = hires_input_scale / _F32(output_scale)
    output_fixed, output_exponent = quantize_multiplier(float(output_multiplier))
    if output_exponent > 0:
        raise Tfl2RtlError("HARD_SWISH: input_scale / (128 * output_scale) must be below 1 "
                           f"for LiteRT (got {float(output_multiplier):g})")
    reluish_multiplier = hires_input_scale / reluish_scale
    reluish_fixed, reluish_exponent = quantize_multiplier(float(reluish_multiplier))
    return HardSwishParams(
        input_zero_point=int(input_zero_point),
        output_zero_point=int(output_zero_point),
        reluish_multiplier_fixedpoint_int16=down_scale_int32_to_int16_multiplier(reluish_fixed),
        reluish_multiplier_exponent=reluish_exponent,
        output_multiplier_fixedpoint_int16=down_scale_int32_to_int16_multiplier(output_fixed),
        output_multiplier_exponent=output_exponent,
    )


def lut_populate_int8(transform, input_scale: float, input_zero_point: int,
                      output_scale: float, output_zero_point: int,
                      dtype: str = "int8") -> np.ndarray:
    """``LUTPopulateInt8``: LiteRT's int8 LOGISTIC and TANH (reference and optimized
    kernels alike) are a table of a float32 function.  ``dequantized = input_scale *
    (val - zero_point)`` in float32, ``round(transformed * (1 / output_scale))`` half away
    from zero, plus the zero point, clamped; indexed here by ``val - min``.  ``dtype``
    ``"uint8"`` is the same template over 0..255 (``LUTPopulate<uint8_t>``)."""
    info = np.iinfo(dtype)
    val = np.arange(info.min, info.max + 1)
    dequantized = _F32(input_scale) * (val - int(input_zero_point)).astype(_F32)
    transformed = np.asarray(transform(dequantized), _F32)
    scaled = (transformed * (_F32(1.0) / _F32(output_scale))).astype(np.float64)
    rescaled = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # TfLiteRound
    return np.clip(rescaled.astype(np.int64) + int(output_zero_point), info.min,
                   info.max).astype(dtype)


def _expf(x: np.ndarray) -> np.ndarray:
    return libm.expf(x)


def logistic_table(input_scale, input_zero_point, output_scale, output_zero_point,
                   dtype="int8"):
    """LOGISTIC: ``1.0f / (1.0f + std::exp(-value))`` in float32."""
    return lut_populate_int8(lambda v: _F32(1.0) / (_F32(1.0) + _expf(-v)), input_scale,
                             input_zero_point, output_scale, output_zero_point, dtype)


def tanh_table(input_scale, input_zero_point, output_scale, output_zero_point,
               dtype="int8"):
    """TANH: ``std::tanh(float)``, the C library's ``tanhf``."""
    return lut_populate_int8(libm.tanhf, input_scale, input_zero_point, output_scale,
                             output_zero_point, dtype)


def leaky_relu_params(input_scale: float, input_zero_point: int, output_scale: float,
                      output_zero_point: int, alpha: float):
    """LiteRT's ``LeakyReluPrepare``: ``input_scale * alpha / output_scale`` and
    ``input_scale / output_scale`` are float32 expressions (TFLite Micro evaluates them in
    double) before ``QuantizeMultiplier``; the kernel is ``reference_ops::QuantizeLeakyRelu``."""
    from .elementwise import LeakyReluParams

    alpha_multiplier = (_F32(input_scale) * _F32(alpha)) / _F32(output_scale)
    identity_multiplier = _F32(input_scale) / _F32(output_scale)
    output_multiplier_alpha, output_shift_alpha = quantize_multiplier(float(alpha_multiplier))
    output_multiplier_identity, output_shift_identity = quantize_multiplier(
        float(identity_multiplier))
    return LeakyReluParams(
        input_offset=int(input_zero_point),
        output_offset=int(output_zero_point),
        output_multiplier_alpha=output_multiplier_alpha,
        output_shift_alpha=output_shift_alpha,
        output_multiplier_identity=output_multiplier_identity,
        output_shift_identity=output_shift_identity,
    )


def relu_int8(x, input_scale: float, input_zero_point: int, output_scale: float,
              output_zero_point: int, act_max: float = float("inf")) -> np.ndarray:
    """``QuantizedReluX`` with ``reference_ops::ReluX`` (RELU: ``act_max`` inf, RELU6: 6).

    ``ReluPrepare`` quantizes ``input_scale / output_scale`` (a float32 division); the
    bounds are ``zero_point + roundf(act / output_scale)`` (float32, half away from zero)
    within int8; each value is ``zero_point + MultiplyByQuantizedMultiplier(x - zp_in)``,
    clamped."""
    from ..fixedpoint import multiply_by_quantized_multiplier

    multiplier, shift = quantize_multiplier(float(_F32(input_scale) / _F32(output_scale)))

    def bound(act: float) -> int:
        q = float(_F32(act) / _F32(output_scale))
        return int(output_zero_point) + int(np.sign(q) * np.floor(abs(q) + 0.5))

    act_min = max(-128, bound(0.0))
    act_max = 127 if np.isinf(act_max) else min(127, bound(act_max))
    scaled = multiply_by_quantized_multiplier(np.asarray(x, np.int64) - int(input_zero_point),
                                              multiplier, shift)
    return np.clip(int(output_zero_point) + scaled, act_min, act_max).astype(np.int8)


def abs_params(input_scale: float, input_zero_point: int, output_scale: float,
               output_zero_point: int):
    """LiteRT's ABS prepare: a multiplier only when the float32 scales differ, from the
    float32 ratio ``input_scale / output_scale``; the kernel is TFLite Micro's."""
    from .elementwise import AbsParams

    needs_rescale = bool(_F32(input_scale) != _F32(output_scale))
    multiplier, shift = (quantize_multiplier(float(_F32(input_scale) / _F32(output_scale)))
                         if needs_rescale else (0, 0))
    return AbsParams(input_offset=int(input_zero_point), output_offset=int(output_zero_point),
                     needs_rescale=needs_rescale, multiplier=multiplier, shift=shift)


def quantize_int16(x, output_scale: float, output_zero_point: int) -> np.ndarray:
    """LiteRT's optimized QUANTIZE float32 -> int16 (the input edge of a 16x8 model), over
    the flattened tensor: a vector loop over whole blocks of 8 values computes ``x *
    (1.0f / scale)`` in float32 rounded half to even; the last ``size % 8`` values take
    the scalar path, ``round(double(x) / double(scale))`` half away from zero.  Both add
    the zero point and saturate to int16 (measured on sizes 5 to 40; TFLite Micro
    divides in float32 and rounds half away from zero everywhere)."""
    values = np.asarray(x, dtype=_F32)
    flat = values.reshape(-1)
    vector = flat.size - flat.size % 8
    inv_scale = _F32(1.0) / _F32(output_scale)
    with np.errstate(over="ignore", invalid="ignore"):
        head = np.rint(np.clip(flat[:vector] * inv_scale, -(2.0**31), 2.0**31))
        tail = flat[vector:].astype(np.float64) / float(np.float64(_F32(output_scale)))
        tail = np.sign(tail) * np.floor(np.abs(tail) + 0.5)
    rounded = np.nan_to_num(np.concatenate([head, tail]), nan=-(2.0**31))
    rounded = np.clip(rounded, -(2.0**31), 2.0**31).astype(np.int64)
    return np.clip(rounded + int(output_zero_point), -32768, 32767).reshape(values.shape)
