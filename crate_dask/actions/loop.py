"""The apply / resume / undo loop shared by every action (rename, tag).

An action supplies a plan function and per-partition apply and undo functions;
this module holds the lock, refuses to start over an interrupted operation,
resumes an interrupted apply made with the same options, and undoes the last
operation first.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from crate_dask.errors import FatalError
from crate_dask.store.journal import Operation, unfinished
from crate_dask.store.partitions import exclusive, list_parts


@contextlib.contextmanager
def locked(out: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``out`` (shared with analyze; released by the OS if the process dies)."""
    with exclusive(out, "rename/tag/undo"):
        yield


def refuse_unfinished(out, allow: Operation | None = None) -> None:
    """Raise FatalError if an interrupted operation (other than ``allow``) must first be completed or undone."""
    op = unfinished(out)
    if op is not None and op != allow:
        what = "applying" if op.status == "applying" else "undoing"
        raise FatalError(f"an interrupted {op.kind} ({what}, {op.op_id}) is pending in {out}: rerun the same "
                         f"command to complete it, or run `crate-dask undo {out}` to revert it")


def run_apply(out: str | os.PathLike, kind: str, options: dict, plan: Callable[[], Any],
              apply_partition: Callable[[Operation, Path], Counter]) -> tuple[Operation, Counter, Any]:
    """Plan then apply, or complete an interrupted apply of ``kind`` made with the same ``options``.

    Returns the operation, the outcome counts and ``plan()``'s summary (``None`` when resumed).
    """
    with locked(out):
        op, planned = unfinished(out), None
        if op is None or op.kind != kind or op.status != "applying" or op.meta().get("options") != options:
            refuse_unfinished(out)
            planned = plan()
            op = planned.op
        op.set(status="applying")
        counts: Counter = Counter()
        for part in list_parts(op.plan_dir):
            counts.update(apply_partition(op, part))
        op.set(status="applied", outcome=dict(counts))
    return op, counts, planned
