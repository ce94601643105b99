"""The host link's frames, identity record and client, in pure Python."""

import dataclasses

import numpy as np
import pytest

from conftest import ZOO
from tfl2rtl.api import load
from tfl2rtl.boards import protocol
from tfl2rtl.boards.protocol import (
    ERROR,
    Client,
    ErrorCode,
    Frame,
    FrameDecoder,
    Identity,
    LinkError,
    MemoryInfo,
    TensorInfo,
    Unanswered,
    crc16,
    decode,
    encode,
)
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.folding import Fold
from tfl2rtl.hw.stages import stage_for

HELLO_WORLD = ZOO / "tflite_micro" / "hello_world_int8.tflite"


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the catalogue's check value
    assert crc16(b"") == 0xFFFF


def test_frame_layout():
    frame = encode(protocol.INFER, b"\x01\x02\x03")
    assert frame[:4] == bytes([0xA5, 0x02, 3, 0]) and frame[4:7] == b"\x01\x02\x03"
    assert int.from_bytes(frame[7:], "little") == crc16(frame[1:7])
    reply = encode(protocol.INFER | protocol.REPLY, b"xy", sync=protocol.SYNC_REPLY)
    assert decode(reply) == Frame(protocol.SYNC_REPLY, 0x82, b"xy")


def test_decoder_skips_noise_and_splits_frames():
    stream = (b"\x00\x17" + encode(0x81, b"abc", sync=0x5A) + b"\xff"
              + encode(0xFF, bytes([2, 7]), sync=0x5A))
    decoder = FrameDecoder()
    frames = []
    for k in range(0, len(stream), 3):  # in pieces, as a serial port delivers them
        frames += decoder.feed(stream[k:k + 3])
    assert [f.payload for f in frames] == [b"abc", bytes([2, 7])]
    assert frames[1].is_error and frames[1].error is ErrorCode.UNKNOWN_COMMAND
    assert decoder.pending == 0


def test_decoder_rejects_a_bad_checksum():
    frame = bytearray(encode(0x81, b"abc", sync=0x5A))
    frame[5] ^= 0x40
    with pytest.raises(LinkError, match="bad checksum"):
        FrameDecoder().feed(bytes(frame))
    with pytest.raises(LinkError, match="not one frame"):
        decode(encode(0x81, b"abc", sync=0x5A)[:-1])


def test_payload_limit():
    with pytest.raises(Tfl2RtlError, match="at most 65535 bytes"):
        encode(protocol.INFER, bytes(1 << 16))


def test_identity_round_trip():
    graph = load(HELLO_WORLD)
    identity = Identity.of_graph(graph, lanes=1)
    assert identity.input == TensorInfo((1, 1), "int8", pytest.approx(0.02448, rel=1e-3),
                                        -128)
    packed = identity.pack()
    assert packed.startswith(b"T2R\x03") and Identity.unpack(packed) == identity
    assert (identity.architecture, identity.weights) == ("dataflow", "chip")
    with pytest.raises(LinkError, match="cut short"):
        Identity.unpack(packed[:-1])
    with pytest.raises(LinkError, match="1 bytes too many"):
        Identity.unpack(packed + b"\x00")
    loading = Identity.of_graph(graph, 1, (MemoryInfo(1, 4, 2, 32), MemoryInfo(2, 1, 16, 1)))
    packed = loading.pack()
    assert Identity.unpack(packed) == loading and len(packed) == len(identity.pack()) + 20
    with pytest.raises(LinkError, match="cut short"):
        Identity.unpack(packed[:-3])
    # The architecture byte: a sequential engine, its weights in flash.
    engine = dataclasses.replace(identity, architecture="sequential", weights="flash")
    packed = engine.pack()
    assert packed[6] == 0b11 and Identity.unpack(packed) == engine
    with pytest.raises(LinkError, match="version 2; this tfl2rtl reads version 3"):
        Identity.unpack(identity.pack().replace(b"T2R\x03", b"T2R\x02", 1))


