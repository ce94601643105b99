"""A TRANSPOSE inside the graph (:class:`tfl2rtl.hw.transpose.TransposeLayer`) as Verilog
in Verilator, between a CONV_2D and a FULLY_CONNECTED or another CONV_2D: every output
equal to the golden model's, back to back and under random stalls and backpressure, and
the measured initiation interval equal to the plan's (here the TRANSPOSE's own, the
slowest stage)."""

import numpy as np
import pytest

from tfl2rtl import ir
from tfl2rtl.api import load
from tfl2rtl.hw.network import DataflowNetwork, plan_network
from tfl2rtl.hw.transpose import TransposeLayer
from tfl2rtl.sim.runner import golden_vectors, simulate_network
from tflite_writer import GraphWriter


def conv_transpose_dense(path):
    """CONV_2D 1x1 (2 -> 3 channels on 4x4), TRANSPOSE NHWC -> NCHW (the innermost axis
    moves: one element per beat), FULLY_CONNECTED 48 -> 10."""
    rng = np.random.default_rng(0)
    g = GraphWriter()
    x = g.tensor((1, 4, 4, 2), "int8", 0.05, 1)
    h = g.conv_2d(x, rng.integers(-127, 128, (3, 1, 1, 2)), 0.01, None, (0.05, -2))
    t = g.transpose(h, (0, 3, 1, 2))
    y = g.fully_connected(t, rng.integers(-127, 128, (10, 48)), 0.004,
                          rng.integers(-500, 500, 10).astype(np.int32), (0.1, 3))
    path.write_bytes(g.finish([x], [y]))


def conv_transpose_conv(path):
    """CONV_2D 1x1 (4 -> 8 channels on 4x6), TRANSPOSE of height and width (the channels
    stay innermost, so it may take several per beat), CONV_2D 2x2 VALID 8 -> 2."""
    rng = np.random.default_rng(1)
    g = GraphWriter()
    x = g.tensor((1, 4, 6, 4), "int8", 0.05, -3)
    h = g.conv_2d(x, rng.integers(-127, 128, (8, 1, 1, 4)), 0.01,
                  rng.integers(-200, 200, 8).astype(np.int32), (0.06, 5), activation="RELU")
    t = g.transpose(h, (0, 2, 1, 3))
    y = g.conv_2d(t, rng.integers(-127, 128, (2, 2, 2, 8)), 0.003, None, (0.1, -1),
                  padding="VALID")
    path.write_bytes(g.finish([x], [y]))


CASES = {  # model writer, folding by node, lanes of the AXI edges, inputs
    # 16, 48 and 24 cycles per inference; the edges 32.
    "conv-transpose-dense": (conv_transpose_dense, {0: (3, 2), 1: (1, 1), 2: (10, 2)}, 1, 8),
    # 24, 96 (two elements a beat, between lane converters from 8 and to 8) and 60; the
    # edges 48.
    "conv-transpose-conv": (conv_transpose_conv, {0: (8, 4), 1: (2, 1), 2: (2, 8)}, 2, 6),
}


@pytest.mark.parametrize("case", CASES)
def test_transpose_in_a_network(case, tmp_path, summary):
    write, fold, lanes, count = CASES[case]
    model = tmp_path / f"{case}.tflite"
    write(model)
    graph = load(model)
    plan = plan_network(graph, fold, lanes=lanes)
    (transpose,) = [s for s in plan.stages if isinstance(s.node, ir.Transpose)]
    network = DataflowNetwork(plan)
    (component,) = [c for c in network.stages if isinstance(c, TransposeLayer)]
    # The TRANSPOSE is the slowest stage: the interval measured is its count.
    assert network.cycles_per_vector == transpose.cycles_per_vector \
        == component.cycles_per_vector == transpose.stage.out_size // transpose.fold.pe
    assert all(s.cycles_per_vector < network.cycles_per_vector for s in plan.stages
               if s is not transpose) and plan.edge_cycles < network.cycles_per_vector
    rng = np.random.default_rng(2)
    inputs = rng.integers(-128, 128, (count, plan.in_size)).astype(np.int8)
    expected = golden_vectors(graph, inputs)
    assert len(np.unique(expected)) > 2

    runs = simulate_network(network, inputs, expected, tmp_path, seed=5,
                            stall=0.3, backpressure=0.3)
    streaming = runs["streaming"]
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
        assert run.tlast_errors == 0
    assert streaming.initiation_interval == network.cycles_per_vector
    assert set(streaming.intervals[count // 2:]) == {network.cycles_per_vector}
    summary(f"test_sim_transpose {case}: {count} inputs, planned interval "
            f"{network.cycles_per_vector} cycles, measured {streaming.initiation_interval}, "
            f"{streaming.cycles_per_inference:.1f} cycles per inference over the run, "
            f"first latency {streaming.first_latency}")
