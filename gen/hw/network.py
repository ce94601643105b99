"""A chain of FULLY_CONNECTED layers (and a final SOFTMAX) as one component with
AXI4-Stream ports."""

from __future__ import annotations

import dataclasses
import math
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
from .softmax import MAX_ROW, SoftmaxUnit

__all__ = ["LayerPlan", "SoftmaxPlan", "NetworkPlan", "plan_network", "FullyConnectedNetwork",
           "to_verilog", "LINT_WAIVERS", "lint_waivers"]

#: The Verilator warnings (``-Wall``) that the Verilog of :func:`to_verilog` raises by the
#: style of Amaranth's and Yosys's Verilog backend rather than by anything in the design,
#: and why.  :func:`lint_waivers` turns them off for that one file; every other warning
#: stays on for it, and all of them for hand-written Verilog such as the simulation
#: harness.
LINT_WAIVERS = {
    "WIDTHEXPAND": "operands are widened implicitly, e.g. a 1-bit comparison added to a "
                   "counter or a narrow constant assigned to a wide register",
    "WIDTHTRUNC": "results are narrowed implicitly, e.g. a sum assigned without its carry",
    "UNUSEDSIGNAL": "Amaranth keeps a named wire for every signal and for every field of "
                    "a data layout (such as o__payload.acc[3]) for debugging, read or not",
    "PROCASSINIT": "registers are declared with their reset value as initializer "
                   "(reg x = 1'h0) and assigned in always blocks",
    "DECLFILENAME": "every module of the design is in the one file named after the top",
    "ASCRANGE": "zero-width signals, such as the group number of a layer with one neuron "
                "group, are declared as [-1:0]",
    "CASEINCOMPLETE": "state machines assign each signal's default value before a casez "
                      "that lists only the states that change it",
}


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
class SoftmaxPlan:
    """A SOFTMAX node after the last layer, over ``rows`` rows of ``row`` elements (see
    :class:`~tfl2rtl.hw.softmax.SoftmaxUnit`)."""

    node: ir.Softmax
    row: int
    rows: int

    @property
    def cycles_per_vector(self) -> int:
        return self.rows * SoftmaxUnit.cycles_for_row(self.row)


