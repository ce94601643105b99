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

Then a random folding (:func:`foldings`): per layer any valid PE and SIMD, a requantizer
lane count dividing the PE, and AXI lanes dividing both edge vectors; one graph in four
with requantizers of serial products (as the iCE40 boards build them).  The Verilog runs
in Verilator under cocotb (:func:`tfl2rtl.sim.runner.simulate_network`) on a dozen
inputs: uniform over the input dtype, mixed extremes, values next to the zero point, all
at the minimum and all at the maximum; once back to back, once with random input stalls
and output backpressure at random rates.  Both runs must equal the golden model exactly,
with ``tlast`` on the last beat of every vector, and the back-to-back run must reach the
planned initiation interval (on average, with serial requantizers, whose free-running
windows shift single results by a few cycles).  TFLM checks the golden model on those
very inputs, too.

The graphs are seeded, one test per seed (``-k "in_verilator[7]"`` reruns one in a few
seconds and prints the graph and its folding): Hypothesis's draws lean towards their
simplest values, which suits a zero point but, for the structure of a graph, made most
of them alike.  A Verilator build takes a few seconds, so there are ``GRAPHS`` of them
(3 to 4 minutes on two cores, mostly builds); ``TFL2RTL_RANDOM_SCALE=10`` multiplies
that, as for :mod:`test_golden_random`, and ``TFL2RTL_RANDOM_SEED`` draws another set.
The module prints what it checked when it ends: the counts, and how many graphs
reached each feature of the space (:func:`features`).

To add a layer kind (the convolutions, pools and ADDs :mod:`tfl2rtl.hw.stages`
describes), give :data:`LAYER_KINDS` a function that appends the layer to the writer and
pass its name to :func:`random_graph`; :func:`foldings` draws from every stage's own
valid foldings (:meth:`tfl2rtl.hw.stages.Stage.options`) already.
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
from tflite_writer import GraphWriter

#: Random graphs per run (times ``TFL2RTL_RANDOM_SCALE``), and the seed of the set.
GRAPHS = 30
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
STATS = {"graphs": 0, "random": 0, "nodes": 0, "layers": 0, "vectors": 0, "elements": 0,
         "cycles": 0, "build_seconds": 0.0, "live": 0, "live_layers": 0}
#: How many of those graphs had each of :func:`features`.
FEATURES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    start = time.perf_counter()
    yield
    if STATS["graphs"]:
        line = (f"test_sim_random: {STATS['graphs']} graphs in Verilator ({STATS['random']} "
                f"random; {STATS['nodes']} nodes, {STATS['layers']} layers; outputs varying "
                f"over the inputs in {STATS['live_layers']} layers and {STATS['live']} graphs), "
                f"{STATS['vectors']} input vectors, {STATS['elements']} output elements equal "
                f"to the golden model's, {STATS['cycles']} simulated cycles, "
                f"{time.perf_counter() - start:.1f} s ({STATS['build_seconds']:.1f} s of "
                "Verilator builds)")
        line += "; graphs with " + ", ".join(f"{k}: {v}" for k, v in sorted(FEATURES.items()))
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\n{line}")


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


def fully_connected(g: GraphWriter, x: int, rng) -> int:
    """A FULLY_CONNECTED over all of ``x`` (one row) or, one time in four, over rows of a
    divisor of its size (TFLite reads ``x`` as ``[size / accum, accum]``); weights of
    :func:`test_golden_random.int8_values`' kinds, mostly biases that leave the outputs
    varying (large and extreme ones saturate them), per-tensor or per-channel scales
    (sometimes with all-zero channels of scale 0), any fused activation (half of them
    with the output zero point at -128, as the converter has it: a random one often
    leaves a RELU's output a constant)."""
    total = size(g, x)
    accum = pick(rng, divisors(total)) if chance(rng, 0.25) else total
    out_depth = int(rng.integers(1, MAX_WIDTH + 1))
    weights = int8_values(rng, pick(rng, WEIGHT_KINDS), (out_depth, accum))
    bias = bias_values(rng, pick(rng, ("none", "small") if chance(rng, 0.6) else BIAS_KINDS),
                       out_depth)
    activation = pick(rng, ACTIVATIONS)
    out_quant = quant(rng)
    if activation != "NONE" and chance(rng, 0.5):  # as the converter quantizes a RELU
        out_quant = (out_quant[0], -128)
    w_scale = f32(2.0 ** effective_multiplier(rng, weights) * out_quant[0] / g.quant(x)[0])
    w_scales = w_scale
    if out_depth > 1 and chance(rng, 0.5):
        spread = rng.uniform(0, 8)
        w_scales = [f32(w_scale * 2.0 ** rng.uniform(-spread, 0)) for _ in range(out_depth)]
        if chance(rng, 0.1):
            w_scales = [0.0 if chance(rng, 0.3) else s for s in w_scales]
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


