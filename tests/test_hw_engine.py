"""The sequential engine (:mod:`tfl2rtl.hw.engine`): schedules, planning and refusals,
and whole MLPs through the one shared unit in Amaranth's simulator (in Verilator:
test_sim_engine.py)."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from conftest import TEST_MODELS, ZOO, long_cases
from streams import STALL_MODES, run_network
from tfl2rtl import ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.engine import (
    REQUANT_SLACK,
    SequentialEngine,
    compile_schedule,
    flash_offsets,
    plan_sequential,
)
from tfl2rtl.sim.runner import golden_vectors

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"
DENSE10 = TEST_MODELS / "dense10_int8.tflite"
MLP_UINT8 = TEST_MODELS / "mlp_uint8.tflite"
UINT8_LEGACY = TEST_MODELS / "uint8_legacy.tflite"
MLP_UINT8_LEGACY = TEST_MODELS / "mlp_uint8_legacy.tflite"


def random_inputs(graph, count, seed):
    tensor = graph.tensors[graph.inputs[0]]
    info = np.iinfo(np.dtype(tensor.dtype))
    rng = np.random.default_rng(seed)
    inputs = rng.integers(info.min, info.max + 1, (count, tensor.size))
    inputs[0] = info.min
    inputs[1] = info.max
    return inputs.astype(tensor.dtype)


def check_engine(graph, plan, mode, count=4, seed=0, interval=False):
    """``plan``'s engine against the golden model on ``count`` random inputs; with
    ``interval``, streaming, also its last inference's interval against the plan's: at
    least the cycles the unit issues, at most the documented bound."""
    engine = SequentialEngine(plan)
    inputs = random_inputs(graph, count, seed)
    expected = golden_vectors(graph, inputs)
    cycles = []
    got, lasts = run_network(engine, graph, inputs, mode, seed, cycles)
    np.testing.assert_array_equal(got, expected.reshape(got.shape))
    out_beats = plan.out_size // plan.lanes
    assert lasts == ([0] * (out_beats - 1) + [1]) * count
    if interval and mode == "streaming":
        last = cycles[-1] - cycles[-1 - out_beats]
        assert plan.schedule.issue_cycles <= last <= plan.cycles_per_vector
    return engine


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold, requant_lanes", [
    ((16, 1), 16),  # one group a layer
    ((4, 1), 2),  # an accumulator splitter before two requantizer lanes
    ((3, 1), 1),  # padded: 16 outputs as 18, the last layer's 1 as 3
    ((1, 1), 1),
])
def test_hello_world(fold, requant_lanes, mode):
    graph = load(HELLO_WORLD)
    plan = plan_sequential(graph, fold=fold)
    if requant_lanes != plan.schedule.requant_lanes:
        layers = plan.layers
        plan = type(plan)(**{**plan.__dict__, "schedule": compile_schedule(
            layers, *fold, requant_lanes)})
    check_engine(graph, plan, mode, count=5, seed=sum(fold))


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold", [(4, 4), (5, 2), (8, 16)])
def test_dense10(fold, mode):
    graph = load(DENSE10)
    check_engine(graph, plan_sequential(graph, fold=fold), mode, seed=fold[0])


@pytest.mark.parametrize("mode", STALL_MODES)
def test_uint8_edges_and_lanes(mode):
    graph = load(MLP_UINT8)
    plan = plan_sequential(graph, fold=(16, 56), lanes=2)  # a FULLY_CONNECTED, then SOFTMAX
    assert plan.uint8_input and plan.uint8_output
    check_engine(graph, plan, mode)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold", [(4, 1), (2, 4)])
def test_legacy_uint8(fold, mode):
    # uint8 weights with zero points (9-bit w - zw), uint8 edges, LiteRT's double
    # requantization of every layer in one RoundingRequantizer, then SOFTMAX.
    graph = load(UINT8_LEGACY)
    plan = plan_sequential(graph, fold=fold)
    assert plan.rounding and plan.uint8_input and plan.uint8_output
    assert plan.schedule.weight_bits == 9 and plan.schedule.requant_interval == 1
    check_engine(graph, plan, mode, count=6, seed=fold[1])


def test_flash_image_holds_the_unit_s_rows_in_issue_order():
    """The bytes the flash holds are the rows the unit would read from its ROM, a byte a
    weight: int8 as it is, a 9-bit weight plus its layer's offset (the same for every
    row of the layer); a layer's cycles are at least the flash's time for its
    weights."""
    for path, fold in ((UINT8_LEGACY, (2, 4)), (DENSE10, (4, 4))):
        plan = plan_sequential(load(path), fold=fold, weights="flash")
        schedule = plan.schedule
        engine = SequentialEngine(plan)
        Fragment.get(engine, None)  # (built, as a simulation or the Verilog would)
        nine = schedule.weight_bits == 9
        assert len(schedule.flash_offsets) == (len(schedule.steps) if nine else 0)
        image = np.frombuffer(plan.flash_image(), dtype=np.uint8 if nine else np.int8)
        assert len(image) == schedule.rows * schedule.row_bytes
        lanes = image.reshape(-1, schedule.pe * schedule.simd).astype(np.int64)
        if nine:
            layer_of_row = np.concatenate([np.full(s.cycles, k)
                                           for k, s in enumerate(schedule.steps)])
            lanes -= np.array(schedule.flash_offsets)[layer_of_row][:, None]
        mask = (1 << schedule.weight_bits) - 1
        rows = [sum((int(v) & mask) << (schedule.weight_bits * k) for k, v in enumerate(row))
                for row in lanes]
        assert rows == engine.mvu.weight_rows()
        for k in range(len(schedule.steps)):
            assert schedule.flash_cycles(k) >= (schedule.weight_bytes(k)
                                                * schedule.flash_cycles_per_byte)
            assert schedule.layer_cycles(k) == max(schedule.compute_cycles(k),
                                                   schedule.flash_cycles(k))
        on_chip = plan_sequential(load(path), fold=fold).schedule
        assert schedule.cycles_per_vector >= on_chip.cycles_per_vector
        assert on_chip.flash_cycles(0) == 0


def test_flash_offsets_refuse_weights_wider_than_a_byte():
    graph = load(UINT8_LEGACY)
    layers = plan_sequential(graph).layers
    node = layers[0][1]
    wide = type(node)(**{**node.__dict__, "weights": np.where(
        np.arange(node.weights.size).reshape(node.weights.shape) == 0, 254, -1)})
    assert flash_offsets([(0, wide)]) == (1,)
    wide.weights[0, 1] = -2
    with pytest.raises(Tfl2RtlError, match=r"^node 0 \(FULLY_CONNECTED\): its weights span "
                                           r"-2 to 254, more than a byte holds"):
        flash_offsets([(0, wide)])


def test_schedule_pads_every_layer_to_the_folding():
    graph = load(HELLO_WORLD)
    layers = plan_sequential(graph).layers
    schedule = compile_schedule(layers, 3, 1)
    assert [(s.padded_in, s.padded_out) for s in schedule.steps] == [(1, 18), (18, 18),
                                                                       (18, 3)]
    assert [s.first_row for s in schedule.steps] == [0, 6, 6 + 6 * 18]
    assert [s.first_group for s in schedule.steps] == [0, 6, 12]
    assert schedule.rows == sum(s.cycles for s in schedule.steps)
    assert schedule.buffer_beats == 18


@pytest.mark.parametrize("fold", [(3, 1), (4, 4), (16, 1), (1, 8)])
def test_the_layers_cycles_and_weight_bytes_add_up(fold):
    """Per layer (what ``inspect --schedule`` shows): its cycles add up to the bound of
    the cycles per inference, and its weight bytes to the unit's weight memory."""
    layers = plan_sequential(load(AD01)).layers
    for lanes in (1, fold[0]):
        schedule = compile_schedule(layers, *fold, lanes, requant_interval=5)
        k = range(len(schedule.steps))
        assert sum(map(schedule.layer_cycles, k)) == schedule.cycles_per_vector
        assert all(schedule.layer_cycles(i) >= schedule.steps[i].cycles for i in k)
        assert sum(map(schedule.weight_bytes, k)) == schedule.rows * fold[0] * fold[1]
        assert all(schedule.weight_bytes(i) >= schedule.steps[i].macs for i in k)


