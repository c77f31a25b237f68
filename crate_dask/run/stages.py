"""Per-file stages, and the one place where errors become rows.

A row goes through ``file`` (path columns, size, mtime, content id), ``tags``
(mutagen) and, unless metadata-only, ``audio`` (decode + tempo + key). Each
stage is run by :func:`run_stage`: an expected problem with the file becomes
``error_stage``/``error_type``/``error`` in the row and later stages are skipped; an
unexpected exception is logged as a bug and *still* becomes a row, so every
file found gets exactly one row whatever happens.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat as stat_mod
import time
from typing import Any, Callable, Sequence

from crate_dask.config import AnalysisSettings
from crate_dask.errors import AnalysisTimeout, FileChangedError, FileProblem, WorkInterrupted  # noqa: F401 (AnalysisTimeout: doctest)
from crate_dask.library.scan import FileEntry, display_path, library_path, not_regular_problem, stat_problem
from crate_dask.schema import empty_row

log = logging.getLogger(__name__)

_ID_CHUNK = 8192


def content_id(path: str, size: int) -> str:
    """A cheap identity of a file's content: hash of its size and its first and last 8 KiB.

    Survives renames and moves (unlike the path) and changes when tags or audio
    are rewritten. Reads at most 16 KiB, mostly the tag area mutagen reads anyway.
    """
    return _ident(path, size)[0]


def _ident(path: str, size: int) -> tuple[str, bytes]:
    """(content id, first bytes) of ``path``."""
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        head = fh.read(_ID_CHUNK)
        h.update(head)
        if size > 2 * _ID_CHUNK:
            fh.seek(-_ID_CHUNK, os.SEEK_END)
            h.update(fh.read(_ID_CHUNK))
        elif size > _ID_CHUNK:
            h.update(fh.read())
    return h.hexdigest(), head


def file_facts(root: str, entry: FileEntry) -> dict[str, Any]:
    """The path columns of a row: known without opening the file."""
    path = library_path(root, entry.relpath)
    ext = entry.relpath.rsplit(".", 1)[-1].lower() if "." in entry.relpath.rsplit("/", 1)[-1] else ""
    row = empty_row()
    row.update(path=display_path(path), path_bytes=os.fsencode(path), relpath=display_path(entry.relpath),
               ext=ext, size=entry.size if entry.size >= 0 else None,
               mtime_ns=entry.mtime_ns or None)   # mtime is derived from mtime_ns when the table is built
    return row


def check_file(path: str, entry: FileEntry) -> dict[str, Any]:
    """Stage ``file``: the file is still there, unchanged since the scan; compute its content id."""
    if entry.problem:
        raise FileChangedError(entry.problem, error_type=_problem_type(path))
    try:
        st = os.stat(path)
    except OSError as exc:
        error_type, why = stat_problem(exc, os.path.islink(path))
        raise FileChangedError("file vanished during the run" if error_type == "vanished"
                               else f"cannot stat file: {why}", error_type=error_type) from None
    if not stat_mod.S_ISREG(st.st_mode):   # replaced by a FIFO since the scan: opening it would block
        error_type, why = not_regular_problem(st.st_mode)
        raise FileChangedError(why, error_type=error_type)
    if st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
        # Analyse what is there now, but say so: the next run sees the new size/mtime and redoes it.
        log.info("%s changed since the scan", path)
    try:
        cid, head = _ident(path, st.st_size)
        return {"content_id": cid, "_head": head}   # the head saves the tags stage a format sniff
    except PermissionError:
        raise FileChangedError("permission denied", error_type="permission") from None
    except OSError as exc:
        raise FileChangedError(f"cannot read file: {exc.strerror or exc}") from None


def _problem_type(path: str) -> str:
    """The error type of a file the scan could not use, from its condition now."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return stat_problem(exc, os.path.islink(path))[0]
    return "vanished" if stat_mod.S_ISREG(st.st_mode) else not_regular_problem(st.st_mode)[0]


def read_file_tags(path: str, head: bytes | None = None) -> dict[str, Any]:
    """Stage ``tags``."""
    from crate_dask.library.tags import read_tags

    return read_tags(path, head=head)


