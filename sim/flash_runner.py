"""Run the SPI flash model (``rtl_templates/spi_flash_model.sv``) in Verilator under
cocotb: on its own, its pins driven by :mod:`tfl2rtl.sim.flash_tb`, or behind
:class:`tfl2rtl.hw.flash.QspiReader` instances in a generated HDL harness.

The model in another Verilator build: add :func:`model_source` to the sources, instance
``spi_flash_model #(.SIZE_BYTES(n))`` and pass ``+TFL2RTL_FLASH=<image.hex>`` to the
simulation (an image written by :func:`write_image`; without it the flash reads 0xFF).
It needs no ``--timing`` and builds clean with ``-Wall``.  Its refusals end the
simulation with a line ``spi_flash_model: ...`` from ``$error``.

The toolchain environment, the Verilator runtime cache and the runner are those of
:mod:`tfl2rtl.sim.runner`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfl2rtl.errors import Tfl2RtlError

from . import runner

__all__ = ["MODEL", "HARNESS", "MODEL_TESTS", "MODEL_REFUSALS", "model_source",
           "write_image", "simulate_model", "ReaderRun", "simulate_readers"]

#: The model's module (and file) name.
MODEL = "spi_flash_model"
#: The generated harness around readers and models.
HARNESS = "flash_harness"
#: The cocotb tests of the model on its own that must pass.
MODEL_TESTS = ("model_commands",)
#: The cocotb tests that break a rule of the model's on purpose, each with the words
#: its ``$error`` line must contain.
MODEL_REFUSALS = {
    "refuse_unknown_command": "unknown command 0x9f",
    "refuse_quad_without_qe": "0x6B (Fast Read Quad Output) while QE = 0",
    "refuse_contention": "the host and the flash drive the same lines at once",
    "refuse_status_write_without_enable": "0x31 (Write Status Register-2) not preceded by 0x50",
    "refuse_mode_3": "CS# fell while SCK was high",
}
#: The reader harness's runs: name -> probability that ``o.ready`` is low in a cycle.
READER_RUNS = {"streaming": 0.0, "backpressure": 0.6}


def model_source() -> Path:
    """``rtl_templates/spi_flash_model.sv`` in this checkout."""
    return runner.template_source(MODEL)


def write_image(path: str | os.PathLike, image: dict[int, int] | np.ndarray) -> Path:
    """Write a flash image for ``+TFL2RTL_FLASH``: ``image`` is the bytes from address 0
    (a uint8 array) or a ``{address: byte}`` map (the rest of the flash reads 0xFF)."""
    if isinstance(image, dict):
        items = sorted(image.items())
    else:
        items = list(enumerate(np.asarray(image, dtype=np.uint8).tolist()))
    lines, expected = [], None
    for address, value in items:
        if address != expected:
            lines.append(f"@{address:x}")
        lines.append(f"{value:02x}")
        expected = address + 1
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def _test(sim, env, build_dir: Path, top: str, name: str, plusargs: list[str],
          config: Path) -> tuple[bool, str]:
    """Run the cocotb test ``name`` of :mod:`tfl2rtl.sim.flash_tb`; returns whether it
    passed and the simulation's log."""
    from cocotb_tools.check_results import get_results

    log = build_dir / f"{name}.log"
    with runner._environment(env):
        try:
            results = sim.test(test_module="tfl2rtl.sim.flash_tb", hdl_toplevel=top,
                               build_dir=build_dir, test_dir=build_dir,
                               test_filter=rf"\.{name}$", plusargs=plusargs,
                               results_xml=str(build_dir / f"{name}.xml"),
                               extra_env={"TFL2RTL_FLASH_CONFIG": str(config)},
                               log_file=log)
            total, failed = get_results(Path(results))
            passed = total == 1 and not failed
        except (RuntimeError, SystemExit):
            passed = False
    return passed, log.read_text(errors="replace") if log.exists() else ""


