"""The pipeline helpers of :mod:`tfl2rtl.hw.pipeline`: the product in logic, over every
pair of operands the units give it (int8 activations by int8 or 9-bit weights)."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Const, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from conftest import ecp5_mapped
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


class _Counter(wiring.Component):
    """A part for a reset tree: counts its cycles out of reset."""

    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        return m


class _Tree(wiring.Component):
    """``parts`` counters, each behind a leaf of a :class:`pipeline.ResetTree` of
    ``fanout``, and one leaf as an output."""

    def __init__(self, parts: int, fanout: int):
        self.parts = [_Counter() for _ in range(parts)]
        self.fanout = fanout
        super().__init__({"held": Out(1), "counts": Out(8).array(parts)})

    def elaborate(self, platform):
        m = Module()
        tree = pipeline.ResetTree(m, self.fanout)
        m.d.comb += self.held.eq(tree.leaf("held"))
        for k, part in enumerate(self.parts):
            tree.add(f"part_{k}", part)
            m.d.comb += self.counts[k].eq(part.count)
        self.depth = tree.build()
        return m


@pytest.mark.parametrize("parts, fanout, depth", [(2, 8, 2), (20, 3, 4), (63, 8, 3)])
def test_reset_tree_releases_every_part_on_one_edge(parts, fanout, depth):
    """Every leaf is ``depth`` registers from the reset (levels of at most ``fanout``,
    then the root):
    it falls that many edges after the reset does, and every part's count starts
    together (in Amaranth's simulator a part sees its leaf one delta early: see
    :class:`pipeline.ResetTree`)."""
    dut = _Tree(parts, fanout)
    m = Module()
    m.domains.sync = domain = ClockDomain()
    m.submodules.dut = dut
    held, counts = [], []

    async def bench(ctx):
        ctx.set(domain.rst, 1)
        await ctx.delay(3e-6)  # three edges in reset (``tick`` stops at a reset)
        ctx.set(domain.rst, 0)
        for _ in range(depth + 3):
            held.append(ctx.get(dut.held))
            counts.append({ctx.get(count) for count in dut.counts})
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert dut.depth == depth
    assert held == [1] * depth + [0] * 3
    assert all(len(values) == 1 for values in counts)  # every part on the same edge
    assert [values.pop() for values in counts][-1] > 0


def test_reset_tree_nodes_survive_synthesis(tmp_path):
    """After Yosys' ECP5 mapping every node and leaf of the tree is a flip-flop of its
    own (none merged: each loads under its own enable), and the reset port reaches only
    the root."""
    from amaranth.back import verilog

    dut = _Tree(20, 3)
    module, names = ecp5_mapped(verilog.convert(dut, name="top"), tmp_path)
    flip_flops = [cell for cell in module["cells"].values() if cell["type"] == "TRELLIS_FF"]

    def tree_register(outputs) -> bool:
        return any(name.startswith("reset_") or name == "held"
                   or (name.startswith("part_") and name.endswith("_reset"))
                   for name in outputs)

    nodes = [names[cell["connections"]["Q"][0]] for cell in flip_flops]
    # 21 leaves (20 parts and held), 7 nodes above them, 3 above those, and the root.
    assert len([outputs for outputs in nodes if tree_register(outputs)]) == 21 + 7 + 3 + 1
    rst = module["ports"]["rst"]["bits"][0]
    reached = [names[cell["connections"]["Q"][0]] for cell in flip_flops
               if any(rst in bits for port, bits in cell["connections"].items()
                      if cell["port_directions"][port] == "input")]
    assert len(reached) == 1 and "reset_root" in reached[0]
