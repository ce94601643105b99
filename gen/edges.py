"""Host edges: what the host computes around the hardware.

The converter's default full-integer model takes float32 and gives float32: a QUANTIZE
turns the input into int8 (int16 in a 16x8 model) and a DEQUANTIZE turns the integer
result back.  A PyTorch export
also starts with a TRANSPOSE from NCHW to NHWC.  The hardware streams the integer
tensors in NHWC order; the host applies the model's own edge nodes with the golden
model's kernels (:func:`tfl2rtl.golden.quantize`, :func:`tfl2rtl.golden.transpose` and
:func:`tfl2rtl.golden.dequantize`, TFLite Micro's arithmetic, which the hardware
follows), so an input gives bit for bit the output the golden model gives.

:func:`host_edges` splits a graph into the graph the hardware computes and the
:class:`HostEdges` the host applies: at the input, a QUANTIZE from float32 and then a
TRANSPOSE (either or both); at the output, a DEQUANTIZE to float32.  In the hardware
graph each of them becomes a :class:`tfl2rtl.ir.HostEdge` that passes the port's tensor
through, so every node keeps its index (fold files, the manifest's layers and the
weight memories name nodes by index).  An int8 <-> uint8 QUANTIZE at an edge is not a
host edge: the hardware does it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import golden, ir
from .errors import Tfl2RtlError
from .ir import HostEdge

__all__ = ["HostEdges", "host_edges", "model_graph"]


@dataclass
class HostEdges:
    """The model's graph (``graph``), the graph the hardware computes (``hardware``) and
    the edge nodes the host applies, as ``(node index, node)`` in execution order:
    ``before`` from the model's input to the hardware's (QUANTIZE, TRANSPOSE), ``after``
    from the hardware's output to the model's (DEQUANTIZE)."""

    graph: ir.Graph
    hardware: ir.Graph
    before: list[tuple[int, ir.Node]] = field(default_factory=list)
    after: list[tuple[int, ir.Node]] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.before or self.after)

    def _node(self, side: list, kind: type) -> ir.Node | None:
        return next((node for _, node in side if isinstance(node, kind)), None)

    @property
    def quantize(self) -> ir.Quantize | None:
        """The input's float32 QUANTIZE the host applies, if any."""
        return self._node(self.before, ir.Quantize)

    @property
    def transpose(self) -> ir.Transpose | None:
        """The input's TRANSPOSE the host applies, if any."""
        return self._node(self.before, ir.Transpose)

    @property
    def dequantize(self) -> ir.Dequantize | None:
        """The output's DEQUANTIZE to float32 the host applies, if any."""
        return self._node(self.after, ir.Dequantize)

    def _apply(self, side, x: np.ndarray, start: str, end: str) -> np.ndarray:
        """``side``'s nodes on ``x`` (one tensor of ``start``'s size, or rows of them):
        one tensor shaped like ``end``, or one row per tensor."""
        t_start, t_end = self.graph.tensors[start], self.graph.tensors[end]
        x = np.asarray(x)
        if x.size % t_start.size or not x.size:
            raise Tfl2RtlError(f"{x.size} values for tensor {start!r} of shape "
                               f"{t_start.shape}")
        rows = []
        for row in x.reshape(-1, *t_start.shape):
            for _, node in side:
                out = self.graph.tensors[node.output]
                row = golden.run_node(node, [row], out, golden.PROFILES["tflm"])
            rows.append(row)
        if len(rows) == 1 and x.size == t_start.size:
            return rows[0].reshape(t_end.shape)
        return np.stack([r.reshape(-1) for r in rows])

    def to_hardware(self, x: np.ndarray) -> np.ndarray:
        """The model's input ``x`` (one input, or rows of inputs) as the hardware takes
        it: through the host's input edges (the model's QUANTIZE and TRANSPOSE), shaped
        as the hardware's input (or one row per input)."""
        x = np.asarray(x)
        want = self.graph.tensors[self.graph.inputs[0]].dtype
        if x.dtype != np.dtype(want):
            raise Tfl2RtlError(f"input {self.graph.inputs[0]!r} must be {want}, got "
                               f"{x.dtype}")
        if not self.before:
            return x
        return self._apply(self.before, x, self.graph.inputs[0], self.hardware.inputs[0])

    def from_hardware(self, y: np.ndarray) -> np.ndarray:
        """The hardware's output ``y`` (one output, or rows of outputs) as the model
        gives it: through the host's output edges (the model's DEQUANTIZE)."""
        y = np.asarray(y)
        if not self.after:
            return y
        return self._apply(self.after, y, self.hardware.outputs[0], self.graph.outputs[0])

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
        """What the ports carry against what the model takes and gives, per edge: the
        model's dtype and shape, the port's, and the host's nodes in order (``host``, their
        indices ``nodes``), with the scale and zero point that turn the port's integers
        into the model's floats and back, and the permutation of a TRANSPOSE."""
        out = {}
        for which, side, model_name, port in (
                ("input", self.before, self.graph.inputs[0], self.hardware.inputs[0]),
                ("output", self.after, self.graph.outputs[0], self.hardware.outputs[0])):
            t_model, t_port = self.graph.tensors[model_name], self.hardware.tensors[port]
            entry = {"model_dtype": t_model.dtype, "model_shape": list(t_model.shape),
                     "port_dtype": t_port.dtype, "port_shape": list(t_port.shape),
                     "host": [node.op for _, node in side],
                     "nodes": [index for index, _ in side]}
            for _, node in side:
                if isinstance(node, ir.Quantize):
                    entry.update(scale=float(node.scale), zero_point=int(node.zero_point),
                                 quantize="q = clamp(round(x / scale) + zero_point), the "
                                          "division in float32, rounded half away from "
                                          "zero")
                elif isinstance(node, ir.Dequantize):
                    entry.update(scale=float(node.scale), zero_point=int(node.zero_point),
                                 dequantize="x = float32(scale * (q - zero_point)), the "
                                            "product in double")
                elif isinstance(node, ir.Transpose):
                    entry.update(permutation=list(node.perm),
                                 transpose="port axis i is axis permutation[i] of the "
                                           "model's input")
            out[which] = entry
        return out


