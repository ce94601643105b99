"""Build a network's Verilog with Verilator and run it in an HDL harness under cocotb.

The simulated top level is ``rtl_templates/axis_harness.sv``: it holds every input
vector in a memory, streams them into the design's ``s_axis`` (optionally with random
idle cycles), takes ``m_axis`` into an output memory (optionally with random
backpressure) and timestamps every vector, all in HDL.  cocotb (:mod:`.network_tb`) only
starts it and reads the results back, and the outputs are compared with the golden
model here, exactly.  No Python runs per clock cycle.

Speed
-----
Measured on two cores: 0.8-1.6 million cycles per second for fully folded models (ad01,
the MLP), 0.2-0.7 million for wide ones, against about 40 thousand with a testbench
driving every cycle from Python.  What it took: the harness makes its own clock
(Verilator ``--timing``; cocotb's GPI clock costs a VPI callback per edge and reached
0.4 million on hello_world, against 1.5 million); its inputs are registered (Verilator
re-evaluates all logic that depends on a top-level input in every time step);
``--no-public-flat-rw`` (see :data:`VERILATOR_ARGS`); ``OPT_FAST=-O1``.

A build takes 3-20 s: memory contents go into ``$readmemh`` files
(:func:`memory_init_files`; as Verilog initial statements, ad01's weights alone took
a minute to compile), and Verilator's runtime library is compiled once per machine and
copied into each build (:func:`_runtime_cache`).

How the numbers in :class:`SimRun` are measured
-----------------------------------------------
The harness numbers rising clock edges from the start of a run and records, for each
vector ``v``, the edges that took its first and last input beat (``in_first[v]``,
``in_last[v]``) and its first and last output beat (``out_first[v]``, ``out_last[v]``).

- ``cycles`` = ``out_last[-1] - in_first[0] + 1``: first input beat to last output beat,
  both included.  Divided by the vector count it is the cycles per inference of a batch.
- ``first_latency`` = ``out_first[0] - in_first[0]``: an empty design's response time.
- ``latencies[v]`` = ``out_first[v] - in_last[v]``: from a vector's last input beat to
  its first output beat (grows when vectors queue up behind a slower layer).
- ``intervals[v]`` = ``out_last[v + 1] - out_last[v]``: the initiation interval seen at the
  output; :attr:`SimRun.initiation_interval` is the largest of the second half (steady
  state).  In the ``streaming`` run (no stalls, no backpressure) it equals
  :attr:`tfl2rtl.hw.network.NetworkPlan.cycles_per_vector` when the design is balanced
  as planned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import DataflowNetwork, lint_waivers, to_verilog
from tfl2rtl.toolchain import tool_env, verilator_root

__all__ = ["TOP", "HARNESS", "SimRun", "simulate_network", "golden_vectors",
           "harness_source", "memory_init_files", "is_own_waveform"]

#: The Verilog module name of the simulated design.
TOP = "tfl2rtl_top"
#: The HDL top level that wraps it.
HARNESS = "axis_harness"

#: The module name of a design whose weights are in flash, inside :func:`flash_top`.
FLASH_DESIGN = "tfl2rtl_flash_design"

#: The SPI flash model (``rtl_templates/spi_flash_model.sv``, the W25Q128JV's commands
#: that :class:`tfl2rtl.hw.flash.QspiReader` uses; it stops the simulation on any other).
FLASH_MODEL = "spi_flash_model"
#: Verilator options for the simulation build.  ``--timing`` runs the harness's clock
#: generator; ``-O3`` is Verilator's own optimiser.  cocotb's runner passes
#: ``--public-flat-rw``, which keeps every signal observable and makes the simulation
#: about three times slower; ``--no-public-flat-rw`` (after it on the command line) undoes
#: that, and the harness marks the few signals cocotb reads.  ``-Wall``: every build is
#: also a lint, and any warning stops it; the generated Verilog's style warnings are
#: waived for its file only (:func:`tfl2rtl.hw.network.lint_waivers`).
VERILATOR_ARGS = ["--timing", "--no-public-flat-rw", "-O3", "-Wall"]
#: ``make`` settings for compiling the model: ``-O1`` instead of Verilator's default ``-Os``
#: compiled a wide MLP in 26 s instead of 40 and simulated a folded one 1.7 times faster.
MAKE_ARGS = ["OPT_FAST=-O1"]
TESTS = ("streaming", "random_stalls")
#: Verilator's runtime library objects, compiled once and reused by every build.
RUNTIME_OBJECTS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o",
                   "verilated_threads.o", "verilated_timing.o")


def template_source(name: str) -> Path:
    """``rtl_templates/<name>.sv`` in this checkout."""
    path = Path(__file__).resolve().parent.parent / "rtl_templates" / f"{name}.sv"
    if not path.exists():
        raise Tfl2RtlError(f"the simulation harness {path} is missing from the installation")
    return path


def harness_source() -> Path:
    """``rtl_templates/axis_harness.sv`` in this checkout."""
    return template_source(HARNESS)


#: Verilator options for :func:`run_testbench` (``--binary`` but for ``--build``: the
#: ``make`` step starts from cached runtime objects, see :func:`_runtime_cache`).
TESTBENCH_VERILATOR_ARGS = ["--cc", "--exe", "--main", "--timing", "-Wno-fatal", "-Wno-lint",
                            "-Wno-style", "-Wno-ZERODLY"]
#: The runtime objects a ``--main`` testbench links (no DPI or VPI).
TESTBENCH_RUNTIME_OBJECTS = ("verilated.o", "verilated_threads.o", "verilated_timing.o")


def run_testbench(sources: list[str | os.PathLike], top: str,
                  build_dir: str | os.PathLike, timeout: float = 300) -> str:
    """Build the self-checking SystemVerilog testbench ``top`` from ``sources`` with
    Verilator (``--main --timing``, what ``--binary`` does, its runtime objects compiled
    once and reused) in ``build_dir``, run it and return what it printed.  Raises
    :class:`Tfl2RtlError` with the first error line (Verilator's, the compiler's, or the
    simulation's ``$fatal``) when the build or the run fails."""
    build_dir = Path(build_dir)
    obj = build_dir / "obj"
    build_dir.mkdir(parents=True, exist_ok=True)
    env = tool_env()
    cache = _runtime_cache(env, flags=TESTBENCH_VERILATOR_ARGS)

    def run(step, argv):
        done = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=build_dir)
        if done.returncode:
            lines = (done.stderr + done.stdout).splitlines()
            first = next((line.strip() for line in lines
                          if line.startswith(("%Error", "%Fatal", "[")) or "Fatal" in line
                          or "error:" in line),
                         lines[0].strip() if lines else "no output")
            raise Tfl2RtlError(f"{step} of {top} failed: {first}")
        return done.stdout

    run("Verilator build", ["verilator", *TESTBENCH_VERILATOR_ARGS, "--top-module", top,
                            "-Mdir", str(obj), *map(str, sources)])
    # The runtime objects depend on the generated makefile (see :func:`_runner`): it gets
    # the oldest time stamp, the cache key covers the flags instead.
    os.utime(obj / f"V{top}.mk", (0, 0))
    _restore_runtime(cache, obj, TESTBENCH_RUNTIME_OBJECTS)
    run("Verilator build", ["make", "-C", str(obj), "-f", f"V{top}.mk"])
    _save_runtime(cache, obj, TESTBENCH_RUNTIME_OBJECTS)
    return run("simulation", [str(obj / f"V{top}")])