def test_planner_takes_the_fewest_cycles_and_few_requantizer_lanes():
    """The fewest cycles per inference, counting the input edge (dense10's 784 beats
    bound it: no engine need be faster), then the fewest multipliers."""
    graph = load(DENSE10)
    plan = plan_sequential(graph, 16)
    edge = plan.in_size
    best = plan.cycles_per_vector
    assert best == edge >= plan.schedule.cycles_per_vector
    layers = plan.layers
    first_in = layers[0][1].weights.shape[1]
    for pe in range(1, 17):
        for simd in (d for d in range(1, 17) if first_in % d == 0 and pe * d <= 16):
            cycles = max(compile_schedule(layers, pe, simd).cycles_per_vector, edge)
            assert cycles > best or (cycles == best and pe * simd >= plan.multipliers)
    s = plan.schedule
    fastest = compile_schedule(layers, s.pe, s.simd).cycles_per_vector
    assert s.cycles_per_vector <= fastest * (1 + REQUANT_SLACK)
    assert plan.multipliers < 16
    # Where the edge does not bound it (2 lanes: 392 beats), the fewest cycles win.
    wide = plan_sequential(graph, 16, lanes=2)
    assert wide.schedule.cycles_per_vector > wide.in_size // 2
    for pe in range(1, 17):
        for simd in (d for d in range(1, 17) if first_in % d == 0 and pe * d <= 16):
            assert (compile_schedule(layers, pe, simd).cycles_per_vector
                    >= wide.schedule.cycles_per_vector)


