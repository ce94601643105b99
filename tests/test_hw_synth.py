"""Vendor specifics stay behind the tools and Amaranth's platform hooks: multipliers infer
DSP blocks, memories infer block RAM or go through ``platform.get_memory``."""

from amaranth.hdl import Fragment, Shape
from amaranth.lib.memory import Memory

from conftest import TEST_MODELS
from tfl2rtl.api import load
from tfl2rtl.boards.synth import synthesize
from tfl2rtl.hw.network import DataflowNetwork, plan_network

DENSE10 = TEST_MODELS / "dense10_int8.tflite"


def dense10(lanes=1):
    # 2 x 8 multipliers, two requantizer lanes of four 16x16 partial products each.
    return DataflowNetwork(plan_network(load(DENSE10), {1: (2, 8)}), lanes=lanes)


class MemoryRecorder:
    """A platform whose ``get_memory`` hook records each memory and builds it as usual."""

    def __init__(self):
        self.memories = []

    def get_memory(self, memory):
        self.memories.append(memory)
        return Memory.elaborate(memory, None)


def test_every_memory_goes_through_the_platform_hook():
    platform = MemoryRecorder()
    network = dense10()
    Fragment.get(network, platform)
    shapes = {(memory.depth, Shape.cast(memory.shape).width) for memory in platform.memories}
    mvu = network.stages[0].mvu
    assert (mvu.neuron_folds * mvu.synapse_folds, 8 * 2 * 8) in shapes  # the weights
    assert (mvu.synapse_folds, 8 * 8) in shapes  # the input buffer
    # weights, biases, input buffer, requantizer ROM, and two FIFOs
    assert len(platform.memories) == 6


def test_ice40_multipliers_and_memories_map_to_dsp_and_block_ram(tmp_path):
    report = synthesize(dense10(lanes=2), tmp_path, family="ice40-up5k", place=False)
    assert report.cells["SB_MAC16"] == 2 * 8 + 2 * 4
    assert report.cells["SB_RAM40_4K"] > 0


def test_the_dsp_estimate_of_an_add_is_what_yosys_maps(tmp_path):
    """cnn_int8's ADD at two lanes, synthesized alone for the iCE40 (serial requantizer):
    per lane two input factors on SB_MAC16 (the third, 2**14, becomes a shift) and the
    requantizer's one, as :func:`tfl2rtl.boards.fit.stage_dsp_estimate` counts."""
    from tfl2rtl import design, ir
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import stage_dsp_estimate
    from tfl2rtl.boards.postsynth import synthesize_netlist
    from tfl2rtl.hw.elementwise import add_input_factors

    graph = load(TEST_MODELS / "cnn_int8.tflite")
    plan = design.plan(graph, {4: (2, 1)}, requant_interval=5)
    (stage,) = [s for s in plan.network_plan.stages if isinstance(s.node, ir.Add)]
    assert add_input_factors(stage.node) == [2521, 16541, 1 << 14]
    netlist = synthesize_netlist(stage.build(), "ice40", tmp_path)
    used = netlist.read_text().count("SB_MAC16 ")
    assert used == stage_dsp_estimate(stage, BOARDS["icebreaker"]) == 2 * (2 + 1)


def test_the_dsp_estimate_of_a_softmax_is_what_yosys_maps(tmp_path):
    """mlp_float_io's SOFTMAX synthesized alone for the iCE40: its one 32x32 multiplier
    takes :data:`tfl2rtl.boards.fit.SOFTMAX_DSPS` SB_MAC16 (the default build of that
    model overflowed the iCEBreaker's DSPs when the estimate counted none)."""
    from tfl2rtl import design, ir
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import stage_dsp_estimate
    from tfl2rtl.boards.postsynth import synthesize_netlist

    plan = design.plan(load(TEST_MODELS / "mlp_float_io.tflite"), "auto", requant_interval=5)
    (stage,) = [s for s in plan.network_plan.stages if isinstance(s.node, ir.Softmax)]
    netlist = synthesize_netlist(stage.build(), "ice40", tmp_path)
    used = netlist.read_text().count("SB_MAC16 ")
    assert used == stage_dsp_estimate(stage, BOARDS["icebreaker"]) > 0


