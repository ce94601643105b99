"""Where tfl2rtl writes: output folders and files that never destroy anyone else's.

Every verb that writes (``generate -o``, ``build -o``, ``run --dump``, ``sim --build-dir``
and ``--waves``, ``bench --plot``) goes through this module, with one rule:

- **tfl2rtl replaces only what it wrote itself, or nothing.**  A folder is written to a
  temporary folder beside the target and then renamed into place, replacing what was
  there only when that is nothing, an empty folder, or a folder tfl2rtl wrote that
  holds nothing else.  tfl2rtl knows its folders by :data:`MARKER`, a file in each that
  lists every file and folder it wrote there.
- **Anything else is refused with one line that names ``--force``**: a file where the
  folder should go, or a folder that holds anything tfl2rtl did not write (a
  ``-o .`` in a project, a file added to an earlier output).  ``force=True``
  (``--force``) writes tfl2rtl's files into such a folder and replaces the ones its
  marker lists, and nothing else: a name it would write that belongs to another file
  is refused still, and the other files stay as they were, byte for byte.  (Into a
  folder with other files, each file is replaced by one rename, not the whole folder.)
- **A single output file** (a waveform, a plot) is written beside the target and
  renamed into place.  It replaces a file only when tfl2rtl wrote it (the caller says
  how to recognise it, from its contents); another file or a folder never, with
  ``--force`` or without.
- **A path that cannot be written** (``/``, ``/proc/x``, a path under a file, a folder
  without write permission) is refused in one line before anything is done, and so is
  a refused target: :func:`check_folder` and :func:`check_file` let a verb refuse
  before its tools run.

Refusals are :class:`~tfl2rtl.errors.Tfl2RtlError` (the CLI prints one line and exits
with status 2).  A :class:`Destination` carries a path with its ``force`` and the option
that named it, through code that only passes the path on (the board build's).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import Tfl2RtlError

__all__ = ["MARKER", "Destination", "check_folder", "check_file", "staged_directory",
           "staged_file"]

#: The file in every folder tfl2rtl writes: JSON, ``{"written_by": "tfl2rtl",
#: "entries": [...]}`` with every file and folder (ending in ``/``) it wrote there,
#: relative to the folder.
MARKER = ".tfl2rtl-output.json"
FORCE = "--force replaces only tfl2rtl's own files, never others"


class Destination(os.PathLike):
    """An output path (``os.PathLike``) with the ``force`` it was given and the
    ``option`` that named it (for messages); the functions here take their defaults
    from it."""

    def __init__(self, path: str | os.PathLike, force: bool = False, option: str = "-o"):
        self.path = os.fspath(path)
        self.force = force
        self.option = option

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Destination({self.path!r}, force={self.force}, option={self.option!r})"


def _policy(target, force: bool | None, option: str | None) -> tuple[bool, str]:
    """``force`` and ``option`` as given, else ``target``'s (a :class:`Destination`)."""
    if force is None:
        force = getattr(target, "force", False)
    if option is None:
        option = getattr(target, "option", "-o")
    return force, option


