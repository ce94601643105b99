"""Whole models as Verilog in Verilator (under cocotb, in the HDL harness), against the
golden model: every output, bit-exact, back to back and under random input stalls and
output backpressure.  The FULLY_CONNECTED models run 20 inputs or more at a fully folded
and a wide folding; the convolutional ones (every model of the zoo and the CNN test
models) a few inputs back to back at the automatic folding.

Each test records what it measured as user properties of its test item (written to the
JUnit XML by ``--junitxml=FILE -o junit_family=xunit1``): Verilator build and simulation
times, simulated cycles per second, cycles per inference, initiation interval and
latency.
"""


import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO, long_cases
from tfl2rtl import ir
from tfl2rtl.api import load
from tfl2rtl.folding import auto_fold
from tfl2rtl.hw.network import DataflowNetwork, plan_network
from tfl2rtl.sim.runner import golden_vectors, simulate_network

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
AD01 = ZOO / "mlperf_tiny" / "ad01_int8.tflite"
KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"
RESNET8 = ZOO / "mlperf_tiny" / "pretrainedResnet_quant.tflite"
VWW = ZOO / "mlperf_tiny" / "vww_96_int8.tflite"
PERSON = ZOO / "tflite_micro" / "person_detect.tflite"
MICRO_SPEECH = ZOO / "tflite_micro" / "micro_speech_quantized.tflite"
DENSE10 = TEST_MODELS / "dense10_int8.tflite"
MLP_UINT8 = TEST_MODELS / "mlp_uint8.tflite"
DIGITS = TEST_MODELS / "digits_samples.npy"


def auto(max_multipliers):
    """:func:`tfl2rtl.folding.auto_fold` within ``max_multipliers``."""
    def folding(graph):
        return auto_fold(graph, max_multipliers)
    return folding


#: Cases that run only in the long runs (conftest.LONG): the larger real models
#: (person_detect, vww_96_int8, kws_ref_model, ad01_int8, the MLPs of 400 KB of weights:
#: 40-100 s each) and conv_int8, whose layers cnn_int8 has too.  The suite keeps
#: ResNet-8 and micro_speech among the real networks, the written convolutional ones and
#: the small MLPs (random 16x8 graphs: tests/test_sim_random.py).
LONG_CASES = {"mlp_uint8-serial", "mlp_uint8-wide", "ad01-serial", "ad01-wide",
              "mlp_uint8_legacy-auto", "mlp_int16x8-auto", "conv_int8-auto", "kws-auto",
              "vww-auto", "person_detect-auto", "resnet8-auto", "cnn_int8-auto",
              "cnn_uint8_legacy-auto"}

