"""Build a network's Verilog with Verilator and run the cocotb testbench on it."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfl2rtl import golden, ir
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import FullyConnectedNetwork, to_verilog
from tfl2rtl.toolchain import tool_env

__all__ = ["TOP", "SimRun", "simulate_network", "golden_vectors"]

#: The Verilog module name of the simulated top.
TOP = "tfl2rtl_top"
#: Amaranth's Verilog widens and truncates implicitly and declares zero-width debug wires
#: as `[-1:0]`; Verilator would warn about each.
VERILATOR_ARGS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-ASCRANGE", "-O3"]
TESTS = ("streaming", "random_stalls")


@dataclass
class SimRun:
    """What one cocotb test saw.

    ``outputs`` are the output vectors (in the model's output dtype), ``cycles`` the
    clock cycles from the first input beat taken to the last output beat taken,
    ``first_latency`` the cycles from the first input beat to the first output beat, and
    ``intervals`` the cycles between consecutive output vectors' last beats.
    """

    outputs: np.ndarray
    cycles: int
    first_latency: int
    intervals: list[int]
    mismatches: int


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


def simulate_network(network: FullyConnectedNetwork, inputs: np.ndarray,
                     expected: np.ndarray, build_dir: str | os.PathLike, *, seed: int = 0,
                     stall: float = 0.2, backpressure: float = 0.2) -> dict[str, SimRun]:
    """Run ``network`` in Verilator under cocotb on ``inputs`` (one vector per row, in the
    model's input dtype) and compare every output with ``expected``.

    Two tests run on one build: ``streaming`` (no idle cycles: the cycle counts are the
    design's own) and ``random_stalls`` (input pauses with probability ``stall`` and
    output backpressure with probability ``backpressure`` each cycle, from ``seed``).
    Raises :class:`Tfl2RtlError` if a test fails; returns each test's :class:`SimRun`.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    results_dir = build_dir / "results"
    results_dir.mkdir(exist_ok=True)
    for stale in results_dir.glob("*.json"):
        stale.unlink()

    source = build_dir / f"{TOP}.v"
    source.write_text(to_verilog(network, name=TOP))
    out_dtype = expected.dtype
    np.save(build_dir / "inputs.npy", np.ascontiguousarray(inputs).view(np.uint8))
    np.save(build_dir / "expected.npy", np.ascontiguousarray(expected).view(np.uint8))
    config = build_dir / "config.json"
    config.write_text(json.dumps({
        "inputs": str(build_dir / "inputs.npy"),
        "expected": str(build_dir / "expected.npy"),
        "results_dir": str(results_dir),
        "seed": seed,
        "stall": stall,
        "backpressure": backpressure,
    }))

    with _environment(tool_env()):
        runner = get_runner("verilator")
        runner.build(sources=[source], hdl_toplevel=TOP, build_dir=build_dir,
                     build_args=VERILATOR_ARGS, always=True,
                     log_file=build_dir / "build.log")
        results_xml = runner.test(test_module="tfl2rtl.sim.network_tb", hdl_toplevel=TOP,
                                  build_dir=build_dir, test_dir=build_dir,
                                  extra_env={"TFL2RTL_SIM_CONFIG": str(config)},
                                  log_file=build_dir / "sim.log")
    total, failed = get_results(Path(results_xml))

    runs = {}
    for name in TESTS:
        path = results_dir / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        runs[name] = SimRun(
            outputs=np.array(result["outputs"], dtype=np.uint8).view(out_dtype),
            cycles=result["cycles"],
            first_latency=result["first_latency"],
            intervals=result["intervals"],
            mismatches=result["mismatches"],
        )
    if failed or total != len(TESTS) or len(runs) != len(TESTS):
        raise Tfl2RtlError(
            f"{failed} of {total} cocotb tests failed; see {build_dir / 'sim.log'}"
        )
    return runs
