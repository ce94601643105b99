"""Faults injected on the serial line of a simulated board, and the campaign that sends
them through the real host driver (:class:`tfl2rtl.boards.protocol.Client`).

A fault hits one frame: a request on its way to the board, or the reply to it on its
way back, or the board itself (a reset while a LOAD or an INFER goes on).  The kinds
(:data:`KINDS`):

- ``request_bit_flip``, ``request_drop``, ``request_duplicate``, ``request_insert``:
  one bit flipped, one byte lost, doubled, or one random byte put in, at a random place
  in the request;  ``request_truncate``: the request stops at a random byte and its rest
  never comes;  ``request_garbage``: 1-16 random bytes (syncs among them) before it.
- ``reply_bit_flip``, ``reply_drop``, ``reply_duplicate``, ``reply_insert``,
  ``reply_truncate``, ``reply_garbage``: the same, to the reply's bytes.
- ``reset_during_load``: the board's reset pulses at a random bit of a LOAD frame;
  ``reset_during_infer``: at a random bit of an INFER frame or a random byte of its
  reply.

The line (:mod:`tfl2rtl.sim.board_tb`'s transport) takes a :class:`Fault` with
``arm(fault)`` and applies it to the frame it names.  :func:`campaign` runs one
operation per fault (an inference, or loading the weights, whichever frame the fault
is for) and then a clean inference, and sorts each round by what the host got:

``right``
    the golden model's exact output (or the weights loaded), and the clean inference
    after it right too;
``error``
    a :class:`~tfl2rtl.boards.protocol.LinkError` of one line, and the board answering
    the clean inference after it;
``wrong``
    an output that differs from the golden model's, in the round or in the clean
    inference after it (the weights it left behind were wrong);
``dead``
    the clean inference after the round failed: the board stopped answering;
``hang``
    the round took longer in simulated time than the driver's bounds allow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

__all__ = ["KINDS", "OUTCOMES", "Fault", "make_fault", "campaign"]

REQUEST = ("request_bit_flip", "request_drop", "request_duplicate", "request_insert",
           "request_truncate", "request_garbage")
REPLY = ("reply_bit_flip", "reply_drop", "reply_duplicate", "reply_insert",
         "reply_truncate", "reply_garbage")
RESETS = ("reset_during_load", "reset_during_infer")
KINDS = REQUEST + REPLY + RESETS
OUTCOMES = ("right", "error", "wrong", "dead", "hang")


def _junk(rng: random.Random, count: int) -> bytes:
    """Random bytes, with syncs and plausible headers more often than chance."""
    return bytes(rng.choice([0xA5, 0x5A, 0x02, 0x03, 0x82, 0xFF, 0, rng.randrange(256)])
                 for _ in range(count))


@dataclass
class Fault:
    """One fault: its ``kind``, the frame it hits (``skip`` writes after it is armed
    go by untouched first) and where in it (``position``, a byte; ``bit``).

    For a request fault :meth:`request` changes the frame's bytes; for a reply fault
    :meth:`reply_byte` changes each reply byte (``index`` counts them from the
    request); a reset fault names the bit of the request at which the reset comes
    (``reset_bit``), or the reply byte (``position``, with ``in_reply``).  ``fired``
    says whether it happened."""

    kind: str
    skip: int = 0
    position: int = 0
    bit: int = 0
    extra: bytes = b""
    in_reply: bool = False
    reset_bit: int | None = None
    fired: bool = False

    @property
    def side(self) -> str:
        if self.kind in REQUEST:
            return "request"
        if self.kind in REPLY or self.in_reply:
            return "reply"
        return "reset"

    def request(self, data: bytes) -> bytes:
        """The request as the board gets it."""
        k = self.position % len(data)
        self.fired = True
        name = self.kind.removeprefix("request_")
        if name == "bit_flip":
            return data[:k] + bytes([data[k] ^ 1 << self.bit]) + data[k + 1:]
        if name == "drop":
            return data[:k] + data[k + 1:]
        if name == "duplicate":
            return data[:k + 1] + data[k:]
        if name == "insert":
            return data[:k] + self.extra + data[k:]
        if name == "truncate":
            return data[:max(1, k)]
        return self.extra + data  # garbage

    def reply_byte(self, index: int, byte: int) -> bytes:
        """What the host gets for the reply's byte ``index`` (from 0)."""
        name = self.kind.removeprefix("reply_")
        if name == "truncate" and index >= self.position:
            self.fired = True
            return b""
        if index != self.position:
            return bytes([byte])
        self.fired = True
        if name == "bit_flip":
            return bytes([byte ^ 1 << self.bit])
        if name == "drop":
            return b""
        if name == "duplicate":
            return bytes([byte, byte])
        if name in ("insert", "garbage"):  # garbage: position 0, before the reply
            return self.extra + bytes([byte])
        return bytes([byte])  # a reset: the line does it


