#!/usr/bin/env python3
"""Regenerate the small .tflite test models in tests/models/.

Needs the ``models`` extra (TensorFlow + scikit-learn); the checks at the end also use
``tflite`` and ``tflite-micro``, which are normal dependencies of the package::

    pip install .[models]
    python tests/models/make_models.py

Everything is offline: the training data is scikit-learn's bundled 8x8 ``load_digits``
set (1,797 images), resized to 28x28x1 so it has the MNIST shape. Seeds are fixed, TF
runs single-threaded with op determinism on, so the output is meant to be byte-identical
from run to run (for the same TensorFlow / Keras / NumPy versions).

Every model is built twice from the same function: once with a free batch dimension for
training, once with ``batch_size=1`` for conversion (a free batch dimension makes the
converter emit SHAPE / STRIDED_SLICE / PACK ops). The weights are copied across.

After writing the files the script prints, for every model, its op list, I/O dtypes,
size and accuracy (Keras float model, TFLite reference kernels, TFLite Micro).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

# Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # oneDNN kernels can change float round-off
os.environ["TF_DETERMINISTIC_OPS"] = "1"
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.experimental.enable_op_determinism()
tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs were expected.*")

OUT_DIR = Path(__file__).resolve().parent
SEED = 20240607
N_TEST = 300  # held-out digits used for the accuracy numbers
N_CALIB = 100  # representative-dataset size for full-integer quantization
N_SAMPLES_PER_CLASS = 2  # -> digits_samples.npy holds 20 digits, labels 0,0,1,1,...,9,9


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def load_data():
    """Digits as float32 (N, 28, 28, 1) in [0, 1], split into a train and a test part."""
    d = load_digits()
    x8 = (d.images.astype(np.float32) / 16.0)[..., None]  # (1797, 8, 8, 1), in [0, 1]
    x = tf.image.resize(x8, (28, 28), method="bilinear").numpy()
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(SEED).permutation(len(x))
    test, train = perm[:N_TEST], perm[N_TEST:]
    return (x[train], y[train]), (x[test], y[test])


def pick_samples(x, y):
    """The first N_SAMPLES_PER_CLASS digits of each class, ordered by label."""
    idx = np.concatenate([np.flatnonzero(y == c)[:N_SAMPLES_PER_CLASS] for c in range(10)])
    return x[idx].astype(np.float32), y[idx]


# --------------------------------------------------------------------------------------
# Architectures. Each builder takes the batch size (None for training, 1 for export).
# --------------------------------------------------------------------------------------


def build_dense10(batch_size):
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    x = layers.Flatten()(inp)
    out = layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="dense10")


def build_mlp(batch_size):
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    x = layers.Flatten()(inp)
    x = layers.Dense(512, activation="relu")(x)
    x = layers.Dense(100, activation="relu")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="mlp")


def build_conv(batch_size):
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    x = layers.Conv2D(12, 3, activation="relu")(inp)  # 26x26x12
    x = layers.MaxPool2D(2)(x)  # 13x13x12
    x = layers.Flatten()(x)
    out = layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="conv")


def build_cnn(batch_size):
    """Small CNN that exercises many op types (~0.91 M MACs)."""
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(inp)  # PAD -> 29x29x1 (odd)
    # Strided SAME conv on an odd size (29 -> 15), fused RELU6.
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", name="stem")(x)
    # Depthwise with depth_multiplier=2: 8 -> 16 channels.
    x = layers.DepthwiseConv2D(
        3, depth_multiplier=2, padding="same", activation="relu6", name="dw"
    )(x)
    # Residual block -> ADD.
    y = layers.Conv2D(16, 3, padding="same", activation="relu", name="res_conv")(x)
    r = layers.Add(name="residual")([x, y])
    # Two branches (one dilated), concatenated. Both branches use fused activations: a
    # stand-alone RELU6 after the concat gets its own (rescaling) output scale, which
    # TFLite Micro's RELU6 kernel ignores (it only clamps), so TFLM and TFLite disagree.
    b1 = layers.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu6", name="dilated")(r)
    b2 = layers.Conv2D(8, 1, activation="relu", name="pointwise")(r)
    c = layers.Concatenate(name="concat")([b1, b2])  # 15x15x16
    p = layers.AveragePooling2D(2, name="avgpool")(c)  # 7x7x16
    p = layers.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="down")(p)
    g = layers.GlobalAveragePooling2D(name="gap")(p)  # 4x4x24 -> 24 (MEAN)
    out = layers.Dense(10, activation="softmax", name="probs")(g)
    return keras.Model(inp, out, name="cnn")


def build_activations(batch_size):
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    x = layers.Flatten()(inp)
    x = layers.Dense(32, name="fc_sigmoid")(x)
    x = layers.Activation("sigmoid", name="sigmoid")(x)
    x = layers.Dense(32, name="fc_tanh")(x)
    x = layers.Activation("tanh", name="tanh")(x)
    x = layers.Dense(32, name="fc_leaky")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="leaky_relu")(x)
    x = layers.Dense(32, name="fc_hswish")(x)
    x = layers.Activation("hard_swish", name="hard_swish")(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="activations")


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def train(builder, data, *, epochs, softmax_output, lr=2e-3):
    """Train builder(None) and return (export model with batch 1, float test accuracy)."""
    (x_tr, y_tr), (x_te, y_te) = data
    keras.utils.set_random_seed(SEED)  # same seed for every model, independent of order
    m = builder(None)
    m.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax_output),
        metrics=["accuracy"],
    )
    m.fit(x_tr, y_tr, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    acc = float(np.mean(np.argmax(m.predict(x_te, batch_size=100, verbose=0), -1) == y_te))
    export = builder(1)
    export.set_weights(m.get_weights())
    return export, acc


# --------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet():
    """Silence the converter's C++/Python chatter on fds 1 and 2; replay it on error."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace"))


