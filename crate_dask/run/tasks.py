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
from crate_dask.errors import NoSpaceError
from crate_dask.library.scan import FileEntry, display_path, library_path
from crate_dask.run.retry import count_crash, partition_summary, row_needs_retry, upgrade_row
from crate_dask.run.stages import content_id, file_facts, process_files
from crate_dask.schema import AUDIO_COLUMNS, to_table


@dataclass(frozen=True)
class Reuse:
    """Rows of one earlier partition file that may be reused.

    ``rows`` maps an old relpath to (new relpath, mode), or to a tuple of such
    pairs when several new files share its size and mtime: ``same`` (same path,
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
    retry_errors: bool = False   # recompute every error row (--retry-errors)
    row_root: str = ""     # the library root as the client sees it, when workers see it elsewhere (--path-map)


def run_partition(files: Sequence[FileEntry], specs: Sequence[PartitionSpec],
                  settings: AnalysisSettings) -> list[dict[str, Any]]:
    """Bag ``map_partitions`` function: compute the partition's rows and write its file.

    Returns a one-element list with the partition's summary (name, rows, errors,
    reused, seconds, ...), so that the bag of summaries is tiny. (The run itself
    computes a partition as several chunks: :func:`run_chunk`, :func:`write_from_chunks`.)
    If the run is interrupted while files are in flight
    (:class:`~crate_dask.errors.WorkInterrupted`), nothing is written.
    """
    from crate_dask.store.partitions import write_partition

    (spec,) = specs
    t0 = time.perf_counter()
    rows, reused, errors, startup = _rows(spec, files, settings)
    meta = {**spec.meta, "digest": spec.digest, "rows": len(rows), "errors": errors, **partition_summary(rows)}
    try:
        write_partition(to_table(rows), spec.out, spec.name, meta)
    except NoSpaceError as exc:   # returned, not raised: the client stops the run with one line, no worker log
        return [{"name": spec.name, "no_space": list(exc.args)}]
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
    try:
        write_chunk(to_table(rows), spec.out, spec.name, spec.digest, spec.meta["fingerprint"])
    except NoSpaceError as exc:   # returned, not raised: the client stops the run with one line, no worker log
        return {"partition": spec.name, "chunk": chunk.no, "no_space": list(exc.args)}
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
    summary = partition_summary(table.select(["error", "error_type", "error_limit"]).to_pylist())
    meta = {**spec.meta, "digest": spec.digest, "rows": table.num_rows, "errors": errors, **summary}
    try:
        write_partition(table, spec.out, spec.name, meta)
    except NoSpaceError as exc:   # returned, not raised: the client stops the run with one line, no worker log
        return {"name": spec.name, "no_space": list(exc.args)}
    clear_chunks(spec.out, spec.name)
    return {"name": spec.name, "rows": table.num_rows, "errors": errors, "computed_here": len(missing),
            "seconds": time.perf_counter() - t0, "worker": _worker_name()}


def _rows(spec: PartitionSpec, files: Sequence[FileEntry], settings: AnalysisSettings):
    """(rows, reused, errors, startup seconds) for ``files``: reused where still valid, else computed."""
    from crate_dask.run.isolation import get_runner

    old = _load_reusable(spec.reuse)
    runner = get_runner(audio=not settings.metadata_only)
    startup0 = runner.startup_s
    rows: list[dict[str, Any] | None] = [None] * len(files)
    compute, retag = [], []
    for i, entry in enumerate(files):
        row = _reuse_row(spec.root, entry, old.get(entry.relpath), settings, spec.retry_errors)
        if row is _RETAG:
            retag.append(i)
        elif row is None:
            compute.append(i)
        else:
            rows[i] = row
    reused = len(files) - len(compute)
    for i, row in zip(compute, process_files(spec.root, [files[i] for i in compute], settings, runner)):
        rows[i] = count_crash(row, _earlier_row(files[i], old.get(files[i].relpath)))
    meta_only = _metadata(settings)
    for i, row in zip(retag, process_files(spec.root, [files[i] for i in retag], meta_only, runner)):
        rows[i] = _with_audio(row, old[files[i].relpath][1])
    if spec.row_root and spec.row_root != spec.root:
        for entry, row in zip(files, rows):
            # read through the worker's path, but name the file as the client sees it (rename/tag run there)
            client_path = library_path(spec.row_root, entry.relpath)
            row["path"], row["path_bytes"] = display_path(client_path), os.fsencode(client_path)
    errors = sum(r["error"] is not None for r in rows)
    return rows, reused, errors, runner.startup_s - startup0


def _worker_name() -> str:
    """The address of the Dask worker running this task (the pid when there is none)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _load_reusable(reuse: Sequence[Reuse]) -> dict[str, tuple[str, dict[str, Any]]]:
    """new relpath -> (mode, old row), read from the earlier partition files.

    A file found by (size, mtime) may have several candidates: the one with
    the same content id wins when the row is built.
    """
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for src in reuse:
        try:
            table = pq.read_table(src.path)
        except (OSError, ValueError):
            continue   # the old file was replaced or removed meanwhile: compute instead
        for old_row in table.to_pylist():
            for new_rel, mode in _targets(src.rows.get(old_row["relpath"])):
                found.setdefault(new_rel, []).append((mode, upgrade_row(old_row)))
    return {rel: hits[0] if len(hits) == 1 else ("moved", hits) for rel, hits in found.items()}


