"""Lower a TFLite model to the fixed-point IR.

:func:`import_model` translates each TFLite operator into one IR node, computing the
integer parameters exactly as TensorFlow Lite Micro's ``Prepare`` functions do (the
``double``/``float`` casts matter: they decide the last bit of a multiplier).  A named
:class:`Flow` of :class:`Pass` objects then refines the graph; :data:`FLOWS` lists them.

Three integer modes are lowered (:data:`INTEGER_MODES`): full-integer int8; legacy uint8
(uint8 activations and per-tensor uint8 weights with their own zero point, the TF1
quantization-aware models, whose parameters LiteRT's ``Prepare`` computes as TFLM's int8
ones); and 16x8 (int16 activations with zero points 0, int8 weights, int64 biases).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ir
from .errors import Tfl2RtlError
from .fixedpoint import quantize_multiplier, signed_bits, tflite_round
from .tflite_reader import Mode, TflModel, TflOperator, TflTensor, classify

__all__ = ["import_model", "lower", "Pass", "Flow", "FLOWS", "Uint8AsInt8", "hardware_form",
           "SUPPORTED_OPS", "LUT_OPS", "check_mode", "INTEGER_MODES", "ACTIVATION_DTYPES"]

#: Elementwise int8 -> int8 ops that become an exact 256-entry table.
LUT_OPS = ("LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "RELU", "RELU6", "ELU", "ABS")
SUPPORTED_OPS = (
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "ADD", "MEAN", "CONCATENATION", "PAD", "PADV2", "RESHAPE", "SQUEEZE", "TRANSPOSE",
    "SOFTMAX", "QUANTIZE", "DEQUANTIZE",
) + LUT_OPS

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_SAME, _VALID = 0, 1

_CONVERT_HINT = (
    "convert it as a full-integer int8 model: converter.optimizations=[tf.lite.Optimize.DEFAULT], "
    "a converter.representative_dataset, converter.target_spec.supported_ops="
    "[tf.lite.OpsSet.TFLITE_BUILTINS_INT8] and inference_input_type/inference_output_type="
    "tf.int8 (or tf.uint8)"
)
_MODE_TEXT = {
    Mode.FLOAT32: "a float32 model (no quantization)",
    Mode.FLOAT16: "a float16-quantized model (float16 weights, float computation)",
    Mode.DYNAMIC_RANGE: "a dynamic-range quantized model (int8 weights, float activations)",
    Mode.INT16X8: "a 16x8 model (int16 activations, int8 weights)",
    Mode.UINT8_LEGACY: "a legacy uint8-quantized model (uint8 activations and weights)",
}
#: Modes that compute in floats: tfl2rtl needs integers.
_FLOAT_MODES = (Mode.FLOAT32, Mode.FLOAT16, Mode.DYNAMIC_RANGE)
#: The integer modes tfl2rtl lowers.
INTEGER_MODES = (Mode.INT8, Mode.UINT8_LEGACY, Mode.INT16X8)
#: The dtype of the activations inside a model of each integer mode.
ACTIVATION_DTYPES = {Mode.INT8: "int8", Mode.UINT8_LEGACY: "uint8", Mode.INT16X8: "int16"}


def check_mode(model: TflModel) -> str:
    """Return the model's integer mode (one of :data:`INTEGER_MODES`); raise the one-line
    error for a model that computes in floats (tfl2rtl needs integers), with the
    converter settings for a full-integer int8 model."""
    mode, _io = classify(model)
    if mode in _FLOAT_MODES or mode not in INTEGER_MODES:
        raise Tfl2RtlError(f"{model.path} is {_MODE_TEXT[mode]}; tfl2rtl needs integers: "
                           + _CONVERT_HINT)
    return mode


def _int_range(dtype: str) -> tuple[int, int]:
    return ir.INT_RANGES[dtype]


def _activation_range(activation: int, out: TflTensor) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized``: bounds quantized in float32."""
    qmin, qmax = _int_range(out.dtype)
    scale = np.float32(out.scale)
    zp = out.zero_point

    def quantize(f: float) -> int:
        q = tflite_round(float(np.float32(f) / scale))
        if not -(1 << 31) <= q <= 1 << 31:  # TFLite's Quantize() refuses, in float32
            raise Tfl2RtlError(f"the fused activation bound {f} does not fit int32 at output "
                               f"scale {out.scale:.6g}; TFLite rejects this model")
        return zp + q

    name = _ACTIVATIONS.get(activation)
    if name == "NONE":
        return qmin, qmax
    if name == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if name == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if name == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise Tfl2RtlError(f"fused activation function {activation} is not supported")


def _requant(real_scales) -> ir.Requant:
    reals = np.asarray(real_scales, dtype=np.float64).reshape(-1)
    pairs = [quantize_multiplier(float(r)) for r in reals]
    return ir.Requant(
        multiplier=np.array([m for m, _ in pairs], dtype=np.int64),
        shift=np.array([s for _, s in pairs], dtype=np.int64),
        real_scale=reals,
    )


def _conv_requant(inp: TflTensor, w: TflTensor, out: TflTensor, channels: int) -> ir.Requant:
    """``PopulateConvolutionQuantizationParams``: per channel, in double from float32."""
    scales = w.scales if w.scales.size > 1 else np.repeat(w.scales[:1], channels)
    reals = [float(np.float64(inp.scale)) * float(np.float64(s)) / float(np.float64(out.scale))
             for s in scales]
    return _requant(reals)


def _compute_padding(padding: int, in_size: int, filt: int, stride: int, dilation: int,
                     out_size: int) -> tuple[int, int]:
    """TFLite's ``ComputePaddingHeightWidth`` for one axis: ``(before, after)``."""
    effective = (filt - 1) * dilation + 1
    if padding == _VALID:
        return 0, 0
    total = max(0, (out_size - 1) * stride + effective - in_size)
    return total // 2, total - total // 2


