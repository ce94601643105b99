"""The pipeline helpers of :mod:`tfl2rtl.hw.pipeline`: the product in logic, over every
pair of operands the units give it (int8 activations by int8 or 9-bit weights)."""

import numpy as np
import pytest
from amaranth.hdl import Const, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from tfl2rtl.hw import pipeline


class _Products(wiring.Component):
    """``lanes`` logic products of ``a[k]`` by one shared ``b``, all enabled."""

    def __init__(self, lanes: int, b_bits: int):
        self.lanes, self.b_bits = lanes, b_bits
        super().__init__({
            "a": In(signed(8)).array(lanes),
            "b": In(signed(b_bits)),
            "p": Out(signed(8 + b_bits)).array(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        a_reg = [pipeline.register(m, Const(1), a, f"a_{k}") for k, a in enumerate(self.a)]
        b_reg = pipeline.register(m, Const(1), self.b, "b_r")
        for k in range(self.lanes):
            m.d.comb += self.p[k].eq(
                pipeline.logic_product(m, Const(1), a_reg[k], b_reg, f"product_{k}"))
        return m


@pytest.mark.parametrize("b_bits", [8, 9])
def test_logic_product_is_exact_for_every_pair(b_bits):
    """Every int8 ``a`` (one lane each) by every ``b_bits``-bit ``b`` (one per cycle),
    checked three edges later (operand, half-sum and product registers)."""
    a_values = np.arange(-128, 128)
    b_values = np.arange(-(1 << (b_bits - 1)), 1 << (b_bits - 1))
    dut = _Products(len(a_values), b_bits)
    got = []

    async def bench(ctx):
        for k, a in enumerate(a_values):
            ctx.set(dut.a[k], int(a))
        for step in range(len(b_values) + 3):
            if step < len(b_values):
                ctx.set(dut.b, int(b_values[step]))
            await ctx.tick()
            if step >= 2:
                got.append([ctx.get(dut.p[k]) for k in range(len(a_values))])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(got[:len(b_values)])  # row: b, column: a
    np.testing.assert_array_equal(got, np.outer(b_values, a_values))
