"""Sliding windows over an NHWC stream: the input side of convolutions and pooling."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError
from ..fold import divisors_text
from .adapters import SkidBuffer
from .layouts import signed_lanes

__all__ = ["ORDERS", "window_layout", "window_out_hw", "window_beats", "SlidingWindow"]

#: The beat orders of a window stream (see :func:`window_beats`).
ORDERS = ("conv", "depthwise")


def window_layout(simd: int, act_bits: int = 8) -> data.StructLayout:
    """One beat of a window stream: ``simd`` channels (signed ``act_bits``-bit) of one
    window position, and ``pad`` = 1 when that position lies in the padding (``data``
    then holds ``pad_value`` in every lane)."""
    return data.StructLayout({"data": signed_lanes(act_bits, simd), "pad": unsigned(1)})


def window_out_hw(in_hw, kernel, stride, dilation, padding) -> tuple[int, int]:
    """The output height and width as TFLite computes them:
    ``(H + top + bottom - ((KH - 1) * DH + 1)) // SH + 1`` (and likewise for the width)."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = in_hw, kernel, stride, dilation
    top, left, bottom, right = padding
    out_h = (h + top + bottom - ((kh - 1) * dh + 1)) // sh + 1
    out_w = (w + left + right - ((kw - 1) * dw + 1)) // sw + 1
    if out_h < 1 or out_w < 1:
        raise Tfl2RtlError(
            f"a {kh}x{kw} window (dilation {dh}x{dw}) does not fit the padded "
            f"{h}x{w} input"
        )
    return out_h, out_w


