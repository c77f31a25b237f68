"""The results folder: atomic partition files, their provenance, and the bookkeeping.

``OUT`` holds one file per partition (``part-00000.parquet`` ..., complete or
absent) and crate_dask's own folder ``OUT/_crate/`` (see
:mod:`crate_dask.store.layout`): state, run log, the file lists of partitions
being computed, superseded (stale) partitions, partitions being written, lock.
``pandas.read_parquet(OUT)`` (pyarrow's dataset discovery) ignores ``_crate``.
Each partition file carries its
provenance in the Parquet footer (key ``crate_dask``): the input digest, the
settings fingerprint and settings, the crate_dask version, row and error
counts. Since the footer is written with the data in one atomic rename, a
partition file that exists is complete and describes itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask.errors import FatalError
from crate_dask.library.scan import FileEntry
from crate_dask.store import bookkeeping
from crate_dask.store.layout import (
    META_KEY,
    legacy_path,
    lock_path,
    marker_path,
    plan_dir,
    runs_path,
    stale_dir,
    state_path,
    tmp_dir,
)
from crate_dask.store.space import is_full, write_parquet_atomically, writing



@dataclass(frozen=True)
class PartInfo:
    """What a partition file says about itself (its footer)."""

    name: str
    path: str
    digest: str
    fingerprint: str
    settings: dict
    version: str
    rows: int
    errors: int
    meta: dict = field(default_factory=dict, compare=False, repr=False)   # the whole footer record

    @property
    def metadata_only(self) -> bool:
        return bool(self.settings.get("metadata_only"))


def part_path(out: str | os.PathLike, name: str) -> Path:
    """The file of partition ``name``."""
    return Path(out) / f"{name}.parquet"


def prepare_out(out: str | os.PathLike, library: str | os.PathLike | None = None) -> Path:
    """Create ``out`` and its marked bookkeeping folder (temp files of interrupted writes go in :func:`exclusive`).

    Raises
    ------
    FatalError
        ``out`` is the library or contains it (checked before anything is created), or is not writable.
    NoSpaceError
        The disk of ``out`` is full.
    """
    p = Path(out).expanduser().absolute()
    if library is not None:
        bookkeeping.check_out(library, p)
    try:
        with writing(p, "preparing the output folder"):
            p.mkdir(parents=True, exist_ok=True)
            probe = p / f".write-test-{uuid.uuid4().hex}"
            try:
                probe.write_bytes(b"x")
            finally:
                probe.unlink(missing_ok=True)
    except OSError as exc:
        if is_full(exc):
            raise
        raise FatalError(f"output folder {p} is not writable: {exc.strerror or exc}") from None
    foreign = [f.name for f in list_parts(p) if read_part_info(f) is None]
    if foreign:   # never overwrite, move or read as results what crate_dask did not write
        raise FatalError(f"{p} holds {len(foreign)} Parquet file(s) crate_dask did not write ({foreign[0]}, ...): "
                         "choose another output folder")
    bookkeeping.ensure(p)
    return p


def write_partition(table: pa.Table, out: str | os.PathLike, name: str, meta: dict[str, Any],
                    *, doing: str | None = None) -> Path:
    """Write ``table`` as partition ``name``: temp file, fsync, then atomic rename.

    A reader (or a crash) never sees a half-written partition file. In a results
    folder the temp file is written in ``OUT/_crate/tmp/`` (so cleaning up after
    a crash touches only crate_dask's folder); elsewhere (an operation's plan
    folder, all crate_dask's) next to the target. A full disk raises
    :class:`~crate_dask.errors.NoSpaceError` and leaves no temp file.
    """
    final = part_path(out, name)
    if marker_path(out).is_file():
        tmp = tmp_dir(out) / f"{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    else:
        tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    schema = table.schema.with_metadata({**(table.schema.metadata or {}),
                                         META_KEY: json.dumps(meta, sort_keys=True).encode()})
    write_parquet_atomically(table.replace_schema_metadata(schema.metadata), tmp, final, out,
                             doing or f"writing partition {name}", compression="zstd")
    _fsync_dir(final.parent)
    return final


def read_part_info(path: str | os.PathLike) -> PartInfo | None:
    """The footer provenance of one partition file, or ``None`` if it is not ours or unreadable."""
    try:
        md = pq.read_metadata(path).metadata or {}
        meta = json.loads(md[META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return PartInfo(name=Path(path).name[:-len(".parquet")], path=str(path), digest=meta.get("digest", ""),
                    fingerprint=meta.get("fingerprint", ""), settings=meta.get("settings", {}),
                    version=meta.get("version", ""), rows=int(meta.get("rows", 0)),
                    errors=int(meta.get("errors", 0)), meta=meta)


def list_parts(out: str | os.PathLike, *, stale: bool = False) -> list[Path]:
    """Partition files in ``out`` (or in its ``_stale`` folder), in name order."""
    folder = stale_dir(out) if stale else Path(out)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("part-*.parquet"))


def read_parts_info(out: str | os.PathLike) -> dict[str, PartInfo]:
    """Footer provenance of every partition file in ``out``, by partition name."""
    infos = (read_part_info(p) for p in list_parts(out))
    return {i.name: i for i in infos if i is not None}


def move_to_stale(out: str | os.PathLike, names: Iterable[str]) -> None:
    """Move superseded partition files out of the dataset, into ``_crate/stale/`` (still a reuse source).

    Only files that carry crate_dask's footer are moved: a user's Parquet file is never touched.
    """
    stale = stale_dir(out)
    for name in names:
        src = part_path(out, name)
        if src.exists() and read_part_info(src) is not None:
            stale.mkdir(exist_ok=True)
            os.replace(src, stale / f"{name}-{uuid.uuid4().hex[:8]}.parquet")


def snapshot_to_stale(out: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """Hard-link partition files into ``_stale/`` (a copy if links fail): name -> snapshot path.

    A partition being recomputed is replaced by a new file (a new inode), so
    the snapshot keeps the rows other partitions' tasks may still reuse.
    """
    stale, snaps = stale_dir(out), {}
    for name in names:
        src = part_path(out, name)
        dst = stale / f"{name}-{uuid.uuid4().hex[:8]}.parquet"
        stale.mkdir(exist_ok=True)
        try:
            os.link(src, dst)
        except FileNotFoundError:
            continue
        except OSError:
            shutil.copy2(src, dst)
        snaps[name] = str(dst)
    return snaps


def clear_stale(out: str | os.PathLike) -> None:
    """Drop the superseded partition files once a run has completed."""
    if stale_dir(out).exists():
        bookkeeping.remove_tree(out, stale_dir(out))


def write_file_list(out: str | os.PathLike, name: str, files: Sequence[FileEntry]) -> str:
    """Write the files of partition ``name`` to ``OUT/_crate/plan/`` for its worker; returns the path.

    Tasks carry this path instead of the list, so the client and the scheduler
    do not hold every file of the library while the workers run.
    """
    folder = plan_dir(out)
    table = pa.table({"relpath": [os.fsencode(f.relpath) for f in files],
                      "size": pa.array([f.size for f in files], pa.int64()),
                      "mtime_ns": pa.array([f.mtime_ns for f in files], pa.int64()),
                      "ino": pa.array([f.ino for f in files], pa.int64()),
                      "problem": pa.array([f.problem for f in files], pa.string())})
    final = folder / f"{name}.parquet"
    tmp = folder / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    with writing(out, f"writing the file list of partition {name}", cleanup=tmp):
        folder.mkdir(exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, final)
    return str(final)


def read_file_list(path: str | os.PathLike) -> list[FileEntry]:
    """The files of one partition, as written by :func:`write_file_list`."""
    t = pq.read_table(path)
    cols = [t.column(c).to_pylist() for c in ("relpath", "size", "mtime_ns", "ino", "problem")]
    return [FileEntry(os.fsdecode(r), size, mt, ino, prob) for r, size, mt, ino, prob in zip(*cols)]


def clear_file_lists(out: str | os.PathLike) -> None:
    """Remove the partitions' file lists (once a run has completed)."""
    if plan_dir(out).exists():
        bookkeeping.remove_tree(out, plan_dir(out))


def load_state(out: str | os.PathLike) -> dict[str, Any]:
    """The bookkeeping of ``out`` (library root, plan boundaries), or ``{}``.

    A results folder of the earlier layout (not migrated yet: it is on its first
    locked command) is read where that layout kept it.
    """
    path = state_path(out)
    if not path.exists():
        path = legacy_path(out, "state")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(out: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically replace the bookkeeping of ``out``."""
    bookkeeping.ensure(out)
    write_json_atomic(state_path(out), state, doing="writing the results folder state")


def write_json_atomic(path: Path, data: Any, *, doing: str | None = None) -> None:
    """Write JSON to ``path`` through a temp file and a rename (file names may hold surrogates).

    A full disk raises :class:`~crate_dask.errors.NoSpaceError`; ``path`` keeps its old content.
    """
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with writing(path.parent, doing or f"writing {path.name}", cleanup=tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=True, indent=1)   # ascii: lone surrogates survive as \udcxx
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def append_run_log(out: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one run's record to the run log (a torn last line is dropped first, see :func:`append_line`)."""
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record})
    bookkeeping.ensure(out)
    with writing(out, "writing the run log"):
        append_line(runs_path(out), line)


