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


@pytest.mark.parametrize("name,port", [
    ("cnn_float_io.tflite", "int8"), ("mlp_float_io.tflite", "int8"),
    ("conv_float_io.tflite", "int8"), ("ops_int16x8.tflite", "int16"),
    ("int16x8.tflite", "int16")])
def test_host_edges_are_the_models_own_nodes(name, port):
    """The hardware graph of a float32-edged model: the same nodes at the same indices,
    the edge QUANTIZE and DEQUANTIZE passed through (tfl2rtl.ir.HostEdge), integer ports
    (int16 for a 16x8 model);
    the host's edges give the golden model's own tensors (float32 by bit pattern), and
    the model graph comes back from the hardware graph."""
    from tfl2rtl import golden, ir
    from tfl2rtl.edges import host_edges, model_graph
    from tfl2rtl.verify import random_inputs

    graph = tfl2rtl.load(TEST_MODELS / name)
    edges = host_edges(graph)
    hw = edges.hardware
    assert [i for i, _ in edges.before + edges.after] == [0, len(graph.nodes) - 1]
    assert len(hw.nodes) == len(graph.nodes)
    assert [type(n) for n in hw.nodes[1:-1]] == [type(n) for n in graph.nodes[1:-1]]
    assert all(isinstance(hw.nodes[k], ir.HostEdge) for k in (0, -1))
    assert hw.tensors[hw.inputs[0]].dtype == hw.tensors[hw.outputs[0]].dtype == port
    back = model_graph(hw)
    assert (back.nodes, back.inputs, back.outputs) == (graph.nodes, graph.inputs,
                                                      graph.outputs)
    assert host_edges(hw).quantize is edges.quantize
    for x in random_inputs(graph, 10, seed=3):
        ours = golden.run(graph, x)
        q = edges.to_hardware(x[0])
        np.testing.assert_array_equal(q, ours.tensors[hw.inputs[0]])
        inside = golden.run(hw, [q]).outputs[0]
        np.testing.assert_array_equal(inside, ours.tensors[hw.outputs[0]])
        out = edges.from_hardware(inside)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.view(np.uint32), ours.outputs[0].view(np.uint32))
    manifest = edges.manifest()
    assert manifest["input"]["scale"] == edges.quantize.scale
    assert manifest["output"]["zero_point"] == edges.dequantize.zero_point
    assert (manifest["input"]["model_dtype"], manifest["input"]["port_dtype"]) == (
        "float32", port)
    with pytest.raises(tfl2rtl.Tfl2RtlError, match="must be float32, got int8"):
        edges.to_hardware(np.zeros(graph.tensors[graph.inputs[0]].shape, np.int8))


def test_integer_models_have_no_host_edges():
    from tfl2rtl.edges import host_edges

    for name in ("mlp_uint8.tflite", "cnn_int8.tflite"):
        graph = tfl2rtl.load(TEST_MODELS / name)
        edges = host_edges(graph)
        assert edges.hardware is graph and not edges.any
        x = np.zeros(graph.tensors[graph.inputs[0]].shape, graph.tensors[graph.inputs[0]].dtype)
        assert edges.to_hardware(x) is x and edges.manifest()["input"]["host"] == []


