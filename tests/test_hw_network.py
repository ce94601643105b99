"""Whole models behind AXI4-Stream ports: planning, and FULLY_CONNECTED networks in
Amaranth's simulator (the convolution networks run in Verilator: test_sim_network.py)."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Fragment, Module
from amaranth.lib.memory import Memory

from conftest import TEST_MODELS, ZOO, ecp5_mapped
from streams import STALL_MODES, axis, get, load_beats, put, run_network, simulate
from tfl2rtl import ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import (
    LINT_WAIVERS,
    DataflowNetwork,
    branch_fifo_depths,
    lint_waivers,
    plan_network,
    to_verilog,
)
from tfl2rtl.hw.pipeline import RESET_TREE_HOOK
from tfl2rtl.hw.softmax import SoftmaxUnit
from tfl2rtl.hw.weights import load_payloads
from tfl2rtl.sim.runner import HARNESS, TOP, golden_vectors, harness_source
from tfl2rtl.toolchain import verilator_lint

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
DENSE10 = TEST_MODELS / "dense10_int8.tflite"
MLP_UINT8 = TEST_MODELS / "mlp_uint8.tflite"
AD01 = ZOO / "mlperf_tiny" / "ad01_int8.tflite"


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("foldings", [
    None, {0: (16, 1), 1: (4, 4), 2: (1, 16)}, {0: (2, 1), 1: (8, 2), 2: (1, 1)},
    {0: (16, 1, 2), 1: (4, 4, 1), 2: (1, 16)},
])
def test_hello_world(foldings, mode):
    graph = load(HELLO_WORLD)
    inputs = np.random.default_rng(0).integers(-128, 128, (10, 1)).astype(np.int8)
    dut = DataflowNetwork(plan_network(graph, foldings))
    got, lasts = run_network(dut, graph, inputs, mode, seed=3)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert lasts == [1] * len(inputs)  # one output per vector, each the last


@pytest.mark.parametrize("foldings", [
    {0: (16, 1), 1: (16, 16), 2: (1, 16)},  # one vector per cycle
    {0: (16, 1), 1: (4, 4), 2: (1, 16)},
    {0: (4, 1), 1: (2, 2), 2: (1, 4)},
    {0: (16, 1, 4), 1: (8, 4, 2), 2: (1, 16)},  # fewer requantizer lanes than PE
])
def test_hello_world_initiation_interval(foldings):
    graph = load(HELLO_WORLD)
    plan = plan_network(graph, foldings)
    inputs = np.random.default_rng(0).integers(-128, 128, (40, 1)).astype(np.int8)
    cycles = []
    got, _ = run_network(DataflowNetwork(plan), graph, inputs, "streaming",
                         cycles=cycles)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert set(np.diff(cycles[len(cycles) // 2:])) == {plan.cycles_per_vector}


@pytest.mark.parametrize("mode", STALL_MODES)
def test_reshape_and_per_channel_layer(mode):
    graph = load(DENSE10)
    inputs = np.random.default_rng(1).integers(-128, 128, (2, 784)).astype(np.int8)
    dut = DataflowNetwork(plan_network(graph, {1: (10, 28)}))
    got, lasts = run_network(dut, graph, inputs, mode)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert lasts == ([0] * 9 + [1]) * 2


@pytest.mark.long  # the 400 KB MLP in Amaranth's simulator, 33 s
def test_softmax_uint8_edges_and_lanes():
    # mlp_uint8: QUANTIZE (uint8 -> int8), RESHAPE, three layers, SOFTMAX, QUANTIZE back;
    # two elements per beat on both edges.  (One input, under random stalls and
    # backpressure only: the Amaranth simulation of this network takes 40 s an input;
    # tests/test_sim_network.py streams 50 inputs through the model's networks in
    # Verilator, two lanes among them, back to back and under random stalls.)
    graph = load(MLP_UINT8)
    # The third digit of the samples, quantized as the converter does: its softmax is
    # not saturated (two classes share the probability).
    image = graph.tensors[graph.inputs[0]]
    digit = np.load(TEST_MODELS / "digits_samples.npy").reshape(-1, 784)[2:3]
    inputs = np.clip(np.round(digit / image.scale) + image.zero_point, 0, 255).astype(np.uint8)
    plan = plan_network(graph, {2: (16, 56), 3: (10, 32), 4: (10, 10)})
    dut = DataflowNetwork(plan, lanes=2)
    got, lasts = run_network(dut, graph, inputs, "stalls")
    expected = golden_vectors(graph, inputs)
    np.testing.assert_array_equal(got, expected)
    assert lasts == [0] * 4 + [1]
    assert ((expected > 0) & (expected < 255)).sum() > 1  # not all saturated
    assert dut.plan.lanes == 2 and dut.cycles_per_vector == 32 * 14  # the first layer


def with_node_after(graph, index, node_factory):
    """``graph`` with a node from ``node_factory(input_name, output_name)`` spliced in
    after node ``index`` (its output tensor copied)."""
    nodes = list(graph.nodes)
    before = nodes[index].output
    spliced = f"{before}/spliced"
    tensors = dict(graph.tensors)
    tensors[spliced] = dataclasses.replace(graph.tensors[before], name=spliced)
    following = [dataclasses.replace(n, inputs=(spliced, *n.inputs[1:]))
                 if n.input == before else n for n in nodes[index + 1:]]
    outputs = [spliced if name == before else name for name in graph.outputs]
    return dataclasses.replace(graph, tensors=tensors, outputs=outputs, nodes=[
        *nodes[:index + 1], node_factory(before, spliced), *following])


def softmax_of(input_name, output_name):
    return ir.Softmax(inputs=(input_name,), outputs=(output_name,), beta=1.0,
                      input_scale=0.1, input_multiplier=1 << 30, input_left_shift=20,
                      diff_min=-200)


def test_rejects_unsupported_graphs():
    with pytest.raises(Tfl2RtlError, match=r"^node 10 \(SOFTMAX\): SOFTMAX over rows of 640 "
                                           r"elements; the hardware takes at most 511$"):
        plan_network(with_node_after(load(AD01), 9, softmax_of))
    graph = load(HELLO_WORLD)
    with pytest.raises(Tfl2RtlError, match=r"^node 1 \(FULLY_CONNECTED\): pe=3, simd=1 does "
                                           r"not divide the layer \(16 outputs x 16 inputs\); "
                                           r"pe must divide 16 and simd must divide 16$"):
        plan_network(graph, {1: (3, 1)})
    with pytest.raises(Tfl2RtlError, match=r"^node 2 \(FULLY_CONNECTED\): pe=1, simd=5 does "):
        plan_network(graph, {2: (1, 5)})
    with pytest.raises(Tfl2RtlError, match=r"^node 0 \(FULLY_CONNECTED\): 3 requantizer lanes "
                                           r"do not divide PE=4; choose one of 1, 2, 4$"):
        plan_network(graph, {0: (4, 1, 3)})
    with pytest.raises(Tfl2RtlError, match=r"^a folding is \(pe, simd\) or "):
        plan_network(graph, {0: (4,)})
    with pytest.raises(Tfl2RtlError, match=r"^foldings given for nodes \[7\], which have no "
                                           r"foldable hardware$"):
        plan_network(graph, {7: (1, 1)})
    conv = load(TEST_MODELS / "conv_int8.tflite")
    with pytest.raises(Tfl2RtlError, match=r"^node 0 \(CONV_2D\): pe=1, simd=2 does not divide "
                                           r"the layer \(12 outputs x 1 input channels\)"):
        plan_network(conv, {0: (1, 2)})
    quantize = ir.Requantize(inputs=(graph.nodes[0].output,), outputs=("requantized",),
                             input_zero_point=0, output_zero_point=1,
                             requant=graph.nodes[0].requant, flip_sign=False)
    # An integer QUANTIZE inside the graph is a stage of its own (a requantizer).
    plan = plan_network(with_node_after(graph, 0, lambda i, o: dataclasses.replace(
        quantize, inputs=(i,), outputs=(o,))))
    assert [s.node.op for s in plan.stages][:2] == ["FULLY_CONNECTED", "QUANTIZE"]


def test_lanes():
    plan = plan_network(load(AD01))
    assert (plan.lanes, plan.edge_cycles) == (1, 640)
    wide = plan.with_lanes(64)
    assert (wide.lanes, wide.edge_cycles, wide.cycles_per_vector) == (64, 10, 81920)
    network = DataflowNetwork(plan_network(load(DENSE10), {1: (10, 28)}), lanes=2)
    Fragment.get(network, None)
    assert network.plan.lanes == 2 and network.lanes == 2 and network.cycles_per_vector == 392
    assert len(network.s_axis_tdata) == len(network.m_axis_tdata) == 16
    mlp = plan_network(load(MLP_UINT8), {2: (512, 784), 3: (100, 512), 4: (10, 100)})
    assert mlp.cycles_per_vector == 784  # the input edge
    assert mlp.with_lanes(2).cycles_per_vector == 392
    assert mlp.stages[-1].cycles_per_vector == SoftmaxUnit.cycles_for_row(10)  # the softmax
    with pytest.raises(Tfl2RtlError, match=r"^4 lanes do not divide the input \(784\) and "
                                           r"output \(10\) vectors; choose one of 1, 2$"):
        mlp.with_lanes(4)


def test_plan():
    plan = plan_network(load(HELLO_WORLD), {0: (16, 1), 1: (4, 4), 2: (1, 16)})
    assert [stage.cycles_per_vector for stage in plan.stages] == [1, 16, 1]
    assert plan.cycles_per_vector == 16
    # 16 results of the first layer through 2 requantizer lanes: 8 cycles.
    assert plan_network(load(HELLO_WORLD), {0: (16, 1, 2), 1: (4, 4), 2: (1, 16)}).stages[
        0].cycles_per_vector == 8
    assert (plan.in_size, plan.out_size, plan.uint8_input, plan.uint8_output) == (
        1, 1, False, False)
    assert all(isinstance(stage.node, ir.FullyConnected) for stage in plan.stages)
    assert plan.branch_fifo == ()
    mlp = plan_network(load(MLP_UINT8))
    assert (mlp.uint8_input, mlp.uint8_output) == (True, True)
    assert isinstance(mlp.stages[-1].node, ir.Softmax)
    assert mlp.stages[-1].cycles_per_vector == SoftmaxUnit.cycles_for_row(10)
    # RESHAPE and the edge QUANTIZE ops move no data: the first layer reads the input.
    assert mlp.sources[0] == (mlp.input,)


def test_residual_branch_fifos_cover_the_longer_path():
    # ResNet-8's first residual block: ADD(conv(conv(x)), x).  While the two convolutions
    # take rows of x before their first output, the direct branch must hold those rows.
    graph = load(ZOO / "mlperf_tiny" / "pretrainedResnet_quant.tflite")
    plan = plan_network(graph)
    depths = branch_fifo_depths(plan)
    assert dict(plan.branch_fifo) == depths
    first_add = next(k for k, s in enumerate(plan.stages) if isinstance(s.node, ir.Add))
    x = next(t for t in plan.sources[first_add] if plan.readers(t) > 1)  # the split tensor
    height, width, channels = graph.tensors[x].shape[1:]
    direct = depths[(x, plan.readers(x) - 1)]  # the ADD reads x after the convolution
    # Two 3x3 convolutions read at least two rows ahead, at most six with the allowance
    # for whole-row windows; every branch gets the margin on top.
    assert 2 * width * channels < direct <= 6 * width * channels + 64


def lint_networks():
    """Small networks that between them use every component: a requantizer with fewer
    lanes than PEs (so an accumulator splitter), lane converters both ways on a two-lane
    edge, per-channel parameter ROMs, and a softmax (spliced after hello_world)."""
    with_softmax = with_node_after(load(HELLO_WORLD), 2, softmax_of)
    return {
        "hello_world": DataflowNetwork(
            plan_network(load(HELLO_WORLD), {0: (16, 1, 4), 1: (4, 4), 2: (1, 16)})),
        "dense10": DataflowNetwork(plan_network(load(DENSE10), {1: (2, 8)}), lanes=2),
        "softmax": DataflowNetwork(plan_network(with_softmax, {0: (4, 1), 1: (2, 4), 2: (1, 2)})),
    }


def test_verilog_passes_verilator_lint_wall(tmp_path):
    """``verilator --lint-only -Wall`` finds nothing in the generated Verilog once the
    style warnings of Amaranth's backend are waived for that file only, and nothing at all
    in the simulation harness around it."""
    used = set()
    for name, network in lint_networks().items():
        source = tmp_path / f"{name}.v"
        source.write_text(to_verilog(network, name=TOP))
        waivers = tmp_path / f"{name}.vlt"
        waivers.write_text(lint_waivers(str(source)))
        plan = network.plan
        parameters = [f"-GLANES={plan.lanes}", f"-GIN_SIZE={plan.in_size}",
                      f"-GOUT_SIZE={plan.out_size}", "-GVECTORS=3", "--timing"]
        assert verilator_lint([waivers, source, harness_source()], HARNESS,
                              parameters) == [], name
        # Without the waivers: only the waived rules, so they hide nothing else.
        for message in verilator_lint([source], TOP):
            rule = message.split(":")[0].removeprefix("%Warning-")
            if rule != "%Error":  # "%Error: Exiting due to N warning(s)"
                assert rule in LINT_WAIVERS, message
                used.add(rule)
    assert used == set(LINT_WAIVERS)  # and each waiver is needed by one of them


class SerialRequantizerPlatform:
    """A platform that asks for requantizers with serial products (as the iCE40 boards
    do), with no other effect."""

    requantizer_serial_products = True

    def get_memory(self, memory):
        return Memory.elaborate(memory, None)


class OnPlatform(Elaboratable):
    """``network`` elaborated for ``platform`` inside the simulator (which elaborates
    its top level without one)."""

    def __init__(self, network, platform):
        self.network, self.platform = network, platform

    def elaborate(self, platform):
        return Fragment.get(self.network, self.platform)


def test_serial_requantizers_are_counted_in_the_plan():
    # Every requantizer beat takes 5 cycles on such a platform; the plan with
    # requant_interval=5 predicts the interval the hardware then shows.
    graph = load(HELLO_WORLD)
    fold = {0: (16, 1, 1), 1: (16, 16), 2: (1, 16)}  # 16 results through one lane
    plan = plan_network(graph, fold, requant_interval=5)
    assert plan_network(graph, fold).cycles_per_vector == 16
    assert plan.cycles_per_vector == 16 * 5
    network = DataflowNetwork(plan)
    inputs = np.random.default_rng(4).integers(-128, 128, (8, 1)).astype(np.int8)
    cycles = []
    in_timing, out_timing = STALL_MODES["streaming"](0)
    outputs = []

    async def producer(ctx):
        await put(ctx, axis(network, "s_axis"), inputs.view(np.uint8).reshape(-1).tolist(),
                  in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, axis(network, "m_axis"), len(inputs), out_timing,
                                 cycles):
            outputs.append(payload & 0xFF)

    simulate(OnPlatform(network, SerialRequantizerPlatform()), producer, consumer)
    got = np.array(outputs, dtype=np.uint8).view(np.int8).reshape(len(inputs), 1)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))
    assert set(np.diff(cycles[len(cycles) // 2:])) == {plan.cycles_per_vector}


@pytest.mark.parametrize("mode", STALL_MODES)
def test_loadable_weights_are_loaded_through_the_load_port(mode):
    """Every weighted layer of hello_world in loadable memories: ``loaded`` stays low
    until the host's bytes (:func:`load_payloads` of each stage's rows) have all arrived,
    and the network then computes the golden outputs."""
    graph = load(HELLO_WORLD)
    plan = plan_network(graph, {0: (4, 1), 1: (4, 2), 2: (1, 4)})
    plan = plan.with_loadable([s.index for s in plan.stages if s.stage.loadable])
    assert plan.loadable == (0, 1, 2)
    dut = DataflowNetwork(plan)
    payloads = []
    for number, (stage, _, row_bytes) in enumerate(plan.loadable_memories()):
        rows, _ = stage.stage.weight_rows(stage.fold)
        payloads += load_payloads(number, rows, row_bytes, chunk=24)
    beats = load_beats(payloads)
    inputs = np.random.default_rng(5).integers(-128, 128, (8, 1)).astype(np.int8)
    in_timing, out_timing = STALL_MODES[mode](7)
    outputs, flags = [], []

    async def producer(ctx):
        flags.append(ctx.get(dut.loaded))
        await put(ctx, dut.load, beats[:-1], in_timing)
        await ctx.tick().repeat(3)
        flags.append(ctx.get(dut.loaded))  # one byte short
        await put(ctx, dut.load, beats[-1:], in_timing)
        await ctx.tick().repeat(3)
        flags.append(ctx.get(dut.loaded))
        await put(ctx, axis(dut, "s_axis"), inputs.view(np.uint8).ravel().tolist(),
                  in_timing)

    async def consumer(ctx):
        for payload in await get(ctx, axis(dut, "m_axis"), len(inputs), out_timing):
            outputs.append(payload & 0xFF)

    simulate(dut, producer, consumer)
    assert flags == [0, 0, 1]
    got = np.array(outputs, dtype=np.uint8).view(np.int8).reshape(len(inputs), -1)
    np.testing.assert_array_equal(got, golden_vectors(graph, inputs))


def test_only_weighted_stages_are_loadable():
    plan = plan_network(load(HELLO_WORLD))
    with pytest.raises(Tfl2RtlError, match="node 7 has no weight memory"):
        plan.with_loadable([7])


def test_legacy_uint8_fully_connected_requantizes_once(monkeypatch):
    """A legacy uint8 FULLY_CONNECTED is built in its hardware form with a
    RoundingRequantizer (LiteRT's double requantization), and refused in one line when
    the planner's check of every accumulator fails (here made to)."""
    from tfl2rtl.hw import requant
    from tfl2rtl.hw.requant import RoundingRequantizer

    graph = load(TEST_MODELS / "uint8_legacy.tflite")
    plan = plan_network(graph)
    assert plan.uint8_input and plan.uint8_output
    stage = plan.stages[0]
    assert stage.node.requantization == "double" and stage.node.weight_bits == 9
    layer = stage.build()
    assert isinstance(layer.requant, RoundingRequantizer)
    Fragment.get(layer, None)  # elaborated (its parts would warn as unused otherwise)
    monkeypatch.setattr(requant, "matches_double_rounding", lambda *a, **k: False)
    with pytest.raises(Tfl2RtlError, match=r"^node 0 \(FULLY_CONNECTED\) of a legacy uint8 "
                                           r"model: LiteRT requantizes it in double"):
        plan_network(graph)


def _ready_out_of_reset(network, cycles: int, platform=None) -> list[int]:
    """``network``'s ``s_axis_tready`` on each of the first ``cycles`` cycles after two
    edges in reset, with a beat offered throughout."""
    m = Module()
    m.domains.sync = domain = ClockDomain()
    m.submodules.network = network
    ready = []

    async def testbench(ctx):
        ctx.set(network.s_axis_tvalid, 1)
        ctx.set(domain.rst, 1)
        await ctx.delay(2e-6)  # two edges in reset (``tick`` stops at a reset)
        ctx.set(domain.rst, 0)
        for _ in range(cycles):
            ready.append(ctx.get(network.s_axis_tready))
            await ctx.tick()

    simulate(m, testbench, platform=platform)
    return ready


def test_the_input_opens_when_the_parts_leave_reset():
    """The parts leave reset ``reset_depth`` edges after the ``sync`` domain (their
    resets come through a tree of registers), and ``s_axis`` stays closed until then: a
    beat offered on the first cycle out of reset would go into a FIFO still in reset."""
    network = DataflowNetwork(plan_network(load(HELLO_WORLD)))
    ready = _ready_out_of_reset(network, 5)
    assert network.reset_depth >= 2
    assert ready == ([0] * network.reset_depth + [1] * 5)[:5]


def test_a_platform_can_leave_the_reset_tree_out():
    """Where the platform's RESET_TREE_HOOK is false (the iCE40 boards) the parts share
    the domain's reset and the input is open on the first cycle out of reset."""
    network = DataflowNetwork(plan_network(load(HELLO_WORLD)))
    platform = type("NoTree", (), {RESET_TREE_HOOK: False})()
    ready = _ready_out_of_reset(network, 2, platform)
    assert network.reset_depth == 0 and ready == [1, 1]


def test_each_part_takes_its_reset_from_a_register_of_its_own(tmp_path):
    """A reset tree: after Yosys' ECP5 synthesis (to its LUT mapping, where a merge of
    equal registers would have happened) every stage, FIFO and lane converter still has
    its own leaf of the tree, a flip-flop that resets the part's registers; the ``rst``
    port reaches only the tree's root (and the output's beat counter, which is nobody's
    part)."""
    network = DataflowNetwork(plan_network(load(DENSE10), {1: (2, 8)}), lanes=2)
    module, names = ecp5_mapped(to_verilog(network, name="top"), tmp_path)

    def flip_flops_reading(bit, port=None) -> list[set]:
        """The names of the outputs of the flip-flops with ``bit`` on an input (on
        ``port``, when given)."""
        return [names[cell["connections"]["Q"][0]] for cell in module["cells"].values()
                if cell["type"] == "TRELLIS_FF" and any(
                    bit in bits for name, bits in cell["connections"].items()
                    if cell["port_directions"][name] == "input" and port in (None, name))]

    parts = {"stage_0", "lanes_0_0", "fifo_0_0", "fifo_out"}
    assert {f"{part}_reset" for part in parts} | {"input_reset"} <= set(module["netnames"])
    by_rst = flip_flops_reading(module["ports"]["rst"]["bits"][0])
    assert [outputs for outputs in by_rst if "position" not in outputs] == [
        outputs for outputs in by_rst if "reset_root" in outputs]
    assert len([outputs for outputs in by_rst if "reset_root" in outputs]) == 1
    for part in parts:  # none merged away, and each resets its own part
        reset = module["netnames"][f"{part}_reset"]["bits"][0]
        assert {name for name in names[reset] if "." not in name} == {f"{part}_reset",
                                                                     f"{part}_rst"}
        assert len(flip_flops_reading(reset, "LSR")) > 1, part