def random_graph(rng, kinds=("fully_connected",), max_layers: int = 4):
    """``(writer, graph input, graph output)`` for a chain of ``1 .. max_layers`` layers
    of ``kinds``, maybe RESHAPEs between them, maybe a final SOFTMAX, maybe uint8 edges
    (a QUANTIZE that only flips the sign bit, as the converter writes them)."""
    g = GraphWriter()
    width = int(rng.integers(1, 2 * MAX_WIDTH + 1))
    a = pick(rng, divisors(width))
    shape = pick(rng, [(1, width), (1, a, width // a), (1, 1, a, width // a)])
    in_quant = quant(rng)
    if chance(rng, 0.5):
        graph_in = g.tensor(shape, "uint8", in_quant[0], in_quant[1] + 128)
        x = g.quantize(graph_in, in_quant, "int8")
    else:
        graph_in = x = g.tensor(shape, "int8", *in_quant)
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
# Foldings and inputs
# --------------------------------------------------------------------------------------


def takes_requant_lanes(stage) -> bool:
    """Whether ``stage`` has a requantizer whose lanes can be fewer than its PE."""
    return isinstance(stage.node, ir.FullyConnected | ir.Conv2D)


def foldings(graph: ir.Graph, rng):
    """A folding for every foldable stage, by node index: any of the stage's valid
    ``(pe, simd)`` with at most :data:`MAX_LAYER_MULTIPLIERS` multipliers and, where it
    has one, a requantizer lane count dividing ``pe``; and the AXI lanes, dividing both
    edge vectors."""
    folds = {}
    for index, stage in folded_layers(graph).items():
        options = [f for f in stage.options() if stage.multipliers(f) <= MAX_LAYER_MULTIPLIERS]
        fold = pick(rng, options)
        folds[index] = (fold.pe, fold.simd)
        if takes_requant_lanes(stage):
            folds[index] += (pick(rng, divisors(fold.pe)),)
    edges = math.gcd(graph.tensors[graph.inputs[0]].size, graph.tensors[graph.outputs[0]].size)
    return folds, pick(rng, divisors(edges))


def describe(graph: ir.Graph, folds) -> str:
    """One line per node: op, shapes, folding."""
    lines = []
    for index, node in enumerate(graph.nodes):
        shapes = " -> ".join(str(graph.tensors[t].shape) for t in (node.input, node.output))
        weights = f" weights {node.weights.shape}" if hasattr(node, "weights") else ""
        fold = f" fold {folds[index]}" if index in folds else ""
        lines.append(f"  {index}: {node.op} {shapes}{weights}{fold}")
    return "\n".join(lines)


def features(graph: ir.Graph, folds, lanes: int) -> set[str]:
    """What of the space :func:`random_graph` and :func:`foldings` aim at a graph
    reaches, for the module's summary."""
    found = {"lanes > 1"} if lanes > 1 else set()
    for index, node in enumerate(graph.nodes):
        if isinstance(node, ir.FullyConnected):
            pe, simd, requant_lanes = folds[index]
            found.add("per-channel scales" if node.requant.per_channel
                      else "per-tensor scales")
            found |= {name for name, present in [
                ("a left shift", (node.requant.shift > 0).any()),
                ("a zero multiplier", (node.requant.multiplier == 0).any()),
                ("several rows", graph.tensors[node.input].size > node.weights.shape[1]),
                ("a fused clamp", node.act_min > -128 or node.act_max < 127),
                ("pe and simd > 1", pe > 1 and simd > 1),
                ("requant lanes < pe", requant_lanes < pe),
            ] if present}
        elif isinstance(node, ir.Softmax):
            found.add("SOFTMAX")
        elif isinstance(node, ir.Reshape):
            found.add("RESHAPE")
        elif isinstance(node, ir.Requantize) and node.flip_sign:
            found.add("uint8 input" if index == 0 else "uint8 output")
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
                       serial: bool = False):
    """Build ``graph`` at ``folds`` and ``lanes`` (with serial requantizer products if
    ``serial``), run ``inputs`` through it back to back and under random stalls and
    backpressure, and check every output against the golden model (and TFLM on the same
    inputs); returns the runs."""
    report = verify_graph(graph, [[x.reshape(graph.tensors[graph.inputs[0]].shape)]
                                  for x in inputs])
    assert report.samples == len(inputs) and not report.mismatches, report.mismatches[:5]
    if serial:
        network = SerialRequantizerNetwork(plan_network(
            graph, folds, lanes=lanes, requant_interval=SERIAL_REQUANT_INTERVAL))
    else:
        network = DataflowNetwork(plan_network(graph, folds, lanes=lanes))
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
    if serial:
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
    FEATURES.update(features(graph, folds, lanes) | ({"serial requantizers"} if serial else set()))
    return runs


@pytest.mark.parametrize("number", range(max(1, round(GRAPHS * SCALE))))
def test_random_graph_in_verilator(number, tmp_path, build_dir):
    rng = np.random.default_rng([SEED, number])
    g, x, y = random_graph(rng)
    path = tmp_path / "random.tflite"
    path.write_bytes(g.finish([x], [y]))
    graph = load(path)  # tfl2rtl accepts it, and the golden model equals TFLM:
    assert check(g, [x], [y], path, int(rng.integers(2**16))) is not None
    folds, lanes = foldings(graph, rng)
    stall, backpressure = rng.uniform(0.05, 0.9, 2)
    serial = chance(rng, 0.25)
    print(f"{path}\n{describe(graph, folds)}\nlanes {lanes}, stall {stall:.2f}, "
          f"backpressure {backpressure:.2f}, serial requantizers {serial}")
    build_and_simulate(graph, folds, lanes, hardware_inputs(graph, rng), build_dir,
                       seed=int(rng.integers(2**16)), stall=stall, backpressure=backpressure,
                       serial=serial)
    STATS["random"] += 1


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


#: The share of the graphs above (random and regressions) whose outputs must vary over
#: their inputs: a generator that drifts into graphs whose outputs all saturate would
#: check little (34 of 39 varied when this floor was set).
LIVE_FLOOR = 0.7


def test_most_graphs_have_outputs_that_vary():
    """Runs after the graphs of this module (pytest keeps the file's order)."""
    if not STATS["graphs"]:
        pytest.skip("no graph of this module ran in this session (deselected)")
    assert STATS["live"] >= LIVE_FLOOR * STATS["graphs"], STATS