@dataclass
class _Importer:
    model: TflModel
    mode: str = Mode.INT8
    names: dict[int, str] = field(default_factory=dict)
    tensors: dict[str, ir.Tensor] = field(default_factory=dict)

    def name(self, index: int) -> str:
        if index not in self.names:
            t = self.model.tensors[index]
            name = t.name
            if name in self.tensors:
                name = f"{name}#{index}"
            self.names[index] = name
            self.tensors[name] = ir.Tensor(
                name=name, shape=t.shape, dtype=t.dtype,
                scale=t.scale if t.quantized else None,
                zero_point=t.zero_point, tflite_index=index,
                data=t.data if t.is_constant else None,
            )
        return self.names[index]

    def const(self, op: TflOperator, position: int, what: str) -> TflTensor | None:
        if position >= len(op.inputs) or op.inputs[position] < 0:
            return None
        t = self.model.tensors[op.inputs[position]]
        if not t.is_constant:
            raise Tfl2RtlError(
                f"operator {op.index} ({op.name}): its {what} is computed at run time; "
                "tfl2rtl needs constant weights"
            )
        return t


def _err(op: TflOperator, text: str) -> Tfl2RtlError:
    return Tfl2RtlError(f"operator {op.index} ({op.name}): {text}")


def _check_quantization(op: TflOperator, t: TflTensor, mode: str = Mode.INT8) -> None:
    """Scales finite and positive, zero points inside the dtype, counts consistent; in a
    16x8 model every int16 tensor symmetric (TFLite's int16 kernels check zero point 0)."""
    if t.dtype not in ir.INT_RANGES:
        return
    if not t.quantized or t.zero_points.size not in (1, t.scales.size):
        raise _err(op, f"tensor {t.name!r} ({t.dtype}) has no usable quantization parameters")
    # A constant may have zero scales (an all-zero weight channel quantized with
    # max|w| / 127 = 0): TFLM accepts them and its multiplier for them is 0.
    if (not np.all(np.isfinite(t.scales)) or np.any(t.scales < 0)
            or (not t.is_constant and np.any(t.scales == 0))):
        raise _err(op, f"tensor {t.name!r} has a scale that is not a positive number")
    lo, hi = ir.INT_RANGES[t.dtype]
    if np.any(t.zero_points < lo) or np.any(t.zero_points > hi):
        raise _err(op, f"tensor {t.name!r} has a zero point outside {t.dtype}")
    if mode == Mode.INT16X8 and t.dtype == "int16" and np.any(t.zero_points != 0):
        raise _err(op, f"int16 tensor {t.name!r} has zero point {t.zero_point}; TFLite's "
                       "16x8 kernels need zero point 0")
    if t.scales.size > 1 and (not 0 <= t.quantized_dimension < len(t.shape)
                              or t.shape[t.quantized_dimension] != t.scales.size):
        raise _err(op, f"tensor {t.name!r} has {t.scales.size} scales along dimension "
                       f"{t.quantized_dimension} of shape {t.shape}")


def _pool_out(size: int, filt: int, stride: int, dilation: int, padding: int) -> int:
    """TFLite's ``ComputeOutSize``."""
    effective = (filt - 1) * dilation + 1
    if padding == _SAME:
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def _check_window(op, inp, out, filt, stride, dilation, padding) -> None:
    if len(inp.shape) != 4 or len(out.shape) != 4:
        raise _err(op, f"input {inp.shape} and output {out.shape} must be 4-D NHWC")
    if min(*filt, *stride, *dilation) < 1 or padding not in (_SAME, _VALID):
        raise _err(op, f"invalid window: filter {filt}, stride {stride}, dilation {dilation}, "
                       f"padding {padding}")
    want = tuple(_pool_out(inp.shape[1 + a], filt[a], stride[a], dilation[a], padding)
                 for a in (0, 1))
    if want != tuple(out.shape[1:3]) or inp.shape[0] != out.shape[0] or min(want) < 1:
        raise _err(op, f"output shape {out.shape} does not follow from input {inp.shape}, "
                       f"filter {filt}, stride {stride}, dilation {dilation}")


_REQUIRED_INPUTS = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "ADD": 2,
                    "MEAN": 2, "PAD": 2, "PADV2": 2, "TRANSPOSE": 2}
_WINDOW = ("Padding", "StrideH", "StrideW")
_REQUIRED_OPTIONS = {"CONV_2D": _WINDOW, "DEPTHWISE_CONV_2D": _WINDOW,
                     "MAX_POOL_2D": _WINDOW + ("FilterHeight", "FilterWidth"),
                     "AVERAGE_POOL_2D": _WINDOW + ("FilterHeight", "FilterWidth")}


@dataclass
class _Op:
    """One operator being lowered: its first input and output tensor (``inp``, ``out``),
    its options (``o``) and the node fields every op has (``common``)."""

    imp: _Importer
    op: TflOperator
    inp: TflTensor
    out: TflTensor
    common: dict

    @property
    def o(self) -> dict:
        return self.op.options

    def tensor(self, position: int) -> TflTensor:
        """The operator's input tensor at ``position``."""
        return self.imp.model.tensors[self.op.inputs[position]]


def _size(t: TflTensor) -> int:
    return ir.shape_size(t.shape)


#: The dtypes of a weighted layer in each mode: activations, weights, bias.
_WEIGHTED_DTYPES = {Mode.INT8: ("int8", "int8", "int32"),
                    Mode.UINT8_LEGACY: ("uint8", "uint8", "int32"),
                    Mode.INT16X8: ("int16", "int8", "int64")}


def _in_mode(mode: str) -> str:
    """`` in a uint8-legacy model`` (nothing for int8): where a dtype error applies."""
    return "" if mode == Mode.INT8 else f" in a {mode} model"


def _activations(c: _Op, *tensors: TflTensor) -> None:
    """The op's activation tensors carry the mode's dtype (int8, uint8 or int16)."""
    dtype = ACTIVATION_DTYPES[c.imp.mode]
    for t in tensors or (c.inp, c.out):
        if t.dtype != dtype:
            raise _err(c.op, f"tensor {t.name!r} is {t.dtype}; only {dtype} is supported"
                             + _in_mode(c.imp.mode))


