"""TFLite Micro's int8 and int16 SOFTMAX as small sequential stream components."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fixedpoint import (
    _48_OVER_17,
    _NEG_32_OVER_17,
    INT32_MAX,
    INT32_MIN,
    exp_on_negative_values,
    multiply_by_quantized_multiplier_greater_than_one,
)
from ..kernels.softmax import (
    ACCUMULATION_INTEGER_BITS,
    SCALED_DIFF_INTEGER_BITS,
    softmax_int16_tables,
)
from .layouts import int8_lanes, signed_lanes

__all__ = ["SoftmaxUnit", "SoftmaxInt16Unit", "exp_table", "doubling_high_multiply",
           "multiply_cycles", "MULTIPLY_CYCLES", "LOGIC_MULTIPLY_CYCLES",
           "load_row", "send_result"]

#: The longest row the unit takes: TFLite aborts once the sum of exponentials reaches
#: 512, which 512 equal values do; below that the output exponent stays within 0 .. 31.
MAX_ROW = 511


def exp_table(node: ir.Softmax) -> np.ndarray:
    """``exp(x - max)`` in Q0.31 for every difference ``max - x = 0 .. 255`` of two int8
    values, computed as :func:`tfl2rtl.kernels.softmax.softmax_int8` does (input scaling
    to Q5.26, then gemmlowp's ``exp_on_negative_values``), and 0 where the difference is
    below ``diff_min`` (TFLite skips those elements; an exponential of 0 contributes
    nothing to the sum and gives the output minimum, exactly as skipping does)."""
    diff = -np.arange(256, dtype=np.int64)
    rescaled = multiply_by_quantized_multiplier_greater_than_one(
        diff, node.input_multiplier, node.input_left_shift)
    exp = exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
    return np.where(diff >= node.diff_min, exp, 0)


#: Cycles the unit spends normalizing the sum of exponentials.  Each is in Q12.19 and at
#: most ``2**31 - 1`` in Q0.31, and the row maximum's is exactly that (``exp(0)``), so the
#: sum lies in ``[2**19, MAX_ROW * 2**19]``, below ``2**28``: it has 4 to 12 leading zeros,
#: and shifting it up one bit a cycle takes at most 8 cycles.
NORMALIZE_CYCLES = 8

#: The output exponent ``num_bits_over_unit + 31 - 8`` for a sum with 4 leading zeros;
#: each shift of the normalization takes one off.
_TOP_EXPONENT = ACCUMULATION_INTEGER_BITS + 31 - 8 - 4

#: Cycles from the operands of a saturating rounding doubling high multiply (given in
#: one cycle, with ``start``) to its result: registered operands; the four 16x16
#: partial products one after the other on one multiplier (a selecting register before
#: it, a register after it: one DSP block), each added as it comes out into one 48-bit
#: accumulator, which takes the two sign corrections while the first product is on its
#: way (:func:`doubling_high_multiply`).  No path adds more than two numbers, and the
#: multiply costs one DSP block and one adder.
MULTIPLY_CYCLES = 7

#: :func:`doubling_high_multiply`'s cycles with its product in logic: one bit of the
#: second operand a cycle (32), then the accumulator's four additions of the products.
LOGIC_MULTIPLY_CYCLES = 37


def multiply_cycles(in_logic: bool = False) -> int:
    """:data:`LOGIC_MULTIPLY_CYCLES` with the product in logic, else
    :data:`MULTIPLY_CYCLES`."""
    return LOGIC_MULTIPLY_CYCLES if in_logic else MULTIPLY_CYCLES


def doubling_high_multiply(m: Module, mul_a, mul_b, start, in_logic: bool = False):
    """gemmlowp's saturating rounding doubling high multiply of the int32 operands
    ``mul_a`` and ``mul_b``, taken in a cycle where ``start`` is high, in
    :func:`multiply_cycles` steps in ``m``.  Returns ``high``, which holds
    ``srdhm(mul_a, mul_b)`` from :func:`multiply_cycles` cycles after ``start`` until
    the next ``start`` (one multiply at a time).

    With ``A`` and ``B`` the operands' 32 bits read as unsigned and ``sa``, ``sb`` their
    signs, the product is ``A * B - 2**32 * (sa * B + sb * A)`` modulo ``2**64``, and
    ``A * B = hh * 2**32 + (lh + hl) * 2**16 + ll`` for four unsigned 16x16 products, in
    turn on one multiplier (one DSP block); with ``in_logic`` ``A * B`` comes from a
    shift and add of one bit of ``B`` a cycle into a 32-bit adder (no DSP block), as
    ``ll`` (its low half) and ``hh`` (its high half), ``lh = hl = 0``.

    gemmlowp adds ``2**30`` (``1 - 2**30`` to a negative product) and divides by
    ``2**31`` truncating towards zero, which in both cases is ``floor((a * b + 2**30) /
    2**31)``.  A 48-bit accumulator holds ``floor((a * b + 2**30) / 2**16)`` modulo
    ``2**48``: ``2**14`` for the rounding and each correction ``-v * 2**16`` as ``(~v <<
    16) + 2**16`` (the ``2**16`` with the rounding), then ``ll >> 16``, ``lh``, ``hl`` and
    ``hh << 16``.  Its bits 15 up are the result; the one product beyond int32,
    ``INT32_MIN * INT32_MIN``, saturates."""
    op_a = Signal(unsigned(32))
    op_b = Signal(unsigned(32))
    with m.If(start):
        m.d.sync += [op_a.eq(mul_a), op_b.eq(mul_b)]
    # adding[k]: the accumulator's step k: the rounding and the correction of a negative
    # A, that of a negative B, + ll >> 16, + lh, + hl, + hh << 16.
    adding = Signal(6)
    m.d.sync += adding.eq(adding << 1)
    with m.If(start):
        m.d.sync += adding.eq(1)
    if in_logic:
        # {acc, low} = A * B by shift and add: low starts as B; each of 32 cycles adds A
        # to acc when low's bit 0 is set, and shifts {acc + ..., low} right by one.  The
        # accumulator's steps 2 to 5 pass while it runs, adding nothing, and again after.
        acc = Signal(32)
        low = Signal(32)
        step = Signal(range(33))  # the shift-and-add step (1 .. 32), 0 when idle
        with m.If(start):
            m.d.sync += [acc.eq(0), low.eq(mul_b), step.eq(1)]
        with m.Elif(step != 0):
            total = acc + Mux(low[0], op_a, 0)  # 33 bits
            shifted_acc, shifted_low = total[1:], Cat(low[1:], total[0])
            m.d.sync += [acc.eq(shifted_acc), low.eq(shifted_low),
                         step.eq(Mux(step == 32, 0, step + 1))]
            with m.If(step == 32):
                m.d.sync += adding.eq(0b000100)
        partial = Mux(step != 0, 0, Mux(adding[2], low, Mux(adding[5], acc, 0)))
    else:
        # phase[k]: operand pair k (ll, lh, hl, hh) enters the multiplier's registers;
        # its product comes out of the product register two cycles later, in the
        # accumulator's step k + 2.
        phase = Signal(4)
        m.d.sync += phase.eq(phase << 1)
        with m.If(start):
            m.d.sync += phase.eq(1)
        x = Signal(16)
        y = Signal(16)
        with m.If(phase != 0):
            m.d.sync += [x.eq(Mux(phase[2] | phase[3], op_a[16:], op_a[:16])),
                         y.eq(Mux(phase[1] | phase[3], op_b[16:], op_b[:16]))]
        product = Signal(32)
        m.d.sync += product.eq(x * y)  # nothing but a register after the multiplier
        partial = product
    sa, sb = op_a[31], op_b[31]
    total = Signal(48)
    first = Cat(Const(0, 14), Const(1, 1), Const(0, 1), (sa + sb)[:2])

    def term(condition, value):
        return Mux(condition, value, 0)

    base = Mux(adding[0], first, total)
    addend = (term(adding[0] & sa, ~op_b << 16) | term(adding[1] & sb, ~op_a << 16)
              | term(adding[2], partial[16:]) | term(adding[3] | adding[4], partial)
              | term(adding[5], partial << 16))
    with m.If(adding != 0):
        m.d.sync += total.eq((base + addend)[:48])
    high = Signal(signed(32))
    m.d.comb += high.eq(Mux(~total[47] & total[46], INT32_MAX, total[15:47].as_signed()))
    return high


def saturating_shift_left(value, exponent: int):
    """gemmlowp's ``SaturatingRoundingMultiplyByPOT<exponent>`` of the int32 ``value``,
    ``0 < exponent < 31``: ``value << exponent``, saturated.

    It saturates up when ``value >= 2**(31 - exponent)``, down when ``value <
    -(2**(31 - exponent) - 1)``; read from the bits, not by comparing: ``value``'s sign
    and its bits ``31 - exponent`` to 30 (all copies of the sign when the shift does not
    overflow).  At ``value = -2**(31 - exponent)`` gemmlowp saturates to ``INT32_MIN``
    and the shift wraps to it.  (Compared with the thresholds, as gemmlowp writes it,
    these were two 32-bit carry chains after the multiply's result: ResNet-8's critical
    path on the ECP5 at 76.3 MHz.)"""
    sign = value[31]
    top = value[31 - exponent:31]
    return Mux(~sign & top.any(), INT32_MAX,
               Mux(sign & ~top.all(), INT32_MIN, value[:32].as_signed() << exponent)
               )[:32].as_signed()


def load_row(m: Module, source, write, count, maximum, row: int, then: str, start):
    """The ``"load"`` state of a softmax unit's state machine: take a row of ``row``
    elements from ``source`` into a buffer (its write port ``write``, at ``count``), a
    beat a cycle, keeping the row's ``maximum``; after the last, ``count`` starts over,
    the statements ``start`` run and the machine goes on to ``then``."""
    with m.State("load"):
        m.d.comb += [source.ready.eq(1), write.en.eq(source.valid)]
        with m.If(source.valid):
            value = source.payload[0]
            m.d.sync += maximum.eq(Mux((count == 0) | (value > maximum), value, maximum))
            with m.If(count == row - 1):
                m.d.sync += [count.eq(0), *start]
                m.next = then
            with m.Else():
                m.d.sync += count.eq(count + 1)


def send_result(m: Module, sink, value, count, row: int):
    """The ``"output_send"`` state of a softmax unit's state machine: offer ``value`` on
    ``sink`` until it is taken, then go on to the row's next element (``"output_read"``)
    or, after its last, back to ``"load"``."""
    with m.State("output_send"):
        m.d.comb += [sink.valid.eq(1), sink.payload[0].eq(value)]
        with m.If(sink.ready):
            with m.If(count == row - 1):
                m.d.sync += count.eq(0)
                m.next = "load"
            with m.Else():
                m.d.sync += count.eq(count + 1)
                m.next = "output_read"


class SoftmaxUnit(wiring.Component):
    """Int8 softmax over rows of ``row`` elements, bit-exact with TFLite Micro
    (:func:`tfl2rtl.kernels.softmax.softmax_int8`), one element at a time.

    Every difference from the row maximum is one of 256 values, so its exponential
    comes from a 256-entry ROM (:func:`exp_table`); the rest is TFLite's integer
    arithmetic, sequenced by a state machine around one multi-cycle 32x32 multiplier
    (``M`` = :func:`multiply_cycles` from operands to the rounded high half, no path
    longer than one 16x16 product or one 48-bit addition, :func:`doubling_high_multiply`;
    with ``products_in_logic`` no DSP block, and ``M`` = :data:`LOGIC_MULTIPLY_CYCLES`):

    1. ``load``: take the row into a buffer, tracking its maximum (``row`` cycles).
    2. ``sum``: add up the exponentials rescaled to Q12.19 (``row + 3`` cycles).
    3. ``normalize``: shift the sum up to its leading one, counting the shifts
       (``GetReciprocal``); :data:`NORMALIZE_CYCLES` cycles, then 1 to halve it.
    4. ``newton``: ``1 / (1 + x)`` by gemmlowp's Newton-Raphson iteration: 7 saturating
       rounding doubling high multiplies of ``M + 2`` cycles each (the
       result registered once more before the update), then 1 cycle to rescale.
    5. ``output``: per element, exponential times reciprocal, rounding shift by the
       exponent, minus 128, clamped (``M + 4`` cycles each, plus any wait
       for ``o.ready``).

    Members
    -------
    i : ``In(stream.Signature(int8_lanes(1)))``
    o : ``Out(stream.Signature(int8_lanes(1)))``
        The softmax of each row, in order (scale 1/256, zero point -128).

    Attributes
    ----------
    cycles_per_row : int
        ``13 * row + 77``, with ``products_in_logic`` ``43 * row + 287``
        (:meth:`cycles_for_row`): from the first element of a row taken to the first of
        the next when the input keeps up and the output is not stalled (nothing
        overlaps).
    products_in_logic : bool
    """

    def __init__(self, node: ir.Softmax, row: int, products_in_logic: bool = False):
        if not 1 <= row <= MAX_ROW:
            raise Tfl2RtlError(
                f"SOFTMAX over rows of {row} elements: the hardware takes 1 to {MAX_ROW} "
                "(TFLite itself aborts at 512 equal values)"
            )
        self.node = node
        self.row = row
        self.products_in_logic = products_in_logic
        self.cycles_per_row = self.cycles_for_row(row, products_in_logic)
        self._table = exp_table(node)
        super().__init__({
            "i": In(stream.Signature(int8_lanes(1))),
            "o": Out(stream.Signature(int8_lanes(1))),
        })

    @staticmethod
    def cycles_for_row(row: int, products_in_logic: bool = False) -> int:
        """:attr:`cycles_per_row` of a unit for rows of ``row`` elements: ``row`` to load,
        ``row + 4`` to sum, ``NORMALIZE_CYCLES + 1`` to normalize, ``7 * (M + 2) + 1``
        for the reciprocal and ``M + 4`` per output (``M`` = :func:`multiply_cycles`)."""
        multiply = multiply_cycles(products_in_logic)
        return (row + row + 4 + NORMALIZE_CYCLES + 1 + 7 * (multiply + 2) + 1
                + (multiply + 4) * row)

    def elaborate(self, platform):
        m = Module()
        row = self.row

        m.submodules.buffer = buffer = Memory(shape=signed(8), depth=row, init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        m.submodules.exp_rom = rom = Memory(shape=unsigned(31), depth=256,
                                            init=self._table.tolist())
        lookup = rom.read_port()

        count = Signal(range(row + 1))
        maximum = Signal(signed(8))
        m.d.comb += [
            write.addr.eq(count),
            write.data.eq(self.i.payload[0]),
            read.addr.eq(count),
            # max - x is 0 .. 255
            lookup.addr.eq((maximum - read.data)[:8]),
        ]

        mul_a = Signal(signed(32))
        mul_b = Signal(signed(32))
        start = Signal()  # the operands are given
        high = doubling_high_multiply(m, mul_a, mul_b, start, self.products_in_logic)
        multiply = multiply_cycles(self.products_in_logic)
        wait = Signal(range(multiply))  # cycles still to wait for ``high``

        def wait_for_high(state, then):
            """A state that waits out the multiply pipeline (``wait``, set when the
            operands were given) and goes on to ``then``, where ``high`` is ready."""
            with m.State(state):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = then

        def wrap(value):
            return value[:32].as_signed()

        high_later = Signal(signed(32))  # ``high`` a cycle later
        high_times_4 = Signal(signed(32))  # its saturating shift by 2, a cycle later
        m.d.sync += [high_later.eq(high), high_times_4.eq(saturating_shift_left(high, 2))]

        total = Signal(unsigned(32))  # the Q12.19 sum of exponentials (< 2**28)
        half_denominator = Signal(signed(32))
        x = Signal(signed(32))  # the Newton iterate, Q2.29
        u = Signal(signed(32))  # 1 - half_denominator * x, Q2.29
        scale = Signal(signed(32))  # 1 / (1 + f), Q0.31
        shifts = Signal(range(NORMALIZE_CYCLES + 1))  # the sum's leading zeros, less 4
        step = Signal(range(max(7, NORMALIZE_CYCLES)))
        top = Signal(31 - (_TOP_EXPONENT - 1 - NORMALIZE_CYCLES))  # high >> (exponent - 1)
        fetched = Signal()  # read.data holds the row element at count - 1
        looked_up = Signal()  # lookup.data holds its exponential
        exp = Signal.like(lookup.data)  # the exponential, registered
        taken = Signal()  # exp holds an element's exponential

        with m.FSM():
            load_row(m, self.i, write, count, maximum, row, "sum",
                     [total.eq(0), fetched.eq(0), looked_up.eq(0), taken.eq(0)])

            with m.State("sum"):
                # A four-step pipeline: read the element, look up its exponential, take it
                # into a register (the block RAM's output is slow), add.
                issue = count < row
                m.d.comb += [read.en.eq(1), lookup.en.eq(1)]
                m.d.sync += [fetched.eq(issue), looked_up.eq(fetched), taken.eq(looked_up),
                             exp.eq(lookup.data)]
                with m.If(issue):
                    m.d.sync += count.eq(count + 1)
                with m.If(taken):  # + RoundingDivideByPOT(exp, 12): Q0.31 -> Q12.19
                    m.d.sync += total.eq(total + exp[12:] + (exp[:12] > (1 << 11) - 1))
                with m.If(~issue & ~fetched & ~looked_up & ~taken):
                    m.d.sync += [shifts.eq(0), step.eq(0)]
                    m.next = "normalize"

            with m.State("normalize"):
                # GetReciprocal: the sum shifted up to 1 + f (f in [0, 1)).  The sum lies in
                # [2**19, 2**28) (see NORMALIZE_CYCLES), so it has 4 + shifts leading zeros,
                # shifts in 0 .. 8: shifted up one bit a cycle until bit 27 is set, over a
                # fixed NORMALIZE_CYCLES cycles.
                with m.If(~total[27]):
                    m.d.sync += [total.eq(total << 1), shifts.eq(shifts + 1)]
                m.d.sync += step.eq(step + 1)
                with m.If(step == NORMALIZE_CYCLES - 1):
                    m.next = "halve"

            with m.State("halve"):
                # Half of the sum shifted up by its 4 + shifts leading zeros
                # (RoundingHalfSum(f, 1), exact).
                m.d.sync += [half_denominator.eq((total << 4)[:32] >> 1), step.eq(0)]
                m.next = "newton_multiply"

            # one_over_one_plus_x_for_x_in_0_1: x = 48/17 - 32/17 * d, then three times
            # x += 4 * srdhm(x, 1 - srdhm(d, x)) (saturating), result 2 * x (saturating).
            with m.State("newton_multiply"):
                with m.If(step == 0):
                    m.d.comb += [mul_a.eq(half_denominator), mul_b.eq(_NEG_32_OVER_17)]
                with m.Elif(step[0]):
                    m.d.comb += [mul_a.eq(half_denominator), mul_b.eq(x)]
                with m.Else():
                    m.d.comb += [mul_a.eq(x), mul_b.eq(u)]
                m.d.comb += start.eq(1)
                m.d.sync += wait.eq(multiply - 1)
                m.next = "newton_wait"

            wait_for_high("newton_wait", "newton_shift")

            with m.State("newton_shift"):
                # high and its saturating shift by 2 registered (high_later,
                # high_times_4): the update then adds registers only (on the iCE40 the
                # comparisons, the shift and the addition in one cycle were the jet MLP
                # engine's critical path, 37 ns).
                m.next = "newton_update"

            with m.State("newton_update"):
                with m.If(step == 0):
                    m.d.sync += x.eq(wrap(_48_OVER_17 + high_later))
                with m.Elif(step[0]):
                    m.d.sync += u.eq(wrap((1 << 29) - high_later))
                with m.Else():
                    m.d.sync += x.eq(wrap(x + high_times_4))
                m.d.sync += step.eq(step + 1)
                with m.If(step == 6):
                    m.next = "newton_done"
                with m.Else():
                    m.next = "newton_multiply"

            with m.State("newton_done"):
                # Rescale Q2.29 (read as Q1.30) to Q0.31.
                m.d.sync += [scale.eq(saturating_shift_left(x, 1)), count.eq(0)]
                m.next = "output_read"

            with m.State("output_read"):
                m.d.comb += read.en.eq(1)
                m.next = "output_lookup"

            with m.State("output_lookup"):
                m.d.comb += lookup.en.eq(1)
                m.next = "output_multiply"

            with m.State("output_multiply"):
                m.d.comb += [mul_a.eq(scale), mul_b.eq(lookup.data)]
                m.d.comb += start.eq(1)
                m.d.sync += wait.eq(multiply - 1)
                m.next = "output_wait"

            wait_for_high("output_wait", "output_shift")

            with m.State("output_shift"):
                # RoundingDivideByPOT(high, exponent) - 128, clamped to int8, for the
                # exponent _TOP_EXPONENT - shifts (23 .. 31).  As high >= 0 that is
                # (high >> (exponent - 1) + 1) >> 1, and high >> (exponent - 1) is its
                # bits from _TOP_EXPONENT - 1 - NORMALIZE_CYCLES up, shifted down by the
                # NORMALIZE_CYCLES - shifts it is short of the most.
                # The shift here, the rounding and clamp from its register while the
                # result is sent (no path from the shifter through the adder).
                low_bit = _TOP_EXPONENT - 1 - NORMALIZE_CYCLES
                m.d.sync += top.eq(high[low_bit:31] >> (Const(NORMALIZE_CYCLES, 4) - shifts)[:4])
                m.next = "output_send"

            shifted = (top >> 1) + top[0] - 128
            send_result(m, self.o, Mux(shifted > 127, 127, shifted), count, row)
        return m


#: The longest row :class:`SoftmaxInt16Unit` takes (its sum of exponentials, at most
#: ``row * 32767``, stays below 2**24: 8 to 17 leading zeros).
MAX_ROW_INT16 = 511

#: :class:`SoftmaxInt16Unit`'s cycles per table lookup: the entry, the next one, and the
#: interpolation between them into a register.
LOOKUP_CYCLES = 3


class SoftmaxInt16Unit(wiring.Component):
    """Int16 softmax over rows of ``row`` elements (a 16x8 model's), bit-exact with
    TensorFlow Lite Micro's ``SoftmaxInt16`` (:func:`tfl2rtl.kernels.softmax.softmax_int16`),
    one element at a time, sequenced by a state machine:

    1. ``load``: take the row into a buffer, tracking its maximum (``row`` cycles).
    2. ``sum``, per element: ``MultiplyByQuantizedMultiplier(x - max, input_multiplier,
       input_left_shift)`` (the int32 arithmetic: a wrapped left shift, the pipelined
       doubling high multiply of :func:`doubling_high_multiply`, the rounding right
       shift), ``+ 32767`` saturated to int16, the interpolated ``exp`` table lookup
       (:data:`LOOKUP_CYCLES`); the exponential is added to the int32 sum and kept in a
       second buffer (``MULTIPLY_CYCLES + 6`` cycles an element).
    3. ``reciprocal``: the sum's leading zeros ``h``, ``((sum << (h - 1)) + 2**13) >> 14
       - 3 * 2**15`` saturated to int16 and looked up in the ``1 / (1 + x)`` table (``1 +
       LOOKUP_CYCLES`` cycles).
    4. ``output``, per element: ``(exp * reciprocal + 2**(30 - h)) >> (31 - h)`` clamped
       to ``[0, 32767]`` (4 cycles, plus any wait for ``o.ready``).

    Both 513-entry tables share one ROM (:func:`tfl2rtl.kernels.softmax.
    softmax_int16_tables`).

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(16, 1)))``
    o : ``Out(stream.Signature(signed_lanes(16, 1)))``
        The softmax of each row, in order (scale 1/32768, zero point 0).

    Attributes
    ----------
    cycles_per_row : int
        :meth:`cycles_for_row`: ``(MULTIPLY_CYCLES + 11) * row + 1 + LOOKUP_CYCLES``
        from the first element of a row taken to the first of the next when the input
        keeps up and the output is not stalled (nothing overlaps).

    Tested on rows of 1 to 40 elements with input scales that put the differences
    beyond the exp table and within one step of it, left shifts from the node's
    parameters, against the golden model, with stalls and backpressure.
    """

    def __init__(self, node: ir.Softmax, row: int):
        if not 1 <= row <= MAX_ROW_INT16:
            raise Tfl2RtlError(f"int16 SOFTMAX over rows of {row} elements: the hardware "
                               f"takes 1 to {MAX_ROW_INT16}")
        shift = int(node.input_left_shift)
        if not -31 <= shift <= 31 or not 0 <= node.input_multiplier <= INT32_MAX:
            raise Tfl2RtlError(f"int16 SOFTMAX input multiplier {node.input_multiplier} and "
                               f"shift {shift}: expected a q31 multiplier, -31 .. 31")
        self.node = node
        self.row = row
        self.cycles_per_row = self.cycles_for_row(row)
        exp_lut, reciprocal_lut = softmax_int16_tables()
        self._rom = np.concatenate([exp_lut, reciprocal_lut]).astype(np.int64).tolist()
        self._table_size = len(exp_lut)
        super().__init__({
            "i": In(stream.Signature(signed_lanes(16, 1))),
            "o": Out(stream.Signature(signed_lanes(16, 1))),
        })

    @staticmethod
    def cycles_for_row(row: int) -> int:
        """:attr:`cycles_per_row` for rows of ``row`` elements: ``row`` to load,
        ``MULTIPLY_CYCLES + 6`` a sum step, ``1 + LOOKUP_CYCLES`` for the reciprocal and
        4 an output."""
        return row + (MULTIPLY_CYCLES + 6) * row + 1 + LOOKUP_CYCLES + 4 * row

    def elaborate(self, platform):
        m = Module()
        row = self.row
        left = max(int(self.node.input_left_shift), 0)
        right = max(-int(self.node.input_left_shift), 0)

        m.submodules.buffer = buffer = Memory(shape=signed(16), depth=row, init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        m.submodules.exps = exps = Memory(shape=signed(16), depth=row, init=[])
        exp_write = exps.write_port()
        exp_read = exps.read_port()
        m.submodules.tables = rom = Memory(shape=signed(16), depth=len(self._rom),
                                           init=self._rom)
        table = rom.read_port()

        count = Signal(range(row + 1))
        maximum = Signal(signed(16))
        m.d.comb += [
            write.addr.eq(count), write.data.eq(self.i.payload[0]),
            read.addr.eq(count), exp_write.addr.eq(count), exp_read.addr.eq(count),
        ]

        mul_a = Signal(signed(32))
        mul_b = Signal(signed(32))
        start = Signal()  # the operands are given
        high = doubling_high_multiply(m, mul_a, mul_b, start)
        multiply = MULTIPLY_CYCLES
        wait = Signal(range(multiply))

        total = Signal(unsigned(32))  # the int32 sum of exponentials (< 2**24)
        key = Signal(signed(16))  # the value being looked up
        base = Signal(signed(16))  # its table entry
        looked_up = Signal(signed(16))  # the interpolated result
        reciprocal = Signal(signed(16))
        headroom = Signal(range(33))  # CountLeadingZeros(sum)
        product = Signal(unsigned(31))
        result = Signal(signed(16))

        def lookup(first, offset, then):
            """``lut_lookup_int16(key)`` in the table at ``offset``: ``LOOKUP_CYCLES``
            states from ``first``, the result in ``looked_up`` when ``then`` starts."""
            index = 256 + (key >> 7) + offset
            with m.State(first):
                m.d.comb += [table.addr.eq(index), table.en.eq(1)]
                m.next = f"{first}_next"
            with m.State(f"{first}_next"):
                m.d.comb += [table.addr.eq(index + 1), table.en.eq(1)]
                m.d.sync += base.eq(table.data)
                m.next = f"{first}_interpolate"
            with m.State(f"{first}_interpolate"):
                slope = table.data - base
                delta = (slope * key[:7] + 64) >> 7
                m.d.sync += looked_up.eq((base + delta)[:16].as_signed())
                m.next = then

        with m.FSM():
            load_row(m, self.i, write, count, maximum, row, "sum_read", [total.eq(0)])

            with m.State("sum_read"):
                m.d.comb += read.en.eq(1)
                m.next = "sum_multiply"

            with m.State("sum_multiply"):
                # (x - max) << left_shift, wrapped to int32, times the multiplier.
                diff = read.data - maximum
                m.d.comb += [mul_a.eq((diff << left)[:32].as_signed()),
                             mul_b.eq(self.node.input_multiplier)]
                m.d.comb += start.eq(1)
                m.d.sync += wait.eq(multiply - 1)
                m.next = "sum_wait"

            with m.State("sum_wait"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = "sum_round"

            with m.State("sum_round"):
                # RoundingDivideByPOT (halves away from zero), + 32767, saturated.
                if right:
                    half = 1 << (right - 1)
                    scaled = (high + Mux(high < 0, half - 1, half)) >> right
                else:
                    scaled = high
                symmetric = scaled + 32767
                m.d.sync += key.eq(Mux(symmetric > 32767, 32767,
                                       Mux(symmetric < -32768, -32768, symmetric)))
                m.next = "sum_lookup"

            lookup("sum_lookup", 0, "sum_add")

            with m.State("sum_add"):
                m.d.comb += [exp_write.data.eq(looked_up), exp_write.en.eq(1)]
                m.d.sync += total.eq(total + looked_up)
                with m.If(count == row - 1):
                    m.d.sync += count.eq(0)
                    m.next = "reciprocal"
                with m.Else():
                    m.d.sync += count.eq(count + 1)
                    m.next = "sum_read"

            with m.State("reciprocal"):
                # The sum shifted up to bit 30 by its leading zeros less one, rounded to
                # 17 bits, recentred and saturated.
                zeros = Const(32, range(33))
                for bit in range(32):  # the highest set bit wins
                    zeros = Mux(total[bit], 31 - bit, zeros)
                # (the sum is at least 1, so it has at most 31 leading zeros)
                shifted = ((total << (zeros - 1)[:5])[:31] + (1 << 13)) >> 14
                symmetric = shifted - ((1 << 15) + (1 << 16))
                m.d.sync += [headroom.eq(zeros),
                             key.eq(Mux(symmetric > 32767, 32767,
                                        Mux(symmetric < -32768, -32768, symmetric)))]
                m.next = "reciprocal_lookup"

            lookup("reciprocal_lookup", self._table_size, "output_read")

            with m.State("output_read"):
                m.d.comb += exp_read.en.eq(1)
                m.d.sync += reciprocal.eq(looked_up)
                m.next = "output_multiply"

            with m.State("output_multiply"):
                m.d.sync += product.eq(exp_read.data * reciprocal)
                m.next = "output_shift"

            with m.State("output_shift"):
                right_shift = (31 - headroom)[:5]
                rounded = (product + (Const(1, 32) << right_shift)[1:]) >> right_shift
                m.d.sync += result.eq(Mux(rounded > 32767, 32767, rounded))
                m.next = "output_send"

            send_result(m, self.o, result, count, row)
        return m
