"""Reading a SPI NOR flash (Winbond W25Q128JV and its kind) as a byte stream."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError

__all__ = ["QspiReader", "READ_COMMANDS", "ADDRESS_BITS", "DUMMY_CLOCKS", "CS_HIGH_CYCLES"]

#: The read command for each data width (lines that carry data): Fast Read (0x0B), Fast
#: Read Dual Output (0x3B), Fast Read Quad Output (0x6B).  All three send the command and
#: a 24-bit address on IO0, then :data:`DUMMY_CLOCKS` dummy clocks.
READ_COMMANDS = {1: 0x0B, 2: 0x3B, 4: 0x6B}
#: Flash byte addresses are 24 bits wide (16 MiB).
ADDRESS_BITS = 24
#: Dummy clocks between the address and the data of the fast reads.
DUMMY_CLOCKS = 8
#: Clock cycles CS# stays high between two transactions (tSHSL, at least 10 ns for reads
#: and 50 ns after a write: two cycles of a clock up to 40 MHz).
CS_HIGH_CYCLES = 2

RELEASE_POWER_DOWN = 0xAB
VOLATILE_SR_WRITE_ENABLE = 0x50
WRITE_STATUS_REGISTER_2 = 0x31
QUAD_ENABLE = 0x02  # Status Register-2 with QE (bit 1) set


class QspiReader(wiring.Component):
    """Stream bytes ``base .. base + length - 1`` of a SPI NOR flash, in address order,
    over and over.

    After reset the reader wakes the flash and, for ``width=4``, sets its Quad Enable bit;
    then it reads the ``length`` bytes with one read command (:data:`READ_COMMANDS`) per
    pass, forever: CS# low, the command and the 24-bit address MSB first on IO0,
    :data:`DUMMY_CLOCKS` dummy clocks, the bytes, CS# high for :data:`CS_HIGH_CYCLES`
    cycles, and again from ``base``.

    Start-up, each step its own transaction (CS# high at least :data:`CS_HIGH_CYCLES`
    cycles between two):

    1. 0xAB (Release Power-down), then CS# high for ``wake_cycles`` cycles (tRES1 is 3 us:
       ``wake_cycles`` >= 3 us times the clock frequency).
    2. ``width=4`` only: 0x50 (Write Enable for Volatile Status Register), then 0x31 0x02
       (Write Status Register-2 with QE=1; volatile, so the flash's non-volatile bits
       never wear).

    Bus timing: SPI mode 0 with SCK at half the clock.  SCK is a register; each SCK clock
    is two cycles, low then high.  The reader changes IO0 and CS# only at the clock edge
    that drives SCK low (or while SCK stays low), so the flash samples them on SCK's
    rising edge a cycle later; it samples ``io_i`` at the clock edge at which it drives
    SCK low again, the end of SCK's high phase, half an SCK period after the flash changed
    its outputs on the falling edge before.  Data comes on IO1 (DO) for ``width=1``; on
    IO1:IO0 for ``width=2`` (bits 7 and 6 first, IO1 the higher); on IO3..IO0 for
    ``width=4`` (high nibble first, IO3 its MSB).

    While the reader drives (command, address, status write), ``io_oe`` is 1 and IO1 (when
    not carrying a bit), IO2 (WP#) and IO3 (HOLD#) are high, as they must be while QE=0.
    In the dummy clocks, the data and while CS# is high, ``io_oe`` is 0.

    Backpressure: the byte just read waits on ``o`` in a register.  When the next byte
    is one SCK clock from complete and that register is still full, SCK stays low (SPI
    is static) until ``o`` takes the waiting byte: no byte is lost or read twice.

    Parameters
    ----------
    base : int
        Flash byte address of the first byte; ``base + length <= 2**24``.
    length : int
        Bytes per pass, at least 1.
    width : int
        Data lines: 1, 2 or 4.
    wake_cycles : int
        Clock cycles CS# stays high after 0xAB, at least 1 (at least :data:`CS_HIGH_CYCLES`
        are kept in any case).

    Members
    -------
    o : ``Out(stream.Signature(unsigned(8)))``
        The bytes, in address order, pass after pass.
    sck : ``Out(1)``
        The SPI clock, a register; low while CS# is high.
    cs_n : ``Out(1, init=1)``
        Chip select, active low, a register.
    io_o : ``Out(4)``
        What the reader drives on IO0..IO3 (bit ``k`` on IOk) while ``io_oe`` is 1.
    io_oe : ``Out(1)``
        Output enable of all four lines (as amaranth-boards' ``spi_flash_4x`` ``dq``).
    io_i : ``In(4)``
        IO0..IO3 as read back from the pins.

    Attributes
    ----------
    command : int
        The read command (:data:`READ_COMMANDS`).
    cycles_per_byte : int
        ``2 * 8 // width``: clock cycles per byte at full rate (4, 8 or 16).
    pass_overhead : int
        Clock cycles of a pass not spent on data: CS# high, command, address and dummy
        clocks: ``CS_HIGH_CYCLES + 2 * (8 + 24 + DUMMY_CLOCKS)`` = 82.
    cycles_per_pass : int
        ``pass_overhead + length * cycles_per_byte``: the cycles between the first bytes of
        two passes while ``o`` is always ready (exactly; more with backpressure).
    startup_cycles : int
        The number of the clock edge after reset (edge 1 the first) at which CS# falls for
        the first read command, at most: the first byte is on ``o`` at most
        ``startup_cycles + pass_overhead + cycles_per_byte`` cycles after reset.

    The tests (``tests/test_hw_flash.py``) run each width against the flash model
    ``rtl_templates/spi_flash_model.sv`` with lengths of 1 to about 100 bytes, bases
    anywhere below ``2**24`` (up to the top byte), ``wake_cycles`` of 1 to 64, with and
    without random backpressure, and check ``cycles_per_pass`` exactly and
    ``startup_cycles`` as the bound it is.
    """

    def __init__(self, base: int, length: int, *, width: int = 4, wake_cycles: int = 512):
        if width not in READ_COMMANDS:
            raise Tfl2RtlError(f"a flash read width of {width} lines: the reader reads "
                               f"1, 2 or 4 lines")
        if length < 1:
            raise Tfl2RtlError(f"a flash read of {length} bytes: read 1 byte or more")
        if base < 0 or base + length > 1 << ADDRESS_BITS:
            raise Tfl2RtlError(
                f"flash bytes {base} to {base + length - 1}: the flash's 24-bit addresses "
                f"run from 0 to {(1 << ADDRESS_BITS) - 1}")
        if wake_cycles < 1:
            raise Tfl2RtlError(f"wake_cycles={wake_cycles}: wait 1 cycle or more after "
                               "releasing the flash from power-down")
        self.base = base
        self.length = length
        self.width = width
        self.wake_cycles = wake_cycles
        self.command = READ_COMMANDS[width]
        self.cycles_per_byte = self.cycles_per_byte_for(width)
        self.pass_overhead = self.pass_cycles_for(0, width)
        self.startup_cycles = CS_HIGH_CYCLES + sum(2 * bits + gap
                                                   for _, bits, gap in self._setup())
        super().__init__({
            "o": Out(stream.Signature(unsigned(8))),
            "sck": Out(1),
            "cs_n": Out(1, init=1),
            "io_o": Out(4),
            "io_oe": Out(1),
            "io_i": In(4),
        })

    @property
    def cycles_per_pass(self) -> int:
        return self.pass_cycles_for(self.length, self.width)

    @staticmethod
    def cycles_per_byte_for(width: int) -> int:
        """:attr:`cycles_per_byte` of a reader of ``width`` data lines."""
        return 2 * 8 // width

    @staticmethod
    def pass_cycles_for(length: int, width: int) -> int:
        """:attr:`cycles_per_pass` of a reader of ``length`` bytes on ``width`` lines
        (its :attr:`pass_overhead` for ``length`` 0), without building one."""
        return (CS_HIGH_CYCLES + 2 * (8 + ADDRESS_BITS + DUMMY_CLOCKS)
                + length * QspiReader.cycles_per_byte_for(width))

    def _setup(self) -> list[tuple[int, int, int]]:
        """The start-up transactions as ``(value, bits, CS# high cycles after)``."""
        wake = max(self.wake_cycles, CS_HIGH_CYCLES)
        steps = [(RELEASE_POWER_DOWN, 8, wake)]
        if self.width == 4:
            steps += [(VOLATILE_SR_WRITE_ENABLE, 8, CS_HIGH_CYCLES),
                      (WRITE_STATUS_REGISTER_2 << 8 | QUAD_ENABLE, 16, CS_HIGH_CYCLES)]
        return steps

    def elaborate(self, platform):
        m = Module()
        per_byte = 8 // self.width
        # The transactions; the last is the read (command and address, then its dummy
        # clocks and data), repeated forever.  CS# stays high for ``gap + 1`` cycles
        # before each.
        setup = self._setup()
        transactions = [(value, bits) for value, bits, _ in setup]
        transactions.append((self.command << ADDRESS_BITS | self.base, 8 + ADDRESS_BITS))
        read_step = len(transactions) - 1

        step = Signal(range(len(transactions)))
        shift = Signal(32)  # the bits to send, MSB first
        bits = Signal(range(32))  # SCK clocks left in this phase, minus one
        gap = Signal(range(max(after for _, _, after in setup)), init=CS_HIGH_CYCLES - 1)
        part = Signal(range(per_byte))  # the unit (bit, pair, nibble) of the byte in flight
        incoming = Signal(8)
        remaining = Signal(range(self.length))  # bytes after the one in flight
        sck, cs_n, valid, payload = self.sck, self.cs_n, self.o.valid, self.o.payload
        with m.If(valid & self.o.ready):
            m.d.sync += valid.eq(0)

        sample = self.io_i[1] if self.width == 1 else self.io_i[:self.width]
        assembled = Cat(sample, incoming)[:8]

        with m.FSM(init="GAP"):
            with m.State("GAP"):  # CS# high
                m.d.sync += gap.eq(gap - 1)
                with m.If(gap == 0):
                    m.d.sync += cs_n.eq(0)
                    with m.Switch(step):
                        for k, (value, count) in enumerate(transactions):
                            with m.Case(k):
                                m.d.sync += [shift.eq(value << (32 - count)),
                                             bits.eq(count - 1)]
                    m.next = "SEND"
            with m.State("SEND"):  # the reader drives: command, address, status byte
                m.d.comb += [self.io_oe.eq(1),
                             self.io_o.eq(Cat(shift[31], Const(0b111, 3)))]
                m.d.sync += sck.eq(~sck)
                with m.If(sck):
                    m.d.sync += [shift.eq(shift << 1), bits.eq(bits - 1)]
                    with m.If(bits == 0):
                        with m.If(step == read_step):
                            m.d.sync += bits.eq(DUMMY_CLOCKS - 1)
                            m.next = "DUMMY"
                        with m.Else():
                            m.d.sync += [cs_n.eq(1), step.eq(step + 1)]
                            with m.Switch(step):
                                for k, (_, _, after) in enumerate(setup):
                                    with m.Case(k):
                                        m.d.sync += gap.eq(after - 1)
                            m.next = "GAP"
            with m.State("DUMMY"):
                m.d.sync += sck.eq(~sck)
                with m.If(sck):
                    m.d.sync += bits.eq(bits - 1)
                    with m.If(bits == 0):
                        m.d.sync += [part.eq(0), remaining.eq(self.length - 1)]
                        m.next = "DATA"
            with m.State("DATA"):
                last_part = part == per_byte - 1
                with m.If(~sck):
                    # The clock that completes a byte starts only when the byte before
                    # has left (or leaves now).
                    with m.If(~last_part | ~valid | self.o.ready):
                        m.d.sync += sck.eq(1)
                with m.Else():
                    m.d.sync += [sck.eq(0), incoming.eq(assembled), part.eq(part + 1)]
                    with m.If(last_part):
                        m.d.sync += [payload.eq(assembled), valid.eq(1), part.eq(0),
                                     remaining.eq(remaining - 1)]
                        with m.If(remaining == 0):
                            m.d.sync += [cs_n.eq(1), gap.eq(CS_HIGH_CYCLES - 1)]
                            m.next = "GAP"
        return m
