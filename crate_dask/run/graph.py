"""The Dask graph: scan -> plan -> bag of files -> per-partition stages -> one Parquet file each.

``prepare`` does the cheap client-side work (scan, plan, which partitions are
done, which earlier rows can be reused); ``to_bag`` turns the partitions to
compute into a ``dask.bag.Bag`` whose partition *i* holds the files of
planned partition *i*, mapped through :func:`crate_dask.run.tasks.run_partition`
(the design as a notebook user sees it).

``execute`` runs the same work finer than storage: each partition's files are
cut into chunks (:mod:`crate_dask.run.chunking`), each chunk a task that writes
a chunk file on its worker (``analyze part-00042 chunk 3``), and once every
chunk of a partition is done, one task merges them into the partition file
(``write part-00042``). Rows never travel through the client; it sees small
summaries, one per chunk, and reports them as they come.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow.parquet as pq

from crate_dask import __version__
from crate_dask.config import Settings
from crate_dask.errors import FatalError
from crate_dask.library.scan import ScanResult, display_path, scan_library
from crate_dask.run.plan import Partition, boundaries, plan_partitions
from crate_dask.run.chunking import chunk_sizes
from crate_dask.run.paths import to_worker
from crate_dask.run.retry import partition_needs_retry
from crate_dask.run.tasks import ChunkSpec, PartitionSpec, Reuse, run_chunk, run_partition, write_from_chunks
from crate_dask.store.chunks import clear_chunks, done_relpaths, keep_only
from crate_dask.store.history import moved_paths, tag_writes
from crate_dask.store.partitions import (
    PartInfo,
    clear_file_lists,
    list_parts,
    load_state,
    move_to_stale,
    read_file_list,
    read_part_info,
    read_parts_info,
    save_state,
    snapshot_to_stale,
    write_file_list,
)


@dataclass
class RunPlan:
    """What a run will do, decided before any work is submitted."""

    root: str
    out: str
    settings: Settings
    scan: ScanResult
    plan: list[Partition]
    todo: list[tuple[Partition, PartitionSpec]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    kept_other_settings: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    settings_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    files_total: int = 0
    chunks: dict[str, list[ChunkSpec]] = field(default_factory=dict)   # per partition to compute
    files_done_before: int = 0    # files in chunks finished by an earlier, interrupted run

    @property
    def files_todo(self) -> int:
        return sum(p.size for p, _ in self.todo)


def compatible(info: PartInfo, settings: Settings) -> bool:
    """Whether rows written with ``info``'s settings are valid for a run with ``settings``.

    Equal fingerprints, or a metadata-only run over full results (a superset).
    """
    a = settings.analysis
    return info.fingerprint == a.fingerprint() or (
        a.metadata_only and not info.metadata_only
        and info.settings.get("schema_version") == a.provenance()["schema_version"])


def upgradable(info: PartInfo, settings: Settings) -> bool:
    """Whether ``info``'s rows predate the current schema but were made with the same settings.

    Such a partition is computed again with every row reused (and upgraded):
    cheap, and no hours of audio analysis are redone for a new column.
    """
    from crate_dask.schema import SCHEMA_VERSION

    old, new = dict(info.settings), settings.analysis.provenance()
    if (old.get("schema_version") or 0) >= SCHEMA_VERSION:
        return False
    old.pop("schema_version", None)
    new.pop("schema_version", None)
    return old == new or (settings.analysis.metadata_only and not old.get("metadata_only")
                          and old.get("crate_dask_version") == new.get("crate_dask_version"))


def prepare(root: str | Path, out: str | Path, settings: Settings) -> RunPlan:
    """Scan the library and decide, partition by partition, what this run computes."""
    scan = scan_library(root)
    out_s = str(Path(out).absolute())
    state = load_state(out_s)
    force = settings.run.force
    if state.get("root") and state["root"] != scan.root and not force:
        raise FatalError(f"{out_s} holds results for another library ({state['root']}); "
                         "use another --out, or --force to replace them")
    previous = None
    if not force and state.get("root") == scan.root and state.get("partition_size") == settings.run.partition_size:
        previous = [tuple(b) for b in state.get("boundaries", [])]
    plan = plan_partitions(scan.files, partition_size=settings.run.partition_size, previous=previous)
    infos = read_parts_info(out_s)
    rp = RunPlan(root=scan.root, out=out_s, settings=settings, scan=scan, plan=plan, files_total=len(scan.files))
    meta = {"fingerprint": settings.analysis.fingerprint(), "settings": settings.analysis.provenance(),
            "version": __version__, "root": display_path(scan.root)}
    todo: list[Partition] = []
    for p in plan:
        info = infos.get(p.name)
        if force or info is None or info.digest != p.digest():
            todo.append(p)
        elif compatible(info, settings):
            if info.fingerprint == settings.analysis.fingerprint() and partition_needs_retry(
                    info.meta, settings.analysis, settings.run.retry_errors):
                todo.append(p)   # it holds error rows this run retries; every other row is reused
            else:
                rp.done.append(p.name)
        elif upgradable(info, settings):
            todo.append(p)   # written before the current schema: rewritten from its own rows
        elif info.metadata_only and not settings.analysis.metadata_only:
            todo.append(p)   # audio analysis was asked for and these partitions lack it
        else:
            rp.kept_other_settings.append(p.name)
            _diff(info.settings, meta["settings"], rp.settings_changes)
    planned = {p.name for p in plan}
    rp.remove = sorted(n for n in infos if n not in planned)
    rp.todo = [(p, PartitionSpec(name=p.name, root=scan.root, out=out_s, digest=p.digest(), meta=meta,
                                 retry_errors=settings.run.retry_errors)) for p in todo]
    return rp


def _diff(old: dict, new: dict, into: dict) -> None:
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            into[k] = (old.get(k), new.get(k))


def _reuse_sources(out: str, todo: Sequence[Partition], settings: Settings) -> dict[str, list[Reuse]]:
    """For each partition to compute, the earlier rows (by file) that can be reused.

    Sources are the partition files in ``out`` and in its ``_stale`` folder.
    A source that is itself about to be recomputed is read from a snapshot
    (a hard link in ``_stale``): its rows must still be there when another
    partition's task reads them, whatever the order the tasks run in.
    Reads only three small columns of them; the rows themselves are read by
    the workers.
    """
    todo_names = {p.name for p in todo}
    paths = list_parts(out) + list_parts(out, stale=True)
    sources = [i for i in (read_part_info(p) for p in paths)
               if i is not None and (compatible(i, settings) or upgradable(i, settings))]
    if not sources:
        return {}
    snapshots = snapshot_to_stale(out, [i.name for i in sources if i.name in todo_names
                                        and Path(i.path).parent == Path(out)])
    by_rel: dict[str, tuple[str, int, int]] = {}
    by_sig: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for info in sources:
        path = snapshots.get(info.name, info.path) if Path(info.path).parent == Path(out) else info.path
        try:
            t = pq.read_table(path, columns=["relpath", "size", "mtime_ns"])
        except (OSError, ValueError):
            continue
        for rel, size, mt in zip(*(t.column(c).to_pylist() for c in ("relpath", "size", "mtime_ns"))):
            by_rel.setdefault(rel, (path, size, mt))
            if size is not None and mt is not None:
                by_sig[(size, mt)].append((path, rel))   # equal signatures: the content id decides later
    retagged, earlier = _journaled_changes(out)
    result: dict[str, list[Reuse]] = {}
    for p in todo:
        per_file: dict[str, dict[str, Any]] = defaultdict(dict)
        for f in p.files:
            rel = display_path(f.relpath)
            hit = by_rel.get(rel)
            if hit is not None and (hit[1], hit[2]) == (f.size, f.mtime_ns):
                per_file[hit[0]][rel] = (f.relpath, "same")
            elif retagged.get(f.relpath) == (f.size, f.mtime_ns):
                # only our tag write changed this file (possibly after a rename): keep its audio analysis
                for old_rel in (rel, display_path(earlier.get(f.relpath, f.relpath))):
                    if old_rel in by_rel:
                        per_file[by_rel[old_rel][0]][old_rel] = (f.relpath, "retagged")
                        break
            elif (f.size, f.mtime_ns) in by_sig:
                for src, old_rel in by_sig[(f.size, f.mtime_ns)]:
                    prev = per_file[src].get(old_rel)
                    target = (f.relpath, "moved")
                    per_file[src][old_rel] = target if prev is None else (
                        (prev, target) if isinstance(prev[0], str) else (*prev, target))
        result[p.name] = [Reuse(path=src, rows=rows) for src, rows in sorted(per_file.items())]
    return result


def _journaled_changes(out: str) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Files whose tags crate_dask wrote (relpath -> size, mtime after) and current -> earlier relpaths."""
    writes = tag_writes(out)
    if not writes:
        return {}, {}
    return writes, {new: old for old, new in moved_paths(out).items()}


