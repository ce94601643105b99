"""The toolchain runner (:mod:`tfl2rtl.boards.tools`): nextpnr's router watched as it
runs, and stopped when it no longer converges."""

import sys
import time

import pytest

from tfl2rtl.boards.tools import (
    ROUTER_CONGESTED,
    ROUTER_LEAST_ITERATIONS,
    ROUTER_MOST_ITERATIONS,
    ROUTER_PLATEAU,
    RouterWatch,
    ToolStalled,
    run,
)


def _lines(overused, first=1):
    return "".join(f"Info:     iter={first + k} wires={1000 + k} overused={o} overuse={o} "
                   "archfail=NA\n" for k, o in enumerate(overused))


def test_a_converging_router_is_left_alone():
    """Overuse that keeps reaching new lows, however long, is not a stall."""
    watch = RouterWatch()
    overused = [10_000 // (k + 1) for k in range(3 * ROUTER_LEAST_ITERATIONS)]
    assert watch.feed(_lines(overused)) is None
    assert len(watch.overused) == len(overused)


def test_a_plateau_is_a_stall_after_the_least_iterations():
    """A plateau of ``ROUTER_PLATEAU`` iterations with no new low counts only after
    ``ROUTER_LEAST_ITERATIONS`` iterations, and is named with its low and where it was;
    the log may arrive in pieces that cut lines."""
    low_at = ROUTER_LEAST_ITERATIONS - ROUTER_PLATEAU  # the low's iteration
    overused = [1000 - k for k in range(low_at)] + [1000] * ROUTER_PLATEAU
    text = _lines(overused)
    watch, said = RouterWatch(), []
    for start in range(0, len(text), 37):  # pieces that end inside lines
        said.append(watch.feed(text[start:start + 37]))
    assert said[:-1] == [None] * (len(said) - 1)
    assert said[-1] == (f"router2 is not converging: {ROUTER_LEAST_ITERATIONS} iterations, "
                        f"overused wires no lower than {1000 - low_at + 1} since iteration "
                        f"{low_at}")
    # One iteration fewer on the plateau: not yet.
    assert RouterWatch().feed(_lines(overused[:-1] + [0])) is None
    assert RouterWatch().feed(_lines(overused[:-1])) is None


def test_the_last_few_conflicts_are_not_a_stall():
    """A plateau below ``ROUTER_CONGESTED`` overused wires (a converging route's last
    conflicts, which may take dozens of iterations) is left alone until
    ``ROUTER_MOST_ITERATIONS``; at ``ROUTER_CONGESTED`` it is a stall."""
    decay = [10_000 // (k + 1) for k in range(ROUTER_LEAST_ITERATIONS)]
    few = ROUTER_CONGESTED - 1
    endgame = [k for k in decay if k > few] + [few] * ROUTER_MOST_ITERATIONS
    watch = RouterWatch()
    assert watch.feed(_lines(endgame[:ROUTER_MOST_ITERATIONS - 1])) is None
    low_at = len(endgame) - ROUTER_MOST_ITERATIONS + 1
    assert watch.feed(_lines([few], ROUTER_MOST_ITERATIONS)) == (
        f"router2 is not converging: {ROUTER_MOST_ITERATIONS} iterations, overused wires "
        f"at best {few} (iteration {low_at})")
    congested = [k for k in decay if k > ROUTER_CONGESTED] + [ROUTER_CONGESTED] * (
        ROUTER_LEAST_ITERATIONS)
    stalled_at = len(congested) - ROUTER_LEAST_ITERATIONS + 1 + ROUTER_PLATEAU
    assert RouterWatch().feed(_lines(congested[:stalled_at])).endswith(
        f"no lower than {ROUTER_CONGESTED} since iteration {stalled_at - ROUTER_PLATEAU}")
    assert RouterWatch().feed(_lines(congested[:stalled_at - 1])) is None


def test_run_stops_a_stalled_tool(tmp_path):
    """A real process that writes a router log which stops converging, then would run
    for a minute: run() stops it within a few polls and raises ToolStalled; without a
    watch the same kind of process runs to its end."""
    log, tool_log = tmp_path / "out.log", tmp_path / "tool.tim"
    stalled_log = _lines([5 * ROUTER_CONGESTED] * 200)
    script = (f"import sys, time\nopen({str(tool_log)!r}, 'w').write({stalled_log!r})\n"
              "time.sleep(60)\n")
    began = time.perf_counter()
    with pytest.raises(ToolStalled, match=r"^python\S* stopped: router2 is not converging: "
                                          r"200 iterations") as stalled:
        run([sys.executable, "-c", script], tmp_path, log, watch=RouterWatch(),
            watched=tool_log, poll=0.1)
    assert time.perf_counter() - began < 30
    assert (f"no lower than {5 * ROUTER_CONGESTED} since iteration 1"
            in stalled.value.reason)
    tool_log.unlink()
    quick = "import sys\nprint('done')\n"
    assert run([sys.executable, "-c", quick], tmp_path, log, watch=RouterWatch(),
               watched=tool_log, poll=0.1) >= 0
    assert log.read_text() == "done\n"


def test_run_reports_a_failing_tool(tmp_path):
    """A tool that fails gets its first ERROR line in the message, watched or not."""
    script = "import sys\nprint('Info: fine')\nprint('ERROR: no room')\nsys.exit(3)\n"
    for watch in (None, RouterWatch()):
        with pytest.raises(Exception, match=r"failed \(exit 3\): ERROR: no room") as e:
            run([sys.executable, "-c", script], tmp_path, tmp_path / "out.log", watch=watch,
                watched=tmp_path / "none.tim", poll=0.1)
        assert not isinstance(e.value, ToolStalled)
