"""Amaranth hardware for the fixed-point IR.

- :mod:`.requant`: :class:`~.requant.Requantizer`, TFLite's requantization epilogue.
- :mod:`.mvu`: :class:`~.mvu.MatrixVectorUnit`, the folded multiply-accumulate array.
- :mod:`.dense`: :class:`~.dense.FullyConnectedLayer`, the two for one FULLY_CONNECTED node.
- :mod:`.window`: :class:`~.window.SlidingWindow`, line buffers to windows, and the window
  stream's definition (:func:`~.window.window_beats`).
- :mod:`.conv`: :class:`~.conv.Conv2DLayer`, a window feeding a fully connected layer.
- :mod:`.depthwise`: :class:`~.depthwise.DepthwiseConv2DLayer`.
- :mod:`.pool`: max and average pooling, and MEAN.
- :mod:`.elementwise`: ADD, the 256-entry tables, CONCATENATION and PAD.
- :mod:`.softmax`: :class:`~.softmax.SoftmaxUnit`, TFLite Micro's int8 SOFTMAX.
- :mod:`.adapters`: lane-count conversion, typed FIFOs and broadcast between stages.
- :mod:`.stages`: what each IR node becomes: foldings, lanes, cycles, multipliers.
- :mod:`.network`: the whole model behind AXI4-Stream ports, and its Verilog.
- :mod:`.layouts`: the stream payload layouts they share.
"""
