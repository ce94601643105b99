# amaranth: UnusedElaboratable=no
"""The SPI flash model (``rtl_templates/spi_flash_model.sv``) on its own, driven pin by
pin from cocotb, then :class:`tfl2rtl.hw.flash.QspiReader` against it in Verilator."""

import numpy as np
import pytest

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.flash import ADDRESS_BITS, CS_HIGH_CYCLES, DUMMY_CLOCKS, QspiReader
from tfl2rtl.sim.flash_runner import (
    MODEL_REFUSALS,
    MODEL_TESTS,
    READER_RUNS,
    simulate_model,
    simulate_readers,
)

PASSES = 3  # what the reader harness's sinks keep: three passes of each reader


@pytest.mark.parametrize("kwargs, message", [
    ({"base": 0, "length": 4, "width": 3},
     r"^a flash read width of 3 lines: the reader reads 1, 2 or 4 lines$"),
    ({"base": 0, "length": 0}, r"^a flash read of 0 bytes: read 1 byte or more$"),
    ({"base": -1, "length": 4}, r"^flash bytes -1 to 2: the flash's 24-bit addresses run "
                                r"from 0 to 16777215$"),
    ({"base": (1 << 24) - 3, "length": 4},
     r"^flash bytes 16777213 to 16777216: the flash's 24-bit addresses"),
    ({"base": 0, "length": 4, "wake_cycles": 0}, r"^wake_cycles=0: wait 1 cycle or more"),
])
def test_refuses_bad_arguments(kwargs, message):
    with pytest.raises(Tfl2RtlError, match=message):
        QspiReader(kwargs.pop("base"), kwargs.pop("length"), **kwargs)


def test_timing_attributes():
    for width, per_byte in ((1, 16), (2, 8), (4, 4)):
        reader = QspiReader(0, 10, width=width)
        assert reader.cycles_per_byte == per_byte
        # CS# high, then command, address and dummy clocks of two cycles each.
        assert reader.pass_overhead == CS_HIGH_CYCLES + 2 * (8 + ADDRESS_BITS + DUMMY_CLOCKS)
        assert reader.cycles_per_pass == reader.pass_overhead + 10 * per_byte
    # The quad reader sets QE first: two more transactions before its first read.
    assert (QspiReader(0, 1, width=4, wake_cycles=9).startup_cycles
            > QspiReader(0, 1, width=1, wake_cycles=9).startup_cycles)
    assert (QspiReader(0, 1, wake_cycles=1000).startup_cycles
            - QspiReader(0, 1, wake_cycles=500).startup_cycles == 500)


def test_flash_model_commands_and_refusals(tmp_path):
    """Every implemented command answers as the image says, wrap at the end included (a
    4 KiB model); each refusal stops the simulation with its one-line message."""
    image = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8)
    results = simulate_model(tmp_path, image)
    for name in MODEL_TESTS:
        passed, log = results[name]
        assert passed, f"{name} failed: see {tmp_path / (name + '.log')}"
    for name, message in MODEL_REFUSALS.items():
        passed, log = results[name]
        assert not passed, f"{name} was not refused"
        errors = [line for line in log.splitlines() if "spi_flash_model: " in line
                  and "%Error" in line]
        assert errors and message in errors[0], (name, errors)


def _readers(rng) -> list[QspiReader]:
    """Each width at a random place and length, plus the flash's last bytes, and one
    byte per pass."""
    readers = []
    for width, most in ((1, 24), (2, 48), (4, 100)):
        length = int(rng.integers(1, most + 1))
        base = int(rng.integers(0, (1 << ADDRESS_BITS) - length + 1))
        readers.append(QspiReader(base, length, width=width,
                                  wake_cycles=int(rng.integers(1, 65))))
    readers.append(QspiReader((1 << ADDRESS_BITS) - 37, 37, width=4, wake_cycles=2))
    readers.append(QspiReader(0, 1, width=1, wake_cycles=1))
    return readers


def test_readers_against_the_flash_model(tmp_path):
    rng = np.random.default_rng(2024)
    readers = _readers(rng)
    image = {}
    for reader in readers:
        for address in range(reader.base, reader.base + reader.length):
            image[address] = int(rng.integers(0, 256))
    runs = simulate_readers(readers, image, tmp_path, seed=5)
    assert set(runs) == set(READER_RUNS)

    slowed = 0
    for index, reader in enumerate(readers):
        expected = np.array([image[a] for a in range(reader.base, reader.base + reader.length)],
                            dtype=np.uint8)
        for name, run in runs.items():
            np.testing.assert_array_equal(run[index].received, np.tile(expected, PASSES),
                                          err_msg=f"reader {index} (width {reader.width}), "
                                                  f"{name}")
        # Always ready: a pass takes exactly cycles_per_pass, and the first byte comes
        # within the documented bound (which is not loose).
        edges = runs["streaming"][index].edges
        passes = np.diff(edges[::reader.length])
        assert passes.tolist() == [reader.cycles_per_pass] * (PASSES - 1), index
        bound = reader.startup_cycles + reader.pass_overhead + reader.cycles_per_byte
        assert bound - reader.cycles_per_byte < edges[0] <= bound, index
        # With backpressure SCK pauses: some passes take longer, and no byte is lost.
        edges = runs["backpressure"][index].edges
        slowed += int(np.any(np.diff(edges[::reader.length]) > reader.cycles_per_pass))
    assert slowed >= len(readers) // 2, "the backpressure never held a reader back"
