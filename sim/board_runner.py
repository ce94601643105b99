"""Simulate a whole board top (UART, host link, accelerator) in Verilator under cocotb,
with the host driver's own protocol code on the other end of the serial line.

:func:`simulate_board` builds ``rtl_templates/board_harness.sv`` (clock generator and
the host's side of the UART) around the Verilog of a
:class:`tfl2rtl.boards.link.BoardTop` named ``board_top`` and runs
:mod:`tfl2rtl.sim.board_tb`, in which :class:`tfl2rtl.boards.protocol.Client` reads the
identity, runs every input and sends bad frames, each followed by another inference.
The toolchain environment, the Verilator runtime cache and the memory-image handling are
those of :mod:`tfl2rtl.sim.runner`.

Use a fast UART for simulation (``divisor`` 4 to 8 clock cycles per bit): a byte then
takes 40-80 cycles, and Python wakes once per byte, not per bit or cycle (the harness
plays the host's UART).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfl2rtl.boards.link import BoardTop
from tfl2rtl.boards.protocol import ErrorCode, Identity
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import lint_waivers, to_verilog
from tfl2rtl.toolchain import tool_env

from . import runner

__all__ = ["TOP", "HARNESS", "BoardRun", "simulate_board", "simulate_netlist",
           "harness_source"]

TOP = "board_top"
#: The module the stream harness instantiates (a netlist's, or the flash wrapper's).
TOP_NETLIST = runner.TOP
HARNESS = "board_harness"
#: The bad frames the testbench sends and the error each must get.
BAD_FRAMES = ("BAD_CHECKSUM", "UNKNOWN_COMMAND", "WRONG_LENGTH", "TRUNCATED")


def harness_source() -> Path:
    """``rtl_templates/board_harness.sv`` in this checkout."""
    return runner.template_source(HARNESS)


@dataclass
class BoardRun:
    """What the host saw: the identity it read, the outputs (one row per input, in the
    output dtype), and for each bad frame the error code it got back and the output of
    the inference that followed (``None`` for a reply that was no error).
    ``mismatches`` counts output elements that differ from the expected ones, the
    inferences after bad frames included; ``sim_cycles`` is the simulated clock cycles
    and ``wall_seconds`` the simulator's time."""

    identity: Identity
    outputs: np.ndarray
    errors: dict[str, str | None] = field(default_factory=dict)
    mismatches: int = 0
    sim_cycles: int = 0
    wall_seconds: float = 0.0
    build_seconds: float = 0.0
    #: With loadable weights: the reply to an inference before loading (its error
    #: code's name) and the bytes of weights the driver then loaded.
    before_loading: str | None = None
    weights_loaded: int = 0
    #: With ``faults``: what :func:`tfl2rtl.sim.faults.campaign` counted (``tally``:
    #: rounds by kind and outcome), its ``wall_seconds`` and simulated ``sim_ms``, and
    #: the negative control's tally (``control``).
    faults: dict | None = None


class _SimPins:
    """A stand-in platform for a :class:`tfl2rtl.boards.build.BoardDesign` outside a
    board: each resource it requests is a top-level port named as the board harness
    expects (``clk`` the oscillator, ``rst`` the reset button, ``rx``/``tx`` the UART,
    ``busy`` the LED), and the family's platform hooks are ``hooks``' attributes."""

    default_clk = "clk"
    _names = {"clk": "clk", "button": "rst", "led": "busy"}

    def __init__(self, hooks=None):
        self._hooks = hooks

    def __getattr__(self, name):
        if name.startswith("_") or self._hooks is None:
            raise AttributeError(name)
        return getattr(self._hooks, name)

    def request(self, name, number=0, *, dir="-"):
        from types import SimpleNamespace

        from amaranth.hdl import IOPort
        from amaranth.lib import io

        def port(pin, direction):
            return io.SingleEndedPort(IOPort(1, name=pin), direction=direction)

        if name == "uart":
            return SimpleNamespace(rx=port("rx", "i"), tx=port("tx", "o"))
        return port(self._names[name], "o" if name == "led" else "i")


