"""hello_world_int8 as Verilog in Verilator under cocotb, against the golden model."""


import numpy as np
import pytest

from conftest import ZOO
from tfl2rtl.api import load
from tfl2rtl.hw.network import FullyConnectedNetwork, plan_network
from tfl2rtl.sim.runner import golden_vectors, simulate_network

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"


@pytest.mark.parametrize("foldings", [
    None,  # one multiply-accumulate per layer and cycle
    [(16, 1, 4), (4, 4), (1, 16)],  # 16 + 16 + 16 MACs, 4 + 4 + 1 requantizer lanes
], ids=["serial", "folded"])
def test_hello_world_in_verilator(foldings, tmp_path):
    graph = load(HELLO_WORLD)
    plan = plan_network(graph, foldings)
    inputs = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)  # every possible input
    expected = golden_vectors(graph, inputs)
    runs = simulate_network(FullyConnectedNetwork(plan), inputs, expected, tmp_path,
                            seed=1, stall=0.3, backpressure=0.3)
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
    # Back to back, a vector leaves every cycles_per_vector cycles once the pipeline is full.
    steady = runs["streaming"].intervals[len(inputs) // 2:]
    assert set(steady) == {plan.cycles_per_vector}
    # With stalls, never faster than the design allows.
    assert runs["random_stalls"].cycles >= runs["streaming"].cycles
