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
size and accuracy (Keras float model, TFLite reference kernels, TFLite Micro). For the
legacy uint8 and 16x8 models it also prints each conv / FC layer's dtypes and zero points
and the accuracy under LiteRT (``ai_edge_litert``, default and reference kernels); the
uint8 ones skip TFLite Micro, which has no uint8 kernels.

The legacy uint8 models (uint8 weights with their own zero points) are not made by the
TF2 converter's int8 path: the trained Keras weights are rebuilt as a TF1-style graph
with fake-quant nodes and converted by ``tf.compat.v1.lite.TFLiteConverter`` with
``inference_type=tf.uint8``, as models from the old TocoConverter were.

``--only FILE ...`` writes only the named files (every model is still trained and
converted, so the bytes are the same as in a full run). Use it to add a model without
rewriting the others: on another machine the conv-trained models may come out different.
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


def build_cnn_uint8(batch_size):
    """Small CNN for the legacy uint8 model (~62 k MACs): conv, depthwise, residual ADD,
    max pool. The same layers are rebuilt as a fake-quant graph in legacy_cnn_graph().
    The depthwise conv is linear, so the 1x1 conv after it sees a nonzero input zero point
    (and has nonzero weight and output zero points too)."""
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    s = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", name="stem")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(s)  # 14x14x8, linear
    x = layers.Conv2D(8, 1, name="pw")(x)  # linear 1x1
    x = layers.Add(name="residual")([s, x])
    x = layers.ReLU(name="residual_relu")(x)  # fused into the ADD
    x = layers.MaxPool2D(2, name="maxpool")(x)  # 7x7x8
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="down")(x)
    x = layers.Flatten(name="flatten")(x)  # 4x4x16 -> 256
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="cnn_uint8")


def build_cnn16(batch_size):
    """Small mixed CNN for the 16x8 model (~206 k MACs): conv, depthwise, residual ADD,
    two branches concatenated, average pool."""
    inp = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    s = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(s)  # 14x14x8
    x = layers.Conv2D(8, 1, name="pw")(x)  # linear 1x1
    r = layers.Add(name="residual")([s, x])
    b1 = layers.Conv2D(8, 3, padding="same", activation="relu", name="branch3x3")(r)
    b2 = layers.Conv2D(8, 1, activation="relu", name="branch1x1")(r)
    c = layers.Concatenate(name="concat")([b1, b2])  # 14x14x16
    p = layers.AveragePooling2D(2, name="avgpool")(c)  # 7x7x16
    p = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="down")(p)
    x = layers.Flatten(name="flatten")(p)  # 4x4x16 -> 256
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="cnn16")


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
        if io_type is not None:  # None -> float32 I/O with QUANTIZE / DEQUANTIZE at the edges
            c.inference_input_type = io_type
            c.inference_output_type = io_type
    else:
        raise ValueError(kind)
    return c.convert()


# --------------------------------------------------------------------------------------
# Legacy uint8 conversion: a TF1-style graph with fake-quant nodes, converted by
# tf.compat.v1.lite.TFLiteConverter with inference_type=tf.uint8 (what TocoConverter made:
# uint8 activations and uint8 weights, each with its own zero point, per-tensor scales).
# --------------------------------------------------------------------------------------

SOFTMAX_U8_RANGE = (0.0, 255.0 / 256.0)  # uint8 SOFTMAX output: scale 1/256, zero point 0


class FakeQuant:
    """Quantization hooks for the legacy graphs.

    Calibration (eager, export=False): act() records each named activation's float range
    over the calibration digits (widened to include 0) and returns the tensor unchanged.
    Export (in a tf.compat.v1 graph, export=True): act() inserts
    fake_quant_with_min_max_vars with the recorded range, and weight() wraps each weight
    constant in one with the weight's own [min, max] (widened to include 0), per tensor.
    The converter turns those into uint8 tensors; the weights' zero points are whatever
    their ranges give (asymmetric), as in models made by the old TocoConverter. This is
    post-training quantization written as fake quant: there is no quantization-aware
    fine-tuning.
    """

    def __init__(self):
        self.ranges = {}
        self.export = False

    def act(self, name, t, fixed=None):
        if not self.export:
            v = t.numpy()
            self.ranges[name] = fixed or (min(float(v.min()), 0.0), max(float(v.max()), 0.0))
            return t
        lo, hi = self.ranges[name]
        return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, name=name)

    def weight(self, w):
        w = np.asarray(w, np.float32)
        t = tf.constant(w)
        if not self.export:
            return t
        lo, hi = float(min(w.min(), 0.0)), float(max(w.max(), 0.0))
        return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi)