def _weighted(c: _Op):
    """What FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D check and share: input and
    output of the mode's dtype; weights int8 and symmetric (uint8 per tensor with any zero
    point in a legacy uint8 model); an int32 bias (int64 in a 16x8 model).  Returns the
    weights and bias tensors and the epilogue fields."""
    op, inp, out = c.op, c.inp, c.out
    act_dtype, w_dtype, b_dtype = _WEIGHTED_DTYPES[c.imp.mode]
    for t, what in ((inp, "input"), (out, "output")):
        if t.dtype != act_dtype:
            raise _err(op, f"{what} is {t.dtype}; only {act_dtype} is supported"
                           + _in_mode(c.imp.mode))
    w = c.imp.const(op, 1, "weights")
    if w.dtype != w_dtype:
        raise _err(op, f"weights are {w.dtype}; only {w_dtype} weights are supported"
                       + _in_mode(c.imp.mode))
    if w_dtype == "int8" and np.any(w.zero_points != 0):
        raise _err(op, "weights have a non-zero zero point; int8 weights must be symmetric")
    if w_dtype == "uint8" and w.scales.size != 1:
        raise _err(op, "uint8 weights have per-channel scales; legacy uint8 kernels take "
                       "one scale and zero point per tensor")
    b = c.imp.const(op, 2, "bias")
    if b is not None and (b.dtype != b_dtype or b.data.ndim != 1):
        raise _err(op, f"bias is {b.dtype} {b.shape}; {b_dtype} [channels] expected")
    act_min, act_max = _activation_range(c.o.get("FusedActivationFunction", 0), out)
    epilogue = dict(output_offset=out.zero_point, act_min=act_min, act_max=act_max,
                    input_offset=-inp.zero_point, folded_bias=np.zeros(0, np.int64),
                    acc_bits=0, filter_offset=-w.zero_point, weight_scales=w.scales.copy(),
                    accumulator="int64" if c.imp.mode == Mode.INT16X8 else "int32")
    return w, b, epilogue


def _fully_connected(c: _Op) -> ir.Node:
    op, inp, out = c.op, c.inp, c.out
    w, b, epilogue = _weighted(c)
    if c.o.get("WeightsFormat", 0) != 0:
        raise _err(op, "shuffled weights format is not supported")
    weights = w.data.astype(np.int64)
    if weights.ndim != 2 or weights.size == 0:
        raise _err(op, f"weights have shape {w.shape}; 2-D expected")
    out_depth = weights.shape[0]
    if _size(out) * weights.shape[1] != _size(inp) * out_depth or (
            b is not None and b.data.size != out_depth):
        raise _err(op, f"shapes do not fit: input {inp.shape}, weights {w.shape}, "
                       f"output {out.shape}")
    bias = (b.data.astype(np.int64) if b is not None
            else np.zeros(out_depth, np.int64))
    # Measured against the tflite-micro wheel: the per-tensor multiplier comes from
    # the double product of the scales, like the per-channel one, not from the
    # float32 product that GetQuantizedConvolutionMultipler's source shows.
    requant = _conv_requant(inp, w, out, w.scales.size)
    if _size(inp) % weights.shape[1]:
        raise _err(op, f"input of {_size(inp)} elements is not a multiple of "
                       f"the weights' depth {weights.shape[1]}")
    return ir.FullyConnected(weights=weights, bias=bias, requant=requant,
                             **epilogue, **c.common)


def _conv_window(c: _Op, w: TflTensor):
    """The 4-D weights, stride and dilation of CONV_2D or DEPTHWISE_CONV_2D, its window
    checked against the shapes."""
    op, inp, out, o = c.op, c.inp, c.out, c.o
    stride = (o["StrideH"], o["StrideW"])
    dilation = (o.get("DilationHFactor", 1), o.get("DilationWFactor", 1))
    weights = w.data.astype(np.int64)
    if weights.ndim != 4 or len(inp.shape) != 4 or len(out.shape) != 4:
        raise _err(op, f"input {inp.shape}, weights {w.shape} and output {out.shape} "
                       "must be 4-D")
    _check_window(op, inp, out, weights.shape[1:3], stride, dilation, o["Padding"])
    return weights, stride, dilation


def _conv_parameters(c: _Op, w: TflTensor, b: TflTensor | None, stride, dilation,
                     kernel: tuple[int, int], channels: int):
    """The bias, requantization and geometry fields of CONV_2D or DEPTHWISE_CONV_2D."""
    op, inp, out, o = c.op, c.inp, c.out, c.o
    kh, kw = kernel
    out_h, out_w = out.shape[1], out.shape[2]
    if out.shape[3] != channels or (b is not None and b.data.size != channels):
        raise _err(op, f"output {out.shape} or bias does not match {channels} channels")
    pad_t, pad_b = _compute_padding(o["Padding"], inp.shape[1], kh, stride[0],
                                    dilation[0], out_h)
    pad_l, pad_r = _compute_padding(o["Padding"], inp.shape[2], kw, stride[1],
                                    dilation[1], out_w)
    bias = b.data.astype(np.int64) if b is not None else np.zeros(channels, np.int64)
    requant = _conv_requant(inp, w, out, channels)
    geometry = dict(stride=stride, dilation=dilation, out_hw=(out_h, out_w),
                    padding=(pad_t, pad_l, pad_b, pad_r))
    return bias, requant, geometry


def _conv_2d(c: _Op) -> ir.Node:
    w, b, epilogue = _weighted(c)
    weights, stride, dilation = _conv_window(c, w)
    kh, kw = weights.shape[1], weights.shape[2]
    channels = weights.shape[0]
    if weights.shape[3] != c.inp.shape[3]:
        raise _err(c.op, "grouped convolution is not supported")
    bias, requant, geometry = _conv_parameters(c, w, b, stride, dilation, (kh, kw), channels)
    return ir.Conv2D(weights=weights, bias=bias, requant=requant, **geometry,
                     **epilogue, **c.common)


