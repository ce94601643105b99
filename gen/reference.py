"""Run a model in a real TFLite interpreter and read back every tensor.

This is the other side of every bit-exactness check: the golden model is compared with
what the interpreter named by the profile actually computes.
"""

from __future__ import annotations

import numpy as np

from .errors import Tfl2RtlError

__all__ = ["ReferenceInterpreter", "REFERENCE_RUNTIMES"]

#: The runtime each golden profile is checked against.
REFERENCE_RUNTIMES = {"tflm": "TensorFlow Lite Micro (PyPI tflite-micro)"}


def arena_size(model: bytes) -> int:
    """A TFLM tensor arena that holds every tensor of the model at once.

    TFLM's default, 10x the file size, is too small for a model whose activations
    outweigh its weights once every tensor is preserved, and an arena that is too small
    crashes the process instead of raising.  This is the default plus twice the bytes of
    all tensors (each aligned to 16) plus 64 KiB for the interpreter's own structures.
    """
    from tflite import Model, TensorType

    itemsize = {v: np.dtype(k.lower()).itemsize for k, v in vars(TensorType).items()
                if k.lower() in ("float32", "float16", "int32", "uint8", "int64", "int16",
                                 "int8", "float64", "bool")}
    graph = Model.GetRootAsModel(model, 0).Subgraphs(0)
    tensor_bytes = 0
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        elements = int(np.prod(t.ShapeAsNumpy(), dtype=np.int64)) if t.ShapeLength() else 1
        tensor_bytes += elements * itemsize.get(t.Type(), 16) + 16
    return 10 * len(model) + 2 * tensor_bytes + (1 << 16)


class ReferenceInterpreter:
    """One interpreter instance for a model, reused across inputs.

    ``invoke(inputs)`` returns ``{tflite tensor index: array}`` for the requested indices
    (all intermediate tensors are preserved).
    """

    def __init__(self, path: str, profile: str = "tflm"):
        if profile != "tflm":
            raise Tfl2RtlError(f"no reference interpreter for profile {profile!r}")
        from tflite_micro.python.tflite_micro import runtime

        self.profile = profile
        with open(path, "rb") as f:
            size = arena_size(f.read())
        self._interpreter = runtime.Interpreter.from_file(
            path, arena_size=size,
            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors,
        )

    def invoke(self, inputs: list[np.ndarray], indices) -> dict[int, np.ndarray]:
        it = self._interpreter
        it.reset()
        for i, x in enumerate(inputs):
            it.set_input(x, i)
        it.invoke()
        return {i: np.array(it.GetTensor(i, 0)["tensor_data"]) for i in indices}
