"""verify: counts what it compares, and really notices a difference."""

import numpy as np
import pytest

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.lower import lower
from tfl2rtl.tflite_reader import read_model
from tfl2rtl.verify import load_inputs, random_inputs, verify_graph


@pytest.fixture
def hello(zoo):
    return lower(read_model(zoo / "tflite_micro" / "hello_world_int8.tflite"))


def test_report_counts(hello):
    report = verify_graph(hello, random_inputs(hello, 7))
    data = report.to_json()
    assert (data["samples"], data["tensors_compared"], data["mismatches"]) == (7, 28, 0)
    assert data["profile"] == "tflm" and report.ok


def test_an_off_by_one_is_caught(hello):
    node = hello.nodes[1]
    node.output_offset += 1
    report = verify_graph(hello, random_inputs(hello, 50))
    assert not report.ok
    assert {m["tensor"] for m in report.mismatches} >= {node.output}


def test_random_inputs_cover_the_range(hello):
    values = np.concatenate([s[0].reshape(-1) for s in random_inputs(hello, 2000)])
    assert values.min() == -128 and values.max() == 127


def test_load_inputs_single_and_batch(hello, tmp_path):
    f = tmp_path / "x.npy"
    np.save(f, np.array([[3]], np.int8))
    assert len(load_inputs(hello, str(f))) == 1
    np.save(f, np.arange(5, dtype=np.int8).reshape(5, 1))
    sets = load_inputs(hello, str(f))
    assert [int(s[0][0, 0]) for s in sets] == [0, 1, 2, 3, 4]


def test_load_inputs_errors(hello, tmp_path):
    f = tmp_path / "x.npy"
    np.save(f, np.array([[0.25]], np.float32))
    with pytest.raises(Tfl2RtlError, match=r"holds float32 but the model input is int8; "
                                           r"quantize it first"):
        load_inputs(hello, str(f))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(Tfl2RtlError, match="cannot read it as a .npy array"):
        load_inputs(hello, str(bad))
