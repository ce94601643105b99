"""Pooling: MAX_POOL_2D and AVERAGE_POOL_2D over a window stream, and MEAN over H and W."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fixedpoint import INT32_MAX, signed_bits
from ..fold import divisors_text
from . import pipeline
from .layouts import signed_lanes
from .requant import Requantizer
from .window import SlidingWindow, window_layout, window_out_hw

__all__ = ["POOL_KINDS", "PoolUnit", "Pool2DLayer", "pool_kind", "pool_unit", "MeanLayer",
           "reciprocal_shift", "window_counts", "pool_multipliers"]

#: What a :class:`PoolUnit` computes over a window.
POOL_KINDS = ("max", "average")

#: The register stages of a :class:`PoolUnit`, in order, per kind; each adds one cycle of
#: latency.
POOL_STAGES = {
    "max": (
        "accumulate",  # running maximum of the window's in-bounds beats
        "clamp",  # clamp to [act_min, act_max]: the output register
    ),
    "average": (
        "accumulate",  # running sum and in-bounds count
        "magnitude",  # |sum| + count // 2 and the reciprocal of the count (ROM), into
                      # the product's operand registers; the sign
        "product",  # magnitude * reciprocal (a DSP block's own registers where it has them)
        "clamp",  # >> shift, sign, clamp: the output register
    ),
}


def _magnitude_max(count: int, act_bits: int = 8) -> int:
    """The largest ``|sum| + count // 2`` of ``count`` signed ``act_bits``-bit values (int8:
    ``sum = -128 * count``)."""
    return (1 << (act_bits - 1)) * count + count // 2


def reciprocal(count: int, shift: int) -> int:
    """``ceil(2**shift / count)``: ``(a * reciprocal(c, k)) >> k`` is ``a // c`` for every
    ``a`` with ``a * (reciprocal(c, k) * c - 2**k) < 2**k``."""
    return -(-(1 << shift) // count)


def reciprocal_shift(counts, act_bits: int = 8) -> int:
    """The smallest ``k`` for which ``(a * reciprocal(c, k)) >> k == a // c`` for every
    count ``c`` in ``counts`` and every ``0 <= a <= 2**(act_bits - 1) * c + c // 2`` (int8:
    ``128 * c + c // 2``).

    Proof of the sufficient condition used: with ``R = ceil(2**k / c)``, ``e = R * c -
    2**k`` (``0 <= e < c``) and ``a = q * c + r`` (``0 <= r < c``), ``a * R / 2**k = q +
    (r + a * e / 2**k) / c``, whose floor is ``q`` when ``a * e < 2**k`` (then ``r + a * e
    / 2**k < c``).  The bound ``a * e`` is largest at the largest ``a``.
    """
    counts = sorted(set(counts))
    for k in itertools.count():
        if all(_magnitude_max(c, act_bits) * (reciprocal(c, k) * c - (1 << k)) < (1 << k)
               for c in counts):
            return k
    raise AssertionError("unreachable")


def _average_multipliers(counts, pe: int, act_bits: int) -> int:
    """The multipliers of an average's :class:`PoolUnit` of ``pe`` lanes over windows of
    ``counts`` positions: one a lane for the product by the count's reciprocal, none
    when there is one reciprocal and it is a power of two (a shift)."""
    shift = reciprocal_shift(sorted(set(counts)), act_bits)
    factors = {reciprocal(c, shift) for c in counts}
    by_shift = len(factors) == 1 and not (f := factors.pop()) & (f - 1)
    return 0 if by_shift else pe


def pool_multipliers(node, in_shape, pe: int, act_bits: int = 8) -> int:
    """The multipliers (DSP blocks) of a :class:`Pool2DLayer` of ``node`` over an ``(H,
    W, C)`` image, ``pe`` channels a beat (its unit's :attr:`PoolUnit.multipliers`),
    without building it."""
    if not isinstance(node, ir.AveragePool2D):
        return 0
    return _average_multipliers(
        window_counts(tuple(in_shape)[:2], node.filter, node.stride, node.padding), pe,
        act_bits)


def window_counts(in_hw, kernel, stride, padding) -> list[int]:
    """The numbers of in-bounds positions that the windows of an ``in_hw`` image have,
    sorted (one value for VALID pooling; several at the borders of SAME pooling)."""
    out_h, out_w = window_out_hw(in_hw, kernel, stride, (1, 1), padding)

    def inside(size, k, s, before, out):
        starts = np.arange(out) * s - before
        positions = starts[:, None] + np.arange(k)
        return ((positions >= 0) & (positions < size)).sum(axis=1)

    rows = inside(in_hw[0], kernel[0], stride[0], padding[0], out_h)
    cols = inside(in_hw[1], kernel[1], stride[1], padding[1], out_w)
    return sorted({int(r) * int(c) for r in rows for c in cols})


class PoolUnit(wiring.Component):
    """The maximum or the rounded average over each window of a window stream, ``pe``
    channels at a time, clamped to ``[act_min, act_max]``.

    The input is a window stream (:func:`tfl2rtl.hw.window.window_layout`) in order
    ``"depthwise"``: ``window`` consecutive beats (``KH * KW``) make one window of ``pe``
    channels; beats with ``pad`` = 1 lie in the padding and are ignored.  Each window
    gives one output beat.

    - ``"max"``: the maximum of the in-bounds beats (``reference_integer_ops::MaxPool``).
    - ``"average"``: ``sum`` and in-bounds ``count`` of the in-bounds beats, then
      ``sign(sum) * ((|sum| + count // 2) // count)``, which is TFLite's ``(sum +-
      count / 2) / count`` in C division (halves away from zero).  The division is a
      multiplication by ``reciprocal(count, shift)`` from a ROM of the possible counts
      (a constant when there is only one), exact for every sum of ``count`` int8 values
      (:func:`reciprocal_shift`); ``pe`` multipliers of about ``15 x 22`` bits for a
      125-position window.

    A window with no in-bounds position (which TFLite's SAME and VALID paddings never
    produce) gives the lowest value (max: ``-128`` for int8) or an unspecified value
    (average).

    Parameters
    ----------
    kind : ``"max"`` or ``"average"``
    window : int
        Beats per window, ``KH * KW``.
    pe : int
        Channels per beat.
    act_min, act_max : int
        The clamp, within the ``act_bits``-bit signed range.
    counts : iterable of int, optional
        The in-bounds counts that can occur (``"average"`` only; default ``1 ..
        window``); see :func:`window_counts`.
    act_bits : int
        8 (int8), or 16 (a 16x8 model's int16 activations: the same arithmetic, as
        TFLite Micro's int16 pooling kernels).

    Members
    -------
    i : ``In(stream.Signature(window_layout(pe, act_bits)))``
    o : ``Out(stream.Signature(signed_lanes(act_bits, pe)))``

    Attributes
    ----------
    latency : int
        ``len(POOL_STAGES[kind])``: 2 for max, 4 for average.  When a window's last beat
        is taken at clock edge ``n``, its result can leave on ``o`` at edge ``n +
        latency``.
    cycles_per_window : int
        ``window``: one beat is accepted every cycle that ``o`` is not stalled.
    shift : int
        The reciprocal's fraction bits (average).
    reciprocals : dict
        ``count -> reciprocal(count, shift)`` for every supported count (average).
    multipliers : int
        DSP multipliers in all lanes: ``pe`` for an average, but none when its one
        reciprocal is a power of two; none for a maximum.

    Tested with windows of 1 to 125 positions (1x1, 2x2, 2x3, 3x3, 5x5 SAME with border
    counts from 1 to 25, 8x8, 25x5), ``pe`` 1 to 64, inputs at -128 and 127 and random, random
    stalls on ``i`` and backpressure on ``o``; the division exhaustively in numpy for
    every count up to 125 and every reachable sum; int16 windows of 4 to 9 positions at
    both ends of int16, the division over every int16 sum of counts 1 to 25 and 64.
    """

    def __init__(self, kind: str, *, window: int, pe: int = 1, act_min: int = -128,
                 act_max: int = 127, counts=None, act_bits: int = 8):
        if act_bits not in (8, 16):
            raise Tfl2RtlError(f"{act_bits}-bit activations: pooling takes 8 or 16")
        if kind not in POOL_KINDS:
            raise Tfl2RtlError(f"unknown pooling {kind!r}; choose one of {POOL_KINDS}")
        if window < 1 or pe < 1:
            raise Tfl2RtlError(f"a {window}-position window of {pe} lanes is not a pooling")
        if not -(1 << (act_bits - 1)) <= act_min <= act_max < 1 << (act_bits - 1):
            raise Tfl2RtlError(
                f"activation range [{act_min}, {act_max}] is not an int{act_bits} range")
        counts = sorted(set(range(1, window + 1) if counts is None else counts))
        if not counts or counts[0] < 1 or counts[-1] > window:
            raise Tfl2RtlError(f"window counts {counts} are not within 1 .. {window}")
        self.kind = kind
        self.window = window
        self.pe = pe
        self.act_min = int(act_min)
        self.act_max = int(act_max)
        self.counts = counts
        self.act_bits = act_bits
        self.latency = len(POOL_STAGES[kind])
        self.cycles_per_window = window
        self.shift = reciprocal_shift(counts, act_bits)
        self.reciprocals = {c: reciprocal(c, self.shift) for c in counts}
        self.multipliers = (_average_multipliers(counts, pe, act_bits)
                            if kind == "average" else 0)
        super().__init__({
            "i": In(stream.Signature(window_layout(pe, act_bits))),
            "o": Out(stream.Signature(signed_lanes(act_bits, pe))),
        })

    def elaborate(self, platform):
        m = Module()

        # One enable for the whole pipeline: it moves whenever the output register is
        # empty or being emptied, so a beat enters every such cycle.
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]
        take = self.i.valid & advance

        register = partial(pipeline.register, m, advance)

        # Position within the window.
        position = Signal(range(self.window))
        first = position == 0
        last = position == self.window - 1
        with m.If(take):
            m.d.sync += position.eq(Mux(last, 0, position + 1))
        valid = register(take & last, "valid_accumulate")
        x = self.i.payload.data
        pad = self.i.payload.pad

        # "accumulate": registers that change only when a beat is taken, so a finished
        # window waits in them until the next stage takes it (at the next advance).
        if self.kind == "max":
            maxima = []
            for lane in range(self.pe):
                acc = Signal(signed(self.act_bits), name=f"max_{lane}")
                base = Mux(first, -(1 << (self.act_bits - 1)), acc)
                with m.If(take):
                    m.d.sync += acc.eq(Mux(pad | (base > x[lane]), base, x[lane]))
                maxima.append(acc)
            results = maxima
        else:
            results, valid = self._average(m, platform, register, advance, take, first, x,
                                           pad, valid)

        for lane, value in enumerate(results):
            clamped = Mux(value < self.act_min, self.act_min,
                          Mux(value > self.act_max, self.act_max, value))
            m.d.comb += self.o.payload[lane].eq(
                register(clamped, f"out_{lane}", signed(self.act_bits)))
        m.d.comb += self.o.valid.eq(register(valid, "valid_clamp"))
        return m

    def _average(self, m, platform, register, advance, take, first, x, pad, valid):
        """The "accumulate", "magnitude" and "product" stages of an average; returns the
        signed quotients (before the clamp) and their valid."""
        low, high = -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
        sum_shape = signed(signed_bits(low * self.window, high * self.window))
        count = Signal(range(self.window + 1), name="count")
        with m.If(take):
            m.d.sync += count.eq(Mux(first, 0, count) + ~pad)
        sums = []
        for lane in range(self.pe):
            acc = Signal(sum_shape, name=f"sum_{lane}")
            with m.If(take):
                m.d.sync += acc.eq(Mux(first, 0, acc) + Mux(pad, 0, x[lane]))
            sums.append(acc)

        # "magnitude": |sum| + count // 2, and the reciprocal of the count (read
        # asynchronously: the product's operand registers hold it).
        magnitude_shape = unsigned(_magnitude_max(self.window, self.act_bits).bit_length())
        half = count >> 1
        if len(self.counts) == 1:
            factor = Const(self.reciprocals[self.counts[0]])
        else:
            table = [self.reciprocals.get(c, 0) for c in range(self.window + 1)]
            rom_shape = unsigned(max(table).bit_length())
            m.submodules.reciprocals = rom = Memory(shape=rom_shape, depth=len(table),
                                                    init=table)
            port = rom.read_port(domain="comb")
            m.d.comb += port.addr.eq(count)
            factor = port.data
        valid = register(valid, "valid_magnitude")
        negative = [register(s < 0, f"negative_{lane}") for lane, s in enumerate(sums)]
        magnitudes = []
        for lane, s in enumerate(sums):
            magnitude = Signal(magnitude_shape, name=f"magnitude_{lane}")
            m.d.comb += magnitude.eq(Mux(s < 0, half - s, s + half))
            magnitudes.append(magnitude)

        # "product": the magnitude and the factor registered, then their product, in a
        # platform's DSP block with its own registers where it takes them
        # (pipeline.PRODUCT_HOOK), else in the fabric.
        valid = register(valid, "valid_product")
        negative = [register(n, f"negative_p_{lane}") for lane, n in enumerate(negative)]
        products = []
        for lane, a in enumerate(magnitudes):
            name = f"product_{lane}"
            product = pipeline.platform_product(m, platform, advance, a, factor, name)
            if product is None:
                product = register(register(a, f"{name}_a") * register(factor, f"{name}_b"),
                                   name)
            products.append(product)

        # The quotient is at most 2**(act_bits - 1) (128 for int8).
        quotients = [p[self.shift:self.shift + self.act_bits] for p in products]
        results = [Mux(n, -q, q) for n, q in zip(negative, quotients, strict=True)]
        return results, valid


def pool_kind(node) -> str:
    """The :data:`POOL_KINDS` entry of a MAX_POOL_2D or AVERAGE_POOL_2D node."""
    return "max" if isinstance(node, ir.MaxPool2D) else "average"


def pool_unit(node, in_hw, *, pe: int = 1, act_bits: int = 8) -> PoolUnit:
    """The :class:`PoolUnit` of ``node`` over an ``in_hw`` image, ``pe`` channels a beat:
    its kind, window and clamp, and (average) the in-bounds counts its windows have
    (:func:`window_counts`)."""
    kind = pool_kind(node)
    counts = (window_counts(tuple(in_hw), node.filter, node.stride, node.padding)
              if kind == "average" else None)
    return PoolUnit(kind, window=node.filter[0] * node.filter[1], pe=pe,
                    act_min=node.act_min, act_max=node.act_max, counts=counts,
                    act_bits=act_bits)


class Pool2DLayer(wiring.Component):
    """One :class:`tfl2rtl.ir.MaxPool2D` or :class:`tfl2rtl.ir.AveragePool2D` node over an
    ``(H, W, C)`` image, ``pe`` channels per beat: a
    :class:`~tfl2rtl.hw.window.SlidingWindow` (order ``"depthwise"``, the node's padding,
    pad value 0) feeding a :class:`PoolUnit` (whose reciprocal table holds only the
    in-bounds counts the node's windows have, :func:`window_counts`).  The results equal
    :func:`tfl2rtl.golden.max_pool_2d` and :func:`tfl2rtl.golden.average_pool_2d`.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, pe)))``
        ``H * W * C / pe`` beats per image, NHWC; images back to back; ``act_bits`` is 16
        for a node of a 16x8 model (``act_bits`` argument), else 8.
    o : ``Out(stream.Signature(signed_lanes(act_bits, pe)))``
        ``out_h * out_w * C / pe`` beats per image, NHWC.

    Attributes
    ----------
    in_shape, out_shape : (int, int, int)
        ``(H, W, C)`` and ``(out_h, out_w, C)``.
    cycles_per_vector : int
        ``window.cycles_per_vector``: ``max(H * W, out_h * out_w * KH * KW) * C / pe``
        cycles per image (the window stream's beats, or the input's when the windows skip
        input rows or columns); the unit takes a beat every cycle.
    latency : int
        ``window.latency + KH * KW - 1 + unit.latency``: when the input beat completing
        the rows of the first output row (beat ``window.lead_beats`` of the image) is
        taken at clock edge ``n``, the first output beat can leave at edge ``n +
        latency``.

    Tested on the AVERAGE_POOL_2D nodes of kws_ref_model (25x5 global) and
    pretrainedResnet_quant (8x8 global), cnn_int8 and the MAX_POOL_2D of conv_int8 (cut
    to smaller images), and written nodes (SAME padding with border counts 1 to 25,
    strides 1 and 2 on odd sizes, 1x1 filters, fused RELU, RELU6 and RELU_N1_TO_1), ``pe``
    1 to 64, inputs at -128 and 127 and random, images back to back, random stalls and
    backpressure.
    """

    def __init__(self, node, in_shape, *, pe: int = 1, act_bits: int = 8):
        if not isinstance(node, (ir.MaxPool2D, ir.AveragePool2D)):
            raise Tfl2RtlError(f"{node.op} is not a 2-D pooling")
        h, w, c = (int(d) for d in in_shape)
        if pe < 1 or c % pe:
            raise Tfl2RtlError(
                f"PE={pe} does not divide the {c} channels; choose one of {divisors_text(c)}"
            )
        self.node = node
        self.pe = pe
        self.act_bits = act_bits
        self.in_shape = (h, w, c)
        self.window = SlidingWindow(self.in_shape, node.filter, node.stride, (1, 1),
                                    node.padding, 0, pe, "depthwise", act_bits=act_bits)
        self.unit = pool_unit(node, (h, w), pe=pe, act_bits=act_bits)
        self.out_shape = (*self.window.out_hw, c)
        self.cycles_per_vector = self.window.cycles_per_vector
        self.latency = self.latency_for(node)
        super().__init__({
            "i": In(stream.Signature(signed_lanes(act_bits, pe))),
            "o": Out(stream.Signature(signed_lanes(act_bits, pe))),
        })

    @staticmethod
    def latency_for(node) -> int:
        """:attr:`latency` of the layer for ``node``."""
        kh, kw = node.filter
        return SlidingWindow.latency + kh * kw - 1 + len(POOL_STAGES[pool_kind(node)])

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.unit = self.unit
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        wiring.connect(m, self.window.o, self.unit.i)
        wiring.connect(m, self.unit.o, wiring.flipped(self.o))
        return m


class MeanLayer(wiring.Component):
    """One :class:`tfl2rtl.ir.Mean` node over axes (1, 2) of an ``(H, W, C)`` image (Keras'
    global average pooling), ``pe`` channels per beat.

    One accumulator per channel sits in a :class:`Memory` of ``C / pe`` rows of ``pe``
    accumulators (read one cycle, written back the next; the read port is transparent, so
    a row read while it is being written sees the new value).  The first pixel of an image
    writes ``x - input_zero_point * count`` and the later ones add ``x``; the sums of the
    last pixel go straight on, one beat per channel block, to a
    :class:`~tfl2rtl.hw.requant.Requantizer` with the node's multiplier and shift,
    ``output_offset = output_zero_point`` and the clamp ``[-128, 127]``.  That equals
    :func:`tfl2rtl.golden.mean`: the Requantizer adds the offset in int32 with
    wrap-around where the golden model does not, so a node whose scaled sum could come
    within 256 of the int32 limits is refused.

    The next image accumulates right behind the last pixel of the previous one: no bubble
    between images.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, pe)))``
        ``H * W * C / pe`` beats per image, NHWC; ``act_bits`` 16 in a 16x8 model (int16
        activations, the sums and the clamp to int16 as TFLite Micro's int16 MEAN).
    o : ``Out(stream.Signature(signed_lanes(act_bits, pe)))``
        ``C / pe`` beats per image.

    Attributes
    ----------
    cycles_per_vector : int
        ``H * W * C / pe``: one beat per cycle.
    latency : int
        ``2 + requant.latency``: when the beat of channel block ``cb`` of an image's last
        pixel is taken at clock edge ``n``, output beat ``cb`` can leave at edge ``n +
        latency`` (the input and memory read register, the accumulator register, then the
        Requantizer).

    Tested on the MEAN of tests/models/cnn_int8.tflite and written ones (input and output
    zero points at their ends, one and several channel blocks), ``pe`` from 1 to ``C``,
    inputs at -128 and 127 and random, images back to back, random stalls and
    backpressure; int16 inputs at both ends of int16 (the random 16x8 graphs).
    """

    def __init__(self, node: ir.Mean, in_shape, *, pe: int = 1, act_bits: int = 8):
        if act_bits not in (8, 16):
            raise Tfl2RtlError(f"{act_bits}-bit activations: MEAN takes 8 or 16")
        in_shape = tuple(int(d) for d in in_shape)
        if len(in_shape) != 3 or tuple(node.axes) != (1, 2):
            raise Tfl2RtlError(
                f"MEAN over axes {tuple(node.axes)} of a {len(in_shape) + 1}-D tensor: only "
                "axes (1, 2) of an NHWC image are supported in hardware"
            )
        h, w, c = in_shape
        if pe < 1 or c % pe:
            raise Tfl2RtlError(
                f"PE={pe} does not divide the {c} channels; choose one of {divisors_text(c)}"
            )
        if node.count != h * w:
            raise Tfl2RtlError(f"MEAN counts {node.count} values, not the {h}x{w} image")
        self.node = node
        self.in_shape = in_shape
        self.out_shape = (1, 1, c)
        self.pe = pe
        self.pixels = h * w
        self.blocks = c // pe
        self.act_bits = act_bits
        self.bias = -int(node.input_zero_point) * self.pixels
        low, high = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
        lo = self.bias + low * self.pixels
        hi = self.bias + high * self.pixels
        self.acc_width = signed_bits(lo, hi)
        left = max(int(np.max(node.requant.shift)), 0)
        if max(-lo, hi) << left > INT32_MAX - (1 << act_bits):
            raise Tfl2RtlError(
                f"MEAN's scaled sums can reach the int32 limits (shift {left}); the "
                "hardware does not support that requantization"
            )
        self.requant = Requantizer(node.requant, channels=c,
                                   output_offset=node.output_zero_point, act_min=low,
                                   act_max=high, acc_width=self.acc_width, lanes=pe,
                                   out_bits=act_bits)
        self.cycles_per_vector = self.pixels * self.blocks
        self.latency = 2 + self.requant.latency
        self._lanes = signed_lanes(act_bits, pe)
        super().__init__({
            "i": In(stream.Signature(self._lanes)),
            "o": Out(stream.Signature(self._lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.requant = requant = self.requant
        sums = requant.i

        advance = Signal()
        m.d.comb += [
            advance.eq(~sums.valid | sums.ready),
            self.i.ready.eq(advance),
        ]
        take = self.i.valid & advance

        # Where the beat is: channel block and pixel.
        block = Signal(range(self.blocks))
        pixel = Signal(range(self.pixels))
        last_block = block == self.blocks - 1
        with m.If(take):
            m.d.sync += block.eq(Mux(last_block, 0, block + 1))
            with m.If(last_block):
                m.d.sync += pixel.eq(Mux(pixel == self.pixels - 1, 0, pixel + 1))

        register = partial(pipeline.register, m, advance)

        row_layout = data.ArrayLayout(signed(self.acc_width), self.pe)
        m.submodules.sums = memory = Memory(shape=row_layout, depth=self.blocks, init=[])
        write = memory.write_port()
        read = memory.read_port(transparent_for=(write,))
        m.d.comb += [read.addr.eq(block), read.en.eq(advance)]

        # Stage 1: the beat and its row of sums.
        valid_1 = register(take, "valid_1")
        x_1 = register(self.i.payload, "x_1", self._lanes)
        block_1 = register(block, "block_1")
        first_1 = register(pixel == 0, "first_1")
        last_1 = register(pixel == self.pixels - 1, "last_1")

        # Stage 2: the new sums, written back and (after the last pixel) sent on.
        new = Signal(row_layout)
        for lane in range(self.pe):
            m.d.comb += new[lane].eq(Mux(first_1, self.bias, read.data[lane]) + x_1[lane])
        m.d.comb += [
            write.addr.eq(block_1),
            write.data.eq(new),
            write.en.eq(valid_1 & advance),
        ]
        m.d.comb += [
            sums.valid.eq(register(valid_1 & last_1, "valid_2")),
            sums.payload.acc.eq(register(new, "sums_2", row_layout)),
        ]
        if self.blocks > 1:
            m.d.comb += sums.payload.group.eq(register(block_1, "block_2"))
        wiring.connect(m, requant.o, wiring.flipped(self.o))
        return m
