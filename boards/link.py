"""The device side of the host link (:mod:`tfl2rtl.boards.protocol`) and the
board-independent top level that puts it in front of an accelerator.

:class:`HostLink` parses request frames from a byte stream, streams an :data:`INFER`
payload into the accelerator while it arrives, and sends the reply (the accelerator's
output, the identity record from a ROM, or an error) back as bytes.
:class:`BoardTop` joins it to a UART and to any accelerator component with the
AXI4-Stream ports of :class:`tfl2rtl.hw.network.DataflowNetwork` (``s_axis_*``,
``m_axis_*``, ``8 * lanes`` bits of data, or ``16 * lanes`` for int16 tensors, which
the link carries as two bytes an element, little endian).
"""


import math

from amaranth.hdl import Cat, Const, DomainRenamer, Module, Mux, ResetInserter, Signal
from amaranth.lib import cdc, data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.adapters import SkidBuffer
from tfl2rtl.hw.engine import FLASH_PORTS
from tfl2rtl.hw.weights import LOAD_LAYOUT

from . import protocol
from .protocol import ErrorCode, Identity
from .uart import UARTReceiver, UARTTransmitter

__all__ = ["HostLink", "BoardTop", "attach_accelerator", "crc16_step", "UART_FIFO_DEPTH"]

#: Bytes each asynchronous FIFO between a UART on its own clock and the link holds
#: (:class:`BoardTop` with ``uart_domain``).
UART_FIFO_DEPTH = 4


def _crc16_columns():
    """For each bit of the next CRC, the bits of ``Cat(crc, byte)`` it is the xor of
    (the update is linear over GF(2): found by updating each unit vector)."""
    from .protocol import crc16

    def step(crc, byte):  # one byte of CRC-16/CCITT-FALSE without the initial value
        return crc16(bytes([byte]), crc) ^ crc16(bytes([0]), 0)

    columns = [step(1 << k, 0) for k in range(16)] + [step(0, 1 << k) for k in range(8)]
    return [[k for k, column in enumerate(columns) if column >> bit & 1]
            for bit in range(16)]


_CRC16_TAPS = _crc16_columns()


def crc16_step(crc, byte):
    """CRC-16/CCITT-FALSE after one more ``byte`` following ``crc``, as an expression:
    each bit an xor of a few bits of both (:func:`tfl2rtl.boards.protocol.crc16` in
    hardware)."""
    bits = Cat(crc, byte)
    return Cat(*(Cat(*(bits[k] for k in taps)).xor() for taps in _CRC16_TAPS))


def _crc_matches(computed, received):
    """The frame check, a byte at a time: a byte of the CRC computed over a request
    against the one it carried."""
    return computed == received


def _beat_layout(lanes: int) -> data.StructLayout:
    return data.StructLayout({"data": 8 * lanes, "last": 1})


