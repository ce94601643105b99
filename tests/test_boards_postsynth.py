"""Post-synthesis simulation: the accelerator as Yosys maps it to iCE40 and ECP5 cells,
simulated with the cell models that ship with Yosys, equals the golden model."""

import numpy as np
import pytest

from conftest import ZOO
from tfl2rtl import design
from tfl2rtl.api import load
from tfl2rtl.boards.postsynth import cell_models, synthesize_netlist
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.sim.board_runner import simulate_netlist
from tfl2rtl.sim.runner import golden_vectors
from tfl2rtl.verify import random_inputs

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"


@pytest.mark.parametrize("family, cells", [
    ("ice40", ("SB_MAC16", "SB_RAM40_4K", "SB_LUT4")),  # the serial requantizers on DSPs
    ("ecp5", ("LUT4", "CCU2C", "TRELLIS_FF")),
])
def test_netlist_equals_the_golden_model(family, cells, tmp_path):
    graph = load(HELLO_WORLD)
    plan = design.plan(graph, "full")
    netlist = synthesize_netlist(plan.network(), family, tmp_path)
    text = netlist.read_text()
    for cell in cells:
        assert f"\n  {cell} " in text, cell
    x = np.stack([s[0].reshape(-1) for s in random_inputs(graph, 6, seed=4)])
    expected = golden_vectors(graph, x)
    runs = simulate_netlist(netlist, cell_models(family), lanes=1, in_size=1, out_size=1,
                            inputs=x, expected=expected, build_dir=tmp_path / "sim",
                            interval=plan.initiation_interval)  # raises on a difference
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)


def test_unknown_family():
    with pytest.raises(Tfl2RtlError, match="unknown family 'gowin'; choose one of: ice40, ecp5"):
        cell_models("gowin")