def simulate_board(top: BoardTop, inputs: np.ndarray, expected: np.ndarray,
                   build_dir: str | os.PathLike, *, bad_frames: bool = True,
                   check: bool = True, model: str | os.PathLike | None = None,
                   family: str | None = None, faults: int = 0, fault_seed: int = 0,
                   control: int = 0, clock=None, host_divisor: int | None = None
                   ) -> BoardRun:
    """Run ``top`` in Verilator and let the host driver send each row of ``inputs`` (in
    the model's input dtype) through the UART, then (with ``bad_frames``) one frame of
    each kind in :data:`BAD_FRAMES`, each followed by an inference of ``inputs[0]``.
    When the design's weights are loaded at run time (``top.identity.memories``), the
    driver first tries an inference, which must be refused with ``NOT_LOADED``, and then
    loads the weights of ``model`` (the ``.tflite`` file, required then).

    With ``family`` (``"ice40"`` or ``"ecp5"``, see :mod:`tfl2rtl.boards.postsynth`),
    the board top is elaborated with that family's platform hooks, and the vendor
    primitives they instantiate (the iCE40's ``SB_SPRAM256KA``) run as Yosys' cell
    models (a gate-level netlist of the whole board top simulates too slowly for the
    UART's many cycles: :func:`simulate_netlist` covers synthesis).

    With ``clock`` (a :class:`tfl2rtl.boards.clocks.PLLSetting`, of any family), the
    whole board design runs as a build makes it (:class:`tfl2rtl.boards.build.
    BoardDesign`: the PLL on the oscillator, the lock-gated reset and the reset button,
    the UART at ``top.divisor`` cycles of the PLL's clock a bit), with the PLL's
    simulation model (:func:`tfl2rtl.boards.clocks.pll_models`); the harness's clock is
    the oscillator, and the host's UART runs on it at ``host_divisor`` oscillator cycles
    a bit.

    An accelerator whose weights are in flash (``top.flash``) reads them from the flash
    model (:data:`tfl2rtl.sim.runner.FLASH_MODEL`) loaded with its flash image, on the
    harness's own clock (not with ``clock`` or ``family`` so far).

    A model with float32 edges (``inputs`` float32; ``model`` required): the host
    quantizes each input and dequantizes each output with the model's own edge nodes
    (:class:`tfl2rtl.edges.HostEdges`) around the driver, and the float32 outputs are
    compared with ``expected`` (float32) bit for bit; no fault injection then.

    With ``faults``, the driver then runs that many rounds of fault injection
    (:func:`tfl2rtl.sim.faults.campaign`, from ``fault_seed``; ``model`` required), and
    with ``control`` that many more with its reply check broken on purpose (the
    negative control, which must see wrong outputs).

    With ``check`` (the default) raises :class:`Tfl2RtlError` when the identity differs
    from ``top.identity``, an output from ``expected``, an error reply from the one
    expected, or a fault round ended with a wrong output, a board that stopped
    answering or a hang (or the control saw no wrong output); otherwise the differences
    are counted in the :class:`BoardRun`."""
    from cocotb_tools.check_results import get_results

    ident = top.identity
    inputs = np.asarray(inputs)
    expected = np.asarray(expected)
    if inputs.ndim != 2 or inputs.shape[1] != ident.input.size or not len(inputs):
        raise Tfl2RtlError(f"inputs of shape {inputs.shape}: expected one or more vectors "
                           f"of {ident.input.size} elements, one per row")
    if expected.shape != (len(inputs), ident.output.size):
        raise Tfl2RtlError(f"expected outputs of shape {expected.shape}: need "
                           f"{(len(inputs), ident.output.size)}")

    if (ident.memories or faults) and model is None:
        raise Tfl2RtlError("the design loads its weights at run time, or faults are "
                           "injected: give the model")
    floats = inputs.dtype == np.float32
    if floats and (model is None or faults or control):
        raise Tfl2RtlError("float32 inputs go through the model's float edges: give the "
                           "model, and no faults")

    build_dir, results_dir, harness = runner.prepare_build_dir(build_dir, HARNESS)
    source = build_dir / f"{TOP}.v"
    waivers = build_dir / "waivers.vlt"
    waivers.write_text(lint_waivers(str(source)))
    platform = None
    if family is not None:
        from tfl2rtl.boards.postsynth import family_hooks

        platform = family_hooks(family)
    design, divisor, clock_ns = top, top.divisor, 10.0
    if clock is None and int(divisor) != divisor:
        raise Tfl2RtlError(f"the simulated host's UART runs at whole divisors, not "
                           f"{divisor}: give the board top one")
    if clock is not None:
        from tfl2rtl.boards.build import BoardDesign

        if host_divisor is None:
            raise Tfl2RtlError("a board top on a PLL needs the host's divisor")
        design = BoardDesign(top, clock, led="led", reset="button")
        platform = _SimPins(platform)
        divisor, clock_ns = host_divisor, 1e9 / float(clock.input_hz)
    plusargs = []
    if top.flash:
        # Weights in flash: the board top under another name, in a top of the harness's
        # ports that wires its flash pins to the flash model, loaded with the weights.
        if clock is not None or family is not None:
            raise Tfl2RtlError("a board top whose weights are in flash is simulated on its "
                               "own clock, without family hooks, so far")
        plan = top.accelerator.plan
        inner = f"{TOP}_flash"
        source.write_text(runner.memory_init_files(
            to_verilog(design, name=inner), build_dir) + runner.flash_top(
                TOP, [("input", "clk", 1), ("input", "rst", 1), ("input", "rx", 1),
                      ("output", "tx", 1), ("output", "busy", 1)], inner=inner))
        image = build_dir / "flash.hex"
        image.write_text(runner.flash_hex(plan.flash_image(), plan.flash_base))
        plusargs.append(f"+TFL2RTL_FLASH={image}")
    else:
        source.write_text(runner.memory_init_files(
            to_verilog(design, name=TOP, platform=platform), build_dir))
    if clock is not None:
        from tfl2rtl.boards.clocks import pll_models

        # Last: the models set their own `timescale.
        sources, build_args = [waivers, source, harness, pll_models()], NETLIST_VERILATOR_ARGS
    elif family is None:
        sources, build_args = [waivers, source, harness], runner.VERILATOR_ARGS
        if top.flash:
            sources.append(runner.template_source(runner.FLASH_MODEL))
    else:
        from tfl2rtl.boards.postsynth import netlist_models

        # The family's cell models (Yosys' and tfl2rtl's own: the hooks instantiate
        # vendor cells).  Last: the models set their own `timescale, which would carry
        # over to the files after them.
        models = netlist_models(family, build_dir / "models")
        sources = [waivers, source, harness, *models]
        build_args = [*NETLIST_VERILATOR_ARGS, f"-I{models[0].parent}"]

    # A read waits for the slowest reply: the identity record or the output, each
    # after a request timeout at worst, plus the accelerator's time (generously).
    byte_cycles = 10 * int(divisor)
    reply_bytes = max(len(ident.pack()), ident.output.nbytes) + 8
    timeout = (2 * top.timeout_cycles + 4 * byte_cycles * reply_bytes
               + 50 * (ident.input.nbytes + ident.output.nbytes) + 200_000)
    # The fault rounds wait less, since many of them wait for a reply that never comes:
    # a request timeout, the reply, and the accelerator's time from its plan.
    plan = getattr(top.accelerator, "plan", None)
    fault_timeout = timeout if plan is None else (
        2 * top.timeout_cycles + 4 * byte_cycles * reply_bytes
        + 8 * plan.cycles_per_vector + 2000)
    config = build_dir / "config.json"
    config.write_text(json.dumps({
        "results_dir": str(results_dir),
        "divisor": int(divisor),
        "clock_ns": clock_ns,
        # Long enough for the PLL model to lock (16 of its cycles after two of the
        # oscillator's) and the reset synchronizer to let go.
        "settle_cycles": 4 if clock is None else 64,
        "timeout_cycles": timeout,
        "fault_timeout_cycles": fault_timeout,
        "inputs": _as_integers(inputs).tolist(),
        "float_edges": bool(floats),
        "bad_frames": bad_frames,
        "model": None if model is None else str(Path(model).resolve()),
        "expected": _as_integers(expected).tolist(),
        "faults": faults, "fault_seed": fault_seed, "control": control,
    }))

    sim, env, build_seconds = runner.verilator_build(
        build_dir, sources, HARNESS,
        {"DIVISOR": int(divisor), "HALF_PERIOD": clock_ns / 2}, build_args)
    with runner._environment(env):
        results_xml = sim.test(test_module="tfl2rtl.sim.board_tb", hdl_toplevel=HARNESS,
                               build_dir=build_dir, test_dir=build_dir, plusargs=plusargs,
                               extra_env={"TFL2RTL_SIM_CONFIG": str(config)},
                               log_file=build_dir / "sim.log")
    total, failed = get_results(Path(results_xml))
    if failed or total != 1:
        raise Tfl2RtlError(f"the board testbench failed; see {build_dir / 'sim.log'}")

    result = json.loads((results_dir / "board.json").read_text())
    outputs = _from_integers(result["outputs"], expected.dtype if floats
                             else np.dtype(ident.output.dtype))
    mismatches = int(np.count_nonzero(_bits(outputs) != _bits(expected)))
    errors = {}
    for name, seen in result["errors"].items():
        errors[name] = seen["code"]
        mismatches += int(np.count_nonzero(np.array(seen["after"])
                                           != _as_integers(expected[0])))
    run = BoardRun(identity=Identity.unpack(bytes.fromhex(result["identity"])),
                   outputs=outputs, errors=errors, mismatches=mismatches,
                   sim_cycles=result["sim_cycles"], wall_seconds=result["wall_seconds"],
                   build_seconds=build_seconds,
                   before_loading=result.get("before_loading"),
                   weights_loaded=result.get("weights_loaded", 0),
                   faults=result.get("faults"))
    if check:
        _check(run, top.identity, expected, bad_frames)
    return run


