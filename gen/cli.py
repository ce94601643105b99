"""The ``tfl2rtl`` command line; every verb calls one function of ``tfl2rtl.api``.

Exit status: 0 success, 1 a check found a difference, 2 bad input or usage.  Input
problems print one ``tfl2rtl: error: ...`` line and no traceback.  Interrupted (Ctrl-C,
130) or terminated (SIGTERM, 143), a command stops its tools and removes what it had
begun to write, as on an error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

import numpy as np

from . import api
from .errors import Tfl2RtlError
from .golden import PROFILES

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
PROFILE_DEFAULT = "default tflm; litert-ref for a legacy uint8 model"


class _Parser(argparse.ArgumentParser):
    commands: tuple[str, ...] = ()  # the verbs, on the top-level parser

    def error(self, message):  # one line, status 2, like every other input error
        self.print_usage(sys.stderr)
        print(f"tfl2rtl: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def _progress(label: str):
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def cmd_inspect(args) -> int:
    from .report import format_text

    info = api.inspect(args.model, profile=args.profile, schedule=args.schedule,
                       max_multipliers=args.max_multipliers, weights=args.weights)
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_OK
    print(format_text(info))
    if "schedule" in info:
        from .report import format_schedule

        print(format_schedule(info["schedule"]))
    return EXIT_OK


def cmd_diff(args) -> int:
    profiles = (tuple(p.strip() for p in args.profiles.split(",")) if args.profiles
                else None)
    report = api.diff(args.model, args.input, profiles=profiles)
    print(json.dumps(report.to_json()) if args.json else api.diff_text(report))
    return EXIT_OK


def cmd_run(args) -> int:
    from .output import check_folder
    from .verify import load_inputs

    if args.dump:  # refused before anything runs
        check_folder(args.dump, force=args.force, option="--dump")
    graph = api.load(args.model)
    input_sets = load_inputs(graph, args.input)
    if len(input_sets) != 1:
        raise Tfl2RtlError(f"{args.input} holds {len(input_sets)} inputs; run takes one")
    result = api.run(graph, input_sets[0], profile=args.profile)
    if args.dump:
        api.dump_tensors(result, graph, args.dump, force=args.force)
    print(f"profile: {result.profile}")
    for name, value in zip(graph.outputs, result.outputs, strict=True):
        with np.printoptions(threshold=64, linewidth=100):
            print(f"{name} {value.dtype} {list(value.shape)}: {value.reshape(-1)}")
    if args.dump:
        print(f"wrote {len(graph.nodes) + len(graph.inputs)} tensors to {args.dump}")
    return EXIT_OK


def cmd_verify(args) -> int:
    report = api.verify(args.model, samples=args.samples, profile=args.profile,
                        inputs=args.input, seed=args.seed, progress=_progress("verify"))
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        status = "OK" if report.ok else "MISMATCH"
        print(f"{status}: {report.model}, profile {report.profile}: {report.samples} inputs, "
              f"{report.tensors_compared} tensors ({report.elements_compared:,} elements) "
              f"compared, {len(report.mismatches)} mismatching")
        for note in report.notes:
            print(f"  note: {note}")
        for m in report.mismatches[:20]:
            print(f"  input {m['sample']}: tensor {m['tensor']!r}: {m['elements']} elements "
                  f"differ, by up to {m['max_abs_diff']:g}")
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _fold_options(p, default_budget: str = "64") -> None:
    p.add_argument("--fold", default="auto", metavar="auto|full|FILE.json",
                   help="folding: auto (balanced within --max-multipliers), full (one "
                        "multiplier per layer) or a JSON file")
    p.add_argument("--max-multipliers", type=int, default=None, metavar="N",
                   help=f"multiplier budget for --fold auto (default {default_budget})")
    p.add_argument("--lanes", type=int, default=1, metavar="N",
                   help="elements per AXI4-Stream beat (tdata is 8*N bits; default 1)")


def _arch_option(p) -> None:
    from .design import ARCHITECTURES

    p.add_argument("--arch", choices=ARCHITECTURES, default="auto",
                   help="dataflow: a stage per layer; sequential: one shared MAC array and "
                        "requantizer driven by a schedule (chains of dense, convolution, "
                        "depthwise and pool layers; no residual ADD yet); auto (default): "
                        "the dataflow design, or on a board it does not fit the "
                        "sequential engine")


def _weights_option(p) -> None:
    p.add_argument("--weights", choices=("auto", "chip", "flash"), default="auto",
                   help="where the sequential engine keeps its weights: chip (a ROM in "
                        "block RAM), flash (read from the board's SPI flash as the "
                        "schedule needs them) or auto (default: in flash on a board "
                        "whose block RAM they would fill more than half of, else on "
                        "chip)")


def _force_option(p) -> None:
    p.add_argument("--force", action="store_true",
                   help="write into a folder that holds other files too: tfl2rtl's own "
                        "files there are replaced, never anyone else's (without it, only "
                        "a new or empty folder, or one tfl2rtl wrote, is written)")


def cmd_generate(args) -> int:
    design = api.generate(args.model, args.output, fold=args.fold,
                          max_multipliers=args.max_multipliers, lanes=args.lanes,
                          force=args.force, arch=args.arch, weights=args.weights)
    m = design.manifest()
    memories = 2 * sum("weights" in layer for layer in m["layers"])
    interval = ("at most " if design.architecture == "sequential" else "") + str(
        m["initiation_interval"])
    engine = ""
    if design.architecture == "sequential":
        s = m["schedule"]
        engine = (f"sequential engine: {len(m['layers'])} layers on one {s['pe']} x "
                  f"{s['simd']} unit and {s['requant_lanes']} requantizer "
                  f"lane{'s' if s['requant_lanes'] > 1 else ''}; ")
    print(f"wrote {args.output}: {m['top']}.v, manifest.json, {memories} "
          f"memory files; {engine}{m['multipliers']} multipliers, initiation interval "
          f"{interval} cycles (ideal {m['ideal_cycles']:g}, "
          f"MAC efficiency {m['mac_efficiency']:.2f})")
    if design.architecture == "sequential":
        from .report import format_schedule

        print(format_schedule(m["schedule"]))
    return EXIT_OK


def format_layers(layers: list[dict]) -> str:
    """The per-stage table of a design: node, op, output shape, folding, multipliers,
    cycles per inference and MAC efficiency."""
    rows = [("node", "op", "output", "pe x simd", "mult", "cycles", "MAC eff.")]
    for layer in layers:
        efficiency = layer.get("mac_efficiency")
        rows.append((str(layer["node"]), layer["op"],
                     "x".join(map(str, layer["output_shape"])),
                     f"{layer['pe']} x {layer['simd']}", str(layer["multipliers"]),
                     str(layer["cycles_per_vector"]),
                     "" if efficiency is None else f"{efficiency:.2f}"))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(cell.ljust(w) if k < 2 else cell.rjust(w)
                                      for k, (cell, w) in enumerate(zip(row, widths,
                                                                        strict=True)))
                     for row in rows)


def cmd_sim(args) -> int:
    report = api.simulate(args.model, inputs=args.inputs, input_files=args.input,
                          fold=args.fold, max_multipliers=args.max_multipliers,
                          lanes=args.lanes, seed=args.seed, build_dir=args.build_dir,
                          waves=args.waves, force=args.force, arch=args.arch,
                          weights=args.weights)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        status = "OK" if report.mismatches == 0 else "MISMATCH"
        floats = report.extra.get("float_outputs_compared")
        compared = (f" ({floats} float32 outputs compared bit for bit, dequantized on the "
                    "host)" if floats else "")
        print(f"{status}: {report.inputs} inputs through the RTL, {report.mismatches} "
              f"mismatching{compared}; {report.cycles_per_inference:.1f} cycles per "
              "inference, "
              f"initiation interval {report.initiation_interval} (ideal "
              f"{report.ideal_cycles:.1f}, MAC efficiency {report.mac_efficiency:.2f}), "
              f"{report.multipliers} multipliers, first output after "
              f"{report.first_latency} cycles")
        print(format_layers(report.layers))
        print(f"Verilator build {report.verilator_seconds:.1f} s, simulation "
              f"{report.sim_seconds:.1f} s, {report.build_seconds:.1f} s in all")
    return EXIT_OK if report.mismatches == 0 else EXIT_MISMATCH



def _status(message: str) -> None:
    """A progress line on stderr (long steps: synthesis, place and route)."""
    print(f"tfl2rtl: {message}", file=sys.stderr, flush=True)


def cmd_build(args) -> int:
    from .output import Destination

    out = Destination(args.output, args.force)  # --force goes with the path to the build
    report = api.build(args.model, args.board, out, fold=args.fold,
                       max_multipliers=args.max_multipliers, lanes=args.lanes,
                       baud=args.baud, clock_mhz=args.clock_mhz,
                       progress=None if args.json else _status, arch=args.arch,
                       placement_seed=args.placement_seed, weights=args.weights)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.text(), end="")
        flash = f", {report.flash_image}" if report.flash_image else ""
        print(f"wrote {args.output}: {report.bitstream}{flash}, report.json, report.txt, "
              "manifest.json, logs/")
    return EXIT_OK


def cmd_infer(args) -> int:
    result = api.infer(args.model, args.input, port=args.port, baud=args.baud,
                       timeout=args.timeout, progress=_status)
    with np.printoptions(threshold=64, linewidth=100):
        print(f"board:  {result.output.reshape(-1)}")
        print(f"golden: {result.golden.reshape(-1)}")
    print("OK: the board's output equals the golden model's" if result.ok else
          f"MISMATCH: {int(np.count_nonzero(result.output != result.golden))} elements differ")
    return EXIT_OK if result.ok else EXIT_MISMATCH


def cmd_bench(args) -> int:
    from .boards.bench import format_table

    rows = api.bench(args.models or None, board=args.board,
                     max_multipliers=args.max_multipliers, plot=args.plot,
                     progress=None if args.json else _status, arch=args.arch)
    if args.json:
        print(json.dumps([row.to_json() for row in rows]))
    else:
        print(format_table(rows), end="")
        print(f"plot: {args.plot}")
    return EXIT_OK


def _board_commands(sub) -> None:
    """The board verbs: build, infer, bench."""
    from .boards.bench import BENCH_ARCHITECTURES
    from .boards.build import BOARDS

    p = sub.add_parser("build", help="bitstream for a board, with a UART host link, and "
                                     "a resource and speed report")
    p.add_argument("model")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    _force_option(p)
    _fold_options(p, default_budget="the fastest design whose DSP blocks and logic "
                                    "fit, some layers' products in LUTs where the board "
                                    "allows")
    _arch_option(p)
    _weights_option(p)
    p.add_argument("--baud", type=int, default=None,
                   help="UART baud rate (default 3000000)")
    p.add_argument("--clock-mhz", type=float, default=None, metavar="F",
                   help="run at the fastest PLL clock at or below F MHz (default: the "
                        "fastest clock the routed design meets)")
    p.add_argument("--placement-seed", type=int, default=None, metavar="N",
                   help="nextpnr's --seed for the first build (placement moves "
                        "the Fmax by several MHz; a clock search's later builds count on "
                        "from N)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("infer", help="one inference on a board over its serial port, "
                                     "printed next to the golden model's")
    p.add_argument("model")
    p.add_argument("--port", required=True, metavar="DEVICE")
    p.add_argument("--input", required=True, metavar="X.npy")
    p.add_argument("--baud", type=int, default=3_000_000,
                   help="the rate the board was built for (default 3000000)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("bench", help="MACs, multipliers, cycles, Fmax, resources and "
                                     "throughput per model, against TFLite Micro")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="default: the model zoo (tests/models/zoo, or $TFL2RTL_ZOO) "
                        "and the full-integer test models")
    p.add_argument("--board", choices=sorted(BOARDS),
                   help="also build each model for this board (slow)")
    p.add_argument("--max-multipliers", type=int, default=None, metavar="N")
    p.add_argument("--arch", choices=BENCH_ARCHITECTURES, default="both",
                   help="both (default): a dataflow and a sequential-engine row per model, "
                        "side by side; auto: the design a build chooses; or one of "
                        "dataflow, sequential")
    p.add_argument("--plot", default="bench.png", metavar="FILE.png",
                   help="throughput against resources (default bench.png)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)


#: What ``tfl2rtl --help`` opens with.
DESCRIPTION = ("Turn a quantized TensorFlow Lite model (full-integer int8) into FPGA hardware "
               "that computes exactly what TFLite computes, checked in simulation.")
EPILOG = ("Exit status: 0 success, 1 verify or sim found a difference, 2 bad input or usage. "
          "'tfl2rtl COMMAND --help' shows a command's options.")


def version() -> str:
    """The installed package's version (``tfl2rtl --version``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("tfl2rtl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfl2rtl", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tfl2rtl {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)
    profiles = sorted(PROFILES)

    p = sub.add_parser("inspect", help="quantization mode and integer parameters per layer")
    p.add_argument("model")
    p.add_argument("--profile", default=None, choices=profiles,
                   help="also show what this profile's arithmetic uses per layer "
                        f"({PROFILE_DEFAULT})")
    p.add_argument("--schedule", action="store_true",
                   help="also plan the sequential engine and show its schedule: per "
                        "layer cycles, MACs per cycle, weight bytes and where from")
    p.add_argument("--max-multipliers", type=int, default=None, metavar="N",
                   help="the engine's multiplier budget with --schedule (default 64)")
    p.add_argument("--weights", choices=("chip", "flash"), default=None,
                   help="where the engine of --schedule keeps its weights (default chip)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("diff", help="where two golden profiles differ, tensor by tensor")
    p.add_argument("model")
    p.add_argument("--input", required=True, action="append", metavar="X.npy",
                   help="one input or a batch [N, ...] (repeatable)")
    p.add_argument("--profiles", default=None, metavar="A,B",
                   help=f"the two profiles to compare (default tflm,litert; litert-ref,"
                        f"litert for a legacy uint8 model; any two of {', '.join(profiles)})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("run", help="golden forward pass on one input")
    p.add_argument("model")
    p.add_argument("--input", required=True, metavar="X.npy")
    p.add_argument("--profile", default=None, choices=profiles, help=PROFILE_DEFAULT)
    p.add_argument("--dump", metavar="DIR", help="write every intermediate tensor here")
    _force_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="golden model vs the profile's TFLite interpreter")
    p.add_argument("model")
    p.add_argument("--samples", type=int, default=100, help="random inputs (default 100)")
    p.add_argument("--input", action="append", metavar="X.npy",
                   help="also check these inputs (repeatable)")
    p.add_argument("--profile", default=None, choices=profiles,
                   help=f"{PROFILE_DEFAULT}; TFLite Micro (tflm) runs no uint8 model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("generate", help="Verilog, memory images and manifest.json")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    _fold_options(p)
    _arch_option(p)
    _weights_option(p)
    _force_option(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("sim", help="generate, simulate in Verilator, compare with golden")
    p.add_argument("model")
    p.add_argument("--inputs", type=int, default=50, help="random inputs (default 50)")
    p.add_argument("--input", action="append", metavar="X.npy")
    _fold_options(p)
    _arch_option(p)
    _weights_option(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-dir", metavar="DIR",
                   help="keep the Verilator build (and logs) here instead of a temp folder")
    p.add_argument("--waves", metavar="FILE.vcd",
                   help="write a VCD waveform of the harness and the design (both runs) "
                        "here; use with a few --inputs: it grows with every cycle")
    _force_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sim)
    _board_commands(sub)
    parser.commands = tuple(sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no verb: the list of verbs, then the one error line
        parser.print_help(sys.stderr)
        print(f"tfl2rtl: error: choose a command: {', '.join(parser.commands)}",
              file=sys.stderr)
        return EXIT_ERROR
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (``kill``, ``timeout``, a CI job's end) unwinds like Ctrl-C: the
        # running tool is killed by ``subprocess.run`` and the temporary folders go.
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except Tfl2RtlError as exc:
        print(f"tfl2rtl: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tfl2rtl: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("tfl2rtl: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (a ``BaseException``, as
    ``KeyboardInterrupt`` is, so that no ``except Exception`` swallows it)."""


def _terminate(signum, frame):
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