@dataclass(frozen=True)
class NetworkPlan:
    """What :class:`FullyConnectedNetwork` builds, checked: the layers in order, an
    optional softmax after them, the vector sizes at the edges, and whether an edge moves
    between uint8 and int8."""

    layers: tuple[LayerPlan, ...]
    in_size: int
    out_size: int
    uint8_input: bool
    uint8_output: bool
    softmax: SoftmaxPlan | None = None
    #: Elements per beat on ``s_axis`` and ``m_axis`` (see :meth:`with_lanes`).
    lanes: int = 1

    @property
    def edge_cycles(self) -> int:
        """Cycles to move one vector through the slower of the two AXI4-Stream edges."""
        return max(self.in_size, self.out_size) // self.lanes

    @property
    def cycles_per_vector(self) -> int:
        """The steady-state initiation interval: the slowest layer (or the softmax), or
        an edge moving ``lanes`` elements per cycle."""
        stages = [layer.cycles_per_vector for layer in self.layers]
        if self.softmax is not None:
            stages.append(self.softmax.cycles_per_vector)
        return max(self.edge_cycles, *stages)

    def with_lanes(self, lanes: int) -> NetworkPlan:
        """This plan with ``lanes`` elements per AXI4-Stream beat; ``lanes`` must divide
        both vector sizes (a beat never holds parts of two vectors)."""
        common = math.gcd(self.in_size, self.out_size)
        if lanes < 1 or common % lanes:
            raise Tfl2RtlError(
                f"{lanes} lanes do not divide the input ({self.in_size}) and output "
                f"({self.out_size}) vectors; choose one of {_divisors(common)}"
            )
        return dataclasses.replace(self, lanes=lanes)


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def plan_network(graph: ir.Graph, foldings=None) -> NetworkPlan:
    """Check that ``graph`` is a chain of FULLY_CONNECTED nodes, optionally ending in a
    SOFTMAX (RESHAPE anywhere, int8/uint8 QUANTIZE at the edges), and that ``foldings``
    (one ``(pe, simd)`` or ``(pe, simd, requant_lanes)`` per FULLY_CONNECTED node, default
    ``(1, 1)``; ``requant_lanes`` defaults to ``pe``) divide the layers."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise Tfl2RtlError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "hardware generation needs exactly one of each"
        )
    nodes = list(graph.nodes)
    current = graph.inputs[0]
    uint8_input = uint8_output = False
    layers = []
    softmax = None
    for index, node in enumerate(nodes):
        if node.input != current or len(node.outputs) != 1:
            raise Tfl2RtlError(
                f"node {index} ({node.op}) does not continue a single chain of layers; "
                "hardware generation handles chains only"
            )
        if softmax is not None and not isinstance(node, ir.Reshape | ir.Requantize):
            raise Tfl2RtlError(
                f"node {index} ({node.op}) follows the SOFTMAX; hardware generation "
                "supports SOFTMAX only as the last layer"
            )
        if isinstance(node, ir.Requantize) and node.flip_sign and index == 0:
            uint8_input = True
        elif isinstance(node, ir.Requantize) and node.flip_sign and index == len(nodes) - 1:
            uint8_output = True
        elif isinstance(node, ir.FullyConnected):
            layers.append(node)
        elif isinstance(node, ir.Softmax) and layers:
            shape = graph.tensors[node.input].shape
            row = shape[-1]
            if row > MAX_ROW:
                raise Tfl2RtlError(
                    f"node {index} (SOFTMAX) has rows of {row} elements; the hardware "
                    f"takes at most {MAX_ROW}"
                )
            softmax = SoftmaxPlan(node, row, graph.tensors[node.input].size // row)
        elif not isinstance(node, ir.Reshape):
            raise Tfl2RtlError(
                f"node {index} ({node.op}) has no hardware yet; hardware generation supports "
                "FULLY_CONNECTED, a final SOFTMAX, RESHAPE, and int8/uint8 QUANTIZE at the "
                "edges"
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
        softmax=softmax,
    )


class FullyConnectedNetwork(wiring.Component):
    """The layers of a :class:`NetworkPlan` between two AXI4-Stream ports of ``lanes``
    elements per beat.

    ``s_axis_tdata`` and ``m_axis_tdata`` are ``8 * lanes`` bits wide, element ``k`` of a
    beat in bits ``8k .. 8k + 7`` (little-endian lane order: the first element of a vector
    is in the lowest byte of its first beat).  ``lanes`` must divide both vector sizes;
    the default, ``None``, keeps ``plan.lanes`` (1 unless the plan says otherwise).

    Data path: ``s_axis`` (``xor 0x80`` per element for a uint8 input) -> lane converter
    to the first layer's ``simd`` -> FIFO -> layer -> lane converter -> FIFO -> layer ...
    -> FIFO -> (lane converter to one lane -> softmax ->) lane converter to ``lanes``
    -> ``m_axis`` (``xor 0x80`` for a uint8 output).  Each FIFO holds one vector of the
    layer after it (or of the last layer's output), at least 3 beats (a 2-deep
    ``SyncFIFOBuffered`` moves a beat every other cycle only), so a layer takes its next
    vector while the previous layer is still busy.  ``tlast`` on ``m_axis`` marks the last
    beat of every output vector; ``s_axis_tlast`` is accepted and ignored (vectors are
    counted).

    Clock and synchronous active-high reset are the ``sync`` domain's ``clk`` and ``rst``.

    Target specifics: multipliers are ``*`` on registered operands and memories are
    :class:`amaranth.lib.memory.Memory`, so Yosys infers DSP blocks and block RAM, and an
    Amaranth platform's ``get_memory`` hook can replace any memory (see
    :mod:`tfl2rtl.boards.synth`).  Nothing depends on the target or on simulation.

    Attributes
    ----------
    plan : NetworkPlan
        The plan as built, with its ``lanes``.
    layers : list of FullyConnectedLayer
    softmax : SoftmaxUnit or None
    cycles_per_vector : int
        Steady-state initiation interval (``plan.cycles_per_vector``).
    """

    def __init__(self, plan: NetworkPlan, *, lanes: int | None = None):
        if lanes is not None:
            plan = plan.with_lanes(lanes)
        self.plan = plan
        self.lanes = plan.lanes
        self.layers = [FullyConnectedLayer(layer.node, pe=layer.pe, simd=layer.simd,
                                           requant_lanes=layer.requant_lanes)
                       for layer in plan.layers]
        self.softmax = (None if plan.softmax is None
                        else SoftmaxUnit(plan.softmax.node, plan.softmax.row))
        self.cycles_per_vector = plan.cycles_per_vector
        super().__init__({
            "s_axis_tdata": In(8 * self.lanes),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(8 * self.lanes),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        # uint8 <-> int8 at the edges: the sign bit of every element flips.
        flips = int("80" * self.lanes, 16)
        source = stream.Signature(int8_lanes(self.lanes)).create()
        flip_in = flips if self.plan.uint8_input else 0
        m.d.comb += [
            source.payload.eq(self.s_axis_tdata ^ flip_in),
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
        if self.softmax is not None:
            upstream = lanes(upstream, 1, "lanes_softmax")
            m.submodules.softmax = self.softmax
            wiring.connect(m, upstream, self.softmax.i)
            upstream = self.softmax.o
        upstream = lanes(upstream, self.lanes, "lanes_out")

        flip_out = flips if self.plan.uint8_output else 0
        out_beats = self.plan.out_size // self.lanes
        position = Signal(range(out_beats))
        m.d.comb += [
            self.m_axis_tdata.eq(upstream.payload.as_value() ^ flip_out),
            self.m_axis_tvalid.eq(upstream.valid),
            upstream.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(position == out_beats - 1),
        ]
        with m.If(upstream.valid & upstream.ready):
            m.d.sync += position.eq(Mux(position == out_beats - 1, 0, position + 1))
        return m


def lint_waivers(filename: str) -> str:
    """A Verilator configuration file (``.vlt``) that waives :data:`LINT_WAIVERS` for the
    Verilog file ``filename`` (its name, as passed to Verilator, or a ``*`` pattern)."""
    lines = ["`verilator_config"]
    for rule, reason in LINT_WAIVERS.items():
        lines += [f"// {reason}", f'lint_off -rule {rule} -file "{filename}"']
    return "\n".join(lines) + "\n"


def to_verilog(network: FullyConnectedNetwork, name: str = "tfl2rtl_top") -> str:
    """Verilog for ``network`` as module ``name`` with ports ``clk``, ``rst``,
    ``s_axis_*`` and ``m_axis_*``."""
    return verilog.convert(network, name=name, emit_src=False)
