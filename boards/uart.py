"""A UART receiver and transmitter: 8 data bits, no parity, one stop bit (8N1), least
significant bit first, ``divisor`` clock cycles per bit."""


from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tfl2rtl.errors import Tfl2RtlError

__all__ = ["UARTReceiver", "UARTTransmitter", "divisor_for"]

#: The fewest clock cycles per bit: the receiver synchronises ``rx`` through two
#: registers and samples in the middle of a bit.
MIN_DIVISOR = 4


def divisor_for(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``; refuses a rate more than 2% off
    (a UART frame of 10 bits tolerates about 4% between both ends)."""
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise Tfl2RtlError(f"{baud} baud needs at least {MIN_DIVISOR} cycles per bit; a "
                           f"{clock_hz / 1e6:g} MHz clock gives {clock_hz / baud:.2f}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise Tfl2RtlError(f"{baud} baud from a {clock_hz / 1e6:g} MHz clock is "
                           f"{100 * error:.1f}% off; choose another baud rate")
    return divisor


def _check(divisor: int) -> None:
    if divisor < MIN_DIVISOR:
        raise Tfl2RtlError(f"a UART needs at least {MIN_DIVISOR} clock cycles per bit, "
                           f"not {divisor}")


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

    def __init__(self, divisor: int):
        _check(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]

        timer = Signal(range(self.divisor))
        bits = Signal(range(10))
        shift = Signal(9)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):  # a glitch, not a start bit
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(self.divisor - 1),
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

    def __init__(self, divisor: int):
        _check(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))  # bits still to send, the one on the line included
        shift = Signal(10, init=0x3FF)

        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(bits == 0)]
        with m.If(self.i.valid & self.i.ready):
            # start bit, data, stop bit
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         bits.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
        return m
