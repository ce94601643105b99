"""The golden model: a numpy interpreter of the IR, bit-exact with a named TFLite runtime.

Each op function reads like TFLite's reference kernel: parameters unpacked by name first,
the loops named after the math (``out_y, out_x, out_channel, filter_y, filter_x,
in_channel``; here the inner ones become matrix products), then the one epilogue: bias,
requantize, output offset, clamp.  The arithmetic that differs between TFLite runtimes
(requantization rounding, activation bounds, ADD, MEAN, softmax, the elementwise tables,
QUANTIZE) is delegated to a :class:`Profile`, so a new profile never touches the loop
structure.  Results always carry their profile's name.  :data:`PROFILES` holds three:
``tflm`` (TensorFlow Lite Micro), ``litert`` (LiteRT's default interpreter: XNNPACK plus
its optimized builtin kernels) and ``litert-ref`` (LiteRT's reference kernels).

Three integer modes run here (``graph.quantization``): int8; legacy uint8, whose weights
carry a zero point (``filter_offset``) and which only LiteRT runs (TFLite Micro has no
uint8 kernels: :meth:`Profile.prepare` refuses a profile that does not apply to the
model's mode); and 16x8, whose int16 layers accumulate in int64 and requantize with
TFLite's int64 ``MultiplyByQuantizedMultiplier`` (one rounding, halves up).

Overflow reasoning: products of 8-bit operands (after adding offsets, |v| <= 255) are
below 2**16 in magnitude, products of an int16 input and an int8 weight below 2**22, and
the widest accumulator of any supported model sums fewer than 2**20 of them, so every
partial sum is an integer below 2**42.  float64 represents such integers exactly, which
lets the convolutions use float64 matrix products (BLAS) and convert back to int64
without loss.  The biases are added in int64 afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ir
from .errors import Tfl2RtlError
from .fixedpoint import (
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_int64,
    wrap_int32,
)

__all__ = ["Profile", "TflmProfile", "LitertProfile", "LitertRefProfile", "PROFILES",
           "get_profile", "profiles_for", "default_profile", "GoldenResult", "run",
           "run_node", "accumulate", "fully_connected", "conv_2d", "depthwise_conv_2d",
           "max_pool_2d", "average_pool_2d", "add", "mean", "concatenation", "pad", "reshape",
           "softmax", "requantize", "quantize", "dequantize", "lut"]


class Profile:
    """The arithmetic of one TFLite runtime.  Subclasses name themselves.

    A profile that derives parameters from the model the way its runtime's ``Prepare``
    step does (float32 scales, tables) returns a copy holding them from :meth:`prepare`;
    :func:`run` always runs the prepared profile.
    """

    name = "profile"
    description = ""
    #: The quantization modes (``graph.quantization``) whose kernels the runtime has.
    modes: tuple[str, ...] = ("int8",)

    def prepare(self, graph: ir.Graph) -> Profile:
        """The profile that runs ``graph`` (``self`` when nothing is derived per model).
        Raises :class:`Tfl2RtlError` when the runtime has no kernels for the graph's
        quantization mode (TFLite Micro and a legacy uint8 model)."""
        self.check_applies(graph)
        return self

    def check_applies(self, graph: ir.Graph) -> None:
        """Refuse, in one line naming the profiles that apply, a graph of a mode this
        profile's runtime does not run."""
        mode = getattr(graph, "quantization", "int8")
        if mode not in self.modes:
            kind = _MODE_KINDS.get(mode, mode)
            raise Tfl2RtlError(
                f"the {self.name} profile does not apply to {graph.source or 'this model'}, "
                f"a {kind} model: {_RUNTIME_NAMES.get(self.name, self.name)} has no "
                f"{kind} kernels; use --profile {' or '.join(profiles_for(graph))}")

    def requantize(self, acc: np.ndarray, requant: ir.Requant) -> np.ndarray:
        """Scale int32 accumulators by ``requant`` (channels along the last axis)."""
        raise NotImplementedError

    def scale_accumulators(self, acc: np.ndarray, node) -> np.ndarray:
        """The epilogue's requantization of a FULLY_CONNECTED / CONV_2D /
        DEPTHWISE_CONV_2D accumulator, before the output offset."""
        return self.requantize(acc, node.requant)

    def activation_range(self, node) -> tuple[int, int]:
        """The clamp of a node's fused activation (``act_min``, ``act_max``)."""
        return node.act_min, node.act_max

    def add(self, node: ir.Add, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def mean(self, node: ir.Mean, temp_sum: np.ndarray) -> np.ndarray:
        """MEAN from the int sum of the raw values, before the int8 clamp."""
        raise NotImplementedError

    def softmax(self, node: ir.Softmax, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def lut_table(self, node: ir.Lut) -> np.ndarray:
        """The 256-entry table of an elementwise op."""
        return node.table

    def quantize(self, node: ir.Quantize, x: np.ndarray, out_dtype) -> np.ndarray:
        """float32 -> integer QUANTIZE, before the clamp to ``out_dtype``."""
        raise NotImplementedError

    def describe(self, node: ir.Node) -> dict:
        """What this profile's arithmetic uses for ``node``, JSON-ready (``inspect``)."""
        return {}


class TflmProfile(Profile):
    """TensorFlow Lite Micro's reference kernels (PyPI ``tflite-micro``): double-rounding
    ``MultiplyByQuantizedMultiplier`` everywhere, gemmlowp fixed-point softmax."""

    name = "tflm"
    description = "TensorFlow Lite Micro reference kernels (integer double rounding)"
    modes = ("int8", "int16x8")

    def requantize(self, acc, requant):
        return multiply_by_quantized_multiplier(wrap_int32(acc), requant.multiplier,
                                                requant.shift)

    def scale_accumulators(self, acc, node):
        """int32 accumulators: double rounding; a 16x8 layer's int64 accumulator:
        ``MultiplyByQuantizedMultiplier(int64_t, ...)`` (16-bit multiplier, one rounding,
        halves up)."""
        if node.accumulator == "int64":
            r = node.requant
            return multiply_by_quantized_multiplier_int64(acc, r.multiplier, r.shift)
        return self.requantize(acc, node.requant)

    def add(self, node, x1, x2):
        shifted1 = (x1.astype(np.int64) + node.input1_offset) * (1 << node.left_shift)
        shifted2 = (x2.astype(np.int64) + node.input2_offset) * (1 << node.left_shift)
        scaled1 = self.requantize(shifted1, node.input1_requant)
        scaled2 = self.requantize(shifted2, node.input2_requant)
        raw_sum = scaled1 + scaled2
        return self.requantize(raw_sum, node.output_requant) + node.output_offset

    def mean(self, node, temp_sum):
        """``reference_ops::QuantizedMeanOrSum``: the sum less ``zero_point * count``,
        scaled by the count-adjusted multiplier, plus the output zero point."""
        shifted_sum = temp_sum - node.input_zero_point * node.count
        return self.requantize(shifted_sum, node.requant) + node.output_zero_point

    def softmax(self, node, x):
        from .kernels.softmax import softmax_int8, softmax_int16

        if np.asarray(x).dtype == np.int16:
            return softmax_int16(x, node.input_multiplier, node.input_left_shift)
        return softmax_int8(x, node.input_multiplier, node.input_left_shift, node.diff_min,
                            out_dtype=np.asarray(x).dtype)

    def describe(self, node):
        if getattr(node, "accumulator", "int32") == "int64":
            return {"runtime": "TFLite Micro reference kernel",
                    "requantization": "int64 accumulator: (acc * ((multiplier + 2^15) >> 16) "
                                      "+ 2^(14 - shift)) >> (15 - shift), one rounding, "
                                      "halves up"}
        if isinstance(node, (ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D, ir.Mean,
                             ir.Requantize)) and not getattr(node, "flip_sign", False):
            return {"runtime": "TFLite Micro reference kernel",
                    "requantization": "integer multiplier and shift, double rounding "
                                      "(each step half away from zero)"}
        if isinstance(node, ir.Add):
            return {"runtime": "TFLite Micro reference kernel",
                    "requantization": "inputs << 20, three integer multipliers, double "
                                      "rounding"}
        if isinstance(node, ir.Softmax):
            return {"runtime": "TFLite Micro reference kernel",
                    "softmax": "gemmlowp fixed point exp and reciprocal"}
        return {"runtime": "TFLite Micro reference kernel"}

    def quantize(self, node, x, out_dtype):
        """``reference_ops::AffineQuantize``: ``round(x / scale)`` in float32, half away
        from zero, plus the zero point."""
        values = (np.asarray(x, np.float32) / np.float32(node.scale)).astype(np.float64)
        magnitude = np.abs(values)
        whole = np.floor(magnitude)
        rounded = np.sign(values) * (whole + (magnitude - whole >= 0.5))
        return rounded.astype(np.int64) + node.zero_point


class LitertRefProfile(TflmProfile):
    """LiteRT with ``OpResolverType.BUILTIN_REF``: TFLite's reference kernels.  They
    compute what TFLite Micro computes except

    * FULLY_CONNECTED, which requantizes in double: ``round(double(acc) * (double(s_in) *
      double(s_w[c]) / double(s_out)))``, rounded half away from zero (int8, legacy uint8
      and 16x8 alike: measured; TFLM's 16x8 layer uses the int64
      ``MultiplyByQuantizedMultiplier`` instead); beyond int32 the result saturates, in a
      16x8 layer it becomes INT32_MIN (x86's double -> int32 conversion);
    * the elementwise ops: LOGISTIC and TANH are tables of float32 functions; LEAKY_RELU,
      HARD_SWISH, RELU, RELU6 and ABS take their multipliers from float32 scale ratios
      (:mod:`tfl2rtl.kernels.litert_builtin`); there is no ELU kernel."""

    name = "litert-ref"
    description = ("LiteRT reference kernels (BUILTIN_REF): as tflm, but FULLY_CONNECTED "
                   "requantizes in double and the elementwise tables follow LiteRT")
    modes = ("int8", "uint8-legacy", "int16x8")

    def __init__(self, tables: dict | None = None):
        self._tables = tables

    def prepare(self, graph):
        from .litert_params import prepare_litert_ref

        self.check_applies(graph)
        return LitertRefProfile(prepare_litert_ref(graph))

    def lut_table(self, node):
        if self._tables is None:
            raise Tfl2RtlError("the litert-ref profile needs its model parameters: use "
                               "golden.run() or PROFILES['litert-ref'].prepare(graph)")
        return _prepared_for(self._tables, node, self.name)

    def describe(self, node):
        from .litert_params import BUILTIN, TABLE_DESCRIPTIONS, span

        if isinstance(node, ir.Lut):
            table = TABLE_DESCRIPTIONS[BUILTIN, node.function]
            return {"runtime": "LiteRT reference kernel", "table": table}
        if not isinstance(node, ir.FullyConnected):
            return {**super().describe(node), "runtime": "LiteRT reference kernel"}
        scale = node.requant.real_scale
        beyond = "INT32_MIN" if node.accumulator == "int64" else "saturates"
        return {"runtime": "LiteRT reference kernel",
                "requantization": "double: round(double(acc) * scale), half away from zero; "
                                  f"beyond int32: {beyond}",
                "scale": span(scale), "per_channel": bool(scale.size > 1)}

    def scale_accumulators(self, acc, node):
        if not isinstance(node, ir.FullyConnected):
            return super().scale_accumulators(acc, node)
        beyond_int32 = "int32_min" if node.accumulator == "int64" else "saturate"
        return _double_requantize(acc, node.requant.real_scale, beyond_int32)


class LitertProfile(Profile):
    """LiteRT's default interpreter (``ai-edge-litert``, ``OpResolverType.AUTO``): the
    XNNPACK delegate runs what it supports in its own arithmetic (float32 requantization
    rounded half to even, see :mod:`tfl2rtl.kernels.xnnpack`); LiteRT's optimized builtin
    kernels run the rest (:mod:`tfl2rtl.kernels.litert_builtin`).

    :meth:`prepare` reads what the IR does not keep (the weights' float32 scales, the
    fused activation, LEAKY_RELU's alpha) from the model file the graph came from, and
    refuses a node LiteRT would hand to a kernel this profile does not model.
    """

    name = "litert"
    description = ("LiteRT default interpreter: XNNPACK delegate (float32 requantization, "
                   "round half to even) plus LiteRT's optimized builtin kernels")
    modes = ("int8", "uint8-legacy", "int16x8")

    def __init__(self, params: dict | None = None):
        self._params = params

    def prepare(self, graph):
        from .litert_params import prepare_litert

        self.check_applies(graph)
        return LitertProfile(prepare_litert(graph))

    def params(self, node):
        """What :meth:`prepare` derived for ``node`` (see :mod:`tfl2rtl.litert_params`)."""
        if self._params is None:
            raise Tfl2RtlError("the litert profile needs its model parameters: use "
                               "golden.run() or PROFILES['litert'].prepare(graph)")
        return _prepared_for(self._params, node, self.name)

    def requantize(self, acc, requant):
        """A QUANTIZE between integers: only the int16 -> int16 one of a 16x8 model gets
        here (:meth:`prepare` refuses the int8 ones it does not model), and LiteRT's
        builtin kernel computes it as the reference does."""
        return PROFILES["tflm"].requantize(acc, requant)

    def scale_accumulators(self, acc, node):
        from .kernels.xnnpack import fp32_requantize

        p = self.params(node)
        if p.reference and isinstance(node, ir.FullyConnected):
            return _double_requantize(acc, node.requant.real_scale, "int32_min")
        if p.reference:
            return PROFILES["tflm"].scale_accumulators(acc, node)
        return fp32_requantize(wrap_int32(acc), p.scale)

    def activation_range(self, node):
        return self.params(node).activation_range

    def add(self, node, x1, x2):
        from .kernels.xnnpack import add_qs8

        p = self.params(node)
        if p.reference:
            return PROFILES["tflm"].add(node, x1, x2)
        return add_qs8(x1, x2, p.add)

    def mean(self, node, temp_sum):
        from .kernels.xnnpack import mean_qs8

        p = self.params(node)
        if p.reference:
            return PROFILES["tflm"].mean(node, temp_sum)
        return mean_qs8(wrap_int32(temp_sum), p.mean)

    def softmax(self, node, x):
        from .kernels.litert_builtin import softmax_int8

        p = self.params(node)
        if p.reference:
            return PROFILES["tflm"].softmax(node, x)
        return softmax_int8(x, p.table, p.output_scale, p.output_zero_point)

    def lut_table(self, node):
        p = self.params(node)
        return p.table if p.table is not None else node.table

    def quantize(self, node, x, out_dtype):
        from .kernels.litert_builtin import quantize_int16
        from .kernels.xnnpack import f32_to_qs8

        if self.params(node).reference:
            return quantize_int16(x, node.scale, node.zero_point)
        return f32_to_qs8(x, node.scale, node.zero_point, dtype=np.dtype(out_dtype).name)

    def describe(self, node):
        from .litert_params import describe_params

        p = self.params(node)
        runtime = "LiteRT builtin kernel"
        if p.reference and isinstance(node, ir.FullyConnected):
            return {"runtime": runtime, "requantization": "double: round(double(acc) * "
                    "scale), half away from zero; beyond int32: INT32_MIN"}
        if p.reference and isinstance(node, ir.Quantize):
            return {"runtime": runtime, "requantization": "blocks of 8: float32 x * (1 / "
                    "scale), half to even; the rest: double x / scale, half away from zero"}
        if p.reference:
            return {**PROFILES["tflm"].describe(node), "runtime": runtime}
        return describe_params(node, p)


def _double_requantize(acc, real_scale, beyond_int32: str = "saturate") -> np.ndarray:
    """``round(double(acc) * real_scale)``, half away from zero, as LiteRT's fully
    connected kernels requantize.  A result beyond int32 saturates (int8 and uint8) or,
    with ``beyond_int32="int32_min"``, becomes INT32_MIN, what x86's double -> int32
    conversion gives (LiteRT's 16x8 kernels, reference and optimized: measured)."""
    scaled = np.asarray(acc, np.float64) * real_scale
    magnitude = np.abs(scaled)
    whole = np.floor(magnitude)  # C's round(): half away from zero, exactly
    rounded = np.sign(scaled) * (whole + (magnitude - whole >= 0.5))
    if beyond_int32 == "int32_min":
        rounded = np.where(np.abs(rounded + 0.5) > 2.0**31, -(2.0**31), rounded)
    return np.clip(rounded, -(2.0**31), 2.0**31 - 1).astype(np.int64)


def _prepared_for(params: dict, node, name: str):
    try:
        return params[node]
    except KeyError:
        raise Tfl2RtlError(f"this {name} profile was prepared for another graph: "
                           f"prepare it for the graph it runs") from None


PROFILES: dict[str, Profile] = {
    "tflm": TflmProfile(),
    "litert": LitertProfile(),
    "litert-ref": LitertRefProfile(),
}

_RUNTIME_NAMES = {"tflm": "TensorFlow Lite Micro", "litert": "LiteRT",
                  "litert-ref": "LiteRT's BUILTIN_REF resolver"}
_MODE_KINDS = {"uint8-legacy": "legacy uint8", "int16x8": "16x8"}


def profiles_for(graph: ir.Graph) -> list[str]:
    """The names of the profiles whose runtime runs ``graph``'s quantization mode."""
    mode = getattr(graph, "quantization", "int8")
    return [name for name, p in PROFILES.items() if mode in p.modes]


def default_profile(graph: ir.Graph) -> str:
    """``tflm`` where it applies; ``litert-ref`` (LiteRT's reference kernels, the same
    integer rounding) for a legacy uint8 model, which TFLite Micro cannot run."""
    names = profiles_for(graph)
    return "tflm" if "tflm" in names else "litert-ref"


def get_profile(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise Tfl2RtlError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}"
        ) from None


def _clamp(values, act_min, act_max, dtype):
    return np.clip(values, act_min, act_max).astype(dtype)


def _epilogue(acc, node, profile: Profile, dtype=np.int8):
    """Bias already added: requantize, add the output offset (an int32 addition that
    wraps, as TFLM's does), clamp to the fused activation's range, store as ``dtype``
    (the output's: int8, uint8 or int16)."""
    scaled = profile.scale_accumulators(acc, node)
    act_min, act_max = profile.activation_range(node)
    return _clamp(wrap_int32(scaled + node.output_offset), act_min, act_max, dtype)


def _padded(x, padding, fill):
    top, left, bottom, right = padding
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)


