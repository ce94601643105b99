"""TFLite's requantization epilogue as a pipelined stream component."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError
from ..fixedpoint import INT32_MAX, INT32_MIN, signed_bits
from .layouts import accumulator_layout, int8_lanes

__all__ = ["Requantizer"]

#: The pipeline's register stages, in order; each adds one cycle of latency.  Every stage
#: has at most one carry chain of about 35 bits (or one 17x17 multiply) before its register.
STAGES = (
    "lookup",  # int32 wrap of the accumulator; per-channel parameters read from the ROM
    "left_shift",  # x << left_shift, wrapped to int32
    "partial_products",  # the four 16x16 products of x's and the multiplier's halves
    "middle",  # the two cross products summed
    "low_sum",  # carry out of the low 31 bits of x * multiplier + 2**30; the high bits
    "high",  # (x * multiplier + 2**30) >> 31: the doubling high multiply; the nudges
    "round",  # saturation, plus the nudge of the rounding right shift
    "right_shift",  # arithmetic shift right
    "clamp",  # + output_offset, clamp to [act_min, act_max]
)


class Requantizer(wiring.Component):
    """``clamp(MultiplyByQuantizedMultiplier(acc, multiplier[c], shift[c]) + output_offset)``.

    Bit-exact with TFLite Micro's integer epilogue (and :mod:`tfl2rtl.fixedpoint`):

    1. the accumulator is wrapped to int32, as the C code's ``int32_t acc`` would;
    2. for ``shift > 0`` it is shifted left by ``shift``, wrapping at 32 bits;
    3. saturating rounding doubling high multiply: ``(x * multiplier + 2**30) >> 31``
       (rounds halves towards +infinity, as gemmlowp's nudge does), with
       ``INT32_MIN * INT32_MIN`` saturating to ``INT32_MAX``;
    4. for ``shift < 0`` a rounding right shift by ``-shift``, halves away from zero
       (which differs from step 3 on negative halves: ``mbqm(-5, 2**30, -1) = -1``);
    5. ``+ output_offset`` in int32 (wrapping around, as the C code's ``int32_t``
       addition does in practice) and clamp to ``[act_min, act_max]``.

    Parameters
    ----------
    requant : :class:`tfl2rtl.ir.Requant`
        Multipliers (any int32) and shifts (``-31 .. 31``), one per channel or one for all.
    channels : int
        Number of output channels; a multiple of ``lanes``.
    output_offset, act_min, act_max : int
        The epilogue's constants; ``[act_min, act_max]`` must lie within int8 and the
        offset within int32, 256 away from its ends.
    acc_width : int
        Width of the signed accumulators on :attr:`i`.
    lanes : int
        Accumulators requantized side by side per beat.

    Per-channel parameters live in a ROM of ``channels / lanes`` rows read by ``group``;
    a parameter that is the same in every row of a lane is a constant instead (a fixed
    shift becomes wiring), and without any varying parameter there is no ROM at all.

    Members
    -------
    i : ``In(stream.Signature(accumulator_layout(acc_width, lanes, channels // lanes)))``
        ``acc[lane]`` belongs to channel ``group * lanes + lane``.
    o : ``Out(stream.Signature(int8_lanes(lanes)))``
        The requantized values, in the order the accumulators came in.

    Attributes
    ----------
    latency : int
        ``len(STAGES)`` = 9: a beat taken on ``i`` at clock edge ``n`` can leave on ``o``
        at edge ``n + latency`` (its result is valid from edge ``n + latency - 1``).
    throughput : int
        Beats per cycle: 1 (a beat is accepted every cycle that ``o`` is not stalled).

    Tested for ``lanes`` 1, 2 and 4, ``acc_width`` 9 to 40, multipliers over all of int32
    (including 0, 2**30, 2**31 - 1 and ``INT32_MIN``), shifts -31 to 31.
    """

    def __init__(self, requant, *, channels: int, output_offset: int, act_min: int,
                 act_max: int, acc_width: int, lanes: int = 1):
        multiplier = np.asarray(requant.multiplier, dtype=np.int64).reshape(-1)
        shift = np.asarray(requant.shift, dtype=np.int64).reshape(-1)
        if lanes < 1 or channels < 1 or channels % lanes:
            raise Tfl2RtlError(
                f"cannot requantize {channels} channels in groups of {lanes} lanes: "
                "the lane count must divide the channel count"
            )
        if multiplier.size not in (1, channels) or shift.size != multiplier.size:
            raise Tfl2RtlError(
                f"requantization has {multiplier.size} multipliers and {shift.size} shifts "
                f"for {channels} channels: expected 1 or {channels} of each"
            )
        if multiplier.min() < INT32_MIN or multiplier.max() > INT32_MAX:
            raise Tfl2RtlError("a requantization multiplier is outside int32")
        if shift.min() < -31 or shift.max() > 31:
            raise Tfl2RtlError(
                f"requantization shifts {shift.min()} .. {shift.max()} are outside -31 .. 31"
            )
        if not -128 <= act_min <= act_max <= 127:
            raise Tfl2RtlError(
                f"activation range [{act_min}, {act_max}] is not an int8 range"
            )
        if acc_width < 1:
            raise Tfl2RtlError(f"accumulator width {acc_width} must be positive")
        if not INT32_MIN + 256 <= output_offset <= INT32_MAX - 256:
            raise Tfl2RtlError(f"output offset {output_offset} is outside the int32 range "
                               "the requantizer supports")

        self.channels = channels
        self.lanes = lanes
        self.groups = channels // lanes
        self.acc_width = acc_width
        self.output_offset = int(output_offset)
        self.act_min = int(act_min)
        self.act_max = int(act_max)
        self.latency = len(STAGES)
        self.throughput = 1

        # Parameter tables, [group, lane] each.
        def table(values):
            return np.broadcast_to(values, (channels,)).reshape(self.groups, lanes)

        self._tables = {
            "multiplier": table(multiplier),
            "left": table(np.maximum(shift, 0)),
            "right": table(np.maximum(-shift, 0)),
        }
        super().__init__({
            "i": In(stream.Signature(accumulator_layout(acc_width, lanes, self.groups))),
            "o": Out(stream.Signature(int8_lanes(lanes))),
        })

    @staticmethod
    def _shape_of(values):
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0:
            return unsigned(max(1, hi.bit_length()))
        return signed(signed_bits(lo, hi))

    def _parameters(self, m, advance):
        """Per lane, the ``multiplier``, ``left`` and ``right`` shift of the beat on :attr:`i`,
        one cycle later: a ROM read for the ones that vary between groups, else constants."""
        varying = {
            f"{field}{lane}": (field, lane)
            for field, values in self._tables.items()
            for lane in range(self.lanes)
            if np.any(values[:, lane] != values[0, lane])
        }
        params = [{} for _ in range(self.lanes)]
        if varying:
            row = data.StructLayout({
                key: self._shape_of(self._tables[field][:, lane])
                for key, (field, lane) in varying.items()
            })
            m.submodules.rom = rom = Memory(shape=row, depth=self.groups, init=[
                {key: int(self._tables[field][group, lane])
                 for key, (field, lane) in varying.items()}
                for group in range(self.groups)
            ])
            port = rom.read_port()
            m.d.comb += [port.addr.eq(self.i.payload.group), port.en.eq(advance)]
            for key, (field, lane) in varying.items():
                params[lane][field] = port.data[key]
        for field, values in self._tables.items():
            for lane in range(self.lanes):
                params[lane].setdefault(
                    field, Const(int(values[0, lane]), self._shape_of(values[:, lane])))
        return params

    def elaborate(self, platform):
        m = Module()

        # One enable for the whole pipeline: it moves whenever its last stage is empty or
        # being emptied, so a beat enters every cycle that the output is not stalled.
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        def register(value, name, shape=None):
            """The pipeline register after ``value`` (a constant needs none)."""
            if isinstance(value, Const):
                return value
            reg = Signal(value.shape() if shape is None else shape, name=name)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        valid = self.i.valid
        for name in STAGES:
            valid = register(valid, f"valid_{name}")
        m.d.comb += self.o.valid.eq(valid)

        params = self._parameters(m, advance)
        for lane in range(self.lanes):
            out = self._lane(register, self.i.payload.acc[lane], params[lane], lane)
            m.d.comb += self.o.payload[lane].eq(out)
        return m

    def _lane(self, register, acc, p, lane):
        """One lane's pipeline, stage by stage (see :data:`STAGES`)."""

        def stage(value, name, shape=None):
            return register(value, f"{name}_{lane}", shape)

        # "lookup": the parameters come out of the ROM while the accumulator, wrapped to
        # int32 like the C code's, waits in a register.
        x = stage(acc[:32].as_signed() if self.acc_width > 32 else acc, "x", signed(32))

        # "left_shift"
        scaled = stage((x << p["left"])[:32].as_signed(), "scaled", signed(32))
        mult = p["multiplier"]
        if mult.shape().signed:  # sign-extended, so that its halves are right
            mult = (Const(mult.value, signed(32)) if isinstance(mult, Const)
                    else stage(mult, "multiplier", signed(32)))
        else:
            mult = stage(mult, "multiplier")
        right = stage(p["right"], "right_2")

        # "partial_products": x = x_hi * 2**16 + x_lo, multiplier = m_hi * 2**16 + m_lo,
        # the low halves unsigned; each product fits a 16x16 or 18x18 multiplier.
        x_lo, x_hi = scaled[:16], scaled[16:].as_signed()
        m_lo = mult[:16]
        ll = stage(x_lo * m_lo, "ll")
        hl = stage(x_hi * m_lo, "hl")
        if len(mult) > 16:
            m_hi = mult[16:].as_signed() if mult.shape().signed else mult[16:]
            lh = stage(x_lo * m_hi, "lh")
            hh = stage(x_hi * m_hi, "hh")
        else:
            lh = hh = Const(0)
        right = stage(right, "right_3")

        # "middle": x * multiplier = hh * 2**32 + middle * 2**16 + ll.
        middle = stage(lh + hl, "middle")
        ll = stage(ll, "ll_4")
        hh = stage(hh, "hh_4")
        right = stage(right, "right_4")

        # "low_sum": split (x * multiplier + 2**30) at bit 31 into
        # 2**31 * (upper + carry) + (low bits), with low = ll[:31] + middle[:15] * 2**16
        # + 2**30 and carry = low >> 31 (0 to 2).
        low = ll[:31] + (middle[:15] << 16) + (1 << 30)
        carry = stage(low[31:], "carry")
        upper = stage((hh << 1) + (middle >> 15) + ll[31], "upper", signed(36))
        right = stage(right, "right_5")

        # "high": floor((x * multiplier + 2**30) / 2**31), the doubling high multiply.
        # Alongside, the right shift's nudges: 2**(right - 1) for x >= 0 and one less for
        # x < 0 (none for right = 0), which make its floor round halves away from zero.
        high = stage(upper + carry, "high", signed(36))
        half = (Const(1, 32) << right)[1:]
        nudge_positive = stage(half, "nudge_positive", unsigned(31))
        nudge_negative = stage(half - (right != 0), "nudge_negative", unsigned(31))
        right = stage(right, "right_6")

        # "round": only INT32_MIN * INT32_MIN exceeds int32, giving 2**31 (bit 31 set, sign
        # clear), which saturates.
        overflow = high[31] & ~high[-1]
        saturated = Mux(overflow, INT32_MAX, high[:32].as_signed())
        nudge = Mux(high[-1], nudge_negative, nudge_positive)
        y = stage(saturated + nudge, "y", signed(34))
        right = stage(right, "right_7")

        # "right_shift": arithmetic, so a floor.
        q = stage(y >> right, "q", signed(32))

        # "clamp": q is compared with the bounds less the offset (no adder before the
        # comparisons); only the low 8 bits of q + output_offset are needed in range.
        # The C code adds the offset in int32, which wraps: q beyond INT32_MAX - offset
        # becomes very negative (clamped to act_min), q below INT32_MIN - offset very
        # positive (act_max).  Comparisons with constants, parallel to the others.
        offset = self.output_offset
        low_bound = self.act_min - offset
        high_bound = self.act_max - offset
        in_range = (q + offset)[:8].as_signed()
        clamped = Mux(q < low_bound, self.act_min, Mux(q > high_bound, self.act_max, in_range))
        if offset > 0:
            clamped = Mux(q > INT32_MAX - offset, self.act_min, clamped)
        elif offset < 0:
            clamped = Mux(q < INT32_MIN - offset, self.act_max, clamped)
        return stage(clamped, "out", signed(8))
