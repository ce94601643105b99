"""The ECP5's multipliers with their own registers: the platform hook
:data:`tfl2rtl.hw.pipeline.PRODUCT_HOOK` that :class:`tfl2rtl.boards.board.Board` sets on
ECP5 boards (and :mod:`tfl2rtl.boards.postsynth` for the ECP5 family).

Yosys maps a multiplier to an unregistered ``MULT18X18D`` and leaves the registers
around it in the fabric, where placement puts them far from the DSP block (the
critical path of ad01 on the ULX3S ran from a fabric register through 4.4 ns of routing
into the DSP and 6.1 ns back out to the next register).  :func:`registered_product`
instantiates the block with its A and B input registers and its output register on, so
both register stages of a pipelined product sit inside the DSP block and only routing
lies between it and the fabric.  ``rtl_templates/ecp5_mult18x18d.v`` models that
configuration for simulation."""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Value

__all__ = ["DSP_WIDTH", "DP16KD_CONFIGURATIONS", "registered_product", "weight_bank_rows"]

#: The operand width of a ``MULT18X18D``.
DSP_WIDTH = 18


#: A ``DP16KD``'s shapes as (rows, bits a row), deepest first.
DP16KD_CONFIGURATIONS = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def weight_bank_rows(width: int) -> int:
    """The platform hook :data:`tfl2rtl.hw.weights.WEIGHT_BANKS_HOOK`: the rows of the
    deepest ``DP16KD`` shape that holds ``width`` bits a row (or its widest, 36 bits,
    side by side).  A deeper weight memory is the depth multiplexer of several blocks
    behind their 5.8 ns clock-to-output (on the ULX3S ResNet-8's critical path at 70.8
    MHz: a weight ``DP16KD``, 7.3 ns of routing, the multiplexer, 14.1 ns in all); banks
    of this depth each read into a register of their own have none."""
    return next(rows for rows, bits in DP16KD_CONFIGURATIONS if bits >= min(width, 36))


def _operand(value: Value) -> Value | None:
    """``value`` as the 18 bits of a ``MULT18X18D`` operand (sign-extended when signed),
    or None when it needs more."""
    shape = value.shape()
    if shape.width > DSP_WIDTH or shape.width == 0:
        return None
    return value.as_signed() if shape.signed else value.as_unsigned()


def registered_product(m: Module, enable: Value, a: Value, b: Value, name: str):
    """``a * b`` from one ``MULT18X18D`` with its input and output registers, both
    clocked on the edges where ``enable`` is high: the product of the operands taken two
    enabled edges before, as a signal ``name`` of ``a * b``'s shape.  None when an
    operand is wider than 18 bits (the caller builds that product otherwise)."""
    a_bits, b_bits = _operand(a), _operand(b)
    if a_bits is None or b_bits is None:
        return None
    shape = (a * b).shape()
    if shape.width > 2 * DSP_WIDTH:
        return None
    a_18, b_18, p = Signal(DSP_WIDTH), Signal(DSP_WIDTH), Signal(2 * DSP_WIDTH)
    m.d.comb += [a_18.eq(a_bits), b_18.eq(b_bits)]
    ports = {
        **{f"i_A{k}": a_18[k] for k in range(DSP_WIDTH)},
        **{f"i_B{k}": b_18[k] for k in range(DSP_WIDTH)},
        **{f"i_C{k}": Const(0, 1) for k in range(DSP_WIDTH)},
        **{f"o_P{k}": p[k] for k in range(2 * DSP_WIDTH)},
    }
    m.submodules[f"{name}_mult18x18d"] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
        i_SIGNEDA=Const(int(a.shape().signed), 1), i_SIGNEDB=Const(int(b.shape().signed), 1),
        i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
        i_CLK0=ClockSignal(), i_CE0=enable, i_RST0=Const(0, 1),
        **ports)
    product = Signal(shape, name=name)
    m.d.comb += product.eq(p[:shape.width])
    return product
