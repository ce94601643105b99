"""What each IR node becomes in the dataflow design: its foldings, lanes, cycles and cost.

A :class:`Stage` describes one node of a :class:`tfl2rtl.ir.Graph` as hardware, before
anything is built: which foldings are valid, how many elements per beat each of its
streams carries for a folding, how many cycles one inference takes, how many MAC
multipliers it uses, how far ahead in its input it must read before it can produce an
output element (:meth:`Stage.demand`, used to size the FIFOs of residual branches), and
which component it becomes (:meth:`Stage.build`).  :mod:`tfl2rtl.folding` chooses the
foldings from these numbers and :mod:`tfl2rtl.hw.network` connects the components.

A folding is a :class:`tfl2rtl.fold.Fold` ``(pe, simd)``:

- FULLY_CONNECTED and CONV_2D: ``pe`` output channels by ``simd`` input channels per
  cycle (``pe * simd`` multipliers);
- DEPTHWISE_CONV_2D: ``pe`` output channels per cycle (``pe`` multipliers), a multiple
  of the depth multiplier (``pe / depth_multiplier`` input channels per beat) or a
  divisor of it (one input channel per beat, held ``depth_multiplier / pe`` cycles),
  ``simd = 1``;
- pools, MEAN, ADD, the 256-entry tables, CONCATENATION and PAD: ``pe`` elements per
  beat, ``simd = 1``, no MAC multipliers (:meth:`Stage.multipliers` is 0, outside the
  budget).  Average pooling, MEAN and ADD still multiply, in each of their ``pe`` lanes:
  average pooling the window's sum by the count's reciprocal, MEAN in a requantizer, ADD
  both inputs by the 16-bit halves of their multipliers and the sum in a requantizer
  (:mod:`tfl2rtl.hw.pool`, :mod:`tfl2rtl.hw.elementwise`);
- SOFTMAX: one element at a time, only ``(1, 1)``;
- TRANSPOSE: ``pe`` elements per beat, ``simd = 1``, ``pe`` above 1 only where the
  permutation keeps the innermost axis innermost.

Streams carry tensors in NHWC order (batch 1).  For a 4-D tensor the lanes divide the
channel count, so a beat never holds parts of two pixels.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import Tfl2RtlError
from ..fold import Fold, divisors, divisors_text
from .requant import COMPACT_INTERVAL

__all__ = ["Stage", "stage_for", "STAGE_KINDS", "SERIAL_REQUANT_INTERVAL",
           "COMPACT_REQUANT_INTERVAL"]

#: Cycles per beat of a :class:`~tfl2rtl.hw.requant.Requantizer` with serial products
#: (its ``interval``: four 16x16 partial products of a q31 multiplier, plus one), as the
#: iCE40 boards build it.
SERIAL_REQUANT_INTERVAL = 5

#: Cycles per beat of a compact :class:`~tfl2rtl.hw.requant.Requantizer` (one beat at a
#: time through :data:`~tfl2rtl.hw.requant.COMPACT_STEPS`): the requantizer of a layer
#: whose outputs come at most this often (:func:`tfl2rtl.design.share_requantizers`).
COMPACT_REQUANT_INTERVAL = COMPACT_INTERVAL


def _no_batch(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A tensor shape without its batch dimension of 1."""
    if len(shape) > 1 and shape[0] == 1:
        return tuple(shape[1:])
    return tuple(shape)


