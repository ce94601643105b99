"""A folded matrix-vector unit: the multiply-accumulate half of FULLY_CONNECTED."""

from __future__ import annotations

from functools import partial

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import Tfl2RtlError
from ..fixedpoint import signed_bits
from ..fold import divisors_text
from . import pipeline
from .adapters import SkidBuffer
from .layouts import accumulator_layout, pack_lanes, signed_lanes
from .weights import WEIGHT_BANKS_HOOK, LoadableMemory, loading_members

__all__ = ["MatrixVectorUnit", "issue_order", "weight_rows", "LOGIC_PRODUCTS_PER_ENABLE"]


def issue_order(weights, pe: int, simd: int) -> np.ndarray:
    """``weights`` (``out_depth x in_depth``) as the unit reads them at ``pe x simd``:
    row ``nf * synapse_folds + sf`` holds ``weights[nf * pe + p, sf * simd + s]`` in
    column ``p * simd + s``."""
    weights = np.asarray(weights)
    out_depth, in_depth = weights.shape
    w = weights.reshape(out_depth // pe, pe, in_depth // simd, simd)
    return w.transpose(0, 2, 1, 3).reshape(-1, pe * simd)


def weight_rows(weights, pe: int, simd: int) -> bytes:
    """The weight memory's contents for ``weights`` (``out_depth x in_depth`` int8) at
    ``pe x simd``, as bytes: the rows of :func:`issue_order`, weight ``p * simd + s``
    of a row in its byte ``p * simd + s``.  (What the host sends to a loadable memory,
    and the initial rows of the others.)"""
    return issue_order(weights, pe, simd).astype(np.int8).tobytes()


#: Adder-tree levels between two pipeline registers in the matrix-vector unit: the
#: ``simd`` products of a neuron are summed in a balanced tree with a register after
#: every this many levels, so that no path adds more than this many numbers in a row
#: (the accumulation itself is one more level, in the last stage).
TREE_LEVELS_PER_STAGE = 2

#: With products in logic, the products of a neuron that share one copy of the
#: pipeline's enable (each product is three registers of 16 to 26 bits).
LOGIC_PRODUCTS_PER_ENABLE = 4


def tree_stages(simd: int) -> int:
    """The register stages of the adder tree over ``simd`` products:
    ``ceil(ceil(log2(simd)) / TREE_LEVELS_PER_STAGE)`` (0 for one product)."""
    levels = (simd - 1).bit_length()
    return -(-levels // TREE_LEVELS_PER_STAGE)


def _tree_level(values):
    """One level of a balanced adder tree: neighbours summed in pairs (an odd one out
    passes through)."""
    values = list(values)
    pairs = [a + b for a, b in zip(values[0::2], values[1::2], strict=False)]
    return pairs + values[len(pairs) * 2:]


class MatrixVectorUnit(wiring.Component):
    """``acc[o] = bias[o] + sum_i x[i] * weights[o, i]``, ``pe`` neurons by ``simd`` inputs
    per cycle.

    The ``out_depth x in_depth`` matrix is folded into ``neuron_folds = out_depth / pe``
    groups of ``pe`` neurons and ``synapse_folds = in_depth / simd`` slices of ``simd``
    inputs.  Every cycle multiplies one slice of the input vector by the matching
    ``pe x simd`` weights; after ``synapse_folds`` cycles the ``pe`` accumulators of one
    neuron group are complete.  The weights sit in one on-chip :class:`Memory` of
    ``neuron_folds * synapse_folds`` rows of ``pe * simd`` signed ``weight_bits``-bit
    weights (8: int8; 9: a legacy uint8 layer's ``w - zw``, see
    :class:`tfl2rtl.lower.Uint8AsInt8`) with one read port (inferred as block RAM; on a
    platform with :data:`~tfl2rtl.hw.weights.WEIGHT_BANKS_HOOK`, a memory deeper than its
    bank is one memory a bank, each read into a register, at the same latency), the
    biases in another; each product, ``act_bits`` by ``weight_bits``, is exact
    (``act_bits + weight_bits`` bits: one DSP block either way).  With ``memory_id``, the
    int8 weights are a :class:`~tfl2rtl.hw.weights.LoadableMemory` of that number
    instead, empty until the host loads them over ``load`` (:func:`weight_rows` gives its rows).
    With ``weight_stream``, the unit holds no weights: each row arrives on ``w`` as it is
    issued, in the memory's order (:meth:`weight_rows`), pass after pass (the sequential
    engine's weights from flash, :mod:`tfl2rtl.hw.flash`); a row that has not arrived
    stalls the issue.

    ``weights`` and ``bias`` may also be sequences of matrices and bias vectors: the
    layers of a sequential engine sharing the unit (:mod:`tfl2rtl.hw.engine`).  The
    unit then computes them in turn, each folded at the same ``pe x simd``: a vector of
    layer ``k`` is ``in_depth_k / simd`` beats, and after it the unit takes the next
    layer's vector (layer 0 after the last).  Their weight rows follow each other in
    the one memory, their biases too, and ``group`` counts the neuron groups of all the
    layers in order (so the requantizer reads each layer's parameters by it).  With
    ``repeats`` (a count per layer) layer ``k`` takes ``repeats[k]`` vectors in a row
    before the next layer's (a convolution's output pixels, each its patch), each
    through all of the layer's rows and groups; ``group`` gives the layer's own groups
    for each of them.  (Not with ``weight_stream``: the rows would have to come again.)
    With ``fresh`` (a flag per layer) each group of a flagged layer takes a vector of
    its own from the input, none is replayed: a depthwise convolution's groups of
    channel blocks, each its own patch (its rows' weights zero but where a lane meets its
    own channel in its own block).

    The first neuron group computes straight from the input stream while the vector is
    written to an input buffer; the other groups replay it from there.  So the input is
    taken only during the first ``synapse_folds`` cycles of a vector, and the next vector
    can start as soon as the last group has been issued.

    With ``products_in_logic`` the products are built in LUTs and carry chains
    (:func:`~tfl2rtl.hw.pipeline.logic_product`) instead of multipliers, whatever the
    platform: the planner's choice for layers beyond the board's DSP blocks.

    ``bias`` is TFLite's bias with the input offset folded in (``folded_bias`` in the IR),
    so the raw int8 inputs are accumulated.  ``acc_width`` must hold every final sum (the
    IR's ``acc_bits`` does); partial sums wrap harmlessly.

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, simd)))``
        ``in_depth / simd`` beats per vector; lane ``s`` of beat ``k`` is input ``k * simd + s``;
        ``act_bits`` is 8, or 16 for a 16x8 layer's int16 inputs (an int16 by int8
        product fits one DSP block too; products in logic take int8 inputs only).
    o : ``Out(stream.Signature(accumulator_layout(acc_width, pe, neuron_folds)))``
        ``neuron_folds`` beats per vector; ``acc[p]`` of the beat with ``group = g`` is
        output ``g * pe + p``.
    load : ``In(stream.Signature(LOAD_LAYOUT, always_ready=True))``, with ``memory_id``
        Weight bytes (see :mod:`tfl2rtl.hw.weights`); load only while the unit is idle.
    loaded : ``Out(1)``, with ``memory_id``
        High once every row of weights has been loaded.
    w : ``In(stream.Signature(unsigned(row_bits)))``, with ``weight_stream``
        The weight rows in issue order, lane ``p * simd + s`` in bits ``weight_bits *
        (p * simd + s)`` up (the rows of :meth:`weight_rows`), one taken per issued
        row; the unit's ``latency`` counts from the later of a row and its input beat.

    Attributes
    ----------
    layers : list of (int, int)
        ``(out_depth, in_depth)`` of each matrix (one, unless a sequence was given).
    out_depth, in_depth : int
        Their sums: the accumulators and the input elements of one pass over the layers.
    neuron_folds : int
        Neuron groups of all the layers, ``out_depth / pe``.
    synapse_folds : int
        Beats of the longest input vector, ``max(in_depth_k) / simd`` (the input
        buffer's depth).
    cycles_per_vector : int
        Initiation interval of one pass, ``sum_k (out_depth_k / pe) * (in_depth_k /
        simd) * repeats[k]``, when the input keeps up and the output is not stalled.
    repeats : tuple of int
        Vectors of each layer in a pass (all 1 unless given).
    fresh : tuple of bool
        Whether each group of a layer takes a vector of its own (all False unless given).
    latency : int
        ``7 + tree_stages(simd)``: when a vector's last input beat is taken at clock edge
        ``n``, its first group can leave on ``o`` at edge ``n + latency``.  The input's
        skid buffer (:class:`~tfl2rtl.hw.adapters.SkidBuffer`), then in the
        fabric: input, input again (the address), input a third time beside the memory
        read, operand, product, adder-tree and accumulator registers.  With the
        platform's product hook: input and memory read, input and weights again, the DSP
        block's operand and product registers, the product again in the fabric, then the
        adder tree and the accumulators.  With products in logic: as with the hook, the
        logic product's operand, half-sum and product registers in place of the DSP
        block's and the product's.

    Tested with ``pe`` and ``simd`` from 1 to the full depth, sequences of 1 to 10
    layers of different shapes, 1 to 5 vectors a layer in a row, random stalls on ``i`` and
    backpressure on ``o``, int8 and 9-bit weights (at -256, 255 and random), in the
    fabric, through the platform's product hook and with products in logic; int16 inputs
    (at -32768, 32767 and random) in the fabric and through the hook.
    """

    def __init__(self, weights, bias, *, acc_width: int, pe: int = 1, simd: int = 1,
                 memory_id: int | None = None, weight_bits: int = 8,
                 products_in_logic: bool = False, act_bits: int = 8,
                 weight_stream: bool = False, repeats=None, fresh=None):
        sequence = isinstance(weights, (list, tuple))
        matrices = [np.asarray(w) for w in (weights if sequence else [weights])]
        biases = [np.asarray(b, dtype=np.int64).reshape(-1)
                  for b in (bias if sequence else [bias])]
        if act_bits not in (8, 16):
            raise Tfl2RtlError(f"{act_bits}-bit inputs: the matrix-vector unit takes 8 or 16")
        if products_in_logic and act_bits != 8:
            raise Tfl2RtlError("products in logic are built for int8 inputs only")
        if not matrices or len(matrices) != len(biases):
            raise Tfl2RtlError(f"{len(matrices)} weight matrices for {len(biases)} bias vectors")
        if weight_stream and memory_id is not None:
            raise Tfl2RtlError("streamed weights cannot also be loaded at run time")
        for weights, bias in zip(matrices, biases, strict=True):
            if weights.ndim != 2 or weights.shape[0] != bias.size:
                raise Tfl2RtlError(
                    f"weights of shape {weights.shape} do not match {bias.size} biases"
                )
            if weights.size and (weights.min() < -(1 << (weight_bits - 1))
                                 or weights.max() >= 1 << (weight_bits - 1)):
                raise Tfl2RtlError(f"the weights are not {weight_bits}-bit signed integers")
        if memory_id is not None and weight_bits != 8:
            raise Tfl2RtlError(f"{weight_bits}-bit weights cannot be loaded at run time "
                               "(the host link loads int8 bytes)")
        for weights in matrices:
            out_depth, in_depth = weights.shape
            if pe < 1 or out_depth % pe:
                raise Tfl2RtlError(
                    f"PE={pe} does not divide the output depth {out_depth}; "
                    f"choose one of {divisors_text(out_depth)}"
                )
            if simd < 1 or in_depth % simd:
                raise Tfl2RtlError(
                    f"SIMD={simd} does not divide the input depth {in_depth}; "
                    f"choose one of {divisors_text(in_depth)}"
                )
        bias = np.concatenate(biases)
        lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
        if bias.min() < lo or bias.max() > hi:
            raise Tfl2RtlError(f"a bias does not fit the {acc_width}-bit accumulator")

        repeats = (1,) * len(matrices) if repeats is None else tuple(int(r) for r in repeats)
        if len(repeats) != len(matrices) or min(repeats) < 1:
            raise Tfl2RtlError(f"repeats {repeats}: one count of at least 1 for each of the "
                               f"{len(matrices)} layers")
        if max(repeats) > 1 and weight_stream:
            raise Tfl2RtlError("a layer's rows cannot repeat with streamed weights")
        fresh = (False,) * len(matrices) if fresh is None else tuple(bool(f) for f in fresh)
        if len(fresh) != len(matrices):
            raise Tfl2RtlError(f"fresh {fresh}: one flag for each of the {len(matrices)} "
                               "layers")
        self.layers = [tuple(int(d) for d in w.shape) for w in matrices]
        self.repeats = repeats
        self.fresh = fresh
        self.out_depth = sum(o for o, _ in self.layers)
        self.in_depth = sum(i for _, i in self.layers)
        self.pe = pe
        self.simd = simd
        self.acc_width = acc_width
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self._input_lanes = signed_lanes(act_bits, simd)
        #: Per layer, ``(neuron folds, synapse folds)``.
        self._folds = [(o // pe, i // simd) for o, i in self.layers]
        self.neuron_folds = sum(nf for nf, _ in self._folds)
        self.synapse_folds = max(sf for _, sf in self._folds)
        self.cycles_per_vector = sum(nf * sf * r for (nf, sf), r in
                                     zip(self._folds, repeats, strict=True))
        self.latency = self.latency_for(simd)
        self._matrices = [w.astype(np.int64) for w in matrices]
        self._bias = bias
        self.memory_id = memory_id
        self.products_in_logic = products_in_logic
        self.weight_stream = weight_stream
        #: Bits of one weight row (``pe * simd`` lanes of ``weight_bits``).
        self.row_bits = pe * simd * weight_bits
        super().__init__({
            "i": In(stream.Signature(signed_lanes(act_bits, simd))),
            "o": Out(stream.Signature(accumulator_layout(acc_width, pe, self.neuron_folds))),
            **loading_members(memory_id),
            **({"w": In(stream.Signature(unsigned(self.row_bits)))} if weight_stream
               else {}),
        })

    @staticmethod
    def latency_for(simd: int) -> int:
        """:attr:`latency` of a unit of ``simd`` inputs per cycle."""
        return 6 + SkidBuffer.latency + tree_stages(simd)

    def weight_rows(self) -> list[int]:
        """The weight memory's rows (or, with ``weight_stream``, the rows ``w`` takes in
        one pass) as integers: for each layer in turn, lane ``p * simd
        + s`` (``weight_bits`` wide) of its row ``nf * synapse_folds + sf`` being
        ``weights[nf * pe + p, sf * simd + s]`` (for int8, the bytes of
        :func:`weight_rows`; see :func:`~tfl2rtl.hw.layouts.pack_lanes`)."""
        rows = [issue_order(w, self.pe, self.simd) for w in self._matrices]
        return pack_lanes(np.concatenate(rows), self.weight_bits)

    def _weight_banks(self, platform, width: int, rows: int) -> int | None:
        """The rows of one bank of the weight memory (``rows`` of ``width`` bits) on
        ``platform`` (:data:`~tfl2rtl.hw.weights.WEIGHT_BANKS_HOOK`), or None for one
        memory: the platform has no such hook, the memory is no deeper than a bank, or
        its rows are loaded (a :class:`~tfl2rtl.hw.weights.LoadableMemory`)."""
        hook = getattr(platform, WEIGHT_BANKS_HOOK, None)
        if hook is None or self.memory_id is not None:
            return None
        bank_rows = hook(width)
        if bank_rows is None or rows <= bank_rows:
            return None
        if bank_rows & (bank_rows - 1):
            raise ValueError(f"weight banks of {bank_rows} rows: not a power of two")
        return bank_rows

    def _bias_rows(self, width: int) -> list[int]:
        """Row ``g``: the biases of neurons ``g * pe .. g * pe + pe - 1`` (of all the
        layers in turn), ``width`` bits each, the first in the lowest bits."""
        mask = (1 << width) - 1
        rows = self._bias.reshape(self.neuron_folds, self.pe).tolist()
        return [sum((b & mask) << (width * p) for p, b in enumerate(row)) for row in rows]

    def elaborate(self, platform):
        group_count, rows = self.neuron_folds, sum(nf * sf for nf, sf in self._folds)
        bank_rows = (None if self.weight_stream
                     else self._weight_banks(platform, self.row_bits, rows))
        m = Module()
        sf_depth = self.synapse_folds  # the longest input vector, in beats

        # The input arrives through a skid buffer, so that its ready is a register: the
        # pipeline's enable (below), which reaches every stage, does not also reach
        # back into the stage before (on the ECP5 the enable through the input FIFO's
        # read into its data register was ad01's critical path, 13.9 ns, 12.6 of them
        # routing).
        m.submodules.skid = skid = SkidBuffer(self._input_lanes)
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        source = skid.o

        # One enable for the whole pipeline: it moves whenever the output register is
        # empty or being emptied.  The registers of each neuron's products, adder tree
        # and accumulator take a copy of it (``advances[p]``), made from a copy of the
        # output's valid bit of their own, so that no single net carries the enable to
        # every DSP block and register of the unit (on the ECP5 that net, from one LUT
        # to a MULT18X18D's clock enable across the chip, was ad01's critical path with
        # products in logic: 9.9 ns of routing of 16.0).  Each copy's register holds the
        # same bit (it is loaded under its own copy of the enable), so Yosys does not
        # merge them.
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        valid_copies, advances = pipeline.enable_copies(m, self.pe, self.o.ready)
        # With products in logic, more copies: one for every LOGIC_PRODUCTS_PER_ENABLE
        # products of a neuron (below).
        chunks = -(-self.simd // LOGIC_PRODUCTS_PER_ENABLE)
        logic_valid, logic_enables = ((), ()) if not self.products_in_logic else (
            pipeline.enable_copies(m, self.pe * chunks, self.o.ready, "_logic"))

        # Issue: walk (nf, sf) of each layer in turn; the first neuron group of a layer
        # waits for input beats.  ``group`` counts the groups of all the layers (``nf``
        # itself when there is one layer) and ``row`` the weight rows.
        layered = len(self._folds) > 1
        repeating = layered and max(self.repeats) > 1
        nf = Signal(range(max(f for f, _ in self._folds)))
        sf = Signal(range(sf_depth))
        row = Signal(range(rows))
        # Where the walk stands, as registers set with the counters (their comparisons
        # lie on no enable: on the iCE40 the unit's enable through the layer's last
        # slice and group comparisons into the layer counter was the jet MLP engine's
        # critical path, 29.7 ns).
        (first_nf, first_sf) = self._folds[0]
        last_sf = Signal(init=first_sf == 1)
        last_nf = Signal(init=first_nf == 1)
        first_group = Signal(init=1)
        last_row = Signal(init=rows == 1)
        next_sf = Mux(last_sf, 0, sf + 1)
        next_nf = Mux(last_sf, Mux(last_nf, 0, nf + 1), nf)
        if layered:
            # The current and the next layer's last slice and group in registers,
            # loaded at each layer's end from the one after (so the flags' next values
            # take no table lookup on a computed layer: on the iCE40 the layer's last
            # slice through that lookup into the last group flag was the uint8 MLP
            # engine's critical path, 31.3 ns).
            count = len(self._folds)

            def table(values, shape):
                return Array(Const(v, shape) for v in values)

            sf_ends = [f - 1 for _, f in self._folds]
            nf_ends = [f - 1 for f, _ in self._folds]
            sf_end = Signal(range(sf_depth), init=sf_ends[0])
            nf_end = Signal(len(nf), init=nf_ends[0])
            sf_end_next = Signal(range(sf_depth), init=sf_ends[1])
            nf_end_next = Signal(len(nf), init=nf_ends[1])
            after_next = Signal(range(count), init=2 % count)  # the layer after the next
            group = Signal(range(group_count))
            if repeating:
                # A layer of several vectors in a row (a convolution's pixels): at the
                # end of each but its last, the walk goes back to its first row and
                # group.  ``left`` counts the vectors after this one, ``repeat`` is
                # ``left != 0``; the next layer's count waits in ``left_next``.
                ends = [r - 1 for r in self.repeats]
                left = Signal(range(max(self.repeats)), init=ends[0])
                repeat = Signal(init=ends[0] > 0)
                left_next = Signal(range(max(self.repeats)), init=ends[1])
                first_row = Signal(range(rows))
                first_row_last = Signal(init=rows == 1)
                first_group_of = Signal(range(group_count))
                layer_end_sf = Mux(repeat, sf_end == 0, sf_end_next == 0)
                layer_end_nf = Mux(repeat, nf_end == 0, nf_end_next == 0)
            else:
                layer_end_sf, layer_end_nf = sf_end_next == 0, nf_end_next == 0
            next_last_sf = Mux(last_sf, Mux(last_nf, layer_end_sf, sf_end == 0),
                               sf + 1 == sf_end)
            next_last_nf = Mux(last_sf, Mux(last_nf, layer_end_nf, nf + 1 == nf_end),
                               last_nf)
        else:
            group = nf
            next_last_sf = next_sf == sf_depth - 1
            next_last_nf = next_nf == group_count - 1
        # A layer whose groups each take a vector of their own (``fresh``): every group
        # is a first one.  ``fresh_now`` is the layer's flag, loaded at each layer's end
        # from ``fresh_next``, the next layer's.
        fresh_now = None
        if any(self.fresh):
            if layered:
                fresh_now = Signal(init=self.fresh[0])
                fresh_next = Signal(init=self.fresh[1])
            else:
                fresh_now = Const(1)
        issue = Signal()
        if self.weight_stream:
            # A row is issued only with its weights: the input waits for them too.
            m.d.comb += [
                issue.eq(advance & (~first_group | source.valid) & self.w.valid),
                source.ready.eq(advance & first_group & self.w.valid),
                self.w.ready.eq(issue),
            ]
        else:
            m.d.comb += [
                issue.eq(advance & (~first_group | source.valid)),
                source.ready.eq(advance & first_group),
            ]
        with m.If(issue):
            following_row = Mux(last_row, 0, row + 1)
            following_last_row = Mux(last_row, rows == 1, row + 2 == rows)
            m.d.sync += [
                sf.eq(next_sf),
                row.eq(following_row),
                last_sf.eq(next_last_sf),
                last_nf.eq(next_last_nf),
                first_group.eq(Mux(last_sf, (last_nf | fresh_now) if any(self.fresh)
                                   else last_nf, first_group)),
                last_row.eq(following_last_row),
            ]
            with m.If(last_sf):
                m.d.sync += nf.eq(next_nf)
                if layered:
                    following_group = Mux(group == group_count - 1, 0, group + 1)
                    m.d.sync += group.eq(following_group)
                    next_layer = last_nf
                    if repeating:
                        with m.If(last_nf & repeat):
                            # Another vector of this layer: back to its first row and
                            # group.
                            m.d.sync += [row.eq(first_row), last_row.eq(first_row_last),
                                         group.eq(first_group_of), left.eq(left - 1),
                                         repeat.eq(left != 1)]
                        next_layer = last_nf & ~repeat
                    with m.If(next_layer):
                        m.d.sync += [
                            sf_end.eq(sf_end_next), nf_end.eq(nf_end_next),
                            sf_end_next.eq(table(sf_ends, len(sf_end))[after_next]),
                            nf_end_next.eq(table(nf_ends, len(nf_end))[after_next]),
                            after_next.eq(Mux(after_next == count - 1, 0, after_next + 1)),
                        ]
                        if any(self.fresh):
                            m.d.sync += [fresh_now.eq(fresh_next), fresh_next.eq(
                                table(self.fresh, 1)[after_next])]
                        if repeating:
                            m.d.sync += [
                                left.eq(left_next), repeat.eq(left_next != 0),
                                left_next.eq(table(ends, len(left))[after_next]),
                                first_row.eq(following_row),
                                first_row_last.eq(following_last_row),
                                first_group_of.eq(following_group),
                            ]

        # Data registers have no reset (their valid bits do), so the reset reaches only
        # the control registers.
        register = partial(pipeline.register, m, advance, reset_less=True)
        flag = partial(pipeline.register, m, advance)

        # Stage 1: memory reads; the first group's input beat waits in a register.
        # With a platform's DSP blocks (pipeline.PRODUCT_HOOK), the row is read at once and
        # registered in the fabric at stage 1b (so that the block RAM's slow output and
        # the route across the chip to the DSP block are two paths: on the ECP5 the
        # DP16KD's 5.6 ns clock-to-output and 8 ns of routing into the MULT18X18D were
        # ad01's critical path), beside the input lanes' second register; otherwise it
        # is read two stages late (stage 1c), beside their third, and the operand
        # register of stage 2 takes it.
        weight_layout = data.ArrayLayout(signed_lanes(self.weight_bits, self.simd), self.pe)
        in_logic = self.products_in_logic
        hooked = not in_logic and getattr(platform, pipeline.PRODUCT_HOOK, None) is not None
        if self.weight_stream:
            # The row taken with the issue, registered as the memory's read port gives
            # it: at stage 1, or (in the fabric) at stage 1c.
            row_data = register(self.w.payload, "w_1")
            if not (hooked or in_logic):
                row_data = register(register(row_data, "w_1b_row"), "w_1c")
            weight_data = weight_layout(row_data)
        elif bank_rows is not None:
            # A deep memory in banks (WEIGHT_BANKS_HOOK), each read into a register of
            # its own, the bank's register chosen a stage later: read a stage earlier
            # than one memory would be, so the rows arrive at the same stage.
            init = self.weight_rows()
            address = row if hooked or in_logic else register(row, "row_1")
            offset_bits = bank_rows.bit_length() - 1
            bank_data = []
            for k, start in enumerate(range(0, rows, bank_rows)):
                m.submodules[f"weights_{k}"] = bank = Memory(
                    shape=unsigned(weight_layout.size), depth=min(bank_rows, rows - start),
                    init=init[start:start + bank_rows])
                port = bank.read_port()
                m.d.comb += [port.addr.eq(address[:offset_bits]), port.en.eq(advance)]
                bank_data.append(register(port.data, f"w_bank_{k}"))
            chosen = register(register(address[offset_bits:], "bank_1"), "bank_1b")
            weight_data = weight_layout(Array(bank_data)[chosen])
        else:
            if self.memory_id is None:
                m.submodules.weights = weights = Memory(
                    shape=unsigned(weight_layout.size), depth=rows,
                    init=self.weight_rows())
                weight_port = weights.read_port()
            else:
                m.submodules.weights = weight_port = LoadableMemory(
                    weight_layout.size, rows, self.memory_id)
                wiring.connect(m, wiring.flipped(self.load), weight_port.load)
                m.d.comb += self.loaded.eq(weight_port.loaded)
            if hooked or in_logic:
                m.d.comb += [weight_port.addr.eq(row), weight_port.en.eq(advance)]
            else:
                row_1b = register(register(row, "row_1"), "row_1b")
                m.d.comb += [weight_port.addr.eq(row_1b), weight_port.en.eq(advance)]
            weight_data = weight_layout(weight_port.data)

        valid_1 = flag(issue, "valid_1")
        first_1 = register(sf == 0, "first_1")
        last_1 = register(last_sf, "last_1")
        group_1 = register(group, "group_1")
        stream_x = register(source.payload, "stream_x", self._input_lanes)
        if group_count > len(self._folds):  # a layer of more than one neuron group
            m.submodules.input_buffer = buffer = Memory(
                shape=self._input_lanes, depth=sf_depth, init=[])
            # The write is registered (address, data and enable), so that the input's
            # handshake does not also drive the buffer's write enable across the chip
            # (on the ECP5 that was ad01's critical path once the enable was copied per
            # neuron: 7.8 ns of routing to the distributed RAM).  A beat is written a
            # cycle after it is taken; the one read that can meet it (one slice per
            # vector: the second group's, in that very cycle) sees it through the read
            # port's transparency.
            write = buffer.write_port()
            m.d.sync += [
                write.addr.eq(sf),
                write.data.eq(source.payload),
                write.en.eq(source.valid & source.ready),
            ]
            replay = buffer.read_port(transparent_for=(write,))
            m.d.comb += [replay.addr.eq(sf), replay.en.eq(advance)]
            from_stream_1 = register(first_group, "from_stream_1")
            x_1 = self._input_lanes(Mux(from_stream_1, stream_x, replay.data))
        else:
            x_1 = stream_x

        # Stage 1b: the input lanes registered again (the replay multiplexer's select and
        # the input buffer sit far from the multipliers they feed; on the ECP5 this was
        # ad01's critical path, 12.4 ns of routing), beside the weight row read now.
        x_1 = register(x_1, "x_1b", self._input_lanes)
        if hooked or in_logic:
            if bank_rows is None:  # (else the banks' registers are this stage's)
                weight_data = register(weight_data, "w_1b", weight_layout)
        else:
            # Stage 1c, in the fabric only: the input lanes wait a stage more for the
            # weight row, read a stage later, so that both paths have one latency (the
            # hook's path spends this stage after the DSP blocks, below).
            x_1 = register(x_1, "x_1c", self._input_lanes)
        valid_1 = flag(flag(valid_1, "valid_1b"), "valid_1c")
        first_1 = register(register(first_1, "first_1b"), "first_1c")
        last_1 = register(register(last_1, "last_1b"), "last_1c")
        group_1 = register(register(group_1, "group_1b"), "group_1c")

        # Stage 2: the multiplier operands, registered; stage 3: products.  A platform
        # with a DSP block that has its own registers (pipeline.PRODUCT_HOOK) holds both
        # stages there.
        valid_2 = flag(valid_1, "valid_2")
        first_2 = register(first_1, "first_2")
        last_2 = register(last_1, "last_2")
        group_2 = register(group_1, "group_2")
        # (Every product has the same operands, act_bits by weight_bits: the hook takes all
        # or none.)
        first = None if in_logic else pipeline.platform_product(
            m, platform, advances[0], x_1[0], weight_data[0][0], "product_0_0")

        def neuron_weights():
            """Each neuron's weights of the slice in an operand register of its own."""
            return [pipeline.register(m, advances[p], weight_data[p], f"w_2_{p}",
                                      reset_less=True)
                    for p in range(self.pe)]

        if in_logic:
            # Products in LUTs (pipeline.logic_product): operand registers, then two
            # stages of shifted-term sums, so the same three stages as the hook's path.
            # Each neuron takes the input lanes into operand registers of its own (one
            # register per lane bit feeding every neuron's partial products was kws's
            # critical path on the ECP5: stage 0's x_2 into its products in logic, 16.7
            # ns, 13.5 of them routing), and every LOGIC_PRODUCTS_PER_ENABLE of its
            # products, operands included, move on a copy of the enable of their own
            # (one copy for a neuron's 3 registers of each of its products was
            # ResNet-8's: 8.7 ns of routing from the copy to a product register).
            def enable(p, s):
                return logic_enables[p * chunks + s // LOGIC_PRODUCTS_PER_ENABLE]

            sums = [[pipeline.logic_product(
                        m, enable(p, s),
                        pipeline.register(m, enable(p, s), x_1[s], f"x_2_{p}_{s}",
                                          reset_less=True),
                        pipeline.register(m, enable(p, s), weight_data[p][s],
                                          f"w_2_{p}_{s}", reset_less=True),
                        f"product_{p}_{s}")
                     for s in range(self.simd)] for p in range(self.pe)]
        elif first is not None:
            # Each DSP block's product is registered once more in the fabric, beside the
            # block, before the adder tree gathers the products of a neuron from across
            # the chip (on the ECP5 the route from a MULT18X18D to the tree's first
            # level was ad01's critical path: 10.3 ns of its 14.2).
            sums = [[pipeline.register(
                        m, advances[p], first if (p, s) == (0, 0) else
                        pipeline.platform_product(m, platform, advances[p], x_1[s],
                                                  weight_data[p][s], f"product_{p}_{s}"),
                        f"product_r_{p}_{s}", reset_less=True)
                     for s in range(self.simd)] for p in range(self.pe)]
        else:
            x_2 = register(x_1, "x_2", self._input_lanes)
            w_2 = neuron_weights()
            sums = [
                [pipeline.register(m, advances[p], x_2[s] * w_2[p][s], f"product_{p}_{s}",
                                   signed(self.act_bits + self.weight_bits), reset_less=True)
                 for s in range(self.simd)]
                for p in range(self.pe)
            ]

        # The bias of the neurons of the group that enters the accumulator next: read two
        # stages before and registered (below), so that the block RAM's slow output
        # does not feed the accumulator's adder directly.
        bias_width = signed_bits(int(self._bias.min()), int(self._bias.max()))
        bias_layout = data.ArrayLayout(signed(bias_width), self.pe)
        m.submodules.bias = biases = Memory(
            shape=unsigned(bias_layout.size), depth=group_count,
            init=self._bias_rows(bias_width))
        bias_port = biases.read_port()

        control = [(flag if name == "valid" else register)(c, f"{name}_3") for c, name in
                   ((valid_2, "valid"), (first_2, "first"), (last_2, "last"),
                    (group_2, "group"))]
        groups = [group_1, group_2, control[3]]  # the group in each stage, oldest first

        # Stages 4 .. 3 + tree_stages: the adder tree, a register every
        # TREE_LEVELS_PER_STAGE levels.
        for stage in range(tree_stages(self.simd)):
            for _ in range(TREE_LEVELS_PER_STAGE):
                sums = [_tree_level(values) for values in sums]
            sums = [[pipeline.register(m, advances[p], v, f"sum_{stage}_{p}_{k}",
                                       reset_less=True)
                     for k, v in enumerate(values)]
                    for p, values in enumerate(sums)]
            control = [(flag if name == "valid" else register)(c, f"{name}_{4 + stage}")
                       for c, name in
                       zip(control, ("valid", "first", "last", "group"), strict=True)]
            groups.append(control[3])
        assert all(len(values) == 1 for values in sums)
        valid_t, first_t, last_t, group_t = control
        m.d.comb += [bias_port.addr.eq(groups[-3]), bias_port.en.eq(advance)]
        bias_data = register(bias_layout(bias_port.data), "bias_r", bias_layout)

        # The last stage: accumulate; the accumulators are the output register.
        out_valid = Signal()
        out_group = Signal.like(self.o.payload.group)
        with m.If(advance):
            m.d.sync += out_valid.eq(valid_t & last_t)
            with m.If(valid_t):
                m.d.sync += out_group.eq(group_t)
        for valid_k, enable_k in zip(logic_valid, logic_enables, strict=True):
            with m.If(enable_k):
                m.d.sync += valid_k.eq(valid_t & last_t)
        for p in range(self.pe):
            with m.If(advances[p]):
                m.d.sync += valid_copies[p].eq(valid_t & last_t)
                with m.If(valid_t):
                    acc = self.o.payload.acc[p]
                    start = Mux(first_t, bias_data[p], acc)
                    m.d.sync += acc.eq(start + sums[p][0])
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.group.eq(out_group),
        ]
        return m
