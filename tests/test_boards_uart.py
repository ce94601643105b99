# amaranth: UnusedElaboratable=no
# (components built only to check their constructors are never elaborated)
"""The UART: the transmitter's line into the receiver, and the receiver against bits
driven by the test."""

import random
from fractions import Fraction

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from streams import get, put
from tfl2rtl.boards.uart import UARTReceiver, UARTTransmitter, divisor_for
from tfl2rtl.errors import Tfl2RtlError

DIVISORS = [4, 7, 16, Fraction(17, 4), Fraction(21, 2), Fraction(127, 16)]


@pytest.mark.parametrize("divisor", DIVISORS, ids=str)
def test_transmitter_into_receiver(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [random.Random(str(divisor)).randrange(256) for _ in range(40)] + [0, 255, 0x55]
    got = []
    overruns = []

    async def producer(ctx):
        await put(ctx, tx.i, data)

    async def consumer(ctx):
        got.extend(await get(ctx, rx.o, len(data)))

    async def watch(ctx):
        async for _, _, overrun in ctx.tick().sample(rx.overrun):
            overruns.append(overrun)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert got == data and not any(overruns)


@pytest.mark.parametrize("divisor", DIVISORS, ids=str)
def test_transmitter_bit_edges_keep_within_a_cycle_of_the_exact_times(divisor):
    """Every edge of a byte's ten bits falls within one cycle of ``k * divisor`` after its
    start bit's (a fractional divisor: bits of the whole part and of one cycle more)."""
    dut = UARTTransmitter(divisor)
    data = [0x55, 0xAA, 0x0F]  # an edge at every bit, then fewer
    edges = []

    async def producer(ctx):
        await put(ctx, dut.i, data)

    async def watch(ctx):
        cycle, last = 0, 1
        async for _, _, tx in ctx.tick().sample(dut.tx):
            if tx != last:
                edges.append(cycle)
            last, cycle = tx, cycle + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(watch, background=True)
    sim.run_until(1e-6 * (len(data) * 10 * float(divisor) + 40))
    # 0x55: start 0, then 1 0 1 0 1 0 1 0, stop 1: an edge at each of bits 1 .. 9.
    start = edges[0]
    for k, edge in enumerate(edges[1:10], start=1):
        assert abs(edge - start - k * divisor) < 1, (k, edge - start)
    assert len(edges) > 10


def receiver_sink(dut, got, framing):
    """A background testbench that keeps ``dut.o`` ready and records each byte in
    ``got`` and the framing-error flag of every cycle in ``framing``."""
    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, payload, error in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.framing_error):
            if valid:
                got.append(payload)
            framing.append(error)
    return sink


def test_receiver_samples_mid_bit_and_ignores_glitches():
    divisor = 8
    dut = UARTReceiver(divisor)
    got, framing = [], []

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)  # a glitch shorter than half a bit
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(20)
        jitter = random.Random(1)
        for byte, stop in ((0xA5, 1), (0x3C, 0), (0x01, 1)):
            late = 0
            for bit in [0, *((byte >> k) & 1 for k in range(8)), stop]:
                ctx.set(dut.rx, bit)
                # each edge up to a cycle early or late (the receiver samples the middle)
                edge = jitter.choice([-1, 0, 1])
                await ctx.tick().repeat(divisor + edge - late)
                late = edge
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(3 * divisor)

    sink = receiver_sink(dut, got, framing)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(sink, background=True)
    sim.run()
    assert got == [0xA5, 0x01]  # the byte with a low stop bit is dropped
    assert sum(framing) == 1


def test_divisor():
    # To the nearest 1/16 of a cycle; whole where that is exact.
    assert divisor_for(12e6, 115200) == Fraction(1667, 16)  # 104.17
    assert divisor_for(30e6, 3_000_000) == 10
    assert divisor_for(31.5e6, 3_000_000) == Fraction(21, 2)
    with pytest.raises(Tfl2RtlError, match="needs at least 4 cycles per bit"):
        divisor_for(12e6, 4_000_000)
    with pytest.raises(Tfl2RtlError, match="at least 4 clock cycles per bit, not 3"):
        UARTTransmitter(3)
    with pytest.raises(Tfl2RtlError, match="a multiple of 1/16 cycle, not 10.3"):
        UARTReceiver(10.3)
    assert isinstance(UARTReceiver(4), wiring.Component)


@pytest.mark.parametrize("clock_mhz", [24, 30, 31.5, 32.25, 99])
@pytest.mark.parametrize("host_error", [-0.025, 0.0, 0.025])
def test_receiver_at_3_mbaud_with_clock_error_on_both_sides(clock_mhz, host_error):
    """The receiver at PLL clocks a board build may choose for 3 Mbaud (the divisor
    rounded to 1/16 of a cycle: the FPGA's side of the error), fed by a host
    whose bit time is off by ``host_error`` as well, its edges falling wherever that
    puts them between clock edges; every byte arrives and none is a framing error."""
    baud = 3_000_000
    divisor = divisor_for(clock_mhz * 1e6, baud)
    bit_cycles = clock_mhz * 1e6 / baud * (1 + host_error)  # the host's bit, in cycles
    dut = UARTReceiver(divisor)
    data = [random.Random(clock_mhz).randrange(256) for _ in range(30)] + [0x00, 0xFF, 0x55]
    got, framing = [], []

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(7)
        now = 0.0  # the host's time, in cycles: each edge at the next whole cycle
        cycle = 0
        for byte in data:
            for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
                ctx.set(dut.rx, bit)
                now += bit_cycles
                await ctx.tick().repeat(int(now) - cycle)
                cycle = int(now)

    sink = receiver_sink(dut, got, framing)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(sink, background=True)
    sim.run_until(1e-6 * (len(data) * 10 * bit_cycles + 20 * float(divisor) + 20))
    assert got == data and not any(framing)