def _bits(values: np.ndarray) -> np.ndarray:
    """Integers as they are, float32 as their bit patterns (compared exactly)."""
    values = np.asarray(values)
    return values.view(np.uint32) if values.dtype == np.float32 else values


def _as_integers(values: np.ndarray) -> np.ndarray:
    """``values`` as int64 for the JSON config: float32 as its bit patterns."""
    return _bits(values).astype(np.int64)


def _from_integers(values, dtype: np.dtype) -> np.ndarray:
    """The inverse of :func:`_as_integers` for ``dtype``."""
    values = np.array(values, dtype=np.int64)
    if np.dtype(dtype) == np.float32:
        return values.astype(np.uint32).view(np.float32)
    return values.astype(dtype)


def fault_totals(tally: dict) -> dict[str, int]:
    """A fault tally's rounds by outcome, over every kind."""
    from .faults import OUTCOMES

    return {outcome: sum(counts[outcome] for counts in tally["counts"].values())
            for outcome in OUTCOMES}


def _check(run: BoardRun, identity: Identity, expected: np.ndarray, bad_frames: bool) -> None:
    if run.identity != identity:
        raise Tfl2RtlError(f"the board's identity {run.identity} differs from {identity}")
    if identity.memories and run.before_loading != ErrorCode.NOT_LOADED.name:
        raise Tfl2RtlError(f"an inference before the weights were loaded got "
                           f"{run.before_loading or 'an output'}, not NOT_LOADED")
    if run.mismatches:
        differ = np.argwhere(_bits(run.outputs) != _bits(expected))
        where = (f"; the first is element {differ[0][1]} of vector {differ[0][0]}"
                 if len(differ) else " (after a bad frame)")
        raise Tfl2RtlError(f"{run.mismatches} outputs through the UART differ from the "
                           f"golden model{where}")
    if bad_frames:
        wrong = {name: code for name, code in run.errors.items()
                 if code != ErrorCode[name].name}
        if wrong or set(run.errors) != set(BAD_FRAMES):
            raise Tfl2RtlError(f"bad frames got the wrong replies: {wrong or run.errors}")
    if run.faults is not None:
        totals = fault_totals(run.faults["tally"])
        bad = {k: totals[k] for k in ("wrong", "dead", "hang") if totals[k]}
        if bad or run.faults["tally"]["problems"]:
            raise Tfl2RtlError(f"injected faults: {bad}; the first: "
                               f"{run.faults['tally']['problems'][:1]}")
        if "control" in run.faults and not fault_totals(run.faults["control"])["wrong"]:
            raise Tfl2RtlError("the negative control (reply check broken) saw no wrong "
                               "output: the fault test cannot fail")


