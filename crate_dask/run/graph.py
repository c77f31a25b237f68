"""The Dask graph: scan -> plan -> bag of files -> per-partition stages -> one Parquet file each.

``prepare`` does the cheap client-side work (scan, plan, which partitions are
done, which earlier rows can be reused); ``to_bag`` turns the partitions to
compute into a ``dask.bag.Bag`` whose partition *i* holds the files of
planned partition *i*, mapped through :func:`crate_dask.run.tasks.run_partition`;
``execute`` runs it on whatever scheduler the caller chose and reports each
partition as it finishes.
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
from crate_dask.run.retry import partition_needs_retry
from crate_dask.run.tasks import PartitionSpec, Reuse, run_partition
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


def commit_plan(rp: RunPlan) -> None:
    """Record the plan before any work starts, and move superseded partition files aside.

    After this, a crash at any moment resumes with the same partitions.
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
    # From here on the client keeps counts only: its memory does not grow with the library.
    rp.plan = [p.without_files() for p in rp.plan]
    rp.todo = [(p.without_files(), s) for p, s in rp.todo]
    rp.scan.files = []


def execute(rp: RunPlan, client, *, on_partition: Callable[[dict], None],
            on_failure: Callable[[str, BaseException], None]) -> None:
    """Compute the partitions of ``rp.todo``, calling back as each one finishes.

    ``client`` is a ``distributed.Client``, or ``None`` for the in-process
    synchronous scheduler. Work already finished is on disk whatever happens next.
    """
    if not rp.todo:
        return
    parts = to_bag(rp).to_delayed()
    names = [s.name for _, s in rp.todo]
    if client is None:
        for name, d in zip(names, parts):
            try:
                (summary,) = d.compute(scheduler="sync")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                on_failure(name, exc)
                continue
            on_partition(summary)
        return
    from distributed import as_completed

    futures = client.compute(parts)
    name_of = {f.key: n for f, n in zip(futures, names)}
    try:
        for fut in as_completed(futures):
            try:
                (summary,) = fut.result()
            except Exception as exc:
                on_failure(name_of.get(fut.key, "?"), exc)
                continue
            on_partition(summary)
    finally:
        client.cancel(futures)
