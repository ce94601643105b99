"""The whole board top (UART, host link, accelerator) in Verilator, with the host
driver's own protocol code on the serial line (tfl2rtl.sim.board_runner)."""

import numpy as np
import pytest

from conftest import TEST_MODELS, ZOO
from tfl2rtl import design
from tfl2rtl.api import load
from tfl2rtl.boards.link import BoardTop
from tfl2rtl.boards.protocol import Identity
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.sim import board_runner
from tfl2rtl.sim.board_runner import BAD_FRAMES, simulate_board
from tfl2rtl.sim.runner import golden_vectors
from tfl2rtl.verify import random_inputs

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
MLP = TEST_MODELS / "mlp_uint8.tflite"


def board_top(path, fold="auto", lanes=1):
    graph = load(path)
    plan = design.plan(graph, fold, lanes=lanes)
    top = BoardTop(plan.network(), Identity.of_graph(graph, lanes), divisor=4,
                   timeout_bytes=8)
    return graph, top


def vectors(graph, count):
    return np.stack([s[0].reshape(-1) for s in random_inputs(graph, count, seed=1)])


@pytest.mark.parametrize("path, lanes, count", [(HELLO_WORLD, 1, 6), (MLP, 2, 2)],
                         ids=["hello_world", "mlp_uint8_2_lanes"])
def test_host_driver_talks_to_the_simulated_board(path, lanes, count, tmp_path):
    graph, top = board_top(path, lanes=lanes)
    x = vectors(graph, count)
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path)  # raises on any difference
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.identity == top.identity
    assert run.errors == {name: name for name in BAD_FRAMES}
    assert run.mismatches == 0


def test_a_wrong_expectation_is_reported(tmp_path):
    graph, top = board_top(HELLO_WORLD, fold="full")
    x = vectors(graph, 2)
    expected = golden_vectors(graph, x)
    wrong = expected.copy()
    wrong[1, 0] += 1
    run = simulate_board(top, x, wrong, tmp_path, bad_frames=False, check=False)
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.mismatches == 1 and run.errors == {}
    with pytest.raises(Tfl2RtlError, match="1 outputs through the UART differ from the "
                                           "golden model; the first is element 0 of "
                                           "vector 1"):
        board_runner._check(run, top.identity, wrong, bad_frames=False)