def is_own_waveform(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a VCD file :func:`simulate_network` wrote (its scopes start at
    the harness, ``axis_harness``): the only file ``sim --waves`` replaces."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    header = head.split(b"$enddefinitions", 1)[0]
    return head.startswith(b"$") and f"$scope module {HARNESS} $end".encode() in header


def prepare_build_dir(build_dir: str | os.PathLike, harness: str) -> tuple[Path, Path, Path]:
    """Create ``build_dir`` with an empty ``results/`` (stale results removed) and a copy
    of the harness template ``harness``; returns the three paths (absolute)."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    results_dir = build_dir / "results"
    results_dir.mkdir(exist_ok=True)
    for stale in results_dir.glob("*.json"):
        stale.unlink()
    copy = build_dir / f"{harness}.sv"
    shutil.copyfile(template_source(harness), copy)
    return build_dir, results_dir, copy


@dataclass
class SimRun:
    """What one run of the harness saw (see the module docstring for the definitions).

    ``outputs`` are the output vectors in the model's output dtype; ``mismatches`` counts
    the elements that differ from the expected ones and ``tlast_errors`` the output beats
    whose ``tlast`` was wrong.  ``wall_seconds`` is the simulator's time for the run,
    ``build_seconds`` the Verilator build shared by all runs of one call.
    """

    outputs: np.ndarray
    cycles: int
    first_latency: int
    intervals: list[int]
    mismatches: int
    latencies: list[int] = field(default_factory=list)
    tlast_errors: int = 0
    cycles_simulated: int = 0
    wall_seconds: float = 0.0
    build_seconds: float = 0.0

    @property
    def cycles_per_inference(self) -> float:
        return self.cycles / len(self.outputs)

    @property
    def initiation_interval(self) -> int:
        """The largest output interval in the second half of the run (0 for one vector)."""
        steady = self.intervals[len(self.intervals) // 2:]
        return max(steady, default=0)

    @property
    def cycles_per_second(self) -> float:
        return self.cycles_simulated / self.wall_seconds if self.wall_seconds else 0.0


@contextmanager
def _environment(env: dict[str, str]):
    """cocotb's runner reads ``os.environ`` (and finds ``verilator`` on its ``PATH``)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def golden_vectors(graph: ir.Graph, inputs: np.ndarray) -> np.ndarray:
    """The golden model's output for each row of ``inputs``, one row per vector."""
    shape = graph.tensors[graph.inputs[0]].shape
    return np.array([golden.run(graph, x.reshape(shape)).outputs[0].reshape(-1)
                     for x in inputs])


def _runtime_cache(env: dict[str, str], waves: bool = False,
                   flags: list[str] = VERILATOR_ARGS) -> Path:
    """Where the runtime objects (:data:`RUNTIME_OBJECTS`, or a testbench's
    :data:`TESTBENCH_RUNTIME_OBJECTS`) for this Verilator, compiler and cocotb, Verilator
    ``flags`` (and with or without tracing, which compiles them differently) are kept.

    They take about 15 s to compile and never change between designs, so each build
    starts with copies (newer than their sources, so ``make`` keeps them)."""
    import cocotb

    root = verilator_root()
    compiler = subprocess.run([env.get("CXX", "c++"), "--version"], capture_output=True,
                              text=True, env=env).stdout
    key = hashlib.sha256("\n".join([
        str(root), (root / "include" / "verilated.mk").read_text(), compiler,
        cocotb.__version__, " ".join(flags), env.get("MAKEFLAGS", ""),
        f"trace={int(waves)}",
    ]).encode()).hexdigest()[:16]
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tfl2rtl" / f"verilator-runtime-{key}"


def _runner():
    """cocotb's Verilator runner, with one step between Verilator and ``make``: the
    generated ``Vtop.mk`` gets the oldest possible time stamp.  ``verilated.mk`` makes
    the runtime objects depend on it (so that changed flags rebuild them), which would
    recompile the copies from the cache in every build; the cache key covers the
    flags instead."""
    from cocotb_tools.runner import Verilator

    class Runner(Verilator):
        def _build_command(self):
            verilate, *make = super()._build_command()
            makefile = str(self.build_dir / "Vtop.mk")
            age = [sys.executable, "-c", "import os, sys; os.utime(sys.argv[1], (0, 0))",
                   makefile]
            return [verilate, age, *make]

    return Runner()


def _restore_runtime(cache: Path, build_dir: Path, names=RUNTIME_OBJECTS) -> None:
    if all((cache / name).exists() for name in names):
        for name in names:
            shutil.copyfile(cache / name, build_dir / name)


def _save_runtime(cache: Path, build_dir: Path, names=RUNTIME_OBJECTS) -> None:
    """Keep this build's runtime objects for the next ones (best effort: without a
    writable cache every build compiles its own)."""
    if all((cache / name).exists() for name in names):
        return
    staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        staging.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(build_dir / name, staging / name)
        staging.rename(cache)
    except OSError:  # no cache, or another build saved them first
        shutil.rmtree(staging, ignore_errors=True)


_INITIAL_BLOCK = re.compile(
    r"^  initial begin\n((?:    [A-Za-z_][A-Za-z_0-9]*\[\d+\] = \d+'h[0-9a-f]+;\n)+)  end\n",
    re.MULTILINE)
_INITIAL_WORD = re.compile(r"    ([A-Za-z_][A-Za-z_0-9]*)\[(\d+)\] = \d+'h([0-9a-f]+);")


def memory_init_files(verilog: str, directory: Path) -> str:
    """``verilog`` with each memory's ``initial`` block of one assignment per word (as
    Yosys writes Amaranth's memory contents) replaced by a ``$readmemh`` of a file
    written to ``directory``: the same contents, but Verilator then reads them at
    start-up instead of compiling one C++ statement per word (minutes for a model's
    weights).  Blocks of any other form are kept."""
    count = 0

    def replace(match):
        nonlocal count
        words = _INITIAL_WORD.findall(match.group(1))
        names = {name for name, _, _ in words}
        if len(names) != 1:
            return match.group(0)
        lines, expected = [], None
        for _, address, value in words:
            if int(address) != expected:
                lines.append(f"@{int(address):x}")
            lines.append(value)
            expected = int(address) + 1
        path = directory / f"memory_{count}.hex"
        count += 1
        path.write_text("\n".join(lines) + "\n")
        return f'  initial $readmemh("{path}", {names.pop()});\n'

    return _INITIAL_BLOCK.sub(replace, verilog)


def _beats(vectors: np.ndarray, lanes: int) -> np.ndarray:
    """``vectors`` (any 8 or 16-bit integer dtype) as one unsigned beat of ``lanes``
    elements per row, element 0 of a beat in its lowest bits."""
    bits = 8 * vectors.dtype.itemsize
    unsigned = np.dtype(f"uint{bits}")
    data = np.ascontiguousarray(vectors).view(unsigned).reshape(-1, lanes).astype(object)
    return (data << (bits * np.arange(lanes, dtype=object))).sum(axis=1)


def _unbeats(beats: list[int], lanes: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return np.array([(beat >> (bits * lane)) & mask for beat in beats for lane in range(lanes)],
                    dtype=np.dtype(f"uint{bits}"))


def simulate_network(network: DataflowNetwork, inputs: np.ndarray,
                     expected: np.ndarray, build_dir: str | os.PathLike, *, seed: int = 0,
                     stall: float = 0.2, backpressure: float = 0.2,
                     check: bool = True,
                     waves: str | os.PathLike | None = None) -> dict[str, SimRun]:
    """Run ``network`` in Verilator under cocotb on ``inputs`` (one vector per row, in the
    model's input dtype) and compare every output with ``expected`` exactly.

    Two runs on one build: ``streaming`` (no idle cycles: the cycle counts are the
    design's own) and ``random_stalls`` (the input idles with probability ``stall`` and
    the output is held back with probability ``backpressure`` in each cycle, from
    ``seed``).  With ``check`` (the default) raises :class:`Tfl2RtlError` when an output
    differs from ``expected`` or a ``tlast`` is misplaced; otherwise the differences are
    counted in each :class:`SimRun`.  Returns the runs by name.

    With ``waves`` (a file name ending in ``.vcd``) the design is built with Verilator's
    tracing and every signal of the harness and the design is written there as a VCD
    waveform, both runs one after the other (the ``random_stalls`` run starts after the
    reset pulse that follows the ``streaming`` one).  Tracing slows the simulation down
    several times and the file grows with every cycle: use it with a few inputs.
    """
    from cocotb_tools.check_results import get_results

    plan = network.plan
    inputs = np.asarray(inputs)
    expected = np.asarray(expected)
    size = plan.act_bits // 8
    if inputs.ndim != 2 or inputs.shape[1] != plan.in_size or inputs.dtype.itemsize != size:
        raise Tfl2RtlError(
            f"inputs of shape {inputs.shape} and dtype {inputs.dtype}: expected "
            f"{plan.act_bits}-bit vectors of {plan.in_size} elements, one per row"
        )
    if (expected.shape != (len(inputs), plan.out_size)
            or expected.dtype.itemsize != size):
        raise Tfl2RtlError(
            f"expected outputs of shape {expected.shape}: need {(len(inputs), plan.out_size)}"
        )
    if not 0 <= stall < 1 or not 0 <= backpressure < 1:
        raise Tfl2RtlError("stall and backpressure are probabilities in [0, 1)")
    vectors, lanes = len(inputs), plan.lanes
    if waves is not None:
        waves = Path(waves).resolve()
        if waves.suffix != ".vcd":
            raise Tfl2RtlError(f"--waves {waves.name}: the waveform file must end in .vcd")
        waves.parent.mkdir(parents=True, exist_ok=True)

    build_dir, results_dir, harness = prepare_build_dir(build_dir, HARNESS)
    source = build_dir / f"{TOP}.v"
    flash = getattr(plan, "weights", "chip") == "flash"
    sources, plusargs = [], []
    if flash:
        # The design under another name, inside a top of the harness's ports that wires
        # its flash pins to the flash model, loaded with the weights at their address.
        design = to_verilog(network, name=FLASH_DESIGN)
        width = plan.act_bits * lanes
        source.write_text(memory_init_files(design, build_dir) + flash_top(
            TOP, [(d, n, width if w is None else w) for d, n, w in AXIS_PORTS]))
        image = build_dir / "flash.hex"
        image.write_text(flash_hex(plan.flash_image(), plan.flash_base))
        sources.append(template_source(FLASH_MODEL))
        plusargs.append(f"+TFL2RTL_FLASH={image}")
    else:
        source.write_text(memory_init_files(to_verilog(network, name=TOP), build_dir))
    waivers = build_dir / "waivers.vlt"
    waivers.write_text(lint_waivers(str(source)))
    digits = 2 * size * lanes
    input_file = build_dir / "inputs.hex"
    input_file.write_text("".join(f"{beat:0{digits}x}\n" for beat in _beats(inputs, lanes)))

    # Generous: every vector at the planned interval, slowed by the stalls, plus the
    # time to fill the pipeline (at most a few intervals) and a margin.
    slowdown = 1 / ((1 - stall) * (1 - backpressure))
    timeout = int(4 * slowdown * plan.cycles_per_vector * (vectors + 8)) + 100_000
    config = build_dir / "config.json"
    config.write_text(json.dumps({
        "results_dir": str(results_dir),
        "vectors": vectors,
        "out_beats": vectors * plan.out_size // lanes,
        "seed": seed,
        "stall": stall,
        "backpressure": backpressure,
        "timeout_cycles": timeout,
    }))

    env = tool_env()
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), *MAKE_ARGS]))
    cache = _runtime_cache(env, waves is not None)
    _restore_runtime(cache, build_dir)
    began = time.perf_counter()
    with _environment(env):
        runner = _runner()
        with _one_line_errors("the Verilator build", build_dir / "build.log"):
            runner.build(sources=[waivers, source, *sources, harness], hdl_toplevel=HARNESS,
                         build_dir=build_dir,
                         build_args=VERILATOR_ARGS, always=True, timescale=("1ns", "1ps"),
                         waves=waves is not None,
                         parameters={"LANES": lanes, "BITS": plan.act_bits,
                                     "IN_SIZE": plan.in_size,
                                     "OUT_SIZE": plan.out_size, "VECTORS": vectors},
                         log_file=build_dir / "build.log")
        build_seconds = time.perf_counter() - began
        _save_runtime(cache, build_dir)
        with _one_line_errors("the simulation", build_dir / "sim.log"):
            results_xml = runner.test(
                test_module="tfl2rtl.sim.network_tb", hdl_toplevel=HARNESS,
                build_dir=build_dir, test_dir=build_dir,
                plusargs=[f"+TFL2RTL_INPUTS={input_file}", *plusargs],
                waves=waves is not None,
                test_args=[] if waves is None else ["--trace-file", str(waves)],
                extra_env={"TFL2RTL_SIM_CONFIG": str(config)},
                log_file=build_dir / "sim.log")
    total, failed = get_results(Path(results_xml))
    if failed or total != len(TESTS):
        raise Tfl2RtlError(
            f"{failed} of {total} cocotb runs failed; see {build_dir / 'sim.log'}"
        )

    runs = {name: _load_run(results_dir / f"{name}.json", expected, lanes, plan.act_bits,
                            build_seconds)
            for name in TESTS}
    if check:
        for name, run in runs.items():
            _check(name, run, expected)
    return runs


