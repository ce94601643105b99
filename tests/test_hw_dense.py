# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""FULLY_CONNECTED layers of real models in hardware, against the golden model."""


import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO
from streams import STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.adapters import SkidBuffer
from tfl2rtl.hw.dense import FullyConnectedLayer

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
DENSE10 = TEST_MODELS / "dense10_int8.tflite"


def fully_connected_nodes(path):
    graph = load(path)
    return graph, [node for node in graph.nodes if isinstance(node, ir.FullyConnected)]


def random_inputs(graph, node, count, rng):
    """Inputs within the range the node's ``acc_bits`` was proven for."""
    lo, hi = graph.tensors[node.input].value_range
    inputs = rng.integers(lo, hi, (count, node.weights.shape[1]), endpoint=True)
    inputs[0, :] = lo
    inputs[1, :] = hi
    return inputs.astype(np.int8)


def run_layer(dut, vectors, mode, seed=0, cycles=None):
    in_timing, out_timing = STALL_MODES[mode](seed)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, vectors.reshape(-1, dut.simd).tolist(), in_timing)

    async def consumer(ctx):
        lanes = dut.requant_lanes
        count = len(vectors) * dut.out_depth // lanes
        for payload in await get(ctx, dut.o, count, out_timing, cycles=cycles):
            results.extend(payload[p] for p in range(lanes))

    simulate(dut, producer, consumer)
    return np.array(results, dtype=np.int8).reshape(len(vectors), dut.out_depth)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("layer, pe, simd", [
    (0, 1, 1), (0, 4, 1), (0, 16, 1),
    (1, 1, 1), (1, 2, 8), (1, 16, 16),
    (2, 1, 1), (2, 1, 4), (2, 1, 16),
])
def test_hello_world_layers(layer, pe, simd, mode):
    graph, nodes = fully_connected_nodes(HELLO_WORLD)
    node = nodes[layer]
    vectors = random_inputs(graph, node, 8, np.random.default_rng(layer))
    dut = FullyConnectedLayer(node, pe=pe, simd=simd)
    got = run_layer(dut, vectors, mode, seed=pe + simd)
    np.testing.assert_array_equal(got, golden.fully_connected(node, vectors))


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("layer, pe, simd, requant_lanes", [
    (0, 16, 1, 4), (1, 8, 4, 2), (1, 8, 4, 1),
])
def test_fewer_requantizer_lanes(layer, pe, simd, requant_lanes, mode):
    graph, nodes = fully_connected_nodes(HELLO_WORLD)
    node = nodes[layer]
    vectors = random_inputs(graph, node, 8, np.random.default_rng(layer))
    dut = FullyConnectedLayer(node, pe=pe, simd=simd, requant_lanes=requant_lanes)
    got = run_layer(dut, vectors, mode, seed=requant_lanes)
    np.testing.assert_array_equal(got, golden.fully_connected(node, vectors))


@pytest.mark.parametrize("mode", STALL_MODES)
def test_per_channel_layer(mode):
    # 784 inputs, 10 outputs, one multiplier and shift per output channel.
    graph, (node,) = fully_connected_nodes(DENSE10)
    assert node.requant.per_channel
    vectors = random_inputs(graph, node, 3, np.random.default_rng(5))
    dut = FullyConnectedLayer(node, pe=5, simd=28)
    got = run_layer(dut, vectors, mode, seed=3)
    expected = golden.fully_connected(node, vectors)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 3  # not all clamped


@pytest.mark.parametrize("layer, pe, simd, requant_lanes", [
    (1, 4, 4, None), (1, 16, 16, None), (0, 16, 1, 4), (1, 8, 4, 2), (1, 8, 4, 1),
])
def test_layer_timing(layer, pe, simd, requant_lanes):
    graph, nodes = fully_connected_nodes(HELLO_WORLD)
    node = nodes[layer]
    dut = FullyConnectedLayer(node, pe=pe, simd=simd, requant_lanes=requant_lanes)
    vectors = random_inputs(graph, node, 6, np.random.default_rng(0))
    cycles = []
    run_layer(dut, vectors, "streaming", cycles=cycles)
    # The last beat of vector 0 is taken at edge in_depth / simd.
    assert cycles[0] == dut.in_depth // dut.simd + dut.latency
    beats = dut.out_depth // dut.requant_lanes
    vector_done = cycles[beats - 1::beats]
    assert set(np.diff(vector_done[2:])) == {dut.cycles_per_vector}
    assert dut.latency == (dut.mvu.latency + SkidBuffer.latency + dut.requant.latency
                           + (dut.requant_lanes != dut.pe))


def test_rejects_requantizer_lanes_that_do_not_divide_pe():
    graph, nodes = fully_connected_nodes(HELLO_WORLD)
    with pytest.raises(Tfl2RtlError, match=r"^3 requantizer lanes do not divide PE=4$"):
        FullyConnectedLayer(nodes[1], pe=4, simd=1, requant_lanes=3)
