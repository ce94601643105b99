"""The ECP5 cell models tfl2rtl adds to Yosys' for simulating netlists, tested on their
own: ``rtl_templates/ecp5_mult18x18d.v`` (MULT18X18D) against Python integers, in all
four sign modes, on every corner and a large random sample;
``rtl_templates/ecp5_dp16kd.v`` (DP16KD) against a Python model of the block RAM, in
every width and write mode Yosys' mapping uses, over each port's whole address space;
and the refusals of the configurations they do not model."""

import functools
import itertools
import random
import re
from dataclasses import dataclass

import numpy as np
import pytest

from tfl2rtl.boards.postsynth import ECP5_DP16KD, ECP5_MULT18X18D
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
#: The parameters tfl2rtl's ECP5 platform hook gives the MULT18X18D it instantiates
#: (tfl2rtl.boards.ecp5): input registers and output register on CLK0, CE0, RST0.
REGISTERED = ('#(.REG_INPUTA_CLK("CLK0"), .REG_INPUTB_CLK("CLK0"), '
              '.REG_OUTPUT_CLK("CLK0"))')


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
    ('#(.REG_INPUTA_CLK("CLK1"))', 'REG_INPUTA_CLK = "CLK1"'),
    ('#(.REG_INPUTA_CLK("CLK0"))', 'REG_INPUTB_CLK = "NONE"'),
    ('#(.REG_INPUTB_CLK("CLK0"))', 'REG_INPUTB_CLK = "CLK0"'),
    ('#(.REG_OUTPUT_CLK("CLK1"))', 'REG_OUTPUT_CLK = "CLK1"'),
    ('#(.REG_INPUTA_CLK("CLK0"), .REG_INPUTB_CLK("CLK0"))', 'REG_OUTPUT_CLK = "NONE"'),
    (REGISTERED[:-1] + ', .REG_PIPELINE_CLK("CLK0"))', 'REG_PIPELINE_CLK = "CLK0"'),
    (REGISTERED[:-1] + ', .REG_INPUTA_CE("CE1"))', 'REG_INPUTA_CE = "CE1"'),
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


# --- MULT18X18D with its input and output registers ----------------------------------

#: Clock cycles per sign mode in the registered test (each with a random CE).
REGISTERED_CYCLES = 20_000


def _registered_testbench(rst: str = "1'b0") -> str:
    """A self-checking testbench of the registered MULT18X18D: reads ``SIGNEDA SIGNEDB
    CE A B P`` lines (hex) from ``vectors.hex``, one per clock cycle: applies the inputs
    before a rising edge, compares P after it; prints how many cycles it checked."""
    return f"""`timescale 1ns / 1ps
module mult_tb;
    logic [17:0] a = 0, b = 0;
    logic sa = 0, sb = 0, ce = 0, clk = 0;
    wire [35:0] p;
    MULT18X18D {REGISTERED} dut ({_bus("A", 18, "a")}, {_bus("B", 18, "b")},
        .SIGNEDA(sa), .SIGNEDB(sb), .SOURCEA(1'b0), .SOURCEB(1'b0), .CLK0(clk), .CE0(ce),
        .RST0({rst}), {_bus("P", 36, "p")});
    initial begin
        int fd, cycles;
        logic [3:0] ma, mb, mce;
        logic [17:0] va, vb;
        logic [35:0] want;
        cycles = 0;
        #1;
        fd = $fopen("vectors.hex", "r");
        if (fd == 0) $fatal(1, "no vectors.hex");
        while ($fscanf(fd, "%h %h %h %h %h %h\\n", ma, mb, mce, va, vb, want) == 6) begin
            sa = ma[0]; sb = mb[0]; ce = mce[0]; a = va; b = vb;
            #1 clk = 1;
            #1 clk = 0;
            if (p !== want)
                $fatal(1, "cycle %0d: SIGNEDA=%0d SIGNEDB=%0d: P=%h, expected %h",
                       cycles, sa, sb, p, want);
            cycles++;
        end
        $display("checked %0d", cycles);
        $finish;
    end
endmodule
"""