def conv_chain(path, **kwargs):
    """:func:`tflite_writer.conv_chain_model` (``kwargs``) written to ``path``, loaded."""
    from tflite_writer import conv_chain_model

    path.write_bytes(conv_chain_model(**kwargs))
    return load(path)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold, requant_lanes, end", [
    ((1, 1), 1, "fc"),
    ((2, 2), 1, "fc"),  # channels padded: 6 as 6, 4 as 4, 5 as 6
    ((3, 2), 3, "fc"),  # lcm 6: 4 channels as 6, 5 as 6
    ((4, 1), 2, "conv"),  # the last layer a convolution: 5 channels as 8, trimmed
])
def test_convolutions(fold, requant_lanes, end, mode, tmp_path):
    graph = conv_chain(tmp_path / "conv.tflite", end=end)
    plan = plan_sequential(graph, fold=fold, fits=lambda s: s.requant_lanes == requant_lanes)
    assert plan.schedule.tensors
    assert [s.pixels for s in plan.schedule.steps][:3] == [30, 6, 3]
    check_engine(graph, plan, mode, count=3, seed=sum(fold), interval=True)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold, requant_lanes", [((1, 1), 1), ((2, 2), 2), ((3, 3), 1),
                                                  ((4, 4), 2), ((2, 1), 1), ((4, 2), 2)])
