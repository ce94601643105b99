"""Output paths that never destroy (tfl2rtl.output): every verb that writes refuses a
file, a folder with other files and a path it cannot write, in one line and with exit
status 2, before any tool runs; it replaces only what tfl2rtl wrote, in one rename; and
--force writes beside other files without touching them."""

import json
import os

import numpy as np
import pytest

from conftest import ZOO
from tfl2rtl.cli import main
from tfl2rtl.errors import Tfl2RtlError
from tfl2rtl.output import (
    MARKER,
    Destination,
    check_file,
    check_folder,
    staged_directory,
    staged_file,
)

HELLO = str(ZOO / "tflite_micro" / "hello_world_int8.tflite")


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes (and every folder), by relative path."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder) + "/"] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def foreign_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("my notes")
    (path / "src").mkdir()
    (path / "src" / "a.v").write_text("module a; endmodule\n")
    return path


def refused(capsys, argv, *words) -> str:
    """Run the CLI in this process: exit status 2, one ``tfl2rtl: error:`` line on stderr
    containing ``words``, nothing on stdout."""
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfl2rtl: error:"), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def x(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[42]], np.int8))
    return path


#: Every verb that writes: whether it writes a folder or a file, the option that names
#: the path, and its arguments for a path.
VERBS = {
    "generate": ("folder", "-o", lambda p, x: ["generate", HELLO, "-o", p]),
    "build": ("folder", "-o", lambda p, x: ["build", HELLO, "--board", "icebreaker", "-o", p]),
    "run_dump": ("folder", "--dump", lambda p, x: ["run", HELLO, "--input", x, "--dump", p]),
    "sim_build_dir": ("folder", "--build-dir",
                      lambda p, x: ["sim", HELLO, "--inputs", 2, "--build-dir", p]),
    "sim_waves": ("file", "--waves", lambda p, x: ["sim", HELLO, "--inputs", 2, "--waves", p]),
    "bench_plot": ("file", "--plot", lambda p, x: ["bench", HELLO, "--plot", p]),
}
SUFFIX = {"sim_waves": ".vcd", "bench_plot": ".png"}


@pytest.mark.parametrize("verb", VERBS)
def test_an_existing_file_is_refused(verb, tmp_path, x, capsys):
    kind, option, argv = VERBS[verb]
    target = tmp_path / f"out{SUFFIX.get(verb, '.npy')}"
    target.write_bytes(b"the user's own bytes")
    line = refused(capsys, argv(target, x), option, str(target), "--force")
    assert ("a file is there" if kind == "folder" else "a file tfl2rtl did not write") in line
    assert target.read_bytes() == b"the user's own bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.npy", target.name])


@pytest.mark.parametrize("verb", VERBS)
def test_a_folder_with_foreign_files_is_refused(verb, tmp_path, x, capsys):
    kind, option, argv = VERBS[verb]
    target = foreign_folder(tmp_path / f"out{SUFFIX.get(verb, '')}")
    before = snapshot(target)
    line = refused(capsys, argv(target, x), option, "--force")
    if kind == "folder":
        assert "holds files tfl2rtl did not write (notes.txt, src)" in line
    else:
        assert "a folder is there" in line
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.npy", target.name])


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("where", ["proc", "under_a_file", "root"])
def test_a_path_that_cannot_be_written_is_refused(verb, where, tmp_path, x, capsys):
    kind, option, argv = VERBS[verb]
    suffix = SUFFIX.get(verb, "")
    if where == "proc":
        target, words = f"/proc/x{suffix}", ["cannot write in /proc"]
    elif where == "under_a_file":
        (tmp_path / "file.txt").write_text("a file")
        target, words = tmp_path / "file.txt" / f"out{suffix}", ["file.txt is a file"]
    else:
        target, words = "/", ["not a place for tfl2rtl's output"]
    refused(capsys, argv(target, x), option, *words)
    if where == "under_a_file":
        assert (tmp_path / "file.txt").read_text() == "a file"


@pytest.mark.parametrize("verb", ["sim_waves", "bench_plot"])
def test_an_empty_folder_is_no_file(verb, tmp_path, x, capsys):
    _, option, argv = VERBS[verb]
    target = tmp_path / f"out{SUFFIX[verb]}"
    target.mkdir()
    refused(capsys, argv(target, x), option, "a folder is there")
    assert list(target.iterdir()) == []


def test_generate_into_an_empty_folder_then_over_its_own_output(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["generate", HELLO, "-o", str(out)]) == 0
    first = snapshot(out)
    marker = json.loads((out / MARKER).read_text())
    assert marker["written_by"] == "tfl2rtl"
    assert set(marker["entries"]) == set(first) - {MARKER}
    assert {"tfl2rtl_top.v", "manifest.json", "mem/"} <= set(first)
    # Again, folded otherwise: replaced whole, nothing left of the first beside it.
    assert main(["generate", HELLO, "-o", str(out), "--fold", "full"]) == 0
    second = snapshot(out)
    assert second != first and set(second) == set(first)
    assert json.loads(second["manifest.json"])["folding"] == "full"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folders left
    capsys.readouterr()