CASES = {  # model, folding (None: one multiplier per layer), lanes on the AXI edges, inputs
    "hello_world-serial": (HELLO_WORLD, None, 1, 256),
    # 16 + 16 + 16 multipliers; the first layer's 16 results through 4 requantizer lanes.
    "hello_world-wide": (HELLO_WORLD, lambda graph: {0: (16, 1, 4), 1: (4, 4), 2: (1, 16)}, 1,
                         256),
    "dense10-serial": (DENSE10, None, 1, 50),
    "dense10-wide": (DENSE10, auto(64), 2, 50),
    "ad01-serial": (AD01, None, 1, 12),
    "ad01-wide": (AD01, auto(256), 8, 50),
    "mlp_uint8-serial": (MLP_UINT8, None, 1, 6),  # ends in SOFTMAX
    "mlp_uint8-wide": (MLP_UINT8, auto(256), 2, 50),
    # Legacy uint8 models (uint8 weights with a zero point): their int8 hardware form,
    # 9-bit weights, FULLY_CONNECTED requantized once as LiteRT does, against the golden
    # model's litert-ref.
    "uint8_legacy-serial": (TEST_MODELS / "uint8_legacy.tflite", None, 1, 50),
    "mlp_uint8_legacy-auto": (TEST_MODELS / "mlp_uint8_legacy.tflite", auto(64), 1, 20),
    # 16x8 (int16 activations, int8 weights, int64 accumulators), two lanes of int16.
    "mlp_int16x8-auto": (TEST_MODELS / "mlp_int16x8.tflite", auto(64), 2, 12),
    # Convolutional networks at the default budget of 64 multipliers (128 where 64 does not
    # reach a MAC efficiency of 0.8), a few inferences back to back.
    "conv_int8-auto": (TEST_MODELS / "conv_int8.tflite", auto(64), 1, 6),
    "cnn_int8-auto": (TEST_MODELS / "cnn_int8.tflite", auto(64), 1, 4),  # PAD, concat, MEAN
    # conv, depthwise (9-bit weights), residual ADD, max pool, FULLY_CONNECTED, SOFTMAX
    "cnn_uint8_legacy-auto": (TEST_MODELS / "cnn_uint8_legacy.tflite", auto(64), 1, 6),
    "activations_int8-auto": (TEST_MODELS / "activations_int8.tflite", auto(64), 1, 6),
    "micro_speech-auto": (MICRO_SPEECH, auto(64), 1, 4),
    "kws-auto": (KWS, auto(64), 1, 3),
    "resnet8-auto": (RESNET8, auto(64), 1, 3),
    "vww-auto": (VWW, auto(64), 1, 3),
    "person_detect-auto": (PERSON, auto(128), 1, 3),
}


def model_inputs(graph: ir.Graph, count: int, seed: int = 0) -> np.ndarray:
    """``count`` input vectors in the model's input dtype, one per row: the real digits
    first for the 28x28 models (quantized like the converter does), then random ones
    over the whole integer range."""
    tensor = graph.tensors[graph.inputs[0]]
    lo, hi = ir.INT_RANGES[tensor.dtype]
    rows = []
    if tensor.shape[1:] == (28, 28, 1):
        digits = np.load(DIGITS).reshape(-1, tensor.size)[:count]
        rows += list(np.clip(np.round(digits / tensor.scale) + tensor.zero_point, lo, hi))
    rng = np.random.default_rng(seed)
    rows += list(rng.integers(lo, hi + 1, (count - len(rows), tensor.size)))
    return np.array(rows).astype(tensor.dtype)


@pytest.mark.parametrize("case", long_cases(CASES, LONG_CASES))
def test_model_in_verilator(case, tmp_path, request):
    path, folding, lanes, count = CASES[case]
    graph = load(path)
    plan = plan_network(graph, None if folding is None else folding(graph))
    network = DataflowNetwork(plan, lanes=lanes)
    if path == HELLO_WORLD:  # every possible input
        inputs = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    else:
        inputs = model_inputs(graph, count)
    expected = golden_vectors(graph, inputs)
    assert len(np.unique(expected)) > 2  # the outputs are not all saturated

    runs = simulate_network(network, inputs, expected, tmp_path, seed=7,
                            stall=0.3, backpressure=0.3)
    streaming, stalled = runs["streaming"], runs["random_stalls"]
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
        assert run.tlast_errors == 0
    # Back to back, a vector leaves every cycles_per_vector cycles once the pipeline is
    # full; with stalls the whole batch never takes less time.
    assert streaming.initiation_interval == network.cycles_per_vector
    assert set(streaming.intervals[len(inputs) // 2:]) == {network.cycles_per_vector}
    assert stalled.cycles >= streaming.cycles

    for name, value in [
        ("build_seconds", round(streaming.build_seconds, 1)),
        ("sim_seconds", round(streaming.wall_seconds + stalled.wall_seconds, 2)),
        ("cycles_per_second", int(streaming.cycles_per_second)),
        ("cycles_per_inference", round(streaming.cycles_per_inference, 1)),
        ("initiation_interval", streaming.initiation_interval),
        ("first_latency", streaming.first_latency),
        ("stalled_cycles_per_inference", round(stalled.cycles_per_inference, 1)),
    ]:
        request.node.user_properties.append((name, value))

