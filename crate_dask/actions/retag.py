"""Writing the detected BPM and key into the files' tags: plan, apply, resume, undo.

The plan is one Dask task per results partition (``OUT/_crate/journal/tag-<id>/plan/``):
each task finds the file (through the journals of applied renames, so ``tag``
acts on the files' current paths without a new ``analyze``), reads its current
tags and decides what to write. Values go where each ecosystem reads them
(:func:`crate_dask.library.tags.write_tags`: ID3 TBPM/TKEY in MP3, WAV and AIFF;
Vorbis BPM/INITIALKEY; MP4 ``tmpo`` and the iTunes ``initialkey`` atom), the key
in the chosen notation, BPM rounded to ``bpm_decimals`` except where the format
holds an integer (ID3 TBPM, MP4 ``tmpo``). A write changes only those fields
(the ID3 version, other frames, multi-value frames and padding are kept).

Apply and undo run in the shared loop (:mod:`crate_dask.actions.loop`). Each
write goes to a hidden copy of the file that then replaces the original in one
atomic rename, so a crash never leaves a half-rewritten file. Before the swap,
the journal gets the original bytes of every place the write changed
(:mod:`crate_dask.actions.regions`, in ``data/part-*.bin``) and the SHA-256 of
the original and of the new file: ``undo`` rebuilds the original **byte for
byte** (and its mtime) in every format. Only when the changed places exceed
:data:`MAX_SAVED_BYTES` (an Ogg file whose pages had to be renumbered) does
undo fall back to writing the previous tag values back. The ``(size,
mtime_ns)`` after every write lets ``analyze`` keep the audio analysis of files
whose only change is our tag write (:func:`crate_dask.store.history.tag_writes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask.actions import regions
from crate_dask.actions.loop import Action, Summary, run_apply, run_plan
from crate_dask.actions.plan import compute_plan, display, locate
from crate_dask.errors import FatalError, UnreadableFileError
from crate_dask.features.notation import NOTATIONS, format_key
from crate_dask.library.tags import read_tags, write_tags
from crate_dask.store.journal import Journal, Operation, new_operation
from crate_dask.store.corrections import apply_to_row, columns_in, load_corrections
from crate_dask.store.partitions import _fsync_dir, load_state, write_partition
from crate_dask.store.space import writing

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


#: Above this many changed bytes per file, undo restores tag values instead of the bytes.
MAX_SAVED_BYTES = 16 << 20


def plan_tags(out: str | os.PathLike, options: TagOptions, *, client=None, sample: int = 10) -> Summary:
    """Compute and write a tag plan (touches no library file)."""
    return run_plan(TagAction(out, options), client=client, sample=sample)


def apply_tags(out: str | os.PathLike, options: TagOptions, *, client=None, sample: int = 10) -> Summary:
    """Plan and apply tag writes, or complete an interrupted apply made with the same options."""
    return run_apply(TagAction(out, options), client=client, sample=sample)


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


class TagAction(Action):
    """Tag writes for the shared loop: a rewritten copy swapped in, reverted from the saved original bytes."""

    kind, verb, wanted_status = "tag", "written", "write"
    durable_intent = False   # the durable "ready" record comes before the swap; temp names are derived

    def __init__(self, out: str | os.PathLike, options: TagOptions | None = None):
        options = options or TagOptions()   # undo needs none
        super().__init__(out, {**asdict(options), "fields": list(options.fields)})
        self.tag_options = options

    def plan(self, client, sample: int) -> Summary:
        return _plan(self.out, self.tag_options, client, sample)

    def check(self, row: dict) -> str | None:
        problem, self._old = _check(os.fsdecode(row["path_bytes"]), (row["size"], row["mtime_ns"]))
        return problem

    def intent(self, op: Operation, part: str, i: int, row: dict) -> dict:
        path = os.fsdecode(row["path_bytes"])
        new = {f: row[f"new_{f}"] for f in TAG_FIELDS if row[f"new_{f}"] is not None}
        return {"path": path, "tmp": _tmp_for(path, f"{op.op_id}-{part}-{i}"), "old": {f: self._old[f] for f in new}, "new": new,
                "part": part, "ident": [row["size"], row["mtime_ns"]]}

    def apply(self, op: Operation, j: Journal, e: dict) -> str:
        path, tmp = e["path"], e["tmp"]
        if _read_only(path):
            # Swapping in a rewritten copy would get past the file's own protection: respect it.
            return "cannot write tags: the file is read-only"
        try:
            with writing(path, f"writing the tags of {display(path)}", cleanup=tmp):
                _unlink(tmp)
                shutil.copy2(path, tmp)
                write_tags(tmp, e["new"])
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                ready = {"region": _save_region(op, e["part"], path, tmp)}
                j.append({"e": "ready", "i": e["i"], **ready}, durable=True)   # before the swap
                e.update(ready, state="ready")
                os.replace(tmp, path)   # no directory fsync: a swap lost to a power cut is redone by settle
            return "done"
        except FileNotFoundError:
            return "vanished since the plan"
        except (UnreadableFileError, OSError) as exc:
            return f"cannot write tags: {exc}"
        finally:
            _unlink(tmp)

    def settle(self, op: Operation, j: Journal, e: dict) -> str:
        path, now = e["path"], _ident(e["path"])
        if now is None:
            _unlink(e["tmp"])
            return "vanished since the plan"
        if e["state"] == "ready" and os.path.lexists(e["tmp"]):   # prepared and journaled, not swapped in
            if now == list(e["ident"]) and regions.sha256(e["tmp"]) == e["region"]["sha_new"]:
                os.replace(e["tmp"], path)
                _fsync_dir(Path(path).parent)
                return "done"
            _unlink(e["tmp"])
        if e["state"] == "ready" and regions.sha256(path) == e["region"]["sha_new"]:
            return "done"
        _unlink(e["tmp"])
        return "todo" if now == list(e["ident"]) else "changed since the plan"

    def forget(self, e: dict) -> None:
        _unlink(e["tmp"])

    def done_fields(self, e: dict) -> dict:
        return {"after": _ident(e["path"])}

    def undo_check(self, e: dict) -> str | None:
        if _ident(e["path"]) != list(e["after"]):
            return "file changed since the tag write" if os.path.lexists(e["path"]) else "file vanished"
        return None

    def undo_intent(self, op: Operation, e: dict) -> dict:
        return {"undo_tmp": _tmp_for(e["path"], f"undo-{uuid.uuid4().hex[:12]}")}

    def undo(self, op: Operation, j: Journal, e: dict) -> str:
        path, tmp = e["path"], e["undo_tmp"]
        try:
            with writing(path, f"restoring {display(path)}", cleanup=tmp):
                _unlink(tmp)
                region = e.get("region") or {}
                if region.get("hunks") is not None and _rebuild(op, e, region, tmp):
                    outcome = "done"
                else:   # the changed bytes were too many to keep: put the previous values back
                    shutil.copy2(path, tmp)
                    write_tags(tmp, e["old"])
                    outcome = "done: tag values"
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
                _fsync_dir(Path(path).parent)
            return outcome
        except FileNotFoundError:
            return "file vanished"
        except (UnreadableFileError, OSError) as exc:
            return f"cannot write tags: {exc}"
        finally:
            _unlink(tmp)

    def undo_settle(self, op: Operation, j: Journal, e: dict) -> str:
        _unlink(e["undo_tmp"])
        if _ident(e["path"]) == list(e["after"]):
            return "todo"   # the restored copy was never swapped in
        region = e.get("region") or {}
        if region.get("sha_orig") and os.path.lexists(e["path"]) and regions.sha256(e["path"]) == region["sha_orig"]:
            return "done"
        try:
            t = read_tags(e["path"])
        except UnreadableFileError:
            return "file changed since the tag write"
        if all(_equal(t.get("tag_bpm" if f == "bpm" else "tag_key"), v) for f, v in e["old"].items()):
            return "done: tag values"
        return "file changed since the tag write"

    def undone_fields(self, e: dict) -> dict:
        return {"undo_after": _ident(e["path"])}

    def undone_count(self, outcome: str) -> str:
        return "restored" if outcome == "done" else "restored tag values only"


def _save_region(op: Operation, part: str, path: str, tmp: str) -> dict:
    """Journal side data: what undo needs to rebuild the original bytes, and both files' hashes."""
    sha_orig, sha_new = regions.sha256(path), regions.sha256(tmp)
    hunks = regions.diff(path, tmp)
    if sum(h[1] for h in hunks) > MAX_SAVED_BYTES:
        return {"hunks": None, "sha_orig": sha_orig, "sha_new": sha_new}
    records, data = regions.save(path, tmp, hunks)
    f = op.data_file(part)
    with writing(f.parent, "writing the journal"):
        f.parent.mkdir(parents=True, exist_ok=True)
        with open(f, "ab") as fh:
            at = fh.seek(0, os.SEEK_END)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return {"hunks": records, "at": at, "len": len(data), "sha_orig": sha_orig, "sha_new": sha_new}


