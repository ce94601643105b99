"""cocotb testbench: the host driver talks to the simulated board top over its UART.

Run by :func:`tfl2rtl.sim.board_runner.simulate_board`, which builds
``rtl_templates/board_harness.sv`` around the board top's Verilog and names a JSON
configuration in ``TFL2RTL_SIM_CONFIG``.

The host side is :class:`tfl2rtl.boards.protocol.Client`, the same code that drives a
real board through pyserial.  It runs in a thread started with :func:`cocotb.task.bridge`,
and its transport (:class:`SimTransport`) turns each ``write`` and ``read`` into
simulation through :func:`cocotb.task.resume`: ``write`` hands the harness's UART
transmitter one byte at a time, and a background task takes each byte the harness's
receiver got from ``tx`` into a receive buffer that ``read`` takes from (waiting up to a
timeout in simulated time, as a serial port's read would).

With ``faults`` in the configuration, the transport is also a faulty line
(:mod:`tfl2rtl.sim.faults`): it corrupts the request or the reply a fault names, or
pulses the board's reset in the middle of it, and :func:`tfl2rtl.sim.faults.campaign`
runs that many rounds through the driver.

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
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, Timer, ValueChange

from tfl2rtl.boards import protocol
from tfl2rtl.boards.protocol import Client, Identity, device_seed
from tfl2rtl.sim import faults

#: The harness's clock period (2 * HALF_PERIOD) in the build's 1 ns time unit, unless the
#: configuration's ``clock_ns`` says otherwise (a board top on a PLL: the oscillator's).
CLOCK_NS = 10


def _ps(ns: float) -> int:
    """``ns`` in whole picoseconds, the build's precision (a Timer must be exact)."""
    return round(ns * 1000)


class SimTransport:
    """A serial port onto the harness's UART (``host_byte``/``host_strobe`` out,
    ``device_byte``/``device_count`` in), for code running in a
    :func:`cocotb.task.bridge` thread: ``write(bytes)`` and ``read(n)`` block that thread
    while the simulation runs."""

    def __init__(self, dut, divisor: int, timeout_ns: float, clock_ns: float = CLOCK_NS):
        self.dut = dut
        self.clock_ns = clock_ns
        self.bit_ns = divisor * clock_ns
        self.timeout_ns = timeout_ns
        self.received = bytearray()
        self.arrived = Event()
        self.write = resume(self._write)
        self.read = resume(self._read)
        self.now = resume(self._now)
        self.fault = None  # armed: waiting for the frame it hits
        self.reply_fault = None  # hitting the reply under way
        self.reply_index = 0  # reply bytes since the last write
        self.writes = 0  # frames written

    def arm(self, fault: faults.Fault) -> None:
        """Let ``fault`` hit the frame it names (:class:`tfl2rtl.sim.faults.Fault`)."""
        self.fault = fault

    def disarm(self) -> None:
        self.fault = self.reply_fault = None

    def reset_input_buffer(self) -> None:
        self.received.clear()

    async def _now(self) -> float:
        return get_sim_time("ns")

    async def _pulse_reset(self, delay_ns: float = 0) -> None:
        if delay_ns:
            await Timer(_ps(delay_ns), "ps")
        self.dut.rst_in.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst_in.value = 0

    async def _write(self, data: bytes) -> None:
        data, reset_bit, fault = bytes(data), None, self.fault
        self.writes += 1
        self.reply_fault, self.reply_index = None, 0
        if fault is not None and fault.skip:
            fault.skip -= 1
        elif fault is not None:
            self.fault = None
            if fault.side == "request":
                data = fault.request(data)
            elif fault.side == "reply":
                self.reply_fault = fault
            else:
                reset_bit = fault.reset_bit
        await FallingEdge(self.dut.clk)  # away from the edge the harness samples on
        for k, byte in enumerate(data):
            if reset_bit is not None and k == reset_bit // 10:
                fault.fired = True
                cocotb.start_soon(self._pulse_reset(reset_bit % 10 * self.bit_ns))
            self.dut.host_byte.value = byte
            self.dut.host_strobe.value = 1 - int(self.dut.host_strobe.value)
            await Timer(_ps(10 * self.bit_ns + self.clock_ns), "ps")

    def _deliver(self, byte: int) -> None:
        """A byte from the board reaches the host (through the reply's fault, if any)."""
        fault = self.reply_fault
        if fault is None:
            out = bytes([byte])
        elif fault.kind in faults.RESETS:
            if self.reply_index == fault.position and not fault.fired:
                fault.fired = True
                cocotb.start_soon(self._pulse_reset())
            out = bytes([byte])
        else:
            out = fault.reply_byte(self.reply_index, byte)
        self.reply_index += 1
        if out:
            self.received += out
            self.arrived.set()

    async def _read(self, n: int) -> bytes:
        deadline = get_sim_time("ns") + self.timeout_ns
        while len(self.received) < n:
            remaining = deadline - get_sim_time("ns")
            if remaining <= 0:
                break
            self.arrived.clear()
            await First(self.arrived.wait(), Timer(_ps(remaining), "ps"))
        data = bytes(self.received[:n])
        del self.received[:n]
        return data

    async def listen(self) -> None:
        """Take every byte the harness's receiver gets, forever (a background task)."""
        while True:
            await ValueChange(self.dut.device_count)
            self._deliver(int(self.dut.device_byte.value))


