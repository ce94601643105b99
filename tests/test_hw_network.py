"""Whole FULLY_CONNECTED models behind AXI4-Stream ports, in Amaranth's simulator."""

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Cat

from conftest import TEST_MODELS, ZOO
from streams import STALL_MODES, get, put, simulate
from tfl2rtl import ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import FullyConnectedNetwork, plan_network
from tfl2rtl.sim.runner import golden_vectors

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
DENSE10 = TEST_MODELS / "dense10_int8.tflite"
MLP_UINT8 = TEST_MODELS / "mlp_uint8.tflite"


def axis(dut, side):
    """An AXI4-Stream port of ``dut`` as a stream for the helpers; the payload of
    ``m_axis`` is ``tdata | tlast << 8``."""
    payload = getattr(dut, f"{side}_tdata")
    if side == "m_axis":
        payload = Cat(payload, dut.m_axis_tlast)
    return SimpleNamespace(valid=getattr(dut, f"{side}_tvalid"),
                           ready=getattr(dut, f"{side}_tready"), payload=payload)


def run_network(dut, graph, inputs, mode, seed=0, cycles=None):
    """Stream ``inputs`` (one row per vector, the model's input dtype) through ``dut``."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    out_dtype = np.dtype(graph.tensors[graph.outputs[0]].dtype)
    outputs, lasts = [], []

    async def producer(ctx):
        await put(ctx, axis(dut, "s_axis"), inputs.view(np.uint8).reshape(-1).tolist(),
                  in_timing)

    async def consumer(ctx):
        count = inputs.shape[0] * dut.plan.out_size
        for payload in await get(ctx, axis(dut, "m_axis"), count, out_timing, cycles):
            outputs.append(payload & 0xFF)
            lasts.append(payload >> 8)

    simulate(dut, producer, consumer)
    got = np.array(outputs, dtype=np.uint8).view(out_dtype).reshape(len(inputs), -1)
    return got, lasts


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("foldings", [
    None, [(16, 1), (4, 4), (1, 16)], [(2, 1), (8, 2), (1, 1)], [(16, 1, 2), (4, 4, 1), (1, 16)],
])
def test_hello_world(foldings, mode):
    graph = load(HELLO_WORLD)
    inputs = np.random.default_rng(0).integers(-128, 128, (10, 1)).astype(np.int8)
    dut = FullyConnectedNetwork(plan_network(graph, foldings))
    got, lasts = run_network(dut, graph, inputs, mode, seed=3)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert lasts == [1] * len(inputs)  # one output per vector, each the last


@pytest.mark.parametrize("foldings", [
    [(16, 1), (16, 16), (1, 16)],  # one vector per cycle
    [(16, 1), (4, 4), (1, 16)],
    [(4, 1), (2, 2), (1, 4)],
    [(16, 1, 4), (8, 4, 2), (1, 16)],  # fewer requantizer lanes than PE
])
def test_hello_world_initiation_interval(foldings):
    graph = load(HELLO_WORLD)
    plan = plan_network(graph, foldings)
    inputs = np.random.default_rng(0).integers(-128, 128, (40, 1)).astype(np.int8)
    cycles = []
    got, _ = run_network(FullyConnectedNetwork(plan), graph, inputs, "streaming",
                         cycles=cycles)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert set(np.diff(cycles[len(cycles) // 2:])) == {plan.cycles_per_vector}


@pytest.mark.parametrize("mode", STALL_MODES)
def test_reshape_and_per_channel_layer(mode):
    graph = load(DENSE10)
    inputs = np.random.default_rng(1).integers(-128, 128, (2, 784)).astype(np.int8)
    dut = FullyConnectedNetwork(plan_network(graph, [(10, 28)]))
    got, lasts = run_network(dut, graph, inputs, mode)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert lasts == ([0] * 9 + [1]) * 2


def test_rejects_unsupported_graphs():
    with pytest.raises(Tfl2RtlError, match=r"^node 5 \(SOFTMAX\) has no hardware yet"):
        plan_network(load(MLP_UINT8))
    graph = load(HELLO_WORLD)
    with pytest.raises(Tfl2RtlError, match=r"^layer 1: PE=3 does not divide its 16 outputs; "
                                           r"choose one of 1, 2, 4, 8, 16$"):
        plan_network(graph, [(1, 1), (3, 1), (1, 1)])
    with pytest.raises(Tfl2RtlError, match=r"^layer 2: SIMD=5 does not divide its 16 inputs"):
        plan_network(graph, [(1, 1), (1, 1), (1, 5)])
    with pytest.raises(Tfl2RtlError, match=r"^layer 0: 3 requantizer lanes do not divide PE=4; "
                                           r"choose one of 1, 2, 4$"):
        plan_network(graph, [(4, 1, 3), (1, 1), (1, 1)])
    with pytest.raises(Tfl2RtlError, match=r"^layer 0: a folding is \(pe, simd\) or "):
        plan_network(graph, [(4,), (1, 1), (1, 1)])
    with pytest.raises(Tfl2RtlError, match=r"^2 foldings given for 3 FULLY_CONNECTED layers$"):
        plan_network(graph, [(1, 1), (1, 1)])


def test_plan():
    plan = plan_network(load(HELLO_WORLD), [(16, 1), (4, 4), (1, 16)])
    assert [layer.cycles_per_vector for layer in plan.layers] == [1, 16, 1]
    assert plan.cycles_per_vector == 16
    # 16 results of the first layer through 2 requantizer lanes: 8 cycles.
    assert plan_network(load(HELLO_WORLD), [(16, 1, 2), (4, 4), (1, 16)]).layers[
        0].cycles_per_vector == 8
    assert (plan.in_size, plan.out_size, plan.uint8_input, plan.uint8_output) == (
        1, 1, False, False)
    assert all(isinstance(layer.node, ir.FullyConnected) for layer in plan.layers)