def simulate_model(build_dir: str | os.PathLike, image: np.ndarray, *,
                   tests: tuple[str, ...] = MODEL_TESTS + tuple(MODEL_REFUSALS)
                   ) -> dict[str, tuple[bool, str]]:
    """Build the model alone with ``SIZE_BYTES = len(image)`` (loaded with ``image``)
    and run each of ``tests`` (cocotb tests of :mod:`tfl2rtl.sim.flash_tb`) in its own
    simulation, since a refusal ends it.  Returns ``{test: (passed, log)}``."""
    image = np.asarray(image, dtype=np.uint8)
    build_dir, results_dir, _ = runner.prepare_build_dir(build_dir, MODEL)
    image_file = write_image(build_dir / "image.hex", image)
    config = build_dir / "config.json"
    config.write_text(json.dumps({"image": str(image_file), "size": len(image)}))
    # The model's ports are as the flash wrapper (runner.flash_top) connects them, without the
    # ``public`` marks that cocotb needs under ``--no-public-flat-rw``: this small build
    # keeps every signal public instead.
    args = [arg for arg in runner.VERILATOR_ARGS if arg != "--no-public-flat-rw"]
    sim, env, _ = runner.verilator_build(build_dir, [build_dir / f"{MODEL}.sv"], MODEL,
                         {"SIZE_BYTES": len(image)}, args)
    return {name: _test(sim, env, build_dir, MODEL, name,
                        [f"+TFL2RTL_FLASH={image_file}"], config)
            for name in tests}


@dataclass
class ReaderRun:
    """What one reader's sink took in a run: the bytes and the clock edge (numbered
    from reset, the first edge 1) that took each."""

    received: np.ndarray
    edges: np.ndarray


def _harness(readers: list, size_bytes: int) -> str:
    """SystemVerilog for the harness: the clock, and for each reader (module
    ``reader_<i>``) a flash model on its pins and a sink with random backpressure that
    keeps the first ``BYTES_<i>`` bytes and their edges."""
    ports = ["    input  wire        rst_in           /*verilator public_flat_rw*/,",
             "    input  wire [31:0] seed_in          /*verilator public_flat_rw*/,",
             "    input  wire [15:0] backpressure_in  /*verilator public_flat_rw*/,",
             "    output logic       done             /*verilator public_flat_rd*/"]
    body = []
    for i, reader in enumerate(readers):
        count = 3 * reader.length
        body.append(f"""
    // --- reader {i}: width {reader.width}, bytes {reader.base} + {reader.length} ---
    localparam int BYTES_{i} = {count};
    wire [7:0] payload_{i};
    wire valid_{i}, sck_{i}, cs_n_{i}, io_oe_{i};
    logic ready_{i};
    wire [3:0] io_o_{i}, io_i_{i};
    logic [3:0] flash_o_{i}, flash_oe_{i};
    reader_{i} reader_{i} (.clk(clk), .rst(rst), .o__payload(payload_{i}),
        .o__valid(valid_{i}), .o__ready(ready_{i}), .sck(sck_{i}), .cs_n(cs_n_{i}),
        .io_o(io_o_{i}), .io_oe(io_oe_{i}), .io_i(io_i_{i}));
    spi_flash_model #(.SIZE_BYTES({size_bytes})) flash_{i} (.sck(sck_{i}),
        .cs_n(cs_n_{i}), .host_o(io_o_{i}), .host_oe(io_oe_{i}), .flash_o(flash_o_{i}),
        .flash_oe(flash_oe_{i}));
    for (genvar k = 0; k < 4; k++) begin : g_io_{i}
        assign io_i_{i}[k] = flash_oe_{i}[k] ? flash_o_{i}[k] : (io_oe_{i} ? io_o_{i}[k] : 1'b1);
    end
    logic [7:0] bytes_{i} [BYTES_{i}]  /*verilator public_flat_rd*/;
    logic [31:0] edges_{i} [BYTES_{i}]  /*verilator public_flat_rd*/;
    logic [31:0] count_{i}, rng_{i};
    wire full_{i} = count_{i} == BYTES_{i};
    always_ff @(posedge clk) begin
        if (rst) begin
            count_{i} <= 32'd0;
            ready_{i} <= 1'b0;
            rng_{i} <= (seed ^ 32'd{i + 1}) == 32'd0 ? 32'h1 : seed ^ 32'd{i + 1};
        end else begin
            rng_{i} <= xorshift32(rng_{i});
            ready_{i} <= !full_{i} && rng_{i}[31:16] >= threshold;
            if (valid_{i} && ready_{i} && !full_{i}) begin
                bytes_{i}[count_{i}] <= payload_{i};
                edges_{i}[count_{i}] <= cycle + 32'd1;
                count_{i} <= count_{i} + 32'd1;
            end
        end
    end""")
    all_full = " && ".join(f"full_{i}" for i in range(len(readers)))
    return f"""// Generated by tfl2rtl.sim.flash_runner: QspiReaders, each on its own flash model.
`default_nettype none

module {HARNESS} #(parameter int HALF_PERIOD = 5) (
{chr(10).join(ports)}
);
    logic clk  /*verilator public_flat_rd*/;
    initial clk = 1'b0;
    always #HALF_PERIOD clk = ~clk;

    logic rst;
    logic [31:0] seed;
    logic [15:0] threshold;
    always_ff @(posedge clk) begin
        rst <= rst_in;
        seed <= seed_in;
        threshold <= backpressure_in;
    end

    function automatic logic [31:0] xorshift32(input logic [31:0] x);
        logic [31:0] y;
        y = x ^ (x << 13);
        y = y ^ (y >> 17);
        return y ^ (y << 5);
    endfunction

    // The edges since reset: the coming edge is cycle + 1.
    logic [31:0] cycle;
    always_ff @(posedge clk) cycle <= rst ? 32'd0 : cycle + 32'd1;
    assign done = !rst && {all_full};
{"".join(body)}
endmodule

`default_nettype wire
"""