def append_line(path: Path, line: str, *, durable: bool = False) -> None:
    """Append one text line to ``path``, always starting on a fresh line.

    A line cut short by a crash or a full disk (no final newline) counts as not
    written: it is cut off before the new line goes in. If this write fails, the
    file is truncated back to where it was, so no torn line stays behind.
    """
    data = (line + "\n").encode("ascii", "backslashreplace")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if end:
            os.lseek(fd, end - 1, os.SEEK_SET)
            if os.read(fd, 1) != b"\n":
                end = _last_newline(fd, end)
                os.ftruncate(fd, end)
        os.lseek(fd, end, os.SEEK_SET)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


def _last_newline(fd: int, end: int) -> int:
    """The offset just after the last newline before ``end`` (0 if there is none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        os.lseek(fd, start, os.SEEK_SET)
        chunk = os.read(fd, pos - start)
        k = chunk.rfind(b"\n")
        if k >= 0:
            return start + k + 1
        pos = start
    return 0


def read_run_log(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``_runs.jsonl``, oldest first ([] if there is none)."""
    path = runs_path(out)
    if not path.exists():
        path = legacy_path(out, "runs")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue   # a line cut short by a crash
        if isinstance(rec, dict):
            records.append(rec)
    return records


def read_results(out: str | os.PathLike, columns: list[str] | None = None):
    """The results dataset as a pandas DataFrame (one row per audio file)."""
    import pandas as pd

    if not list_parts(out):
        raise no_results(out)
    return pd.read_parquet(out, columns=columns)


