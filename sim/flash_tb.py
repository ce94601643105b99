"""cocotb testbenches for the SPI flash model, run by :mod:`tfl2rtl.sim.flash_runner`.

With the model (``spi_flash_model``) as the top level, the tests play the SPI host
from Python, one pin change at a time (mode 0, a 20 ns SCK): ``model_commands`` runs
every command the model implements and checks what it answers against the image; the
``refuse_*`` tests each break one rule, and the simulation must stop with the model's
message (checked by the runner's caller).

With the reader harness (``flash_harness``) as the top level, ``streaming`` and
``backpressure`` reset it, let the readers run until every sink is full and write the
bytes and their edges to ``<results_dir>/<test>.json``.  The configuration is the JSON
file named in ``TFL2RTL_FLASH_CONFIG``.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer, with_timeout

HALF_NS = 10  # half an SCK period of the host played from Python
QE = 0x02


def _config():
    return json.loads(Path(os.environ["TFL2RTL_FLASH_CONFIG"]).read_text())


def _image() -> list[int]:
    """The model's memory as the test loaded it (a file of ``@address`` and byte lines
    from :func:`tfl2rtl.sim.flash_runner.write_image`)."""
    config = _config()
    memory, address = [0xFF] * config["size"], 0
    for line in Path(config["image"]).read_text().split():
        if line.startswith("@"):
            address = int(line[1:], 16)
        else:
            memory[address] = int(line, 16)
            address += 1
    return memory


class Host:
    """The SPI host's side of the pins, mode 0: it changes IO0 while SCK is low and
    reads the flash's lines just before driving SCK low again."""

    def __init__(self, dut):
        self.dut = dut
        dut.sck.value = 0
        dut.cs_n.value = 1
        dut.host_o.value = 0b1111
        dut.host_oe.value = 0

    async def select(self):
        await Timer(HALF_NS, "ns")
        self.dut.cs_n.value = 0
        await Timer(HALF_NS, "ns")

    async def deselect(self):
        await Timer(HALF_NS, "ns")
        self.dut.cs_n.value = 1
        self.dut.host_oe.value = 0
        await Timer(2 * HALF_NS, "ns")

    async def clock(self, release: bool = False) -> tuple[int, int]:
        """One SCK clock (the lines already set); returns ``(flash_o, flash_oe)`` as
        they were at the end of its high phase.  With ``release`` the host lets go of
        the lines in the high phase, before the flash may drive them."""
        self.dut.sck.value = 1
        await Timer(HALF_NS // 2, "ns")
        if release:
            self.dut.host_oe.value = 0
        await Timer(HALF_NS - HALF_NS // 2, "ns")
        seen = self.dut.flash_o.value.to_unsigned(), self.dut.flash_oe.value.to_unsigned()
        self.dut.sck.value = 0
        await Timer(HALF_NS, "ns")
        return seen

    async def send(self, value: int, bits: int, release: bool = False):
        """``bits`` bits of ``value``, MSB first, on IO0 (IO1-IO3 high); with
        ``release``, let go of the lines in the last clock (a read with no dummy
        clocks)."""
        self.dut.host_oe.value = 1
        for k in reversed(range(bits)):
            self.dut.host_o.value = 0b1110 | (value >> k) & 1
            await self.clock(release=release and k == 0)

    async def receive(self, count: int, width: int) -> list[int]:
        """``count`` bytes on ``width`` lines (IO1; IO1:IO0; IO3..IO0), checking that the
        flash drives exactly those lines."""
        self.dut.host_oe.value = 0
        lines = {1: 0b0010, 2: 0b0011, 4: 0b1111}[width]
        data = []
        for _ in range(count):
            value = 0
            for _ in range(8 // width):
                out, oe = await self.clock()
                assert oe == lines, f"the flash drives lines {oe:04b}, not {lines:04b}"
                bits = (out >> 1) & 1 if width == 1 else out & ((1 << width) - 1)
                value = value << width | bits
            data.append(value)
        return data

    async def command(self, *values: int):
        await self.select()
        for value in values:
            await self.send(value, 8)
        await self.deselect()

    async def read(self, command: int, address: int, count: int) -> list[int]:
        width = {0x03: 1, 0x0B: 1, 0x3B: 2, 0x6B: 4}[command]
        await self.select()
        await self.send(command << 24 | address, 32, release=command == 0x03)
        if command != 0x03:
            self.dut.host_oe.value = 0
            for _ in range(8):
                await self.clock()
        data = await self.receive(count, width)
        await self.deselect()
        return data

    async def status_2(self) -> int:
        await self.select()
        await self.send(0x35, 8, release=True)
        value, again = await self.receive(2, 1)
        await self.deselect()
        assert value == again, "Status Register-2 read twice differs"
        return value


@cocotb.test()
async def model_commands(dut):
    """Every implemented command, read back against the image."""
    memory = _image()
    size = len(memory)
    host = Host(dut)
    await Timer(HALF_NS, "ns")
    assert dut.flash_oe.value.to_unsigned() == 0
    await host.command(0xAB)
    assert await host.status_2() == 0

    def expected(address, count):
        return [memory[(address + k) % size] for k in range(count)]

    # Read Data and Fast Read at several addresses, across the end of the array.
    for address in (0, 1, 0x123 % size, size // 2 + 7, size - 5, size - 1):
        assert await host.read(0x03, address, 9) == expected(address, 9), hex(address)
        assert await host.read(0x0B, address, 9) == expected(address, 9), hex(address)
    # Addresses above the array's size fold onto it, as on a smaller part.
    assert await host.read(0x0B, size + 3, 2) == expected(3, 2)
    for address in (0, 0x55 % size, size - 3):
        assert await host.read(0x3B, address, 7) == expected(address, 7), hex(address)
    # Quad Enable, volatile: 0x50 then 0x31.
    await host.command(0x50)
    await host.command(0x31, QE)
    assert await host.status_2() == QE
    for address in (0, 0x77 % size, size - 4):
        assert await host.read(0x6B, address, 11) == expected(address, 11), hex(address)
    # The other reads still work with QE set, and QE clears again.
    assert await host.read(0x3B, 5, 3) == expected(5, 3)
    await host.command(0x50)
    await host.command(0x31, 0x00)
    assert await host.status_2() == 0


@cocotb.test()
async def refuse_unknown_command(dut):
    host = Host(dut)
    await host.command(0x9F)  # Read JEDEC ID: a real command, not modelled


@cocotb.test()
async def refuse_quad_without_qe(dut):
    host = Host(dut)
    await host.read(0x6B, 0, 1)


@cocotb.test()
async def refuse_contention(dut):
    host = Host(dut)
    await host.select()
    await host.send(0x0B << 24, 32)
    dut.host_oe.value = 0
    for _ in range(9):  # dummy clocks, then the flash drives the first data bit
        await host.clock()
    dut.host_oe.value = 1
    await host.clock()


@cocotb.test()
async def refuse_status_write_without_enable(dut):
    host = Host(dut)
    await host.command(0x50)
    await host.status_2()  # a transaction between: the enable is gone
    await host.command(0x31, QE)


@cocotb.test()
async def refuse_mode_3(dut):
    Host(dut)  # the pins idle, then CS# falls while SCK is high
    await Timer(HALF_NS, "ns")
    dut.sck.value = 1
    await Timer(HALF_NS, "ns")
    dut.cs_n.value = 0
    await Timer(HALF_NS, "ns")


# --- the reader harness ------------------------------------------------------------


def _probability(p: float) -> int:
    return min(65535, max(0, round(p * 65536)))


async def _reader_run(dut, name: str):
    config = _config()
    dut.rst_in.value = 1
    dut.seed_in.value = config["seed"] & 0xFFFFFFFF
    dut.backpressure_in.value = _probability(config["runs"][name])
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst_in.value = 0
    await with_timeout(RisingEdge(dut.done), config["timeout_cycles"] * 10, "ns")
    await ReadOnly()
    readers = []
    for i, count in enumerate(config["bytes"]):
        received = getattr(dut, f"bytes_{i}")
        edges = getattr(dut, f"edges_{i}")
        readers.append({
            "bytes": [received[k].value.to_unsigned() for k in range(count)],
            "edges": [edges[k].value.to_unsigned() for k in range(count)],
        })
    (Path(config["results_dir"]) / f"{name}.json").write_text(json.dumps(
        {"readers": readers}))


@cocotb.test()
async def streaming(dut):
    """``o`` always ready: the readers' own timing."""
    await _reader_run(dut, "streaming")


@cocotb.test()
async def backpressure(dut):
    """``o`` not ready in random cycles."""
    await _reader_run(dut, "backpressure")
