"""Read a ``.tflite`` flatbuffer into plain Python objects.

Everything is read eagerly and checked while reading (identifier, index ranges, shape
sizes), so a truncated, corrupt or foreign file fails here with one
:class:`~tfl2rtl.errors.Tfl2RtlError` and nothing downstream ever touches raw flatbuffer
offsets.  The classification of the model's quantization mode lives here too, because
it is a property of the file, not of the lowering.
"""

from __future__ import annotations

import hashlib
import inspect
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from .errors import Tfl2RtlError

__all__ = ["TflTensor", "TflOperator", "TflModel", "read_model", "classify", "Mode"]

#: Any file larger than this is refused before it is read.
MAX_FILE_BYTES = 1 << 30
#: Any tensor claiming more elements than this is refused (a corrupt shape).
MAX_TENSOR_ELEMENTS = 1 << 28

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
_OPTION_NAMES = {v: k for k, v in vars(BuiltinOptions).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(TensorType).items() if not k.startswith("_")}
_NUMPY_TYPES = {
    "float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
    "int64": np.int64, "bool": np.bool_, "int16": np.int16, "int8": np.int8,
    "float64": np.float64, "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16,
}


@dataclass(eq=False)
class TflTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def quantized(self) -> bool:
        return self.scales.size > 0

    @property
    def scale(self) -> float:
        """The first (per-tensor) scale as float32, as TFLite's ``params.scale``."""
        return float(self.scales[0]) if self.scales.size else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0


@dataclass(eq=False)
class TflOperator:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass(eq=False)
class TflModel:
    path: str
    sha256: str
    version: int
    description: str
    tensors: list[TflTensor]
    operators: list[TflOperator]
    inputs: list[int]
    outputs: list[int]

    def op_names(self) -> list[str]:
        return [op.name for op in self.operators]


