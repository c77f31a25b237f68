"""Writing the detected BPM and key into the files' tags: plan, apply, resume, undo.

The plan is one Dask task per results partition (``OUT/_journal/tag-<id>/plan/``):
each task finds the file (through the journals of applied renames, so ``tag``
acts on the files' current paths without a new ``analyze``), reads its current
tags and decides what to write. Values go where each ecosystem reads them
(:func:`crate_dask.library.tags.write_tags`: ID3 TBPM/TKEY in MP3, WAV and AIFF;
Vorbis BPM/INITIALKEY; MP4 ``tmpo`` and the iTunes ``initialkey`` atom), the key
in the chosen notation, BPM rounded to ``bpm_decimals`` except where the format
holds an integer (ID3 TBPM, MP4 ``tmpo``).

Each write goes to a hidden copy of the file that then replaces the original in
one atomic rename, so a crash never leaves a half-rewritten file; the audio
bytes are copied untouched. The journal keeps the previous values (``undo``
restores them) and the ``(size, mtime_ns)`` after every write:
:func:`tag_writes` lets ``analyze`` keep the audio analysis of files whose only
change is our tag write.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask.actions.loop import locked, refuse_unfinished, run_apply
from crate_dask.actions.plan import compute_plan, display, locate
from crate_dask.actions.rename import Summary
from crate_dask.errors import FatalError, UnreadableFileError
from crate_dask.features.notation import NOTATIONS, format_key
from crate_dask.library.tags import read_tags, write_tags
from crate_dask.store.corrections import apply_to_row, columns_in, load_corrections
from crate_dask.store.journal import Operation, fold, new_operation
from crate_dask.store.partitions import _fsync_dir, load_state, write_partition

TAG_FIELDS = ("bpm", "key")
_INTEGER_BPM_FORMATS = {"mp3", "wav", "aiff", "mp4"}   # ID3 TBPM and MP4 tmpo hold integers
PLAN_SCHEMA = pa.schema([("path", pa.string()), ("relpath", pa.string()), ("path_bytes", pa.binary()),
                         ("status", pa.string()), ("reason", pa.string()), ("format", pa.string()),
                         ("old_bpm", pa.float64()), ("new_bpm", pa.float64()), ("old_key", pa.string()),
                         ("new_key", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64())])


@dataclass(frozen=True)
class TagOptions:
    """What a tag plan depends on."""

    fields: tuple[str, ...] = TAG_FIELDS
    key_notation: str = "id3"       # musical per the ID3 spec ("Am"); or camelot, open, musical
    bpm_decimals: int = 0
    min_confidence: float = 0.25    # values under it are skipped; 0 writes them all

    def __post_init__(self):
        if not self.fields or set(self.fields) - set(TAG_FIELDS):
            raise FatalError(f"--fields must be a subset of {','.join(TAG_FIELDS)}")
        if self.key_notation not in NOTATIONS:
            raise FatalError(f"--key-notation must be one of {', '.join(NOTATIONS)}")
        if not 0 <= self.bpm_decimals <= 2:
            raise FatalError("--bpm-decimals must be 0, 1 or 2")


def tag_values(row: dict, fmt: str | None, options: TagOptions) -> tuple[dict, list[str], list[str]]:
    """The tag values to write for one results row: (values, low-confidence fields, empty fields).

    >>> tag_values({"bpm": 127.6, "bpm_confidence": 0.9, "key": "A minor", "key_confidence": 0.1},
    ...            "flac", TagOptions(key_notation="camelot", bpm_decimals=1))
    ({'bpm': 127.6}, ['key'], [])
    >>> tag_values({"bpm": 127.6, "bpm_confidence": 0.9, "key": None, "key_confidence": None},
    ...            "mp3", TagOptions(bpm_decimals=1))
    ({'bpm': 128.0}, [], ['key'])
    """
    values, low, empty = {}, [], []
    for f in options.fields:
        v, conf = row.get(f), row.get(f"{f}_confidence")
        if v is None or v != v or v == "":
            empty.append(f)
        elif not (conf or 0.0) >= options.min_confidence:
            low.append(f)
        elif f == "bpm":
            values[f] = float(round(v) if fmt in _INTEGER_BPM_FORMATS else round(v, options.bpm_decimals))
        else:
            values[f] = format_key(v, options.key_notation)
    return values, low, empty


def plan_tags(out: str | os.PathLike, options: TagOptions, *, client=None, sample: int = 10) -> Summary:
    """Compute and write a tag plan (touches no library file)."""
    with locked(out):
        refuse_unfinished(out)
        return _plan(out, options, client, sample)


def _plan(out, options: TagOptions, client, sample: int) -> Summary:
    root = load_state(out).get("root")
    if not root:
        raise FatalError(f"{out} holds no crate_dask results with a library root: run `crate-dask analyze` first")
    opts = {**asdict(options), "fields": list(options.fields)}
    op = new_operation(out, "tag", {"options": opts, "root": root})
    results = compute_plan(out, op, _plan_partition, client, options=opts, root=root)
    counts = Counter()
    for r in results:
        counts.update(r["counts"])
    op.set(counts=dict(counts))
    return Summary(op, dict(counts), [s for r in results for s in r["sample"]][:sample])


def _plan_partition(part_path: str, *, plan_dir: str, context: dict, options: dict, root: str) -> dict:
    """One task: decide the tag writes of one results partition and write its plan partition."""
    opts = TagOptions(**{**options, "fields": tuple(options["fields"])})
    cols = ["path_bytes", "size", "mtime_ns", "error", "bpm", "bpm_confidence", "key", "key_confidence"]
    plan, counts, sample = [], Counter(), []
    fixes = load_corrections(Path(part_path).parent)   # manual bpm/key (crate-dask fix) win over detected ones
    cols = sorted(set(cols) | set(columns_in(part_path)))
    for row in map(lambda r: apply_to_row(r, fixes), pq.read_table(part_path, columns=cols).to_pylist()):
        cur, problem, ident = locate(os.fsdecode(row["path_bytes"]), row["size"], row["mtime_ns"],
                                     context["moves"], context["writes"])
        p = {"path": display(cur), "relpath": display(os.path.relpath(cur, root)), "path_bytes": os.fsencode(cur),
             "size": ident[0] if ident else None, "mtime_ns": ident[1] if ident else None}
        if problem:
            p.update(status="missing" if "not found" in problem else "changed", reason=problem)
        elif row["error"] is not None:
            p.update(status="error-row", reason=row["error"])
        else:
            try:
                t = read_tags(cur)
            except UnreadableFileError as exc:
                t = {"format": None, "error": str(exc)}
            p.update(_decide(row, t, opts))
        counts[p["status"]] += 1
        if p["status"] == "write" and len(sample) < 20:
            sample.append((p["relpath"], _change_text(p)))
        plan.append(p)
    name = Path(part_path).name[:-len(".parquet")]
    write_partition(pa.Table.from_pylist(plan, schema=PLAN_SCHEMA), plan_dir, name, {"kind": "tag"})
    return {"part": name, "counts": dict(counts), "sample": sample}


def _decide(row: dict, t: dict, opts: TagOptions) -> dict:
    if t.get("error"):
        return {"status": "unreadable", "reason": t["error"]}
    values, low, empty = tag_values(row, t["format"], opts)
    old = {"bpm": t.get("tag_bpm"), "key": t.get("tag_key")}
    todo = {f: v for f, v in values.items() if not _equal(old[f], v)}
    notes = [f"confidence of {', '.join(low)} under {opts.min_confidence}"] if low else []
    notes += [f"no detected {', '.join(empty)}"] if empty else []
    status = ("write" if todo else "unchanged" if values else "low-confidence" if low else "missing-fields")
    return {"status": status, "reason": "; ".join(notes) or None, "format": t["format"],
            "old_bpm": old["bpm"], "old_key": old["key"], "new_bpm": todo.get("bpm"), "new_key": todo.get("key")}


def _change_text(p: dict) -> str:
    parts = [f"{f} {p['old_' + f]} -> {p['new_' + f]}" for f in TAG_FIELDS if p[f"new_{f}"] is not None]
    return ", ".join(parts)


def _equal(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(b, float):
        return isinstance(a, (int, float)) and abs(a - b) < 1e-6
    return a == b


def apply_tags(out: str | os.PathLike, options: TagOptions, *, client=None, sample: int = 10) -> Summary:
    """Plan and apply tag writes, or complete an interrupted apply made with the same options."""
    opts = {**asdict(options), "fields": list(options.fields)}
    op, counts, planned = run_apply(out, "tag", opts, lambda: _plan(out, options, client, sample), _apply_partition)
    return Summary(op, dict(counts), planned.sample if planned else [])


def _apply_partition(op: Operation, plan_path: Path) -> Counter:
    rows = pq.read_table(plan_path).to_pylist()
    j = op.journal(plan_path.name[:-len(".parquet")])
    entries = fold(j.records())
    slow = float(os.environ.get("CRATE_DASK_TEST_SLOW_APPLY") or 0)
    counts: Counter = Counter()
    for i, row in enumerate(rows):
        if row["status"] != "write":
            continue
        e = entries.get(i)
        if e is not None and e["state"] != "intent":
            counts["written" if e["state"] == "done" else f"skipped: {e.get('reason')}"] += 1
            continue
        path = os.fsdecode(row["path_bytes"])
        if e is None:
            new = {f: row[f"new_{f}"] for f in TAG_FIELDS if row[f"new_{f}"] is not None}
            problem, old = _check(path, (row["size"], row["mtime_ns"]))
            if problem:
                j.append({"e": "skip", "i": i, "reason": problem})
                counts[f"skipped: {problem}"] += 1
                continue
            e = {"path": path, "tmp": _tmp_for(path), "old": {f: old[f] for f in new}, "new": new}
            j.append({"e": "intent", "i": i, **e}, durable=True)
        outcome = _settle_write(path, e["new"], e["tmp"])
        if outcome == "done":
            j.append({"e": "done", "i": i, "t": time.time_ns(), "after": _ident(path)})
            counts["written"] += 1
        else:
            j.append({"e": "skip", "i": i, "reason": outcome})
            counts[f"skipped: {outcome}"] += 1
        if slow:
            time.sleep(slow)   # tests: make a SIGKILL land mid-way
    return counts


def undo_tags(op: Operation) -> Counter:
    """Restore the previous tag values of ``op``'s writes, last-first; resumable and idempotent."""
    op.set(status="undoing")
    counts: Counter = Counter()
    for j in reversed(op.journals()):
        entries = fold(j.records())
        for i in sorted(entries, reverse=True):
            e = entries[i]
            if e["state"] == "intent":   # interrupted apply: finish the write so the file is in a known state
                outcome = _settle_write(e["path"], e["new"], e["tmp"])
                if outcome != "done":
                    j.append({"e": "skip", "i": i, "reason": outcome})
                    continue
                e["after"] = _ident(e["path"])
                j.append({"e": "done", "i": i, "t": time.time_ns(), "after": e["after"]})
                e["state"] = "done"
            if e["state"] == "done":
                if _ident(e["path"]) != list(e["after"]):
                    reason = "file changed since the tag write" if os.path.lexists(e["path"]) else "file vanished"
                    j.append({"e": "undo-skip", "i": i, "reason": reason})
                    counts[f"not undone: {reason}"] += 1
                    continue
                e["undo_tmp"] = _tmp_for(e["path"])
                j.append({"e": "undo-intent", "i": i, "undo_tmp": e["undo_tmp"]}, durable=True)
            elif e["state"] != "undo-intent":
                continue
            outcome = _settle_write(e["path"], e["old"], e["undo_tmp"])
            if outcome == "done":
                j.append({"e": "undone", "i": i, "ut": time.time_ns(), "undo_after": _ident(e["path"])})
                counts["restored"] += 1
            else:
                j.append({"e": "undo-skip", "i": i, "reason": outcome})
                counts[f"not undone: {outcome}"] += 1
    op.set(status="undone", undo_outcome=dict(counts))
    return counts


