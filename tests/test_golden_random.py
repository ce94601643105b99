"""Random layers and small graphs against TensorFlow Lite Micro, tensor by tensor.

Hypothesis draws the parameters of a layer (or of a short chain of layers),
``tflite_writer`` writes the ``.tflite`` directly, and the model goes through the whole
path a user's model takes: ``read_model``, ``lower``, then ``verify_graph`` compares every
tensor of the golden model with TFLM, bit for bit, on three inputs (uniform, the dtype's
extremes, values near the zero point; for float inputs also the rounding ties).  The draws
reach for the corners: scales from 2**-14 to 2**4, effective multipliers from below 2**-31
(a zero multiplier) to 2**16 (a left shift), zero points at the ends of their range,
weights of -128 and 127, biases up to the int32 limits, every fused activation,
per-channel and per-tensor weights, ranks 1 to 7.

Some draws are models TFLM refuses cleanly (its Prepare or Eval fails): pooling that
requantizes, other SOFTMAX or LOGISTIC output quantizations, HARD_SWISH scale ratios,
activation bounds beyond int32, PAD above 5-D, CONCATENATION above 6-D or of more than 10
inputs, float32 -> uint8 QUANTIZE.  tfl2rtl must refuse exactly those too, for the same
reason: :data:`REFUSALS` pairs the words of tfl2rtl's one-line error with those of TFLM's
log for each, and a refused model passes only when both name the same operator and the
same reason.  Each test asserts a floor on the share of its models tfl2rtl accepts, per op
kind (:func:`accepting`): a generator that drifts into models both refuse fails instead of
checking nothing.

Other invalid models make TFLM abort or crash the whole process, so the generators stay
clear of them:

* SOFTMAX needs ``beta * input_scale * 2**26 > 1`` and rows of fewer than 512 values
  (a sum of 512 or more exponentials fails a CHECK): input scales >= 2**-12,
  beta >= 0.25, rows of at most 300.
* ADD: ``QuantizeMultiplierSmallerThanOneExp`` CHECKs the output multiplier
  ``2 * max(s1, s2) / (2**20 * s_out)`` is below 1: ``s_out >= max(s1, s2) * 2**-16``.
* DEPTHWISE_CONV_2D without a bias is written with two inputs: an omitted bias written
  as -1 makes TFLM's Prepare dereference a null pointer (segfault).  FULLY_CONNECTED
  gets the -1, as the converter writes it.
* RELU_N1_TO_1 exists only fused (TFLM has no kernel for it alone); CONCATENATION inputs
  share the output's scale and zero point (TFLM rejects others for int8).

The other integer modes get random one-layer models of every op they support
(:func:`test_random_legacy_uint8_and_16x8_layers`, 25 per op and mode (16x8 LEAKY_RELU
included), written with
``ModeLayers`` from ``tests/models/make_writer_models.py``): legacy uint8 against LiteRT's
default interpreter and its reference kernels (TFLite Micro has no uint8 kernels), 16x8
against TFLM and both LiteRT resolvers; their draws stay in what every runtime accepts.

The module prints what it checked (models, layers, samples, elements, seconds) when it
ends; ``TFL2RTL_RANDOM_SCALE=10`` multiplies every example count for a long run.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.lower import lower
from tfl2rtl.reference import ReferenceInterpreter, arena_size
from tfl2rtl.tflite_reader import read_model
from tfl2rtl.verify import verify_graph
from tflite_writer import GraphWriter, conv_out_size

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
SAMPLES = 3

#: What this module checked in one run: models, operators (layers), input samples and
#: tensor elements compared, and the seconds spent.
STATS = {"models": 0, "layers": 0, "samples": 0, "elements": 0, "seconds": 0.0,
         "refused": 0}

#: Scales every test's example count (TFL2RTL_RANDOM_SCALE=10 for a long run).
SCALE = float(os.environ.get("TFL2RTL_RANDOM_SCALE", "1"))

#: Models :func:`check` saw in the running test, by ``(op kind, "accepted" or "refused")``.
SHARES: Counter = Counter()

#: Why both tfl2rtl and TFLM refuse a model: a regular expression for tfl2rtl's error and
#: one for TFLM's log (the CHECK its Prepare fails, or its Eval's message).
REFUSALS = {
    "pooling requantizes": (
        r"input and output are quantized differently; TFLite Micro's pooling",
        r"pooling_common\.cc:\d+ (input->params\.zero_point == output->params\.zero_point"
        r"|scale_diff <= 1\.0e-6) was not true"),
    "CONCATENATION requantizes": (
        r"has a different scale or zero point than the output; TFLite Micro rejects",
        r"concatenation\.cc:\d+ .*params\.(scale|zero_point)\) != .*output_tensor->params"),
    "CONCATENATION beyond 10 inputs or 6-D": (
        r"TFLite Micro concatenates at most 10 inputs of rank 6 or less",
        r"concatenation\.cc:\d+ num_inputs <= kMaxInputNum was not true"
        r"|Op Concatenation does not currently support num dimensions > 6"),
    "PAD beyond 5-D": (
        r"TFLite Micro pads at most 5-D",
        r"pad_common\.cc:\d+ NumDimensions\(input\) <= "
        r"reference_ops::PadKernelMaxDimensionCount\(\) was not true"),
    "SOFTMAX output quantization": (
        r"TFLite Micro requires 1/256 and -128 for int8 softmax",
        r"softmax_common\.cc:\d+ output->params\.(zero_point != -128 |scale == 1\.f / 256 )"),
    "LOGISTIC output zero point": (
        r"LOGISTIC: TFLite needs an int8 output zero point of -128",
        r"logistic_common\.cc:\d+ output->params\.zero_point != "
        r"std::numeric_limits<int8_t>::min\(\)"),
    "HARD_SWISH scale ratio": (
        r"HARD_SWISH: input_scale / \(128 \* output_scale\) must be below 1",
        r"hard_swish_common\.cc:\d+ params->output_multiplier_exponent <= 0 was not true"),
    "activation bound beyond int32": (
        r"the fused activation bound -?[\d.]+ does not fit int32",
        r"kernel_util\.cc:\d+ no_integer_overflow_from_quantization was not true"),
    "TRANSPOSE beyond 5-D": (
        r"TFLite Micro transposes at most 5-D",
        r"transpose_common\.cc:?\d* Transpose op only supports 1D-5D input arrays"),
    "uint8 TRANSPOSE": (
        r"TFLite Micro transposes int8 \(not uint8\) integers only",
        r"Type UINT8 is currently not supported by Transpose"),
    "float32 -> uint8 QUANTIZE": (
        r"float32 -> uint8; TFLite Micro quantizes float32 to int8 only",
        r"Input FLOAT32, output UINT8 not supported"),
}


def examples(count: int):
    """Hypothesis settings for ``count`` reproducible examples (derandomized)."""
    return settings(max_examples=max(1, round(count * SCALE)), deadline=None,
                    derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def report_counts(summary):
    start = time.perf_counter()
    yield
    if STATS["models"]:
        line = (f"test_golden_random: {STATS['models']} random models, {STATS['layers']} "
                f"layers, {STATS['samples']} samples, {STATS['elements']} elements compared "
                f"with TFLM ({STATS['seconds']:.1f} s of {time.perf_counter() - start:.1f} s); "
                f"{STATS['refused']} models refused by both tfl2rtl and TFLM")
        summary(line)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tmp_path_factory.mktemp("random") / "random.tflite"


# --------------------------------------------------------------------------------------
# Running one model
# --------------------------------------------------------------------------------------


def _float_input(graph, name, rng, k, shape):
    """For a float input: uniform over what its QUANTIZE can represent (and a little
    beyond), values on the rounding ties ``(q + 0.5) * scale``, and far out of range."""
    node = next(n for n in graph.nodes if name in n.inputs and isinstance(n, ir.Quantize))
    info = np.iinfo(np.dtype(graph.tensors[node.output].dtype))
    lo = node.scale * (info.min - node.zero_point - 2)
    hi = node.scale * (info.max - node.zero_point + 2)
    if k % 3 == 0:
        return rng.uniform(lo, hi, shape).astype(np.float32)
    if k % 3 == 1:
        q = rng.integers(info.min - node.zero_point - 1, info.max - node.zero_point + 1, shape)
        return ((q + 0.5) * np.float32(node.scale)).astype(np.float32)
    return rng.choice(np.array([0.0, -0.0, lo * 1e3, hi * 1e3, lo, hi], np.float32), shape)


def input_sets(graph, rng, count=SAMPLES):
    """Uniform values, the dtype's two extremes, and values within 2 of the zero point
    (for float inputs, see :func:`_float_input`)."""
    sets = []
    for k in range(count):
        one = []
        for name in graph.inputs:
            t = graph.tensors[name]
            if t.dtype == "float32":
                one.append(_float_input(graph, name, rng, k, t.shape))
                continue
            info = np.iinfo(np.dtype(t.dtype))
            if k % 3 == 0:
                x = rng.integers(info.min, info.max + 1, t.shape)
            elif k % 3 == 1:
                x = np.where(rng.random(t.shape) < 0.5, info.min, info.max)
            else:
                x = np.clip(t.zero_point + rng.integers(-2, 3, t.shape), info.min, info.max)
            one.append(x.astype(t.dtype))
        sets.append(one)
    return sets


_LIBC = ctypes.CDLL(None)


def tflm_refusal(path, inputs) -> str:
    """What TFLM logs when it fails to prepare the model or to run it on zeros
    (``inputs`` are ``(shape, dtype)``); the test fails if TFLM runs it.

    TFLM writes its reasons with C's stdio, not into the ``RuntimeError``: the process's
    stdout and stderr go to a file while the interpreter is created and run."""
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        _LIBC.fflush(None)
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            ReferenceInterpreter(str(path)).invoke(
                [np.zeros(shape, dtype) for shape, dtype in inputs], [])
        except RuntimeError as exc:
            error = str(exc)
        else:
            error = None
        finally:
            _LIBC.fflush(None)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if error is None:
        pytest.fail(f"tfl2rtl refuses the model but TFLM runs it (log: {text!r})")
    return f"{error}\n{text}"


def assert_refused_alike(path, inputs, exc: Tfl2RtlError) -> str:
    """tfl2rtl's refusal ``exc`` and TFLM's name the same operator and the same reason
    (one of :data:`REFUSALS`); returns the reason."""
    message = str(exc)
    reasons = [r for r, (ours, _) in REFUSALS.items() if re.search(ours, message)]
    assert len(reasons) == 1, f"tfl2rtl refuses for no single known TFLM reason: {message}"
    log = tflm_refusal(path, inputs)
    ours = re.match(r"operator (\d+) \((\w+)\): ", message)
    theirs = re.search(r"Node (\w+) \(number (\d+)\) failed to (prepare|invoke)", log)
    assert ours and theirs, (message, log)
    assert (ours[2], ours[1]) == theirs.group(1, 2), (message, log)
    assert re.search(REFUSALS[reasons[0]][1], log), (reasons[0], message, log)
    return reasons[0]


def check(g: GraphWriter, inputs, outputs, path, seed=0, kind=None):
    """Write, read, lower and verify the model against TFLM; count what was compared.

    A model tfl2rtl refuses must be one TFLM refuses too, for the same reason
    (:func:`assert_refused_alike`).  The model counts in :data:`SHARES` under ``kind``
    (by default its first operator).  Returns the lowered graph, or ``None`` if refused."""
    start = time.perf_counter()
    kind = kind or g.operators[0][0]
    path.write_bytes(g.finish(inputs, outputs))
    try:
        graph = lower(read_model(path))
    except Tfl2RtlError as exc:
        note(f"tfl2rtl refuses: {exc}")
        assert_refused_alike(path, [(g.shape(i), g.dtype(i)) for i in inputs], exc)
        STATS["refused"] += 1
        SHARES[kind, "refused"] += 1
        return None
    SHARES[kind, "accepted"] += 1
    report = verify_graph(graph, input_sets(graph, np.random.default_rng(seed)))
    STATS["models"] += 1
    STATS["layers"] += len(graph.nodes)
    STATS["samples"] += report.samples
    STATS["elements"] += report.elements_compared
    STATS["seconds"] += time.perf_counter() - start
    assert report.tensors_compared > 0
    assert not report.mismatches, report.mismatches[:5]
    return graph


def accepting(floors: dict[str, float]):
    """Wrap a Hypothesis test: after its examples, every op kind in ``floors`` must have
    been drawn, and tfl2rtl must have accepted at least that share of its models.

    The floors sit about 0.1 below the shares measured at the default example counts
    (kinds the generator never means to be refused: 1.0, floor 0.9)."""
    def wrap(random_test):
        def test(model_path):
            SHARES.clear()
            random_test(model_path)
            for kind, floor in floors.items():
                accepted, refused = SHARES[kind, "accepted"], SHARES[kind, "refused"]
                assert accepted + refused, f"no {kind} model was drawn"
                share = accepted / (accepted + refused)
                assert share >= floor, (f"tfl2rtl accepted {accepted} of {accepted + refused}"
                                        f" {kind} models ({share:.2f}), below {floor}")
        test.__name__ = test.__qualname__ = random_test.__name__
        test.__doc__ = random_test.__doc__
        return test
    return wrap


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


def f32(x: float) -> float:
    return float(np.float32(x))


def log_uniform(lo: float, hi: float):
    """A float32 ``2**e`` for a drawn ``e`` in ``[lo, hi]``."""
    return st.floats(lo, hi).map(lambda e: f32(2.0**e))


SPECIAL_SCALES = (1 / 256, 1 / 128, 0.0117, 0.1, 0.5, 1.0)


def scales(lo=-14.0, hi=4.0):
    """float32 scales in ``[2**lo, 2**hi]``: any power, the ends, and common values."""
    special = [s for s in (*SPECIAL_SCALES, 2.0**lo, 2.0**hi) if lo <= np.log2(s) <= hi]
    return st.one_of(log_uniform(lo, hi), st.sampled_from([f32(s) for s in special]))


def zero_points(dtype="int8"):
    lo, hi = (0, 255) if dtype == "uint8" else (INT8_MIN, INT8_MAX)
    return st.one_of(st.sampled_from([lo, lo + 1, (lo + hi + 1) // 2, hi - 1, hi]),
                     st.integers(lo, hi))


@st.composite
def quants(draw, lo=-14.0, hi=4.0, dtype="int8"):
    return draw(scales(lo, hi)), draw(zero_points(dtype))


def int8_values(rng, kind, shape):
    """Weights of one of several kinds: uniform, the two extremes, sparse, small."""
    if kind == "uniform":
        return rng.integers(-127, 128, shape)
    if kind == "extreme":
        return rng.choice([INT8_MIN, -127, INT8_MAX], shape)
    if kind == "sparse":
        return np.where(rng.random(shape) < 0.2, rng.integers(-128, 128, shape), 0)
    return rng.integers(-3, 4, shape)


WEIGHT_KINDS = st.sampled_from(["uniform", "extreme", "sparse", "small"])


def bias_values(rng, kind, channels):
    if kind == "none":
        return None
    if kind == "extreme":
        return rng.choice([INT32_MIN, INT32_MAX, -(1 << 30), 1 << 30, 0], channels)
    bound = {"small": 1 << 10, "medium": 1 << 20, "large": 1 << 30}[kind]
    return rng.integers(-bound, bound + 1, channels)


BIAS_KINDS = st.sampled_from(["none", "small", "medium", "large", "extreme"])


@st.composite
def weight_quant(draw, channels):
    """``(weight scales, output quant)`` for an int8 input of scale ``s_in`` (drawn
    first): per-tensor or per-channel weight scales spread over up to 2**8, and an output
    scale that puts the effective multiplier ``s_in * s_w / s_out`` anywhere in
    ``[2**-34, 2**16]``; below 2**-31 it quantizes to 0, above 1 it needs a left shift."""
    s_in = draw(scales(-10, 2), label="input scale")
    base = draw(scales(-12, 0), label="weight scale")
    per_channel = draw(st.booleans(), label="per channel") and channels > 1
    if per_channel:
        spread = draw(st.floats(0, 8), label="weight scale spread (log2)")
        seed = draw(st.integers(0, 2**16), label="weight scale seed")
        rng = np.random.default_rng(seed)
        w_scales = [f32(base * 2.0 ** rng.uniform(-spread, 0)) for _ in range(channels)]
        if draw(st.integers(0, 9), label="zero-scale channels") == 0:  # all-zero channels
            w_scales = [0.0 if rng.random() < 0.3 else s for s in w_scales]
    else:
        w_scales = [base]
    effective = draw(st.one_of(st.floats(-34, 8), st.floats(-14, -4), st.floats(8, 16)),
                     label="log2 effective")
    s_out = f32(s_in * base / 2.0**effective)
    zp_out = draw(zero_points(), label="output zero point")
    zp_in = draw(zero_points(), label="input zero point")
    return (s_in, zp_in), w_scales if per_channel else w_scales[0], (s_out, zp_out)


# --------------------------------------------------------------------------------------
# Weighted layers
# --------------------------------------------------------------------------------------


@accepting({"FULLY_CONNECTED": 0.9})
@examples(1000)
@given(data=st.data())
def test_random_fully_connected(model_path, data):
    draw = data.draw
    batch = draw(st.integers(1, 3), label="batch")
    accum = draw(st.integers(1, 48), label="accum depth")
    out_depth = draw(st.integers(1, 24), label="output depth")
    in_quant, w_scales, out_quant = draw(weight_quant(out_depth))
    layout = draw(st.sampled_from(["2d", "keep_num_dims", "flatten"]), label="input layout")
    seed = draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    weights = int8_values(rng, draw(WEIGHT_KINDS, label="weights"), (out_depth, accum))
    bias = bias_values(rng, draw(BIAS_KINDS, label="bias"), out_depth)
    g = GraphWriter()
    if layout == "2d":
        shape = (batch, accum)
    elif layout == "keep_num_dims":
        shape = (1, batch, accum)
    else:  # a 4-D input read as [batches, accum]
        shape = (batch, 1, 1, accum)
    x = g.tensor(shape, "int8", *in_quant)
    y = g.fully_connected(x, weights, w_scales, bias, out_quant,
                          activation=draw(st.sampled_from(ACTIVATIONS), label="activation"),
                          keep_num_dims=layout == "keep_num_dims")
    check(g, [x], [y], model_path, seed)


@st.composite
def windows(draw, max_kernel=4, dilations=True):
    """``(input hw, kernel, stride, dilation, padding)`` with at least one output."""
    kernel = (draw(st.integers(1, max_kernel), label="kernel h"),
              draw(st.integers(1, max_kernel), label="kernel w"))
    stride = (draw(st.integers(1, 3), label="stride h"), draw(st.integers(1, 3), label="stride w"))
    dilation = ((draw(st.integers(1, 3), label="dilation h"),
                 draw(st.integers(1, 3), label="dilation w")) if dilations else (1, 1))
    padding = draw(st.sampled_from(["SAME", "VALID"]), label="padding")
    hw = (draw(st.integers(1, 10), label="height"), draw(st.integers(1, 10), label="width"))
    for a in (0, 1):
        assume(conv_out_size(hw[a], kernel[a], stride[a], dilation[a], padding) >= 1)
    return hw, kernel, stride, dilation, padding


@accepting({"CONV_2D": 0.9})
@examples(1000)
@given(data=st.data())
def test_random_conv_2d(model_path, data):
    draw = data.draw
    hw, kernel, stride, dilation, padding = draw(windows())
    batch = draw(st.integers(1, 2), label="batch")
    in_ch = draw(st.integers(1, 6), label="input channels")
    out_ch = draw(st.integers(1, 8), label="output channels")
    in_quant, w_scales, out_quant = draw(weight_quant(out_ch))
    seed = draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    weights = int8_values(rng, draw(WEIGHT_KINDS, label="weights"), (out_ch, *kernel, in_ch))
    bias = bias_values(rng, draw(BIAS_KINDS, label="bias"), out_ch)
    g = GraphWriter()
    x = g.tensor((batch, *hw, in_ch), "int8", *in_quant)
    y = g.conv_2d(x, weights, w_scales, bias, out_quant, stride=stride, padding=padding,
                  dilation=dilation,
                  activation=draw(st.sampled_from(ACTIVATIONS), label="activation"))
    check(g, [x], [y], model_path, seed)


@accepting({"DEPTHWISE_CONV_2D": 0.9})
@examples(1000)
@given(data=st.data())
def test_random_depthwise_conv_2d(model_path, data):
    draw = data.draw
    hw, kernel, stride, dilation, padding = draw(windows())
    batch = draw(st.integers(1, 2), label="batch")
    in_ch = draw(st.integers(1, 6), label="input channels")
    multiplier = draw(st.integers(1, 3), label="depth multiplier")
    channels = in_ch * multiplier
    in_quant, w_scales, out_quant = draw(weight_quant(channels))
    seed = draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    weights = int8_values(rng, draw(WEIGHT_KINDS, label="weights"), (1, *kernel, channels))
    bias = bias_values(rng, draw(BIAS_KINDS, label="bias"), channels)
    g = GraphWriter()
    x = g.tensor((batch, *hw, in_ch), "int8", *in_quant)
    y = g.depthwise_conv_2d(x, weights, w_scales, bias, out_quant, depth_multiplier=multiplier,
                            stride=stride, padding=padding, dilation=dilation,
                            activation=draw(st.sampled_from(ACTIVATIONS), label="activation"))
    check(g, [x], [y], model_path, seed)


# --------------------------------------------------------------------------------------
# Pooling, MEAN, ADD, CONCATENATION, PAD, RESHAPE
# --------------------------------------------------------------------------------------


@accepting({"MAX_POOL_2D": 0.7, "AVERAGE_POOL_2D": 0.75})
@examples(500)
@given(data=st.data())
def test_random_pooling(model_path, data):
    draw = data.draw
    hw, kernel, stride, _, padding = draw(windows(dilations=False))
    op = draw(st.sampled_from(["MAX_POOL_2D", "AVERAGE_POOL_2D"]), label="op")
    channels = draw(st.integers(1, 5), label="channels")
    batch = draw(st.integers(1, 2), label="batch")
    quant = draw(quants(), label="quant")
    g = GraphWriter()
    x = g.tensor((batch, *hw, channels), "int8", *quant)
    y = g.pool_2d(op, x, kernel, stride=stride, padding=padding,
                  activation=draw(st.sampled_from(ACTIVATIONS), label="activation"))
    if draw(st.integers(0, 9), label="requantizing output") == 0:  # both refuse it
        g.tensors[y].update(zero_points=np.array([(quant[1] + 1) % 128]))
    check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


@accepting({"MEAN": 0.9})
@examples(500)
@given(data=st.data())
def test_random_mean(model_path, data):
    draw = data.draw
    rank = draw(st.one_of(st.just(4), st.integers(1, 6)), label="rank")
    shape = tuple(draw(st.lists(st.integers(1, 9 if rank <= 4 else 4), min_size=rank,
                                max_size=rank), label="shape"))
    axes = draw(st.one_of(st.sampled_from([[1, 2], [2, 1], [-3, -2], [1, 2, 1]]),
                          st.lists(st.integers(-4, 3), min_size=1, max_size=3))
                if rank == 4 else st.lists(st.integers(-rank, rank - 1), min_size=1,
                                           max_size=rank), label="axes")
    in_quant = draw(quants(), label="input quant")
    ratio = draw(st.one_of(st.floats(-10, 10), st.floats(-32, 29)),
                 label="log2 input/output scale")
    out_quant = (f32(in_quant[0] / 2.0**ratio), draw(zero_points(), label="output zp"))
    g = GraphWriter()
    x = g.tensor(shape, "int8", *in_quant)
    y = g.mean(x, axes, out_quant, keep_dims=draw(st.booleans(), label="keep dims"))
    check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


@st.composite
def broadcast_shapes(draw):
    """Two shapes of rank <= 6 that broadcast, with size-1 axes and dropped leading axes."""
    rank = draw(st.integers(1, 6), label="rank")
    full = draw(st.lists(st.integers(1, 6 if rank <= 4 else 3), min_size=rank, max_size=rank),
                label="shape")
    shapes = []
    for k in range(2):
        ones = draw(st.lists(st.booleans(), min_size=rank, max_size=rank), label=f"ones {k}")
        shape = [1 if one else d for one, d in zip(ones, full, strict=True)]
        drop = draw(st.integers(0, rank - 1), label=f"dropped axes {k}")
        shapes.append(tuple(shape[drop:]))
    return shapes


@accepting({"ADD": 0.9})
@examples(700)
@given(data=st.data())
def test_random_add(model_path, data):
    draw = data.draw
    shape1, shape2 = draw(broadcast_shapes())
    q1 = draw(quants(), label="input 1 quant")
    q2 = (f32(q1[0] * 2.0 ** draw(st.one_of(st.just(0.0), st.floats(-20, 20)),
                                   label="log2 s2/s1")),
          draw(zero_points(), label="input 2 zp"))
    top = max(q1[0], q2[0])
    out_scale = f32(top * 2.0 ** draw(st.floats(-16, 6), label="log2 s_out/max"))
    g = GraphWriter()
    x1 = g.tensor(shape1, "int8", *q1)
    x2 = g.tensor(shape2, "int8", *q2)
    y = g.add(x1, x2, (out_scale, draw(zero_points(), label="output zp")),
              activation=draw(st.sampled_from(ACTIVATIONS), label="activation"))
    check(g, [x1, x2], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


@accepting({"CONCATENATION": 0.8})
@examples(300)
@given(data=st.data())
def test_random_concatenation(model_path, data):
    draw = data.draw
    rank = draw(st.one_of(st.integers(1, 4), st.integers(1, 7)), label="rank")
    shape = draw(st.lists(st.integers(1, 5 if rank <= 4 else 2), min_size=rank,
                          max_size=rank), label="shape")
    axis = draw(st.integers(-rank, rank - 1), label="axis")
    sizes = draw(st.one_of(st.lists(st.integers(1, 4), min_size=1, max_size=5),
                           st.lists(st.integers(1, 2), min_size=9, max_size=12)), label="sizes")
    quant = draw(quants(), label="quant")
    g = GraphWriter()
    xs = []
    for size in sizes:
        s = list(shape)
        s[axis] = size
        xs.append(g.tensor(s, "int8", *quant))
    y = g.concatenation(xs, axis)
    check(g, xs, [y], model_path, draw(st.integers(0, 2**16), label="seed"))


@accepting({"PAD": 0.7, "PADV2": 0.85})
@examples(300)
@given(data=st.data())
def test_random_pad_and_reshape(model_path, data):
    draw = data.draw
    rank = draw(st.one_of(st.integers(1, 4), st.integers(1, 6)), label="rank")
    shape = draw(st.lists(st.integers(1, 5 if rank <= 4 else 2), min_size=rank,
                          max_size=rank), label="shape")
    paddings = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             min_size=rank, max_size=rank), label="paddings")
    in_quant = draw(quants(), label="input quant")
    out_quant = draw(st.one_of(st.just(in_quant), quants()), label="output quant")
    constant = draw(st.one_of(st.none(), st.integers(INT8_MIN, INT8_MAX)), label="PADV2 value")
    g = GraphWriter()
    x = g.tensor(shape, "int8", *in_quant)
    y = g.pad(x, paddings, constant=constant, out_quant=out_quant)
    size = int(np.prod(g.shape(y)))
    how = draw(st.sampled_from(["flat", "split", "squeeze", "none"]), label="reshape")
    if how == "flat":
        y = g.reshape(y, (1, size))
    elif how == "split":
        first = draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]),
                     label="first dim")
        y = g.reshape(y, (first, size // first))
    elif how == "squeeze":
        ones = [i for i, d in enumerate(g.shape(y)) if d == 1]
        if ones and len(ones) < len(g.shape(y)):
            y = g.squeeze(y, ones)
    check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


@accepting({"TRANSPOSE": 0.5})
@examples(300)
@given(data=st.data())
def test_random_transpose(model_path, data):
    """Any permutation of 1 to 5 axes (6 now and then: TFLM refuses it, so must tfl2rtl),
    int8, then a transpose of its output by another permutation (now and then of uint8
    before a QUANTIZE to int8: TFLM refuses it, so must tfl2rtl); checked against TFLM
    and against LiteRT (default and reference kernels), every tensor."""
    draw = data.draw
    rank = 6 if draw(st.integers(0, 9), label="6-D") == 0 else draw(st.integers(1, 5),
                                                                    label="rank")
    shape = draw(st.lists(st.integers(1, 5 if rank <= 4 else 3), min_size=rank,
                          max_size=rank), label="shape")
    perm = draw(st.permutations(range(rank)), label="permutation")
    quant = draw(quants(), label="quant")
    g = GraphWriter()
    if draw(st.integers(0, 9), label="uint8 input") == 0:
        x = g.tensor(shape, "uint8", quant[0], quant[1] + 128)
        y = g.transpose(x, perm)
        y = g.quantize(y, quant, "int8")
    else:
        x = g.tensor(shape, "int8", *quant)
        y = g.transpose(x, perm)
    y = g.transpose(y, draw(st.permutations(range(rank)), label="second permutation"))
    seed = draw(st.integers(0, 2**16), label="seed")
    graph = check(g, [x], [y], model_path, seed, kind="TRANSPOSE")
    if graph is None:
        return
    inputs = input_sets(graph, np.random.default_rng(seed))
    for profile in ("litert", "litert-ref"):
        report = verify_graph(graph, inputs, profile=profile)
        assert report.tensors_compared == len(inputs) * (len(graph.nodes) + 1)
        assert not report.mismatches, (profile, report.mismatches[:5])


# --------------------------------------------------------------------------------------
# SOFTMAX, QUANTIZE and the table ops
# --------------------------------------------------------------------------------------


@accepting({"SOFTMAX": 0.8})
@examples(400)
@given(data=st.data())
def test_random_softmax(model_path, data):
    draw = data.draw
    depth = draw(st.one_of(st.integers(1, 16), st.integers(1, 300)), label="depth")
    lead = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3), label="leading dims")
    beta = draw(st.one_of(st.just(1.0), st.floats(0.25, 4.0)), label="beta")
    out_quant = (1 / 256, -128)
    if draw(st.integers(0, 9), label="other output quant") == 0:  # both refuse it
        out_quant = draw(quants(), label="output quant")
    g = GraphWriter()
    x = g.tensor((*lead, depth), "int8", *draw(quants(-12, 4), label="input quant"))
    y = g.softmax(x, beta=f32(beta), out_quant=out_quant)
    check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


@accepting({"QUANTIZE": 0.8, "DEQUANTIZE": 0.9})
@examples(500)
@given(data=st.data())
def test_random_quantize(model_path, data):
    """int8 <-> uint8 edges (the same-scale +-128 shift, and a real requantization),
    int8 -> int8 requantization with effective scales from 2**-32 to 2**29, and the
    float32 edges (QUANTIZE from float, DEQUANTIZE to float)."""
    draw = data.draw
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4), label="shape")
    kind = draw(st.sampled_from(["u8->i8 shift", "i8->u8 shift", "u8->i8", "i8->u8",
                                 "i8->i8", "f32->i8", "f32->u8", "i8->f32", "u8->f32"]),
                label="kind")
    names = {"u8": "uint8", "i8": "int8", "f32": "float32"}
    in_dtype, out_dtype = (names[k.split()[0]] for k in kind.split("->"))
    if "f32" in kind:  # the float edges: QUANTIZE in, DEQUANTIZE out
        quant = draw(quants(dtype=out_dtype if in_dtype == "float32" else in_dtype),
                     label="quant")
        g = GraphWriter()
        if in_dtype == "float32":
            x = g.tensor(shape, "float32")
            y = g.tensor(shape, out_dtype, *quant)
            g.op("QUANTIZE", [x], [y])
        else:
            x = g.tensor(shape, in_dtype, *quant)
            y = g.tensor(shape, "float32")
            g.op("DEQUANTIZE", [x], [y])
        check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))
        return
    scale, zp = draw(quants(dtype=in_dtype), label="input quant")
    if kind.endswith("shift"):
        out_quant = (scale, zp - 128 if in_dtype == "uint8" else zp + 128)
    else:
        ratio = draw(st.one_of(st.floats(-12, 12), st.floats(-32, 29)), label="log2 ratio")
        out_quant = (f32(scale / 2.0**ratio),
                     draw(zero_points(out_dtype), label="output zp"))
    g = GraphWriter()
    x = g.tensor(shape, in_dtype, scale, zp)
    y = g.quantize(x, out_quant, out_dtype)
    check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


LUT_OPS = ("LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "RELU", "RELU6", "ELU", "ABS")


# LOGISTIC's share varies with what ran before in the same process (0.64 in one full
# suite run under xdist, 32 of 90 refused by both sides, above 0.7 alone or after
# test_golden_litert.py): an open question, named in the closing note of issue 16.
@accepting({**dict.fromkeys(LUT_OPS, 0.9), "LOGISTIC": 0.6})
@examples(500)
@given(data=st.data())
def test_random_lut_ops(model_path, data):
    draw = data.draw
    op = draw(st.sampled_from(LUT_OPS), label="op")
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4), label="shape")
    in_quant = draw(quants(-12, 4), label="input quant")
    out_quant = draw(quants(-12, 4), label="output quant")
    # LOGISTIC and TANH assume 1/256 and 1/128; any other output scale is ignored, and
    # a LOGISTIC zero point other than -128 is refused by both (as is HARD_SWISH with
    # input_scale / output_scale >= 128).
    if op in ("LOGISTIC", "TANH") and draw(st.integers(0, 4), label="usual output") > 0:
        out_quant = (1 / 256, -128) if op == "LOGISTIC" else (1 / 128, 0)
    options = {}
    if op == "LEAKY_RELU":
        options["alpha"] = f32(draw(st.floats(-3, 3), label="alpha"))
    g = GraphWriter()
    x = g.tensor(shape, "int8", *in_quant)
    y = g.elementwise(op, x, out_quant, **options)
    check(g, [x], [y], model_path, draw(st.integers(0, 2**16), label="seed"))


# --------------------------------------------------------------------------------------
# Small graphs
# --------------------------------------------------------------------------------------


@st.composite
def layer_chain(draw):
    """A random chain of 2-6 layers on a small image, with uint8 edges sometimes, and
    residual ADDs or CONCATENATIONs back to earlier tensors."""
    g = GraphWriter()
    seed = draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    uint8_io = draw(st.booleans(), label="uint8 io")
    hw = (draw(st.integers(2, 8), label="height"), draw(st.integers(2, 8), label="width"))
    channels = draw(st.integers(1, 4), label="channels")
    in_quant = draw(quants(-10, 2), label="input quant")
    if uint8_io:
        graph_in = g.tensor((1, *hw, channels), "uint8", in_quant[0], in_quant[1] + 128)
        x = g.quantize(graph_in, in_quant, "int8")
    else:
        graph_in = x = g.tensor((1, *hw, channels), "int8", *in_quant)
    kinds = draw(st.lists(st.sampled_from(["conv", "depthwise", "pool", "add", "concat",
                                           "pad", "lut", "requantize"]),
                          min_size=2, max_size=6), label="layers")
    for kind in kinds:
        _, h, w, c = g.shape(x)
        scale, _ = g.quant(x)
        out_quant = (f32(scale * 2.0 ** draw(st.floats(-3, 3), label="log2 scale step")),
                     draw(zero_points(), label="zero point"))
        activation = draw(st.sampled_from(ACTIVATIONS), label="activation")
        if kind in ("conv", "depthwise"):
            k = draw(st.integers(1, min(3, h, w)), label="kernel")
            stride = draw(st.integers(1, 2), label="stride")
            padding = draw(st.sampled_from(["SAME", "VALID"]), label="padding")
            if kind == "conv":
                out_ch = draw(st.integers(1, 6), label="out channels")
                shape, axis_channels = (out_ch, k, k, c), out_ch
            else:
                multiplier = draw(st.integers(1, 2), label="multiplier")
                shape, axis_channels = (1, k, k, c * multiplier), c * multiplier
            fan_in = k * k * (c if kind == "conv" else 1)
            w_scale = f32(out_quant[0] / (scale * 64 * np.sqrt(fan_in))
                          * 2.0 ** draw(st.floats(-2, 2), label="log2 weight scale"))
            per_channel = draw(st.booleans(), label="per channel")
            w_scales = (w_scale * 2.0 ** rng.uniform(-2, 0, axis_channels) if per_channel
                        else w_scale)
            weights = rng.integers(-127, 128, shape)
            bias = rng.integers(-2000, 2001, axis_channels)
            if kind == "conv":
                x = g.conv_2d(x, weights, w_scales, bias, out_quant, stride=(stride, stride),
                              padding=padding, activation=activation)
            else:
                x = g.depthwise_conv_2d(x, weights, w_scales, bias, out_quant,
                                        depth_multiplier=multiplier, stride=(stride, stride),
                                        padding=padding, activation=activation)
        elif kind == "pool":
            op = draw(st.sampled_from(["MAX_POOL_2D", "AVERAGE_POOL_2D"]), label="pool")
            k = draw(st.integers(1, min(3, h, w)), label="pool size")
            x = g.pool_2d(op, x, (k, k), stride=(k, k), padding="VALID", activation=activation)
        elif kind == "add":
            other = draw(st.sampled_from([t for t in range(len(g.tensors))
                                          if g.shape(t) == g.shape(x)
                                          and g.dtype(t) == "int8"
                                          and g.tensors[t]["data"] is None]),
                         label="add with")
            top = max(scale, g.quant(other)[0])
            x = g.add(x, other, (max(out_quant[0], f32(top * 2.0**-14)), out_quant[1]),
                      activation=activation)
        elif kind == "concat":
            same = g.quantize(x, g.quant(x), "int8") if draw(st.booleans(), label="copy") else x
            x = g.concatenation([x, same], 3)
        elif kind == "pad":
            x = g.pad(x, [[0, 0], [1, 0], [0, 1], [0, 0]])
        elif kind == "lut":
            op = draw(st.sampled_from(["LOGISTIC", "TANH", "LEAKY_RELU", "RELU", "RELU6",
                                       "ELU", "ABS"]), label="table op")
            options = {"alpha": 0.2} if op == "LEAKY_RELU" else {}
            if op == "LOGISTIC":
                out_quant = (1 / 256, -128)
            elif op == "TANH":
                out_quant = (1 / 128, 0)
            x = g.elementwise(op, x, out_quant, **options)
        else:
            x = g.quantize(x, out_quant, "int8")
    head = draw(st.sampled_from(["none", "mean", "fc_softmax"]), label="head")
    if head == "mean":
        x = g.mean(x, [1, 2], g.quant(x))
    elif head == "fc_softmax":
        flat = g.reshape(x, (1, int(np.prod(g.shape(x)))))
        depth = g.shape(flat)[1]
        units = draw(st.integers(1, 10), label="units")
        scale = g.quant(flat)[0]
        w_scale = f32(0.1 / (scale * 64 * np.sqrt(depth)))
        logits = g.fully_connected(flat, rng.integers(-127, 128, (units, depth)), w_scale,
                                   rng.integers(-2000, 2001, units), (0.1, 0))
        x = g.softmax(logits)
    if uint8_io:
        scale, zp = g.quant(x)
        x = g.quantize(x, (scale, zp + 128), "uint8")
    return g, graph_in, x, seed


@accepting({"graph": 0.9})
@examples(1000)
@given(data=st.data())
def test_random_graphs(model_path, data):
    g, x, y, seed = data.draw(layer_chain())
    note(f"ops: {[name for name, *_ in g.operators]}")
    check(g, [x], [y], model_path, seed, kind="graph")


# --------------------------------------------------------------------------------------
# Regressions: the smallest cases of disagreements these tests found
# --------------------------------------------------------------------------------------


def _all_int8_inputs(graph):
    """Every int8 value once, for a one-element input."""
    return [[np.array([v], np.int8).reshape(graph.tensors[graph.inputs[0]].shape)]
            for v in range(INT8_MIN, INT8_MAX + 1)]


@pytest.mark.parametrize("op", ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"])
def test_regression_output_offset_wraps_in_int32(model_path, op):
    """Found by test_random_depthwise_conv_2d.  TFLM adds the output zero point to the
    requantized accumulator in int32: when a bias near INT32_MAX wraps the accumulator to
    just above INT32_MIN and the multiplier is just below 1 (2**31 - 28 here), the sum
    ``MultiplyByQuantizedMultiplier(acc) - 128`` wraps again, to a large positive value
    that clamps to 127.  The golden model added in int64 and gave -128."""
    g = GraphWriter()
    x = g.tensor((1, 1, 1, 1), "int8", f32(2**1.5), -128)
    weights = np.array([35]).reshape({"FULLY_CONNECTED": (1, 1), "CONV_2D": (1, 1, 1, 1),
                                      "DEPTHWISE_CONV_2D": (1, 1, 1, 1)}[op])
    layer = {"FULLY_CONNECTED": g.fully_connected, "CONV_2D": g.conv_2d,
             "DEPTHWISE_CONV_2D": g.depthwise_conv_2d}[op]
    y = layer(x, weights, 0.2610684335231781, [INT32_MAX], (0.7384130358695984, -128))
    model_path.write_bytes(g.finish([x], [y]))
    graph = lower(read_model(model_path))
    assert graph.nodes[0].requant.multiplier.tolist() == [(1 << 31) - 28]
    assert graph.nodes[0].requant.shift.tolist() == [0]
    report = verify_graph(graph, _all_int8_inputs(graph))
    assert report.samples == 256 and not report.mismatches, report.mismatches
    # x = -127 gives acc = INT32_MAX + 35 (wraps): TFLM's answer is 127, not -128
    out = graph.tensors[graph.outputs[0]]
    assert golden.run(graph, [np.full(out.shape, -127, np.int8)]).outputs[0].item() == 127


def _tflm_aborts(path) -> bool:
    """Whether creating a TFLM interpreter for ``path`` kills the process (run apart)."""
    code = ("import sys; from tfl2rtl.reference import ReferenceInterpreter; "
            "ReferenceInterpreter(sys.argv[1])")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
    return result.returncode < 0


def _refused_by_both(path, reason):
    model = read_model(path)
    with pytest.raises(Tfl2RtlError) as info:
        lower(model)
    inputs = [(model.tensors[i].shape, model.tensors[i].dtype) for i in model.inputs]
    assert assert_refused_alike(path, inputs, info.value) == reason


def test_regression_activation_bound_overflow_is_refused(model_path):
    """TFLite's ``Quantize`` refuses an activation bound ``round(6.0f / scale)`` beyond
    int32 (output scale 1e-9 here); tfl2rtl computed a clamp from it and ran the model."""
    g = GraphWriter()
    x = g.tensor((1, 4), "int8", 0.1, 0)
    y = g.fully_connected(x, np.ones((2, 4)), 1e-9, None, (1e-9, 0), activation="RELU6")
    model_path.write_bytes(g.finish([x], [y]))
    _refused_by_both(model_path, "activation bound beyond int32")


@pytest.mark.parametrize("op", ["MAX_POOL_2D", "AVERAGE_POOL_2D"])
def test_regression_pooling_requantization_is_refused(model_path, op):
    """TFLM's pooling requires the output quantized like the input; tfl2rtl ignored the
    output's zero point and scale."""
    g = GraphWriter()
    x = g.tensor((1, 4, 4, 2), "int8", 0.1, 3)
    y = g.tensor((1, 2, 2, 2), "int8", 0.1, 5)
    g.op(op, [x], [y], padding="VALID", stride_h=2, stride_w=2, filter_height=2,
         filter_width=2)
    model_path.write_bytes(g.finish([x], [y]))
    _refused_by_both(model_path, "pooling requantizes")