def analyze_audio(path: str, settings: AnalysisSettings) -> dict[str, Any]:
    """Stage ``audio`` (in-process): decode an excerpt once, estimate tempo, key, beat grid and loudness."""
    from crate_dask.features.signal import analyze_signal
    from crate_dask.library.audio import load_excerpt

    t0 = time.perf_counter()
    ex = load_excerpt(path, **settings.excerpt_options())
    cols = analyze_signal(ex.y, sr=ex.sr, settings=settings, offset_s=ex.offset_s, key_windows=ex.key_windows)
    cols["gapless_delay_s"] = round(ex.gapless_delay_s, 6)
    cols["analysis_s"] = round(time.perf_counter() - t0, 4)
    return cols


def run_stage(stage: str, fn: Callable[..., dict], row: dict[str, Any], *args: Any, **kw: Any) -> dict:
    """Run one stage on ``row``; the only place where exceptions become row fields.

    A :class:`FileProblem` gives ``error_stage``, ``error_type`` (its structured
    cause), ``error`` and, for a time or memory limit, ``error_limit``. An
    interrupted run (:class:`WorkInterrupted`) is never data: it propagates.

    >>> row = run_stage("tags", lambda: (_ for _ in ()).throw(AnalysisTimeout("slow", limit=5.0)),
    ...                 {"error": None, "path": "x.mp3"})
    >>> row["error_stage"], row["error_type"], row["error_limit"]
    ('tags', 'timeout', 5.0)
    """
    if row["error"] is not None:   # an earlier stage failed: pass the row through
        return row
    try:
        row.update(fn(*args, **kw))
    except FileProblem as exc:   # a bad file is an expected outcome
        row.update(error_stage=stage, error_type=exc.error_type, error=str(exc), error_limit=exc.limit)
    except (MemoryError, WorkInterrupted):
        raise                    # a worker problem or a cancelled run, not a property of the file
    except Exception as exc:     # a bug: keep the row, make it loud
        log.exception("bug in stage %s on %s", stage, row.get("path"))
        row.update(error_stage=stage, error_type="bug", error=f"BUG {type(exc).__name__}: {exc}")
    return row


def process_file(root: str, entry: FileEntry, settings: AnalysisSettings,
                 audio: Callable[[str, AnalysisSettings], dict] | None = None) -> dict[str, Any]:
    """All stages for one file, in this process; always returns exactly one row.

    ``audio`` runs the audio stage (default: in-process :func:`analyze_audio`).
    The pipeline uses :func:`process_files`, which isolates reading.
    """
    path = library_path(root, entry.relpath)
    row = file_facts(root, entry)
    run_stage("file", check_file, row, path, entry)
    run_stage("tags", read_file_tags, row, path, row.pop("_head", None))
    if not settings.metadata_only:
        run_stage("audio", audio or analyze_audio, row, path, settings)
    return row


def process_files(root: str, entries: Sequence[FileEntry], settings: AnalysisSettings,
                  runner: Any = None) -> list[dict[str, Any]]:
    """All stages for many files; tags and audio are read in the isolated ``runner``, one row per file.

    ``runner`` is a :class:`crate_dask.run.isolation.FileRunner` (default: the
    worker's, with the audio stack unless metadata-only). The ``file`` stage
    (stat, content id) runs here: it reads 16 KiB and cannot hang on content.

    Raises
    ------
    WorkInterrupted
        The run is being cancelled: no row is returned for any of these files.
    """
    from crate_dask.run.isolation import get_runner, unwrap

    runner = runner or get_runner(audio=not settings.metadata_only)
    paths = [library_path(root, e.relpath) for e in entries]
    rows = [file_facts(root, e) for e in entries]
    for row, path, entry in zip(rows, paths, entries):
        run_stage("file", check_file, row, path, entry)
    stages = ("tags",) if settings.metadata_only else ("tags", "audio")
    for stage in stages:
        todo = [i for i, r in enumerate(rows) if r["error"] is None]
        jobs = [(stage, (paths[i], rows[i].pop("_head", None)) if stage == "tags" else (paths[i],)) for i in todo]
        for i, result in zip(todo, runner.run(jobs, settings)):
            run_stage(stage, unwrap, rows[i], result)
    for row in rows:
        row.pop("_head", None)
    return rows


def crashed_row(root: str, entry: FileEntry, why: str) -> dict[str, Any]:
    """The row of a file whose task killed its worker each time it ran (found by retrying file by file)."""
    row = file_facts(root, entry)
    row.update(error_stage="audio", error_type="crashed",
               error=f"the worker crashed on this file ({why}); it is retried on the next run")
    return row