class Mode:
    """Quantization modes :func:`classify` can report."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC_RANGE = "dynamic-range"
    INT16X8 = "int16x8"
    INT8 = "int8"
    UINT8_LEGACY = "uint8-legacy"


def _corrupt(path: str, what: str) -> Tfl2RtlError:
    return Tfl2RtlError(
        f"{path}: not a valid TFLite model ({what}); re-export it with the TFLite converter"
    )


def _read_options(op) -> dict:
    kind = op.BuiltinOptionsType()
    if kind == 0:
        return {}
    name = _OPTION_NAMES.get(kind)
    table = op.BuiltinOptions()
    if name is None or table is None:
        return {}
    cls = getattr(getattr(tflite, name, None), name, None) or getattr(tflite, name, None)
    if cls is None or not inspect.isclass(cls):
        return {}
    options = cls()
    options.Init(table.Bytes, table.Pos)
    values = {}
    for attr, fn in inspect.getmembers(cls, inspect.isfunction):
        if attr.startswith(("GetRootAs", "Init", "_")) or attr.endswith(
            ("IsNone", "Length", "BufferHasIdentifier")
        ):
            continue
        params = list(inspect.signature(fn).parameters)
        if attr.endswith("AsNumpy"):
            result = getattr(options, attr)()
            values[attr[: -len("AsNumpy")]] = [] if isinstance(result, int) else result.tolist()
        elif params == ["self"]:
            values[attr] = getattr(options, attr)()
    return values


def _read_tensor(path, model, index, t, n_buffers, file_bytes) -> TflTensor:
    shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else []))
    if any(d < 0 for d in shape):
        raise Tfl2RtlError(
            f"{path}: tensor {index} has a dynamic shape {shape}; give the model a fixed "
            "batch size (keras.Input(..., batch_size=1)) before converting"
        )
    elements = 1
    for d in shape:
        elements *= d
        if elements > MAX_TENSOR_ELEMENTS:
            raise _corrupt(path, f"tensor {index} claims shape {shape}")
    dtype = _TYPE_NAMES.get(t.Type(), f"type{t.Type()}")
    q = t.Quantization()
    scales = np.zeros(0, np.float32)
    zero_points = np.zeros(0, np.int64)
    qdim = 0
    if q is not None:
        if q.ScaleLength():
            scales = q.ScaleAsNumpy().astype(np.float32)
        if q.ZeroPointLength():
            zero_points = q.ZeroPointAsNumpy().astype(np.int64)
        qdim = int(q.QuantizedDimension())
    data = None
    b = t.Buffer()
    if not 0 <= b < n_buffers:
        raise _corrupt(path, f"tensor {index} points at buffer {b} of {n_buffers}")
    if b > 0:
        buf = model.Buffers(b)
        raw = None
        if buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
        elif buf.Offset() > 1:
            start, size = int(buf.Offset()), int(buf.Size())
            if start + size > len(file_bytes):
                raise _corrupt(path, f"buffer {b} lies beyond the end of the file")
            raw = file_bytes[start : start + size]
        if raw is not None:
            np_type = _NUMPY_TYPES.get(dtype)
            if np_type is None:
                data = np.frombuffer(raw, np.uint8).copy()
            else:
                itemsize = np.dtype(np_type).itemsize
                if len(raw) != elements * itemsize:
                    raise _corrupt(
                        path,
                        f"tensor {index} has {len(raw)} bytes of data for shape {shape} {dtype}",
                    )
                data = np.frombuffer(raw, np_type).reshape(shape).copy()
    return TflTensor(
        index=index,
        name=t.Name().decode("utf-8", "replace") if t.Name() else f"tensor{index}",
        shape=shape,
        dtype=dtype,
        data=data,
        scales=scales,
        zero_points=zero_points,
        quantized_dimension=qdim,
    )


def read_model(path: str | Path) -> TflModel:
    """Read and check a ``.tflite`` file; raise :class:`Tfl2RtlError` for anything invalid."""
    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise Tfl2RtlError(f"{path}: no such file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise Tfl2RtlError(f"{path}: larger than 1 GiB, too large for an FPGA model")
    data = p.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise _corrupt(path, "the file does not carry the TFLite identifier 'TFL3'")
    try:
        return _parse(path, data)
    except Tfl2RtlError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError,
            UnicodeDecodeError, AttributeError):
        # The flatbuffers runtime reports offsets outside the buffer with these.
        raise _corrupt(path, "the flatbuffer is truncated or corrupt") from None


def _parse(path: str, data: bytes) -> TflModel:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise _corrupt(path, "it has no subgraph")
    if model.SubgraphsLength() > 1:
        raise Tfl2RtlError(
            f"{path}: has {model.SubgraphsLength()} subgraphs (control flow such as WHILE or "
            "IF); tfl2rtl supports single-graph models only"
        )
    graph = model.Subgraphs(0)
    n_tensors = graph.TensorsLength()
    n_buffers = model.BuffersLength()
    tensors = [
        _read_tensor(path, model, i, graph.Tensors(i), n_buffers, data) for i in range(n_tensors)
    ]
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()))
        name = _OP_NAMES.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = "CUSTOM:" + (custom.decode("utf-8", "replace") if custom else "?")
        codes.append(name)

    def check_indices(what, indices, allow_optional):
        for t in indices:
            if t == -1 and allow_optional:
                continue
            if not 0 <= t < n_tensors:
                raise _corrupt(path, f"{what} refers to tensor {t} of {n_tensors}")

    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        opcode = op.OpcodeIndex()
        if not 0 <= opcode < len(codes):
            raise _corrupt(path, f"operator {i} has opcode index {opcode} of {len(codes)}")
        inputs = tuple(int(x) for x in (op.InputsAsNumpy() if op.InputsLength() else []))
        outputs = tuple(int(x) for x in (op.OutputsAsNumpy() if op.OutputsLength() else []))
        check_indices(f"operator {i} ({codes[opcode]})", inputs, True)
        check_indices(f"operator {i} ({codes[opcode]})", outputs, False)
        operators.append(TflOperator(i, codes[opcode], inputs, outputs, _read_options(op)))
    inputs = [int(x) for x in (graph.InputsAsNumpy() if graph.InputsLength() else [])]
    outputs = [int(x) for x in (graph.OutputsAsNumpy() if graph.OutputsLength() else [])]
    check_indices("the graph's inputs", inputs, False)
    check_indices("the graph's outputs", outputs, False)
    if not inputs or not outputs:
        raise _corrupt(path, "the graph has no inputs or no outputs")
    description = model.Description()
    return TflModel(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        version=int(model.Version()),
        description=description.decode("utf-8", "replace") if description else "",
        tensors=tensors,
        operators=operators,
        inputs=inputs,
        outputs=outputs,
    )


_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}
_SHAPE_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}


def classify(model: TflModel) -> tuple[str, str]:
    """Return ``(mode, io)``: the quantization mode (see :class:`Mode`) and the dtype of
    the graph's inputs as the user feeds them (``int8``, ``uint8``, ``float32``...)."""
    tensors = model.tensors
    io = tensors[model.inputs[0]].dtype
    if any(t.dtype == "float16" for t in tensors):
        return Mode.FLOAT16, io
    activation_types = set()
    edge_types = set()
    float_compute_with_int_weights = False
    for op in model.operators:
        if op.name in _EDGE_OPS:
            edge_types |= {tensors[i].dtype for i in (*op.inputs, *op.outputs) if i >= 0}
            continue
        ins = [tensors[i] for i in op.inputs if i >= 0]
        acts = [t for t in ins if not t.is_constant] + [tensors[i] for i in op.outputs]
        types = {t.dtype for t in acts}
        activation_types |= types
        if "float32" in types and any(t.is_constant and t.dtype == "int8" for t in ins):
            float_compute_with_int_weights = True
    if float_compute_with_int_weights:
        return Mode.DYNAMIC_RANGE, io
    if "float32" in activation_types:
        return Mode.FLOAT32, io
    # A 16x8 model has int16 activations throughout; an int8 model whose op keeps int16
    # state (UNIDIRECTIONAL_SEQUENCE_LSTM's cell state, SVDF's activation state) has int8
    # activations as well: it is an int8 model, refused later by that op's name.
    if "int16" in activation_types and "int8" not in activation_types:
        return Mode.INT16X8, io
    # A model of edges only (QUANTIZE from float32 to int16, or int16 -> int16) is 16x8.
    if not activation_types and "int16" in edge_types and "int8" not in edge_types:
        return Mode.INT16X8, io
    if "uint8" in activation_types and "int8" not in activation_types:
        return Mode.UINT8_LEGACY, io
    return Mode.INT8, io
