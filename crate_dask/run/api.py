"""The run API: one ``analyze`` run from start to end: plan, compute on the chosen cluster, summarise.

Used by the CLI, the pipeline scripts and notebooks alike. It never prints:
what happens is reported through ``on_event`` (see :mod:`crate_dask.run.events`),
and the summary is returned::

    from crate_dask.run.api import run_analysis
    from crate_dask.config import build_settings
    summary = run_analysis("~/Music", "~/crate-results", build_settings(cli={"metadata_only": True}),
                           on_event=print)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from crate_dask import __version__
from crate_dask.config import Settings
from crate_dask.errors import FatalError, NoSpaceError
from crate_dask.run import events as ev
from crate_dask.run.cluster import check_workers, connect, dashboard_link, default_workers, memory_limits
from crate_dask.run.estimate import LiveRate, rate_per_worker, size_warning
from crate_dask.run.graph import ClusterLost, NoWorkers, RunPlan, commit_plan, execute, prepare
from crate_dask.run.paths import to_worker
from crate_dask.store.chunks import clear_chunks, count_chunk_rows
from crate_dask.store.layout import log_dir, state_path
from crate_dask.store.partitions import (
    append_run_log,
    clear_file_lists,
    clear_stale,
    exclusive,
    list_parts,
    prepare_out,
    read_parts_info,
    read_run_log,
)


def run_analysis(library: str | Path, out: str | Path, settings: Settings, *, client=None,
                 on_event: ev.Listener | None = None) -> dict[str, Any]:
    """Analyse ``library`` into ``out``; returns the run summary (also appended to the run log).

    ``client``: an existing ``distributed.Client`` to use (notebooks); otherwise
    the cluster is chosen from ``settings.run``. ``on_event`` is called with
    each :mod:`~crate_dask.run.events` event as it happens (plan, warnings,
    cluster, each finished partition, the end). Interrupting (Ctrl-C, SIGTERM)
    returns a summary with status ``cancelled`` after the cluster is closed;
    every partition finished before that is on disk.
    """
    t0 = time.perf_counter()
    library = Path(library).expanduser()
    if not library.is_dir():
        raise FatalError(f"library folder not found: {library}")
    try:
        out = prepare_out(out, library)
        with exclusive(out, "analyze"):
            return _run(library, out, settings, client, t0, on_event or ev.ignore)
    except NoSpaceError as exc:   # a full disk stops the run: one line saying what is safe
        raise exc.with_progress(f"{len(list_parts(out))} partitions saved") from None


def _run(library: Path, out: Path, settings: Settings, client, t0: float, emit: ev.Listener) -> dict[str, Any]:
    # The cluster's own logging goes to a file: the user sees one line per event.
    log_file = log_dir(out) / time.strftime("run-%Y%m%d-%H%M%S.log")
    # A first run always has work: start the cluster while the library is scanned (saves seconds).
    early = None
    if client is None and not settings.run.sequential and not state_path(out).exists():
        early = EarlyCluster(settings, log_file)
    try:
        rp = prepare(library, out, settings)
    except BaseException:
        if early is not None:
            early.close()
        raise
    for problem in rp.scan.problems:
        emit(ev.Warning(problem))
    mode = "metadata" if settings.analysis.metadata_only else "audio"
    workers = 1 if settings.run.sequential else (settings.run.workers or default_workers())
    emit(ev.PlanReady(library=rp.root, files=rp.files_total, partitions=len(rp.plan), done=len(rp.done),
                      todo=len(rp.todo), files_todo=rp.files_todo, mode=mode,
                      other_settings=len(rp.kept_other_settings), settings_changes=dict(rp.settings_changes)))
    rate = rate_per_worker(read_run_log(out), mode)
    warning = size_warning(rp.files_todo, mode=mode, workers=workers,
                           rate=rate, partition_size=settings.run.partition_size)
    if warning:
        emit(ev.Warning(warning))
    summary: dict[str, Any] = {
        "status": "complete", "library": rp.root, "out": str(out), "mode": mode, "version": __version__,
        "files": rp.files_total, "partitions": len(rp.plan), "partitions_done_before": len(rp.done),
        "partitions_computed": 0, "partitions_failed": 0, "partitions_other_settings": len(rp.kept_other_settings),
        "files_computed": 0, "files_reused": 0, "rows": 0, "errors": 0, "dashboard": None,
        "scan_problems": rp.scan.problems, "settings": dataclasses.asdict(settings.analysis),
    }
    failures: list[str] = []
    computed: list[dict] = []
    chunks: list[dict] = []
    if client is not None:
        workers = len(client.scheduler_info().get("workers", {})) or workers
    commit_plan(rp, workers=workers, rate=rate)
    files_todo = rp.files_todo - rp.files_done_before
    if not rp.todo and early is not None:
        early.close()
    if rp.todo:
        try:
            with (early or _client(settings, client, log_file)) as cl:
                limits: tuple[int, ...] = ()
                if cl is not None:
                    pm = settings.run.path_map
                    check_workers(cl, {"library": to_worker(rp.root, pm), "out": to_worker(str(out), pm)})
                    summary["dashboard"] = dashboard_link(cl)
                    summary["workers"] = len(cl.scheduler_info().get("workers", {})) or workers
                    limits = tuple(memory_limits(cl))
                    summary["memory_limit_per_worker"] = max(limits) if limits else None
                else:
                    summary["workers"] = 1
                emit(ev.ClusterReady(workers=summary["workers"], dashboard=summary["dashboard"],
                                     memory_limits=limits, files_done_before=rp.files_done_before))
                live = LiveRate(files_todo)
                by_part: dict[str, list[dict]] = {}

                def on_chunk(c: dict) -> None:
                    if "no_space" in c:   # a worker's disk is full: every other chunk would fail too
                        raise NoSpaceError(*c["no_space"])
                    chunks.append(c)
                    by_part.setdefault(c["partition"], []).append(c)
                    live.add(c["files"], c["errors"])
                    busy: tuple[str, ...] = ()
                    if cl is not None:
                        try:
                            busy = tuple(sorted(w for w, keys in cl.processing().items() if keys))
                        except Exception:  # noqa: BLE001 - progress only; the run goes on
                            busy = ()
                    emit(ev.ChunkDone(partition=c["partition"], chunk=c["chunk"], files=c["files"],
                                      errors=c["errors"], computed=c["computed"], reused=c["reused"],
                                      seconds=round(c["seconds"], 3), worker=c.get("worker"),
                                      files_done=live.done, files_total=files_todo, errors_total=live.errors,
                                      elapsed_s=round(live.elapsed(), 3), files_per_s=live.rate(),
                                      eta_s=live.eta(), busy=busy, workers=summary["workers"]))

                def on_partition(s: dict) -> None:
                    if "no_space" in s:   # a worker's disk is full: every other partition would fail too
                        raise NoSpaceError(*s["no_space"])
                    mine = by_part.pop(s["name"], [])
                    # seconds: the workers' time on its chunks and on writing it (chunks may run in parallel)
                    s = {**s, "computed": sum(c["computed"] for c in mine), "reused": sum(c["reused"] for c in mine),
                         "seconds": s["seconds"] + sum(c["seconds"] for c in mine)}
                    computed.append(s)
                    emit(ev.PartitionDone(name=s["name"], rows=s["rows"], errors=s["errors"],
                                          computed=s["computed"], reused=s["reused"], seconds=s["seconds"]))

                def on_failure(name: str, exc: BaseException) -> None:
                    if isinstance(exc, NoSpaceError):
                        raise exc   # every other partition would fail the same way
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    emit(ev.PartitionFailed(name=name, error=f"{type(exc).__name__}: {exc}"))

                execute(rp, cl, on_chunk=on_chunk, on_partition=on_partition, on_failure=on_failure)
        except KeyboardInterrupt:
            summary["status"] = "cancelled"
        except NoWorkers as exc:
            summary["status"] = "failed"
            summary["lost_workers"] = str(exc)
        except ClusterLost:
            summary["status"] = "failed"
            summary["lost_scheduler"] = settings.run.scheduler or "the local cluster"
    t = time.perf_counter() - t0
    _fill(summary, rp, computed, failures, t, chunks)
    if summary.get("lost_scheduler") or summary.get("lost_workers"):
        saved = summary["partitions_saved"]
        what = (f"lost the scheduler at {summary['lost_scheduler']}" if summary.get("lost_scheduler") else
                f"the cluster had {summary['lost_workers']}")
        summary["failures"] = [f"{what}; {saved} of {summary['partitions']} partitions saved; run the same "
                               "command to resume"]
        summary["log"] = str(log_file)
    elif summary["status"] == "complete" and not failures:
        clear_stale(out)
        clear_file_lists(out)
        clear_chunks(out)
    elif failures:
        summary["status"] = "failed"
        summary["failures"] = failures
    if summary["status"] != "complete":
        summary["files_in_chunks"] = count_chunk_rows(out)   # saved, picked up by the next run
    if log_file.exists() and log_file.stat().st_size == 0:
        log_file.unlink()   # nothing to tell
    append_run_log(out, {k: v for k, v in summary.items() if k not in ("scan_problems",)})
    emit(ev.RunFinished(summary))
    return summary


class EarlyCluster:
    """Start the cluster in a background thread; entering waits for it, leaving closes it."""

    def __init__(self, settings: Settings, log_file=None) -> None:
        import threading

        self._cm = connect(settings.run, log_file=log_file, audio=not settings.analysis.metadata_only)
        self._client = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="crate-dask-cluster-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self._client = self._cm.__enter__()
        except BaseException as exc:  # re-raised in the main thread
            self._error = exc

    def __enter__(self):
        try:
            self._thread.join()
        except BaseException:   # Ctrl-C while the cluster starts: still close what was started
            self.close()
            raise
        if self._error is not None:
            raise self._error
        return self._client

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._thread.join()
        if self._error is None and self._client is not None:
            self._client = None
            self._cm.__exit__(None, None, None)


def _client(settings: Settings, client, log_file=None):
    import contextlib

    if client is not None:
        return contextlib.nullcontext(client)
    return connect(settings.run, log_file=log_file, audio=not settings.analysis.metadata_only)


def _fill(summary: dict, rp: RunPlan, computed: list[dict], failures: list[str], seconds: float,
          chunks: list[dict]) -> None:
    infos = read_parts_info(rp.out)
    planned = {p.name for p in rp.plan}
    summary["rows"] = sum(i.rows for n, i in infos.items() if n in planned)
    summary["errors"] = sum(i.errors for n, i in infos.items() if n in planned)
    summary["ok"] = summary["rows"] - summary["errors"]
    summary["partitions_computed"] = len(computed)
    summary["partitions_failed"] = len(failures)
    summary["partitions_pending"] = len(planned - set(infos)) if summary["status"] != "complete" else 0
    # what is on disk, not what the client heard of: a task may finish after the run was cancelled
    summary["partitions_saved"] = len(rp.done) + sum(1 for _, sp in rp.todo if sp.name in infos
                                                     and infos[sp.name].digest == sp.digest)
    # what this run computed, counted by chunk (also the chunks of partitions it did not finish)
    summary["files_computed"] = sum(c["computed"] for c in chunks)
    summary["files_reused"] = sum(c["reused"] for c in chunks)
    summary["files_done_before"] = rp.files_done_before
    summary["chunks"] = len(chunks)
    summary["seconds"] = round(seconds, 3)
    work_s = sum(c["seconds"] - c.get("startup_s", 0.0) for c in chunks if c.get("worker"))
    files = sum(c["files"] for c in chunks)
    summary["files_per_s"] = round(files / seconds, 1) if chunks and seconds > 0 else None
    if summary["files_computed"] >= 200 and work_s > 0:
        # the measured rate for time estimates of later runs (reused rows would inflate it)
        summary["files_per_s_per_worker"] = round(summary["files_computed"] / work_s, 2)
