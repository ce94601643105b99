"""Weight memories that the host fills at run time, for devices whose large RAM cannot
be initialized by the bitstream (the iCE40 UP5K's SPRAM).

A loadable memory starts empty.  Bytes arrive on a shared load stream
(:data:`LOAD_LAYOUT`): each beat names the memory it is for (``memory``), and the first
beat of a run (``first``) names the row it starts at (``row``); the bytes of a row come
lowest byte first (the row's first weight), and consecutive rows follow without
repeating the row number.  :func:`load_payloads` cuts a memory's rows into such
runs for the host link.

The rows themselves are a single-port memory (:func:`row_memory_signature`) that the
platform may supply, as Amaranth's memories may be replaced through a platform's
``get_memory``: a platform with the method named :data:`ROW_MEMORY_HOOK` builds them
(iCE40 SPRAM blocks: :mod:`tfl2rtl.boards.spram`), otherwise :class:`RowMemory` does
(an :class:`~amaranth.lib.memory.Memory` without initial contents).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError

__all__ = ["LOAD_LAYOUT", "ROW_MEMORY_HOOK", "WEIGHT_BANKS_HOOK", "LoadableMemory", "RowMemory",
           "row_memory", "row_memory_signature", "load_payloads", "loading_members"]

#: One byte of weights on its way into a loadable memory.
LOAD_LAYOUT = data.StructLayout({"memory": 8, "row": 16, "first": 1, "data": 8})

#: Platform method ``(width, depth) -> component`` with :func:`row_memory_signature`: the
#: rows of a :class:`LoadableMemory` (without it, a :class:`RowMemory`).
ROW_MEMORY_HOOK = "get_row_memory"

#: The platform method that splits a deep weight memory into banks:
#: ``platform.weight_bank_rows(width)`` is the rows of one bank of a memory of ``width``
#: bits a row (a power of two: a block RAM's depth at that width), or None for one bank.
#: A matrix-vector unit whose weight memory is deeper reads each bank into a register of
#: its own and chooses among the registers (:class:`tfl2rtl.hw.mvu.MatrixVectorUnit`), so
#: that no path runs from a block RAM's slow output through the multiplexer of its depth.
#: ECP5 boards set it (:func:`tfl2rtl.boards.ecp5.weight_bank_rows`).
WEIGHT_BANKS_HOOK = "weight_bank_rows"


def loading_members(memory_id: int | None) -> dict:
    """The ``load`` and ``loaded`` members of a component whose weights are loadable
    memory ``memory_id`` (none when it is None)."""
    if memory_id is None:
        return {}
    return {"load": In(stream.Signature(LOAD_LAYOUT, always_ready=True)),
            "loaded": Out(1)}


def row_memory_signature(width: int, depth: int) -> wiring.Signature:
    """The rows of a :class:`LoadableMemory`: ``depth`` rows of ``width`` bits behind one
    port.  A cycle with ``write`` writes ``write_data`` at ``addr``; one with ``read``
    (never together with ``write``) shows row ``addr`` on ``read_data`` on the next
    cycle; ``read_data`` holds otherwise (or is undefined after a write)."""
    return wiring.Signature({
        "addr": In(range(depth)),
        "read": In(1),
        "write": In(1),
        "write_data": In(width),
        "read_data": Out(width),
    })


class RowMemory(wiring.Component):
    """The rows of a :class:`LoadableMemory` (:func:`row_memory_signature`): an
    :class:`~amaranth.lib.memory.Memory` of ``depth`` rows of ``width`` bits without
    initial contents, its read and write port on one address.  A platform's
    :data:`ROW_MEMORY_HOOK` may supply a subclass built otherwise."""

    def __init__(self, width: int, depth: int):
        self.width = width
        self.depth = depth
        super().__init__(row_memory_signature(width, depth))

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=self.width, depth=self.depth, init=[])
        read_port = memory.read_port()
        write_port = memory.write_port()
        m.d.comb += [
            read_port.addr.eq(self.addr), read_port.en.eq(self.read),
            write_port.addr.eq(self.addr), write_port.data.eq(self.write_data),
            write_port.en.eq(self.write),
            self.read_data.eq(read_port.data),
        ]
        return m


def row_memory(platform, width: int, depth: int) -> wiring.Component:
    """``depth`` rows of ``width`` bits behind one port (:func:`row_memory_signature`):
    the platform's (its :data:`ROW_MEMORY_HOOK`) or a :class:`RowMemory`."""
    hook = getattr(platform, ROW_MEMORY_HOOK, None)
    return (RowMemory if hook is None else hook)(width, depth)


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

    The rows are the platform's (its :data:`ROW_MEMORY_HOOK` method: ``SB_SPRAM256KA``
    blocks on the iCE40) or else a :class:`RowMemory`.

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

        m.submodules.rows = rows = row_memory(platform, self.width, self.depth)
        m.d.comb += [
            rows.addr.eq(Mux(write, write_row, self.addr)),
            rows.read.eq(self.en & ~write),
            rows.write.eq(write),
            rows.write_data.eq(word),
            self.data.eq(rows.read_data),
        ]
        return m
