# amaranth: UnusedElaboratable=no
# (Amaranth's own convention for tests of constructors that raise: the half-built
# component would otherwise warn when it is garbage collected.)
"""The int8 and int16 softmax units against the golden kernels (themselves checked
against TFLite Micro in test_kernels_softmax.py), in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal, signed

from conftest import TEST_MODELS
from streams import STALL_MODES, get, put, simulate
from tfl2rtl import fixedpoint as fp
from tfl2rtl import ir
from tfl2rtl.api import load
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.softmax import (
    MAX_ROW,
    MAX_ROW_INT16,
    NORMALIZE_CYCLES,
    SoftmaxInt16Unit,
    SoftmaxUnit,
    doubling_high_multiply,
    exp_table,
    multiply_cycles,
    saturating_shift_left,
)
from tfl2rtl.kernels.softmax import (
    softmax_int8,
    softmax_int16,
    softmax_int16_params,
    softmax_params,
)


def softmax_node(beta: float, scale: float) -> ir.Softmax:
    multiplier, left_shift, diff_min = softmax_params(beta, scale)
    return ir.Softmax(inputs=("x",), outputs=("y",), beta=beta, input_scale=scale,
                      input_multiplier=multiplier, input_left_shift=left_shift,
                      diff_min=diff_min)


def mlp_softmax() -> ir.Softmax:
    graph = load(TEST_MODELS / "mlp_uint8.tflite")
    return next(node for node in graph.nodes if isinstance(node, ir.Softmax))


def golden(node, rows):
    return softmax_int8(rows, node.input_multiplier, node.input_left_shift, node.diff_min)


def softmax_rows(rng, count, row):
    """Uniform rows, rows near the maximum (differences around diff_min), all equal, a
    single peak over -128, two-valued rows, and the full int8 range."""
    kinds = [
        lambda: rng.integers(-128, 128, row),
        lambda: 127 - rng.integers(0, 40, row),
        lambda: np.full(row, rng.integers(-128, 128)),
        lambda: np.where(np.arange(row) == rng.integers(row), rng.integers(-127, 128), -128),
        lambda: rng.choice([int(rng.integers(-128, 128)), int(rng.integers(-128, 128))], row),
        lambda: np.resize([127, -128], row),
    ]
    return np.stack([kinds[r % len(kinds)]() for r in range(count)]).astype(np.int8)


def run_softmax(dut, rows, mode, seed=0, cycles=None):
    """``rows`` through ``dut``, one element a beat; the results in ``rows``' dtype."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    results = []

    async def producer(ctx):
        await put(ctx, dut.i, [[int(v)] for v in rows.reshape(-1)], in_timing)

    async def consumer(ctx):
        payloads = await get(ctx, dut.o, rows.size, out_timing, cycles=cycles)
        results.extend(payload[0] for payload in payloads)

    # (the stalls at most double the cycles; the default deadline is too short for long rows)
    simulate(dut, producer, consumer, deadline=max(100_000, 3 * dut.cycles_per_row * len(rows)))
    return np.array(results, dtype=rows.dtype).reshape(rows.shape)


NODES = {
    "mlp": mlp_softmax,
    "scale 0.1": lambda: softmax_node(1.0, 0.1),
    "scale 1/16": lambda: softmax_node(1.0, 1 / 16),  # every difference counts
    "scale 0.5": lambda: softmax_node(1.0, 0.5),  # differences below -64 do not
    "beta 64": lambda: softmax_node(64.0, 1.0),  # diff_min near zero
    "scale 1e-4": lambda: softmax_node(1.0, 1e-4),  # exponentials all near 1
}


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("name", NODES)
def test_matches_golden(name, mode):
    node = NODES[name]()
    rows = softmax_rows(np.random.default_rng(len(name)), 36, 10)
    got = run_softmax(SoftmaxUnit(node, 10), rows, mode, seed=3)
    np.testing.assert_array_equal(got, golden(node, rows))


