"""Stream helpers for Amaranth simulation tests.

:func:`put` and :func:`get` drive and drain an :mod:`amaranth.lib.stream` interface from an
async testbench.  Given a seeded :class:`random.Random`, :func:`put` leaves idle cycles
between beats (the producer never waits for ``ready`` before asserting ``valid``) and
:func:`get` holds ``ready`` low for a while (backpressure).  Tests run once without and
once with both, and must see the same values.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Cat, Fragment
from amaranth.sim import Simulator

from tfl2rtl.hw.pipeline import fabric_product

__all__ = ["STALL_MODES", "Timing", "put", "get", "simulate", "load_beats", "DSP_PLATFORM",
           "axis", "run_network"]


class _RegisteredProducts:
    """A stand-in platform whose pipelined products come from its
    :data:`tfl2rtl.hw.pipeline.PRODUCT_HOOK` (built in the fabric, as a DSP block with
    its own registers computes them): runs a component's hook path in simulation."""

    get_registered_product = staticmethod(fabric_product)


#: Pass as ``platform`` to :func:`simulate` to run the components' product-hook path.
DSP_PLATFORM = _RegisteredProducts()


class Timing:
    """When a helper may pause: never (``rng=None``), or before a beat with probability
    ``pause`` for 1-3 cycles, one pause in five up to ``longest`` cycles instead (long
    enough to fill any pipeline)."""

    def __init__(self, rng: random.Random | None = None, pause: float = 0.3, longest: int = 20):
        self.rng = rng
        self.pause = pause
        self.longest = longest

    def idle_cycles(self) -> int:
        if self.rng is None or self.rng.random() >= self.pause:
            return 0
        if self.rng.random() < 0.2:
            return self.rng.randint(1, self.longest)
        return self.rng.randint(1, 3)


#: ``(input timing, output timing)`` factories for ``pytest.mark.parametrize``: straight
#: through, and random stalls on the input with random backpressure on the output.
STALL_MODES = {
    "streaming": lambda seed: (Timing(), Timing()),
    "stalls": lambda seed: (Timing(random.Random(seed)), Timing(random.Random(seed + 1))),
}


async def put(ctx, stream, payloads, timing: Timing | None = None):
    """Send every payload in ``payloads`` on ``stream``, in order."""
    timing = timing or Timing()
    for payload in payloads:
        for _ in range(timing.idle_cycles()):
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def get(ctx, stream, count: int, timing: Timing | None = None, cycles=None) -> list:
    """Receive ``count`` payloads from ``stream``.

    If ``cycles`` is a list, the cycle number (counted from this call) of each transfer is
    appended to it.
    """
    timing = timing or Timing()
    payloads = []
    cycle = 0
    for _ in range(count):
        for _ in range(timing.idle_cycles()):
            await ctx.tick()
            cycle += 1
        ctx.set(stream.ready, 1)
        while True:
            _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
            cycle += 1
            if valid:
                break
        ctx.set(stream.ready, 0)
        payloads.append(payload)
        if cycles is not None:
            cycles.append(cycle)
    return payloads


def load_beats(payloads) -> list[dict]:
    """The beats of the weight load stream (:data:`tfl2rtl.hw.weights.LOAD_LAYOUT`) that
    carry ``payloads`` (:func:`tfl2rtl.hw.weights.load_payloads`: memory, first row,
    bytes), as dicts for ``put`` on an always-ready stream."""
    beats = []
    for payload in payloads:
        memory, row = payload[0], int.from_bytes(payload[1:3], "little")
        beats += [{"memory": memory, "row": row, "first": k == 0, "data": byte}
                  for k, byte in enumerate(payload[3:])]
    return beats


def simulate(dut, *testbenches, deadline: int = 100_000, vcd: str | None = None,
             platform=None):
    """Run ``testbenches`` against ``dut`` (elaborated for ``platform``, when given) on a
    1 MHz ``sync`` clock until they all return.

    Fails after ``deadline`` cycles (a lost or stuck beat would otherwise hang the test).
    """
    sim = Simulator(dut if platform is None else Fragment.get(dut, platform))
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)

    async def watchdog(ctx):
        for _ in range(deadline):
            await ctx.tick()
        raise AssertionError(f"the testbenches are still running after {deadline} cycles")

    sim.add_testbench(watchdog, background=True)
    if vcd is None:
        sim.run()
    else:
        with sim.write_vcd(vcd):
            sim.run()


def axis(dut, side):
    """An AXI4-Stream port of ``dut`` as a stream for the helpers; the payload of
    ``m_axis`` is ``tdata | tlast << (8 * lanes)``."""
    payload = getattr(dut, f"{side}_tdata")
    if side == "m_axis":
        payload = Cat(payload, dut.m_axis_tlast)
    return SimpleNamespace(valid=getattr(dut, f"{side}_tvalid"),
                           ready=getattr(dut, f"{side}_tready"), payload=payload)


def run_network(dut, graph, inputs, mode, seed=0, cycles=None):
    """Stream ``inputs`` (one row per vector, the model's input dtype) through ``dut`` (a
    whole design behind AXI4-Stream ports: a dataflow network or a sequential engine);
    return its outputs (one row per vector, the model's output dtype) and the ``tlast``
    of every output beat."""
    in_timing, out_timing = STALL_MODES[mode](seed)
    out_dtype = np.dtype(graph.tensors[graph.outputs[0]].dtype)
    lanes = dut.lanes
    outputs, lasts = [], []
    # Beats of ``lanes`` bytes, the first element in the lowest byte.
    weights = 1 << (8 * np.arange(lanes, dtype=object))
    beats = (inputs.view(np.uint8).reshape(-1, lanes).astype(object) * weights).sum(axis=1)

    async def producer(ctx):
        await put(ctx, axis(dut, "s_axis"), beats.tolist(), in_timing)

    async def consumer(ctx):
        count = inputs.shape[0] * dut.plan.out_size // lanes
        for payload in await get(ctx, axis(dut, "m_axis"), count, out_timing, cycles):
            outputs.extend((payload >> (8 * lane)) & 0xFF for lane in range(lanes))
            lasts.append(payload >> (8 * lanes))

    simulate(dut, producer, consumer)
    got = np.array(outputs, dtype=np.uint8).view(out_dtype).reshape(len(inputs), -1)
    return got, lasts
