"""The iCE40 UP5K's SPRAM (``SB_SPRAM256KA``, 16384 words of 16 bits) as the rows of
the loadable weight memories: the platform hook
:data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK` that :class:`tfl2rtl.boards.board.Board`
sets on boards with SPRAM (and :mod:`tfl2rtl.boards.postsynth` for the iCE40 family).
The bitstream cannot fill SPRAM, so the host loads these memories over the link."""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal

from tfl2rtl.hw.weights import RowMemory

__all__ = ["SPRAM_WIDTH", "SPRAM_DEPTH", "SPRAMRows", "spram_tiles"]

#: An ``SB_SPRAM256KA`` holds 16384 words of 16 bits.
SPRAM_WIDTH = 16
SPRAM_DEPTH = 16384


def _spram_grid(width: int, depth: int) -> tuple[int, int]:
    """``SB_SPRAM256KA`` blocks side by side, and banks of them, for a ``width``-bit,
    ``depth``-row memory."""
    return -(-width // SPRAM_WIDTH), -(-depth // SPRAM_DEPTH)


def spram_tiles(width: int, depth: int) -> int:
    """``SB_SPRAM256KA`` blocks for a ``width``-bit, ``depth``-row memory: ``ceil(width /
    16)`` side by side in each of ``ceil(depth / 16384)`` banks."""
    across, banks = _spram_grid(width, depth)
    return across * banks


class SPRAMRows(RowMemory):
    """A :class:`~tfl2rtl.hw.weights.RowMemory` in ``SB_SPRAM256KA`` blocks:
    ``ceil(width / 16)`` side by side in each bank of 16384 rows (:func:`spram_tiles`).
    A write or read selects only the bank of its row; ``read_data`` comes from the bank
    of the last read."""

    def elaborate(self, platform):
        m = Module()
        across, banks = _spram_grid(self.width, self.depth)
        padded = Cat(self.write_data, Const(0, across * SPRAM_WIDTH - self.width))
        low = Cat(self.addr, Const(0, 14))[:14]
        bank = self.addr[14:] if banks > 1 else Const(0, 1)
        read_bank = Signal.like(bank)  # the bank of the last read, for the output
        with m.If(self.read):
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
                    i_WREN=self.write & here, i_CHIPSELECT=(self.write | self.read) & here,
                    i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=out[lanes])
            outputs.append(out)
        chosen = outputs[0]
        for b in range(1, banks):
            chosen = Mux(read_bank == b, outputs[b], chosen)
        m.d.comb += self.read_data.eq(chosen[:self.width])
        return m