def _bad_frames(in_size: int) -> dict[str, bytes]:
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
    it.  With ``config["float_edges"]`` the inputs are the model's float32 (as bit
    patterns): each is quantized and each output dequantized by the model's own edge
    nodes around the driver (:class:`tfl2rtl.edges.HostEdges`), and the float32 outputs
    are recorded as bit patterns."""
    client = Client(transport)
    result = {"identity": client.identity().pack().hex(), "outputs": [], "errors": {}}
    ident = client.identity()
    model_inputs = inputs = np.array(config["inputs"], dtype=np.int64)
    edges = None
    if config.get("float_edges"):
        from tfl2rtl.api import load
        from tfl2rtl.edges import host_edges

        edges = host_edges(load(config["model"]))
        model_inputs = inputs.astype(np.uint32).view(np.float32)
        inputs = edges.to_hardware(model_inputs)
    inputs = inputs.astype(ident.input.dtype)

    def infer(k):
        """Input ``k`` through the driver, as ``tfl2rtl infer`` sends it."""
        if edges is not None:  # the float32 input through the model's edges
            y = edges.infer(client, model_inputs[k])[0].reshape(-1).view(np.uint32)
        else:
            y = client.infer(inputs[k].reshape(ident.input.shape)).reshape(-1)
        return y.astype(np.int64).tolist()

    if ident.memories:
        from tfl2rtl.api import load

        try:
            client.infer(inputs[0].reshape(ident.input.shape))
            result["before_loading"] = None
        except protocol.LinkError as exc:
            result["before_loading"] = exc.code.name if exc.code is not None else str(exc)
        result["weights_loaded"] = client.load_weights(load(config["model"]))
    began = time.perf_counter()
    for k in range(len(inputs)):
        result["outputs"].append(infer(k))
    result["infer_wall_seconds"] = time.perf_counter() - began
    if config["bad_frames"]:
        for name, frame in _bad_frames(ident.input.nbytes).items():
            transport.write(frame)
            reply = client.receive(device_seed(frame))
            result["errors"][name] = {
                "command": reply.command,
                "code": reply.error.name if reply.error is not None else None,
                # The link must keep working: the first input again.
                "after": infer(0),
            }
    if config.get("faults"):
        result["faults"] = fault_campaigns(client, transport, config, inputs)
    return result


def fault_campaigns(client, transport, config: dict, inputs: np.ndarray) -> dict:
    """``config["faults"]`` rounds of :func:`tfl2rtl.sim.faults.campaign`, then (with
    ``config["control"]``) the negative control: that many rounds of reply bit flips
    with the host's reply check broken on purpose, which must give wrong outputs."""
    from tfl2rtl.api import load

    ident = client.identity()
    graph = load(config["model"])
    expected = np.array(config["expected"], dtype=np.int64).astype(ident.output.dtype)
    transport.timeout_ns = config["fault_timeout_cycles"] * transport.clock_ns
    # The longest a round may take: its operation and the clean inference after it,
    # each an inference, a reload of every LOAD frame and another inference, every
    # exchange in every attempt ending in a timeout after the longest frames.
    byte_ns = 10 * transport.bit_ns
    frames = 1 + sum(-(-m.rows * m.row_bytes // 1024) + 1 for m in ident.memories)
    longest = (max(1030 if ident.memories else 0, ident.input.nbytes) + ident.output.nbytes
               + 64)
    exchange_ns = longest * byte_ns + transport.timeout_ns
    bound = 2 * client.attempts * (2 + frames) * exchange_ns
    began_wall, began_sim = time.perf_counter(), transport.now()
    tally = faults.campaign(client, transport, graph, inputs, expected, config["faults"],
                            config.get("fault_seed", 0), bound)
    out = {"tally": tally.to_json(), "wall_seconds": time.perf_counter() - began_wall,
           "sim_ms": (transport.now() - began_sim) / 1e6}
    if config.get("control"):
        real = protocol._crc_ok
        protocol._crc_ok = lambda body, crc, seed: True  # broken on purpose
        try:
            control = faults.campaign(client, transport, graph, inputs, expected,
                                      config["control"], 1, bound,
                                      kinds=("reply_bit_flip",))
        finally:
            protocol._crc_ok = real
        out["control"] = control.to_json()
    return out


@cocotb.test()
async def board(dut):
    """Identity, inferences and bad frames through the UART, by the host driver."""
    config = json.loads(Path(os.environ["TFL2RTL_SIM_CONFIG"]).read_text())
    dut.rx_in.value = 1
    dut.host_strobe.value = 0
    dut.rst_in.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst_in.value = 0
    # A board top on a PLL stays in reset until the PLL locks: settle_cycles waits for it.
    await ClockCycles(dut.clk, config.get("settle_cycles", 4))

    clock_ns = config.get("clock_ns", CLOCK_NS)
    transport = SimTransport(dut, config["divisor"], config["timeout_cycles"] * clock_ns,
                             clock_ns)
    cocotb.start_soon(transport.listen())
    began = time.perf_counter()
    result = await bridge(host_session)(transport, config)
    result["wall_seconds"] = time.perf_counter() - began
    result["sim_cycles"] = int(get_sim_time("ns") // clock_ns)
    Identity.unpack(bytes.fromhex(result["identity"]))  # it must at least parse
    (Path(config["results_dir"]) / "board.json").write_text(json.dumps(result))