def legacy_mlp_graph(x, weights, fq):
    """build_mlp as plain TF ops: 784-512-100-10, ReLU, ReLU, softmax."""
    w1, b1, w2, b2, w3, b3 = weights

    def fc(t, w, b):
        return tf.nn.bias_add(tf.matmul(t, fq.weight(w)), tf.constant(b))

    h = tf.reshape(x, [-1, 784])
    h = fq.act("fc1", tf.nn.relu(fc(h, w1, b1)))
    h = fq.act("fc2", tf.nn.relu(fc(h, w2, b2)))
    h = fq.act("logits", fc(h, w3, b3))
    return fq.act("probs", tf.nn.softmax(h), fixed=SOFTMAX_U8_RANGE)


def legacy_cnn_graph(x, weights, fq):
    """build_cnn_uint8 as plain TF ops."""
    ws, bs, wd, bd, wp, bp, wn, bn, wf, bf = weights

    def conv(t, w, b, stride):
        return tf.nn.bias_add(tf.nn.conv2d(t, fq.weight(w), stride, "SAME"), tf.constant(b))

    s = fq.act("stem", tf.nn.relu6(conv(x, ws, bs, 2)))  # 14x14x8
    d = tf.nn.depthwise_conv2d(s, fq.weight(wd), [1, 1, 1, 1], "SAME")
    d = fq.act("dw", tf.nn.bias_add(d, tf.constant(bd)))  # linear
    p = fq.act("pw", conv(d, wp, bp, 1))
    r = fq.act("residual", tf.nn.relu(s + p))  # ADD with a fused RELU
    m = tf.nn.max_pool2d(r, 2, 2, "VALID")  # 7x7x8, keeps the ADD's quantization
    n = fq.act("down", tf.nn.relu(conv(m, wn, bn, 2)))  # 4x4x16
    f = tf.reshape(n, [-1, 256])
    logits = fq.act("logits", tf.nn.bias_add(tf.matmul(f, fq.weight(wf)), tf.constant(bf)))
    return fq.act("probs", tf.nn.softmax(logits), fixed=SOFTMAX_U8_RANGE)


LEGACY_GRAPHS = {"mlp": legacy_mlp_graph, "cnn_uint8": legacy_cnn_graph}


def convert_legacy_uint8(key, model, x_calib):
    """Rebuild the trained Keras model `key` as a fake-quant graph and convert it to uint8."""
    graph_fn, weights = LEGACY_GRAPHS[key], model.get_weights()
    fq = FakeQuant()
    graph_fn(tf.constant(x_calib), weights, fq)  # eager: record the activation ranges
    fq.export = True
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 28, 28, 1], name="image")
        y = graph_fn(x, weights, fq)
        with tf.compat.v1.Session(graph=g) as sess:
            c = tf.compat.v1.lite.TFLiteConverter.from_session(sess, [x], [y])
            c.inference_type = tf.uint8
            c.inference_input_type = tf.uint8
            c.quantized_input_stats = {"image": (0.0, 255.0)}  # real = (q - 0) / 255
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
    """Float range covered by the integer input of each non-linear activation op."""
    it = tf.lite.Interpreter(model_content=blob)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():
        if op["op_name"] in ("LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH", "SOFTMAX"):
            t = tensors[op["inputs"][0]]
            scale, zp = t["quantization"]
            info = np.iinfo(t["dtype"])
            out.append((op["op_name"], scale * (info.min - zp), scale * (info.max - zp)))
    return out