@pytest.mark.parametrize("name", NODES)
def test_matches_golden_with_the_product_in_logic(name):
    """The multiplies by shift and add (no DSP block), under stalls and backpressure."""
    node = NODES[name]()
    rows = softmax_rows(np.random.default_rng(len(name)), 12, 10)
    dut = SoftmaxUnit(node, 10, products_in_logic=True)
    np.testing.assert_array_equal(run_softmax(dut, rows, "stalls", seed=3), golden(node, rows))


@pytest.mark.parametrize("row", [1, 2, 3, 37])
def test_row_lengths(row):
    node = softmax_node(1.0, 0.05)
    rows = softmax_rows(np.random.default_rng(row), 12, row)
    np.testing.assert_array_equal(run_softmax(SoftmaxUnit(node, row), rows, "stalls"),
                                  golden(node, rows))


def test_longest_row():
    # 511 equal values sum to 511.0 in Q12.19: the largest sum, output exponent 31.
    node = softmax_node(1.0, 1e-4)
    rows = np.stack([np.zeros(MAX_ROW), np.resize([3, 2, 1, 0], MAX_ROW)]).astype(np.int8)
    np.testing.assert_array_equal(run_softmax(SoftmaxUnit(node, MAX_ROW), rows, "streaming"),
                                  golden(node, rows))


def test_every_normalization_shift():
    """Rows whose exponentials sum to exactly k (k copies of the maximum, the rest too far
    below it to count) for k at both ends of every power-of-two range 1 .. 511: the sum is
    normalized by each shift count 0 .. NORMALIZE_CYCLES, and by the output exponent
    that goes with it."""
    node = softmax_node(1.0, 0.5)  # differences below -64 do not count
    counts = sorted({k for j in range(NORMALIZE_CYCLES + 1) for k in (2 ** j, 2 ** (j + 1) - 1)
                     if k <= MAX_ROW})
    assert {NORMALIZE_CYCLES - k.bit_length() + 1 for k in counts} == set(
        range(NORMALIZE_CYCLES + 1))
    rows = np.full((len(counts), MAX_ROW), -128, np.int8)
    for row, k in zip(rows, counts, strict=True):
        row[np.random.default_rng(k).permutation(MAX_ROW)[:k]] = 127
    np.testing.assert_array_equal(run_softmax(SoftmaxUnit(node, MAX_ROW), rows, "streaming"),
                                  golden(node, rows))


def test_exp_table():
    node = softmax_node(1.0, 0.5)  # diff_min = -31
    table = exp_table(node)
    assert table[0] == 2**31 - 1  # exp(0) saturates, as in gemmlowp
    assert np.all(np.diff(table) <= 0)
    assert np.all(table[:-node.diff_min + 1] > 0) and np.all(table[-node.diff_min + 1:] == 0)


@pytest.mark.parametrize("products_in_logic", [False, True])
def test_cycles_per_row(products_in_logic):
    node = mlp_softmax()
    dut = SoftmaxUnit(node, 10, products_in_logic=products_in_logic)
    rows = softmax_rows(np.random.default_rng(0), 8, 10)
    cycles = []
    run_softmax(dut, rows, "streaming", cycles=cycles)
    assert set(np.diff(cycles[9::10])) == {dut.cycles_per_row}


@pytest.mark.parametrize("row", [0, MAX_ROW + 1])
def test_rejects_rows_it_cannot_take(row):
    with pytest.raises(Tfl2RtlError, match=rf"^SOFTMAX over rows of {row} elements: the "
                                           rf"hardware takes 1 to {MAX_ROW}"):
        SoftmaxUnit(softmax_node(1.0, 0.1), row)


# --- int16 (16x8 models) -----------------------------------------------------------------


def softmax_int16_node(beta: float, scale: float) -> ir.Softmax:
    multiplier, left_shift = softmax_int16_params(beta, scale)
    return ir.Softmax(inputs=("x",), outputs=("y",), beta=beta, input_scale=scale,
                      input_multiplier=multiplier, input_left_shift=left_shift, diff_min=0)