def to_bag(rp: RunPlan):
    """The partitions to compute as a Dask bag of files, mapped to partition summaries.

    Partition *i* of the bag holds the files of the *i*-th partition to compute;
    a second, aligned bag carries each partition's spec.
    """
    import dask
    import dask.bag as db

    # Partition i of the bag is the file list of planned partition i, read by the worker from
    # OUT/_plan: the graph carries paths, not the library (see commit_plan).
    files = db.from_delayed([dask.delayed(read_file_list, pure=True)(s.files_path,
                                                                       dask_key_name=f"files-{s.name}-{s.digest}")
                             for _, s in rp.todo])
    specs = db.from_sequence([s for _, s in rp.todo], npartitions=len(rp.todo))
    return files.map_partitions(run_partition, specs, settings=rp.settings.analysis, token="analyze-partition")


def commit_plan(rp: RunPlan, *, workers: int = 1, rate: float = 2.5) -> None:
    """Record the plan before any work starts, move superseded partition files aside, cut the work into chunks.

    After this, a crash at any moment resumes with the same partitions.
    ``workers`` and ``rate`` (files/s per worker) size the chunks.
    """
    save_state(rp.out, {"root": rp.root, "partition_size": rp.settings.run.partition_size,
                        "boundaries": boundaries(rp.plan), "files": rp.files_total, "version": __version__})
    move_to_stale(rp.out, rp.remove)
    reuse = {}
    if rp.todo and not rp.settings.run.force:
        reuse = _reuse_sources(rp.out, [p for p, _ in rp.todo], rp.settings)
    clear_file_lists(rp.out)
    rp.todo = [(p, dataclasses.replace(s, reuse=tuple(reuse.get(p.name, ())),
                                       files_path=write_file_list(rp.out, p.name, p.files)))
               for p, s in rp.todo]
    _plan_chunks(rp, workers, rate)
    # From here on the client keeps counts only: its memory does not grow with the library.
    rp.plan = [p.without_files() for p in rp.plan]
    rp.todo = [(p.without_files(), s) for p, s in rp.todo]
    rp.scan.files = []