class Stage:
    """One node as hardware.  ``in_shapes`` and ``out_shape`` are without the batch
    dimension; ``index`` is the node's position in ``graph.nodes``."""

    #: Whether :func:`tfl2rtl.folding.auto_fold` may choose this stage's folding.
    foldable = True
    #: Whether the stage has hardware for a 16x8 model's int16 activations.
    int16 = False
    #: The width of the activations on the stage's streams: 8, or 16 in a 16x8 model
    #: (:func:`stage_for` sets it).
    act_bits = 8

    def __init__(self, index: int, node: ir.Node, in_shapes, out_shape):
        self.index = index
        self.node = node
        #: The input tensors' shapes as the IR has them (with the batch dimension).
        self.tensor_shapes = tuple(tuple(s) for s in in_shapes)
        self.in_shapes = tuple(_no_batch(s) for s in in_shapes)
        self.out_shape = _no_batch(out_shape)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.in_shapes[0]

    @property
    def in_size(self) -> int:
        return ir.shape_size(self.in_shape)

    @property
    def out_size(self) -> int:
        return ir.shape_size(self.out_shape)

    @property
    def macs(self) -> int:
        return self.node.macs

    @property
    def name(self) -> str:
        return f"node {self.index} ({self.node.op})"

    # -- foldings ------------------------------------------------------------------------
    def options(self) -> list[Fold]:
        """Every valid folding."""
        return [Fold(pe, 1) for pe in divisors(self._lane_dimension())]

    def _lane_dimension(self) -> int:
        """The count that ``pe`` lanes must divide."""
        return math.gcd(*(_lanes_unit(s) for s in (*self.in_shapes, self.out_shape)))

    def check(self, fold: Fold, requant_lanes: int | None = None) -> None:
        """Raise a one-line :class:`Tfl2RtlError` unless ``fold`` is valid here."""
        if fold not in self.options():
            choices = ", ".join(f"pe={f.pe}" + (f", simd={f.simd}" if f.simd > 1 else "")
                                for f in self.options()[:12])
            raise Tfl2RtlError(
                f"{self.name}: folding pe={fold.pe}, simd={fold.simd} does not divide the "
                f"layer; valid: {choices}{', ...' if len(self.options()) > 12 else ''}"
            )

    def multipliers(self, fold: Fold) -> int:
        return 0

    def in_lanes(self, fold: Fold, requant_lanes: int | None = None) -> tuple[int, ...]:
        return (fold.pe,) * len(self.in_shapes)

    def out_lanes(self, fold: Fold, requant_lanes: int | None = None) -> int:
        return fold.pe

    def cycles(self, fold: Fold, requant_lanes: int | None = None,
               requant_interval: int = 1) -> int:
        """Cycles per inference when the inputs keep up and the output is not stalled;
        ``requant_interval`` is the cycles a requantizer takes per beat (1, or
        :data:`SERIAL_REQUANT_INTERVAL` where a platform shares one multiplier between
        its partial products).  A stage whose :meth:`build` takes ``products_in_logic``
        takes it here too (:attr:`~tfl2rtl.hw.network.StagePlan.cycles_per_vector`
        gives it when set)."""
        return max(self.out_size, *(ir.shape_size(s) for s in self.in_shapes)) // fold.pe

    # -- reading ahead -------------------------------------------------------------------
    def demand(self, elements: np.ndarray, bound: str) -> np.ndarray:
        """For each output element index in ``elements``, the index of the last element
        of the (first) input that must have been taken before it can leave: an
        ``"upper"`` bound (at least this much may be needed) or a ``"lower"`` bound (at
        least this much is certainly taken).  Elementwise stages read one element ahead
        at most; see :class:`WindowStage` for windows."""
        return np.minimum(elements, self.in_size - 1)

    #: Whether the stage's weights can live in a memory the host loads at run time
    #: (:class:`tfl2rtl.hw.weights.LoadableMemory`): ``build`` then takes a
    #: ``memory_id``, and :meth:`weight_matrix` gives the matrix whose rows
    #: (:meth:`weight_rows`) the host sends.
    loadable = False

    def weight_matrix(self) -> np.ndarray:
        raise NotImplementedError

    def weight_memory(self, fold: Fold) -> tuple[int, int]:
        """A loadable stage's weight memory at ``fold``: its rows and bytes per row."""
        row_bytes = fold.pe * fold.simd
        return self.weight_matrix().size // row_bytes, row_bytes

    def weight_rows(self, fold: Fold) -> tuple[bytes, int]:
        """A loadable stage's weight memory contents at ``fold``, and the bytes per row
        (:func:`tfl2rtl.hw.mvu.weight_rows`)."""
        from .mvu import weight_rows

        return weight_rows(self.weight_matrix(), fold.pe, fold.simd), fold.pe * fold.simd

    #: Whether :meth:`build` takes ``serial_requantizer`` and ``compact_requantizer``
    #: (requantizer lanes that share
    #: one multiplier between their partial products: FULLY_CONNECTED, CONV_2D and
    #: DEPTHWISE_CONV_2D; ADD takes ``serial_requantizer`` only).
    serial_requantizer = False
    #: Whether :meth:`build` takes ``products_in_logic`` (a matrix-vector unit whose
    #: products are built in LUTs: FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D;
    #: SOFTMAX's multiplies).
    products_in_logic = False

    def build(self, fold: Fold, requant_lanes: int | None = None):
        raise NotImplementedError


