"""Write valid ``.tflite`` models directly, with the ``tflite`` package's flatbuffer
builders: no TensorFlow, no converter.

:class:`GraphWriter` collects tensors, constants and operators and serializes them in
:meth:`GraphWriter.finish`::

    g = GraphWriter()
    x = g.tensor((1, 8), "int8", scale=0.05, zero_point=-3)
    y = g.fully_connected(x, weights, weight_scales=0.01, bias=bias, out_quant=(0.1, 7))
    model = g.finish([x], [y])             # bytes: write them to a .tflite file

The low-level calls are ``tensor``, ``const`` and ``op(name, inputs, outputs,
**options)``; option names are the schema's in snake case (``stride_h``,
``fused_activation_function``, ``keep_num_dims``...), enum values may be given by name
(``padding="SAME"``, ``fused_activation_function="RELU6"``).  The layer methods
(:meth:`GraphWriter.conv_2d` and friends) add the constants and the output tensor the
way the TFLite converter lays them out: int8 weights with zero point 0 (per tensor or per
channel along axis 0, depthwise along axis 3) and int32 biases whose scale is
``input_scale * weight_scale`` per channel.  :func:`single_op_model` is the one-operator
int8 -> int8 shortcut of the kernel tests.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite

__all__ = ["GraphWriter", "single_op_model", "conv_out_size", "TENSOR_TYPES", "OPTIONS"]

TENSOR_TYPES = {
    "float32": tflite.TensorType.FLOAT32, "int32": tflite.TensorType.INT32,
    "uint8": tflite.TensorType.UINT8, "int64": tflite.TensorType.INT64,
    "int16": tflite.TensorType.INT16, "int8": tflite.TensorType.INT8,
}

#: The builtin options table of each op that has one (ops not listed take none).
OPTIONS = {
    "FULLY_CONNECTED": "FullyConnectedOptions", "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "MAX_POOL_2D": "Pool2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions", "MEAN": "ReducerOptions", "ADD": "AddOptions",
    "CONCATENATION": "ConcatenationOptions", "PAD": "PadOptions", "PADV2": "PadV2Options",
    "RESHAPE": "ReshapeOptions", "SQUEEZE": "SqueezeOptions", "SOFTMAX": "SoftmaxOptions",
    "QUANTIZE": "QuantizeOptions", "DEQUANTIZE": "DequantizeOptions",
    "LEAKY_RELU": "LeakyReluOptions", "HARD_SWISH": "HardSwishOptions",
    "ABS": "AbsOptions", "TRANSPOSE": "TransposeOptions", "SVDF": "SVDFOptions",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions",
}

#: Options whose value may be given by enum name.
_ENUMS = {"padding": tflite.Padding, "fused_activation_function": tflite.ActivationFunctionType}

_NUMPY = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
          "int16": np.int16, "int8": np.int8}


def conv_out_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """TFLite's ``ComputeOutSize`` for one spatial axis."""
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def _camel(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def _vector(builder, values, prepend, elem_size, alignment=None):
    builder.StartVector(elem_size, len(values), alignment or elem_size)
    for value in reversed(values):
        prepend(value)
    return builder.EndVector()


def _offsets(builder, offsets):
    return _vector(builder, offsets, builder.PrependUOffsetTRelative, 4)


def _int32s(builder, values):
    return _vector(builder, [int(v) for v in values], builder.PrependInt32, 4)


def _bytes(builder, data: bytes):
    """A ``[ubyte]`` vector aligned to 16 bytes, as the converter writes buffers."""
    builder.StartVector(1, len(data), 16)
    builder.head -= len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    return builder.EndVector()


class GraphWriter:
    """One subgraph under construction.  Every method returns a tensor index (or, for
    :meth:`op`, the operator's index); :meth:`finish` returns the flatbuffer bytes."""

    def __init__(self, description: str = "tfl2rtl test model"):
        self.description = description
        self.tensors: list[dict] = []
        self.operators: list[tuple[str, list[int], list[int], dict]] = []

    # ----------------------------------------------------------------------------------
    # Tensors and operators
    # ----------------------------------------------------------------------------------

    def tensor(self, shape, dtype: str = "int8", scale=None, zero_point=0, *,
               quantized_dimension: int = 0, name: str | None = None,
               data: np.ndarray | None = None, variable: bool = False) -> int:
        """A tensor; ``scale`` (a float, or one per channel along ``quantized_dimension``)
        and ``zero_point`` (an int or one per scale) make it quantized.  ``variable``
        marks a state tensor (``is_variable``: an LSTM's or SVDF's state)."""
        scales = None if scale is None else np.atleast_1d(np.asarray(scale, np.float64))
        zero_points = None
        if scales is not None:
            zero_points = np.broadcast_to(np.asarray(zero_point, np.int64), scales.shape)
        index = len(self.tensors)
        self.tensors.append(dict(
            shape=tuple(int(d) for d in shape), dtype=dtype, scales=scales,
            zero_points=zero_points, quantized_dimension=quantized_dimension,
            name=name or f"t{index}", data=data, variable=variable,
        ))
        return index

    def const(self, data, dtype: str | None = None, scale=None, zero_point=0, **kwargs) -> int:
        """A constant tensor holding ``data`` (cast to ``dtype``, default its own)."""
        data = np.asarray(data)
        dtype = dtype or data.dtype.name
        cast = np.ascontiguousarray(data.astype(_NUMPY[dtype]))
        if not np.array_equal(cast, data):
            raise ValueError(f"constant values do not fit {dtype}")
        return self.tensor(cast.shape, dtype, scale, zero_point, data=cast, **kwargs)

    def op(self, name: str, inputs, outputs, *, options_table: bool = True,
           **options) -> int:
        """The operator ``name`` (a ``BuiltinOperator`` name) from ``inputs`` to ``outputs``
        (tensor indices, -1 for an omitted optional input) with builtin ``options``.

        Ops listed in :data:`OPTIONS` always get their options table (fields not given
        take the schema's defaults) unless ``options_table=False``."""
        if options and (name not in OPTIONS or not options_table):
            raise ValueError(f"{name} takes no builtin options here, got {sorted(options)}")
        self.operators.append((name, list(inputs), list(outputs),
                               options if options_table else None))
        return len(self.operators) - 1

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index]["shape"]

    def dtype(self, index: int) -> str:
        return self.tensors[index]["dtype"]

    def quant(self, index: int) -> tuple[float, int]:
        """``(scale, zero_point)`` of a per-tensor quantized tensor."""
        t = self.tensors[index]
        return float(t["scales"][0]), int(t["zero_points"][0])

    def like(self, index: int, shape=None, quant=None, dtype=None) -> int:
        """A new activation tensor with ``index``'s dtype and quantization unless given."""
        scale, zero_point = quant if quant is not None else self.quant(index)
        return self.tensor(self.shape(index) if shape is None else shape,
                           dtype or self.dtype(index), scale, zero_point)

    # ----------------------------------------------------------------------------------
    # Layers: constants, output tensor and operator in one call
    # ----------------------------------------------------------------------------------

    def _weights_and_bias(self, x, weights, weight_scales, bias, channels, axis):
        weight_scales = np.atleast_1d(np.asarray(weight_scales, np.float64))
        w = self.const(weights, "int8", weight_scales, 0,
                       quantized_dimension=axis if weight_scales.size > 1 else 0)
        if bias is None:
            return w, -1
        bias_scales = np.float64(np.float32(self.quant(x)[0])) * weight_scales.astype(
            np.float32).astype(np.float64)
        b = self.const(np.asarray(bias).reshape(channels), "int32", bias_scales, 0)
        return w, b

    def fully_connected(self, x, weights, weight_scales, bias, out_quant, *,
                        activation="NONE", keep_num_dims=False) -> int:
        """``weights`` is int8 ``[out_depth, accum_depth]``; ``weight_scales`` one float
        or one per output row; ``bias`` int32 ``[out_depth]`` or None (written as the
        omitted input -1, as the converter does)."""
        out_depth, accum_depth = np.shape(weights)
        w, b = self._weights_and_bias(x, weights, weight_scales, bias, out_depth, 0)
        in_shape = self.shape(x)
        if keep_num_dims:
            out_shape = (*in_shape[:-1], out_depth)
        else:
            out_shape = (int(np.prod(in_shape)) // accum_depth, out_depth)
        y = self.tensor(out_shape, "int8", *out_quant)
        self.op("FULLY_CONNECTED", [x, w, b], [y], fused_activation_function=activation,
                keep_num_dims=keep_num_dims)
        return y

    def conv_2d(self, x, weights, weight_scales, bias, out_quant, *, stride=(1, 1),
                padding="SAME", dilation=(1, 1), activation="NONE") -> int:
        """``weights`` is int8 ``[out_channels, kh, kw, in_channels]``, per-channel scales
        along axis 0."""
        channels, kh, kw, _ = np.shape(weights)
        w, b = self._weights_and_bias(x, weights, weight_scales, bias, channels, 0)
        y = self._window_output(x, (kh, kw), stride, dilation, padding, channels, out_quant)
        inputs = [x, w, b] if bias is not None else [x, w]
        self.op("CONV_2D", inputs, [y], padding=padding, stride_h=stride[0],
                stride_w=stride[1], dilation_h_factor=dilation[0],
                dilation_w_factor=dilation[1], fused_activation_function=activation)
        return y

    def depthwise_conv_2d(self, x, weights, weight_scales, bias, out_quant, *,
                          depth_multiplier=1, stride=(1, 1), padding="SAME", dilation=(1, 1),
                          activation="NONE") -> int:
        """``weights`` is int8 ``[1, kh, kw, in_channels * depth_multiplier]``,
        per-channel scales along axis 3."""
        _, kh, kw, channels = np.shape(weights)
        w, b = self._weights_and_bias(x, weights, weight_scales, bias, channels, 3)
        y = self._window_output(x, (kh, kw), stride, dilation, padding, channels, out_quant)
        # Without a bias the input list ends at the weights: TFLM's depthwise Prepare
        # crashes (null dereference) on an omitted bias written as -1.
        inputs = [x, w, b] if bias is not None else [x, w]
        self.op("DEPTHWISE_CONV_2D", inputs, [y], padding=padding, stride_h=stride[0],
                stride_w=stride[1], depth_multiplier=depth_multiplier,
                dilation_h_factor=dilation[0], dilation_w_factor=dilation[1],
                fused_activation_function=activation)
        return y

    def pool_2d(self, op, x, filter_hw, *, stride=(1, 1), padding="VALID",
                activation="NONE") -> int:
        """MAX_POOL_2D or AVERAGE_POOL_2D; the output keeps the input's quantization."""
        y = self._window_output(x, filter_hw, stride, (1, 1), padding, self.shape(x)[3],
                                self.quant(x))
        self.op(op, [x], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
                filter_height=filter_hw[0], filter_width=filter_hw[1],
                fused_activation_function=activation)
        return y

    def _window_output(self, x, kernel, stride, dilation, padding, channels, out_quant):
        batch, h, w, _ = self.shape(x)
        out_h = conv_out_size(h, kernel[0], stride[0], dilation[0], padding)
        out_w = conv_out_size(w, kernel[1], stride[1], dilation[1], padding)
        return self.tensor((batch, out_h, out_w, channels), "int8", *out_quant)

    def mean(self, x, axes, out_quant, *, keep_dims=True) -> int:
        axes = [int(a) for a in axes]
        rank = len(self.shape(x))
        reduced = {a % rank for a in axes}
        shape = [1 if i in reduced else d for i, d in enumerate(self.shape(x))
                 if keep_dims or i not in reduced]
        y = self.tensor(shape, "int8", *out_quant)
        self.op("MEAN", [x, self.const(np.array(axes, np.int32))], [y], keep_dims=keep_dims)
        return y

    def add(self, x1, x2, out_quant, *, activation="NONE") -> int:
        shape = np.broadcast_shapes(self.shape(x1), self.shape(x2))
        y = self.tensor(shape, "int8", *out_quant)
        self.op("ADD", [x1, x2], [y], fused_activation_function=activation)
        return y

    def concatenation(self, xs, axis, *, activation="NONE") -> int:
        shape = list(self.shape(xs[0]))
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        y = self.like(xs[0], shape)
        self.op("CONCATENATION", list(xs), [y], axis=axis, fused_activation_function=activation)
        return y

    def pad(self, x, paddings, *, constant=None, out_quant=None) -> int:
        """PAD with the output zero point as the pad value, or PADV2 with the int8
        ``constant`` (quantized like the output, as TFLM checks)."""
        paddings = np.asarray(paddings, np.int32).reshape(-1, 2)
        shape = [d + int(p.sum()) for d, p in zip(self.shape(x), paddings, strict=True)]
        y = self.like(x, shape, quant=out_quant)
        if constant is None:
            self.op("PAD", [x, self.const(paddings)], [y])
        else:
            value = self.const(np.array([constant]), self.dtype(x), *self.quant(y))
            self.op("PADV2", [x, self.const(paddings), value], [y])
        return y

    def squeeze(self, x, axes) -> int:
        rank = len(self.shape(x))
        dropped = {a % rank for a in axes}
        y = self.like(x, [d for i, d in enumerate(self.shape(x)) if i not in dropped])
        self.op("SQUEEZE", [x], [y], squeeze_dims=list(axes))
        return y

    def reshape(self, x, shape) -> int:
        """RESHAPE with the new shape both as an int32 input and in the options, as the
        converter writes it."""
        y = self.like(x, shape)
        self.op("RESHAPE", [x, self.const(np.array(shape, np.int32))], [y],
                new_shape=list(shape))
        return y

    def softmax(self, x, *, beta=1.0, out_quant=(1 / 256, -128)) -> int:
        y = self.like(x, quant=out_quant)
        self.op("SOFTMAX", [x], [y], beta=beta)
        return y

    def quantize(self, x, out_quant, dtype="int8") -> int:
        y = self.like(x, quant=out_quant, dtype=dtype)
        self.op("QUANTIZE", [x], [y])
        return y

    def dequantize(self, x) -> int:
        """DEQUANTIZE to float32 (an unquantized tensor of the same shape)."""
        y = self.tensor(self.shape(x), "float32")
        self.op("DEQUANTIZE", [x], [y])
        return y

    def transpose(self, x, perm) -> int:
        """TRANSPOSE by ``perm`` (an int32 constant input, as the converter writes it);
        the output keeps the input's dtype and quantization."""
        shape = [self.shape(x)[p] for p in perm]
        y = self.like(x, shape) if self.tensors[x]["scales"] is not None else self.tensor(
            shape, self.dtype(x))
        self.op("TRANSPOSE", [x, self.const(np.array(perm, np.int32))], [y])
        return y

    def elementwise(self, op, x, out_quant, **options) -> int:
        """A one-input op keeping the shape: LOGISTIC, TANH, RELU, LEAKY_RELU..."""
        y = self.like(x, quant=out_quant)
        self.op(op, [x], [y], **options)
        return y

    # ----------------------------------------------------------------------------------
    # Serialization
    # ----------------------------------------------------------------------------------

    def finish(self, inputs, outputs) -> bytes:
        """The model as ``.tflite`` bytes with graph ``inputs`` and ``outputs``."""
        b = flatbuffers.Builder(4096)
        # Buffer 0 is the empty sentinel; each tensor gets its own (empty unless constant).
        buffers = [self._buffer(b, None)]
        tensors = []
        for t in self.tensors:
            buffers.append(self._buffer(b, t["data"]))
            tensors.append(self._tensor(b, t, len(buffers) - 1))
        codes = sorted({name for name, *_ in self.operators},
                       key=[name for name, *_ in self.operators].index)
        operators = [self._operator(b, codes.index(name), name, ins, outs, options)
                     for name, ins, outs, options in self.operators]
        tensor_vector = _offsets(b, tensors)
        graph_inputs = _int32s(b, inputs)
        graph_outputs = _int32s(b, outputs)
        operator_vector = _offsets(b, operators)
        graph_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensor_vector)
        tflite.SubGraphAddInputs(b, graph_inputs)
        tflite.SubGraphAddOutputs(b, graph_outputs)
        tflite.SubGraphAddOperators(b, operator_vector)
        tflite.SubGraphAddName(b, graph_name)
        subgraph = tflite.SubGraphEnd(b)
        opcodes = []
        for name in codes:
            code = getattr(tflite.BuiltinOperator, name)
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            opcodes.append(tflite.OperatorCodeEnd(b))
        opcode_vector = _offsets(b, opcodes)
        subgraph_vector = _offsets(b, [subgraph])
        buffer_vector = _offsets(b, buffers)
        description = b.CreateString(self.description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, opcode_vector)
        tflite.ModelAddSubgraphs(b, subgraph_vector)
        tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffer_vector)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b, data):
        payload = None if data is None else _bytes(b, data.astype(data.dtype.newbyteorder("<"))
                                                    .tobytes())
        tflite.BufferStart(b)
        if payload is not None:
            tflite.BufferAddData(b, payload)
        return tflite.BufferEnd(b)

    @staticmethod
    def _tensor(b, t, buffer):
        name = b.CreateString(t["name"])
        shape = _int32s(b, t["shape"])
        quantization = None
        if t["scales"] is not None:
            scales = _vector(b, [float(s) for s in t["scales"]], b.PrependFloat32, 4)
            zero_points = _vector(b, [int(z) for z in t["zero_points"]], b.PrependInt64, 8)
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scales)
            tflite.QuantizationParametersAddZeroPoint(b, zero_points)
            tflite.QuantizationParametersAddQuantizedDimension(b, t["quantized_dimension"])
            quantization = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, TENSOR_TYPES[t["dtype"]])
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name)
        if t.get("variable"):
            tflite.TensorAddIsVariable(b, True)
        if quantization is not None:
            tflite.TensorAddQuantization(b, quantization)
        return tflite.TensorEnd(b)

    @staticmethod
    def _options(b, op, options):
        """``(BuiltinOptions type, offset)`` of ``op``'s options table (None, None if the
        op has none)."""
        table = OPTIONS.get(op)
        if table is None or options is None:
            return None, None
        vectors = {}
        for key, value in options.items():  # vectors go before the table starts
            if isinstance(value, (list, tuple)):
                getattr(tflite, f"{table}Start{_camel(key)}Vector")(b, len(value))
                for v in reversed(value):
                    b.PrependInt32(int(v))
                vectors[key] = b.EndVector()
        getattr(tflite, f"{table}Start")(b)
        for key, value in options.items():
            if key in vectors:
                value = vectors[key]
            elif isinstance(value, str):
                value = getattr(_ENUMS[key], value)
            getattr(tflite, f"{table}Add{_camel(key)}")(b, value)
        return getattr(tflite.BuiltinOptions, table), getattr(tflite, f"{table}End")(b)

    def _operator(self, b, opcode, name, inputs, outputs, options):
        options_type, options_offset = self._options(b, name, options)
        op_inputs = _int32s(b, inputs)
        op_outputs = _int32s(b, outputs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode)
        tflite.OperatorAddInputs(b, op_inputs)
        tflite.OperatorAddOutputs(b, op_outputs)
        if options_offset is not None:
            tflite.OperatorAddBuiltinOptionsType(b, options_type)
            tflite.OperatorAddBuiltinOptions(b, options_offset)
        return tflite.OperatorEnd(b)


