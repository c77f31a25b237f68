"""Chunk files: the finished pieces of a partition that is still being computed.

A partition (the unit of storage and resume) is computed as several tasks
(chunks). Each chunk writes its rows to a file of its own, atomically (temp
name, fsync, rename), under :func:`~crate_dask.store.layout.chunks_dir`; the
partition's write task merges them into the partition file and removes them.
So a SIGKILL of the client or of a worker loses only the chunks in flight: a
rerun finds the finished chunks and computes the other files.

A chunk file is named ``<partition>/<digest>-<fingerprint>-<id>.parquet``:
rows are valid for a rerun only if the partition's inputs (digest) and the
analysis settings (fingerprint) are the same. The folder starts with ``_``, so
``pandas.read_parquet(OUT)`` never sees a chunk.

>>> import tempfile, pyarrow as pa
>>> out = tempfile.mkdtemp()
>>> _ = write_chunk(pa.table({"relpath": ["a.mp3", "b.mp3"]}), out, "part-00000", "d1", "f1")
>>> sorted(done_relpaths(out, "part-00000", "d1", "f1")), done_relpaths(out, "part-00000", "d2", "f1")
(['a.mp3', 'b.mp3'], set())
>>> clear_chunks(out, "part-00000"); done_relpaths(out, "part-00000", "d1", "f1")
set()
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask.store.layout import chunks_dir
from crate_dask.store.space import write_parquet_atomically


def _folder(out: str | os.PathLike, name: str) -> Path:
    return chunks_dir(out) / name


def _prefix(digest: str, fingerprint: str) -> str:
    return f"{digest[:16]}-{fingerprint}-"


def write_chunk(table: pa.Table, out: str | os.PathLike, name: str, digest: str, fingerprint: str) -> Path:
    """Write the rows of one chunk of partition ``name``; a reader never sees a half-written chunk."""
    folder = _folder(out, name)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{_prefix(digest, fingerprint)}{uuid.uuid4().hex[:12]}.parquet"
    write_parquet_atomically(table, folder / f".{final.name}.tmp", final, folder,
                             f"writing partition {name} (a chunk of it)")
    return final


def chunk_paths(out: str | os.PathLike, name: str, digest: str, fingerprint: str) -> list[Path]:
    """The finished chunk files of partition ``name`` that are valid for these inputs and settings."""
    folder = _folder(out, name)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{_prefix(digest, fingerprint)}*.parquet"))


def done_relpaths(out: str | os.PathLike, name: str, digest: str, fingerprint: str) -> set[str]:
    """The relpaths that finished chunks of partition ``name`` hold rows for (reads one column)."""
    done: set[str] = set()
    for p in chunk_paths(out, name, digest, fingerprint):
        try:
            done.update(pq.read_table(p, columns=["relpath"]).column("relpath").to_pylist())
        except (OSError, ValueError, pa.ArrowException):
            continue   # unreadable: its files are computed again
    return done


def read_chunks(out: str | os.PathLike, name: str, digest: str, fingerprint: str) -> pa.Table | None:
    """The rows of every valid finished chunk of partition ``name``, in one table (``None`` if there is none)."""
    tables = []
    for p in chunk_paths(out, name, digest, fingerprint):
        try:
            tables.append(pq.read_table(p).replace_schema_metadata(None))
        except (OSError, ValueError, pa.ArrowException):
            continue
    return pa.concat_tables(tables, promote_options="default") if tables else None


def count_chunk_rows(out: str | os.PathLike) -> int:
    """Rows held by finished chunks of unfinished partitions (from the Parquet footers only)."""
    n = 0
    root = chunks_dir(out)
    for p in root.glob("*/*.parquet") if root.is_dir() else ():
        try:
            n += pq.read_metadata(p).num_rows
        except (OSError, ValueError, pa.ArrowException):
            continue
    return n


def clear_chunks(out: str | os.PathLike, name: str | None = None) -> None:
    """Remove the chunk files of partition ``name`` (once its partition file is written), or all of them."""
    shutil.rmtree(chunks_dir(out) if name is None else _folder(out, name), ignore_errors=True)


def keep_only(out: str | os.PathLike, valid: Iterable[tuple[str, str, str]]) -> None:
    """Remove chunk files that no planned partition can use: other inputs, other settings, temp files.

    ``valid`` holds (partition name, digest, fingerprint) of the partitions to compute.
    """
    root = chunks_dir(out)
    if not root.is_dir():
        return
    keep = {name: _prefix(d, f) for name, d, f in valid}
    for folder in root.iterdir():
        prefix = keep.get(folder.name)
        if prefix is None or not folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
            continue
        for p in folder.iterdir():
            if not p.name.startswith(prefix):
                p.unlink(missing_ok=True)