def test_regression_softmax_output_quantization_is_refused(model_path):
    """int8 SOFTMAX must write scale 1/256 and zero point -128; tfl2rtl ignored the
    output's quantization."""
    g = GraphWriter()
    x = g.tensor((1, 10), "int8", 0.1, 3)
    y = g.softmax(x, out_quant=(1 / 128, -128))
    model_path.write_bytes(g.finish([x], [y]))
    _refused_by_both(model_path, "SOFTMAX output quantization")


def _hard_swish_ratio(g):
    x = g.tensor((1, 4), "int8", 1.0, 0)
    return [x], g.elementwise("HARD_SWISH", x, (1 / 256, 0))


def _pool_rescales(g):
    x = g.tensor((1, 4, 4, 2), "int8", 0.1, 3)
    y = g.tensor((1, 2, 2, 2), "int8", 0.2, 3)
    g.op("AVERAGE_POOL_2D", [x], [y], padding="VALID", stride_h=2, stride_w=2,
         filter_height=2, filter_width=2)
    return [x], y


def _concatenation_rescales(g):
    xs = [g.tensor((1, 4), "int8", 0.1, 3), g.tensor((1, 4), "int8", 0.2, 3)]
    return xs, g.concatenation(xs, 1)


@pytest.mark.parametrize("build, reason", [
    (_hard_swish_ratio, "HARD_SWISH scale ratio"),
    (_pool_rescales, "pooling requantizes"),
    (_concatenation_rescales, "CONCATENATION requantizes"),
], ids=["hard_swish", "pool_scale", "concatenation"])
def test_refusals_the_draws_rarely_reach_name_their_reason(model_path, build, reason):
    """The reasons of :data:`REFUSALS` the random draws seldom or never produce: a
    HARD_SWISH with input_scale / output_scale >= 128, pooling that changes only the
    scale, CONCATENATION of differently quantized inputs."""
    g = GraphWriter()
    xs, y = build(g)
    model_path.write_bytes(g.finish(xs, [y]))
    _refused_by_both(model_path, reason)


