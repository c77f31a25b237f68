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

import contextlib
import ctypes
import errno
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import FatalError
from .store import _fsync_dir, exclusive, list_parts, write_json_atomic

JOURNAL_DIR = "_journal"
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
    folder = Path(out) / JOURNAL_DIR / f"{kind}-{op_id}"
    (folder / "plan").mkdir(parents=True)
    op = Operation(kind, op_id, folder)
    op.set(kind=kind, op_id=op_id, status="planned", created_ns=t, **meta)
    return op


def list_operations(out: str | os.PathLike) -> list[Operation]:
    """Every operation in ``out``, oldest first."""
    base = Path(out) / JOURNAL_DIR
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


@contextlib.contextmanager
def locked(out: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``out`` (shared with analyze; released by the OS if the process dies)."""
    with exclusive(out, "rename/tag/undo"):
        yield


def replay(out: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """Replay every journal in time order.

    Returns
    -------
    moves : dict
        Absolute path -> current absolute path, for every earlier name of a file moved by
        renames (so rows of any ``analyze`` between renames are found again).
    writes : dict
        Current absolute path -> ``(size, mtime_ns)`` after the last tag write (or tag undo).
    """
    events: list[tuple[int, str, Any, Any]] = []
    for op in list_operations(out):
        for j in op.journals():
            for e in fold(j.records()).values():
                if op.kind == "rename":   # "t": when the rename was done, "ut": when it was undone
                    if "t" in e:
                        events.append((e["t"], "move", e["src"], e["dst"]))
                    if "ut" in e:
                        events.append((e["ut"], "move", e["dst"], e["src"]))
                else:                     # tag writes record the file's (size, mtime_ns) after each write
                    if "t" in e:
                        events.append((e["t"], "write", e["path"], tuple(e["after"])))
                    if "ut" in e:
                        events.append((e["ut"], "write", e["path"], tuple(e["undo_after"])))
    names: dict[str, list[str]] = {}   # current path -> every earlier name of that file
    writes: dict[str, tuple[int, int]] = {}
    for _t, kind, a, b in sorted(events, key=lambda ev: ev[0]):
        if kind == "move":
            names[b] = names.pop(a, []) + [a]
            if a in writes:
                writes[b] = writes.pop(a)
        else:
            writes[a] = b
    moves = {old: cur for cur, olds in names.items() for old in olds if old != cur}
    return moves, writes


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
        raise FatalError(f"no results in {out}: run `crate-dask analyze LIBRARY --out {out}` first")
    moves, writes = replay(out)
    context = dask.delayed({"moves": moves, "writes": writes}, traverse=False)
    bag = db.from_sequence(parts, npartitions=len(parts)).map(
        plan_partition, plan_dir=str(op.plan_dir), context=context, **kw)
    if client is None:
        return list(bag.compute(scheduler="sync"))
    return list(client.compute(bag).result())


def display(path: str) -> str:
    """A path as valid UTF-8 text (undecodable bytes as ``\\xNN``) for plans and messages."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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


def undo_last(out: str | os.PathLike) -> tuple[Operation, Counter] | None:
    """Undo the most recent rename or tag operation of ``out`` (``None`` if there is none)."""
    with locked(out):
        op = last_undoable(out)
        if op is None:
            return None
        if op.kind == "rename":
            from .rename import undo_renames as undo_op
        else:
            from .tagging import undo_tags as undo_op
        return op, undo_op(op)


# Safe moves for journaled renames.

def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def missing_dirs(folder: str) -> list[str]:
    """The folders to create for ``folder``, outermost first (undo removes them again if empty)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing[::-1]


def remove_dirs(dirs: list[str]) -> None:
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def listed(path: str) -> bool:
    try:
        return os.path.basename(path) in os.listdir(os.path.dirname(path) or ".")
    except OSError:
        return False


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_libc = None


def rename_noreplace(src: str, dst: str) -> None:
    """Atomic rename that fails with FileExistsError instead of replacing ``dst``."""
    global _libc
    if hasattr(os, "uname") and os.uname().sysname == "Linux":
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(_libc, "renameat2", None)
        if fn is not None:
            if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):   # else: file system lacks it
                raise OSError(err, os.strerror(err), src, None, dst)   # EEXIST gives FileExistsError
    if os.path.lexists(dst) and not same_file(src, dst):   # fallback: check, then rename (a small race)
        raise FileExistsError(errno.EEXIST, "target exists", dst)
    os.rename(src, dst)