def test_depthwise_convolutions(fold, requant_lanes, mode, tmp_path):
    # (At 3 x 3 and 4 x 4 the input's two channels are padded to a block.  At 2 x 1 and
    # 4 x 2 a depthwise group is two channel blocks, at 4 x 2 the 6 channels padded to 8.)
    graph = conv_chain(tmp_path / "dw.tflite", depthwise=True)
    assert [n.op for n in graph.nodes].count("DEPTHWISE_CONV_2D") == 2
    plan = plan_sequential(graph, fold=fold, fits=lambda s: s.requant_lanes == requant_lanes)
    first = plan.schedule.steps[0]
    assert (first.channels, first.padded_channels) == (2, -(-2 // fold[1]) * fold[1])
    check_engine(graph, plan, mode, count=3, seed=fold[0], interval=True)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold, depthwise", [((1, 1), False), ((2, 2), True), ((6, 1), False)])
def test_pools_between_layers(fold, depthwise, mode, tmp_path):
    graph = conv_chain(tmp_path / "pools.tflite", depthwise=depthwise, pools=True)
    plan = plan_sequential(graph, fold=fold)
    pooled = [s.pooling.op for s in plan.schedule.steps if s.pooling is not None]
    assert pooled == ["MAX_POOL_2D", "AVERAGE_POOL_2D"]
    check_engine(graph, plan, mode, count=3, seed=fold[0], interval=True)


def depth_multiplied(path, channels):
    """A depthwise convolution with a depth multiplier of 3 over ``channels`` input
    channels, then a 1x1 convolution."""
    from tflite_writer import GraphWriter

    rng = np.random.default_rng(5)
    g = GraphWriter()
    x = g.tensor((1, 5, 4, channels), "int8", 0.05, -4)
    h = g.depthwise_conv_2d(x, rng.integers(-127, 128, (1, 3, 3, 3 * channels)),
                            rng.uniform(0.01, 0.03, 3 * channels),
                            rng.integers(-300, 300, 3 * channels), (0.06, 2),
                            depth_multiplier=3, stride=(2, 1))
    h = g.conv_2d(h, rng.integers(-127, 128, (4, 1, 1, 3 * channels)), 0.01, None,
                  (0.08, -5))
    path.write_bytes(g.finish([x], [h]))
    return load(path)


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("fold", [(1, 1), (3, 2), (2, 3)])
def test_depth_multiplier_over_one_channel_is_a_convolution(fold, mode, tmp_path):
    graph = depth_multiplied(tmp_path / "dm.tflite", channels=1)
    plan = plan_sequential(graph, fold=fold)
    assert plan.schedule.steps[0].patches.order == "conv"
    check_engine(graph, plan, mode, count=3, seed=fold[1])


def test_refuses_a_depth_multiplier_over_channels(tmp_path):
    graph = depth_multiplied(tmp_path / "dm.tflite", channels=2)
    with pytest.raises(Tfl2RtlError, match=r"^node 0 \(DEPTHWISE_CONV_2D\): depth "
                                           r"multiplier 3 over more than one channel; the "
                                           r"sequential engine takes 1 so far"):
        plan_sequential(graph)


def test_depthwise_needs_pe_a_multiple_of_simd(tmp_path):
    graph = conv_chain(tmp_path / "dw.tflite", depthwise=True)
    with pytest.raises(Tfl2RtlError, match=r"^node 1 \(DEPTHWISE_CONV_2D\): a depthwise "
                                           r"convolution needs PE a multiple of SIMD "
                                           r"dividing its 6 \(padded\) channels, not 1 x 2$"):
        plan_sequential(graph, fold=(1, 2))
    for max_multipliers in (2, 3, 16):
        schedule = plan_sequential(graph, max_multipliers=max_multipliers).schedule
        assert schedule.pe % schedule.simd == 0
    assert plan_sequential(graph, max_multipliers=3).schedule.pe == 2  # 2 x 1, not 1 x 1


def test_refuses_what_it_does_not_build():
    with pytest.raises(Tfl2RtlError, match=r"^node 0 \(PAD\) is not in the sequential "
                                           r"engine yet .* use --arch dataflow$"):
        plan_sequential(load(TEST_MODELS / "cnn_int8.tflite"))
    with pytest.raises(Tfl2RtlError, match=r"^node 3 \(ADD\) does not read the layer "
                                           r"before it: the sequential engine takes a chain"):
        plan_sequential(load(ZOO / "mlperf_tiny" / "pretrainedResnet_quant.tflite"))
    with pytest.raises(Tfl2RtlError, match="^a int16x8 model: the sequential engine builds "
                                           "int8 and legacy uint8 models so far"):
        plan_sequential(load(TEST_MODELS / "mlp_int16x8.tflite"))
    with pytest.raises(Tfl2RtlError, match="^SIMD=3 does not divide the input depth 1"):
        plan_sequential(load(HELLO_WORLD), fold=(1, 3))
    with pytest.raises(Tfl2RtlError, match="^weights in 'rom': choose one of chip, flash$"):
        plan_sequential(load(HELLO_WORLD), weights="rom")


def test_interval_is_within_the_documented_bound():
    graph = load(DENSE10)
    plan = plan_sequential(graph, fold=(4, 4))
    check_engine(graph, plan, "streaming", count=4, interval=True)
    assert isinstance(plan.layers[0][1], ir.FullyConnected)


# --------------------------------------------------------------------------------------
# Whole models in Verilator
# --------------------------------------------------------------------------------------

JET = TEST_MODELS / "jet_mlp_int8.tflite"
AD01 = ZOO / "mlperf_tiny" / "ad01_int8.tflite"
KWS = ZOO / "mlperf_tiny" / "kws_ref_model.tflite"
PERSON = ZOO / "tflite_micro" / "person_detect.tflite"

VERILATOR_CASES = {  # model, max multipliers, lanes, requantizer interval, inputs, weights
    "hello_world-16": (HELLO_WORLD, 16, 1, 1, 256, "chip"),  # every input
    "hello_world-serial_requantizer": (HELLO_WORLD, 4, 1, 5, 256, "chip"),  # as on iCE40
    "jet-8": (JET, 8, 1, 5, 60, "chip"),  # ends in SOFTMAX
    "jet-128": (JET, 128, 1, 1, 60, "chip"),
    "dense10-64": (DENSE10, 64, 2, 1, 30, "chip"),
    "ad01-64": (AD01, 64, 1, 1, 12, "chip"),  # ten layers
    "mlp_uint8-128": (MLP_UINT8, 128, 2, 1, 6, "chip"),  # uint8 edges, SOFTMAX
    # Weights from the flash model (a flash image the harness loads), the reader's four
    # data lines: bound by the flash in most layers.
    # (the small uint8_legacy MLP with its weights in flash: test_cli's sim)
    "jet-8-flash": (JET, 8, 1, 5, 12, "flash"),
    # The seed's legacy uint8 MNIST MLP (456 KB of weights) as the iCEBreaker builds it.
    "mlp_uint8_legacy-4-flash": (MLP_UINT8_LEGACY, 4, 1, 1, 3, "flash"),
    # MLPerf Tiny's keyword spotter (convolutions, depthwise convolutions, a global
    # average pool between layers, SOFTMAX) on a 2 x 2 unit from an activation memory.
    "kws-4": (KWS, 4, 1, 1, 2, "chip"),
    # On a 2 x 1 unit (a depthwise group two channel blocks) with its weights in flash:
    # copied once into the unit's memory at start-up (as the iCEBreaker builds it, there
    # in SPRAM).
    "kws-2-flash": (KWS, 2, 1, 1, 2, "flash"),
    # TFLite Micro's person detection (13 depthwise separable blocks, the first a
    # depthwise convolution of one channel with a depth multiplier of 8, a global average
    # pool, a 1x1 convolution last) on a 4 x 4 unit with four serial requantizer lanes.
    "person_detect-16-serial_requantizer": (PERSON, 16, 1, 5, 2, "chip"),
}


#: The cases that run only in the long runs (conftest.LONG; 17-40 s each): the wider
#: units and the larger models.  The suite keeps a convolutional model (kws on a 2 x 1
#: unit, its weights from flash), the flash reader with an MLP, and the small MLPs.
LONG_VERILATOR_CASES = {"jet-128", "ad01-64", "mlp_uint8-128", "mlp_uint8_legacy-4-flash",
                        "kws-4", "person_detect-16-serial_requantizer"}


@pytest.mark.parametrize("case", long_cases(VERILATOR_CASES, LONG_VERILATOR_CASES))
def test_model_in_verilator(case, tmp_path):

    path, budget, lanes, interval, count, weights = VERILATOR_CASES[case]
    graph = load(path)
    plan = plan_sequential(graph, budget, lanes=lanes, requant_interval=interval,
                           weights=weights)
    assert plan.weights == weights
    assert plan.multipliers <= budget
    if path == HELLO_WORLD:
        inputs = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    else:
        inputs = random_inputs(graph, count, seed=budget)
    check_in_verilator(graph, plan, inputs, tmp_path, seed=5)


def check_in_verilator(graph, plan, inputs, tmp_path, seed):
    """``plan``'s engine in Verilator on ``inputs``, straight and with stalls and
    backpressure, against the golden model; back to back, an inference takes at least
    the cycles the unit issues and at most the documented bound."""
    from tfl2rtl.sim.runner import simulate_network

    expected = golden_vectors(graph, inputs)
    assert len(np.unique(expected)) > 2  # the outputs are not all saturated
    runs = simulate_network(SequentialEngine(plan), inputs, expected, tmp_path, seed=seed,
                            stall=0.3, backpressure=0.3)
    for run in runs.values():
        np.testing.assert_array_equal(run.outputs, expected)
        assert run.tlast_errors == 0
    streaming = runs["streaming"]
    intervals = set(streaming.intervals[len(streaming.intervals) // 2:])
    assert plan.schedule.issue_cycles <= min(intervals)
    assert max(intervals) <= plan.cycles_per_vector


@pytest.mark.parametrize("fold", [(2, 2), (6, 1)])
def test_convolutions_in_verilator(fold, tmp_path):
    graph = conv_chain(tmp_path / "conv.tflite")
    plan = plan_sequential(graph, fold=fold)
    check_in_verilator(graph, plan, random_inputs(graph, 8, seed=fold[0]), tmp_path, seed=3)