def _registered_vectors(seed: int = 18) -> tuple[str, int]:
    """One line per clock cycle: in each sign mode every pair of corners in turn and
    then ``REGISTERED_CYCLES`` random operands, each cycle's CE random (high 3 times in
    4), and the P expected after its edge from a Python model of the two register
    stages (the output register takes the product of the input registers' values, in
    the sign mode of that cycle)."""
    rng = np.random.default_rng(seed)
    a_reg = b_reg = p_reg = 0
    lines = []
    for sa, sb in MODES:
        pairs = list(itertools.product(CORNERS[::3], CORNERS[::5]))
        pairs += zip(rng.integers(0, 1 << 18, REGISTERED_CYCLES).tolist(),
                     rng.integers(0, 1 << 18, REGISTERED_CYCLES).tolist(), strict=True)
        enables = (rng.random(len(pairs)) < 0.75).tolist()
        for (a, b), ce in zip(pairs, enables, strict=True):
            if ce:
                p_reg = (_value(a_reg, sa) * _value(b_reg, sb)) & MASK36
                a_reg, b_reg = a, b
            lines.append(f"{sa} {sb} {int(ce)} {a:05x} {b:05x} {p_reg:09x}\n")
    return "".join(lines), len(lines)


def test_registered_mult18x18d_equals_python_integers(tmp_path, summary):
    """The registered configuration, cycle by cycle with a random clock enable, in all
    four sign modes: P is the product of the operands of two enabled edges before."""
    text, cycles = _registered_vectors()
    (tmp_path / "vectors.hex").write_text(text)
    tb = tmp_path / "mult_tb.sv"
    tb.write_text(_registered_testbench())
    out = run_testbench([ECP5_MULT18X18D, tb], "mult_tb", tmp_path)
    checked = re.search(r"checked (\d+)", out)
    assert checked and int(checked.group(1)) == cycles, out
    summary(f"registered MULT18X18D: {cycles} cycles equal to the Python model")


def test_a_registered_model_without_its_input_register_fails(tmp_path):
    """The negative control: a model whose output register takes the product of the
    ports (one stage, not two) fails at once."""
    model = ECP5_MULT18X18D.read_text()
    wrong = model.replace("p_reg <= reg_product[35:0];", "p_reg <= product[35:0];")
    assert wrong != model
    path = tmp_path / "wrong_mult18x18d.v"
    path.write_text(wrong)
    text, _ = _registered_vectors()
    (tmp_path / "vectors.hex").write_text(text)
    tb = tmp_path / "mult_tb.sv"
    tb.write_text(_registered_testbench())
    with pytest.raises(Tfl2RtlError, match=r"cycle \d+: SIGNEDA=0 SIGNEDB=0: P="):
        run_testbench([path, tb], "mult_tb", tmp_path)


def test_registered_mult18x18d_refuses_a_reset(tmp_path):
    tb = tmp_path / "mult_tb.sv"
    tb.write_text(_registered_testbench(rst="1'b1"))
    (tmp_path / "vectors.hex").write_text("0 0 1 00001 00001 000000000\n")
    with pytest.raises(Tfl2RtlError, match="RST0=1: a reset of the registers is not modelled"):
        run_testbench([ECP5_MULT18X18D, tb], "mult_tb", tmp_path)


# --- DP16KD -------------------------------------------------------------------------

#: The port widths of the true dual-port mode, and the write modes, Yosys' ECP5 mapping
#: (share/lattice/brams_16kd.txt) chooses from; 36 is the write port of its pseudo
#: dual-port mode (port B then reads at any width, 36 included).
DP_WIDTHS = (1, 2, 4, 9, 18)
WRITE_MODES = ("NORMAL", "WRITETHROUGH", "READBEFOREWRITE")
#: Pairs of different port widths tested (A, B): those the zoo's netlists use (a 1- or
#: 4-bit port beside an 18-bit one, 4 and 9 bits) both ways round, and 2 with 9 bits.
MIXED_WIDTHS = ((1, 18), (18, 1), (4, 18), (18, 4), (2, 9), (9, 2), (4, 9), (9, 4))
#: Cycles of random operations on both ports per configuration, after the sweeps.
RANDOM_CYCLES = 2000
#: The 16 bits of an 18-bit row the 1-, 2- and 4-bit widths reach (8 and 17 are the
#: ninth bits of its bytes, reached at 9 and 18 bits only).
NARROW_BITS = [b for b in range(18) if b not in (8, 17)]


