"""The ``litert`` profile's ``Prepare`` step: per node, what LiteRT's default interpreter
derives from the model, and which of its kernels runs the node.

The IR keeps TFLite Micro's integer parameters; LiteRT's XNNPACK delegate recomputes its
own from the float32 scales.  Everything the IR does not keep (the weights' scales, the
fused activation, LEAKY_RELU's alpha) is read from the ``.tflite`` file the graph was
lowered from, operator by operator (``node.tflite_op_index``).

A node LiteRT would run with a kernel the profile does not model raises
:class:`~tfl2rtl.errors.Tfl2RtlError` naming the node, instead of computing something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ir
from .errors import Tfl2RtlError

__all__ = ["LitertNodeParams", "prepare_litert", "prepare_litert_ref", "describe_params",
           "span", "XNNPACK", "BUILTIN"]

#: Who runs a node in LiteRT's default interpreter.
XNNPACK = "XNNPACK"
BUILTIN = "LiteRT builtin"

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


@dataclass
class LitertNodeParams:
    """What the ``litert`` profile uses for one node; unused fields stay ``None``."""

    runtime: str
    activation_range: tuple[int, int] | None = None
    #: FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D: float32 requantization scale per channel
    scale: np.ndarray | None = None
    add: object = None
    mean: object = None
    #: SOFTMAX: the float32 exp table; elementwise ops: the int8 table
    table: np.ndarray | None = None
    output_scale: float | None = None
    output_zero_point: int | None = None
    fused_activation: str = "NONE"
    #: The builtin kernel computes what the reference kernels compute (the ``tflm``
    #: profile's arithmetic): every node of a 16x8 model, which XNNPACK does not take.
    reference: bool = False


def _refuse(node: ir.Node, why: str) -> Tfl2RtlError:
    return Tfl2RtlError(f"the litert profile does not model node {node.tflite_op_index} "
                        f"({node.tflite_op}): {why}")


def _source(graph: ir.Graph):
    from .tflite_reader import read_model

    if not graph.source:
        raise Tfl2RtlError("the litert profile reads float32 scales and options from the "
                           ".tflite file, but this graph has no source file")
    return read_model(graph.source)


def prepare_litert(graph: ir.Graph) -> dict[ir.Node, LitertNodeParams]:
    """Derive every node's parameters as LiteRT's default interpreter does."""
    from .kernels import litert_builtin, xnnpack

    model = _source(graph)
    params: dict[ir.Node, LitertNodeParams] = {}
    for node in graph.nodes:
        op = model.operators[node.tflite_op_index]
        tensors = model.tensors
        inp = tensors[op.inputs[0]]
        out = tensors[op.outputs[0]]
        dtype = out.dtype if out.dtype in ("int8", "uint8") else "int8"  # qs8 or qu8
        activation = _ACTIVATIONS.get(op.options.get("FusedActivationFunction", 0), "?")
        p = LitertNodeParams(runtime=XNNPACK, fused_activation=activation)
        if hasattr(node, "act_min"):
            p.activation_range = (node.act_min, node.act_max)
        if graph.quantization == "int16x8":
            # XNNPACK takes no int16 operator; LiteRT's builtin int16 kernels compute what
            # the reference ones do, except FULLY_CONNECTED and the float32 QUANTIZE (see
            # LitertProfile) and LEAKY_RELU's float32 ratios; measured on every tensor of
            # the 16x8 test models
            p.runtime, p.reference = BUILTIN, True
            if isinstance(node, ir.Lut):
                p.table = _lut_table(node, op, inp, out, "ref")[0]
        elif isinstance(node, (ir.FullyConnected, ir.Conv2D, ir.DepthwiseConv2D)):
            # one scale per output channel, or one for the layer (broadcast)
            p.scale = xnnpack.requantization_scale(inp.scale, tensors[op.inputs[1]].scales,
                                                   out.scale)
            if np.any(p.scale >= 256):
                raise _refuse(node, "a requantization scale reaches 256, so XNNPACK leaves "
                                    "the layer to LiteRT's builtin kernel")
            p.activation_range = xnnpack.activation_range(activation, out.scale,
                                                          out.zero_point, dtype)
        elif isinstance(node, ir.MaxPool2D):
            if any(s > f for s, f in zip(node.stride, node.filter, strict=True)):
                # XNNPACK declines a stride larger than the filter (measured on every
                # filter and stride of 1 to 3, int8 and uint8): LiteRT's builtin kernel
                # runs it, with TFLite's clamp
                p.runtime = BUILTIN
            else:
                p.activation_range = xnnpack.activation_range(activation, out.scale,
                                                              out.zero_point, dtype)
        elif isinstance(node, ir.AveragePool2D):
            p.runtime = BUILTIN  # XNNPACK takes float average pooling only
        elif isinstance(node, ir.Add):
            in2 = tensors[op.inputs[1]]
            for t in (inp, in2):
                ratio = np.float32(t.scale) / np.float32(out.scale)
                if not 1 / 1024 <= ratio < 256:
                    raise _refuse(node, f"input/output scale ratio {ratio:g} is outside "
                                        "[1/1024, 256), so XNNPACK leaves it to LiteRT")
            p.add = xnnpack.add_params(inp.scale, inp.zero_point, in2.scale, in2.zero_point,
                                       out.scale, out.zero_point, dtype)
            p.activation_range = xnnpack.activation_range(activation, out.scale,
                                                          out.zero_point, dtype)
        elif isinstance(node, ir.Mean):
            p.mean = xnnpack.mean_params(inp.scale, inp.zero_point, out.scale,
                                         out.zero_point, node.count)
        elif isinstance(node, ir.Softmax):
            p.runtime = BUILTIN  # XNNPACK takes float softmax only
            p.table = litert_builtin.softmax_lookup_table(inp.scale, node.beta)
            p.output_scale, p.output_zero_point = out.scale, out.zero_point
        elif isinstance(node, ir.Lut):
            p.table, p.runtime = _lut_table(node, op, inp, out, "auto")
        elif isinstance(node, ir.Requantize):
            p.runtime = BUILTIN
            if not node.flip_sign:
                raise _refuse(node, "only the int8<->uint8 QUANTIZE that flips the sign bit "
                                    "is modelled")
        params[node] = p
    return params


def prepare_litert_ref(graph: ir.Graph) -> dict[ir.Node, np.ndarray]:
    """The elementwise tables of LiteRT's reference kernels (``BUILTIN_REF``), by node;
    every other node computes what TFLite Micro computes (except FULLY_CONNECTED, see
    :class:`~tfl2rtl.golden.LitertRefProfile`)."""
    luts = [node for node in graph.nodes if isinstance(node, ir.Lut)]
    if not luts:
        return {}
    model = _source(graph)
    tables = {}
    for node in luts:
        op = model.operators[node.tflite_op_index]
        inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
        tables[node] = _lut_table(node, op, inp, out, "ref")[0]
    return tables


def _lut_table(node, op, inp, out, resolver: str) -> tuple[np.ndarray, str]:
    """An elementwise op's int8 table and the runtime that computes it."""
    from .kernels import litert_builtin, xnnpack
    from .kernels.elementwise import abs_int8, hard_swish_int8, leaky_relu_int8

    args = (inp.scale, inp.zero_point, out.scale, out.zero_point)
    values = np.arange(-128, 128)
    xnnpack_takes = resolver == "auto"
    if inp.dtype == "int16":  # a 16x8 LEAKY_RELU (see lower.INT16_LUT_OPS)
        alpha = float(np.float32(op.options.get("Alpha", 0.0)))
        params = litert_builtin.leaky_relu_params(*args, alpha)
        return leaky_relu_int8(np.arange(-32768, 32768), params, dtype="int16"), BUILTIN
    if inp.dtype == "uint8":  # a legacy uint8 LOGISTIC or TANH (see lower.UINT8_LUT_OPS)
        kernels = {"LOGISTIC": (xnnpack.sigmoid_table, litert_builtin.logistic_table),
                   "TANH": (xnnpack.tanh_table, litert_builtin.tanh_table)}[node.function]
        table = kernels[0 if xnnpack_takes else 1](*args, dtype="uint8")
        return table, XNNPACK if xnnpack_takes else BUILTIN
    if node.function == "LEAKY_RELU":
        alpha = float(np.float32(op.options.get("Alpha", 0.0)))
        if xnnpack_takes and _xnnpack_takes_leaky_relu(inp.scale, out.scale, alpha):
            lrelu = xnnpack.leaky_relu_params(*args, alpha)
            return xnnpack.leaky_relu_qs8(values, lrelu).astype(np.int8), XNNPACK
        params = litert_builtin.leaky_relu_params(*args, alpha)
        return leaky_relu_int8(values, params), BUILTIN
    if node.function == "LOGISTIC":
        if xnnpack_takes:
            return xnnpack.sigmoid_table(*args), XNNPACK
        return litert_builtin.logistic_table(*args), BUILTIN
    if node.function == "TANH":
        if xnnpack_takes:
            return xnnpack.tanh_table(*args), XNNPACK
        return litert_builtin.tanh_table(*args), BUILTIN
    if node.function == "ELU":
        if not xnnpack_takes:
            raise _refuse(node, "LiteRT's BUILTIN_REF resolver has no ELU kernel (LiteRT "
                                "refuses the model)")
        return xnnpack.elu_table(*args), XNNPACK
    # XNNPACK takes HARD_SWISH, RELU, RELU6 and ABS for float tensors only
    if node.function == "HARD_SWISH":
        return hard_swish_int8(values, litert_builtin.hard_swish_params(*args)), BUILTIN
    if node.function in ("RELU", "RELU6"):
        act_max = 6.0 if node.function == "RELU6" else float("inf")
        return litert_builtin.relu_int8(values, *args, act_max=act_max), BUILTIN
    if node.function == "ABS":
        return abs_int8(values, litert_builtin.abs_params(*args)), BUILTIN
    raise _refuse(node, f"LiteRT's kernel for int8 {node.function} has not been measured")


