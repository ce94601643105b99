"""Float edges: what the host computes around the hardware.

The converter's default full-integer model takes float32 and gives float32: a QUANTIZE
turns the input into int8 and a DEQUANTIZE turns the int8 result back.  The hardware
streams the integer tensors; the host applies the model's own edge QUANTIZE and
DEQUANTIZE with the golden model's kernels (:func:`tfl2rtl.golden.quantize` and
:func:`tfl2rtl.golden.dequantize`, TFLite Micro's arithmetic, which the hardware
follows), so a float input gives bit for bit the float output the golden model gives.

:func:`host_edges` splits a graph into the graph the hardware computes and the
:class:`HostEdges` the host applies.  In the hardware graph each edge node becomes a
:class:`tfl2rtl.ir.HostEdge` that passes the integer tensor through, so every node keeps its index
(fold files, the manifest's layers and the weight memories name nodes by index).  An
int8 <-> uint8 QUANTIZE at an edge is not a host edge: the hardware does it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import golden, ir
from .errors import Tfl2RtlError
from .ir import HostEdge

__all__ = ["HostEdges", "host_edges", "model_graph"]


@dataclass
class HostEdges:
    """The model's graph (``graph``), the graph the hardware computes (``hardware``) and
    the edge nodes the host applies: ``quantize`` (float32 -> the hardware's input,
    node ``quantize_index``) and ``dequantize`` (the hardware's output -> float32, node
    ``dequantize_index``); either may be ``None``."""

    graph: ir.Graph
    hardware: ir.Graph
    quantize: ir.Quantize | None = None
    dequantize: ir.Dequantize | None = None
    quantize_index: int | None = None
    dequantize_index: int | None = None

    @property
    def any(self) -> bool:
        return self.quantize is not None or self.dequantize is not None

    def to_hardware(self, x: np.ndarray) -> np.ndarray:
        """The model's input ``x`` (any shape of the right size, or a batch with the
        input's elements per row) as the hardware takes it: quantized by the model's own
        QUANTIZE when it has a float input edge, else unchanged."""
        x = np.asarray(x)
        want = self.graph.tensors[self.graph.inputs[0]].dtype
        if x.dtype != np.dtype(want):
            raise Tfl2RtlError(f"input {self.graph.inputs[0]!r} must be {want}, got "
                               f"{x.dtype}")
        if self.quantize is None:
            return x
        dtype = np.dtype(self.hardware.tensors[self.hardware.inputs[0]].dtype)
        return golden.quantize(self.quantize, x, dtype).reshape(x.shape)

    def from_hardware(self, y: np.ndarray) -> np.ndarray:
        """The hardware's output ``y`` as the model gives it: dequantized by the model's
        own DEQUANTIZE when it has a float output edge, else unchanged."""
        y = np.asarray(y)
        if self.dequantize is None:
            return y
        return golden.dequantize(self.dequantize, y).reshape(y.shape)

    def infer(self, client, x: np.ndarray, progress=None) -> tuple[np.ndarray, int]:
        """One inference through a board's host driver ``client`` (a
        :class:`tfl2rtl.boards.protocol.Client`): the model's input ``x`` in, the model's
        output back (:meth:`to_hardware`, the board, :meth:`from_hardware`).  A board
        that answers ``NOT_LOADED`` gets the weights of the hardware graph
        (``progress`` told how many bytes first) and the inference is sent again, once.
        Returns the output and the bytes of weights loaded."""
        from .boards.protocol import ErrorCode, LinkError

        q = self.to_hardware(x)
        loaded = 0
        try:
            output = client.infer(q)
        except LinkError as exc:
            if exc.code != ErrorCode.NOT_LOADED:
                raise
            if progress is not None:
                memories = client.identity().memories
                progress(f"loading {sum(m.rows * m.row_bytes for m in memories):,} bytes "
                         "of weights into the board")
            loaded = client.load_weights(self.hardware)
            output = client.infer(q)
        return self.from_hardware(output), loaded

    def manifest(self) -> dict:
        """What the ports carry against what the model takes and gives: per edge, the
        model's dtype and the scale and zero point that turn the port's integers into
        the model's floats (``x = scale * (q - zero_point)``) and back (``q = clamp(
        round(x / scale) + zero_point)``, rounded half away from zero, in float32)."""
        out = {}
        for which, node, index, port in (
                ("input", self.quantize, self.quantize_index, self.hardware.inputs[0]),
                ("output", self.dequantize, self.dequantize_index, self.hardware.outputs[0])):
            model_name = getattr(self.graph, f"{which}s")[0]
            entry = {"model_dtype": self.graph.tensors[model_name].dtype,
                     "port_dtype": self.hardware.tensors[port].dtype}
            if node is not None:
                entry.update(
                    host=node.op, node=index, scale=float(node.scale),
                    zero_point=int(node.zero_point),
                    formula=("q = clamp(round(x / scale) + zero_point) (the host quantizes "
                             "the model's float32 input; round half away from zero in "
                             "float32)" if which == "input" else
                             "x = float32(scale * (q - zero_point)) (the host dequantizes "
                             "the port's integers; the product in double)"))
            else:
                entry["host"] = None
            out[which] = entry
        return out


def _readers(graph: ir.Graph, name: str) -> list[int]:
    return [i for i, node in enumerate(graph.nodes) if name in node.inputs]


def model_graph(graph: ir.Graph) -> ir.Graph:
    """The model's graph of a hardware graph (its :class:`~tfl2rtl.ir.HostEdge` nodes
    back to the model's QUANTIZE and DEQUANTIZE); any other graph unchanged."""
    if not any(isinstance(node, HostEdge) for node in graph.nodes):
        return graph
    nodes = [node.edge if isinstance(node, HostEdge) else node for node in graph.nodes]
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    for node in nodes:
        if isinstance(node, ir.Quantize) and node.output in inputs:
            inputs[inputs.index(node.output)] = node.input
        if isinstance(node, ir.Dequantize) and node.input in outputs:
            outputs[outputs.index(node.input)] = node.output
    return dataclasses.replace(graph, nodes=nodes, inputs=inputs, outputs=outputs)


