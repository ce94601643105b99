"""TRANSPOSE inside the graph: one tensor buffered whole, streamed out permuted."""

from __future__ import annotations

import math

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from .layouts import int8_lanes

__all__ = ["TransposeLayer", "reduced_permutation", "lane_limit"]


def reduced_permutation(shape, perm) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The same transposition with fewer axes: axes of size 1 dropped, and input axes
    that stay neighbours in the output (``a`` right before ``a + 1``) merged into one.
    Output axis ``i`` of the result is input axis ``perm[i]`` of the result, and both
    tensors keep their element order.  A tensor of one element is ``((1,), (0,))``."""
    shape, perm = tuple(int(d) for d in shape), tuple(int(p) for p in perm)
    if sorted(perm) != list(range(len(shape))):
        raise Tfl2RtlError(f"TRANSPOSE of {shape} by {perm}: not a permutation of its axes")
    kept = [a for a in range(len(shape)) if shape[a] > 1]
    rank = {a: k for k, a in enumerate(kept)}  # position among the kept input axes
    groups: list[list[int]] = []  # in output order, each a run of kept input axes
    for a in perm:
        if shape[a] == 1:
            continue
        if groups and rank[a] == rank[groups[-1][-1]] + 1:
            groups[-1].append(a)
        else:
            groups.append([a])
    if not groups:
        return (1,), (0,)
    by_input = sorted(range(len(groups)), key=lambda g: groups[g][0])
    sizes = tuple(math.prod(shape[a] for a in groups[g]) for g in by_input)
    position = {g: k for k, g in enumerate(by_input)}
    return sizes, tuple(position[g] for g in range(len(groups)))


def lane_limit(shape, perm) -> int:
    """What the lanes of a :class:`TransposeLayer` must divide: the innermost (merged)
    axis when the permutation keeps it innermost (then a beat of consecutive output
    elements is a beat of consecutive input elements), else 1."""
    sizes, order = reduced_permutation(shape, perm)
    return sizes[-1] if order[-1] == len(sizes) - 1 else 1


class TransposeLayer(wiring.Component):
    """TRANSPOSE: output axis ``i`` is input axis ``node.perm[i]``, values unchanged
    (:func:`tfl2rtl.golden.transpose`), ``lanes`` elements a beat.

    The tensor arrives in its own (row-major) order and is written, beat after beat, into
    one half of a ping-pong memory of two tensors (``2 * size`` bytes, rows of ``lanes``
    elements).  Once a half is full it is read out in the output's order: counters over
    the output's shape (after :func:`reduced_permutation`, so at most as many as the
    axes that really move) step a read address by the input's strides in the permuted
    order.  Meanwhile the next tensor fills the other half, so input and output both
    move one beat per cycle.

    Parameters
    ----------
    node : :class:`tfl2rtl.ir.Transpose`
    in_shape : tuple of int
        The input's shape as the IR has it (batch included: ``node.perm`` numbers its
        axes).
    lanes : int
        Elements per beat.  Above 1 only where the permutation keeps the innermost axis
        innermost (:func:`lane_limit`), and dividing it; a permutation that moves the
        innermost axis transposes one element per beat.

    Members
    -------
    i : ``In(stream.Signature(int8_lanes(lanes)))``
    o : ``Out(stream.Signature(int8_lanes(lanes)))``

    Attributes
    ----------
    out_shape : tuple of int
        The output's shape, ``in_shape`` permuted.
    memory_bytes : int
        ``2 * size``: the two halves of the ping-pong memory.
    latency : int
        2: when the last beat of a tensor is taken at clock edge ``n``, its first output
        beat can leave at edge ``n + 2`` (the half is marked full at ``n``, read at
        ``n + 1`` into the output register).
    cycles_per_vector : int
        ``size / lanes``: a tensor every ``size / lanes`` cycles when the input keeps up
        and the output is not stalled (one tensor goes out while the next comes in).
    """

    def __init__(self, node: ir.Transpose, in_shape, *, lanes: int = 1):
        self.in_shape = tuple(int(d) for d in in_shape)
        perm = tuple(node.perm)
        self.sizes, self.order = reduced_permutation(self.in_shape, perm)
        limit = lane_limit(self.in_shape, perm)
        if lanes < 1 or limit % lanes:
            why = (f"lanes must divide {limit}, the innermost axis it keeps" if limit > 1
                   else "it moves the innermost axis, so it takes one element per beat")
            raise Tfl2RtlError(f"TRANSPOSE of {self.in_shape} by {perm} in {lanes} lanes: "
                               f"{why}")
        self.node = node
        self.lanes = lanes
        self.out_shape = tuple(self.in_shape[p] for p in perm)
        size = math.prod(self.in_shape)
        self.beats = size // lanes
        self.memory_bytes = 2 * size
        self.latency = 2
        self.cycles_per_vector = self.beats
        super().__init__({
            "i": In(stream.Signature(int8_lanes(lanes))),
            "o": Out(stream.Signature(int8_lanes(lanes))),
        })

    def read_steps(self) -> list[tuple[int, int]]:
        """The read counters, outermost first: per output axis (in beats) with more than
        one index, its size and how far the read address moves when that axis steps
        (its input stride, less what the axes inside it moved while they counted up)."""
        sizes = list(self.sizes)
        sizes[-1] //= self.lanes
        strides = [math.prod(sizes[a + 1:]) for a in range(len(sizes))]
        axes = [(sizes[a], strides[a]) for a in self.order if sizes[a] > 1]
        return [(size, stride - sum((s - 1) * t for s, t in axes[k + 1:]))
                for k, (size, stride) in enumerate(axes)]

    def elaborate(self, platform):
        m = Module()
        beats = self.beats
        m.submodules.buffer = buffer = Memory(shape=int8_lanes(self.lanes), depth=2 * beats,
                                              init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        full = Signal(2)  # per half: written and not yet read out

        # Writer: the input's beats in order into half ``w_half``.
        w_half = Signal()
        w_beat = Signal(range(beats))
        w_last = w_beat == beats - 1
        take = self.i.valid & self.i.ready
        m.d.comb += [
            self.i.ready.eq(~full.bit_select(w_half, 1)),
            write.addr.eq(Mux(w_half, w_beat + beats, w_beat)),
            write.data.eq(self.i.payload),
            write.en.eq(take),
        ]
        with m.If(take):
            m.d.sync += w_beat.eq(Mux(w_last, 0, w_beat + 1))
            with m.If(w_last):
                m.d.sync += w_half.eq(~w_half)

        # Reader: half ``r_half`` in the output's order; the read port's data register
        # is the output register.
        r_half = Signal()
        r_addr = Signal(range(beats))
        advance = ~self.o.valid | self.o.ready
        issue = advance & full.bit_select(r_half, 1)
        m.d.comb += [
            read.addr.eq(Mux(r_half, r_addr + beats, r_addr)),
            read.en.eq(advance),
            self.o.payload.eq(read.data),
        ]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(issue)

        steps = self.read_steps()
        counters = [Signal(range(size), name=f"index{k}") for k, (size, _) in enumerate(steps)]
        wraps = [c == size - 1 for c, (size, _) in zip(counters, steps, strict=True)]
        r_last = Const(1)
        for wrap in wraps:
            r_last = r_last & wrap
        with m.If(issue):
            carry = Const(1)
            for counter, wrap in reversed(list(zip(counters, wraps, strict=True))):
                with m.If(carry):
                    m.d.sync += counter.eq(Mux(wrap, 0, counter + 1))
                carry = carry & wrap
            # The address moves by the step of the innermost axis that does not wrap.
            with m.If(r_last):
                m.d.sync += [r_addr.eq(0), r_half.eq(~r_half)]
            for k in reversed(range(len(steps))):
                with m.Elif(~wraps[k]):
                    m.d.sync += r_addr.eq(r_addr + steps[k][1])

        # A half is full from its last write to its last read.
        set_full = Mux(take & w_last, Mux(w_half, 0b10, 0b01), 0)
        clear_full = Mux(issue & r_last, Mux(r_half, 0b10, 0b01), 0)
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        return m