def _windows(x, out_hw, filter_hw, stride, dilation):
    """Yield ``(filter_y, filter_x, patch)`` with ``patch[b, out_y, out_x, c] =
    x[b, out_y * stride_h + filter_y * dilation_h, out_x * stride_w + filter_x * dilation_w,
    c]``."""
    out_h, out_w = out_hw
    for filter_y in range(filter_hw[0]):
        for filter_x in range(filter_hw[1]):
            in_y = filter_y * dilation[0]
            in_x = filter_x * dilation[1]
            patch = x[:, in_y : in_y + (out_h - 1) * stride[0] + 1 : stride[0],
                      in_x : in_x + (out_w - 1) * stride[1] + 1 : stride[1], :]
            yield filter_y, filter_x, patch


def accumulate(node: ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D, x: np.ndarray,
               folded: bool = False) -> np.ndarray:
    """The int64 accumulators of a weighted node, before the epilogue.

    ``folded=False`` is the reference form ``bias + sum((x + input_offset) * w)``;
    ``folded=True`` is the hardware form ``folded_bias + sum(x * w)``; ``w`` is
    ``weights + filter_offset`` in both.  Padded positions
    hold the input zero point in both, so both give the same integers.
    """
    bias, offset = (node.folded_bias, 0) if folded else (node.bias, node.input_offset)
    fill = -node.input_offset + offset
    if isinstance(node, ir.FullyConnected):
        return _fully_connected_acc(node, x, bias, offset)
    if isinstance(node, ir.Conv2D):
        return _conv_acc(node, x, bias, offset, fill)
    return _depthwise_acc(node, x, bias, offset, fill)


