"""tfl2rtl: quantized TensorFlow Lite models to bit-exact FPGA hardware.

The Python API (the command line is a thin layer over it)::

    import tfl2rtl
    graph = tfl2rtl.load("model.tflite")            # parse, check, lower to the IR
    info = tfl2rtl.inspect("model.tflite")          # scales, multipliers, shifts per layer
    result = tfl2rtl.run(graph, [x])                # golden forward pass, every tensor
    report = tfl2rtl.verify("model.tflite", 100)    # golden vs TFLite Micro, every tensor
    where = tfl2rtl.diff(graph, [x])                # tflm vs litert profile, per tensor
    design = tfl2rtl.generate(graph, "out/")        # Verilog, memories, manifest.json
    sim = tfl2rtl.simulate(graph, inputs=50)        # Verilator + cocotb vs golden
    built = tfl2rtl.build(graph, "icebreaker", "bit/")  # bitstream and report
    out = tfl2rtl.infer(graph, "x.npy", port="/dev/ttyUSB1")  # on the board
    rows = tfl2rtl.bench()                          # the benchmark table
"""

from .api import (
    InferResult,
    SimReport,
    bench,
    build,
    diff,
    dump_tensors,
    generate,
    infer,
    inspect,
    load,
    run,
    simulate,
    verify,
)
from .errors import Tfl2RtlError

__all__ = ["load", "inspect", "run", "verify", "diff", "dump_tensors", "generate", "simulate",
           "build", "infer", "bench", "SimReport", "InferResult", "Tfl2RtlError"]
