"""A UART receiver and transmitter: 8 data bits, no parity, one stop bit (8N1), least
significant bit first, ``divisor`` clock cycles per bit: a whole number, or a multiple
of 1/:data:`DIVISOR_STEPS` (each bit then lasts the whole part of it or one cycle more,
so that the bits of a byte keep within a cycle of the exact times)."""

from fractions import Fraction
from numbers import Rational

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tfl2rtl.errors import Tfl2RtlError

__all__ = ["UARTReceiver", "UARTTransmitter", "divisor_for", "DIVISOR_STEPS", "MIN_DIVISOR"]

#: The fewest clock cycles per bit: the receiver synchronises ``rx`` through two
#: registers and samples in the middle of a bit.
MIN_DIVISOR = 4

#: A divisor's fraction of a cycle is a multiple of ``1 / DIVISOR_STEPS``: at 4 or more
#: cycles a bit the baud rate is then within 1/128 (0.8%) of any rate asked for.
DIVISOR_STEPS = 16


def divisor_for(clock_hz: float, baud: int) -> Fraction:
    """Clock cycles per bit for ``baud`` at ``clock_hz``, to the nearest
    1/:data:`DIVISOR_STEPS` of a cycle (a whole number where that is exact)."""
    divisor = Fraction(round(DIVISOR_STEPS * clock_hz / baud), DIVISOR_STEPS)
    if divisor < MIN_DIVISOR:
        raise Tfl2RtlError(f"{baud} baud needs at least {MIN_DIVISOR} cycles per bit; a "
                           f"{clock_hz / 1e6:g} MHz clock gives {clock_hz / baud:.2f}")
    return divisor


def _checked(divisor) -> tuple[int, int]:
    """``divisor``'s whole cycles and its fraction in 1/:data:`DIVISOR_STEPS` steps."""
    if not isinstance(divisor, Rational) or (divisor * DIVISOR_STEPS).denominator != 1:
        raise Tfl2RtlError(f"a UART divisor is a multiple of 1/{DIVISOR_STEPS} cycle, "
                           f"not {divisor}")
    if divisor < MIN_DIVISOR:
        raise Tfl2RtlError(f"a UART needs at least {MIN_DIVISOR} clock cycles per bit, "
                           f"not {divisor}")
    whole = int(divisor)
    return whole, int((divisor - whole) * DIVISOR_STEPS)


class _BitTimer:
    """A bit timer counting down from a bit's length in cycles.  ``reload(first)`` starts
    the next bit (the first of a byte with ``first``): ``whole`` cycles, or one more
    whenever the fraction ``steps / DIVISOR_STEPS`` accumulated since the byte began
    carries; ``load(cycles)`` starts a count of ``cycles``; ``tick()`` counts a cycle.
    ``done`` is high on the last cycle of a count: a register set beside the count (on
    the iCE40 the count's comparison with 0 into the receiver's enables was
    hello_world's critical path at 40.5 MHz, 22.5 ns)."""

    def __init__(self, whole: int, steps: int):
        assert whole >= 2  # a reloaded count is never done at once
        self.whole, self.steps = whole, steps
        self.count = Signal(range(whole + 1))
        self.done = Signal()
        self.fraction = Signal(range(DIVISOR_STEPS)) if steps else None

    def load(self, cycles: int) -> list:
        return [self.count.eq(cycles - 1), self.done.eq(cycles == 1)]

    def tick(self) -> list:
        return [self.count.eq(self.count - 1), self.done.eq(self.count == 1)]

    def reload(self, first: bool = False) -> list:
        if not self.steps:
            return self.load(self.whole)
        width = len(self.fraction)
        total = (0 if first else self.fraction) + Const(self.steps, width + 1)
        return [self.count.eq(self.whole - 1 + total[width]), self.done.eq(0),
                self.fraction.eq(total[:width])]


class UARTReceiver(wiring.Component):
    """Bytes from the serial line ``rx``.

    ``rx`` passes two synchronising registers.  A falling edge starts a byte; the start
    bit is checked half a bit later (a shorter glitch is ignored) and each data bit and
    the stop bit are sampled one bit time apart from there.  The byte is offered on
    ``o`` right after the middle of the stop bit and stays there until taken; a byte that
    completes while the previous one is still waiting replaces it and pulses
    ``overrun``.  A byte whose stop bit is low is dropped and pulses ``framing_error``.

    Members
    -------
    rx : ``In(1)``
    o : ``Out(stream.Signature(8))``
    overrun, framing_error : ``Out(1)``
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    overrun: Out(1)
    framing_error: Out(1)

    def __init__(self, divisor):
        self._whole, self._steps = _checked(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]

        timer = _BitTimer(self._whole, self._steps)
        bits = Signal(range(10))
        shift = Signal(9)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += timer.load(int(self.divisor / 2))
                    m.next = "start"
            with m.State("start"):
                with m.If(~timer.done):
                    m.d.sync += timer.tick()
                with m.Elif(line):  # a glitch, not a start bit
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [*timer.reload(first=True), bits.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(~timer.done):
                    m.d.sync += timer.tick()
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), *timer.reload(),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 8):  # that was the stop bit
                        m.next = "done"
            with m.State("done"):
                with m.If(shift[8]):
                    m.d.sync += [self.o.payload.eq(shift[:8]), self.o.valid.eq(1)]
                    m.d.comb += self.overrun.eq(self.o.valid & ~self.o.ready)
                with m.Else():
                    m.d.comb += self.framing_error.eq(1)
                m.next = "idle"
        return m


class UARTTransmitter(wiring.Component):
    """Bytes from ``i`` onto the serial line ``tx`` (high when idle); a byte is taken
    when the previous one's stop bit has been sent.

    Members
    -------
    i : ``In(stream.Signature(8))``
    tx : ``Out(1)``
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        self._whole, self._steps = _checked(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = _BitTimer(self._whole, self._steps)
        bits = Signal(range(11))  # bits still to send, the one on the line included
        shift = Signal(10, init=0x3FF)

        # ``idle`` (no bit left to send) is a register beside ``bits``, so that ``i.ready``
        # is one (its comparison was part of hello_world's critical path on the iCE40).
        idle = Signal(init=1)
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(idle)]
        with m.If(self.i.valid & idle):
            # start bit, data, stop bit
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         bits.eq(10), idle.eq(0), *timer.reload(first=True)]
        with m.Elif(~idle):
            with m.If(~timer.done):
                m.d.sync += timer.tick()
            with m.Else():
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits.eq(bits - 1),
                             idle.eq(bits == 1), *timer.reload()]
        return m
