"""cocotb testbench: the host driver talks to the simulated board top over its UART.

Run by :func:`tfl2rtl.sim.board_runner.simulate_board`, which builds
``rtl_templates/board_harness.sv`` around the board top's Verilog and names a JSON
configuration in ``TFL2RTL_SIM_CONFIG``.

The host side is :class:`tfl2rtl.boards.protocol.Client`, the same code that drives a
real board through pyserial.  It runs in a thread started with :func:`cocotb.task.bridge`,
and its transport (:class:`SimTransport`) turns each ``write`` and ``read`` into
simulation through :func:`cocotb.task.resume`: ``write`` drives the ``rx`` line bit by bit,
and a background task samples ``tx`` into a receive buffer that ``read`` takes from
(waiting up to a timeout in simulated time, as a serial port's read would).

Results go to ``<results_dir>/board.json``; :mod:`tfl2rtl.sim.board_runner` compares
them with the golden model.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, Timer

from tfl2rtl.boards import protocol
from tfl2rtl.boards.protocol import Client, Identity

CLOCK_NS = 10  # the harness's 2 * HALF_PERIOD, in the build's 1 ns time unit


class SimTransport:
    """A serial port onto the simulated ``rx``/``tx`` pins, for code running in a
    :func:`cocotb.task.bridge` thread: ``write(bytes)`` and ``read(n)`` block that thread
    while the simulation runs."""

    def __init__(self, dut, divisor: int, timeout_ns: float):
        self.dut = dut
        self.bit_ns = divisor * CLOCK_NS
        self.timeout_ns = timeout_ns
        self.received = bytearray()
        self.arrived = Event()
        self.write = resume(self._write)
        self.read = resume(self._read)

    async def _write(self, data: bytes) -> None:
        for byte in bytes(data):
            for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
                self.dut.rx_in.value = bit
                await Timer(self.bit_ns, "ns")

    async def _read(self, n: int) -> bytes:
        deadline = get_sim_time("ns") + self.timeout_ns
        while len(self.received) < n:
            remaining = deadline - get_sim_time("ns")
            if remaining <= 0:
                break
            self.arrived.clear()
            await First(self.arrived.wait(), Timer(remaining, "ns"))
        data = bytes(self.received[:n])
        del self.received[:n]
        return data

    async def listen(self) -> None:
        """Sample ``tx`` in the middle of every bit, forever (a background task)."""
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(self.bit_ns // 2, "ns")
            if self.dut.tx.value:  # not a start bit
                continue
            value = 0
            for k in range(8):
                await Timer(self.bit_ns, "ns")
                value |= int(self.dut.tx.value) << k
            await Timer(self.bit_ns, "ns")
            if self.dut.tx.value:  # the stop bit
                self.received.append(value)
                self.arrived.set()


def _bad_frames(in_size: int) -> dict:
    """Request bytes that must each get an error reply, by the error they must get."""
    good = protocol.encode(protocol.INFER, bytes(in_size))
    corrupted = bytearray(good)
    corrupted[-1] ^= 0x01
    return {
        "BAD_CHECKSUM": bytes(corrupted),
        "UNKNOWN_COMMAND": protocol.encode(0x42, b"xyz"),
        "WRONG_LENGTH": protocol.encode(protocol.INFER, bytes(in_size + 1)),
        "TRUNCATED": good[:-3],
    }


def host_session(transport: SimTransport, config: dict) -> dict:
    """What a user of the link does, in plain blocking code: read the identity; for a
    design with loadable weights, try an inference (which must be refused), then load
    the model's weights; run every input, send each bad frame and run an input after
    it."""
    client = Client(transport)
    result = {"identity": client.identity().pack().hex(), "outputs": [], "errors": {}}
    ident = client.identity()
    inputs = np.array(config["inputs"], dtype=np.int64).astype(ident.input.dtype)
    if ident.memories:
        from tfl2rtl.api import load

        try:
            client.infer(inputs[0].reshape(ident.input.shape))
            result["before_loading"] = None
        except protocol.LinkError as exc:
            result["before_loading"] = exc.code.name if exc.code is not None else str(exc)
        result["weights_loaded"] = client.load_weights(load(config["model"]))
    began = time.perf_counter()
    for x in inputs:
        result["outputs"].append(client.infer(x.reshape(ident.input.shape)).reshape(-1)
                                 .astype(np.int64).tolist())
    result["infer_wall_seconds"] = time.perf_counter() - began
    if config["bad_frames"]:
        for name, frame in _bad_frames(ident.input.size).items():
            transport.write(frame)
            reply = client.receive()
            result["errors"][name] = {
                "command": reply.command,
                "code": reply.error.name if reply.error is not None else None,
                # The link must keep working: the first input again.
                "after": client.infer(inputs[0].reshape(ident.input.shape)).reshape(-1)
                .astype(np.int64).tolist(),
            }
    return result


@cocotb.test()
async def board(dut):
    """Identity, inferences and bad frames through the UART, by the host driver."""
    config = json.loads(Path(os.environ["TFL2RTL_SIM_CONFIG"]).read_text())
    dut.rx_in.value = 1
    dut.rst_in.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst_in.value = 0
    await ClockCycles(dut.clk, 4)

    transport = SimTransport(dut, config["divisor"], config["timeout_cycles"] * CLOCK_NS)
    cocotb.start_soon(transport.listen())
    began = time.perf_counter()
    result = await bridge(host_session)(transport, config)
    result["wall_seconds"] = time.perf_counter() - began
    result["sim_cycles"] = int(get_sim_time("ns") // CLOCK_NS)
    Identity.unpack(bytes.fromhex(result["identity"]))  # it must at least parse
    (Path(config["results_dir"]) / "board.json").write_text(json.dumps(result))