#: Verilator options for a synthesized netlist with vendor cell models: the models are
#: not lint-clean (and are not ours), so warnings do not stop the build.
NETLIST_VERILATOR_ARGS = ["--timing", "--no-public-flat-rw", "-O3", "-Wno-fatal",
                          "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN"]


def simulate_netlist(netlist: str | os.PathLike,
                     cell_models: str | os.PathLike | list[str | os.PathLike], *,
                     lanes: int, in_size: int, out_size: int, inputs: np.ndarray,
                     expected: np.ndarray, build_dir: str | os.PathLike,
                     interval: int, seed: int = 0,
                     flash: tuple[bytes, int] | None = None) -> dict[str, runner.SimRun]:
    """Run a synthesized accelerator (``netlist``, module ``tfl2rtl_top``, with the
    cell models it instantiates: ``cell_models``, one file or a list, the first the
    vendor's, whose folder holds the files it includes; see
    :func:`tfl2rtl.boards.postsynth.netlist_models`) in the stream harness of
    :mod:`tfl2rtl.sim.runner` under Verilator: the same two runs (``streaming`` and
    ``random_stalls``) and checks as :func:`tfl2rtl.sim.runner.simulate_network`.
    ``interval`` (cycles per vector, for the timeout) comes from the plan.  With
    ``flash`` (``(image, base)``: an engine whose weights are in flash, synthesized as
    module :data:`tfl2rtl.sim.runner.FLASH_DESIGN`), the netlist's flash pins go to the
    flash model holding ``image`` at ``base`` (:func:`tfl2rtl.sim.runner.flash_top`).
    Raises :class:`Tfl2RtlError` when an output differs from ``expected``."""
    from cocotb_tools.check_results import get_results

    inputs = np.asarray(inputs)
    expected = np.asarray(expected)
    build_dir, results_dir, harness = runner.prepare_build_dir(build_dir, runner.HARNESS)
    input_file = build_dir / "inputs.hex"
    size = inputs.dtype.itemsize
    input_file.write_text("".join(f"{beat:0{2 * size * lanes}x}\n"
                                  for beat in runner._beats(inputs, lanes)))
    vectors = len(inputs)
    config = build_dir / "config.json"
    config.write_text(json.dumps({
        "results_dir": str(results_dir), "vectors": vectors,
        "out_beats": vectors * out_size // lanes, "seed": seed, "stall": 0.2,
        "backpressure": 0.2, "timeout_cycles": 8 * interval * (vectors + 8) + 100_000,
    }))
    if isinstance(cell_models, (str, os.PathLike)):
        cell_models = [cell_models]
    models = [Path(path).resolve() for path in cell_models]
    sources, plusargs = [Path(netlist).resolve()], [f"+TFL2RTL_INPUTS={input_file}"]
    if flash is not None:
        image, base = flash
        wrapper = build_dir / "flash_top.v"
        width = 8 * size * lanes
        wrapper.write_text(runner.flash_top(
            TOP_NETLIST, [(d, n, width if w is None else w) for d, n, w in runner.AXIS_PORTS]))
        hexfile = build_dir / "flash.hex"
        hexfile.write_text(runner.flash_hex(image, base))
        sources += [wrapper, runner.template_source(runner.FLASH_MODEL)]
        plusargs.append(f"+TFL2RTL_FLASH={hexfile}")
    env = tool_env()
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), *runner.MAKE_ARGS]))
    began = time.perf_counter()
    with runner._environment(env):
        sim = runner._runner()
        sim.build(sources=[*models, *sources, harness],
                  hdl_toplevel=runner.HARNESS, build_dir=build_dir,
                  build_args=[*NETLIST_VERILATOR_ARGS, f"-I{models[0].parent}"], always=True,
                  timescale=("1ns", "1ps"),
                  parameters={"LANES": lanes, "BITS": 8 * size, "IN_SIZE": in_size,
                              "OUT_SIZE": out_size, "VECTORS": vectors},
                  log_file=build_dir / "build.log")
        build_seconds = time.perf_counter() - began
        results_xml = sim.test(test_module="tfl2rtl.sim.network_tb",
                               hdl_toplevel=runner.HARNESS, build_dir=build_dir,
                               test_dir=build_dir, plusargs=plusargs,
                               extra_env={"TFL2RTL_SIM_CONFIG": str(config)},
                               log_file=build_dir / "sim.log")
    total, failed = get_results(Path(results_xml))
    if failed or total != len(runner.TESTS):
        raise Tfl2RtlError(f"{failed} of {total} cocotb runs of the netlist failed; see "
                           f"{build_dir / 'sim.log'}")
    runs = {name: runner._load_run(results_dir / f"{name}.json", expected, lanes, 8 * size,
                                   build_seconds)
            for name in runner.TESTS}
    for name, run in runs.items():
        runner._check(f"netlist, {name}", run, expected)
    return runs