def _depthwise_conv_2d(c: _Op) -> ir.Node:
    op, inp = c.op, c.inp
    w, b, epilogue = _weighted(c)
    weights, stride, dilation = _conv_window(c, w)
    kh, kw = weights.shape[1], weights.shape[2]
    channels = weights.shape[3]
    if weights.shape[0] != 1:
        raise _err(op, f"depthwise weights have shape {w.shape}; [1, h, w, c] expected")
    weights = weights.reshape(kh, kw, channels)
    bias, requant, geometry = _conv_parameters(c, w, b, stride, dilation, (kh, kw), channels)
    multiplier = channels // inp.shape[3]
    if multiplier * inp.shape[3] != channels:
        raise _err(op, f"{channels} output channels is not a multiple of "
                       f"{inp.shape[3]} input channels")
    if c.o.get("DepthMultiplier", multiplier) != multiplier:
        # TFLM indexes channels with the option: its output would be undefined
        raise _err(op, f"depth_multiplier option {c.o['DepthMultiplier']} disagrees with the "
                       f"shapes ({inp.shape[3]} input, {channels} output channels)")
    return ir.DepthwiseConv2D(weights=weights, bias=bias, requant=requant,
                              depth_multiplier=multiplier, **geometry, **epilogue,
                              **c.common)


def _pool_2d(c: _Op) -> ir.Node:
    op, inp, out, o = c.op, c.inp, c.out, c.o
    _activations(c)
    filt = (o["FilterHeight"], o["FilterWidth"])
    stride = (o["StrideH"], o["StrideW"])
    _check_window(op, inp, out, filt, stride, (1, 1), o["Padding"])
    if inp.shape[3] != out.shape[3]:
        raise _err(op, f"input {inp.shape} and output {out.shape} differ in channels")
    if (float(abs(np.float32(inp.scale) - np.float32(out.scale))) > 1e-6
            or inp.zero_point != out.zero_point):
        raise _err(op, "input and output are quantized differently; TFLite Micro's "
                       "pooling requires the same scale and zero point")
    pad_t, pad_b = _compute_padding(o["Padding"], inp.shape[1], filt[0], stride[0], 1,
                                    out.shape[1])
    pad_l, pad_r = _compute_padding(o["Padding"], inp.shape[2], filt[1], stride[1], 1,
                                    out.shape[2])
    act_min, act_max = _activation_range(o.get("FusedActivationFunction", 0), out)
    cls = ir.MaxPool2D if op.name == "MAX_POOL_2D" else ir.AveragePool2D
    return cls(filter=filt, stride=stride, padding=(pad_t, pad_l, pad_b, pad_r),
               act_min=act_min, act_max=act_max, **c.common)


def _add(c: _Op) -> ir.Node:
    op, inp, out = c.op, c.inp, c.out
    in2 = c.tensor(1)
    _activations(c, inp, in2, out)
    try:
        broadcast = np.broadcast_shapes(inp.shape, in2.shape)
    except ValueError:
        broadcast = None
    if broadcast != tuple(out.shape):
        raise _err(op, f"inputs {inp.shape} and {in2.shape} do not broadcast to the "
                       f"output {out.shape}")
    left_shift = 15 if out.dtype == "int16" else 20  # CalculateOpDataAdd
    twice_max = 2 * float(np.float64(max(np.float32(inp.scale), np.float32(in2.scale))))
    r1 = float(np.float64(inp.scale)) / twice_max
    r2 = float(np.float64(in2.scale)) / twice_max
    r_out = twice_max / ((1 << left_shift) * float(np.float64(out.scale)))
    if not (r_out < 1 and quantize_multiplier(r_out)[1] <= 0):
        # QuantizeMultiplierSmallerThanOneExp CHECK-fails: TFLite Micro aborts
        raise _err(op, f"output scale {out.scale:.6g} is too small for inputs of scale "
                       f"{max(inp.scale, in2.scale):.6g} (the output multiplier is not "
                       "below 1); TFLite rejects this model")
    act_min, act_max = _activation_range(c.o.get("FusedActivationFunction", 0), out)
    common = dict(c.common, inputs=(c.imp.name(op.inputs[0]), c.imp.name(op.inputs[1])))
    return ir.Add(input1_offset=-inp.zero_point, input2_offset=-in2.zero_point,
                  left_shift=left_shift, input1_requant=_requant([r1]),
                  input2_requant=_requant([r2]), output_requant=_requant([r_out]),
                  output_offset=out.zero_point, act_min=act_min, act_max=act_max,
                  **common)