def _fully_connected_acc(node, x, bias_data, input_offset):
    filter_data = node.offset_weights
    out_depth, accum_depth = filter_data.shape
    input_data = x.reshape(-1, accum_depth).astype(np.float64) + input_offset
    # acc[batch, out_c] = bias[out_c] + sum over d of (input[batch, d] + input_offset)
    #                                                  * filter[out_c, d]
    return (input_data @ filter_data.T.astype(np.float64)).astype(np.int64) + bias_data


def _conv_acc(node, x, bias_data, input_offset, fill):
    filter_data = node.offset_weights
    out_channels, filter_h, filter_w, in_channels = filter_data.shape
    input_data = _padded(x.astype(np.float64) + input_offset, node.padding, fill)
    acc = np.zeros((x.shape[0], *node.out_hw, out_channels), np.float64)
    for filter_y, filter_x, patch in _windows(input_data, node.out_hw, (filter_h, filter_w),
                                              node.stride, node.dilation):
        # acc[..., out_c] += sum over in_c of patch[..., in_c] * filter[out_c, fy, fx, in_c]
        acc += patch @ filter_data[:, filter_y, filter_x, :].T.astype(np.float64)
    return acc.astype(np.int64) + bias_data


def _depthwise_acc(node, x, bias_data, input_offset, fill):
    filter_data = node.offset_weights
    filter_h, filter_w, _ = filter_data.shape
    input_data = _padded(x.astype(np.int64) + input_offset, node.padding, fill)
    input_data = np.repeat(input_data, node.depth_multiplier, axis=3)
    acc = np.zeros((x.shape[0], *node.out_hw, filter_data.shape[2]), np.int64)
    for filter_y, filter_x, patch in _windows(input_data, node.out_hw, (filter_h, filter_w),
                                              node.stride, node.dilation):
        # acc[..., in_c * depth_multiplier + m] += patch[..., in_c] * filter[fy, fx, same]
        acc += patch * filter_data[filter_y, filter_x, :]
    return acc + bias_data


