"""The golden model against TensorFlow Lite Micro, on every tensor of every model."""

import numpy as np
import pytest

from conftest import INT8_TEST_MODELS, ZOO_MODELS, model_id
from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.lower import lower
from tfl2rtl.reference import ReferenceInterpreter
from tfl2rtl.tflite_reader import read_model
from tfl2rtl.verify import random_inputs, verify_graph

SAMPLES = 100


@pytest.mark.parametrize("path", ZOO_MODELS + INT8_TEST_MODELS, ids=model_id)
def test_bit_exact_with_tflite_micro_on_every_tensor(path):
    graph = lower(read_model(path))
    report = verify_graph(graph, random_inputs(graph, SAMPLES, seed=1))
    assert report.samples == SAMPLES
    assert report.tensors_compared == SAMPLES * sum(
        1 for t in graph.tensors.values() if t.data is None)
    assert report.mismatches == []


def test_real_digits_through_the_float_io_model():
    from conftest import TEST_MODELS

    graph = lower(read_model(TEST_MODELS / "conv_float_io.tflite"))
    digits = np.load(TEST_MODELS / "digits_samples.npy").astype(np.float32)
    sets = [[d.reshape(graph.tensors[graph.inputs[0]].shape)] for d in digits]
    assert verify_graph(graph, sets).mismatches == []


def test_result_names_its_profile(zoo):
    graph = lower(read_model(zoo / "tflite_micro" / "hello_world_int8.tflite"))
    result = golden.run(graph, [np.array([[10]], np.int8)])
    assert result.profile == "tflm"
    assert set(result.tensors) >= set(graph.inputs + graph.outputs)
    with pytest.raises(Tfl2RtlError, match="unknown profile 'xnnpack'"):
        golden.run(graph, [np.array([[10]], np.int8)], profile="xnnpack")


def test_inputs_are_checked(zoo):
    graph = lower(read_model(zoo / "tflite_micro" / "hello_world_int8.tflite"))
    with pytest.raises(Tfl2RtlError, match="must be int8, got float32"):
        golden.run(graph, [np.array([[0.5]], np.float32)])
    with pytest.raises(Tfl2RtlError, match="needs 1 elements"):
        golden.run(graph, [np.zeros((1, 2), np.int8)])


def _narrow_clamps(graph):
    """The nodes whose fused activation clamps tighter than their output dtype."""
    return [n for n in graph.nodes if hasattr(n, "act_min")
            and (n.act_min, n.act_max) != ir.INT_RANGES[graph.tensors[n.output].dtype]]


def test_fused_activation_clamps_bind_and_match_tflite_micro():
    """Every layer whose fused activation clamps tighter than int8 (of the zoo and the
    committed models, cnn_int8's last CONV_2D) is driven onto both bounds by random
    inputs, and there the golden model's output is TFLM's."""
    clamped = 0
    for path in ZOO_MODELS + INT8_TEST_MODELS:
        graph = lower(read_model(path))
        nodes = _narrow_clamps(graph)
        if not nodes:
            continue
        tflm = ReferenceInterpreter(str(path))
        indices = [graph.tensors[n.output].tflite_index for n in nodes]
        seen = {n.output: [] for n in nodes}
        for x in random_inputs(graph, 20, seed=2):
            result = golden.run(graph, x)
            theirs = tflm.invoke(x, indices)
            for n, i in zip(nodes, indices, strict=True):
                np.testing.assert_array_equal(result.tensors[n.output], theirs[i])
                seen[n.output].append(result.tensors[n.output].reshape(-1))
        for n in nodes:
            values = np.concatenate(seen[n.output])
            assert n.act_min in values and n.act_max in values, (path.name, n.op, n.output)
        clamped += len(nodes)
    assert clamped >= 1
