"""A whole model as one streaming dataflow component with AXI4-Stream ports."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from amaranth.back import rtlil, verilog
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fold import Fold, divisors_text
from ..lower import LUT_OPS, hardware_form
from .adapters import Broadcast, LaneConverter, SkidBuffer, StreamFIFO
from .layouts import signed_lanes
from .pipeline import RESET_TREE_HOOK, ResetTree
from .stages import (
    COMPACT_REQUANT_INTERVAL,
    SERIAL_REQUANT_INTERVAL,
    STAGE_KINDS,
    Stage,
    stage_for,
)
from .weights import LOAD_LAYOUT

__all__ = ["StagePlan", "NetworkPlan", "plan_network", "branch_fifo_depths",
           "DataflowNetwork", "to_verilog", "to_rtlil", "LINT_WAIVERS", "lint_waivers"]

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
class StagePlan:
    """One stage (:class:`tfl2rtl.hw.stages.Stage`) and its folding; ``requant_lanes``
    (results requantized per cycle, dividing ``pe``) applies to FULLY_CONNECTED and
    CONV_2D and defaults to ``pe``."""

    stage: Stage
    fold: Fold
    requant_lanes: int | None = None
    #: Cycles per requantizer beat (:data:`tfl2rtl.hw.stages.SERIAL_REQUANT_INTERVAL` on
    #: platforms that build requantizers with serial products).
    requant_interval: int = 1
    #: The MAC products in LUTs rather than DSP blocks (stages whose
    #: :attr:`~tfl2rtl.hw.stages.Stage.products_in_logic` allows it;
    #: :func:`tfl2rtl.design.products_in_logic` chooses); a SOFTMAX's multiplies by
    #: shift and add (a sequential engine's planner chooses, on a board).
    products_in_logic: bool = False

    @property
    def index(self) -> int:
        return self.stage.index

    @property
    def node(self) -> ir.Node:
        return self.stage.node

    @property
    def in_lanes(self) -> tuple[int, ...]:
        return self.stage.in_lanes(self.fold, self.requant_lanes)

    @property
    def out_lanes(self) -> int:
        return self.stage.out_lanes(self.fold, self.requant_lanes)

    @property
    def cycles_per_vector(self) -> int:
        options = {"products_in_logic": True} if self.products_in_logic else {}
        return self.stage.cycles(self.fold, self.requant_lanes, self.requant_interval,
                                 **options)

    @property
    def multipliers(self) -> int:
        return self.stage.multipliers(self.fold)

    @property
    def compact_requantizer(self) -> bool:
        """Whether the stage's requantizer lanes are compact (one beat at a time, a
        requantizing stage whose :attr:`requant_interval` is
        :data:`~tfl2rtl.hw.stages.COMPACT_REQUANT_INTERVAL`)."""
        return (self.stage.serial_requantizer
                and self.requant_interval == COMPACT_REQUANT_INTERVAL
                and getattr(self.node, "requantization", "integer") != "double")

    @property
    def serial_requantizer(self) -> bool:
        """Whether the stage's requantizer lanes share one multiplier between their
        partial products in a pipeline (a requantizing stage whose
        :attr:`requant_interval` is more than one cycle, and not compact)."""
        return (self.stage.serial_requantizer and self.requant_interval > 1
                and not self.compact_requantizer
                and getattr(self.node, "requantization", "integer") != "double")

    def build(self, memory_id: int | None = None):
        """The stage's component; with ``memory_id``, its weights in that loadable
        memory."""
        options = ({"serial_requantizer": True} if self.serial_requantizer
                   else {"compact_requantizer": True} if self.compact_requantizer else {})
        if self.products_in_logic:
            options["products_in_logic"] = True
        if memory_id is None:
            return self.stage.build(self.fold, self.requant_lanes, **options)
        return self.stage.build(self.fold, self.requant_lanes, memory_id=memory_id,
                                **options)


@dataclass(frozen=True)
class NetworkPlan:
    """What :class:`DataflowNetwork` builds, checked: the stages in graph order, how their
    streams connect, the vector sizes at the edges, and whether an edge moves between
    uint8 and int8.

    Tensors are named after the IR's, with RESHAPE and the edge QUANTIZE ops looked
    through (they move no data).  ``sources[k]`` names the tensors stage ``k`` reads;
    ``output`` is the tensor leaving on ``m_axis``, ``input`` the one arriving on
    ``s_axis``.  A tensor read by several stages (or by a stage and ``m_axis``) goes
    through a :class:`~tfl2rtl.hw.adapters.Broadcast`; ``branch_fifo[(tensor, k)]`` is
    the depth in elements of the FIFO on the branch into the ``k``-th reader (in
    stage order) where residual paths join (see :func:`branch_fifo_depths`).
    """

    stages: tuple[StagePlan, ...]
    sources: tuple[tuple[str, ...], ...]
    input: str
    output: str
    in_size: int
    out_size: int
    uint8_input: bool
    uint8_output: bool
    branch_fifo: tuple[tuple[tuple[str, int], int], ...] = ()
    #: Elements per beat on ``s_axis`` and ``m_axis`` (see :meth:`with_lanes`).
    lanes: int = 1
    #: Node indices of the stages whose weights the host loads at run time (see
    #: :meth:`with_loadable`); memory number ``k`` is ``loadable[k]``'s.
    loadable: tuple[int, ...] = ()
    #: The target's cycles per requantizer beat (``plan_network``'s
    #: ``requant_interval``); a stage with serial products of its own has more
    #: (:attr:`StagePlan.requant_interval`).
    requant_interval: int = 1
    #: The width of every activation on the streams and the AXI4-Stream ports: 8 (int8,
    #: and uint8 at a legacy model's edges), or 16 in a 16x8 model (int16).
    act_bits: int = 8

    @property
    def edge_cycles(self) -> int:
        """Cycles to move one vector through the slower of the two AXI4-Stream edges."""
        return max(self.in_size, self.out_size) // self.lanes

    @property
    def cycles_per_vector(self) -> int:
        """The steady-state initiation interval: the slowest stage, or an edge moving
        ``lanes`` elements per cycle."""
        return max(self.edge_cycles, *(s.cycles_per_vector for s in self.stages))

    @property
    def multipliers(self) -> int:
        return sum(s.multipliers for s in self.stages)

    @property
    def logic_multipliers(self) -> int:
        """The MAC multipliers built in LUTs (of stages with
        :attr:`StagePlan.products_in_logic`)."""
        return sum(s.multipliers for s in self.stages if s.products_in_logic)

    def with_products_in_logic(self, nodes) -> NetworkPlan:
        """This plan with the MAC products of the stages of ``nodes`` (node indices)
        built in LUTs (:attr:`StagePlan.products_in_logic`) and every other stage's
        by multipliers."""
        nodes = set(int(n) for n in nodes)
        by_index = {s.index: s for s in self.stages}
        for n in sorted(nodes):
            if n not in by_index or not by_index[n].stage.products_in_logic:
                raise Tfl2RtlError(f"node {n} has no products that can be built in logic")
        return dataclasses.replace(self, stages=tuple(
            dataclasses.replace(s, products_in_logic=s.index in nodes) for s in self.stages))

    def without_compact_requantizers(self) -> NetworkPlan:
        """This plan with every compact requantizer (:attr:`StagePlan.compact_requantizer`)
        made serial, at the same lanes: a serial lane takes a beat every
        :data:`~tfl2rtl.hw.stages.SERIAL_REQUANT_INTERVAL` cycles, not every
        :data:`~tfl2rtl.hw.stages.COMPACT_REQUANT_INTERVAL`, so no stage takes longer, and
        its pipeline is shorter in its paths and larger in its logic."""
        interval = max(self.requant_interval, SERIAL_REQUANT_INTERVAL)
        return dataclasses.replace(self, stages=tuple(
            dataclasses.replace(s, requant_interval=interval) if s.compact_requantizer else s
            for s in self.stages))

    def readers(self, tensor: str) -> int:
        """How many stages (and ``m_axis``) read ``tensor``."""
        return sum(sources.count(tensor) for sources in self.sources) + (
            tensor == self.output)

    def with_lanes(self, lanes: int) -> NetworkPlan:
        """This plan with ``lanes`` elements per AXI4-Stream beat; ``lanes`` must divide
        both vector sizes (a beat never holds parts of two vectors)."""
        common = math.gcd(self.in_size, self.out_size)
        if lanes < 1 or common % lanes:
            raise Tfl2RtlError(
                f"{lanes} lanes do not divide the input ({self.in_size}) and output "
                f"({self.out_size}) vectors; choose one of "
                f"{divisors_text(common)}"
            )
        return dataclasses.replace(self, lanes=lanes)

    def with_loadable(self, nodes) -> NetworkPlan:
        """This plan with the weights of the stages of ``nodes`` (node indices) in
        :class:`~tfl2rtl.hw.weights.LoadableMemory` blocks, numbered in node order, that
        the host fills at run time (:mod:`tfl2rtl.boards.protocol`'s ``LOAD``)."""
        nodes = tuple(sorted(set(int(n) for n in nodes)))
        by_index = {s.index: s for s in self.stages}
        for n in nodes:
            if n not in by_index or not by_index[n].stage.loadable:
                raise Tfl2RtlError(f"node {n} has no weight memory that can be loaded")
        if len(nodes) > 256:
            raise Tfl2RtlError(f"{len(nodes)} loadable memories; the link numbers 256")
        return dataclasses.replace(self, loadable=nodes)

    def loadable_memories(self) -> list[tuple[StagePlan, int, int]]:
        """Per loadable memory, in number order: its stage, rows and bytes per row."""
        by_index = {s.index: s for s in self.stages}
        return [(by_index[n], *by_index[n].stage.weight_memory(by_index[n].fold))
                for n in self.loadable]


def _as_fold(value) -> tuple[Fold, int | None]:
    if isinstance(value, Fold):
        return value, None
    value = tuple(value)
    if len(value) not in (2, 3):
        raise Tfl2RtlError(
            f"a folding is (pe, simd) or (pe, simd, requant_lanes), not {value!r}"
        )
    return Fold(*value[:2]), (value[2] if len(value) == 3 else None)


def plan_network(graph: ir.Graph, fold: dict | None = None, *, lanes: int = 1,
                 requant_interval: int = 1, serial_requantizers=(),
                 compact_requantizers=()) -> NetworkPlan:
    """Check that every node of ``graph`` has hardware and ``fold`` (a folding per
    foldable stage, by node index: a :class:`~tfl2rtl.folding.Fold` or ``(pe, simd)`` or
    ``(pe, simd, requant_lanes)``; missing ones are ``(1, 1)``) is valid for it, and work
    out how the streams connect.  ``requant_interval`` is the cycles per requantizer beat
    of the target (it changes the cycle counts, not the design: the platform hook
    :data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK` does that); the requantizing stages
    of the nodes in ``serial_requantizers`` get serial products whatever the target
    (:data:`~tfl2rtl.hw.stages.SERIAL_REQUANT_INTERVAL` cycles per beat), and those of
    ``compact_requantizers`` compact ones
    (:data:`~tfl2rtl.hw.stages.COMPACT_REQUANT_INTERVAL`).  A legacy uint8 graph is
    planned in its int8 hardware form, its stages built from that form's nodes
    (:func:`_uint8_hardware_form`)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise Tfl2RtlError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "hardware generation needs exactly one of each"
        )
    fold = dict(fold or {})
    # A legacy uint8 graph is built in its int8 hardware form (uint8 ports flipped).
    ports = graph
    graph = _uint8_hardware_form(graph)
    alias: dict[str, str] = {graph.inputs[0]: graph.inputs[0]}
    uint8_input = ports is not graph and ports.tensors[ports.inputs[0]].dtype == "uint8"
    uint8_output = ports is not graph and ports.tensors[ports.outputs[0]].dtype == "uint8"
    last = len(graph.nodes) - 1
    plans, sources = [], []
    for index, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name not in alias and graph.tensors[name].data is None:
                raise Tfl2RtlError(f"node {index} ({node.op}) reads {name}, which no node "
                                   "before it computes")
        if isinstance(node, ir.Reshape):
            alias[node.output] = alias[node.input]
            continue
        if isinstance(node, ir.Requantize) and node.flip_sign and index in (0, last):
            if index == 0 and node.input == graph.inputs[0]:
                uint8_input = True
            elif index == last and node.output == graph.outputs[0]:
                uint8_output = True
            else:
                raise Tfl2RtlError(f"node {index} (QUANTIZE) moves between uint8 and int8 "
                                   "inside the graph; the hardware does so only at its edges")
            alias[node.output] = alias[node.input]
            continue
        if isinstance(node, ir.Quantize | ir.Dequantize):
            which = "input" if isinstance(node, ir.Quantize) else "output"
            raise Tfl2RtlError(
                f"node {index} ({node.op}) makes the model's {which} float32; the hardware "
                f"streams integers: convert with inference_{which}_type=tf.int8 (or tf.uint8)"
            )
        stage = stage_for(graph, index)
        if stage is None:
            raise Tfl2RtlError(
                f"node {index} ({node.op}) has no hardware; supported: "
                + ", ".join(sorted({kind.op for kind in STAGE_KINDS} - {"LUT"} | set(LUT_OPS)))
                + ", RESHAPE, and int8/uint8 QUANTIZE at the edges"
            )
        given = fold.pop(index, (1, 1))
        if not stage.foldable and given not in ((1, 1), Fold(1, 1)):
            raise Tfl2RtlError(f"{stage.name} has a fixed folding")
        chosen, requant_lanes = _as_fold(given)
        stage.check(chosen, requant_lanes)
        serial = index in serial_requantizers and stage.serial_requantizer
        compact = index in compact_requantizers and stage.serial_requantizer
        plans.append(StagePlan(stage, chosen, requant_lanes,
                               COMPACT_REQUANT_INTERVAL if compact
                               else max(requant_interval, SERIAL_REQUANT_INTERVAL) if serial
                               else requant_interval))
        sources.append(tuple(alias[name] for name in node.inputs))
        alias[node.output] = node.output
    if fold:
        raise Tfl2RtlError(
            f"foldings given for nodes {sorted(fold)}, which have no foldable hardware"
        )
    if not plans:
        raise Tfl2RtlError("the model has no layer to build")
    plan = NetworkPlan(
        stages=tuple(plans), sources=tuple(sources), input=graph.inputs[0],
        output=alias[graph.outputs[0]],
        in_size=graph.tensors[graph.inputs[0]].size,
        out_size=graph.tensors[graph.outputs[0]].size,
        uint8_input=uint8_input, uint8_output=uint8_output,
        requant_interval=requant_interval,
        act_bits=16 if graph.quantization == "int16x8" else 8,
    )
    plan = dataclasses.replace(plan, branch_fifo=tuple(sorted(branch_fifo_depths(plan).items())))
    return plan.with_lanes(lanes)


def _uint8_hardware_form(graph: ir.Graph) -> ir.Graph:
    """``graph``, or a legacy uint8 graph's int8 hardware form
    (:func:`tfl2rtl.lower.hardware_form`: the same integers less 128, 9-bit weights).
    Its FULLY_CONNECTED layers requantize as LiteRT does, in double (``round(double(acc)
    * scale)``, the golden model's ``litert-ref``), where the integer requantizer misses
    by one near halves: a :class:`~tfl2rtl.hw.requant.RoundingRequantizer`, checked on
    every accumulator the layer can produce (refused in one line if one differed)."""
    from .requant import matches_double_rounding

    if graph.quantization != "uint8-legacy":
        return graph
    form = hardware_form(graph)
    for index, node in enumerate(form.nodes):
        if not isinstance(node, ir.FullyConnected):
            continue
        r = node.requant
        lo, hi = form.tensors[node.input].value_range
        x_lo, x_hi = lo + node.input_offset, hi + node.input_offset
        w = node.weights
        low = node.bias + np.minimum(np.minimum(x_lo * w, x_hi * w), 0).sum(axis=1)
        high = node.bias + np.maximum(np.maximum(x_lo * w, x_hi * w), 0).sum(axis=1)
        if r.per_channel or not matches_double_rounding(
                int(r.multiplier[0]), int(r.shift[0]), float(r.real_scale[0]),
                (int(low.min()), int(high.max())), output_offset=node.output_offset,
                act_min=node.act_min, act_max=node.act_max):
            raise Tfl2RtlError(
                f"node {index} (FULLY_CONNECTED) of a legacy uint8 model: LiteRT requantizes "
                "it in double, and one rounding of the accumulator by its multiplier does "
                "not give the same result for every accumulator; not built")
    return form


def _producers(plan: NetworkPlan) -> dict[str, int]:
    """The position in ``plan.stages`` of the stage computing each tensor."""
    return {s.node.output: k for k, s in enumerate(plan.stages)}


def branch_fifo_depths(plan: NetworkPlan) -> dict[tuple[str, int], int]:
    """FIFO depths (in elements) for the branches of residual paths, so that the design
    cannot deadlock.

    Where a stage joins two streams that split from one tensor (ADD of a residual block),
    each branch is a chain of stages.  A join takes element ``e`` of both inputs
    together, and the chain on branch ``k`` must have taken
    ``demand_k(e)`` elements of the split tensor before it can deliver element ``e``
    (composed from :meth:`tfl2rtl.hw.stages.Stage.demand` along the chain).  While one
    branch waits for its chain, the other must hold what the split keeps sending, so
    branch ``k`` gets a FIFO of ``max_e(max_j upper_j(e) - lower_k(e))`` elements plus a
    margin.  A CONCATENATION join, which takes its inputs one after the other, gets the
    whole split tensor on every branch.  Joins of streams that do not split from one
    tensor are refused.
    """
    producers = _producers(plan)
    readers: dict[str, list[int]] = {}
    for k, names in enumerate(plan.sources):
        for name in names:
            readers.setdefault(name, []).append(k)
    depths: dict[tuple[str, int], int] = {}
    for k, stage_plan in enumerate(plan.stages):
        names = plan.sources[k]
        if len(names) < 2:
            continue
        chains = []
        for slot, name in enumerate(names):
            chain, reader = [], (k, slot)
            while (len(readers.get(name, ())) == 1 and name != plan.output
                   and name in producers and len(plan.sources[producers[name]]) == 1):
                reader = (producers[name], 0)
                chain.append(plan.stages[producers[name]].stage)
                name = plan.sources[producers[name]][0]
            chains.append((name, reader, chain))
        roots = {root for root, _, _ in chains}
        if len(roots) != 1:
            raise Tfl2RtlError(
                f"{stage_plan.stage.name} joins streams that do not split from one tensor "
                f"({', '.join(sorted(roots))}); the hardware joins only residual branches"
            )
        root = roots.pop()
        size = plan.in_size if root == plan.input else plan.stages[producers[root]].stage.out_size
        join = stage_plan.stage
        if isinstance(join.node, ir.Concatenation):
            needs = [size] * len(chains)
        else:
            elements = np.arange(ir.shape_size(join.in_shapes[0]))
            bounds = []
            for _, _, chain in chains:
                upper, lower = elements, elements
                for stage in chain:
                    upper, lower = stage.demand(upper, "upper"), stage.demand(lower, "lower")
                bounds.append((upper, lower))
            most = np.max([upper for upper, _ in bounds], axis=0)
            needs = [int(np.max(most - lower)) for _, lower in bounds]
        for (_, (reader, slot), _), need in zip(chains, needs, strict=True):
            position = _reader_position(plan, root, reader, slot)
            depths[(root, position)] = max(0, need) + _BRANCH_MARGIN
    return depths


#: Elements added to every residual branch FIFO: beats in flight in lane converters and
#: the stream registers between the split and the FIFO.
_BRANCH_MARGIN = 64


def _reader_position(plan: NetworkPlan, tensor: str, stage: int, slot: int) -> int:
    """Which reader of ``tensor`` (counting in stage order, then inputs) is input
    ``slot`` of stage ``stage``."""
    position = 0
    for k, names in enumerate(plan.sources):
        for s, name in enumerate(names):
            if name == tensor:
                if (k, s) == (stage, slot):
                    return position
                position += 1
    raise AssertionError("not a reader")


class DataflowNetwork(wiring.Component):
    """The stages of a :class:`NetworkPlan` between two AXI4-Stream ports of ``lanes``
    elements per beat.

    ``s_axis_tdata`` and ``m_axis_tdata`` are ``bits * lanes`` bits wide (``bits`` is
    ``plan.act_bits``: 8, or 16 in a 16x8 model), element ``k`` of a beat in bits ``bits
    * k .. bits * k + bits - 1`` (little-endian lane order: the first element of a vector
    is in the lowest bits of its first beat).  ``lanes`` must divide both vector sizes;
    the default, ``None``, keeps ``plan.lanes`` (1 unless the plan says otherwise).

    Data path: ``s_axis`` (``xor 0x80`` per element for a uint8 input), then per stage in
    graph order: for each input, the stream of the tensor it reads (a
    :class:`~tfl2rtl.hw.adapters.Broadcast` output, behind a
    :class:`~tfl2rtl.hw.adapters.SkidBuffer`, when several stages read it, with the
    residual FIFO of :attr:`NetworkPlan.branch_fifo`), a lane converter to the stage's
    input lanes and a FIFO; then the stage.  The output tensor goes through a FIFO and a
    lane converter to ``lanes`` to ``m_axis`` (``xor 0x80`` for a uint8 output).  The FIFO
    before a stage holds one vector of a FULLY_CONNECTED layer (so it takes the next
    vector while the previous one is still busy) and two pixels before the others (their
    window generators buffer rows themselves), at least 3 beats (a 2-deep
    ``SyncFIFOBuffered`` moves a beat every other cycle only).  ``tlast`` on ``m_axis``
    marks the last beat of every output vector; ``s_axis_tlast`` is accepted and ignored
    (vectors are counted).

    Clock and synchronous active-high reset are the ``sync`` domain's ``clk`` and ``rst``.
    Each stage, skid buffer, splitter, lane converter and FIFO takes the reset from a leaf of a
    :class:`~tfl2rtl.hw.pipeline.ResetTree`, so it leaves reset :attr:`reset_depth` edges
    after ``rst`` falls; ``s_axis`` and ``load`` stay closed until then.  A platform whose
    :data:`~tfl2rtl.hw.pipeline.RESET_TREE_HOOK` attribute is false gets no tree (the
    iCE40 boards: ``reset_depth`` 0).

    With ``plan.loadable``, the network has two more ports: ``load`` (``In(stream.
    Signature(LOAD_LAYOUT))``, ready once the parts leave reset), the weight bytes for every
    :class:`~tfl2rtl.hw.weights.LoadableMemory`, and ``loaded`` (``Out(1)``), high once
    all of them are full.  Load only while no vector is under way.

    Target specifics: multipliers are ``*`` on registered operands and memories are
    :class:`amaranth.lib.memory.Memory`, so Yosys infers DSP blocks and block RAM, and an
    Amaranth platform's ``get_memory`` hook can replace any memory (see
    :mod:`tfl2rtl.boards.synth`); the rows of loadable weight memories are the
    platform's where it has :data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK` (iCE40 SPRAM:
    :mod:`tfl2rtl.boards.spram`).  Nothing depends on the target or on simulation.

    Attributes
    ----------
    plan : NetworkPlan
        The plan as built, with its ``lanes``.
    stages : list of wiring.Component
        The stages' components, in plan order.
    cycles_per_vector : int
        Steady-state initiation interval (``plan.cycles_per_vector``).
    reset_depth : int or None
        The registers of the reset tree between ``rst`` and each part (set when the
        network is elaborated; 0 without a tree).
    """

    def __init__(self, plan: NetworkPlan, *, lanes: int | None = None):
        if lanes is not None:
            plan = plan.with_lanes(lanes)
        self.plan = plan
        self.lanes = plan.lanes
        memory_ids = {node: k for k, node in enumerate(plan.loadable)}
        self.stages = [stage.build(memory_ids.get(stage.index)) for stage in plan.stages]
        self.cycles_per_vector = plan.cycles_per_vector
        self.reset_depth = None
        bits = plan.act_bits
        members = {
            "s_axis_tdata": In(bits * self.lanes),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(bits * self.lanes),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        }
        if plan.loadable:  # at the top level ``ready`` is a port (always high)
            members.update(load=In(stream.Signature(LOAD_LAYOUT)), loaded=Out(1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        branch_fifo = dict(plan.branch_fifo)

        bits = plan.act_bits
        # Every part below takes its reset from a leaf of a reset tree (unless the
        # platform leaves it out); the input waits until the parts leave reset.
        tree = ResetTree(m) if getattr(platform, RESET_TREE_HOOK, True) else None
        held = None if tree is None else tree.leaf("input_reset")
        source = axis_source(m, self, plan, held)

        def lanes_of(upstream) -> int:
            return stream_lanes(upstream, bits)

        def convert(upstream, count, name):
            return convert_lanes(m, upstream, count, name, bits, tree=tree)

        def fifo(upstream, beats, name):
            return through_fifo(m, upstream, beats, name, bits, tree=tree)

        # The streams of each tensor, one per reader, in reading order.
        streams: dict[str, list] = {}
        taken: dict[str, int] = {}

        def publish(tensor, upstream):
            readers = plan.readers(tensor)
            if readers == 1:
                streams[tensor] = [upstream]
                return
            # The broadcast's ready gathers its readers' (their FIFOs' levels): a skid
            # buffer keeps that from the stage's own enable (on the ECP5 it ran on into
            # ResNet-8's first requantizer's serial multiplier at 70.5 MHz, 13.4 ns).
            shape = signed_lanes(bits, lanes_of(upstream))
            skid = SkidBuffer(shape)
            _add(m, f"skid_{_ident(tensor)}", skid, tree)
            wiring.connect(m, upstream, skid.i)
            split = Broadcast(shape, readers)
            _add(m, f"split_{_ident(tensor)}", split, tree)
            wiring.connect(m, skid.o, split.i)
            streams[tensor] = list(split.o)

        def take(tensor, name):
            position = taken.get(tensor, 0)
            taken[tensor] = position + 1
            upstream = streams[tensor][position]
            depth = branch_fifo.get((tensor, position))
            if depth is not None:
                upstream = fifo(upstream, -(-depth // lanes_of(upstream)), f"branch_{name}")
            return upstream

        loaded = []
        for component in self.stages:
            if "load" in component.signature.members:
                m.d.comb += [component.load.valid.eq(self.load.valid),
                             component.load.payload.eq(self.load.payload)]
                loaded.append(component.loaded)
        if loaded:
            m.d.comb += [self.loaded.eq(Cat(*loaded).all()),
                         self.load.ready.eq(1 if held is None else ~held)]

        publish(plan.input, source)
        for k, (stage_plan, component) in enumerate(zip(plan.stages, self.stages,
                                                        strict=True)):
            _add(m, f"stage_{k}", component, tree)
            ports = _input_ports(component, len(plan.sources[k]))
            for slot, (tensor, port, count) in enumerate(zip(
                    plan.sources[k], ports, stage_plan.in_lanes, strict=True)):
                name = f"{k}_{slot}"
                upstream = convert(take(tensor, name), count, f"lanes_{name}")
                upstream = fifo(upstream, _fifo_beats(stage_plan.stage, slot, count),
                                f"fifo_{name}")
                wiring.connect(m, upstream, port)
            publish(stage_plan.node.output, component.o)

        upstream = take(plan.output, "out")
        upstream = fifo(upstream, plan.out_size // lanes_of(upstream), "fifo_out")
        upstream = convert(upstream, self.lanes, "lanes_out")

        axis_sink(m, self, plan, upstream)
        self.reset_depth = 0 if tree is None else tree.build()
        return m


def stream_lanes(upstream, bits: int) -> int:
    """Elements per beat of ``upstream``, a stream of ``bits``-bit lanes."""
    return len(upstream.payload.as_value()) // bits


def convert_lanes(m: Module, upstream, count: int, name: str, bits: int = 8, *,
                  tree: ResetTree | None = None):
    """``upstream`` regrouped to ``count`` lanes per beat: through a
    :class:`~tfl2rtl.hw.adapters.LaneConverter` (``m``'s submodule ``name``, its reset
    from ``tree`` when given) when it has another count."""
    lanes = stream_lanes(upstream, bits)
    if lanes == count:
        return upstream
    converter = LaneConverter(signed(bits), lanes, count)
    _add(m, name, converter, tree)
    wiring.connect(m, upstream, converter.i)
    return converter.o


def through_fifo(m: Module, upstream, beats: int, name: str, bits: int = 8, *,
                 tree: ResetTree | None = None):
    """``upstream`` through a :class:`~tfl2rtl.hw.adapters.StreamFIFO` of ``beats`` beats
    (at least 3: a 2-deep buffered FIFO moves a beat every other cycle only), ``m``'s
    submodule ``name`` (its reset from ``tree`` when given)."""
    queue = StreamFIFO(signed_lanes(bits, stream_lanes(upstream, bits)), depth=max(3, beats))
    _add(m, name, queue, tree)
    wiring.connect(m, upstream, queue.i)
    return queue.o


def axis_source(m: Module, top, plan, held=None):
    """``top``'s ``s_axis_*`` ports as a stream of ``plan.lanes`` elements of
    ``plan.act_bits`` (a uint8 input's elements with their sign bit flipped to int8),
    closed while ``held`` (if given) is high."""
    flips = int("80" * plan.lanes, 16) if plan.uint8_input else 0
    source = stream.Signature(signed_lanes(plan.act_bits, plan.lanes)).create()
    is_open = 1 if held is None else ~held
    m.d.comb += [
        source.payload.eq(top.s_axis_tdata ^ flips),
        source.valid.eq(top.s_axis_tvalid & is_open),
        top.s_axis_tready.eq(source.ready & is_open),
    ]
    return source


def axis_sink(m: Module, top, plan, upstream) -> None:
    """``upstream`` (``plan.lanes`` elements a beat) onto ``top``'s ``m_axis_*`` ports,
    ``tlast`` on the last beat of each ``plan.out_size``-element vector (a uint8
    output's elements with their sign bit flipped back)."""
    flips = int("80" * plan.lanes, 16) if plan.uint8_output else 0
    out_beats = plan.out_size // plan.lanes
    position = Signal(range(out_beats))
    m.d.comb += [
        top.m_axis_tdata.eq(upstream.payload.as_value() ^ flips),
        top.m_axis_tvalid.eq(upstream.valid),
        upstream.ready.eq(top.m_axis_tready),
        top.m_axis_tlast.eq(position == out_beats - 1),
    ]
    with m.If(upstream.valid & upstream.ready):
        m.d.sync += position.eq(Mux(position == out_beats - 1, 0, position + 1))


def _add(m: Module, name: str, part, tree: ResetTree | None) -> None:
    if tree is not None:
        tree.add(name, part)
    else:
        m.submodules[name] = part


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40]


def _input_ports(component, count: int) -> list:
    """The input streams of a stage's component: ``i``, ``a`` and ``b`` (ADD), or the
    list ``i`` (CONCATENATION)."""
    if count == 1:
        return [component.i]
    if hasattr(component, "a"):
        return [component.a, component.b]
    return list(component.i)


def _padding_run(node: ir.Pad, in_shape) -> int:
    """An upper bound of the longest run of padding elements a PAD of ``in_shape``
    writes without reading (the end of one vector and the start of the next included):
    its leading dimensions' paddings as whole slices of the output, each dimension's
    slices between two of the next, down to the channels around a pixel."""
    out = [int(n) + int(a) + int(b) for n, (a, b) in zip(in_shape, node.paddings,
                                                          strict=True)]
    run = 0
    for axis, (before, after) in enumerate(node.paddings):
        run += (int(before) + int(after)) * ir.shape_size(out[axis + 1:])
    return run


def _fifo_beats(stage: Stage, slot: int, lanes: int) -> int:
    """The FIFO before a stage: one input vector of a FULLY_CONNECTED layer, two pixels
    of anything else (a whole vector when it has no pixels); before a PAD, also what
    arrives while it writes its longest run of padding (:func:`_padding_run`: it reads
    nothing meanwhile, and the stage before it must not stall for it)."""
    shape = stage.in_shapes[slot]
    if isinstance(stage.node, ir.FullyConnected) or len(shape) < 3:
        return ir.shape_size(shape) // lanes
    beats = 2 * shape[-1] // lanes
    if isinstance(stage.node, ir.Pad):
        beats += -(-_padding_run(stage.node, stage.tensor_shapes[0]) // lanes)
    return beats


def lint_waivers(filename: str) -> str:
    """A Verilator configuration file (``.vlt``) that waives :data:`LINT_WAIVERS` for the
    Verilog file ``filename`` (its name, as passed to Verilator, or a ``*`` pattern)."""
    lines = ["`verilator_config"]
    for rule, reason in LINT_WAIVERS.items():
        lines += [f"// {reason}", f'lint_off -rule {rule} -file "{filename}"']
    return "\n".join(lines) + "\n"


def to_verilog(network: DataflowNetwork, name: str = "tfl2rtl_top", platform=None) -> str:
    """Verilog for ``network`` as module ``name`` with ports ``clk``, ``rst``,
    ``s_axis_*`` and ``m_axis_*``, elaborated for ``platform`` (its hooks; None for
    none)."""
    return verilog.convert(network, name=name, emit_src=False, platform=platform)


def to_rtlil(network: DataflowNetwork, name: str = "tfl2rtl_top", platform=None) -> str:
    """The same design as :func:`to_verilog` in Yosys's own RTLIL, which Yosys reads
    without parsing Verilog: what synthesis reads, as the board builds' Amaranth
    platforms do.  (Yosys's Verilog frontend took 31 of the 95 s of a synthesis of the
    16x8 test model fully folded, its weight memories' ``initial`` blocks; from RTLIL the
    same synthesis took 37 s and mapped the same cells, within two carries and one
    LUT.)"""
    return rtlil.convert(network, name=name, emit_src=False, platform=platform)