def make_fault(kind: str, rng: random.Random, request_bytes: int, reply_bytes: int,
               skip: int = 0) -> Fault:
    """A fault of ``kind`` at a random place of a frame of ``request_bytes`` whose reply
    has ``reply_bytes``."""
    fault = Fault(kind, skip=skip, bit=rng.randrange(8))
    if kind in REQUEST:
        fault.position = rng.randrange(1 if kind == "request_garbage" else request_bytes)
        fault.extra = _junk(rng, rng.randint(1, 16) if kind == "request_garbage" else 1)
    elif kind in REPLY:
        fault.position = 0 if kind == "reply_garbage" else rng.randrange(reply_bytes)
        fault.extra = _junk(rng, rng.randint(1, 16) if kind == "reply_garbage" else 1)
    elif kind == "reset_during_infer" and rng.random() < 0.5:
        fault.in_reply = True
        fault.position = rng.randrange(reply_bytes)
    else:
        fault.reset_bit = rng.randrange(10 * request_bytes)
    return fault


@dataclass
class Tally:
    """Rounds by fault kind and outcome, the frames the host wrote in them (the
    retries and reloads the faults cost), the faults that did not fire, and examples."""

    counts: dict = field(default_factory=lambda: {k: dict.fromkeys(OUTCOMES, 0)
                                                  for k in KINDS})
    writes: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    unfired: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    errors: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"counts": self.counts, "writes": self.writes, "unfired": self.unfired,
                "errors": self.errors[:20], "problems": self.problems[:20]}


def campaign(client, line, graph, inputs: np.ndarray, expected: np.ndarray, count: int,
             seed: int, round_bound_ns: float, kinds=KINDS) -> Tally:
    """``count`` rounds through ``client``, one fault each (``kinds`` in turn) armed on
    ``line`` (the transport: ``arm(fault)``, ``disarm()``, ``now()`` in simulated ns,
    ``writes`` counting the frames written).  ``graph`` is
    the model (its weights go out when the board asks); ``inputs`` and ``expected`` are
    vectors and their golden outputs, one per row."""
    from tfl2rtl.boards.protocol import LOAD, LinkError, encode
    from tfl2rtl.folding import Fold
    from tfl2rtl.hw.stages import stage_for
    from tfl2rtl.hw.weights import load_payloads

    rng = random.Random(seed)
    ident = client.identity()
    loads = []
    for number, memory in enumerate(ident.memories):
        rows, row_bytes = stage_for(graph, memory.node).weight_rows(Fold(memory.pe,
                                                                         memory.simd))
        loads += [len(encode(LOAD, p)) for p in load_payloads(number, rows, row_bytes)]
    infer_bytes, reply_bytes = ident.input.nbytes + 6, ident.output.nbytes + 6
    shape = ident.input.shape
    tally = Tally()

    def infer(row):
        out = client.infer(inputs[row].reshape(shape), weights=graph if loads else None)
        return np.array_equal(out.reshape(-1), expected[row])

    for n in range(count):
        kind = kinds[n % len(kinds)]
        on_load = bool(loads) and (kind == "reset_during_load" or (
            kind not in RESETS and rng.random() < 1 / 3))
        if kind == "reset_during_load" and not loads:
            continue
        row = rng.randrange(len(inputs))
        if on_load:
            skip = rng.randrange(len(loads))
            fault = make_fault(kind, rng, loads[skip], 6, skip)
        else:
            fault = make_fault(kind, rng, infer_bytes, reply_bytes)
        began, writes = line.now(), line.writes
        line.arm(fault)
        outcome = "right"
        try:
            if on_load:
                client.load_weights(graph)
            elif not infer(row):
                outcome = "wrong"
        except LinkError as exc:
            outcome = "error"
            message = str(exc)
            tally.errors.append(f"{kind}: {message}")
            if "\n" in message or not message:
                tally.problems.append(f"{kind}: not one line: {message!r}")
        line.disarm()
        after = rng.randrange(len(inputs))
        try:  # the board keeps answering, with the right weights
            if not infer(after):
                outcome = "wrong"
        except LinkError as exc:
            outcome = "dead"
            tally.problems.append(f"{kind}: no answer after the fault: {exc}")
        if outcome != "wrong" and line.now() - began > round_bound_ns:
            outcome = "hang"
        if not fault.fired:
            tally.unfired[kind] += 1
            continue
        tally.counts[kind][outcome] += 1
        tally.writes[kind] += line.writes - writes
        if outcome in ("wrong", "dead", "hang"):
            tally.problems.append(f"round {n}, {kind} ({fault}): {outcome}")
    return tally