def test_regression_depth_multiplier_option_must_match_the_shapes(model_path):
    """TFLM's depthwise kernel loops over the depth_multiplier *option*: with option 1
    for a multiplier of 2 it leaves half the output unwritten.  tfl2rtl took the
    multiplier from the shapes and ran the model; now it refuses it."""
    g = GraphWriter()
    x = g.tensor((1, 3, 3, 2), "int8", 0.1, 0)
    w = g.const(np.arange(1, 5).reshape(1, 1, 1, 4), "int8", 0.01, 0)
    y = g.tensor((1, 3, 3, 4), "int8", 0.01, 0)
    g.op("DEPTHWISE_CONV_2D", [x, w], [y], padding="SAME", stride_h=1, stride_w=1,
         depth_multiplier=1)
    model_path.write_bytes(g.finish([x], [y]))
    with pytest.raises(Tfl2RtlError, match="depth_multiplier option 1"):
        lower(read_model(model_path))


def test_regression_add_output_multiplier_of_one_is_refused(model_path):
    """ADD's output multiplier ``2 * max(s1, s2) / (2**20 * s_out)`` must be below 1:
    TFLM's ``QuantizeMultiplierSmallerThanOneExp`` CHECK aborts the process otherwise.
    tfl2rtl lowered it (with a left shift) and verify crashed inside TFLM."""
    g = GraphWriter()
    x1 = g.tensor((1, 4), "int8", 0.1, 3)
    x2 = g.tensor((1, 4), "int8", 0.1, 3)
    y = g.add(x1, x2, (f32(0.2 / 2**20), 0))
    model_path.write_bytes(g.finish([x1, x2], [y]))
    with pytest.raises(Tfl2RtlError, match="output multiplier is not below 1"):
        lower(read_model(model_path))
    assert _tflm_aborts(model_path)