def _serial(requant: ir.Requant, requant_interval: int) -> int:
    """The cycles per beat of a serial requantizer for these multipliers: one per partial
    product plus one, and a q31 multiplier has four, but multipliers below ``2**16``
    (zero, for a weight scale of 0) only two (:attr:`tfl2rtl.hw.requant.Requantizer.
    products`); a compact one's (``requant_interval`` :data:`COMPACT_REQUANT_INTERVAL`)
    are always that many."""
    from .requant import partial_products

    if requant_interval in (1, COMPACT_REQUANT_INTERVAL):
        return requant_interval
    return partial_products(requant.multiplier) + 1


def _node_interval(node, requant_interval: int) -> int:
    """The target's cycles per requantizer beat for ``node``'s requantizer: 1 for a
    :class:`~tfl2rtl.hw.requant.RoundingRequantizer` (a legacy uint8 FULLY_CONNECTED)
    and an :class:`~tfl2rtl.hw.requant.Int64Requantizer` (a 16x8 layer), which have no
    serial products; else ``requant_interval``."""
    if getattr(node, "requantization", "integer") == "double":
        return 1
    return 1 if getattr(node, "accumulator", "int32") == "int64" else requant_interval


def _group_cycles(compute: int, beats: int, requant_interval: int) -> int:
    """Cycles per group of accumulators that take ``compute`` cycles to add up and leave
    in ``beats`` requantizer beats, each taking ``requant_interval`` cycles (with a serial
    requantizer, a beat only in the last cycle of each free-running window of that many
    cycles).  The accumulators reach the requantizer through, with several beats per
    group, an accumulator splitter (which holds a group while its parts leave) and a
    register slice (:class:`tfl2rtl.hw.adapters.SkidBuffer`, which holds a beat while the
    requantizer waits for its window), so compute and requantization overlap: the slower
    of the two sets the pace."""
    return max(compute, beats * requant_interval)


def _lanes_unit(shape: tuple[int, ...]) -> int:
    """What lanes must divide for a tensor of ``shape``: its channels when it has pixels,
    else its size."""
    return shape[-1] if len(shape) >= 3 else ir.shape_size(shape)


class FullyConnectedStage(Stage):
    int16 = True
    serial_requantizer = True
    products_in_logic = True

    def options(self):
        out_depth, in_depth = self.node.weights.shape
        return [Fold(pe, simd) for pe in divisors(out_depth) for simd in divisors(in_depth)]

    def check(self, fold, requant_lanes=None):
        _check_matrix(self, fold, requant_lanes)

    def multipliers(self, fold):
        return fold.pe * fold.simd

    def in_lanes(self, fold, requant_lanes=None):
        return (fold.simd,)

    def out_lanes(self, fold, requant_lanes=None):
        return requant_lanes or fold.pe

    def cycles(self, fold, requant_lanes=None, requant_interval=1, products_in_logic=False):
        # (products in logic take the same cycles as in DSP blocks)
        out_depth, in_depth = self.node.weights.shape
        rows = self.in_size // in_depth  # a FULLY_CONNECTED reads its input as rows
        return rows * (out_depth // fold.pe) * _group_cycles(
            in_depth // fold.simd, fold.pe // (requant_lanes or fold.pe),
            _serial(self.node.requant, _node_interval(self.node, requant_interval)))

    def demand(self, elements, bound):
        return np.full_like(elements, self.in_size - 1)

    @property
    def loadable(self) -> bool:
        return self.node.weight_bits == 8  # the host link loads int8 bytes

    def weight_matrix(self) -> np.ndarray:
        return self.node.weights

    def build(self, fold, requant_lanes=None, memory_id=None, serial_requantizer=False,
              products_in_logic=False, compact_requantizer=False):
        from .dense import FullyConnectedLayer

        return FullyConnectedLayer(self.node, pe=fold.pe, simd=fold.simd,
                                   requant_lanes=requant_lanes or fold.pe,
                                   memory_id=memory_id,
                                   serial_requantizer=serial_requantizer,
                                   products_in_logic=products_in_logic,
                                   compact_requantizer=compact_requantizer)


