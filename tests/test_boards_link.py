# amaranth: UnusedElaboratable=no
# (the lane check refuses a board top before its parts are elaborated)
"""The host link's gateware at the byte level (no UART), against a small accelerator:
lanes, every error reply, and the link working after each; LOAD frames that fail their
check void the weights; replies check only against their own request."""

import random

import pytest
from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from tfl2rtl.boards import link as link_module
from tfl2rtl.boards import protocol
from tfl2rtl.boards.link import BoardTop, HostLink, attach_accelerator
from tfl2rtl.boards.protocol import (
    ErrorCode,
    FrameDecoder,
    Identity,
    LinkError,
    MemoryInfo,
    TensorInfo,
    decode,
    device_seed,
    encode,
    reply_seed,
)
from tfl2rtl.hw.weights import LOAD_LAYOUT, LoadableMemory, load_payloads


class AddOne(wiring.Component):
    """A stand-in accelerator with the AXI4-Stream ports: takes ``size`` elements and
    returns each plus one, ``lanes`` per beat; ignores its input for ``deaf`` cycles
    after reset (to provoke an overrun).  With ``weights`` (a :class:`LoadableMemory`,
    a submodule read by the testbench) it has the ``load`` and ``loaded`` members of a
    design whose weights are loaded over the link."""

    def __init__(self, size: int, lanes: int, deaf: int = 0,
                 weights: LoadableMemory | None = None):
        self.size, self.lanes, self.deaf, self.weights = size, lanes, deaf, weights
        members = {
            "s_axis_tdata": In(8 * lanes), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1), "m_axis_tdata": Out(8 * lanes), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
        }
        if weights is not None:
            from amaranth.lib import stream

            members.update(load=In(stream.Signature(LOAD_LAYOUT)), loaded=Out(1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.weights is not None:
            m.submodules.weights = self.weights
            m.d.comb += [self.weights.load.valid.eq(self.load.valid),
                         self.weights.load.payload.eq(self.load.payload),
                         self.loaded.eq(self.weights.loaded)]
        beats = self.size // self.lanes
        vector = [Signal(8 * self.lanes, name=f"beat{k}") for k in range(beats)]
        count = Signal(range(beats + 1))
        wait = Signal(range(self.deaf + 1), init=self.deaf)
        full = Signal()
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        m.d.comb += self.s_axis_tready.eq(~full & (wait == 0))
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += Cat(*vector).eq(Cat(*vector[1:], self.s_axis_tdata))
            m.d.sync += count.eq(count + 1)
            with m.If(count == beats - 1):
                m.d.sync += [full.eq(1), count.eq(0)]
        m.d.comb += [
            self.m_axis_tvalid.eq(full),
            self.m_axis_tdata.eq(Cat(*((vector[0].word_select(k, 8) + 1)[:8]
                                       for k in range(self.lanes)))),
            self.m_axis_tlast.eq(count == beats - 1),
        ]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += Cat(*vector).eq(Cat(*vector[1:], vector[0]))
            m.d.sync += count.eq(count + 1)
            with m.If(count == beats - 1):
                m.d.sync += [full.eq(0), count.eq(0)]
        return m


def run_link(identity, accelerator, requests, *, gap=6, fifo_depth=16, timeout=200,
             after=None, rng=None, raw=None, received=None):
    """Send each request's bytes into the link, one every ``gap`` cycles (as a UART
    would), waiting for the reply before the next; returns the reply frames, each
    checked against the request it answers (``device_seed``).  The accelerator is
    attached as on a board (:func:`attach_accelerator`); ``after(ctx)`` runs when the
    last reply is in.  With ``rng`` (a :class:`random.Random`) the gaps between request
    bytes are longer at random and the reply is taken with random backpressure.  The
    reply bytes also go into ``raw`` (a bytearray) when given.  ``received`` (a list, one
    per request) gives what the device takes of each request into its check when that
    is less than the whole request (a frame it cuts short)."""
    link = HostLink(identity, timeout_cycles=timeout, fifo_depth=fifo_depth)
    m = Module()
    m.submodules.link = link
    attach_accelerator(m, link, accelerator)
    replies = []
    decoder = FrameDecoder()

    async def host(ctx):
        for k, request in enumerate(requests):
            decoder.seed = device_seed(request if received is None else received[k])
            wanted = len(replies) + 1
            for byte in request:
                ctx.set(link.rx.valid, 1)
                ctx.set(link.rx.payload, byte)
                await ctx.tick()
                ctx.set(link.rx.valid, 0)
                extra = rng.choice([0, 0, 1, 5, timeout // 2]) if rng is not None else 0
                await ctx.tick().repeat(gap - 1 + extra)
            for _ in range(20_000):
                if len(replies) == wanted:
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"no reply to {request.hex()}")
        if after is not None:
            await after(ctx)

    async def receiver(ctx):
        ctx.set(link.tx.ready, 1)
        async for _, _, ready, valid, payload in ctx.tick().sample(
                link.tx.ready, link.tx.valid, link.tx.payload):
            if valid and ready:
                replies.extend(decoder.feed(bytes([payload])))
                if raw is not None:
                    raw.append(payload)
            if rng is not None:
                ctx.set(link.tx.ready, rng.random() < 0.6)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(receiver, background=True)
    sim.run()
    return replies


def make_identity(size, lanes):
    tensor = TensorInfo((1, size), "int8")
    return Identity("00" * 32, tensor, tensor, lanes)


def test_identity_and_inferences_with_lanes():
    identity = make_identity(6, 2)
    data = [bytes([1, 2, 3, 4, 5, 255]), bytes(range(100, 106))]
    replies = run_link(identity, AddOne(6, 2), [encode(protocol.IDENTIFY)]
                       + [encode(protocol.INFER, d) for d in data])
    assert Identity.unpack(replies[0].payload) == identity
    assert replies[0].command == protocol.IDENTIFY | protocol.REPLY
    assert [r.payload for r in replies[1:]] == [bytes((b + 1) % 256 for b in d)
                                                for d in data]


@pytest.mark.parametrize("stalls", [False, True], ids=["streaming", "stalls"])
def test_every_error_then_the_link_still_works(stalls):
    identity = make_identity(4, 1)
    good = encode(protocol.INFER, bytes([9, 8, 7, 6]))
    corrupted = bytearray(good)
    corrupted[5] ^= 0x10
    requests = {
        ErrorCode.BAD_CHECKSUM: bytes(corrupted),
        ErrorCode.UNKNOWN_COMMAND: encode(0x33),
        ErrorCode.WRONG_LENGTH: encode(protocol.INFER, bytes(5)),
        ErrorCode.TRUNCATED: good[:6],
    }
    sequence = [b"\x00\x13" + good]  # noise before a frame is skipped
    for request in requests.values():
        sequence += [request, good]
    sequence.append(encode(protocol.IDENTIFY, b"x"))  # IDENTIFY takes no payload
    replies = run_link(identity, AddOne(4, 1), sequence,
                       rng=random.Random(7) if stalls else None)
    expected_output = bytes([10, 9, 8, 7])
    assert replies[0].payload == expected_output
    for k, (code, request) in enumerate(requests.items()):
        error, after = replies[1 + 2 * k], replies[2 + 2 * k]
        assert error.is_error and error.error is code, request.hex()
        assert error.payload[1] == request[1]  # the request's command byte
        assert after.payload == expected_output
    assert replies[-1].error is ErrorCode.WRONG_LENGTH


@pytest.mark.parametrize("timeout", [1, 2, 40])
def test_a_frame_ends_after_timeout_cycles_without_a_byte(timeout):
    # Bytes ``timeout`` cycles apart (``gap - 1`` cycles without one) keep a frame
    # going; one cycle more ends it with TRUNCATED.
    identity = make_identity(4, 1)
    good = encode(protocol.INFER, bytes([9, 8, 7, 6]))
    kept = run_link(identity, AddOne(4, 1), [good], gap=timeout + 1, timeout=timeout)
    assert kept[0].payload == bytes([10, 9, 8, 7])
    cut = run_link(identity, AddOne(4, 1), [good], gap=timeout + 2, timeout=timeout,
                   received=[good[:1]])  # the frame ends after its sync byte
    assert cut[0].error is ErrorCode.TRUNCATED


def test_input_faster_than_the_accelerator_takes_it_is_an_overrun():
    # A 2-byte FIFO and an accelerator deaf for 300 cycles: bytes are lost, zeros make
    # up the vector, the reply is an error, and the next inference is right.
    identity = make_identity(8, 1)
    data = bytes(range(1, 9))
    replies = run_link(identity, AddOne(8, 1, deaf=300),
                       [encode(protocol.INFER, data)] * 2, fifo_depth=2)
    assert replies[0].error is ErrorCode.OVERRUN
    assert replies[1].payload == bytes(b + 1 for b in data)


def test_board_top_checks_the_lanes():
    from tfl2rtl.errors import Tfl2RtlError

    with pytest.raises(Tfl2RtlError, match="moves 2 elements per beat; the identity says 1"):
        BoardTop(AddOne(4, 2), make_identity(4, 1), divisor=4)


def test_weights_load_before_inferences():
    """A design with a loadable memory: INFER is refused (NOT_LOADED, the output
    drained) until LOAD frames have filled it; a LOAD too short for its header is the
    wrong length; the rows land where the frames say."""
    memory = MemoryInfo(node=0, pe=2, simd=1, rows=4)
    identity = Identity("00" * 32, TensorInfo((1, 4), "int8"), TensorInfo((1, 4), "int8"),
                        1, (memory,))
    weights = LoadableMemory(16, 4, memory_id=0)
    rows = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    infer = encode(protocol.INFER, bytes([9, 8, 7, 6]))
    frames = [encode(protocol.LOAD, p) for p in load_payloads(0, rows, 2, chunk=4)]
    read = []

    async def read_back(ctx):
        for row in range(4):
            ctx.set(weights.addr, row)
            ctx.set(weights.en, 1)
            await ctx.tick()
            read.append(ctx.get(weights.data))

    replies = run_link(identity, AddOne(4, 1, weights=weights),
                       [infer, encode(protocol.LOAD, bytes(3)), frames[1], infer, frames[0],
                        infer, frames[1], infer, encode(protocol.IDENTIFY)],
                       after=read_back)
    assert replies[0].error is ErrorCode.NOT_LOADED
    assert replies[1].error is ErrorCode.WRONG_LENGTH
    assert replies[2].command == protocol.LOAD | protocol.REPLY and replies[2].payload == b""
    assert replies[3].error is ErrorCode.NOT_LOADED  # rows 2 and 3 only
    assert replies[4].command == protocol.LOAD | protocol.REPLY
    assert replies[5].error is ErrorCode.NOT_LOADED  # rows 2 and 3 came before their turn
    assert replies[6].command == protocol.LOAD | protocol.REPLY
    assert replies[7].payload == bytes([10, 9, 8, 7])
    assert Identity.unpack(replies[8].payload) == identity
    assert read == [0x0201, 0x0403, 0x0605, 0x0807]


def test_board_top_checks_loading_agrees():
    from tfl2rtl.errors import Tfl2RtlError

    identity = Identity("00" * 32, TensorInfo((1, 4), "int8"), TensorInfo((1, 4), "int8"),
                        1, (MemoryInfo(0, 1, 1, 4),))
    with pytest.raises(Tfl2RtlError, match="disagree on whether weights are loaded"):
        BoardTop(AddOne(4, 1), identity, divisor=4)


LOADING = Identity("00" * 32, TensorInfo((1, 4), "int8"), TensorInfo((1, 4), "int8"), 1,
                   (MemoryInfo(node=0, pe=2, simd=1, rows=4),))
ROWS = bytes([1, 2, 3, 4, 5, 6, 7, 8])
LOADS = [encode(protocol.LOAD, p) for p in load_payloads(0, ROWS, 2, chunk=4)]
INFER = encode(protocol.INFER, bytes([9, 8, 7, 6]))
OUTPUT = bytes([10, 9, 8, 7])


def flipped(frame: bytes, index: int, bit: int = 0) -> bytes:
    wrong = bytearray(frame)
    wrong[index] ^= 1 << bit
    return bytes(wrong)


def load_faults():
    """LOAD frames that fail their check after writing some weights, and the error each
    gets: a weight flipped, the row flipped, cut short; and an INFER frame whose command
    byte turned into LOAD (its payload goes to the memories as weights)."""
    return [
        (flipped(LOADS[1], 8, 3), ErrorCode.BAD_CHECKSUM),  # a weight byte
        (flipped(LOADS[0], 5, 1), ErrorCode.BAD_CHECKSUM),  # the first row: 2, not 0
        (LOADS[1][:-3], ErrorCode.TRUNCATED),
        (flipped(INFER, 1, 0), ErrorCode.BAD_CHECKSUM),  # 0x02 -> 0x03, LOAD
    ]


def load_then_fault(fault: bytes, stalls: bool):
    """Load every row, infer, send ``fault``, infer, read the rows back: the replies and
    the rows."""
    weights = LoadableMemory(16, 4, memory_id=0)
    read = []

    async def read_back(ctx):
        for row in range(4):
            ctx.set(weights.addr, row)
            ctx.set(weights.en, 1)
            await ctx.tick()
            read.append(ctx.get(weights.data))

    replies = run_link(LOADING, AddOne(4, 1, weights=weights),
                       [*LOADS, INFER, fault, INFER], after=read_back,
                       rng=random.Random(3) if stalls else None)
    return replies, read


@pytest.mark.parametrize("stalls", [False, True], ids=["streaming", "stalls"])
@pytest.mark.parametrize("k", range(4), ids=["weight", "row", "cut_short", "infer_as_load"])
def test_a_load_frame_that_fails_its_check_voids_the_weights(k, stalls):
    """Weights written by a LOAD frame that then fails its check are never used: the
    board answers NOT_LOADED until the host loads them all again."""
    fault, code = load_faults()[k]
    replies, read = load_then_fault(fault, stalls)
    assert [r.command for r in replies[:2]] == [protocol.LOAD | protocol.REPLY] * 2
    assert replies[2].payload == OUTPUT
    assert replies[3].error is code
    assert replies[4].error is ErrorCode.NOT_LOADED
    if k == 0:
        assert read[2] == 0x0605 ^ 0x0800  # the flipped weight is in the memory, unused
    if stalls:
        return
    # Loaded again, the board answers as before.
    replies = run_link(LOADING, AddOne(4, 1, weights=LoadableMemory(16, 4, memory_id=0)),
                       [*LOADS, fault, INFER, *LOADS, INFER])
    assert replies[3].error is ErrorCode.NOT_LOADED and replies[6].payload == OUTPUT


def test_negative_control_a_link_without_the_check_computes_with_corrupted_weights(
        monkeypatch):
    """The test above can fail: with the device's CRC comparison broken, the corrupted
    LOAD frame is taken (its reply, continuing from the CRC of the corrupted request,
    fails the host's check) and the next inference runs on the flipped weight."""
    monkeypatch.setattr(link_module, "_crc_matches", lambda computed, received: Const(1))
    fault, _ = load_faults()[0]
    replies, read = load_then_fault(fault, stalls=False)
    assert replies[3].command == protocol.LOAD | protocol.REPLY  # taken
    assert replies[4].payload == OUTPUT  # no NOT_LOADED: it computed
    assert read[2] == 0x0605 ^ 0x0800
    with pytest.raises(AssertionError):
        assert replies[4].error is ErrorCode.NOT_LOADED


def test_a_reply_checks_only_against_its_own_request():
    """A reply's CRC continues from its request's: the reply to one input does not check
    as the reply to another (a late reply cannot pass for the next one)."""
    identity = make_identity(4, 1)
    first, second = (encode(protocol.INFER, bytes(x)) for x in ([1, 2, 3, 4], [5, 6, 7, 8]))
    raw = bytearray()
    run_link(identity, AddOne(4, 1), [first], raw=raw)
    reply = bytes(raw)
    assert decode(reply, seed=reply_seed(first)).payload == bytes([2, 3, 4, 5])
    with pytest.raises(LinkError, match="bad checksum"):
        decode(reply, seed=reply_seed(second))
    with pytest.raises(LinkError, match="bad checksum"):
        decode(reply)  # nor from 0xFFFF


def uart_on_its_clock(fast_ns: float, frames, pause_bits: int = 0, timing=None):
    """A board top whose UART runs on a clock of its own (``uart_domain``: here the
    testbench's ``sync``, 10 ns, as the oscillator on a board) and whose link and
    accelerator run on ``fast``, of period ``fast_ns``; the host's UART on the
    oscillator's clock too.  Each frame's second byte follows its first after a pause
    of ``pause_bits`` bit times, the other bytes with ``timing``'s stalls; returns the
    replies (taken with ``timing``'s backpressure)."""
    from amaranth.hdl import ClockDomain, DomainRenamer

    from streams import get, put
    from tfl2rtl.boards.uart import UARTReceiver, UARTTransmitter

    identity = make_identity(4, 1)
    top = BoardTop(AddOne(4, 1), identity, divisor=4, timeout_bytes=2, uart_domain="osc")
    m = Module()
    m.domains.fast = ClockDomain("fast")
    m.submodules.top = DomainRenamer({"sync": "fast", "osc": "sync"})(top)
    m.submodules.host_tx = host_tx = UARTTransmitter(4)
    m.submodules.host_rx = host_rx = UARTReceiver(4)
    m.d.comb += [top.rx.eq(host_tx.tx), host_rx.rx.eq(top.tx)]
    replies = []
    decoder = FrameDecoder()

    async def host(ctx):
        for frame in frames:
            decoder.seed = device_seed(frame if pause_bits < 10 else frame[:1])
            wanted = len(replies) + 1
            await put(ctx, host_tx.i, frame[:1])
            await ctx.tick().repeat(4 * (10 + pause_bits))  # the byte, then the pause
            await put(ctx, host_tx.i, frame[1:2])
            await put(ctx, host_tx.i, frame[2:], timing)
            await ctx.tick().until(host_tx.i.ready)  # (the last byte sent)
            while len(replies) < wanted:
                await ctx.tick()

    async def receiver(ctx):
        while True:
            replies.extend(decoder.feed(bytes(await get(ctx, host_rx.o, 1, timing))))

    sim = Simulator(m)
    sim.add_clock(10e-9)
    sim.add_clock(fast_ns * 1e-9, domain="fast")
    sim.add_testbench(host)
    sim.add_testbench(receiver, background=True)
    sim.run()
    return replies


@pytest.mark.parametrize("fast_ns", [3.7, 27.0])
def test_board_top_with_its_uart_on_its_own_clock(fast_ns):
    """The UART on the oscillator's clock, the link on a faster or a slower one: the
    bytes cross both ways (with random stalls on the host's side), and the frame timeout
    counts the UART's bit times whatever the link's clock (2 bytes: 20 bit times, give
    or take the crossing's cycle): a second byte 16 bit times after the first (a pause
    of 6) keeps a frame, one 24 after it (a pause of 14) ends it."""
    from streams import Timing

    frames = [encode(protocol.INFER, bytes([9, 8, 7, 6])), encode(protocol.IDENTIFY)]
    replies = uart_on_its_clock(fast_ns, frames, 6, Timing(random.Random(fast_ns)))
    assert replies[0].payload == bytes([10, 9, 8, 7])
    assert Identity.unpack(replies[1].payload) == make_identity(4, 1)
    kept = uart_on_its_clock(fast_ns, frames[:1], pause_bits=6)
    assert kept[0].payload == bytes([10, 9, 8, 7])
    cut = uart_on_its_clock(fast_ns, frames[:1], pause_bits=14)
    assert cut[0].error is ErrorCode.TRUNCATED
