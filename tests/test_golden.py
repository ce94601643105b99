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


#: The models of the other integer modes (writer-made ones from make_writer_models.py,
#: converter-made ones from make_models.py) and the profiles whose runtime runs them:
#: TFLite Micro has no uint8 kernels.
UINT8_PROFILES, INT16X8_PROFILES = ("litert-ref", "litert"), ("tflm", "litert-ref", "litert")
MODE_MODELS = {
    "uint8_legacy.tflite": UINT8_PROFILES,
    "ops_uint8_legacy.tflite": UINT8_PROFILES,
    "mlp_uint8_legacy.tflite": UINT8_PROFILES,
    "cnn_uint8_legacy.tflite": UINT8_PROFILES,
    "ops_int16x8.tflite": INT16X8_PROFILES,
    "int16x8.tflite": INT16X8_PROFILES,
    "mlp_int16x8.tflite": INT16X8_PROFILES,
    "cnn_int16x8.tflite": INT16X8_PROFILES,
}
MODE_SAMPLES = 20


@pytest.mark.parametrize("name,profile", [(n, p) for n, ps in MODE_MODELS.items()
                                          for p in ps])
def test_legacy_uint8_and_16x8_on_every_tensor(name, profile, summary):
    from conftest import TEST_MODELS

    graph = lower(read_model(TEST_MODELS / name))
    assert golden.profiles_for(graph) == sorted(MODE_MODELS[name],
                                                key=list(golden.PROFILES).index)
    report = verify_graph(graph, random_inputs(graph, MODE_SAMPLES, seed=2), profile=profile)
    assert report.tensors_compared == MODE_SAMPLES * sum(
        1 for t in graph.tensors.values() if t.data is None)
    assert report.mismatches == []
    summary(f"test_golden: {name} under {profile}: {report.tensors_compared} tensors, "
            f"{report.elements_compared} elements, 0 mismatches")


def test_tflm_is_refused_for_a_legacy_uint8_model_in_one_line():
    from conftest import TEST_MODELS

    graph = lower(read_model(TEST_MODELS / "uint8_legacy.tflite"))
    assert graph.quantization == "uint8-legacy"
    assert golden.default_profile(graph) == "litert-ref"
    with pytest.raises(Tfl2RtlError, match=r"TensorFlow Lite Micro has no legacy uint8 "
                                           r"kernels; use --profile litert or litert-ref$"):
        golden.run(graph, random_inputs(graph, 1)[0], profile="tflm")
    assert golden.run(graph, random_inputs(graph, 1)[0]).profile == "litert-ref"


def test_weight_zero_point_enters_every_product(tmp_path):
    """Legacy uint8: ``acc = sum((x - zx) * (w - zw)) + bias``, by hand for one output, and
    the folded form (``folded_bias + sum(x * (w - zw))``) gives the same integers."""
    from conftest import TEST_MODELS

    graph = lower(read_model(TEST_MODELS / "uint8_legacy.tflite"))
    node = graph.nodes[0]
    x = random_inputs(graph, 1, seed=5)[0][0]
    zx, zw = graph.tensors[node.input].zero_point, -node.filter_offset
    assert zw != 0 and node.weights.dtype != np.int8 and node.weights.max() > 127
    by_hand = [int(((x.astype(np.int64).reshape(-1) - zx) * (node.weights[o] - zw)).sum()
                   + node.bias[o]) for o in range(node.weights.shape[0])]
    np.testing.assert_array_equal(golden.accumulate(node, x).reshape(-1), by_hand)
    np.testing.assert_array_equal(golden.accumulate(node, x, folded=True).reshape(-1),
                                  by_hand)


def test_16x8_layers_accumulate_in_int64_and_round_once():
    """A 16x8 layer's int64 accumulator goes through the int64
    ``MultiplyByQuantizedMultiplier`` (16-bit multiplier, halves up), not the int32
    double rounding; both are checked against the definition on the model's own numbers."""
    from conftest import TEST_MODELS
    from tfl2rtl.fixedpoint import multiply_by_quantized_multiplier_int64

    graph = lower(read_model(TEST_MODELS / "ops_int16x8.tflite"))
    convs = [n for n in graph.nodes if isinstance(n, ir.Conv2D)]
    assert convs and all(n.accumulator == "int64" for n in convs)
    node = convs[0]
    acc = np.array([-(1 << 40) - 12345, -7, 0, 5, 1 << 33], np.int64)
    m, s = int(node.requant.multiplier[0]), int(node.requant.shift[0])
    reduced = (m + (1 << 15)) >> 16
    want = [(a * reduced + (1 << (14 - s))) >> (15 - s) for a in acc.tolist()]
    want = [((v + (1 << 31)) % (1 << 32)) - (1 << 31) for v in want]  # the int32 cast
    np.testing.assert_array_equal(multiply_by_quantized_multiplier_int64(acc, m, s), want)
