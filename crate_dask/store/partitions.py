"""The results folder: atomic partition files, their provenance, and the bookkeeping.

Layout of ``OUT``::

    part-00000.parquet ...     one file per partition, complete or absent
    _crate.json                the library root and the plan (partition boundaries)
    _runs.jsonl                one line per run: settings, version, summary
    _stale/                    superseded partition files, kept until a run completes (reuse source)
    _plan/part-00042.parquet   the files of a partition being computed (what its task reads)
    .part-00042.parquet.tmp-*  a partition being written (ignored by readers, removed on the next run)

Bookkeeping names start with ``_`` or ``.`` so ``pandas.read_parquet(OUT)``
(pyarrow's dataset discovery) ignores them. Each partition file carries its
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
from crate_dask.store.layout import (
    lock_path,
    plan_dir,
    runs_path,
    stale_dir,
    state_path,
)

META_KEY = b"crate_dask"


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


def prepare_out(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed, check it is writable, and remove temp files of interrupted writes."""
    p = Path(out).expanduser().absolute()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FatalError(f"output folder {p} is not writable: {exc.strerror or exc}") from None
    for tmp in p.glob(".part-*.tmp-*"):
        tmp.unlink(missing_ok=True)
    return p


def write_partition(table: pa.Table, out: str | os.PathLike, name: str, meta: dict[str, Any]) -> Path:
    """Write ``table`` as partition ``name``: temp file, fsync, then atomic rename.

    A reader (or a crash) never sees a half-written partition file.
    """
    final = part_path(out, name)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    schema = table.schema.with_metadata({**(table.schema.metadata or {}),
                                         META_KEY: json.dumps(meta, sort_keys=True).encode()})
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table.replace_schema_metadata(schema.metadata), fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
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
    """Move superseded partition files out of the dataset, into ``_stale/`` (still a reuse source)."""
    stale = stale_dir(out)
    for name in names:
        src = part_path(out, name)
        if src.exists():
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
    shutil.rmtree(stale_dir(out), ignore_errors=True)


def write_file_list(out: str | os.PathLike, name: str, files: Sequence[FileEntry]) -> str:
    """Write the files of partition ``name`` to ``OUT/_plan/`` for its worker; returns the path.

    Tasks carry this path instead of the list, so the client and the scheduler
    do not hold every file of the library while the workers run.
    """
    folder = plan_dir(out)
    folder.mkdir(exist_ok=True)
    table = pa.table({"relpath": [os.fsencode(f.relpath) for f in files],
                      "size": pa.array([f.size for f in files], pa.int64()),
                      "mtime_ns": pa.array([f.mtime_ns for f in files], pa.int64()),
                      "ino": pa.array([f.ino for f in files], pa.int64()),
                      "problem": pa.array([f.problem for f in files], pa.string())})
    final = folder / f"{name}.parquet"
    tmp = folder / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
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
    shutil.rmtree(plan_dir(out), ignore_errors=True)


def load_state(out: str | os.PathLike) -> dict[str, Any]:
    """The bookkeeping of ``out`` (library root, plan boundaries), or ``{}``."""
    try:
        return json.loads((state_path(out)).read_text())
    except (OSError, ValueError):
        return {}


def save_state(out: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically replace the bookkeeping of ``out``."""
    write_json_atomic(state_path(out), state)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temp file and a rename (file names may hold surrogates)."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=True, indent=1)   # ascii: lone surrogates survive as \udcxx
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def append_run_log(out: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one run's record to ``_runs.jsonl``."""
    with open(runs_path(out), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}) + "\n")


def read_run_log(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``_runs.jsonl``, oldest first ([] if there is none)."""
    try:
        text = (runs_path(out)).read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue   # a line cut short by a crash
    return records


def read_results(out: str | os.PathLike, columns: list[str] | None = None):
    """The results dataset as a pandas DataFrame (one row per audio file)."""
    import pandas as pd

    if not list_parts(out):
        raise FatalError(f"no results in {out}: run `crate-dask analyze LIBRARY --out {out}` first")
    return pd.read_parquet(out, columns=columns)


@contextlib.contextmanager
def exclusive(out: str | os.PathLike, action: str) -> Iterator[None]:
    """Hold the lock of results folder ``out`` while ``action`` runs (released by the OS if the process dies).

    One crate-dask command at a time per results folder: an analyze must not
    scan files that a rename is moving, and two analyzes must not race on partitions.
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another crate-dask command"
            raise FatalError(f"{out} is in use by {holder}; wait for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"crate-dask {action} (pid {os.getpid()})")
        fh.flush()
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