def test_an_nchw_input_transposes_on_the_host():
    """A PyTorch-style model: QUANTIZE then TRANSPOSE at the input both run on the host
    (nodes 0 and 1 pass through in the hardware graph, whose port is the NHWC int8
    tensor); the host's tensor is the golden model's, and generate records the
    permutation."""
    from tfl2rtl import golden, ir
    from tfl2rtl.edges import host_edges, model_graph
    from tfl2rtl.verify import random_inputs

    graph = tfl2rtl.load(TEST_MODELS / "nchw_float_io.tflite")
    edges = host_edges(graph)
    assert [i for i, _ in edges.before] == [0, 1] and edges.transpose.perm == (0, 2, 3, 1)
    hw = edges.hardware
    assert hw.inputs == [graph.nodes[1].output]
    assert hw.tensors[hw.inputs[0]].shape == (1, 10, 10, 3)
    assert isinstance(hw.nodes[1], ir.HostEdge) and not isinstance(hw.nodes[2], ir.HostEdge)
    assert model_graph(hw).inputs == graph.inputs
    sets = random_inputs(graph, 4, seed=9)
    rows = edges.to_hardware(np.stack([s[0].reshape(-1) for s in sets]))
    assert rows.shape == (4, 300) and rows.dtype == np.int8
    for x, row in zip(sets, rows, strict=True):
        ours = golden.run(graph, x)
        np.testing.assert_array_equal(row, ours.tensors[hw.inputs[0]].reshape(-1))
        out = edges.from_hardware(golden.run(hw, [row.reshape(1, 10, 10, 3)]).outputs[0])
        np.testing.assert_array_equal(out.view(np.uint32), ours.outputs[0].view(np.uint32))
    manifest = tfl2rtl.generate(graph).manifest()
    assert manifest["input"]["shape"] == [1, 10, 10, 3]
    assert manifest["host_edges"]["input"]["permutation"] == [0, 2, 3, 1]
    assert manifest["host_edges"]["input"]["model_shape"] == [1, 3, 10, 10]


def test_legacy_uint8_and_16x8_through_the_api(tmp_path):
    """Each mode's default profile, the refusal of a profile whose runtime lacks the mode
    (before anything runs), inspect's S1..Z3, and generate: a legacy uint8 model planned,
    and the 16x8 model of every 16x8 op."""
    from conftest import TEST_MODELS

    uint8 = TEST_MODELS / "uint8_legacy.tflite"
    graph = tfl2rtl.load(uint8)
    assert graph.quantization == "uint8-legacy"
    x = [np.full(graph.tensors[graph.inputs[0]].shape, 200, np.uint8)]
    assert tfl2rtl.run(graph, x).profile == "litert-ref"
    report = tfl2rtl.verify(uint8, samples=2)
    assert report.ok and report.profile == "litert-ref"
    with pytest.raises(tfl2rtl.Tfl2RtlError, match="use --profile litert or litert-ref"):
        tfl2rtl.verify(uint8, samples=2, profile="tflm")
    q = tfl2rtl.inspect(uint8)["layers"][0]["quantization"]
    assert q["Z2"] != 0 and q["S3"] == float(graph.tensors[graph.nodes[0].output].scale)
    int16 = TEST_MODELS / "ops_int16x8.tflite"
    report = tfl2rtl.verify(int16, samples=2)
    assert report.ok and report.profile == "tflm"
    assert tfl2rtl.generate(int16, tmp_path / "out").multipliers > 0  # every 16x8 op
    assert (tmp_path / "out" / "tfl2rtl_top.v").exists()
    assert tfl2rtl.generate(uint8).multipliers > 0  # HARDWARE_MODES has legacy uint8


def test_simulate_a_legacy_uint8_model_with_float32_edges(tmp_path):
    """float32 -> uint8 QUANTIZE, two uint8 FULLY_CONNECTED, DEQUANTIZE: the host applies
    the edges, the hardware streams the uint8 tensors (int8 inside, 9-bit weights), and
    its float32 outputs are the golden model's bit for bit."""
    import importlib.util

    from tflite_writer import GraphWriter

    path = TEST_MODELS / "make_writer_models.py"
    spec = importlib.util.spec_from_file_location("make_writer_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(3)
    g = GraphWriter("legacy uint8 with float32 edges")
    layers = module.ModeLayers(g, "uint8")
    x = g.tensor((1, 16), "float32")
    h = g.quantize(x, (1 / 64, 120), dtype="uint8")
    for depth, out_quant, activation in ((8, (0.05, 130), "RELU"), (4, (0.1, 125), "NONE")):
        w = rng.integers(0, 256, (depth, g.shape(h)[1]))
        h = layers.fully_connected(h, w, np.array([0.01]), rng.integers(-300, 300, depth),
                                   out_quant, weight_zero_point=110, activation=activation)
    model = tmp_path / "uint8_float_edges.tflite"
    model.write_bytes(g.finish([x], [g.dequantize(h)]))
    report = tfl2rtl.simulate(model, inputs=30)
    assert report.mismatches == 0 and report.extra["float_outputs_compared"] == 2 * 30 * 4
    assert report.extra["host_edges"]
