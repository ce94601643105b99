"""The ECP5 cell models tfl2rtl adds to Yosys' for simulating netlists, tested on their
own: ``rtl_templates/ecp5_mult18x18d.v`` (MULT18X18D) against Python integers, in all
four sign modes, on every corner and a large random sample; and its refusal of the
configurations it does not model."""

import itertools
import re

import numpy as np
import pytest

from tfl2rtl.boards.postsynth import ECP5_MULT18X18D
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.sim.runner import run_testbench

MASK18 = (1 << 18) - 1
MASK36 = (1 << 36) - 1
#: Operand bit patterns of the corners: 0..3, the largest positive two's complement
#: values (0x1fffc..0x1ffff), the most negative ones or the unsigned midpoint
#: (0x20000..0x20003), the largest unsigned ones or -4..-1 (0x3fffc..0x3ffff), every
#: single bit set and every single bit clear.
CORNERS = sorted({*range(4), *range(0x1FFFC, 0x20004), *range(0x3FFFC, 0x40000),
                  *(1 << k for k in range(18)), *(MASK18 ^ (1 << k) for k in range(18))})
#: Random operand pairs per sign mode.
RANDOM_PER_MODE = 250_000
MODES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (SIGNEDA, SIGNEDB)


def _value(bits: int, signed: int) -> int:
    """The integer an 18-bit pattern stands for, two's complement when ``signed``."""
    return bits - (1 << 18) if signed and bits >> 17 else bits


def _bus(name: str, width: int, signal: str) -> str:
    return ", ".join(f".{name}{i}({signal}[{i}])" for i in range(width))


def _testbench(parameters: str = "", source_a: str = "1'b0") -> str:
    """A self-checking testbench: reads ``SIGNEDA SIGNEDB A B P`` lines (hex) from
    ``vectors.hex``, applies each to one MULT18X18D and stops with ``$fatal`` on the
    first P that differs; prints how many it checked in each sign mode."""
    return f"""`timescale 1ns / 1ps
module mult_tb;
    logic [17:0] a, b;
    logic sa, sb;
    wire [35:0] p;
    MULT18X18D {parameters} dut ({_bus("A", 18, "a")}, {_bus("B", 18, "b")},
        .SIGNEDA(sa), .SIGNEDB(sb), .SOURCEA({source_a}), .SOURCEB(1'b0),
        {_bus("P", 36, "p")});
    initial begin
        int fd, counts[4];
        logic [3:0] ma, mb;
        logic [17:0] va, vb;
        logic [35:0] want;
        counts = '{{0, 0, 0, 0}};
        #1;  // after the model's checks of its configuration at time 0
        fd = $fopen("vectors.hex", "r");
        if (fd == 0) $fatal(1, "no vectors.hex");
        while ($fscanf(fd, "%h %h %h %h %h\\n", ma, mb, va, vb, want) == 5) begin
            sa = ma[0]; sb = mb[0]; a = va; b = vb;
            #1;
            if (p !== want)
                $fatal(1, "SIGNEDA=%0d SIGNEDB=%0d A=%h B=%h: P=%h, expected %h",
                       sa, sb, a, b, p, want);
            counts[2 * sa + sb]++;
        end
        $display("checked %0d %0d %0d %0d", counts[0], counts[1], counts[2], counts[3]);
        $finish;
    end
endmodule
"""


def _vectors(seed: int = 16) -> tuple[str, list[int]]:
    """The lines of ``vectors.hex``: every pair of corners and ``RANDOM_PER_MODE``
    random pairs in each sign mode, each with its product from Python integers; and the
    count per mode."""
    rng = np.random.default_rng(seed)
    lines, counts = [], []
    for sa, sb in MODES:
        pairs = list(itertools.product(CORNERS, CORNERS))
        pairs += zip(rng.integers(0, 1 << 18, RANDOM_PER_MODE).tolist(),
                     rng.integers(0, 1 << 18, RANDOM_PER_MODE).tolist(), strict=True)
        lines += [f"{sa} {sb} {a:05x} {b:05x} "
                  f"{(_value(a, sa) * _value(b, sb)) & MASK36:09x}\n" for a, b in pairs]
        counts.append(len(pairs))
    return "".join(lines), counts


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mult_vectors")
    text, counts = _vectors()
    (folder / "vectors.hex").write_text(text)
    return folder / "vectors.hex", counts


def _run(tmp_path, vectors_file, model, **testbench) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    tb = tmp_path / "mult_tb.sv"
    tb.write_text(_testbench(**testbench))
    tmp_path.joinpath("vectors.hex").symlink_to(vectors_file)
    return run_testbench([model, tb], "mult_tb", tmp_path)


def test_corner_patterns():
    assert len(CORNERS) == 46
    assert _value(0x20000, 1) == -(1 << 17) and _value(0x20000, 0) == 1 << 17
    assert _value(MASK18, 1) == -1 and _value(MASK18, 0) == MASK18


def test_mult18x18d_equals_python_integers(vectors, tmp_path):
    """Every corner pair (46 x 46 = 2116) and 250,000 random pairs in each of the four
    sign modes: 1,008,464 products, all equal to Python's."""
    vectors_file, counts = vectors
    assert counts == [46 * 46 + RANDOM_PER_MODE] * 4
    out = _run(tmp_path, vectors_file, ECP5_MULT18X18D)
    checked = re.search(r"checked (\d+) (\d+) (\d+) (\d+)", out)
    assert checked, out
    assert [int(n) for n in checked.groups()] == counts


def test_a_wrong_sign_mode_fails(vectors, tmp_path):
    """The negative control: a model that reads A as unsigned whatever SIGNEDA says
    fails on the first signed product with a negative A."""
    model = ECP5_MULT18X18D.read_text()
    wrong = model.replace("{SIGNEDA & a[17], a}", "{1'b0, a}")
    assert wrong != model
    path = tmp_path / "wrong_mult18x18d.v"
    path.write_text(wrong)
    with pytest.raises(Tfl2RtlError, match=r"SIGNEDA=1 SIGNEDB=0 A=20000 B=00000: P="
                                           r"|SIGNEDA=1 SIGNEDB=0 A=20000 B=00001: P="):
        _run(tmp_path / "sim", vectors_file=vectors[0], model=path)


@pytest.mark.parametrize("parameters, refused", [
    ('#(.REG_INPUTA_CLK("CLK0"))', 'REG_INPUTA_CLK = "CLK0"'),
    ('#(.REG_OUTPUT_CLK("CLK1"))', 'REG_OUTPUT_CLK = "CLK1"'),
    ('#(.CAS_MATCH_REG("TRUE"))', 'CAS_MATCH_REG = "TRUE"'),
])
def test_mult18x18d_refuses_unmodelled_parameters(parameters, refused, tmp_path):
    tb = tmp_path / "mult_tb.sv"
    tb.write_text(_testbench(parameters=parameters))
    with pytest.raises(Tfl2RtlError, match=re.escape(refused) + " is not modelled"):
        run_testbench([ECP5_MULT18X18D, tb], "mult_tb", tmp_path)


def test_mult18x18d_refuses_a_cascade_input(tmp_path):
    tb = tmp_path / "mult_tb.sv"
    tb.write_text(_testbench(source_a="1'b1"))
    with pytest.raises(Tfl2RtlError, match="SOURCEA=1 SOURCEB=0: the shift-register "
                                           "cascade inputs are not modelled"):
        run_testbench([ECP5_MULT18X18D, tb], "mult_tb", tmp_path)