def int16_rows(rng, count, row):
    """Uniform rows, rows near the maximum, all equal, a single peak over -32768,
    two-valued rows, and the full int16 range."""
    kinds = [
        lambda: rng.integers(-32768, 32768, row),
        lambda: 32767 - rng.integers(0, 3000, row),
        lambda: np.full(row, rng.integers(-32768, 32768)),
        lambda: np.where(np.arange(row) == rng.integers(row), rng.integers(-32767, 32768),
                         -32768),
        lambda: rng.choice([int(rng.integers(-32768, 32768)), int(rng.integers(-32768, 32768))],
                           row),
        lambda: np.resize([32767, -32768], row),
    ]
    return np.stack([kinds[r % len(kinds)]() for r in range(count)]).astype(np.int16)


INT16_NODES = {
    "mlp_int16x8": lambda: next(n for n in load(TEST_MODELS / "mlp_int16x8.tflite").nodes
                                if isinstance(n, ir.Softmax)),
    "scale 1e-3": lambda: softmax_int16_node(1.0, 1e-3),  # differences beyond the table
    "scale 1.5e-4": lambda: softmax_int16_node(1.0, 10 / 65535),  # the table's own scale
    "scale 3e-5": lambda: softmax_int16_node(1.0, 3.0e-5),  # a right shift
    "beta 0.3": lambda: softmax_int16_node(0.3, 2e-3),
}


@pytest.mark.parametrize("mode", STALL_MODES)
@pytest.mark.parametrize("name", INT16_NODES)
def test_int16_matches_golden(name, mode):
    node = INT16_NODES[name]()
    rows = int16_rows(np.random.default_rng(len(name)), 24, 10)
    got = run_softmax(SoftmaxInt16Unit(node, 10), rows, mode, seed=5)
    expected = softmax_int16(rows, node.input_multiplier, node.input_left_shift)
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 10


@pytest.mark.parametrize("row", [1, 3, 40])
def test_int16_row_lengths_and_cycles(row):
    node = softmax_int16_node(1.0, 1e-3)
    dut = SoftmaxInt16Unit(node, row)
    rows = int16_rows(np.random.default_rng(row), 6, row)
    cycles = []
    got = run_softmax(dut, rows, "streaming", cycles=cycles)
    np.testing.assert_array_equal(
        got, softmax_int16(rows, node.input_multiplier, node.input_left_shift))
    # The first output of row r + 1 comes cycles_per_row after the first of row r.
    firsts = cycles[::row]
    assert np.all(np.diff(firsts) == dut.cycles_per_row)
    assert dut.cycles_per_row == SoftmaxInt16Unit.cycles_for_row(row)


@pytest.mark.parametrize("row", [0, MAX_ROW_INT16 + 1])
def test_int16_rejects_rows_it_cannot_take(row):
    with pytest.raises(Tfl2RtlError, match="int16 SOFTMAX over rows of"):
        SoftmaxInt16Unit(softmax_int16_node(1.0, 1e-3), row)


class _Multiplier(Elaboratable):
    """:func:`doubling_high_multiply` of two operand signals, on its own."""

    def __init__(self, in_logic=False):
        self.in_logic = in_logic
        self.a = Signal(signed(32))
        self.b = Signal(signed(32))
        self.start = Signal()
        self.high = None

    def elaborate(self, platform):
        m = Module()
        self.high = doubling_high_multiply(m, self.a, self.b, self.start, self.in_logic)
        return m


