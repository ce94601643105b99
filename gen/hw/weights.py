"""Weight memories that the host fills at run time, for devices whose large RAM cannot
be initialized by the bitstream (the iCE40 UP5K's SPRAM).

A loadable memory starts empty.  Bytes arrive on a shared load stream
(:data:`LOAD_LAYOUT`): each beat names the memory it is for (``memory``), and the first
beat of a run (``first``) names the row it starts at (``row``); the bytes of a row come
lowest byte first (the row's first weight), and consecutive rows follow without
repeating the row number.  :func:`load_payloads` cuts a memory's rows into such
runs for the host link.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError

__all__ = ["LOAD_LAYOUT", "SPRAM_HOOK", "SPRAM_WIDTH", "SPRAM_DEPTH", "LoadableMemory",
           "spram_tiles", "load_payloads", "loading_members"]

#: One byte of weights on its way into a loadable memory.
LOAD_LAYOUT = data.StructLayout({"memory": 8, "row": 16, "first": 1, "data": 8})

#: Platform attribute: when true, :class:`LoadableMemory` is built from iCE40
#: ``SB_SPRAM256KA`` blocks instead of an inferred memory.
SPRAM_HOOK = "weight_memory_spram"
#: An ``SB_SPRAM256KA`` holds 16384 words of 16 bits.
SPRAM_WIDTH = 16
SPRAM_DEPTH = 16384


def loading_members(memory_id: int | None) -> dict:
    """The ``load`` and ``loaded`` members of a component whose weights are loadable
    memory ``memory_id`` (none when it is None)."""
    if memory_id is None:
        return {}
    return {"load": In(stream.Signature(LOAD_LAYOUT, always_ready=True)),
            "loaded": Out(1)}


def _spram_grid(width: int, depth: int) -> tuple[int, int]:
    """``SB_SPRAM256KA`` blocks side by side, and banks of them, for a ``width``-bit,
    ``depth``-row memory."""
    return -(-width // SPRAM_WIDTH), -(-depth // SPRAM_DEPTH)


def spram_tiles(width: int, depth: int) -> int:
    """``SB_SPRAM256KA`` blocks for a ``width``-bit, ``depth``-row memory: ``ceil(width /
    16)`` side by side in each of ``ceil(depth / 16384)`` banks."""
    across, banks = _spram_grid(width, depth)
    return across * banks


def load_payloads(memory: int, rows: bytes, row_bytes: int, chunk: int = 1024):
    """The :data:`~tfl2rtl.boards.protocol.LOAD` payloads that put ``rows`` (``row_bytes``
    each, in row order) into loadable memory ``memory``: ``memory`` (1 byte), the first
    row (2, little endian), then whole rows, at most ``chunk`` bytes of them."""
    if len(rows) % row_bytes:
        raise Tfl2RtlError(f"{len(rows)} bytes are not whole rows of {row_bytes}")
    per = max(1, chunk // row_bytes)
    count = len(rows) // row_bytes
    for row in range(0, count, per):
        body = rows[row * row_bytes:min(count, row + per) * row_bytes]
        yield bytes([memory]) + row.to_bytes(2, "little") + body


class LoadableMemory(wiring.Component):
    """``depth`` rows of ``width`` bits, read like an Amaranth memory's read port and
    written from the load stream.

    A beat on ``load`` for this memory (``load.payload.memory == memory_id``) shifts its
    byte into a row register; after ``width / 8`` bytes the row is written, one cycle
    later, at the run's row (``load.payload.row`` of the beat with ``first``, then one
    more per row).  Rows at or beyond ``depth`` are dropped.  ``loaded`` goes high once
    rows ``0 .. depth - 1`` have been written in that order (a row written again, or
    ahead of its turn, does not count: the host sends them in order) and stays high.

    The read and write sides share one address, as a single-port RAM's do: while a row is
    being written (one cycle per row) a read is not performed and ``data`` holds.  So
    load only while the reader is idle (the host link does: a load frame is taken only
    between inferences).

    With the platform attribute :data:`SPRAM_HOOK` the rows are ``SB_SPRAM256KA``
    blocks, ``ceil(width / 16)`` side by side in each bank of 16384 rows
    (:func:`spram_tiles`); otherwise an :class:`~amaranth.lib.memory.Memory` without
    initial contents.

    Members
    -------
    addr, en : ``In``
        Read address and enable; ``data`` shows row ``addr`` one cycle after ``en``.
    data : ``Out(width)``
    load : ``In(stream.Signature(LOAD_LAYOUT, always_ready=True))``
    loaded : ``Out(1)``

    Attributes
    ----------
    latency : int
        1: a read's data is there on the next cycle, as an Amaranth read port's.
    """

    latency = 1

    def __init__(self, width: int, depth: int, memory_id: int):
        if width % 8 or width < 8 or depth < 1:
            raise Tfl2RtlError(f"a loadable memory of {depth} rows of {width} bits")
        if not 0 <= memory_id < 256:
            raise Tfl2RtlError(f"loadable memory number {memory_id} is not a byte")
        self.width = width
        self.depth = depth
        self.memory_id = memory_id
        self.row_bytes = width // 8
        super().__init__({
            "addr": In(range(depth)),
            "en": In(1),
            "data": Out(width),
            "load": In(stream.Signature(LOAD_LAYOUT, always_ready=True)),
            "loaded": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beat = self.load.payload
        mine = self.load.valid & (beat.memory == self.memory_id)

        word = Signal(self.width)
        byte_index = Signal(range(self.row_bytes))
        next_row = Signal(17)
        write = Signal()
        write_row = Signal(17)
        m.d.sync += write.eq(0)
        with m.If(mine):
            row = Mux(beat.first, beat.row, next_row)
            index = Mux(beat.first, 0, byte_index)
            m.d.sync += word.eq(Cat(word[8:], beat.data) if self.row_bytes > 1 else beat.data)
            with m.If(index == self.row_bytes - 1):
                m.d.sync += [byte_index.eq(0), next_row.eq(row + 1),
                             write.eq(row < self.depth), write_row.eq(row)]
            with m.Else():
                m.d.sync += [byte_index.eq(index + 1), next_row.eq(row)]
        # Rows 0 .. filled - 1 have all been written (counted as they arrive in order).
        filled = Signal(range(self.depth + 1))
        with m.If(write & (write_row == filled)):
            m.d.sync += filled.eq(filled + 1)
        m.d.comb += self.loaded.eq(filled == self.depth)

        address = Signal(range(self.depth))
        m.d.comb += address.eq(Mux(write, write_row, self.addr))
        read = self.en & ~write

        if getattr(platform, SPRAM_HOOK, False):
            across, banks = _spram_grid(self.width, self.depth)
            padded = Cat(word, Const(0, across * SPRAM_WIDTH - self.width))
            low = Cat(address, Const(0, 14))[:14]
            bank = address[14:] if banks > 1 else Const(0, 1)
            read_bank = Signal.like(bank)  # the bank of the last read, for the output
            with m.If(read):
                m.d.sync += read_bank.eq(bank)
            outputs = []
            for b in range(banks):
                out = Signal(across * SPRAM_WIDTH, name=f"bank_{b}")
                here = bank == b
                for t in range(across):
                    lanes = slice(t * SPRAM_WIDTH, (t + 1) * SPRAM_WIDTH)
                    m.submodules[f"spram_{b}_{t}"] = Instance(
                        "SB_SPRAM256KA",
                        i_ADDRESS=low, i_DATAIN=padded[lanes], i_MASKWREN=Const(0b1111, 4),
                        i_WREN=write & here, i_CHIPSELECT=(write | read) & here,
                        i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                        o_DATAOUT=out[lanes])
                outputs.append(out)
            chosen = outputs[0]
            for b in range(1, banks):
                chosen = Mux(read_bank == b, outputs[b], chosen)
            m.d.comb += self.data.eq(chosen[:self.width])
        else:
            m.submodules.rows = rows = Memory(shape=self.width, depth=self.depth, init=[])
            read_port = rows.read_port()
            write_port = rows.write_port()
            m.d.comb += [
                read_port.addr.eq(address), read_port.en.eq(read),
                write_port.addr.eq(address), write_port.data.eq(word),
                write_port.en.eq(write),
                self.data.eq(read_port.data),
            ]
        return m