def flash_hex(image: bytes, base: int) -> str:
    """``image`` at byte address ``base`` of an erased flash, as the flash model's
    ``$readmemh`` file: one byte a line, with an ``@address`` line before it."""
    return f"@{base:x}\n" + "".join(f"{b:02x}\n" for b in image)


#: The ports of a design on the harness (direction, name, width; ``None``: the data
#: width), besides the flash pins of one whose weights are in flash.
AXIS_PORTS = (("input", "clk", 1), ("input", "rst", 1), ("input", "s_axis_tdata", None),
              ("input", "s_axis_tvalid", 1), ("output", "s_axis_tready", 1),
              ("input", "s_axis_tlast", 1), ("output", "m_axis_tdata", None),
              ("output", "m_axis_tvalid", 1), ("input", "m_axis_tready", 1),
              ("output", "m_axis_tlast", 1))


def flash_top(name: str, ports, inner: str = FLASH_DESIGN) -> str:
    """Verilog of module ``name``: module ``inner`` (a design whose weights are in
    flash: :data:`~tfl2rtl.hw.engine.FLASH_PORTS`) with its other ``ports``
    (``(direction, name, width)`` each), its flash pins wired to the flash model
    (:data:`FLASH_MODEL`; a line nobody drives reads high, as the board's pull-ups make
    it)."""
    declared = ",\n    ".join(f"{d} wire [{w - 1}:0] {n}" for d, n, w in ports)
    connected = ", ".join(f".{n}({n})" for _, n, _ in ports)
    return f"""
module {name} (
    {declared}
);
    wire sck, cs_n, host_oe;
    wire [3:0] host_o, flash_o, flash_oe, io_i;
    {inner} engine (
        {connected},
        .flash_sck(sck), .flash_cs_n(cs_n), .flash_io_o(host_o), .flash_io_oe(host_oe),
        .flash_io_i(io_i)
    );
    {FLASH_MODEL} flash (
        .sck(sck), .cs_n(cs_n), .host_o(host_o), .host_oe(host_oe),
        .flash_o(flash_o), .flash_oe(flash_oe)
    );
    genvar k;
    for (k = 0; k < 4; k = k + 1) begin : line
        assign io_i[k] = flash_oe[k] ? flash_o[k] : host_oe ? host_o[k] : 1'b1;
    end
endmodule
"""