def representative(x_calib):
    def gen():
        for i in range(len(x_calib)):
            yield [x_calib[i : i + 1]]

    return gen


def convert(model, kind, x_calib=None, io_type=None):
    """kind: int8 | float32 | float16 | dynamic | int16x8."""
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind == "int8":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative(x_calib)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type is not None:  # None -> float32 I/O with QUANTIZE / DEQUANTIZE at the edges
            c.inference_input_type = io_type
            c.inference_output_type = io_type
    elif kind == "float32":
        pass
    elif kind == "float16":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind == "int16x8":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative(x_calib)
        c.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    else:
        raise ValueError(kind)
    return c.convert()


# --------------------------------------------------------------------------------------
# Inspection / checking
# --------------------------------------------------------------------------------------


def ops(blob):
    """[(op name, details)] in execution order, parsed with the `tflite` package.

    details shows stride / padding / dilation / depth multiplier / fused activation
    where the op has them, e.g. CONV_2D(s2,SAME,RELU6) or DEPTHWISE_CONV_2D(dm2,RELU6).
    """
    import tflite

    act = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if k.isupper()}
    pad = {v: k for k, v in vars(tflite.Padding).items() if k.isupper()}
    opts = {
        "CONV_2D": tflite.Conv2DOptions,
        "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "AVERAGE_POOL_2D": tflite.Pool2DOptions,
        "MAX_POOL_2D": tflite.Pool2DOptions,
        "FULLY_CONNECTED": tflite.FullyConnectedOptions,
        "ADD": tflite.AddOptions,
        "CONCATENATION": tflite.ConcatenationOptions,
    }
    m = tflite.Model.GetRootAsModel(blob, 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        codes.append(tflite.opcode2name(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())))
    sg = m.Subgraphs(0)
    result = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name = codes[op.OpcodeIndex()]
        info = []
        if name in opts and op.BuiltinOptions() is not None:
            o = opts[name]()
            o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            if hasattr(o, "FilterWidth"):
                info.append(f"{o.FilterHeight()}x{o.FilterWidth()}")
            if hasattr(o, "StrideW") and (o.StrideW(), o.StrideH()) != (1, 1):
                info.append(f"s{o.StrideH()}" if o.StrideH() == o.StrideW() else "s?")
            if hasattr(o, "Padding"):
                info.append(pad[o.Padding()])
            if hasattr(o, "DilationWFactor") and o.DilationWFactor() != 1:
                info.append(f"d{o.DilationWFactor()}")
            if hasattr(o, "DepthMultiplier") and o.DepthMultiplier() != 1:
                info.append(f"dm{o.DepthMultiplier()}")
            if o.FusedActivationFunction() != 0:
                info.append(act[o.FusedActivationFunction()])
        result.append((name, f"{name}({','.join(info)})" if info else name))
    return result


def activation_input_ranges(blob):
    """Float range covered by the int8 input of each non-linear activation op."""
    it = tf.lite.Interpreter(model_content=blob)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():
        if op["op_name"] in ("LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH", "SOFTMAX"):
            scale, zp = tensors[op["inputs"][0]]["quantization"]
            out.append((op["op_name"], scale * (-128 - zp), scale * (127 - zp)))
    return out