def _xnnpack_takes_leaky_relu(input_scale: float, output_scale: float, alpha: float) -> bool:
    """The XNNPACK delegate's checks for a quantized LEAKY_RELU (``VisitUnaryNode``):
    a normal non-zero alpha, ``input_scale / output_scale`` in [1/256, 128] and that
    times alpha in [-127.99609375, 128] and at least 1/256 in magnitude (float32)."""
    positive_scale = np.float32(input_scale) / np.float32(output_scale)
    negative_scale = positive_scale * np.float32(alpha)
    return (np.isfinite(alpha) and alpha != 0.0 and abs(alpha) >= np.finfo(np.float32).tiny
            and 1 / 256 <= positive_scale <= 128
            and -127.99609375 <= negative_scale <= 128 and abs(negative_scale) >= 1 / 256)

#: How each runtime computes an elementwise table, for ``inspect``.
TABLE_DESCRIPTIONS = {
    (XNNPACK, "LOGISTIC"): "XNNPACK float reference sigmoid, half to even",
    (XNNPACK, "TANH"): "XNNPACK float reference tanh, half to even",
    (XNNPACK, "LEAKY_RELU"): "XNNPACK Q8 multipliers, (d * m + 128) >> 8",
    (BUILTIN, "LOGISTIC"): "float32 1 / (1 + expf(-x)), half away from zero",
    (BUILTIN, "TANH"): "float32 tanhf(x), half away from zero",
    (BUILTIN, "LEAKY_RELU"): "TFLite integer kernel, float32 scale ratios",
    (BUILTIN, "HARD_SWISH"): "TFLite integer kernel, float32 scale ratios",
    (XNNPACK, "ELU"): "XNNPACK float reference expm1f, half to even",
    (BUILTIN, "RELU"): "TFLite integer requantization, float32 scale ratio",
    (BUILTIN, "RELU6"): "TFLite integer requantization, float32 scale ratio, roundf bound",
    (BUILTIN, "ABS"): "TFLite integer kernel, float32 scale ratio",
}


