"""What the user sees during and after a run: live progress, warnings, summaries.

Progress wraps the computation instead of living inside it: the run API
reports events (:mod:`crate_dask.run.events`), and :class:`RunDisplay` turns
them into lines and a ``rich`` progress bar (files done, files/s, ETA, errors
so far) on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from crate_dask.run import events as ev
from crate_dask.run.estimate import format_duration

console = Console(stderr=True, highlight=False, soft_wrap=True)   # no hard wraps in logs


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        # the run's recent rate (over the last minute of chunks), as the run API measures it
        speed = task.fields.get("rate")
        return Text(f"{speed:,.1f} files/s" if speed else "- files/s", style="cyan")


class _EtaColumn(ProgressColumn):
    def render(self, task) -> Text:
        eta = task.fields.get("eta")
        if eta is None:
            return Text("ETA -", style="dim")
        return Text(f"ETA {format_duration(eta)}", style="cyan")


class _BusyColumn(ProgressColumn):
    def render(self, task) -> Text:
        busy, workers = task.fields.get("busy"), task.fields.get("workers")
        if busy is None or not workers:
            return Text("")
        return Text(f"{len(busy)}/{workers} workers busy", style="green" if len(busy) == workers else "yellow")


class _ErrorsColumn(ProgressColumn):
    def render(self, task) -> Text:
        n = task.fields.get("errors", 0)
        return Text(f"{n:,} errors", style="red" if n else "dim")


class RunProgress:
    """A live progress display driven by finished partitions (a no-op when disabled)."""

    def __init__(self, total_files: int, *, enabled: bool = True, description: str = "analyzing") -> None:
        self.enabled = enabled
        self.errors = 0
        self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), _RateColumn(), _ErrorsColumn(), TimeElapsedColumn(),
                                  _EtaColumn(), _BusyColumn(), console=console, disable=not enabled)
        self._task = self._progress.add_task(description, total=total_files, errors=0, rate=None, eta=None,
                                             busy=None, workers=0)

    def __enter__(self) -> "RunProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def advance(self, files: int, errors: int, **fields: Any) -> None:
        self.errors += errors
        self._progress.update(self._task, advance=files, errors=self.errors, **fields)


class RunDisplay:
    """Render the events of one run: plan and warnings as lines, partitions on a progress bar, the summary.

    Use as a context manager around the run, and pass the instance as ``on_event``;
    leaving it stops the bar (also when the run is interrupted).
    """

    def __init__(self, *, progress: bool = True, jsonl: str | os.PathLike | None = None) -> None:
        self.progress_enabled = progress
        self._bar: RunProgress | None = None
        self._files_todo = 0
        self._jsonl = open(jsonl, "a", encoding="utf-8") if jsonl else None

    def __enter__(self) -> "RunDisplay":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def _line(self, event: ev.Event) -> None:
        """One JSON line when the workers are ready, one per finished chunk and one at the end, flushed at once."""
        if self._jsonl is None:
            return
        if isinstance(event, ev.ChunkDone):
            rec = {"event": "chunk", "time": time.time(), **dataclasses.asdict(event)}
            rec["busy"] = list(event.busy)
        elif isinstance(event, ev.ClusterReady):
            # when the workers are there: a dashboard or benchmark tells start-up from analysis time
            rec = {"event": "cluster", "time": time.time(), "workers": event.workers,
                   "dashboard": event.dashboard, "files_done_before": event.files_done_before}
        elif isinstance(event, ev.RunFinished):
            s = event.summary
            rec = {"event": "finished", "time": time.time(), "status": s["status"], "rows": s["rows"],
                   "errors": s["errors"], "seconds": s["seconds"]}
        else:
            return
        self._jsonl.write(json.dumps(rec, default=str) + "\n")
        self._jsonl.flush()

    def __call__(self, event: ev.Event) -> None:
        self._line(event)
        if isinstance(event, ev.PlanReady):
            self._files_todo = event.files_todo
            _print_plan(event)
        elif isinstance(event, ev.Warning):
            console.print(f"[yellow]warning:[/] {event.message}")
        elif isinstance(event, ev.ClusterReady):
            if event.dashboard:
                console.print(f"dashboard: [link={event.dashboard}]{event.dashboard}[/link]")
            limits = [m for m in event.memory_limits if m]
            if limits:
                console.print(f"{event.workers} worker(s), memory limit {_gib(min(limits))} each")
            if event.files_done_before:
                console.print(f"{event.files_done_before:,} files kept from chunks of an interrupted run")
            self._bar = RunProgress(self._files_todo - event.files_done_before,
                                    enabled=self.progress_enabled).__enter__()
        elif isinstance(event, ev.ChunkDone):
            if self._bar is not None:
                self._bar.advance(event.files, event.errors, rate=event.files_per_s, eta=event.eta_s,
                                  busy=event.busy, workers=event.workers)
        elif isinstance(event, ev.RunFinished):
            self._stop()
            print_summary(event.summary)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1.

    >>> plural(1, "partition"), plural(3, "partition"), plural(1_000, "file")
    ('1 partition', '3 partitions', '1,000 files')
    """
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_plan(e: ev.PlanReady) -> None:
    console.print(f"library: {e.library}  ({plural(e.files, 'audio file')}, {plural(e.partitions, 'partition')}, "
                  f"{e.mode} mode)")
    if e.done:
        console.print(f"{plural(e.done, 'partition')} already done, skipped")
    if e.other_settings:
        changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in e.settings_changes.items())
        console.print(f"[yellow]{plural(e.other_settings, 'partition')} {'was' if e.other_settings == 1 else 'were'} "
                      "analysed with other settings "
                      f"({changes}); kept as they are. Use --force to recompute them.[/]")
    if e.todo:
        console.print(f"{plural(e.todo, 'partition')} to compute ({plural(e.files_todo, 'file')})")
    else:
        console.print("nothing to do: every partition is up to date")


