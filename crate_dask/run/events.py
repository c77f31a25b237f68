"""What a run reports while it goes: small immutable events, in the order they happen.

The run API (:func:`crate_dask.run.api.run_analysis`) never prints. It calls
``on_event(event)`` with these, and the CLI renders them (a progress bar,
warnings, a summary) while a notebook can collect or ignore them:

>>> seen = []
>>> emit = seen.append
>>> emit(Warning("a folder could not be read"))
>>> [type(e).__name__ for e in seen], seen[0].message
(['Warning'], 'a folder could not be read')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class PlanReady:
    """The library was scanned and planned; nothing has been computed yet."""

    library: str
    files: int
    partitions: int
    done: int
    todo: int
    files_todo: int
    mode: str
    other_settings: int = 0
    settings_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Warning:  # noqa: A001 - the event's name is what it is
    """Something the user should know; the run goes on."""

    message: str


@dataclass(frozen=True)
class ClusterReady:
    """Workers are there (``dashboard`` is None when the scheduler serves none).

    ``memory_limits``: each worker's memory limit in bytes (0: none);
    ``files_done_before``: files in chunks an interrupted run had finished.
    """

    workers: int
    dashboard: str | None
    memory_limits: tuple[int, ...] = ()
    files_done_before: int = 0


@dataclass(frozen=True)
class ChunkDone:
    """A chunk (a task's share of a partition) is computed and saved; drives the per-file progress.

    ``files_done``/``files_total``/``errors_total`` count this run's files to
    compute; ``files_per_s`` is the recent rate and ``eta_s`` the time left at
    that rate (``None`` until known); ``busy`` lists the workers with work.
    """

    partition: str
    chunk: int
    files: int
    errors: int
    computed: int
    reused: int
    seconds: float
    worker: str | None
    files_done: int
    files_total: int
    errors_total: int
    elapsed_s: float
    files_per_s: float | None
    eta_s: float | None
    busy: tuple[str, ...] = ()
    workers: int = 0


@dataclass(frozen=True)
class PartitionDone:
    """A partition file was written (by its worker)."""

    name: str
    rows: int
    errors: int
    computed: int
    reused: int
    seconds: float      #: worker seconds on its files and on writing it (its chunks may have run in parallel)


@dataclass(frozen=True)
class PartitionFailed:
    """A partition task failed; the run goes on and a rerun retries it."""

    name: str
    error: str


@dataclass(frozen=True)
class RunFinished:
    """The run is over (complete, cancelled or failed); ``summary`` is what ``run_analysis`` returns."""

    summary: dict[str, Any]


Event = PlanReady | Warning | ClusterReady | ChunkDone | PartitionDone | PartitionFailed | RunFinished
Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The listener used when the caller passes none."""
