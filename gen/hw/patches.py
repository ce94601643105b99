"""Activations in on-chip memory, read back as patches: the input side of a sequential
engine whose layers are convolutions.

A dataflow network streams a tensor through a :class:`~tfl2rtl.hw.window.SlidingWindow`
that keeps a few rows.  A sequential engine computes one layer at a time, so the whole
tensor a layer reads is there before the layer starts: :class:`ActivationMemory` holds
it in a memory of two regions (ping-pong: a layer reads one while its outputs are
written to the other) and walks it as the layer's patches, one beat of ``simd``
channels a cycle, in an order of :func:`~tfl2rtl.hw.window.window_beats`: for each
output pixel (row-major), for each kernel row and column, each block of ``simd``
channels ("conv"), or for each block, each kernel row and column ("depthwise": a
depthwise convolution's channel blocks one after the other).  A fully connected
layer is a patch of one pixel: a 1x1 image of all its input beats
(:meth:`PatchGeometry.vector`).

:class:`PatchGeometry` is the plan of one layer's walk, plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError
from .adapters import SkidBuffer
from .layouts import signed_lanes
from .weights import row_memory
from .window import ORDERS, window_beats, window_layout, window_out_hw

__all__ = ["PatchGeometry", "patch_beats", "ActivationMemory"]


@dataclass(frozen=True)
class PatchGeometry:
    """How one layer reads its input tensor: ``height x width`` pixels of ``blocks``
    beats of ``simd`` channels each (the tensor is held pixel by pixel, row-major), and
    the patches of a ``kernel`` window at ``stride`` and ``dilation`` with ``padding``
    ``(top, left, bottom, right)``; a position in the padding reads ``pad_value`` (the
    input's zero point) in every lane.  ``order`` is the beats' order in a patch (see
    :func:`~tfl2rtl.hw.window.window_beats`): ``"conv"`` (each position's channel
    blocks in turn) or ``"depthwise"`` (each channel block's positions in turn)."""

    height: int
    width: int
    blocks: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    order: str = "conv"

    @classmethod
    def vector(cls, beats: int) -> PatchGeometry:
        """A fully connected layer's input: one patch of ``beats`` beats."""
        return cls(height=1, width=1, blocks=beats)

    @property
    def out_hw(self) -> tuple[int, int]:
        """The output pixels, ``(rows, columns)``, as TFLite counts them."""
        return window_out_hw((self.height, self.width), self.kernel, self.stride,
                             self.dilation, self.padding)

    @property
    def tensor_beats(self) -> int:
        """Beats of the input tensor: ``height * width * blocks``."""
        return self.height * self.width * self.blocks

    @property
    def patch_beats(self) -> int:
        """Beats of one patch (one output pixel): ``kh * kw * blocks``."""
        return self.kernel[0] * self.kernel[1] * self.blocks

    @property
    def beats(self) -> int:
        """Beats of every patch of the layer: output pixels times :attr:`patch_beats`."""
        out_h, out_w = self.out_hw
        return out_h * out_w * self.patch_beats


def patch_beats(x, geometry: PatchGeometry, simd: int) -> tuple[np.ndarray, np.ndarray]:
    """The beats :class:`ActivationMemory` gives for a tensor ``x`` (``(height, width,
    blocks * simd)`` int8) read with ``geometry``: :func:`~tfl2rtl.hw.window.window_beats`
    in the geometry's order, ``(data, pad)`` of shapes ``(beats, simd)`` and
    ``(beats,)``."""
    g = geometry
    return window_beats(np.asarray(x).reshape(g.height, g.width, g.blocks * simd),
                        g.kernel, g.stride, g.dilation, g.padding, g.pad_value, simd,
                        g.order)


def _bits(value: int) -> int:
    """Bits of a signed register that holds every value of magnitude up to ``value``."""
    return max(int(value), 1).bit_length() + 1


@dataclass(frozen=True, eq=False)
class _Counter:
    """A walk's counter (``value``), its flag ``end`` (a register: ``value`` is at the
    layer's last), and the layer's figures that keep the flag: ``single`` (the count has
    one value), ``next_single`` (the next layer's has one), ``before_last``."""
    value: Signal
    end: Signal
    single: object
    next_single: object
    before_last: object


class ActivationMemory(wiring.Component):
    """The tensors of a sequential engine's layers in two memories, read as patches.

    ``geometries`` gives, for each layer in turn, how it reads its input tensor (tensor
    ``k``).  Tensors arrive on ``i``, in order (tensor 0, the input, then each layer's
    output but the last's: the next layer's input), ``tensor_beats`` beats each, pixel by
    pixel; after the last tensor the next pass's tensor 0 follows.  Tensor ``k`` goes into
    region ``k % 2`` (each region a row memory of :attr:`region_beats` beats, the largest
    tensor, behind one port: :func:`~tfl2rtl.hw.weights.row_memory`), and layer ``k``
    reads it back there as patches on ``o`` (see the module's docstring),
    :attr:`PatchGeometry.beats` beats.

    A region is written only once the layer that read it last is done with it (its last
    beat gone on from the read port's register, since a single-port memory's output is
    not kept through a write), and read only once its tensor is all there: each region
    has a flag, set by the tensor's last write and cleared by the layer's last read.  So
    while layer ``k`` reads its tensor, its outputs (tensor ``k + 1``) may be written into
    the other region, and tensor 0 of the next pass waits for its region to be read.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(8, simd)))``
        The tensors' beats, in order, pass after pass.
    o : ``Out(stream.Signature(window_layout(simd)))``
        The layers' patches, in order, pass after pass: a window stream's beats
        (:func:`~tfl2rtl.hw.window.window_layout`: ``pad`` set, and the layer's pad value
        in every lane, at a position in the padding).

    Attributes
    ----------
    region_beats : int
        Beats of one region (two regions, or one with a single layer).
    latency : int
        ``2 + 2 * SkidBuffer.latency``: the first beat of a layer's patches leaves on
        ``o`` at the earliest this many edges after the edge on which the last beat of
        its tensor is taken on ``i`` (the skid buffer before the writer, the region's
        flag, the read, the skid buffer after the reader).
    throughput : int
        One beat a cycle while the layer's tensor is there and ``o`` is not stalled.

    Tested in Amaranth's simulator with one to four layers (both orders, alone and
    mixed) (1x1 to 5x5 kernels, strides
    1 to 3, dilations 1 and 2, every padding from none to past the kernel, vectors of
    one pixel), ``simd`` 1 to 4, two passes, with random stalls on ``i`` and
    backpressure on ``o``, each region in Amaranth's memory or in a row memory as strict
    as a single-port SPRAM.
    """

    latency = 2 + 2 * SkidBuffer.latency
    throughput = 1

    def __init__(self, geometries, simd: int):
        geometries = tuple(geometries)
        if not geometries:
            raise Tfl2RtlError("an activation memory needs at least one layer")
        if simd < 1:
            raise Tfl2RtlError(f"SIMD={simd}: at least one lane")
        for k, g in enumerate(geometries):
            if min(g.height, g.width, g.blocks, *g.kernel, *g.stride, *g.dilation) < 1:
                raise Tfl2RtlError(f"layer {k}: every size, kernel, stride and dilation "
                                   f"must be at least 1 ({g})")
            if min(g.padding) < 0:
                raise Tfl2RtlError(f"layer {k}: negative padding {g.padding}")
            if g.order not in ORDERS:
                raise Tfl2RtlError(f"layer {k}: unknown order {g.order!r}; choose one of "
                                   f"{', '.join(ORDERS)}")
            if not -128 <= g.pad_value <= 127:
                raise Tfl2RtlError(f"layer {k}: pad value {g.pad_value} is not int8")
            window_out_hw((g.height, g.width), g.kernel, g.stride, g.dilation,
                          g.padding)  # raises when the window does not fit
        self.geometries = geometries
        self.simd = simd
        self.region_beats = max(g.tensor_beats for g in geometries)
        self.regions = 1 if len(geometries) == 1 else 2
        super().__init__({
            "i": In(stream.Signature(signed_lanes(8, simd))),
            "o": Out(stream.Signature(window_layout(simd))),
        })

    def elaborate(self, platform):
        m = Module()
        geometries, simd = self.geometries, self.simd
        count = len(geometries)
        # Region r's addresses start at r * stride (a power of two), so that an
        # address's low bits are its row in the region's memory.
        stride = 1 << (self.region_beats - 1).bit_length()
        depth = stride * self.regions
        memories = [row_memory(platform, 8 * simd, self.region_beats)
                    for _ in range(self.regions)]
        for r, memory in enumerate(memories):
            m.submodules[f"region_{r}"] = memory
        full = Signal(2)  # a flag a region: its tensor is all there

        def table(values, width):
            return Array(Const(v, width) for v in values)

        def region_of(k):
            return k % self.regions

        # --- The writer: tensor after tensor, each into its region.  The beats come
        # through a skid buffer: ``i.ready`` is a register, and the writer's enable and
        # the regions' addresses start at registers (on the iCE40 the engine's ready and
        # valid chain through the writer into the walk was kws's critical path, 28.8 ns).
        m.submodules.skid_in = skid_in = SkidBuffer(signed_lanes(8, simd))
        wiring.connect(m, wiring.flipped(self.i), skid_in.i)
        incoming = skid_in.o
        tensor = Signal(range(count))
        written = Signal(range(self.region_beats))
        w_region = Signal(range(2))
        last_write = table([g.tensor_beats - 1 for g in geometries], len(written))
        following = [*range(1, count), 0]
        next_w_region = table([region_of(n) for n in following], 1)[tensor]
        # The reader's beat waiting for the skid buffer (below) may be a region's last,
        # its data still on the region's port: the writer waits until it has moved on.
        beat_valid = Signal()  # the read port's beat
        beat_region = Signal(range(2))  # the region it was read from
        m.d.comb += incoming.ready.eq(~full.bit_select(w_region, 1)
                                      & ~(beat_valid & (beat_region == w_region)))
        writing = incoming.valid & incoming.ready
        with m.If(writing):
            with m.If(written == last_write[tensor]):
                m.d.sync += [written.eq(0), tensor.eq(Mux(tensor == count - 1, 0, tensor + 1)),
                             w_region.eq(next_w_region)]
                m.d.sync += full.bit_select(w_region, 1).eq(1)
            with m.Else():
                m.d.sync += written.eq(written + 1)

        # --- The reader: layer after layer, the patches of each (row-major output
        # pixels, then in the layer's order kernel rows, columns and channel blocks), as
        # addresses kept by increments (no multiplier): ``line`` is the address of output
        # row ``oy``'s first window's top-left position, ``pixel`` the current window's,
        # ``base`` its current channel block's (depthwise order; the pixel's otherwise),
        # ``row`` and ``col`` the current kernel row's and position's first block,
        # ``addr`` the current beat's.  ``iy``/``ix`` are the position's input row and
        # column, for the padding.
        layer = Signal(range(count))
        r_region = Signal(range(2))
        # Every address register holds a position the walk visits (its first channel
        # block at most): from a region's base less the top and left padding to the
        # far corner of the last window.
        lows, highs, coords = [0], [depth], [1]
        for k, g in enumerate(geometries):
            base = region_of(k) * stride
            (out_rows, out_cols), (top, left) = g.out_hw, g.padding[:2]
            bottom = (out_rows - 1) * g.stride[0] - top + (g.kernel[0] - 1) * g.dilation[0]
            right = (out_cols - 1) * g.stride[1] - left + (g.kernel[1] - 1) * g.dilation[1]
            lows.append(base - (top * g.width + left) * g.blocks)
            highs.append(base + (bottom * g.width + right + 1) * g.blocks)
            coords += [top, left, bottom + 1, right + 1, g.height, g.width]
        addr_shape = signed(_bits(max(max(highs), -min(lows))))
        coord_shape = signed(_bits(max(coords)))

        def start_of(g, base):
            top, left = g.padding[0], g.padding[1]
            return base + (-top * g.width - left) * g.blocks

        out_h = [g.out_hw[0] for g in geometries]
        out_w = [g.out_hw[1] for g in geometries]
        g0 = geometries[0]
        line = Signal(addr_shape, init=start_of(g0, 0))
        pixel = Signal(addr_shape, init=start_of(g0, 0))
        row = Signal(addr_shape, init=start_of(g0, 0))
        base = Signal(addr_shape, init=start_of(g0, 0))
        col = Signal(addr_shape, init=start_of(g0, 0))
        addr = Signal(addr_shape, init=start_of(g0, 0))
        iy_line = Signal(coord_shape, init=-g0.padding[0])
        iy = Signal(coord_shape, init=-g0.padding[0])
        ix_pixel = Signal(coord_shape, init=-g0.padding[1])
        ix = Signal(coord_shape, init=-g0.padding[1])

        # A layer's own figures are registers, loaded with the next layer's as a layer
        # ends (its last beat's edge), not looked up by ``layer`` on every beat: on the
        # iCE40 those lookups before the walk's comparisons and adders were the start of
        # kws's engine's critical path (37.3 ns, then 31.2 ns from the next layer's
        # start).  A figure all layers share is a constant.
        next_layer_loads = []

        def field(name, values):
            values = [int(v) for v in values]
            shape = (signed(_bits(max(abs(v) for v in values)) + 1) if min(values) < 0
                     else unsigned(max(max(values).bit_length(), 1)))
            if len(set(values)) == 1:
                return Const(values[0], shape)
            reg = Signal(shape, init=values[0], name=f"layer_{name}")
            next_layer_loads.append(reg.eq(table([values[n] for n in following],
                                                 len(reg))[layer]))
            return reg

        step_kx = field("step_kx", [g.dilation[1] * g.blocks for g in geometries])
        step_ky = field("step_ky", [g.dilation[0] * g.width * g.blocks for g in geometries])
        step_ox = field("step_ox", [g.stride[1] * g.blocks for g in geometries])
        step_oy = field("step_oy", [g.stride[0] * g.width * g.blocks for g in geometries])

        # Each counter's flag "at its last value" is a register kept with it, so that
        # the walk's choice of step (below) starts at registers, not at comparisons (on
        # the iCE40 the comparison of ``ox`` through that choice into ``addr`` was kws's
        # engine's critical path, 29.0 ns): a step sets it when the counter reaches its
        # next to last value, a return to 0 when the layer's count has one value.
        def counter(name, shape, lasts):
            return _Counter(Signal(shape, name=name),
                            Signal(name=f"{name}_end", init=lasts[0] == 0),
                            field(f"{name}_single", [v == 0 for v in lasts]),
                            field(f"next_{name}_single", [lasts[n] == 0 for n in following]),
                            field(f"{name}_before_last", [max(v - 1, 0) for v in lasts]))

        def step(c):
            return [c.value.eq(c.value + 1), c.end.eq(c.value == c.before_last)]

        def zero(c):
            return [c.value.eq(0), c.end.eq(c.single)]

        def next_layer(c):
            return [c.value.eq(0), c.end.eq(c.next_single)]

        oy = counter("oy", range(max(out_h)), [h - 1 for h in out_h])
        ox = counter("ox", range(max(out_w)), [w - 1 for w in out_w])
        ky = counter("ky", range(max(g.kernel[0] for g in geometries)),
                     [g.kernel[0] - 1 for g in geometries])
        kx = counter("kx", range(max(g.kernel[1] for g in geometries)),
                     [g.kernel[1] - 1 for g in geometries])
        cb = counter("cb", range(max(g.blocks for g in geometries)),
                     [g.blocks - 1 for g in geometries])
        height = field("height", [g.height for g in geometries])
        width = field("width", [g.width for g in geometries])
        dil_y = field("dil_y", [g.dilation[0] for g in geometries])
        dil_x = field("dil_x", [g.dilation[1] for g in geometries])
        str_y = field("str_y", [g.stride[0] for g in geometries])
        str_x = field("str_x", [g.stride[1] for g in geometries])
        pad_value = field("pad_value", [g.pad_value for g in geometries])
        first_ix = field("first_ix", [-g.padding[1] for g in geometries])
        # The next layer's first position (its region's base less its top and left
        # padding), rows and columns, and region: figures of the layer too, taken as it
        # ends.
        next_start = field("next_start", [start_of(geometries[n], region_of(n) * stride)
                                          for n in following])
        next_iy = field("next_iy", [-geometries[n].padding[0] for n in following])
        next_ix = field("next_ix", [-geometries[n].padding[1] for n in following])
        next_region = field("next_region", [region_of(n) for n in following])

        # The beat in the walker is read on the edges where the pipeline after it moves.
        m.submodules.skid = skid = SkidBuffer(window_layout(simd))
        beat_pad = Signal()
        beat_pad_value = Signal(signed(8))
        advance = ~beat_valid | skid.i.ready
        ready = full.bit_select(r_region, 1)  # the walker's beat can be read
        inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
        # Each region's one port: written by the writer, else read by the walker (a
        # region being written is not full, so the walker's beat from it is not valid).
        offset = addr[:len(memories[0].addr)]
        for r, memory in enumerate(memories):
            write_here = writing & (w_region == r)
            m.d.comb += [
                memory.addr.eq(Mux(write_here, written, offset)),
                memory.write.eq(write_here),
                memory.write_data.eq(incoming.payload),
                memory.read.eq(advance & (r_region == r) & ~write_here),
            ]
        with m.If(advance):
            m.d.sync += [beat_valid.eq(ready), beat_region.eq(r_region),
                         beat_pad.eq(~inside), beat_pad_value.eq(pad_value)]
        lanes = Signal(signed_lanes(8, simd))
        m.d.comb += [lanes.eq(Array(memory.read_data for memory in memories)[beat_region]),
                     skid.i.valid.eq(beat_valid)]
        m.d.comb += skid.i.payload.pad.eq(beat_pad)
        for s in range(simd):
            m.d.comb += skid.i.payload.data[s].eq(Mux(beat_pad, beat_pad_value, lanes[s]))
        wiring.connect(m, skid.o, wiring.flipped(self.o))

        # The kernel's steps, innermost first: "conv" walks the channel blocks inside
        # each position, "depthwise" the positions inside each channel block (from
        # ``base``, the pixel's first position of the block).
        def conv_steps():
            return [
                (cb, [*step(cb), addr.eq(addr + 1)]),
                (kx, [*zero(cb), *step(kx), col.eq(col + step_kx),
                      addr.eq(col + step_kx), ix.eq(ix + dil_x)]),
                (ky, [*zero(cb), *zero(kx), *step(ky), row.eq(row + step_ky),
                      col.eq(row + step_ky), addr.eq(row + step_ky),
                      iy.eq(iy + dil_y), ix.eq(ix_pixel)]),
            ]

        def depthwise_steps():
            return [
                (kx, [*step(kx), col.eq(col + step_kx),
                      addr.eq(col + step_kx), ix.eq(ix + dil_x)]),
                (ky, [*zero(kx), *step(ky), row.eq(row + step_ky),
                      col.eq(row + step_ky), addr.eq(row + step_ky),
                      iy.eq(iy + dil_y), ix.eq(ix_pixel)]),
                (cb, [*zero(kx), *zero(ky), *step(cb), base.eq(base + 1),
                      row.eq(base + 1), col.eq(base + 1), addr.eq(base + 1),
                      iy.eq(iy_line), ix.eq(ix_pixel)]),
            ]

        def walk(steps):
            for k, (c, statements) in enumerate(steps):
                with (m.If if k == 0 else m.Elif)(~c.end):
                    m.d.sync += statements
            with m.Elif(~ox.end):
                m.d.sync += [*zero(cb), *zero(kx), *zero(ky), *step(ox),
                             pixel.eq(pixel + step_ox), base.eq(pixel + step_ox),
                             row.eq(pixel + step_ox), col.eq(pixel + step_ox),
                             addr.eq(pixel + step_ox), iy.eq(iy_line),
                             ix_pixel.eq(ix_pixel + str_x), ix.eq(ix_pixel + str_x)]
            with m.Elif(~oy.end):
                m.d.sync += [*zero(cb), *zero(kx), *zero(ky), *zero(ox), *step(oy),
                             line.eq(line + step_oy), pixel.eq(line + step_oy),
                             base.eq(line + step_oy), row.eq(line + step_oy),
                             col.eq(line + step_oy), addr.eq(line + step_oy),
                             iy_line.eq(iy_line + str_y), iy.eq(iy_line + str_y),
                             ix_pixel.eq(first_ix), ix.eq(first_ix)]
            with m.Else():  # the layer's last beat: its region is free again
                m.d.sync += next_layer_loads
                m.d.sync += [*next_layer(cb), *next_layer(kx), *next_layer(ky),
                             *next_layer(ox), *next_layer(oy),
                             layer.eq(Mux(layer == count - 1, 0, layer + 1)),
                             r_region.eq(next_region),
                             line.eq(next_start), pixel.eq(next_start),
                             base.eq(next_start), row.eq(next_start),
                             col.eq(next_start), addr.eq(next_start),
                             iy_line.eq(next_iy), iy.eq(next_iy),
                             ix_pixel.eq(next_ix), ix.eq(next_ix)]
                m.d.sync += full.bit_select(r_region, 1).eq(0)

        orders = {g.order for g in geometries}
        with m.If(advance & ready):
            if orders == {"conv"}:
                walk(conv_steps())
            elif orders == {"depthwise"}:
                walk(depthwise_steps())
            else:
                with m.If(field("depthwise", [g.order == "depthwise" for g in geometries])):
                    walk(depthwise_steps())
                with m.Else():
                    walk(conv_steps())
        return m
