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
- ``uint8_legacy.tflite``: one FULLY_CONNECTED with uint8 activations and uint8 weights
  (zero point 128).  Refused as legacy uint8 quantization, a mode not supported yet.
- ``cnn_float_io.tflite`` and ``mlp_float_io.tflite``: full-integer int8 inside,
  float32 at both edges (QUANTIZE in, DEQUANTIZE out), as the converter writes a model
  without ``inference_input_type``: the float edges the host computes around the
  hardware.  Weight scales keep each layer's outputs spread over int8.
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

from tflite_writer import GraphWriter  # noqa: E402

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


def uint8_legacy() -> bytes:
    """A legacy (TF1 quantization-aware training) uint8 model: uint8 activations and uint8
    weights with a non-zero weight zero point, one FULLY_CONNECTED."""
    rng = np.random.default_rng(SEED + 2)
    g = GraphWriter("tfl2rtl refusal test: legacy uint8 quantization")
    x = g.tensor((1, 16), "uint8", 1 / 255, 0, name="input")
    w = g.const(rng.integers(0, 256, (4, 16)), "uint8", 0.02, 128)
    b = g.const(rng.integers(-500, 500, 4), "int32", 0.02 / 255)
    y = g.tensor((1, 4), "uint8", 0.1, 120, name="output")
    g.op("FULLY_CONNECTED", [x, w, b], [y], fused_activation_function="NONE")
    return g.finish([x], [y])


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
    "cnn_float_io.tflite": cnn_float_io,
    "mlp_float_io.tflite": mlp_float_io,
    "nchw_float_io.tflite": nchw_float_io,
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
