"""The fixed-point intermediate representation.

A :class:`Graph` is a list of :class:`Node` objects in execution order over named
:class:`Tensor` values.  Every node declares its attributes as dataclass fields and holds
only exact integer parameters (multipliers, shifts, offsets, clamp bounds, tables), plus
the real scale each multiplier was derived from so that a rounding profile that works in
floating point can recompute its own.  The IR knows nothing about how it is run or built:
the golden model (:mod:`tfl2rtl.golden`) and the hardware generator read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

__all__ = [
    "Tensor",
    "Requant",
    "Node",
    "FullyConnected",
    "Conv2D",
    "DepthwiseConv2D",
    "MaxPool2D",
    "AveragePool2D",
    "Add",
    "Mean",
    "Concatenation",
    "Pad",
    "Reshape",
    "Softmax",
    "Requantize",
    "Quantize",
    "Dequantize",
    "Lut",
    "Graph",
    "shape_size",
]

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def shape_size(shape) -> int:
    """The number of elements of a tensor of ``shape`` (1 for a scalar's ``()``)."""
    return int(np.prod(shape, dtype=np.int64))


@dataclass(eq=False)
class Tensor:
    """A value in the graph.

    ``scale``/``zero_point`` are the affine quantization (``real = scale * (q - zero_point)``)
    and are ``None``/0 for float tensors.  ``value_range`` is the proven integer range of
    the tensor's elements (narrower than its dtype after a fused activation).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int = 0
    tflite_index: int | None = None
    value_range: tuple[int, int] | None = None
    data: np.ndarray | None = None

    @property
    def size(self) -> int:
        return shape_size(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(eq=False)
class Requant:
    """Per-channel requantization: ``acc -> acc * real_scale`` in TFLite's integers.

    ``multiplier`` (int32, q31) and ``shift`` (TFLite's signed exponent: > 0 shifts left)
    have one entry per output channel, or one for the whole tensor.  ``real_scale`` is the
    double each pair was quantized from.
    """

    multiplier: np.ndarray
    shift: np.ndarray
    real_scale: np.ndarray

    @property
    def per_channel(self) -> bool:
        return self.multiplier.size > 1


@dataclass(eq=False)
class Node:
    """Base class: every node has input and output tensor names and its TFLite origin."""

    op: ClassVar[str] = "node"
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tflite_op_index: int = field(default=-1, kw_only=True)
    tflite_op: str = field(default="", kw_only=True)

    @property
    def input(self) -> str:
        return self.inputs[0]

    @property
    def output(self) -> str:
        return self.outputs[0]

    def attributes(self) -> dict:
        """The node's declared attributes, by name (inputs and outputs excluded)."""
        skip = {"inputs", "outputs"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}

    @property
    def macs(self) -> int:
        return 0

    @property
    def weight_bytes(self) -> int:
        return 0


@dataclass(eq=False, kw_only=True)
class _Epilogue:
    """Fields shared by the ops that end with TFLite's requantize epilogue."""

    requant: Requant
    output_offset: int
    act_min: int
    act_max: int


@dataclass(eq=False, kw_only=True)
class _Weighted:
    """Fields shared by FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D beyond int8.

    ``filter_offset`` is ``-zero_point`` of the weights: 0 for int8 weights (symmetric),
    and the legacy uint8 weights' own zero point negated, so every product is
    ``(x + input_offset) * (w + filter_offset)`` as in TFLite's uint8 kernels.
    ``accumulator`` is ``"int32"``, or ``"int64"`` in a 16x8 layer (int16 inputs, int64
    bias), whose requantization is TFLite's int64 ``MultiplyByQuantizedMultiplier``.
    ``weight_scales`` are the weights' float32 scales (one, or one per output channel),
    kept for ``inspect``: ``requant.real_scale = s_in * weight_scales / s_out``.
    """

    filter_offset: int = 0
    accumulator: str = "int32"
    weight_scales: np.ndarray | None = None
    #: The signed width of the integers the products take (``offset_weights``): 8 for
    #: int8 weights; 9 in the hardware form of a legacy uint8 layer
    #: (:class:`tfl2rtl.lower.Uint8AsInt8`: ``w - zw`` in -255..255).
    weight_bits: int = 8

    @property
    def act_bits(self) -> int:
        """The width of the layer's activations: 16 in a 16x8 layer (int64
        accumulator), else 8."""
        return 16 if self.accumulator == "int64" else 8

    @property
    def bias_bytes(self) -> int:
        """Bytes per bias in the model: 4 (int32), 8 in a 16x8 layer (int64)."""
        return 8 if self.accumulator == "int64" else 4

    @property
    def offset_weights(self) -> np.ndarray:
        """``weights + filter_offset``: the integers the products use."""
        return self.weights + self.filter_offset if self.filter_offset else self.weights


@dataclass(eq=False, kw_only=True)
class FullyConnected(Node, _Epilogue, _Weighted):
    """``out[b, o] = clamp(requant(sum_i (x[b, i] + input_offset) * w[o, i] + bias[o])
    + output_offset)``.

    ``weights`` is int8 (uint8 in a legacy uint8 model) ``[out_depth, accum_depth]``,
    ``bias`` int32 (int64 in a 16x8 model) ``[out_depth]``.
    ``folded_bias = bias + input_offset * sum_i w[o, i]`` lets hardware accumulate the raw
    inputs; ``acc_bits`` bounds every partial sum of either form.  In every weighted node
    ``w`` stands for ``weights + filter_offset`` (see :class:`_Weighted`).
    """

    op: ClassVar[str] = "FULLY_CONNECTED"
    weights: np.ndarray
    bias: np.ndarray
    input_offset: int
    folded_bias: np.ndarray
    acc_bits: int
    #: How the hardware requantizes: ``"integer"`` (TFLite Micro's
    #: ``MultiplyByQuantizedMultiplier``), or ``"double"`` in a legacy uint8 layer's
    #: hardware form (:class:`tfl2rtl.lower.Uint8AsInt8`): one rounding of ``acc *
    #: real_scale``, as LiteRT's reference kernel (:class:`tfl2rtl.hw.requant.
    #: RoundingRequantizer`).  The golden model's profiles decide for themselves.
    requantization: str = "integer"

    @property
    def macs(self) -> int:
        return int(self.weights.size)

    @property
    def weight_bytes(self) -> int:
        return int(self.weights.size + self.bias_bytes * self.bias.size)


@dataclass(eq=False, kw_only=True)
class Conv2D(Node, _Epilogue, _Weighted):
    """NHWC convolution; ``weights`` ``[out_c, kh, kw, in_c]`` (dtypes as FULLY_CONNECTED's).

    ``padding`` is ``(top, left, bottom, right)``; a padded position contributes nothing,
    which equals an input of ``-input_offset`` (the input zero point), so ``folded_bias``
    stays exact when hardware pads with the zero point.
    """

    op: ClassVar[str] = "CONV_2D"
    weights: np.ndarray
    bias: np.ndarray
    input_offset: int
    folded_bias: np.ndarray
    acc_bits: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    out_hw: tuple[int, int] = (0, 0)

    @property
    def macs(self) -> int:
        return int(self.weights.size * self.out_hw[0] * self.out_hw[1])

    @property
    def weight_bytes(self) -> int:
        return int(self.weights.size + self.bias_bytes * self.bias.size)


@dataclass(eq=False, kw_only=True)
class DepthwiseConv2D(Node, _Epilogue, _Weighted):
    """NHWC depthwise convolution; ``weights`` ``[kh, kw, out_c]`` with
    ``out_c = in_c * depth_multiplier`` and output channel ``ic * depth_multiplier + m``."""

    op: ClassVar[str] = "DEPTHWISE_CONV_2D"
    weights: np.ndarray
    bias: np.ndarray
    input_offset: int
    folded_bias: np.ndarray
    acc_bits: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    depth_multiplier: int
    out_hw: tuple[int, int] = (0, 0)

    @property
    def macs(self) -> int:
        return int(self.weights.size * self.out_hw[0] * self.out_hw[1])

    @property
    def weight_bytes(self) -> int:
        return int(self.weights.size + self.bias_bytes * self.bias.size)


@dataclass(eq=False, kw_only=True)
class MaxPool2D(Node):
    op: ClassVar[str] = "MAX_POOL_2D"
    filter: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    act_min: int
    act_max: int


@dataclass(eq=False, kw_only=True)
class AveragePool2D(Node):
    """Average over the in-bounds part of each window, rounded half away from zero
    (``(sum +- count/2) / count`` in C division), then clamped."""

    op: ClassVar[str] = "AVERAGE_POOL_2D"
    filter: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    act_min: int
    act_max: int


@dataclass(eq=False, kw_only=True)
class Add(Node):
    """TFLite's int8 ADD: both inputs shifted left by ``left_shift``, rescaled to a common
    scale, summed, rescaled to the output, offset and clamped.  Inputs broadcast.  The
    same for legacy uint8 (``left_shift`` 20) and int16 (``left_shift`` 15, zero points
    0: the general-scale path of ``reference_ops::Add``)."""

    op: ClassVar[str] = "ADD"
    input1_offset: int
    input2_offset: int
    left_shift: int
    input1_requant: Requant
    input2_requant: Requant
    output_requant: Requant
    output_offset: int
    act_min: int
    act_max: int


@dataclass(eq=False, kw_only=True)
class Mean(Node):
    """int8 MEAN over ``axes`` (Keras' global average pooling; int16 in a 16x8 model):
    ``clamp(mbqm(sum(x) - input_zero_point * count, multiplier, shift) + output_zero_point)``
    where ``multiplier``/``shift`` already include the division by ``count`` the way TFLite
    folds it in (``(m << s) / count``, shift reduced by ``s``)."""

    op: ClassVar[str] = "MEAN"
    axes: tuple[int, ...]
    count: int
    requant: Requant
    input_zero_point: int
    output_zero_point: int


@dataclass(eq=False, kw_only=True)
class Concatenation(Node):
    """Concatenation along ``axis`` (non-negative).  TFLite Micro copies int8 values
    unchanged, so the IR does too; the converter gives all inputs one scale."""

    op: ClassVar[str] = "CONCATENATION"
    axis: int


@dataclass(eq=False, kw_only=True)
class Pad(Node):
    """Constant padding; ``paddings`` is ``((before, after), ...)`` per dimension."""

    op: ClassVar[str] = "PAD"
    paddings: tuple[tuple[int, int], ...]
    pad_value: int


@dataclass(eq=False, kw_only=True)
class Reshape(Node):
    op: ClassVar[str] = "RESHAPE"
    shape: tuple[int, ...]


@dataclass(eq=False, kw_only=True)
class Transpose(Node):
    """A permutation of the axes: output axis ``i`` is input axis ``perm[i]``.  TFLite
    Micro and LiteRT copy the values unchanged, so the IR does too."""

    op: ClassVar[str] = "TRANSPOSE"
    perm: tuple[int, ...]


@dataclass(eq=False, kw_only=True)
class HostEdge(Reshape):
    """Only in a hardware graph (:func:`tfl2rtl.edges.host_edges`): an edge QUANTIZE or
    DEQUANTIZE (``edge``, the model's node) that the host computes.  It reads and writes
    the integer tensor at the edge (``inputs == outputs``), so the hardware passes it
    through as it does a RESHAPE."""

    op: ClassVar[str] = "HOST_EDGE"
    edge: Node


@dataclass(eq=False, kw_only=True)
class Softmax(Node):
    """int8 softmax in gemmlowp fixed point (``input_multiplier``, ``input_left_shift`` and
    ``diff_min`` as TFLite's ``PreprocessSoftmaxScaling``); output scale 1/256, zero point
    -128 (legacy uint8: the same kernel, zero point 0).  int16 (16x8): ``SoftmaxInt16``'s
    table kernel, ``input_multiplier`` and ``input_left_shift`` mapping differences onto
    its exp table, ``diff_min`` unused (0); output scale 1/32768, zero point 0."""

    op: ClassVar[str] = "SOFTMAX"
    beta: float
    input_scale: float
    input_multiplier: int
    input_left_shift: int
    diff_min: int


@dataclass(eq=False, kw_only=True)
class Requantize(Node):
    """Integer to integer QUANTIZE: ``clamp(mbqm(x - input_zero_point) + output_zero_point)``,
    or a pure ``x ^ 0x80`` when it only moves between int8 and uint8 (``flip_sign``)."""

    op: ClassVar[str] = "QUANTIZE"
    input_zero_point: int
    output_zero_point: int
    requant: Requant
    flip_sign: bool


@dataclass(eq=False, kw_only=True)
class Quantize(Node):
    """float32 -> integer at the graph's input edge: ``round(x / scale) + zero_point``."""

    op: ClassVar[str] = "QUANTIZE"
    scale: float
    zero_point: int


@dataclass(eq=False, kw_only=True)
class Dequantize(Node):
    """integer -> float32 at the graph's output edge: ``scale * (q - zero_point)``."""

    op: ClassVar[str] = "DEQUANTIZE"
    scale: float
    zero_point: int


@dataclass(eq=False, kw_only=True)
class Lut(Node):
    """An elementwise int8 (or legacy uint8) op as an exact 256-entry table indexed by
    ``q - qmin``; a 16x8 model's int16 op as a 65536-entry one."""

    op: ClassVar[str] = "LUT"
    function: str
    table: np.ndarray
    #: The integer parameters the table was computed from, where hardware computes the
    #: op instead of looking it up: a 16x8 LEAKY_RELU's (:class:`tfl2rtl.kernels.
    #: elementwise.LeakyReluParams`, whose 65536-entry table no block RAM budget holds).
    params: object = None


@dataclass(eq=False)
class Graph:
    """A lowered model: tensors by name, nodes in execution order, graph edges."""

    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    mode: str = ""
    source: str = ""
    #: The quantization mode (:class:`tfl2rtl.tflite_reader.Mode`): ``"int8"``,
    #: ``"uint8-legacy"`` or ``"int16x8"``; ``mode`` adds the I/O dtype for people.
    quantization: str = "int8"

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def producer(self, name: str) -> Node | None:
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    @property
    def macs(self) -> int:
        return sum(node.macs for node in self.nodes)

    @property
    def weight_bytes(self) -> int:
        return sum(node.weight_bytes for node in self.nodes)