class FakeBoard:
    """The device side in Python, for the client's tests: each written frame is
    answered as the gateware answers it (the reply's CRC continuing from the request's,
    LOAD frames that fail their check voiding the weights), the reply bytes then go
    through the next function in ``faults`` (None: untouched) and wait for ``read``.
    ``output(x)`` is the accelerator; an empty read is a timeout."""

    def __init__(self, identity: Identity, output=lambda x: bytes((b + 1) % 256 for b in x),
                 faults=(), loads_needed: int = 0):
        self.identity = identity
        self.output = output
        self.faults = list(faults)
        self.loads_needed = loads_needed  # LOAD frames that fill the memories
        self.loads = 0
        self.pending = bytearray()
        self.written = []  # the frames written, as bytes
        self.reads = 0

    def reply(self, request: bytes) -> bytes:
        seed = crc16(request[1:-2])
        try:
            frame = decode(request, protocol.SYNC_REQUEST)
        except LinkError:  # as the gateware does: a LOAD that fails voids the weights
            if request[1:2] == bytes([protocol.LOAD]):
                self.loads = 0
            return encode(ERROR, bytes([ErrorCode.BAD_CHECKSUM, request[1]]), 0x5A, seed)
        if frame.command == protocol.IDENTIFY:
            return encode(0x81, self.identity.pack(), 0x5A, seed)
        if frame.command == protocol.LOAD:
            self.loads += 1
            return encode(0x83, b"", 0x5A, seed)
        if self.loads < self.loads_needed:
            return encode(ERROR, bytes([ErrorCode.NOT_LOADED, 2]), 0x5A, seed)
        return encode(0x82, self.output(frame.payload), 0x5A, seed)

    def write(self, data):
        self.written.append(bytes(data))
        reply = self.reply(bytes(data))
        fault = self.faults.pop(0) if self.faults else None
        self.pending += reply if fault is None else fault(reply)

    def read(self, n):
        self.reads += 1
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def reset_input_buffer(self):
        self.pending.clear()


SMALL = Identity("ab" * 32, TensorInfo((2, 2), "uint8"), TensorInfo((4,), "uint8"))


def test_client_loads_the_weights_the_identity_lists():
    """``load_weights`` sends each listed memory's rows (the stage's own layout at the
    listed folding) in LOAD frames that together cover every row once."""
    graph = load(HELLO_WORLD)
    memories = (MemoryInfo(1, 4, 2, 32), MemoryInfo(0, 16, 1, 1))
    identity = Identity.of_graph(graph, 1, memories)
    board = FakeBoard(identity)
    client = Client(board)
    progress = []
    assert client.load_weights(graph, lambda sent, total: progress.append((sent, total))) \
        == 64 * 4 + 16
    assert progress == [(256, 272), (272, 272)]
    sent = [decode(frame, protocol.SYNC_REQUEST) for frame in board.written]
    assert [f.command for f in sent] == [protocol.IDENTIFY, protocol.LOAD, protocol.LOAD]
    for number, (memory, frame) in enumerate(zip(memories, sent[1:], strict=True)):
        stage = stage_for(graph, memory.node)
        rows, _ = stage.weight_rows(Fold(memory.pe, memory.simd))
        assert frame.payload == bytes([number, 0, 0]) + rows
    wrong = Identity.of_graph(graph, 1, (MemoryInfo(1, 4, 2, 31),))
    client = Client(FakeBoard(wrong))
    with pytest.raises(LinkError, match="memory 0 has 31 rows; node 1's weights fill 32"):
        client.load_weights(graph)


def test_a_failed_load_frame_starts_the_weights_over():
    """The second LOAD frame's reply is lost: it may have voided the memories, so the
    driver sends every frame again, from the first."""
    graph = load(HELLO_WORLD)
    identity = Identity.of_graph(graph, 1, (MemoryInfo(1, 4, 2, 32), MemoryInfo(0, 16, 1, 1)))
    board = FakeBoard(identity, faults=[None, None, lambda reply: b""])
    assert Client(board).load_weights(graph) == 272
    loads = [frame for frame in board.written if frame[1] == protocol.LOAD]
    assert len(loads) == 4 and loads[2:] == loads[:2]