class HostLink(wiring.Component):
    """Request frames in on ``rx`` (bytes), replies out on ``tx`` (bytes); the
    accelerator behind ``to_accel`` and ``from_accel``.

    An :data:`~tfl2rtl.boards.protocol.INFER` frame's payload goes into a
    ``fifo_depth``-byte FIFO as it arrives and from there, ``lanes`` bytes per beat,
    into ``to_accel`` (``last`` on the vector's last beat), so the accelerator starts
    while the input is still coming in.  After the frame's CRC the reply header goes out
    and then the accelerator's output, byte by byte as the UART takes it (``from_accel``
    is held back meanwhile).  When anything was wrong with the frame (see
    :class:`~tfl2rtl.boards.protocol.ErrorCode`) the output is taken and dropped, and an
    error reply follows.  A payload byte that finds the FIFO full is lost (error
    ``OVERRUN``), and a frame without a byte for ``timeout_cycles`` ends (error
    ``TRUNCATED``: the cycles counted are those in which ``tick`` is high, every cycle
    unless it is driven); in both cases zero bytes make up the missing input, so the
    accelerator always sees whole vectors and the link keeps working.

    When the identity lists loadable weight memories (:attr:`Identity.memories`), a
    :data:`~tfl2rtl.boards.protocol.LOAD` frame's weight bytes go out on ``load`` as they
    arrive, and an ``INFER`` before every memory is full (``loaded`` low) is answered
    with ``NOT_LOADED``.  The bytes are written before the frame's CRC is checked, so a
    LOAD frame that then fails (a bad checksum, or cut short) raises ``invalidate`` for
    one cycle, which resets the accelerator (:func:`attach_accelerator`): its memories
    count as empty, and INFER gets ``NOT_LOADED`` until the host has loaded them all
    again.  Not one inference runs on weights from a frame that failed its check.

    A reply's CRC continues from the CRC of the request it answers (as the device
    received it), not from 0xFFFF: see :mod:`tfl2rtl.boards.protocol`.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Always ready.
    tx : ``Out(stream.Signature(8))``
    to_accel : ``Out(stream.Signature(StructLayout({"data": 8 * lanes, "last": 1})))``
    from_accel : ``In(stream.Signature(8 * lanes))``
    busy : ``Out(1)``
        High from a frame's sync byte to the end of its reply.
    tick : ``In(1)``, high unless driven
        The cycles the frame timeout counts (:class:`BoardTop` with its UART on a clock
        of its own drives it with a pulse every :attr:`BoardTop.tick_cycles` cycles of
        that clock: a bit time, rounded up).
    load : ``Out(stream.Signature(LOAD_LAYOUT))``, with loadable memories
        Weight bytes for the accelerator's loadable memories (its ``ready`` is ignored:
        they take a byte every cycle).
    loaded : ``In(1)``, with loadable memories
        The accelerator's memories are all full.
    invalidate : ``Out(1)``, with loadable memories
        High for one cycle after a LOAD frame that failed its checks.
    """

    def __init__(self, identity: Identity, *, timeout_cycles: int, fifo_depth: int = 16):
        self.identity = identity
        self.record = identity.pack()
        # The link moves bytes: an int16 element is two, little endian, so a beat of
        # ``identity.lanes`` elements is twice as many bytes.
        element = identity.input.wire_dtype.itemsize
        if identity.output.wire_dtype.itemsize != element:
            raise Tfl2RtlError("the input and output elements differ in width: "
                               f"{identity.input.dtype} and {identity.output.dtype}")
        self.lanes = identity.lanes * element
        self.in_size = identity.input.nbytes
        self.out_size = identity.output.nbytes
        for name, size in (("input", self.in_size), ("output", self.out_size)):
            if size % self.lanes or size > protocol.MAX_PAYLOAD:
                raise Tfl2RtlError(
                    f"the {name} has {size} bytes: the link needs a multiple of the "
                    f"{self.lanes} bytes of a beat, at most {protocol.MAX_PAYLOAD}")
        if timeout_cycles < 1:
            raise Tfl2RtlError(f"timeout of {timeout_cycles} cycles")
        self.timeout_cycles = timeout_cycles
        self.fifo_depth = fifo_depth
        self.loadable = bool(identity.memories)
        members = {
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "to_accel": Out(stream.Signature(_beat_layout(self.lanes))),
            "from_accel": In(stream.Signature(8 * self.lanes)),
            "busy": Out(1),
            "tick": In(1, init=1),
        }
        if self.loadable:
            members.update(load=Out(stream.Signature(LOAD_LAYOUT)), loaded=In(1),
                           invalidate=Out(1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        lanes, in_size, out_beats = self.lanes, self.in_size, self.out_size // self.lanes

        # --- the input side: FIFO, then bytes packed into beats ---------------------
        m.submodules.fifo = queue = fifo.SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        feeding = Signal()  # an INFER vector is under way into the accelerator
        payload_done = Signal()  # no more bytes will come: pad with zeros
        fed = Signal(range(in_size + 1))
        lane = Signal(range(lanes))
        beat = Signal(8 * lanes)
        beat_valid = Signal()
        m.d.comb += [
            self.to_accel.valid.eq(beat_valid),
            self.to_accel.payload.data.eq(beat),
            self.to_accel.payload.last.eq(fed == in_size),
        ]
        with m.If(self.to_accel.valid & self.to_accel.ready):
            m.d.sync += beat_valid.eq(0)
        take = Signal()
        m.d.comb += [
            take.eq(feeding & (fed != in_size) & ~beat_valid & (queue.r_rdy | payload_done)),
            queue.r_en.eq(take & queue.r_rdy),
        ]
        with m.If(take):
            byte = Mux(queue.r_rdy, queue.r_data, 0)
            m.d.sync += [beat.eq(Cat(beat[8:], byte)), fed.eq(fed + 1)]
            with m.If(lane == lanes - 1):
                m.d.sync += [lane.eq(0), beat_valid.eq(1)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
        with m.If(feeding & (fed == in_size) & ~beat_valid):
            m.d.sync += feeding.eq(0)

        # --- the frame parser and responder -----------------------------------------
        command = Signal(8)
        length_low = Signal(8)  # the request length's first byte
        length_high = Signal(8)  # and its second
        # The request's command and length compared with what the link takes.
        command_is = Signal(data.StructLayout({"infer": 1, "identify": 1, "load": 1}))
        length_is = Signal(data.StructLayout({"infer": 1, "load": 1, "empty": 1}))
        # Bytes counted: of the request's payload (``rx_count``), of the reply's
        # (``tx_count``) and of the output beats drained after a failed INFER
        # (``drained``): each with few conditions on its enable (one counter for all
        # three was the iCE40's critical path, its enable gathering every state's), and
        # each as narrow as its use: ``rx_count`` tells a LOAD frame's 3 header bytes
        # and its first data byte from the rest (4), ``tx_count`` addresses the
        # identity record (and wraps, unused, in an output reply).
        rx_count = Signal(range(5))
        tx_count = Signal(range(len(self.record) + 1))
        drained = Signal(range(max(out_beats, 2)))
        drain_last = Signal()  # the next beat drained is the last (registered beside it)
        crc = Signal(16, init=0xFFFF)
        # Whether the request's CRC's low byte matched, registered when it came (both
        # bytes compared at once after the high one, through the code into ``final``,
        # were hello_world's critical path on the iCE40 at 42 MHz, 23.8 ns).
        low_ok = Signal()
        code = Signal(8)  # ErrorCode, 0 for none
        # Whether ``code`` holds an error, a register set with it (on the iCE40 the
        # code's comparison with 0 through the request's checks into the code was
        # hello_world's critical path at 40.5 MHz, 25.8 ns).
        coded = Signal()
        infer = Signal()  # this frame's payload goes to the accelerator
        loading = Signal()  # this frame's payload goes to the weight memories
        load_memory = Signal(8)
        load_row = Signal(16)
        reply_command = Signal(8)
        reply_length = Signal(16)
        kind = Signal(2)  # the reply payload: 0 error bytes, 1 identity, 2 the output
        empty = Signal()  # the reply has no payload
        # Payload bytes left in the request and in the reply, counted down, and whether
        # one is left (``last_in``, ``last_out``), registered beside them so that no
        # comparison of the counts lies before the state machine (on the iCE40 the
        # request's count through its comparison into the next state was a critical
        # path, 27.3 ns).
        left_in = Signal(16)
        left_out = Signal(16)
        last_in = Signal()
        last_out = Signal()
        quiet = Signal(range(self.timeout_cycles))
        position = Signal(range(lanes))  # the output byte's lane in its beat
        beat = Signal.like(self.from_accel.payload)  # the output beat being sent
        beat_held = Signal()

        m.submodules.rom = rom = Memory(shape=8, depth=len(self.record),
                                        init=list(self.record))
        # The identity byte at ``tx_count``, read a cycle old: the next byte is handed
        # over only once the selection has settled (below), by when the read has caught
        # up with ``tx_count``.
        here = rom.read_port()

        byte = self.rx.payload
        got = self.rx.valid  # rx is always ready
        m.d.comb += self.rx.ready.eq(1)

        def receive(next_state):
            with m.If(got):
                m.d.sync += crc.eq(crc16_step(crc, byte))
                m.next = next_state

        # A request ends in three steps: its last byte (or its timeout) registers the
        # final code (on the iCE40 the CRC comparison of the last byte through the
        # choice of reply into the reply's registers was the critical path, 24.9 ns);
        # "finish" registers whether that code is none (``final_ok``); and "decide"
        # chooses the reply from single bits (the code's comparison through that choice
        # into the reply registers' enables was the jet MLP engine's, 29.9 ns, eight
        # LUTs).
        final = Signal(8)
        final_ok = Signal()

        def end_request(final_code):
            m.d.sync += final.eq(final_code)
            m.next = "finish"

        # The reply is sent by a state machine of its own (below): the request's, when
        # its frame is over, fills in the reply's command, length and kind and raises
        # ``reply_start`` for a cycle, and waits in "reply" until the other raises
        # ``reply_done`` (one state machine for both was the iCE40's critical path: its
        # state register's enable gathered every state's conditions, nine LUTs, 26 ns).
        reply_start = Signal()
        reply_done = Signal()
        m.d.sync += [reply_start.eq(0), reply_done.eq(0)]

        def start_reply(command, length, reply_kind):
            m.d.sync += [reply_command.eq(command), reply_length.eq(length),
                         kind.eq(reply_kind), reply_start.eq(1)]
            m.next = "reply"

        def finish_request(final_code, ok):
            """After the request's last byte (or its timeout) and ``ok`` (its
            ``final_code`` is none) registered: reply or drain first."""
            m.d.sync += [code.eq(final_code), coded.eq(~ok), payload_done.eq(1), drained.eq(0),
                         drain_last.eq(out_beats == 1)]
            if self.loadable:  # weights from a frame that failed its check: all void
                m.d.comb += self.invalidate.eq(loading & ~ok)
            with m.If(infer & ok):
                start_reply(protocol.INFER | protocol.REPLY, self.out_size, 2)
            with m.Elif(infer):
                m.next = "drain"
            with m.Elif(ok & loading):
                start_reply(protocol.LOAD | protocol.REPLY, 0, 1)
            with m.Elif(ok):
                start_reply(protocol.IDENTIFY | protocol.REPLY, len(self.record), 1)
            with m.Else():
                start_reply(protocol.ERROR, 2, 0)

        # Frames that stop arriving end after timeout_cycles without a byte.  Whether the
        # count has run out is registered beside it (``expired``), so that no comparison
        # of the count lies before the state machine.
        in_request = Signal()
        expired = Signal()
        with m.If(~in_request | got):
            m.d.sync += [quiet.eq(0), expired.eq(0)]
        with m.Elif(~expired & self.tick):
            m.d.sync += [quiet.eq(quiet + 1), expired.eq(quiet == self.timeout_cycles - 1)]
        timed_out = in_request & ~got & expired

        def request_state():
            """A state that receives part of a request (and gives up on a timeout)."""
            m.d.comb += in_request.eq(1)
            with m.If(timed_out):
                end_request(Const(ErrorCode.TRUNCATED, 8))

        # The reply's bytes go out through a register (``out_byte``, offered while
        # ``out_pending``): the state machine hands each byte over when the register is
        # free, and the CRC takes a checked byte from the register when the UART takes
        # it, so no path runs from the byte's selection through the CRC (on the iCE40,
        # count -> reply byte -> CRC was the critical path, 25.5 ns).  The UART takes a
        # byte only after the previous one's stop bit, so the byte is always waiting
        # there in time and the line stays as busy as before.  A byte is handed over
        # only to a free register, so when a CRC byte is, every byte before it has
        # been sent and folded in.
        #
        # The byte a state would hand over (``choice``, a multiplexer of every reply
        # byte: the identity ROM, the output lanes, the code, the length and CRC bytes)
        # is registered (``chosen``) before it goes into ``out_byte``, and so is the
        # decision to hand it over (``handed``, from the state's ``want`` a cycle
        # before): a byte is handed over only once ``chosen`` has settled, two cycles
        # after anything it depends on changed (a hand-over, which moves the state and
        # ``tx_count``, whose ROM read is a cycle late; a byte sent, which moves the
        # CRC; an output beat taken; the reply's start), and since nothing changed in
        # the cycle before, ``want`` still holds.  On the iCE40 the ROM's address
        # through that multiplexer into ``out_byte`` was the critical path at 40 MHz
        # (26.3 ns), then the state's choice of ``want`` through the hand-over into the
        # reply's counters (24 ns).  The UART takes a byte every ten bit times (40 cycles
        # or more), so the wait costs nothing.
        out_byte = Signal(8)
        out_pending = Signal()
        out_checked = Signal()
        choice = Signal(8)
        chosen = Signal(8)
        want = Signal()  # the state would hand ``choice`` over now
        changed = Signal()  # something ``choice`` or ``want`` depends on changes at this edge
        changed_before = Signal()  # ``changed`` a cycle ago
        sent = self.tx.valid & self.tx.ready
        handed = Signal()  # the state machine hands ``chosen`` over at this edge
        m.d.comb += [self.tx.payload.eq(out_byte), self.tx.valid.eq(out_pending),
                     here.addr.eq(tx_count)]
        # A hand-over, a byte sent, and below: the reply's start, a beat taken.
        m.d.comb += changed.eq(handed | sent)
        m.d.sync += [chosen.eq(choice), changed_before.eq(changed),
                     handed.eq(want & ~changed & ~changed_before)]
        with m.If(sent):
            m.d.sync += out_pending.eq(0)
            with m.If(out_checked):
                m.d.sync += crc.eq(crc16_step(crc, out_byte))

        def send(value, next_state, checked=True, ready=None):
            """Hand ``value`` over (registered in ``chosen``, once settled) when the
            output register is free (and ``ready``)."""
            m.d.comb += [choice.eq(value),
                         want.eq(~out_pending if ready is None else ~out_pending & ready)]
            with m.If(handed):
                m.d.sync += [out_byte.eq(chosen), out_pending.eq(1),
                             out_checked.eq(checked)]
                m.next = next_state

        # The accelerator's output is taken while the reply sends its payload lane by
        # lane (``payload_beats``: in "send_payload" with ``kind`` 2, a register set and
        # cleared with those state changes) and no beat is held, or while a request's
        # output is drained: ready is one gate after registers and the request's state
        # (decided in the reply's state machine, the path from its state through the
        # hold into the output slice's enables was hello_world's critical path on the
        # iCE40 at 39 MHz, 22.2 ns).
        payload_beats = Signal()
        m.d.comb += self.from_accel.ready.eq(payload_beats & ~beat_held)

        with m.FSM() as fsm:
            with m.State("idle"):
                # The request's registers are cleared in every idle cycle, not on the
                # sync byte (its comparison into their enables was hello_world's
                # critical path on the iCE40, 24.6 ns): the last request's reply is sent
                # and its input fed by now.
                m.d.sync += [crc.eq(0xFFFF), code.eq(0), coded.eq(0), infer.eq(0), loading.eq(0),
                             payload_done.eq(0)]
                with m.If(got & (byte == protocol.SYNC_REQUEST)):
                    m.next = "command"
            with m.State("command"):
                request_state()
                with m.If(got):
                    m.d.sync += command.eq(byte)
                receive("length_low")
            with m.State("length_low"):
                request_state()
                with m.If(got):
                    m.d.sync += length_low.eq(byte)
                receive("length_high")
            with m.State("length_high"):
                # The request's length and command compared with what the link takes,
                # into registers; decided from those a cycle later, in "length_check"
                # (on the iCE40 the received byte through the comparisons into the error
                # code's enable was the jet MLP engine's critical path, 29.9 ns; the next
                # byte is at least a cycle away).
                request_state()
                full_length = Cat(length_low, byte)
                with m.If(got):
                    m.d.sync += [
                        length_high.eq(byte),
                        length_is.infer.eq(full_length == in_size),
                        length_is.load.eq(full_length >= 4),
                        length_is.empty.eq(full_length == 0),
                        command_is.infer.eq(command == protocol.INFER),
                        command_is.identify.eq(command == protocol.IDENTIFY),
                        command_is.load.eq(Const(int(self.loadable))
                                           & (command == protocol.LOAD)),
                    ]
                receive("length_check")
            with m.State("length_check"):
                request_state()
                full_length = Cat(length_low, length_high)
                m.d.sync += [rx_count.eq(0), left_in.eq(full_length),
                             last_in.eq(full_length == 1)]
                with m.If(command_is.infer & length_is.infer):
                    m.d.sync += [infer.eq(1), feeding.eq(1), fed.eq(0), lane.eq(0)]
                    if self.loadable:
                        with m.If(~self.loaded):
                            m.d.sync += [code.eq(ErrorCode.NOT_LOADED), coded.eq(1)]
                with m.Elif(command_is.load & length_is.load):
                    m.d.sync += loading.eq(1)
                with m.Elif(~command_is.infer & ~command_is.identify & ~command_is.load):
                    m.d.sync += [code.eq(ErrorCode.UNKNOWN_COMMAND), coded.eq(1)]
                with m.Elif(command_is.identify & length_is.empty):
                    pass
                with m.Else():
                    m.d.sync += [code.eq(ErrorCode.WRONG_LENGTH), coded.eq(1)]
                with m.If(~timed_out):
                    with m.If(length_is.empty):
                        m.next = "crc_low"
                    with m.Else():
                        m.next = "payload"
            with m.State("payload"):
                request_state()
                with m.If(got):
                    m.d.sync += rx_count.eq(Mux(rx_count == 4, 4, rx_count + 1))
                    with m.If(infer):
                        m.d.comb += [queue.w_data.eq(byte), queue.w_en.eq(1)]
                        with m.If(~queue.w_rdy & ~coded):
                            m.d.sync += [code.eq(ErrorCode.OVERRUN), coded.eq(1)]
                    if self.loadable:
                        with m.If(loading):
                            with m.Switch(rx_count):
                                with m.Case(0):
                                    m.d.sync += load_memory.eq(byte)
                                with m.Case(1):
                                    m.d.sync += load_row[:8].eq(byte)
                                with m.Case(2):
                                    m.d.sync += load_row[8:].eq(byte)
                                with m.Default():
                                    m.d.comb += [
                                        self.load.valid.eq(1),
                                        self.load.payload.memory.eq(load_memory),
                                        self.load.payload.row.eq(load_row),
                                        self.load.payload.first.eq(rx_count == 3),
                                        self.load.payload.data.eq(byte),
                                    ]
                with m.If(got):
                    m.d.sync += [left_in.eq(left_in - 1), last_in.eq(left_in == 2)]
                with m.If(last_in):
                    receive("crc_low")
                with m.Else():
                    receive("payload")
            with m.State("crc_low"):
                request_state()
                with m.If(got):
                    m.d.sync += low_ok.eq(_crc_matches(crc[:8], byte))
                    m.next = "crc_high"
            with m.State("crc_high"):
                request_state()
                with m.If(got):
                    end_request(Mux(low_ok & _crc_matches(crc[8:], byte), code,
                                    ErrorCode.BAD_CHECKSUM))
            with m.State("finish"):
                m.d.sync += final_ok.eq(final == 0)
                m.next = "decide"
            with m.State("decide"):
                finish_request(final, final_ok)
            with m.State("drain"):
                m.d.comb += self.from_accel.ready.eq(1)
                with m.If(self.from_accel.valid):
                    m.d.sync += [drained.eq(drained + 1), drain_last.eq(drained == out_beats - 2)]
                    with m.If(drain_last):
                        start_reply(protocol.ERROR, 2, 0)
            with m.State("reply"):
                with m.If(reply_done):
                    m.next = "idle"

        with m.FSM(name="reply_fsm"):
            with m.State("idle"):
                m.d.comb += changed.eq(1)
                with m.If(reply_start):
                    m.next = "send_sync"
            with m.State("send_sync"):
                # The reply's CRC continues from the request's (crc holds it).
                with m.If(handed):
                    m.d.sync += [tx_count.eq(0), position.eq(0)]
                send(protocol.SYNC_REPLY, "send_command", checked=False)
            with m.State("send_command"):
                send(reply_command, "send_length_low")
            with m.State("send_length_low"):
                send(reply_length[:8], "send_length_high")
                # Registered ahead of their use, so that no path runs from the reply's
                # length through a comparison into the state machine.
                m.d.sync += [empty.eq(reply_length == 0), left_out.eq(reply_length),
                             last_out.eq(reply_length == 1)]
            with m.State("send_length_high"):
                with m.If(empty):
                    send(reply_length[8:], "send_crc_low")
                with m.Else():
                    send(reply_length[8:], "send_payload")
                    with m.If(handed):
                        m.d.sync += payload_beats.eq(kind == 2)
            with m.State("send_payload"):
                with m.Switch(kind):
                    with m.Case(0):
                        send(Mux(tx_count == 0, code, command), "send_payload")
                    with m.Case(1):
                        send(here.data, "send_payload")
                    with m.Case(2):  # lane by lane from the accelerator's beats
                        # Each beat is taken into a register first and sent from there,
                        # so that the accelerator's ready comes from that register and
                        # the state, not through the UART's handshake (on the iCE40 the
                        # path from the state through the transfer into the output
                        # slice's enable was the critical one: six LUTs, 27 ns).
                        with m.If(~beat_held & self.from_accel.valid):  # taken
                            m.d.comb += changed.eq(1)
                            m.d.sync += [beat.eq(self.from_accel.payload), beat_held.eq(1)]
                        send(beat.word_select(position, 8), "send_payload",
                             ready=beat_held)
                        with m.If(handed):
                            m.d.sync += position.eq(Mux(position == lanes - 1, 0,
                                                        position + 1))
                            with m.If(position == lanes - 1):
                                m.d.sync += beat_held.eq(0)
                with m.If(handed):
                    m.d.sync += [tx_count.eq(tx_count + 1), left_out.eq(left_out - 1),
                                 last_out.eq(left_out == 2)]
                    with m.If(last_out):
                        m.d.sync += payload_beats.eq(0)
                        m.next = "send_crc_low"
            with m.State("send_crc_low"):
                send(crc[:8], "send_crc_high", checked=False)
            with m.State("send_crc_high"):
                send(crc[8:], "idle", checked=False)
                with m.If(handed):
                    m.d.sync += reply_done.eq(1)


        m.d.comb += self.busy.eq(~fsm.ongoing("idle"))
        return m


def attach_accelerator(m: Module, link: HostLink, accelerator,
                       name: str = "accelerator") -> None:
    """Add ``accelerator`` to ``m`` (as submodule ``name``) behind ``link``: its
    AXI4-Stream ports joined to ``to_accel`` and ``from_accel`` through a register slice
    each (:class:`~tfl2rtl.hw.adapters.SkidBuffer`, one cycle) and, when the link loads
    weights, its ``load`` and ``loaded`` to the link's, and its reset to the link's
    ``invalidate`` as well as the domain's (after a LOAD frame that failed its check,
    the accelerator starts over as from power-on: its memories count as empty)."""
    if link.loadable:
        m.submodules[name] = ResetInserter(link.invalidate)(accelerator)
        m.d.comb += [
            accelerator.load.valid.eq(link.load.valid),
            accelerator.load.payload.eq(link.load.payload),
            link.loaded.eq(accelerator.loaded),
        ]
    else:
        m.submodules[name] = accelerator
    # Register slices on both streams: the link's byte and frame logic (counters,
    # comparisons, the UART's ready) and the accelerator's FIFOs and first stage meet
    # only through registers, not in one combinational path.
    into = SkidBuffer(link.to_accel.payload.shape())
    out_of = SkidBuffer(link.from_accel.payload.shape())
    for suffix, part in (("in_slice", into), ("out_slice", out_of)):  # reset with it
        m.submodules[f"{name}_{suffix}"] = (ResetInserter(link.invalidate)(part)
                                            if link.loadable else part)
    wiring.connect(m, link.to_accel, into.i)
    wiring.connect(m, out_of.o, link.from_accel)
    m.d.comb += [
        accelerator.s_axis_tdata.eq(into.o.payload.data),
        accelerator.s_axis_tlast.eq(into.o.payload.last),
        accelerator.s_axis_tvalid.eq(into.o.valid),
        into.o.ready.eq(accelerator.s_axis_tready),
        out_of.i.payload.eq(accelerator.m_axis_tdata),
        out_of.i.valid.eq(accelerator.m_axis_tvalid),
        accelerator.m_axis_tready.eq(out_of.i.ready),
    ]


class BoardTop(wiring.Component):
    """An accelerator behind a UART host link: the part of a board design that does
    not depend on the board.

    ``accelerator`` is any component with the AXI4-Stream ports of
    :class:`tfl2rtl.hw.network.DataflowNetwork` (``s_axis_tdata`` etc., ``8 *
    identity.lanes`` bits of data); ``identity`` (:class:`~tfl2rtl.boards.protocol.
    Identity`) is what it answers to ``IDENTIFY`` and fixes the vector sizes.  The UART
    runs at ``divisor`` cycles of its clock per bit (a multiple of 1/16 of a cycle, see
    :func:`tfl2rtl.boards.uart.divisor_for`); a request frame that stops for
    ``timeout_bytes`` byte times ends with a ``TRUNCATED`` error.

    Clock and synchronous reset are the ``sync`` domain's (on a board, the PLL's
    clock and its lock-gated reset).  With ``uart_domain`` (a domain name) the UART
    runs in that domain instead (on a board, the oscillator's), with an asynchronous
    FIFO of :data:`UART_FIFO_DEPTH` bytes each way, and the frame timeout counts its
    bit times: then nothing in the design depends on the ``sync`` clock's frequency
    (a routed design can be re-clocked, :mod:`tfl2rtl.boards.clocks`).

    Members
    -------
    rx : ``In(1)``
        The serial line from the host (idle high).
    tx : ``Out(1)``
        The serial line to the host.
    busy : ``Out(1)``
        High while a request is being received (for an LED).
    flash_sck, flash_cs_n, flash_io_o, flash_io_oe, flash_io_i
        With an accelerator whose weights are in flash: its flash pins
        (:data:`tfl2rtl.hw.engine.FLASH_PORTS`).
    """

    def __init__(self, accelerator, identity: Identity, *, divisor,
                 timeout_bytes: int = 256, uart_domain: str | None = None):
        width = len(accelerator.s_axis_tdata)
        bits = 8 * identity.input.wire_dtype.itemsize
        if width != bits * identity.lanes or len(accelerator.m_axis_tdata) != width:
            raise Tfl2RtlError(f"the accelerator moves {width // bits} elements per beat; "
                               f"the identity says {identity.lanes}")
        if bool(identity.memories) != hasattr(accelerator, "load"):
            raise Tfl2RtlError("the identity and the accelerator disagree on whether "
                               "weights are loaded at run time")
        self.accelerator = accelerator
        self.identity = identity
        self.divisor = divisor
        self.uart_domain = uart_domain
        self.receiver = UARTReceiver(divisor)
        self.transmitter = UARTTransmitter(divisor)
        #: UART clock cycles between the pulses of the link's ``tick`` (a bit time,
        #: rounded up) with ``uart_domain``; 1 (every ``sync`` cycle) without.
        self.tick_cycles = math.ceil(divisor) if uart_domain else 1
        self.link = HostLink(identity, timeout_cycles=math.ceil(
            10 * divisor * timeout_bytes / self.tick_cycles))
        #: The frame timeout in cycles of the UART's clock (at most; with
        #: ``uart_domain`` the crossing into ``sync`` adds a few cycles of that clock).
        self.timeout_cycles = self.link.timeout_cycles * self.tick_cycles
        #: Whether the accelerator reads its weights from flash: its ``flash_*`` pins
        #: are then this top's too (:data:`tfl2rtl.hw.engine.FLASH_PORTS`).
        self.flash = hasattr(accelerator, "flash_sck")
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          **(FLASH_PORTS if self.flash else {})})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        if self.uart_domain is None:
            m.submodules.receiver = receiver = self.receiver
            m.submodules.transmitter = transmitter = self.transmitter
            wiring.connect(m, receiver.o, link.rx)
            wiring.connect(m, link.tx, transmitter.i)
        else:
            self._uart_beside(m, link)
            receiver, transmitter = self.receiver, self.transmitter
        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
            self.busy.eq(link.busy),
        ]
        attach_accelerator(m, link, self.accelerator)
        if self.flash:
            accelerator = self.accelerator
            m.d.comb += [self.flash_sck.eq(accelerator.flash_sck),
                         self.flash_cs_n.eq(accelerator.flash_cs_n),
                         self.flash_io_o.eq(accelerator.flash_io_o),
                         self.flash_io_oe.eq(accelerator.flash_io_oe),
                         accelerator.flash_io_i.eq(self.flash_io_i)]
        return m

    def _uart_beside(self, m: Module, link: HostLink) -> None:
        """The UART in :attr:`uart_domain`, its bytes through an asynchronous FIFO each
        way, and the link's ``tick``: a toggle every :attr:`tick_cycles` of the UART's
        clock, synchronised into ``sync``, each change a pulse."""
        domain = self.uart_domain
        rename = DomainRenamer({"sync": domain})
        m.submodules.receiver = receiver = rename(self.receiver)
        m.submodules.transmitter = transmitter = rename(self.transmitter)
        m.submodules.rx_fifo = into = fifo.AsyncFIFO(
            width=8, depth=UART_FIFO_DEPTH, w_domain=domain, r_domain="sync")
        m.submodules.tx_fifo = out_of = fifo.AsyncFIFO(
            width=8, depth=UART_FIFO_DEPTH, w_domain="sync", r_domain=domain)
        m.d.comb += [
            into.w_data.eq(receiver.o.payload), into.w_en.eq(receiver.o.valid),
            receiver.o.ready.eq(into.w_rdy),
            link.rx.payload.eq(into.r_data), link.rx.valid.eq(into.r_rdy),
            into.r_en.eq(link.rx.ready),
            out_of.w_data.eq(link.tx.payload), out_of.w_en.eq(link.tx.valid),
            link.tx.ready.eq(out_of.w_rdy),
            transmitter.i.payload.eq(out_of.r_data), transmitter.i.valid.eq(out_of.r_rdy),
            out_of.r_en.eq(transmitter.i.ready),
        ]
        count = Signal(range(self.tick_cycles))
        toggle = Signal()
        with m.If(count == self.tick_cycles - 1):
            m.d[domain] += [count.eq(0), toggle.eq(~toggle)]
        with m.Else():
            m.d[domain] += count.eq(count + 1)
        seen = Signal()
        last = Signal()
        m.submodules.tick_sync = cdc.FFSynchronizer(toggle, seen)
        m.d.sync += last.eq(seen)
        m.d.comb += link.tick.eq(seen ^ last)
