"""Amaranth hardware for the fixed-point IR.

- :mod:`.requant`: :class:`~.requant.Requantizer`, TFLite's requantization epilogue.
- :mod:`.mvu`: :class:`~.mvu.MatrixVectorUnit`, the folded multiply-accumulate array.
- :mod:`.dense`: :class:`~.dense.FullyConnectedLayer`, the two for one FULLY_CONNECTED node.
- :mod:`.adapters`: lane-count conversion and typed FIFOs between layers.
- :mod:`.softmax`: :class:`~.softmax.SoftmaxUnit`, TFLite Micro's int8 SOFTMAX.
- :mod:`.network`: a chain of FULLY_CONNECTED layers (optionally ending in SOFTMAX) behind
  AXI4-Stream ports, and its Verilog.
- :mod:`.layouts`: the stream payload layouts they share.
"""