def host_edges(graph: ir.Graph) -> HostEdges:
    """Split ``graph`` into the hardware's graph and the host's float edges: a
    QUANTIZE from the graph's float32 input (its only reader) and a DEQUANTIZE to the
    graph's float32 output.  A graph without float edges is its own hardware graph; a
    hardware graph gives the same split as its model's graph (:func:`model_graph`).
    Any other float32 tensor stays in the graph (and the hardware planner refuses it)."""
    graph = model_graph(graph)
    nodes = list(graph.nodes)
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    found = {}
    if len(inputs) == 1 and graph.tensors[inputs[0]].dtype == "float32":
        readers = _readers(graph, inputs[0])
        if len(readers) == 1 and isinstance(nodes[readers[0]], ir.Quantize):
            index = readers[0]
            node = nodes[index]
            nodes[index] = HostEdge(shape=graph.tensors[node.output].shape,
                                    inputs=(node.output,), outputs=(node.output,),
                                    tflite_op_index=node.tflite_op_index,
                                    tflite_op=node.tflite_op, edge=node)
            inputs = [node.output]
            found.update(quantize=node, quantize_index=index)
    if len(outputs) == 1 and graph.tensors[outputs[0]].dtype == "float32":
        producer = [i for i, node in enumerate(graph.nodes) if outputs[0] in node.outputs]
        if (len(producer) == 1 and isinstance(nodes[producer[0]], ir.Dequantize)
                and not _readers(graph, outputs[0])):
            index = producer[0]
            node = nodes[index]
            nodes[index] = HostEdge(shape=graph.tensors[node.input].shape,
                                    inputs=(node.input,), outputs=(node.input,),
                                    tflite_op_index=node.tflite_op_index,
                                    tflite_op=node.tflite_op, edge=node)
            outputs = [node.input]
            found.update(dequantize=node, dequantize_index=index)
    if not found:
        return HostEdges(graph=graph, hardware=graph)
    hardware = dataclasses.replace(graph, nodes=nodes, inputs=inputs, outputs=outputs)
    return HostEdges(graph=graph, hardware=hardware, **found)