def print_summary(s: dict) -> None:
    """The end of a run in a few lines: rows, errors, time, what to do next."""
    verb = {"complete": "done", "cancelled": "[yellow]cancelled[/]", "failed": "[red]incomplete[/]"}[s["status"]]
    console.print(f"{verb}: {s['rows']:,} rows ({s['ok']:,} ok, {s['errors']:,} with errors) in "
                  f"{format_duration(s['seconds'])}; computed {s['files_computed']:,} files, reused "
                  f"{s['files_reused']:,}" + (f", {s['files_per_s']:,.0f} files/s" if s.get("files_per_s") else ""))
    if s["status"] == "cancelled":
        chunks = f" and {s['files_in_chunks']:,} files of unfinished ones" if s.get("files_in_chunks") else ""
        console.print(f"saved {s.get('partitions_saved', s['partitions_done_before'] + s['partitions_computed'])} of {s['partitions']} "
                      f"partitions{chunks}; run the same command again to resume.")
    if s.get("lost_scheduler") or s.get("lost_workers"):
        console.print(f"[red]{s['failures'][0]}[/]  (details: {s.get('log')})")
        console.print(f"results: {s['out']}")
        return
    for f in s.get("failures", [])[:10]:
        console.print(f"[red]partition failed:[/] {f}")
    if s["status"] == "failed":
        console.print("some partitions failed; run the same command again to retry them.")
    console.print(f"results: {s['out']}  (pandas.read_parquet(\"{s['out']}\"))")


def print_sample(out: str, n: int = 10) -> None:
    """A few result rows as a table: what the demo shows after its run."""
    import pandas as pd
    from rich.table import Table

    df = pd.read_parquet(out, columns=["relpath", "format", "bpm", "key", "key_camelot", "tag_bpm", "error",
                                       "analysis_note"])
    table = Table(title=f"first {min(n, len(df))} of {len(df)} rows", show_lines=False, box=None)
    for col in ("file", "format", "bpm", "key", "camelot", "tag bpm", "error / note"):
        table.add_column(col, overflow="fold")
    def s(v: Any, fmt: str = "{}") -> str:
        return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else fmt.format(v)

    for r in df.head(n).itertuples():
        table.add_row(s(r.relpath).rsplit("/", 1)[-1], s(r.format), s(r.bpm, "{:.1f}"), s(r.key), s(r.key_camelot),
                      s(r.tag_bpm, "{:g}"), s(r.error) or s(r.analysis_note))
    console.print(table)


def print_json(data: dict[str, Any]) -> None:
    """The machine-readable summary on stdout (everything else goes to stderr)."""
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
    sys.stdout.flush()
