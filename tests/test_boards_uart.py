# amaranth: UnusedElaboratable=no
# (components built only to check their constructors are never elaborated)
"""The UART: the transmitter's line into the receiver, and the receiver against bits
driven by the test."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from streams import get, put
from tfl2rtl.boards.uart import UARTReceiver, UARTTransmitter, divisor_for
from tfl2rtl.errors import Tfl2RtlError


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_transmitter_into_receiver(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [random.Random(divisor).randrange(256) for _ in range(40)] + [0, 255, 0x55]
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
    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(25e6, 115200) == 217
    with pytest.raises(Tfl2RtlError, match="needs at least 4 cycles per bit"):
        divisor_for(12e6, 4_000_000)
    with pytest.raises(Tfl2RtlError, match="% off; choose another baud rate"):
        divisor_for(12e6, 2_500_000)
    with pytest.raises(Tfl2RtlError, match="at least 4 clock cycles per bit, not 3"):
        UARTTransmitter(3)
    assert isinstance(UARTReceiver(4), wiring.Component)


@pytest.mark.parametrize("clock_mhz", [24, 30, 99])
@pytest.mark.parametrize("host_error", [-0.025, 0.0, 0.025])
def test_receiver_at_3_mbaud_with_clock_error_on_both_sides(clock_mhz, host_error):
    """The receiver at the PLL clocks the board builds choose for 3 Mbaud (the divisor
    rounded to a whole number of cycles: the FPGA's side of the error), fed by a host
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
    sim.run_until(1e-6 * (len(data) * 10 * bit_cycles + 20 * divisor + 20))
    assert got == data and not any(framing)
