"""Find the audio files of a library: recursive, deterministic, robust.

The scan is the one place that walks the file system. It returns entries in a
deterministic order (names sorted within each folder, depth first), skips
hidden files and macOS ``._*`` AppleDouble files, follows symlinked folders
once (no loops), and reports unreadable folders instead of failing. Every
audio-named entry gets a row, even one that cannot be read: a broken symlink,
a symlink loop, a FIFO named ``.mp3`` (which is never opened). File names
that are not valid UTF-8 survive as ``str`` with surrogate escapes, so the
exact bytes can always be recovered with ``os.fsencode``.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for name in ["b.MP3", "a/x.flac", ".hidden.mp3", "._a.mp3", "notes.txt"]:
...     (d / name).parent.mkdir(exist_ok=True); _ = (d / name).write_bytes(b"x")
>>> [e.relpath for e in scan_library(d).files]
['a/x.flac', 'b.MP3']
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from dataclasses import dataclass, field

from crate_dask.errors import FatalError

#: Extensions treated as audio, compared case-insensitively.
AUDIO_EXTENSIONS = frozenset({
    "mp3", "flac", "wav", "wave", "aif", "aiff", "aifc", "ogg", "oga", "opus", "m4a", "mp4", "m4b",
    "aac", "alac", "wma", "wv", "ape", "mpc", "dsf", "dff",
})


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One audio file found by the scan (paths relative to the library root)."""

    relpath: str
    size: int
    mtime_ns: int
    ino: int = 0
    problem: str | None = None   # listed, but cannot be stat'ed or is not a regular file: never opened


@dataclass
class ScanResult:
    root: str
    files: list[FileEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # unreadable folders, symlink loops


def is_audio_name(name: str) -> bool:
    """Whether a file name looks like audio (by extension) and is not hidden."""
    if name.startswith("."):
        return False
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return ext in AUDIO_EXTENSIONS


def scan_library(root: str | os.PathLike) -> ScanResult:
    """Scan ``root`` recursively for audio files.

    Raises
    ------
    FatalError
        If ``root`` does not exist or is not a folder.
    """
    root_s = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root_s):
        raise FatalError(f"library folder not found: {root_s}")
    result = ScanResult(root=root_s)
    st = os.stat(root_s)
    _walk(root_s, "", {(st.st_dev, st.st_ino)}, result)
    return result


def _walk(abs_dir: str, rel_dir: str, active: set[tuple[int, int]], result: ScanResult) -> None:
    try:
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        result.problems.append(f"cannot read folder {rel_dir or '.'}: {exc.strerror or exc}")
        return
    for e in entries:
        if e.name.startswith("."):   # hidden files and folders, AppleDouble '._*'
            continue
        rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
        try:
            is_dir = e.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            try:
                st = e.stat(follow_symlinks=True)
            except OSError as exc:
                result.problems.append(f"cannot read folder {rel}: {exc.strerror or exc}")
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in active:   # a symlink back to an ancestor: a loop
                result.problems.append(f"skipped symlink loop at {rel}")
                continue
            _walk(e.path, rel, active | {ident}, result)
        elif is_audio_name(e.name):
            try:
                st = e.stat(follow_symlinks=True)
            except OSError as exc:   # a broken symlink, a symlink loop, a file that vanished: still one row
                why = stat_problem(exc, e.is_symlink())[1]
                result.files.append(FileEntry(rel, -1, 0, 0, f"cannot stat file: {why}"))
                continue
            if stat_mod.S_ISREG(st.st_mode):
                result.files.append(FileEntry(rel, st.st_size, st.st_mtime_ns, st.st_ino))
            else:   # a FIFO named .mp3 would block whoever opens it: a row that says what it is, never opened
                result.files.append(FileEntry(rel, st.st_size, st.st_mtime_ns, st.st_ino,
                                              not_regular_problem(st.st_mode)[1]))


def stat_problem(exc: OSError, is_symlink: bool) -> tuple[str, str]:
    """(error type, words) for a file that cannot be stat'ed.

    >>> import errno
    >>> stat_problem(OSError(errno.ELOOP, "Too many levels of symbolic links"), True)
    ('unreadable', 'symlink loop')
    >>> stat_problem(FileNotFoundError(errno.ENOENT, "No such file or directory"), True)
    ('unreadable', 'broken symlink')
    """
    if exc.errno == errno.ELOOP:
        return "unreadable", "symlink loop"
    if isinstance(exc, FileNotFoundError):
        return ("unreadable", "broken symlink") if is_symlink else ("vanished", "file vanished during the scan")
    if isinstance(exc, PermissionError):
        return "permission", "permission denied"
    return "unreadable", exc.strerror or str(exc)


def not_regular_problem(mode: int) -> tuple[str, str]:
    """(error type, words) for something with an audio name that is not a regular file.

    >>> not_regular_problem(stat_mod.S_IFIFO)
    ('unreadable', 'not a regular file: a named pipe (FIFO)')
    """
    kind = ("named pipe (FIFO)" if stat_mod.S_ISFIFO(mode) else "socket" if stat_mod.S_ISSOCK(mode)
            else "device" if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode) else "special file")
    return "unreadable", f"not a regular file: a {kind}"


def display_path(path: str) -> str:
    """``path`` as valid UTF-8 text: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def library_path(root: str, relpath: str) -> str:
    """The absolute path of ``relpath`` under ``root`` (str, surrogate-escaped)."""
    return os.path.join(root, *relpath.split("/"))


def rel_sort_key(relpath: str) -> tuple[str, ...]:
    """The scan order: by path components (so 'a/b' sorts before 'a b')."""
    return tuple(relpath.split("/"))
