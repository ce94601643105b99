"""From a lowered graph to files: Verilog top, memory images and ``manifest.json``.

:func:`plan` chooses the folding and checks the graph can be built; :func:`write`
puts everything into an output folder atomically.  The same graph and options always
give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ir
from .edges import HostEdges, host_edges
from .errors import Tfl2RtlError
from .folding import Fold, auto_fold, full_fold, load_fold
from .output import staged_directory

__all__ = ["Design", "plan", "products_in_logic", "without_compact_requantizers", "write",
           "TOP", "DEFAULT_MAX_MULTIPLIERS", "ARCHITECTURES", "FLASH_WEIGHTS",
           "check_sequential_fold"]

TOP = "tfl2rtl_top"
DEFAULT_MAX_MULTIPLIERS = 64
#: The hardware assemblies over the same IR and components.
#: ``auto`` picks between the other two: the dataflow design when it fits the board, else
#: the sequential engine (:func:`tfl2rtl.boards.build.build_graph`); without a board,
#: the dataflow design.
ARCHITECTURES = ("auto", "dataflow", "sequential")

#: The file ``generate`` writes with a design's weights when they are in flash.
FLASH_WEIGHTS = "flash_weights.bin"
VERSION = "0.1.0"


@dataclass
class Design:
    """A checked plan for one model: the graph the hardware computes, the folding per
    foldable node, and the hardware plan (:class:`tfl2rtl.hw.network.NetworkPlan`).
    ``multipliers`` counts the MAC multipliers of the stages
    (:meth:`tfl2rtl.hw.stages.Stage.multipliers`).  ``edges`` are the model's float
    edges the host computes (:class:`tfl2rtl.edges.HostEdges`): ``graph`` is then the
    model's graph with those edges passed through (its ports carry the integers)."""

    graph: ir.Graph
    fold: dict[int, Fold]
    network_plan: object
    fold_source: str
    edges: HostEdges | None = None

    @property
    def lanes(self) -> int:
        """Elements per AXI4-Stream beat on both edges."""
        return self.network_plan.lanes

    @property
    def multipliers(self) -> int:
        return self.network_plan.multipliers

    @property
    def initiation_interval(self) -> int:
        return self.network_plan.cycles_per_vector

    @property
    def ideal_cycles(self) -> float:
        """MACs per inference divided by the multipliers: the cycles a design with every
        multiplier busy every cycle would need."""
        return self.graph.macs / self.multipliers if self.multipliers else 0.0

    @property
    def mac_efficiency(self) -> float:
        return self.ideal_cycles / self.initiation_interval

    @property
    def architecture(self) -> str:
        """``"dataflow"`` (a stage per layer, :class:`tfl2rtl.hw.network.DataflowNetwork`)
        or ``"sequential"`` (shared units driven by a schedule,
        :class:`tfl2rtl.hw.engine.SequentialEngine`)."""
        return getattr(self.network_plan, "architecture", "dataflow")

    def network(self):
        """The top-level component of the design's architecture."""
        if self.architecture == "sequential":
            from .hw.engine import SequentialEngine

            return SequentialEngine(self.network_plan)
        from .hw.network import DataflowNetwork

        return DataflowNetwork(self.network_plan)

    def layers(self) -> list[dict]:
        """One entry per stage: node, op, folding, multipliers, cycles per inference,
        MACs and MAC efficiency (MACs over multipliers times the design's initiation
        interval: the share of the interval its multipliers are busy)."""
        entries = []
        interval = self.initiation_interval
        if self.architecture == "sequential":
            return self._schedule_layers()
        for s in self.network_plan.stages:
            node = s.node
            entry = {"node": s.index, "op": node.op,
                     "output_shape": list(s.stage.out_shape),
                     "pe": s.fold.pe, "simd": s.fold.simd,
                     "multipliers": s.multipliers,
                     "cycles_per_vector": s.cycles_per_vector,
                     "macs": node.macs}
            if s.requant_lanes is not None:
                entry["requant_lanes"] = s.requant_lanes
            if s.serial_requantizer:
                entry["serial_requantizer"] = True
            if s.compact_requantizer:
                entry["compact_requantizer"] = True
            if s.products_in_logic:
                entry["products_in_logic"] = True
            if s.multipliers:
                entry["mac_efficiency"] = round(node.macs / (s.multipliers * interval), 4)
            if _weighted(node):
                entry.update(shape=list(node.weights.shape), acc_bits=node.acc_bits,
                             weights=f"mem/node{s.index:02d}_weights.hex",
                             bias=f"mem/node{s.index:02d}_bias.hex")
            entries.append(entry)
        return entries

    def _schedule_layers(self) -> list[dict]:
        """:meth:`layers` of a sequential design: one entry per scheduled layer, on the
        shared unit (its cycles are the ones it issues for the layer; MAC efficiency is
        the share of them its multipliers are busy)."""
        schedule = self.network_plan.schedule
        multipliers = self.network_plan.multipliers
        entries = []
        for step, (_, node) in zip(schedule.steps, self.network_plan.layers, strict=True):
            entries.append({
                "node": step.node, "op": step.op, "output_shape": [step.out_depth],
                "pe": schedule.pe, "simd": schedule.simd, "multipliers": multipliers,
                "cycles_per_vector": step.cycles, "macs": step.macs,
                "requant_lanes": schedule.requant_lanes,
                "mac_efficiency": round(step.macs / (multipliers * step.cycles), 4),
                "shape": list(node.weights.shape), "acc_bits": node.acc_bits,
                "padded_shape": [step.padded_out, step.padded_in],
                "first_row": step.first_row, "first_group": step.first_group,
                "weights": f"mem/node{step.node:02d}_weights.hex",
                "bias": f"mem/node{step.node:02d}_bias.hex"})
        return entries

    @property
    def weights_in_flash(self) -> bool:
        """Whether the design reads its weights from the board's SPI flash (a sequential
        engine's :attr:`~tfl2rtl.hw.engine.Schedule.weights`)."""
        return getattr(self.network_plan, "weights", "chip") == "flash"

    def schedule_summary(self) -> dict:
        """A sequential design's schedule, plain data (the manifest's ``"schedule"``):
        the unit's folding, requantizer lanes, cycles and weight bytes, whether the
        layers read tensors from an activation memory (``tensors``) and the most cycles
        a pass then waits for the next input beyond the layers' (``input_wait``), a
        :meth:`_schedule_step` entry per layer, and under ``"tail"`` the stages after the
        last layer (each of its own, working on one inference while the unit computes
        the next: the design's interval is the slowest of them and the unit's cycles);
        :func:`tfl2rtl.report.format_schedule` renders it."""
        schedule = self.network_plan.schedule
        return {"pe": schedule.pe, "simd": schedule.simd,
                "requant_lanes": schedule.requant_lanes,
                "requant_interval": schedule.requant_interval,
                "weight_rows": schedule.rows, "groups": schedule.groups,
                "issue_cycles": schedule.issue_cycles,
                "boundary_waits": [schedule.boundary_wait(k)
                                   for k in range(len(schedule.steps) - 1)],
                "activation_buffer_beats": schedule.buffer_beats,
                "tensors": schedule.tensors,
                "input_wait": self.network_plan.input_wait,
                "cycles_per_inference": schedule.cycles_per_vector,
                "weight_bytes": sum(schedule.weight_bytes(k)
                                    for k in range(len(schedule.steps))),
                "weights_in": schedule.weights,
                "weights_copied": schedule.copied,
                "copy_cycles": schedule.copy_cycles,
                "flash_bytes": sum(schedule.weight_bytes(k)
                                   for k in range(len(schedule.steps)))
                if schedule.weights == "flash" and not schedule.copied else 0,
                "flash_bytes_per_cycle": (round(1 / schedule.flash_cycles_per_byte, 3)
                                          if schedule.weights == "flash" else 0),
                "layers": [self._schedule_step(k) for k in range(len(schedule.steps))],
                "tail": [{"node": t.index, "op": t.node.op, "cycles": t.cycles_per_vector}
                         for t in self.network_plan.tail]}

    def _schedule_step(self, k: int) -> dict:
        """Layer ``k`` of the schedule as ``inspect``, ``generate`` and ``bench`` show it:
        its cycles (:meth:`~tfl2rtl.hw.engine.Schedule.layer_cycles`), MACs per cycle,
        its vectors a pass (``pixels``: a convolution's output pixels, each its patch
        through the layer's rows), the pool on its outputs (``pooling``: node and op, or
        None), the bytes of weights the unit reads, those it reads from flash (all of
        them or none: :attr:`~tfl2rtl.hw.engine.Schedule.weights`; none when they are
        :attr:`~tfl2rtl.hw.engine.Schedule.copied` at start-up) and the bytes per
        cycle the
        layer needs to run at its compute speed
        (:meth:`~tfl2rtl.hw.engine.Schedule.compute_cycles`), to hold against what the
        flash gives (the summary's ``flash_bytes_per_cycle``)."""
        schedule = self.network_plan.schedule
        step = schedule.steps[k]
        cycles, weight_bytes = schedule.layer_cycles(k), schedule.weight_bytes(k)
        flash = schedule.weights == "flash" and not schedule.copied
        return {"node": step.node, "op": step.op, "shape": [step.out_depth, step.in_depth],
                "padded_shape": [step.padded_out, step.padded_in], "pixels": step.pixels,
                "pooling": (None if step.pooling is None else
                            {"node": step.pooling.node, "op": step.pooling.op}),
                "cycles": cycles,
                "boundary_wait": (schedule.boundary_wait(k)
                                  if k < len(schedule.steps) - 1 else 0),
                "macs": step.macs, "macs_per_cycle": round(step.macs / cycles, 3),
                "weight_bytes": weight_bytes, "weights_in": schedule.weights,
                "flash_bytes": weight_bytes if flash else 0,
                "compute_cycles": schedule.compute_cycles(k),
                "flash_cycles": schedule.flash_cycles(k),
                "weight_bytes_per_cycle": round(weight_bytes / schedule.compute_cycles(k), 3)}

    def manifest(self) -> dict:
        g = self.graph
        t_in, t_out = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
        return {
            "tool": f"tfl2rtl {VERSION}",
            "model": Path(g.source).name,
            "model_sha256": _sha256(g.source),
            "top": TOP,
            "ports": {
                "clk": 1, "rst": 1,
                "s_axis_tdata": 8 * self.lanes, "s_axis_tvalid": 1, "s_axis_tready": 1,
                "s_axis_tlast": 1, "m_axis_tdata": 8 * self.lanes, "m_axis_tvalid": 1,
                "m_axis_tready": 1, "m_axis_tlast": 1,
                **({"flash_sck": 1, "flash_cs_n": 1, "flash_io_o": 4, "flash_io_oe": 1,
                    "flash_io_i": 4} if self.weights_in_flash else {}),
            },
            # Where the weights go in flash, and the file (``image``, programmed at
            # ``image_base``) that holds them there (a build's holds the bitstream too).
            **({"flash": {"base": self.network_plan.flash_base,
                          "bytes": (self.network_plan.schedule.rows
                                    * self.network_plan.schedule.row_bytes),
                          "image": FLASH_WEIGHTS, "image_base": self.network_plan.flash_base}}
               if self.weights_in_flash else {}),
            "lanes": self.lanes,
            "input": {"shape": list(t_in.shape), "dtype": t_in.dtype, "scale": t_in.scale,
                      "zero_point": t_in.zero_point, "elements": t_in.size},
            "output": {"shape": list(t_out.shape), "dtype": t_out.dtype,
                       "scale": t_out.scale, "zero_point": t_out.zero_point,
                       "elements": t_out.size},
            **({"host_edges": self.edges.manifest()}
               if self.edges is not None and self.edges.any else {}),
            "architecture": self.architecture,
            "folding": self.fold_source,
            "layers": self.layers(),
            "macs": g.macs,
            "multipliers": self.multipliers,
            **({"logic_multipliers": self.network_plan.logic_multipliers}
               if self.network_plan.logic_multipliers else {}),
            **({"schedule": self.schedule_summary()}
               if self.architecture == "sequential" else {}),
            "initiation_interval": self.initiation_interval,
            "expected_cycles_per_inference": self.initiation_interval,
            "ideal_cycles": round(self.ideal_cycles, 3),
            "mac_efficiency": round(self.mac_efficiency, 4),
        }


