"""The flatbuffer reader: real models read, broken files rejected with one clear error."""

import numpy as np
import pytest

from conftest import ERROR_MODELS, TEST_MODELS, ZOO_MODELS, model_id
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.tflite_reader import Mode, classify, read_model


@pytest.mark.parametrize("path", ZOO_MODELS, ids=model_id)
def test_reads_zoo_models(path):
    model = read_model(path)
    assert classify(model) == (Mode.INT8, "int8")
    assert model.operators and model.inputs and model.outputs
    for op in model.operators:
        for i in op.inputs:
            assert i == -1 or 0 <= i < len(model.tensors)
    weights = [t for t in model.tensors if t.is_constant and t.dtype == "int8"]
    assert weights and all(t.data.shape == t.shape for t in weights)


def test_reads_options_and_extended_opcodes(zoo):
    model = read_model(zoo / "tflite_micro" / "micro_speech_quantized.tflite")
    names = model.op_names()
    assert names == ["RESHAPE", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"]
    dw = model.operators[1].options
    assert (dw["DepthMultiplier"], dw["StrideH"], dw["StrideW"]) == (8, 2, 2)
    assert model.operators[0].options["NewShape"] == [-1, 49, 40, 1]


def test_per_channel_quantization_is_read(zoo):
    model = read_model(zoo / "mlperf_tiny" / "kws_ref_model.tflite")
    conv = model.operators[0]
    weights = model.tensors[conv.inputs[1]]
    assert weights.scales.size == weights.shape[0] > 1
    assert weights.quantized_dimension == 0
    assert np.all(weights.zero_points == 0)


@pytest.mark.parametrize("name,mode", [("float32.tflite", Mode.FLOAT32),
                                       ("float16.tflite", Mode.FLOAT16),
                                       ("dynamic_range.tflite", Mode.DYNAMIC_RANGE),
                                       ("int16x8.tflite", Mode.INT16X8)])
def test_classifies_non_integer_models(name, mode):
    assert name in ERROR_MODELS or mode == Mode.INT16X8
    assert classify(read_model(TEST_MODELS / name))[0] == mode


def test_classifies_int16_state_and_legacy_uint8():
    # int8 models whose LSTM or SVDF keeps int16 state are int8 models, not 16x8 ones
    for name in ("lstm_int8.tflite", "svdf_int8.tflite"):
        model = read_model(TEST_MODELS / name)
        assert any(t.dtype == "int16" for t in model.tensors)
        assert classify(model) == (Mode.INT8, "int8")
    assert classify(read_model(TEST_MODELS / "uint8_legacy.tflite")) == (Mode.UINT8_LEGACY,
                                                                          "uint8")


def test_writer_models_are_what_their_script_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_writer_models",
                                                  TEST_MODELS / "make_writer_models.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path)]) == 0
    for name in script.MODELS:
        assert (tmp_path / name).read_bytes() == (TEST_MODELS / name).read_bytes(), name


def test_classifies_io_types():
    assert classify(read_model(TEST_MODELS / "mlp_uint8.tflite")) == (Mode.INT8, "uint8")
    assert classify(read_model(TEST_MODELS / "conv_float_io.tflite")) == (Mode.INT8, "float32")


def _expect_corrupt(path):
    with pytest.raises(Tfl2RtlError, match="not a valid TFLite model") as info:
        read_model(path)
    assert "\n" not in str(info.value)


def test_rejects_foreign_and_empty_files(tmp_path):
    for content in (b"", b"hello world, not a model", b"PK\x03\x04" + bytes(100)):
        f = tmp_path / "m.tflite"
        f.write_bytes(content)
        _expect_corrupt(f)


def test_rejects_missing_file(tmp_path):
    with pytest.raises(Tfl2RtlError, match="no such file"):
        read_model(tmp_path / "missing.tflite")


def test_rejects_every_truncation(zoo, tmp_path):
    data = (zoo / "tflite_micro" / "hello_world_int8.tflite").read_bytes()
    f = tmp_path / "cut.tflite"
    for cut in list(range(8, 200, 7)) + list(range(200, len(data), max(1, len(data) // 60))):
        f.write_bytes(data[:cut])
        _expect_corrupt(f)


def test_classifies_the_other_integer_modes():
    """Writer-made 16x8 and uint8 models; a model of edges only (float32 -> int16
    QUANTIZE) is 16x8 too, one with int8 or uint8 edges stays int8."""
    import sys

    sys.path.insert(0, str(TEST_MODELS.parent))
    from tflite_writer import GraphWriter

    assert classify(read_model(TEST_MODELS / "ops_int16x8.tflite")) == (Mode.INT16X8,
                                                                        "float32")
    assert classify(read_model(TEST_MODELS / "ops_uint8_legacy.tflite")) == (
        Mode.UINT8_LEGACY, "uint8")
    for dtype, mode in (("int16", Mode.INT16X8), ("int8", Mode.INT8), ("uint8", Mode.INT8)):
        g = GraphWriter()
        x = g.tensor((1, 4), "float32")
        y = g.quantize(x, (0.01, 0), dtype=dtype)
        model = read_model_bytes(g.finish([x], [y]))
        assert classify(model) == (mode, "float32"), dtype


def read_model_bytes(data: bytes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.tflite"
        path.write_bytes(data)
        return read_model(path)