@dataclass(frozen=True)
class Ram:
    """One DP16KD configuration: port widths and write modes."""

    width_a: int
    width_b: int
    mode_a: str
    mode_b: str

    @property
    def name(self) -> str:
        return f"a{self.width_a}_{self.mode_a[:2]}_b{self.width_b}_{self.mode_b[:2]}".lower()


def _configurations() -> list[Ram]:
    """Every width on each port in every write mode: each width with itself in each mode
    on port A (port B in the next mode), the pairs of ``MIXED_WIDTHS`` (the modes
    turning), and the pseudo dual-port mode with each read width."""
    rams = [Ram(w, w, m, WRITE_MODES[(i + 1) % 3])
            for w in DP_WIDTHS for i, m in enumerate(WRITE_MODES)]
    rams += [Ram(a, b, WRITE_MODES[k % 3], WRITE_MODES[(k + 2) % 3])
             for k, (a, b) in enumerate(MIXED_WIDTHS)]
    rams += [Ram(36, b, "NORMAL", WRITE_MODES[k % 3])
             for k, b in enumerate((*DP_WIDTHS, 36))]
    return rams


RAMS = _configurations()


@functools.cache
def _bits(width: int, ad: int) -> list[int]:
    """The array bits (18 * row + bit) a port of ``width`` reaches at address pins
    ``ad``, its data bit 0 first."""
    if width == 36:
        return [18 * (2 * (ad >> 5)) + j for j in range(36)]
    row = 18 * (ad >> 4)
    if width == 18:
        return [row + j for j in range(18)]
    if width == 9:
        return [row + 9 * (ad >> 3 & 1) + j for j in range(9)]
    first = (ad & 15) // width * width
    return [row + NARROW_BITS[first + j] for j in range(width)]