def test_the_dsp_estimate_of_a_legacy_uint8_fully_connected_is_what_yosys_maps(tmp_path):
    """cnn_uint8_legacy's FULLY_CONNECTED (9-bit weights, a RoundingRequantizer)
    synthesized alone for the iCE40: one SB_MAC16 per MAC multiplier and four for its
    |acc| x 31-bit product, which is never serial, as
    :func:`tfl2rtl.boards.fit.stage_dsp_estimate` counts."""
    from tfl2rtl import design, ir
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import stage_dsp_estimate
    from tfl2rtl.boards.postsynth import synthesize_netlist

    plan = design.plan(load(TEST_MODELS / "cnn_uint8_legacy.tflite"), "auto",
                       requant_interval=5)
    (stage,) = [s for s in plan.network_plan.stages if isinstance(s.node, ir.FullyConnected)]
    netlist = synthesize_netlist(stage.build(), "ice40", tmp_path)
    used = netlist.read_text().count("SB_MAC16 ")
    assert used == stage_dsp_estimate(stage, BOARDS["icebreaker"]) == stage.multipliers + 4


def test_an_add_on_the_ecp5_reads_tables_and_the_dsp_estimate_counts_its_requantizer(
        tmp_path):
    """ResNet-8's first ADD at two lanes, synthesized alone for the ECP5: each input of
    each lane reads its scaling from a table in a DP16KD and multiplies nothing; the
    output requantizer takes four MULT18X18D a lane, or one with serial products (which
    :func:`tfl2rtl.design.share_requantizers` gives an ADD with the time), as
    :func:`tfl2rtl.boards.fit.stage_dsp_estimate` counts."""
    import dataclasses

    from conftest import ZOO
    from tfl2rtl import design, ir
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import stage_dsp_estimate
    from tfl2rtl.boards.postsynth import synthesize_netlist
    from tfl2rtl.hw.stages import SERIAL_REQUANT_INTERVAL

    graph = load(ZOO / "mlperf_tiny" / "pretrainedResnet_quant.tflite")
    first = next(i for i, node in enumerate(graph.nodes) if isinstance(node, ir.Add))
    plan = design.plan(graph, {first: (2, 1)})
    (stage,) = [s for s in plan.network_plan.stages if s.index == first]
    for interval, requantizer in ((1, 4), (SERIAL_REQUANT_INTERVAL, 1)):
        form = dataclasses.replace(stage, requant_interval=interval)
        assert form.serial_requantizer == (interval > 1)
        netlist = synthesize_netlist(form.build(), "ecp5", tmp_path / str(interval))
        text = netlist.read_text()
        assert text.count("DP16KD ") == 2 * 2
        assert (text.count("MULT18X18D ") == stage_dsp_estimate(form, BOARDS["ulx3s-85f"])
                == 2 * requantizer)


def test_the_dsp_estimate_of_kws_layers_is_what_yosys_maps(tmp_path):
    """kws_ref_model's first DEPTHWISE_CONV_2D (8 MAC multipliers; 19-bit accumulators,
    whose requantizer's products by their high bits are built in LUTs: two MULT18X18D
    for its lane, not four) and its AVERAGE_POOL_2D (a 25x5 window: one product by the
    reciprocal, not a power of two), as the ULX3S default design plans them, each
    synthesized alone for the ECP5: :func:`tfl2rtl.boards.fit.stage_dsp_estimate` counts
    what Yosys maps."""
    from conftest import ZOO
    from tfl2rtl import ir
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import fitting_design, stage_dsp_estimate
    from tfl2rtl.boards.postsynth import synthesize_netlist
    from tfl2rtl.hw.requant import lane_multipliers

    ulx3s = BOARDS["ulx3s-85f"]
    graph = load(ZOO / "mlperf_tiny" / "kws_ref_model.tflite")
    plan = fitting_design(graph, ulx3s).network_plan
    depthwise = next(s for s in plan.stages if isinstance(s.node, ir.DepthwiseConv2D)
                     and not s.products_in_logic)
    pool = next(s for s in plan.stages if isinstance(s.node, ir.AveragePool2D))
    node = depthwise.node
    assert not depthwise.serial_requantizer and depthwise.out_lanes == 1
    assert lane_multipliers(node.requant.multiplier, node.requant.shift, node.acc_bits) == 2
    for name, stage, expected in (("depthwise", depthwise, depthwise.multipliers + 2),
                                  ("pool", pool, 1)):
        netlist = synthesize_netlist(stage.build(), "ecp5", tmp_path / name)
        used = netlist.read_text().count("MULT18X18D ")
        assert used == stage_dsp_estimate(stage, ulx3s) == expected, name
