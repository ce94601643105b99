"""cocotb testbench for :class:`tfl2rtl.hw.network.FullyConnectedNetwork`'s Verilog.

Run by :func:`tfl2rtl.sim.runner.simulate_network`, which writes the input and expected
vectors and a JSON configuration and names it in ``TFL2RTL_SIM_CONFIG``.  Each test
resets the design, streams every input vector into ``s_axis``, takes every output from
``m_axis``, checks each value and ``tlast`` against the golden model's, counts clock
cycles, and writes what it saw to ``<results_dir>/<test>.json``.

Signals change only at falling clock edges and are read in the read-only phase after
them, so a handshake seen there completes at the next rising edge whatever order the
simulator evaluates processes in.
"""

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

CLOCK_NS = 10


class Cycles:
    """Rising clock edges since reset was released."""

    def __init__(self, dut):
        self.count = 0
        self._dut = dut

    async def run(self):
        while True:
            await RisingEdge(self._dut.clk)
            self.count += 1


def _config():
    config = json.loads(Path(os.environ["TFL2RTL_SIM_CONFIG"]).read_text())
    inputs = np.load(config["inputs"])
    expected = np.load(config["expected"])
    return config, inputs, expected


async def _reset(dut):
    dut.rst.value = 1
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tlast.value = 0
    dut.s_axis_tdata.value = 0
    dut.m_axis_tready.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _source(dut, beats, rng, stall, cycles, sent):
    """Offer ``beats`` (``(tdata, tlast)``) on ``s_axis``; pause before a beat with
    probability ``stall``.  A beat, once offered, stays until taken (AXI4-Stream)."""
    index = 0
    offering = False
    while index < len(beats):
        await FallingEdge(dut.clk)
        if not offering:
            if rng.random() < stall:
                dut.s_axis_tvalid.value = 0
            else:
                data, last = beats[index]
                dut.s_axis_tdata.value = int(data)
                dut.s_axis_tlast.value = int(last)
                dut.s_axis_tvalid.value = 1
                offering = True
        await ReadOnly()
        if offering and dut.s_axis_tready.value == 1:
            sent.append(cycles.count + 1)  # taken at the coming rising edge
            offering = False
            index += 1
    await FallingEdge(dut.clk)
    dut.s_axis_tvalid.value = 0


async def _sink(dut, count, rng, backpressure, cycles, received):
    """Take ``count`` beats from ``m_axis`` as ``(tdata, tlast, cycle)``; hold ``tready``
    low with probability ``backpressure`` each cycle."""
    while len(received) < count:
        await FallingEdge(dut.clk)
        ready = rng.random() >= backpressure
        dut.m_axis_tready.value = int(ready)
        await ReadOnly()
        if ready and dut.m_axis_tvalid.value == 1:
            received.append((dut.m_axis_tdata.value.to_unsigned(),
                             int(dut.m_axis_tlast.value), cycles.count + 1))
    await FallingEdge(dut.clk)
    dut.m_axis_tready.value = 0


async def _stream(dut, name, stall, backpressure):
    config, inputs, expected = _config()
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    await _reset(dut)
    cycles = Cycles(dut)
    cocotb.start_soon(cycles.run())

    in_size = inputs.shape[1]
    beats = [(value, position == in_size - 1)
             for vector in inputs for position, value in enumerate(vector)]
    sent, received = [], []
    seed = config["seed"]
    source = cocotb.start_soon(
        _source(dut, beats, random.Random(seed), stall, cycles, sent))
    await _sink(dut, expected.size, random.Random(seed + 1), backpressure, cycles, received)
    await source

    outputs = np.array([data for data, _, _ in received], dtype=np.uint8)
    outputs = outputs.reshape(expected.shape)
    lasts = [last for _, last, _ in received]
    out_size = expected.shape[1]
    vector_done = [cycle for _, last, cycle in received if last]
    result = {
        "outputs": outputs.tolist(),
        "cycles": received[-1][2] - sent[0] + 1,
        "first_latency": received[0][2] - sent[0],
        "intervals": np.diff(vector_done).tolist(),
        "mismatches": int(np.count_nonzero(outputs != expected)),
        "tlast_ok": lasts == ([0] * (out_size - 1) + [1]) * len(expected),
    }
    results_dir = Path(config["results_dir"])
    (results_dir / f"{name}.json").write_text(json.dumps(result))

    bad = [(int(v), int(e)) for v, e in np.argwhere(outputs != expected)]
    assert not bad, (
        f"{len(bad)} outputs differ from the golden model; first at (vector, element) "
        f"{bad[0]}: tdata {outputs[bad[0]]:#04x}, expected {expected[bad[0]]:#04x}"
    )
    assert result["tlast_ok"], "m_axis_tlast does not mark the last element of each vector"


@cocotb.test()
async def streaming(dut):
    """Inputs back to back, output always ready: the cycle counts are the design's."""
    await _stream(dut, "streaming", stall=0.0, backpressure=0.0)


@cocotb.test()
async def random_stalls(dut):
    """Random idle cycles on the input and random backpressure on the output."""
    config, _, _ = _config()
    await _stream(dut, "random_stalls", stall=config["stall"],
                  backpressure=config["backpressure"])
