"""A FULLY_CONNECTED layer: matrix-vector unit followed by requantization."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from .adapters import AccumulatorSplitter, SkidBuffer, connect_splitting
from .layouts import signed_lanes
from .mvu import MatrixVectorUnit
from .requant import Int64Requantizer, Requantizer, RoundingRequantizer
from .weights import loading_members

__all__ = ["FullyConnectedLayer"]


class FullyConnectedLayer(wiring.Component):
    """One :class:`tfl2rtl.ir.FullyConnected` node, folded to ``pe`` neurons by ``simd``
    inputs per cycle.

    A :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit` with the node's weights and
    ``folded_bias`` (so it accumulates the raw int8 inputs in ``acc_bits``-wide
    accumulators) feeds a ``requant_lanes``-lane :class:`~tfl2rtl.hw.requant.Requantizer`
    with the node's epilogue (a :class:`~tfl2rtl.hw.requant.RoundingRequantizer` for a
    node with ``requantization="double"``: a legacy uint8 layer, as LiteRT computes it;
    an :class:`~tfl2rtl.hw.requant.Int64Requantizer` for a node with
    ``accumulator="int64"``: a 16x8 layer, whose inputs and outputs are int16).
    The results equal :func:`tfl2rtl.golden.fully_connected` for every input within the
    range ``acc_bits`` was proven for.

    Each requantizer lane costs a 32x32 multiplier (four 16x16 products), so
    ``requant_lanes`` (default ``pe``, dividing ``pe``) trades them for time: an
    :class:`~tfl2rtl.hw.adapters.AccumulatorSplitter` then hands the ``pe`` accumulators
    of a neuron group to the requantizer in ``pe / requant_lanes`` beats.  With
    ``serial_requantizer`` each lane has one 16x16 multiplier and takes a beat every
    :attr:`~tfl2rtl.hw.requant.Requantizer.interval` cycles (its serial products);
    with ``compact_requantizer`` it is the requantizer's compact form (one beat at a
    time, on one 16x16 multiplier and few registers).
    With ``products_in_logic`` the matrix-vector unit's products are built in LUTs
    (:class:`~tfl2rtl.hw.mvu.MatrixVectorUnit`).

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, simd)))``
        ``in_depth / simd`` beats per input vector; ``act_bits`` is 16 for a 16x8 layer,
        else 8.
    o : ``Out(stream.Signature(signed_lanes(act_bits, requant_lanes)))``
        ``out_depth / requant_lanes`` beats per output vector, lane ``p`` of beat ``g``
        being output ``g * requant_lanes + p``.
    load, loaded : with ``memory_id``
        The weights are loaded at run time: :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit`.

    Attributes
    ----------
    cycles_per_vector : int
        Initiation interval: ``(out_depth / pe) * max(in_depth / simd, pe /
        requant_lanes * requant.interval)`` cycles (a neuron group takes ``in_depth /
        simd`` cycles to compute and ``pe / requant_lanes`` requantizer beats, and the
        two overlap).
    latency : int
        When a vector's last input beat is taken at clock edge ``n``, its first output
        beat can leave at edge ``n + latency``: ``mvu.latency + SkidBuffer.latency +
        requant.latency``, plus one with a splitter.
    """

    def __init__(self, node: ir.FullyConnected, *, pe: int = 1, simd: int = 1,
                 requant_lanes: int | None = None, memory_id: int | None = None,
                 serial_requantizer: bool = False, products_in_logic: bool = False,
                 compact_requantizer: bool = False):
        requant_lanes = pe if requant_lanes is None else requant_lanes
        if requant_lanes < 1 or pe % requant_lanes:
            raise Tfl2RtlError(
                f"{requant_lanes} requantizer lanes do not divide PE={pe}"
            )
        self.node = node
        self.out_depth, self.in_depth = node.weights.shape
        self.pe = pe
        self.simd = simd
        self.requant_lanes = requant_lanes
        self.act_bits = act_bits = node.act_bits
        wide = act_bits == 16  # a 16x8 layer: an Int64Requantizer
        self.mvu = MatrixVectorUnit(node.weights, node.folded_bias, acc_width=node.acc_bits,
                                    pe=pe, simd=simd, memory_id=memory_id,
                                    weight_bits=node.weight_bits,
                                    products_in_logic=products_in_logic, act_bits=act_bits)
        self.splitter = None
        if requant_lanes != pe:
            self.splitter = AccumulatorSplitter(node.acc_bits, pe, requant_lanes,
                                                self.mvu.neuron_folds)
        rounding = node.requantization == "double"
        if wide and (serial_requantizer or compact_requantizer):
            raise Tfl2RtlError("a 16x8 layer's Int64Requantizer has no serial products "
                               "and no compact form")
        if rounding and (serial_requantizer or compact_requantizer):
            raise Tfl2RtlError("a legacy uint8 FULLY_CONNECTED rounds once in a "
                               "RoundingRequantizer, which has no serial products and no "
                               "compact form")
        serial = {} if rounding or wide else {"serial_products": serial_requantizer,
                                              "compact": compact_requantizer}
        kind = Int64Requantizer if wide else RoundingRequantizer if rounding else Requantizer
        self.requant = kind(
                                   node.requant, channels=self.out_depth,
                                   output_offset=node.output_offset, act_min=node.act_min,
                                   act_max=node.act_max, acc_width=node.acc_bits,
                                   lanes=requant_lanes, **serial)
        self.cycles_per_vector = self.mvu.neuron_folds * max(
            self.mvu.synapse_folds,
            pe // requant_lanes * self.requant.interval)
        self.latency = (self.mvu.latency + SkidBuffer.latency + self.requant.latency
                        + (self.splitter is not None))
        super().__init__({
            "i": In(stream.Signature(signed_lanes(act_bits, simd))),
            "o": Out(stream.Signature(signed_lanes(act_bits, requant_lanes))),
            **loading_members(memory_id),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mvu = self.mvu
        if "load" in self.signature.members:
            wiring.connect(m, wiring.flipped(self.load), self.mvu.load)
            m.d.comb += self.loaded.eq(self.mvu.loaded)
        m.submodules.requant = self.requant
        wiring.connect(m, wiring.flipped(self.i), self.mvu.i)
        connect_splitting(m, self.mvu.o, self.splitter, self.requant.i)
        wiring.connect(m, self.requant.o, wiring.flipped(self.o))
        return m