@pytest.mark.parametrize("in_logic", [False, True], ids=["dsp", "logic"])
def test_doubling_high_multiply_at_the_ends_and_around_every_rounding_step(in_logic):
    """The multiply (four 16x16 products on one multiplier, or shift and add in logic)
    against :func:`tfl2rtl.fixedpoint.saturating_rounding_doubling_high_mul`, its
    result :func:`multiply_cycles` after the operands and held: every pair of int32's
    ends and their neighbours (INT32_MIN squared saturates), products just either side
    of each rounding step (low 31 bits at 2**30 - 1, 2**30, 2**30 + 1, for both signs)
    and random pairs."""
    ends = [fp.INT32_MIN, fp.INT32_MIN + 1, -(1 << 16), -65535, -2, -1, 0, 1, 2, 65535,
            1 << 16, (1 << 30), fp.INT32_MAX - 1, fp.INT32_MAX]
    pairs = [(a, b) for a in ends for b in ends]
    rng = np.random.default_rng(0)
    for _ in range(300):  # odd a, and b with a * b = 2**30 + step modulo 2**31
        a = int(rng.integers(-(1 << 20), 1 << 20)) | 1
        for step in (-1, 0, 1):
            b = ((1 << 30) + step) * pow(a, -1, 1 << 31) % (1 << 31)
            pairs += [(a, b), (a, b - (1 << 31))]
    pairs += [tuple(int(v) for v in rng.integers(fp.INT32_MIN, fp.INT32_MAX, 2,
                                                 endpoint=True)) for _ in range(2000)]
    dut = _Multiplier(in_logic)
    cycles = multiply_cycles(in_logic)
    got = []

    async def bench(ctx):
        # One multiply at a time: operands with start, then multiply_cycles cycles to
        # the result (a cycle more, with start low, where it must hold).
        for a, b in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.a, 0)
            ctx.set(dut.b, 0)
            await ctx.tick().repeat(cycles - 1)
            got.append(ctx.get(dut.high))
            await ctx.tick()
            assert ctx.get(dut.high) == got[-1]

    simulate(dut, bench, deadline=(cycles + 2) * len(pairs) + 100)
    expected = [int(fp.saturating_rounding_doubling_high_mul(a, b)) for a, b in pairs]
    assert got == expected
    assert fp.INT32_MAX in got  # the saturating case


class _ShiftLeft(Elaboratable):
    """:func:`saturating_shift_left` of one int32 signal by every exponent 1 .. 30."""

    def __init__(self):
        self.value = Signal(signed(32))
        self.shifted = {exponent: Signal(signed(32)) for exponent in range(1, 31)}

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()  # (for the test helper's clock; nothing is clocked)
        m.d.comb += [out.eq(saturating_shift_left(self.value, exponent))
                     for exponent, out in self.shifted.items()]
        return m


def test_saturating_shift_left_at_every_threshold():
    """The bit-test form against :func:`tfl2rtl.fixedpoint.saturating_rounding_multiply_by_pot`
    for every exponent: each power of two of either sign and its neighbours (so every
    exponent's thresholds, ``+-2**(31 - exponent)`` and the values either side), the
    int32 ends and random values."""
    values = {fp.INT32_MIN, fp.INT32_MAX}
    for k in range(31):
        for v in ((1 << k) - 1, 1 << k, (1 << k) + 1):
            values |= {v, -v}
    rng = np.random.default_rng(0)
    values |= {int(v) for v in rng.integers(fp.INT32_MIN, fp.INT32_MAX, 200, endpoint=True)}
    values = sorted(v for v in values if fp.INT32_MIN <= v <= fp.INT32_MAX)
    dut = _ShiftLeft()
    got = {exponent: [] for exponent in dut.shifted}

    async def bench(ctx):
        for v in values:
            ctx.set(dut.value, v)
            for exponent, out in dut.shifted.items():
                got[exponent].append(ctx.get(out))

    simulate(dut, bench, deadline=10)
    saturated = 0
    for exponent, results in got.items():
        expected = fp.saturating_rounding_multiply_by_pot(np.array(values), exponent)
        np.testing.assert_array_equal(np.array(results), expected, err_msg=f"<< {exponent}")
        saturated += int(np.sum(np.abs(expected) >= fp.INT32_MAX))
    assert saturated > 0