def _shown(names, count: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def _usable(target: Path, option: str) -> Path:
    """``target`` made absolute, after the checks that do not depend on what is there:
    it has a name, and the nearest folder that exists above it can be written in."""
    path = Path(os.path.abspath(target))
    if path.parent == path or not path.name:
        raise Tfl2RtlError(f"{option} {target}: not a place for tfl2rtl's output; give a "
                           "new or empty folder")
    above = path.parent
    while not os.path.lexists(above):
        above = above.parent
    if not above.is_dir():
        raise Tfl2RtlError(f"{option} {target}: {above} is a file, so nothing can be "
                           "written under it")
    try:  # a probe: permissions, read-only and virtual file systems
        os.rmdir(tempfile.mkdtemp(prefix=".tfl2rtl-probe.", dir=above))
    except OSError as exc:
        raise Tfl2RtlError(f"{option} {target}: cannot write in {above} "
                           f"({exc.strerror or exc})") from None
    return path


def _entries(folder: Path) -> set[str]:
    """Every file and folder under ``folder`` (folders ending in ``/``), relative."""
    found = set()
    for root, dirs, files in os.walk(folder):
        here = Path(root).relative_to(folder)
        for name in dirs:
            path = Path(root) / name
            found.add((here / name).as_posix() + ("" if path.is_symlink() else "/"))
        found.update((here / name).as_posix() for name in files)
    return found


def _listed(folder: Path) -> set[str] | None:
    """What tfl2rtl's marker in ``folder`` says it wrote (None without a marker)."""
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
        if data.get("written_by") != "tfl2rtl":
            return None
        return {str(e) for e in data["entries"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _folder_state(path: Path) -> tuple[str, set[str]]:
    """What is at ``path``: ``absent``, ``file``, ``empty``, ``ours`` (a folder tfl2rtl
    wrote with nothing else in it) or ``mixed`` (a folder with anything else: returned
    with the names of what tfl2rtl did not write, and what it did)."""
    if not os.path.lexists(path):
        return "absent", set()
    if path.is_symlink() or not path.is_dir():
        return "file", set()
    if not any(path.iterdir()):
        return "empty", set()
    listed = _listed(path)
    if listed is None:
        return "mixed", {p.name for p in path.iterdir()}
    others = _entries(path) - listed - {MARKER}
    return ("mixed" if others else "ours"), others


def check_folder(target: str | os.PathLike, *, force: bool | None = None,
                 option: str | None = None) -> Path:
    """Refuse (:class:`Tfl2RtlError`, one line naming ``option``) unless tfl2rtl may
    write a folder at ``target`` under the module's rule; returns the absolute path."""
    force, option = _policy(target, force, option)
    path = _usable(target, option)
    state, others = _folder_state(path)
    if state == "file":
        raise Tfl2RtlError(f"{option} {target}: a file is there, not a folder tfl2rtl "
                           f"wrote; it is not replaced ({FORCE}): give a new folder")
    if state == "mixed" and not force:
        raise Tfl2RtlError(f"{option} {target}: the folder holds files tfl2rtl did not "
                           f"write ({_shown(others)}): give a new or empty folder, or "
                           "--force to write beside them (it replaces only tfl2rtl's own "
                           "files, never others)")
    return path


def _collisions(path: Path, names: set[str], listed: set[str]) -> list[str]:
    """The files tfl2rtl would write in ``path`` whose names belong to others."""
    taken = []
    for name in names:
        there = path / name.rstrip("/")
        if name == MARKER or name in listed or not os.path.lexists(there):
            continue
        if name.endswith("/") and there.is_dir() and not there.is_symlink():
            continue  # a folder of someone else's: tfl2rtl's files go in beside theirs
        taken.append(name.rstrip("/"))
    return taken


def _merge(path: Path, staged: Path, option: str, target) -> None:
    """With ``--force``: move ``staged``'s files into ``path`` one rename each, after
    removing the files an earlier marker there lists; others are never touched."""
    listed = _listed(path) or set()
    names = _entries(staged)
    taken = _collisions(path, names, listed)
    if taken:
        raise Tfl2RtlError(f"{option} {target}: {_shown(taken)} there "
                           f"{'is' if len(taken) == 1 else 'are'} not tfl2rtl's; "
                           f"{FORCE}: move {'it' if len(taken) == 1 else 'them'} or give "
                           "another folder")
    created = set()
    for name in sorted(n for n in names if n.endswith("/")):
        folder = path / name
        if not folder.is_dir():
            folder.mkdir()
            created.add(name)
    for name in sorted(listed - names, key=len, reverse=True):  # deepest first
        old = path / name.rstrip("/")
        with contextlib.suppress(OSError):
            if name.endswith("/"):
                old.rmdir()
            else:
                old.unlink()
    for name in sorted(n for n in names if not n.endswith("/")):
        os.replace(staged / name, path / name)
    mine = (names - {n for n in names if n.endswith("/")}) | created | (
        listed & {n for n in names if n.endswith("/")})
    _write_marker(path, mine)


def _write_marker(folder: Path, entries: set[str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{MARKER}.", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump({"written_by": "tfl2rtl", "entries": sorted(entries - {MARKER})}, f,
                  indent=1)
        f.write("\n")
    os.replace(tmp, folder / MARKER)


def _make_parents(path: Path) -> list[Path]:
    """Create the folders above ``path`` that are missing; returns them, top first."""
    missing = []
    above = path.parent
    while not above.exists():
        missing.append(above)
        above = above.parent
    for folder in reversed(missing):
        folder.mkdir()
    return list(reversed(missing))


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, *, force: bool | None = None,
                     keep_on_error: bool = False, option: str | None = None):
    """Yield an empty temporary folder beside ``target``; when the block ends, put it in
    place under the module's rule (with :data:`MARKER` added) or refuse.  On an
    exception nothing changes at ``target`` (and the folders made above it go again),
    except with ``keep_on_error``, where an :class:`Exception` still puts the folder in
    place (a simulation's build folder, whose logs say what failed) before it goes on.
    """
    force, option = _policy(target, force, option)
    path = check_folder(target, force=force, option=option)
    try:
        parents = _make_parents(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tfl2rtl-", dir=path.parent))
    except OSError as exc:
        raise Tfl2RtlError(f"{option} {target}: cannot write there "
                           f"({exc.strerror or exc})") from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        try:
            yield tmp
        except Exception:
            if not keep_on_error:
                raise
            _publish(path, tmp, force, option, target)
            raise
        _publish(path, tmp, force, option, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(parents)
        raise


def _publish(path: Path, tmp: Path, force: bool, option: str, target) -> None:
    """Put the staged folder ``tmp`` in place at ``path``."""
    _write_marker(tmp, _entries(tmp))
    state, _ = _folder_state(path)  # again: it may have changed meanwhile
    try:
        if state == "absent":
            tmp.rename(path)
        elif state in ("empty", "ours"):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.rmdir(old)
            path.rename(old)
            try:
                tmp.rename(path)
            except OSError:
                old.rename(path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            check_folder(path, force=force, option=option)  # refuses a file, or no force
            _merge(path, tmp, option, target)
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise Tfl2RtlError(f"{option} {target}: cannot write there "
                           f"({exc.strerror or exc})") from None


def check_file(target: str | os.PathLike, *, ours: Callable[[Path], bool],
               option: str | None = None) -> Path:
    """Refuse (:class:`Tfl2RtlError`, one line naming ``option``) unless tfl2rtl may
    write the file ``target``: nothing is there, or a file ``ours`` recognises as
    tfl2rtl's (never another file, nor a folder).  Returns the absolute path."""
    _, option = _policy(target, None, option)
    path = _usable(target, option)
    if not os.path.lexists(path):
        return path
    if path.is_dir() and not path.is_symlink():
        raise Tfl2RtlError(f"{option} {target}: a folder is there; give a file name "
                           f"({FORCE})")
    if path.is_symlink() or not path.is_file() or not ours(path):
        raise Tfl2RtlError(f"{option} {target}: a file tfl2rtl did not write is there; it "
                           f"is not replaced ({FORCE}): give another name")
    return path


@contextlib.contextmanager
def staged_file(target: str | os.PathLike, *, ours: Callable[[Path], bool],
                option: str | None = None):
    """Yield a path beside ``target`` (with its suffix) to write the file to; when the
    block ends, rename it into place after :func:`check_file` (again), or on an
    exception remove it and leave ``target`` as it was."""
    _, option = _policy(target, None, option)
    path = check_file(target, ours=ours, option=option)
    try:
        parents = _make_parents(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tfl2rtl-", suffix=path.suffix,
                                    dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise Tfl2RtlError(f"{option} {target}: cannot write there "
                           f"({exc.strerror or exc})") from None
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        check_file(path, ours=ours, option=option)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise Tfl2RtlError(f"{option} {target}: cannot write there "
                               f"({exc.strerror or exc})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _remove_empty(parents)
        raise
