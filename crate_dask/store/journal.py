"""Operations on library files (renames, tag writes): their plans, write-ahead journals and replay.

Layout of one operation, ``OUT/_journal/<kind>-<op_id>/``::

    op.json                 kind, options, status: planned -> applying -> applied -> undoing -> undone
    plan/part-00042.parquet the plan for results partition 42 (inspect with pandas.read_parquet)
    log/part-00042.jsonl    the journal of partition 42: one JSON record a line

Journal records, keyed by ``i`` (the row of the plan partition)::

    {"e": "intent", "i": 7, ...}      written and fsync'ed *before* the file is touched
    {"e": "done", "i": 7, "t": ...}   after (flushed; a lost "done" is recovered by looking at the files)
    {"e": "skip", "i": 7, "reason": "..."}
    {"e": "undo-intent", "i": 7, ...}, {"e": "undone", "i": 7, "ut": ...}, {"e": "undo-skip", ...}

A crash can leave at most one intent per partition without its outcome; the
rename and tagging modules settle such an intent by looking at the files, so a
rerun completes the operation and ``undo`` reverts it. Operations are undone
last-first (a stack), and one process at a time holds ``OUT/_journal/.lock``.

>>> import tempfile
>>> j = Journal(os.path.join(tempfile.mkdtemp(), "p.jsonl"))
>>> j.append({"e": "intent", "i": 0, "src": "a\\udcff"}, durable=True); j.append({"e": "done", "i": 0, "t": 1})
>>> fold(j.records())[0]["state"], fold(j.records())[0]["src"]
('done', 'a\\udcff')
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crate_dask.store.layout import journal_dir
from crate_dask.store.partitions import _fsync_dir, write_json_atomic

_OUTCOMES = {"done", "skip", "undo-intent", "undone", "undo-skip"}


class Journal:
    """An append-only JSON-lines file; ``durable`` appends are fsync'ed before returning."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict[str, Any], *, durable: bool = False) -> None:
        """Append one record (``ensure_ascii`` keeps surrogate-escaped file names exact)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", encoding="ascii") as fh:
            fh.write(json.dumps(record, ensure_ascii=True) + "\n")
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if new and durable:
            _fsync_dir(self.path.parent)

    def records(self) -> list[dict[str, Any]]:
        """All complete records; a torn last line (a crash mid-write) is ignored."""
        try:
            lines = self.path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def fold(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The latest state of each journal entry: its intent fields plus ``state`` and outcome fields."""
    entries: dict[int, dict[str, Any]] = {}
    for r in records:
        e = entries.setdefault(r["i"], {})
        if r["e"] == "intent":
            e.update(r)
            e["state"] = "intent"
        elif r["e"] in _OUTCOMES:
            e.update({k: v for k, v in r.items() if k not in ("e", "i")})
            e["state"] = r["e"]
    return entries


@dataclass(frozen=True)
class Operation:
    """One rename or tag operation and its folder."""

    kind: str
    op_id: str
    folder: Path

    @property
    def plan_dir(self) -> Path:
        return self.folder / "plan"

    def journal(self, part: str) -> Journal:
        """The journal of plan partition ``part``."""
        return Journal(self.folder / "log" / f"{part}.jsonl")

    def journals(self) -> list[Journal]:
        return [Journal(p) for p in sorted((self.folder / "log").glob("part-*.jsonl"))]

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "op.json").read_text())
        except (OSError, ValueError):
            return {}

    def set(self, **changes: Any) -> None:
        """Update ``op.json`` atomically."""
        write_json_atomic(self.folder / "op.json", {**self.meta(), **changes})

    @property
    def status(self) -> str:
        return self.meta().get("status", "planned")


def new_operation(out: str | os.PathLike, kind: str, meta: dict[str, Any]) -> Operation:
    """Create the folder of a new operation (status ``planned``), dropping older unapplied plans of ``kind``."""
    for op in list_operations(out):
        if op.kind == kind and op.status == "planned":
            shutil.rmtree(op.folder, ignore_errors=True)
    t = time.time_ns()
    op_id = time.strftime("%Y%m%dT%H%M%S", time.localtime(t / 1e9)) + f".{t % 10**9:09d}"
    folder = journal_dir(out) / f"{kind}-{op_id}"
    (folder / "plan").mkdir(parents=True)
    op = Operation(kind, op_id, folder)
    op.set(kind=kind, op_id=op_id, status="planned", created_ns=t, **meta)
    return op


def list_operations(out: str | os.PathLike) -> list[Operation]:
    """Every operation in ``out``, oldest first."""
    base = journal_dir(out)
    if not base.is_dir():
        return []
    ops = []
    for d in base.iterdir():
        kind, _, op_id = d.name.partition("-")
        if d.is_dir() and op_id and (d / "op.json").exists():
            ops.append(Operation(kind, op_id, d))
    return sorted(ops, key=lambda o: o.op_id)


def unfinished(out: str | os.PathLike) -> Operation | None:
    """The operation that was interrupted while applying or undoing, if any."""
    ops = [o for o in list_operations(out) if o.status in ("applying", "undoing")]
    return ops[-1] if ops else None


def last_undoable(out: str | os.PathLike) -> Operation | None:
    """The most recent operation that changed files and is not fully undone."""
    ops = [o for o in list_operations(out) if o.status in ("applying", "applied", "undoing")]
    return ops[-1] if ops else None