def test_regression_softmax_without_options_has_beta_zero(model_path):
    """A SOFTMAX with no options table has beta 0 in TFLM, which aborts on it; tfl2rtl
    assumed beta 1 and ran the model."""
    g = GraphWriter()
    x = g.tensor((1, 10), "int8", 0.1, 3)
    y = g.tensor((1, 10), "int8", 1 / 256, -128)
    g.op("SOFTMAX", [x], [y], options_table=False)
    model_path.write_bytes(g.finish([x], [y]))
    assert read_model(model_path).operators[0].options == {}
    with pytest.raises(Tfl2RtlError, match="beta"):
        lower(read_model(model_path))
    assert _tflm_aborts(model_path)


def test_regression_float_to_uint8_quantize_is_refused(model_path):
    """TFLM prepares a float32 -> uint8 QUANTIZE but its Eval fails ("not supported");
    tfl2rtl lowered and ran it."""
    g = GraphWriter()
    x = g.tensor((1, 4), "float32")
    y = g.tensor((1, 4), "uint8", 1.0, 0)
    g.op("QUANTIZE", [x], [y])
    model_path.write_bytes(g.finish([x], [y]))
    _refused_by_both(model_path, "float32 -> uint8 QUANTIZE")


@pytest.mark.parametrize("op, rank, inputs", [("PAD", 6, 1), ("CONCATENATION", 7, 2),
                                              ("CONCATENATION", 2, 11)])
