"""The open toolchain's programs (the ``yowasp-*`` console scripts) and how they are run,
for the board builds (:mod:`.build`), the synthesis estimates (:mod:`.synth`) and the
post-synthesis netlists (:mod:`.postsynth`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tfl2rtl.errors import Tfl2RtlError

__all__ = ["tool", "run", "himbaechel_arguments"]


def tool(name: str) -> str:
    """A yowasp console script: beside this Python (the venv), or on ``PATH``."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        raise Tfl2RtlError(f"{name} is not installed: install it with `pip install "
                           f"{name.removesuffix('-ecp5').removesuffix('-ice40')}`")
    return path


def run(command: list[str], cwd: Path, log: Path) -> float:
    """Run ``command`` in ``cwd`` with its output in ``log``; returns the seconds it
    took.  A failure raises :class:`Tfl2RtlError` with the tool's first ``ERROR`` line
    (from its output or from the log it names with ``-l``/``--log``), or its last line:
    a build folder may go away with the failure, so the message carries the cause."""
    began = time.perf_counter()
    with log.open("w") as output:
        result = subprocess.run(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    if result.returncode:
        lines = log.read_text(errors="replace").splitlines()
        for flag, name in zip(command, command[1:], strict=False):
            if flag in ("-l", "--log") and (cwd / name).exists():  # the tool's own log
                lines += (cwd / name).read_text(errors="replace").splitlines()
        errors = [line.strip() for line in lines if line.strip().startswith("ERROR")]
        errors = errors or [line.strip() for line in lines if "ERROR" in line.upper()]
        cause = (errors[:1] or [line.strip() for line in lines if line.strip()][-1:]
                 or ["no output"])
        raise Tfl2RtlError(f"{Path(command[0]).name} failed (exit {result.returncode}): "
                           f"{cause[0]}")
    return time.perf_counter() - began


def himbaechel_arguments(arguments: list[str]) -> list[str]:
    """nextpnr-gowin's ``--family F`` and ``--cst FILE`` as nextpnr-himbaechel's
    ``--vopt family=F`` and ``--vopt cst=FILE`` (Amaranth's Apicula flow calls the
    legacy nextpnr-gowin; the yowasp wheel is the himbaechel one)."""
    out = []
    pairs = iter(arguments)
    for argument in pairs:
        if argument in ("--family", "--cst"):
            out += ["--vopt", f"{argument.removeprefix('--')}={next(pairs)}"]
        else:
            out.append(argument)
    return out