def _rebuild(op: Operation, e: dict, region: dict, tmp: str) -> bool:
    """Write the original file to ``tmp`` with its original mtime; False if that is not possible."""
    try:
        with open(op.data_file(e["part"]), "rb") as fh:
            fh.seek(region["at"])
            saved = fh.read(region["len"])
    except OSError:
        return False
    if len(saved) != region["len"]:
        return False
    if not regions.rebuild(e["path"], region["hunks"], saved, tmp, sha_current=region["sha_new"],
                           sha_original=region["sha_orig"]):
        _unlink(tmp)
        return False
    shutil.copymode(e["path"], tmp)
    os.utime(tmp, ns=(os.stat(e["path"]).st_atime_ns, e["ident"][1]))   # backups see the file unchanged
    return True


def _unlink(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _read_only(path: str) -> bool:
    """Not writable by us, or marked read-only for everyone (``chmod a-w``: root would write it anyway)."""
    try:
        return not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222
    except OSError:
        return False   # vanished: apply says so


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


def _tmp_for(path: str, tag: str) -> str:
    """A hidden sibling named after ``tag`` with the same extension (mutagen also sniffs by extension)."""
    digest = hashlib.sha1(tag.encode()).hexdigest()[:12]
    return os.path.join(os.path.dirname(path), f".crate-dask-{digest}{os.path.splitext(path)[1]}")
