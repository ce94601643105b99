"""The register of the stalling pipelines in :mod:`tfl2rtl.hw` (the matrix-vector
unit, the depthwise unit, pooling, the requantizer, ADD's input scaling): each stage
moves only on the cycles its pipeline advances."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, Value

__all__ = ["register"]


def register(m: Module, enable: Value, value, name: str, shape=None):
    """A register in ``m`` that takes ``value`` on the clock edges where ``enable`` is
    high (a pipeline that moves only when its last stage can pass its beat on), as a
    signal ``name`` of ``shape`` (``value``'s own by default).  A constant needs no
    register and comes back as it is."""
    if isinstance(value, Const):
        return value
    reg = Signal(value.shape() if shape is None else shape, name=name)
    with m.If(enable):
        m.d.sync += reg.eq(value)
    return reg
