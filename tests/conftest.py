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
ERROR_MODELS = {  # file -> the words its error must contain
    "float32.tflite": "float32 model",
    "float16.tflite": "float16",
    "dynamic_range.tflite": "dynamic-range",
    "int16x8.tflite": "16x8",
}


def pytest_configure(config):
    # Without the zoo the parametrized zoo tests would silently vanish: refuse to run.
    if not ZOO_MODELS:
        raise pytest.UsageError(
            f"no models in {ZOO}: TFL2RTL_ZOO must name a folder of */*.tflite models "
            "(unset, the suite uses the committed tests/models/zoo)"
        )


def model_id(path: Path) -> str:
    return path.stem


@pytest.fixture(scope="session")
def zoo() -> Path:
    assert ZOO.is_dir(), f"the model zoo is missing at {ZOO}"
    return ZOO
