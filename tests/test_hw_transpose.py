# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""TRANSPOSE in hardware (:class:`tfl2rtl.hw.transpose.TransposeLayer`) against
:func:`tfl2rtl.golden.transpose`: every permutation of small 2-D, 3-D and 4-D tensors,
straight through and under random stalls and backpressure, several tensors back to
back; its lanes, latency and interval; and its refusals."""

import itertools

import numpy as np
import pytest

from streams import STALL_MODES, get, put, simulate
from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.transpose import TransposeLayer, lane_limit, reduced_permutation

SHAPES = [(3, 4), (2, 3, 4), (2, 3, 1, 4)]  # a size-1 axis among the moved ones too
CASES = [(shape, perm) for shape in SHAPES
         for perm in itertools.permutations(range(len(shape)))]
TENSORS = 3


def transpose_node(perm) -> ir.Transpose:
    return ir.Transpose(inputs=("x",), outputs=("y",), perm=tuple(perm))


def tensors(shape, seed, count=TENSORS) -> np.ndarray:
    """``count`` tensors: random ones, and one of -128/127 only first."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (count, *shape))
    x[0] = np.where(rng.random(shape) < 0.5, -128, 127)
    return x.astype(np.int8)


def run(dut, xs, mode, seed=0, cycles=None) -> np.ndarray:
    """``xs`` (tensors of ``dut.in_shape``) through ``dut``; the outputs as ``(count,
    size)`` elements in stream order."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    lanes = dut.lanes
    beats = xs.reshape(-1, lanes).tolist()
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, beats, in_timing)

    async def consumer(ctx):
        results.extend(await get(ctx, dut.o, len(beats), out_timing, cycles=cycles))

    simulate(dut, producer, consumer)
    out = np.array([[p[lane] for lane in range(lanes)] for p in results], np.int8)
    return out.reshape(len(xs), -1)


def expected(node, xs) -> np.ndarray:
    return np.stack([golden.transpose(node, x).reshape(-1) for x in xs])


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shape, perm", CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_every_permutation_equals_golden(shape, perm, mode, summary):
    node = transpose_node(perm)
    xs = tensors(shape, seed=len(shape) * 100 + CASES.index((shape, perm)))
    dut = TransposeLayer(node, shape)
    assert dut.out_shape == golden.transpose(node, xs[0]).shape
    np.testing.assert_array_equal(run(dut, xs, mode, seed=7), expected(node, xs))
    if (shape, perm, mode) == (*CASES[-1], "stalls"):
        summary(f"test_hw_transpose: {len(CASES)} permutations of {len(SHAPES)} shapes, "
                f"{TENSORS} tensors each, with and without stalls")


#: Permutations that keep the innermost axis, at every lane count it allows.
LANE_CASES = [((2, 3, 4), (1, 0, 2), 2), ((2, 3, 4), (1, 0, 2), 4),
              ((1, 2, 3, 4), (0, 2, 1, 3), 4), ((2, 2, 3, 2), (1, 2, 0, 3), 2),
              ((3, 4), (0, 1), 12), ((2, 1, 6), (1, 0, 2), 3)]


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("shape, perm, lanes", LANE_CASES)
def test_lanes_where_the_innermost_axis_stays(shape, perm, lanes, mode):
    node = transpose_node(perm)
    xs = tensors(shape, seed=lanes)
    dut = TransposeLayer(node, shape, lanes=lanes)
    np.testing.assert_array_equal(run(dut, xs, mode, seed=3), expected(node, xs))


@pytest.mark.parametrize("shape, perm, lanes", [((2, 3, 4), (1, 0, 2), 4),
                                                ((2, 3, 1, 4), (3, 1, 0, 2), 1),
                                                ((5,), (0,), 5)])
def test_latency_and_interval(shape, perm, lanes):
    """Straight through, the first output beat leaves ``latency`` cycles after the last
    input beat of its tensor, and every later beat one cycle after the one before: a
    tensor every ``cycles_per_vector`` cycles."""
    node = transpose_node(perm)
    dut = TransposeLayer(node, shape, lanes=lanes)
    beats = dut.cycles_per_vector
    assert beats == np.prod(shape) // lanes and dut.latency == 2
    assert dut.memory_bytes == 2 * np.prod(shape)
    cycles = []
    xs = tensors(shape, seed=1, count=4)
    np.testing.assert_array_equal(run(dut, xs, "streaming", cycles=cycles),
                                  expected(node, xs))
    # ``put`` hands beat k over at clock edge k + 1, ``get`` counts edges from 1 too.
    assert cycles[0] == beats + dut.latency
    assert np.diff(cycles).tolist() == [1] * (len(cycles) - 1)


def test_reduced_permutation_keeps_the_element_order():
    """The counters run over the reduced shape: same input and output element order as
    the original, for every permutation of shapes with axes of size 1 anywhere."""
    checked = 0
    for shape in [(1, 4, 4, 2), (2, 1, 3), (1, 1), (3, 1, 2, 1, 2), (2, 3, 4, 5)]:
        for perm in itertools.permutations(range(len(shape))):
            sizes, order = reduced_permutation(shape, perm)
            x = np.arange(np.prod(shape)).reshape(shape)
            np.testing.assert_array_equal(np.transpose(x, perm).reshape(-1),
                                          np.transpose(x.reshape(sizes), order).reshape(-1))
            assert all(s > 1 for s in sizes) or sizes == (1,)
            checked += 1
    assert checked == 24 + 6 + 2 + 120 + 24
    # NCHW -> NHWC on one image: channels by pixels, two axes.
    assert reduced_permutation((1, 3, 4, 5), (0, 2, 3, 1)) == ((3, 20), (1, 0))
    assert lane_limit((1, 4, 4, 8), (0, 2, 1, 3)) == 8
    assert lane_limit((1, 4, 4, 8), (0, 3, 1, 2)) == 1


def test_refusals():
    with pytest.raises(Tfl2RtlError, match=r"^TRANSPOSE of \(1, 4, 4, 2\) by \(0, 3, 1, 2\) "
                       r"in 2 lanes: it moves the innermost axis, so it takes one element "
                       r"per beat$"):
        TransposeLayer(transpose_node((0, 3, 1, 2)), (1, 4, 4, 2), lanes=2)
    with pytest.raises(Tfl2RtlError, match=r"^TRANSPOSE of \(2, 3, 4\) by \(1, 0, 2\) in 3 "
                       r"lanes: lanes must divide 4, the innermost axis it keeps$"):
        TransposeLayer(transpose_node((1, 0, 2)), (2, 3, 4), lanes=3)
    with pytest.raises(Tfl2RtlError, match=r"not a permutation of its axes"):
        TransposeLayer(transpose_node((0, 0)), (2, 3))


def test_a_wrong_permutation_is_caught():
    """Negative control: the hardware for one permutation does not pass as another."""
    shape = (2, 3, 4)
    xs = tensors(shape, seed=5)
    dut = TransposeLayer(transpose_node((2, 0, 1)), shape)
    got = run(dut, xs, "streaming")
    assert not np.array_equal(got, expected(transpose_node((2, 1, 0)), xs))


def test_the_buffer_is_block_ram_and_no_dsp(tmp_path):
    """Synthesized alone for the iCE40 (Yosys): the ping-pong memory of a 16x16x8 tensor
    (2 x 2048 bytes) is 8 SB_RAM40_4K of 512 bytes, and there is no SB_MAC16, as
    :func:`tfl2rtl.boards.fit.stage_dsp_estimate` counts (the address steps are
    additions of constants)."""
    from tfl2rtl.boards.board import BOARDS
    from tfl2rtl.boards.fit import stage_dsp_estimate
    from tfl2rtl.boards.postsynth import synthesize_netlist
    from tfl2rtl.fold import Fold
    from tfl2rtl.hw.network import StagePlan
    from tfl2rtl.hw.stages import TransposeStage

    node = transpose_node((0, 3, 1, 2))
    stage = StagePlan(TransposeStage(1, node, [(1, 16, 16, 8)], (1, 8, 16, 16)), Fold(1, 1))
    component = stage.build()
    assert component.memory_bytes == 4096
    netlist = synthesize_netlist(component, "ice40", tmp_path).read_text()
    assert netlist.count("SB_RAM40_4K ") == 4096 * 8 // 4096
    assert netlist.count("SB_MAC16 ") == stage_dsp_estimate(stage, BOARDS["icebreaker"]) == 0