def _mean(c: _Op) -> ir.Node:
    op, inp, out = c.op, c.inp, c.out
    dtype = "int16" if c.imp.mode == Mode.INT16X8 else "int8"
    if inp.dtype != dtype or out.dtype != dtype:
        raise _err(op, f"{inp.dtype} -> {out.dtype} MEAN; only int8 (int16 in a 16x8 "
                       "model) is supported")
    raw_axes = c.imp.const(op, 1, "axes").data.reshape(-1)
    if not len(inp.shape) or np.any(np.abs(raw_axes) > len(inp.shape)):
        raise _err(op, f"axes {raw_axes.tolist()} do not fit input {inp.shape}")
    axes = sorted({int(a) % len(inp.shape) for a in raw_axes})
    count = ir.shape_size([inp.shape[a] for a in axes])
    if count < 1 or _size(out) * count != _size(inp):
        raise _err(op, f"output {out.shape} does not follow from reducing {inp.shape} "
                       f"over axes {axes}")
    base = _requant([float(np.float64(inp.scale)) / float(np.float64(out.scale))])
    multiplier, shift = int(base.multiplier[0]), int(base.shift[0])
    # QuantizedMeanOrSum: fold the division by count into the multiplier
    pot = min(count.bit_length() - 1, 32, 31 + shift)
    requant = ir.Requant(multiplier=np.array([(multiplier << pot) // count], np.int64),
                         shift=np.array([shift - pot], np.int64),
                         real_scale=base.real_scale / count)
    return ir.Mean(axes=tuple(axes), count=count, requant=requant,
                   input_zero_point=inp.zero_point, output_zero_point=out.zero_point,
                   **c.common)


def _concatenation(c: _Op) -> ir.Node:
    op, out, o = c.op, c.out, c.o
    axis = o.get("Axis", 0)
    axis = axis + len(out.shape) if axis < 0 else axis
    parts = [c.tensor(k) for k in range(len(op.inputs))]
    if len(out.shape) > 6 or len(parts) > 10:
        raise _err(op, f"{len(parts)} inputs of rank {len(out.shape)}; TFLite Micro "
                       "concatenates at most 10 inputs of rank 6 or less")
    for t in parts:
        if t.dtype != out.dtype:
            raise _err(op, f"input {t.name!r} is {t.dtype} but the output is {out.dtype}")
        if t.quantized and (t.scale != out.scale or t.zero_point != out.zero_point):
            raise _err(op, f"input {t.name!r} has a different scale or zero point than "
                           "the output; TFLite Micro rejects such int8 concatenations")
    if o.get("FusedActivationFunction", 0) != 0:
        raise _err(op, "a fused activation on CONCATENATION is not supported")
    if not 0 <= axis < len(out.shape) or any(
            len(t.shape) != len(out.shape)
            or t.shape[:axis] + t.shape[axis + 1:] != out.shape[:axis] + out.shape[axis + 1:]
            for t in parts) or sum(t.shape[axis] for t in parts) != out.shape[axis]:
        raise _err(op, f"inputs {[t.shape for t in parts]} do not concatenate to "
                       f"{out.shape} along axis {axis}")
    common = dict(c.common, inputs=tuple(c.imp.name(i) for i in op.inputs))
    return ir.Concatenation(axis=axis, **common)


def _pad(c: _Op) -> ir.Node:
    op, inp, out = c.op, c.inp, c.out
    if len(inp.shape) > 5:
        raise _err(op, f"input of rank {len(inp.shape)}; TFLite Micro pads at most 5-D")
    paddings = c.imp.const(op, 1, "paddings").data.astype(np.int64)
    if paddings.shape != (len(inp.shape), 2) or np.any(paddings < 0) or tuple(
            np.array(inp.shape) + paddings.sum(axis=1)) != tuple(out.shape):
        raise _err(op, f"paddings {paddings.tolist()} do not take {inp.shape} to {out.shape}")
    pad_value = out.zero_point
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        pad_value = int(c.imp.const(op, 2, "pad value").data.reshape(-1)[0])
    return ir.Pad(paddings=tuple((int(a), int(b)) for a, b in paddings),
                  pad_value=pad_value, **c.common)


def _same_size(c: _Op) -> None:
    """The ops below keep the number of elements."""
    if _size(c.inp) != _size(c.out):
        raise _err(c.op, f"input {c.inp.shape} and output {c.out.shape} differ in size")


def _reshape(c: _Op) -> ir.Node:
    _same_size(c)
    return ir.Reshape(shape=c.out.shape, **c.common)


#: The largest rank TFLite Micro transposes (LiteRT takes up to 6).
MAX_TRANSPOSE_RANK = 5


def _transpose(c: _Op) -> ir.Node:
    op, inp, out = c.op, c.inp, c.out
    perm = c.imp.const(op, 1, "permutation").data.reshape(-1).astype(np.int64)
    rank = len(inp.shape)
    if rank > MAX_TRANSPOSE_RANK:  # TFLM's Prepare checks this before Eval the type
        raise _err(op, f"input of rank {rank}; TFLite Micro transposes at most "
                       f"{MAX_TRANSPOSE_RANK}-D")
    if inp.dtype != "int8" or out.dtype != "int8":  # TFLM's Eval fails on uint8
        raise _err(op, f"{inp.dtype} -> {out.dtype}; TFLite Micro transposes int8 "
                       "(not uint8) integers only")
    if sorted(perm.tolist()) != list(range(rank)):
        raise _err(op, f"permutation {perm.tolist()} is not a permutation of the "
                       f"{rank} axes of {inp.shape}")
    if tuple(inp.shape[p] for p in perm) != tuple(out.shape):
        raise _err(op, f"permutation {perm.tolist()} does not take {inp.shape} to "
                       f"{out.shape}")
    return ir.Transpose(perm=tuple(int(p) for p in perm), **c.common)


def _softmax(c: _Op) -> ir.Node:
    from .kernels.softmax import softmax_params

    _same_size(c)
    op, inp, out = c.op, c.inp, c.out
    if inp.dtype == out.dtype == "int16":
        return _softmax_int16(c)
    if inp.dtype != out.dtype or inp.dtype not in ("int8", "uint8"):
        raise _err(op, f"{inp.dtype} -> {out.dtype} softmax; only int8 -> int8 (uint8 -> "
                       "uint8, int16 -> int16 in the other modes) is supported")
    zero_point = ir.INT_RANGES[out.dtype][0]
    runtime = "TFLite Micro" if out.dtype == "int8" else "LiteRT"
    if out.zero_point != zero_point or np.float32(out.scale) != np.float32(1 / 256):
        raise _err(op, f"output scale {out.scale:.6g} and zero point {out.zero_point}; "
                       f"{runtime} requires 1/256 and {zero_point} for {out.dtype} softmax")
    beta = float(c.o.get("Beta", 0.0))  # no options table: TFLM's beta is 0 (it aborts)
    multiplier, left_shift, diff_min = softmax_params(beta, float(np.float32(inp.scale)))
    return ir.Softmax(beta=beta, input_scale=inp.scale, input_multiplier=multiplier,
                      input_left_shift=left_shift, diff_min=diff_min, **c.common)


def _softmax_int16(c: _Op) -> ir.Node:
    """int16 SOFTMAX (``SoftmaxInt16``): output scale 1/32768 (TFLM allows 0.1% off) and
    zero point 0; the multiplier maps input differences onto the exp table's [-10, 0]."""
    from .kernels.softmax import softmax_int16_params

    op, inp, out = c.op, c.inp, c.out
    if out.zero_point != 0 or abs(float(out.scale) - 1 / 32768) > 0.001 / 32768:
        raise _err(op, f"output scale {out.scale:.6g} and zero point {out.zero_point}; "
                       "TFLite requires 1/32768 and 0 for int16 softmax")
    beta = float(c.o.get("Beta", 0.0))
    multiplier, left_shift = softmax_int16_params(beta, inp.scale)
    return ir.Softmax(beta=beta, input_scale=inp.scale, input_multiplier=multiplier,
                      input_left_shift=left_shift, diff_min=0, **c.common)


def _quantize(c: _Op) -> ir.Node:
    _same_size(c)
    op, inp, out = c.op, c.inp, c.out
    if inp.dtype == "float32":
        edge = {Mode.INT16X8: "int16", Mode.UINT8_LEGACY: "uint8"}.get(c.imp.mode, "int8")
        if out.dtype != edge:  # TFLM's Eval fails on float32 -> uint8
            raise _err(op, f"float32 -> {out.dtype}; TFLite Micro quantizes float32 "
                           f"to {edge} only" + (" in a 16x8 model" if edge == "int16" else ""))
        return ir.Quantize(scale=out.scale, zero_point=out.zero_point, **c.common)
    if (inp.dtype, out.dtype) != ("int16", "int16") and (
            inp.dtype not in ("int8", "uint8") or out.dtype not in ("int8", "uint8")):
        raise _err(op, f"{inp.dtype} -> {out.dtype} is not supported")
    requant = _requant([float(np.float64(inp.scale)) / float(np.float64(out.scale))])
    flip = (int(requant.multiplier[0]) == 1 << 30 and int(requant.shift[0]) == 1 and (
        (inp.dtype, out.dtype, inp.zero_point - out.zero_point) in
        (("int8", "uint8", -128), ("uint8", "int8", 128))))
    return ir.Requantize(input_zero_point=inp.zero_point,
                         output_zero_point=out.zero_point, requant=requant,
                         flip_sign=flip, **c.common)


def _dequantize(c: _Op) -> ir.Node:
    _same_size(c)
    op, inp, out = c.op, c.inp, c.out
    if out.dtype != "float32" or inp.dtype not in ("int8", "uint8", "int16"):
        raise _err(op, f"{inp.dtype} -> {out.dtype} is not supported")
    return ir.Dequantize(scale=inp.scale, zero_point=inp.zero_point, **c.common)


def _lut(c: _Op) -> ir.Node:
    from .kernels.elementwise import lut_table

    _same_size(c)
    op, inp, out = c.op, c.inp, c.out
    if inp.dtype == out.dtype == "uint8" and c.imp.mode == Mode.UINT8_LEGACY:
        return _lut_uint8(c)
    if inp.dtype == out.dtype == "int16" and c.imp.mode == Mode.INT16X8:
        return _lut_int16(c)
    if inp.dtype != "int8" or out.dtype != "int8":
        raise _err(op, f"{inp.dtype} -> {out.dtype}; only int8 is supported")
    options = {}
    if op.name == "LEAKY_RELU":
        options["alpha"] = float(c.o.get("Alpha", 0.0))
    table = lut_table(op.name, inp.scale, inp.zero_point, out.scale, out.zero_point,
                      dtype=inp.dtype, **options)
    return ir.Lut(function=op.name, table=np.asarray(table), **c.common)


#: The elementwise ops of a legacy uint8 model: LiteRT's uint8 kernels are tables of a
#: float function (``PopulateLookupTable<uint8_t>``), which the IR keeps (the reference
#: kernels' table; the ``litert`` profile makes XNNPACK's own).
UINT8_LUT_OPS = ("LOGISTIC", "TANH")


def _lut_uint8(c: _Op) -> ir.Node:
    from .kernels import litert_builtin

    op, inp, out = c.op, c.inp, c.out
    if op.name not in UINT8_LUT_OPS:
        raise _err(op, f"uint8 {op.name} is not supported; the uint8 elementwise ops are "
                       + ", ".join(UINT8_LUT_OPS))
    want = (1 / 256, 0) if op.name == "LOGISTIC" else (1 / 128, 128)
    if np.float32(out.scale) != np.float32(want[0]) or out.zero_point != want[1]:
        raise _err(op, f"output scale {out.scale:.6g} and zero point {out.zero_point}; "
                       f"LiteRT requires {want[0]} and {want[1]} for uint8 {op.name}")
    make = (litert_builtin.logistic_table if op.name == "LOGISTIC"
            else litert_builtin.tanh_table)
    table = make(inp.scale, inp.zero_point, out.scale, out.zero_point, dtype="uint8")
    return ir.Lut(function=op.name, table=table, **c.common)


#: The elementwise ops of a 16x8 model that become a 65536-entry table of TFLM's kernel.
INT16_LUT_OPS = ("LEAKY_RELU",)


def _lut_int16(c: _Op) -> ir.Node:
    from .kernels.elementwise import leaky_relu_int8, leaky_relu_params

    op, inp, out = c.op, c.inp, c.out
    if op.name not in INT16_LUT_OPS:
        raise _err(op, f"int16 {op.name} is not supported; the int16 elementwise ops are "
                       + ", ".join(INT16_LUT_OPS))
    params = leaky_relu_params(inp.scale, inp.zero_point, out.scale, out.zero_point,
                               float(c.o.get("Alpha", 0.0)))
    table = leaky_relu_int8(np.arange(-32768, 32768), params, dtype="int16")
    return ir.Lut(function=op.name, table=table, params=params, **c.common)


def _unsupported(c: _Op) -> ir.Node:
    _same_size(c)
    raise _err(c.op, "not supported")


#: The lowering of each supported op (as the golden model has a kernel per node kind).
_LOWERINGS = {
    "FULLY_CONNECTED": _fully_connected, "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d, "MAX_POOL_2D": _pool_2d,
    "AVERAGE_POOL_2D": _pool_2d, "ADD": _add, "MEAN": _mean,
    "CONCATENATION": _concatenation, "PAD": _pad, "PADV2": _pad, "RESHAPE": _reshape,
    "SQUEEZE": _reshape, "TRANSPOSE": _transpose, "SOFTMAX": _softmax, "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize, **{name: _lut for name in LUT_OPS},
}


def _lower_op(imp: _Importer, op: TflOperator) -> ir.Node:
    required = _REQUIRED_INPUTS.get(op.name, 1)
    if len(op.inputs) < required or any(i < 0 for i in op.inputs[:required]):
        raise _err(op, f"needs {required} input tensors, has {len(op.inputs)}")
    missing = [k for k in _REQUIRED_OPTIONS.get(op.name, ()) if k not in op.options]
    if missing:
        raise _err(op, f"has no {', '.join(missing)} in its options")
    tensors = imp.model.tensors
    common = dict(
        inputs=(imp.name(op.inputs[0]),), outputs=(imp.name(op.outputs[0]),),
        tflite_op_index=op.index, tflite_op=op.name,
    )
    c = _Op(imp, op, tensors[op.inputs[0]], tensors[op.outputs[0]], common)
    return _LOWERINGS.get(op.name, _unsupported)(c)


def import_model(model: TflModel) -> ir.Graph:
    """Translate a checked full-integer model, operator by operator, into the IR."""
    mode, io = classify(model)
    imp = _Importer(model, mode)
    available = {i for i, t in enumerate(model.tensors) if t.is_constant} | set(model.inputs)
    nodes = []
    unsupported = [op for op in model.operators if op.name not in SUPPORTED_OPS]
    if unsupported:
        op = unsupported[0]
        others = sorted({o.name for o in unsupported} - {op.name})
        also = f" (also unsupported: {', '.join(others)})" if others else ""
        int16 = sorted({t.name for t in (model.tensors[i] for i in (*op.inputs, *op.outputs)
                                          if i >= 0) if t.dtype == "int16"})
        state = (f" (an integer op with int16 tensors: {', '.join(int16)})" if int16
                 else "")
        raise Tfl2RtlError(
            f"operator {op.index} ({op.name}) is not supported{state}{also}; supported ops: "
            + ", ".join(SUPPORTED_OPS)
        )
    for op in model.operators:
        for i in op.inputs:
            if i >= 0 and i not in available:
                raise _err(op, f"reads tensor {i} ({model.tensors[i].name!r}) before any "
                               "operator writes it (a cyclic or out-of-order graph)")
        if not op.inputs or not op.outputs or op.inputs[0] < 0:
            raise _err(op, "has no inputs or no outputs")
        for i in (*op.inputs, *op.outputs):
            if i >= 0 and model.tensors[i].dtype != "int32":
                _check_quantization(op, model.tensors[i], mode)
        try:
            nodes.append(_lower_op(imp, op))
        except Tfl2RtlError as exc:
            if str(exc).startswith(f"operator {op.index} "):
                raise
            raise _err(op, str(exc)) from None
        available.update(op.outputs)
    inputs = [imp.name(i) for i in model.inputs]
    outputs = [imp.name(i) for i in model.outputs]
    return ir.Graph(tensors=imp.tensors, nodes=nodes, inputs=inputs, outputs=outputs,
                    mode=f"{mode} ({io} I/O)", source=model.path, quantization=mode)


class Pass:
    """A graph transformation; ``run`` changes the graph in place."""

    name = "pass"

    def run(self, graph: ir.Graph) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class FoldInputOffset(Pass):
    """Fold the input zero point into the bias: ``sum((x + off) * w) + b ==
    sum(x * w) + (b + off * sum(w))``.  Exact for every weighted node, padding included,
    because a padded position holds ``x = -off`` (the zero point) in the folded form."""

    name = "fold-input-offset"

    def run(self, graph: ir.Graph) -> None:
        for node in graph.nodes:
            if isinstance(node, ir.FullyConnected):
                w = node.offset_weights
                node.folded_bias = node.bias + node.input_offset * w.sum(axis=1)
            elif isinstance(node, ir.Conv2D):
                w = node.offset_weights
                node.folded_bias = node.bias + node.input_offset * w.sum(axis=(1, 2, 3))
            elif isinstance(node, ir.DepthwiseConv2D):
                w = node.offset_weights
                node.folded_bias = node.bias + node.input_offset * w.sum(axis=(0, 1))


class RangeAnalysis(Pass):
    """Propagate each tensor's integer value range and size accumulators from it.

    ``acc_bits`` covers every partial sum of both the reference form
    ``b + sum((x + off) * w)`` and the folded form ``b' + sum(x * w)``, in any order."""

    name = "range-analysis"

    def run(self, graph: ir.Graph) -> None:
        for name in graph.inputs:
            t = graph.tensors[name]
            if t.dtype in ir.INT_RANGES:
                t.value_range = _int_range(t.dtype)
        for node in graph.nodes:
            out = graph.tensors[node.output]
            ranges = [graph.tensors[n].value_range for n in node.inputs]
            for n, r in zip(node.inputs, ranges, strict=True):
                t = graph.tensors[n]
                if r is None and t.dtype in ir.INT_RANGES:
                    t.value_range = _int_range(t.dtype)  # a constant operand
            ranges = [graph.tensors[n].value_range for n in node.inputs]
            out.value_range = self._output_range(node, out, ranges)
            if isinstance(node, (ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D)):
                node.acc_bits = self._acc_bits(node, ranges[0])

    @staticmethod
    def _output_range(node, out, ranges):
        if out.dtype not in ir.INT_RANGES:
            return None
        if hasattr(node, "act_min"):
            return node.act_min, node.act_max
        if isinstance(node, (ir.Reshape, ir.Transpose, ir.Concatenation)):
            return min(r[0] for r in ranges), max(r[1] for r in ranges)
        if isinstance(node, ir.Pad):
            lo, hi = ranges[0]
            return min(lo, node.pad_value), max(hi, node.pad_value)
        if isinstance(node, ir.Lut):
            return int(node.table.min()), int(node.table.max())
        return _int_range(out.dtype)

    @staticmethod
    def _acc_bits(node, in_range) -> int:
        lo, hi = in_range
        zp = -node.input_offset
        if isinstance(node, ir.FullyConnected):
            w = node.offset_weights
        elif isinstance(node, ir.Conv2D):
            w = node.offset_weights.reshape(node.weights.shape[0], -1)
        else:
            w = node.offset_weights.reshape(-1, node.weights.shape[-1]).T
        bits = 1
        for x_lo, x_hi, b in ((lo + node.input_offset, hi + node.input_offset, node.bias),
                              (min(lo, zp), max(hi, zp), node.folded_bias)):
            t_lo = np.minimum(x_lo * w, x_hi * w)
            t_hi = np.maximum(x_lo * w, x_hi * w)
            low = np.minimum(0, b) + np.minimum(t_lo, 0).sum(axis=1)
            high = np.maximum(0, b) + np.maximum(t_hi, 0).sum(axis=1)
            bits = max(bits, signed_bits(int(low.min()), int(high.max())))
        return bits


class Uint8AsInt8(Pass):
    """Rewrite a legacy uint8 graph into its hardware form, which streams int8.

    A uint8 value ``x`` with zero point ``z`` is the int8 value ``x - 128`` with zero
    point ``z - 128``: every uint8 tensor becomes int8, and every zero point, output
    offset, clamp, padding value and table shifts by -128 while the arithmetic stays
    as it is (the ADD's and the weighted layers' input offsets ``-z`` grow by 128).  The
    weights' zero point goes into the weights: ``w - zw`` (-255..255 for uint8 weights,
    ``weight_bits`` 9, or 8 when they fit int8) with ``filter_offset`` 0, so every
    product ``(x + input_offset) * (w - zw)`` is the reference's and the biases stay; a
    FULLY_CONNECTED is marked ``requantization="double"`` (LiteRT's reference kernel
    requantizes it so: the profile of a uint8 model);
    run :class:`FoldInputOffset` and :class:`RangeAnalysis` after it (the flow
    ``"uint8-hardware"``).  AVERAGE_POOL_2D is refused: its sums round halves up in
    uint8 and away from zero in int8, which differ on a negative int8 sum.  The golden
    model runs the uint8 graph: this form is for the hardware generator only."""

    name = "uint8-as-int8"
    _SHIFTED = (ir.MaxPool2D, ir.Concatenation, ir.Pad, ir.Reshape, ir.Softmax, ir.Add,
                ir.Lut, ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D, ir.Requantize)

    def run(self, graph: ir.Graph) -> None:
        if graph.quantization != Mode.UINT8_LEGACY:
            return
        uint8 = {name for name, t in graph.tensors.items()
                 if t.dtype == "uint8" and t.data is None}
        for index, node in enumerate(graph.nodes):
            if isinstance(node, ir.HostEdge):
                continue
            if not isinstance(node, self._SHIFTED) or getattr(node, "flip_sign", False):
                raise Tfl2RtlError(
                    f"node {index} ({node.op}) of a legacy uint8 model has no int8 hardware "
                    "form" + (" (its rounding of halves differs in int8)"
                              if isinstance(node, ir.AveragePool2D) else ""))
            shift_in = any(name in uint8 for name in node.inputs)
            shift_out = node.output in uint8
            self._rewrite(node, shift_in, shift_out)
        for name in uint8:
            t = graph.tensors[name]
            t.dtype, t.zero_point = "int8", t.zero_point - 128
            if t.value_range is not None:
                t.value_range = (t.value_range[0] - 128, t.value_range[1] - 128)
        graph.quantization = Mode.INT8

    @staticmethod
    def _rewrite(node: ir.Node, shift_in: bool, shift_out: bool) -> None:
        down = -128 if shift_out else 0
        if hasattr(node, "act_min"):
            node.act_min, node.act_max = node.act_min + down, node.act_max + down
        if isinstance(node, (ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D)):
            w = node.offset_weights
            node.weights = w
            node.filter_offset = 0
            node.weight_bits = max(8, signed_bits(int(w.min()), int(w.max())))
            node.input_offset += 128 if shift_in else 0
            node.output_offset += down
            if isinstance(node, ir.FullyConnected):
                node.requantization = "double"
        elif isinstance(node, ir.Add):
            node.input1_offset += 128 if shift_in else 0
            node.input2_offset += 128 if shift_in else 0
            node.output_offset += down
        elif isinstance(node, ir.Pad):
            node.pad_value += down
        elif isinstance(node, ir.Lut):
            node.table = (node.table.astype(np.int64) + down).astype(np.int8)
        elif isinstance(node, ir.Requantize):
            node.input_zero_point -= 128 if shift_in else 0
            node.output_zero_point += down


def hardware_form(graph: ir.Graph) -> ir.Graph:
    """The graph the hardware generator builds: ``graph`` itself, or for a legacy uint8
    graph a copy run through the flow ``"uint8-hardware"`` (:class:`Uint8AsInt8`)."""
    import copy

    if graph.quantization != Mode.UINT8_LEGACY:
        return graph
    return FLOWS["uint8-hardware"].run(copy.deepcopy(graph))


@dataclass
class Flow:
    """A named, ordered list of passes."""

    name: str
    passes: list[Pass]

    def run(self, graph: ir.Graph) -> ir.Graph:
        for p in self.passes:
            p.run(graph)
        return graph


FLOWS = {"default": Flow("default", [FoldInputOffset(), RangeAnalysis()]),
         "uint8-hardware": Flow("uint8-hardware",
                                [Uint8AsInt8(), FoldInputOffset(), RangeAnalysis()])}


def lower(model: TflModel, flow: str = "default") -> ir.Graph:
    """Check the model's mode, import it and run the named flow over it."""
    check_mode(model)
    return FLOWS[flow].run(import_model(model))