def _check_matrix(stage, fold, requant_lanes):
    """``pe`` must divide the outputs and ``simd`` the inputs (the input channels of a
    convolution), ``requant_lanes`` must divide ``pe``."""
    weights = stage.node.weights.shape
    outputs, inputs = weights[0], weights[-1]
    if fold.pe < 1 or outputs % fold.pe or fold.simd < 1 or inputs % fold.simd:
        what = "inputs" if len(weights) == 2 else "input channels"
        raise Tfl2RtlError(
            f"{stage.name}: pe={fold.pe}, simd={fold.simd} does not divide the layer "
            f"({outputs} outputs x {inputs} {what}); pe must divide {outputs} and simd "
            f"must divide {inputs}"
        )
    if requant_lanes is not None and (requant_lanes < 1 or fold.pe % requant_lanes):
        raise Tfl2RtlError(
            f"{stage.name}: {requant_lanes} requantizer lanes do not divide PE={fold.pe}; "
            f"choose one of {divisors_text(fold.pe)}"
        )


class WindowStage(Stage):
    """A stage behind a sliding window over an NHWC input (convolutions, pools)."""

    def _window(self):
        node = self.node
        kernel = getattr(node, "filter", None)
        if kernel is None:
            shape = node.weights.shape
            kernel = shape[1:3] if isinstance(node, ir.Conv2D) else shape[0:2]
        dilation = getattr(node, "dilation", (1, 1))
        return tuple(kernel), tuple(node.stride), tuple(dilation), tuple(node.padding)

    @property
    def kernel_positions(self) -> int:
        kernel, _, _, _ = self._window()
        return kernel[0] * kernel[1]

    @property
    def out_pixels(self) -> int:
        return self.out_shape[0] * self.out_shape[1]

    def demand(self, elements, bound):
        """Output pixel ``(oy, ox)`` reads input rows up to ``y = oy * stride - top +
        (kh - 1) * dilation`` (and columns up to the matching ``x``).  The lower bound is
        that exact pixel; the upper bound allows the window generator to wait for whole
        rows and one more row besides."""
        (kh, kw), (sh, sw), (dh, dw), (top, left, _, _) = self._window()
        height, width, channels = self.in_shape
        pixel = elements // self.out_shape[-1]
        oy, ox = pixel // self.out_shape[1], pixel % self.out_shape[1]
        y = np.clip(oy * sh - top + (kh - 1) * dh, 0, height - 1)
        if bound == "upper":
            return np.minimum((y + 2) * width * channels, self.in_size) - 1
        x = np.clip(ox * sw - left + (kw - 1) * dw, 0, width - 1)
        return (y * width + x) * channels + channels - 1


