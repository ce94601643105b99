"""inspect's description: the numbers a person needs for a hand-written forward pass."""

import json

from tfl2rtl.fixedpoint import quantize_multiplier
from tfl2rtl.lower import lower
from tfl2rtl.report import describe, format_text
from tfl2rtl.tflite_reader import read_model


def test_describe_micro_speech(zoo):
    graph = lower(read_model(zoo / "tflite_micro" / "micro_speech_quantized.tflite"))
    info = describe(graph)
    json.dumps(info)  # JSON-ready
    assert info["mode"] == "int8 (int8 I/O)"
    assert info["macs"] == sum(layer["macs"] for layer in info["layers"]) == graph.macs
    dw = info["layers"][1]
    node = graph.nodes[1]
    assert dw["op"] == "DEPTHWISE_CONV_2D" and dw["requant"]["per_channel"]
    assert dw["requant"]["multiplier"] == [int(node.requant.multiplier.min()),
                                           int(node.requant.multiplier.max())]
    fc = info["layers"][2]
    fc_node = graph.nodes[2]
    assert not fc["requant"]["per_channel"]
    assert (fc["requant"]["multiplier"], fc["requant"]["shift"]) == (
        int(fc_node.requant.multiplier[0]), int(fc_node.requant.shift[0])) == quantize_multiplier(
        fc["requant"]["real_scale"])
    assert fc["acc_bits"] == graph.nodes[2].acc_bits
    assert fc["inputs"][0]["zero_point"] == -fc["input_offset"]


def test_text_names_every_layer(zoo):
    graph = lower(read_model(zoo / "mlperf_tiny" / "kws_ref_model.tflite"))
    text = format_text(describe(graph))
    for i, node in enumerate(graph.nodes):
        assert f"[{i:>2}] {node.op}" in text
    assert "multiplier" in text and "acc_bits" in text