def verilator_build(build_dir: Path, sources: list, top: str, parameters: dict,
                    build_args: list[str] = VERILATOR_ARGS):
    """Build ``top`` from ``sources`` (with Verilator's parameters ``parameters`` and
    ``build_args``) in ``build_dir`` under cocotb's runner, reusing the cached Verilator
    runtime; a failed build is one line naming its first error.  Returns the runner,
    the environment to run it in (:func:`_environment`) and the build's seconds."""
    env = tool_env()
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), *MAKE_ARGS]))
    cache = _runtime_cache(env)
    _restore_runtime(cache, build_dir)
    began = time.perf_counter()
    with _environment(env):
        sim = _runner()
        with _one_line_errors("the Verilator build", build_dir / "build.log"):
            sim.build(sources=sources, hdl_toplevel=top, build_dir=build_dir,
                      build_args=build_args, always=True, timescale=("1ns", "1ps"),
                      parameters=parameters, log_file=build_dir / "build.log")
    _save_runtime(cache, build_dir)
    return sim, env, time.perf_counter() - began


@contextmanager
def _one_line_errors(step: str, log: Path):
    """cocotb's runner raises ``RuntimeError`` (or exits) when a command fails: turn that
    into the tool's one-line error naming the first error in ``log``."""
    try:
        yield
    except (RuntimeError, SystemExit) as exc:
        first = ""
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            first = next((line.strip() for line in lines
                          if line.startswith(("%Error", "%Warning", "error:"))
                          or ": error:" in line), "")
        detail = f": {first}" if first else f" ({exc})"
        raise Tfl2RtlError(f"{step} failed{detail}; see {log}") from None