def io_dtypes(blob):
    it = tf.lite.Interpreter(model_content=blob)
    return (
        np.dtype(it.get_input_details()[0]["dtype"]).name,
        np.dtype(it.get_output_details()[0]["dtype"]).name,
    )


def quantize_input(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zp = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)


def accuracy_tflite(blob, x, y):
    """Accuracy with TFLite's reference kernels; also returns the raw outputs."""
    it = tf.lite.Interpreter(
        model_content=blob,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for i in range(len(x)):
        it.set_tensor(din["index"], quantize_input(x[i : i + 1], din))
        it.invoke()
        outs.append(it.get_tensor(dout["index"]).copy())
    outs = np.concatenate(outs)
    return float(np.mean(np.argmax(outs, -1) == y)), outs, din


def accuracy_tflm(path, x, y, din):
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_file(str(path), arena_size=256 * 1024)
    outs = []
    for i in range(len(x)):
        it.set_input(quantize_input(x[i : i + 1], din), 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)).copy())
    outs = np.concatenate(outs)
    return float(np.mean(np.argmax(outs, -1) == y)), outs


# --------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    ap.add_argument("--no-check", action="store_true", help="skip accuracy / TFLM checks")
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    data = load_data()
    (x_tr, _), (x_te, y_te) = data
    x_calib = x_tr[:N_CALIB]

    samples, sample_labels = pick_samples(x_te, y_te)
    np.save(out / "digits_samples.npy", samples)

    float_acc = {}
    dense10, float_acc["dense10"] = train(build_dense10, data, epochs=20, softmax_output=False)
    mlp, float_acc["mlp"] = train(build_mlp, data, epochs=10, softmax_output=True, lr=1e-3)
    conv, float_acc["conv"] = train(build_conv, data, epochs=10, softmax_output=False)
    cnn, float_acc["cnn"] = train(build_cnn, data, epochs=20, softmax_output=True, lr=3e-3)
    act, float_acc["activations"] = train(build_activations, data, epochs=20, softmax_output=True)

    # (file name, keras model key, model, conversion kind, I/O type)
    plan = [
        ("dense10_int8.tflite", "dense10", dense10, "int8", tf.int8),
        ("mlp_uint8.tflite", "mlp", mlp, "int8", tf.uint8),
        ("conv_int8.tflite", "conv", conv, "int8", tf.int8),
        ("cnn_int8.tflite", "cnn", cnn, "int8", tf.int8),
        ("conv_float_io.tflite", "conv", conv, "int8", None),
        ("activations_int8.tflite", "activations", act, "int8", tf.int8),
        # Error-path models (not full-integer int8): the conv architecture again.
        ("float32.tflite", "conv", conv, "float32", None),
        ("float16.tflite", "conv", conv, "float16", None),
        ("dynamic_range.tflite", "conv", conv, "dynamic", None),
        ("int16x8.tflite", "conv", conv, "int16x8", None),
    ]

    blobs = {}
    for fname, _, model, kind, io_type in plan:
        with quiet():
            blob = convert(model, kind, x_calib, io_type)
        (out / fname).write_bytes(blob)
        blobs[fname] = blob

    print(f"\nwrote {len(plan) + 1} files to {out}")
    sha = hashlib.sha256((out / "digits_samples.npy").read_bytes()).hexdigest()[:16]
    print(f"digits_samples.npy: shape={samples.shape} sha256={sha} labels={sample_labels.tolist()}")
    for fname, key, _, kind, _ in plan:
        blob = blobs[fname]
        i_dt, o_dt = io_dtypes(blob)
        sha = hashlib.sha256(blob).hexdigest()[:16]
        print(f"\n{fname}: {len(blob)} bytes  sha256={sha}  in={i_dt} out={o_dt}")
        print("  ops: " + " ".join(d for _, d in ops(blob)))
        for name, lo, hi in activation_input_ranges(blob) if kind == "int8" else []:
            print(f"  {name} input range [{lo:.2f}, {hi:.2f}]")
        if args.no_check:
            continue
        line = f"  acc: keras-float={float_acc[key]:.3f}"
        acc_ref, ref_out, din = accuracy_tflite(blob, x_te, y_te)
        line += f"  tflite-ref={acc_ref:.3f}"
        if kind == "int8":
            acc_m, m_out = accuracy_tflm(out / fname, x_te, y_te, din)
            diff = np.abs(m_out.astype(np.float64) - ref_out.astype(np.float64))
            line += f"  tflm={acc_m:.3f}"
            line += f"  (tflm vs tflite-ref: {int((diff != 0).sum())}/{diff.size} outputs differ,"
            line += f" max |diff| {diff.max():g})"
        print(line + f"  [n={len(y_te)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
