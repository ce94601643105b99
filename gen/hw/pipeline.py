"""The register of the stalling pipelines in :mod:`tfl2rtl.hw` (the matrix-vector
unit, the depthwise unit, pooling, the requantizer, ADD's input scaling): each stage
moves only on the cycles its pipeline advances; the platform hook for their
pipelined products (:data:`PRODUCT_HOOK`); and products built in LUTs
(:func:`logic_product`); and the reset tree of a whole design
(:class:`ResetTree`)."""

from __future__ import annotations

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
    signed,
)

__all__ = ["PRODUCT_HOOK", "register", "enable_copies", "platform_product",
           "fabric_product", "logic_terms", "logic_product", "ResetTree", "RESET_TREE_HOOK"]

#: The platform method that builds a pipelined product in a vendor's DSP block with its
#: own registers: ``platform.get_registered_product(m, enable, a, b, name)`` returns
#: ``a * b`` two edges where ``enable`` is high later (the operands registered, then the
#: product: the same two register stages the pipelines build in the fabric otherwise),
#: or None for operands it does not take.  ECP5 boards set it
#: (:func:`tfl2rtl.boards.ecp5.registered_product`).
PRODUCT_HOOK = "get_registered_product"


def register(m: Module, enable: Value, value, name: str, shape=None, *,
             reset_less: bool = False):
    """A register in ``m`` that takes ``value`` on the clock edges where ``enable`` is
    high (a pipeline that moves only when its last stage can pass its beat on), as a
    signal ``name`` of ``shape`` (``value``'s own by default).  A constant needs no
    register and comes back as it is.

    ``reset_less`` leaves it out of the domain's reset: for data whose valid bit
    travels in a register of its own (on the ECP5 the reset net to every pipeline
    register of ResNet-8 was its critical path, 14.9 ns of routing)."""
    if isinstance(value, Const):
        return value
    reg = Signal(value.shape() if shape is None else shape, name=name,
                 reset_less=reset_less)
    with m.If(enable):
        m.d.sync += reg.eq(value)
    return reg


def enable_copies(m: Module, count: int, ready: Value, name: str = ""):
    """``count`` copies of a stalling pipeline's enable ``~o.valid | ready``, for the
    registers of as many parts of it (so that no single net carries the enable to every
    DSP block and register): copy ``k`` is ``~valid_k | ready`` for a copy ``valid_k``
    of the output's valid bit, which the caller loads as it loads ``o.valid``, on the
    edges where copy ``k`` is high (each loads under its own enable, so Yosys does not
    merge them).  Returns ``(valid_copies, enables)``, named ``out_valid<name>_<k>`` and
    ``advance<name>_<k>``."""
    valid_copies = [Signal(name=f"out_valid{name}_{k}") for k in range(count)]
    enables = [Signal(name=f"advance{name}_{k}") for k in range(count)]
    for valid_k, enable_k in zip(valid_copies, enables, strict=True):
        m.d.comb += enable_k.eq(~valid_k | ready)
    return valid_copies, enables


#: The platform attribute that, false, leaves out the :class:`ResetTree` of a dataflow
#: network (its parts then share the ``sync`` domain's reset net): on the iCE40 UP5K the
#: tree's logic cell per part made the Conv2D test model's smallest design unplaceable
#: (5,014 of 5,280 cells), and a small device's reset net is short.
RESET_TREE_HOOK = "reset_tree"


def _reset_copy(m: Module, name: str, parent, *, reset_less: bool = True) -> Signal:
    """A register ``name`` in ``m``'s ``sync`` domain that follows ``parent`` one edge
    later (1 at power-up, and in the domain's reset only when not ``reset_less``).  Its own
    output is part of its enable (it loads while it or ``parent`` is high, which changes
    nothing), so that Yosys does not merge copies of one parent."""
    copy = Signal(init=1, name=name, reset_less=reset_less)
    with m.If(parent | copy):
        m.d.sync += copy.eq(parent)
    return copy


