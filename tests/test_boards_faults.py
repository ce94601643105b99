"""Faults on the serial line of the simulated board, through the real host driver: bit
flips, dropped, doubled and inserted bytes, cut frames and garbage, both ways, and
resets of the board in the middle of a LOAD and of an INFER (tfl2rtl.sim.faults).  Every
round ends in the golden model's exact output or a one-line error, never a wrong
output or a hang, and the board answers afterwards.

The suite runs ``TFL2RTL_FAULTS`` rounds (default 336, 24 of each kind); the long run
is ``TFL2RTL_FAULTS=10000 .venv/bin/python -m pytest tests/test_boards_faults.py``
(the counts by kind end the report, through the ``summary`` fixture)."""

import dataclasses
import os

import numpy as np

from conftest import ZOO
from tfl2rtl import design
from tfl2rtl.api import load
from tfl2rtl.boards.link import BoardTop
from tfl2rtl.boards.protocol import Identity
from tfl2rtl.sim.board_runner import fault_totals, simulate_board
from tfl2rtl.sim.faults import KINDS, OUTCOMES
from tfl2rtl.sim.runner import golden_vectors
from tfl2rtl.verify import random_inputs

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
FAULTS = int(os.environ.get("TFL2RTL_FAULTS", 24 * len(KINDS)))
SEED = int(os.environ.get("TFL2RTL_FAULT_SEED", 0))
CONTROL = 60


def table(tally: dict) -> str:
    rows = [f"{'kind':<20}" + "".join(f"{o:>7}" for o in OUTCOMES) + f"{'unfired':>9}"
            + f"{'frames':>8}"]
    for kind, counts in tally["counts"].items():
        rows.append(f"{kind:<20}" + "".join(f"{counts[o]:>7}" for o in OUTCOMES)
                    + f"{tally['unfired'][kind]:>9}{tally['writes'][kind]:>8}")
    return "\n".join(rows)


def test_injected_faults_give_the_golden_output_or_an_error(tmp_path, summary):
    """hello_world with every weight memory loaded over the link (so that LOAD frames
    can be hit too): FAULTS rounds, each kind in turn, then the negative control, whose
    reply check is broken on purpose and must let wrong outputs through."""
    graph = load(HELLO_WORLD)
    plan = design.plan(graph, {0: (4, 1), 1: (4, 2), 2: (1, 4)})
    plan = dataclasses.replace(plan, network_plan=plan.network_plan.with_loadable(
        [s.index for s in plan.network_plan.stages if s.stage.loadable]))
    top = BoardTop(plan.network(), Identity.of_design(plan), divisor=4, timeout_bytes=8)
    x = np.stack([s[0].reshape(-1) for s in random_inputs(graph, 8, seed=SEED)])
    expected = golden_vectors(graph, x)
    run = simulate_board(top, x, expected, tmp_path, bad_frames=False, model=HELLO_WORLD,
                         faults=FAULTS, fault_seed=SEED, control=CONTROL)  # raises on any
    np.testing.assert_array_equal(run.outputs, expected)
    tally, control = run.faults["tally"], run.faults["control"]
    totals = fault_totals(tally)
    summary(f"test_boards_faults: {FAULTS} rounds (seed {SEED}) in "
            f"{run.faults['wall_seconds']:.1f} s, "
            f"{run.faults['sim_ms']:.0f} ms simulated\n{table(tally)}\n"
            f"negative control: {fault_totals(control)}")
    assert totals["wrong"] == totals["dead"] == totals["hang"] == 0
    assert sum(totals.values()) + sum(tally["unfired"].values()) == FAULTS
    for kind, counts in tally["counts"].items():  # every kind really happened
        assert sum(counts.values()) >= FAULTS // len(KINDS) * 3 // 4, (kind, counts)
    assert totals["right"] >= sum(totals.values()) * 9 // 10
    assert fault_totals(control)["wrong"] > 0
