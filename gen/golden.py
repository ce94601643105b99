"""The golden model: a numpy interpreter of the IR, bit-exact with a named TFLite runtime.

Each op function reads like TFLite's reference kernel: parameters unpacked by name first,
the loops named after the math (``out_y, out_x, out_channel, filter_y, filter_x,
in_channel``; here the inner ones become matrix products), then the one epilogue: bias,
requantize, output offset, clamp.  The arithmetic that differs between TFLite runtimes
(requantization rounding, ADD, softmax) is delegated to a :class:`Profile`, so a new
profile never touches the loop structure.  Results always carry their profile's name.

Overflow reasoning: products of int8 operands (after adding offsets, |v| <= 255) are
below 2**16 in magnitude and the widest accumulator of any supported model sums fewer
than 2**20 of them, so every partial sum is an integer below 2**36.  float64 represents
such integers exactly, which lets the convolutions use float64 matrix products (BLAS)
and convert back to int64 without loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ir
from .errors import Tfl2RtlError
from .fixedpoint import (
    multiply_by_quantized_multiplier,
    wrap_int32,
)

__all__ = ["Profile", "TflmProfile", "PROFILES", "get_profile", "GoldenResult", "run",
           "run_node", "accumulate", "fully_connected", "conv_2d", "depthwise_conv_2d",
           "max_pool_2d", "average_pool_2d", "add", "mean", "concatenation", "pad", "reshape",
           "softmax", "requantize", "quantize", "dequantize", "lut"]


class Profile:
    """The arithmetic of one TFLite runtime.  Subclasses name themselves."""

    name = "profile"
    description = ""

    def requantize(self, acc: np.ndarray, requant: ir.Requant, channel_axis: int = -1):
        """Scale int32 accumulators by ``requant`` (channels along the last axis)."""
        raise NotImplementedError

    def add(self, node: ir.Add, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def softmax(self, node: ir.Softmax, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TflmProfile(Profile):
    """TensorFlow Lite Micro's reference kernels (PyPI ``tflite-micro``): double-rounding
    ``MultiplyByQuantizedMultiplier`` everywhere, gemmlowp fixed-point softmax."""

    name = "tflm"
    description = "TensorFlow Lite Micro reference kernels (integer double rounding)"

    def requantize(self, acc, requant):
        return multiply_by_quantized_multiplier(wrap_int32(acc), requant.multiplier,
                                                requant.shift)

    def add(self, node, x1, x2):
        shifted1 = (x1.astype(np.int64) + node.input1_offset) * (1 << node.left_shift)
        shifted2 = (x2.astype(np.int64) + node.input2_offset) * (1 << node.left_shift)
        scaled1 = self.requantize(shifted1, node.input1_requant)
        scaled2 = self.requantize(shifted2, node.input2_requant)
        raw_sum = scaled1 + scaled2
        return self.requantize(raw_sum, node.output_requant) + node.output_offset

    def softmax(self, node, x):
        from .kernels.softmax import softmax_int8

        return softmax_int8(x, node.input_multiplier, node.input_left_shift, node.diff_min)


PROFILES: dict[str, Profile] = {"tflm": TflmProfile()}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise Tfl2RtlError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}"
        ) from None


def _clamp(values, act_min, act_max, dtype):
    return np.clip(values, act_min, act_max).astype(dtype)


def _epilogue(acc, node, profile: Profile, dtype=np.int8):
    """Bias already added: requantize, add the output offset (an int32 addition that
    wraps, as TFLM's does), clamp."""
    scaled = profile.requantize(acc, node.requant)
    return _clamp(wrap_int32(scaled + node.output_offset), node.act_min, node.act_max, dtype)


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
    ``folded=True`` is the hardware form ``folded_bias + sum(x * w)``.  Padded positions
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
    filter_data = node.weights
    out_depth, accum_depth = filter_data.shape
    input_data = x.reshape(-1, accum_depth).astype(np.float64) + input_offset
    # acc[batch, out_c] = bias[out_c] + sum over d of (input[batch, d] + input_offset)
    #                                                  * filter[out_c, d]
    return (input_data @ filter_data.T.astype(np.float64)).astype(np.int64) + bias_data


def _conv_acc(node, x, bias_data, input_offset, fill):
    filter_data = node.weights
    out_channels, filter_h, filter_w, in_channels = filter_data.shape
    input_data = _padded(x.astype(np.float64) + input_offset, node.padding, fill)
    acc = np.zeros((x.shape[0], *node.out_hw, out_channels), np.float64)
    for filter_y, filter_x, patch in _windows(input_data, node.out_hw, (filter_h, filter_w),
                                              node.stride, node.dilation):
        # acc[..., out_c] += sum over in_c of patch[..., in_c] * filter[out_c, fy, fx, in_c]
        acc += patch @ filter_data[:, filter_y, filter_x, :].T.astype(np.float64)
    return acc.astype(np.int64) + bias_data


def _depthwise_acc(node, x, bias_data, input_offset, fill):
    filter_data = node.weights
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
    """``reference_integer_ops::FullyConnected``: x is read as ``[batches, accum_depth]``."""
    return _epilogue(accumulate(node, x), node, profile or PROFILES["tflm"])


def conv_2d(node: ir.Conv2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::ConvPerChannel``.  Padded positions add nothing, which is
    what an offset input of 0 (a raw input equal to the zero point) contributes."""
    return _epilogue(accumulate(node, x), node, profile or PROFILES["tflm"])


def depthwise_conv_2d(node: ir.DepthwiseConv2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::DepthwiseConvPerChannel``: output channel
    ``in_channel * depth_multiplier + m`` reads input channel ``in_channel``."""
    return _epilogue(accumulate(node, x), node, profile or PROFILES["tflm"])


def _out_hw(node, x):
    top, left, bottom, right = node.padding
    h = (x.shape[1] + top + bottom - node.filter[0]) // node.stride[0] + 1
    w = (x.shape[2] + left + right - node.filter[1]) // node.stride[1] + 1
    return h, w


def max_pool_2d(node: ir.MaxPool2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::MaxPool``: the maximum over the in-bounds window, clamped."""
    lowest = np.iinfo(np.int64).min
    input_data = _padded(x.astype(np.int64), node.padding, lowest)
    out = np.full((x.shape[0], *_out_hw(node, x), x.shape[3]), lowest, np.int64)
    for _, _, patch in _windows(input_data, out.shape[1:3], node.filter, node.stride, (1, 1)):
        out = np.maximum(out, patch)
    return _clamp(out, node.act_min, node.act_max, x.dtype)


def average_pool_2d(node: ir.AveragePool2D, x: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::AveragePool``: the sum over the in-bounds window divided by
    the number of in-bounds positions, rounded half away from zero in C division."""
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
    return _clamp(average, node.act_min, node.act_max, x.dtype)


def add(node: ir.Add, x1: np.ndarray, x2: np.ndarray, profile: Profile = None):
    """``reference_integer_ops::Add`` with broadcasting; arithmetic from the profile."""
    profile = profile or PROFILES["tflm"]
    raw_output = profile.add(node, np.asarray(x1), np.asarray(x2))
    return _clamp(raw_output, node.act_min, node.act_max, np.int8)


def mean(node: ir.Mean, x: np.ndarray, profile: Profile = None):
    """``reference_ops::QuantizedMeanOrSum`` (mean): the int32 sum over the axes less
    ``zero_point * count``, scaled by the count-adjusted multiplier, offset, clamped."""
    profile = profile or PROFILES["tflm"]
    temp_sum = x.astype(np.int64).sum(axis=node.axes)
    shifted_sum = temp_sum - node.input_zero_point * node.count
    output = profile.requantize(shifted_sum, node.requant) + node.output_zero_point
    return _clamp(output, -128, 127, np.int8)


def concatenation(node: ir.Concatenation, *xs: np.ndarray, profile: Profile = None):
    return np.concatenate(xs, axis=node.axis)


def pad(node: ir.Pad, x: np.ndarray, profile: Profile = None):
    return np.pad(x, node.paddings, constant_values=node.pad_value).astype(x.dtype)


def reshape(node: ir.Reshape, x: np.ndarray, profile: Profile = None):
    return x.reshape(node.shape)


def softmax(node: ir.Softmax, x: np.ndarray, profile: Profile = None):
    profile = profile or PROFILES["tflm"]
    return profile.softmax(node, x).astype(np.int8)


def requantize(node: ir.Requantize, x: np.ndarray, out_dtype, profile: Profile = None):
    """``reference_ops::Requantize``; a same-scale int8<->uint8 move is ``x ^ 0x80``."""
    profile = profile or PROFILES["tflm"]
    if node.flip_sign:
        return (x.view(np.uint8) ^ 0x80).view(out_dtype)
    info = np.iinfo(out_dtype)
    scaled = profile.requantize(x.astype(np.int64) - node.input_zero_point, node.requant)
    return _clamp(scaled + node.output_zero_point, info.min, info.max, out_dtype)


def quantize(node: ir.Quantize, x: np.ndarray, out_dtype, profile: Profile = None):
    """``reference_ops::AffineQuantize``: ``round(x / scale)`` in float32, half away from zero."""
    values = (np.asarray(x, np.float32) / np.float32(node.scale)).astype(np.float64)
    magnitude = np.abs(values)
    whole = np.floor(magnitude)
    rounded = np.sign(values) * (whole + (magnitude - whole >= 0.5))
    info = np.iinfo(out_dtype)
    return _clamp(rounded.astype(np.int64) + node.zero_point, info.min, info.max, out_dtype)


def dequantize(node: ir.Dequantize, x: np.ndarray, profile: Profile = None):
    """``reference_ops::Dequantize``: ``float(double(scale) * (q - zero_point))``."""
    return (np.float64(node.scale) * (x.astype(np.int64) - node.zero_point)).astype(np.float32)


def lut(node: ir.Lut, x: np.ndarray, profile: Profile = None):
    qmin = np.iinfo(x.dtype).min
    return node.table[x.astype(np.int64) - qmin].astype(x.dtype)


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
    ir.Softmax: lambda n, xs, dt, p: softmax(n, xs[0], p),
    ir.Requantize: lambda n, xs, dt, p: requantize(n, xs[0], dt, p),
    ir.Quantize: lambda n, xs, dt, p: quantize(n, xs[0], dt, p),
    ir.Dequantize: lambda n, xs, dt, p: dequantize(n, xs[0]),
    ir.Lut: lambda n, xs, dt, p: lut(n, xs[0]),
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


def run(graph: ir.Graph, inputs, profile: str = "tflm") -> GoldenResult:
    """Run the graph on ``inputs`` (one array per graph input, shaped and typed as the
    model's input tensors) and return every intermediate tensor."""
    prof = get_profile(profile)
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