def test_regression_ranks_and_arity_tflm_refuses(model_path, op, rank, inputs):
    """TFLM pads at most 5-D tensors and concatenates at most 10 inputs of rank <= 6;
    tfl2rtl lowered larger ones."""
    g = GraphWriter()
    xs = [g.tensor((1,) * rank, "int8", 0.1, 0) for _ in range(inputs)]
    y = g.pad(xs[0], [[1, 0]] * rank) if op == "PAD" else g.concatenation(xs, 0)
    model_path.write_bytes(g.finish(xs, [y]))
    _refused_by_both(model_path, "PAD beyond 5-D" if op == "PAD"
                     else "CONCATENATION beyond 10 inputs or 6-D")


def test_grouped_conv_is_a_documented_limitation(model_path):
    """TFLM runs a grouped CONV_2D (weights with fewer input channels than the input:
    here 2 groups); tfl2rtl does not support it and says so."""
    g = GraphWriter()
    x = g.tensor((1, 4, 4, 4), "int8", 0.1, 0)
    y = g.conv_2d(x, np.ones((4, 3, 3, 2)), 0.01, np.zeros(4), (0.05, 0))
    model_path.write_bytes(g.finish([x], [y]))
    with pytest.raises(Tfl2RtlError, match="grouped convolution is not supported"):
        lower(read_model(model_path))
    result = ReferenceInterpreter(str(model_path)).invoke([np.ones((1, 4, 4, 4), np.int8)], [y])
    assert result[y].shape == (1, 4, 4, 4)


