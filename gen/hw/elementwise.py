"""Element-wise and data-movement layers on NHWC int8 streams (int16 in a 16x8 model, but
for the tables): ADD, table lookups, CONCATENATION, PAD and QUANTIZE between integers."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    saturating_rounding_doubling_high_mul,
    signed_bits,
)
from . import pipeline
from .adapters import SkidBuffer
from .layouts import signed_lanes
from .pipeline import register
from .requant import Requantizer

__all__ = ["ADD_INPUT_STAGES", "ADD_PRODUCTS_HOOK", "AddLayer", "LutLayer", "ConcatLayer",
           "PadLayer", "RequantizeLayer", "LeakyReluInt16Layer", "leaky_relu_requant",
           "add_input_factors", "add_input_tables"]

#: The register stages of each ADD input's ``MultiplyByQuantizedMultiplier`` (with a
#: constant multiplier and shift), before the output :class:`~.requant.Requantizer`.
ADD_INPUT_STAGES = (
    "offset",  # v = q + input_offset
    "partial_products",  # v times the multiplier's low (unsigned) and high (signed) halves
    "high",  # the doubling high multiply of v << left_shift, as (v * m + 2**(30-L)) >> (31-L)
    "round",  # the rounding right shift: + its nudge (by the sign), then a wired shift
)

#: The platform attribute that keeps an int8 ADD's input scaling on multipliers (DSP
#: blocks, :class:`_InputScaler`) instead of one 256-entry table per input and lane in
#: block RAM (:class:`_TableScaler`): true on the iCE40, whose block RAMs are 4 kbit
#: and few (:func:`tfl2rtl.boards.board.platform_hooks`).
ADD_PRODUCTS_HOOK = "add_input_products"


def _lanes_stream(lanes, bits: int = 8):
    """``lanes`` elements of ``bits`` signed bits a beat (int8, or a 16x8 model's int16)."""
    return stream.Signature(signed_lanes(bits, lanes))


def _check_lanes(what: str, count: int, lanes: int, name: str):
    if lanes < 1 or count % lanes:
        raise Tfl2RtlError(f"{what}: {lanes} lanes do not divide the {count} {name}")


def _scalar(requant: ir.Requant, what: str) -> tuple[int, int]:
    multiplier = np.asarray(requant.multiplier).reshape(-1)
    shift = np.asarray(requant.shift).reshape(-1)
    if multiplier.size != 1 or shift.size != 1:
        raise Tfl2RtlError(f"ADD {what} has {multiplier.size} multipliers; the hardware "
                           "takes one per tensor")
    multiplier, shift = int(multiplier[0]), int(shift[0])
    if not INT32_MIN <= multiplier <= INT32_MAX or not -31 <= shift <= 31:
        raise Tfl2RtlError(f"ADD {what} ({multiplier}, {shift}) is not an int32 multiplier "
                           "with a shift in -31 .. 31")
    return multiplier, shift


class _ScaledInput:
    """The constants and value ranges of one ADD input's
    ``mbqm((q + offset) << left_shift, multiplier, shift)`` for any ``act_bits``-bit
    ``q`` (int8, or int16 in a 16x8 model; built by :class:`_InputScaler`)."""

    def __init__(self, node: ir.Add, which: int, act_bits: int = 8):
        what = f"input{which} multiplier"
        if not 0 <= node.left_shift <= 30:
            raise Tfl2RtlError(f"ADD left shift {node.left_shift} is outside 0 .. 30")
        self.offset = int(getattr(node, f"input{which}_offset"))
        self.multiplier, shift = _scalar(getattr(node, f"input{which}_requant"), what)
        self.shift = shift
        # Every shift left comes before the high multiply, so they add up.
        self.left = int(node.left_shift) + max(shift, 0)
        self.right = max(-shift, 0)
        self.act_bits = act_bits
        low, high = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
        self.v_range = (low + self.offset, high + self.offset)
        ends = [v * (1 << self.left) for v in self.v_range]
        if not (INT32_MIN < min(ends) and max(ends) <= INT32_MAX):
            raise Tfl2RtlError(
                f"ADD input{which}: (q {self.offset:+d}) << {self.left} overflows int32 for "
                f"some int{act_bits} q; the hardware supports only ADDs that do not wrap "
                "there")
        self.left_shift = int(node.left_shift)
        #: The multiplier's low (unsigned) and high (signed) 16-bit halves.
        self.halves = (self.multiplier & 0xFFFF, self.multiplier >> 16)
        # Both mbqm steps are monotonic in v, so their ranges come from the two ends.
        high = saturating_rounding_doubling_high_mul(ends, self.multiplier)
        self.high_range = (int(high.min()), int(high.max()))
        scaled = multiply_by_quantized_multiplier(
            [v * (1 << node.left_shift) for v in self.v_range], self.multiplier, shift)
        self.range = (int(scaled.min()), int(scaled.max()))



class _InputScaler(wiring.Component):
    """One lane of one ADD input: ``scaled`` is ``mbqm((q + offset) << left_shift,
    multiplier, shift)`` of ``q`` (the constants of ``scaling``), through the register
    stages of :data:`ADD_INPUT_STAGES`, which move on the cycles ``advance`` is high.

    Members
    -------
    q : ``In(signed(scaling.act_bits))``
    advance : ``In(1)``
    scaled : ``Out(signed(...))``
        Wide enough for the scaled range of every ``q``.
    """

    def __init__(self, scaling: _ScaledInput):
        self.scaling = scaling
        super().__init__({
            "q": In(signed(scaling.act_bits)),
            "advance": In(1),
            "scaled": Out(signed(signed_bits(*scaling.range))),
        })

    def elaborate(self, platform):
        m = Module()
        x = self.scaling
        stage = partial(register, m, self.advance)
        v_entering = Signal(signed(signed_bits(*x.v_range)))
        m.d.comb += v_entering.eq(self.q + x.offset)
        v = stage(v_entering, "v")

        # v * multiplier = p_hi * 2**16 + p_lo: two products of about 10 x 16 bits, from
        # a DSP block holding the v and product registers where the platform has one
        # (pipeline.PRODUCT_HOOK), else from the register v.
        def product(factor, name):
            value = pipeline.platform_product(m, platform, self.advance, v_entering, factor,
                                              name)
            return stage(v * factor, name) if value is None else value

        m_lo, m_hi = x.halves
        p_lo = product(Const(m_lo, 16), "p_lo") if m_lo else Const(0)
        p_hi = product(Const(m_hi, signed(16)), "p_hi") if m_hi else Const(0)

        # SaturatingRoundingDoublingHighMul(v << L, m) = floor((v * m * 2**L + 2**30) / 2**31)
        # = floor((v * m + 2**(30 - L)) / 2**(31 - L)) for L <= 30; |v << L| < 2**31, so it
        # never saturates.
        product = (p_hi << 16) + p_lo + (1 << (30 - x.left))
        high = stage(product >> (31 - x.left), "high", signed(signed_bits(*x.high_range)))

        # RoundingDivideByPOT: halves away from zero, as floor(x + 2**(r-1) - (x < 0)) / 2**r.
        if x.right:
            half = 1 << (x.right - 1)
            rounded = (high + Mux(high < 0, half - 1, half)) >> x.right
        else:
            rounded = high
        m.d.comb += self.scaled.eq(stage(rounded, "scaled", self.scaled.shape()))
        return m


class _TableScaler(wiring.Component):
    """:class:`_InputScaler`'s function of an int8 ``q`` read from a 256-entry table (a
    ROM, in block RAM where the platform maps it): the same members and the same
    :data:`ADD_INPUT_STAGES` register stages (the table's registered read, then
    registers), so that an ADD's latency does not depend on the form.  The table is
    :func:`tfl2rtl.fixedpoint.multiply_by_quantized_multiplier` of every ``(q + offset)
    << left_shift``, the golden model's arithmetic itself."""

    def __init__(self, scaling: _ScaledInput):
        if scaling.act_bits != 8:
            raise Tfl2RtlError(f"an ADD input table takes int8 inputs, not "
                               f"int{scaling.act_bits}")
        self.scaling = scaling
        super().__init__({
            "q": In(signed(8)),
            "advance": In(1),
            "scaled": Out(signed(signed_bits(*scaling.range))),
        })

    def table(self) -> list[int]:
        """The ROM's words: row ``u`` holds the scaled value of the int8 ``q`` whose bits
        read as unsigned are ``u`` (``u = q mod 256``)."""
        x = self.scaling
        q = np.roll(np.arange(-128, 128, dtype=np.int64), 128)
        scaled = multiply_by_quantized_multiplier((q + x.offset) * (1 << x.left_shift),
                                                  x.multiplier, x.shift)
        return [int(v) for v in scaled]

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=self.scaled.shape(), depth=256,
                                        init=self.table())
        port = rom.read_port()
        m.d.comb += [port.addr.eq(self.q.as_unsigned()), port.en.eq(self.advance)]
        value = port.data
        for stage in ADD_INPUT_STAGES[1:]:
            value = register(m, self.advance, value, f"scaled_{stage}")
        m.d.comb += self.scaled.eq(value)
        return m


