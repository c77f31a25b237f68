"""The one plan / apply / resume / undo loop shared by every action (rename, tag).

An action (:class:`Action`) says how to plan, and how to do, settle and revert
ONE planned change; this module owns everything else: the lock, refusing to
start over an interrupted operation, resuming an interrupted apply made with
the same options, the write-ahead journal protocol, undoing last-first, the
counts, and turning a full disk into one line that says how far it got.

The protocol for one planned change ``i`` of a plan partition::

    check(row)        -> problem?           skip, the file is not touched
    intent(row)       -> journaled (fsync)  before the file is touched
    apply(e)          -> "done" | reason    the change itself (may journal "ready" steps)
    settle(e)         -> "done" | "todo" | reason    after a crash: look at the files
    undo_check / undo_intent / undo / undo_settle    the same, backwards

A crash (or a full disk) between any two steps leaves an intent without its
outcome; the next apply calls ``settle`` and finishes it, ``undo`` settles then reverts.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from crate_dask.errors import FatalError, NoSpaceError
from crate_dask.store.journal import Journal, Operation, fold, unfinished
from crate_dask.store.partitions import exclusive, list_parts, require_results


@dataclass
class Summary:
    """Counts by status (plan) or by outcome (apply/undo), a sample of changes, and the operation."""

    op: Operation
    counts: dict[str, int]
    sample: list[tuple[str, str]] = field(default_factory=list)


class Action:
    """One kind of change to library files. Subclasses fill in the hooks; the loop drives them."""

    kind = ""            # "rename", "tag": the operation folders' prefix
    verb = ""            # the outcome count of a change made: "renamed", "written"
    wanted_status = ""   # the plan status of rows to change
    columns: list[str] | None = None   # the plan columns apply reads (None: all)
    #: fsync the intent before ``apply``; an action may skip it when ``apply`` journals a durable step
    #: before it touches the file, and its temp names are derived from the entry (so a rerun finds them)
    durable_intent = True

    def __init__(self, out: str | os.PathLike, options_dict: dict):
        self.out, self.options = out, options_dict

    # planning -------------------------------------------------------------------------------
    def plan(self, client, sample: int) -> Summary:
        raise NotImplementedError

    # applying one change ----------------------------------------------------------------------
    def check(self, row: dict) -> str | None:
        """Why the change cannot be made now (the file is not touched), or ``None``."""
        raise NotImplementedError

    def intent(self, op: Operation, part: str, i: int, row: dict) -> dict:
        """The fields journaled before the file is touched (enough to settle and undo)."""
        raise NotImplementedError

    def apply(self, op: Operation, j: Journal, e: dict) -> str:
        """Make the change: "done" or the reason it was not made."""
        raise NotImplementedError

    def settle(self, op: Operation, j: Journal, e: dict) -> str:
        """After a crash, from the files: "done", "todo" (nothing happened yet) or a reason."""
        raise NotImplementedError

    def forget(self, e: dict) -> None:
        """Clean up an intent that was never applied (temp files, created folders)."""

    def done_fields(self, e: dict) -> dict:
        """Extra fields of the "done" record."""
        return {}

    # undoing one change -----------------------------------------------------------------------
    def undo_check(self, e: dict) -> str | None:
        raise NotImplementedError

    def undo_intent(self, op: Operation, e: dict) -> dict:
        return {}

    def undo(self, op: Operation, j: Journal, e: dict) -> str:
        """Revert: "done" (or another ``undone`` count such as "tag values") or the reason it was not."""
        raise NotImplementedError

    def undo_settle(self, op: Operation, j: Journal, e: dict) -> str:
        """After a crash during undo: "done" (reverted), "todo" or a reason."""
        raise NotImplementedError

    def undone_fields(self, e: dict) -> dict:
        return {}

    def undone_count(self, outcome: str) -> str:
        """The count an ``undo`` outcome goes to."""
        return "restored"


@contextlib.contextmanager
def locked(out: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``out`` (shared with analyze; released by the OS if the process dies)."""
    require_results(out)
    with exclusive(out, "rename/tag/undo"):
        yield


def refuse_unfinished(out, allow: Operation | None = None) -> None:
    """Raise FatalError if an interrupted operation (other than ``allow``) must first be completed or undone."""
    op = unfinished(out)
    if op is not None and op != allow:
        what = "applying" if op.status == "applying" else "undoing"
        raise FatalError(f"an interrupted {op.kind} ({what}, {op.op_id}) is pending in {out}: rerun the same "
                         f"command to complete it, or run `crate-dask undo {out}` to revert it")


def run_plan(action: Action, *, client=None, sample: int = 10) -> Summary:
    """Compute and write a plan (touches no library file)."""
    with locked(action.out):
        refuse_unfinished(action.out)
        return action.plan(client, sample)