def test_client_requests_and_errors():
    board = FakeBoard(SMALL)
    client = Client(board)
    x = np.array([[1, 2], [3, 250]], np.uint8)
    np.testing.assert_array_equal(client.infer(x), np.array([2, 3, 4, 251], np.uint8))
    assert board.written == [encode(protocol.IDENTIFY), encode(protocol.INFER, x.tobytes())]
    with pytest.raises(Tfl2RtlError, match=r"the design takes uint8 \[2, 2\]"):
        client.infer(x.astype(np.int8))
    with pytest.raises(Tfl2RtlError, match="at least one"):
        Client(board, attempts=0)


def test_errors_the_device_gives_for_a_request_it_got_intact_are_final():
    """NOT_LOADED, UNKNOWN_COMMAND and WRONG_LENGTH (checked replies) are not retried;
    an error code this tfl2rtl does not know is an error, not None (issue 19)."""
    board = FakeBoard(SMALL, loads_needed=1)
    client = Client(board)
    x = np.zeros((2, 2), np.uint8)
    with pytest.raises(LinkError, match="error: not loaded") as caught:
        client.infer(x)
    assert caught.value.code is ErrorCode.NOT_LOADED and len(board.written) == 2

    def answer(code):
        def fault(reply):  # the request's own seed: the device got it intact
            seed = crc16(board.written[-1][1:-2])
            return encode(ERROR, bytes([code, 2]), 0x5A, seed)
        return fault

    board = FakeBoard(SMALL, faults=[None, answer(ErrorCode.WRONG_LENGTH), answer(0x17)])
    client = Client(board)
    client.identity()
    with pytest.raises(LinkError, match="error: wrong length") as caught:
        client.infer(x)
    assert caught.value.code is ErrorCode.WRONG_LENGTH and len(board.written) == 2
    with pytest.raises(LinkError, match="error code 23, which this tfl2rtl does not know"):
        client.infer(x)
    with pytest.raises(LinkError, match="error code 23"):
        _ = Frame(0x5A, ERROR, bytes([23, 2])).error
    with pytest.raises(LinkError, match="without an error code"):
        _ = Frame(0x5A, ERROR, b"").error
    assert Frame(0x5A, 0x82, b"").error is None


