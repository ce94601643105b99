"""The open toolchain's programs (the ``yowasp-*`` console scripts) and how they are run,
for the board builds (:mod:`.build`), the synthesis estimates (:mod:`.synth`) and the
post-synthesis netlists (:mod:`.postsynth`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tfl2rtl.errors import Tfl2RtlError

__all__ = ["tool", "run", "himbaechel_arguments", "ToolStalled", "RouterWatch",
           "ROUTER_LEAST_ITERATIONS", "ROUTER_PLATEAU", "ROUTER_CONGESTED",
           "ROUTER_MOST_ITERATIONS"]

#: nextpnr's router2 routes again and again while wires are overused, with no limit of
#: its own: a congested placement can keep it going for hours (vww_96_int8's 114-multiplier
#: design on the ULX3S at 60.71 MHz: 111 iterations in some 70 minutes, its overused
#: wires at best 158, at iteration 51, and 390 at the last).  :class:`RouterWatch` calls it
#: stalled once it has run ``ROUTER_LEAST_ITERATIONS`` iterations, the last
#: ``ROUTER_PLATEAU`` of them brought no new low of overused wires, and that low is still
#: ``ROUTER_CONGESTED`` wires or more; or, whatever the count, after
#: ``ROUTER_MOST_ITERATIONS``.  Routes that converged went long without a new low only
#: in their last few conflicts (measured on the ULX3S: person_detect's 55 MHz design 51
#: iterations at 1 overused wire, then 0 at iteration 107; ad01_int8's 37 at 15 and 16,
#: 0 at 158; person_detect's 71.875 MHz design 38 at 1 and 2, 0 at 136), never more than
#: 7 while 100 wires or more were overused (five routes of 40 to 158 iterations); vww's
#: stalled route is stopped at iteration 76.
ROUTER_LEAST_ITERATIONS = 50
ROUTER_PLATEAU = 25
ROUTER_CONGESTED = 100
ROUTER_MOST_ITERATIONS = 500


class ToolStalled(Tfl2RtlError):
    """A tool stopped by :func:`run` because its ``watch`` found it stalled (``reason``)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class RouterWatch:
    """Reads nextpnr's router2 iteration lines (``iter=N wires=W overused=O ...``) as its
    log grows (:meth:`feed`) and says when the router has stalled (see
    :data:`ROUTER_LEAST_ITERATIONS`)."""

    LINE = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")

    def __init__(self, least: int = ROUTER_LEAST_ITERATIONS, plateau: int = ROUTER_PLATEAU,
                 congested: int = ROUTER_CONGESTED, most: int = ROUTER_MOST_ITERATIONS):
        self.least, self.plateau, self.congested, self.most = least, plateau, congested, most
        self.overused: list[int] = []
        self._rest = ""

    def feed(self, text: str) -> str | None:
        """Take the log's next ``text``; the reason the router has stalled, or None."""
        lines = (self._rest + text).split("\n")
        self._rest = lines.pop()  # a line not yet ended
        self.overused += [int(m[2]) for m in map(self.LINE.search, lines) if m]
        iterations = len(self.overused)
        if iterations < self.least:
            return None
        low = min(self.overused)
        since = self.overused.index(low) + 1
        if iterations >= self.most:
            return (f"router2 is not converging: {iterations} iterations, overused wires "
                    f"at best {low} (iteration {since})")
        if iterations - since < self.plateau or low < self.congested:
            return None
        return (f"router2 is not converging: {iterations} iterations, overused "
                f"wires no lower than {low} since iteration {since}")


def tool(name: str) -> str:
    """A yowasp console script: beside this Python (the venv), or on ``PATH``."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        raise Tfl2RtlError(f"{name} is not installed: install it with `pip install "
                           f"{name.removesuffix('-ecp5').removesuffix('-ice40')}`")
    return path


def run(command: list[str], cwd: Path, log: Path, *, watch: RouterWatch | None = None,
        watched: Path | None = None, poll: float = 2.0) -> float:
    """Run ``command`` in ``cwd`` with its output in ``log``; returns the seconds it
    took.  A failure raises :class:`Tfl2RtlError` with the tool's first ``ERROR`` line
    (from its output or from the log it names with ``-l``/``--log``), or its last line:
    a build folder may go away with the failure, so the message carries the cause.

    With ``watch``, the file ``watched`` (the tool's own log) is read every ``poll``
    seconds as it grows and given to ``watch.feed``; when that names a reason, the tool
    is stopped and :class:`ToolStalled` raised."""
    began = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        try:
            stalled = _watch(process, watch, watched, poll) if watch is not None else None
            returncode = process.wait()
        finally:
            if process.poll() is None:  # interrupted: the tool goes too
                process.kill()
                process.wait()
    if stalled is not None:
        raise ToolStalled(f"{Path(command[0]).name} stopped: {stalled}", stalled)
    if returncode:
        lines = log.read_text(errors="replace").splitlines()
        for flag, name in zip(command, command[1:], strict=False):
            if flag in ("-l", "--log") and (cwd / name).exists():  # the tool's own log
                lines += (cwd / name).read_text(errors="replace").splitlines()
        errors = [line.strip() for line in lines if line.strip().startswith("ERROR")]
        errors = errors or [line.strip() for line in lines if "ERROR" in line.upper()]
        cause = (errors[:1] or [line.strip() for line in lines if line.strip()][-1:]
                 or ["no output"])
        raise Tfl2RtlError(f"{Path(command[0]).name} failed (exit {returncode}): "
                           f"{cause[0]}")
    return time.perf_counter() - began


def _watch(process: subprocess.Popen, watch: RouterWatch, watched: Path | None,
           poll: float) -> str | None:
    """Feed ``watch`` from ``watched`` until ``process`` ends (None) or ``watch`` names
    a reason (the process is then stopped, and the reason returned)."""
    offset = 0
    while True:
        ended = process.poll() is not None
        if watched is not None and watched.exists():
            with watched.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            offset += len(chunk)
            reason = watch.feed(chunk.decode(errors="replace"))
            if reason is not None and not ended:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                return reason
        if ended:
            return None
        time.sleep(poll)


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