@pytest.mark.parametrize("scales", [[0.01, 0.0, 0.02], 0.0])
def test_regression_zero_weight_scale_is_accepted(model_path, scales):
    """An all-zero weight channel may carry scale 0 (max|w| / 127); TFLM runs it (the
    channel's multiplier is 0, its output the zero point).  tfl2rtl refused the model:
    "a scale that is not a positive number"."""
    g = GraphWriter()
    x = g.tensor((1, 4), "int8", 0.1, 0)
    y = g.fully_connected(x, np.ones((3, 4)), scales, [1, 2, 3], (0.05, 5))
    graph = check(g, [x], [y], model_path)
    assert graph is not None
    assert 0 in graph.nodes[0].requant.multiplier.tolist()


def test_regression_arena_holds_small_models_with_large_activations(model_path):
    """TFLM's default arena is 10x the file size: this 1-op model of ~0.6 KB has 10 KB of
    activations, and with the default the interpreter crashed the process (segfault
    after "Failed to allocate tail memory").  ReferenceInterpreter sizes the arena from
    the tensors."""
    g = GraphWriter()
    x = g.tensor((1, 32, 32, 8), "int8", 0.1, 0)
    y = g.pool_2d("MAX_POOL_2D", x, (2, 2), stride=(2, 2))
    model = g.finish([x], [y])
    assert 10 * len(model) < 8 * 1024 < arena_size(model)
    assert check(g, [x], [y], model_path) is not None