def span(values):
    """A float, or ``[min, max]`` of several (JSON-ready): how ``inspect`` shows scales."""
    values = np.asarray(values, np.float64).reshape(-1)
    lo, hi = float(values.min()), float(values.max())
    return lo if values.size == 1 else [lo, hi]


def describe_params(node: ir.Node, p: LitertNodeParams) -> dict:
    """What the ``litert`` profile uses for ``node``, JSON-ready (for ``inspect``)."""
    info: dict = {"runtime": p.runtime}
    if p.scale is not None:
        info.update(requantization="float32: lrintf(float(acc) * scale), half to even",
                    scale=span(p.scale), per_channel=bool(p.scale.size > 1))
    elif p.add is not None:
        a = p.add
        info.update(requantization="(bias + a * a_multiplier + b * b_multiplier) >> shift, "
                                   "halves up",
                    a_multiplier=a.a_multiplier, b_multiplier=a.b_multiplier,
                    shift=a.shift, bias=a.bias)
    elif p.mean is not None:
        info.update(requantization="float32: nearbyint(float(sum) * scale + zero_point), "
                                   "half to even",
                    scale=float(p.mean.scale), zero_point=float(p.mean.output_zero_point))
    elif isinstance(node, ir.Softmax):
        info.update(softmax="float32 exp table, float32 sum, round half away from zero")
    elif isinstance(node, ir.Lut):
        info.update(table=TABLE_DESCRIPTIONS[p.runtime, node.function])
    elif isinstance(node, ir.Quantize):
        info.update(requantization="float32: lrintf(x * (1.0f / scale)), half to even")
    elif isinstance(node, ir.AveragePool2D):
        info.update(rounding="(sum +- count/2) / count, as the reference")
    if hasattr(node, "act_min") and p.activation_range is not None:
        info["clamp"] = list(p.activation_range)
        info["fused_activation"] = p.fused_activation
    return info