def _load_run(path: Path, expected: np.ndarray, lanes: int, bits: int,
              build_seconds: float) -> SimRun:
    result = json.loads(path.read_text())
    outputs = _unbeats(result["outputs"], lanes, bits).view(expected.dtype)
    outputs = outputs.reshape(expected.shape)
    in_first, in_last = np.array(result["in_first"]), np.array(result["in_last"])
    out_first, out_last = np.array(result["out_first"]), np.array(result["out_last"])
    return SimRun(
        outputs=outputs,
        cycles=int(out_last[-1] - in_first[0] + 1),
        first_latency=int(out_first[0] - in_first[0]),
        intervals=np.diff(out_last).tolist(),
        mismatches=int(np.count_nonzero(outputs != expected)),
        latencies=(out_first - in_last).tolist(),
        tlast_errors=result["tlast_errors"],
        cycles_simulated=result["cycles_simulated"],
        wall_seconds=result["wall_seconds"],
        build_seconds=build_seconds,
    )


def _check(name: str, run: SimRun, expected: np.ndarray) -> None:
    if run.mismatches:
        vector, element = (int(i) for i in np.argwhere(run.outputs != expected)[0])
        raise Tfl2RtlError(
            f"{name}: {run.mismatches} outputs differ from the golden model; the first is "
            f"element {element} of vector {vector}: {run.outputs[vector, element]}, "
            f"expected {expected[vector, element]}"
        )
    if run.tlast_errors:
        raise Tfl2RtlError(
            f"{name}: m_axis_tlast is wrong on {run.tlast_errors} output beats"
        )
