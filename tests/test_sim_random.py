"""Random small graphs as hardware, in Verilator, against the golden model.

Each test builds one random graph that the hardware generator supports
(:func:`random_graph`): a chain of one to four FULLY_CONNECTED layers of random widths,
with per-tensor or per-channel weight scales, effective multipliers from ``2**-34`` (a
zero multiplier) to ``2**16`` (a left shift), every fused activation, zero points at the
ends of their range, weights of -128 and 127 and biases up to the int32 limits; RESHAPEs
between them (including ones that make a layer read several rows), uint8 QUANTIZE edges,
a final SOFTMAX over rows of the last layer's output.  It is written as a ``.tflite``
(:mod:`tflite_writer`) and goes the user's way, ``tfl2rtl.api.load``; then
:func:`test_golden_random.check` proves the golden model equal to TFLite Micro on every
tensor.

The convolutional graphs (:func:`random_conv_graph`) are small NHWC images (about 8 x 8
x 8 at most, 256 elements a tensor) through one to three steps of :data:`CONV_LAYER_KINDS`:
CONV_2D (1x1 and k x k windows, square or not, strides 1 and 2, dilation 2, SAME and
VALID), DEPTHWISE_CONV_2D (depth multipliers 1 to 3), MAX and AVERAGE pools, the 256-entry
table ops, PAD and PADV2, RESHAPEs to another image, residual ADDs of two branches from
one tensor (chains of 0 to 2 layers, mostly of different lengths, so the plan's branch
FIFO must cover the difference in latency) and CONCATENATIONs of two or three branches
along the channels, rows or columns; then maybe a MEAN over height and width, a
FULLY_CONNECTED over the image, a SOFTMAX; uint8 edges sometimes.

Then a random folding (:func:`foldings`): per layer any of its valid foldings
(:meth:`tfl2rtl.hw.stages.Stage.options`: PE and SIMD, a depthwise PE a multiple or a
divisor of the depth multiplier, lanes of pools, tables, ADDs, PADs and
CONCATENATIONs), a requantizer lane count (:func:`requant_lane_choices`), and AXI lanes
dividing both edge vectors; one graph in four
with requantizers of serial products (as the iCE40 boards build them), and one in four
with serial products in some of its requantizing layers only, each chosen by a coin (as
:func:`tfl2rtl.design.share_requantizers` plans layers with time to spare); and one in
four with the MAC products of some of its FULLY_CONNECTED and CONV_2D layers in logic,
each chosen by a coin (as :func:`tfl2rtl.boards.fit.fitting_design` plans layers beyond a
board's DSP blocks).  The Verilog runs
in Verilator under cocotb (:func:`tfl2rtl.sim.runner.simulate_network`) on a dozen
inputs: uniform over the input dtype, mixed extremes, values next to the zero point, all
at the minimum and all at the maximum; once back to back, once with random input stalls
and output backpressure at random rates.  Both runs must equal the golden model exactly,
with ``tlast`` on the last beat of every vector, and the back-to-back run must reach the
planned initiation interval (on average, with serial requantizers, whose free-running
windows shift single results by a few cycles).  TFLM checks the golden model on those
very inputs, too.

The graphs are seeded, one test per seed (``-k "random_graph_in_verilator[7]"`` or
``-k "conv_graph_in_verilator[7]"`` reruns one in a few seconds and prints the graph
and its folding): Hypothesis's draws lean towards
their simplest values, which suits a zero point but, for the structure of a graph, made
most of them alike.  A Verilator build takes a few seconds, so there are ``GRAPHS`` dense
and ``CONV_GRAPHS`` convolutional ones (about a minute and a half of CPU time each,
mostly builds); ``TFL2RTL_RANDOM_SCALE=10``
multiplies that, as for :mod:`test_golden_random`, and ``TFL2RTL_RANDOM_SEED`` draws
another set.  A long run of convolutional graphs alone, on other seeds (about 9 s of
CPU time a graph; or ``TFL2RTL_RANDOM_SEED=1, 2, 3 ...`` at the default scale, 4
graphs a seed, in two processes)::

    TFL2RTL_RANDOM_SEED=1 TFL2RTL_RANDOM_SCALE=17 \
        .venv/bin/python -m pytest tests/test_sim_random.py -k conv_graph -q

Graphs with a PAD of whole rows behind a stage that sets the pace failed on the
interval until the FIFO before a PAD held its longest run of padding
(:func:`test_regression_pad_of_rows_stalls_the_stage_before_it`).

The module prints what it checked when it ends: the counts, and how many dense (and
regression) and how many convolutional graphs reached each feature of the space
(:func:`features`).

To add a layer kind to the chains, give :data:`LAYER_KINDS` a function that appends the
layer to the writer and pass its name to :func:`random_graph`; to the convolutional
graphs, give it to :data:`CONV_LAYER_KINDS` and a weight in :data:`CONV_LAYER_WEIGHTS`.
:func:`foldings` draws from every stage's own valid foldings already, and
:func:`features` names what the new layer reaches.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter

import numpy as np
import pytest
from amaranth.hdl import Fragment
from test_golden_random import (
    ACTIVATIONS,
    SCALE,
    SPECIAL_SCALES,
    bias_values,
    check,
    f32,
    input_sets,
    int8_values,
)

from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.folding import folded_layers
from tfl2rtl.hw.network import DataflowNetwork, plan_network
from tfl2rtl.hw.requant import SERIAL_PRODUCTS_HOOK
from tfl2rtl.hw.stages import SERIAL_REQUANT_INTERVAL
from tfl2rtl.sim.runner import golden_vectors, simulate_network
from tfl2rtl.verify import verify_graph
from tflite_writer import GraphWriter, conv_out_size

#: Random graphs per run (times ``TFL2RTL_RANDOM_SCALE``): dense chains and
#: convolutional graphs; and the seed of the set.  The convolutional graphs draw from
#: their own streams (``[SEED, CONV_STREAM, number]``, the dense ones ``[SEED, number]``).
GRAPHS = 4
CONV_GRAPHS = 4
CONV_STREAM = 2
SEED = int(os.environ.get("TFL2RTL_RANDOM_SEED", "0"))
#: Input vectors per graph: ``input_sets``'s kinds in turn, then all-minimum and
#: all-maximum vectors.
VECTORS = 12
#: The kinds of :func:`test_golden_random.int8_values` and ``bias_values``.
WEIGHT_KINDS = ("uniform", "extreme", "sparse", "small")
BIAS_KINDS = ("none", "small", "medium", "large", "extreme")
#: Layers have up to this many outputs (inputs up to twice as many).
MAX_WIDTH = 16
#: At most this many multipliers (``pe * simd``) per layer: larger ones make the Verilator
#: build several times slower and reach no new logic.
MAX_LAYER_MULTIPLIERS = 16

#: What this module checked in one run.
STATS = {"graphs": 0, "random": 0, "random conv": 0, "random 16x8": 0, "random uint8": 0,
         "nodes": 0, "layers": 0, "vectors": 0, "elements": 0, "cycles": 0, "build_seconds": 0.0,
         "live": 0, "live_layers": 0}
#: How many of those graphs had each of :func:`features`: the dense ones and the
#: regressions, and the random convolutional ones.
FEATURES: Counter = Counter()
CONV_FEATURES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts(summary):
    start = time.perf_counter()
    yield
    if STATS["graphs"]:
        line = (f"test_sim_random: {STATS['graphs']} graphs in Verilator ({STATS['random']} "
                f"random dense, {STATS['random conv']} random convolutional, "
                f"{STATS['random 16x8']} random 16x8, {STATS['random uint8']} random "
                "legacy uint8; "
                f"{STATS['nodes']} nodes, {STATS['layers']} layers; outputs varying "
                f"over the inputs in {STATS['live_layers']} layers and {STATS['live']} graphs), "
                f"{STATS['vectors']} input vectors, {STATS['elements']} output elements equal "
                f"to the golden model's, {STATS['cycles']} simulated cycles, "
                f"{time.perf_counter() - start:.1f} s ({STATS['build_seconds']:.1f} s of "
                "Verilator builds)")
        for what, counter in (("dense and regression graphs", FEATURES),
                              ("convolutional graphs", CONV_FEATURES)):
            if counter:
                line += f"; {what} with " + ", ".join(f"{k}: {v}"
                                                      for k, v in sorted(counter.items()))
        summary(line)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """One Verilator build folder for all graphs (each build replaces the last)."""
    return tmp_path_factory.mktemp("sim_random") / "build"


# --------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def size(g: GraphWriter, x: int) -> int:
    return int(np.prod(g.shape(x)))


def chance(rng, p: float) -> bool:
    return bool(rng.random() < p)


def pick(rng, options):
    """One of ``options`` (any sequence), uniformly."""
    return options[int(rng.integers(len(options)))]


def quant(rng, lo: float = -10.0, hi: float = 2.0) -> tuple[float, int]:
    """An int8 ``(scale, zero point)`` as :func:`test_golden_random.quants` draws them:
    a float32 scale ``2**e`` for ``e`` in ``[lo, hi]`` or one of the common ones and the
    ends, a zero point uniform or at (or next to) an end of int8 or its middle."""
    special = [s for s in (*SPECIAL_SCALES, 2.0**lo, 2.0**hi) if lo <= np.log2(s) <= hi]
    scale = f32(pick(rng, special) if chance(rng, 0.3) else 2.0 ** rng.uniform(lo, hi))
    zero_point = (pick(rng, [-128, -127, 0, 126, 127]) if chance(rng, 0.4)
                  else int(rng.integers(-128, 128)))
    return scale, int(zero_point)


def effective_multiplier(rng, weights) -> float:
    """``log2`` of the effective multiplier ``s_in * s_w / s_out`` of a layer: mostly one
    that keeps a typical accumulator of ``weights`` (rows of int8 against inputs some 80
    away from the zero point) within the int8 range, give or take a factor of 4 (above 1
    for small weights); one time in five (more would saturate most chains somewhere) a
    corner: below ``2**-31`` (quantized to zero), tiny, or a left shift of up to 16."""
    if chance(rng, 0.2):
        return rng.uniform(-34, -14) if chance(rng, 0.5) else rng.uniform(0, 16)
    norm = max(1.0, float(np.sqrt((weights.astype(np.float64) ** 2).sum(axis=1)).mean()))
    return np.log2(64 / (80 * norm)) + rng.uniform(-2, 2)


#: The output quantization the converter gives a fused RELU6 and RELU_N1_TO_1: their
#: range over all of int8.
CONVERTER_QUANTS = {"RELU6": (f32(6 / 255), -128), "RELU_N1_TO_1": (f32(2 / 255), 0)}


def layer_epilogue(g: GraphWriter, x: int, rng, rows, out_quant=None, *,
                   converter: bool = False):
    """``(weight scales, bias, output quantization, activation)`` of a weighted layer on
    ``x`` whose weights, one row per output channel, are ``rows``: mostly biases that
    leave the outputs varying (large and extreme ones saturate them), any fused
    activation (half of them with the output zero point at -128, as the converter has it:
    a random one often leaves a RELU's output a constant) unless ``out_quant`` is given,
    an effective
    multiplier from :func:`effective_multiplier`, per-tensor or per-channel scales
    (sometimes with all-zero channels of scale 0).

    With ``converter`` (the convolutional graphs, whose layers see narrower inputs than
    the dense ones' first), four in five biases are small or none, and four in five
    fused activations take the converter's output quantization (RELU6 and RELU_N1_TO_1
    :data:`CONVERTER_QUANTS`: a random scale often narrows their range to a few
    values)."""
    channels = len(rows)
    mild = 0.8 if converter else 0.6
    bias = bias_values(rng, pick(rng, ("none", "small") if chance(rng, mild) else BIAS_KINDS),
                       channels)
    activation = pick(rng, ACTIVATIONS)
    if out_quant is None:
        out_quant = quant(rng)
        if activation != "NONE" and chance(rng, 0.8 if converter else 0.5):  # as converted
            out_quant = (out_quant[0], -128)
            if converter:
                out_quant = CONVERTER_QUANTS.get(activation, out_quant)
    w_scale = f32(2.0 ** effective_multiplier(rng, rows) * out_quant[0] / g.quant(x)[0])
    w_scales = w_scale
    if channels > 1 and chance(rng, 0.5):
        spread = rng.uniform(0, 8)
        w_scales = [f32(w_scale * 2.0 ** rng.uniform(-spread, 0)) for _ in range(channels)]
        if chance(rng, 0.1):
            w_scales = [0.0 if chance(rng, 0.3) else s for s in w_scales]
    return w_scales, bias, out_quant, activation


def fully_connected(g: GraphWriter, x: int, rng) -> int:
    """A FULLY_CONNECTED over all of ``x`` (one row) or, one time in four, over rows of a
    divisor of its size (TFLite reads ``x`` as ``[size / accum, accum]``); weights of
    :func:`test_golden_random.int8_values`' kinds and the rest from
    :func:`layer_epilogue`."""
    total = size(g, x)
    accum = pick(rng, divisors(total)) if chance(rng, 0.25) else total
    out_depth = int(rng.integers(1, MAX_WIDTH + 1))
    weights = int8_values(rng, pick(rng, WEIGHT_KINDS), (out_depth, accum))
    w_scales, bias, out_quant, activation = layer_epilogue(g, x, rng, weights)
    return g.fully_connected(x, weights, w_scales, bias, out_quant, activation=activation)


def reshape(g: GraphWriter, x: int, rng) -> int:
    """A RESHAPE to ``(1, n)``, ``(1, a, n / a)`` or ``(1, a, b, n / ab)``."""
    total = size(g, x)
    a = pick(rng, divisors(total))
    b = pick(rng, divisors(total // a))
    return g.reshape(x, pick(rng, [(1, total), (1, a, total // a),
                                   (1, a, b, total // (a * b))]))


#: The layers :func:`random_graph` chains, by name: ``(writer, x, rng) -> y``.
LAYER_KINDS = {"fully_connected": fully_connected}


def graph_input(g: GraphWriter, shape, rng, *, uint8: float):
    """``(graph input, int8 tensor)`` of ``shape`` with a random quantization: with
    chance ``uint8`` a uint8 input and a QUANTIZE that flips its sign bit (as the
    converter writes uint8 edges), else an int8 input that is both."""
    in_quant = quant(rng)
    if chance(rng, uint8):
        graph_in = g.tensor(shape, "uint8", in_quant[0], in_quant[1] + 128)
        return graph_in, g.quantize(graph_in, in_quant, "int8")
    graph_in = g.tensor(shape, "int8", *in_quant)
    return graph_in, graph_in


def random_graph(rng, kinds=("fully_connected",), max_layers: int = 4):
    """``(writer, graph input, graph output)`` for a chain of ``1 .. max_layers`` layers
    of ``kinds``, maybe RESHAPEs between them, maybe a final SOFTMAX, maybe uint8 edges
    (a QUANTIZE that only flips the sign bit, as the converter writes them)."""
    g = GraphWriter()
    width = int(rng.integers(1, 2 * MAX_WIDTH + 1))
    a = pick(rng, divisors(width))
    shape = pick(rng, [(1, width), (1, a, width // a), (1, 1, a, width // a)])
    graph_in, x = graph_input(g, shape, rng, uint8=0.5)
    for _ in range(rng.integers(1, max_layers + 1)):
        if chance(rng, 0.25):
            x = reshape(g, x, rng)
        x = LAYER_KINDS[pick(rng, kinds)](g, x, rng)
    if chance(rng, 0.5):
        if chance(rng, 0.5):
            x = reshape(g, x, rng)
        x = g.softmax(x, beta=1.0 if chance(rng, 0.5) else f32(rng.uniform(0.25, 4.0)))
    if chance(rng, 0.25):
        x = reshape(g, x, rng)
    if chance(rng, 0.5):
        scale, zero_point = g.quant(x)
        x = g.quantize(x, (scale, zero_point + 128), "uint8")
    return g, graph_in, x


# --------------------------------------------------------------------------------------
# Convolutional graphs
# --------------------------------------------------------------------------------------

#: Convolutional graphs keep their tensors within these: height and width, channels,
#: elements, and multiply-accumulates per layer (a fully folded layer takes that many
#: cycles per inference).
MAX_HW = 8
MAX_CHANNELS = 8
MAX_ELEMENTS = 256
MAX_LAYER_MACS = 3072
#: The table ops (:data:`tfl2rtl.lower.LUT_OPS`), and those that may keep their input's
#: quantization (LOGISTIC and TANH have fixed output quantizations).
TABLE_OPS = ("LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "RELU", "RELU6", "ELU", "ABS")
QUANT_FREE_TABLE_OPS = ("HARD_SWISH", "LEAKY_RELU", "RELU", "RELU6", "ELU", "ABS")


def window(rng, h: int, w: int, *, keep_shape: bool = False, dilations: bool = True):
    """``(kernel, stride, dilation, padding)`` of a window over an ``h x w`` input with at
    least one output: kernels of 1 to 3 (square or not), strides of 1 or 2, dilation 2
    sometimes, SAME or VALID; with ``keep_shape``, stride 1 and SAME (the output keeps
    ``h x w``)."""
    square = chance(rng, 0.6)
    kh = pick(rng, (1, 1, 2, 3, 3))
    kernel = (kh, kh if square else pick(rng, (1, 2, 3)))
    stride = (1, 1) if keep_shape or chance(rng, 0.5) else tuple(
        pick(rng, (1, 2)) for _ in range(2))
    dilation = (1, 1)
    if dilations and chance(rng, 0.25):
        dilation = tuple(pick(rng, (1, 2)) for _ in range(2))
    padding = "SAME" if keep_shape or chance(rng, 0.5) else "VALID"
    for a, extent in enumerate((h, w)):
        if conv_out_size(extent, kernel[a], stride[a], dilation[a], padding) < 1:
            # VALID needs the dilated kernel within the input: shrink it until it fits
            k = kernel[a]
            while (k - 1) * dilation[a] + 1 > extent:
                k -= 1
            kernel = tuple(k if i == a else kernel[i] for i in range(2))
    return kernel, stride, dilation, padding


def out_hw(g: GraphWriter, x: int, kernel, stride, dilation, padding) -> tuple[int, int]:
    _, h, w, _ = g.shape(x)
    return (conv_out_size(h, kernel[0], stride[0], dilation[0], padding),
            conv_out_size(w, kernel[1], stride[1], dilation[1], padding))


def conv_2d(g: GraphWriter, x: int, rng, *, keep_shape=False, channels=None,
            out_quant=None) -> int:
    """A CONV_2D over a random :func:`window` with up to :data:`MAX_CHANNELS` outputs
    (``channels`` if given) within :data:`MAX_ELEMENTS` and :data:`MAX_LAYER_MACS` (a
    1x1 window where even the fewest channels would exceed them), weights of
    :func:`test_golden_random.int8_values`' kinds, the rest from :func:`layer_epilogue`."""
    _, h, w, c = g.shape(x)
    kernel, stride, dilation, padding = window(rng, h, w, keep_shape=keep_shape)
    oh, ow = out_hw(g, x, kernel, stride, dilation, padding)
    room = min(MAX_CHANNELS, MAX_ELEMENTS // (oh * ow),
               MAX_LAYER_MACS // (oh * ow * kernel[0] * kernel[1] * c))
    out_c = channels or int(rng.integers(1, max(1, room) + 1))
    if oh * ow * out_c * kernel[0] * kernel[1] * c > MAX_LAYER_MACS:
        kernel = dilation = (1, 1)  # ``channels`` given, or one output too many
    weights = int8_values(rng, pick(rng, WEIGHT_KINDS), (out_c, *kernel, c))
    w_scales, bias, out_quant, activation = layer_epilogue(
        g, x, rng, weights.reshape(out_c, -1), out_quant, converter=True)
    return g.conv_2d(x, weights, w_scales, bias, out_quant, stride=stride, padding=padding,
                     dilation=dilation, activation=activation)


def depthwise_conv_2d(g: GraphWriter, x: int, rng, *, keep_shape=False, multiplier=None,
                      out_quant=None) -> int:
    """A DEPTHWISE_CONV_2D over a random :func:`window` with a depth multiplier of 1 to 3
    (``multiplier`` if given) within :data:`MAX_CHANNELS` and :data:`MAX_ELEMENTS`."""
    _, h, w, c = g.shape(x)
    kernel, stride, dilation, padding = window(rng, h, w, keep_shape=keep_shape)
    oh, ow = out_hw(g, x, kernel, stride, dilation, padding)
    if multiplier is None:
        room = max(1, min(3, MAX_CHANNELS // c, MAX_ELEMENTS // (oh * ow * c)))
        multiplier = int(rng.integers(1, room + 1))
    channels = c * multiplier
    weights = int8_values(rng, pick(rng, WEIGHT_KINDS), (1, *kernel, channels))
    w_scales, bias, out_quant, activation = layer_epilogue(
        g, x, rng, weights.reshape(-1, channels).T, out_quant, converter=True)
    return g.depthwise_conv_2d(x, weights, w_scales, bias, out_quant,
                               depth_multiplier=multiplier, stride=stride, padding=padding,
                               dilation=dilation, activation=activation)


def pool_2d(g: GraphWriter, x: int, rng, *, keep_shape=False) -> int:
    """MAX_POOL_2D or AVERAGE_POOL_2D over a random :func:`window` (no dilation), any
    fused activation; the output keeps the input's quantization (TFLM's pooling does
    not requantize)."""
    _, h, w, _ = g.shape(x)
    kernel, stride, _, padding = window(rng, h, w, keep_shape=keep_shape, dilations=False)
    if not keep_shape and chance(rng, 0.3):  # the usual non-overlapping pooling
        kernel = stride = (min(2, h), min(2, w))
        padding = "VALID"
    return g.pool_2d(pick(rng, ("MAX_POOL_2D", "AVERAGE_POOL_2D")), x, kernel,
                     stride=stride, padding=padding, activation=pick(rng, ACTIVATIONS))


def table_op(g: GraphWriter, x: int, rng, *, keep_quant=False) -> int:
    """One of the 256-entry table ops (:data:`TABLE_OPS`), with its output quantization:
    LOGISTIC and TANH fixed (1/256, -128 and 1/128, 0), HARD_SWISH an output scale above
    ``input_scale / 128`` (TFLM refuses others), the rest random near the input's; with
    ``keep_quant``, one of :data:`QUANT_FREE_TABLE_OPS` keeping the input's."""
    op = pick(rng, QUANT_FREE_TABLE_OPS if keep_quant else TABLE_OPS)
    scale, _ = g.quant(x)
    out_quant = (f32(scale * 2.0 ** rng.uniform(-3, 3)), quant(rng)[1])
    if op == "LOGISTIC":
        out_quant = (1 / 256, -128)
    elif op == "TANH":
        out_quant = (1 / 128, 0)
    elif op == "HARD_SWISH":
        out_quant = (f32(scale * 2.0 ** rng.uniform(-5, 3)), out_quant[1])
    if keep_quant:
        out_quant = g.quant(x)
    options = {"alpha": f32(rng.uniform(-3, 3))} if op == "LEAKY_RELU" else {}
    return g.elementwise(op, x, out_quant, **options)


def pad(g: GraphWriter, x: int, rng) -> int:
    """PAD of up to 2 rows and columns on each side (and, one time in four, channels),
    within :data:`MAX_HW` and :data:`MAX_CHANNELS`; where that pads nothing or exceeds
    :data:`MAX_ELEMENTS`, one row above and one column to the right instead (no PAD if
    that exceeds it too); one time in four PADV2 with a random int8 value."""
    shape = list(g.shape(x))
    paddings = [[0, 0]]
    limits = (MAX_HW, MAX_HW, MAX_CHANNELS if chance(rng, 0.25) else 0)
    for extent, limit in zip(shape[1:], limits, strict=True):
        before, after = (int(rng.integers(0, 3)) for _ in range(2))
        while extent + before + after > max(limit, extent):
            before, after = max(0, before - 1), max(0, after - 1)
        paddings.append([before, after])
    grown = [d + sum(p) for d, p in zip(shape, paddings, strict=True)]
    if int(np.prod(grown)) > MAX_ELEMENTS or grown == shape:
        paddings = [[0, 0], [1, 0], [0, 1], [0, 0]]
        if int(np.prod([d + sum(p) for d, p in zip(shape, paddings, strict=True)])) \
                > MAX_ELEMENTS:
            return x
    constant = int(rng.integers(-128, 128)) if chance(rng, 0.25) else None
    return g.pad(x, paddings, constant=constant)


def reshape_image(g: GraphWriter, x: int, rng) -> int:
    """A RESHAPE of an image to another ``(1, h, w, c)`` of the same size within
    :data:`MAX_HW` and :data:`MAX_CHANNELS` (the hardware reads the same stream as
    another image)."""
    total = size(g, x)
    shapes = [(1, a, b, total // (a * b)) for a in divisors(total) if a <= MAX_HW
              for b in divisors(total // a) if b <= MAX_HW
              and total // (a * b) <= MAX_CHANNELS]
    return g.reshape(x, pick(rng, shapes)) if shapes else x


def branch_layer(g: GraphWriter, x: int, rng, *, keep_channels: bool, keep_quant: bool):
    """A layer in a branch of a residual ADD or a CONCATENATION: a CONV_2D, a
    DEPTHWISE_CONV_2D, a pool (stride 1, SAME) or a table op, keeping the height and
    width (and, with ``keep_channels``, the channels; with ``keep_quant``, the
    quantization)."""
    kind = pick(rng, ("conv", "conv", "depthwise", "pool", "table"))
    target = g.quant(x) if keep_quant else None
    if kind == "conv":
        return conv_2d(g, x, rng, keep_shape=True,
                       channels=g.shape(x)[3] if keep_channels else None, out_quant=target)
    if kind == "depthwise":
        return depthwise_conv_2d(g, x, rng, keep_shape=True,
                                 multiplier=1 if keep_channels else None, out_quant=target)
    if kind == "pool":
        return pool_2d(g, x, rng, keep_shape=True)
    return table_op(g, x, rng, keep_quant=keep_quant)


def branch(g: GraphWriter, x: int, rng, *, keep_channels: bool, keep_quant: bool,
           layers: int) -> int:
    """A chain of ``layers`` :func:`branch_layer` from ``x``."""
    for _ in range(layers):
        x = branch_layer(g, x, rng, keep_channels=keep_channels, keep_quant=keep_quant)
    return x


def residual_add(g: GraphWriter, x: int, rng) -> int:
    """ADD of two branches from ``x``: each a chain of 0 to 2 layers keeping the shape
    (:func:`branch_layer`), mostly of different lengths (so of unequal latency: the plan
    sizes a FIFO for the shorter one), any fused activation, an output scale within
    ``2**-3 .. 2`` of the larger input scale (TFLM needs it above ``2**-16`` of it; a
    larger one leaves most sums a constant)."""
    lengths = [int(rng.integers(0, 3)) for _ in range(2)]
    if lengths == [0, 0] and chance(rng, 0.8):
        lengths[int(rng.integers(2))] = 1
    a, b = (branch(g, x, rng, keep_channels=True, keep_quant=False, layers=n)
            for n in lengths)
    top = max(g.quant(a)[0], g.quant(b)[0])
    out_quant = (f32(top * 2.0 ** rng.uniform(-3, 1)), quant(rng)[1])
    return g.add(a, b, out_quant, activation=pick(rng, ACTIVATIONS))


def concatenation(g: GraphWriter, x: int, rng) -> int:
    """CONCATENATION of two or three branches from ``x`` (chains of 0 to 2 layers of
    :func:`branch_layer` keeping ``x``'s quantization, as TFLM requires) along the
    channels (their counts may differ) or, one time in four, along the height or width;
    within :data:`MAX_HW`, :data:`MAX_CHANNELS` and :data:`MAX_ELEMENTS` (else ``x``)."""
    axis = 3 if chance(rng, 0.75) else pick(rng, (1, 2))
    count = 3 if chance(rng, 0.25) else 2
    _, h, w, c = g.shape(x)
    limit = {1: MAX_HW // h, 2: MAX_HW // w, 3: MAX_CHANNELS // c}[axis]
    if count > min(limit, MAX_ELEMENTS // size(g, x)):
        count = 2
        if count > min(limit, MAX_ELEMENTS // size(g, x)):
            return x
    ends = []
    for _ in range(count):
        operators, tensors = len(g.operators), len(g.tensors)
        end = branch(g, x, rng, keep_channels=axis != 3 or chance(rng, 0.3), keep_quant=True,
                     layers=int(rng.integers(0, 3)))
        extent = sum(g.shape(e)[axis] for e in ends) + g.shape(end)[axis]
        if extent > (MAX_CHANNELS if axis == 3 else MAX_HW) or size(g, end) + sum(
                size(g, e) for e in ends) > MAX_ELEMENTS:
            del g.operators[operators:], g.tensors[tensors:]  # too large: an empty branch
            end = x
        ends.append(end)
    return g.concatenation(ends, axis)


#: The steps :func:`random_conv_graph` chains, by name: ``(writer, x, rng) -> y``.
CONV_LAYER_KINDS = {
    "conv_2d": conv_2d, "depthwise_conv_2d": depthwise_conv_2d, "pool_2d": pool_2d,
    "table_op": table_op, "pad": pad, "residual_add": residual_add,
    "concatenation": concatenation, "reshape_image": reshape_image,
}
#: At most this many AXI lanes for a convolutional graph (of up to 256 elements at an
#: edge): a lane converter's multiplexers grow with the product of its lanes, and one of
#: 96 lanes to 4 kept Verilator busy for more than 7 minutes.
MAX_AXI_LANES = 16
#: A convolutional graph runs its :data:`VECTORS` inputs this many times over: where a
#: residual branch is slower to fill but faster in the steady state than the other (a
#: 3x3 DEPTHWISE at 40 cycles a vector beside a CONV_2D at 48), the output comes at the
#: faster branch's pace until it has caught up with the results the slower one holds
#: ahead (8 vectors at 40 there, then 48; see
#: :func:`test_regression_residual_branch_catching_up_is_not_the_steady_state`), and
#: the second half of 12 vectors did not reach the planned interval yet.
CONV_REPEATS = 3
#: How often :func:`random_conv_graph` draws each of :data:`CONV_LAYER_KINDS`.
CONV_LAYER_WEIGHTS = {"conv_2d": 4, "depthwise_conv_2d": 3, "pool_2d": 2, "table_op": 2,
                      "pad": 1, "residual_add": 3, "concatenation": 2, "reshape_image": 1}


def random_conv_graph(rng, max_steps: int = 3):
    """``(writer, graph input, graph output)`` for a small NHWC graph: an image of up to
    :data:`MAX_HW` x :data:`MAX_HW` x 4, ``1 .. max_steps`` steps of
    :data:`CONV_LAYER_KINDS` (residual ADDs and CONCATENATIONs are one step each), then
    maybe a head (MEAN over height and width, a FULLY_CONNECTED, a SOFTMAX over the
    channels or the FULLY_CONNECTED's outputs), maybe uint8 edges."""
    g = GraphWriter()
    shape = (1, int(rng.integers(1, MAX_HW + 1)), int(rng.integers(1, MAX_HW + 1)),
             int(rng.integers(1, 5)))
    graph_in, x = graph_input(g, shape, rng, uint8=0.4)
    names = list(CONV_LAYER_WEIGHTS)
    weights = np.array([CONV_LAYER_WEIGHTS[n] for n in names], float)
    for _ in range(rng.integers(1, max_steps + 1)):
        x = CONV_LAYER_KINDS[names[rng.choice(len(names), p=weights / weights.sum())]](
            g, x, rng)
    if all(op in ("RESHAPE", "QUANTIZE") for op, *_ in g.operators):
        x = conv_2d(g, x, rng)  # no layer yet (steps that found no room, or RESHAPEs)
    head = pick(rng, ("none", "none", "mean", "fully_connected", "softmax"))
    if head == "mean":
        scale, _ = g.quant(x)
        ratio = rng.uniform(-2, 2) if chance(rng, 0.8) else rng.uniform(-10, 10)
        x = g.mean(x, [1, 2], (f32(scale * 2.0**ratio), quant(rng)[1]),
                   keep_dims=chance(rng, 0.5))
    elif head == "fully_connected":
        if chance(rng, 0.5):
            x = g.reshape(x, (1, size(g, x)))
        x = fully_connected(g, x, rng)
    if head == "softmax" or (head != "none" and chance(rng, 0.3)):
        x = g.softmax(x, beta=1.0 if chance(rng, 0.5) else f32(rng.uniform(0.25, 4.0)))
    if chance(rng, 0.4):
        scale, zero_point = g.quant(x)
        x = g.quantize(x, (scale, zero_point + 128), "uint8")
    return g, graph_in, x



# --------------------------------------------------------------------------------------
# Foldings and inputs
# --------------------------------------------------------------------------------------


def requant_lane_choices(stage, fold) -> list[int]:
    """The requantizer lane counts ``stage`` takes at ``fold`` (none for stages without a
    requantizer of their own): divisors of ``pe`` for FULLY_CONNECTED and CONV_2D, of the
    depthwise unit's lanes (``pe``, or the depth multiplier when ``pe`` divides it) for
    DEPTHWISE_CONV_2D."""
    if isinstance(stage.node, ir.FullyConnected | ir.Conv2D):
        return divisors(fold.pe)
    if isinstance(stage.node, ir.DepthwiseConv2D):
        return divisors(max(fold.pe, stage.node.depth_multiplier))
    return []


def foldings(graph: ir.Graph, rng, max_lanes: int | None = None):
    """A folding for every foldable stage, by node index: any of the stage's valid
    foldings (:meth:`tfl2rtl.hw.stages.Stage.options`) with at most
    :data:`MAX_LAYER_MULTIPLIERS` multipliers and, where it has one, a requantizer lane
    count (:func:`requant_lane_choices`); and the AXI lanes, dividing both edge vectors
    (at most ``max_lanes``)."""
    folds = {}
    for index, stage in folded_layers(graph).items():
        options = [f for f in stage.options() if stage.multipliers(f) <= MAX_LAYER_MULTIPLIERS]
        fold = pick(rng, options)
        folds[index] = (fold.pe, fold.simd)
        if requant_lane_choices(stage, fold):
            folds[index] += (pick(rng, requant_lane_choices(stage, fold)),)
    edges = math.gcd(graph.tensors[graph.inputs[0]].size, graph.tensors[graph.outputs[0]].size)
    return folds, pick(rng, [d for d in divisors(edges) if d <= (max_lanes or edges)])


def describe(graph: ir.Graph, folds) -> str:
    """One line per node: op, shapes, folding."""
    lines = []
    for index, node in enumerate(graph.nodes):
        shapes = " -> ".join(" + ".join(str(graph.tensors[t].shape) for t in names)
                             for names in (node.inputs, node.outputs))
        weights = f" weights {node.weights.shape}" if hasattr(node, "weights") else ""
        fold = f" fold {folds[index]}" if index in folds else ""
        lines.append(f"  {index}: {node.op} {shapes}{weights}{fold}")
    return "\n".join(lines)


def branch_ops(graph: ir.Graph, node: ir.Node) -> list[tuple[str, ...]]:
    """For each input of a join (ADD, CONCATENATION), the ops of the chain that computes
    it from where the branches split (RESHAPEs left out)."""
    producers = {n.output: n for n in graph.nodes}
    readers = Counter(name for n in graph.nodes for name in n.inputs)
    chains = []
    for name in node.inputs:
        ops = []
        while name in producers and readers[name] == 1 and len(producers[name].inputs) == 1:
            if not isinstance(producers[name], ir.Reshape):
                ops.append(producers[name].op)
            name = producers[name].input
        chains.append(tuple(reversed(ops)))
    return chains


def features(graph: ir.Graph, folds, lanes: int) -> set[str]:
    """What of the space :func:`random_graph`, :func:`random_conv_graph` and
    :func:`foldings` aim at a graph reaches, for the module's summary.  Windows count as
    padded when the padding is not zero (a 1x1 SAME window is not padded)."""
    found = {"lanes > 1"} if lanes > 1 else set()
    for index, node in enumerate(graph.nodes):
        if isinstance(node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D):
            pe, simd, requant_lanes = folds[index]
            found.add("per-channel scales" if node.requant.per_channel
                      else "per-tensor scales")
            found |= {name for name, present in [
                ("a left shift", (node.requant.shift > 0).any()),
                ("a zero multiplier", (node.requant.multiplier == 0).any()),
                ("a fused clamp", node.act_min > -128 or node.act_max < 127),
                ("requant lanes < pe", requant_lanes < pe),
            ] if present}
        if isinstance(node, ir.FullyConnected):
            pe, simd, _ = folds[index]
            found |= {name for name, present in [
                ("several rows", graph.tensors[node.input].size > node.weights.shape[1]),
                ("pe and simd > 1", pe > 1 and simd > 1),
            ] if present}
            if len(graph.tensors[node.input].shape) == 4:
                found.add("FULLY_CONNECTED of an image")
        if isinstance(node, ir.Conv2D | ir.DepthwiseConv2D | ir.MaxPool2D | ir.AveragePool2D):
            what = {"CONV_2D": "CONV_2D", "DEPTHWISE_CONV_2D": "DEPTHWISE",
                    "MAX_POOL_2D": "pool", "AVERAGE_POOL_2D": "pool"}[node.op]
            kernel = (node.filter if hasattr(node, "filter") else node.weights.shape[1:3]
                      if isinstance(node, ir.Conv2D) else node.weights.shape[0:2])
            found |= {f"{what} {name}" for name, present in [
                ("1x1", tuple(kernel) == (1, 1)),
                ("kxk", tuple(kernel) != (1, 1)),
                ("non-square", kernel[0] != kernel[1]),
                ("stride > 1", max(node.stride) > 1),
                ("dilation > 1", max(getattr(node, "dilation", (1,))) > 1),
                ("padded", any(node.padding)),
                ("unpadded", not any(node.padding)),
            ] if present}
            found.add(node.op)
        if isinstance(node, ir.Conv2D) and min(folds[index][:2]) > 1:
            found.add("CONV_2D pe and simd > 1")
        if isinstance(node, ir.DepthwiseConv2D):
            pe, _, requant_lanes = folds[index]
            multiplier = node.depth_multiplier
            found |= {f"DEPTHWISE {name}" for name, present in [
                ("depth multiplier > 1", multiplier > 1),
                ("pe < depth multiplier", pe < multiplier),
                ("pe > depth multiplier", pe > multiplier),
                ("requant lanes < its lanes", requant_lanes < max(pe, multiplier)),
            ] if present}
        if isinstance(node, ir.Mean | ir.Add | ir.Concatenation | ir.Pad) or (
                isinstance(node, ir.Softmax | ir.Reshape | ir.Lut)):
            found.add(node.function if isinstance(node, ir.Lut) else node.op)
        if isinstance(node, ir.Add | ir.Concatenation):
            chains = branch_ops(graph, node)
            if any(not chain for chain in chains):
                found.add(f"{node.op} of an identity branch")
            if len(set(chains)) > 1:
                found.add(f"{node.op} of unequal branches")
            if len(node.inputs) > 2:
                found.add("CONCATENATION of 3")
        if isinstance(node, ir.Concatenation):
            axis = node.axis % len(graph.tensors[node.output].shape)
            found.add("CONCATENATION of channels" if axis == 3 else "CONCATENATION of rows "
                      "or columns")
        if isinstance(node, ir.Pad):
            if any(node.paddings[-1]):
                found.add("PAD of channels")
            if node.pad_value != graph.tensors[node.output].zero_point:
                found.add("PAD value not the zero point")
        if isinstance(node, ir.Mean) and len(graph.tensors[node.output].shape) == 4:
            found.add("MEAN keeping dims")
        if isinstance(node, ir.Requantize) and node.flip_sign:
            found.add("uint8 input" if index == 0 else "uint8 output")
        if folds.get(index, (1,))[0] > 1 and not isinstance(
                node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D):
            found.add("pe > 1 elsewhere")
    return found


def hardware_inputs(graph: ir.Graph, rng, count: int = VECTORS) -> np.ndarray:
    """``count`` input vectors, one per row: :func:`test_golden_random.input_sets`'
    (uniform, the dtype's two extremes mixed, near the zero point) and, last, all at the
    minimum and all at the maximum."""
    t = graph.tensors[graph.inputs[0]]
    rows = [one[0].reshape(-1) for one in input_sets(graph, rng, count - 2)]
    info = np.iinfo(np.dtype(t.dtype))
    rows += [np.full(t.size, info.min), np.full(t.size, info.max)]
    return np.array(rows).astype(t.dtype)


# --------------------------------------------------------------------------------------
# The property
# --------------------------------------------------------------------------------------


class SerialRequantizerNetwork(DataflowNetwork):
    """A :class:`DataflowNetwork` elaborated as for a platform that asks for requantizers
    with serial products (:data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK`, as the iCE40
    boards do); its plan should count :data:`SERIAL_REQUANT_INTERVAL` cycles per
    requantizer beat."""

    class Platform:
        pass

    def elaborate(self, platform):
        serial = self.Platform()
        setattr(serial, SERIAL_PRODUCTS_HOOK, True)
        return Fragment.get(super().elaborate(serial), serial)


def build_and_simulate(graph: ir.Graph, folds, lanes: int, inputs: np.ndarray, directory,
                       *, seed: int = 0, stall: float = 0.3, backpressure: float = 0.3,
                       serial: bool = False, serial_layers=(), logic_layers=(),
                       counter: Counter = FEATURES):
    """Build ``graph`` at ``folds`` and ``lanes`` (with serial requantizer products if
    ``serial``, or in the layers of the node indices ``serial_layers``; MAC products in
    logic in the layers of ``logic_layers``), run ``inputs``
    through it back to back and under random stalls and backpressure, and check every
    output against the golden model (and TFLM on the same inputs); the graph's
    :func:`features` count in ``counter``; returns the runs."""
    report = verify_graph(graph, [[x.reshape(graph.tensors[graph.inputs[0]].shape)]
                                  for x in inputs])
    assert report.samples == len(inputs) and not report.mismatches, report.mismatches[:5]
    if serial:
        plan = plan_network(graph, folds, lanes=lanes,
                            requant_interval=SERIAL_REQUANT_INTERVAL)
    else:
        plan = plan_network(graph, folds, lanes=lanes, serial_requantizers=serial_layers)
        assert {s.index for s in plan.stages if s.serial_requantizer} == set(serial_layers)
    plan = plan.with_products_in_logic(logic_layers)
    network = (SerialRequantizerNetwork if serial else DataflowNetwork)(plan)
    expected = golden_vectors(graph, inputs)
    runs = simulate_network(network, inputs, expected, directory, seed=seed, stall=stall,
                            backpressure=backpressure)
    streaming, stalled = runs["streaming"], runs["random_stalls"]
    for run in runs.values():
        assert run.outputs.shape == expected.shape == (len(inputs), network.plan.out_size)
        np.testing.assert_array_equal(run.outputs, expected)
        assert run.mismatches == 0 and run.tlast_errors == 0
    # Back to back, the output keeps the planned interval once the pipeline is full.  A
    # serial requantizer steps at the end of each free-running window of its own, which
    # delays a result by up to a window less a cycle but never adds up.
    steady = streaming.intervals[len(streaming.intervals) // 2:]
    if serial or serial_layers:
        assert abs(sum(steady) - len(steady) * network.cycles_per_vector) \
            < SERIAL_REQUANT_INTERVAL, steady
    else:
        assert streaming.initiation_interval == network.cycles_per_vector, steady
    STATS["graphs"] += 1
    STATS["nodes"] += len(graph.nodes)
    STATS["layers"] += len(folded_layers(graph))
    STATS["vectors"] += len(inputs)
    STATS["elements"] += 2 * expected.size
    STATS["cycles"] += streaming.cycles_simulated + stalled.cycles_simulated
    STATS["live"] += len(np.unique(expected)) > 1
    tensors = [golden.run(graph, x.reshape(graph.tensors[graph.inputs[0]].shape)).tensors
               for x in inputs]
    STATS["live_layers"] += sum(
        len(np.unique([t[stage.node.output] for t in tensors], axis=0)) > 1
        for stage in folded_layers(graph).values())
    STATS["build_seconds"] += streaming.build_seconds
    counter.update(features(graph, folds, lanes)
                   | ({"serial requantizers"} if serial else set())
                   | ({"serial requantizers in some layers"} if serial_layers else set())
                   | ({"products in logic in some layers"} if logic_layers else set()))
    return runs


def check_random_graph(rng, g, x, y, tmp_path, build_dir, counter: Counter,
                       max_lanes: int | None = None, repeats: int = 1):
    """Write and check one random graph, draw its folding (AXI lanes up to
    ``max_lanes``), stalls and requantizers, build and simulate it
    (:func:`build_and_simulate`) on its inputs ``repeats`` times over; its features
    count in ``counter``."""
    path = tmp_path / "random.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = load(path)  # tfl2rtl accepts it, and the golden model equals TFLM:
    assert check(g, [x], [y], path, int(rng.integers(2**16))) is not None
    folds, lanes = foldings(graph, rng, max_lanes)
    stall, backpressure = rng.uniform(0.05, 0.9, 2)
    serial = chance(rng, 0.25)
    serial_layers = ()
    if not serial and chance(rng, 1 / 3):
        serial_layers = tuple(
            index for index, node in enumerate(graph.nodes)
            if isinstance(node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D)
            and chance(rng, 0.5))
    inputs = np.tile(hardware_inputs(graph, rng), (repeats, 1))
    seed = int(rng.integers(2**16))
    # (Drawn last, so that the draws before are those of the graphs without them.)
    logic_layers = ()
    if chance(rng, 0.25):
        logic_layers = tuple(index for index, node in enumerate(graph.nodes)
                             if isinstance(node, ir.FullyConnected | ir.Conv2D)
                             and chance(rng, 0.5))
    print(f"{path}\n{describe(graph, folds)}\nlanes {lanes}, stall {stall:.2f}, "
          f"backpressure {backpressure:.2f}, serial requantizers "
          f"{serial or list(serial_layers)}, products in logic {list(logic_layers)}")
    build_and_simulate(graph, folds, lanes, inputs, build_dir,
                       seed=seed, stall=stall, backpressure=backpressure,
                       serial=serial, serial_layers=serial_layers,
                       logic_layers=logic_layers, counter=counter)


@pytest.mark.parametrize("number", range(max(1, round(GRAPHS * SCALE))))
def test_random_graph_in_verilator(number, tmp_path, build_dir):
    rng = np.random.default_rng([SEED, number])
    g, x, y = random_graph(rng)
    check_random_graph(rng, g, x, y, tmp_path, build_dir, FEATURES)
    STATS["random"] += 1


@pytest.mark.parametrize("number", range(max(1, round(CONV_GRAPHS * SCALE))))
def test_random_conv_graph_in_verilator(number, tmp_path, build_dir):
    rng = np.random.default_rng([SEED, CONV_STREAM, number])
    g, x, y = random_conv_graph(rng)
    check_random_graph(rng, g, x, y, tmp_path, build_dir, CONV_FEATURES, MAX_AXI_LANES,
                       CONV_REPEATS)
    STATS["random conv"] += 1


# --------------------------------------------------------------------------------------
# 16x8 graphs: int16 activations, int8 weights, int64 accumulators
# --------------------------------------------------------------------------------------

#: Random 16x8 graphs per run (times ``TFL2RTL_RANDOM_SCALE``), from their own streams.
INT16_GRAPHS = 3
INT16_STREAM = 3


def conv_geometry(rng, in_shape, *, same: bool, depthwise: bool):
    """A random CONV_2D or DEPTHWISE_CONV_2D over an NHWC ``in_shape``: ``(kernel,
    stride, padding, depth multiplier, output channels, weight shape, fan-in)``; with
    ``same`` one that keeps the shape (stride 1, SAME, as many channels)."""
    _, h, w, c = in_shape
    kernel = (int(rng.integers(1, min(3, h) + 1)), int(rng.integers(1, min(3, w) + 1)))
    stride = (1, 1) if same else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = "SAME" if same else pick(rng, ["SAME", "VALID"])
    multiplier = int(rng.integers(1, 3)) if depthwise and not same else 1
    out_c = c * multiplier if depthwise else (c if same else int(rng.integers(1, 6)))
    shape = (1, *kernel, out_c) if depthwise else (out_c, *kernel, c)
    fan_in = kernel[0] * kernel[1] * (1 if depthwise else c)
    return kernel, stride, padding, multiplier, out_c, shape, fan_in


def random_16x8_graph(rng):
    """A 16x8 graph of the ops with int16 hardware (written with the 16x8 layer methods
    of ``tests/models/make_writer_models.py``): an int16 image of up to 6 x 6 x 4 through
    one to three steps of CONV_2D (1x1 to 3x3, strides 1 and 2, SAME and VALID,
    per-channel int8 weights, int64 biases up to 2**24), DEPTHWISE_CONV_2D (depth
    multipliers 1 and 2), MAX_POOL_2D and AVERAGE_POOL_2D, PAD, an int16 -> int16
    QUANTIZE, LEAKY_RELU, a residual ADD of a same-shape convolution and the CONCATENATION of two
    along the channels; then maybe a MEAN over height and width, maybe a RESHAPE and a
    FULLY_CONNECTED, and maybe a SOFTMAX;
    fused activations at random.  Output scales spread each layer's outputs over int16
    within a factor of 2**3."""
    from test_golden_random import ModeLayers

    g = GraphWriter("tfl2rtl random 16x8 graph")
    layers = ModeLayers(g, "int16")
    h, w, c = (int(v) for v in rng.integers((2, 2, 1), (7, 7, 5)))
    s_in = f32(2.0 ** rng.uniform(-12, -4))
    x = y = g.tensor((1, h, w, c), "int16", s_in, 0)

    def weights(shape, channels, fan_in, s_in):
        values = int8_values(rng, pick(rng, WEIGHT_KINDS), shape)
        base = 2.0 ** rng.uniform(-10, -4)
        scales = [f32(base * 2.0 ** rng.uniform(-3, 0)) for _ in range(channels)]
        # (|x| ~ 2**14 and |w| ~ 60 over fan_in terms: outputs ~ 2**14 at this scale)
        s_out = f32(s_in * base * 60 * np.sqrt(fan_in) * 2.0 ** rng.uniform(-3, 3))
        bias = rng.integers(-(1 << 24), 1 << 24, channels)
        return values, scales, bias, (s_out, 0)

    def conv(y, *, same=False, depthwise=False):
        kernel, stride, padding, multiplier, out_c, shape, fan_in = conv_geometry(
            rng, g.shape(y), same=same, depthwise=depthwise)
        values, scales, bias, out_quant = weights(shape, out_c, fan_in, g.quant(y)[0])
        return layers.conv_2d(y, values, scales, bias, out_quant, stride=stride,
                              padding=padding, activation=pick(rng, ACTIVATIONS[:3]),
                              depthwise=depthwise, depth_multiplier=multiplier)

    for _ in range(int(rng.integers(1, 4))):
        _, h, w, c = g.shape(y)
        kind = pick(rng, ["conv", "conv", "depthwise", "pool", "pad", "quantize", "add",
                          "concatenation", "leaky_relu"])
        if kind in ("conv", "depthwise"):
            y = conv(y, depthwise=kind == "depthwise")
        elif kind == "pool":
            kernel = (int(rng.integers(1, min(3, h) + 1)), int(rng.integers(1, min(3, w) + 1)))
            stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            y = layers.pool_2d(pick(rng, ["MAX_POOL_2D", "AVERAGE_POOL_2D"]), y, kernel,
                               stride=stride, padding=pick(rng, ["SAME", "VALID"]),
                               activation=pick(rng, ACTIVATIONS[:3]))
        elif kind == "pad":
            y = g.pad(y, [[0, 0], *[[int(v) for v in rng.integers(0, 2, 2)] for _ in "hw"],
                          [0, 0]])
        elif kind == "quantize":
            y = layers.requantize(y, (f32(g.quant(y)[0] * 2.0 ** rng.uniform(-4, 4)), 0))
        elif kind == "leaky_relu":
            y = layers.elementwise("LEAKY_RELU", y,
                                   (f32(g.quant(y)[0] * 2.0 ** rng.uniform(-2, 2)), 0),
                                   alpha=f32(rng.uniform(0.01, 0.9)))
        elif kind == "add":  # a residual: y + conv(y), scales within 2**3 of each other
            out_quant = (f32(g.quant(y)[0] * 2.0 ** rng.uniform(-1, 3)), 0)
            y = layers.add(y, conv(y, same=True), out_quant,
                           activation=pick(rng, ACTIVATIONS[:3]))
        else:  # the concatenation of y and a requantized y, both at one scale
            other = conv(y, same=True)
            other = layers.requantize(other, g.quant(y))
            y = g.concatenation([y, other], 3)
    if chance(rng, 0.3):  # global average pooling
        y = layers.mean(y, [1, 2], (f32(g.quant(y)[0] * 2.0 ** rng.uniform(-1, 1)), 0),
                        keep_dims=False)
    if chance(rng, 0.5):
        size = int(np.prod(g.shape(y)))
        y = g.reshape(y, (1, size))
        out_depth = int(rng.integers(1, 9))
        values, scales, bias, out_quant = weights((out_depth, size), out_depth, size,
                                                  g.quant(y)[0])
        y = layers.fully_connected(y, values, scales, bias, out_quant,
                                   activation=pick(rng, ACTIVATIONS[:3]))
        if chance(rng, 0.4):
            y = layers.softmax(y, beta=f32(2.0 ** rng.uniform(-2, 2)))
    return g, x, y


def check_mode_graph(rng, g, x, y, mode: str, tmp_path, build_dir):
    """Write a random graph of quantization ``mode`` (``"int16x8"`` or
    ``"uint8-legacy"``), draw its folding, AXI lanes, stalls and inputs, and build and
    simulate it (:func:`build_and_simulate`: against the golden model under the mode's
    default profile, which its runtime checks on the same inputs)."""
    path = tmp_path / "random.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = load(path)
    assert graph.quantization == mode
    folds, lanes = foldings(graph, rng)
    stall, backpressure = rng.uniform(0.05, 0.9, 2)
    inputs = hardware_inputs(graph, rng)
    print(f"{path}\n{describe(graph, folds)}\nlanes {lanes}, stall {stall:.2f}, "
          f"backpressure {backpressure:.2f}")
    runs = build_and_simulate(graph, folds, lanes, inputs, build_dir,
                              seed=int(rng.integers(2**16)), stall=stall,
                              backpressure=backpressure, counter=FEATURES)
    dtype = graph.tensors[graph.outputs[0]].dtype
    assert runs["streaming"].outputs.dtype == np.dtype(dtype)


@pytest.mark.parametrize("number", range(max(1, round(INT16_GRAPHS * SCALE))))
def test_random_16x8_graph_in_verilator(number, tmp_path, build_dir):
    """A random 16x8 graph (:func:`random_16x8_graph`) at a random folding, back to back
    and under random stalls and backpressure, against the golden model, which TFLite
    Micro checks on the same inputs."""
    rng = np.random.default_rng([SEED, INT16_STREAM, number])
    check_mode_graph(rng, *random_16x8_graph(rng), "int16x8", tmp_path, build_dir)
    STATS["random 16x8"] += 1


#: Random legacy uint8 graphs per run (times ``TFL2RTL_RANDOM_SCALE``), from their own
#: streams.
UINT8_GRAPHS = 2
UINT8_STREAM = 4


def random_uint8_graph(rng):
    """A legacy uint8 graph (uint8 activations with any zero point, per-tensor uint8
    weights with their own zero points, int32 biases; written with the uint8 layer
    methods of ``tests/models/make_writer_models.py``) of the ops with hardware for it: a
    uint8 image of up to 6 x 6 x 4 through one to three steps of CONV_2D,
    DEPTHWISE_CONV_2D, MAX_POOL_2D, PAD, a residual ADD and a CONCATENATION (of a tensor
    and a convolution of it at the same scale); then maybe a RESHAPE, a FULLY_CONNECTED
    (LiteRT's double rounding) and a SOFTMAX.  (AVERAGE_POOL_2D of a uint8 model has no
    hardware: its halves round differently in int8.)"""
    from test_golden_random import ModeLayers

    g = GraphWriter("tfl2rtl random legacy uint8 graph")
    layers = ModeLayers(g, "uint8")
    h, w, c = (int(v) for v in rng.integers((2, 2, 1), (7, 7, 5)))
    x = y = g.tensor((1, h, w, c), "uint8", f32(2.0 ** rng.uniform(-8, -2)),
                     int(rng.integers(0, 256)))

    def weights(shape, channels, fan_in, s_in, out_quant=None):
        zero_point = int(rng.integers(90, 170))
        values = rng.integers(0, 256, shape)
        base = f32(2.0 ** rng.uniform(-9, -5))
        # (|x - zx| ~ 64 and |w - zw| ~ 64 over fan_in terms: outputs ~ 64 steps)
        s_out = f32(s_in * base * 64 * np.sqrt(fan_in) * 2.0 ** rng.uniform(-2, 2))
        bias = rng.integers(-3000, 3000, channels)
        return values, [base], zero_point, bias, out_quant or (s_out, int(rng.integers(0, 256)))

    def conv(y, *, same=False, depthwise=False, out_quant=None):
        kernel, stride, padding, multiplier, out_c, shape, fan_in = conv_geometry(
            rng, g.shape(y), same=same, depthwise=depthwise)
        values, scales, zw, bias, quant_out = weights(shape, out_c, fan_in, g.quant(y)[0],
                                                      out_quant)
        return layers.conv_2d(y, values, scales, bias, quant_out, weight_zero_point=zw,
                              stride=stride, padding=padding,
                              activation=pick(rng, ACTIVATIONS[:3]), depthwise=depthwise,
                              depth_multiplier=multiplier)

    for _ in range(int(rng.integers(1, 4))):
        _, h, w, c = g.shape(y)
        kind = pick(rng, ["conv", "conv", "depthwise", "pool", "pad", "add", "concatenation"])
        if kind in ("conv", "depthwise"):
            y = conv(y, depthwise=kind == "depthwise")
        elif kind == "pool":
            kernel = (int(rng.integers(1, min(3, h) + 1)), int(rng.integers(1, min(3, w) + 1)))
            stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            y = layers.pool_2d("MAX_POOL_2D", y, kernel, stride=stride,
                               padding=pick(rng, ["SAME", "VALID"]),
                               activation=pick(rng, ACTIVATIONS[:3]))
        elif kind == "pad":
            y = g.pad(y, [[0, 0], *[[int(v) for v in rng.integers(0, 2, 2)] for _ in "hw"],
                          [0, 0]])
        elif kind == "add":  # a residual: y + conv(y), scales within 2**3 of each other
            out_quant = (f32(g.quant(y)[0] * 2.0 ** rng.uniform(-1, 3)),
                         int(rng.integers(0, 256)))
            y = layers.add(y, conv(y, same=True), out_quant)
        else:  # y and a convolution of it at y's scale, along the channels
            y = g.concatenation([y, conv(y, same=True, out_quant=g.quant(y))], 3)
    if chance(rng, 0.6):
        size = int(np.prod(g.shape(y)))
        y = g.reshape(y, (1, size))
        out_depth = int(rng.integers(1, 9))
        values, scales, zw, bias, out_quant = weights((out_depth, size), out_depth, size,
                                                      g.quant(y)[0])
        y = layers.fully_connected(y, values, scales, bias, out_quant, weight_zero_point=zw,
                                   activation=pick(rng, ACTIVATIONS[:3]))
        if chance(rng, 0.4):
            y = layers.softmax(y)
    return g, x, y


@pytest.mark.parametrize("number", range(max(1, round(UINT8_GRAPHS * SCALE))))
def test_random_uint8_graph_in_verilator(number, tmp_path, build_dir):
    """A random legacy uint8 graph (:func:`random_uint8_graph`) at a random folding, back
    to back and under random stalls and backpressure, against the golden model's
    ``litert-ref`` profile, which LiteRT's reference kernels check on the same inputs."""
    rng = np.random.default_rng([SEED, UINT8_STREAM, number])
    check_mode_graph(rng, *random_uint8_graph(rng), "uint8-legacy", tmp_path, build_dir)
    STATS["random uint8"] += 1


# --------------------------------------------------------------------------------------
# Regressions: the smallest cases of disagreements the random graphs found
# --------------------------------------------------------------------------------------


def _build_one(tmp_path, g, x, y, folds, *, serial=False):
    """Check, load and simulate one hand-written model on 16 inputs (all 256 of a
    one-element input); returns the graph and the runs."""
    path = tmp_path / "model.tflite"
    assert check(g, [x], [y], path) is not None
    graph = load(path)
    t = graph.tensors[graph.inputs[0]]
    inputs = hardware_inputs(graph, np.random.default_rng(0), 16)
    if t.size == 1:
        info = np.iinfo(np.dtype(t.dtype))
        inputs = np.arange(info.min, info.max + 1).reshape(-1, 1).astype(t.dtype)
    return graph, build_and_simulate(graph, folds, 1, inputs, tmp_path / "build",
                                     serial=serial)


@pytest.mark.parametrize("scales, fold", [(0.0, (1, 1, 1)),
                                          ([0.01, 0.0, 0.02, 0.0], (4, 1, 2))])
def test_regression_zero_multiplier_lane_builds(tmp_path, scales, fold):
    """Found by test_random_graph_in_verilator.  A requantizer lane whose multiplier is 0
    in every channel it serves (a weight scale of 0, or an effective multiplier below
    2**-31) gets the multiplier as a 1-bit constant; the partial product ``x_lo * m_lo``
    was then 17 bits wide and elaboration failed on its bit 31 (IndexError).  Here a
    per-tensor scale of 0, and per-channel scales whose zeros all fall into requantizer
    lane 1 (channels 1 and 3 of PE=4 over 2 lanes)."""
    out_depth = np.size(scales)
    g = GraphWriter()
    x = g.tensor((1, 1), "int8", 0.1, 0)
    y = g.fully_connected(x, np.arange(1, out_depth + 1).reshape(out_depth, 1), scales,
                          None, (0.05, 3))
    graph, _ = _build_one(tmp_path, g, x, y, {0: fold})
    assert 0 in graph.nodes[0].requant.multiplier.tolist()


def test_regression_fully_connected_over_rows_keeps_its_interval(tmp_path):
    """Found by test_random_graph_in_verilator.  A FULLY_CONNECTED whose input holds
    several rows (here ``(1, 4)`` read as 2 rows of 2 by 2x2 weights, giving ``(2, 2)``)
    computes correctly, but the plan counted one row: 4 cycles per inference where the
    layer takes 2 rows x 2 neurons x 2 inputs = 8."""
    g = GraphWriter()
    x = g.tensor((1, 4), "int8", 0.1, 0)
    y = g.fully_connected(x, [[1, 2], [3, -4]], 0.01, [5, -6], (0.02, 1))
    graph, runs = _build_one(tmp_path, g, x, y, {0: (1, 1, 1)})
    assert graph.tensors[graph.outputs[0]].shape == (2, 2)
    assert runs["streaming"].initiation_interval == 8


@pytest.mark.parametrize("out_depth, in_depth, scale, interval", [
    (1, 32, 0.002, 32), (2, 8, 0.002, 16), (1, 1, 0.0, 3)])
def test_regression_serial_requantizer_keeps_the_planned_interval(
        tmp_path, out_depth, in_depth, scale, interval):
    """Found by test_random_graph_in_verilator.  A requantizer with serial products
    takes a beat only in the last cycle of its free-running 5-cycle window.  The plan
    once counted ``max(in_depth, 5)`` per neuron while the matrix-vector unit held its
    finished accumulators (and stopped) until the window's end, ``in_depth`` rounded up
    to a multiple of 5 (35 for 32 inputs); now a register slice
    (``tfl2rtl.hw.adapters.SkidBuffer``) holds them and the unit goes on, so a neuron
    takes ``max(in_depth, 5)`` cycles on average, each result leaving at the end of a
    window (single intervals vary by up to a window).  And with every multiplier 0 (a
    weight scale of 0) the requantizer has two partial products, a 3-cycle window, where
    the plan counted 5 for every serial requantizer.  The plan counts both
    (``tfl2rtl.hw.stages``), and the hardware keeps it."""
    rng = np.random.default_rng(1)
    g = GraphWriter()
    x = g.tensor((1, in_depth), "int8", 0.1, 0)
    y = g.fully_connected(x, rng.integers(-127, 128, (out_depth, in_depth)), scale,
                          rng.integers(-500, 500, out_depth), (0.05, 0))
    graph, runs = _build_one(tmp_path, g, x, y, {0: (1, 1, 1)}, serial=True)
    plan = plan_network(graph, {0: (1, 1, 1)}, requant_interval=SERIAL_REQUANT_INTERVAL)
    assert plan.cycles_per_vector == interval
    steady = runs["streaming"].intervals[len(runs["streaming"].intervals) // 2:]
    assert abs(sum(steady) - len(steady) * interval) < SERIAL_REQUANT_INTERVAL, steady


@pytest.mark.parametrize("out_depth, in_depth, fold, interval", [
    (2, 12, (2, 1, 1), 12), (14, 23, (2, 1, 1), 161), (4, 6, (4, 1, 2), 10)])
def test_regression_serial_requantizer_behind_a_splitter_keeps_the_planned_interval(
        tmp_path, out_depth, in_depth, fold, interval):
    """Found by test_random_graph_in_verilator.  With fewer requantizer lanes than PE,
    the accumulator splitter takes a group's accumulators into its own register at once,
    so the matrix-vector unit does not wait for the serial requantizer's window and a
    group takes ``max(compute, beats * 5)`` cycles.  The plan rounded the compute up to
    whole windows there too: 15 cycles for 12 (2 neurons of 12 inputs through one lane),
    175 for 161.  The requantizer-bound case (4 neurons of 6 inputs, 2 beats of 5)
    stays at 10.  Serial results come at window ends, so single intervals jitter by up
    to a window; their average is the plan's."""
    rng = np.random.default_rng(2)
    g = GraphWriter()
    x = g.tensor((1, in_depth), "int8", 0.1, 0)
    y = g.fully_connected(x, rng.integers(-127, 128, (out_depth, in_depth)), 0.002,
                          rng.integers(-500, 500, out_depth), (0.05, 0))
    graph, runs = _build_one(tmp_path, g, x, y, {0: fold}, serial=True)
    plan = plan_network(graph, {0: fold}, requant_interval=SERIAL_REQUANT_INTERVAL)
    assert plan.cycles_per_vector == interval
    steady = runs["streaming"].intervals[len(runs["streaming"].intervals) // 2:]
    assert abs(sum(steady) - len(steady) * interval) < SERIAL_REQUANT_INTERVAL, steady


def test_regression_residual_branch_catching_up_is_not_the_steady_state(tmp_path):
    """Found by test_random_conv_graph_in_verilator (seed 4, graph 10, with an AVERAGE_POOL
    before and a MEAN after).  An ADD of two branches of one tensor: a 3x3 DEPTHWISE
    (PE 2) then a 1x1 CONV_2D, at 40 cycles a vector, beside a 1x3 CONV_2D (PE 1, SIMD
    2) at 48, serial requantizers.  The CONV_2D branch fills sooner and holds results
    ahead at the ADD, so the output first comes at the DEPTHWISE branch's 40 cycles
    until that branch has caught up, and only then at the planned 48: of 12 vectors,
    the second half still had intervals of 40 (on average 44 against 48, outside a
    window) and the test failed, though the hardware and the plan agree.  The
    convolutional graphs now run their inputs :data:`CONV_REPEATS` times over."""
    rng = np.random.default_rng(3)
    g = GraphWriter()
    x = g.tensor((1, 2, 1, 4), "int8", 0.1, 0)
    a = g.depthwise_conv_2d(x, rng.integers(-127, 128, (1, 3, 3, 4)), 0.01,
                            rng.integers(-500, 500, 4), (0.05, 0))
    a = g.conv_2d(a, rng.integers(-127, 128, (4, 1, 1, 4)), 0.01, rng.integers(-500, 500, 4),
                  (0.05, 0))
    b = g.conv_2d(x, rng.integers(-127, 128, (4, 1, 3, 4)), 0.01, rng.integers(-500, 500, 4),
                  (0.05, 0))
    y = g.add(a, b, (0.1, 0))
    path = tmp_path / "model.tflite"
    assert check(g, [x], [y], path) is not None
    graph = load(path)
    folds = {0: (2, 1, 1), 1: (2, 4, 2), 2: (1, 2, 1), 3: (4, 1)}
    plan = plan_network(graph, folds, requant_interval=SERIAL_REQUANT_INTERVAL)
    slowest = max(plan.stages, key=lambda s: s.cycles_per_vector)
    assert isinstance(slowest.node, ir.Conv2D) and slowest.fold.pe == 1
    inputs = np.tile(hardware_inputs(graph, rng), (CONV_REPEATS, 1))
    runs = build_and_simulate(graph, folds, 1, inputs, tmp_path / "build", serial=True)
    intervals = runs["streaming"].intervals
    # catching up: the second half of the first 12 vectors is faster than the plan
    early = intervals[VECTORS // 2 - 1:VECTORS - 1]
    assert sum(early) <= len(early) * plan.cycles_per_vector - SERIAL_REQUANT_INTERVAL, early


def test_regression_pad_of_rows_stalls_the_stage_before_it(tmp_path):
    """Found by test_random_conv_graph_in_verilator (seed 8, graph 4: three PADs in a
    row).  A PAD of one column (PE 1, 192 output elements: the planned 192 cycles a
    vector) into a PAD of one row on top (PE 2, 112 cycles).  While the second writes
    its row of padding (32 elements, 16 cycles) it reads nothing, and the FIFO and lane
    converter before it hold 12 elements: the first PAD stalls, and the pair takes 201
    cycles a vector instead of the planned 192.  Each PAD alone keeps its plan.  Now the
    FIFO before a PAD also holds what arrives during its longest run of padding (across
    the end of one vector and the start of the next; ``tfl2rtl.hw.network``)."""
    g = GraphWriter()
    x = g.tensor((1, 6, 7, 4), "int8", 0.1, 3)
    y = g.pad(g.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]]), [[0, 0], [1, 0], [0, 0], [0, 0]])
    path = tmp_path / "model.tflite"
    assert check(g, [x], [y], path) is not None
    graph = load(path)
    inputs = hardware_inputs(graph, np.random.default_rng(0), 24)
    build_and_simulate(graph, {0: (1, 1), 1: (2, 1)}, 2, inputs, tmp_path / "build")


#: The share of the graphs above (random and regressions) whose outputs must vary over
#: their inputs: a generator that drifts into graphs whose outputs all saturate would
#: check little (34 of 39 varied when this floor was set).
LIVE_FLOOR = 0.7


def test_most_graphs_have_outputs_that_vary():
    """Runs after the graphs of this module (pytest keeps the file's order)."""
    if not STATS["graphs"]:
        pytest.skip("no graph of this module ran in this session (deselected)")
    assert STATS["live"] >= LIVE_FLOOR * STATS["graphs"], STATS