@functools.cache
def _enables(width: int, ad: int) -> list[int]:
    """Per data bit, whether a write reaches it: its byte enable (address pin j // 9) at
    18 and 36 bits, always at the narrower widths."""
    if width >= 18:
        return [ad >> (j // 9) & 1 for j in range(width)]
    return [1] * width


def _address(width: int, unit: int, rng) -> int:
    """The address pins of word ``unit`` at ``width``, the pins that width ignores (or
    uses as byte enables) random."""
    shift = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4, 36: 5}[width]
    return unit << shift | rng.getrandbits(shift)


class RamModel:
    """The DP16KD in Python: the 18,432-bit array and the two output registers, one
    clock edge (both ports' pins) at a time."""

    def __init__(self, ram: Ram, initval: list[int]):
        self.ram = ram
        self.mem = [initval[r // 16] >> (20 * (r % 16) + b) & 1
                    for r in range(1024) for b in range(18)]
        self.out = {"A": 0, "B": 0, "B_low": 0}

    def touched(self, port: str, ce: int, we: int, ad: int) -> tuple[set, set]:
        """The array bits a port reads and writes at this edge."""
        width = self.ram.width_a if port == "A" else self.ram.width_b
        if not ce:
            return set(), set()
        bits = _bits(width, ad)
        written = {b for b, e in zip(bits, _enables(width, ad), strict=True) if we and e}
        read = set() if port == "A" and width == 36 else set(bits)
        return read, written

    def edge(self, cea, wea, ada, dia, ceb, web, adb, dib):
        """Both ports at one rising edge; returns (DOA, DOA mask, DOB, DOB mask), the
        outputs after it and the bits of them to check."""
        mem, ram, writes = self.mem, self.ram, []  # writes land after both ports read
        if cea and ram.width_a == 36 and wea:
            data = dia | dib << 18
            writes += [(b, data >> j & 1) for j, (b, e) in
                       enumerate(zip(_bits(36, ada), _enables(36, ada), strict=True)) if e]
        for port, ce, we, ad, di, width, mode in (
                ("A", cea, wea, ada, dia, ram.width_a, ram.mode_a),
                ("B", ceb, web, adb, dib, ram.width_b, ram.mode_b)):
            if not ce or width == 36:
                continue
            bits = _bits(width, ad)
            before = sum(mem[b] << j for j, b in enumerate(bits))
            after = before
            if we:
                for j, (b, e) in enumerate(zip(bits, _enables(width, ad), strict=True)):
                    if e:
                        writes.append((b, di >> j & 1))
                        after = after & ~(1 << j) | (di >> j & 1) << j
            if mode == "READBEFOREWRITE" or (mode == "NORMAL" and not we):
                self.out[port] = before
            elif mode == "WRITETHROUGH":
                self.out[port] = after
        if ceb and ram.width_b == 36:
            value = sum(mem[b] << j for j, b in enumerate(_bits(36, adb)))
            self.out["B_low"], self.out["B"] = value & 0x3FFFF, value >> 18
        for b, v in writes:
            mem[b] = v
        if ram.width_a == 36:
            doa, mask_a = self.out["B_low"], 0x3FFFF if ram.width_b == 36 else 0
        else:
            doa, mask_a = self.out["A"], (1 << ram.width_a) - 1
        return doa, mask_a, self.out["B"], (1 << min(ram.width_b, 18)) - 1


def _ram_vectors(ram: Ram, rng) -> tuple[list[int], list[str], dict]:
    """Random INITVAL contents and the cycles of ``vectors``: both ports read their whole
    address space (the INITVAL contents); port A writes its whole space; both read
    theirs; port B writes its whole space; both read theirs (port A only writes at 36
    bits, and port B only reads then); then ``RANDOM_CYCLES`` random operations
    on both ports within 64 rows, so reads meet fresh writes and each port reads where
    it writes.  A port whose clock enable is off gets random pins (which must do
    nothing), and a cycle where one port would read or write bits the other writes has
    port B's clock enable turned off (Lattice leaves that collision undefined).  Each
    line: ``CEA WEA ADA DIA CEB WEB ADB DIB DOA mask DOB mask`` in hex, the outputs
    those after the edge.  Also returns how many port reads and writes (a port with its
    clock enable on, reading, writing) the lines hold."""
    initval = [rng.getrandbits(320) for _ in range(64)]
    model = RamModel(ram, initval)
    depth = {w: (16384 if w <= 4 else 18432) // w for w in (1, 2, 4, 9, 18, 36)}
    lines, counts = [], {"reads": 0, "writes": 0}

    def cycle(a, b):
        (cea, wea, ada, dia), (ceb, web, adb, dib) = a, b
        web = 0 if pdp else web  # port B of the 36-bit mode has its WE tied to 0
        if cea and wea or ceb and web:
            read_a, write_a = model.touched("A", cea, wea, ada)
            read_b, write_b = model.touched("B", ceb, web, adb)
            if write_a & (read_b | write_b) or write_b & read_a:
                ceb = 0
        counts["reads"] += bool(cea and not pdp) + bool(ceb)
        counts["writes"] += bool(cea and wea) + bool(ceb and web)
        out = model.edge(cea, wea, ada, dia, ceb, web, adb, dib)
        lines.append(" ".join(f"{v:x}" for v in (cea, wea, ada, dia, ceb, web, adb, dib, *out)))

    def idle():
        return (0, rng.getrandbits(1), rng.getrandbits(14),
                rng.getrandbits(18))

    def access(width, unit, write):
        # A write sweep enables every byte; the address pins a width ignores are random.
        ad = _address(width, unit, rng)
        if write and width >= 18:
            ad |= (1 << (width // 9)) - 1
        return (1, int(write), ad, rng.getrandbits(18))

    wa, wb = ram.width_a, ram.width_b
    pdp = wa == 36
    for write_a, write_b in ((False, False), (True, False), (False, False), (False, True),
                             (False, False)):
        if pdp and write_b:
            continue
        ports = []
        for width, write, reads in ((wa, write_a, not pdp), (wb, write_b, True)):
            busy = write or (reads and not (write_a or write_b))
            ports.append([access(width, i, write) if busy and i < depth[width] else idle()
                          for i in range(max(depth[wa], depth[wb]))])
        for a, b in zip(*ports, strict=True):
            cycle(a, b)
    window = 64  # rows
    for _ in range(RANDOM_CYCLES):
        ports = []
        for width, writes in ((wa, True), (wb, not pdp)):
            unit = rng.randrange(window * depth[width] // 1024)
            ad = _address(width, unit, rng)
            ports.append((int(rng.random() < 0.8), int(writes and rng.random() < 0.5), ad,
                          rng.getrandbits(18)))
        if pdp and not ports[0][1]:
            ports[0] = (0, *ports[0][1:])
        cycle(*ports)
    return initval, lines, counts


def _ram_testbench(rams: list[Ram], initvals: list[list[int]]) -> str:
    """A self-checking testbench: one DP16KD per configuration with its INITVAL
    contents, each driven from ``<name>.hex`` on its own clock, stopping with ``$fatal``
    on the first output that differs from the Python model's; prints how many cycles it
    checked."""
    blocks = []
    for k, (ram, initval) in enumerate(zip(rams, initvals, strict=True)):
        name = ram.name
        params = [f".DATA_WIDTH_A({ram.width_a})", f".DATA_WIDTH_B({ram.width_b})",
                  f'.WRITEMODE_A("{ram.mode_a}")', f'.WRITEMODE_B("{ram.mode_b}")',
                  '.RESETMODE("ASYNC")', '.ASYNC_RESET_RELEASE("ASYNC")', '.GSR("DISABLED")']
        params += [f".INITVAL_{i:02X}(320'h{v:080x})" for i, v in enumerate(initval)]
        pins = ", ".join(
            [f".{p}{i}({s}_{k}[{i}])" for p, s, n in (
                ("DIA", "dia", 18), ("DIB", "dib", 18), ("ADA", "ada", 14), ("ADB", "adb", 14),
                ("DOA", "doa", 18), ("DOB", "dob", 18)) for i in range(n)]
            + [f".CEA(cea_{k})", f".WEA(wea_{k})", f".CEB(ceb_{k})", f".WEB(web_{k})",
               f".CLKA(clk_{k})", f".CLKB(clk_{k})", ".OCEA(1'b1)", ".OCEB(1'b1)",
               ".RSTA(1'b0)", ".RSTB(1'b0)", ".CSA0(1'b0)", ".CSA1(1'b0)", ".CSA2(1'b0)",
               ".CSB0(1'b0)", ".CSB1(1'b0)", ".CSB2(1'b0)"])
        blocks.append(f"""
    logic clk_{k} = 0, cea_{k}, wea_{k}, ceb_{k}, web_{k};
    logic [13:0] ada_{k}, adb_{k};
    logic [17:0] dia_{k}, dib_{k};
    wire [17:0] doa_{k}, dob_{k};
    DP16KD #({", ".join(params)}) ram_{k} ({pins});
    initial begin
        int fd, line;
        logic [17:0] want_a, mask_a, want_b, mask_b;
        line = 0;
        fd = $fopen("{name}.hex", "r");
        if (fd == 0) $fatal(1, "no {name}.hex");
        while ($fscanf(fd, "%h %h %h %h %h %h %h %h %h %h %h %h\\n", cea_{k}, wea_{k}, ada_{k},
                       dia_{k}, ceb_{k}, web_{k}, adb_{k}, dib_{k}, want_a, mask_a, want_b,
                       mask_b) == 12) begin
            line++;
            #1 clk_{k} = 1;
            #1;
            if (((doa_{k} ^ want_a) & mask_a) !== 18'b0 || ((dob_{k} ^ want_b) & mask_b) !== 18'b0)
                $fatal(1, "{name} cycle %0d: DOA=%h DOB=%h, expected %h %h (masks %h %h)",
                       line, doa_{k}, dob_{k}, want_a, want_b, mask_a, mask_b);
            cycles++;
            clk_{k} = 0;
        end
        done++;
    end""")
    return f"""`timescale 1ns / 1ps
module ram_tb;
    int cycles = 0, done = 0;
{"".join(blocks)}
    initial begin
        wait (done == {len(rams)});
        $display("checked %0d cycles", cycles);
        $finish;
    end
endmodule
"""


@pytest.fixture(scope="module")
def ram_vectors(tmp_path_factory):
    """Every configuration's INITVAL contents, vector file (``<name>.hex``) and counts."""
    folder = tmp_path_factory.mktemp("ram_vectors")
    rng = random.Random(16)
    initvals, counts = [], []
    for ram in RAMS:
        initval, lines, count = _ram_vectors(ram, rng)
        (folder / f"{ram.name}.hex").write_text("\n".join(lines) + "\n")
        initvals.append(initval)
        counts.append({"cycles": len(lines), **count})
    return folder, initvals, counts


def _run_rams(tmp_path, folder, rams, initvals, model=ECP5_DP16KD) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for ram in rams:
        tmp_path.joinpath(f"{ram.name}.hex").symlink_to(folder / f"{ram.name}.hex")
    tb = tmp_path / "ram_tb.sv"
    tb.write_text(_ram_testbench(rams, initvals))
    return run_testbench([model, tb], "ram_tb", tmp_path)


def test_weight_banks_are_one_dp16kd_deep():
    """The ECP5's weight banks (boards.ecp5.weight_bank_rows): the shapes it picks from
    are the DP16KD's, as this file tests the cell's model (every width, 16,384 bits of
    array below 9 bits a word and 18,432 from 9), and a memory of any width gets the
    deepest shape whose words hold it, or the widest's depth."""
    from tfl2rtl.boards.ecp5 import DP16KD_CONFIGURATIONS, weight_bank_rows

    assert {bits for _, bits in DP16KD_CONFIGURATIONS} == {*DP_WIDTHS, 36}
    assert all(rows * bits == (18432 if bits >= 9 else 16384)
               for rows, bits in DP16KD_CONFIGURATIONS)
    for width in range(1, 130):
        rows = weight_bank_rows(width)
        holding = [r for r, bits in DP16KD_CONFIGURATIONS if bits >= min(width, 36)]
        assert rows == max(holding) and rows & (rows - 1) == 0


def test_ram_configurations():
    assert len(RAMS) == len(set(RAMS)) == 5 * 3 + len(MIXED_WIDTHS) + 6
    assert {r.width_a for r in RAMS} == {r.width_b for r in RAMS} == {*DP_WIDTHS, 36}
    for w in DP_WIDTHS:
        assert {r.mode_a for r in RAMS if r.width_a == w} == set(WRITE_MODES)
        assert {r.mode_b for r in RAMS if r.width_b == w} == set(WRITE_MODES)
    # The narrow widths reach every bit of the array but the ninth of each byte; 9 and
    # 18 reach every bit; each exactly once over the whole address space.
    for width in (*DP_WIDTHS, 36):
        step = {1: 1, 2: 2, 4: 4, 9: 8, 18: 16, 36: 32}[width]
        reached = [b for ad in range(0, 16384, step) for b in _bits(width, ad)]
        assert len(reached) == len(set(reached))
        assert set(reached) == {18 * r + b for r in range(1024)
                                for b in (NARROW_BITS if width <= 4 else range(18))}


def test_dp16kd_equals_the_python_model(ram_vectors, tmp_path, summary):
    """Each configuration of ``RAMS`` (29: every width and write mode on each port) reads
    back its random INITVAL contents over its whole address space on both ports, writes
    all of it through one port and reads it through the other, both ways, then runs
    random operations: every output after every edge equals the Python model's."""
    folder, initvals, counts = ram_vectors
    out = _run_rams(tmp_path, folder, RAMS, initvals)
    checked = re.search(r"checked (\d+) cycles", out)
    assert checked, out
    assert int(checked.group(1)) == sum(c["cycles"] for c in counts)
    reads, writes = sum(c["reads"] for c in counts), sum(c["writes"] for c in counts)
    summary(f"DP16KD model: {len(RAMS)} configurations, {int(checked.group(1)):,} cycles, "
            f"{reads:,} port reads and {writes:,} port writes equal to the Python model")


@pytest.mark.parametrize("wrong, original, rams", [
    # The narrow widths reading bits 0-15 of a row (ignoring that 8 and 17 are the ninth
    # bits of its bytes): 4-bit reads of the INITVAL contents differ.
    ("position + 0", "position + (position >= 8 ? 1 : 0)",
     [Ram(4, 4, "NORMAL", "WRITETHROUGH")]),
    # Port A in WRITETHROUGH giving the old data: a read during a write differs.
    ('WRITEMODE_A == "READBEFOREWRITE" || WRITEMODE_A == "WRITETHROUGH") doa_q <= old;',
     'WRITEMODE_A == "READBEFOREWRITE") doa_q <= old;',
     [Ram(9, 9, "WRITETHROUGH", "READBEFOREWRITE")]),
])
def test_a_wrong_dp16kd_fails(wrong, original, rams, ram_vectors, tmp_path):
    """The negative controls: a model with one deliberate mistake fails the same
    vectors."""
    folder, initvals, _ = ram_vectors
    model = ECP5_DP16KD.read_text()
    assert model.count(original) == 1
    path = tmp_path / "wrong_dp16kd.v"
    path.write_text(model.replace(original, wrong))
    chosen = [initvals[RAMS.index(ram)] for ram in rams]
    with pytest.raises(Tfl2RtlError,
                       match=rf"{rams[0].name} cycle \d+: DOA=\w+ DOB=\w+, expected"):
        _run_rams(tmp_path / "sim", folder, rams, chosen, model=path)


def _single_ram(parameters: str, rsta: str = "1'b0") -> str:
    """One DP16KD with ``parameters`` (and GSR = "DISABLED" unless they set it: the other
    defaults are a modelled configuration) and RSTA tied to ``rsta``; prints ``ran``
    after the model's checks at time 0."""
    settings = ", ".join(filter(None, ['' if "GSR" in parameters else '.GSR("DISABLED")',
                                       parameters]))
    return f"""`timescale 1ns / 1ps
module ram_tb;
    wire [17:0] doa, dob;
    DP16KD #({settings}) dut (.CLKA(1'b0), .CLKB(1'b0), .CEA(1'b0),
        .CEB(1'b0), .WEA(1'b0), .WEB(1'b0), .RSTA({rsta}), .RSTB(1'b0), .CSA0(1'b0),
        .CSA1(1'b0), .CSA2(1'b0), .CSB0(1'b0), .CSB1(1'b0), .CSB2(1'b0));
    initial begin
        #1 $display("ran");
        $finish;
    end
endmodule
"""


@pytest.mark.parametrize("parameters, refused", [
    ("", None),  # the control: a modelled configuration runs
    (".DATA_WIDTH_A(3)", "DATA_WIDTH_A = 3 is not modelled"),
    (".DATA_WIDTH_B(36)", "DATA_WIDTH_B = 36 with DATA_WIDTH_A = 18 is not modelled"),
    ('.REGMODE_B("OUTREG")', 'REGMODE_B = "OUTREG" is not modelled'),
    ('.CLKAMUX("INV")', 'CLKAMUX = "INV" is not modelled'),
    ('.GSR("ENABLED")', 'GSR = "ENABLED" is not modelled'),
])
def test_dp16kd_refuses_unmodelled_parameters(parameters, refused, tmp_path):
    tb = tmp_path / "ram_tb.sv"
    tb.write_text(_single_ram(parameters))
    if refused is None:
        assert "ran" in run_testbench([ECP5_DP16KD, tb], "ram_tb", tmp_path)
        return
    with pytest.raises(Tfl2RtlError, match=re.escape(refused)):
        run_testbench([ECP5_DP16KD, tb], "ram_tb", tmp_path)


def test_dp16kd_refuses_an_output_reset(tmp_path):
    tb = tmp_path / "ram_tb.sv"
    tb.write_text(_single_ram("", rsta="1'b1"))
    with pytest.raises(Tfl2RtlError, match="RSTA=1 RSTB=0: the output resets are not modelled"):
        run_testbench([ECP5_DP16KD, tb], "ram_tb", tmp_path)


def test_dp16kd_does_not_declare_the_routing_parameters(tmp_path):
    """Yosys never sets DIA0MUX and its like: the model does not declare them, so a
    netlist that sets one fails to build."""
    tb = tmp_path / "ram_tb.sv"
    tb.write_text(_single_ram('.DIA0MUX("INV")'))
    with pytest.raises(Tfl2RtlError, match="DIA0MUX"):
        run_testbench([ECP5_DP16KD, tb], "ram_tb", tmp_path)
