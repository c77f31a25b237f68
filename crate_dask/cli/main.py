"""The ``crate-dask`` command line: analyze, status, demo (plus rename, tag, undo, export, playlists).

Options are validated up front; a fatal problem is one readable line on
stderr and exit code 1; Ctrl-C or SIGTERM stop cleanly with exit code 130.
The scheduler is chosen here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from crate_dask import __version__
from crate_dask.cli.messages import EXIT_CANCELLED, run_command
from crate_dask.cli.progress import RunDisplay, console, print_json, print_sample
from crate_dask.cli.tls import TLS_OPTIONS
from crate_dask.config import Settings, build_settings, default_config_path


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="crate-dask")
def main() -> None:
    """Analyse huge DJ music libraries on Dask: tags, BPM and key, resumable; then rename and tag safely."""


def analysis_options(f):
    """Options shared by analyze and demo."""
    opts = [
        click.option("--metadata-only", is_flag=True, default=None,
                     help="Tags and file facts only; no audio decoding (fast)."),
        click.option("--excerpt", "excerpt_s", type=float, default=None, metavar="SECONDS",
                     help="Analyse this many seconds from the middle of each track [default: 90]."),
        click.option("--full-track", is_flag=True, default=False, help="Analyse whole tracks instead of an excerpt."),
        click.option("--bpm-range", type=(float, float), default=None, metavar="LOW HIGH",
                     help="Fold tempi into this range [default: 78 180]."),
        click.option("--file-timeout", "file_timeout_s", type=float, default=None, metavar="SECONDS",
                     help="Time limit per file, for reading tags and for the audio analysis [default: 60]."),
        click.option("--file-memory", "file_memory_mb", type=float, default=None, metavar="MIB",
                     help="Memory limit per file (MiB) for reading tags and for the audio analysis [default: 2048]."),
        click.option("--partition-size", type=int, default=None, help="Files per partition [default: 1000]."),
        click.option("--workers", type=int, default=None, help="Local worker processes [default: one per core]."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Use an existing Dask cluster (tcp://host:8786, or tls://host:8786 with --tls-*); "
                          "LIBRARY and OUT must be visible to every worker."),
        click.option("--path-map", "path_map", multiple=True, metavar="CLIENT_PREFIX=WORKER_PREFIX",
                     help="Where the workers see a path of this machine (repeatable), e.g. "
                          "/Volumes/Music=/mnt/music."),
        *TLS_OPTIONS,
        click.option("--nice", is_flag=True, default=None,
                     help="Run local workers and their analysis processes at low CPU and I/O priority."),
        click.option("--memory-limit", default=None, metavar="SIZE",
                     help="Memory limit per local worker, e.g. 2GiB [default: auto = RAM / workers]."),
        click.option("--chunk-size", type=int, default=None,
                     help="Files per task [default: chosen from the measured rate]."),
        click.option("--progress-jsonl", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     metavar="FILE", help="Append one JSON line per finished chunk to FILE (for scripts)."),
        click.option("--sequential", is_flag=True, default=None, help="No cluster: run in this process."),
        click.option("--no-progress", is_flag=True, default=False, help="No live progress display."),
        click.option("--json", "as_json", is_flag=True, default=False, help="Print a JSON summary on stdout."),
        click.option("--force", is_flag=True, default=None, help="Recompute every partition, reuse nothing."),
        click.option("--retry-errors", is_flag=True, default=None,
                     help="Recompute only the rows with errors (quarantined files too); reuse every other row."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="TOML config file [default: $CRATE_DASK_CONFIG or ~/.config/crate-dask/config.toml]."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def settings_from_options(kw: dict[str, Any]) -> Settings:
    """Build the frozen settings from CLI options (defaults < config file < flags)."""
    cli = {k: kw.get(k) for k in ("metadata_only", "excerpt_s", "file_timeout_s", "file_memory_mb", "partition_size",
                                  "workers", "scheduler", "sequential", "force", "retry_errors", "nice",
                                  "memory_limit", "chunk_size", "tls_ca_file", "tls_cert", "tls_key")}
    if kw.get("path_map"):
        cli["path_map"] = list(kw["path_map"])
    if kw.get("bpm_range"):
        cli["bpm_min"], cli["bpm_max"] = kw["bpm_range"]
    if kw.get("no_progress") or kw.get("as_json"):
        cli["progress"] = False
    settings = build_settings(config_file=kw.get("config_file") or default_config_path(), cli=cli)
    if kw.get("full_track"):
        import dataclasses

        settings = dataclasses.replace(settings, analysis=dataclasses.replace(settings.analysis, excerpt_s=None))
    return settings


@main.command()
@click.argument("library", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Results folder (one Parquet file per partition).")
@analysis_options
def analyze(library: Path, out: Path, **kw: Any) -> None:
    """Analyse every audio file under LIBRARY into Parquet files in OUT (resumable: rerun to resume)."""
    run_command(lambda: _analyze(library, out, settings_from_options(kw), as_json=kw["as_json"],
                                 progress_jsonl=kw.get("progress_jsonl")))




def _analyze(library: Path, out: Path, settings: Settings, *, as_json: bool,
             progress_jsonl: Path | None = None) -> int:
    from crate_dask.run.api import run_analysis

    with RunDisplay(progress=settings.run.progress, jsonl=progress_jsonl) as display:
        summary = run_analysis(library, out, settings, on_event=display)
    if as_json:
        print_json(summary)
    return EXIT_CANCELLED if summary["status"] == "cancelled" else (1 if summary["status"] == "failed" else 0)


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.option("--no-scan", is_flag=True, help="Do not rescan the library (faster; cannot tell stale partitions).")
def status(out: Path, as_json: bool, no_scan: bool) -> None:
    """Show done / pending / stale partitions, rows and errors of a results folder."""
    from crate_dask.cli.status import print_status
    from crate_dask.run.status import collect_status

    def go() -> int:
        st = collect_status(out, scan=not no_scan)
        print_json(st) if as_json else print_status(st)
        return 0

    run_command(go)


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("crate-demo"),
              show_default=True, help="Where to build the demo library and its results.")
@click.option("--tracks", type=int, default=36, show_default=True, help="Number of generated tracks.")
@analysis_options
def demo(directory: Path, tracks: int, **kw: Any) -> None:
    """Build a small demo library (several formats, a few broken files) and analyse it."""
    from crate_dask.demo import make_demo_library

    def go() -> int:
        # small partitions, so that the dashboard shows every worker busy even on a tiny library
        settings = settings_from_options({**kw, "partition_size": kw.get("partition_size") or 6})
        lib = directory / "library"
        made = make_demo_library(lib, n_tracks=tracks)
        console.print(f"demo library: {lib} ({made} files)")
        code = _analyze(lib, directory / "results", settings, as_json=kw["as_json"],
                        progress_jsonl=kw.get("progress_jsonl"))
        if code == 0 and not kw["as_json"]:
            print_sample(str(directory / "results"))
            console.print(f"next: crate-dask status {directory / 'results'}  |  crate-dask rename "
                          f"{directory / 'results'} --template \"{{artist}} - {{title}} [{{key_camelot}} {{bpm:.0f}}]\"")
        return code

    run_command(go)


def _register() -> None:
    # Each command family lives in a module of its own; the group is the one place that lists them.
    from crate_dask.cli.actions import rename, tag, undo
    from crate_dask.cli.explore import COMMANDS as EXPLORE
    from crate_dask.cli.export import export, playlists

    for cmd in (rename, undo, tag, *EXPLORE, export, playlists):
        main.add_command(cmd)


_register()
