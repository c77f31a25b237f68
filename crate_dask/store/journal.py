"""Operations on library files (renames, tag writes): their plans, write-ahead journals and replay.

Layout of one operation, ``OUT/_crate/journal/<kind>-<op_id>/``::

    op.json                 kind, options, status: planned -> applying -> applied -> undoing -> undone
    plan/part-00042.parquet the plan for results partition 42 (inspect with pandas.read_parquet)
    log/part-00042.jsonl    the journal of partition 42: one JSON record a line
    data/part-00042.bin     side data of partition 42's records (tag writes: the original tag bytes)

Journal records, keyed by ``i`` (the row of the plan partition)::

    {"e": "intent", "i": 7, ...}      written and fsync'ed *before* the file is touched
    {"e": "ready", "i": 7, ...}       (tag writes) the new file is prepared; its facts
    {"e": "done", "i": 7, "t": ...}   after (a lost "done" is recovered by looking at the files)
    {"e": "skip", "i": 7, "reason": "..."}
    {"e": "undo-intent", "i": 7, ...}, {"e": "undone", "i": 7, "ut": ...}, {"e": "undo-skip", ...}

A crash or a full disk can leave at most one intent per partition without its
outcome, and a torn last line: the reader treats that line as not written and
the next append cuts it off first (:func:`crate_dask.store.partitions.append_line`),
so a record is never glued onto half a line. The actions settle a pending
intent by looking at the files, so a rerun completes the operation and
``undo`` reverts it. Operations are undone last-first (a stack).

>>> import tempfile
>>> j = Journal(os.path.join(tempfile.mkdtemp(), "p.jsonl"))
>>> j.append({"e": "intent", "i": 0, "src": "a\\udcff"}, durable=True); j.append({"e": "done", "i": 0, "t": 1})
>>> fold(j.records())[0]["state"], fold(j.records())[0]["src"]
('done', 'a\\udcff')
>>> with open(j.path, "a") as fh:
...     _ = fh.write('{"e": "undo-intent", "i": 0, "undo_t')   # a power cut mid-line
>>> j.append({"e": "skip", "i": 1, "reason": "x"})
>>> [r["e"] for r in j.records()]
['intent', 'done', 'skip']
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crate_dask.store import bookkeeping
from crate_dask.store.layout import journal_dir, legacy_path
from crate_dask.store.partitions import _fsync_dir, append_line, write_json_atomic
from crate_dask.store.space import writing

_STEPS = {"intent", "ready"}
_OUTCOMES = {"done", "skip", "undo-intent", "undone", "undo-skip"}


class Journal:
    """An append-only JSON-lines file; ``durable`` appends are fsync'ed before returning."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict[str, Any], *, durable: bool = False) -> None:
        """Append one record (``ensure_ascii`` keeps surrogate-escaped file names exact).

        Raises NoSpaceError on a full disk; the journal is then as before the call.
        """
        with writing(self.path.parent, "writing the journal"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            append_line(self.path, json.dumps(record, ensure_ascii=True), durable=durable)
            if new and durable:
                _fsync_dir(self.path.parent)
        _test_kill_point(record["e"])

    def records(self) -> list[dict[str, Any]]:
        """All complete records; a torn line (a crash or full disk mid-write) counts as not written."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n"):
            try:
                rec = json.loads(line.decode("ascii"))
            except ValueError:   # includes UnicodeDecodeError: garbage after a power cut
                continue
            if isinstance(rec, dict) and isinstance(rec.get("i"), int) and isinstance(rec.get("e"), str):
                out.append(rec)
        return out


def fold(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The latest state of each journal entry: its intent fields plus ``state`` and outcome fields.

    Records of an entry whose intent is missing (it was never written) are ignored:
    without an intent the file was not touched.
    """
    entries: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["e"] == "intent":
            entries[r["i"]] = {**r, "state": "intent"}
            continue
        e = entries.get(r["i"])
        if e is None:
            continue
        if r["e"] in _STEPS or r["e"] in _OUTCOMES:
            e.update({k: v for k, v in r.items() if k not in ("e", "i")})
            e["state"] = r["e"]
    return entries


_test_counts: dict[str, int] = {}


def _test_kill_point(event: str) -> None:
    """Tests: real faults at an exact point of the protocol, so crash tests do not depend on timing.

    ``CRATE_DASK_TEST_KILL_AT=intent:8`` SIGKILLs this process right after its 8th
    intent record; ``CRATE_DASK_TEST_FILL_AT=intent:8`` with ``CRATE_DASK_TEST_FILL_FILE=PATH``
    fills the disk of PATH there (writes PATH until the disk is full), so the
    next write meets a real ENOSPC.
    """
    for var in ("CRATE_DASK_TEST_KILL_AT", "CRATE_DASK_TEST_FILL_AT"):
        what, _, n = (os.environ.get(var) or "").partition(":")
        if what != event:
            continue
        key = f"{var}:{event}"
        _test_counts[key] = _test_counts.get(key, 0) + 1
        if _test_counts[key] != int(n or 1):
            continue
        if var == "CRATE_DASK_TEST_KILL_AT":
            os.kill(os.getpid(), signal.SIGKILL)
        with open(os.environ["CRATE_DASK_TEST_FILL_FILE"], "ab", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass


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

    def data_file(self, part: str) -> Path:
        """The side data of plan partition ``part``'s records (append-only bytes)."""
        return self.folder / "data" / f"{part}.bin"

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "op.json").read_text())
        except (OSError, ValueError):
            return {}

    def set(self, **changes: Any) -> None:
        """Update ``op.json`` atomically."""
        write_json_atomic(self.folder / "op.json", {**self.meta(), **changes},
                          doing=f"writing the status of {self.kind} {self.op_id}")

    @property
    def status(self) -> str:
        return self.meta().get("status", "planned")


def new_operation(out: str | os.PathLike, kind: str, meta: dict[str, Any]) -> Operation:
    """Create the folder of a new operation (status ``planned``), dropping older unapplied plans of ``kind``."""
    for op in list_operations(out):
        if op.kind == kind and op.status == "planned" and bookkeeping.owned(out, op.folder):
            bookkeeping.remove_tree(out, op.folder)
    t = time.time_ns()
    op_id = time.strftime("%Y%m%dT%H%M%S", time.localtime(t / 1e9)) + f".{t % 10**9:09d}"
    folder = journal_dir(out) / f"{kind}-{op_id}"
    with writing(out, f"creating the {kind} plan"):
        (folder / "plan").mkdir(parents=True)
    op = Operation(kind, op_id, folder)
    op.set(kind=kind, op_id=op_id, status="planned", created_ns=t, **meta)
    return op


def list_operations(out: str | os.PathLike) -> list[Operation]:
    """Every operation in ``out``, oldest first."""
    base = journal_dir(out)
    if not base.is_dir():
        base = legacy_path(out, "journal")   # not migrated yet (read-only commands)
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
