"""What the user sees during and after a run: live progress, warnings, summaries.

Progress wraps the computation instead of living inside it: the pipeline
calls back once per finished partition, and this module turns that into a
``rich`` progress bar (files done, files/s, ETA, errors so far) on stderr.
"""

from __future__ import annotations

import json
import sys
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
    TimeRemainingColumn,
)
from rich.text import Text

#: Files per second per worker used for estimates before a run has measured its own (this machine, 2026).
DEFAULT_RATES = {"metadata": 2000.0, "audio": 2.5}
WARN_FILES, STRONG_WARN_FILES = 10_000, 25_000

console = Console(stderr=True, highlight=False, soft_wrap=True)   # no hard wraps in logs


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        # the mean rate since the start: partitions finish in bursts, so instantaneous rates jump
        speed = task.completed / task.elapsed if task.elapsed and task.completed else None
        return Text(f"{speed:,.1f} files/s" if speed else "- files/s", style="cyan")


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
                                  TextColumn("ETA"), TimeRemainingColumn(), console=console,
                                  disable=not enabled, speed_estimate_period=60.0)
        self._task = self._progress.add_task(description, total=total_files, errors=0)

    def __enter__(self) -> "RunProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def advance(self, files: int, errors: int) -> None:
        self.errors += errors
        self._progress.update(self._task, advance=files, errors=self.errors)


def rate_per_worker(history: list[dict[str, Any]], mode: str) -> float:
    """The best-known files/s per worker for ``mode``: the last measured run, else a default."""
    for rec in reversed(history):
        if rec.get("mode") == mode and rec.get("files_per_s_per_worker"):
            return float(rec["files_per_s_per_worker"])
    return DEFAULT_RATES[mode]


def size_warning(n_files: int, *, mode: str, workers: int, rate: float, partition_size: int) -> str | None:
    """A warning with a time estimate and suggestions for large libraries (None below the threshold)."""
    if n_files <= WARN_FILES:
        return None
    eta = n_files / max(rate * workers, 1e-9)
    lines = [f"{'LARGE LIBRARY' if n_files > STRONG_WARN_FILES else 'Large library'}: {n_files:,} files to "
             f"analyze; estimated {format_duration(eta)} on {workers} worker(s) at {rate:,.1f} files/s each."]
    if n_files > STRONG_WARN_FILES:
        lines.append("This is a long run. It is safe to stop at any time (Ctrl-C) and run the same command "
                     "again: finished partitions are kept.")
    tips = []
    if mode == "audio":
        tips.append("--metadata-only reads tags only (about 500x faster), then run the audio analysis later")
    tips.append("--scheduler tcp://HOST:8786 spreads the work over a Dask cluster of several machines "
                "(the output folder must be shared by all of them)")
    if partition_size > 2000 or partition_size < 200:
        tips.append(f"--partition-size 1000 (now {partition_size}) balances resume granularity and overhead")
    else:
        tips.append(f"--partition-size {partition_size} is saved after each partition; smaller partitions "
                    "lose less work on a crash")
    lines += [f"  - {t}" for t in tips]
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """'3 h 12 min', '4 min 05 s', '12.3 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


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
