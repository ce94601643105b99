"""The register of the stalling pipelines in :mod:`tfl2rtl.hw` (the matrix-vector
unit, the depthwise unit, pooling, the requantizer, ADD's input scaling): each stage
moves only on the cycles its pipeline advances; and the platform hook for their
pipelined products (:data:`PRODUCT_HOOK`)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, Value

__all__ = ["PRODUCT_HOOK", "register", "platform_product", "fabric_product"]

#: The platform method that builds a pipelined product in a vendor's DSP block with its
#: own registers: ``platform.get_registered_product(m, enable, a, b, name)`` returns
#: ``a * b`` two edges where ``enable`` is high later (the operands registered, then the
#: product: the same two register stages the pipelines build in the fabric otherwise),
#: or None for operands it does not take.  ECP5 boards set it
#: (:func:`tfl2rtl.boards.ecp5.registered_product`).
PRODUCT_HOOK = "get_registered_product"


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


def platform_product(m: Module, platform, enable: Value, a: Value, b: Value, name: str):
    """``a * b`` from the platform's :data:`PRODUCT_HOOK`, two enabled edges after ``a``
    and ``b`` (as :func:`register` of the product of registered operands would give
    it), or None when the platform has no such hook, does not take these operands, or
    one is a constant 0 or power of two (a product by it is wiring, not a DSP block):
    the caller then builds the two register stages itself."""
    hook = getattr(platform, PRODUCT_HOOK, None)
    if hook is None:
        return None
    for operand in (a, b):
        if isinstance(operand, Const) and abs(operand.value) & (abs(operand.value) - 1) == 0:
            return None
    return hook(m, enable, a, b, name)


def fabric_product(m: Module, enable: Value, a: Value, b: Value, name: str):
    """The :data:`PRODUCT_HOOK` contract built in the fabric (operand registers, then a
    product register, all on ``enable``): what a vendor's DSP block with its own
    registers computes, for simulating the hook's path of a component in Amaranth."""
    a_reg = register(m, enable, a, f"{name}_a")
    b_reg = register(m, enable, b, f"{name}_b")
    return register(m, enable, a_reg * b_reg, name)