def no_results(out: str | os.PathLike) -> FatalError:
    """The one error of every command given a folder without results."""
    return FatalError(f"no results in {out}: run `crate-dask analyze LIBRARY --out {out}` first")


def require_results(out: str | os.PathLike) -> None:
    """Raise FatalError unless ``out`` is a results folder: commands other than analyze must not leave
    bookkeeping (a lock, ``_crate/``) in a folder given by mistake, such as the music library itself."""
    if not (state_path(out).exists() or legacy_path(out, "state").exists() or list_parts(out)):
        raise no_results(out)


@contextlib.contextmanager
def exclusive(out: str | os.PathLike, action: str) -> Iterator[None]:
    """Hold the lock of results folder ``out`` while ``action`` runs (released by the OS if the process dies).

    One crate-dask command at a time per results folder: an analyze must not
    scan files that a rename is moving, and two analyzes must not race on partitions.
    """
    bookkeeping.ensure(out)
    path = lock_path(out)
    with open(path, "a+b", buffering=0) as fh:   # unbuffered: nothing left to flush (and fail) on close
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().decode("utf-8", "replace").strip() or "another crate-dask command"
            raise FatalError(f"{out} is in use by {holder}; wait for it to finish") from None
        try:   # who holds it, for the message above; on a full disk the lock works without it
            fh.truncate(0)
            fh.write(f"crate-dask {action} (pid {os.getpid()})".encode())
        except OSError:
            pass
        with writing(out, "moving the bookkeeping of an earlier version into _crate/"):
            bookkeeping.migrate(out)
        if tmp_dir(out).exists():   # partitions being written when an earlier command died: only safe under the lock
            bookkeeping.remove_tree(out, tmp_dir(out))
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    # makes the rename itself durable across a power cut (POSIX); not possible everywhere
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