def _weighted(node: ir.Node) -> bool:
    return isinstance(node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D)


def _sha256(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_sequential_fold(fold) -> None:
    """Refuse a folding given for the sequential engine, which chooses its own."""
    if fold not in (None, "auto"):
        raise Tfl2RtlError("--fold applies to the dataflow architecture; the sequential "
                           "engine chooses its folding within --max-multipliers")


def plan(graph: ir.Graph, fold: str | os.PathLike | dict | None = "auto",
         max_multipliers: int = DEFAULT_MAX_MULTIPLIERS, lanes: int = 1,
         requant_interval: int = 1, arch: str = "auto", weights: str = "chip") -> Design:
    """Choose the folding (``"auto"`` within ``max_multipliers``, ``"full"`` for one
    multiplier per layer, a JSON file, or a ``{node: Fold}`` dict) and check the graph;
    ``lanes`` elements travel per AXI4-Stream beat; ``requant_interval`` is the cycles
    per requantizer beat on the target (see :func:`tfl2rtl.hw.network.plan_network`).
    With ``auto`` and ``full`` folding, each layer then gets only the requantizer lanes
    it has time for (:func:`share_requantizers`).

    ``arch``: ``"dataflow"`` (a stage per layer), ``"sequential"`` (one shared unit
    and requantizer driven by a schedule, :func:`tfl2rtl.hw.engine.plan_sequential`,
    whose folding is always chosen within ``max_multipliers``) or ``"auto"`` (the
    default: with no board to fit, the dataflow design).  ``weights``: where a
    sequential engine's weights are, ``"chip"`` (a ROM) or ``"flash"`` (read from the
    board's SPI flash, :attr:`tfl2rtl.hw.engine.Schedule.weights`).

    A model with float32 edges (QUANTIZE from its input, DEQUANTIZE to its output) is
    planned without them: the hardware streams the integer tensors and the host applies
    the edges (:func:`tfl2rtl.edges.host_edges`; the design's ``edges``)."""
    from .hw.network import plan_network

    if arch not in ARCHITECTURES:
        raise Tfl2RtlError(f"unknown architecture {arch!r}; choose one of "
                           + ", ".join(ARCHITECTURES))
    edges = host_edges(graph)
    graph = edges.hardware
    if arch == "sequential":
        from .hw.engine import plan_sequential

        check_sequential_fold(fold)
        engine = plan_sequential(graph, max_multipliers, lanes=lanes,
                                 requant_interval=requant_interval, weights=weights)
        return Design(graph=graph, fold={}, network_plan=engine,
                      fold_source=f"sequential ({max_multipliers} max)", edges=edges)
    if isinstance(fold, dict):
        chosen, source = dict(fold), "explicit"
    elif fold in (None, "auto"):
        # The stream edges move ``lanes`` elements per cycle: no layer needs to be faster
        # than the larger edge vector takes.
        edge = max(graph.tensors[graph.inputs[0]].size,
                   graph.tensors[graph.outputs[0]].size) // max(lanes, 1)
        chosen = auto_fold(graph, max_multipliers, min_interval=edge,
                           requant_interval=requant_interval)
        source = f"auto ({max_multipliers} max)"
    elif fold == "full":
        chosen, source = full_fold(graph), "full"
    else:
        chosen, source = load_fold(graph, fold), str(fold)
    network_plan = plan_network(graph, chosen, lanes=lanes, requant_interval=requant_interval)
    if fold in (None, "auto", "full"):
        network_plan = share_requantizers(graph, network_plan)
    return Design(graph=graph, fold=chosen, network_plan=network_plan, fold_source=source,
                  edges=edges)


def share_requantizers(graph: ir.Graph, network_plan):
    """``network_plan`` with each requantizing stage (FULLY_CONNECTED, CONV_2D,
    DEPTHWISE_CONV_2D; ADD's output requantizer, which keeps its lanes and may only get
    serial products) given the requantizer that costs the fewest multipliers while
    keeping its cycles within the plan's initiation interval: a layer with time to spare
    shares fewer lanes (an :class:`~tfl2rtl.hw.adapters.AccumulatorSplitter` hands them
    the accumulators in turn), so that its requantizers are sized to the rate it
    produces outputs.  A lane is four 16x16 multipliers (DSP blocks) for its 32x32
    product (two when every multiplier fits 16 unsigned bits or the accumulators are
    narrow: :func:`~tfl2rtl.hw.requant.lane_multipliers`), or one with serial
    products (:class:`~tfl2rtl.hw.requant.Requantizer`'s ``serial_products``: a beat every
    :data:`~tfl2rtl.hw.stages.SERIAL_REQUANT_INTERVAL` cycles), which targets whose
    requantizers are all serial (the iCE40's) have already, and which a layer on any other
    target gets when it has the time: for the same cost, the parallel form (fewer LUTs,
    a shorter latency) is kept.  A legacy uint8 FULLY_CONNECTED's
    :class:`~tfl2rtl.hw.requant.RoundingRequantizer` and a 16x8 layer's
    :class:`~tfl2rtl.hw.requant.Int64Requantizer` (a product per 16-bit chunk of its
    accumulator) are never serial.  On targets whose requantizers are all serial, a
    layer whose outputs come at most every
    :data:`~tfl2rtl.hw.stages.COMPACT_REQUANT_INTERVAL` cycles per lane gets compact
    ones instead (``Requantizer(compact=True)``: one beat at a time, the same
    multiplier, under half the logic), the fewest lanes first.  The interval does not
    grow."""
    from .fold import divisors
    from .hw.network import plan_network
    from .hw.requant import int64_chunks, lane_multipliers
    from .hw.stages import COMPACT_REQUANT_INTERVAL, SERIAL_REQUANT_INTERVAL

    target = network_plan.cycles_per_vector
    interval = network_plan.requant_interval
    folds, serial, compact = {}, set(), set()
    # At the same cost: the parallel form, then the compact one, then serial products.
    parallel_form, compact_form, serial_form = 0, 1, 2
    for s in network_plan.stages:
        if not s.stage.foldable:
            continue
        folds[s.index] = (s.fold.pe, s.fold.simd, s.requant_lanes) \
            if s.requant_lanes is not None else s.fold
        if isinstance(s.node, ir.Add) and s.stage.serial_requantizer and interval == 1:
            # An ADD keeps its lanes: serial products when it has the time.
            if s.stage.cycles(s.fold, None, SERIAL_REQUANT_INTERVAL) <= target:
                serial.add(s.index)
            continue
        if not isinstance(s.node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D):
            continue
        wide = getattr(s.node, "accumulator", "int32") == "int64"  # an Int64Requantizer
        integer = not wide and getattr(s.node, "requantization", "integer") != "double"
        if wide:
            per_lane = len(int64_chunks(s.node.acc_bits))
        else:
            per_lane = 1 if interval > 1 else lane_multipliers(
                s.node.requant.multiplier, s.node.requant.shift, s.node.acc_bits)
        own = serial_form if interval > 1 and integer else parallel_form
        forms = [(lanes * per_lane, own, lanes, interval) for lanes in divisors(s.out_lanes)]
        if interval == 1 and integer:
            forms += [(lanes, serial_form, lanes, SERIAL_REQUANT_INTERVAL)
                      for lanes in divisors(s.out_lanes)]
        if interval > 1 and integer:
            forms += [(lanes, compact_form, lanes, COMPACT_REQUANT_INTERVAL)
                      for lanes in divisors(s.out_lanes)]
        current = (s.out_lanes * per_lane, own)
        for cost, form, lanes, cycles_per_beat in sorted(forms):
            if (cost, form) >= current:
                break
            if s.stage.cycles(s.fold, lanes, cycles_per_beat) <= target:
                folds[s.index] = (s.fold.pe, s.fold.simd, lanes)
                if form == serial_form and interval == 1:
                    serial.add(s.index)
                if form == compact_form:
                    compact.add(s.index)
                break
    shared = plan_network(graph, folds, lanes=network_plan.lanes, requant_interval=interval,
                          serial_requantizers=serial, compact_requantizers=compact)
    shared = dataclasses.replace(shared, loadable=network_plan.loadable)
    return shared if shared.cycles_per_vector <= target else network_plan


def products_in_logic(design: Design, nodes) -> Design:
    """``design`` with the MAC products of the layers of ``nodes`` (node indices of
    FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D stages) built in LUTs rather than DSP
    blocks (:meth:`tfl2rtl.hw.network.NetworkPlan.with_products_in_logic`): the same folding,
    cycles and results.  A board build chooses them when its DSP blocks run out
    (:func:`tfl2rtl.boards.fit.fitting_design`)."""
    return dataclasses.replace(
        design, network_plan=design.network_plan.with_products_in_logic(nodes))


def without_compact_requantizers(design: Design) -> Design:
    """``design`` with its compact requantizers serial instead
    (:meth:`tfl2rtl.hw.network.NetworkPlan.without_compact_requantizers`): the same
    folding, lanes and DSP blocks, no more cycles, more LUTs and a faster clock.  A
    default iCE40 build tries it first and falls back on the compact form when the logic
    overflows (:func:`tfl2rtl.boards.build.build_graph`)."""
    if design.architecture == "sequential":
        return design
    return dataclasses.replace(
        design, network_plan=design.network_plan.without_compact_requantizers())


def _hex_lines(values: np.ndarray, bits: int) -> str:
    mask = (1 << bits) - 1
    digits = -(-bits // 4)
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values.reshape(-1))


def write(design: Design, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<top>.v``, ``manifest.json`` and ``mem/`` (one int8 weight per line, row
    by row, and one folded bias per line in two's complement of at least 32 bits, for each
    layer: the same contents the
    Verilog's memories are initialised with) into ``out_dir``, atomically.  A legacy
    uint8 model's layers are written in their hardware form
    (:func:`tfl2rtl.lower.hardware_form`): 9-bit weights ``w - zw`` in three hex digits,
    and the biases folded for its int8 stream.  A design whose weights are in flash
    also gets :data:`FLASH_WEIGHTS`, the bytes the flash holds from the manifest's
    ``flash.base`` (:meth:`tfl2rtl.hw.engine.SequentialPlan.flash_image`)."""
    from .hw.network import to_verilog
    from .lower import hardware_form

    verilog = to_verilog(design.network(), name=TOP)
    manifest = design.manifest()
    names = []
    with staged_directory(out_dir) as tmp:
        (tmp / f"{TOP}.v").write_text(verilog)
        (tmp / "mem").mkdir()
        for i, node in enumerate(hardware_form(design.graph).nodes):
            if not _weighted(node):
                continue
            (tmp / "mem" / f"node{i:02d}_weights.hex").write_text(
                _hex_lines(node.weights, node.weight_bits))
            bias_bits = 4 * -(-max(32, node.acc_bits) // 4)
            (tmp / "mem" / f"node{i:02d}_bias.hex").write_text(
                _hex_lines(node.folded_bias, bias_bits))
        if design.weights_in_flash:
            (tmp / FLASH_WEIGHTS).write_bytes(design.network_plan.flash_image())
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        names = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    return [Path(out_dir) / n for n in names]

