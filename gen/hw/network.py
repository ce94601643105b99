"""A whole FULLY_CONNECTED-only model as one component with AXI4-Stream ports."""

from dataclasses import dataclass

from amaranth.back import verilog
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from .adapters import LaneConverter, StreamFIFO
from .dense import FullyConnectedLayer
from .layouts import int8_lanes

__all__ = ["LayerPlan", "NetworkPlan", "plan_network", "FullyConnectedNetwork", "to_verilog"]


@dataclass(frozen=True)
class LayerPlan:
    """One FULLY_CONNECTED node and its folding: ``pe`` neurons by ``simd`` inputs per
    cycle, ``requant_lanes`` results requantized per cycle (see
    :class:`~tfl2rtl.hw.dense.FullyConnectedLayer`)."""

    node: ir.FullyConnected
    pe: int
    simd: int
    requant_lanes: int

    @property
    def cycles_per_vector(self) -> int:
        out_depth, in_depth = self.node.weights.shape
        return (out_depth // self.pe) * max(in_depth // self.simd,
                                            self.pe // self.requant_lanes)


@dataclass(frozen=True)
class NetworkPlan:
    """What :class:`FullyConnectedNetwork` builds, checked: the layers in order, the
    vector sizes at the edges, and whether an edge moves between uint8 and int8."""

    layers: tuple[LayerPlan, ...]
    in_size: int
    out_size: int
    uint8_input: bool
    uint8_output: bool

    @property
    def cycles_per_vector(self) -> int:
        """The steady-state initiation interval: the slowest layer, or the byte-per-cycle
        edges."""
        return max(self.in_size, self.out_size,
                   *(layer.cycles_per_vector for layer in self.layers))


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def plan_network(graph: ir.Graph, foldings=None) -> NetworkPlan:
    """Check that ``graph`` is a chain of FULLY_CONNECTED nodes (RESHAPE and int8/uint8
    QUANTIZE allowed at the edges) and that ``foldings`` (one ``(pe, simd)`` or
    ``(pe, simd, requant_lanes)`` per FULLY_CONNECTED node, default ``(1, 1)``;
    ``requant_lanes`` defaults to ``pe``) divide the layers."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise Tfl2RtlError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "hardware generation needs exactly one of each"
        )
    nodes = list(graph.nodes)
    current = graph.inputs[0]
    uint8_input = uint8_output = False
    layers = []
    for index, node in enumerate(nodes):
        if node.input != current or len(node.outputs) != 1:
            raise Tfl2RtlError(
                f"node {index} ({node.op}) does not continue a single chain of layers; "
                "hardware generation handles chains only"
            )
        if isinstance(node, ir.Requantize) and node.flip_sign and index == 0:
            uint8_input = True
        elif isinstance(node, ir.Requantize) and node.flip_sign and index == len(nodes) - 1:
            uint8_output = True
        elif isinstance(node, ir.FullyConnected):
            layers.append(node)
        elif not isinstance(node, ir.Reshape):
            raise Tfl2RtlError(
                f"node {index} ({node.op}) has no hardware yet; hardware generation supports "
                "FULLY_CONNECTED, RESHAPE, and int8/uint8 QUANTIZE at the edges"
            )
        current = node.output
    if not layers:
        raise Tfl2RtlError("the model has no FULLY_CONNECTED layer to build")

    if foldings is None:
        foldings = [(1, 1)] * len(layers)
    foldings = list(foldings)
    if len(foldings) != len(layers):
        raise Tfl2RtlError(
            f"{len(foldings)} foldings given for {len(layers)} FULLY_CONNECTED layers"
        )
    plans = []
    for index, (node, folding) in enumerate(zip(layers, foldings, strict=True)):
        if len(folding) not in (2, 3):
            raise Tfl2RtlError(
                f"layer {index}: a folding is (pe, simd) or (pe, simd, requant_lanes), "
                f"not {folding!r}"
            )
        pe, simd = folding[:2]
        requant_lanes = folding[2] if len(folding) == 3 else pe
        out_depth, in_depth = node.weights.shape
        if pe < 1 or out_depth % pe:
            raise Tfl2RtlError(
                f"layer {index}: PE={pe} does not divide its {out_depth} outputs; "
                f"choose one of {_divisors(out_depth)}"
            )
        if simd < 1 or in_depth % simd:
            raise Tfl2RtlError(
                f"layer {index}: SIMD={simd} does not divide its {in_depth} inputs; "
                f"choose one of {_divisors(in_depth)}"
            )
        if requant_lanes < 1 or pe % requant_lanes:
            raise Tfl2RtlError(
                f"layer {index}: {requant_lanes} requantizer lanes do not divide PE={pe}; "
                f"choose one of {_divisors(pe)}"
            )
        plans.append(LayerPlan(node, pe, simd, requant_lanes))
    return NetworkPlan(
        layers=tuple(plans),
        in_size=graph.tensors[graph.inputs[0]].size,
        out_size=graph.tensors[graph.outputs[0]].size,
        uint8_input=uint8_input,
        uint8_output=uint8_output,
    )


class FullyConnectedNetwork(wiring.Component):
    """The layers of a :class:`NetworkPlan` between two byte-wide AXI4-Stream ports.

    Data path: ``s_axis`` (one element per beat; ``xor 0x80`` for a uint8 input) ->
    lane converter to the first layer's ``simd`` -> FIFO -> layer -> lane converter ->
    FIFO -> layer ... -> FIFO -> lane converter to one lane -> ``m_axis`` (``xor 0x80``
    for a uint8 output).  Each FIFO holds one vector of the layer after it (or of the
    last layer's output), at least 3 beats (a 2-deep ``SyncFIFOBuffered`` moves a beat
    every other cycle only), so a layer takes its next vector while the previous layer
    is still busy.  ``tlast`` on ``m_axis`` marks the last element of every output vector;
    ``s_axis_tlast`` is accepted and ignored (vectors are counted).

    Clock and synchronous active-high reset are the ``sync`` domain's ``clk`` and ``rst``.

    Attributes
    ----------
    plan : NetworkPlan
    layers : list of FullyConnectedLayer
    cycles_per_vector : int
        Steady-state initiation interval (``plan.cycles_per_vector``).
    """

    s_axis_tdata: In(8)
    s_axis_tvalid: In(1)
    s_axis_tready: Out(1)
    s_axis_tlast: In(1)
    m_axis_tdata: Out(8)
    m_axis_tvalid: Out(1)
    m_axis_tready: In(1)
    m_axis_tlast: Out(1)

    def __init__(self, plan: NetworkPlan):
        self.plan = plan
        self.layers = [FullyConnectedLayer(layer.node, pe=layer.pe, simd=layer.simd,
                                           requant_lanes=layer.requant_lanes)
                       for layer in plan.layers]
        self.cycles_per_vector = plan.cycles_per_vector
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        source = stream.Signature(int8_lanes(1)).create()
        flip_in = 0x80 if self.plan.uint8_input else 0
        m.d.comb += [
            source.payload[0].eq(self.s_axis_tdata ^ flip_in),
            source.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(source.ready),
        ]

        def lanes(upstream, count, name):
            """``upstream`` regrouped to ``count`` lanes per beat."""
            if len(upstream.payload.as_value()) == 8 * count:
                return upstream
            lanes_in = len(upstream.payload.as_value()) // 8
            converter = LaneConverter(signed(8), lanes_in, count)
            m.submodules[name] = converter
            wiring.connect(m, upstream, converter.i)
            return converter.o

        def fifo(upstream, count, depth, name):
            queue = StreamFIFO(int8_lanes(count), depth=max(3, depth))
            m.submodules[name] = queue
            wiring.connect(m, upstream, queue.i)
            return queue.o

        upstream = source
        for index, layer in enumerate(self.layers):
            upstream = lanes(upstream, layer.simd, f"lanes_{index}")
            upstream = fifo(upstream, layer.simd, layer.in_depth // layer.simd,
                            f"fifo_{index}")
            m.submodules[f"layer_{index}"] = layer
            wiring.connect(m, upstream, layer.i)
            upstream = layer.o
        last = self.layers[-1]
        upstream = fifo(upstream, last.requant_lanes, last.out_depth // last.requant_lanes,
                        "fifo_out")
        upstream = lanes(upstream, 1, "lanes_out")

        flip_out = 0x80 if self.plan.uint8_output else 0
        position = Signal(range(self.plan.out_size))
        m.d.comb += [
            self.m_axis_tdata.eq(upstream.payload[0].as_unsigned() ^ flip_out),
            self.m_axis_tvalid.eq(upstream.valid),
            upstream.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(position == self.plan.out_size - 1),
        ]
        with m.If(upstream.valid & upstream.ready):
            m.d.sync += position.eq(
                Mux(position == self.plan.out_size - 1, 0, position + 1))
        return m


def to_verilog(network: FullyConnectedNetwork, name: str = "tfl2rtl_top") -> str:
    """Verilog for ``network`` as module ``name`` with ports ``clk``, ``rst``,
    ``s_axis_*`` and ``m_axis_*``."""
    return verilog.convert(network, name=name, emit_src=False)