def single_op_model(op, shape, input_quant, output_quant, **options) -> bytes:
    """A .tflite flatbuffer with one int8 -> int8 ``op`` from input 0 to output 1.

    ``input_quant`` and ``output_quant`` are ``(scale, zero_point)``; ``options`` are the
    op's builtin options (``beta`` for SOFTMAX, default 1: the schema's default 0 makes
    TFLM abort; ``alpha`` for LEAKY_RELU).
    """
    if op == "SOFTMAX":
        options.setdefault("beta", 1.0)
    g = GraphWriter("tfl2rtl kernel test")
    x = g.tensor(shape, "int8", *input_quant, name="input")
    y = g.tensor(shape, "int8", *output_quant, name="output")
    g.op(op, [x], [y], **options)
    return g.finish([x], [y])


def conv_chain_model(relu=True, end="fc", depthwise=False, pools=False) -> bytes:
    """A .tflite flatbuffer of convolutions (a sequential engine's, read from an
    activation memory): a 3x3 SAME convolution (zero point 5 at the input: the
    padding), a 2x2 stride-2 VALID one with dilation 1, a 1x3 SAME one with stride 1x2,
    then a fully connected layer over the flattened tensor (``end`` "fc"), or nothing
    more ("conv"); with ``depthwise``, a 3x3 SAME depthwise convolution after the first
    and a 3x2 SAME one (more padding at the bottom and right than at the top and left)
    after the second; with ``pools``, a 2x2 SAME max pool of stride 1 after the first
    convolution and a global average pool before the fully connected layer."""
    rng = np.random.default_rng(11)
    g = GraphWriter()
    act = "RELU" if relu else "NONE"
    x = g.tensor((1, 6, 5, 2), "int8", 0.05, 5)
    h = g.conv_2d(x, rng.integers(-127, 128, (6, 3, 3, 2)), rng.uniform(0.005, 0.02, 6),
                  rng.integers(-300, 300, 6), (0.06, -3), activation=act)
    if pools:
        h = g.pool_2d("MAX_POOL_2D", h, (2, 2), padding="SAME")
    if depthwise:
        h = g.depthwise_conv_2d(h, rng.integers(-127, 128, (1, 3, 3, 6)),
                                rng.uniform(0.01, 0.05, 6), rng.integers(-300, 300, 6),
                                (0.07, -6), activation=act)
    h = g.conv_2d(h, rng.integers(-127, 128, (4, 2, 2, 6)), 0.01, None, (0.08, 2),
                  stride=(2, 2), padding="VALID")
    if depthwise:
        h = g.depthwise_conv_2d(h, rng.integers(-127, 128, (1, 3, 2, 4)), 0.02,
                                rng.integers(-300, 300, 4), (0.05, 3))
    h = g.conv_2d(h, rng.integers(-127, 128, (5, 1, 3, 4)), rng.uniform(0.005, 0.02, 5),
                  rng.integers(-300, 300, 5), (0.07, -1), stride=(1, 2), activation=act)
    if pools:
        h = g.pool_2d("AVERAGE_POOL_2D", h, g.shape(h)[1:3])
    if end == "fc":
        size = int(np.prod(g.shape(h)))
        h = g.reshape(h, (1, size))
        h = g.fully_connected(h, rng.integers(-127, 128, (7, size)), 0.01,
                              rng.integers(-300, 300, 7), (0.1, 4))
    return g.finish([x], [h])