def simulate_readers(readers: list, image: dict[int, int], build_dir: str | os.PathLike,
                     *, seed: int = 0, size_bytes: int = 1 << 24
                     ) -> dict[str, list[ReaderRun]]:
    """Run each of ``readers`` (:class:`tfl2rtl.hw.flash.QspiReader`) on its own flash
    model (``size_bytes``, loaded with ``image``) for three passes, once with ``o``
    always ready and once with random backpressure (:data:`READER_RUNS`); returns the
    runs by name, one :class:`ReaderRun` per reader."""
    from amaranth.back import verilog

    from tfl2rtl.hw.network import lint_waivers

    build_dir, results_dir, _ = runner.prepare_build_dir(build_dir, MODEL)
    sources = [build_dir / "waivers.vlt"]
    for i, reader in enumerate(readers):
        path = build_dir / f"reader_{i}.v"
        path.write_text(verilog.convert(reader, name=f"reader_{i}", emit_src=False))
        sources.append(path)
    sources[0].write_text(lint_waivers(str(build_dir / "reader_*.v")))
    harness = build_dir / f"{HARNESS}.sv"
    harness.write_text(_harness(readers, size_bytes))
    sources += [build_dir / f"{MODEL}.sv", harness]
    image_file = write_image(build_dir / "image.hex", image)

    slowest = max(r.startup_cycles + 4 * r.cycles_per_pass for r in readers)
    config = build_dir / "config.json"
    config.write_text(json.dumps({
        "results_dir": str(results_dir), "seed": seed, "runs": READER_RUNS,
        "bytes": [3 * r.length for r in readers],
        "timeout_cycles": int(slowest / (1 - max(READER_RUNS.values()))) * 2 + 10_000,
    }))
    sim, env, _ = runner.verilator_build(build_dir, sources, HARNESS, {})
    runs = {}
    for name in READER_RUNS:
        passed, _ = _test(sim, env, build_dir, HARNESS, name,
                          [f"+TFL2RTL_FLASH={image_file}"], config)
        if not passed:
            raise Tfl2RtlError(f"the flash reader run {name} failed; see "
                               f"{build_dir / (name + '.log')}")
        result = json.loads((results_dir / f"{name}.json").read_text())
        runs[name] = [ReaderRun(np.array(r["bytes"], dtype=np.uint8), np.array(r["edges"]))
                      for r in result["readers"]]
    return runs