def _ident(path: str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _check(path: str, ident: tuple[int, int]) -> tuple[str | None, dict]:
    now = _ident(path)
    if now is None:
        return "vanished since the plan", {}
    if tuple(now) != ident:
        return "changed since the plan", {}
    try:
        t = read_tags(path)
    except UnreadableFileError as exc:
        return f"unreadable: {exc}", {}
    return None, {"bpm": t.get("tag_bpm"), "key": t.get("tag_key")}


def _tmp_for(path: str) -> str:
    """A hidden sibling with the same extension (mutagen also sniffs by extension)."""
    return os.path.join(os.path.dirname(path), f".crate-dask-{uuid.uuid4().hex[:12]}{os.path.splitext(path)[1]}")


def _settle_write(path: str, values: dict, tmp: str) -> str:
    """Make ``path`` hold ``values`` (idempotent): "done" or the reason it could not."""
    if os.path.lexists(tmp):   # a copy from an interrupted attempt was never swapped in
        os.unlink(tmp)
    try:
        t = read_tags(path)
        if all(_equal(t.get("tag_bpm" if f == "bpm" else "tag_key"), v) for f, v in values.items()):
            return "done"
        shutil.copy2(path, tmp)
        write_tags(tmp, values)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(Path(path).parent)
        return "done"
    except FileNotFoundError:
        return "vanished since the plan"
    except (UnreadableFileError, OSError) as exc:
        return f"cannot write tags: {exc}"
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