def test_run_dump_into_an_empty_folder_then_over_its_own_output(tmp_path, x, capsys):
    dump = tmp_path / "dump"
    dump.mkdir()
    assert main(["run", HELLO, "--input", str(x), "--dump", str(dump)]) == 0
    first = snapshot(dump)
    assert len([n for n in first if n.endswith(".npy")]) == 4 and MARKER in first
    y = tmp_path / "y.npy"
    np.save(y, np.array([[-7]], np.int8))
    assert main(["run", HELLO, "--input", str(y), "--dump", str(dump)]) == 0
    second = snapshot(dump)
    assert set(second) == set(first) and second["000_serving_default_dense_input_0.npy"] != \
        first["000_serving_default_dense_input_0.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump", "x.npy", "y.npy"]
    capsys.readouterr()


def test_force_writes_beside_other_files_and_replaces_only_its_own(tmp_path, capsys):
    out = foreign_folder(tmp_path / "project")
    theirs = snapshot(out)
    assert main(["generate", HELLO, "-o", str(out), "--force"]) == 0
    capsys.readouterr()
    first = snapshot(out)
    assert {k: v for k, v in first.items() if k in theirs} == theirs
    ours = set(json.loads((out / MARKER).read_text())["entries"])
    assert ours == set(first) - set(theirs) - {MARKER}
    # An earlier output with a file added by the user: refused without --force...
    (out / "mem" / "mine.txt").write_text("keep")
    refused(capsys, ["generate", HELLO, "-o", out], "holds files tfl2rtl did not write "
            "(mem/mine.txt, notes.txt, src/ and 1 more)", "--force to write beside them")
    # ...with it, tfl2rtl's files are replaced (a smaller design has fewer memories),
    # the user's stay.
    assert main(["generate", HELLO, "-o", str(out), "--force", "--fold", "full"]) == 0
    capsys.readouterr()
    after = snapshot(out)
    assert {k: after[k] for k in theirs} == theirs and after["mem/mine.txt"] == b"keep"
    assert json.loads(after["manifest.json"])["folding"] == "full"
    # A name tfl2rtl writes that belongs to someone else: refused even with --force.
    (out / MARKER).unlink()
    before = snapshot(out)
    refused(capsys, ["generate", HELLO, "-o", out, "--force"], "manifest.json, mem/node00_"
            "bias.hex, mem/node00_weights.hex and 5 more there are not tfl2rtl's", "--force "
            "replaces only tfl2rtl's own files, never others")
    assert snapshot(out) == before
    capsys.readouterr()


# --- the shared mechanism, for the verbs whose tools are too slow to run here ------


def test_a_folder_is_replaced_in_one_rename_or_not_at_all(tmp_path):
    """What ``build -o`` and ``sim --build-dir`` do at their end (they pass a
    :class:`Destination` to :func:`staged_directory`): an earlier output is replaced
    whole; a failure while writing leaves it byte for byte."""
    out = tmp_path / "out"
    with staged_directory(Destination(out)) as tmp:
        (tmp / "report.txt").write_text("first")
        (tmp / "logs").mkdir()
        (tmp / "logs" / "yosys.log").write_text("log")
    first = snapshot(out)
    assert set(first) == {"report.txt", "logs/", "logs/yosys.log", MARKER}
    with pytest.raises(RuntimeError, match="nextpnr failed"):
        with staged_directory(Destination(out)) as tmp:
            (tmp / "report.txt").write_text("half")
            raise RuntimeError("nextpnr failed")
    assert snapshot(out) == first
    with staged_directory(Destination(out)) as tmp:
        (tmp / "report.txt").write_text("second")
    assert snapshot(out) == {"report.txt": b"second", MARKER: (out / MARKER).read_bytes()}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # The board build passes its path on as a Destination: its force and option hold.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Tfl2RtlError, match=r"^--build-dir .*notes\.txt.*--force"):
        with staged_directory(Destination(out, option="--build-dir")):
            pass
    with staged_directory(Destination(out, force=True)) as tmp:
        (tmp / "report.txt").write_text("third")
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "report.txt").read_text() == "third"
    empty = tmp_path / "empty"
    empty.mkdir()
    with staged_directory(empty) as tmp:
        (tmp / "a").write_text("a")
    assert set(snapshot(empty)) == {"a", MARKER}


def test_a_build_folder_is_kept_when_the_run_fails(tmp_path):
    """``sim --build-dir``: the logs are what the user wants when the build fails."""
    out = tmp_path / "build"
    with pytest.raises(Tfl2RtlError, match="the Verilator build failed"):
        with staged_directory(out, keep_on_error=True) as tmp:
            (tmp / "build.log").write_text("%Error: ...")
            raise Tfl2RtlError("the Verilator build failed")
    assert (out / "build.log").read_text() == "%Error: ..."
    with pytest.raises(KeyboardInterrupt):  # not on an interrupt
        with staged_directory(tmp_path / "other", keep_on_error=True) as tmp:
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