def add_input_tables(act_bits: int, products: bool) -> bool:
    """Whether :class:`AddLayer` with ``act_bits``-bit inputs scales them by tables
    rather than by multipliers, on a platform whose :data:`ADD_PRODUCTS_HOOK` is
    ``products``: for int8 inputs where the platform does not ask for multipliers."""
    return act_bits == 8 and not products


def add_input_factors(node: ir.Add) -> list[int]:
    """The constants one lane of :class:`AddLayer` multiplies its inputs by, when it scales
    them by multipliers (:func:`add_input_tables` false): the nonzero 16-bit halves of each
    input's multiplier (a zero half needs no product)."""
    return [h for which in (1, 2) for h in _ScaledInput(node, which).halves if h]


class AddLayer(wiring.Component):
    """TFLite Micro's int8 ADD of two equally shaped tensors, ``lanes`` elements a beat
    (or its int16 ADD, the same arithmetic, with ``act_bits=16``).

    Per element, exactly as :func:`tfl2rtl.golden.add` (TFLM's ``AddElementwise``)::

        scaled_k = MultiplyByQuantizedMultiplier((q_k + input_k_offset) << left_shift,
                                                 input_k_multiplier, input_k_shift)
        out = clamp(MultiplyByQuantizedMultiplier(scaled_1 + scaled_2, output_multiplier,
                                                  output_shift) + output_offset)

    Each input's scaling is a function of its int8 ``q`` alone, so each input of each
    lane reads it from a 256-entry table (:class:`_TableScaler`, a ROM the ECP5 and
    Gowin flows put in one block RAM: no DSP block).  On a platform with
    :data:`ADD_PRODUCTS_HOOK` (the iCE40), and for int16 inputs, it is computed: the
    multiply has a constant multiplier and shift and an operand of ``(q + offset) <<
    left_shift``, so it is a multiply of the 9 to 10 (17 to 18) bits of ``q + offset``
    by the multiplier's two 16-bit halves (:class:`_InputScaler`).  Both forms take the
    register stages of :data:`ADD_INPUT_STAGES`.  The sum of the two goes into a
    :class:`~.requant.Requantizer` for the output's multiplier, offset and clamp (with
    ``serial_requantizer``, one with serial products: a beat every
    :attr:`~.requant.Requantizer.interval` cycles).  The two inputs advance together: a
    beat is taken when both ``a`` and ``b`` offer one.

    Parameters
    ----------
    node : :class:`tfl2rtl.ir.Add`
        Per-tensor requantizations.  Any int32 multipliers and shifts are taken as long
        as ``(q + input_offset) << (left_shift + max(shift, 0))`` stays inside int32 for
        every int8 ``q`` (TFLite's ADD has input multipliers below 1 with shifts
        ``<= 0`` and a left shift of 20) and the output's requantization plus offset
        cannot leave int32; anything else is refused.
    shape : tuple of int
        Shape of both inputs and of the output (NHWC for 4-D); or a pair of input shapes,
        which must be equal (the hardware does not broadcast).
    lanes : int
        Elements per beat; divides the last dimension.
    serial_requantizer : bool
        The output requantizer shares one multiplier per lane between its partial
        products (:class:`~.requant.Requantizer`'s ``serial_products``), for ADDs whose
        outputs come no faster than its interval.

    Members
    -------
    a, b : ``In(stream.Signature(signed_lanes(act_bits, lanes)))``
        The node's first and second input, in the same element order.
    o : ``Out(stream.Signature(signed_lanes(act_bits, lanes)))``

    Attributes
    ----------
    latency : int
        ``SkidBuffer.latency + len(ADD_INPUT_STAGES) + Requantizer.latency`` (14): a beat
        pair taken at clock edge ``n`` can leave on ``o`` at edge ``n + latency``.  (Each
        input passes a :class:`~tfl2rtl.hw.adapters.SkidBuffer` first, so that neither
        input's ``ready`` depends on the other's ``valid``: on the ECP5 that join, from
        one input FIFO's level to the other's read enable across the chip, was
        ResNet-8's critical path, 13.6 ns, 11.7 of them routing.)
    cycles_per_vector : int
        ``size / lanes`` times the requantizer's interval: one beat per cycle, or one
        every :attr:`~.requant.Requantizer.interval` cycles with ``serial_requantizer``.

    Tested on the three ADDs of the MLPerf Tiny ResNet, written ADDs (TFLite's left shift
    20) with input shifts 0, -6, -13, -20 and -31 and a zero multiplier, and ADD nodes
    with an identity output requantization (which shows each input's rescaled value as
    it is) for left shifts 0 to 20, input shifts -27 to 1 and multipliers over all of
    int32 (negative ones too); ``lanes`` 1, 2, 4, 8 and 16; int16 ADDs (left shift 15)
    of cnn_int16x8 and random 16x8 graphs; int8 ones in both forms (tables, and
    multipliers with and without the DSP product hook), with and without
    ``serial_requantizer``.
    """

    def __init__(self, node: ir.Add, shape, *, lanes: int = 1, act_bits: int = 8,
                 serial_requantizer: bool = False):
        pair = len(shape) > 0 and isinstance(shape[0], (tuple, list, np.ndarray))
        shapes = [tuple(s) for s in shape] if pair else [tuple(shape)] * 2
        if len(shapes) != 2 or shapes[0] != shapes[1]:
            raise Tfl2RtlError(f"ADD of shapes {' and '.join(map(str, shapes))}: the hardware "
                               "adds equal shapes only (no broadcasting)")
        self.shape = shapes[0]
        size = math.prod(self.shape)
        _check_lanes("ADD", self.shape[-1] if self.shape else 1, lanes, "channels")
        self.node = node
        self.lanes = lanes
        self.act_bits = act_bits
        self.inputs = (_ScaledInput(node, 1, act_bits), _ScaledInput(node, 2, act_bits))
        lo = sum(x.range[0] for x in self.inputs)
        hi = sum(x.range[1] for x in self.inputs)
        out_multiplier, out_shift = _scalar(node.output_requant, "output multiplier")
        operand = min(max(-lo, hi) << max(out_shift, 0), 1 << 31)
        if ((operand * abs(out_multiplier)) >> 31) + 1 + abs(node.output_offset) > INT32_MAX:
            raise Tfl2RtlError("ADD output requantization plus offset can leave int32; "
                               "the hardware does not support that")
        self._requantizer = Requantizer(
            node.output_requant, channels=lanes, output_offset=node.output_offset,
            act_min=node.act_min, act_max=node.act_max, acc_width=signed_bits(lo, hi),
            lanes=lanes, out_bits=act_bits, serial_products=serial_requantizer)
        self.latency = SkidBuffer.latency + len(ADD_INPUT_STAGES) + self._requantizer.latency
        self.cycles_per_vector = size // lanes * self._requantizer.interval
        super().__init__({
            "a": In(_lanes_stream(lanes, act_bits)),
            "b": In(_lanes_stream(lanes, act_bits)),
            "o": Out(_lanes_stream(lanes, act_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.requantizer = requantizer = self._requantizer
        wiring.connect(m, requantizer.o, wiring.flipped(self.o))

        # Each input through a skid buffer of its own: the join below reads the two
        # buffers' registers, and each input's ready is its buffer's register.
        inputs = []
        for name, port in (("a", self.a), ("b", self.b)):
            m.submodules[f"skid_{name}"] = skid = SkidBuffer(port.payload.shape())
            wiring.connect(m, wiring.flipped(port), skid.i)
            inputs.append(skid.o)
        a, b = inputs

        # The input stages move when their last one is empty or passing its beat on.
        advance = Signal()
        valid = a.valid & b.valid
        m.d.comb += [
            a.ready.eq(advance & b.valid),
            b.ready.eq(advance & a.valid),
        ]

        for stage in ADD_INPUT_STAGES:
            valid = register(m, advance, valid, f"valid_{stage}")
        m.d.comb += [
            advance.eq(~valid | requantizer.i.ready),
            requantizer.i.valid.eq(valid),
        ]
        products = bool(getattr(platform, ADD_PRODUCTS_HOOK, False))
        scaler_form = (_TableScaler if add_input_tables(self.act_bits, products)
                       else _InputScaler)
        for lane in range(self.lanes):
            scaled = []
            for scaling, port, name in zip(self.inputs, (a, b), "ab", strict=True):
                m.submodules[f"{name}{lane}"] = scaler = scaler_form(scaling)
                m.d.comb += [scaler.q.eq(port.payload[lane]), scaler.advance.eq(advance)]
                scaled.append(scaler.scaled)
            # The requantizer registers the sum in its first stage.
            m.d.comb += requantizer.i.payload.acc[lane].eq(scaled[0] + scaled[1])
        return m


class LutLayer(wiring.Component):
    """An element-wise int8 function as a 256-entry table (:class:`tfl2rtl.ir.Lut`), one
    ROM per lane, looked up as :func:`tfl2rtl.golden.lut` does (``table[q + 128]``).

    Parameters
    ----------
    node : :class:`tfl2rtl.ir.Lut`
        A table of 256 int8 values for int8 inputs.
    shape : tuple of int
        The tensor's shape; ``lanes`` divides its last dimension.

    Members
    -------
    i : ``In(stream.Signature(int8_lanes(lanes)))``
    o : ``Out(stream.Signature(int8_lanes(lanes)))``

    Attributes
    ----------
    latency : int
        1: the ROMs' registered read.
    cycles_per_vector : int
        ``size / lanes``: one beat per cycle.

    Tested with every LUT op of ``activations_int8.tflite`` (LOGISTIC, TANH, LEAKY_RELU,
    HARD_SWISH), all 256 inputs, ``lanes`` 1, 4 and 32.
    """

    def __init__(self, node: ir.Lut, shape, *, lanes: int = 1):
        table = np.asarray(node.table).reshape(-1)
        if table.size != 256 or table.min() < -128 or table.max() > 127:
            raise Tfl2RtlError(f"{node.function} table of {table.size} entries in "
                               f"{table.min()} .. {table.max()}: expected 256 int8 values")
        self.shape = tuple(shape)
        _check_lanes(node.function, self.shape[-1] if self.shape else 1, lanes, "channels")
        self.node = node
        self.lanes = lanes
        self.latency = 1
        self.cycles_per_vector = math.prod(self.shape) // lanes
        # Addressed by q's bits read as unsigned: u = q mod 256 holds table[(u + 128) % 256].
        self._rom = np.roll(table.astype(np.int64), 128).tolist()
        super().__init__({"i": In(_lanes_stream(lanes)), "o": Out(_lanes_stream(lanes))})

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid)
        for lane in range(self.lanes):
            rom = Memory(shape=signed(8), depth=256, init=self._rom)
            m.submodules[f"rom{lane}"] = rom
            port = rom.read_port()
            m.d.comb += [
                port.addr.eq(self.i.payload[lane].as_unsigned()),
                port.en.eq(advance),
                self.o.payload[lane].eq(port.data),
            ]
        return m


def _counter(m, limit: int, name: str, step):
    """A counter over ``0 .. limit - 1`` that moves on ``step``; returns it and its
    ``last`` flag (a constant-zero counter when ``limit`` is 1)."""
    if limit == 1:
        return Const(0), Const(1)
    count = Signal(range(limit), name=name)
    last = count == limit - 1
    with m.If(step):
        m.d.sync += count.eq(Mux(last, 0, count + 1))
    return count, last


class ConcatLayer(wiring.Component):
    """CONCATENATION along ``node.axis``: for each index over the dimensions before the
    axis, ``prod(shape_k[axis:]) / lanes`` beats from input ``k``, for ``k`` in turn.
    The values pass unchanged (TFLite Micro copies int8 values; the converter gives all
    inputs the output's scale).

    Parameters
    ----------
    node : :class:`tfl2rtl.ir.Concatenation`
    in_shapes : list of tuple of int
        The inputs' shapes, equal except along the axis.
    lanes : int
        Elements per beat; divides every input's ``prod(shape_k[axis:])``.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, lanes))).array(len(in_shapes))``
        The inputs, in the node's order: ``i[k]``; ``act_bits`` is 8, or 16 in a 16x8
        model.
    o : ``Out(stream.Signature(signed_lanes(act_bits, lanes)))``

    Attributes
    ----------
    latency : int
        1: the output is registered.
    cycles_per_vector : int
        ``size / lanes`` of the output: one beat per cycle when the input being read
        keeps up (the others wait meanwhile).

    Tested along each axis of 4-D tensors with 1 to 3 inputs and ``lanes`` 1 to 4; int16
    along the channels in cnn_int16x8 and random 16x8 graphs.
    """

    def __init__(self, node: ir.Concatenation, in_shapes, *, lanes: int = 1,
                 act_bits: int = 8):
        shapes = [tuple(s) for s in in_shapes]
        axis = node.axis
        if not shapes or not 0 <= axis < len(shapes[0]) or any(
                len(s) != len(shapes[0]) or s[:axis] != shapes[0][:axis]
                or s[axis + 1:] != shapes[0][axis + 1:] for s in shapes):
            raise Tfl2RtlError(f"CONCATENATION of {shapes} along axis {axis}: the shapes "
                               "must be equal except along the axis")
        self.in_shapes = shapes
        self.blocks = []
        for shape in shapes:
            inner = math.prod(shape[axis:])
            if lanes < 1 or inner % lanes:
                raise Tfl2RtlError(f"CONCATENATION along axis {axis}: {lanes} lanes do not "
                                   f"divide the {inner} elements of {shape} from that axis on")
            self.blocks.append(inner // lanes)
        self.node = node
        self.lanes = lanes
        self.out_shape = shapes[0][:axis] + (sum(s[axis] for s in shapes),) \
            + shapes[0][axis + 1:]
        self.latency = 1
        self.cycles_per_vector = math.prod(self.out_shape) // lanes
        super().__init__({
            "i": In(_lanes_stream(lanes, act_bits)).array(len(shapes)),
            "o": Out(_lanes_stream(lanes, act_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        count = len(self.blocks)
        select = Signal(range(count))  # the input being read
        beat = Signal(range(max(self.blocks)))  # and its beat within the current block
        last_beat = Signal()
        take = Signal()
        with m.Switch(select):
            for k, (port, blocks) in enumerate(zip(self.i, self.blocks, strict=True)):
                with m.Case(k):
                    m.d.comb += [
                        port.ready.eq(advance),
                        take.eq(advance & port.valid),
                        last_beat.eq(beat == blocks - 1),
                    ]
                    with m.If(take):
                        m.d.sync += self.o.payload.eq(port.payload)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(take)
        with m.If(take):
            m.d.sync += beat.eq(Mux(last_beat, 0, beat + 1))
            with m.If(last_beat):
                m.d.sync += select.eq(Mux(select == count - 1, 0, select + 1))
        return m


class PadLayer(wiring.Component):
    """PAD: the input surrounded by ``node.pad_value`` as ``node.paddings`` says, in the
    output's element order, ``lanes`` elements a beat.

    Parameters
    ----------
    node : :class:`tfl2rtl.ir.Pad`
    in_shape : tuple of int
        The input's shape (NHWC); ``lanes`` divides its last dimension and the last
        dimension's paddings, so a beat is either all input or all padding.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, lanes)))``
        ``act_bits`` is 8, or 16 in a 16x8 model.
    o : ``Out(stream.Signature(signed_lanes(act_bits, lanes)))``

    Attributes
    ----------
    latency : int
        1: the output is registered.
    cycles_per_vector : int
        ``size / lanes`` of the output: one output beat per cycle (padding beats need no
        input).

    Tested on 4-D tensors, paddings of every dimension (batch too) from 0 to 3 and
    ``lanes`` 1, 2 and 4; int16 in random 16x8 graphs.
    """

    def __init__(self, node: ir.Pad, in_shape, *, lanes: int = 1, act_bits: int = 8):
        self.in_shape = tuple(in_shape)
        paddings = [tuple(int(p) for p in pair) for pair in node.paddings]
        if not self.in_shape or len(paddings) != len(self.in_shape) or any(
                p < 0 for pair in paddings for p in pair):
            raise Tfl2RtlError(f"PAD of {self.in_shape} by {paddings}: expected one pair of "
                               "non-negative paddings per dimension")
        if not -(1 << (act_bits - 1)) <= node.pad_value < 1 << (act_bits - 1):
            raise Tfl2RtlError(f"PAD value {node.pad_value} is not an int{act_bits}")
        channels = self.in_shape[-1]
        _check_lanes("PAD", channels, lanes, "channels")
        if any(p % lanes for p in paddings[-1]):
            raise Tfl2RtlError(f"PAD: {lanes} lanes do not divide the channel paddings "
                               f"{paddings[-1]}")
        self.node = node
        self.lanes = lanes
        self.paddings = paddings
        self.out_shape = tuple(d + a + b for d, (a, b) in zip(self.in_shape, paddings,
                                                                strict=True))
        self.latency = 1
        self.cycles_per_vector = math.prod(self.out_shape) // lanes
        super().__init__({"i": In(_lanes_stream(lanes, act_bits)),
                          "o": Out(_lanes_stream(lanes, act_bits))})

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        step = Signal()  # an output beat is produced this cycle

        # Output position: one counter per dimension, the last one in beats.  Counters
        # carry into the previous dimension; ``inside`` is whether the beat is input.
        sizes = list(self.out_shape[:-1]) + [self.out_shape[-1] // self.lanes]
        ranges = [(before, before + d) for d, (before, _) in zip(self.in_shape, self.paddings,
                                                                  strict=True)]
        ranges[-1] = tuple(r // self.lanes for r in ranges[-1])
        inside = Const(1)
        carry = step
        for dim in reversed(range(len(sizes))):
            index, last = _counter(m, sizes[dim], f"index{dim}", carry)
            carry = carry & last
            lo, hi = ranges[dim]
            # Only the bounds that exclude something (Verilator's lint flags a comparison
            # that is constant over the counter's range).
            if lo > 0:
                inside = inside & (index >= lo)
            if hi < sizes[dim]:
                inside = inside & (index < hi)

        m.d.comb += [
            self.i.ready.eq(advance & inside),
            step.eq(advance & (self.i.valid | ~inside)),
        ]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(step)
            for lane in range(self.lanes):
                m.d.sync += self.o.payload[lane].eq(
                    Mux(inside, self.i.payload[lane], self.node.pad_value))
        return m


class RequantizeLayer(wiring.Component):
    """QUANTIZE between integers (:class:`tfl2rtl.ir.Requantize`, ``reference_ops::
    Requantize``): ``clamp(MultiplyByQuantizedMultiplier(q - input_zero_point,
    multiplier, shift) + output_zero_point)`` to the output type's range, ``lanes``
    elements a beat, in a :class:`~.requant.Requantizer` (the int32 arithmetic, per
    tensor).  A 16x8 model's int16 -> int16 QUANTIZE is one (``act_bits=16``).

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, lanes)))``
    o : ``Out(stream.Signature(signed_lanes(act_bits, lanes)))``

    Attributes
    ----------
    latency : int
        The requantizer's: a beat taken at clock edge ``n`` can leave at edge ``n +
        latency``.
    cycles_per_vector : int
        ``size / lanes`` times the requantizer's interval.
    """

    def __init__(self, node: ir.Requantize, shape, *, lanes: int = 1, act_bits: int = 8):
        if node.flip_sign:
            raise Tfl2RtlError("a QUANTIZE between uint8 and int8 moves no data through a "
                               "stage of its own")
        self.shape = tuple(shape)
        _check_lanes("QUANTIZE", self.shape[-1] if self.shape else 1, lanes, "channels")
        low, high = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
        self.node = node
        self.lanes = lanes
        self.act_bits = act_bits
        self._offset = -int(node.input_zero_point)
        width = signed_bits(low + self._offset, high + self._offset)
        self._requantizer = Requantizer(
            node.requant, channels=lanes, output_offset=node.output_zero_point,
            act_min=low, act_max=high, acc_width=width, lanes=lanes, out_bits=act_bits)
        self.latency = self._requantizer.latency
        self.cycles_per_vector = math.prod(self.shape) // lanes * self._requantizer.interval
        super().__init__({"i": In(_lanes_stream(lanes, act_bits)),
                          "o": Out(_lanes_stream(lanes, act_bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.requantizer = requantizer = self._requantizer
        wiring.connect(m, requantizer.o, wiring.flipped(self.o))
        # The requantizer registers the accumulator in its first stage.
        m.d.comb += [
            requantizer.i.valid.eq(self.i.valid),
            self.i.ready.eq(requantizer.i.ready),
        ]
        for lane in range(self.lanes):
            m.d.comb += requantizer.i.payload.acc[lane].eq(self.i.payload[lane]
                                                           + self._offset)
        return m


def leaky_relu_requant(params) -> ir.Requant:
    """A 16x8 LEAKY_RELU's two multipliers and shifts (:class:`tfl2rtl.kernels.
    elementwise.LeakyReluParams`) as the two "channels" of a requantizer: 0 the
    identity's, 1 the alpha's."""
    return ir.Requant(
        multiplier=np.array([params.output_multiplier_identity,
                             params.output_multiplier_alpha]),
        shift=np.array([params.output_shift_identity, params.output_shift_alpha]),
        real_scale=np.zeros(2))


class LeakyReluInt16Layer(wiring.Component):
    """A 16x8 model's LEAKY_RELU (TFLite Micro's ``reference_ops::QuantizeLeakyRelu`` on
    int16, the golden model's 65536-entry table), computed: per element ``v = q -
    input_offset``, then ``MultiplyByQuantizedMultiplier(v, identity)`` for ``v >= 0``
    and ``MultiplyByQuantizedMultiplier(v, alpha)`` below, ``+ output_offset``, clamped
    to int16.  Each lane is a one-lane :class:`~.requant.Requantizer` of two "channels",
    the identity's and the alpha's multiplier and shift, the beat's ``group`` being the
    sign of ``v``.  ``lanes`` elements a beat.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(16, lanes)))``
    o : ``Out(stream.Signature(signed_lanes(16, lanes)))``

    Attributes
    ----------
    latency : int
        The requantizer's: a beat taken at clock edge ``n`` can leave at edge ``n +
        latency``.
    cycles_per_vector : int
        ``size / lanes`` times the requantizer's interval.

    A negative alpha (which TFLite applies as a negated product, rounded apart from the
    product by a negative multiplier) is refused.  Tested on every int16 input for
    alphas 0.01 to 0.9 and scale ratios above and below one, against the golden table.
    """

    def __init__(self, node: ir.Lut, shape, *, lanes: int = 1):
        p = node.params
        if node.function != "LEAKY_RELU" or p is None:
            raise Tfl2RtlError(f"{node.function}: only an int16 LEAKY_RELU is computed")
        if p.output_multiplier_alpha < 0:
            raise Tfl2RtlError("int16 LEAKY_RELU with a negative alpha: not built (TFLite "
                               "negates the product after rounding it)")
        self.shape = tuple(shape)
        _check_lanes("LEAKY_RELU", self.shape[-1] if self.shape else 1, lanes, "channels")
        self.node = node
        self.lanes = lanes
        self._offset = -int(p.input_offset)
        requant = leaky_relu_requant(p)
        width = signed_bits(-32768 + self._offset, 32767 + self._offset)
        self._requantizers = [
            Requantizer(requant, channels=2, output_offset=p.output_offset, act_min=-32768,
                        act_max=32767, acc_width=width, lanes=1, out_bits=16)
            for _ in range(lanes)]
        self.latency = self._requantizers[0].latency
        self.cycles_per_vector = (math.prod(self.shape) // lanes
                                  * self._requantizers[0].interval)
        super().__init__({"i": In(_lanes_stream(lanes, 16)),
                          "o": Out(_lanes_stream(lanes, 16))})

    def elaborate(self, platform):
        m = Module()
        ready = Signal()
        valid = Signal()
        m.d.comb += self.i.ready.eq(ready)
        for lane, requantizer in enumerate(self._requantizers):
            m.submodules[f"requantizer_{lane}"] = requantizer
            value = self.i.payload[lane] + self._offset
            # The lanes move together: each takes the beat when all of them can.
            m.d.comb += [
                requantizer.i.valid.eq(self.i.valid & ready),
                requantizer.i.payload.acc[0].eq(value),
                requantizer.i.payload.group.eq(value < 0),
                self.o.payload[lane].eq(requantizer.o.payload[0]),
                requantizer.o.ready.eq(self.o.ready & valid),
            ]
        m.d.comb += [
            ready.eq(Cat(*(r.i.ready for r in self._requantizers)).all()),
            valid.eq(Cat(*(r.o.valid for r in self._requantizers)).all()),
            self.o.valid.eq(valid),
        ]
        return m
