"""A CONV_2D layer: sliding window, matrix-vector unit and requantization."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import Tfl2RtlError
from ..fold import divisors_text
from .dense import FullyConnectedLayer
from .layouts import signed_lanes
from .weights import loading_members
from .window import SlidingWindow, window_out_hw

__all__ = ["Conv2DLayer"]


class Conv2DLayer(wiring.Component):
    """One :class:`tfl2rtl.ir.Conv2D` node over an ``(H, W, C)`` input, folded to ``pe``
    output channels by ``simd`` input channels per cycle.

    A :class:`~tfl2rtl.hw.window.SlidingWindow` in order ``"conv"`` (padding with the
    input zero point, ``-input_offset``, ``simd`` channels per beat) gives each output
    pixel's window as ``KH * KW * C / simd`` beats in TFLite's filter order, so the window
    is the input vector of a :class:`~tfl2rtl.hw.dense.FullyConnectedLayer` built from the
    node (weights reshaped to ``[out_c, KH * KW * C]``, ``folded_bias``, ``acc_bits`` and
    the node's epilogue): a :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit`, an optional
    :class:`~tfl2rtl.hw.adapters.AccumulatorSplitter` and a ``requant_lanes``-lane
    :class:`~tfl2rtl.hw.requant.Requantizer`.  The window's ``pad`` flag is not needed:
    the zero point contributes nothing once the offset is folded into the bias.  The
    results equal :func:`tfl2rtl.golden.conv_2d` for inputs within the input tensor's
    ``value_range`` (which ``acc_bits`` was proven for).

    Members
    -------
    i : ``In(stream.Signature(signed_lanes(act_bits, simd)))``
        ``H * W * C / simd`` beats per image, NHWC.
    o : ``Out(stream.Signature(signed_lanes(act_bits, requant_lanes)))``
        ``out_h * out_w * out_c / requant_lanes`` beats per image, NHWC.
    load, loaded : with ``memory_id``
        The weights are loaded at run time: :class:`~tfl2rtl.hw.mvu.MatrixVectorUnit`.

    Attributes
    ----------
    window, dense : :class:`SlidingWindow`, :class:`FullyConnectedLayer`
        The two halves (``window.rows`` is the line buffer's size).
    in_shape, out_shape : (int, int, int)
        ``(H, W, C)`` and ``(out_h, out_w, out_c)``.
    pe, simd, requant_lanes : int
        The folding; ``requant_lanes`` (default ``pe``) divides ``pe``.
    serial_requantizer : bool
        Whether the requantizer lanes share one multiplier between their partial
        products (:class:`~tfl2rtl.hw.dense.FullyConnectedLayer`).
    products_in_logic : bool
        Whether the matrix-vector unit's products are built in LUTs
        (:class:`~tfl2rtl.hw.mvu.MatrixVectorUnit`).
    multipliers : int
        ``pe * simd`` int8 multipliers in the matrix-vector unit; the requantizer's are
        not counted (``requant_lanes * products`` 16x16 ones, ``requant_lanes`` with
        serial products: :attr:`~tfl2rtl.hw.requant.Requantizer.multipliers`).
    cycles_per_vector : int
        Initiation interval per image when the input delivers a beat every cycle and the
        output is always ready: ``out_h * out_w * (out_c / pe) * max(KH * KW * C / simd,
        pe / requant_lanes * requant.interval)`` (the matrix-vector unit's time; the
        window keeps up with it), or the input's ``H * W * C / simd`` beats if that is
        more (a stride larger than the kernel).  Measured for every tested layer.
    lead_beats : int
        Input beats of an image that must have been taken before its first window can
        start (:attr:`SlidingWindow.lead_beats`).
    latency : int
        When input beat :attr:`lead_beats` of an image is taken at clock edge ``n`` (and
        the pipeline is idle), the image's first output beat can leave at edge ``n +
        latency``: the window's latency, ``KH * KW * C / simd - 1`` more window beats, and
        the matrix-vector unit's, splitter's and requantizer's latencies.

    Tested on CONV_2D nodes of real and written models (1x1 to 10x4 kernels, strides 1 and
    2 with SAME and VALID padding, dilation 2, one to 16 input channels) with several
    ``pe`` / ``simd`` foldings, random stalls and backpressure, inputs at both ends of the
    input tensor's range.
    """

    def __init__(self, node: ir.Conv2D, in_shape, *, pe: int = 1, simd: int = 1,
                 requant_lanes: int | None = None, memory_id: int | None = None,
                 serial_requantizer: bool = False, products_in_logic: bool = False,
                 compact_requantizer: bool = False):
        h, w, c = (int(v) for v in in_shape)
        out_c, kh, kw, in_c = node.weights.shape
        requant_lanes = pe if requant_lanes is None else requant_lanes
        if c != in_c:
            raise Tfl2RtlError(f"a {h}x{w}x{c} input does not match the filter's {in_c} "
                               "input channels")
        if simd < 1 or in_c % simd:
            raise Tfl2RtlError(f"SIMD={simd} does not divide the {in_c} input channels; "
                               f"choose one of {divisors_text(in_c)}")
        if pe < 1 or out_c % pe:
            raise Tfl2RtlError(f"PE={pe} does not divide the {out_c} output channels; "
                               f"choose one of {divisors_text(out_c)}")
        if requant_lanes < 1 or pe % requant_lanes:
            raise Tfl2RtlError(f"{requant_lanes} requantizer lanes do not divide PE={pe}")
        out_hw = window_out_hw((h, w), (kh, kw), node.stride, node.dilation, node.padding)
        if tuple(node.out_hw) != out_hw:
            raise Tfl2RtlError(f"a {h}x{w} input gives a {out_hw[0]}x{out_hw[1]} output, "
                               f"the node says {node.out_hw[0]}x{node.out_hw[1]}")
        self.node = node
        self.in_shape = (h, w, c)
        self.out_shape = (*out_hw, out_c)
        # int16 activations in a 16x8 layer (int64 accumulators), else int8.
        self.act_bits = act_bits = node.act_bits
        self.window = SlidingWindow(self.in_shape, (kh, kw), node.stride, node.dilation,
                                    node.padding, pad_value=-node.input_offset, simd=simd,
                                    order="conv", act_bits=act_bits)
        # The matrix-vector product per output pixel is a FULLY_CONNECTED layer over the
        # window with the same epilogue.
        dense = ir.FullyConnected(
            node.inputs, node.outputs, weights=node.weights.reshape(out_c, -1),
            bias=node.bias, input_offset=node.input_offset, folded_bias=node.folded_bias,
            acc_bits=node.acc_bits, requant=node.requant, output_offset=node.output_offset,
            act_min=node.act_min, act_max=node.act_max, weight_bits=node.weight_bits,
            accumulator=node.accumulator)
        self.dense = FullyConnectedLayer(dense, pe=pe, simd=simd, requant_lanes=requant_lanes,
                                         memory_id=memory_id,
                                         serial_requantizer=serial_requantizer,
                                         products_in_logic=products_in_logic,
                                         compact_requantizer=compact_requantizer)
        self.pe = pe
        self.simd = simd
        self.requant_lanes = self.dense.requant_lanes
        self.products_in_logic = products_in_logic
        self.multipliers = pe * simd
        pixels = out_hw[0] * out_hw[1]
        self.cycles_per_vector = max(pixels * self.dense.cycles_per_vector,
                                     self.window.beats_in)
        self.lead_beats = self.window.lead_beats
        self.latency = (self.window.latency + self.window.beats_per_window - 1
                        + self.dense.latency)
        super().__init__({
            "i": In(stream.Signature(signed_lanes(act_bits, simd))),
            "o": Out(stream.Signature(signed_lanes(act_bits, self.requant_lanes))),
            **loading_members(memory_id),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = window = self.window
        m.submodules.dense = dense = self.dense
        if "load" in self.signature.members:
            wiring.connect(m, wiring.flipped(self.load), dense.load)
            m.d.comb += self.loaded.eq(dense.loaded)
        wiring.connect(m, wiring.flipped(self.i), window.i)
        m.d.comb += [
            dense.i.valid.eq(window.o.valid),
            dense.i.payload.eq(window.o.payload.data),
            window.o.ready.eq(dense.i.ready),
        ]
        wiring.connect(m, dense.o, wiring.flipped(self.o))
        return m
