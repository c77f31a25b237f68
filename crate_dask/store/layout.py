"""Where things are in a results folder: the one place that names its bookkeeping.

``OUT/part-*.parquet`` are the results (``pandas.read_parquet(OUT)`` reads them
and nothing else: pyarrow skips names starting with ``_``). Everything else
crate_dask keeps lives in ONE folder of its own, ``OUT/_crate/``, created with
a marker file (:data:`MARKER`); crate_dask deletes or moves only paths inside a
marked bookkeeping folder, or partition files that carry its Parquet footer.
So a results folder that happens to hold user files (even folders named
``_plan`` or ``_stale``) never loses any of them.

Layout of ``OUT/_crate/``::

    CRATE_DASK        the marker (what created the folder, when)
    state.json        the library root and the partition plan (boundaries)
    runs.jsonl        one JSON line per run (settings, version, summary)
    lock              one crate-dask command at a time per results folder
    plan/             the file list of each partition to compute (read by its worker task)
    stale/            partitions superseded during a run, kept until the run completes
    tmp/              partition files being written (renamed into OUT when complete)
    journal/          one folder per rename or tag operation
    chunks/, logs/    for chunk files and cluster logs

>>> bookkeeping_dir("/tmp/out").name, state_path("/tmp/out").relative_to("/tmp/out").as_posix()
('_crate', '_crate/state.json')
"""

from __future__ import annotations

import os
from pathlib import Path

PART_GLOB = "part-*.parquet"

#: The name of the marker file that makes a folder crate_dask's own bookkeeping.
MARKER = "CRATE_DASK"

#: The Parquet footer key under which each partition file crate_dask wrote carries its provenance.
META_KEY = b"crate_dask"


def bookkeeping_dir(out: str | os.PathLike) -> Path:
    """The one folder of ``out`` that holds crate_dask's bookkeeping."""
    return Path(out) / "_crate"


def marker_path(out: str | os.PathLike) -> Path:
    """The marker file that proves :func:`bookkeeping_dir` was created by crate_dask."""
    return bookkeeping_dir(out) / MARKER


def state_path(out: str | os.PathLike) -> Path:
    """The library root and the partition plan (boundaries) of ``out``."""
    return bookkeeping_dir(out) / "state.json"


def runs_path(out: str | os.PathLike) -> Path:
    """The run log: one JSON line per run (settings, version, summary)."""
    return bookkeeping_dir(out) / "runs.jsonl"


def stale_dir(out: str | os.PathLike) -> Path:
    """Partitions superseded during a run, kept until the run completes."""
    return bookkeeping_dir(out) / "stale"


def plan_dir(out: str | os.PathLike) -> Path:
    """The file list of each partition to compute, read by its worker task."""
    return bookkeeping_dir(out) / "plan"


def tmp_dir(out: str | os.PathLike) -> Path:
    """Partition files being written; each is renamed into ``out`` once complete."""
    return bookkeeping_dir(out) / "tmp"


def lock_path(out: str | os.PathLike) -> Path:
    """The lock that lets one crate-dask command at a time work on ``out``."""
    return bookkeeping_dir(out) / "lock"


def journal_dir(out: str | os.PathLike) -> Path:
    """One folder per rename or tag operation: its plan, journal and status."""
    return bookkeeping_dir(out) / "journal"


def chunks_dir(out: str | os.PathLike) -> Path:
    """Chunk files of partitions being computed."""
    return bookkeeping_dir(out) / "chunks"


def log_dir(out: str | os.PathLike) -> Path:
    """Cluster and worker logs."""
    return bookkeeping_dir(out) / "logs"


def corrections_path(out: str | os.PathLike) -> Path:
    """Manual BPM/key corrections (``crate-dask fix``): data of their own, never touched by ``analyze``."""
    return bookkeeping_dir(out) / "corrections.json"


# The layout before ``_crate/``: read once to migrate results folders written by earlier versions.
LEGACY = {"state": "_crate.json", "runs": "_runs.jsonl", "stale": "_stale", "plan": "_plan",
          "lock": ".lock", "journal": "_journal"}


def legacy_path(out: str | os.PathLike, what: str) -> Path:
    """Where the earlier layout kept ``what`` (a key of :data:`LEGACY`)."""
    return Path(out) / LEGACY[what]