def weight_quant(blob):
    """One line per op with weights: dtypes and zero points of input, weights, bias, output.

    E.g. ``FULLY_CONNECTED in=uint8(zp 0) w=uint8(zp 136) b=int32 out=uint8(zp 0)``;
    per-channel weights show ``w=int8(zp 0 x16 channels)``.
    """
    import tflite

    names = {v: k for k, v in vars(tflite.TensorType).items() if k.isupper()}
    m = tflite.Model.GetRootAsModel(blob, 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        codes.append(tflite.opcode2name(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())))
    sg = m.Subgraphs(0)

    def desc(index, with_zp=True):
        t = sg.Tensors(index)
        dt = names[t.Type()].lower()
        q = t.Quantization()
        zps = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0)
        if not with_zp or len(zps) == 0:
            return dt
        if len(zps) == 1:
            return f"{dt}(zp {int(zps[0])})"
        uniq = sorted({int(z) for z in zps})
        return f"{dt}(zp {','.join(map(str, uniq))} x{len(zps)} channels)"

    lines = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name = codes[op.OpcodeIndex()]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        ins = op.InputsAsNumpy()
        line = f"{name} in={desc(ins[0])} w={desc(ins[1])}"
        if len(ins) > 2 and ins[2] >= 0:
            line += f" b={desc(ins[2], with_zp=False)}"
        lines.append(line + f" out={desc(op.OutputsAsNumpy()[0])}")
    return lines


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


def run_interpreter(it, x, y):
    """Accuracy of a TFLite-API interpreter on ``x`` (one image at a time), its raw
    outputs and its input details."""
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for i in range(len(x)):
        it.set_tensor(din["index"], quantize_input(x[i : i + 1], din))
        it.invoke()
        outs.append(it.get_tensor(dout["index"]).copy())
    outs = np.concatenate(outs)
    return float(np.mean(np.argmax(outs, -1) == y)), outs, din


