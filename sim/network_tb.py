"""cocotb testbench: runs ``rtl_templates/axis_harness.sv`` around a network's Verilog.

Run by :func:`tfl2rtl.sim.runner.simulate_network`, which builds the harness (the HDL
top level) with the design, writes the input beats as a ``$readmemh`` file for it and a
JSON configuration named in ``TFL2RTL_SIM_CONFIG``.

Python does no work per clock cycle: the harness generates the clock itself (Verilator
``--timing``), streams the inputs, applies random stalls and backpressure and timestamps
every vector in HDL, and each test only resets the harness, sets its knobs, starts it,
waits for ``done`` and reads back the output memory, the timestamps and the counters
into ``<results_dir>/<test>.json``.  The comparison with the golden model happens in
:mod:`tfl2rtl.sim.runner`, outside the simulator.
"""

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, with_timeout

CLOCK_NS = 10  # the harness's 2 * HALF_PERIOD, in the build's 1 ns time unit
RESET_CYCLES = 3


def _config():
    return json.loads(Path(os.environ["TFL2RTL_SIM_CONFIG"]).read_text())


def _probability(p: float) -> int:
    """``p`` as the harness's 16-bit threshold (``p * 65536``, at most 65535)."""
    return min(65535, max(0, round(p * 65536)))


def _read_memory(handle, count: int) -> list[int]:
    return [handle[index].value.to_unsigned() for index in range(count)]


async def _run(dut, name: str, stall: float, backpressure: float):
    config = _config()
    vectors = config["vectors"]
    dut.start_in.value = 0
    dut.rst_in.value = 1
    dut.seed_in.value = config["seed"] & 0xFFFFFFFF
    dut.stall_in.value = _probability(stall)
    dut.backpressure_in.value = _probability(backpressure)
    await ClockCycles(dut.clk, RESET_CYCLES)
    await FallingEdge(dut.clk)
    dut.rst_in.value = 0
    dut.start_in.value = 1

    began = time.perf_counter()
    await with_timeout(RisingEdge(dut.done), config["timeout_cycles"] * CLOCK_NS, "ns")
    await ReadOnly()
    wall = time.perf_counter() - began

    result = {
        "cycles_simulated": dut.cycle.value.to_unsigned(),
        "wall_seconds": wall,
        "tlast_errors": dut.tlast_errors.value.to_unsigned(),
        "outputs": _read_memory(dut.out_mem, config["out_beats"]),
        "in_first": _read_memory(dut.in_first, vectors),
        "in_last": _read_memory(dut.in_last, vectors),
        "out_first": _read_memory(dut.out_first, vectors),
        "out_last": _read_memory(dut.out_last, vectors),
    }
    (Path(config["results_dir"]) / f"{name}.json").write_text(json.dumps(result))


@cocotb.test()
async def streaming(dut):
    """Inputs back to back, output always ready: the cycle counts are the design's."""
    await _run(dut, "streaming", stall=0.0, backpressure=0.0)


@cocotb.test()
async def random_stalls(dut):
    """Random idle cycles on the input and random backpressure on the output."""
    config = _config()
    await _run(dut, "random_stalls", stall=config["stall"],
               backpressure=config["backpressure"])
