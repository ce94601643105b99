"""The host link's frames, identity record and client, in pure Python."""

import numpy as np
import pytest

from conftest import ZOO
from tfl2rtl.api import load
from tfl2rtl.boards import protocol
from tfl2rtl.boards.protocol import (
    Client,
    ErrorCode,
    Frame,
    FrameDecoder,
    Identity,
    LinkError,
    MemoryInfo,
    TensorInfo,
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
    assert packed.startswith(b"T2R\x02") and Identity.unpack(packed) == identity
    with pytest.raises(LinkError, match="cut short"):
        Identity.unpack(packed[:-1])
    with pytest.raises(LinkError, match="1 bytes too many"):
        Identity.unpack(packed + b"\x00")
    loading = Identity.of_graph(graph, 1, (MemoryInfo(1, 4, 2, 32), MemoryInfo(2, 1, 16, 1)))
    packed = loading.pack()
    assert Identity.unpack(packed) == loading and len(packed) == len(identity.pack()) + 20
    with pytest.raises(LinkError, match="cut short"):
        Identity.unpack(packed[:-3])


def test_client_loads_the_weights_the_identity_lists():
    """``load_weights`` sends each listed memory's rows (the stage's own layout at the
    listed folding) in LOAD frames that together cover every row once."""
    graph = load(HELLO_WORLD)
    memories = (MemoryInfo(1, 4, 2, 32), MemoryInfo(0, 16, 1, 1))
    identity = Identity.of_graph(graph, 1, memories)
    frames = [encode(0x81, identity.pack(), sync=0x5A)] + [encode(0x83, sync=0x5A)] * 2
    transport = Scripted(b"".join(frames))
    client = Client(transport)
    progress = []
    assert client.load_weights(graph, lambda sent, total: progress.append((sent, total))) \
        == 64 * 4 + 16
    assert progress == [(256, 272), (272, 272)]
    sent = FrameDecoder(protocol.SYNC_REQUEST).feed(bytes(transport.written))
    assert [f.command for f in sent] == [protocol.IDENTIFY, protocol.LOAD, protocol.LOAD]
    for number, (memory, frame) in enumerate(zip(memories, sent[1:], strict=True)):
        stage = stage_for(graph, memory.node)
        rows, _ = stage.weight_rows(Fold(memory.pe, memory.simd))
        assert frame.payload == bytes([number, 0, 0]) + rows
    wrong = Identity.of_graph(graph, 1, (MemoryInfo(1, 4, 2, 31),))
    client = Client(Scripted(encode(0x81, wrong.pack(), sync=0x5A)))
    with pytest.raises(LinkError, match="memory 0 has 31 rows; node 1's weights fill 32"):
        client.load_weights(graph)


class Scripted:
    """A transport that returns prepared reply bytes (the replies a device would send)
    and records what was written; an empty read is a timeout."""

    def __init__(self, replies: bytes):
        self.replies = bytearray(replies)
        self.written = bytearray()

    def write(self, data):
        self.written += data

    def read(self, n):
        data = bytes(self.replies[:n])
        del self.replies[:n]
        return data


def test_client_requests_and_errors():
    identity = Identity("ab" * 32, TensorInfo((2, 2), "uint8"), TensorInfo((3,), "int8"))
    replies = (encode(0x81, identity.pack(), sync=0x5A)
               + encode(0x82, bytes([1, 0xFF, 3]), sync=0x5A)
               + encode(0xFF, bytes([ErrorCode.BAD_CHECKSUM, 0x02]), sync=0x5A))
    transport = Scripted(replies)
    client = Client(transport)
    x = np.array([[1, 2], [3, 250]], np.uint8)
    np.testing.assert_array_equal(client.infer(x), np.array([1, -1, 3], np.int8))
    assert transport.written == encode(protocol.IDENTIFY) + encode(protocol.INFER, x.tobytes())
    with pytest.raises(LinkError, match="error: bad checksum") as caught:
        client.infer(x)
    assert caught.value.code is ErrorCode.BAD_CHECKSUM
    with pytest.raises(LinkError, match="no reply from the device"):
        client.infer(x)
    with pytest.raises(Tfl2RtlError, match=r"the design takes uint8 \[2, 2\]"):
        client.infer(x.astype(np.int8))
