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
        self._interpreter = runtime.Interpreter.from_file(
            path, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
        )

    def invoke(self, inputs: list[np.ndarray], indices) -> dict[int, np.ndarray]:
        it = self._interpreter
        it.reset()
        for i, x in enumerate(inputs):
            it.set_input(x, i)
        it.invoke()
        return {i: np.array(it.GetTensor(i, 0)["tensor_data"]) for i in indices}
