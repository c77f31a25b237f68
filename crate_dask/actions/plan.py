"""Planning an action: one Dask task per results partition, writing the plan dataset.

Each task locates the files of its results partition where they are now (after
earlier renames and tag writes, replayed from the journals by
:mod:`crate_dask.store.history`) and writes one plan partition.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from crate_dask.errors import NoSpaceError
from crate_dask.store.history import replay
from crate_dask.store.journal import Operation
from crate_dask.store.partitions import list_parts, no_results


def locate(path: str, size: int | None, mtime_ns: int | None, moves: dict[str, str],
           writes: dict[str, tuple[int, int]]) -> tuple[str, str | None, tuple[int, int] | None]:
    """Where the file of a results row is now: ``(path, problem or None, (size, mtime_ns) now)``.

    A candidate counts if its ``(size, mtime_ns)`` is the analysed one or the one our
    last tag write left; so a file is never confused with a newcomer at its old name.
    """
    found = None
    for cand in dict.fromkeys((moves.get(path, path), path)):
        try:
            st = os.lstat(cand)
        except OSError:
            continue
        ident = (st.st_size, st.st_mtime_ns)
        if ident in ((size, mtime_ns), writes.get(cand)):
            return cand, None, ident
        found = found or (cand, ident)
    if found:
        return found[0], "changed since analysis (re-run analyze)", found[1]
    return path, "file not found (moved or deleted since analysis)", None


def compute_plan(out: str | os.PathLike, op: Operation, plan_partition: Callable[..., dict],
                 client=None, **kw: Any) -> list[dict]:
    """Run ``plan_partition(results_part_path, plan_dir=..., context=..., **kw)`` as one Dask task per results partition.

    ``context`` (the replayed ``moves``/``writes``) is shipped to the workers once.
    Returns the small per-partition summaries the tasks return, in partition order.
    """
    import dask
    import dask.bag as db

    parts = [str(p) for p in list_parts(out)]
    if not parts:
        raise no_results(out)
    moves, writes = replay(out)
    context = dask.delayed({"moves": moves, "writes": writes}, traverse=False)
    bag = db.from_sequence(parts, npartitions=len(parts)).map(
        functools.partial(_no_space_as_result, plan_partition=plan_partition), plan_dir=str(op.plan_dir),
        context=context, **kw)
    results = list(bag.compute(scheduler="sync")) if client is None else list(client.compute(bag).result())
    for r in results:
        if "no_space" in r:
            raise NoSpaceError(*r["no_space"])
    return results


def _no_space_as_result(part_path: str, *, plan_partition: Callable[..., dict], **kw: Any) -> dict:
    # a full disk is returned, not raised, so workers log no traceback; the client raises it once
    try:
        return plan_partition(part_path, **kw)
    except NoSpaceError as exc:
        return {"no_space": list(exc.args)}


def display(path: str) -> str:
    """A path as valid UTF-8 text (undecodable bytes as ``\\xNN``) for plans and messages."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