def test_missing_parents_are_made_and_removed_again_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_directory(tmp_path / "a" / "b" / "out"):
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with staged_directory(tmp_path / "a" / "b" / "out") as tmp:
        (tmp / "f").write_text("f")
    assert (tmp_path / "a" / "b" / "out" / "f").read_text() == "f"


def test_a_file_replaces_only_a_file_tfl2rtl_wrote(tmp_path):
    """What ``sim --waves`` and ``bench --plot`` do: written beside and renamed into
    place; an earlier file of tfl2rtl's is replaced, a failure leaves it as it was."""
    def ours(path):
        return path.read_bytes().startswith(b"tfl2rtl")

    target = tmp_path / "run.vcd"
    with staged_file(target, ours=ours, option="--waves") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".vcd"
        tmp.write_bytes(b"tfl2rtl 1")
    assert target.read_bytes() == b"tfl2rtl 1"
    with pytest.raises(RuntimeError):
        with staged_file(target, ours=ours) as tmp:
            tmp.write_bytes(b"tfl2rtl half")
            raise RuntimeError
    assert target.read_bytes() == b"tfl2rtl 1"
    with staged_file(target, ours=ours) as tmp:
        tmp.write_bytes(b"tfl2rtl 2")
    assert target.read_bytes() == b"tfl2rtl 2"
    assert [p.name for p in tmp_path.iterdir()] == ["run.vcd"]
    target.write_bytes(b"someone's waveform")
    with pytest.raises(Tfl2RtlError, match=r"^--waves .*run\.vcd: a file tfl2rtl did not "
                                           r"write is there; it is not replaced \(--force"):
        check_file(target, ours=ours, option="--waves")


def test_check_folder_states(tmp_path):
    assert check_folder(tmp_path / "new") == tmp_path / "new"
    assert not (tmp_path / "new").exists()
    (tmp_path / "f").write_text("f")
    with pytest.raises(Tfl2RtlError, match=r"^-o .*f: a file is there, not a folder "
                                           r"tfl2rtl wrote; it is not replaced"):
        check_folder(tmp_path / "f", force=True)
    assert check_folder(foreign_folder(tmp_path / "p"), force=True) == tmp_path / "p"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "p")
    with pytest.raises(Tfl2RtlError, match="a file is there"):
        check_folder(link, force=True)


def test_the_waveform_and_plot_recognisers(tmp_path):
    from tfl2rtl.boards.bench import is_own_plot, plot
    from tfl2rtl.sim.runner import is_own_waveform

    png = plot([], tmp_path / "p.png")
    assert is_own_plot(png)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure()
    figure.savefig(tmp_path / "other.png")
    plt.close(figure)
    assert not is_own_plot(tmp_path / "other.png")
    vcd = tmp_path / "w.vcd"
    vcd.write_text("$version Generated by VerilatedVcd $end\n$timescale 1ps $end\n"
                   " $scope module TOP $end\n  $scope module axis_harness $end\n"
                   "  $var wire 1 # clk $end\n $upscope $end\n$enddefinitions $end\n#0\n")
    assert is_own_waveform(vcd)
    vcd.write_text("$version Generated by VerilatedVcd $end\n $scope module cpu $end\n"
                   "$enddefinitions $end\n")
    assert not is_own_waveform(vcd)


def test_sim_writes_its_build_folder_and_waves_where_the_rule_allows(tmp_path, capsys):
    """One real run of ``sim --build-dir`` into an empty folder with ``--waves``: both
    land (the build folder marked as tfl2rtl's, the VCD one tfl2rtl knows as its own,
    so the next run may replace them)."""
    from tfl2rtl.sim.runner import is_own_waveform

    build = tmp_path / "build"
    build.mkdir()
    waves = tmp_path / "w.vcd"
    assert main(["sim", HELLO, "--inputs", "2", "--fold", "full", "--build-dir", str(build),
                 "--waves", str(waves)]) == 0  # fully folded: the smallest traced build
    assert capsys.readouterr().out.startswith("OK:")
    assert (build / "sim.log").exists() and (build / MARKER).exists()
    check_folder(build)  # tfl2rtl's: may be replaced
    assert is_own_waveform(waves)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "w.vcd"]


def test_bench_replaces_its_own_plot(tmp_path, capsys):
    plot = tmp_path / "bench.png"
    assert main(["bench", HELLO, "--plot", str(plot)]) == 0
    first = plot.read_bytes()
    assert main(["bench", HELLO, "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bench.png"] and first
    capsys.readouterr()


def test_negative_control_without_the_rule_a_foreign_folder_is_lost(tmp_path, monkeypatch,
                                                                    capsys):
    """The tests above can fail: with every folder taken for tfl2rtl's own (the rule
    off), ``generate`` swaps a folder of the user's files for its output, and the
    snapshot comparison sees it."""
    import tfl2rtl.output as output

    monkeypatch.setattr(output, "_folder_state", lambda path: (
        ("absent", set()) if not path.exists() else ("ours", set())))
    out = foreign_folder(tmp_path / "project")
    before = snapshot(out)
    assert main(["generate", HELLO, "-o", str(out)]) == 0
    capsys.readouterr()
    assert "notes.txt" not in snapshot(out) and snapshot(out) != before