def _plan_chunks(rp: RunPlan, workers: int, rate: float) -> None:
    """Cut the files of each partition to compute, minus those finished chunks hold, into chunks."""
    fp = rp.settings.analysis.fingerprint()
    keep_only(rp.out, [(s.name, s.digest, fp) for _, s in rp.todo])
    pending: list[list[int]] = []
    for p, s in rp.todo:
        if rp.settings.run.force:
            clear_chunks(rp.out, s.name)   # --force reuses nothing, not even chunks of an interrupted run
        done = done_relpaths(rp.out, s.name, s.digest, fp)
        idx = [i for i, f in enumerate(p.files) if display_path(f.relpath) not in done]
        rp.files_done_before += len(p.files) - len(idx)
        pending.append(idx)
    sizes = chunk_sizes([len(i) for i in pending], workers=workers, rate=rate,
                        fixed=rp.settings.run.chunk_size)
    rp.chunks = {}
    for (p, s), idx, cuts in zip(rp.todo, pending, sizes):
        chunks, at = [], 0
        for no, n in enumerate(cuts):
            chunks.append(ChunkSpec(partition=s.name, no=no, indices=tuple(idx[at:at + n])))
            at += n
        rp.chunks[s.name] = chunks


def worker_spec(spec: PartitionSpec, path_map) -> PartitionSpec:
    """``spec`` with every path as the workers see it (``--path-map``); rows keep the client's paths."""
    if not path_map:
        return spec
    return dataclasses.replace(
        spec, root=to_worker(spec.root, path_map), out=to_worker(spec.out, path_map),
        files_path=to_worker(spec.files_path, path_map), row_root=spec.root,
        reuse=tuple(dataclasses.replace(r, path=to_worker(r.path, path_map)) for r in spec.reuse))


