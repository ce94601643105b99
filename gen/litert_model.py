"""Rewrite a ``.tflite`` model so that LiteRT exposes every intermediate tensor.

LiteRT's ``experimental_preserve_all_tensors`` keeps intermediates only by running without
the default XNNPACK delegate, which changes the arithmetic being checked.  Instead, the
model is rewritten so that every tensor an operator writes is also a graph output: the
interpreter must then deliver it, delegate or not.  Operators, weights and quantization
are untouched, so the same nodes go to the same delegate partitions (checked by
:func:`delegated_ops` and the tests); XNNPACK's own fusions (a clamp into the producing
operator, a PAD into the following convolution) only ever merge nodes whose result is
identical either way.

One repair is made, because LiteRT refuses the file otherwise: a tensor whose
``quantized_dimension`` lies outside its rank (TFLite Micro's ``person_detect`` carries
``quantized_dimension = 3`` on its 1-D int32 biases) gets ``quantized_dimension = 0``.
The value is never read for those tensors (one scale per element of a 1-D tensor).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Tfl2RtlError

__all__ = ["ExposedModel", "expose_all_tensors"]


@dataclass
class ExposedModel:
    """The rewritten flatbuffer and what was changed."""

    content: bytes
    #: tensor indices in the order of the new graph outputs (old outputs first)
    outputs: list[int]
    #: tensors whose out-of-range ``quantized_dimension`` was set to 0
    repaired: list[int] = field(default_factory=list)


def expose_all_tensors(data: bytes) -> ExposedModel:
    """Every non-constant tensor written by an operator becomes a graph output."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # the generated reader raises anything on a corrupt file
        raise Tfl2RtlError(f"cannot rewrite the model for LiteRT ({exc})") from None
    if any(b.offset > 1 for b in model.buffers or []):
        raise Tfl2RtlError("the model keeps its weights outside the flatbuffer (a model "
                           "above 2 GB); exposing its tensors is not supported")
    graph = model.subgraphs[0]
    repaired = []
    for index, t in enumerate(graph.tensors):
        q = t.quantization
        rank = len(t.shape) if t.shape is not None else 0
        if (q is not None and q.scale is not None and len(q.scale) > 0
                and not 0 <= q.quantizedDimension < max(rank, 1)):
            q.quantizedDimension = 0
            repaired.append(index)
    constant = {i for i, t in enumerate(graph.tensors)
                if t.buffer > 0 and model.buffers[t.buffer].data is not None
                and len(model.buffers[t.buffer].data) > 0}
    outputs = [int(i) for i in graph.outputs]
    for op in graph.operators:
        for i in op.outputs:
            i = int(i)
            if i >= 0 and i not in outputs and i not in constant:
                outputs.append(i)
    graph.outputs = outputs
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return ExposedModel(content=bytes(builder.Output()), outputs=outputs, repaired=repaired)
