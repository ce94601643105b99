"""The sequential engine: one matrix-vector unit and one requantizer shared by all the
layers of a model, driven by a schedule compiled from the IR.

The dataflow network (:mod:`tfl2rtl.hw.network`) gives every layer a stage of its own;
its cost grows with the number of layers.  The sequential engine computes the layers one
after the other on one :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit` (given the layers'
matrices in turn) and one :class:`~tfl2rtl.hw.requant.Requantizer` (each channel with
its layer's multiplier, shift, offset and clamp), so its multipliers and control do not
grow with the model: what grows is memory (weight rows and parameter ROMs).

:class:`Schedule` is the plan, plain data: per layer (:class:`LayerStep`), its shapes
as the shared unit computes them (padded so that one ``pe x simd`` folding divides every
layer), the first weight row and neuron group, and its cycles.  :func:`plan_sequential`
compiles it from a graph and chooses the folding; :class:`SequentialEngine` builds it.

It takes chains of FULLY_CONNECTED layers (int8 or legacy uint8, and RESHAPE or the
uint8 edge QUANTIZE around them) followed by SOFTMAX or a table op (LOGISTIC, TANH, ...)
as stages of their own: MLPs, whose layers hand vectors to each other through a FIFO.
In an int8 model the chain may also hold CONV_2D and DEPTHWISE_CONV_2D layers (depth
multiplier 1, or any over one input channel: a convolution) with MAX_POOL_2D and
AVERAGE_POOL_2D between layers: the layers then read tensors from a
:class:`~tfl2rtl.hw.patches.ActivationMemory` (:attr:`Schedule.tensors`; a convolution
a patch per output pixel, the unit's rows again for each, a depthwise convolution a
patch per group of PE / SIMD channel blocks, a pool its layer's outputs read back as
windows).  Any other op is refused by name and position.  The unit's weights are a ROM, or
(:attr:`Schedule.weights` ``"flash"``) in the board's SPI flash, read by a
:class:`~tfl2rtl.hw.flash.QspiReader` (:meth:`SequentialPlan.flash_image` is what the
flash holds): an MLP's in issue order, pass after pass; a model with tensors' once, at
start-up, into the unit's loadable memory (:attr:`Schedule.copied`: SPRAM on the iCE40
UP5K, whose bitstream cannot fill it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fold import Fold, divisors
from .adapters import (
    AccumulatorSplitter,
    BeatPad,
    BeatTrim,
    SkidBuffer,
    StreamFIFO,
    connect_splitting,
)
from .flash import QspiReader
from .layouts import signed_lanes
from .mvu import MatrixVectorUnit, issue_order
from .network import (
    StagePlan,
    _uint8_hardware_form,
    axis_sink,
    axis_source,
    convert_lanes,
    stream_lanes,
    through_fifo,
)
from .patches import ActivationMemory, PatchGeometry
from .pool import POOL_STAGES, pool_kind, pool_multipliers, pool_unit
from .requant import Requantizer, RoundingRequantizer, partial_products
from .stages import stage_for

__all__ = ["LayerStep", "Schedule", "SequentialPlan", "compile_schedule", "plan_sequential",
           "flash_offsets", "weight_bits",
           "SequentialEngine", "BOUNDARY_SLACK", "REQUANT_SLACK", "WEIGHT_PLACES",
           "FLASH_BASE", "FLASH_PREFETCH_ROWS", "FLASH_PORTS"]

#: Cycles of the paths around the unit and the requantizer at a layer boundary beyond
#: their documented latencies: the skid buffers before and after the requantizer, an
#: accumulator splitter, the lane converter and the activation FIFO back into the unit's
#: input.
BOUNDARY_SLACK = 8


#: Where a sequential engine's weights may be (:attr:`Schedule.weights`).
WEIGHT_PLACES = ("chip", "flash")

#: Where a board's flash holds the weights when they are in flash: 1 MiB in, past the
#: bitstream (an iCE40 UP5K's is 104 KB, an ECP5-85F's up to 2.3 MB: ULX3S boards load
#: theirs from 0 too, but nothing here builds flash weights for the ECP5 yet).
FLASH_BASE = 0x100000

#: The least depth, in weight rows, of the FIFO between the flash reader and the unit.
FLASH_PREFETCH_ROWS = 16

#: Cycles a layer whose weights come from flash may take beyond the flash's time for
#: them: the path from the reader through the row gatherer and the prefetch FIFO into
#: the unit, where the unit has caught up with the flash (measured: the jet MLP at 8
#: multipliers, 4 cycles a pass beyond the flash's time).
FLASH_SLACK = 8

#: How much slower (a fraction of the cycles per inference) the planner lets a sequential
#: engine be to save requantizer lanes (four DSP blocks each, one with serial products).
REQUANT_SLACK = 1 / 8


#: The ports of an engine whose weights are in flash (:class:`~tfl2rtl.hw.flash.
#: QspiReader`'s pins): clock, chip select (low active), IO0..IO3 out, their one output
#: enable, IO0..IO3 in.
FLASH_PORTS = {"flash_sck": Out(1), "flash_cs_n": Out(1, init=1), "flash_io_o": Out(4),
               "flash_io_oe": Out(1), "flash_io_i": In(4)}


@dataclass(frozen=True)
class Pooling:
    """A MAX_POOL_2D or AVERAGE_POOL_2D between two layers of an engine of tensors: node
    ``node`` over the layer's output tensor (``in_shape``, its channels as the layer
    computed them, padding included), giving the next layer's (``out_hw`` pixels).  The
    layer's outputs go into the activation memory as they are; the pool reads them back
    there as windows (``patches``, order ``"depthwise"``) into a
    :class:`~tfl2rtl.hw.pool.PoolUnit` of ``simd`` lanes, whose results are the next
    layer's tensor: no line buffer of its own.  ``latency`` is the unit's,
    ``window_beats`` the beats of its windows."""

    node: int
    op: str
    in_shape: tuple[int, int, int]
    out_hw: tuple[int, int]
    latency: int
    window_beats: int
    patches: PatchGeometry


@dataclass(frozen=True)
class LayerStep:
    """One layer of a :class:`Schedule`.

    ``in_depth`` and ``out_depth`` are the layer's own; ``padded_in`` and ``padded_out``
    what the shared unit computes (extra inputs have zero weights, extra outputs are
    computed and never used).  ``first_row`` is its first row in the weight memory,
    ``first_group`` its first neuron group (its row in the bias memory and the
    requantizer's ROMs).

    In an engine of tensors (:attr:`Schedule.tensors`: a model with convolutions) each
    layer also has ``patches``, how it reads its input tensor from the
    :class:`~tfl2rtl.hw.patches.ActivationMemory` (a convolution: a patch per output
    pixel; a fully connected layer: the whole tensor as one vector), and ``pixels``
    vectors a pass (its output pixels).  Its input vector is ``positions`` positions of
    ``channels`` channels each, held as ``padded_channels`` (the tensor's channels as
    the layer before computed them): ``in_depth = positions * channels`` and
    ``padded_in = positions * padded_channels``."""

    node: int
    op: str
    in_depth: int
    out_depth: int
    padded_in: int
    padded_out: int
    first_row: int
    first_group: int
    neuron_folds: int
    synapse_folds: int
    pixels: int = 1
    patches: PatchGeometry | None = None
    positions: int = 1
    channels: int = 0
    padded_channels: int = 0
    #: With tensors: the pool on the layer's outputs, if one follows it.
    pooling: Pooling | None = None

    @property
    def rows(self) -> int:
        """The layer's weight rows: ``neuron_folds * synapse_folds``."""
        return self.neuron_folds * self.synapse_folds

    @property
    def cycles(self) -> int:
        """Cycles the unit issues for this layer: one weight row per cycle, its rows
        once a pixel."""
        return self.rows * self.pixels

    @property
    def macs(self) -> int:
        return self.in_depth * self.out_depth * self.pixels


@dataclass(frozen=True)
class Schedule:
    """A sequential engine's program: the layers in order on one ``pe x simd`` unit, with
    ``requant_lanes`` requantizer lanes, each ``requant_interval`` cycles per beat."""

    pe: int
    simd: int
    requant_lanes: int
    requant_interval: int
    steps: tuple[LayerStep, ...]
    acc_bits: int
    #: Bits of a weight (8; 9 for a legacy uint8 layer's ``w - zw``).
    weight_bits: int = 8
    #: Where the unit's weights are: ``"chip"`` (a ROM) or ``"flash"`` (streamed from
    #: the board's SPI flash in issue order, :class:`~tfl2rtl.hw.flash.QspiReader`).
    weights: str = "chip"
    #: With weights in flash: clock cycles per byte the reader gives, and its cycles per
    #: pass beyond the bytes (command, address, dummy clocks, chip select).
    flash_cycles_per_byte: int = 0
    flash_pass_overhead: int = 0
    #: With 9-bit weights in flash, per layer: the offset ``z`` its weights are stored
    #: with, one unsigned byte ``w + z`` each (:func:`flash_offsets`); () otherwise.
    flash_offsets: tuple[int, ...] = ()
    #: With weights in flash and :attr:`tensors` (each of a convolution's pixels reads
    #: its layer's rows again): the rows are copied once, at start-up, into the unit's
    #: memory (a :class:`~tfl2rtl.hw.weights.LoadableMemory`: the platform's row memory,
    #: SPRAM on the iCE40 UP5K), and the layers read them there; not streamed.
    copied: bool = False

    @property
    def row_bytes(self) -> int:
        """Bytes of one weight row in flash: ``pe * simd`` weights of a byte each (int8,
        or ``w + z`` with the layer's :attr:`flash_offsets`)."""
        return self.pe * self.simd

    @property
    def rows(self) -> int:
        """The weight rows of every layer."""
        return sum(s.rows for s in self.steps)

    @property
    def tensors(self) -> bool:
        """Whether the layers read tensors from an
        :class:`~tfl2rtl.hw.patches.ActivationMemory` (a model with convolutions), not
        vectors from a FIFO."""
        return self.steps[0].patches is not None

    @property
    def groups(self) -> int:
        return sum(s.neuron_folds for s in self.steps)

    @property
    def issue_cycles(self) -> int:
        """Cycles to issue every layer's rows once a pixel, when nothing waits."""
        return sum(max(s.synapse_folds, self._requant_cycles) * s.neuron_folds * s.pixels
                   for s in self.steps)

    @property
    def _requant_cycles(self) -> int:
        return self.pe // self.requant_lanes * self.requant_interval

    @property
    def boundary_cycles(self) -> int:
        """The most cycles from a layer's group leaving the unit's issue (its last slice)
        to its outputs waiting at the unit's input for the next layer: the unit
        (:attr:`MatrixVectorUnit.latency <tfl2rtl.hw.mvu.MatrixVectorUnit.latency>`), the
        requantizer (:attr:`Requantizer.latency <tfl2rtl.hw.requant.Requantizer.latency>`
        at its interval, then a beat of ``requant_lanes`` every interval for the rest of
        the group) and :data:`BOUNDARY_SLACK` cycles of stream plumbing."""
        return (MatrixVectorUnit.latency_for(self.simd)
                + Requantizer.latency_for(self.requant_interval, True)
                + self._requant_cycles - self.requant_interval + BOUNDARY_SLACK)

    def boundary_wait(self, k: int) -> int:
        """The most cycles the unit waits between layer ``k`` and ``k + 1`` beyond
        :attr:`issue_cycles`.  Layer ``k``'s group ``g`` leaves the issue ``(g + 1) *
        c`` cycles into the layer (``c`` the cycles a group: its slices, or the
        requantizer's time for it if longer) and its outputs are at the unit's input
        :attr:`boundary_cycles` later; the next layer's first group issues its beats in
        order, one a cycle, each once the groups its elements come from are there, and
        not before layer ``k``'s last slice.

        With :attr:`tensors` the next layer reads its tensor once all of it is written:
        :attr:`boundary_cycles` and the activation memory's
        :attr:`~tfl2rtl.hw.patches.ActivationMemory.latency`; with a pool
        (:class:`Pooling`) between them, also the pool's window beats, its latency,
        :data:`BOUNDARY_SLACK` and the memory's latency again."""
        if self.tensors:
            pooling = self.steps[k].pooling
            # A pool's windows, read once the layer's outputs are all written, then its
            # results written before the next layer reads them.
            pool = 0 if pooling is None else (pooling.window_beats + pooling.latency
                                              + BOUNDARY_SLACK + ActivationMemory.latency)
            return self.boundary_cycles + ActivationMemory.latency + pool
        this, after = self.steps[k], self.steps[k + 1]
        per_group = max(this.synapse_folds, self._requant_cycles)
        ends = [(g + 1) * per_group - 1 for g in range(this.neuron_folds)]
        issued = ends[-1]
        for beat in range(after.synapse_folds):
            source = min(((beat + 1) * self.simd - 1) // self.pe, this.neuron_folds - 1)
            issued = max(issued + 1, ends[source] + self.boundary_cycles)
        return max(0, issued - ends[-1] - max(after.synapse_folds, self._requant_cycles))

    def compute_cycles(self, k: int) -> int:
        """The most cycles of layer ``k`` with its weights always there: its groups,
        each its slices or the requantizer's time for it if longer, and the
        :meth:`boundary_wait` after it (none after the last layer)."""
        step = self.steps[k]
        wait = self.boundary_wait(k) if k < len(self.steps) - 1 else 0
        return (max(step.synapse_folds, self._requant_cycles) * step.neuron_folds
                * step.pixels + wait)

    def flash_cycles(self, k: int) -> int:
        """Cycles the flash takes to give layer ``k``'s weights (0 with weights on
        chip or :attr:`copied`), plus :data:`FLASH_SLACK`; the first layer's include the reader's
        :attr:`flash_pass_overhead`."""
        if self.weights != "flash" or self.copied:
            return 0
        return (self.weight_bytes(k) * self.flash_cycles_per_byte + FLASH_SLACK
                + (self.flash_pass_overhead if k == 0 else 0))

    @property
    def copy_cycles(self) -> int:
        """With :attr:`copied` weights, the cycles the flash takes to give every row once
        at start-up (before the first inference; 0 otherwise)."""
        if not self.copied:
            return 0
        return self.rows * self.row_bytes * self.flash_cycles_per_byte + self.flash_pass_overhead

    def layer_cycles(self, k: int) -> int:
        """The most cycles of layer ``k`` in :attr:`cycles_per_vector`: its
        :meth:`compute_cycles`, or its :meth:`flash_cycles` when the flash is slower
        (the reader runs ahead into a prefetch FIFO, so neither waits for the other
        beyond the slower of the two)."""
        return max(self.compute_cycles(k), self.flash_cycles(k))

    def weight_bytes(self, k: int) -> int:
        """Bytes of layer ``k``'s weights as the unit reads them per inference: its rows
        of :attr:`row_bytes`, padding included."""
        return self.steps[k].cycles * self.row_bytes

    @property
    def cycles_per_vector(self) -> int:
        """An upper bound of the cycles per inference, back to back: the issue cycles
        plus :meth:`boundary_wait` at each layer boundary (the next inference's first
        layer waits for nothing: its input is in the input FIFO), each layer at least
        its :meth:`flash_cycles`; the sum of :meth:`layer_cycles`."""
        return sum(self.layer_cycles(k) for k in range(len(self.steps)))

    @property
    def walks(self) -> list[PatchGeometry]:
        """With :attr:`tensors`, the activation memory's walks in order: each layer's
        patches, and after a pooled layer its pool's windows (tensor ``w`` is walk
        ``w``'s input)."""
        return [g for s in self.steps
                for g in (s.patches, *(() if s.pooling is None else (s.pooling.patches,)))]

    @property
    def buffer_beats(self) -> int:
        """Depth of the activation FIFO, in beats of ``simd`` elements: the largest
        vector one layer hands to the next (all of it may be waiting there while the
        unit finishes the layer); with :attr:`tensors`, the activation memory's (two
        regions of the largest tensor, one for a single walk: :attr:`walks`)."""
        if self.tensors:
            walks = self.walks
            largest = max(g.tensor_beats for g in walks)
            return largest * (2 if len(walks) > 1 else 1)
        return max([s.padded_in // self.simd for s in self.steps[1:]], default=1)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def compile_schedule(layers, pe: int, simd: int, requant_lanes: int | None = None,
                     requant_interval: int = 1, *, weights: str = "chip",
                     flash_width: int = 4, in_shapes=None, pools=None) -> Schedule:
    """The :class:`Schedule` of ``layers`` (``[(node index, FullyConnected or Conv2D
    node)]`` in order, each reading the previous one's output) on a ``pe x simd`` unit:
    every vector between two layers padded to a multiple of ``lcm(pe, simd)``, the last
    output to a multiple of ``pe``; the input is not padded (``simd`` must divide it).
    ``weights`` ``"flash"``: read by a :class:`~tfl2rtl.hw.flash.QspiReader` of
    ``flash_width`` data lines, pass after pass (with tensors, once:
    :attr:`Schedule.copied`).

    With ``in_shapes`` (each layer's input tensor, ``(height, width, channels)``) the
    layers read tensors (:attr:`Schedule.tensors`): each tensor's channels padded as
    its layer computed them (the input's to whole ``simd`` blocks), a convolution
    reading a patch per output pixel, a fully connected layer the whole tensor; ``pools``
    (``{k: (node index, pool node)}``) pools layer ``k``'s outputs on their way to the
    next layer (:class:`Pooling`)."""
    if in_shapes is not None:
        return _compile_tensors(layers, pe, simd, requant_lanes, requant_interval,
                                in_shapes, weights, flash_width, pools or {})
    if weights not in WEIGHT_PLACES:
        raise Tfl2RtlError(f"weights in {weights!r}: choose one of {', '.join(WEIGHT_PLACES)}")
    requant_lanes = pe if requant_lanes is None else requant_lanes
    if pe < 1 or simd < 1 or requant_lanes < 1 or pe % requant_lanes:
        raise Tfl2RtlError(f"cannot schedule PE={pe}, SIMD={simd} with {requant_lanes} "
                           "requantizer lanes (they must divide PE)")
    first_in = layers[0][1].weights.shape[1]
    if first_in % simd:
        raise Tfl2RtlError(f"SIMD={simd} does not divide the input depth {first_in}; "
                           f"choose one of {', '.join(map(str, divisors(first_in)))}")
    block = math.lcm(pe, simd)
    steps, row, group, padded_in = [], 0, 0, first_in
    for k, (index, node) in enumerate(layers):
        out_depth, in_depth = node.weights.shape
        padded_out = _round_up(out_depth, pe if k == len(layers) - 1 else block)
        step = LayerStep(node=index, op=node.op, in_depth=in_depth, out_depth=out_depth,
                         padded_in=padded_in, padded_out=padded_out, first_row=row,
                         first_group=group, neuron_folds=padded_out // pe,
                         synapse_folds=padded_in // simd)
        steps.append(step)
        row += step.rows
        group += step.neuron_folds
        padded_in = padded_out
    flash = {}
    if weights == "flash":
        flash = {"flash_cycles_per_byte": QspiReader.cycles_per_byte_for(flash_width),
                 "flash_pass_overhead": QspiReader.pass_cycles_for(0, flash_width),
                 "flash_offsets": flash_offsets(layers)}
    return Schedule(pe=pe, simd=simd, requant_lanes=requant_lanes,
                    requant_interval=requant_interval, steps=tuple(steps),
                    acc_bits=max(node.acc_bits for _, node in layers),
                    weight_bits=weight_bits(layers), weights=weights, **flash)


def _compile_tensors(layers, pe, simd, requant_lanes, requant_interval, in_shapes,
                     weights, flash_width, pools) -> Schedule:
    """:func:`compile_schedule` for layers that read tensors (weights in flash are
    :attr:`Schedule.copied`)."""
    requant_lanes = pe if requant_lanes is None else requant_lanes
    if pe < 1 or simd < 1 or requant_lanes < 1 or pe % requant_lanes:
        raise Tfl2RtlError(f"cannot schedule PE={pe}, SIMD={simd} with {requant_lanes} "
                           "requantizer lanes (they must divide PE)")
    height, width, channels = in_shapes[0]
    block = math.lcm(pe, simd)
    # The input's channels padded to whole SIMD blocks (zeros, against zero weights).
    steps, row, group, padded = [], 0, 0, _round_up(channels, simd)
    for k, (index, node) in enumerate(layers):
        shape = tuple(in_shapes[k])
        if isinstance(node, ir.Conv2D | ir.DepthwiseConv2D) and shape != (
                height, width, channels):
            # A reshape: only of a tensor held without padding, into whole blocks.
            if padded != channels or shape[2] % simd or math.prod(shape) != (
                    height * width * channels):
                raise Tfl2RtlError(
                    f"node {index} ({node.op}) reads its input as {shape[0]}x{shape[1]}x"
                    f"{shape[2]}, reshaped from {height}x{width}x{channels}: the sequential "
                    "engine reshapes only unpadded tensors into whole SIMD blocks; try "
                    "another --max-multipliers or --arch dataflow")
            (height, width, channels), padded = shape, shape[2]
        blocks = padded // simd
        if isinstance(node, ir.DepthwiseConv2D) and channels > 1:
            # Each group of pe channels is pe / simd channel blocks, its patch the
            # blocks' positions in turn (the walk's depthwise order); a row's weights are
            # zero but where its lane meets its own channel in its own block.
            if pe % simd or padded % pe:
                raise Tfl2RtlError(
                    f"node {index} ({node.op}): a depthwise convolution needs PE a "
                    f"multiple of SIMD dividing its {padded} (padded) channels, not "
                    f"{pe} x {simd}")
            kh, kw, out_depth = node.weights.shape
            patches = PatchGeometry(height, width, blocks, (kh, kw), tuple(node.stride),
                                    tuple(node.dilation), tuple(node.padding),
                                    pad_value=-node.input_offset, order="depthwise")
            positions, out_hw = kh * kw, tuple(node.out_hw)
            # (its vector: pe / simd blocks at each position; its outputs: its input's
            # channels)
            in_depth, padded_in, padded_out = positions, positions * pe, padded
        elif isinstance(node, ir.Conv2D | ir.DepthwiseConv2D):
            # (A depthwise convolution of one input channel is a convolution: its depth
            # multiplier is its output channels.)
            out_depth, kh, kw = _conv_weights(node).shape[:3]
            patches = PatchGeometry(height, width, blocks, (kh, kw), tuple(node.stride),
                                    tuple(node.dilation), tuple(node.padding),
                                    pad_value=-node.input_offset)
            positions, out_hw = kh * kw, tuple(node.out_hw)
        else:
            out_depth = node.weights.shape[0]
            patches = PatchGeometry.vector(height * width * blocks)
            positions, out_hw = height * width, (1, 1)
        if patches.order != "depthwise":
            in_depth, padded_in = positions * channels, positions * padded
            padded_out = _round_up(out_depth, pe if k == len(layers) - 1 else block)
            if in_depth != node.weights.size // out_depth:
                raise Tfl2RtlError(f"node {index} ({node.op}): "
                                   f"{node.weights.size // out_depth} inputs a neuron where "
                                   f"its input tensor gives {in_depth}")
        step = LayerStep(node=index, op=node.op, in_depth=in_depth, out_depth=out_depth,
                         padded_in=padded_in, padded_out=padded_out, first_row=row,
                         first_group=group, neuron_folds=padded_out // pe,
                         synapse_folds=padded_in // simd, pixels=out_hw[0] * out_hw[1],
                         patches=patches, positions=positions, channels=channels,
                         padded_channels=padded)
        step, (height, width) = _pooled(step, pools.get(k), out_hw, simd)
        steps.append(step)
        row += step.rows
        group += step.neuron_folds
        channels, padded = out_depth, padded_out
    flash = {}
    if weights == "flash":
        flash = {"flash_cycles_per_byte": QspiReader.cycles_per_byte_for(flash_width),
                 "flash_pass_overhead": QspiReader.pass_cycles_for(0, flash_width),
                 "copied": True}
    return Schedule(pe=pe, simd=simd, requant_lanes=requant_lanes,
                    requant_interval=requant_interval, steps=tuple(steps),
                    acc_bits=max(node.acc_bits for _, node in layers), weights=weights,
                    **flash)


def _conv_weights(node) -> np.ndarray:
    """A layer's weights as ``[out, ...]`` (a convolution's ``[out, kh, kw, in]``; a
    depthwise convolution of one input channel's ``[kh, kw, out]`` as ``[out, kh, kw,
    1]``)."""
    weights = np.asarray(node.weights)
    if isinstance(node, ir.DepthwiseConv2D):
        return weights.transpose(2, 0, 1)[..., None]
    return weights


def _pooled(step: LayerStep, pool, out_hw, simd: int):
    """``step`` with the pool ``pool`` (``(node index, node)`` or None) on its outputs
    (``out_hw`` pixels), and the pixels of the tensor the next layer reads."""
    if pool is None:
        return step, out_hw
    index, node = pool
    in_shape = (*out_hw, step.padded_out)
    patches = PatchGeometry(out_hw[0], out_hw[1], step.padded_out // simd, tuple(node.filter),
                            tuple(node.stride), padding=tuple(node.padding),
                            order="depthwise")
    pooling = Pooling(node=index, op=node.op, in_shape=in_shape, out_hw=patches.out_hw,
                      latency=len(POOL_STAGES[pool_kind(node)]), window_beats=patches.beats,
                      patches=patches)
    return dataclasses.replace(step, pooling=pooling), patches.out_hw


def weight_bits(layers) -> int:
    """The widest ``weight_bits`` of ``layers`` (``[(index, node)]``)."""
    return max(getattr(node, "weight_bits", 8) for _, node in layers)


def flash_offsets(layers) -> tuple[int, ...]:
    """How the flash holds 9-bit weights in a byte each: per layer, the offset ``z =
    -min(w, 0)`` that makes every weight (and the padding's zeros) an unsigned byte
    ``w + z`` (a legacy uint8 layer's ``w - zw`` spans 256 values, 0 among them: its
    ``z`` is its zero point ``zw``); () when every weight is int8 (held as it is)."""
    if weight_bits(layers) <= 8:
        return ()
    offsets = []
    for index, node in layers:
        w = np.asarray(node.weights)
        low, high = min(int(w.min()), 0), max(int(w.max()), 0)
        if high - low > 255:
            raise Tfl2RtlError(f"node {index} ({node.op}): its weights span {low} to "
                               f"{high}, more than a byte holds; they cannot be read "
                               "from flash")
        offsets.append(-low)
    return tuple(offsets)


@dataclass(frozen=True)
class SequentialPlan:
    """What :class:`SequentialEngine` builds: the graph's layers and their
    :class:`Schedule`, the stages after them, and the stream edges (the attributes a
    :class:`~tfl2rtl.hw.network.NetworkPlan` has for the simulation and the design)."""

    graph: ir.Graph
    layers: tuple[tuple[int, ir.FullyConnected], ...]
    schedule: Schedule
    #: The stages after the last layer (SOFTMAX, the table ops), each of its own, in
    #: order: :class:`~tfl2rtl.hw.network.StagePlan` at folding ``(1, 1)``.
    tail: tuple[StagePlan, ...]
    in_size: int
    out_size: int
    uint8_input: bool
    uint8_output: bool
    lanes: int = 1
    act_bits: int = 8
    #: With weights in flash, the byte address of the first weight row there.
    flash_base: int = FLASH_BASE
    architecture = "sequential"

    @property
    def weights(self) -> str:
        """Where the unit's weights are: :attr:`Schedule.weights`."""
        return self.schedule.weights

    @property
    def rounding(self) -> bool:
        """Whether the layers requantize with one rounding (a legacy uint8 model's,
        LiteRT's double: a :class:`~tfl2rtl.hw.requant.RoundingRequantizer`)."""
        return _requantization(self.layers[0][1]) == "double"

    def matrices(self) -> list[np.ndarray]:
        """Each layer's weights as the shared unit computes them: padded to
        ``padded_out x padded_in`` with zeros."""
        matrices = []
        for step, (_, node) in zip(self.schedule.steps, self.layers, strict=True):
            if isinstance(node, ir.DepthwiseConv2D) and step.channels > 1:
                # Neuron c of group g reads the group's pe / simd blocks in turn, each at
                # every position t: in block (c mod pe) // simd, lane c mod simd is
                # channel c's weight at t, every other weight zero.
                pe, simd = self.schedule.pe, self.schedule.simd
                taps = np.asarray(node.weights).reshape(step.positions, step.out_depth)
                w = np.zeros((step.padded_out, pe // simd, step.positions, simd),
                             dtype=np.int64)
                channel = np.arange(step.out_depth)
                w[channel, (channel % pe) // simd, :, channel % simd] = taps.T
                matrices.append(w.reshape(step.padded_out, step.padded_in))
                continue
            if self.schedule.tensors:
                # A weight per position and channel, the channels padded as the tensor
                # holds them.
                w = np.zeros((step.padded_out, step.positions, step.padded_channels),
                             dtype=np.int64)
                w[:step.out_depth, :, :step.channels] = _conv_weights(node).reshape(
                    step.out_depth, step.positions, step.channels)
                matrices.append(w.reshape(step.padded_out, step.padded_in))
                continue
            w = np.zeros((step.padded_out, step.padded_in), dtype=np.int64)
            w[:step.out_depth, :step.in_depth] = node.weights
            matrices.append(w)
        return matrices

    def flash_image(self) -> bytes:
        """The bytes the flash holds from :attr:`flash_base` when the weights are there:
        every layer's weight rows in issue order (row ``nf * synapse_folds + sf`` of a
        layer holds ``w[nf * pe + p, sf * simd + s]`` as weight ``p * simd + s``), a
        byte a weight: int8, or ``w + z`` with the layer's
        :attr:`Schedule.flash_offsets`."""
        schedule = self.schedule
        offsets = schedule.flash_offsets or (0,) * len(schedule.steps)
        parts = []
        for w, z in zip(self.matrices(), offsets, strict=True):
            rows = issue_order(w, schedule.pe, schedule.simd)
            parts.append(((rows + z) & 0xFF).astype(np.uint8).tobytes())
        return b"".join(parts)

    @property
    def cycles_per_vector(self) -> int:
        """An upper bound of the cycles per inference (:attr:`Schedule.cycles_per_vector`,
        or the edges at ``lanes`` elements per cycle)."""
        return max(self.schedule.cycles_per_vector + self.input_wait,
                   self.in_size // self.lanes, self.out_size // self.lanes,
                   *(s.cycles_per_vector for s in self.tail))

    @property
    def input_wait(self) -> int:
        """With :attr:`Schedule.tensors`, the most cycles a pass waits for the next
        input beyond the layers' cycles: the input is written into its region of the
        activation memory once the last layer reading that region is done with it (the
        layers after that one compute meanwhile), ``in_size / lanes`` beats and
        :data:`BOUNDARY_SLACK` cycles for the lane converter, then read after the
        memory's latency (with its channels padded, an element a cycle).  0 for vectors
        (the input waits in a FIFO of its own)."""
        schedule = self.schedule
        if not schedule.tensors:
            return 0
        # The last walk reading region 0 (tensor w is in region w % 2), and the layer
        # it is of (a pool's: the layer before it); the layers after that one compute
        # meanwhile.
        layer_of = [k for k, s in enumerate(schedule.steps)
                    for _ in range(1 if s.pooling is None else 2)]
        freeing = layer_of[(len(layer_of) - 1) // 2 * 2]
        overlap = sum(schedule.layer_cycles(k)
                      for k in range(freeing + 1, len(schedule.steps)))
        first = schedule.steps[0]
        writes = max(self.in_size // self.lanes,  # (padded channels: an element a cycle)
                     self.in_size // first.channels * first.padded_channels
                     if first.padded_channels != first.channels else 0)
        return max(0, writes + BOUNDARY_SLACK + ActivationMemory.latency - overlap)

    @property
    def multipliers(self) -> int:
        """MAC multipliers: the shared unit's ``pe * simd``."""
        return self.schedule.pe * self.schedule.simd

    @property
    def requant_multipliers(self) -> int:
        """16x16 multipliers of the shared requantizer (a
        :class:`~tfl2rtl.hw.requant.RoundingRequantizer`'s ``|acc|`` by 31 bits: two per
        16 bits of the accumulator)."""
        if self.rounding:
            return (self.schedule.requant_lanes
                    * RoundingRequantizer.products_for(self.schedule.acc_bits))
        per_lane = 1 if self.schedule.requant_interval > 1 else partial_products(
            np.concatenate([np.asarray(n.requant.multiplier).reshape(-1)
                            for _, n in self.layers]))
        return self.schedule.requant_lanes * per_lane

    @property
    def pool_multipliers(self) -> int:
        """Multipliers of the pools between layers (an AVERAGE_POOL_2D's product by the
        reciprocal of its count, ``simd`` lanes: :func:`~tfl2rtl.hw.pool.
        pool_multipliers`)."""
        return sum(pool_multipliers(self.graph.nodes[s.pooling.node], s.pooling.in_shape,
                                    self.schedule.simd)
                   for s in self.schedule.steps if s.pooling is not None)

    #: No MAC products in logic, no weights loaded at run time, no stage of a dataflow
    #: network: what the board flow reads of a :class:`~tfl2rtl.hw.network.NetworkPlan`.
    logic_multipliers = 0
    loadable = ()
    stages = ()

    @property
    def requant_interval(self) -> int:
        return self.schedule.requant_interval

    def loadable_memories(self) -> list:
        """None: the weights sit in the shared unit's memory (initialised ROM) or in
        the board's flash."""
        return []


def _requantization(node) -> str:
    """How a layer requantizes (:attr:`tfl2rtl.ir.FullyConnected.requantization`; a
    convolution as TFLite Micro does, ``"integer"``)."""
    return getattr(node, "requantization", "integer")


def _layers(graph: ir.Graph):
    """The chain of layers of ``graph`` (a legacy uint8 graph in its int8 hardware
    form), the stages after its last layer, its uint8 edges, that form, and the pools
    between layers (``{k: (index, node)}``: after layer ``k``); or the refusal naming
    the first node the engine does not take."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise Tfl2RtlError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "hardware generation needs exactly one of each")
    ports, graph = graph, _uint8_hardware_form(graph)
    if graph.quantization != "int8":
        raise Tfl2RtlError(f"a {graph.quantization} model: the sequential engine builds "
                           "int8 and legacy uint8 models so far; use --arch dataflow")
    current = graph.inputs[0]
    uint8_input = ports is not graph and ports.tensors[ports.inputs[0]].dtype == "uint8"
    uint8_output = ports is not graph and ports.tensors[ports.outputs[0]].dtype == "uint8"
    last = len(graph.nodes) - 1
    layers, tail, pools = [], [], {}
    for index, node in enumerate(graph.nodes):
        if node.input != current or len(node.inputs) != 1:
            raise Tfl2RtlError(f"node {index} ({node.op}) does not read the layer before "
                               "it: the sequential engine takes a chain of layers")
        current = node.output
        if isinstance(node, ir.Requantize) and node.flip_sign and index in (0, last):
            uint8_input |= index == 0
            uint8_output |= index == last
            continue
        if isinstance(node, ir.Reshape):
            continue
        if isinstance(node, ir.DepthwiseConv2D) and node.depth_multiplier != 1 and (
                graph.tensors[node.input].shape[-1] != 1):
            raise Tfl2RtlError(f"node {index} ({node.op}): depth multiplier "
                               f"{node.depth_multiplier} over more than one channel; the "
                               "sequential engine takes 1 so far; use --arch dataflow")
        if isinstance(node, ir.Conv2D | ir.DepthwiseConv2D) and (
                ports.quantization != "int8"):
            raise Tfl2RtlError(f"node {index} ({node.op}): the sequential engine takes "
                               f"convolutions of int8 models only so far (this one is "
                               f"{ports.quantization}); use --arch dataflow")
        if isinstance(node, ir.MaxPool2D | ir.AveragePool2D) and layers and not tail and (
                ports.quantization == "int8") and len(layers) - 1 not in pools:
            pools[len(layers) - 1] = (index, node)
            continue
        if isinstance(node, ir.FullyConnected | ir.Conv2D | ir.DepthwiseConv2D) and (
                not tail) and (
                not layers or _requantization(node) == _requantization(layers[0][1])):
            layers.append((index, node))
            continue
        stage = None if isinstance(node, ir.FullyConnected | ir.Conv2D |
                                   ir.DepthwiseConv2D) else stage_for(graph, index)
        if stage is None or not layers or stage.foldable:
            raise Tfl2RtlError(
                f"node {index} ({node.op}) is not in the sequential engine yet (it takes "
                "FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D layers, RESHAPE, uint8 "
                "edges, a MAX_POOL_2D or AVERAGE_POOL_2D between layers, and after the "
                "last layer SOFTMAX and the table ops); use --arch dataflow")
        tail.append(StagePlan(stage, Fold(1, 1)))
    if not layers:
        raise Tfl2RtlError("the model has no layer to build")
    if len(layers) - 1 in pools:
        index, node = pools[len(layers) - 1]
        raise Tfl2RtlError(f"node {index} ({node.op}) follows the last layer: the "
                           "sequential engine pools only between layers so far; use "
                           "--arch dataflow")
    return tuple(layers), tuple(tail), uint8_input, uint8_output, graph, pools


def _in_shapes(graph: ir.Graph, layers):
    """Each layer's input tensor as ``(height, width, channels)`` when a layer is a
    convolution (a fully connected layer's as ``(1, 1, size)``), else None: the layers
    read vectors."""
    windows = ir.Conv2D | ir.DepthwiseConv2D
    if not any(isinstance(node, windows) for _, node in layers):
        return None
    shapes = []
    for _, node in layers:
        shape = tuple(graph.tensors[node.input].shape)
        shapes.append(shape[1:4] if isinstance(node, windows)
                      else (1, 1, math.prod(shape)))
    return shapes


def plan_sequential(graph: ir.Graph, max_multipliers: int = 64, *, lanes: int = 1,
                    requant_interval: int = 1, fold: tuple[int, int] | None = None,
                    fits: Callable[[Schedule], bool] | None = None,
                    tail_in_logic: bool = False, weights: str = "chip",
                    flash_width: int = 4) -> SequentialPlan:
    """Plan a sequential engine for ``graph``: the ``pe x simd`` folding (``fold``, or
    the one with the fewest cycles per inference within ``max_multipliers``, fewer
    multipliers on a tie) and the fewest requantizer lanes that slow it down by at most
    :data:`REQUANT_SLACK` (each lane ``requant_interval`` cycles per beat: 5 where the
    target shares the requantizer's multipliers, on iCE40).  With ``fits`` (a board's
    resources: a schedule -> bool), every folding and number of requantizer lanes that
    fits competes, and the fewest cycles win (fewer multipliers, then fewer lanes, on a
    tie).  Cycles are :attr:`Schedule.cycles_per_vector`, or where they take longer the
    stream edges' vectors at ``lanes`` elements a cycle or the stages after the last
    layer.  With ``tail_in_logic`` the
    stages after the last layer that can (an int8 SOFTMAX) build their multiplies in
    logic (:attr:`~tfl2rtl.hw.network.StagePlan.products_in_logic`): no DSP block, more
    cycles (a board's ``fits`` counts the tail's DSP blocks itself:
    :func:`tfl2rtl.boards.fit.sequential_design`).  ``weights`` ``"flash"`` streams the
    unit's weights from the board's SPI flash (``flash_width`` data lines) instead of a
    ROM: :attr:`Schedule.weights`."""
    layers, tail, uint8_input, uint8_output, graph, pools = _layers(graph)
    in_shapes = _in_shapes(graph, layers)
    place = {"weights": weights, "flash_width": flash_width, "in_shapes": in_shapes}
    if pools:
        if in_shapes is None:
            index, node = next(iter(pools.values()))
            raise Tfl2RtlError(f"node {index} ({node.op}) pools the output of a fully "
                               "connected layer: not in the sequential engine; use --arch "
                               "dataflow")
        place["pools"] = pools
    if _requantization(layers[0][1]) == "double":
        requant_interval = 1  # a RoundingRequantizer has no serial products
    if tail_in_logic:
        tail = tuple(dataclasses.replace(t, products_in_logic=True)
                     if t.stage.products_in_logic else t for t in tail)
    in_size = graph.tensors[graph.inputs[0]].size
    out_size = graph.tensors[graph.outputs[0]].size
    if lanes < 1 or in_size % lanes or out_size % lanes:
        raise Tfl2RtlError(f"{lanes} lanes do not divide the input ({in_size}) and the "
                           f"output ({out_size})")
    if fold is not None:
        candidates = [tuple(fold)]
    else:
        widest = max(max(n.weights.shape[0], n.weights.size // n.weights.shape[0])
                     for _, n in layers)
        # (Vectors: SIMD divides the input; tensors pad the input's channels.  A
        # depthwise layer's groups are whole channel blocks: SIMD divides PE, and where
        # PE is larger, PE divides its channels.)
        simds = (divisors(layers[0][1].weights.shape[1]) if in_shapes is None
                 else range(1, widest + 1))
        depthwise = [shape[2] for (_, node), shape in zip(layers, in_shapes or (), strict=False)
                     if isinstance(node, ir.DepthwiseConv2D) and shape[2] > 1]
        candidates = [(pe, simd) for simd in simds
                      for pe in range(1, widest + 1) if pe * simd <= max_multipliers
                      and (not depthwise or pe == simd or (
                          pe % simd == 0 and all(c % pe == 0 for c in depthwise)))]
        if not candidates:
            raise Tfl2RtlError(f"--max-multipliers {max_multipliers} leaves no multiplier")
    # No engine need be faster than the stream edges carry the vectors, nor than the
    # stages after the last layer take them.
    edge = max(in_size // lanes, out_size // lanes, *(t.cycles_per_vector for t in tail))
    best = None
    for pe, simd in candidates:
        if fits is not None:
            schedules = [compile_schedule(layers, pe, simd, r, requant_interval, **place)
                         for r in divisors(pe)]
            schedules = [s for s in schedules if fits(s)]
        else:
            # The fewest requantizer lanes within REQUANT_SLACK of the cycles with one a
            # neuron (the requantizer sized to the rate the layers give accumulators).
            fastest = compile_schedule(layers, pe, simd, pe, requant_interval,
                                       **place).cycles_per_vector
            for r in divisors(pe):
                schedule = compile_schedule(layers, pe, simd, r, requant_interval, **place)
                if schedule.cycles_per_vector <= fastest * (1 + REQUANT_SLACK):
                    break
            schedules = [schedule]
        for schedule in schedules:
            # (as the dataflow network's folding: within the edges, the fewest multipliers)
            key = (max(schedule.cycles_per_vector, edge), pe * simd, schedule.requant_lanes)
            if best is None or key < best[0]:
                best = (key, schedule)
    if best is None:
        raise Tfl2RtlError("no sequential engine within --max-multipliers "
                           f"{max_multipliers} fits")
    return SequentialPlan(graph=graph, layers=layers, schedule=best[1], tail=tail,
                          in_size=in_size, out_size=out_size, uint8_input=uint8_input,
                          uint8_output=uint8_output, lanes=lanes)


def _from_input(m: Module, counted, pass_beats: int, first_beats: int, name: str):
    """Whether the beat on ``counted`` is one of the first ``first_beats`` of its pass of
    ``pass_beats`` (the input's), counted in the register ``name``.  (``from_input`` is
    a register set with its counter, so that no comparison lies on a handshake: on the
    iCE40 the comparison into the requantizer's ready was the jet MLP engine's critical
    path.)"""
    count = Signal(range(pass_beats), name=name)
    from_input = Signal(init=1)
    with m.If(counted.valid & counted.ready):
        wraps = count == pass_beats - 1
        m.d.sync += [count.eq(Mux(wraps, 0, count + 1)),
                     from_input.eq(wraps | (count + 1 < first_beats))]
    return from_input


def _split_pass(m: Module, requantized, pass_out: int, last_out: int):
    """``requantized`` (the requantizer's beats, ``pass_out`` a pass) as two streams:
    ``results``, the last ``last_out`` beats of each pass (the last layer's outputs), and
    ``back``, the others (the next layers' inputs), by counting.  (``to_output`` is a
    register set with its counter, as :func:`_from_input`'s.)"""
    lanes = requantized.payload.shape()
    given = Signal(range(pass_out))
    to_output = Signal()
    with m.If(requantized.valid & requantized.ready):
        wraps = given == pass_out - 1
        m.d.sync += [given.eq(Mux(wraps, 0, given + 1)),
                     to_output.eq(~wraps & (given + 1 >= pass_out - last_out))]
    results = stream.Signature(lanes).create()
    back = stream.Signature(lanes).create()
    m.d.comb += [
        results.payload.eq(requantized.payload),
        back.payload.eq(requantized.payload),
        results.valid.eq(requantized.valid & to_output),
        back.valid.eq(requantized.valid & ~to_output),
        requantized.ready.eq(Mux(to_output, results.ready, back.ready)),
    ]
    return results, back


class SequentialEngine(wiring.Component):
    """A :class:`SequentialPlan` between two AXI4-Stream ports of ``lanes`` int8
    elements per beat (the same ports as :class:`~tfl2rtl.hw.network.DataflowNetwork`:
    ``s_axis_*`` and ``m_axis_*``, element ``k`` of a beat in bits ``8k .. 8k + 7``,
    ``tlast`` on the last beat of every output vector; ``xor 0x80`` per element at a
    uint8 edge).

    Data path: ``s_axis`` through a lane converter to ``simd`` elements and a FIFO of
    one input vector into the shared :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit` (the
    schedule's layers in turn, zero weights for padded inputs, zero biases for padded
    outputs), its accumulators
    (through an :class:`~tfl2rtl.hw.adapters.AccumulatorSplitter` when the requantizer
    has fewer lanes) into the shared :class:`~tfl2rtl.hw.requant.Requantizer` (each
    channel with its layer's parameters) and a skid buffer, then by position: the last
    layer's outputs leave (padding dropped by a :class:`~tfl2rtl.hw.adapters.BeatTrim`,
    through a FIFO of one output vector, and through the stages after the last layer,
    each behind a FIFO of one vector), every other layer's go through a lane converter to ``simd``
    elements into the activation FIFO (:attr:`Schedule.buffer_beats` deep: a whole
    vector, so the unit never waits on its own output), which feeds the unit for the
    next layer.  The unit takes its first layer's beats from ``s_axis`` and the others'
    from the activation FIFO, counting beats.  With :attr:`Schedule.tensors` the FIFO is
    an :class:`~tfl2rtl.hw.patches.ActivationMemory` (:meth:`_tensors`): the input and
    the layers' outputs are written there, and its walks feed the unit (patches) or a
    pool's :class:`~tfl2rtl.hw.pool.PoolUnit` (windows), whose results are written back.

    Attributes
    ----------
    plan : SequentialPlan
    mvu : MatrixVectorUnit
    requant : Requantizer
    cycles_per_vector : int
        ``plan.cycles_per_vector``: an upper bound of the cycles per inference, inputs
        back to back and the output never stalled.

    With weights in flash it also has the :data:`FLASH_PORTS` (the reader's pins), and
    the reader's bytes reach the unit's ``w`` as rows (:meth:`_weights_from_flash`), or,
    :attr:`Schedule.copied`, its loadable memory once, the unit taking no patch before
    its memory is full (:meth:`_weights_copied`).

    Tested on hello_world_int8 (every input), dense10_int8, ad01_int8 (ten layers),
    mlp_uint8 (uint8 edges, SOFTMAX, 2 lanes), the written jet MLP (4 layers, SOFTMAX)
    and the legacy uint8 MLPs (9-bit weights, the rounding requantizer), ``pe`` from 1 to
    16 and ``simd`` from 1 to 56 with padded layers, one to ``pe`` requantizer lanes,
    parallel and serial, in Amaranth's simulator with random stalls and backpressure and
    in Verilator; with weights in flash (the jet MLP, both legacy uint8 MLPs) in
    Verilator against the flash model, and as an iCE40 netlist.  With tensors: written
    chains of convolutions (3x3 SAME, 2x2 stride 2, 1x3 of stride 1x2, depthwise 3x3
    and 3x2 SAME, a SAME max pool, a global average pool, a fully connected or a
    convolution last) at ``pe x simd`` from 1 x 1 to 6 x 2 and 4 x 4 (the input's
    channels padded), in Amaranth's simulator with stalls and in Verilator;
    kws_ref_model at 2 x 2 (its weights on chip, or copied from the flash model) and
    person_detect at 4 x 4 with serial requantizers in Verilator; a depthwise
    convolution of one channel with a depth multiplier of 3 (a convolution); as an
    iCE40 netlist, the written chain with depthwise convolutions and pools.  The larger
    models in Verilator (ad01, mlp_uint8, the jet MLP on 128 multipliers, kws with its
    weights on chip, person_detect) and the netlists run in the long runs only
    (``TFL2RTL_LONG=1``, tests/conftest.py).
    """

    def __init__(self, plan: SequentialPlan):
        self.plan = plan
        self.lanes = plan.lanes
        schedule = plan.schedule
        biases, multipliers, shifts, offsets, lows, highs = ([] for _ in range(6))
        for step, (_, node) in zip(schedule.steps, plan.layers, strict=True):
            b = np.zeros(step.padded_out, dtype=np.int64)
            b[:step.out_depth] = node.folded_bias
            biases.append(b)
            for values, field in ((multipliers, node.requant.multiplier),
                                  (shifts, node.requant.shift)):
                channel = np.broadcast_to(np.asarray(field, np.int64).reshape(-1),
                                          (step.out_depth,))
                values.append(np.concatenate(
                    [channel, np.full(step.padded_out - step.out_depth, channel[0])]))
            offsets.append(np.full(step.padded_out, node.output_offset))
            lows.append(np.full(step.padded_out, node.act_min))
            highs.append(np.full(step.padded_out, node.act_max))
        flash = schedule.weights == "flash"
        self.mvu = MatrixVectorUnit(plan.matrices(), biases, acc_width=schedule.acc_bits,
                                    pe=schedule.pe, simd=schedule.simd,
                                    weight_bits=schedule.weight_bits,
                                    weight_stream=flash and not schedule.copied,
                                    memory_id=0 if schedule.copied else None,
                                    repeats=([s.pixels for s in schedule.steps]
                                             if schedule.tensors else None),
                                    fresh=[s.patches is not None
                                           and s.patches.order == "depthwise"
                                           for s in schedule.steps])
        self.flash = None
        if flash:
            image = plan.flash_image()
            self.flash = QspiReader(plan.flash_base, len(image),
                                    width=16 // schedule.flash_cycles_per_byte)
        self.splitter = None
        if schedule.requant_lanes != schedule.pe:
            self.splitter = AccumulatorSplitter(schedule.acc_bits, schedule.pe,
                                                schedule.requant_lanes, schedule.groups)
        requant = ir.Requant(multiplier=np.concatenate(multipliers),
                             shift=np.concatenate(shifts),
                             real_scale=np.zeros(self.mvu.out_depth))
        epilogue = {"channels": self.mvu.out_depth, "output_offset": np.concatenate(offsets),
                    "act_min": np.concatenate(lows), "act_max": np.concatenate(highs),
                    "acc_width": schedule.acc_bits, "lanes": schedule.requant_lanes}
        if plan.rounding:
            self.requant = RoundingRequantizer(requant, **epilogue)
        else:
            self.requant = Requantizer(requant, **epilogue,
                                       serial_products=schedule.requant_interval > 1)
        self.tail = [stage.build() for stage in plan.tail]
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
            **(FLASH_PORTS if flash else {}),
        })

    def elaborate(self, platform):
        m = Module()
        plan, schedule = self.plan, self.plan.schedule
        simd, r = schedule.simd, schedule.requant_lanes

        def convert(upstream, count, name):
            return convert_lanes(m, upstream, count, name)

        # The input, as the first layer's beats of simd elements.
        source = axis_source(m, self, plan)
        if schedule.tensors:
            first = schedule.steps[0]
            if first.padded_channels != first.channels:
                # Each pixel's channels padded to whole blocks.
                m.submodules.pad_in = pad = BeatPad(signed_lanes(8, 1), first.channels,
                                                    first.padded_channels)
                wiring.connect(m, convert(source, 1, "lanes_pad"), pad.i)
                source = pad.o
            external = convert(source, simd, "lanes_in")
        else:
            # A FIFO of one input vector, so that the next one streams in while the unit
            # replays the current one (it takes its input only for a layer's first group).
            first_beats = schedule.steps[0].padded_in // simd
            external = through_fifo(m, convert(source, simd, "lanes_in"), first_beats,
                                    "fifo_in")

        # The shared unit and requantizer.
        m.submodules.mvu = mvu = self.mvu
        m.submodules.requant = requant = self.requant
        connect_splitting(m, mvu.o, self.splitter, requant.i)
        if schedule.copied:
            self._weights_copied(m)
        elif self.flash is not None:
            self._weights_from_flash(m)

        # The unit's input: the first layer's beats from s_axis, the others' from the
        # activation FIFO, by counting the beats it takes in one pass.  The requantizer's
        # beats, counted too: the last layer's leave, the others' go back into the FIFO.
        # (A model of one layer needs neither.)
        last = schedule.steps[-1]
        # The requantizer's results through a skid buffer: its ready is a register, so
        # the routing below does not reach into the requantizer's enable.
        m.submodules.skid_out = skid_out = SkidBuffer(signed_lanes(8, r))
        wiring.connect(m, requant.o, skid_out.i)
        results = requantized = skid_out.o
        if schedule.tensors:
            results = self._tensors(m, external, requantized)
        elif len(schedule.steps) > 1:
            m.submodules.activations = activations = StreamFIFO(
                signed_lanes(8, simd), depth=max(3, schedule.buffer_beats + 2))
            pass_beats = sum(s.padded_in for s in schedule.steps) // simd
            from_input = _from_input(m, mvu.i, pass_beats, first_beats, "taken")
            m.d.comb += [
                mvu.i.payload.eq(Mux(from_input, external.payload, activations.o.payload)),
                mvu.i.valid.eq(Mux(from_input, external.valid, activations.o.valid)),
                external.ready.eq(from_input & mvu.i.ready),
                activations.o.ready.eq(~from_input & mvu.i.ready),
            ]

            results, back = _split_pass(m, requantized,
                                        sum(s.padded_out for s in schedule.steps) // r,
                                        last.padded_out // r)
            wiring.connect(m, convert(back, simd, "lanes_back"), activations.i)
        else:
            wiring.connect(m, external, mvu.i)

        # The output vector: padding dropped, then a FIFO of one vector, then lanes.
        if last.padded_out != last.out_depth:
            single = convert(results, 1, "lanes_trim")
            m.submodules.trim = trim = BeatTrim(signed_lanes(8, 1), last.out_depth,
                                                last.padded_out)
            wiring.connect(m, single, trim.i)
            results = trim.o
        # The stages after the last layer, each behind a FIFO of one vector.
        for k, (stage_plan, component) in enumerate(zip(plan.tail, self.tail, strict=True)):
            width = stage_plan.in_lanes[0]
            upstream = through_fifo(m, convert(results, width, f"lanes_tail_{k}"),
                                    stage_plan.stage.in_size // width, f"fifo_tail_{k}")
            m.submodules[f"tail_{k}"] = component
            wiring.connect(m, upstream, component.i)
            results = component.o
        results = through_fifo(m, results, plan.out_size // stream_lanes(results, 8),
                               "fifo_out")
        upstream = convert(results, self.lanes, "lanes_out")

        axis_sink(m, self, plan, upstream)
        return m

    def _tensors(self, m: Module, external, requantized):
        """The layers' tensors in an :class:`~tfl2rtl.hw.patches.ActivationMemory`:
        tensor 0 from the input, the others from the requantizer (every layer's outputs
        but the last's, which are returned) or from a pool's unit, counted over a pass of
        writes; the memory's walks (:attr:`Schedule.walks`), routed by counting their
        beats, feed the unit (a layer's patches) or a :class:`~tfl2rtl.hw.pool.PoolUnit`
        (a pool's windows: :class:`Pooling`)."""
        schedule = self.plan.schedule
        steps, simd, r = schedule.steps, schedule.simd, schedule.requant_lanes
        walks = schedule.walks
        m.submodules.activations = memory = ActivationMemory(walks, simd)
        # The walks' beats: route 0 to the unit (a layer's), route j + 1 to pool j.
        units, routes = [], []
        for s in steps:
            routes.append(0)
            if s.pooling is not None:
                m.submodules[f"pool_{len(units)}"] = unit = pool_unit(
                    self.plan.graph.nodes[s.pooling.node], s.pooling.in_shape[:2], pe=simd)
                units.append(unit)
                routes.append(len(units))
        beats = [g.beats for g in walks]
        walk = Signal(range(len(walks)))
        count = Signal(range(max(beats)))
        route = Array(Const(v, range(len(units) + 1)) for v in routes)[walk]
        ends = Array(Const(b - 1, len(count)) for b in beats)
        with m.If(memory.o.valid & memory.o.ready):
            with m.If(count == ends[walk]):
                m.d.sync += [count.eq(0),
                             walk.eq(Mux(walk == len(walks) - 1, 0, walk + 1))]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        # (With copied weights the unit starts once its weights are all there.)
        loaded = self.mvu.loaded if schedule.copied else Const(1)
        readies = [self.mvu.i.ready & loaded]
        m.d.comb += [self.mvu.i.payload.eq(memory.o.payload.data),
                     self.mvu.i.valid.eq(memory.o.valid & (route == 0) & loaded)]
        for j, unit in enumerate(units):
            m.d.comb += [unit.i.payload.eq(memory.o.payload),
                         unit.i.valid.eq(memory.o.valid & (route == j + 1))]
            readies.append(unit.i.ready)
        m.d.comb += memory.o.ready.eq(Array(readies)[route])
        if len(walks) == 1:
            wiring.connect(m, external, memory.i)
            return requantized

        # The requantizer's beats of a pass: the last layer's leave, the others' are the
        # next walks' tensors, as are the pools' results (one source at a time has beats:
        # a walk reads its tensor only once all of it is written).
        results, back = _split_pass(m, requantized,
                                    sum(s.padded_out * s.pixels for s in steps) // r,
                                    steps[-1].padded_out * steps[-1].pixels // r)
        back = convert_lanes(m, back, simd, "lanes_back")
        if units:
            merged = stream.Signature(signed_lanes(8, simd)).create()
            taken = Const(0)
            for source in [back, *(unit.o for unit in units)]:
                with m.If(source.valid & ~taken):
                    m.d.comb += merged.payload.eq(source.payload)
                m.d.comb += source.ready.eq(merged.ready & ~taken)
                taken = taken | source.valid
            m.d.comb += merged.valid.eq(taken)
            back = merged

        # The memory's writes of a pass: tensor 0 from the input, then the others.
        pass_writes = sum(g.tensor_beats for g in walks)
        input_beats = walks[0].tensor_beats
        from_input = _from_input(m, memory.i, pass_writes, input_beats, "written")
        m.d.comb += [
            memory.i.payload.eq(Mux(from_input, external.payload, back.payload)),
            memory.i.valid.eq(Mux(from_input, external.valid, back.valid)),
            external.ready.eq(from_input & memory.i.ready),
            back.ready.eq(~from_input & memory.i.ready),
        ]
        return results

    def _flash_pins(self, m: Module):
        """The flash reader, on the engine's :data:`FLASH_PORTS`."""
        m.submodules.flash = reader = self.flash
        m.d.comb += [
            self.flash_sck.eq(reader.sck), self.flash_cs_n.eq(reader.cs_n),
            self.flash_io_o.eq(reader.io_o), self.flash_io_oe.eq(reader.io_oe),
            reader.io_i.eq(self.flash_io_i),
        ]
        return reader

    def _weights_copied(self, m: Module) -> None:
        """:attr:`Schedule.copied` weights: the reader's first pass, byte after byte,
        into the unit's loadable memory from row 0 (its :data:`~tfl2rtl.hw.weights.
        LOAD_LAYOUT` beats, memory 0); then the reader is held."""
        reader = self._flash_pins(m)
        load, total = self.mvu.load, len(self.plan.flash_image())
        # ``first`` and ``done`` are registers kept with the count, so that no comparison
        # lies between the reader's valid and the memory's row counter (on the iCE40
        # ``taken == total`` there was kws's engine's critical path, 28.0 ns).
        taken = Signal(range(total))
        first = Signal(init=1)
        done = Signal()
        m.d.comb += [
            load.payload.memory.eq(0), load.payload.row.eq(0),
            load.payload.first.eq(first), load.payload.data.eq(reader.o.payload),
            load.valid.eq(reader.o.valid & ~done), reader.o.ready.eq(~done),
        ]
        with m.If(reader.o.valid & ~done):
            m.d.sync += [taken.eq(taken + 1), first.eq(0), done.eq(taken == total - 1)]

    def _weights_from_flash(self, m: Module) -> None:
        """The unit's weight rows from the flash: the reader's bytes gathered into rows
        of :attr:`Schedule.row_bytes`, each byte a weight (less its layer's
        :attr:`Schedule.flash_offsets`, counting rows to know the layer), through a
        FIFO of at least :data:`FLASH_PREFETCH_ROWS` rows (the reader runs ahead while
        the unit waits at a layer boundary)."""
        schedule = self.plan.schedule
        reader = self._flash_pins(m)
        raw = stream.Signature(signed_lanes(8, 1)).create()
        m.d.comb += [raw.payload.eq(reader.o.payload), raw.valid.eq(reader.o.valid),
                     reader.o.ready.eq(raw.ready)]
        gathered = convert_lanes(m, raw, schedule.row_bytes, "flash_rows")
        # The row's weights: each byte as it is (int8), or less its layer's offset.
        lanes = schedule.pe * schedule.simd
        rows = stream.Signature(unsigned(lanes * schedule.weight_bits)).create()
        m.d.comb += [rows.valid.eq(gathered.valid), gathered.ready.eq(rows.ready)]
        if schedule.flash_offsets:
            # Which layer the row is of: counted over the rows of a pass.
            row = Signal(range(schedule.rows))
            layer = Signal(range(len(schedule.steps)))
            last_rows = Array(Const(s.first_row + s.rows - 1, len(row))
                              for s in schedule.steps)
            offsets = Array(Const(z, 9) for z in schedule.flash_offsets)
            with m.If(rows.valid & rows.ready):
                with m.If(row == last_rows[layer]):
                    m.d.sync += layer.eq(Mux(layer == len(schedule.steps) - 1, 0, layer + 1))
                m.d.sync += row.eq(Mux(row == schedule.rows - 1, 0, row + 1))
            m.d.comb += rows.payload.eq(Cat(*(
                (Cat(gathered.payload[k], Const(0, 1)) - offsets[layer])[:schedule.weight_bits]
                for k in range(lanes))))
        else:
            m.d.comb += rows.payload.eq(gathered.payload)
        row_cycles = schedule.row_bytes * schedule.flash_cycles_per_byte
        depth = max(FLASH_PREFETCH_ROWS, -(-schedule.boundary_cycles // row_cycles) + 4)
        m.submodules.flash_fifo = queue = StreamFIFO(unsigned(len(rows.payload)), depth)
        wiring.connect(m, rows, queue.i)
        wiring.connect(m, queue.o, self.mvu.w)
