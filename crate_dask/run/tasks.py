"""Compute and write one partition on a worker, reusing rows that are still valid.

This is the function every Dask task runs: given the files of one partition
and where earlier rows for some of them live, it builds one row per file
(reused or freshly computed) and writes the partition file atomically.
Results never travel through the client: the task returns a small summary.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow.parquet as pq

from crate_dask.config import AnalysisSettings
from crate_dask.library.scan import FileEntry, display_path, library_path
from crate_dask.run.stages import content_id, file_facts, process_file
from crate_dask.schema import AUDIO_COLUMNS, to_table


@dataclass(frozen=True)
class Reuse:
    """Rows of one earlier partition file that may be reused.

    ``rows`` maps an old relpath to (new relpath, mode): ``same`` (same path,
    size and mtime: reuse as is), ``moved`` (renamed or moved: reuse if the
    content id matches) or ``retagged`` (crate_dask wrote its tags: reuse the
    audio analysis, read the tags again).
    """

    path: str
    rows: dict[str, tuple[str, str]]


@dataclass(frozen=True)
class PartitionSpec:
    """Everything a worker needs to produce one partition file, besides its files."""

    name: str
    root: str
    out: str
    digest: str
    meta: dict[str, Any]
    reuse: tuple[Reuse, ...] = field(default=())
    files_path: str = ""   # OUT/_plan/<name>.parquet: the partition's files, read by the worker
    row_root: str = ""     # the library root as the client sees it, when workers see it elsewhere (--path-map)


def run_partition(files: Sequence[FileEntry], specs: Sequence[PartitionSpec],
                  settings: AnalysisSettings) -> list[dict[str, Any]]:
    """Bag ``map_partitions`` function: compute the partition's rows and write its file.

    Returns a one-element list with the partition's summary (name, rows, errors,
    reused, seconds, ...), so that the bag of summaries is tiny. (The run itself
    computes a partition as several chunks: :func:`run_chunk`, :func:`write_from_chunks`.)
    """
    from crate_dask.store.partitions import write_partition

    (spec,) = specs
    t0 = time.perf_counter()
    rows, reused, errors, startup = _rows(spec, files, settings)
    meta = {**spec.meta, "digest": spec.digest, "rows": len(rows), "errors": errors}
    write_partition(to_table(rows), spec.out, spec.name, meta)
    return [{"name": spec.name, "rows": len(rows), "errors": errors, "reused": reused,
             "computed": len(rows) - reused, "seconds": time.perf_counter() - t0,
             "startup_s": startup, "pid": os.getpid()}]


@dataclass(frozen=True)
class ChunkSpec:
    """One task's share of a partition: positions in the partition's file list."""

    partition: str
    no: int
    indices: tuple[int, ...]

    @property
    def label(self) -> str:
        """What the task is called in the Dask dashboard."""
        return f"analyze {self.partition} chunk {self.no}"


def run_chunk(spec: PartitionSpec, chunk: ChunkSpec, settings: AnalysisSettings) -> dict[str, Any]:
    """Compute the rows of one chunk and write them as a chunk file; returns a small summary.

    The chunk file survives a crash of the client or of any worker, and is
    merged into the partition file by :func:`write_from_chunks`.
    """
    from crate_dask.store.chunks import write_chunk
    from crate_dask.store.partitions import read_file_list

    t0, wall0 = time.perf_counter(), time.time()
    files = read_file_list(spec.files_path)
    chosen = [files[i] for i in chunk.indices]
    rows, reused, errors, startup = _rows(spec, chosen, settings)
    write_chunk(to_table(rows), spec.out, spec.name, spec.digest, spec.meta["fingerprint"])
    return {"partition": spec.name, "chunk": chunk.no, "files": len(rows), "errors": errors, "reused": reused,
            "computed": len(rows) - reused, "seconds": time.perf_counter() - t0, "startup_s": startup,
            "started": wall0, "pid": os.getpid(), "worker": _worker_name()}


def write_from_chunks(spec: PartitionSpec, settings: AnalysisSettings) -> dict[str, Any]:
    """Merge the finished chunks of a partition into its partition file (atomic), then drop the chunks.

    Exactly one row per planned file, in file-list order: a row from the
    newest chunk that holds the file; a file no chunk holds (should not
    happen) is computed here, so the partition is complete whatever happened.
    """
    import pyarrow as pa

    from crate_dask.store.chunks import clear_chunks, read_chunks
    from crate_dask.store.partitions import read_file_list, write_partition

    t0 = time.perf_counter()
    files = read_file_list(spec.files_path)
    table = read_chunks(spec.out, spec.name, spec.digest, spec.meta["fingerprint"])
    where: dict[str, int] = {}
    if table is not None:
        for i, rel in enumerate(table.column("relpath").to_pylist()):
            where[rel] = i
    wanted = [where.get(display_path(f.relpath)) for f in files]
    missing = [f for f, i in zip(files, wanted) if i is None]
    if missing:
        rows, *_ = _rows(spec, missing, settings)
        extra = to_table(rows)
        table = extra if table is None else pa.concat_tables([table, extra.cast(table.schema)])
        n0 = table.num_rows - extra.num_rows
        it = iter(range(n0, table.num_rows))
        wanted = [i if i is not None else next(it) for i in wanted]
    table = table.take(pa.array(wanted, pa.int64())) if table is not None else to_table([])
    errors = table.num_rows - table.column("error").null_count
    meta = {**spec.meta, "digest": spec.digest, "rows": table.num_rows, "errors": errors}
    write_partition(table, spec.out, spec.name, meta)
    clear_chunks(spec.out, spec.name)
    return {"name": spec.name, "rows": table.num_rows, "errors": errors, "computed_here": len(missing),
            "seconds": time.perf_counter() - t0, "worker": _worker_name()}


def _rows(spec: PartitionSpec, files: Sequence[FileEntry], settings: AnalysisSettings):
    """(rows, reused, errors, startup seconds) for ``files``: reused where still valid, else computed."""
    old = _load_reusable(spec.reuse)
    audio = None
    startup0 = 0.0
    if not settings.metadata_only:
        from crate_dask.run.isolation import get_runner

        runner = get_runner()
        audio = runner.analyze
        startup0 = runner.startup_s
    rows, reused, errors = [], 0, 0
    for entry in files:
        row = _reuse_row(spec.root, entry, old.get(entry.relpath), settings, audio)
        if row is None:
            row = process_file(spec.root, entry, settings, audio)
        else:
            reused += 1
        if spec.row_root and spec.row_root != spec.root:
            # read through the worker's path, but name the file as the client sees it (rename/tag run there)
            client_path = library_path(spec.row_root, entry.relpath)
            row["path"], row["path_bytes"] = display_path(client_path), os.fsencode(client_path)
        errors += row["error"] is not None
        rows.append(row)
    startup = (runner.startup_s - startup0) if audio else 0.0
    return rows, reused, errors, startup


def _worker_name() -> str:
    """The address of the Dask worker running this task (the pid when there is none)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _load_reusable(reuse: Sequence[Reuse]) -> dict[str, tuple[str, dict[str, Any]]]:
    """new relpath -> (mode, old row), read from the earlier partition files."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for src in reuse:
        try:
            table = pq.read_table(src.path)
        except (OSError, ValueError):
            continue   # the old file was replaced or removed meanwhile: compute instead
        for old_row in table.to_pylist():
            hit = src.rows.get(old_row["relpath"])
            if hit is not None:
                new_rel, mode = hit
                found[new_rel] = (mode, old_row)
    return found


def _reuse_row(root: str, entry: FileEntry, hit: tuple[str, dict] | None, settings: AnalysisSettings,
               audio) -> dict[str, Any] | None:
    """The row for ``entry`` built from an earlier row, or ``None`` if it must be computed."""
    if hit is None or entry.problem:
        return None
    mode, old = hit
    if _transient(old):
        return None
    if mode == "same":
        if old["size"] != entry.size or old["mtime_ns"] != entry.mtime_ns:
            return None
        return old
    path = library_path(root, entry.relpath)
    try:
        cid = content_id(path, entry.size)
    except OSError:
        return None
    if mode == "moved":
        if cid != old["content_id"]:
            return None
        return {**old, **{k: v for k, v in file_facts(root, entry).items() if k in _PATH_COLUMNS},
                "content_id": cid}
    if mode == "retagged" and not settings.metadata_only:
        row = process_file(root, entry, _metadata(settings))
        if row["error"] is None:
            row.update({k: old[k] for k in AUDIO_COLUMNS})
            row["error_stage"], row["error"] = old["error_stage"], old["error"]
        return row
    return None


def _transient(row: dict[str, Any]) -> bool:
    """Errors that may go away without the file changing (permissions, I/O, bugs): retry them."""
    err = row.get("error") or ""
    return row.get("error_stage") == "file" or err.startswith("BUG") or "permission denied" in err \
        or "vanished" in err or "crashed" in err


_PATH_COLUMNS = ("path", "path_bytes", "relpath", "ext", "size", "mtime", "mtime_ns")


def _metadata(settings: AnalysisSettings) -> AnalysisSettings:
    import dataclasses

    return dataclasses.replace(settings, metadata_only=True)