def fully_connected(node: ir.FullyConnected, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::FullyConnected`` (int16 input: its ``AccumScalar`` int64
    template; legacy uint8: ``reference_ops::FullyConnected`` with the weights' offset):
    x is read as ``[batches, accum_depth]``; the output keeps x's dtype."""
    return _epilogue(accumulate(node, x), node, profile or PROFILES["tflm"], x.dtype)


def conv_2d(node: ir.Conv2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::ConvPerChannel`` (int16: the int64 ``AccumScalar``
    variant; legacy uint8: ``reference_ops::Conv``).  Padded positions add nothing, which
    is what an offset input of 0 (a raw input equal to the zero point) contributes."""
    return _epilogue(accumulate(node, x), node, profile or PROFILES["tflm"], x.dtype)


def depthwise_conv_2d(node: ir.DepthwiseConv2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::DepthwiseConvPerChannel`` (int16 and uint8 as conv_2d):
    output channel ``in_channel * depth_multiplier + m`` reads input channel
    ``in_channel``."""
    return _epilogue(accumulate(node, x), node, profile or PROFILES["tflm"], x.dtype)


def _out_hw(node, x):
    top, left, bottom, right = node.padding
    h = (x.shape[1] + top + bottom - node.filter[0]) // node.stride[0] + 1
    w = (x.shape[2] + left + right - node.filter[1]) // node.stride[1] + 1
    return h, w


def max_pool_2d(node: ir.MaxPool2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::MaxPool``: the maximum over the in-bounds window, clamped."""
    profile = profile or PROFILES["tflm"]
    lowest = np.iinfo(np.int64).min
    input_data = _padded(x.astype(np.int64), node.padding, lowest)
    out = np.full((x.shape[0], *_out_hw(node, x), x.shape[3]), lowest, np.int64)
    for _, _, patch in _windows(input_data, out.shape[1:3], node.filter, node.stride, (1, 1)):
        out = np.maximum(out, patch)
    act_min, act_max = profile.activation_range(node)
    return _clamp(out, act_min, act_max, x.dtype)


def average_pool_2d(node: ir.AveragePool2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::AveragePool``: the sum over the in-bounds window divided by
    the number of in-bounds positions, rounded half away from zero in C division."""
    profile = profile or PROFILES["tflm"]
    input_data = _padded(x.astype(np.int64), node.padding, 0)
    inside = _padded(np.ones((1, *x.shape[1:3], 1), np.int64), node.padding, 0)
    out_hw = _out_hw(node, x)
    acc = np.zeros((x.shape[0], *out_hw, x.shape[3]), np.int64)
    filter_count = np.zeros((1, *out_hw, 1), np.int64)
    for (_, _, patch), (_, _, count) in zip(
        _windows(input_data, out_hw, node.filter, node.stride, (1, 1)),
        _windows(inside, out_hw, node.filter, node.stride, (1, 1)), strict=True,
    ):
        acc += patch
        filter_count += count
    half = filter_count // 2
    magnitude = (np.abs(acc) + half) // filter_count
    average = np.where(acc > 0, magnitude, -magnitude)
    act_min, act_max = profile.activation_range(node)
    return _clamp(average, act_min, act_max, x.dtype)


def add(node: ir.Add, x1: np.ndarray, x2: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::Add`` with broadcasting (int16: ``reference_ops::Add``'s
    general-scale path, the same steps with ``left_shift`` 15); arithmetic from the
    profile; the output keeps x1's dtype."""
    profile = profile or PROFILES["tflm"]
    x1 = np.asarray(x1)
    raw_output = profile.add(node, x1, np.asarray(x2))
    act_min, act_max = profile.activation_range(node)
    return _clamp(raw_output, act_min, act_max, x1.dtype)


def mean(node: ir.Mean, x: np.ndarray, profile: Profile = None):
    """``reference_ops::QuantizedMeanOrSum`` (mean): the int32 sum over the axes, turned
    into the output by the profile (TFLM: less ``zero_point * count``, scaled by the
    count-adjusted multiplier, offset), clamped."""
    profile = profile or PROFILES["tflm"]
    temp_sum = x.astype(np.int64).sum(axis=node.axes)
    output = profile.mean(node, temp_sum)
    info = np.iinfo(x.dtype)  # int8, or int16 in a 16x8 model
    return _clamp(output, info.min, info.max, x.dtype)


def concatenation(node: ir.Concatenation, *xs: np.ndarray, profile: Profile = None):
    return np.concatenate(xs, axis=node.axis)


def pad(node: ir.Pad, x: np.ndarray, profile: Profile = None):
    return np.pad(x, node.paddings, constant_values=node.pad_value).astype(x.dtype)


def reshape(node: ir.Reshape, x: np.ndarray, profile: Profile = None):
    return x.reshape(node.shape)


def transpose(node: ir.Transpose, x: np.ndarray, profile: Profile = None):
    """``reference_ops::Transpose``: output axis ``i`` is input axis ``perm[i]``, the values
    copied unchanged."""
    return np.transpose(x, node.perm)


def softmax(node: ir.Softmax, x: np.ndarray, profile: Profile = None):
    profile = profile or PROFILES["tflm"]
    return profile.softmax(node, x).astype(x.dtype)


def requantize(node: ir.Requantize, x: np.ndarray, out_dtype, profile: Profile = None):
    """``reference_ops::Requantize``; a same-scale int8<->uint8 move is ``x ^ 0x80``."""
    profile = profile or PROFILES["tflm"]
    if node.flip_sign:
        return (x.view(np.uint8) ^ 0x80).view(out_dtype)
    info = np.iinfo(out_dtype)
    scaled = profile.requantize(x.astype(np.int64) - node.input_zero_point, node.requant)
    return _clamp(scaled + node.output_zero_point, info.min, info.max, out_dtype)


def quantize(node: ir.Quantize, x: np.ndarray, out_dtype, profile: Profile = None):
    """float32 -> integer: ``round(x / scale) + zero_point`` as the profile rounds it,
    clamped to ``out_dtype``."""
    profile = profile or PROFILES["tflm"]
    info = np.iinfo(out_dtype)
    return _clamp(profile.quantize(node, x, out_dtype), info.min, info.max, out_dtype)


def dequantize(node: ir.Dequantize, x: np.ndarray, profile: Profile = None):
    """``reference_ops::Dequantize``: ``float(double(scale) * (q - zero_point))``."""
    return (np.float64(node.scale) * (x.astype(np.int64) - node.zero_point)).astype(np.float32)


def lut(node: ir.Lut, x: np.ndarray, profile: Profile = None):
    """An elementwise op as the profile's 256-entry table, indexed by ``q - qmin``."""
    table = (profile or PROFILES["tflm"]).lut_table(node)
    qmin = np.iinfo(x.dtype).min
    return table[x.astype(np.int64) - qmin].astype(x.dtype)


#: The kernel of each node type, called as ``kernel(node, inputs, out_dtype, profile)``.
_KERNELS = {
    ir.FullyConnected: lambda n, xs, dt, p: fully_connected(n, xs[0], p),
    ir.Conv2D: lambda n, xs, dt, p: conv_2d(n, xs[0], p),
    ir.DepthwiseConv2D: lambda n, xs, dt, p: depthwise_conv_2d(n, xs[0], p),
    ir.MaxPool2D: lambda n, xs, dt, p: max_pool_2d(n, xs[0], p),
    ir.AveragePool2D: lambda n, xs, dt, p: average_pool_2d(n, xs[0], p),
    ir.Add: lambda n, xs, dt, p: add(n, xs[0], xs[1], p),
    ir.Mean: lambda n, xs, dt, p: mean(n, xs[0], p),
    ir.Concatenation: lambda n, xs, dt, p: concatenation(n, *xs),
    ir.Pad: lambda n, xs, dt, p: pad(n, xs[0]),
    ir.Reshape: lambda n, xs, dt, p: xs[0],
    ir.Transpose: lambda n, xs, dt, p: transpose(n, xs[0]),
    ir.HostEdge: lambda n, xs, dt, p: xs[0],
    ir.Softmax: lambda n, xs, dt, p: softmax(n, xs[0], p),
    ir.Requantize: lambda n, xs, dt, p: requantize(n, xs[0], dt, p),
    ir.Quantize: lambda n, xs, dt, p: quantize(n, xs[0], dt, p),
    ir.Dequantize: lambda n, xs, dt, p: dequantize(n, xs[0]),
    ir.Lut: lambda n, xs, dt, p: lut(n, xs[0], p),
}


def run_node(node: ir.Node, inputs: list[np.ndarray], out: ir.Tensor,
             profile: Profile) -> np.ndarray:
    """Compute one node; ``inputs`` are arrays shaped like the model's tensors."""
    kernel = _KERNELS.get(type(node))
    if kernel is None:
        raise Tfl2RtlError(f"the golden model has no kernel for {node.op}")
    out_dtype = np.dtype(out.dtype)
    result = kernel(node, inputs, out_dtype, profile)
    return np.asarray(result).reshape(out.shape).astype(out_dtype, copy=False)


@dataclass
class GoldenResult:
    """Every tensor the golden model computed, by name, and the profile that made them."""

    profile: str
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: list[np.ndarray] = field(default_factory=list)


def run(graph: ir.Graph, inputs, profile: str | Profile | None = None) -> GoldenResult:
    """Run the graph on ``inputs`` (one array per graph input, shaped and typed as the
    model's input tensors) and return every intermediate tensor.

    ``profile`` is a name in :data:`PROFILES` (default :func:`default_profile`: ``tflm``,
    or ``litert-ref`` for a legacy uint8 model) or a profile already prepared for this
    graph (``PROFILES[name].prepare(graph)``, which saves re-deriving its parameters when
    the same graph runs many times)."""
    profile = profile or default_profile(graph)
    prof = get_profile(profile)
    if isinstance(profile, str):
        prof = prof.prepare(graph)
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if len(inputs) != len(graph.inputs):
        raise Tfl2RtlError(f"the model takes {len(graph.inputs)} inputs, {len(inputs)} given")
    values: dict[str, np.ndarray] = {}
    for name, x in zip(graph.inputs, inputs, strict=True):
        t = graph.tensors[name]
        x = np.asarray(x)
        if x.size != t.size:
            raise Tfl2RtlError(
                f"input {name!r} needs {t.size} elements (shape {t.shape}), got shape {x.shape}"
            )
        if x.dtype != np.dtype(t.dtype):
            raise Tfl2RtlError(f"input {name!r} must be {t.dtype}, got {x.dtype}")
        values[name] = x.reshape(t.shape)
    for node in graph.nodes:
        args = []
        for name in node.inputs:
            if name not in values:
                values[name] = _constant(graph, name)
            args.append(values[name])
        values[node.output] = run_node(node, args, graph.tensors[node.output], prof)
    return GoldenResult(profile=prof.name, tensors=values,
                        outputs=[values[n] for n in graph.outputs])


def _constant(graph: ir.Graph, name: str) -> np.ndarray:
    data = graph.tensors[name].data
    if data is None:
        raise Tfl2RtlError(f"tensor {name!r} is read before it is computed")
    return data
