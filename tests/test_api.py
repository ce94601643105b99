"""The public API, including hostile input: load() accepts a file or raises the one-line
Tfl2RtlError, whatever bytes it is given."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfl2rtl
from conftest import TEST_MODELS, ZOO

SEEDS = [ZOO / "tflite_micro" / "hello_world_int8.tflite",
         ZOO / "tflite_micro" / "micro_speech_quantized.tflite",
         TEST_MODELS / "conv_int8.tflite", TEST_MODELS / "cnn_int8.tflite",
         TEST_MODELS / "activations_int8.tflite", TEST_MODELS / "float16.tflite"]
DATA = [p.read_bytes() for p in SEEDS]


def _mutate(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    kind = draw(st.sampled_from(["overwrite", "truncate", "splice", "int32"]))
    if kind == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    if kind == "splice":
        other = DATA[draw(st.integers(0, len(DATA) - 1))]
        cut = draw(st.integers(8, len(buf) - 1))
        start = draw(st.integers(0, len(other) - 1))
        return bytes(buf[:cut]) + other[start:start + draw(st.integers(0, 4096))]
    # flatbuffer tables are mostly 32-bit offsets, counts and indices: perturb those
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(8, len(buf) - 4)) & ~3
        if kind == "int32":
            value = draw(st.sampled_from([0, 1, 2, 3, -1, 0x7FFFFFFF, 0x10000, 255]))
            buf[pos:pos + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        else:
            buf[pos] = draw(st.integers(0, 255))
    return bytes(buf)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_load_never_crashes_on_damaged_files(tmp_path, data):
    source = data.draw(st.integers(0, len(DATA) - 1))
    damaged = _mutate(DATA[source], data.draw)
    path = tmp_path / "damaged.tflite"
    path.write_bytes(damaged)
    try:
        tfl2rtl.load(path)
    except tfl2rtl.Tfl2RtlError as exc:
        assert "\n" not in str(exc) and str(exc)


def test_load_inspect_run_verify(zoo):
    path = zoo / "tflite_micro" / "hello_world_int8.tflite"
    graph = tfl2rtl.load(path)
    assert tfl2rtl.inspect(path)["macs"] == graph.macs
    result = tfl2rtl.run(graph, [np.array([[7]], np.int8)])
    assert result.profile == "tflm" and result.outputs[0].dtype == np.int8
    report = tfl2rtl.verify(path, samples=3)
    assert report.ok and report.samples == 3
    with pytest.raises(tfl2rtl.Tfl2RtlError, match="nothing to verify"):
        tfl2rtl.verify(path, samples=0)


def test_profiles_through_the_api(zoo):
    from tfl2rtl import api

    path = zoo / "tflite_micro" / "hello_world_int8.tflite"
    x = [np.array([[-124]], np.int8)]
    assert tfl2rtl.run(path, x, profile="litert").profile == "litert"
    info = tfl2rtl.inspect(path, profile="litert")
    assert info["profile"] == "litert"
    assert info["layers"][1]["arithmetic"]["scale"] == float(np.float32(0.011363567))
    report = tfl2rtl.verify(path, samples=3, profile="litert")
    assert report.ok and report.profile == "litert"
    diff = api.diff(path, [x, [np.array([[0]], np.int8)]])
    assert diff.profiles == ("tflm", "litert") and diff.samples == 2
    # the README's worked example: node 1 rounds differently and node 2 inherits it
    assert [t.differing for t in diff.tensors] == [0, 0, 1, 1]
    assert diff.first_difference.node == 1 and diff.first_difference.histogram == {1: 1}
    assert "2 elements differ in 2 of 4 tensors" in api.diff_text(diff)
    with pytest.raises(tfl2rtl.Tfl2RtlError, match="nothing to diff"):
        api.diff(path, [])
