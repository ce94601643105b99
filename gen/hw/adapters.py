"""Stream plumbing: lane-count conversion, accumulator splitting, register slices, typed
FIFOs and fan-out."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import accumulator_layout

__all__ = ["LaneConverter", "AccumulatorSplitter", "connect_splitting", "SkidBuffer",
           "BeatTrim", "BeatPad", "StreamFIFO", "Broadcast"]


class LaneConverter(wiring.Component):
    """Regroup a stream of ``in_lanes`` elements per beat into ``out_lanes`` per beat.

    Elements keep their order (lane 0 first).  A shift register of
    ``in_lanes + out_lanes + max(in_lanes, out_lanes) - 1`` elements sits between the two
    sides; ``i.ready`` and ``o.valid`` are registers set from its fill level (no
    combinational path between the streams), and that size lets the narrower side move a
    beat every cycle.

    Members
    -------
    i : ``In(stream.Signature(data.ArrayLayout(shape, in_lanes)))``
    o : ``Out(stream.Signature(data.ArrayLayout(shape, out_lanes)))``

    Attributes
    ----------
    throughput
        The slower side runs at one beat per cycle: ``out_lanes`` elements per cycle when
        ``in_lanes >= out_lanes``, else ``in_lanes``.
    """

    def __init__(self, shape, in_lanes: int, out_lanes: int):
        if in_lanes < 1 or out_lanes < 1:
            raise ValueError(f"lane counts must be positive, not {in_lanes} and {out_lanes}")
        self.shape = shape
        self.in_lanes = in_lanes
        self.out_lanes = out_lanes
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(shape, in_lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(shape, out_lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        capacity = self.in_lanes + self.out_lanes + max(self.in_lanes, self.out_lanes) - 1
        buffer = Signal(data.ArrayLayout(self.shape, capacity), reset_less=True)
        # The fill level, one-hot (bit ``c`` set when ``c`` elements are held), and the
        # two handshake outputs, registered from the next level: no adder or comparison
        # lies between a handshake and the buffer's enables (on the ECP5 the comparison
        # and the route to a wide converter's enables were ad01's critical path).
        level = Signal(capacity + 1, init=1)
        valid = Signal()
        ready = Signal(init=1)
        m.d.comb += [self.o.valid.eq(valid), self.i.ready.eq(ready)]
        for lane in range(self.out_lanes):
            m.d.comb += self.o.payload[lane].eq(buffer[lane])

        take_out = self.o.valid & self.o.ready
        take_in = self.i.valid & self.i.ready
        # The level after this cycle's output beat, and after its input beat too.
        kept = Mux(take_out, level.shift_right(self.out_lanes), level)
        following = Mux(take_in, kept.shift_left(self.in_lanes)[:capacity + 1], kept)
        for slot in range(capacity):
            # Shift out the sent beat, then append the received one after what is kept.
            if slot + self.out_lanes < capacity:
                with m.If(take_out):
                    m.d.sync += buffer[slot].eq(buffer[slot + self.out_lanes])
            for lane in range(min(slot + 1, self.in_lanes)):
                with m.If(take_in & kept[slot - lane]):
                    m.d.sync += buffer[slot].eq(self.i.payload[lane])
        m.d.sync += [
            level.eq(following),
            valid.eq(following[self.out_lanes:].any()),
            ready.eq(following[:capacity - self.in_lanes + 1].any()),
        ]
        return m


class AccumulatorSplitter(wiring.Component):
    """Split each beat of ``in_lanes`` accumulators into ``in_lanes / out_lanes`` beats.

    A beat of group ``g`` becomes the beats of groups ``g * ratio + k`` (``ratio =
    in_lanes / out_lanes``, ``k = 0 .. ratio - 1``), so ``acc[lane]`` stays channel
    ``group * lanes + lane`` on both sides.  The incoming beat is copied into a holding
    register in one cycle, so the producer is free again while its parts go out, one per
    cycle.

    Members
    -------
    i : ``In(stream.Signature(accumulator_layout(acc_width, in_lanes, groups)))``
    o : ``Out(stream.Signature(accumulator_layout(acc_width, out_lanes,
        groups * in_lanes // out_lanes)))``

    Attributes
    ----------
    ratio : int
        Output beats per input beat; a new input beat is taken at most every ``ratio``
        cycles.
    """

    def __init__(self, acc_width: int, in_lanes: int, out_lanes: int, groups: int):
        if out_lanes < 1 or in_lanes % out_lanes:
            raise ValueError(f"{out_lanes} output lanes do not divide {in_lanes} input lanes")
        self.ratio = in_lanes // out_lanes
        self.out_lanes = out_lanes
        super().__init__({
            "i": In(stream.Signature(accumulator_layout(acc_width, in_lanes, groups))),
            "o": Out(stream.Signature(
                accumulator_layout(acc_width, out_lanes, groups * self.ratio))),
        })

    def elaborate(self, platform):
        m = Module()
        held = Signal.like(self.i.payload, reset_less=True)
        busy = Signal()
        part = Signal(range(self.ratio))
        last = part == self.ratio - 1

        m.d.comb += [
            self.o.valid.eq(busy),
            self.o.payload.group.eq(held.group * self.ratio + part),
            self.i.ready.eq(~busy | (self.o.ready & last)),
        ]
        with m.Switch(part):
            for k in range(self.ratio):
                with m.Case(k):
                    for lane in range(self.out_lanes):
                        m.d.comb += self.o.payload.acc[lane].eq(
                            held.acc[k * self.out_lanes + lane])

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(self.i.payload), busy.eq(1), part.eq(0)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += part.eq(part + 1)
            with m.If(last):
                m.d.sync += busy.eq(0)
        return m


class SkidBuffer(wiring.Component):
    """A register slice: the beats of ``i`` on ``o`` one cycle later, with ``i.ready`` a
    register, so that no combinational path runs from ``o.ready`` back to ``i.ready``
    (where a stalling pipeline's enable would otherwise reach through to the next one's
    and fan out to both).  A second register catches the beat that arrives in the cycle
    ``o`` stalls.

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``

    Attributes
    ----------
    latency : int
        1: a beat taken on ``i`` at clock edge ``n`` is offered on ``o`` from edge ``n``
        on (and can leave at edge ``n + 1``) when ``o`` is not stalled.
    throughput : int
        1 beat per cycle when ``o`` is not stalled.

    Tested with random stalls on ``i`` and backpressure on ``o``.
    """

    latency = 1
    throughput = 1

    def __init__(self, shape):
        self.shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        # (The payload registers have no reset: only the valid bits need one, and on the
        # ECP5 the reset net into a wide register's LSR inputs was kws's critical path.)
        payload = Signal.like(self.i.payload, reset_less=True)
        spare = Signal.like(self.i.payload, reset_less=True)
        spare_valid = Signal()
        m.d.comb += [self.i.ready.eq(~spare_valid), self.o.payload.eq(payload)]
        with m.If(self.o.ready | ~self.o.valid):  # the output register takes a beat
            with m.If(spare_valid):
                m.d.sync += [payload.eq(spare), self.o.valid.eq(1), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~spare_valid):  # stalled: the beat waits beside it
            m.d.sync += spare_valid.eq(1)
        # The spare register takes every beat offered while it is free (its contents
        # count only once spare_valid is set), so its enable does not wait for o.ready
        # (on the ECP5 the enable of a matrix-vector unit through its input skid
        # buffer's 207 spare flip-flops was kws's critical path, 15.1 ns of routing).
        with m.If(~spare_valid):
            m.d.sync += spare.eq(self.i.payload)
        return m


def connect_splitting(m: Module, source, splitter: AccumulatorSplitter | None, sink) -> None:
    """Connect the accumulator stream ``source`` to ``sink`` (a requantizer's input)
    through ``splitter`` when there is one (``m``'s submodule ``splitter``), then a
    :class:`SkidBuffer` (``m``'s submodule ``skid``, so that the requantizer's stalls do
    not reach into the accumulating unit or the splitter combinationally).  The skid
    buffer sits after the splitter, where a beat is ``ratio`` times narrower (on the
    iCE40 the two registers of a depthwise layer's 8 accumulators cost 338 flip-flops).
    Adds ``SkidBuffer.latency`` (plus one with a splitter) to the path."""
    if splitter is not None:
        m.submodules.splitter = splitter
        wiring.connect(m, source, splitter.i)
        source = splitter.o
    m.submodules.skid = skid = SkidBuffer(source.payload.shape())
    wiring.connect(m, source, skid.i)
    wiring.connect(m, skid.o, sink)


class _Periodic(wiring.Component):
    """A stream of ``shape`` beats counted in periods of ``period``, of which the first
    ``keep`` are the input's (the base of :class:`BeatTrim` and :class:`BeatPad`).

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, shape, keep: int, period: int):
        if not 1 <= keep <= period:
            raise ValueError(f"cannot keep {keep} beats of every {period}")
        self.shape = shape
        self.keep = keep
        self.period = period
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    #: The member whose transfers move the period on.
    _counted = "i"

    def elaborate(self, platform):
        m = Module()
        position = Signal(range(self.period))
        self._connect(m, position < self.keep)
        counted = getattr(self, self._counted)
        with m.If(counted.valid & counted.ready):
            m.d.sync += position.eq(Mux(position == self.period - 1, 0, position + 1))
        return m

    def _connect(self, m: Module, kept) -> None:
        """``i`` to ``o``, ``kept`` high for the first ``keep`` beats of a period."""
        raise NotImplementedError


class BeatTrim(_Periodic):
    """Of every ``period`` beats, pass the first ``keep`` and drop the rest (a vector's
    padding: a sequential engine's last layer computes ``period`` outputs of which the
    model has ``keep``).  Combinational: no register, no latency; a dropped beat is
    taken at once.  Members: as :class:`_Periodic`'s."""

    def _connect(self, m, kept):
        m.d.comb += [
            self.o.payload.eq(self.i.payload),
            self.o.valid.eq(self.i.valid & kept),
            self.i.ready.eq(self.o.ready | ~kept),
        ]


class BeatPad(_Periodic):
    """After every ``keep`` beats, ``period - keep`` beats of zero (a tensor's channels
    padded to the folding: a sequential engine's input pixels, whose padding channels
    meet zero weights).  Combinational: no register, no latency; a padding beat is given
    without taking one.  Members: as :class:`_Periodic`'s."""

    _counted = "o"

    def _connect(self, m, kept):
        m.d.comb += [
            self.o.payload.eq(Mux(kept, self.i.payload, 0)),
            self.o.valid.eq(self.i.valid | ~kept),
            self.i.ready.eq(self.o.ready & kept),
        ]


class StreamFIFO(wiring.Component):
    """A first-in first-out queue of ``depth`` payloads of any shape
    (:class:`amaranth.lib.fifo.SyncFIFOBuffered` with typed streams).

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, shape, depth: int):
        self.shape = shape
        self.depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self.shape).width
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=width, depth=self.depth)
        m.d.comb += [
            queue.w_data.eq(self.i.payload),
            queue.w_en.eq(self.i.valid),
            self.i.ready.eq(queue.w_rdy),
            self.o.payload.eq(queue.r_data),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
        ]
        return m


class Broadcast(wiring.Component):
    """One stream to ``count`` consumers (a tensor read by several layers): every beat
    goes to every output.

    Each output has an "already delivered" flag: an output offers the input's beat until
    it has taken it, independently of the others, and the input beat is consumed in the
    cycle the last output that still lacks it takes it.  An output's ``valid`` depends on
    the input's ``valid`` and its own flag only, never on any ``ready``; the input's
    ``ready`` is combinational in the outputs' ``ready`` (no register in between, so no
    added latency).  While one consumer stalls, the others can take the current beat but
    not the next one.

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape)).array(count)``
        The outputs ``o[0]`` .. ``o[count - 1]``, each carrying the whole input stream.

    Attributes
    ----------
    latency : int
        0: a beat offered on ``i`` is offered on every output in the same cycle.
    throughput : int
        Beats per cycle: 1 while every output takes its beat when offered.

    Tested with 1 to 3 outputs under independent random backpressure on each.
    """

    def __init__(self, shape, count: int):
        if count < 1:
            raise ValueError(f"a broadcast needs at least one output, not {count}")
        self.shape = shape
        self.count = count
        self.latency = 0
        self.throughput = 1
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)).array(count),
        })

    def elaborate(self, platform):
        m = Module()
        done = Signal(self.count)  # output k has taken the current input beat
        have = []  # output k has it after this cycle
        for k, port in enumerate(self.o):
            m.d.comb += [
                port.valid.eq(self.i.valid & ~done[k]),
                port.payload.eq(self.i.payload),
            ]
            have.append(done[k] | port.ready)
        m.d.comb += self.i.ready.eq(Cat(*have).all())
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += done.eq(0)
        with m.Else():
            for k, port in enumerate(self.o):
                with m.If(port.valid & port.ready):
                    m.d.sync += done[k].eq(1)
        return m
