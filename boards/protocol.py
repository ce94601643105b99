"""The host link's framed protocol, in pure Python: frames, the identity record, and a
client that talks it over any byte transport.

The same code drives a board through a serial port (:class:`SerialTransport`) and the
simulated board top under cocotb (``tfl2rtl.sim.board_tb``): the gateware in
:mod:`tfl2rtl.boards.link` is tested against this module, not against a copy of it.

Frames
------
Every frame, in both directions::

    sync (1 byte) | command (1) | length (2, little endian) | payload (length) | crc (2, LE)

``sync`` is :data:`SYNC_REQUEST` (0xA5) from the host and :data:`SYNC_REPLY` (0x5A) from
the device.  ``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, as
:func:`binascii.crc_hqx` with 0xFFFF) over command, length and payload.

Commands and replies
--------------------
- :data:`IDENTIFY` (empty payload): the reply ``IDENTIFY | 0x80`` carries the design's
  :class:`Identity` (model hash, input and output shapes and dtypes, lanes).
- :data:`INFER` (payload: the input tensor, one byte per element in row-major order, in
  its dtype): the reply ``INFER | 0x80`` carries the output tensor the same way.
- :data:`LOAD` (payload: memory number, first row (2 bytes, LE), then whole rows of
  weights; :func:`tfl2rtl.hw.weights.load_payloads`): for designs whose weights live in
  memories the bitstream cannot fill (the iCE40's SPRAM), listed in the identity's
  ``memories``.  The reply ``LOAD | 0x80`` is empty.  Until every memory is full, an
  ``INFER`` gets the error ``NOT_LOADED``; :meth:`Client.load_weights` fills them.
- Anything wrong with a request frame gets an :data:`ERROR` reply whose payload is two
  bytes, the :class:`ErrorCode` and the request's command byte, after which the device
  waits for the next frame: a bad checksum (the payload still went through the
  accelerator, whose output is dropped), an unknown command, a length that does not fit
  the command, a frame cut short (no byte for the device's timeout), or input bytes that
  arrived faster than the accelerator took them.  Bytes outside a frame that are not
  ``sync`` are ignored.
"""

from __future__ import annotations

import binascii
import enum
import struct
import time
from dataclasses import dataclass

import numpy as np

from tfl2rtl.errors import Tfl2RtlError

__all__ = [
    "SYNC_REQUEST", "SYNC_REPLY", "IDENTIFY", "INFER", "LOAD", "ERROR", "REPLY", "MAX_PAYLOAD",
    "ErrorCode", "Frame", "crc16", "encode", "decode", "FrameDecoder", "TensorInfo",
    "Identity", "MemoryInfo", "LinkError", "Client", "SerialTransport",
]

SYNC_REQUEST = 0xA5
SYNC_REPLY = 0x5A
IDENTIFY = 0x01
INFER = 0x02
LOAD = 0x03
ERROR = 0xFF
#: A successful reply's command is the request's with this bit set.
REPLY = 0x80
#: The length field is 16 bits.
MAX_PAYLOAD = 0xFFFF
HEADER = 4  # sync, command, two length bytes
TRAILER = 2  # the CRC

#: The identity record's first bytes and version.
IDENTITY_MAGIC = b"T2R"
IDENTITY_VERSION = 2
DTYPES = {"int8": 0, "uint8": 1}


class ErrorCode(enum.IntEnum):
    """The first payload byte of an :data:`ERROR` reply."""

    BAD_CHECKSUM = 1
    UNKNOWN_COMMAND = 2
    WRONG_LENGTH = 3
    TRUNCATED = 4
    OVERRUN = 5
    NOT_LOADED = 6


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (continuing from ``crc``)."""
    return binascii.crc_hqx(bytes(data), crc)


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its sync byte, command and payload."""

    sync: int
    command: int
    payload: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.command == ERROR

    @property
    def error(self) -> ErrorCode | None:
        """The error code of an :data:`ERROR` frame (None otherwise)."""
        if not self.is_error or not self.payload:
            return None
        try:
            return ErrorCode(self.payload[0])
        except ValueError:
            return None


