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
the device.  ``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021, as
:func:`binascii.crc_hqx`) over command, length and payload: a request's starts from
0xFFFF, a reply's continues from the CRC of the request it answers, over that
request's command, length and payload as the device received them
(:func:`reply_seed`).  So a reply checks only against its own request: a late reply to
an earlier, different request fails the host's check like a corrupted one.

Commands and replies
--------------------
- :data:`IDENTIFY` (empty payload): the reply ``IDENTIFY | 0x80`` carries the design's
  :class:`Identity` (model hash, input and output shapes and dtypes, lanes, the
  architecture and where the weights are).
- :data:`INFER` (payload: the input tensor, one byte per element in row-major order, in
  its dtype): the reply ``INFER | 0x80`` carries the output tensor the same way.
- :data:`LOAD` (payload: memory number, first row (2 bytes, LE), then whole rows of
  weights; :func:`tfl2rtl.hw.weights.load_payloads`): for designs whose weights live in
  memories the bitstream cannot fill (the iCE40's SPRAM), listed in the identity's
  ``memories``.  The reply ``LOAD | 0x80`` is empty.  Until every memory is full, an
  ``INFER`` gets the error ``NOT_LOADED``; :meth:`Client.load_weights` fills them.
- Anything wrong with a request frame gets an :data:`ERROR` reply whose payload is two
  bytes, the :class:`ErrorCode` and the request's command byte, after which the device
  waits for the next frame: a bad checksum, an unknown command, a length that does not
  fit the command, a frame cut short (no byte for the device's timeout), or input bytes
  that arrived faster than the accelerator took them.  Bytes outside a frame that are
  not ``sync`` are ignored.

What the link guarantees
------------------------
- **The device acts on a frame only after its CRC checks.**  An INFER payload streams
  into the accelerator while it arrives, but its output goes back only after the CRC
  checked (otherwise it is taken and dropped, and an error goes back).  A LOAD frame's
  weights are written as they arrive, and a LOAD frame that then fails its check (bad
  checksum, cut short) resets the accelerator: its memories count as empty, and every
  INFER gets ``NOT_LOADED`` until all of them have been loaded again
  (:class:`tfl2rtl.boards.link.HostLink`).  No inference runs on weights from a frame
  that failed its check.
- **The host accepts only replies that check.**  :class:`Client` takes a reply only
  when its sync, command and length are the ones its request can get and its CRC
  checks against that request (:func:`reply_seed`); anything else is noise, skipped.
- **Retries, bounded.**  A request that gets no reply (the transport's read returns
  nothing: its timeout ran out), a reply that does not check, too many bytes without
  one, or an error saying the request did not arrive intact (``BAD_CHECKSUM``,
  ``TRUNCATED``, ``OVERRUN``) is sent again, at most ``attempts`` times; then
  :class:`LinkError` says what happened.  Every read waits at most the transport's
  timeout and an attempt reads at most the longest reply plus ``garbage`` bytes, so no
  call waits forever.  LOAD frames are retried by starting the weights over
  (:meth:`Client.load_weights`), since a frame that failed may have voided them.
- **Never a wrong output.**  :meth:`Client.infer` returns an output only from an INFER
  reply that passed those checks, of the output's exact size; otherwise it raises.
  What CRC-16 cannot promise remains: a corruption that happens to keep the CRC
  passes, as on any CRC-16 link.  That is about one in 65,536 random corruptions, and
  none of: an odd number of flipped bits, two flipped bits in a frame of up to 4,094
  bytes, a burst of up to 16 bits.

The transport's timeout must be longer than the device's frame timeout
(:class:`tfl2rtl.boards.link.BoardTop`'s ``timeout_bytes``, 256 byte times by default)
plus the accelerator's time, so that a frame the device is still waiting for has ended
before the host sends it again.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import struct
import time
from dataclasses import dataclass

import numpy as np

from tfl2rtl.errors import Tfl2RtlError

__all__ = [
    "SYNC_REQUEST", "SYNC_REPLY", "IDENTIFY", "INFER", "LOAD", "ERROR", "REPLY", "MAX_PAYLOAD",
    "ErrorCode", "Frame", "crc16", "encode", "decode", "FrameDecoder", "TensorInfo",
    "Identity", "MemoryInfo", "LinkError", "Unanswered", "Client", "SerialTransport",
    "reply_seed", "device_seed", "RETRIED",
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
IDENTITY_VERSION = 3
DTYPES = {"int8": 0, "uint8": 1, "int16": 2}


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
        """The error code of an :data:`ERROR` frame (None for other frames); raises
        :class:`LinkError` for an ERROR frame without a code or with one this tfl2rtl
        does not know."""
        if not self.is_error:
            return None
        if not self.payload:
            raise LinkError("the device sent an error reply without an error code")
        try:
            return ErrorCode(self.payload[0])
        except ValueError:
            raise LinkError(f"the device answered with error code {self.payload[0]}, which "
                            "this tfl2rtl does not know (a bitstream from another "
                            "version?)") from None


def encode(command: int, payload: bytes = b"", sync: int = SYNC_REQUEST,
           seed: int = 0xFFFF) -> bytes:
    """One frame: ``sync``, ``command``, the payload's length, the payload and the CRC
    (starting from ``seed``: a reply's from its request's, :func:`reply_seed`)."""
    payload = bytes(payload)
    if not 0 <= command <= 0xFF:
        raise ValueError(f"command {command} is not a byte")
    if len(payload) > MAX_PAYLOAD:
        raise Tfl2RtlError(f"a frame carries at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = struct.pack("<BH", command, len(payload)) + payload
    return bytes([sync]) + body + struct.pack("<H", crc16(body, seed))


def reply_seed(request: bytes) -> int:
    """Where the CRC of a reply to ``request`` (a whole frame, as :func:`encode` makes
    it) starts: the CRC of the request's command, length and payload."""
    return crc16(bytes(request)[1:-TRAILER])


def device_seed(data: bytes) -> int:
    """Where the CRC of the device's reply to the bytes ``data`` starts: the CRC of what
    it takes into its check, from its first :data:`SYNC_REQUEST` on, without the sync and
    the CRC field (all of it, when the frame is cut short).  For a whole frame, that is
    :func:`reply_seed`."""
    data = bytes(data)
    frame = data[data.index(SYNC_REQUEST):]
    if len(frame) >= HEADER:
        end = HEADER + struct.unpack_from("<H", frame, 2)[0]
        if len(frame) >= end + TRAILER:
            return crc16(frame[1:end])
    return crc16(frame[1:])


def decode(data: bytes, sync: int = SYNC_REPLY, seed: int = 0xFFFF) -> Frame:
    """The one frame that ``data`` holds exactly, its CRC starting from ``seed`` (a
    reply's: :func:`reply_seed`); raises :class:`LinkError` otherwise."""
    decoder = FrameDecoder(sync, seed)
    frames = decoder.feed(data)
    if len(frames) != 1 or decoder.pending:
        raise LinkError(f"{len(data)} bytes are not one frame")
    return frames[0]


class FrameDecoder:
    """Splits a byte stream into frames: bytes before a ``sync`` are skipped, a frame
    whose CRC (starting from ``seed``) does not match raises :class:`LinkError`."""

    def __init__(self, sync: int = SYNC_REPLY, seed: int = 0xFFFF):
        self.sync = sync
        self.seed = seed
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
                if crc16(body, self.seed) != crc:
                    raise LinkError(f"frame with a bad checksum: {frame.hex()}")
                frames.append(Frame(frame[0], body[0], body[HEADER - 1:]))
        return frames


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor as the link carries it: one byte per element, or two,
    little endian, for an int16 tensor (a 16x8 model's)."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def size(self) -> int:
        """Elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def wire_dtype(self) -> np.dtype:
        """The elements' numpy dtype on the link (little endian)."""
        return np.dtype(self.dtype).newbyteorder("<")

    @property
    def nbytes(self) -> int:
        """Bytes on the link."""
        return self.size * self.wire_dtype.itemsize

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
    tensors, the elements per beat of the accelerator's streams, the weight memories
    the host must load (:class:`MemoryInfo`, in memory-number order; usually none), its
    architecture (``"dataflow"`` or ``"sequential"``) and where its weights are
    (``"chip"`` or ``"flash"``).

    Packed (little endian): ``b"T2R"``, version (1 byte), lanes (2), the architecture
    byte (bit 0: sequential, bit 1: weights in flash), SHA-256 (32), then
    per tensor (input, output): dtype code (0 int8, 1 uint8, 2 int16), rank, each dimension (4),
    scale (float32) and zero point (int32); then the number of memories (1) and per
    memory its node, pe, simd (2 each) and rows (4)."""

    sha256: str
    input: TensorInfo
    output: TensorInfo
    lanes: int = 1
    memories: tuple[MemoryInfo, ...] = ()
    architecture: str = "dataflow"
    weights: str = "chip"

    def pack(self) -> bytes:
        digest = bytes.fromhex(self.sha256)
        if len(digest) != 32:
            raise ValueError("sha256 must be 64 hex digits")
        flags = (int(self.architecture == "sequential")
                 | int(self.weights == "flash") << 1)
        return (IDENTITY_MAGIC + struct.pack("<BHB", IDENTITY_VERSION, self.lanes, flags)
                + digest
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
            (flags,) = struct.unpack_from("<B", data, len(IDENTITY_MAGIC) + 3)
            offset = len(IDENTITY_MAGIC) + 4
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
        return cls(digest.hex(), tensor_in, tensor_out, lanes, tuple(memories),
                   "sequential" if flags & 1 else "dataflow", "flash" if flags & 2 else "chip")

    @classmethod
    def of_design(cls, design) -> Identity:
        """The identity of ``design`` (a :class:`tfl2rtl.design.Design`): its graph's,
        its lanes, its network plan's loadable memories, its architecture and where its
        weights are."""
        memories = tuple(MemoryInfo(stage.index, stage.fold.pe, stage.fold.simd, rows)
                         for stage, rows, _ in design.network_plan.loadable_memories())
        return dataclasses.replace(
            cls.of_graph(design.graph, design.lanes, memories),
            architecture=design.architecture,
            weights="flash" if design.weights_in_flash else "chip")

    @classmethod
    def of_graph(cls, graph, lanes: int = 1, memories: tuple[MemoryInfo, ...] = ()
                 ) -> Identity:
        """The identity of a design built from ``graph`` (a :class:`tfl2rtl.ir.Graph`)."""
        import hashlib
        from pathlib import Path

        def info(name):
            t = graph.tensors[name]
            if t.dtype not in DTYPES:
                raise Tfl2RtlError(f"the link carries int8, uint8 or int16 tensors; {name!r} "
                                   f"is {t.dtype}")
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


#: The longest identity record (rank 255 tensors, 255 memories): the longest reply to
#: IDENTIFY the host accepts.
IDENTITY_LIMIT = len(IDENTITY_MAGIC) + 3 + 32 + 2 * (2 + 4 * 255 + 8) + 1 + 10 * 255
#: Errors that say the request did not arrive intact (or in time): sent again.
RETRIED = frozenset({ErrorCode.BAD_CHECKSUM, ErrorCode.TRUNCATED, ErrorCode.OVERRUN})
NAMES = {IDENTIFY: "IDENTIFY", INFER: "INFER", LOAD: "LOAD"}


class Unanswered(LinkError):
    """No reply that passed the checks came, in every attempt (``LinkError.code`` is
    the last checked error reply's, if any)."""


def _crc_ok(body: bytes, crc: int, seed: int) -> bool:
    """A reply's check: the CRC it carries against the one of its body from ``seed``."""
    return crc16(body, seed) == crc


class Client:
    """The host side of the link over ``transport``, any object with ``write(bytes)``
    and ``read(n) -> bytes`` (which may return fewer bytes when its timeout runs out, as
    pyserial's does) and optionally ``reset_input_buffer()`` (called before each
    attempt, to drop stale bytes).

    Each request goes out at most ``attempts`` times; a reply is taken only when it
    checks (see the module's "What the link guarantees"), and an attempt gives up after
    a read that returns nothing or after reading the longest reply plus ``garbage``
    bytes without one.  When no attempt gets a reply, :class:`Unanswered` (a
    :class:`LinkError`) is raised; an :data:`ERROR` reply that checks and is not one of
    the :data:`RETRIED` raises :class:`LinkError` with its code in ``LinkError.code``."""

    def __init__(self, transport, attempts: int = 4, garbage: int = 1024):
        if attempts < 1:
            raise Tfl2RtlError(f"{attempts} attempts: at least one")
        self.transport = transport
        self.attempts = attempts
        self.garbage = garbage
        self._identity = None

    def request(self, command: int, payload: bytes = b"", reply_length: int | None = None,
                attempts: int | None = None) -> Frame:
        """Send one frame (again while it gets no reply that checks, or a
        :data:`RETRIED` error) and return the reply: ``command | REPLY`` with
        ``reply_length`` bytes of payload (any length up to the identity's limit when
        None) or an :data:`ERROR` reply that checks."""
        frame = encode(command, payload)
        seed = reply_seed(frame)
        limit = IDENTITY_LIMIT if reply_length is None else reply_length

        def fits(reply_command, length):
            if reply_command == ERROR:
                return length == 2
            return reply_command == command | REPLY and (
                length <= limit if reply_length is None else length == reply_length)

        reasons, code = [], None
        for _ in range(self.attempts if attempts is None else attempts):
            reset = getattr(self.transport, "reset_input_buffer", None)
            if reset is not None:
                reset()
            self.transport.write(frame)
            reply = self._receive(seed, fits, HEADER + limit + TRAILER + self.garbage)
            if isinstance(reply, str):
                reasons.append(reply)
                continue
            if reply.is_error and reply.error in RETRIED:
                code = reply.error
                reasons.append(f"error {code.name.lower().replace('_', ' ')}")
                continue
            return reply
        name = NAMES.get(command, f"command 0x{command:02x}")
        raise Unanswered(
            f"no valid reply from the device to {name} in {len(reasons)} attempts "
            f"({', '.join(dict.fromkeys(reasons))}): check the port, the baud rate and "
            "that the board is programmed", code)

    def receive(self, seed: int = 0xFFFF, fits=None, budget: int | None = None) -> Frame:
        """Read one reply frame whose CRC continues from ``seed`` and whose ``(command,
        length)`` ``fits`` accepts (any when None); raises :class:`LinkError` when none
        comes within a read timeout or ``budget`` bytes (the longest frame plus
        ``garbage`` when None)."""
        reply = self._receive(seed, fits or (lambda command, length: True),
                              budget or HEADER + MAX_PAYLOAD + TRAILER + self.garbage)
        if isinstance(reply, str):
            raise LinkError(f"no valid reply from the device ({reply})")
        return reply

    def _receive(self, seed: int, fits, budget: int) -> Frame | str:
        """The first frame among the bytes that come that fits and checks, or why none
        did: bytes before a sync, and a sync whose header does not fit, are skipped."""
        buffer = bytearray()
        taken = 0
        while True:
            # The bytes the frame under way needs (one while looking for a sync).
            if len(buffer) < HEADER:
                wanted = HEADER - len(buffer) if buffer else 1
            else:
                wanted = HEADER + struct.unpack_from("<H", buffer, 2)[0] + TRAILER - len(buffer)
            data = self.transport.read(wanted)
            if not data:
                return "timed out"
            taken += len(data)
            buffer += data
            while buffer:
                if buffer[0] != SYNC_REPLY:
                    del buffer[0]
                    continue
                if len(buffer) < HEADER:
                    break
                command, length = buffer[1], struct.unpack_from("<H", buffer, 2)[0]
                if not fits(command, length):  # a sync byte in noise
                    del buffer[0]
                    continue
                if len(buffer) < HEADER + length + TRAILER:
                    break
                frame = bytes(buffer[:HEADER + length + TRAILER])
                (crc,) = struct.unpack_from("<H", frame, len(frame) - TRAILER)
                if not _crc_ok(frame[1:-TRAILER], crc, seed):
                    # The device's answer to a request it did not get intact, or a
                    # reply corrupted on the way.
                    return "a reply that fails its check"
                return Frame(frame[0], command, frame[HEADER:-TRAILER])
            if taken > budget:
                return f"{taken} bytes without a reply"

    def _checked(self, command: int, payload: bytes = b"", reply_length: int | None = None,
                 attempts: int | None = None) -> bytes:
        reply = self.request(command, payload, reply_length, attempts)
        if reply.is_error:
            code = reply.error
            raise LinkError(f"the device answered with an error: "
                            f"{code.name.lower().replace('_', ' ')}", code)
        return reply.payload

    def identity(self) -> Identity:
        """The design's :class:`Identity` (read once, then kept)."""
        if self._identity is None:
            self._identity = Identity.unpack(self._checked(IDENTIFY))
        return self._identity

    def load_weights(self, graph, progress=None) -> int:
        """Fill the design's loadable weight memories (its identity's ``memories``) with
        the weights of ``graph`` (the model it was built from), in :data:`LOAD` frames;
        returns the bytes of weights sent.  ``progress`` gets ``(sent, total)``.

        A LOAD frame that fails (no reply that checks, or a :data:`RETRIED` error) may
        have voided every memory, so the loading starts over from the first frame, at
        most ``attempts`` times."""
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
        payloads = [payload for number, rows, row_bytes in plans
                    for payload in load_payloads(number, rows, row_bytes)]
        total = sum(len(rows) for _, rows, _ in plans)
        failed = None
        for _ in range(self.attempts):
            sent = 0
            try:
                for payload in payloads:
                    self._checked(LOAD, payload, reply_length=0, attempts=1)
                    sent += len(payload) - 3
                    if progress is not None:
                        progress(sent, total)
                return sent
            except Unanswered as exc:
                failed = exc
        raise LinkError(f"the weights did not load in {self.attempts} attempts, each "
                        f"started over after a LOAD frame failed; the last: {failed}",
                        failed.code)

    def infer(self, x: np.ndarray, weights=None) -> np.ndarray:
        """Run one inference: ``x`` in the input's dtype and shape (or size), the output
        tensor back in its dtype and shape.  With ``weights`` (the
        :class:`tfl2rtl.ir.Graph` the design was built from), a ``NOT_LOADED`` answer
        loads them (:meth:`load_weights`) and the inference is sent again, once."""
        ident = self.identity()
        x = np.asarray(x)
        if x.dtype != np.dtype(ident.input.dtype) or x.size != ident.input.size:
            raise Tfl2RtlError(
                f"input of dtype {x.dtype} and shape {list(x.shape)}; the design takes "
                f"{ident.input.dtype} {list(ident.input.shape)}")
        data = np.ascontiguousarray(x, dtype=ident.input.wire_dtype).tobytes()
        try:
            payload = self._checked(INFER, data, reply_length=ident.output.nbytes)
        except LinkError as exc:
            if weights is None or exc.code is not ErrorCode.NOT_LOADED:
                raise
            self.load_weights(weights)
            payload = self._checked(INFER, data, reply_length=ident.output.nbytes)
        output = np.frombuffer(payload, dtype=ident.output.wire_dtype)
        return output.astype(ident.output.dtype).reshape(ident.output.shape)


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

    def reset_input_buffer(self) -> None:
        self.port.reset_input_buffer()

    def close(self) -> None:
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