class Conv2DStage(WindowStage):
    int16 = True
    serial_requantizer = True
    products_in_logic = True

    def options(self):
        out_c, _, _, in_c = self.node.weights.shape
        return [Fold(pe, simd) for pe in divisors(out_c) for simd in divisors(in_c)]

    def check(self, fold, requant_lanes=None):
        _check_matrix(self, fold, requant_lanes)

    def multipliers(self, fold):
        return fold.pe * fold.simd

    def in_lanes(self, fold, requant_lanes=None):
        return (fold.simd,)

    def out_lanes(self, fold, requant_lanes=None):
        return requant_lanes or fold.pe

    def cycles(self, fold, requant_lanes=None, requant_interval=1, products_in_logic=False):
        # (products in logic take the same cycles as in DSP blocks)
        out_c, kh, kw, in_c = self.node.weights.shape
        per_pixel = (out_c // fold.pe) * _group_cycles(
            kh * kw * in_c // fold.simd, fold.pe // (requant_lanes or fold.pe),
            _serial(self.node.requant, _node_interval(self.node, requant_interval)))
        return max(self.in_size // fold.simd, self.out_pixels * per_pixel)

    @property
    def loadable(self) -> bool:
        return self.node.weight_bits == 8  # the host link loads int8 bytes

    def weight_matrix(self) -> np.ndarray:
        return self.node.weights.reshape(self.node.weights.shape[0], -1)

    def build(self, fold, requant_lanes=None, memory_id=None, serial_requantizer=False,
              products_in_logic=False, compact_requantizer=False):
        from .conv import Conv2DLayer

        return Conv2DLayer(self.node, self.in_shape, pe=fold.pe, simd=fold.simd,
                           requant_lanes=requant_lanes or fold.pe, memory_id=memory_id,
                           serial_requantizer=serial_requantizer,
                           products_in_logic=products_in_logic,
                           compact_requantizer=compact_requantizer)


class DepthwiseStage(WindowStage):
    serial_requantizer = True
    products_in_logic = True
    int16 = True

    def options(self):
        from .depthwise import pe_choices

        return [Fold(pe, 1) for pe in pe_choices(self.node)]

    def check(self, fold, requant_lanes=None):
        super().check(fold)
        lanes = self._unit_lanes(fold)
        if requant_lanes is not None and (requant_lanes < 1 or lanes % requant_lanes):
            raise Tfl2RtlError(
                f"{self.name}: {requant_lanes} requantizer lanes do not divide the {lanes} "
                f"output lanes; choose one of {divisors_text(lanes)}")

    def _unit_lanes(self, fold):
        """The accumulators per unit beat: ``pe``, or the depth multiplier when ``pe``
        divides it (:attr:`tfl2rtl.hw.depthwise.DepthwiseUnit.lanes`)."""
        return max(fold.pe, self.node.depth_multiplier)

    def multipliers(self, fold):
        return fold.pe

    def in_lanes(self, fold, requant_lanes=None):
        return (max(fold.pe // self.node.depth_multiplier, 1),)

    def out_lanes(self, fold, requant_lanes=None):
        return requant_lanes or fold.pe

    def cycles(self, fold, requant_lanes=None, requant_interval=1, products_in_logic=False):
        # (products in logic take the same cycles as in DSP blocks)
        (in_lanes,) = self.in_lanes(fold)
        lanes = self._unit_lanes(fold)
        steps = self.kernel_positions * (lanes // fold.pe)
        return max(self.in_size // in_lanes, self.out_pixels * (self.in_shape[-1] // in_lanes)
                   * _group_cycles(steps, lanes // (requant_lanes or fold.pe),
                            _serial(self.node.requant,
                                    _node_interval(self.node, requant_interval))))

    def build(self, fold, requant_lanes=None, serial_requantizer=False,
              compact_requantizer=False, products_in_logic=False):
        from .depthwise import DepthwiseConv2DLayer

        return DepthwiseConv2DLayer(self.node, self.in_shape, pe=fold.pe,
                                    requant_lanes=requant_lanes,
                                    serial_requantizer=serial_requantizer,
                                    compact_requantizer=compact_requantizer,
                                    products_in_logic=products_in_logic)


class PoolStage(WindowStage):
    int16 = True
    def options(self):
        return [Fold(pe, 1) for pe in divisors(self.in_shape[-1])]

    def cycles(self, fold, requant_lanes=None, requant_interval=1):
        channels = self.in_shape[-1]
        return max(self.in_size // fold.pe,
                   self.out_pixels * (channels // fold.pe) * self.kernel_positions)

    def build(self, fold, requant_lanes=None):
        from .pool import Pool2DLayer

        return Pool2DLayer(self.node, self.in_shape, pe=fold.pe, act_bits=self.act_bits)


class MeanStage(Stage):
    int16 = True

    def options(self):
        if len(self.in_shape) != 3 or tuple(self.node.axes) != (1, 2):
            raise Tfl2RtlError(
                f"{self.name}: MEAN over axes {tuple(self.node.axes)} of a "
                f"{len(self.in_shape) + 1}-D tensor has no hardware; only the mean over "
                "height and width (global average pooling) has"
            )
        return [Fold(pe, 1) for pe in divisors(self.in_shape[-1])]

    def cycles(self, fold, requant_lanes=None, requant_interval=1):
        channels = self.in_shape[-1]
        return max(self.in_size // fold.pe,
                   channels // fold.pe * _serial(self.node.requant, requant_interval))

    def demand(self, elements, bound):
        return np.full_like(elements, self.in_size - 1)

    def build(self, fold, requant_lanes=None):
        from .pool import MeanLayer

        return MeanLayer(self.node, self.in_shape, pe=fold.pe, act_bits=self.act_bits)


class AddStage(Stage):
    int16 = True
    #: Its output requantizer may have serial products (``compact_requantizer`` is not
    #: taken: an ADD is never given one).
    serial_requantizer = True

    def options(self):
        if self.in_shapes[0] != self.in_shapes[1]:
            raise Tfl2RtlError(
                f"{self.name}: ADD of shapes {self.in_shapes[0]} and {self.in_shapes[1]} "
                "broadcasts; the hardware adds tensors of one shape only"
            )
        return super().options()

    def cycles(self, fold, requant_lanes=None, requant_interval=1):
        return self.out_size // fold.pe * _serial(self.node.output_requant, requant_interval)

    def build(self, fold, requant_lanes=None, serial_requantizer=False):
        from .elementwise import AddLayer

        return AddLayer(self.node, self.out_shape, lanes=fold.pe, act_bits=self.act_bits,
                        serial_requantizer=serial_requantizer)


class RequantizeStage(Stage):
    """QUANTIZE between integers of one width (a 16x8 model's int16 -> int16 one)."""

    int16 = True

    def cycles(self, fold, requant_lanes=None, requant_interval=1):
        return self.out_size // fold.pe * _serial(self.node.requant, requant_interval)

    def build(self, fold, requant_lanes=None):
        from .elementwise import RequantizeLayer

        return RequantizeLayer(self.node, self.out_shape, lanes=fold.pe,
                               act_bits=self.act_bits)


class LutStage(Stage):
    """A 256-entry table; in a 16x8 model a LEAKY_RELU computed
    (:class:`~tfl2rtl.hw.elementwise.LeakyReluInt16Layer`)."""

    #: The table ops computed in a 16x8 model (the others are 65536-entry tables).
    INT16_FUNCTIONS = ("LEAKY_RELU",)

    @property
    def int16(self) -> bool:
        return self.node.function in self.INT16_FUNCTIONS and self.node.params is not None

    def cycles(self, fold, requant_lanes=None, requant_interval=1):
        if self.act_bits == 16:  # a requantizer a lane
            from .elementwise import leaky_relu_requant

            return self.out_size // fold.pe * _serial(leaky_relu_requant(self.node.params),
                                                      requant_interval)
        return super().cycles(fold, requant_lanes, requant_interval)

    def build(self, fold, requant_lanes=None):
        from .elementwise import LeakyReluInt16Layer, LutLayer

        if self.act_bits == 16:
            return LeakyReluInt16Layer(self.node, self.out_shape, lanes=fold.pe)
        return LutLayer(self.node, self.out_shape, lanes=fold.pe)


class ConcatStage(Stage):
    int16 = True

    def _lane_dimension(self):
        axis = self.node.axis
        inner = [ir.shape_size(s[axis:]) for s in self.tensor_shapes]
        return math.gcd(*inner, _lanes_unit(self.out_shape))

    def demand(self, elements, bound):
        # The first input's elements come out in turn with the others': output element e
        # needs at most e elements of it, and at least those before e in its own part.
        return np.minimum(elements, self.in_size - 1) if bound == "upper" else \
            np.full_like(elements, -1)

    def build(self, fold, requant_lanes=None):
        from .elementwise import ConcatLayer

        return ConcatLayer(self.node, self.tensor_shapes, lanes=fold.pe,
                           act_bits=self.act_bits)


class PadStage(Stage):
    int16 = True

    def _lane_dimension(self):
        before, after = self.node.paddings[-1]
        channels = self.in_shape[-1] if len(self.in_shape) >= 3 else self.in_size
        return math.gcd(channels, before, after) if (before or after) else channels

    def demand(self, elements, bound):
        if bound == "upper":
            return np.minimum(elements, self.in_size - 1)
        return np.maximum(elements - (self.out_size - self.in_size), -1)

    def build(self, fold, requant_lanes=None):
        from .elementwise import PadLayer

        return PadLayer(self.node, self.tensor_shapes[0], lanes=fold.pe,
                        act_bits=self.act_bits)


class TransposeStage(Stage):
    """TRANSPOSE: the whole tensor buffered in a ping-pong memory and streamed out
    permuted (:class:`tfl2rtl.hw.transpose.TransposeLayer`), ``pe`` elements per beat
    only where the permutation keeps the innermost axis innermost."""

    def _lane_dimension(self):
        from .transpose import lane_limit

        return math.gcd(super()._lane_dimension(),
                        lane_limit(self.tensor_shapes[0], self.node.perm))

    def check(self, fold, requant_lanes=None):
        if fold.pe > 1 and self._lane_dimension() == 1:
            raise Tfl2RtlError(
                f"{self.name}: pe={fold.pe}, but the permutation {tuple(self.node.perm)} "
                "moves the innermost axis, so the hardware transposes one element per "
                "beat (pe=1)")
        super().check(fold)

    def demand(self, elements, bound):
        return np.full_like(elements, self.in_size - 1)

    def build(self, fold, requant_lanes=None):
        from .transpose import TransposeLayer

        return TransposeLayer(self.node, self.tensor_shapes[0], lanes=fold.pe)


class SoftmaxStage(Stage):
    foldable = False
    int16 = True
    #: The int8 unit's 32x32 multiplies by shift and add in logic rather than on a DSP
    #: block (:class:`~tfl2rtl.hw.softmax.SoftmaxUnit`), more cycles a row.
    products_in_logic = True

    @property
    def row(self) -> int:
        return self.in_shape[-1]

    def _unit(self):
        """The unit's class: :class:`~tfl2rtl.hw.softmax.SoftmaxInt16Unit` in a 16x8
        model, else :class:`~tfl2rtl.hw.softmax.SoftmaxUnit`."""
        from .softmax import SoftmaxInt16Unit, SoftmaxUnit

        return SoftmaxInt16Unit if self.act_bits == 16 else SoftmaxUnit

    def options(self):
        from .softmax import MAX_ROW, MAX_ROW_INT16

        longest = MAX_ROW_INT16 if self.act_bits == 16 else MAX_ROW
        if self.row > longest:
            raise Tfl2RtlError(
                f"{self.name}: SOFTMAX over rows of {self.row} elements; the hardware "
                f"takes at most {longest}"
            )
        return [Fold(1, 1)]

    def cycles(self, fold, requant_lanes=None, requant_interval=1, products_in_logic=False):
        options = {"products_in_logic": True} if products_in_logic else {}
        return (self.in_size // self.row) * self._unit().cycles_for_row(self.row, **options)

    def demand(self, elements, bound):
        row_end = (elements // self.row + 1) * self.row - 1
        return row_end if bound == "upper" else elements

    def build(self, fold, requant_lanes=None, products_in_logic=False):
        options = {"products_in_logic": True} if products_in_logic else {}
        return self._unit()(self.node, self.row, **options)


#: The stage kind of each IR node type that has hardware.
STAGE_KINDS: dict[type, type[Stage]] = {
    ir.FullyConnected: FullyConnectedStage,
    ir.Conv2D: Conv2DStage,
    ir.DepthwiseConv2D: DepthwiseStage,
    ir.MaxPool2D: PoolStage,
    ir.AveragePool2D: PoolStage,
    ir.Mean: MeanStage,
    ir.Add: AddStage,
    ir.Lut: LutStage,
    ir.Concatenation: ConcatStage,
    ir.Pad: PadStage,
    ir.Softmax: SoftmaxStage,
    ir.Transpose: TransposeStage,
    ir.Requantize: RequantizeStage,
}


def stage_for(graph: ir.Graph, index: int) -> Stage | None:
    """The stage of ``graph.nodes[index]``, or ``None`` for a node that needs no hardware
    of its own (RESHAPE, and int8/uint8 QUANTIZE at an edge, which
    :func:`tfl2rtl.hw.network.plan_network` handles)."""
    node = graph.nodes[index]
    kind = STAGE_KINDS.get(type(node))
    if kind is None or getattr(node, "flip_sign", False):  # a uint8 <-> int8 edge
        return None
    constants = [name for name in node.inputs if graph.tensors[name].data is not None]
    if constants:
        raise Tfl2RtlError(
            f"node {index} ({node.op}) has a constant input ({constants[0]}); the hardware "
            "takes activations only"
        )
    in_shapes = [graph.tensors[name].shape for name in node.inputs]
    stage = kind(index, node, in_shapes, graph.tensors[node.output].shape)
    if graph.quantization == "int16x8":
        if not stage.int16:
            built = sorted([t.op for t, k in STAGE_KINDS.items() if k.int16 is True]
                           + list(LutStage.INT16_FUNCTIONS))
            # (a table op by the op it came from: LEAKY_RELU, not LUT)
            name = getattr(node, "function", node.op).upper()
            raise Tfl2RtlError(
                f"node {index} ({name}) of a 16x8 model has no hardware for int16 "
                f"activations yet; built for 16x8: {', '.join(built)}, RESHAPE")
        # int16 streams; the products are DSP blocks and the requantizers
        # Int64Requantizers, which have neither products in logic nor serial products.
        stage.act_bits = 16
        stage.products_in_logic = False
        stage.serial_requantizer = False
    return stage