def window_beats(x, kernel, stride, dilation, padding, pad_value, simd, order):
    """The window stream of one image ``x`` (int8, ``(H, W, C)``): ``(data, pad)`` with
    ``data`` int8 of shape ``(beats, simd)`` and ``pad`` bool of shape ``(beats,)``.

    This is the stream format's definition.  ``padding`` is ``(top, left, bottom,
    right)``.  Output pixels ``(oh, ow)`` come row-major; for each, the window position
    ``(kh, kw)`` reads input pixel ``(oh * SH - top + kh * DH, ow * SW - left + kw * DW)``
    and channel block ``cb`` its channels ``cb * simd .. cb * simd + simd - 1``:

    - order ``"conv"``: for kh, for kw, for cb (TFLite's filter order ``[out_c, kh, kw,
      in_c]``);
    - order ``"depthwise"``: for cb, for kh, for kw.

    A position outside the input gives ``pad_value`` in every lane and ``pad`` True.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise Tfl2RtlError(f"expected an (H, W, C) image, not shape {x.shape}")
    if order not in ORDERS:
        raise Tfl2RtlError(f"unknown window order {order!r}; choose one of {ORDERS}")
    h, w, c = x.shape
    if simd < 1 or c % simd:
        raise Tfl2RtlError(f"SIMD={simd} does not divide the {c} channels")
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    top, left, _, _ = padding
    out_h, out_w = window_out_hw((h, w), kernel, stride, dilation, padding)
    blocks = c // simd

    # Input coordinates of every (output pixel, window position).
    rows = (np.arange(out_h) * sh - top)[:, None] + np.arange(kh) * dh  # [oh, kh]
    cols = (np.arange(out_w) * sw - left)[:, None] + np.arange(kw) * dw  # [ow, kw]
    row_inside = (rows >= 0) & (rows < h)
    col_inside = (cols >= 0) & (cols < w)
    gathered = x[np.clip(rows, 0, h - 1)[:, None, :, None],
                 np.clip(cols, 0, w - 1)[None, :, None, :], :]  # [oh, ow, kh, kw, c]
    inside = row_inside[:, None, :, None] & col_inside[None, :, None, :]  # [oh, ow, kh, kw]
    gathered = np.where(inside[..., None], gathered, np.int8(pad_value)).astype(np.int8)
    gathered = gathered.reshape(out_h, out_w, kh, kw, blocks, simd)
    pad = np.broadcast_to(~inside[..., None], (out_h, out_w, kh, kw, blocks))
    if order == "depthwise":
        gathered = gathered.transpose(0, 1, 4, 2, 3, 5)
        pad = pad.transpose(0, 1, 4, 2, 3)
    return gathered.reshape(-1, simd), pad.reshape(-1).copy()


class SlidingWindow(wiring.Component):
    """The window stream (:func:`window_beats`) of an NHWC stream, ``simd`` channels per
    beat, from line buffers in one on-chip :class:`Memory`.

    The buffer is circular: :attr:`rows` input rows of ``W * C / simd`` beats each, input
    row ``r`` (counted across images) in slot ``r mod rows``.  Each output row ``oh``
    reads input rows ``lo(oh) .. need(oh)`` (``oh * SH - top`` and ``oh * SH - top + (KH -
    1) * DH``, clipped to the image).  The reader starts an output row once row
    ``need(oh)`` is completely written; the writer takes a beat of row ``r`` only while
    ``r < lo(oh) + rows``, so it never overwrites a row the reader still needs.
    :attr:`rows` is by default the smallest count that lets the writer fill every row
    the next output row needs (across the image boundary too: the next image's first rows
    after the current image's leftovers) while the reader is busy with the current one, so
    neither side waits for the other except at the ends of the stream.  That is the
    window's height ``(KH - 1) * DH + 1`` plus ``SH`` rows for a SAME convolution (3x3
    stride 1: 4 rows), but up to two window heights plus VALID leftover rows where the
    next image's first window is written while the current image's last one is read
    (3x3 VALID: 6 rows), and two whole images for a window covering the image.  The
    ``rows`` argument trades that for waiting.  Input rows no window needs are still
    consumed.
    Padded positions give ``pad_value`` with ``pad`` = 1 and read no memory.

    The address, input coordinates and output row bounds are counters updated by
    constants (no multiplications); the memory read is registered and is the output
    register, so a beat leaves every cycle that rows are available and ``o`` is ready.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, simd)))``
        ``H * W * C / simd`` beats per image, NHWC; images back to back; ``act_bits`` is
        8 (int8) or 16 (a 16x8 model's int16 activations).
    o : ``Out(stream.Signature(window_layout(simd, act_bits)))``
        :attr:`beats_out` beats per image in ``order`` (``"conv"`` or ``"depthwise"``).

    Attributes
    ----------
    out_hw : (int, int)
        The output height and width (:func:`window_out_hw`).
    beats_per_window : int
        ``KH * KW * C / simd``.
    beats_in, beats_out : int
        Beats per image on ``i`` and on ``o``.
    rows : int
        Line buffer rows; the memory holds ``rows * W * C / simd`` beats.  By default
        :attr:`no_wait_rows`; the ``rows`` argument may lower it as far as
        :attr:`min_rows` (the rows of one output row's windows) to save memory, at the
        cost of the reader waiting for the writer (at every output row or image start)
        and so of a longer initiation interval than :attr:`cycles_per_vector`.
    min_rows, no_wait_rows : int
        The least rows that work and the least with which neither side waits.
    lead_beats : int
        Input beats of an image that must have been taken before its first window can
        start: the rows up to ``need(0)``.
    latency : int
        3: when the input beat completing the rows of an output row is taken at clock
        edge ``n`` (for the first window, beat :attr:`lead_beats` of the image), that
        row's first beat can leave at edge ``n + latency``.  (The input passes a
        :class:`~tfl2rtl.hw.adapters.SkidBuffer` first, so that ``i.ready`` is a register
        and the writer's row count, compared with its limit, does not reach the
        upstream stage's ``valid`` and come back: on the ECP5 that round trip, 5.1 ns of
        routing, was kws's critical path; and the memory write is registered.)  When the
        first output row lies wholly in the padding (:attr:`lead_beats` 0), the first
        beat waits for no input and can leave at edge :attr:`padding_latency`.
    padding_latency : int
        2: the memory read and the output register.
    cycles_per_vector : int
        ``max(beats_in, beats_out)``: the initiation interval per image when the input
        delivers a beat every cycle and ``o`` is always ready, with the default
        :attr:`rows` (measured in the tests for every shape below).

    Tested (against :func:`window_beats`, random stalls on ``i`` and backpressure on
    ``o``, several images back to back) with 1x1 to 10x4 kernels and windows covering the
    whole image (8x8, 25x5), strides 1 to 3 (SAME on odd sizes, VALID with leftover
    rows, strides larger than the kernel), dilation 2, explicit asymmetric padding, H or
    W of 1, C from 1 to 16 and ``simd`` from 1 to C, both orders; int16 values through
    the CONV_2D, DEPTHWISE_CONV_2D and pooling layers of 16x8 models.
    """

    latency = 2 + SkidBuffer.latency
    padding_latency = 2

    def __init__(self, in_shape, kernel, stride=(1, 1), dilation=(1, 1),
                 padding=(0, 0, 0, 0), pad_value=0, simd=1, order="conv", *,
                 rows: int | None = None, act_bits: int = 8):
        h, w, c = (int(v) for v in in_shape)
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        top, left, bottom, right = (int(v) for v in padding)
        if min(h, w, c, kh, kw, sh, sw, dh, dw) < 1:
            raise Tfl2RtlError(
                f"window over a {h}x{w}x{c} input with kernel {kh}x{kw}, stride "
                f"{sh}x{sw} and dilation {dh}x{dw}: every size must be positive"
            )
        if min(top, left, bottom, right) < 0:
            raise Tfl2RtlError(f"negative padding {tuple(padding)}")
        if act_bits not in (8, 16):
            raise Tfl2RtlError(f"{act_bits}-bit activations: the window takes 8 or 16")
        if not -(1 << (act_bits - 1)) <= pad_value < 1 << (act_bits - 1):
            raise Tfl2RtlError(f"pad value {pad_value} is not int{act_bits}")
        if order not in ORDERS:
            raise Tfl2RtlError(f"unknown window order {order!r}; choose one of {ORDERS}")
        if simd < 1 or c % simd:
            raise Tfl2RtlError(
                f"SIMD={simd} does not divide the {c} input channels; choose one of "
                + divisors_text(c)
            )
        self.in_shape = (h, w, c)
        self.kernel = (kh, kw)
        self.stride = (sh, sw)
        self.dilation = (dh, dw)
        self.padding = (top, left, bottom, right)
        self.pad_value = int(pad_value)
        self.act_bits = act_bits
        self.simd = simd
        self.order = order
        self.out_hw = window_out_hw((h, w), kernel, stride, dilation, padding)
        out_h, out_w = self.out_hw
        self.blocks = c // simd
        self.row_beats = w * self.blocks
        self.beats_per_window = kh * kw * self.blocks
        self.beats_in = h * self.row_beats
        self.beats_out = out_h * out_w * self.beats_per_window
        self.cycles_per_vector = max(self.beats_in, self.beats_out)

        extent = (kh - 1) * dh + 1
        self._extent = extent
        lo = [min(max(oh * sh - top, 0), h - 1) for oh in range(out_h)]
        need = [min(oh * sh - top + extent - 1, h - 1) for oh in range(out_h)]
        own = [need[oh] - lo[oh] + 1 for oh in range(out_h)]
        ahead = [need[oh + 1] - lo[oh] + 1 for oh in range(out_h - 1)]
        ahead.append(h + need[0] - lo[-1] + 1)
        self.min_rows = max(1, *own)
        self.no_wait_rows = max(self.min_rows, *ahead)
        if rows is None:
            rows = self.no_wait_rows
        if not self.min_rows <= rows <= self.no_wait_rows:
            raise Tfl2RtlError(f"{rows} line buffer rows: this window needs "
                               f"{self.min_rows} to {self.no_wait_rows}")
        self.rows = rows
        self._lo0, self._need0 = lo[0], need[0]
        self.lead_beats = max(0, need[0] + 1) * self.row_beats
        super().__init__({
            "i": In(stream.Signature(signed_lanes(act_bits, simd))),
            "o": Out(stream.Signature(window_layout(simd, act_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        h, w, _ = self.in_shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        top, left, _, _ = self.padding
        out_h, out_w = self.out_hw
        blocks, row_beats, rows = self.blocks, self.row_beats, self.rows
        depth = rows * row_beats

        lanes = signed_lanes(self.act_bits, self.simd)
        m.submodules.lines = lines = Memory(shape=lanes, depth=depth, init=[])
        write = lines.write_port()
        # Transparent: a beat is written a cycle after it is taken (the write is
        # registered, see the writer), so the reader, which may start on a row from the
        # cycle after its last beat was taken, can read that beat in the cycle it is
        # written.
        read = lines.read_port(transparent_for=(write,))

        # The reader's loop nest, outermost first (the image loop around it is implicit).
        # ``last`` flags are registers, kept alongside their counters.
        inner = ([("kh", kh), ("kw", kw), ("cb", blocks)] if self.order == "conv"
                 else [("cb", blocks), ("kh", kh), ("kw", kw)])
        loops = [("oh", out_h), ("ow", out_w), *inner]
        counters = {name: Signal(range(limit), name=name) for name, limit in loops}
        last = {name: Signal(name=f"last_{name}") if limit > 1 else Const(1)
                for name, limit in loops}

        # Quantities that are linear in the loop counters, tracked by adding the right
        # constant for whichever loop moves: (coefficients, initial value, modulus).
        tracked = {
            # The read address: input row (counted across images) * row_beats + column *
            # blocks + channel block, modulo the buffer.
            "addr": ({"image": h * row_beats, "oh": sh * row_beats, "kh": dh * row_beats,
                      "ow": sw * blocks, "kw": dw * blocks, "cb": 1},
                     (-top * row_beats - left * blocks) % depth, depth),
            # The input row and column within the image (outside it: padding).
            "ih": ({"oh": sh, "kh": dh}, -top, None),
            "iw": ({"ow": sw, "kw": dw}, -left, None),
        }

        def delta(coeffs, level):
            """The change of a tracked quantity when loop ``level`` (an index into
            ``loops``, -1 for the image) moves and every loop inside it wraps."""
            own = coeffs.get("image" if level < 0 else loops[level][0], 0)
            return own - sum((limit - 1) * coeffs.get(name, 0)
                             for name, limit in loops[level + 1:])

        def bounds(coeffs, initial):
            lo = hi = initial
            for name, limit in loops:
                span = (limit - 1) * coeffs.get(name, 0)
                lo, hi = lo + min(span, 0), hi + max(span, 0)
            return lo, hi

        def moving(candidates):
            """``candidates[level]`` for the loop that moves: the innermost one not at its
            last value (-1, the image, when all are)."""
            value = candidates[-1]
            for level, (name, limit) in enumerate(loops):
                if limit > 1:
                    value = Mux(last[name], value, candidates[level])
            return value

        signals, following = {}, {}
        for key, (coeffs, initial, modulus) in tracked.items():
            if modulus is None:
                lo, hi = bounds(coeffs, initial)
                sig = Signal(range(min(lo, 0), max(hi, 0) + 1), name=key, init=initial)
            else:
                sig = Signal(range(modulus), name=key, init=initial)
            # Every candidate is computed from the register in parallel, then selected.
            candidates = {}
            for level in range(-1, len(loops)):
                d = delta(coeffs, level)
                if modulus is None:
                    candidates[level] = sig + d
                elif d % modulus == 0:
                    candidates[level] = sig
                else:
                    d %= modulus
                    candidates[level] = Mux(sig >= modulus - d, sig - (modulus - d), sig + d)
            signals[key], following[key] = sig, moving(candidates)

        # Flow control between writer and reader, in rows relative to the start of the
        # reader's image: the writer is at row ``written`` (the rows before it are
        # complete), the current output row needs rows up to ``need``, and the writer may
        # go on while ``written < write_limit`` (the current output row's first row
        # + rows).
        # Also their values for the following output row of the same image, from
        # ``base``, that row's unclipped first row.
        written = Signal(range(-h, 2 * h + 1))
        need = Signal(range(min(self._need0, 0), h), init=self._need0)
        write_limit = Signal(range(rows + h), init=self._lo0 + rows)
        base = Signal(range(-top + sh, max(out_h * sh - top, 0) + 1), init=-top + sh)
        extent = self._extent

        def need_from(first):
            return Mux(first + extent - 1 > h - 1, h - 1, first + extent - 1)

        def limit_from(first):
            # (Each clamp only where ``base`` can cross it: Verilator's lint flags a
            # comparison that is constant over the signal's range.)
            above = Mux(first > h - 1, h - 1, first) if out_h * sh - top > h - 1 else first
            return (Mux(first < 0, 0, above) if -top + sh < 0 else above) + rows

        # The following row's ``need`` and ``write_limit`` are registers too, loaded
        # whenever ``base`` moves (with its next value), so that the comparisons that
        # choose ``room`` and ``rows_ready`` below start from registers, not from an
        # adder, a clamp and a comparison after ``base``.
        first0 = -top + sh
        next_need = Signal.like(need, init=min(first0 + extent - 1, h - 1))
        next_write_limit = Signal.like(write_limit,
                                       init=max(min(first0, h - 1), 0) + rows)

        # Reader: the memory read is the output register.  ``rows_ready`` is ``written >
        # need``, kept in a register like the writer's ``room`` (below), so that the
        # comparison's carry chain does not lie before the reader's step (on the iCE40
        # that path, through the step into the writer's selection of ``written``, was
        # micro_speech's critical path: 11 LUTs and carry chains, 37 ns).
        advance = Signal()
        rows_ready = Signal(init=int(0 > self._need0))
        step = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            step.eq(advance & rows_ready),
            read.addr.eq(signals["addr"]),
            read.en.eq(advance),
        ]
        ih, iw = signals["ih"], signals["iw"]
        pad_now = Const(0)
        for sig, key, size in ((ih, "ih", h), (iw, "iw", w)):
            lowest, highest = bounds(*tracked[key][:2])
            if lowest < 0:
                pad_now = pad_now | (sig < 0)
            if highest >= size:
                pad_now = pad_now | (sig >= size)

        valid = Signal()
        pad = Signal()
        with m.If(advance):
            m.d.sync += [valid.eq(rows_ready), pad.eq(pad_now)]
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.pad.eq(pad)]
        for lane in range(self.simd):
            m.d.comb += self.o.payload.data[lane].eq(Mux(pad, self.pad_value, read.data[lane]))

        # Which loops move: each one whose inner loops are all at their last values.
        wraps = {}
        inside_last = Const(1)
        for name, _ in reversed(loops):
            wraps[name] = inside_last
            inside_last = inside_last & last[name]
        image_done = Signal()
        row_done = Signal()  # the reader moves to the next output row of the same image
        m.d.comb += [
            image_done.eq(step & inside_last),
            row_done.eq(step & wraps["oh"] & ~last["oh"]),
        ]

        with m.If(step):
            for key, sig in signals.items():
                m.d.sync += sig.eq(following[key])
            for name, limit in loops:
                if limit == 1:
                    continue
                counter = counters[name]
                with m.If(wraps[name]):
                    m.d.sync += [
                        counter.eq(Mux(last[name], 0, counter + 1)),
                        last[name].eq(~last[name] & (counter == limit - 2)),
                    ]
        with m.If(row_done):
            m.d.sync += [need.eq(next_need), write_limit.eq(next_write_limit),
                         base.eq(base + sh), next_need.eq(need_from(base + sh)),
                         next_write_limit.eq(limit_from(base + sh))]
        with m.If(image_done):
            m.d.sync += [need.eq(self._need0), write_limit.eq(self._lo0 + rows),
                         base.eq(first0), next_need.eq(next_need.init),
                         next_write_limit.eq(next_write_limit.init)]

        # Writer: rows go into the buffer in order, slot after slot, from the skid
        # buffer.
        # The write itself is registered (address, data and enable), so that the limit
        # comparison deciding ``take`` does not also drive the memory's write enable
        # across the chip (on the ECP5 that was kws's critical path: 6.4 ns of routing
        # from ``take`` to a line buffer in distributed RAM).
        m.submodules.skid = skid = SkidBuffer(signed_lanes(self.act_bits, self.simd))
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        waddr = Signal(range(depth))
        wpos = Signal(range(row_beats))
        take = Signal()
        # ``room`` is ``written < write_limit``, kept in a register, so that the
        # comparison's carry chain does not lie before the skid buffer's enables and the
        # writer's counters (on the ECP5 that path was kws's critical path with products
        # in logic, 17.4 ns, 14.5 of them routing).
        room = Signal(init=int(0 < self._lo0 + rows))
        m.d.comb += skid.o.ready.eq(room)
        m.d.comb += take.eq(skid.o.valid & skid.o.ready)
        m.d.sync += [
            write.addr.eq(waddr),
            write.data.eq(skid.o.payload),
            write.en.eq(take),
        ]
        with m.If(take):
            m.d.sync += [
                waddr.eq(Mux(waddr == depth - 1, 0, waddr + 1)),
                wpos.eq(Mux(wpos == row_beats - 1, 0, wpos + 1)),
            ]
        row_written = take & (wpos == row_beats - 1)
        # ``written`` and ``room`` after this cycle: every candidate value and comparison
        # is computed from registers, for the writer finishing a row or not and the
        # reader finishing an image, a row or neither; the writer's ``take`` and the
        # reader's step (which waits for the next stage's ``ready``) only pick one, so no
        # adder or carry chain follows either (on the ECP5 the adder and comparisons
        # after them were kws's critical path with products in logic: 19 ns, then 15.7).
        # The same for ``rows_ready``, against ``need`` after this cycle.
        # Each comparison is a register against a register or a constant (``written +
        # 1`` is a register of its own, and the image case's ``- h`` is folded into the
        # constant), so that no adder lies before a comparison's carry chain (on the ECP5
        # the adders and comparisons in series were ResNet-8's critical path, 14.4 ns).
        written1 = Signal(range(-h + 1, 2 * h + 2), init=1)
        cases = []  # (row written, image done, row done) -> (written, room, rows_ready)
        for finished, w_f in ((0, written), (1, written1)):
            cases.append((finished,
                          (w_f - h, w_f < self._lo0 + rows + h, w_f > self._need0 + h),
                          (w_f, w_f < next_write_limit, w_f > next_need),
                          (w_f, w_f < write_limit, w_f > need)))
        def take_case(values):
            m.d.sync += [written.eq(values[0]), written1.eq(values[0] + 1),
                         room.eq(values[1]), rows_ready.eq(values[2])]

        for finished, image, row, neither in cases:
            with m.If(row_written == finished):
                with m.If(image_done):
                    take_case(image)
                with m.Elif(row_done):
                    take_case(row)
                with m.Else():
                    take_case(neither)
        return m