class ResetTree:
    """The ``sync`` domain's reset, brought to the parts of a design through a tree of
    registers, each driving at most ``fanout`` others: :meth:`add` puts a part in a
    clock domain of its own (``sync``'s clock) whose reset is a leaf of the tree, and
    :meth:`leaf` gives a leaf as a signal; :meth:`build` then builds the levels above
    the leaves (consecutive leaves, parts added one after another, share their parents)
    up to one root.  Every leaf is :attr:`depth` registers from the reset, so every part
    leaves reset :attr:`depth` edges after the ``sync`` domain does, all on the same
    edge.  Only the root is in the domain's reset (so a ``ResetInserter`` on ``sync``
    reaches the parts through it too); the other registers follow their parents and
    start at 1.

    On the ECP5 ResNet-8's single reset net was its critical path (13.5 ns of routing
    at 65.4 MHz), and then, with one register per part, the net from the reset to its
    55 parts' registers (14.0 ns at 64.8 MHz).

    Only the parts' registers may be in the derived domains: Amaranth's simulator
    updates a domain whose clock is assigned from ``sync``'s one delta cycle after
    ``sync``, so a register of ``sync`` read by such a part would be seen one edge
    early (the leaves, too: there a part leaves reset an edge before the leaf does).
    Parts may read each other and ``sync`` may read them."""

    def __init__(self, m: Module, fanout: int = 8):
        assert fanout >= 2
        self.m, self.fanout = m, fanout
        self._parents: list[Signal] = []  # each leaf's parent, wired by build()
        self.depth: int | None = None  # known after build()

    def leaf(self, name: str) -> Signal:
        """A new leaf, as a register ``name``: 1 until :attr:`depth` edges after the
        reset falls."""
        parent = Signal(name=f"{name}_parent")
        self._parents.append(parent)
        return _reset_copy(self.m, name, parent)

    def add(self, name: str, part) -> None:
        """Add ``part`` to the module as submodule ``name``, its ``sync`` domain renamed
        to a domain ``name`` local to the module: ``sync``'s clock, and a leaf of the
        tree (``<name>_reset``) as its reset."""
        domain = ClockDomain(name, local=True)
        self.m.domains += domain
        self.m.d.comb += [domain.clk.eq(ClockSignal()),
                          domain.rst.eq(self.leaf(f"{name}_reset"))]
        self.m.submodules[name] = DomainRenamer(name)(part)

    def build(self) -> int:
        """Build the levels above the leaves and the root; returns :attr:`depth`."""
        m, level, depth = self.m, self._parents, 1
        while len(level) > self.fanout:
            groups = [level[k:k + self.fanout] for k in range(0, len(level), self.fanout)]
            above = []
            for number, group in enumerate(groups):
                parent = Signal(name=f"reset_node_{depth}_{number}_parent")
                node = _reset_copy(m, f"reset_node_{depth}_{number}", parent)
                m.d.comb += [child.eq(node) for child in group]
                above.append(parent)
            level, depth = above, depth + 1
        root = _reset_copy(m, "reset_root", ResetSignal(), reset_less=False)
        m.d.comb += [child.eq(root) for child in level]
        self.depth = depth + 1
        return self.depth


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
    a_reg = register(m, enable, a, f"{name}_a", reset_less=True)
    b_reg = register(m, enable, b, f"{name}_b", reset_less=True)
    return register(m, enable, a_reg * b_reg, name, reset_less=True)


def logic_terms(a: Value, b: Value) -> list[Value]:
    """The terms whose sum is ``a * b`` for signed ``a`` and ``b`` of any widths: ``a``
    shifted by each bit ``k`` of ``b`` where that bit is set, the sign bit's term
    negated.  Summed, they are a multiplier in LUTs and carry chains (additions only,
    which synthesis never maps to a DSP block)."""
    a = a.as_signed()
    top = len(b) - 1
    return ([Mux(b[k], a << k, 0) for k in range(top)]
            + [Mux(b[top], -(a << top), 0)])


def _balanced_sum(values: list) -> Value:
    while len(values) > 1:
        pairs = [x + y for x, y in zip(values[0::2], values[1::2], strict=False)]
        values = pairs + values[len(pairs) * 2:]
    return values[0]


def logic_product(m: Module, enable: Value, a: Value, b: Value, name: str, *,
                  stages: int = 2) -> Value:
    """``a * b`` in LUTs and carry chains (:func:`logic_terms`), two enabled edges after
    ``a`` and ``b``: each half of the terms summed in a balanced tree and registered,
    then the two halves added and registered, as a signed ``len(a) + len(b)``-bit value
    (every product of the operands fits).  ``a`` and ``b`` should come from registers:
    the first half-sum is the only logic before the first register.  ``b`` has at least
    two bits.  With ``stages=1`` (for a ``b`` of a few bits) all the terms are summed in
    one tree before one register, one enabled edge after ``a`` and ``b``."""
    terms = logic_terms(a, b)
    assert len(terms) >= 2, "logic_product needs a b of two bits or more"
    if stages == 1:
        return register(m, enable, _balanced_sum(terms), name, signed(len(a) + len(b)),
                        reset_less=True)
    half = len(terms) // 2
    low = register(m, enable, _balanced_sum(terms[:half]), f"{name}_low", reset_less=True)
    high = register(m, enable, _balanced_sum(terms[half:]), f"{name}_high", reset_less=True)
    return register(m, enable, low + high, name, signed(len(a) + len(b)), reset_less=True)
