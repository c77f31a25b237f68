"""Analyse a whole library and print a short report: the batch recipe for a nightly or one-off run.

Use it when you want the analysis and a quick look at the results in one go,
e.g. from cron on the machine that holds the library. It is the Python-API
twin of ``crate-dask analyze``: settings are built once, the scheduler is
chosen here (local cluster, an existing one, or in-process), and the results
stay in ``OUT`` as Parquet, one file per partition; rerunning resumes.

Examples::

    python pipelines/analyze_library.py ~/Music --out ~/crate-results
    python pipelines/analyze_library.py ~/Music --out ~/crate-results --metadata-only
    python pipelines/analyze_library.py /mnt/music --out /mnt/shared/results --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import sys

from crate_dask.config import build_settings, default_config_path
from crate_dask.errors import FatalError
from crate_dask.run import events as ev
from crate_dask.run.api import run_analysis
from crate_dask.store.partitions import read_results


def report(out: str) -> str:
    """A few lines about the results: formats, errors by stage, tempo and key coverage."""
    df = read_results(out, columns=["format", "error_stage", "bpm", "key_camelot", "tag_bpm"])
    lines = [f"{len(df):,} files", "formats: " + ", ".join(f"{k} {v}" for k, v in df["format"].value_counts().items())]
    errs = df["error_stage"].value_counts()
    lines.append("errors by stage: " + (", ".join(f"{k} {v}" for k, v in errs.items()) if len(errs) else "none"))
    if df["bpm"].notna().any():
        lines.append(f"tempo found for {df['bpm'].notna().mean():.0%}, key for {df['key_camelot'].notna().mean():.0%}; "
                     f"median tempo {df['bpm'].median():.1f} BPM")
        top = df["key_camelot"].value_counts().head(5)
        lines.append("most common keys: " + ", ".join(f"{k} ({v})" for k, v in top.items()))
    lines.append(f"files that already had a BPM tag: {df['tag_bpm'].notna().mean():.0%}")
    return "\n".join(lines)


def log_event(event: ev.Event) -> None:
    """Plain log lines for cron and batch logs (the CLI draws a live bar instead)."""
    if isinstance(event, ev.PlanReady):
        print(f"{event.library}: {event.files:,} files, {event.todo} of {event.partitions} partitions to compute",
              flush=True)
    elif isinstance(event, ev.Warning):
        print(f"warning: {event.message}", file=sys.stderr, flush=True)
    elif isinstance(event, ev.ClusterReady) and event.dashboard:
        print(f"dashboard: {event.dashboard}", flush=True)
    elif isinstance(event, ev.PartitionDone):
        print(f"{event.name}: {event.rows} rows, {event.errors} errors, {event.seconds:.1f} s", flush=True)
    elif isinstance(event, ev.PartitionFailed):
        print(f"{event.name} failed: {event.error}", file=sys.stderr, flush=True)
    elif isinstance(event, ev.RunFinished):
        s = event.summary
        print(f"{s['status']}: {s['rows']:,} rows, {s['errors']:,} with errors, {s['seconds']:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("library", help="folder of audio files (scanned recursively)")
    ap.add_argument("--out", required=True, help="results folder (Parquet, one file per partition)")
    ap.add_argument("--metadata-only", action="store_true", default=None, help="tags only, no audio analysis")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler")
    ap.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    ap.add_argument("--partition-size", type=int, help="files per partition (default 1000)")
    ap.add_argument("--config", help="TOML config file")
    a = ap.parse_args(argv)
    try:
        settings = build_settings(config_file=a.config or default_config_path(), cli={
            "metadata_only": a.metadata_only, "scheduler": a.scheduler, "workers": a.workers,
            "partition_size": a.partition_size})
        summary = run_analysis(a.library, a.out, settings, on_event=log_event)
        print(report(a.out))
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return {"complete": 0, "cancelled": 130}.get(summary["status"], 1)


if __name__ == "__main__":
    sys.exit(main())