def test_no_reply_and_retried_errors_give_up_after_the_attempts():
    board = FakeBoard(SMALL, faults=[None] + [lambda reply: b""] * 3)
    client = Client(board, attempts=3)
    client.identity()
    with pytest.raises(Unanswered, match=r"no valid reply from the device to INFER in 3 "
                                         r"attempts \(timed out\): check the port"):
        client.infer(np.zeros((2, 2), np.uint8))
    # A request corrupted on the way: the device's BAD_CHECKSUM reply continues from the
    # CRC of what it got, which the host cannot check; every attempt the same.
    board = FakeBoard(SMALL)
    board.write = lambda data, write=board.write: write(data[:1] + bytes([data[1] ^ 0x40])
                                                       + data[2:])
    client = Client(board, attempts=2)
    with pytest.raises(Unanswered, match=r"to IDENTIFY in 2 attempts \(a reply that fails "
                                         r"its check\)"):
        client.identity()
    # Only the request's CRC hit: the device got the rest intact, and its BAD_CHECKSUM
    # reply checks; retried all the same.
    board = FakeBoard(SMALL)
    board.write = lambda data, write=board.write: write(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(Unanswered, match=r"in 4 attempts \(error bad checksum\)") as caught:
        Client(board).identity()
    assert caught.value.code is ErrorCode.BAD_CHECKSUM and len(board.written) == 4


def test_endless_noise_ends_each_attempt():
    """A line that delivers noise without end: every attempt stops after the longest
    reply plus ``garbage`` bytes (the reads are bounded, so is the call)."""
    class Noise(FakeBoard):
        def read(self, n):
            self.reads += 1
            return bytes([0x5A, 0x82, 4, 0, 1, 2, 3, 4, 0, 0][:n]) or b"\x5a"

    board = Noise(SMALL)
    client = Client(board, attempts=2, garbage=100)
    client._identity = SMALL
    with pytest.raises(Unanswered, match=r"in 2 attempts \(1\d\d bytes without a reply\)"):
        client.infer(np.zeros((2, 2), np.uint8))
    assert board.reads < 2 * 120


def stale(previous: bytes):
    """A fault that puts a late reply to an earlier request before the real one."""
    return lambda reply: previous + reply


def test_a_late_reply_to_another_request_is_not_taken():
    board = FakeBoard(SMALL)
    client = Client(board)
    first = client.infer(np.array([[1, 2], [3, 4]], np.uint8))
    seed = crc16(board.written[-1][1:-2])
    late = encode(0x82, first.tobytes(), 0x5A, seed)
    board.faults = [stale(late)]
    x = np.array([[9, 9], [9, 9]], np.uint8)
    np.testing.assert_array_equal(client.infer(x), np.full(4, 10, np.uint8))
    assert len(board.written) == 4  # the late reply failed its check: one more attempt


def reply_faults(rng):
    """Random faults on a reply's bytes: each one kind, at a random place."""
    def flip(reply):
        k = rng.randrange(len(reply))
        return reply[:k] + bytes([reply[k] ^ 1 << rng.randrange(8)]) + reply[k + 1:]

    def drop(reply):
        k = rng.randrange(len(reply))
        return reply[:k] + reply[k + 1:]

    def duplicate(reply):
        k = rng.randrange(len(reply))
        return reply[:k + 1] + reply[k:]

    def insert(reply):
        k = rng.randrange(len(reply) + 1)
        return reply[:k] + bytes([rng.choice([0x5A, rng.randrange(256)])]) + reply[k:]

    def truncate(reply):
        return reply[:rng.randrange(len(reply))]

    def garbage(reply):
        return bytes(rng.choice([0x5A, 0x82, 4, 0, rng.randrange(256)])
                     for _ in range(rng.randint(1, 12))) + reply

    return [flip, drop, duplicate, insert, truncate, garbage]


def fault_outcomes(count, seed=0):
    """``count`` replies each hit by one random fault: how often the driver returned
    the right output, raised, or returned a wrong output."""
    rng = np.random.default_rng(seed)
    import random

    kinds = reply_faults(random.Random(seed))
    outcomes = {"right": 0, "error": 0, "wrong": 0}
    board = FakeBoard(SMALL)
    client = Client(board)
    client.identity()
    for k in range(count):
        x = rng.integers(0, 256, (2, 2), dtype=np.uint8)
        board.faults = [kinds[k % len(kinds)]]
        try:
            y = client.infer(x)
        except LinkError:
            outcomes["error"] += 1
            continue
        right = np.array(bytearray(board.output(x.tobytes())), np.uint8)
        outcomes["right" if np.array_equal(y, right) else "wrong"] += 1
    return outcomes


def test_faulty_replies_give_the_right_output_or_an_error():
    """600 replies, each hit by a bit flip, a dropped, duplicated or inserted byte, a
    cut or garbage before it: the driver retries and returns the right output, never a
    wrong one (the retry's reply is clean, so none end in an error)."""
    assert fault_outcomes(600) == {"right": 600, "error": 0, "wrong": 0}


def test_negative_control_without_the_reply_check_faults_give_wrong_outputs(monkeypatch):
    """The test above can fail: with the host's CRC check broken, flipped bits reach the
    caller as outputs."""
    monkeypatch.setattr(protocol, "_crc_ok", lambda body, crc, seed: True)
    assert fault_outcomes(600)["wrong"] > 0
