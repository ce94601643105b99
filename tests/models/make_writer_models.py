#!/usr/bin/env python3
"""Write the test models that need no training: ``.tflite`` files laid out with
``tests/tflite_writer.py`` (no TensorFlow), with fixed seeds, so every run writes the same
bytes::

    .venv/bin/python tests/models/make_writer_models.py [--out DIR]

``tests/test_tflite_reader.py`` checks that the committed files are what this script
writes.  The weights are random (fixed seeds); each model is there for one path:

- ``lstm_int8.tflite``: FULLY_CONNECTED (keep_num_dims), UNIDIRECTIONAL_SEQUENCE_LSTM
  (int8, int16 cell state), RESHAPE, FULLY_CONNECTED.  Refused by the LSTM's name and
  position, not as a 16x8 model.  TFLite Micro runs it (LiteRT wants the LSTM's
  intermediate tensors, which the writer does not write).
- ``svdf_int8.tflite``: SVDF (int8 feature weights, int16 time weights and state),
  FULLY_CONNECTED, SOFTMAX.  Refused as the LSTM; TFLite Micro and LiteRT run it.
- ``uint8_legacy.tflite``: a legacy uint8 MLP (uint8 activations and uint8 weights, each
  weight tensor with its own zero point): FULLY_CONNECTED (RELU), FULLY_CONNECTED (RELU),
  FULLY_CONNECTED, SOFTMAX.  The model ``inspect`` shows S1, S2, S3, Z1, Z2, Z3, M and the
  shift of; LiteRT runs it (TFLite Micro has no uint8 kernels).
- ``ops_uint8_legacy.tflite``: every legacy uint8 op in one graph (CONV_2D, DEPTHWISE_CONV_2D,
  a residual ADD, MAX_POOL_2D, AVERAGE_POOL_2D, LOGISTIC, CONCATENATION, PAD, RESHAPE,
  FULLY_CONNECTED, TANH, SOFTMAX), written with :class:`ModeLayers`.
- ``ops_int16x8.tflite``: the same for 16x8 (int16 activations with zero point 0, int8
  weights, int64 biases): float32 in, QUANTIZE to int16, CONV_2D, DEPTHWISE_CONV_2D, ADD,
  LEAKY_RELU, MAX_POOL_2D, AVERAGE_POOL_2D, an int16 -> int16 QUANTIZE, CONCATENATION,
  PAD, RESHAPE, FULLY_CONNECTED, SOFTMAX, DEQUANTIZE to float32 (MEAN: in the random
  tests).
- ``cnn_float_io.tflite`` and ``mlp_float_io.tflite``: full-integer int8 inside,
  float32 at both edges (QUANTIZE in, DEQUANTIZE out), as the converter writes a model
  without ``inference_input_type``: the float edges the host computes around the
  hardware.  Weight scales keep each layer's outputs spread over int8.
- ``jet_mlp_int8.tflite``: the jet-tagging MLP 16-64-32-32-5 with SOFTMAX (int8): the
  small MLP of the sequential engine's targets.
- ``nchw_float_io.tflite``: a PyTorch-style export (NCHW float32 input, TRANSPOSE to
  NHWC after the QUANTIZE, then PAD, CONV_2D, DEPTHWISE_CONV_2D, ADD, MEAN,
  FULLY_CONNECTED, DEQUANTIZE): TRANSPOSE in the golden model, at the input edge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tflite_writer import GraphWriter, conv_out_size  # noqa: E402

SEED = 17


def _weights(rng, shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


def lstm_int8() -> bytes:
    """An int8 sequence model whose third operator is an int8 UNIDIRECTIONAL_SEQUENCE_LSTM
    with an int16 cell state (as the converter's int8 LSTM): FULLY_CONNECTED
    (keep_num_dims) -> LSTM -> RESHAPE -> FULLY_CONNECTED."""
    rng = np.random.default_rng(SEED)
    steps, features, hidden, cells = 4, 3, 6, 5
    g = GraphWriter("tfl2rtl refusal test: int8 LSTM with int16 state")
    x = g.tensor((1, steps, features), "int8", 0.05, -3, name="input")
    h = g.fully_connected(x, _weights(rng, (hidden, features)), 0.01,
                          rng.integers(-500, 500, hidden), (0.04, 2), keep_num_dims=True)
    gate_w = [g.const(_weights(rng, (cells, hidden)), "int8", 0.01) for _ in range(4)]
    recurrent_w = [g.const(_weights(rng, (cells, cells)), "int8", 0.01) for _ in range(4)]
    biases = [g.const(rng.integers(-500, 500, cells), "int32", 0.0004) for _ in range(4)]
    output_state = g.tensor((1, cells), "int8", 1 / 128, 0, name="output_state",
                            variable=True)
    cell_state = g.tensor((1, cells), "int16", 2.0 ** -11, 0, name="cell_state",
                          variable=True)
    y = g.tensor((1, steps, cells), "int8", 1 / 128, 0, name="lstm_out")
    g.op("UNIDIRECTIONAL_SEQUENCE_LSTM",
         [h, *gate_w, *recurrent_w, -1, -1, -1, *biases, -1, -1, output_state, cell_state,
          -1, -1, -1, -1], [y], fused_activation_function="TANH", time_major=False)
    flat = g.reshape(y, (1, steps * cells))
    out = g.fully_connected(flat, _weights(rng, (3, steps * cells)), 0.01,
                            rng.integers(-500, 500, 3), (0.1, 0))
    return g.finish([x], [out])


def svdf_int8() -> bytes:
    """An int8 keyword-spotting-style model: SVDF first (int8 feature weights, int16 time
    weights and activation state, as the converter's int8 SVDF), then FULLY_CONNECTED and
    SOFTMAX."""
    rng = np.random.default_rng(SEED + 1)
    features, units, rank, memory = 8, 4, 2, 5
    filters = units * rank
    g = GraphWriter("tfl2rtl refusal test: int8 SVDF with int16 state")
    x = g.tensor((1, features), "int8", 0.05, 1, name="input")
    w_feature = g.const(_weights(rng, (filters, features)), "int8", 0.01)
    w_time = g.const(rng.integers(-3000, 3000, (filters, memory)), "int16", 2.0 ** -12,
                     name="weights_time")
    # TFLM checks the bias scale is the state's times the time weights'
    bias = g.const(rng.integers(-500, 500, units), "int32", 2.0 ** -20)
    state = g.tensor((1, filters * memory), "int16", 2.0 ** -8, 0, name="activation_state",
                     variable=True)
    y = g.tensor((1, units), "int8", 0.08, -5, name="svdf_out")
    g.op("SVDF", [x, w_feature, w_time, bias, state], [y], rank=rank,
         fused_activation_function="RELU")
    logits = g.fully_connected(y, _weights(rng, (3, units)), 0.01,
                               rng.integers(-500, 500, 3), (0.1, 0))
    return g.finish([x], [g.softmax(logits)])


class ModeLayers:
    """The layer methods of :class:`GraphWriter` for the other integer modes: legacy uint8
    (``"uint8"``: uint8 activations and per-tensor uint8 weights with a zero point, int32
    biases) and 16x8 (``"int16"``: int16 activations with zero point 0, int8 weights with
    per-channel scales, int64 biases).  Biases get the scale ``input_scale *
    weight_scale``, as the converters write them."""

    def __init__(self, g: GraphWriter, mode: str):
        assert mode in ("uint8", "int16")
        self.g, self.mode = g, mode

    def _weights(self, x, data, scales, zero_point, axis):
        """uint8 weights are ``data`` (0..255) with ``zero_point``; int8 ones ``data``
        with zero point 0 and one scale per channel along ``axis``."""
        g = self.g
        scales = np.atleast_1d(np.asarray(scales, np.float64))
        if self.mode == "uint8":
            return g.const(data, "uint8", float(scales[0]), zero_point), scales[:1]
        return g.const(data, "int8", scales, 0,
                       quantized_dimension=axis if scales.size > 1 else 0), scales

    def _bias(self, x, w_scales, bias):
        s_in = np.float64(np.float32(self.g.quant(x)[0]))
        scales = s_in * np.asarray(w_scales, np.float32).astype(np.float64)
        dtype = "int32" if self.mode == "uint8" else "int64"
        return self.g.const(np.asarray(bias), dtype, scales if scales.size > 1
                            else float(scales[0]), 0)

    def fully_connected(self, x, weights, weight_scales, bias, out_quant, *,
                        weight_zero_point=0, activation="NONE") -> int:
        g = self.g
        out_depth, accum_depth = np.shape(weights)
        w, w_scales = self._weights(x, weights, weight_scales, weight_zero_point, 0)
        b = self._bias(x, w_scales, bias)
        y = g.tensor((int(np.prod(g.shape(x))) // accum_depth, out_depth), self.mode,
                     *out_quant)
        g.op("FULLY_CONNECTED", [x, w, b], [y], fused_activation_function=activation)
        return y

    def conv_2d(self, x, weights, weight_scales, bias, out_quant, *, weight_zero_point=0,
                stride=(1, 1), padding="SAME", activation="NONE", depthwise=False,
                depth_multiplier=1) -> int:
        """CONV_2D (``weights [out_c, kh, kw, in_c]``) or, with ``depthwise``,
        DEPTHWISE_CONV_2D (``weights [1, kh, kw, in_c * depth_multiplier]``)."""
        g = self.g
        channels = np.shape(weights)[3] if depthwise else np.shape(weights)[0]
        kh, kw = np.shape(weights)[1:3]
        w, w_scales = self._weights(x, weights, weight_scales, weight_zero_point,
                                    3 if depthwise else 0)
        b = self._bias(x, w_scales, bias)
        batch, h, wd, _ = g.shape(x)
        shape = (batch, conv_out_size(h, kh, stride[0], 1, padding),
                 conv_out_size(wd, kw, stride[1], 1, padding), channels)
        y = g.tensor(shape, self.mode, *out_quant)
        options = dict(padding=padding, stride_h=stride[0], stride_w=stride[1],
                       fused_activation_function=activation)
        if depthwise:
            options["depth_multiplier"] = depth_multiplier
        g.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, b], [y], **options)
        return y

    def pool_2d(self, op, x, filter_hw, *, stride=(1, 1), padding="VALID",
                activation="NONE") -> int:
        g = self.g
        batch, h, w, c = g.shape(x)
        y = g.like(x, (batch, conv_out_size(h, filter_hw[0], stride[0], 1, padding),
                       conv_out_size(w, filter_hw[1], stride[1], 1, padding), c))
        g.op(op, [x], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
             filter_height=filter_hw[0], filter_width=filter_hw[1],
             fused_activation_function=activation)
        return y

    def add(self, x1, x2, out_quant, *, activation="NONE") -> int:
        """ADD; a 16x8 one with ``pot_scale_int16=False`` as the converter writes it (the
        schema's default True asks LiteRT for power-of-two scales)."""
        g = self.g
        y = g.tensor(np.broadcast_shapes(g.shape(x1), g.shape(x2)), self.mode, *out_quant)
        options = dict(fused_activation_function=activation)
        if self.mode == "int16":
            options["pot_scale_int16"] = False
        g.op("ADD", [x1, x2], [y], **options)
        return y

    def elementwise(self, op, x, out_quant, **options) -> int:
        return self.g.elementwise(op, x, out_quant, **options)

    def softmax(self, x, *, beta=1.0) -> int:
        out_quant = (1 / 256, 0) if self.mode == "uint8" else (1 / 32768, 0)
        return self.g.softmax(x, beta=beta, out_quant=out_quant)

    def mean(self, x, axes, out_quant, *, keep_dims=True) -> int:
        g = self.g
        rank = len(g.shape(x))
        reduced = {a % rank for a in axes}
        shape = [1 if i in reduced else d for i, d in enumerate(g.shape(x))
                 if keep_dims or i not in reduced]
        y = g.tensor(shape, self.mode, *out_quant)
        g.op("MEAN", [x, g.const(np.array(axes, np.int32))], [y], keep_dims=keep_dims)
        return y

    def requantize(self, x, out_quant) -> int:
        """An integer QUANTIZE to another scale (int16 -> int16 in a 16x8 model)."""
        return self.g.quantize(x, out_quant, dtype=self.mode)


def _uint8_weights(rng, shape):
    """uint8 weights and a zero point, as TF1's fake quantization leaves them."""
    return rng.integers(0, 256, shape), int(rng.integers(90, 170))


def uint8_legacy() -> bytes:
    """A legacy (TF1 quantization-aware training) uint8 MLP: uint8 activations and uint8
    weights with their own zero points; 16 -> 12 (RELU) -> 8 (RELU) -> 4 -> SOFTMAX."""
    rng = np.random.default_rng(SEED + 2)
    g = GraphWriter("tfl2rtl test model: legacy uint8 MLP")
    layers = ModeLayers(g, "uint8")
    h = x = g.tensor((1, 16), "uint8", 1 / 255, 0, name="input")
    for width, out_quant, activation in ((12, (0.05, 0), "RELU"), (8, (0.06, 0), "RELU"),
                                         (4, (0.12, 131), "NONE")):
        depth = g.shape(h)[1]
        weights, zero_point = _uint8_weights(rng, (width, depth))
        s_in = g.quant(h)[0]
        # inputs of one sign add up: a quarter of the int8 models' weight scale
        h = layers.fully_connected(h, weights,
                                   _layer_scale(rng, s_in, out_quant[0], depth) / 4,
                                   rng.integers(-500, 500, width), out_quant,
                                   weight_zero_point=zero_point, activation=activation)
    return g.finish([x], [layers.softmax(h)])


def ops_uint8_legacy() -> bytes:
    """Every legacy uint8 op: (1, 10, 10, 3) uint8 in, CONV_2D (3x3, 6, RELU6),
    DEPTHWISE_CONV_2D (3x3, stride 2), a residual ADD of a 1x1 CONV_2D, MAX_POOL_2D and
    LOGISTIC on one branch, AVERAGE_POOL_2D on the other, CONCATENATION, PAD, RESHAPE,
    FULLY_CONNECTED, TANH, FULLY_CONNECTED, SOFTMAX."""
    rng = np.random.default_rng(SEED + 6)
    g = GraphWriter("tfl2rtl test model: every legacy uint8 op")
    layers = ModeLayers(g, "uint8")
    x = g.tensor((1, 10, 10, 3), "uint8", 1 / 128, 100, name="input")
    w, zw = _uint8_weights(rng, (6, 3, 3, 3))
    h = layers.conv_2d(x, w, _layer_scale(rng, 1 / 128, 0.05, 27), rng.integers(-300, 300, 6),
                       (0.05, 0), weight_zero_point=zw, activation="RELU6")
    w, zw = _uint8_weights(rng, (1, 3, 3, 6))
    d = layers.conv_2d(h, w, _layer_scale(rng, 0.05, 0.06, 9), rng.integers(-300, 300, 6),
                       (0.06, 120), weight_zero_point=zw, stride=(2, 2), depthwise=True)
    w, zw = _uint8_weights(rng, (6, 1, 1, 6))
    p = layers.conv_2d(d, w, _layer_scale(rng, 0.06, 0.07, 6), rng.integers(-300, 300, 6),
                       (0.07, 125), weight_zero_point=zw)
    r = layers.add(d, p, (0.1, 128))
    m = layers.elementwise("LOGISTIC", layers.pool_2d("MAX_POOL_2D", r, (2, 2)),
                           (1 / 256, 0))
    a = layers.elementwise("LOGISTIC", layers.pool_2d("AVERAGE_POOL_2D", r, (2, 2)),
                           (1 / 256, 0))
    c = g.concatenation([m, a], axis=3)
    padded = g.pad(c, [[0, 0], [1, 0], [0, 1], [0, 0]])
    flat = g.reshape(padded, (1, int(np.prod(g.shape(padded)))))
    depth = g.shape(flat)[1]
    w, zw = _uint8_weights(rng, (8, depth))
    f = layers.fully_connected(flat, w, _layer_scale(rng, 1 / 256, 0.05, depth) / 8,
                               rng.integers(-300, 300, 8), (0.05, 128), weight_zero_point=zw)
    t = layers.elementwise("TANH", f, (1 / 128, 128))
    w, zw = _uint8_weights(rng, (5, 8))
    logits = layers.fully_connected(t, w, _layer_scale(rng, 1 / 128, 0.1, 8) / 4,
                                    rng.integers(-300, 300, 5), (0.1, 120),
                                    weight_zero_point=zw)
    return g.finish([x], [layers.softmax(logits)])


def ops_int16x8() -> bytes:
    """Every 16x8 op: float32 (1, 10, 10, 3) in, QUANTIZE to int16, CONV_2D (3x3, 6,
    RELU), DEPTHWISE_CONV_2D (3x3, stride 2, multiplier 2), a residual ADD of a 1x1
    CONV_2D, LEAKY_RELU, MAX_POOL_2D on one branch, AVERAGE_POOL_2D and an int16 requantizing
    QUANTIZE on the other, CONCATENATION, PAD, RESHAPE, FULLY_CONNECTED, SOFTMAX,
    DEQUANTIZE."""
    rng = np.random.default_rng(SEED + 7)
    g = GraphWriter("tfl2rtl test model: every 16x8 op")
    layers = ModeLayers(g, "int16")
    x = g.tensor((1, 10, 10, 3), "float32", name="input")
    q = g.quantize(x, (1 / 16384, 0), dtype="int16")

    def int8_weights(shape, s_in, s_out, fan_in, channels):
        spread = 2.0 ** rng.uniform(-1, 0, channels)
        return _weights(rng, shape), _layer_scale(rng, s_in, s_out, fan_in) * spread

    w, s = int8_weights((6, 3, 3, 3), 1 / 16384, 1 / 8192, 27, 6)
    h = layers.conv_2d(q, w, s, rng.integers(-3000, 3000, 6), (1 / 8192, 0), activation="RELU")
    w, s = int8_weights((1, 3, 3, 12), 1 / 8192, 1 / 6000, 9, 12)
    d = layers.conv_2d(h, w, s, rng.integers(-3000, 3000, 12), (1 / 6000, 0), stride=(2, 2),
                       depthwise=True, depth_multiplier=2)
    w, s = int8_weights((12, 1, 1, 12), 1 / 6000, 1 / 5000, 12, 12)
    p = layers.conv_2d(d, w, s, rng.integers(-3000, 3000, 12), (1 / 5000, 0))
    r = layers.elementwise("LEAKY_RELU", layers.add(d, p, (1 / 4000, 0)), (1 / 4000, 0),
                           alpha=0.2)
    m = layers.pool_2d("MAX_POOL_2D", r, (2, 2), stride=(1, 1))
    a = layers.requantize(layers.pool_2d("AVERAGE_POOL_2D", r, (2, 2), stride=(1, 1)),
                          (1 / 4000 * 1.5, 0))
    a = layers.requantize(a, (1 / 4000, 0))
    c = g.concatenation([m, a], axis=3)
    padded = g.pad(c, [[0, 0], [0, 1], [1, 0], [0, 0]])
    flat = g.reshape(padded, (1, int(np.prod(g.shape(padded)))))
    depth = g.shape(flat)[1]
    w, s = int8_weights((5, depth), 1 / 4000, 1 / 1000, depth, 5)
    logits = layers.fully_connected(flat, w, s / 4, rng.integers(-3000, 3000, 5),
                                    (1 / 1000, 0))
    return g.finish([x], [g.dequantize(layers.softmax(logits))])


def _layer_scale(rng, in_scale, out_scale, fan_in):
    """A weight scale that keeps a layer's int8 outputs spread over their range."""
    return float(np.float32(out_scale / (in_scale * 48 * np.sqrt(fan_in))
                            * 2.0 ** rng.uniform(-0.5, 0.5)))


def cnn_float_io() -> bytes:
    """The converter's default full-integer CNN: float32 (1, 12, 12, 2) in, QUANTIZE to
    int8, CONV_2D (3x3, 6 channels, RELU6), DEPTHWISE_CONV_2D (3x3, stride 2, RELU),
    a residual ADD of a 1x1 CONV_2D, AVERAGE_POOL_2D (2x2), RESHAPE, FULLY_CONNECTED (5),
    DEQUANTIZE to float32."""
    rng = np.random.default_rng(SEED + 3)
    g = GraphWriter("tfl2rtl test model: float32 I/O CNN")
    x = g.tensor((1, 12, 12, 2), "float32", name="input")
    q = g.quantize(x, (1 / 64, -3))
    s_in = g.quant(q)[0]
    h = g.conv_2d(q, _weights(rng, (6, 3, 3, 2)),
                  _layer_scale(rng, s_in, 0.05, 18) * 2.0 ** rng.uniform(-1, 0, 6),
                  rng.integers(-300, 300, 6), (0.05, -128), activation="RELU6")
    d = g.depthwise_conv_2d(h, _weights(rng, (1, 3, 3, 6)),
                            _layer_scale(rng, 0.05, 0.06, 9) * 2.0 ** rng.uniform(-1, 0, 6),
                            rng.integers(-300, 300, 6), (0.06, -128), stride=(2, 2),
                            activation="RELU")
    p = g.conv_2d(d, _weights(rng, (6, 1, 1, 6)), _layer_scale(rng, 0.06, 0.08, 6),
                  rng.integers(-300, 300, 6), (0.08, 5))
    r = g.add(d, p, (0.1, -20))
    pooled = g.pool_2d("AVERAGE_POOL_2D", r, (2, 2), stride=(2, 2))
    flat = g.reshape(pooled, (1, int(np.prod(g.shape(pooled)))))
    depth = g.shape(flat)[1]
    logits = g.fully_connected(flat, _weights(rng, (5, depth)),
                               _layer_scale(rng, 0.1, 0.2, depth),
                               rng.integers(-500, 500, 5), (0.2, 10))
    return g.finish([x], [g.dequantize(logits)])


def mlp_float_io() -> bytes:
    """The converter's default full-integer MLP: float32 (1, 16) in, QUANTIZE to int8,
    FULLY_CONNECTED (24, RELU), FULLY_CONNECTED (4), SOFTMAX, DEQUANTIZE to float32."""
    rng = np.random.default_rng(SEED + 4)
    g = GraphWriter("tfl2rtl test model: float32 I/O MLP")
    x = g.tensor((1, 16), "float32", name="input")
    q = g.quantize(x, (1 / 40, 7))
    h = g.fully_connected(q, _weights(rng, (24, 16)),
                          _layer_scale(rng, 1 / 40, 0.04, 16) * 2.0 ** rng.uniform(-1, 0, 24),
                          rng.integers(-400, 400, 24), (0.04, -128), activation="RELU")
    logits = g.fully_connected(h, _weights(rng, (4, 24)), _layer_scale(rng, 0.04, 0.1, 24),
                               rng.integers(-400, 400, 4), (0.1, -6))
    return g.finish([x], [g.dequantize(g.softmax(logits))])


def jet_mlp_int8() -> bytes:
    """The jet-tagging MLP of hls4ml's and FINN's papers at its usual shape: int8 (1, 16)
    in, FULLY_CONNECTED 64, 32, 32 (RELU each), FULLY_CONNECTED 5, SOFTMAX; int8 out
    (4,256 MACs).  Random weights, per-channel scales."""
    rng = np.random.default_rng(SEED + 6)
    g = GraphWriter("tfl2rtl test model: jet-tagging MLP 16-64-32-32-5")
    x = inputs = g.tensor((1, 16), "int8", 0.03, -4, name="input")
    scale = 0.03
    for width, out_scale, zero in ((64, 0.05, -128), (32, 0.06, -128), (32, 0.07, -128)):
        fan_in = g.shape(x)[1]
        x = g.fully_connected(x, _weights(rng, (width, fan_in)),
                              _layer_scale(rng, scale, out_scale, fan_in)
                              * 2.0 ** rng.uniform(-1, 0, width),
                              rng.integers(-400, 400, width), (out_scale, zero),
                              activation="RELU")
        scale = out_scale
    logits = g.fully_connected(x, _weights(rng, (5, 32)), _layer_scale(rng, scale, 0.1, 32),
                               rng.integers(-400, 400, 5), (0.1, 3))
    return g.finish([inputs], [g.softmax(logits)])


def nchw_float_io() -> bytes:
    """A PyTorch-style export: float32 NCHW input (1, 3, 10, 10), QUANTIZE, TRANSPOSE to
    NHWC, PAD, CONV_2D (3x3, stride 2, RELU6), DEPTHWISE_CONV_2D (3x3, RELU6), a residual
    ADD of a 1x1 CONV_2D, MEAN over height and width, FULLY_CONNECTED (4), DEQUANTIZE."""
    rng = np.random.default_rng(SEED + 5)
    g = GraphWriter("tfl2rtl test model: PyTorch-style NCHW input")
    x = g.tensor((1, 3, 10, 10), "float32", name="input")
    q = g.quantize(x, (1 / 50, 2))
    nhwc = g.transpose(q, (0, 2, 3, 1))
    padded = g.pad(nhwc, [[0, 0], [1, 1], [1, 1], [0, 0]])
    h = g.conv_2d(padded, _weights(rng, (8, 3, 3, 3)),
                  _layer_scale(rng, 1 / 50, 0.05, 27) * 2.0 ** rng.uniform(-1, 0, 8),
                  rng.integers(-300, 300, 8), (0.05, -128), stride=(2, 2), padding="VALID",
                  activation="RELU6")
    d = g.depthwise_conv_2d(h, _weights(rng, (1, 3, 3, 8)),
                            _layer_scale(rng, 0.05, 0.05, 9) * 2.0 ** rng.uniform(-1, 0, 8),
                            rng.integers(-300, 300, 8), (0.05, -128), activation="RELU6")
    p = g.conv_2d(d, _weights(rng, (8, 1, 1, 8)), _layer_scale(rng, 0.05, 0.07, 8),
                  rng.integers(-300, 300, 8), (0.07, 3))
    r = g.add(h, p, (0.09, -10))
    m = g.mean(r, [1, 2], (0.04, -5), keep_dims=False)
    logits = g.fully_connected(m, _weights(rng, (4, 8)), _layer_scale(rng, 0.04, 0.1, 8),
                               rng.integers(-300, 300, 4), (0.1, 0))
    return g.finish([x], [g.dequantize(logits)])


#: file name -> the function writing it
MODELS = {
    "lstm_int8.tflite": lstm_int8,
    "svdf_int8.tflite": svdf_int8,
    "uint8_legacy.tflite": uint8_legacy,
    "ops_uint8_legacy.tflite": ops_uint8_legacy,
    "ops_int16x8.tflite": ops_int16x8,
    "cnn_float_io.tflite": cnn_float_io,
    "mlp_float_io.tflite": mlp_float_io,
    "nchw_float_io.tflite": nchw_float_io,
    "jet_mlp_int8.tflite": jet_mlp_int8,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="default: this folder")
    args = parser.parse_args(argv)
    for name, make in MODELS.items():
        (args.out / name).write_bytes(make())
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