def _targets(hit) -> tuple[tuple[str, str], ...]:
    """The (new relpath, mode) pairs an old row serves (one, or several when signatures collide)."""
    if hit is None:
        return ()
    return (hit,) if isinstance(hit[0], str) else tuple(hit)


_RETAG = object()   # the row's audio analysis is reused, its tags are read again


def _reuse_row(root: str, entry: FileEntry, hit: tuple[str, Any] | None, settings: AnalysisSettings,
               retry_errors: bool = False) -> dict[str, Any] | object | None:
    """The row for ``entry`` built from an earlier row, :data:`_RETAG`, or ``None`` if it must be computed."""
    if hit is None or entry.problem:
        return None
    mode, old = hit
    if mode == "moved" and isinstance(old, list):   # several candidates with this size and mtime
        return _reuse_moved(root, entry, [o for _, o in old], settings, retry_errors)
    if row_needs_retry(old, settings, retry_errors):
        return None
    if mode == "same":
        if old["size"] != entry.size or old["mtime_ns"] != entry.mtime_ns:
            return None
        return old
    if mode == "moved":
        return _reuse_moved(root, entry, [old], settings, retry_errors)
    if mode == "retagged" and not settings.metadata_only:
        return _RETAG
    return None


def _reuse_moved(root: str, entry: FileEntry, candidates: list[dict[str, Any]], settings: AnalysisSettings,
                 retry_errors: bool) -> dict[str, Any] | None:
    """The row of a renamed or moved file: the candidate with its content id, if any."""
    try:
        cid = content_id(library_path(root, entry.relpath), entry.size)
    except OSError:
        return None
    for old in candidates:
        if old["content_id"] == cid and not row_needs_retry(old, settings, retry_errors):
            return {**old, **{k: v for k, v in file_facts(root, entry).items() if k in _PATH_COLUMNS},
                    "content_id": cid}
    return None


def _earlier_row(entry: FileEntry, hit: tuple[str, Any] | None) -> dict[str, Any] | None:
    """The earlier row of this very file version (same size and mtime), for counting crashes."""
    if hit is None or hit[0] == "retagged":
        return None
    olds = [o for _, o in hit[1]] if isinstance(hit[1], list) else [hit[1]]
    return next((o for o in olds if (o["size"], o["mtime_ns"]) == (entry.size, entry.mtime_ns)), None)


def _with_audio(row: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Fresh tags of a file whose tags crate_dask wrote, with its earlier audio analysis."""
    if row["error"] is None:
        row.update({k: old[k] for k in AUDIO_COLUMNS})
        for k in ("error_stage", "error_type", "error", "error_limit", "crashes"):
            row[k] = old.get(k)
    return row


_PATH_COLUMNS = ("path", "path_bytes", "relpath", "ext", "size", "mtime", "mtime_ns")


def _metadata(settings: AnalysisSettings) -> AnalysisSettings:
    import dataclasses

    return dataclasses.replace(settings, metadata_only=True)
