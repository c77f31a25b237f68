"""Where things are in a results folder: the one place that names its bookkeeping.

``OUT/part-*.parquet`` are the results (``pandas.read_parquet(OUT)`` reads them
and nothing else); every other name crate_dask keeps in ``OUT`` is defined here,
so that no other module spells a bookkeeping path.

>>> state_path("/tmp/out").name
'_crate.json'
"""

from __future__ import annotations

import os
from pathlib import Path

PART_GLOB = "part-*.parquet"


def state_path(out: str | os.PathLike) -> Path:
    """The library root and the partition plan (boundaries) of ``out``."""
    return Path(out) / "_crate.json"


def runs_path(out: str | os.PathLike) -> Path:
    """The run log: one JSON line per run (settings, version, summary)."""
    return Path(out) / "_runs.jsonl"


def stale_dir(out: str | os.PathLike) -> Path:
    """Partitions superseded during a run, kept until the run completes."""
    return Path(out) / "_stale"


def plan_dir(out: str | os.PathLike) -> Path:
    """The file list of each partition to compute, read by its worker task."""
    return Path(out) / "_plan"


def lock_path(out: str | os.PathLike) -> Path:
    """The lock that lets one crate-dask command at a time work on ``out``."""
    return Path(out) / ".lock"


def journal_dir(out: str | os.PathLike) -> Path:
    """One folder per rename or tag operation: its plan, journal and status."""
    return Path(out) / "_journal"


def chunks_dir(out: str | os.PathLike) -> Path:
    """Finished chunks of partitions still being computed (merged into the partition file, then removed)."""
    return Path(out) / "_chunks"


def log_dir(out: str | os.PathLike) -> Path:
    """Logs of the Dask cluster of each run (what the terminal does not show)."""
    return Path(out) / "_logs"