def accuracy_tflite(blob, x, y):
    """Accuracy with TFLite's reference kernels; also returns the raw outputs."""
    it = tf.lite.Interpreter(
        model_content=blob,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    return run_interpreter(it, x, y)


def accuracy_litert(blob, x, y, ref):
    """Accuracy with LiteRT (ai_edge_litert): default kernels, or the reference kernels."""
    from ai_edge_litert import interpreter as litert

    kw = {}
    if ref:
        kw["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_REF
    it = litert.Interpreter(model_content=blob, **kw)
    accuracy, outs, _ = run_interpreter(it, x, y)
    return accuracy, outs


def n_diff(a, b):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return f"{int((d != 0).sum())}/{d.size} outputs differ, max |diff| {d.max():g}"


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


# (file name, trained model key, conversion kind, I/O type). Order matters for the
# bytes (see main), so new models go at the end.
PLAN = [
    ("dense10_int8.tflite", "dense10", "int8", tf.int8),
    ("mlp_uint8.tflite", "mlp", "int8", tf.uint8),
    ("conv_int8.tflite", "conv", "int8", tf.int8),
    ("cnn_int8.tflite", "cnn", "int8", tf.int8),
    ("conv_float_io.tflite", "conv", "int8", None),
    ("activations_int8.tflite", "activations", "int8", tf.int8),
    # Error-path models (not full-integer int8): the conv architecture again.
    ("float32.tflite", "conv", "float32", None),
    ("float16.tflite", "conv", "float16", None),
    ("dynamic_range.tflite", "conv", "dynamic", None),
    ("int16x8.tflite", "conv", "int16x8", None),
    # Issue 15: legacy uint8 (asymmetric uint8 weights) and 16x8 models.
    ("mlp_uint8_legacy.tflite", "mlp", "uint8_legacy", tf.uint8),
    ("cnn_uint8_legacy.tflite", "cnn_uint8", "uint8_legacy", tf.uint8),
    ("mlp_int16x8.tflite", "mlp", "int16x8", tf.int16),
    ("cnn_int16x8.tflite", "cnn16", "int16x8", tf.int16),
]
SAMPLES = "digits_samples.npy"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    ap.add_argument("--no-check", action="store_true", help="skip accuracy / TFLM checks")
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="FILE",
        choices=[p[0] for p in PLAN] + [SAMPLES],
        help="write (and check) only these files; every model is still trained and "
        "converted, in the same order, so the written bytes do not depend on the selection",
    )
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    selected = set(args.only) if args.only else {p[0] for p in PLAN} | {SAMPLES}

    data = load_data()
    (x_tr, _), (x_te, y_te) = data
    x_calib = x_tr[:N_CALIB]

    samples, sample_labels = pick_samples(x_te, y_te)
    if SAMPLES in selected:
        np.save(out / SAMPLES, samples)

    # Always train everything in this order: Keras names unnamed layers with a global
    # counter (dense_1, ...), and those names end up in the .tflite files.
    models, float_acc = {}, {}
    for key, builder, kw in [
        ("dense10", build_dense10, dict(epochs=20, softmax_output=False)),
        ("mlp", build_mlp, dict(epochs=10, softmax_output=True, lr=1e-3)),
        ("conv", build_conv, dict(epochs=10, softmax_output=False)),
        ("cnn", build_cnn, dict(epochs=20, softmax_output=True, lr=3e-3)),
        ("activations", build_activations, dict(epochs=20, softmax_output=True)),
        ("cnn_uint8", build_cnn_uint8, dict(epochs=20, softmax_output=True, lr=3e-3)),
        ("cnn16", build_cnn16, dict(epochs=20, softmax_output=True, lr=3e-3)),
    ]:
        models[key], float_acc[key] = train(builder, data, **kw)

    blobs = {}
    for fname, key, kind, io_type in PLAN:
        with quiet():
            if kind == "uint8_legacy":
                blob = convert_legacy_uint8(key, models[key], x_calib)
            else:
                blob = convert(models[key], kind, x_calib, io_type)
        blobs[fname] = blob
        if fname in selected:
            (out / fname).write_bytes(blob)

    plan = [p for p in PLAN if p[0] in selected]
    print(f"\nwrote {len(selected)} files to {out}")
    if SAMPLES in selected:
        sha = hashlib.sha256((out / SAMPLES).read_bytes()).hexdigest()[:16]
        print(f"{SAMPLES}: shape={samples.shape} sha256={sha} labels={sample_labels.tolist()}")
    for fname, key, kind, _ in plan:
        blob = blobs[fname]
        i_dt, o_dt = io_dtypes(blob)
        sha = hashlib.sha256(blob).hexdigest()[:16]
        print(f"\n{fname}: {len(blob)} bytes  sha256={sha}  in={i_dt} out={o_dt}")
        print("  ops: " + " ".join(d for _, d in ops(blob)))
        if kind in ("uint8_legacy", "int16x8"):
            for line in weight_quant(blob):
                print("  " + line)
        if kind in ("int8", "uint8_legacy", "int16x8"):
            for name, lo, hi in activation_input_ranges(blob):
                print(f"  {name} input range [{lo:.2f}, {hi:.2f}]")
        if args.no_check:
            continue
        line = f"  acc: keras-float={float_acc[key]:.3f}"
        acc_ref, ref_out, din = accuracy_tflite(blob, x_te, y_te)
        line += f"  tflite-ref={acc_ref:.3f}"
        notes = []
        if kind in ("uint8_legacy", "int16x8"):
            acc_l, l_out = accuracy_litert(blob, x_te, y_te, ref=False)
            acc_lr, lr_out = accuracy_litert(blob, x_te, y_te, ref=True)
            line += f"  litert={acc_l:.3f}  litert-ref={acc_lr:.3f}"
            notes.append(f"litert vs litert-ref: {n_diff(l_out, lr_out)}")
            notes.append(f"litert-ref vs tflite-ref: {n_diff(lr_out, ref_out)}")
        if kind in ("int8", "int16x8"):
            acc_m, m_out = accuracy_tflm(out / fname, x_te, y_te, din)
            line += f"  tflm={acc_m:.3f}"
            notes.append(f"tflm vs tflite-ref: {n_diff(m_out, ref_out)}")
        elif kind == "uint8_legacy":
            # Measured: AllocateTensors fails ("Hybrid models are not supported" in CONV_2D,
            # "UINT8 != FLOAT32" in SOFTMAX).
            line += "  tflm=skipped (TFLite Micro has no uint8 kernels)"
        print(line + f"  [n={len(y_te)}]")
        for n in notes:
            print(f"    {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