def encode(command: int, payload: bytes = b"", sync: int = SYNC_REQUEST) -> bytes:
    """One frame: ``sync``, ``command``, the payload's length, the payload and the CRC."""
    payload = bytes(payload)
    if not 0 <= command <= 0xFF:
        raise ValueError(f"command {command} is not a byte")
    if len(payload) > MAX_PAYLOAD:
        raise Tfl2RtlError(f"a frame carries at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = struct.pack("<BH", command, len(payload)) + payload
    return bytes([sync]) + body + struct.pack("<H", crc16(body))


def decode(data: bytes, sync: int = SYNC_REPLY) -> Frame:
    """The one frame that ``data`` holds exactly; raises :class:`LinkError` otherwise."""
    decoder = FrameDecoder(sync)
    frames = decoder.feed(data)
    if len(frames) != 1 or decoder.pending:
        raise LinkError(f"{len(data)} bytes are not one frame")
    return frames[0]


class FrameDecoder:
    """Splits a byte stream into frames: bytes before a ``sync`` are skipped, a frame
    whose CRC does not match raises :class:`LinkError`."""

    def __init__(self, sync: int = SYNC_REPLY):
        self.sync = sync
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held towards an unfinished frame."""
        return len(self._buffer)

    def needed(self) -> int:
        """How many more bytes the frame under way needs at least (1 before a sync)."""
        if not self._buffer:
            return 1
        if len(self._buffer) < HEADER:
            return HEADER - len(self._buffer)
        length = struct.unpack_from("<H", self._buffer, 2)[0]
        return HEADER + length + TRAILER - len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        for byte in bytes(data):
            if not self._buffer and byte != self.sync:
                continue
            self._buffer.append(byte)
            if self.needed() == 0:
                frame, self._buffer = bytes(self._buffer), bytearray()
                body, (crc,) = frame[1:-TRAILER], struct.unpack("<H", frame[-TRAILER:])
                if crc16(body) != crc:
                    raise LinkError(f"reply frame with a bad checksum: {frame.hex()}")
                frames.append(Frame(frame[0], body[0], body[HEADER - 1:]))
        return frames


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor as the link carries it: one byte per element."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def pack(self) -> bytes:
        return (struct.pack("<BB", DTYPES[self.dtype], len(self.shape))
                + struct.pack(f"<{len(self.shape)}I", *self.shape)
                + struct.pack("<fi", self.scale, self.zero_point))

    @classmethod
    def unpack_from(cls, data: bytes, offset: int) -> tuple[TensorInfo, int]:
        code, rank = struct.unpack_from("<BB", data, offset)
        offset += 2
        shape = struct.unpack_from(f"<{rank}I", data, offset)
        offset += 4 * rank
        scale, zero_point = struct.unpack_from("<fi", data, offset)
        names = {v: k for k, v in DTYPES.items()}
        if code not in names:
            raise LinkError(f"identity names an unknown dtype code {code}")
        return cls(tuple(shape), names[code], scale, zero_point), offset + 8


@dataclass(frozen=True)
class MemoryInfo:
    """A weight memory the host loads: the node whose weights it holds, the folding
    that lays them out (``pe x simd`` bytes per row) and its rows."""

    node: int
    pe: int
    simd: int
    rows: int

    @property
    def row_bytes(self) -> int:
        return self.pe * self.simd


@dataclass(frozen=True)
class Identity:
    """What a design says about itself: the model's SHA-256, the input and output
    tensors, the elements per beat of the accelerator's streams, and the weight memories
    the host must load (:class:`MemoryInfo`, in memory-number order; usually none).

    Packed (little endian): ``b"T2R"``, version (1 byte), lanes (2), SHA-256 (32), then
    per tensor (input, output): dtype code (0 int8, 1 uint8), rank, each dimension (4),
    scale (float32) and zero point (int32); then the number of memories (1) and per
    memory its node, pe, simd (2 each) and rows (4)."""

    sha256: str
    input: TensorInfo
    output: TensorInfo
    lanes: int = 1
    memories: tuple[MemoryInfo, ...] = ()

    def pack(self) -> bytes:
        digest = bytes.fromhex(self.sha256)
        if len(digest) != 32:
            raise ValueError("sha256 must be 64 hex digits")
        return (IDENTITY_MAGIC + struct.pack("<BH", IDENTITY_VERSION, self.lanes) + digest
                + self.input.pack() + self.output.pack()
                + struct.pack("<B", len(self.memories))
                + b"".join(struct.pack("<HHHI", m.node, m.pe, m.simd, m.rows)
                           for m in self.memories))

    @classmethod
    def unpack(cls, data: bytes) -> Identity:
        data = bytes(data)
        if not data.startswith(IDENTITY_MAGIC):
            raise LinkError(f"not an identity record: {data[:8].hex()}...")
        try:
            version, lanes = struct.unpack_from("<BH", data, len(IDENTITY_MAGIC))
            if version != IDENTITY_VERSION:
                raise LinkError(f"identity record version {version}; this tfl2rtl reads "
                                f"version {IDENTITY_VERSION}")
            offset = len(IDENTITY_MAGIC) + 3
            digest = data[offset:offset + 32]
            tensor_in, offset = TensorInfo.unpack_from(data, offset + 32)
            tensor_out, offset = TensorInfo.unpack_from(data, offset)
            (count,) = struct.unpack_from("<B", data, offset)
            offset += 1
            memories = []
            for _ in range(count):
                memories.append(MemoryInfo(*struct.unpack_from("<HHHI", data, offset)))
                offset += 10
        except struct.error:
            raise LinkError(f"identity record of {len(data)} bytes is cut short") from None
        if offset != len(data):
            raise LinkError(f"identity record has {len(data) - offset} bytes too many")
        return cls(digest.hex(), tensor_in, tensor_out, lanes, tuple(memories))

    @classmethod
    def of_design(cls, design) -> Identity:
        """The identity of ``design`` (a :class:`tfl2rtl.design.Design`): its graph's,
        its lanes and its network plan's loadable memories."""
        memories = tuple(MemoryInfo(stage.index, stage.fold.pe, stage.fold.simd, rows)
                         for stage, rows, _ in design.network_plan.loadable_memories())
        return cls.of_graph(design.graph, design.lanes, memories)

    @classmethod
    def of_graph(cls, graph, lanes: int = 1, memories: tuple[MemoryInfo, ...] = ()
                 ) -> Identity:
        """The identity of a design built from ``graph`` (a :class:`tfl2rtl.ir.Graph`)."""
        import hashlib
        from pathlib import Path

        def info(name):
            t = graph.tensors[name]
            if t.dtype not in DTYPES:
                raise Tfl2RtlError(f"the link carries int8 or uint8 tensors; {name!r} is "
                                   f"{t.dtype}")
            return TensorInfo(tuple(int(d) for d in t.shape), t.dtype,
                              float(t.scale or 0.0), int(t.zero_point))

        digest = hashlib.sha256(Path(graph.source).read_bytes()).hexdigest()
        return cls(digest, info(graph.inputs[0]), info(graph.outputs[0]), lanes,
                   tuple(memories))


class LinkError(Tfl2RtlError):
    """The device did not answer as the protocol says (or answered with an error)."""

    def __init__(self, message: str, code: ErrorCode | None = None):
        super().__init__(message)
        self.code = code


class Client:
    """The host side of the link over ``transport``, any object with ``write(bytes)``
    and ``read(n) -> bytes`` (which may return fewer bytes when its timeout runs out, as
    pyserial's does).

    Requests are answered in order; a reply that does not come, or comes with a bad
    checksum, raises :class:`LinkError`, and so does an :data:`ERROR` reply (its code
    in ``LinkError.code``)."""

    def __init__(self, transport):
        self.transport = transport
        self._identity = None

    def request(self, command: int, payload: bytes = b"") -> Frame:
        """Send one frame and return the reply frame (an :data:`ERROR` one included)."""
        self.transport.write(encode(command, payload))
        return self.receive()

    def receive(self) -> Frame:
        decoder = FrameDecoder(SYNC_REPLY)
        while True:
            wanted = decoder.needed()
            data = self.transport.read(wanted)
            if not data:
                raise LinkError("no reply from the device (timed out): check the port, "
                                "the baud rate and that the board is programmed")
            frames = decoder.feed(data)
            if frames:
                return frames[0]

    def _checked(self, command: int, payload: bytes = b"") -> bytes:
        reply = self.request(command, payload)
        if reply.is_error:
            code = reply.error
            name = code.name.lower().replace("_", " ") if code else "unknown error"
            raise LinkError(f"the device answered with an error: {name}", code)
        if reply.command != command | REPLY:
            raise LinkError(f"reply 0x{reply.command:02x} to command 0x{command:02x}")
        return reply.payload

    def identity(self) -> Identity:
        """The design's :class:`Identity` (read once, then kept)."""
        if self._identity is None:
            self._identity = Identity.unpack(self._checked(IDENTIFY))
        return self._identity

    def load_weights(self, graph, progress=None) -> int:
        """Fill the design's loadable weight memories (its identity's ``memories``) with
        the weights of ``graph`` (the model it was built from), in :data:`LOAD` frames;
        returns the bytes of weights sent.  ``progress`` gets ``(sent, total)``."""
        from tfl2rtl.folding import Fold
        from tfl2rtl.hw.stages import stage_for
        from tfl2rtl.hw.weights import load_payloads

        plans = []
        for number, memory in enumerate(self.identity().memories):
            if not 0 <= memory.node < len(graph.nodes):
                raise LinkError(f"the design loads node {memory.node}; the model has "
                                f"{len(graph.nodes)} nodes")
            stage = stage_for(graph, memory.node)
            rows, row_bytes = stage.weight_rows(Fold(memory.pe, memory.simd))
            if len(rows) != memory.rows * row_bytes:
                raise LinkError(f"memory {number} has {memory.rows} rows; node "
                                f"{memory.node}'s weights fill {len(rows) // row_bytes}")
            plans.append((number, rows, row_bytes))
        total = sum(len(rows) for _, rows, _ in plans)
        sent = 0
        for number, rows, row_bytes in plans:
            for payload in load_payloads(number, rows, row_bytes):
                self._checked(LOAD, payload)
                sent += len(payload) - 3
                if progress is not None:
                    progress(sent, total)
        return sent

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run one inference: ``x`` in the input's dtype and shape (or size), the output
        tensor back in its dtype and shape."""
        ident = self.identity()
        x = np.asarray(x)
        if x.dtype != np.dtype(ident.input.dtype) or x.size != ident.input.size:
            raise Tfl2RtlError(
                f"input of dtype {x.dtype} and shape {list(x.shape)}; the design takes "
                f"{ident.input.dtype} {list(ident.input.shape)}")
        payload = self._checked(INFER, np.ascontiguousarray(x).tobytes())
        if len(payload) != ident.output.size:
            raise LinkError(f"the device sent {len(payload)} output bytes, not "
                            f"{ident.output.size}")
        return np.frombuffer(payload, dtype=ident.output.dtype).reshape(ident.output.shape)


class SerialTransport:
    """A serial port through pyserial, 8N1 at ``baud``, with a read timeout."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = 2.0):
        try:
            import serial
        except ImportError:
            raise Tfl2RtlError("pyserial is not installed: pip install pyserial") from None
        try:
            self.port = serial.Serial(port, baud, timeout=timeout)
        except (serial.SerialException, OSError) as exc:
            raise Tfl2RtlError(f"cannot open {port}: {exc}") from None
        time.sleep(0.05)
        self.port.reset_input_buffer()

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read(self, n: int) -> bytes:
        return self.port.read(n)

    def close(self) -> None:
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