# --------------------------------------------------------------------------------------
# The other integer modes: legacy uint8 (LiteRT only) and 16x8 (TFLM and LiteRT)
# --------------------------------------------------------------------------------------


def _mode_layers():
    """:class:`ModeLayers` from ``tests/models/make_writer_models.py`` (the layer methods
    of the writer for uint8 and int16 models)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "models" / "make_writer_models.py"
    spec = importlib.util.spec_from_file_location("make_writer_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModeLayers


ModeLayers = _mode_layers()
#: The profiles whose runtime runs each mode, the dtype of its activations.
MODE_PROFILES = {"uint8": ("litert-ref", "litert"), "int16": ("tflm", "litert-ref", "litert")}
MODE_OPS = {
    "uint8": ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
              "AVERAGE_POOL_2D", "ADD", "CONCATENATION", "PAD", "RESHAPE", "SOFTMAX",
              "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE"),
    "int16": ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
              "AVERAGE_POOL_2D", "ADD", "CONCATENATION", "PAD", "RESHAPE", "SOFTMAX",
              "LEAKY_RELU", "MEAN", "QUANTIZE", "DEQUANTIZE"),
}
#: What the mode tests checked: models, and per profile the tensors and mismatches.
MODE_STATS: Counter = Counter()


def mode_quants(mode: str, lo=-12.0, hi=2.0):
    """An activation's ``(scale, zero point)``: any uint8 zero point, int16's is 0."""
    zero_point = zero_points("uint8") if mode == "uint8" else st.just(0)
    return st.tuples(scales(lo, hi), zero_point)


@st.composite
def mode_weights(draw, mode, shape, channels, axis, s_in, fan_in):
    """``(weights, scales, zero point, output quant)`` of a weighted layer: uint8 weights
    with any zero point (per tensor), or int8 weights per tensor or per channel; the
    output scale puts the effective multiplier within 2**3 of what keeps the outputs
    spread, at most 2**6 (LiteRT's XNNPACK leaves uint8 scales of 256 and more to a
    kernel the profile does not model; int16 ones are large: 2**15 output steps)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16), label="weight seed"))
    kind = draw(st.sampled_from(["uniform", "extreme", "small"]), label="weights")
    if mode == "uint8":
        zero_point = draw(zero_points("uint8"), label="weight zero point")
        values = {"uniform": rng.integers(0, 256, shape),
                  "extreme": rng.choice([0, 255, zero_point], shape),
                  "small": np.clip(zero_point + rng.integers(-3, 4, shape), 0, 255)}[kind]
    else:
        zero_point = 0
        values = int8_values(rng, kind, shape)
    base = draw(scales(-10, -2), label="weight scale")
    if mode == "int16" and draw(st.booleans(), label="per channel") and channels > 1:
        w_scales = [f32(base * 2.0 ** rng.uniform(-3, 0)) for _ in range(channels)]
    else:
        w_scales = [base]
    spread = 128 if mode == "uint8" else 32768
    natural = s_in * base * 60 * np.sqrt(fan_in) / spread
    s_out = f32(natural * 2.0 ** draw(st.floats(-3, 3), label="log2 output scale"))
    effective = s_in * base / s_out
    assume(effective < 64)
    out_zp = draw(zero_points("uint8"), label="output zp") if mode == "uint8" else 0
    return values, w_scales, zero_point, (s_out, out_zp)


