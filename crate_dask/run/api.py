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
from crate_dask.run.cluster import connect, dashboard_link, default_workers
from crate_dask.run.estimate import rate_per_worker, size_warning
from crate_dask.run.graph import RunPlan, commit_plan, execute, prepare
from crate_dask.store.layout import state_path
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
    # A first run always has work: start the cluster while the library is scanned (saves seconds).
    early = None
    if client is None and not settings.run.sequential and not state_path(out).exists():
        early = EarlyCluster(settings)
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
    warning = size_warning(rp.files_todo, mode=mode, workers=workers,
                           rate=rate_per_worker(read_run_log(out), mode), partition_size=settings.run.partition_size)
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
    commit_plan(rp)
    if not rp.todo and early is not None:
        early.close()
    if rp.todo:
        try:
            with (early or _client(settings, client)) as cl:
                if cl is not None:
                    summary["dashboard"] = dashboard_link(cl)
                    summary["workers"] = len(cl.scheduler_info().get("workers", {})) or workers
                else:
                    summary["workers"] = 1
                emit(ev.ClusterReady(workers=summary["workers"], dashboard=summary["dashboard"]))

                def on_partition(s: dict) -> None:
                    if "no_space" in s:   # a worker's disk is full: every other partition would fail too
                        raise NoSpaceError(*s["no_space"])
                    computed.append(s)
                    emit(ev.PartitionDone(name=s["name"], rows=s["rows"], errors=s["errors"],
                                          computed=s["computed"], reused=s["reused"], seconds=s["seconds"]))

                def on_failure(name: str, exc: BaseException) -> None:
                    if isinstance(exc, NoSpaceError):
                        raise exc   # every other partition would fail the same way
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    emit(ev.PartitionFailed(name=name, error=f"{type(exc).__name__}: {exc}"))

                execute(rp, cl, on_partition=on_partition, on_failure=on_failure)
        except KeyboardInterrupt:
            summary["status"] = "cancelled"
    t = time.perf_counter() - t0
    _fill(summary, rp, computed, failures, t)
    if summary["status"] == "complete" and not failures:
        clear_stale(out)
        clear_file_lists(out)
    elif failures:
        summary["status"] = "failed"
        summary["failures"] = failures
    append_run_log(out, {k: v for k, v in summary.items() if k not in ("scan_problems",)})
    emit(ev.RunFinished(summary))
    return summary


class EarlyCluster:
    """Start the cluster in a background thread; entering waits for it, leaving closes it."""

    def __init__(self, settings: Settings) -> None:
        import threading

        self._cm = connect(settings.run)
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


def _client(settings: Settings, client):
    import contextlib

    return contextlib.nullcontext(client) if client is not None else connect(settings.run)


def _fill(summary: dict, rp: RunPlan, computed: list[dict], failures: list[str], seconds: float) -> None:
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
    summary["files_computed"] = sum(s["computed"] for s in computed)
    summary["files_reused"] = sum(s["reused"] for s in computed)
    summary["seconds"] = round(seconds, 3)
    work_s = sum(s["seconds"] - s.get("startup_s", 0.0) for s in computed)
    files = sum(s["rows"] for s in computed)
    summary["files_per_s"] = round(files / seconds, 1) if computed and seconds > 0 else None
    if summary["files_computed"] >= 200 and work_s > 0:
        # the measured rate for time estimates of later runs (reused rows would inflate it)
        summary["files_per_s_per_worker"] = round(summary["files_computed"] / work_s, 2)
