"""TFLite's requantization epilogue as a pipelined stream component."""

from __future__ import annotations

import functools
import operator
from functools import partial

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError
from ..fixedpoint import INT32_MAX, INT32_MIN, signed_bits
from . import pipeline
from .layouts import accumulator_layout, int8_lanes, signed_lanes

__all__ = ["Requantizer", "RoundingRequantizer", "Int64Requantizer", "int64_chunks",
           "matches_double_rounding", "SERIAL_PRODUCTS_HOOK", "NARROW_X_BITS",
           "x_bits", "high_products_in_logic", "lane_multipliers"]

#: The platform attribute that, when true, makes every :class:`Requantizer` elaborated
#: for that platform compute its partial products on one shared multiplier per lane (as
#: ``serial_products=True`` does): a vendor hook for devices with few DSP blocks.
SERIAL_PRODUCTS_HOOK = "requantizer_serial_products"

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

#: The steps of a compact requantizer (``Requantizer(compact=True)``), one a cycle after
#: a beat is taken, all on one beat at a time: its 32x32 product is accumulated in one
#: 48-bit register from four 16x16 products of one multiplier.
COMPACT_STEPS = (
    "left_shift",  # x << left_shift, wrapped to int32, in place
    "operands_ll",  # the multiplier's operand registers take x's and M's low halves
    "operands_lh",  # x's low half and M's high half; the low product comes out
    "load",  # acc = low product >> 16 + the rounding and sign-correction constants
    "add_lh",  # + the cross products, each as it comes out of the multiplier
    "add_hl",
    "add_hh",  # + the high product << 16
    "correct_x",  # + (~M << 16) when x < 0: the 2**32 * M of a signed x, negated
    "correct_m",  # + (~x << 16) when M < 0
    "round",  # the doubling high multiply (acc >> 15) saturated, plus the right shift's nudge
    "right_shift",  # arithmetic shift right
    "clamp",  # + output_offset, clamp to [act_min, act_max], into the output register
)

#: Cycles between beats of a compact requantizer: one a step.
COMPACT_INTERVAL = len(COMPACT_STEPS)


def _term(condition, value):
    """``value`` where ``condition`` holds, else 0: one of the terms a compact lane ORs
    into its adder's operand."""
    return Mux(condition, value, 0)


def _bits(value, start: int, stop: int, *, two_complement: bool):
    """Bits ``start`` to ``stop`` of ``value``, read as two's complement or unsigned: a
    :class:`Const` when ``value`` is one (so that a product by it is seen to be
    constant)."""
    width = stop - start
    if isinstance(value, Const):
        bits = (value.value >> start) & ((1 << width) - 1)
        if two_complement and bits >> (width - 1):
            bits -= 1 << width
        return Const(bits, signed(width) if two_complement else unsigned(width))
    part = value[start:stop]
    return part.as_signed() if two_complement else part


#: The most bits an accumulator (after any left shift) may have for a requantizer lane
#: with parallel products to build its products by x's high half (bits 16 up, at most
#: five significant bits) in LUTs (:func:`tfl2rtl.hw.pipeline.logic_product`) instead of
#: two multipliers; from 17 bits down those products are a negation.
NARROW_X_BITS = 21


def x_bits(acc_width: int, shift) -> int:
    """The significant bits of a requantizer's ``x``: the accumulator after the largest
    left shift among ``shift`` (one per channel or one for all), wrapped to int32."""
    return min(32, min(acc_width, 32) + max(int(np.max(shift)), 0))


def high_products_in_logic(acc_width: int, shift) -> bool:
    """Whether a requantizer lane with parallel products builds its products by x's high
    half without multipliers: a negation (``x`` of at most 17 bits) or in LUTs (at most
    :data:`NARROW_X_BITS`, where every channel has the same left shift, so that every
    lane of the layer has the same form and :func:`lane_multipliers` counts them all)."""
    bits = x_bits(acc_width, shift)
    left = np.maximum(np.asarray(shift).reshape(-1), 0)
    return bits <= 17 or (bits <= NARROW_X_BITS and bool(np.all(left == left[0])))


def lane_multipliers(multiplier, shift, acc_width: int) -> int:
    """The multipliers (DSP blocks) of one requantizer lane with parallel products:
    :func:`partial_products`, halved where :func:`high_products_in_logic`."""
    products = partial_products(multiplier)
    return products // 2 if high_products_in_logic(acc_width, shift) else products


def partial_products(multiplier) -> int:
    """The 16x16 partial products of a :class:`Requantizer` lane for these multipliers
    (int32, one per channel or one for all): four, or two when every one fits 16
    unsigned bits (its :attr:`~Requantizer.products`)."""
    multiplier = np.asarray(multiplier, dtype=np.int64)
    return 2 if multiplier.min() >= 0 and multiplier.max() < 1 << 16 else 4


def group_parameters(m, advance, tables: dict, group) -> list[dict]:
    """Per lane, each field of ``tables`` (name -> ``[group, lane]`` array) for neuron
    group ``group``, one cycle later (the read of a ROM ``m.submodules.rom`` enabled by
    ``advance``) for the fields whose values differ between groups, a constant for the
    others: ``[{name: value}]``."""
    lanes = next(iter(tables.values())).shape[1]
    varying = {f"{name}{lane}": (name, lane)
               for name, values in tables.items() for lane in range(lanes)
               if np.any(values[:, lane] != values[0, lane])}
    params = [{} for _ in range(lanes)]
    if varying:
        groups = next(iter(tables.values())).shape[0]
        row = data.StructLayout({key: Requantizer._shape_of(tables[name][:, lane])
                                 for key, (name, lane) in varying.items()})
        m.submodules.rom = rom = Memory(shape=row, depth=groups, init=[
            {key: int(tables[name][g, lane]) for key, (name, lane) in varying.items()}
            for g in range(groups)])
        port = rom.read_port()
        m.d.comb += [port.addr.eq(group), port.en.eq(advance)]
        for key, (name, lane) in varying.items():
            params[lane][name] = port.data[key]
    for name, values in tables.items():
        for lane in range(lanes):
            params[lane].setdefault(
                name, Const(int(values[0, lane]), Requantizer._shape_of(values[:, lane])))
    return params