@st.composite
def mode_layer(draw, mode, op):
    """One random ``op`` layer of ``mode`` (``"uint8"`` or ``"int16"``): ``(writer,
    inputs, outputs)``."""
    g = GraphWriter(f"tfl2rtl random {mode} layer")
    layers = ModeLayers(g, mode)
    act = mode
    activation = draw(st.sampled_from(ACTIVATIONS[:3]), label="activation")
    in_quant = draw(mode_quants(mode), label="input quant")
    bias_bound = draw(st.sampled_from([1 << 8, 1 << 16, 1 << 24]), label="bias bound")
    seed = draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    if op == "FULLY_CONNECTED":
        accum = draw(st.integers(1, 40), label="accum depth")
        out_depth = draw(st.integers(1, 12), label="output depth")
        x = g.tensor((draw(st.integers(1, 3), label="batch"), accum), act, *in_quant)
        w, s, zw, out_quant = draw(mode_weights(mode, (out_depth, accum), out_depth, 0,
                                                in_quant[0], accum))
        y = layers.fully_connected(x, w, s, rng.integers(-bias_bound, bias_bound, out_depth),
                                   out_quant, weight_zero_point=zw, activation=activation)
        return g, [x], [y]
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"):
        h, w_ = draw(st.integers(1, 7), label="height"), draw(st.integers(1, 7), label="width")
        channels = draw(st.integers(1, 4), label="channels")
        kernel = (draw(st.integers(1, min(3, h)), label="kernel h"),
                  draw(st.integers(1, min(3, w_)), label="kernel w"))
        stride = (draw(st.integers(1, 2), label="stride h"),
                  draw(st.integers(1, 2), label="stride w"))
        padding = draw(st.sampled_from(["SAME", "VALID"]), label="padding")
        x = g.tensor((1, h, w_, channels), act, *in_quant)
        if op.endswith("POOL_2D"):
            y = layers.pool_2d(op, x, kernel, stride=stride, padding=padding,
                               activation=activation)
            return g, [x], [y]
        depthwise = op == "DEPTHWISE_CONV_2D"
        multiplier = draw(st.integers(1, 2), label="depth multiplier") if depthwise else 1
        out_c = channels * multiplier if depthwise else draw(st.integers(1, 5), label="out c")
        shape = (1, *kernel, out_c) if depthwise else (out_c, *kernel, channels)
        fan_in = kernel[0] * kernel[1] * (1 if depthwise else channels)
        w, s, zw, out_quant = draw(mode_weights(mode, shape, out_c, 3 if depthwise else 0,
                                                in_quant[0], fan_in))
        y = layers.conv_2d(x, w, s, rng.integers(-bias_bound, bias_bound, out_c), out_quant,
                           weight_zero_point=zw, stride=stride, padding=padding,
                           activation=activation, depthwise=depthwise,
                           depth_multiplier=multiplier)
        return g, [x], [y]
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4), label="shape"))
    if op == "ADD":
        other = shape if draw(st.booleans(), label="same shape") else (1,) * (
            len(shape) - 1) + shape[-1:]
        # scales within 2**4 of each other and of the output: XNNPACK's uint8 ADD takes
        # input/output ratios in [1/1024, 256) only
        q2 = (f32(in_quant[0] * 2.0 ** draw(st.floats(-4, 4), label="log2 scale 2")),
              draw(mode_quants(mode), label="input 2 quant")[1])
        # TFLite's ADD needs 2 * max(s1, s2) / (2**left_shift * s_out) below 1
        out_quant = (f32(max(in_quant[0], q2[0]) * 2.0 ** draw(st.floats(-4, 4),
                                                                  label="log2 out scale")),
                     draw(mode_quants(mode), label="output quant")[1])
        x1, x2 = g.tensor(shape, act, *in_quant), g.tensor(other, act, *q2)
        return g, [x1, x2], [layers.add(x1, x2, out_quant, activation=activation)]
    x = g.tensor(shape, act, *in_quant)
    if op == "CONCATENATION":
        axis = draw(st.integers(0, len(shape) - 1), label="axis")
        parts = [x]
        for _ in range(draw(st.integers(1, 2), label="more inputs")):
            part = list(shape)
            part[axis] = draw(st.integers(1, 4), label="part size")
            parts.append(g.tensor(part, act, *in_quant))
        return g, parts, [g.concatenation(parts, axis)]
    if op == "PAD":
        paddings = [[draw(st.integers(0, 2), label="pad"), draw(st.integers(0, 2), label="pad")]
                    for _ in shape]
        return g, [x], [g.pad(x, paddings)]
    if op == "RESHAPE":
        return g, [x], [g.reshape(x, (int(np.prod(shape)),))]
    if op == "SOFTMAX":
        beta = f32(draw(st.one_of(st.just(1.0), st.floats(0.25, 4.0)), label="beta"))
        return g, [x], [layers.softmax(x, beta=beta)]
    if op == "MEAN":
        axes = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True),
                    label="axes")
        out_quant = (f32(in_quant[0] * 2.0 ** draw(st.floats(-3, 3), label="log2 ratio")), 0)
        keep_dims = draw(st.booleans(), label="keep dims")
        return g, [x], [layers.mean(x, axes, out_quant, keep_dims=keep_dims)]
    if op == "LEAKY_RELU":
        alpha = f32(draw(st.floats(-3, 3), label="alpha"))
        out_quant = (f32(in_quant[0] * 2.0 ** draw(st.floats(-4, 4), label="log2 ratio")), 0)
        return g, [x], [layers.elementwise(op, x, out_quant, alpha=alpha)]
    if op in ("LOGISTIC", "TANH"):  # LiteRT's uint8 output quantization for them
        out_quant = (1 / 256, 0) if op == "LOGISTIC" else (1 / 128, 128)
        return g, [x], [layers.elementwise(op, x, out_quant)]
    flat = (int(np.prod(shape)),)
    if op == "QUANTIZE" and mode == "uint8":  # the float32 input edge, then a RESHAPE
        f = g.tensor(shape, "float32")  # (a model of edges only is an int8 model)
        return g, [f], [g.reshape(g.quantize(f, in_quant, dtype="uint8"), flat)]
    if op == "DEQUANTIZE" and mode == "uint8":
        return g, [x], [g.dequantize(g.reshape(x, flat))]
    if op == "QUANTIZE":  # int16 -> int16 requantization, or the float32 input edge
        if draw(st.booleans(), label="from float32"):
            f = g.tensor(shape, "float32")
            return g, [f], [g.quantize(f, in_quant, dtype="int16")]
        ratio = draw(st.floats(-8, 8), label="log2 ratio")
        return g, [x], [layers.requantize(x, (f32(in_quant[0] * 2.0**ratio), 0))]
    return g, [x], [g.dequantize(x)]  # DEQUANTIZE: the float32 output edge


def check_mode_layer(g, inputs, outputs, path, mode, seed=0):
    """Write and lower a random layer of ``mode``; verify it under every profile whose
    runtime runs the mode, every tensor on three inputs."""
    from tfl2rtl.golden import profiles_for

    path.write_bytes(g.finish(inputs, outputs))
    graph = lower(read_model(path))
    assert sorted(profiles_for(graph)) == sorted(MODE_PROFILES[mode])
    sets = input_sets(graph, np.random.default_rng(seed))
    for profile in MODE_PROFILES[mode]:
        report = verify_graph(graph, sets, profile=profile)
        MODE_STATS[mode, profile, "tensors"] += report.tensors_compared
        MODE_STATS[mode, profile, "mismatches"] += len(report.mismatches)
        assert report.tensors_compared > 0
        assert not report.mismatches, (profile, report.mismatches[:5])
    MODE_STATS[mode, "models"] += 1


@pytest.fixture(scope="module", autouse=True)
def report_mode_counts(summary):
    yield
    for mode, profiles in MODE_PROFILES.items():
        if MODE_STATS[mode, "models"]:
            counts = ", ".join(f"{p}: {MODE_STATS[mode, p, 'tensors']} tensors, "
                               f"{MODE_STATS[mode, p, 'mismatches']} mismatches"
                               for p in profiles)
            summary(f"test_golden_random: {MODE_STATS[mode, 'models']} random one-layer "
                    f"{'legacy uint8' if mode == 'uint8' else '16x8'} models; {counts}")


@pytest.mark.parametrize("mode,op", [(m, op) for m, ops in MODE_OPS.items() for op in ops])
def test_random_legacy_uint8_and_16x8_layers(model_path, mode, op):
    """Every op of each mode, one random layer at a time, against every runtime that runs
    the mode (LiteRT and its reference kernels for uint8; TFLM too for 16x8)."""

    @examples(25)
    @given(data=st.data())
    def one_layer(data):
        g, inputs, outputs = data.draw(mode_layer(mode, op))
        note(f"{g.operators}")
        check_mode_layer(g, inputs, outputs, model_path, mode,
                         data.draw(st.integers(0, 2**16), label="input seed"))

    one_layer()
