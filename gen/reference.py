"""Run a model in a real TFLite interpreter and read back every tensor.

This is the other side of every bit-exactness check: the golden model is compared with
what the interpreter named by the profile actually computes.
"""

from __future__ import annotations

import numpy as np

from .errors import Tfl2RtlError

__all__ = ["ReferenceInterpreter", "LiteRtInterpreter", "TflmInterpreter", "REFERENCE_RUNTIMES",
           "reference_interpreter"]

#: The runtime each golden profile is checked against.
REFERENCE_RUNTIMES = {
    "tflm": "TensorFlow Lite Micro (PyPI tflite-micro)",
    "litert": "LiteRT (PyPI ai-edge-litert), default op resolver: XNNPACK delegate plus "
              "the optimized builtin kernels",
    "litert-ref": "LiteRT (PyPI ai-edge-litert), BUILTIN_REF op resolver: reference kernels, "
                  "no delegate",
}


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


def reference_interpreter(path: str, profile: str = "tflm"):
    """The interpreter a golden profile is checked against, for the model at ``path``."""
    if profile == "tflm":
        return TflmInterpreter(path)
    if profile in ("litert", "litert-ref"):
        return LiteRtInterpreter(path, resolver="auto" if profile == "litert" else "ref")
    raise Tfl2RtlError(f"no reference interpreter for profile {profile!r}; choose one of: "
                       f"{', '.join(REFERENCE_RUNTIMES)}")


class TflmInterpreter:
    """One TFLite Micro interpreter instance for a model, reused across inputs.

    ``invoke(inputs, indices)`` returns ``{tflite tensor index: array}`` for the requested
    indices (all intermediate tensors are preserved).
    """

    profile = "tflm"

    def __init__(self, path: str):
        from tflite_micro.python.tflite_micro import runtime

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


class LiteRtInterpreter:
    """A LiteRT (``ai-edge-litert``) interpreter that delivers every intermediate tensor.

    ``resolver="auto"`` is what ``Interpreter(model_path=...)`` does by default: the XNNPACK
    delegate takes the operators it supports and LiteRT's optimized builtin kernels run
    the rest.  ``resolver="ref"`` is ``OpResolverType.BUILTIN_REF``: reference kernels and
    no delegate.  ``experimental_preserve_all_tensors`` would switch the delegate off, so
    the model is rewritten instead (:func:`tfl2rtl.litert_model.expose_all_tensors`):
    every tensor an operator writes becomes a graph output.  ``delegated`` lists the
    operator indices the delegate took, ``repaired`` the tensors whose metadata had to be
    fixed for LiteRT to load the file at all.
    """

    def __init__(self, path: str, resolver: str = "auto", num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from .litert_model import expose_all_tensors

        self.profile = "litert" if resolver == "auto" else "litert-ref"
        kind = {"auto": OpResolverType.AUTO, "ref": OpResolverType.BUILTIN_REF}[resolver]
        with open(path, "rb") as f:
            exposed = expose_all_tensors(f.read())
        self.repaired = exposed.repaired
        try:
            self._interpreter = Interpreter(model_content=exposed.content,
                                            experimental_op_resolver_type=kind,
                                            num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise Tfl2RtlError(f"{path}: LiteRT cannot load it: {exc}") from None
        self._inputs = [d["index"] for d in self._interpreter.get_input_details()]
        self.delegated = delegated_ops(self._interpreter)

    def invoke(self, inputs: list[np.ndarray], indices) -> dict[int, np.ndarray]:
        it = self._interpreter
        for index, x in zip(self._inputs, inputs, strict=True):
            it.set_tensor(index, np.asarray(x))
        it.invoke()
        given = dict(zip(self._inputs, inputs, strict=True))
        return {i: np.array(given[i]) if i in given else it.get_tensor(i) for i in indices}


def delegated_ops(interpreter) -> list[int]:
    """The operator indices a LiteRT interpreter handed to a delegate: those whose
    outputs a ``DELEGATE`` node produces."""
    details = interpreter._get_ops_details()
    produced = set()
    for d in details:
        if d["op_name"] == "DELEGATE":
            produced |= {int(i) for i in d["outputs"]}
    return [d["index"] for d in details if d["op_name"] != "DELEGATE"
            and len(d["outputs"]) and {int(i) for i in d["outputs"]} <= produced]


#: The TFLite Micro interpreter under its historical name.
ReferenceInterpreter = TflmInterpreter