def _checked_parameters(requant, channels: int, lanes: int):
    """``requant``'s multipliers and shifts as flat int64 arrays, after the checks every
    requantizer makes: ``lanes`` divide ``channels``, one or ``channels`` of each, int32
    multipliers."""
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
    return multiplier, shift


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
    output_offset, act_min, act_max : int, or array of int
        The epilogue's constants, one for all channels or one per channel (a sequential
        engine's layers, each with its own); ``[act_min, act_max]`` must lie within the
        ``out_bits``-bit signed range and the offset within int32, ``2**out_bits`` away
        from its ends.
    acc_width : int
        Width of the signed accumulators on :attr:`i`.
    lanes : int
        Accumulators requantized side by side per beat.

    Per-channel parameters live in a ROM of ``channels / lanes`` rows read by ``group``;
    a parameter that is the same in every row of a lane is a constant instead (a fixed
    shift becomes wiring), and without any varying parameter there is no ROM at all.
    Per-channel epilogues (offset and clamp) live in a second ROM, read by the beat's
    ``group`` (which travels down the pipeline beside it) two stages before the clamp
    and registered;
    with one epilogue for all channels the clamp compares with constants.

    Members
    -------
    i : ``In(stream.Signature(accumulator_layout(acc_width, lanes, channels // lanes)))``
        ``acc[lane]`` belongs to channel ``group * lanes + lane``.
    o : ``Out(stream.Signature(signed_lanes(out_bits, lanes)))``
        The requantized values, in the order the accumulators came in: int8, or int16
        with ``out_bits=16`` (a 16x8 model's ADD and int16 QUANTIZE, whose arithmetic is
        the int32 one).

    Attributes
    ----------
    latency : int
        ``len(STAGES)`` = 9: a beat taken on ``i`` at clock edge ``n`` can leave on ``o``
        at edge ``n + latency`` (its result is valid from edge ``n + latency - 1``).
        With serial products ``(len(STAGES) - 1) * interval + 1``; a per-channel epilogue
        adds a stage (:meth:`latency_for`).  Compact: ``COMPACT_INTERVAL + 1``.
    throughput : int
        Beats per cycle: 1 (a beat is accepted every cycle that ``o`` is not stalled);
        ``1 / interval`` with serial products or compact.
    interval : int
        Cycles between beats: 1, or :attr:`products` + 1 with serial products, or
        :data:`COMPACT_INTERVAL` when compact.
    products : int
        Partial products per lane: 4, or 2 when every multiplier fits 16 unsigned bits.
    multipliers : int
        16x16 multipliers in all lanes: ``lanes * products``, or ``lanes`` with serial
        products or compact; half as many where the products by x's high half need no
        multiplier (:func:`high_products_in_logic`: an accumulator of at most
        :data:`NARROW_X_BITS` bits, whose few high bits multiply in LUTs).

    Tested for ``lanes`` 1, 2 and 4, ``acc_width`` 9 to 40, multipliers over all of int32
    (including 0, 2**30, 2**31 - 1 and ``INT32_MIN``), shifts -31 to 31; int16 results
    (``out_bits=16``) through :class:`~tfl2rtl.hw.elementwise.RequantizeLayer` and the
    ADDs of random 16x8 graphs.

    Serial products
    ---------------
    Each lane normally has four 16x16 multipliers (two when every multiplier fits 16
    unsigned bits), one per partial product of ``x * multiplier``: four ``SB_MAC16`` on
    an iCE40.  With ``serial_products=True`` (or when elaborated for a platform whose
    :data:`SERIAL_PRODUCTS_HOOK` attribute is true) one unsigned 16x16 multiplier per
    lane computes them in turn into registers, the signs are put right by adding shifted
    operands after those registers, and the whole pipeline moves one step every
    :attr:`interval` cycles (the number of partial products, plus one): for layers whose
    accumulators come no faster than that.  The results are the same, bit for bit.
    (Nothing but a register follows the multiplier: with an adder after it, Yosys's
    ``synth_ice40 -dsp`` merged the two into an ``SB_MAC16`` whose post-synthesis
    simulation gave wrong results.)

    Whether the pipeline steps at the end of a window is decided a cycle before, from
    whether the output is then empty or being taken, so a result that waits on a stalled
    ``o`` holds the next step back to the following window.

    ``interval``, ``latency`` and ``throughput`` describe the keyword's choice; a
    platform hook makes the elaborated hardware that of ``serial_products=True``.

    Compact
    -------
    With ``compact=True`` a lane takes one beat at a time through
    :data:`COMPACT_STEPS`, one step a cycle, on a handful of registers that every step
    reuses: the accumulator wrapped and shifted left in place, the 32x32 product summed
    in one 48-bit register from four 16x16 products of one multiplier (signs put right
    by two more additions), then saturated and nudged, shifted right and clamped
    (:meth:`_compact_lane`).  A beat is taken when the lane is idle or as its result is
    written; a result not yet taken holds the lane in its last step.  So a beat enters
    every :data:`COMPACT_INTERVAL` cycles when ``o`` keeps up, and its result can leave
    ``COMPACT_INTERVAL + 1`` edges after it entered.  About half the logic cells and
    a third of the flip-flops of a lane with serial products (measured on the iCE40 in
    micro_speech's layers, Yosys' LUTs, carries and flip-flops: 601 and 456 cells
    against 1,315 and 933, of them 197 and 132 flip-flops against 626 and 496, before
    the fabric product's addend register: 48 + 31 flip-flops in place of the product
    register's 32, see :meth:`_compact_registered_sum`), for layers whose outputs come
    no faster (:func:`tfl2rtl.design.share_requantizers`
    chooses it).  The hook for serial products does not change it.  Tested as the
    serial form is, and over random multipliers of both signs, every shift from -31 to
    31 and 40-bit accumulators, on the fabric multiplier and through the product hook.
    """

    def __init__(self, requant, *, channels: int, output_offset: int, act_min: int,
                 act_max: int, acc_width: int, lanes: int = 1,
                 serial_products: bool = False, compact: bool = False, out_bits: int = 8):
        multiplier, shift = _checked_parameters(requant, channels, lanes)
        if shift.min() < -31 or shift.max() > 31:
            raise Tfl2RtlError(
                f"requantization shifts {shift.min()} .. {shift.max()} are outside -31 .. 31"
            )
        if out_bits not in (8, 16):
            raise Tfl2RtlError(f"{out_bits}-bit results: the requantizer gives 8 or 16")
        def per_channel(value):
            value = np.asarray(value, dtype=np.int64).reshape(-1)
            if value.size not in (1, channels):
                raise Tfl2RtlError(f"{value.size} epilogue constants for {channels} "
                                   "channels: expected 1 or one per channel")
            return np.broadcast_to(value, (channels,))

        epilogue = {"offset": per_channel(output_offset), "act_min": per_channel(act_min),
                    "act_max": per_channel(act_max)}
        for low, high in set(zip(epilogue["act_min"].tolist(), epilogue["act_max"].tolist(),
                                 strict=True)):
            if not -(1 << (out_bits - 1)) <= low <= high < 1 << (out_bits - 1):
                raise Tfl2RtlError(
                    f"activation range [{low}, {high}] is not an int{out_bits} range"
                )
        if acc_width < 1:
            raise Tfl2RtlError(f"accumulator width {acc_width} must be positive")
        for offset in set(epilogue["offset"].tolist()):
            if not INT32_MIN + (1 << out_bits) <= offset <= INT32_MAX - (1 << out_bits):
                raise Tfl2RtlError(f"output offset {offset} is outside the int32 range "
                                   "the requantizer supports")

        self.channels = channels
        self.lanes = lanes
        self.groups = channels // lanes
        self.acc_width = acc_width
        self.out_bits = out_bits
        #: The epilogue's constants of each channel.
        self.output_offset, self.act_min, self.act_max = (
            epilogue["offset"], epilogue["act_min"], epilogue["act_max"])
        self._epilogue = {name: values.reshape(self.groups, lanes)
                          for name, values in epilogue.items()}
        #: Whether the epilogue differs between channels (then it comes from a ROM).
        self.per_channel_epilogue = any(len(set(v.tolist())) > 1 for v in epilogue.values())
        #: The register stages: :data:`STAGES`, with "compare" before "clamp" for a
        #: per-channel epilogue.
        self._stages = (STAGES[:-1] + ("compare",) + STAGES[-1:]
                        if self.per_channel_epilogue else STAGES)
        self.serial_products = bool(serial_products)
        self.compact = bool(compact)
        if self.compact and self.serial_products:
            raise Tfl2RtlError("a requantizer is compact or has serial products, not both")
        #: Partial products per lane: two when every multiplier fits 16 unsigned bits.
        self.products = partial_products(multiplier)
        #: Cycles between beats: 1, or :attr:`products` + 1 with ``serial_products`` (a
        #: cycle per partial product on the shared multiplier, then the step that takes
        #: them all from their registers), or :data:`COMPACT_INTERVAL` when compact.
        self.interval = (COMPACT_INTERVAL if self.compact
                         else self.products + 1 if self.serial_products else 1)
        # The products by x's high half without multipliers (parallel products only).
        self._high_in_logic = high_products_in_logic(acc_width, shift)
        #: 16x16 multipliers in all lanes.
        self.multipliers = lanes * (1 if self.serial_products or self.compact
                                    else lane_multipliers(multiplier, shift, acc_width))
        # A beat taken at a step passes the other stages at the next steps and can leave
        # the cycle after its last (without waiting for a step).
        self.latency = (COMPACT_INTERVAL + 1 if self.compact
                        else self.latency_for(self.interval, self.per_channel_epilogue))
        self.throughput = 1 if self.interval == 1 else 1 / self.interval

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
            "o": Out(stream.Signature(signed_lanes(out_bits, lanes))),
        })

    @staticmethod
    def latency_for(interval: int, per_channel_epilogue: bool = False) -> int:
        """:attr:`latency` of a requantizer taking a beat every ``interval`` cycles (with
        a per-channel epilogue: one stage more, "compare")."""
        return (len(STAGES) - 1 + int(per_channel_epilogue)) * interval + 1

    @staticmethod
    def _shape_of(values):
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0:
            return unsigned(max(1, hi.bit_length()))
        return signed(signed_bits(lo, hi))

    def _parameters(self, m, advance):
        """Per lane, the ``multiplier``, ``left`` and ``right`` shift of the beat on :attr:`i`,
        one cycle later (:func:`group_parameters`)."""
        return group_parameters(m, advance, self._tables, self.i.payload.group)

    def elaborate(self, platform):
        if self.compact:
            return self._elaborate_compact(platform)
        m = Module()
        serial = self.serial_products or bool(getattr(platform, SERIAL_PRODUCTS_HOOK, False))
        interval = self.products + 1 if serial else 1

        # One enable for the whole pipeline: it moves whenever its last stage is empty or
        # being emptied, so a beat enters every cycle that the output is not stalled.
        # With serial products it moves only in the last cycle of each window of
        # ``interval`` cycles (``phase`` marks them), while the shared multipliers work
        # through the partial products of the beat in the "left_shift" registers.
        advance = Signal()
        phase = None
        if serial:
            # One-hot: bit k is set in phase k (no counter, adder or comparison before
            # the operand multiplexers: on the iCE40 that path was the critical one).
            phase = Signal(interval, init=1)
            m.d.sync += phase.eq(phase.rotate_left(1))
            # Whether the pipeline steps in the window's last phase is decided in the
            # phase before, into a register: the output is free then if it is empty or
            # being taken (nothing but a step fills it).  So neither ``o.ready`` nor
            # ``o.valid`` reaches the operand multiplexers and the enables (on the ECP5
            # the path from the next FIFO's level through ``o.ready`` to a DSP block's
            # operand was ResNet-8's critical path, 14.8 ns, 13.2 of them routing).
            m.d.sync += advance.eq(phase[interval - 2] & (~self.o.valid | self.o.ready))
        else:
            m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        m.d.comb += self.i.ready.eq(advance)

        # Data registers have no reset (the valid bits do).
        register = partial(pipeline.register, m, advance, reset_less=True)

        valid = self.i.valid
        for name in self._stages:
            valid = pipeline.register(m, advance, valid, f"valid_{name}")
        m.d.comb += self.o.valid.eq(valid)
        if serial:  # a result taken between two steps must not be taken again
            with m.If(self.o.valid & self.o.ready & ~advance):
                m.d.sync += valid.eq(0)

        params = self._parameters(m, advance)
        epilogues = [None] * self.lanes
        if self.per_channel_epilogue:
            # The beat's group travels beside it to the "high" stage, where it reads the
            # epilogue ROM; the ROM's data is registered once more beside "q" (on the
            # iCE40 the block RAM's output through the clamp's comparisons was the jet
            # MLP engine's critical path, 30.0 ns).
            group = self.i.payload.group
            for name in STAGES[:STAGES.index("round")]:
                group = register(group, f"group_{name}")
            epilogues = self._epilogue_bounds(m, advance, group, register)
        for lane in range(self.lanes):
            products = None
            if serial:
                # Each lane's operand multiplexers and product registers read copies of
                # ``phase`` and ``advance`` of their own, placed beside them (on the ECP5
                # the one ``advance`` register through 8.7 ns of routing into a lane's
                # operand multiplexer and on to its DSP block was ResNet-8's critical
                # path, 14.7 ns at 68.2 MHz).  The copies load as the originals do; a
                # copy's own output is part of its enable, so Yosys does not merge it.
                phase_k = Signal(interval, init=1, name=f"serial_phase_{lane}")
                m.d.sync += phase_k.eq(phase_k.rotate_left(1))
                step_k = Signal(name=f"serial_step_{lane}")
                with m.If(phase_k[interval - 2] | step_k):
                    m.d.sync += step_k.eq(
                        phase_k[interval - 2] & (~self.o.valid | self.o.ready))

                def products(operands, first, lane=lane, phase_k=phase_k, step_k=step_k):
                    return self._serial_products(m, operands, first, phase_k, step_k,
                                                 interval, lane, platform)
            def dsp(a, b, name):
                return pipeline.platform_product(m, platform, advance, a, b, name)

            def logic(a, b, name):
                return pipeline.logic_product(m, advance, a, b, name, stages=1)
            out = self._lane(register, self.i.payload.acc[lane], params[lane], lane,
                             products, None if serial else dsp, epilogues[lane],
                             None if serial else logic)
            m.d.comb += self.o.payload[lane].eq(out)
        return m

    @staticmethod
    def _serial_products(m, operands, first, phase, advance, interval, lane, platform=None):
        """The products ``a * b`` of ``operands`` (``(a, a_signed, b, b_signed)``, each
        operand 16 bits) from one unsigned 16x16 multiplier: in phase ``k`` of the
        window the unsigned product of operand pair ``k`` goes into a register; the
        sign corrections are added after the registers.  A signed operand ``a`` is
        ``a_u - 2**16 * a[15]`` for its unsigned bits ``a_u``, so ``a * b = a_u * b_u -
        2**16 * (a[15] * b_u + b[15] * a_u) + 2**32 * a[15] * b[15]`` (the terms of
        unsigned operands left out).  The values are valid in the window's last
        cycle, when the pipeline steps.

        The multiplier's operands come from registers (so that its inputs are register
        outputs, not a multiplexer selected by the phase): loaded in each phase with the
        next phase's pair and, on the edge where the pipeline steps (``advance``), with
        ``first``, the pair ``(a, b)`` of phase 0 as it enters the operand registers.

        On a platform with the :data:`~tfl2rtl.hw.pipeline.PRODUCT_HOOK` (the ECP5) the
        multiplier is the hook's DSP block, enabled on every edge: its own registers
        hold the operands, and its product register puts out the product of pair ``k``
        a cycle later, in phase ``k + 1``, where a register takes it; the last pair's
        comes out in the window's last phase and goes on from the DSP block itself.
        ``phase`` has a bit a phase of the window, the current one's set."""
        operands = operands + [(Const(0, 16), False, Const(0, 16), False)] * (
            interval - 1 - len(operands))
        # The pair of the following phase: phase k + 1's in phase k, the first pair again
        # in the window's last phase; an AND-OR over the one-hot ``phase``.
        pairs = [*operands[1:], operands[0], operands[0]]

        def following(field):
            return functools.reduce(operator.or_, [
                Mux(phase[k], pair[field], 0) for k, pair in enumerate(pairs)])

        a_next = Mux(advance, first[0], following(0))
        b_next = Mux(advance, first[1], following(2))
        a = Signal(16, name=f"serial_a_{lane}")
        b = Signal(16, name=f"serial_b_{lane}")
        m.d.comb += [a.eq(a_next), b.eq(b_next)]
        shared = pipeline.platform_product(m, platform, Const(1), a, b,
                                           f"serial_product_{lane}")
        delay = 1  # the hook's product comes a cycle after the fabric multiplier's
        if shared is None:
            a_reg = pipeline.register(m, Const(1), a, f"serial_a_reg_{lane}")
            b_reg = pipeline.register(m, Const(1), b, f"serial_b_reg_{lane}")
            shared = Signal(32, name=f"serial_product_{lane}")  # the one multiplier
            m.d.comb += shared.eq(a_reg * b_reg)
            delay = 0
        values = []
        for k, (a_k, a_signed, b_k, b_signed) in enumerate(operands):
            if k + delay == interval - 1:
                product = shared  # the window's last phase: straight on
            else:
                product = Signal(32, name=f"serial_product_{lane}_{k}")
                with m.If(phase[k + delay]):
                    m.d.sync += product.eq(shared)
            value = product + Const(0, signed(34))
            if a_signed:
                value = value - Mux(a_k[15], b_k << 16, 0)
            if b_signed:
                value = value - Mux(b_k[15], a_k << 16, 0)
            if a_signed and b_signed:
                value = value + Mux(a_k[15] & b_k[15], 1 << 32, 0)
            values.append(value)
        return values

    def _lane(self, register, acc, p, lane, serial_products=None, dsp=None, epilogue=None,
              logic=None):
        """One lane's pipeline, stage by stage (see :data:`STAGES`); with
        ``serial_products`` (see :meth:`_serial_products`) the partial products come from
        a shared multiplier, and with ``dsp`` (``dsp(a, b, name)``: the platform's
        :data:`tfl2rtl.hw.pipeline.PRODUCT_HOOK`) each partial product it takes comes
        from a DSP block holding both the operand registers ("left_shift") and the
        product register ("partial_products"), from the operands entering them.  With
        ``logic`` (``logic(a, b, name)``: :func:`tfl2rtl.hw.pipeline.logic_product` in
        one stage, from the registered operands) the products by x's high half come from
        LUTs where
        :func:`high_products_in_logic` says so and they are not a negation."""

        def stage(value, name, shape=None):
            return register(value, f"{name}_{lane}", shape)

        # "lookup": the parameters come out of the ROM while the accumulator, wrapped to
        # int32 like the C code's, waits in a register.
        x = stage(acc[:32].as_signed() if self.acc_width > 32 else acc, "x", signed(32))

        # "left_shift"
        entering = (x << p["left"])[:32].as_signed()  # what "scaled" takes next
        scaled = stage(entering, "scaled", signed(32))
        mult = p["multiplier"]
        if not mult.shape().signed and len(mult) < 16:
            # A narrow constant (a lane whose multipliers are all 0): at least the 16
            # bits of a low half, or the partial products come out too narrow.
            mult = mult.as_unsigned() | Const(0, 16)
        m_entering = mult[:16]
        # What the multiplier register takes: signed multipliers sign-extended to 32
        # bits, so that their halves are right.
        if mult.shape().signed and not isinstance(mult, Const):
            mult_entering = (Cat(mult, mult[-1].replicate(32 - len(mult))).as_signed()
                             if len(mult) < 32 else mult)
        if mult.shape().signed:
            mult = (Const(mult.value, signed(32)) if isinstance(mult, Const)
                    else stage(mult, "multiplier", signed(32)))
        else:
            mult_entering = mult
            mult = stage(mult, "multiplier")
        if isinstance(mult, Const):
            mult_entering = mult
        right = stage(p["right"], "right_2")

        # "partial_products": x = x_hi * 2**16 + x_lo, multiplier = m_hi * 2**16 + m_lo,
        # the low halves unsigned; each product fits a 16x16 or 18x18 multiplier.
        x_lo, x_hi = scaled[:16], scaled[16:].as_signed()
        m_lo = mult[:16]
        if serial_products is not None:
            # The same four (or two) products, one at a time from unsigned bits.
            x_top = scaled[16:32]
            operands = [(x_lo, False, m_lo, False), (x_top, True, m_lo, False)]
            if len(mult) > 16:
                m_bits = mult[16:32] if mult.shape().signed else mult[16:].as_unsigned()
                if len(m_bits) < 16:
                    m_bits = m_bits.as_unsigned() | Const(0, 16)
                operands += [(x_lo, False, m_bits, mult.shape().signed),
                             (x_top, True, m_bits, mult.shape().signed)]
            values = serial_products(operands, (entering[:16], m_entering))
            ll = stage(values[0], "ll", unsigned(32))
            hl = stage(values[1], "hl", signed(33))
            if len(mult) > 16:
                lh = stage(values[2], "lh", signed(33))
                hh = stage(values[3], "hh", signed(33))
            else:
                lh = hh = Const(0)
        else:
            # x's bits after the left shift: up to 17, bits 16 to 31 (x_hi) are all x's
            # sign, and a product by it is a negation, not a multiplier (Yosys finds
            # that too).
            bits = x_bits(self.acc_width, self._tables["left"])

            def product(a, b, a_entering, b_entering, name):
                if a is x_hi and bits > 17 and self._high_in_logic and logic is not None:
                    # x's few high bits times the multiplier's half (read as signed),
                    # from their registers, summed in one stage (from the entering
                    # multiplier, a per-channel ROM's output, the sum was kws's critical
                    # path on the ECP5, 14.8 ns).
                    half = b if b.shape().signed else Cat(b, Const(0, 1)).as_signed()
                    return logic(half, scaled[16:bits].as_signed(), f"{name}_{lane}")
                # From a DSP block with both registers when the platform has one, else
                # from the registered operands.
                value = None
                if dsp is not None and not (a is x_hi and bits <= 17):
                    value = dsp(a_entering, b_entering, f"{name}_{lane}")
                return stage(a * b, name) if value is None else value

            x_lo_e, x_hi_e = entering[:16], entering[16:].as_signed()
            m_lo_e = _bits(mult_entering, 0, 16, two_complement=False)
            ll = product(x_lo, m_lo, x_lo_e, m_lo_e, "ll")
            hl = product(x_hi, m_lo, x_hi_e, m_lo_e, "hl")
            if len(mult) > 16:
                m_hi = mult[16:].as_signed() if mult.shape().signed else mult[16:]
                m_hi_e = _bits(mult_entering, 16, len(mult_entering),
                               two_complement=mult.shape().signed)
                lh = product(x_lo, m_hi, x_lo_e, m_hi_e, "lh")
                hh = product(x_hi, m_hi, x_hi_e, m_hi_e, "hh")
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
        # comparisons); only the low out_bits bits of q + output_offset are needed in
        # range.
        # The C code adds the offset in int32, which wraps: q beyond INT32_MAX - offset
        # becomes very negative (clamped to act_min), q below INT32_MIN - offset very
        # positive (act_max).  Comparisons with constants, parallel to the others, or
        # with the channel's own bounds from the epilogue ROM (``epilogue``, see
        # :meth:`_epilogue_bounds`), which never trigger a wrap that cannot happen.
        in_range = lambda offset: (q + offset)[:self.out_bits].as_signed()  # noqa: E731
        if epilogue is not None:
            # "compare": the four comparisons and the sum into registers, then the
            # choice among them in "clamp" (on the iCE40 the comparisons with the
            # epilogue's registers and the choice in one cycle were the jet MLP
            # engine's critical path, 30.4 ns).
            e = epilogue
            low, high = stage(e["act_min"], "act_min"), stage(e["act_max"], "act_max")
            wraps = q > e["wrap_high"]  # q + offset wraps to a very negative int32
            below = stage((q < e["low_bound"]) | wraps, "below")
            above = stage((q > e["high_bound"]) | (q < e["wrap_low"]), "above")
            wraps_low = stage(wraps, "wraps_low")
            value = stage(in_range(e["offset"]), "in_range", signed(self.out_bits))
            clamped = Mux(wraps_low, low, Mux(above, high, Mux(below, low, value)))
            return stage(clamped, "out", signed(self.out_bits))
        return stage(self._constant_clamp(q), "out", signed(self.out_bits))

    def _constant_clamp(self, q):
        """``clamp(q + output_offset)`` with one epilogue for all channels: ``q`` compared
        with the bounds less the offset (constants, no adder before the comparisons),
        and the int32 addition's wrap at either end (see :meth:`_lane`)."""
        offset, act_min, act_max = (int(self._epilogue[name][0, 0])
                                    for name in ("offset", "act_min", "act_max"))
        in_range = (q + offset)[:self.out_bits].as_signed()
        clamped = Mux(q < act_min - offset, act_min,
                      Mux(q > act_max - offset, act_max, in_range))
        if offset > 0:
            clamped = Mux(q > INT32_MAX - offset, act_min, clamped)
        elif offset < 0:
            clamped = Mux(q < INT32_MIN - offset, act_max, clamped)
        return clamped

    def _elaborate_compact(self, platform):
        """The compact form: one beat at a time through :data:`COMPACT_STEPS`, one step a
        cycle, on registers each step reuses (see "Compact" in the class documentation)."""
        m = Module()
        step = Signal(COMPACT_INTERVAL)  # one-hot: the beat in hand's step; 0 when idle
        at = {name: step[k] for k, name in enumerate(COMPACT_STEPS)}
        finishing = at["clamp"] & (~self.o.valid | self.o.ready)
        m.d.comb += self.i.ready.eq((step == 0) | finishing)
        accept = self.i.valid & self.i.ready
        with m.If(accept):
            m.d.sync += step.eq(1)
        with m.Elif(finishing):
            m.d.sync += step.eq(0)
        with m.Elif(~at["clamp"]):  # (a result not yet taken holds the beat in "clamp")
            m.d.sync += step.eq(step << 1)
        with m.If(finishing):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # The parameters are read once, as the beat is taken, and held.  The right shift
        # is the smallest one plus a varying part, so only that part is a shifter.
        right = self._tables["right"]
        least = int(right.min())
        params = group_parameters(m, accept, {**self._tables, "right": right - least},
                                  self.i.payload.group)
        epilogues = ([None] * self.lanes if not self.per_channel_epilogue else
                     self._epilogue_bounds(m, accept, self.i.payload.group,
                                           lambda value, name: value))
        for lane in range(self.lanes):
            p = params[lane]
            out = self._compact_lane(m, platform, at, accept, self.i.payload.acc[lane], p,
                                     least, epilogues[lane], lane)
            with m.If(finishing):
                m.d.sync += self.o.payload[lane].eq(out)
        return m

    def _compact_lane(self, m, platform, at, accept, acc, p, least, epilogue, lane):
        """One lane of the compact form; returns the clamped result of the "clamp" step.

        ``x * M`` for the int32 ``x`` and multiplier ``M``, read as 32 unsigned bits
        ``xu`` and ``mu`` with signs ``sx`` and ``sm``, is ``xu * mu - 2**32 * (sx * mu +
        sm * xu)`` modulo ``2**64``, and ``xu * mu = hh * 2**32 + (lh + hl) * 2**16 +
        ll`` for the four unsigned 16x16 products.  The accumulator holds ``floor((x * M
        + 2**30) / 2**16)`` modulo ``2**48``: ``ll >> 16``, ``2**14`` for the rounding,
        the cross products, ``hh << 16``, and each correction ``-v * 2**16`` as
        ``(~v << 16) + 2**16`` (the ``2**16`` in the first step's constant).  Bits 15 up
        are then the doubling high multiply, ``floor((x * M + 2**30) / 2**31)``."""
        x = Signal(signed(32), name=f"compact_x_{lane}")
        with m.If(accept):  # wrapped to int32, as the C code's int32_t acc
            m.d.sync += x.eq(acc[:32].as_signed() if self.acc_width > 32 else acc)
        with m.If(at["left_shift"]):
            m.d.sync += x.eq((x << p["left"])[:32].as_signed())
        xu = x.as_unsigned()
        # The multiplier as 32 bits (sign-extended when signed); from the ROM, held in a
        # register from the "left_shift" step.
        mu = Signal(32, name=f"compact_m_{lane}")
        if isinstance(p["multiplier"], Const):
            m.d.comb += mu.eq(p["multiplier"])
        else:
            with m.If(at["left_shift"]):
                m.d.sync += mu.eq(p["multiplier"])
        sx, sm = xu[31], mu[31]

        # The operand pairs (x_lo, m_lo), (x_lo, m_hi), (x_hi, m_lo), (x_hi, m_hi) enter
        # the multiplier's registers in steps 1 to 4; each product comes out two steps
        # later (from the hook's product register, or in the fabric from the addend
        # register of :meth:`_compact_registered_sum`, which takes it moved to its place).
        # The operand registers move in steps 1 to 5 only; they and the register after
        # the multiplier have a reset: on the iCE40 Yosys then leaves them in the fabric
        # and the SB_MAC16 in bypass, whose delay the datasheet bound adds to the paths
        # into and out of it.  (Left to pack registers into the cell, Yosys packed one
        # operand's and not the other's, or the product's into the middle of the
        # multiplier: forms the bound can only take as a whole multiplier's delay added
        # to the design's slowest path.)
        low_x = at["operands_ll"] | at["operands_lh"]
        low_m = at["operands_ll"] | at["load"]
        a_next = Mux(low_x, xu[:16], xu[16:])
        b_next = Mux(low_m, mu[:16], mu[16:])
        multiplying = Signal(name=f"compact_multiplying_{lane}")
        m.d.comb += multiplying.eq(at["operands_ll"] | at["operands_lh"] | at["load"]
                                   | at["add_lh"] | at["add_hl"])
        total = Signal(48, name=f"compact_acc_{lane}")
        # "round": the doubling high multiply, saturated (only INT32_MIN * INT32_MIN
        # reaches 2**31), and the nudge of the rounding right shift by ``right = least
        # + p["right"]``: 2**(right - 1) for a result >= 0, one less below 0, none for
        # right = 0 (bit k: right == k + 1, or right > k + 1 below 0).  The overflow is
        # taken into a register as the last sum is written, and so is the sign (on the
        # iCE40 the sign bit's fan-out into the adder's operands was micro_speech's
        # critical path, 38 ns).
        overflow = Signal(name=f"compact_overflow_{lane}")
        extra = p["right"]
        nudges = {sign: Cat(*[
            ((extra > k + 1 - least) if k + 1 - least >= 0 else Const(1)) if sign else
            ((extra == k + 1 - least) if k + 1 - least >= 0 else Const(0))
            for k in range(31)]) for sign in (True, False)}
        saturated = Mux(overflow, INT32_MAX, total[15:47].as_signed())
        first = Cat(Const(0, 14), Const(1, 1), Const(0, 1), (sx + sm)[:2])

        product = pipeline.platform_product(m, platform, multiplying, a_next, b_next,
                                            f"compact_product_{lane}")
        if product is None:
            written = self._compact_registered_sum(m, at, lane, multiplying, a_next, b_next,
                                                   total, saturated, nudges, xu, mu,
                                                   sx, sm)
            with m.If(at["operands_lh"]):
                m.d.sync += total.eq(first)
        else:
            # The product from the hook's register: one adder for every step that adds,
            # its first operand the accumulator, the first step's constant or the
            # saturated high part, its second one of the terms.
            negative = Signal(name=f"compact_negative_{lane}")
            base = Mux(at["load"], first, Mux(at["round"], saturated, total))
            addend = (_term(at["load"], product[16:])
                      | _term(at["add_lh"] | at["add_hl"], product)
                      | _term(at["add_hh"], product << 16)
                      | _term(at["correct_x"] & sx, ~mu << 16)
                      | _term(at["correct_m"] & sm, ~xu << 16)
                      | _term(at["round"], Mux(negative, nudges[True], nudges[False])))
            written = (base + addend)[:48]
            with m.If(at["correct_m"]):
                m.d.sync += negative.eq(written[47])
        adding = (at["load"] | at["add_lh"] | at["add_hl"] | at["add_hh"] | at["correct_x"]
                  | at["correct_m"] | at["round"])
        with m.If(adding):
            m.d.sync += total.eq(written)
        with m.If(at["correct_m"]):
            m.d.sync += overflow.eq(~written[47] & written[46])
        with m.If(at["right_shift"]):  # arithmetic, so a floor
            m.d.sync += total.eq((total[:34].as_signed() >> least) >> extra)

        q = total[:34].as_signed()
        in_range = lambda offset: (q + offset)[:self.out_bits].as_signed()  # noqa: E731
        if epilogue is not None:
            e = epilogue
            wraps = q > e["wrap_high"]
            below = (q < e["low_bound"]) | wraps
            above = (q > e["high_bound"]) | (q < e["wrap_low"])
            return Mux(wraps, e["act_min"], Mux(above, e["act_max"],
                                                Mux(below, e["act_min"], in_range(e["offset"]))))
        return self._constant_clamp(q)

    @staticmethod
    def _compact_registered_sum(m, at, lane, multiplying, a_next, b_next, total, saturated,
                                nudges, xu, mu, sx, sm):
        """The compact lane's sum with its product in the fabric (no platform hook):
        ``total + B``, each operand one LUT from registers, so that nothing but the carry
        chain lies between the accumulator's register and itself (micro_speech's iCE40
        critical path was 34.9 ns: the step register's fan-out through four LUTs into
        the 48-bit carry).  ``B`` is a register loaded a step ahead with the term of the
        step that adds it: the multiplier's output (two edges after its operands, as a
        product register would give it) moved to its place, a sign correction, or the
        nudge for a result >= 0; the nudge below 0 (one less) is a register of its own,
        chosen by the sign taken as the last sum is written.  The first step's constant
        is loaded into ``total`` a step before it adds (:meth:`_compact_lane` does so)."""
        a_reg = pipeline.register(m, multiplying, a_next, f"compact_a_{lane}")
        b_reg = pipeline.register(m, multiplying, b_next, f"compact_b_{lane}")
        product = a_reg * b_reg
        addend = Signal(48, name=f"compact_addend_{lane}")
        m.d.sync += addend.eq(_term(at["operands_lh"], product[16:])  # for "load"
                              | _term(at["load"] | at["add_lh"], product)
                              | _term(at["add_hl"], product << 16)  # for "add_hh"
                              | _term(at["add_hh"] & sx, ~mu << 16)  # for "correct_x"
                              | _term(at["correct_x"] & sm, ~xu << 16)  # for "correct_m"
                              | _term(at["correct_m"], nudges[False]))  # for "round"
        below = Signal(31, name=f"compact_nudge_below_{lane}")
        m.d.sync += below.eq(nudges[True])
        rounds_below = Signal(name=f"compact_rounds_below_{lane}")
        written = (Mux(at["round"], saturated, total)
                   + Mux(rounds_below, below, addend))[:48]
        m.d.sync += rounds_below.eq(at["correct_m"] & written[47])
        return written

    def _epilogue_bounds(self, m, advance, group, register):
        """Per lane, the channel's epilogue from a ROM read on ``advance`` at ``group``
        (the group of the beat entering the "round" stage), then ``register``-ed, so that
        it comes out beside the beat in the "right_shift" stage: ``offset`` (its low
        ``out_bits`` bits), ``act_min``, ``act_max``, the bounds less the offset, and
        ``wrap_high = INT32_MAX - offset`` (``INT32_MAX`` for an offset of 0 or less,
        which no int32 exceeds), ``wrap_low = INT32_MIN - offset`` (``INT32_MIN`` for an
        offset of 0 or more)."""
        bits = self.out_bits
        offset_shape = signed(signed_bits(*(int(f(self._epilogue["offset"]))
                                             for f in (np.min, np.max))))
        stored = {"offset": offset_shape, "act_min": signed(bits), "act_max": signed(bits)}
        row = data.StructLayout({f"{name}{lane}": shape for lane in range(self.lanes)
                                 for name, shape in stored.items()})
        # The ROM holds the channel's offset and bounds only (block RAM is scarce on the
        # iCE40); the rest is derived from its output on the way into the registers.
        m.submodules.epilogue = rom = Memory(shape=row, depth=self.groups, init=[
            {f"{name}{lane}": int(self._epilogue[name][g, lane])
             for lane in range(self.lanes) for name in stored}
            for g in range(self.groups)])
        port = rom.read_port()
        m.d.comb += [port.addr.eq(group), port.en.eq(advance)]
        shapes = {"offset": unsigned(bits), "act_min": signed(bits), "act_max": signed(bits),
                  "low_bound": signed(34), "high_bound": signed(34),
                  "wrap_high": signed(32), "wrap_low": signed(32)}
        lanes = []
        for lane in range(self.lanes):
            offset, low, high = (port.data[f"{name}{lane}"] for name in stored)
            derived = {
                "offset": offset,  # (its low ``bits`` bits)
                "act_min": low, "act_max": high,
                "low_bound": (low - offset), "high_bound": (high - offset),
                "wrap_high": Mux(offset > 0, INT32_MAX - offset, INT32_MAX),
                "wrap_low": Mux(offset < 0, INT32_MIN - offset, INT32_MIN)}
            values = {}
            for name, shape in shapes.items():
                values[name] = Signal(shape, name=f"epilogue_rom_{name}_{lane}")
                m.d.comb += values[name].eq(derived[name])
            lanes.append({name: register(value, f"epilogue_{name}_{lane}")
                          for name, value in values.items()})
        return lanes


class RoundingRequantizer(wiring.Component):
    """``clamp(round(acc * multiplier * 2**(shift - 31)) + output_offset)`` with one
    rounding, halves away from zero: LiteRT's FULLY_CONNECTED of a legacy uint8 model,
    which requantizes in double (``round(double(acc) * scale)``: the golden model's
    ``litert-ref``), where :class:`Requantizer`'s two roundings miss by one near halves.
    With the layer's own q31 ``multiplier`` and ``shift`` the two agree on every
    accumulator the layer can produce when :func:`matches_double_rounding` says so (it
    checks them all).

    ``multiplier``, ``shift``, ``output_offset``, ``act_min`` and ``act_max`` are one
    for all channels (a layer: uint8 weights are per tensor) or one per channel (the
    layers of a sequential engine sharing it, :mod:`tfl2rtl.hw.engine`): the ones that
    differ between neuron groups are read from a ROM by the beat's ``group``.

    Pipeline (one enable, moving whenever the output register is empty or being emptied):
    ``|acc|`` and its sign (and the group's parameters from the ROM); the unsigned 16x16
    partial products of ``|acc| * multiplier``, each in a register (four DSP blocks for
    an accumulator of 17 to 32 bits, two up to 16), and ``2**(30 - shift)``; their sum in
    two halves; the halves' sum;
    ``>> (31 - shift)``, saturated where every larger value clamps the same; the sign,
    ``+ output_offset`` and the clamp into the output register.

    Members
    -------
    i : ``In(stream.Signature(accumulator_layout(acc_width, lanes, channels // lanes)))``
    o : ``Out(stream.Signature(int8_lanes(lanes)))``

    Attributes
    ----------
    latency : int
        6: a beat taken on ``i`` at clock edge ``n`` can leave on ``o`` at edge ``n + 6``.
    throughput, interval : int
        1: a beat every cycle ``o`` is not stalled.
    multipliers : int
        16x16 multipliers: ``lanes`` times two per 16 bits of the accumulator.

    Tested with one multiplier for all channels (four of 31 bits, shifts -12 to 0) and
    with per-channel parameters (three groups of one to two lanes, every field varying),
    20-bit accumulators, under random stalls.
    """

    latency = 6
    throughput = interval = 1

    def __init__(self, requant, *, channels: int, output_offset, act_min, act_max,
                 acc_width: int, lanes: int = 1):
        if lanes < 1 or channels < 1 or channels % lanes:
            raise Tfl2RtlError(
                f"cannot requantize {channels} channels in groups of {lanes} lanes: "
                "the lane count must divide the channel count"
            )
        fields = {"multiplier": requant.multiplier, "shift": requant.shift,
                  "offset": output_offset, "act_min": act_min, "act_max": act_max}
        tables = {}
        for name, values in fields.items():
            values = np.asarray(values, dtype=np.int64).reshape(-1)
            if values.size not in (1, channels):
                raise Tfl2RtlError(f"{values.size} values of {name} for {channels} "
                                   "channels: give one, or one per channel")
            tables[name] = np.broadcast_to(values, (channels,))
        multiplier, shift = tables["multiplier"], tables["shift"]
        for m_value, s_value in set(zip(multiplier.tolist(), shift.tolist(), strict=True)):
            if not 0 <= m_value <= INT32_MAX or not -31 <= s_value <= 30:
                raise Tfl2RtlError(f"multiplier {m_value} and shift {s_value}: the rounding "
                                   "requantizer takes 0 .. 2**31 - 1 and -31 .. 30")
        for low, high in set(zip(tables["act_min"].tolist(), tables["act_max"].tolist(),
                                 strict=True)):
            if not -128 <= low <= high <= 127:
                raise Tfl2RtlError(f"activation range [{low}, {high}] is not an int8 range")
        # 31 - shift, at most acc_width + 32: any right shift beyond the product's width
        # (acc_width + 31 bits) and its rounding term gives 0.
        tables["right"] = np.minimum(31 - tables.pop("shift"), acc_width + 32)
        self.channels, self.lanes, self.groups = channels, lanes, channels // lanes
        self.acc_width = acc_width
        #: Per channel: ``multiplier``, ``right`` (``31 - shift``, at most ``acc_width +
        #: 32``), ``offset``,
        #: ``act_min``, ``act_max``.
        self.parameters = {name: values.copy() for name, values in tables.items()}
        self._tables = {name: values.reshape(self.groups, lanes)
                        for name, values in tables.items()}
        self.multipliers = lanes * self.products_for(acc_width)
        super().__init__({
            "i": In(stream.Signature(accumulator_layout(acc_width, lanes, self.groups))),
            "o": Out(stream.Signature(int8_lanes(lanes))),
        })

    @staticmethod
    def products_for(acc_width: int) -> int:
        """The 16x16 partial products of a lane: ``|acc|`` (``acc_width`` bits) in
        16-bit chunks by the 31-bit multiplier in two."""
        return 2 * -(-acc_width // 16)

    def _parameters(self, m, advance):
        """Per lane, each field of the beat on :attr:`i` one cycle later
        (:func:`group_parameters`)."""
        return group_parameters(m, advance, self._tables, self.i.payload.group)

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        register = partial(pipeline.register, m, advance)
        valid = self.i.valid
        for name in ("1", "2", "3", "3b", "4"):
            valid = register(valid, f"valid_{name}")
        out_valid = register(valid, "out_valid")
        m.d.comb += self.o.valid.eq(out_valid)
        width = self.acc_width + 31  # |acc| * multiplier
        for lane, params in enumerate(self._parameters(m, advance)):
            acc = self.i.payload.acc[lane]
            negative_1 = register(acc < 0, f"negative_1_{lane}")
            magnitude_1 = register(Mux(acc < 0, -acc, acc), f"magnitude_1_{lane}",
                                   unsigned(self.acc_width))
            # Stage 2: the 16x16 partial products of |acc| * multiplier, each in a
            # register of its own (one DSP block each, its output straight into a
            # register: a wide product left to Yosys chains the blocks' adders, a path
            # from one SB_MAC16 through another that the iCE40 bound does not cover).
            multiplier = params["multiplier"]
            products = []
            for i in range(0, self.acc_width, 16):
                for j in range(0, 31, 16):
                    a = magnitude_1[i:min(i + 16, self.acc_width)]
                    b = multiplier[j:min(j + 16, 31)] if not isinstance(
                        multiplier, Const) else Const(multiplier.value >> j & 0xFFFF, 16)
                    products.append((i + j, register(a * b, f"partial_{lane}_{i}_{j}")))
            # Beside them, the rounding term 2**(right - 1), decoded from the parameter.
            half_2 = register((Const(1, 1) << params["right"])[1:width + 2],
                              f"half_2_{lane}", unsigned(width + 1))
            later = {"negative": negative_1}
            later.update({name: params[name]
                          for name in ("right", "offset", "act_min", "act_max")})
            later = {name: register(value, f"{name}_2_{lane}")
                     for name, value in later.items()}
            # Stages 3 and 3b: the partial products and the rounding term summed in two
            # halves, then the halves (one adder a stage: the four in a row from the
            # rounding term were the uint8 MLP engine's critical path, 29.2 ns).
            terms = [value << shift for shift, value in products] + [half_2]
            middle = len(terms) // 2
            halves = [register(sum(part[1:], part[0]), f"sum_3_{lane}_{k}",
                               unsigned(width + 1))
                      for k, part in enumerate((terms[:middle], terms[middle:]))]
            later = {name: register(value, f"{name}_3_{lane}")
                     for name, value in later.items()}
            total_3 = register(halves[0] + halves[1], f"total_3b_{lane}", unsigned(width + 1))
            later = {name: register(value, f"{name}_3b_{lane}")
                     for name, value in later.items()}
            # Stage 4: the shift, saturated to ``limit``: any magnitude from there on
            # clamps the same (so the sign, the offset and the clamp below work on a few
            # bits, not on the product's width: on the iCE40 that carry chain was the
            # uint8 MLP engine's critical path, 47 ns).
            rounded = total_3 >> later["right"]
            bits = self._saturation_bits
            saturated = Mux(rounded[bits:].any(), (1 << bits) - 1, rounded[:bits])
            magnitude_4 = register(saturated, f"magnitude_4_{lane}", unsigned(bits))
            later = {name: register(value, f"{name}_4_{lane}")
                     for name, value in later.items() if name != "right"}
            # The sign, the offset and the clamp into the output register.
            scaled = Mux(later["negative"], -magnitude_4, magnitude_4) + later["offset"]
            clamped = Mux(scaled < later["act_min"], later["act_min"],
                          Mux(scaled > later["act_max"], later["act_max"], scaled))
            with m.If(advance):
                m.d.sync += self.o.payload[lane].eq(clamped)
        return m

    @property
    def _saturation_bits(self) -> int:
        """Bits of the rounded magnitude past which every result clamps the same: its
        saturated value ``2**bits - 1`` is beyond every offset's reach of the int8
        range, ``max |offset| + 129``."""
        return (int(np.abs(self.parameters["offset"]).max()) + 129).bit_length()


#: :class:`Int64Requantizer`'s register stages, in order; each adds one cycle of latency.
INT64_STAGES = (
    "lookup",  # the accumulator registered; per-channel parameters read from the ROM
    "operands",  # the accumulator's 16-bit chunks and the reduced multiplier registered
    "products",  # each chunk times the reduced multiplier (a DSP block's output register)
    "sum",  # the chunk products shifted into place and summed, plus the rounding term
    "shift",  # arithmetic shift right by 15 - shift
    "clamp",  # wrapped to int32, + output_offset, clamped to [act_min, act_max]
)

#: The widest accumulator :class:`Int64Requantizer` takes: TFLite's kernel assumes
#: ``|acc| < 2**47``, so that ``acc * reduced`` fits int64.
INT64_ACC_WIDTH = 48


def int64_chunks(acc_width: int) -> list[tuple[int, int]]:
    """The bit ranges ``(start, stop)`` of an :class:`Int64Requantizer`'s accumulator
    chunks, one product each: 16 bits, the top one signed and up to 18 bits."""
    chunks = [(start, min(start + 16, acc_width))
              for start in range(0, max(acc_width - 2, 1), 16)]
    chunks[-1] = (chunks[-1][0], acc_width)
    return chunks


def reduced_multipliers(multiplier) -> np.ndarray:
    """The 16-bit multipliers of TFLite's int64 ``MultiplyByQuantizedMultiplier``:
    ``(m + 2**15) >> 16``, or ``0x7FFF`` from ``m = 0x7FFF0000`` on (each fits int16)."""
    multiplier = np.asarray(multiplier, dtype=np.int64)
    return np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)


class Int64Requantizer(wiring.Component):
    """``clamp(MultiplyByQuantizedMultiplier(int64 acc, multiplier[c], shift[c]) +
    output_offset)``: the epilogue of a 16x8 layer (int16 activations, int64
    accumulators), bit-exact with TFLite Micro's kernels (and
    :func:`tfl2rtl.fixedpoint.multiply_by_quantized_multiplier_int64`):

    1. the q31 multiplier is reduced to 16 bits, ``reduced = (m + 2**15) >> 16``
       (``0x7FFF`` from ``0x7FFF0000`` on; done once, in the parameter ROM);
    2. ``(acc * reduced + 2**(14 - shift)) >> (15 - shift)``, an arithmetic shift: one
       rounding, halves towards +infinity;
    3. wrapped to int32 (the kernel's cast), ``+ output_offset``, clamped to
       ``[act_min, act_max]``.

    ``acc * reduced`` is built from the accumulator's 16-bit chunks (the top one signed,
    up to 18 bits), each times ``reduced``: one 18x18 DSP block each on the ECP5 (the
    platform's :data:`~tfl2rtl.hw.pipeline.PRODUCT_HOOK`, which holds the operand and
    product registers), two for a 16x8 layer's accumulators of 26 to 32 bits.

    Parameters
    ----------
    requant : :class:`tfl2rtl.ir.Requant`
        Multipliers (any int32) and shifts (``-47 .. 14``: the kernel's rounding term
        ``1 << (14 - shift)`` is undefined beyond), one per channel or one for all.
    channels, lanes, acc_width :
        As :class:`Requantizer`; ``acc_width`` at most :data:`INT64_ACC_WIDTH`.
    output_offset, act_min, act_max : int
        ``[act_min, act_max]`` within the ``out_bits``-bit signed range; the offset
        within int32, ``2**out_bits`` away from its ends.
    out_bits : int
        Width of the signed results: 16 (a 16x8 layer's int16 outputs) or 8.

    Members
    -------
    i : ``In(stream.Signature(accumulator_layout(acc_width, lanes, channels // lanes)))``
    o : ``Out(stream.Signature(signed_lanes(out_bits, lanes)))``

    Attributes
    ----------
    latency : int
        ``len(INT64_STAGES)`` = 6: a beat taken on ``i`` at clock edge ``n`` can leave on
        ``o`` at edge ``n + latency``.
    throughput, interval : int
        1: a beat every cycle ``o`` is not stalled.
    multipliers : int
        Chunk products in all lanes: ``lanes * ceil((acc_width - 2) / 16)``.

    Tested for ``lanes`` 1 and 2, ``acc_width`` 8 to 48, multipliers over all of int32
    (including 0, ``0x7FFF0000`` and its neighbours, ``INT32_MAX`` and ``INT32_MIN``),
    shifts -47 to 14, with and without the DSP hook, under random stalls and
    backpressure.
    """

    latency = len(INT64_STAGES)
    throughput = interval = 1

    def __init__(self, requant, *, channels: int, output_offset: int, act_min: int,
                 act_max: int, acc_width: int, lanes: int = 1, out_bits: int = 16):
        multiplier, shift = _checked_parameters(requant, channels, lanes)
        if shift.min() < -47 or shift.max() > 14:
            raise Tfl2RtlError(
                f"requantization shifts {shift.min()} .. {shift.max()} are outside -47 .. 14, "
                "where TFLite's int64 requantization is defined"
            )
        if out_bits not in (8, 16):
            raise Tfl2RtlError(f"{out_bits}-bit results: the int64 requantizer gives 8 or 16")
        low, high = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
        if not low <= act_min <= act_max <= high:
            raise Tfl2RtlError(
                f"activation range [{act_min}, {act_max}] is not an int{out_bits} range")
        if not 1 <= acc_width <= INT64_ACC_WIDTH:
            raise Tfl2RtlError(f"accumulator width {acc_width} is outside 1 .. "
                               f"{INT64_ACC_WIDTH}, the int64 requantization's range")
        if not INT32_MIN + (1 << out_bits) <= output_offset <= INT32_MAX - (1 << out_bits):
            raise Tfl2RtlError(f"output offset {output_offset} is outside the int32 range "
                               "the requantizer supports")
        self.channels, self.lanes, self.groups = channels, lanes, channels // lanes
        self.acc_width = acc_width
        self.out_bits = out_bits
        self.output_offset, self.act_min, self.act_max = int(output_offset), act_min, act_max
        self._chunks = int64_chunks(acc_width)
        self.multipliers = lanes * len(self._chunks)

        def table(values):
            return np.broadcast_to(values, (channels,)).reshape(self.groups, lanes)

        right = 15 - shift
        self._tables = {
            "reduced": table(reduced_multipliers(multiplier)),
            "right": table(right),
            "rounding": table(np.int64(1) << (right - 1)),
        }
        super().__init__({
            "i": In(stream.Signature(accumulator_layout(acc_width, lanes, self.groups))),
            "o": Out(stream.Signature(signed_lanes(out_bits, lanes))),
        })

    # The ROM of the parameters that vary between groups, as Requantizer's.
    _shape_of = staticmethod(Requantizer._shape_of)
    _parameters = Requantizer._parameters

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        register = partial(pipeline.register, m, advance, reset_less=True)
        valid = self.i.valid
        for name in INT64_STAGES:
            valid = pipeline.register(m, advance, valid, f"valid_{name}")
        m.d.comb += self.o.valid.eq(valid)
        params = self._parameters(m, advance)
        for lane in range(self.lanes):
            out = self._lane(m, platform, advance, register, self.i.payload.acc[lane],
                             params[lane], lane)
            m.d.comb += self.o.payload[lane].eq(out)
        return m

    def _lane(self, m, platform, advance, register, acc, p, lane):
        def stage(value, name, shape=None):
            return register(value, f"{name}_{lane}", shape)

        # "lookup": the accumulator waits while the ROM is read.
        x = stage(acc, "x")
        reduced, right, rounding = p["reduced"], p["right"], p["rounding"]
        if isinstance(reduced, Const):
            reduced = Const(reduced.value, signed(17))
        elif not reduced.shape().signed:  # a ROM field whose values are all positive
            reduced = Cat(reduced, Const(0, 1)).as_signed()

        # "operands" and "products": each chunk times ``reduced``, from a DSP block with
        # both registers where the platform has one, else registered operands and product.
        products = []
        for k, (start, stop) in enumerate(self._chunks):
            top = stop == self.acc_width
            chunk = x[start:stop].as_signed() if top else x[start:stop]
            name = f"chunk_{k}_{lane}"
            value = pipeline.platform_product(m, platform, advance, chunk, reduced, name)
            if value is None:
                chunk_reg = register(chunk, f"{name}_a")
                reduced_reg = register(reduced, f"{name}_b")
                value = register(chunk_reg * reduced_reg, name)
            products.append((start, value))
        right = stage(stage(right, "right_operands"), "right_products")
        rounding = stage(stage(rounding, "rounding_operands"), "rounding_products")

        # "sum": acc * reduced + 2**(right - 1).
        width = max(self.acc_width + 17, int(self._tables["right"].max())) + 1
        total = functools.reduce(operator.add, [
            value.as_signed() << start for start, value in products]) + rounding
        y = stage(total, "y", signed(width))
        right = stage(right, "right_sum")

        # "shift": arithmetic, so the floor of the rounded value.
        q = stage(y >> right, "q", signed(max(width - 1, 33)))

        # "clamp": the kernel casts to int32 (wrapping), then adds the offset in int32.
        offset = self.output_offset
        q32 = q[:32].as_signed()
        in_range = (q32 + offset)[:self.out_bits].as_signed()
        clamped = Mux(q32 < self.act_min - offset, self.act_min,
                      Mux(q32 > self.act_max - offset, self.act_max, in_range))
        if offset > 0:
            clamped = Mux(q32 > INT32_MAX - offset, self.act_min, clamped)
        elif offset < 0:
            clamped = Mux(q32 < INT32_MIN - offset, self.act_max, clamped)
        return stage(clamped, "out", signed(self.out_bits))


@functools.lru_cache(maxsize=64)
def matches_double_rounding(multiplier: int, shift: int, real_scale: float,
                            acc_range: tuple[int, int], *, output_offset: int, act_min: int,
                            act_max: int) -> bool:
    """Whether :class:`RoundingRequantizer` with ``multiplier`` and ``shift`` gives the
    golden model's double requantization (``round(double(acc) * real_scale)``, then the
    offset and the clamp) for every accumulator in ``acc_range``: all of them are
    computed (a few million for a 784-input layer: about a second; remembered)."""
    from ..golden import _double_requantize

    right = 31 - shift
    lo, hi = acc_range
    for start in range(lo, hi + 1, 1 << 22):
        acc = np.arange(start, min(start + (1 << 22), hi + 1), dtype=np.int64)
        want = np.clip(_double_requantize(acc, real_scale) + output_offset, act_min, act_max)
        magnitude = (np.abs(acc) * multiplier + (1 << (right - 1))) >> right
        got = np.clip(np.where(acc < 0, -magnitude, magnitude) + output_offset,
                      act_min, act_max)
        if np.any(got != want):
            return False
    return True