class ClusterLost(Exception):
    """The scheduler went away during the run (what is on disk stays; a rerun resumes)."""


class NoWorkers(ClusterLost):
    """The cluster has had no worker for ``no_workers_timeout_s``: nothing can progress (a rerun resumes)."""


def execute(rp: RunPlan, client, *, on_chunk: Callable[[dict], None], on_partition: Callable[[dict], None],
            on_failure: Callable[[str, BaseException], None]) -> None:
    """Compute the chunks of ``rp.todo`` and write their partitions, calling back as each one finishes.

    ``client`` is a ``distributed.Client``, or ``None`` for the in-process
    synchronous scheduler. Work already finished is on disk whatever happens
    next. A chunk whose task killed its workers is retried file by file, so
    that only the culprit gets an error row.
    """
    if not rp.todo:
        return
    settings = rp.settings.analysis
    if client is None:
        for _, spec in rp.todo:
            try:
                for chunk in rp.chunks.get(spec.name, []):
                    on_chunk(run_chunk(spec, chunk, settings))
                on_partition(write_from_chunks(spec, settings))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                on_failure(spec.name, exc)
        return
    _Distributed(rp, client, on_chunk, on_partition, on_failure).run()


class _Distributed:
    """The client's side of a run on a Dask cluster: submit chunks, then each partition's write."""

    def __init__(self, rp: RunPlan, client, on_chunk, on_partition, on_failure) -> None:
        import uuid

        self.rp, self.client = rp, client
        self.on_chunk, self.on_partition, self.on_failure = on_chunk, on_partition, on_failure
        self.run_id = uuid.uuid4().hex[:6]
        self.specs = {s.name: s for _, s in rp.todo}
        pm = rp.settings.run.path_map
        self.wspecs = {n: worker_spec(s, pm) for n, s in self.specs.items()}
        self.pending: dict[str, int] = {}
        self.failed: set[str] = set()
        self.what: dict[str, tuple[str, str, Any]] = {}   # key -> (kind, partition, chunk)
        self.futures: list = []
        self.no_workers = False

    def _submit(self, kind: str, name: str, fn, *args, label: str, chunk=None, priority: int = 0, **kw):
        key = f"{label} [{self.run_id}]"
        fut = self.client.submit(fn, *args, key=key, priority=priority, pure=False, **kw)
        self.what[fut.key] = (kind, name, chunk)
        self.futures.append(fut)
        self.ac.add(fut)

    def run(self) -> None:
        from distributed import as_completed

        settings = self.rp.settings.analysis
        self.ac = as_completed()
        order = 0
        import threading

        stop = threading.Event()
        threading.Thread(target=self._watch, args=(stop,), name="crate-dask-no-workers", daemon=True).start()
        try:
            for _, spec in self.rp.todo:
                chunks = self.rp.chunks.get(spec.name, [])
                self.pending[spec.name] = len(chunks)
                if not chunks:
                    self._write(spec.name)
                for c in chunks:
                    # earlier chunks first: priorities keep the plan's order (short first chunks, shrinking tail)
                    order += 1
                    self._submit("chunk", spec.name, run_chunk, self.wspecs[spec.name], c, settings,
                                 label=c.label, chunk=c, priority=-order)
            for fut in self.ac:
                self._done(fut)
        except _lost_errors() as exc:
            raise ClusterLost(str(exc)) from None
        finally:
            stop.set()
            import contextlib

            with contextlib.suppress(Exception):
                self.client.cancel(self.futures)

    def _watch(self, stop) -> None:
        """Stop the run when the cluster has had no worker for a while (all died and none came back)."""
        import time

        timeout = self.rp.settings.run.no_workers_timeout_s
        since = None
        while not stop.wait(min(5.0, timeout / 4)):
            try:
                n = len(self.client.scheduler_info().get("workers", {}))
            except Exception:  # noqa: BLE001 - the scheduler itself is gone: the main loop says so
                return
            if n:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since > timeout:
                self.no_workers = True
                self.client.cancel(self.futures)   # the main loop sees them cancelled
                return

    def _write(self, name: str) -> None:
        self._submit("write", name, write_from_chunks, self.wspecs[name], self.rp.settings.analysis,
                     label=f"write {name}", priority=1_000_000)

    def _done(self, fut) -> None:
        from distributed import KilledWorker

        kind, name, chunk = self.what.pop(fut.key)
        if self.no_workers:
            raise NoWorkers(f"no worker for {self.rp.settings.run.no_workers_timeout_s:g} s")
        try:
            result = fut.result()
        except KilledWorker as exc:
            if self.client.status not in ("running", "connecting", "newly-created"):
                raise ClusterLost(str(exc)) from None
            if kind == "chunk" and len(chunk.indices) > 1:
                self._retry_file_by_file(name, chunk)
                return
            if kind in ("chunk", "file"):
                self._write_crashed(name, chunk, exc)
                result = None
            else:
                self._fail(name, exc)
                return
        except Exception as exc:
            if _is_lost(self.client, exc):
                raise ClusterLost(str(exc)) from None
            if kind == "write":
                self._fail(name, exc)
                return
            self._fail(name, exc)
            return
        if kind == "write":
            self.on_partition(result)
            return
        if result is not None:
            self.on_chunk(result)
        self.pending[name] -= 1
        if self.pending[name] == 0 and name not in self.failed:
            self._write(name)

    def _fail(self, name: str, exc: BaseException) -> None:
        if name not in self.failed:
            self.failed.add(name)
            self.on_failure(name, exc)

    def _retry_file_by_file(self, name: str, chunk: ChunkSpec) -> None:
        settings = self.rp.settings.analysis
        self.pending[name] += len(chunk.indices) - 1
        for i in chunk.indices:
            one = ChunkSpec(partition=name, no=chunk.no, indices=(i,))
            self._submit("file", name, run_chunk, self.wspecs[name], one, settings,
                         label=f"retry {name} chunk {chunk.no} file {i}", chunk=one, priority=500_000)

    def _write_crashed(self, name: str, chunk: ChunkSpec, exc: BaseException) -> None:
        """The culprit's row, written by the client (it can reach OUT: it wrote the plan there)."""
        from crate_dask.run.stages import crashed_row
        from crate_dask.schema import to_table
        from crate_dask.store.chunks import write_chunk
        from crate_dask.store.partitions import read_file_list

        spec = self.specs[name]
        files = read_file_list(spec.files_path)
        rows = [crashed_row(spec.root, files[i], "its task killed the worker every time it ran")
                for i in chunk.indices]
        write_chunk(to_table(rows), spec.out, name, spec.digest, spec.meta["fingerprint"])
        self.on_chunk({"partition": name, "chunk": chunk.no, "files": len(rows), "errors": len(rows), "reused": 0,
                       "computed": len(rows), "seconds": 0.0, "startup_s": 0.0, "worker": None,
                       "crashed": [r["relpath"] for r in rows]})


def _lost_errors() -> tuple[type[BaseException], ...]:
    from distributed.comm.core import CommClosedError

    return (CommClosedError,)


def _is_lost(client, exc: BaseException) -> bool:
    """Whether ``exc`` means the scheduler is gone rather than a task failing."""
    import asyncio
    import concurrent.futures

    if isinstance(exc, (asyncio.CancelledError, concurrent.futures.CancelledError, *_lost_errors(), OSError,
                        TimeoutError)):
        return client.status not in ("running",) or isinstance(exc, (asyncio.CancelledError,
                                                                     concurrent.futures.CancelledError))
    return False