def run_apply(action: Action, *, client=None, sample: int = 10) -> Summary:
    """Plan then apply, or complete an interrupted apply of the same kind made with the same options."""
    out = action.out
    with locked(out):
        op, planned = unfinished(out), None
        if op is None or op.kind != action.kind or op.status != "applying" or \
                op.meta().get("options") != action.options:
            refuse_unfinished(out)
            planned = action.plan(client, sample)
            op = planned.op
        op.set(status="applying")
        counts: Counter = Counter()
        try:
            for part in list_parts(op.plan_dir):
                _apply_partition(action, op, part, counts)
        except NoSpaceError as exc:
            raise exc.with_progress(f"{counts[action.verb]} files {action.verb} so far, the rest is "
                                    f"pending") from None
        op.set(status="applied", outcome=dict(counts))
    return Summary(op, dict(counts), planned.sample if planned else [])


def _apply_partition(action: Action, op: Operation, plan_path: Path, counts: Counter) -> None:
    part = plan_path.name[:-len(".parquet")]
    rows = pq.read_table(plan_path, columns=action.columns).to_pylist()
    j = op.journal(part)
    entries = fold(j.records())
    slow = float(os.environ.get("CRATE_DASK_TEST_SLOW_APPLY") or 0)
    for i, row in enumerate(rows):
        if row["status"] != action.wanted_status:
            continue
        e = entries.get(i)
        if e is not None and e["state"] not in ("intent", "ready"):
            counts[action.verb if e["state"] == "done" else f"skipped: {e.get('reason')}"] += 1
            continue
        if e is None:
            problem = action.check(row)
            if problem:
                j.append({"e": "skip", "i": i, "reason": problem})
                counts[f"skipped: {problem}"] += 1
                continue
            e = {"i": i, **action.intent(op, part, i, row)}
            j.append({"e": "intent", **e}, durable=action.durable_intent)
            e["state"] = "intent"
            outcome = action.apply(op, j, e)
        else:   # a crash left this intent without its outcome: look at the files
            outcome = action.settle(op, j, e)
            if outcome == "todo":
                outcome = action.apply(op, j, e)
        _record(action, j, e, outcome, counts)
        if slow:
            time.sleep(slow)


def _record(action: Action, j: Journal, e: dict, outcome: str, counts: Counter) -> None:
    if outcome == "done":
        j.append({"e": "done", "i": e["i"], "t": time.time_ns(), **action.done_fields(e)})
        counts[action.verb] += 1
    else:
        j.append({"e": "skip", "i": e["i"], "reason": outcome})
        counts[f"skipped: {outcome}"] += 1


def run_undo(action: Action, op: Operation) -> Counter:
    """Revert ``op``'s changes last-first; resumable and idempotent."""
    op.set(status="undoing")
    counts: Counter = Counter()
    try:
        for j in reversed(op.journals()):
            entries = fold(j.records())
            for i in sorted(entries, reverse=True):
                _undo_one(action, op, j, entries[i], counts)
    except NoSpaceError as exc:
        raise exc.with_progress(f"{counts['restored']} files restored so far, the rest is pending") from None
    op.set(status="undone", undo_outcome=dict(counts))
    return counts


def _undo_one(action: Action, op: Operation, j: Journal, e: dict, counts: Counter) -> None:
    i = e["i"]
    if e["state"] in ("intent", "ready"):   # an interrupted apply: did the change happen?
        if action.settle(op, j, e) != "done":
            action.forget(e)
            j.append({"e": "skip", "i": i, "reason": "not applied (interrupted)"})
            return
        done = action.done_fields(e)
        j.append({"e": "done", "i": i, "t": time.time_ns(), **done})
        e.update(done, state="done")
    if e["state"] == "done":
        problem = action.undo_check(e)
        if problem:
            j.append({"e": "undo-skip", "i": i, "reason": problem})
            counts[f"not undone: {problem}"] += 1
            return
        extra = action.undo_intent(op, e)
        j.append({"e": "undo-intent", "i": i, **extra}, durable=True)
        e.update(extra, state="undo-intent")
        outcome = action.undo(op, j, e)
    elif e["state"] == "undo-intent":
        outcome = action.undo_settle(op, j, e)
        if outcome == "todo":
            outcome = action.undo(op, j, e)
    else:
        return
    if outcome == "done" or outcome.startswith("done"):
        j.append({"e": "undone", "i": i, "ut": time.time_ns(), **action.undone_fields(e)})
        counts[action.undone_count(outcome)] += 1
    else:
        j.append({"e": "undo-skip", "i": i, "reason": outcome})
        counts[f"not undone: {outcome}"] += 1
