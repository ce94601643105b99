"""DEPTHWISE_CONV_2D: sliding window, per-channel multiply-accumulate, requantization."""

from __future__ import annotations

import operator
from functools import partial

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fixedpoint import signed_bits
from . import pipeline
from .adapters import AccumulatorSplitter, SkidBuffer, connect_splitting
from .layouts import accumulator_layout, pack_lanes, signed_lanes
from .requant import Int64Requantizer, Requantizer
from .window import SlidingWindow, window_layout, window_out_hw

__all__ = ["DepthwiseUnit", "DepthwiseConv2DLayer", "logic_product", "pe_choices"]


def logic_product(a, b):
    """``a * b`` for signed ``a`` and ``b`` of any widths (int8 by int8 or by 9 bits in
    the units) as the sum of :func:`tfl2rtl.hw.pipeline.logic_terms`, in one stage:
    additions only, so synthesis keeps it in LUTs and carry chains; a 9-bit ``b`` adds
    one term."""
    terms = pipeline.logic_terms(a, b)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _check_pe(node: ir.DepthwiseConv2D, pe: int) -> int:
    """The window lanes for ``pe`` output channels per cycle (``pe / depth_multiplier``
    input channels, or 1 when ``pe`` divides the depth multiplier), after checking that
    ``pe`` divides the output channels and is a multiple or a divisor of the depth
    multiplier."""
    choices = pe_choices(node)
    if pe in choices:
        return max(pe // node.depth_multiplier, 1)
    raise Tfl2RtlError(
        f"PE={pe} does not divide the {node.weights.shape[2]} output channels in whole "
        f"input channels or parts of one (depth multiplier {node.depth_multiplier}); "
        f"choose one of {', '.join(map(str, choices))}"
    )


def pe_choices(node: ir.DepthwiseConv2D) -> list[int]:
    """Every valid ``pe`` (output channels per cycle) for ``node``."""
    multiplier = node.depth_multiplier
    out_channels = node.weights.shape[2]
    return [d for d in range(1, out_channels + 1)
            if out_channels % d == 0 and (d % multiplier == 0 or multiplier % d == 0)]


class DepthwiseUnit(wiring.Component):
    """The multiply-accumulate half of a :class:`tfl2rtl.ir.DepthwiseConv2D` node, ``pe``
    output channels (``pe`` multipliers) per cycle.

    With depth multiplier ``M``, input channel ``c`` gives output channels ``c * M .. c * M
    + M - 1``.  ``pe`` is a multiple of ``M`` (``in_lanes = pe / M`` input channels per
    window beat, every beat's ``lanes = pe`` products in one cycle) or a divisor of it (one
    input channel per beat, whose ``lanes = M`` products take ``steps = M / pe`` cycles of
    ``pe``).

    It consumes a window stream in order ``"depthwise"``
    (:func:`tfl2rtl.hw.window.window_beats`) of ``in_lanes`` lanes: for each output pixel,
    for each channel block ``cb`` of ``in_lanes`` input channels, the ``KH * KW`` window
    positions one beat each.  Step ``s`` of beat ``(cb, kh, kw)`` multiplies output lanes
    ``s * pe .. s * pe + pe - 1`` (lane ``j`` reads input lane ``j // M``) by the weights
    ``weights[kh, kw, cb * lanes + s * pe ...]``, one :class:`Memory` row per ``(cb, kh,
    kw, s)``, read in the order the steps come.  After the block's last step, its
    ``lanes`` accumulators, started from ``folded_bias`` (another memory, one row per
    ``(cb, s)``), leave as one beat.  With ``steps > 1`` the accumulators form a ring that
    turns by ``pe`` every step, so ``pe`` adders serve all of them.

    ``pad`` is ignored: padded positions carry the input zero point (``-input_offset``),
    which the folded bias already accounts for, so the sums equal
    :func:`tfl2rtl.golden.accumulate` ``(node, x, folded=True)``.  ``acc_bits`` holds every
    final sum; partial sums wrap harmlessly.

    Pipeline (one enable, moving whenever the output register is empty or being emptied):
    step issued and memory read; multiplier operands registered; products registered;
    accumulators, which are the output register.  With ``products_in_logic`` the
    products are shifted adds in logic (:func:`logic_product`) instead of ``*``, which
    Yosys maps to DSP blocks (a planner's choice when a board's DSP blocks run out,
    :func:`tfl2rtl.design.products_in_logic`).

    Members
    -------
    i : ``In(stream.Signature(window_layout(in_lanes)))``
        ``out_h * out_w * (in_c / in_lanes) * KH * KW`` beats per image.
    o : ``Out(stream.Signature(accumulator_layout(acc_bits, lanes, in_c / in_lanes)))``
        One beat per output pixel and channel block, ``group = cb``; ``acc[lane]`` is
        output channel ``cb * lanes + lane``, in NHWC order.

    Attributes
    ----------
    pe, multipliers : int
        Output channels per cycle: the multipliers working side by side.
    in_lanes : int
        Input channels per window beat.
    lanes : int
        Accumulators per output beat: ``in_lanes * depth_multiplier``.
    steps : int
        Cycles per window beat: ``lanes / pe``.
    taps : int
        ``KH * KW``, the window beats per output beat.
    latency : int
        4: when a block's last beat is taken on ``i`` at clock edge ``n`` (at its last
        step), its accumulators can leave on ``o`` at edge ``n + latency``.
    throughput : float
        ``1 / steps``: a beat is taken every ``steps`` cycles the output is not stalled.

    Tested with the same layers as :class:`DepthwiseConv2DLayer` (``steps`` 1; 2 on a
    depth multiplier of 2; 4 and 8 on micro_speech's 8), its accumulators (and
    ``group``) compared with :func:`tfl2rtl.golden.accumulate` directly, and through a
    requantizer.
    """

    latency = 4

    def __init__(self, node: ir.DepthwiseConv2D, *, pe: int = 1,
                 products_in_logic: bool = False):
        weights = np.asarray(node.weights)
        kh, kw, out_channels = weights.shape
        bits = node.weight_bits
        if weights.size and (weights.min() < -(1 << (bits - 1))
                             or weights.max() >= 1 << (bits - 1)):
            raise Tfl2RtlError(f"the depthwise weights are not {bits}-bit signed integers")
        multiplier = node.depth_multiplier
        if multiplier < 1 or out_channels % multiplier:
            raise Tfl2RtlError(
                f"depth multiplier {multiplier} does not divide {out_channels} output channels"
            )
        self.in_lanes = _check_pe(node, pe)
        bias = np.asarray(node.folded_bias, dtype=np.int64).reshape(-1)
        if bias.size != out_channels:
            raise Tfl2RtlError(f"{bias.size} biases for {out_channels} output channels")
        lo, hi = -(1 << (node.acc_bits - 1)), (1 << (node.acc_bits - 1)) - 1
        if bias.min() < lo or bias.max() > hi:
            raise Tfl2RtlError(f"a bias does not fit the {node.acc_bits}-bit accumulator")

        self.node = node
        self.pe = self.multipliers = pe
        self.products_in_logic = products_in_logic
        self.depth_multiplier = multiplier
        self.in_channels = out_channels // multiplier
        self.lanes = self.in_lanes * multiplier
        self.steps = self.lanes // pe
        self.throughput = 1 / self.steps if self.steps > 1 else 1
        self.out_channels = out_channels
        self.kernel = (kh, kw)
        self.taps = kh * kw
        self.blocks = self.in_channels // self.in_lanes
        self.acc_width = node.acc_bits
        self.weight_bits = bits
        #: int16 activations in a 16x8 layer (int64 accumulators), else int8.
        self.act_bits = node.act_bits
        self._weights = weights.astype(np.int64)
        self._bias = bias
        super().__init__({
            "i": In(stream.Signature(window_layout(self.in_lanes, self.act_bits))),
            "o": Out(stream.Signature(
                accumulator_layout(self.acc_width, self.lanes, self.blocks))),
        })

    def _weight_rows(self) -> list[int]:
        """Row ``((cb * taps + kh * KW + kw) * steps + s``: ``weights[kh, kw, cb * lanes +
        s * pe ...]``, lane ``j`` (``weight_bits`` wide) for product ``j``
        (:func:`~tfl2rtl.hw.layouts.pack_lanes`)."""
        w = self._weights.reshape(self.taps, self.blocks, self.lanes).transpose(1, 0, 2)
        return pack_lanes(w.reshape(-1, self.pe), self.weight_bits)

    def _bias_rows(self, width: int) -> list[int]:
        """Row ``cb * steps + s``: the biases of channels ``cb * lanes + s * pe ..``,
        ``width`` bits each."""
        mask = (1 << width) - 1
        rows = self._bias.reshape(-1, self.pe).tolist()
        return [sum((b & mask) << (width * j) for j, b in enumerate(row)) for row in rows]

    def elaborate(self, platform):
        m = Module()
        taps, blocks, steps, pe = self.taps, self.blocks, self.steps, self.pe

        advance = Signal()
        issue = Signal()
        step = Signal(range(steps))
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance & (step == steps - 1)),
            issue.eq(advance & self.i.valid),
        ]
        # The registers of each product and of the accumulators it feeds take a copy of
        # the enable, made from a copy of the output's valid bit (as in
        # :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit`: no single net carries the enable to
        # every DSP block of the unit).
        valid_copies, advances = pipeline.enable_copies(m, pe, self.o.ready)

        # Issue: walk (cb, tap, step) with the weight row and the bias row (cb * steps +
        # step, counted: no multiplier) alongside.
        tap = Signal(range(taps))
        block = Signal(range(blocks))
        row = Signal(range(taps * blocks * steps))
        bias_row = Signal(range(blocks * steps))
        block_bias_row = Signal(range(blocks * steps))
        with m.If(issue):
            m.d.sync += [
                step.eq(Mux(step == steps - 1, 0, step + 1)),
                row.eq(Mux(row == taps * blocks * steps - 1, 0, row + 1)),
                bias_row.eq(bias_row + 1),
            ]
            with m.If(step == steps - 1):
                m.d.sync += [
                    tap.eq(Mux(tap == taps - 1, 0, tap + 1)),
                    bias_row.eq(block_bias_row),
                ]
                with m.If(tap == taps - 1):
                    next_block_row = Mux(block == blocks - 1, 0, block_bias_row + steps)
                    m.d.sync += [
                        block.eq(Mux(block == blocks - 1, 0, block + 1)),
                        block_bias_row.eq(next_block_row),
                        bias_row.eq(next_block_row),
                    ]

        # Data registers have no reset (their valid bits do).
        register = partial(pipeline.register, m, advance, reset_less=True)
        flag = partial(pipeline.register, m, advance)

        # Stage 1: the weight row is read while the beat waits in a register.
        weight_layout = signed_lanes(self.weight_bits, pe)
        m.submodules.weights = weights = Memory(
            shape=unsigned(weight_layout.size), depth=taps * blocks * steps,
            init=self._weight_rows())
        weight_port = weights.read_port()
        m.d.comb += [weight_port.addr.eq(row), weight_port.en.eq(advance)]
        x_1 = register(self.i.payload.data, "x_1", signed_lanes(self.act_bits, self.in_lanes))
        valid_1 = flag(issue, "valid_1")
        first_1 = register(tap == 0, "first_1")
        last_1 = register((tap == taps - 1) & (step == steps - 1), "last_1")
        group_1 = register(block, "group_1")
        bias_row_1 = register(bias_row, "bias_row_1")

        # Stage 2: the multiplier operands, registered; product j reads input lane
        # j // M (with steps > 1 there is one input lane).  Stage 3: products (in logic
        # where the platform keeps its DSP blocks for others).  A platform with a DSP
        # block that has its own registers (pipeline.PRODUCT_HOOK) holds both stages.
        in_logic = self.products_in_logic
        valid_2 = flag(valid_1, "valid_2")
        first_2 = register(first_1, "first_2")
        last_2 = register(last_1, "last_2")
        group_2 = register(group_1, "group_2")
        w_1 = weight_layout(weight_port.data)
        products = None
        if not in_logic:  # (the same operands everywhere: the hook takes all or none)
            first = pipeline.platform_product(m, platform, advances[0], x_1[0], w_1[0],
                                              "product_0")
            if first is not None:
                products = [first] + [
                    pipeline.platform_product(m, platform, advances[j],
                                              x_1[j // self.depth_multiplier], w_1[j],
                                              f"product_{j}")
                    for j in range(1, pe)]
        if products is None:
            x_2 = register(x_1, "x_2", signed_lanes(self.act_bits, self.in_lanes))
            multiply = logic_product if in_logic else operator.mul
            products = [
                pipeline.register(
                    m, advances[j],
                    multiply(x_2[j // self.depth_multiplier],
                             pipeline.register(m, advances[j], w_1[j], f"w_2_{j}",
                                               reset_less=True)),
                    f"product_{j}", signed(self.act_bits + self.weight_bits),
                    reset_less=True)
                for j in range(pe)
            ]

        # The step's biases, read during stage 1, registered for stage 3.
        bias_width = signed_bits(int(self._bias.min()), int(self._bias.max()))
        bias_layout = data.ArrayLayout(signed(bias_width), pe)
        m.submodules.bias = biases = Memory(
            shape=unsigned(bias_layout.size), depth=blocks * steps,
            init=self._bias_rows(bias_width))
        bias_port = biases.read_port()
        # (read a stage earlier and registered, so that the block RAM's slow output does
        # not feed the accumulator's adder directly)
        m.d.comb += [bias_port.addr.eq(bias_row_1), bias_port.en.eq(advance)]
        bias_data = register(bias_layout(bias_port.data), "bias_r", bias_layout)

        valid_3 = flag(valid_2, "valid_3")
        first_3 = register(first_2, "first_3")
        last_3 = register(last_2, "last_3")
        group_3 = register(group_2, "group_3")

        # Stage 4: accumulate; the accumulators are the output register.  With several
        # steps they turn as a ring: the head's pe sums are updated and go to the tail.
        acc = self.o.payload.acc
        out_valid = Signal()
        out_group = Signal.like(self.o.payload.group)
        with m.If(advance):
            m.d.sync += out_valid.eq(valid_3 & last_3)
            with m.If(valid_3):
                m.d.sync += out_group.eq(group_3)
        for j in range(pe):
            with m.If(advances[j]):
                m.d.sync += valid_copies[j].eq(valid_3 & last_3)
        for j in range(self.lanes):  # lane j moves on the copy of product j % pe
            with m.If(advances[j % pe] & valid_3):
                if j < self.lanes - pe:
                    m.d.sync += acc[j].eq(acc[j + pe])
                else:
                    k = j - (self.lanes - pe)
                    m.d.sync += acc[j].eq(Mux(first_3, bias_data[k], acc[k]) + products[k])
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.group.eq(out_group),
        ]
        return m


class DepthwiseConv2DLayer(wiring.Component):
    """One :class:`tfl2rtl.ir.DepthwiseConv2D` node on an ``(H, W, C)`` input, ``pe``
    output channels per cycle (see :class:`DepthwiseUnit`: ``pe`` is a multiple or a
    divisor of the depth multiplier).

    A :class:`~tfl2rtl.hw.window.SlidingWindow` (order ``"depthwise"``, ``in_lanes``
    lanes, padding with the input zero point ``-input_offset``) feeds a
    :class:`DepthwiseUnit`, whose accumulators a ``requant_lanes``-lane
    :class:`~tfl2rtl.hw.requant.Requantizer` turns into the node's int8 outputs (by
    default ``pe`` lanes; the unit's ``lanes`` accumulators go to fewer lanes through an
    :class:`~tfl2rtl.hw.adapters.AccumulatorSplitter`, which saves the requantizers'
    multipliers).  The results equal :func:`tfl2rtl.golden.depthwise_conv_2d` for every
    input within the range ``acc_bits`` was proven for.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, in_lanes)))``
        The input image in NHWC order, ``H * W * C / in_lanes`` beats.
    o : ``Out(stream.Signature(signed_lanes(act_bits, requant_lanes)))``
        ``act_bits`` is 16 in a 16x8 layer (int16 activations, an
        :class:`~tfl2rtl.hw.requant.Int64Requantizer`), else 8.
        The output image in NHWC order, ``out_h * out_w * C * depth_multiplier /
        requant_lanes`` beats.

    Attributes
    ----------
    in_shape, out_shape : tuple[int, int, int]
        ``(H, W, C)`` and ``(out_h, out_w, C * depth_multiplier)``.
    pe, multipliers : int
        Output channels per cycle: ``pe`` multipliers, int8 by the node's
        ``weight_bits`` (8, or 9 in a legacy uint8 model's hardware form).
    in_lanes : int
        Input channels per beat: ``pe / depth_multiplier``, at least 1.
    requant_lanes : int
        Requantizer lanes; they divide the unit's ``lanes``.  With
        ``serial_requantizer`` they share one multiplier between their partial products
        (:class:`~tfl2rtl.hw.requant.Requantizer`'s ``serial_products``); with
        ``compact_requantizer`` they are compact (its ``compact``).
    products_in_logic : bool
        The unit's products in LUTs (:class:`DepthwiseUnit`).
    cycles_per_vector : int
        Initiation interval per image when the input keeps up and the output is not
        stalled: ``out_h * out_w * (C / in_lanes) * max(KH * KW * steps, lanes /
        requant_lanes * requant.interval)``, one step per cycle, unless the window is
        slower to take the ``H * W * C / in_lanes`` input beats (the window's
        ``cycles_per_vector``, the larger of the two).
    latency : int
        When the input beat completing the rows of the first output row (beat
        ``window.lead_beats`` of the image) is taken at clock edge ``n``, the first output
        beat can leave at edge ``n + latency``: ``window.latency + SkidBuffer.latency + KH
        * KW * steps - 1 + unit.latency + SkidBuffer.latency + requant.latency`` (the
        window's first beat and the register slice after it, the rest of the first
        pixel's first channel block, the accumulation, the register slice before the
        requantizer and the requantization), plus one with a splitter.

    Tested on the DEPTHWISE_CONV_2D layers of kws_ref_model (3x3, 64 channels),
    micro_speech_quantized (10x8, stride 2, padding (4, 3, 5, 3), depth multiplier 8 from
    one channel; ``pe`` 1, 2, 4 and 8) and vww_96_int8 (3x3, stride 2, padding (0, 0, 1,
    1)), cropped to small images, and on written layers: depth multiplier 2 and 3,
    dilation 2 with RELU6, stride 2 SAME on odd sizes, one channel VALID, 1x1 kernels
    (one with stride 2, where the input is the bottleneck); ``in_lanes`` 1, 2, 3, 4, 8
    and 64 (the full depth), two images back to back (uniform over the input tensor's
    value range, and its two ends only), random stalls on ``i`` and backpressure on
    ``o``; ``latency`` and ``cycles_per_vector`` measured; the 16x8 layer of
    cnn_int16x8 (int16 values, an Int64Requantizer) and those of random 16x8 graphs.
    """

    def __init__(self, node: ir.DepthwiseConv2D, in_shape, *, pe: int = 1,
                 requant_lanes: int | None = None, serial_requantizer: bool = False,
                 compact_requantizer: bool = False, products_in_logic: bool = False):
        h, w, c = (int(d) for d in in_shape)
        in_lanes = _check_pe(node, pe)
        in_channels = node.weights.shape[2] // node.depth_multiplier
        if c != in_channels:
            raise Tfl2RtlError(
                f"the input has {c} channels, the depthwise weights expect {in_channels}"
            )
        kernel = node.weights.shape[:2]
        out_hw = window_out_hw((h, w), kernel, node.stride, node.dilation, node.padding)
        if tuple(node.out_hw) != out_hw:
            raise Tfl2RtlError(
                f"a {h}x{w} input gives a {out_hw[0]}x{out_hw[1]} output, the node says "
                f"{node.out_hw[0]}x{node.out_hw[1]}"
            )
        lanes = in_lanes * node.depth_multiplier
        requant_lanes = pe if requant_lanes is None else requant_lanes
        if requant_lanes < 1 or lanes % requant_lanes:
            raise Tfl2RtlError(f"{requant_lanes} requantizer lanes do not divide the "
                               f"{lanes} output lanes")
        self.unit = DepthwiseUnit(node, pe=pe, products_in_logic=products_in_logic)
        self.node = node
        self.pe = self.multipliers = pe
        self.in_lanes = self.unit.in_lanes
        self.in_shape = (h, w, c)
        self.out_shape = (*out_hw, node.weights.shape[2])
        self.act_bits = act_bits = self.unit.act_bits
        self.window = SlidingWindow(
            self.in_shape, kernel, node.stride, node.dilation, node.padding,
            pad_value=-node.input_offset, simd=self.in_lanes, order="depthwise",
            act_bits=act_bits)
        self.requant_lanes = requant_lanes
        self.splitter = None
        if requant_lanes != lanes:
            self.splitter = AccumulatorSplitter(node.acc_bits, lanes, requant_lanes,
                                                self.unit.blocks)
        if act_bits == 16:  # a 16x8 layer: TFLite's int64 requantization
            if serial_requantizer or compact_requantizer:
                raise Tfl2RtlError("a 16x8 layer's Int64Requantizer has no serial products "
                                   "and no compact form")
            self.requant = Int64Requantizer(
                node.requant, channels=self.out_shape[2], output_offset=node.output_offset,
                act_min=node.act_min, act_max=node.act_max, acc_width=node.acc_bits,
                lanes=requant_lanes)
        else:
            self.requant = Requantizer(
                node.requant, channels=self.out_shape[2], output_offset=node.output_offset,
                act_min=node.act_min, act_max=node.act_max, acc_width=node.acc_bits,
                lanes=requant_lanes, serial_products=serial_requantizer,
                compact=compact_requantizer)
        steps = self.unit.taps * self.unit.steps
        self.cycles_per_vector = max(
            self.window.cycles_per_vector,
            out_hw[0] * out_hw[1] * self.unit.blocks
            * max(steps, lanes // requant_lanes * self.requant.interval))
        self.latency = (self.window.latency + SkidBuffer.latency + steps - 1
                        + self.unit.latency + SkidBuffer.latency + self.requant.latency
                        + (self.splitter is not None))
        super().__init__({
            "i": In(stream.Signature(signed_lanes(act_bits, self.in_lanes))),
            "o": Out(stream.Signature(signed_lanes(act_bits, requant_lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.unit = self.unit
        m.submodules.requant = self.requant
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        # A register slice between the window and the unit: the unit's stalls (from the
        # splitter's and the requantizer's) do not reach into the window's writer (on
        # the iCE40 that chain was micro_speech's critical path, 38 ns).
        m.submodules.window_skid = skid = SkidBuffer(self.window.o.payload.shape())
        wiring.connect(m, self.window.o, skid.i)
        wiring.connect(m, skid.o, self.unit.i)
        connect_splitting(m, self.unit.o, self.splitter, self.requant.i)
        wiring.connect(m, self.requant.o, wiring.flipped(self.o))
        return m