def _readers(graph: ir.Graph, name: str) -> list[int]:
    return [i for i, node in enumerate(graph.nodes) if name in node.inputs]


def model_graph(graph: ir.Graph) -> ir.Graph:
    """The model's graph of a hardware graph (its :class:`~tfl2rtl.ir.HostEdge` nodes
    back to the model's own); any other graph unchanged."""
    if not any(isinstance(node, HostEdge) for node in graph.nodes):
        return graph
    nodes = [node.edge if isinstance(node, HostEdge) else node for node in graph.nodes]
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    for node in reversed(nodes):  # the input edges, last first
        if isinstance(node, ir.Quantize | ir.Transpose) and node.output in inputs:
            inputs[inputs.index(node.output)] = node.input
    for node in nodes:
        if isinstance(node, ir.Dequantize) and node.input in outputs:
            outputs[outputs.index(node.input)] = node.output
    return dataclasses.replace(graph, nodes=nodes, inputs=inputs, outputs=outputs)


def _input_edges(graph: ir.Graph) -> list[int]:
    """The nodes from the graph's one input that the host applies: a QUANTIZE of a
    float32 input, then a TRANSPOSE, each the only reader of its input."""
    chain, name = [], graph.inputs[0]
    for kind in (ir.Quantize, ir.Transpose):
        readers = _readers(graph, name)
        if len(readers) != 1 or not isinstance(graph.nodes[readers[0]], kind):
            continue
        if kind is ir.Quantize and graph.tensors[name].dtype != "float32":
            continue
        chain.append(readers[0])
        name = graph.nodes[readers[0]].output
    return chain


def _output_edges(graph: ir.Graph) -> list[int]:
    """The DEQUANTIZE to the graph's one float32 output (read by no node), if any."""
    name = graph.outputs[0]
    producer = [i for i, node in enumerate(graph.nodes) if name in node.outputs]
    if (graph.tensors[name].dtype == "float32" and len(producer) == 1
            and isinstance(graph.nodes[producer[0]], ir.Dequantize)
            and not _readers(graph, name)):
        return producer
    return []


def host_edges(graph: ir.Graph) -> HostEdges:
    """Split ``graph`` into the hardware's graph and the host's edges (see the module's
    description).  A graph without such edges is its own hardware graph; a hardware
    graph gives the same split as its model's graph (:func:`model_graph`).  Any other
    float32 tensor stays in the graph (and the hardware planner refuses it), and any
    other TRANSPOSE too (a hardware stage: :mod:`tfl2rtl.hw.transpose`)."""
    graph = model_graph(graph)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return HostEdges(graph=graph, hardware=graph)
    before, after = _input_edges(graph), _output_edges(graph)
    if not before and not after:
        return HostEdges(graph=graph, hardware=graph)
    nodes = list(graph.nodes)
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    if before:
        port = graph.nodes[before[-1]].output
        inputs = [port]
        for index in before:
            nodes[index] = _pass_through(graph, graph.nodes[index], port)
    if after:
        port = graph.nodes[after[0]].input
        outputs = [port]
        for index in after:
            nodes[index] = _pass_through(graph, graph.nodes[index], port)
    hardware = dataclasses.replace(graph, nodes=nodes, inputs=inputs, outputs=outputs)
    return HostEdges(graph=graph, hardware=hardware,
                     before=[(i, graph.nodes[i]) for i in before],
                     after=[(i, graph.nodes[i]) for i in after])


def _pass_through(graph: ir.Graph, node: ir.Node, port: str) -> HostEdge:
    return HostEdge(shape=graph.tensors[port].shape, inputs=(port,), outputs=(port,),
                    tflite_op_index=node.tflite_op_index, tflite_op=node.tflite_op,
                    edge=node)
