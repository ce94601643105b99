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


#: file name -> the function writing it
MODELS = {
    "lstm_int8.tflite": lstm_int8,
    "svdf_int8.tflite": svdf_int8,
    "uint8_legacy.tflite": uint8_legacy,
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
