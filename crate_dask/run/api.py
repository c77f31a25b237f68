"""One ``analyze`` run from start to end: plan, warn, compute on the chosen cluster, summarise.

Used by the CLI, the pipeline scripts and notebooks alike::

    from crate_dask.run.api import run_analysis
    from crate_dask.config import build_settings
    summary = run_analysis("~/Music", "~/crate-results", build_settings(cli={"metadata_only": True}))
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from crate_dask import __version__
from crate_dask.cli.progress import (
    RunProgress,
    console,
    format_duration,
    rate_per_worker,
    size_warning,
)
from crate_dask.config import Settings
from crate_dask.errors import FatalError
from crate_dask.run.cluster import connect, dashboard_link, default_workers
from crate_dask.run.graph import RunPlan, commit_plan, execute, prepare
from crate_dask.store.layout import state_path
from crate_dask.store.partitions import (
    append_run_log,
    clear_file_lists,
    clear_stale,
    exclusive,
    prepare_out,
    read_parts_info,
    read_run_log,
)


def run_analysis(library: str | Path, out: str | Path, settings: Settings, *, client=None) -> dict[str, Any]:
    """Analyse ``library`` into ``out``; returns the run summary (also appended to ``OUT/_runs.jsonl``).

    ``client``: an existing ``distributed.Client`` to use (notebooks); otherwise
    the cluster is chosen from ``settings.run``. Interrupting (Ctrl-C, SIGTERM)
    returns a summary with status ``cancelled`` after the cluster is closed;
    every partition finished before that is on disk.
    """
    t0 = time.perf_counter()
    library = Path(library).expanduser()
    if not library.is_dir():
        raise FatalError(f"library folder not found: {library}")
    out = prepare_out(out)
    with exclusive(out, "analyze"):
        return _run(library, out, settings, client, t0)


def _run(library: Path, out: Path, settings: Settings, client, t0: float) -> dict[str, Any]:
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
        console.print(f"[yellow]warning:[/] {problem}")
    mode = "metadata" if settings.analysis.metadata_only else "audio"
    workers = 1 if settings.run.sequential else (settings.run.workers or default_workers())
    _print_plan(rp, mode)
    warning = size_warning(rp.files_todo, mode=mode, workers=workers,
                           rate=rate_per_worker(read_run_log(out), mode), partition_size=settings.run.partition_size)
    if warning:
        console.print(f"[yellow]{warning}[/]")
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
                    if summary["dashboard"]:
                        console.print(f"dashboard: [link={summary['dashboard']}]{summary['dashboard']}[/link]")
                    summary["workers"] = len(cl.scheduler_info().get("workers", {})) or workers
                else:
                    summary["workers"] = 1
                with RunProgress(rp.files_todo, enabled=settings.run.progress) as progress:
                    def on_partition(s: dict) -> None:
                        computed.append(s)
                        progress.advance(s["rows"], s["errors"])

                    def on_failure(name: str, exc: BaseException) -> None:
                        failures.append(f"{name}: {type(exc).__name__}: {exc}")

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
    _print_summary(summary)
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


def _print_plan(rp: RunPlan, mode: str) -> None:
    n_todo = len(rp.todo)
    console.print(f"library: {rp.root}  ({rp.files_total:,} audio files, {len(rp.plan)} partitions, {mode} mode)")
    if rp.done:
        console.print(f"{len(rp.done)} partitions already done, skipped")
    if rp.kept_other_settings:
        changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in rp.settings_changes.items())
        console.print(f"[yellow]{len(rp.kept_other_settings)} partitions were analysed with other settings "
                      f"({changes}); kept as they are. Use --force to recompute them.[/]")
    if n_todo:
        console.print(f"{n_todo} partitions to compute ({rp.files_todo:,} files)")
    else:
        console.print("nothing to do: every partition is up to date")


def _print_summary(s: dict) -> None:
    verb = {"complete": "done", "cancelled": "[yellow]cancelled[/]", "failed": "[red]incomplete[/]"}[s["status"]]
    console.print(f"{verb}: {s['rows']:,} rows ({s['ok']:,} ok, {s['errors']:,} with errors) in "
                  f"{format_duration(s['seconds'])}; computed {s['files_computed']:,} files, reused "
                  f"{s['files_reused']:,}" + (f", {s['files_per_s']:,.0f} files/s" if s.get("files_per_s") else ""))
    if s["status"] == "cancelled":
        console.print(f"saved {s['partitions_saved']} of {s['partitions']} "
                      f"partitions; run the same command again to resume.")
    for f in s.get("failures", [])[:10]:
        console.print(f"[red]partition failed:[/] {f}")
    if s["status"] == "failed":
        console.print("some partitions failed; run the same command again to retry them.")
    console.print(f"results: {s['out']}  (pandas.read_parquet(\"{s['out']}\"))")
