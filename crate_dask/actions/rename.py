"""Renaming library files from their results: plan (a Dask pipeline), apply, resume, undo.

1. **Plan.** One Dask task per results partition renders the template for each
   row and writes one plan partition (``OUT/_crate/journal/rename-<id>/plan/part-*.parquet``:
   old/new path, status, reason). Rows are located first through the journals of
   earlier renames, so a second rename before a new ``analyze`` still finds the files.
2. **Collisions.** Distinct names need a global view, so the client then takes only
   the ``rename`` rows (old, new) and assigns targets deterministically: in order of
   (target, old path), a target is free unless another library file, another target
   or anything on disk already holds it (compared case-insensitively after NFC, as
   on APFS/NTFS/exFAT). A taken name gets `` (2)``, `` (3)``... (``on_conflict="number"``)
   or the status ``conflict`` (``"skip"``). Since no target is an existing name,
   apply order never matters and nothing is ever overwritten.
3. **Apply.** Sequential in the client (renames are metadata operations on one file
   system), partition by partition through the write-ahead journal, in the loop
   shared with tag writes (:mod:`crate_dask.actions.loop`, :class:`RenameAction`). Each move is a no-replace rename (``renameat2``
   ``RENAME_NOREPLACE`` on Linux); case-only renames go through a hidden temp name.
   Renames keep ``mtime``, so ``analyze`` reuses the rows of renamed files.
4. **Undo** reverts the journal last-first; it is resumable and idempotent.
"""

from __future__ import annotations

import os
import unicodedata
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask.actions import naming
from crate_dask.actions.loop import Action, Summary, run_apply, run_plan
from crate_dask.actions.moves import (
    listed,
    missing_dirs,
    remove_dirs,
    rename_noreplace,
    same_file,
)
from crate_dask.actions.plan import compute_plan, display, locate
from crate_dask.errors import FatalError, NoSpaceError
from crate_dask.store.journal import Journal, Operation, new_operation
from crate_dask.store.corrections import apply_to_row, columns_in, load_corrections
from crate_dask.store.partitions import load_state, write_partition
from crate_dask.store.space import describe, is_full

STATUSES = ("rename", "unchanged", "conflict", "missing-fields", "error-row", "low-confidence",
            "missing", "changed")
PLAN_SCHEMA = pa.schema([("old_path", pa.string()), ("new_path", pa.string()), ("old_relpath", pa.string()),
                         ("new_relpath", pa.string()), ("status", pa.string()), ("reason", pa.string()),
                         ("old_path_bytes", pa.binary()), ("new_path_bytes", pa.binary()),
                         ("size", pa.int64()), ("mtime_ns", pa.int64()), ("content_id", pa.string())])


@dataclass(frozen=True)
class RenameOptions:
    """What a rename plan depends on (compared when an interrupted apply is resumed)."""

    template: str = naming.DEFAULT_TEMPLATE
    base: str = "folder"            # "folder": rename in place; "root": the template is relative to the library root
    min_confidence: float = 0.25    # applies to bpm/key fields used in the template
    on_conflict: str = "number"     # "number" or "skip"

    def __post_init__(self):
        naming.parse_template(self.template)
        if self.base not in ("folder", "root") or self.on_conflict not in ("number", "skip"):
            raise FatalError("base must be folder|root and on_conflict number|skip")


def plan_renames(out: str | os.PathLike, options: RenameOptions, *, client=None, sample: int = 10) -> Summary:
    """Compute and write a rename plan (touches no library file).

    Raises
    ------
    FatalError
        No results, or an interrupted operation must first be completed or undone.
    """
    return run_plan(RenameAction(out, options), client=client, sample=sample)


def apply_renames(out: str | os.PathLike, options: RenameOptions, *, client=None, sample: int = 10) -> Summary:
    """Plan and apply renames, or complete an interrupted apply made with the same options."""
    return run_apply(RenameAction(out, options), client=client, sample=sample)


class RenameAction(Action):
    """Renames for the shared loop: a no-replace move per planned row, reverted by the opposite move."""

    kind, verb, wanted_status = "rename", "renamed", "rename"
    columns = ["status", "old_path_bytes", "new_path_bytes", "size", "mtime_ns"]

    def __init__(self, out: str | os.PathLike, options: RenameOptions | None = None):
        options = options or RenameOptions()   # undo needs none
        super().__init__(out, asdict(options))
        self.rename_options = options

    def plan(self, client, sample: int) -> Summary:
        return _plan(self.out, self.rename_options, client, sample)

    def check(self, row: dict) -> str | None:
        return _check(os.fsdecode(row["old_path_bytes"]), os.fsdecode(row["new_path_bytes"]),
                      (row["size"], row["mtime_ns"]))

    def intent(self, op: Operation, part: str, i: int, row: dict) -> dict:
        src, dst = os.fsdecode(row["old_path_bytes"]), os.fsdecode(row["new_path_bytes"])
        return {"src": src, "dst": dst, "tmp": _tmp_for(src, dst), "dirs": missing_dirs(os.path.dirname(dst))}

    def apply(self, op: Operation, j: Journal, e: dict) -> str:
        return _move(e["src"], e["dst"], e["tmp"], e["dirs"])

    def settle(self, op: Operation, j: Journal, e: dict) -> str:
        return _settle(e["src"], e["dst"], e["tmp"])

    def forget(self, e: dict) -> None:
        remove_dirs(e["dirs"])

    def undo_check(self, e: dict) -> str | None:
        return _check_undo(e["dst"], e["src"])

    def undo_intent(self, op: Operation, e: dict) -> dict:
        return {"undo_tmp": _tmp_for(e["dst"], e["src"])}

    def undo(self, op: Operation, j: Journal, e: dict) -> str:
        outcome = _move(e["dst"], e["src"], e.get("undo_tmp"), [])
        if outcome == "done":
            remove_dirs(e["dirs"])
        return outcome

    def undo_settle(self, op: Operation, j: Journal, e: dict) -> str:
        outcome = _settle(e["dst"], e["src"], e.get("undo_tmp"))
        if outcome == "done":
            remove_dirs(e["dirs"])
        return outcome


def _plan(out, options: RenameOptions, client, sample: int) -> Summary:
    root = load_state(out).get("root")
    if not root:
        raise FatalError(f"{out} holds no crate_dask results with a library root: run `crate-dask analyze` first")
    op = new_operation(out, "rename", {"options": asdict(options), "root": root})
    results = compute_plan(out, op, _plan_partition, client, options=asdict(options), root=root)
    occupied = Counter(naming.collision_key(p) for r in results for p in r["paths"])
    cands = [(r["part"], old, new) for r in results for old, new in r["candidates"]]
    assigned = assign_targets([(o, n) for _, o, n in cands], occupied=occupied, on_conflict=options.on_conflict)
    by_part: dict[str, dict[str, tuple[str | None, str]]] = {}
    for part, old, new in cands:
        if assigned[old] != (new, ""):
            by_part.setdefault(part, {})[old] = assigned[old]
    for part, changes in by_part.items():
        _patch_plan(op.plan_dir, part, changes, root)
    counts = Counter()
    for r in results:
        counts.update(r["counts"])
    for target, reason in assigned.values():
        if target is None or reason == "unchanged":
            counts["rename"] -= 1
            counts["conflict" if target is None else "unchanged"] += 1
    changes = sorted((o, t) for o, (t, why) in assigned.items() if t is not None and why != "unchanged")
    op.set(counts={k: v for k, v in counts.items() if v})
    return Summary(op, {k: v for k, v in counts.items() if v},
                   [(display(os.path.relpath(o, root)), display(os.path.relpath(t, root))) for o, t in changes[:sample]])


def assign_targets(candidates: Iterable[tuple[str, str]], *, occupied: Counter,
                   on_conflict: str = "number",
                   exists: Callable[[str], bool] = os.path.lexists) -> dict[str, tuple[str | None, str]]:
    """Give every (old, new) pair a distinct free target, deterministically.

    ``occupied`` counts the collision keys of every current library path. Returns
    old -> (target, reason); target ``None`` means conflict (``on_conflict="skip"``);
    reason ``"unchanged"`` means the free name found is the file's own.

    >>> from collections import Counter
    >>> c = [("/l/b.mp3", "/l/X.mp3"), ("/l/a.mp3", "/l/x.mp3")]
    >>> occ = Counter(naming.collision_key(p) for p in ["/l/a.mp3", "/l/b.mp3"])
    >>> assign_targets(c, occupied=occ, exists=lambda p: False)
    {'/l/a.mp3': ('/l/x.mp3', ''), '/l/b.mp3': ('/l/X (2).mp3', 'name taken, numbered (2)')}
    """
    taken: set[str] = set()
    out: dict[str, tuple[str | None, str]] = {}
    for old, new in sorted(candidates, key=lambda c: (naming.collision_key(c[1]), c[0])):
        own = naming.collision_key(old)
        target, n = new, 1
        while True:
            k = naming.collision_key(target)
            held = occupied.get(k, 0) - (k == own)
            if target == old or (k not in taken and held <= 0 and (not exists(target) or same_file(old, target))):
                break
            if on_conflict == "skip":
                target = None
                break
            n += 1
            target = naming.numbered(new, n)
        if target is None:
            out[old] = (None, f"name taken: {os.path.basename(new)}")
            continue
        taken.add(naming.collision_key(target))
        same = unicodedata.normalize("NFC", target) == unicodedata.normalize("NFC", old)
        out[old] = (target, "unchanged" if same else f"name taken, numbered ({n})" if n > 1 else "")
    return out


def _plan_partition(part_path: str, *, plan_dir: str, context: dict, options: dict, root: str) -> dict:
    """One task: plan the rows of one results partition and write its plan partition."""
    opts = RenameOptions(**options)
    fields = naming.parse_template(opts.template)
    cols = {"path_bytes", "size", "mtime_ns", "content_id", "error"} | (set(fields) - {"stem"})
    cols |= {naming.CONFIDENCE_OF[f] for f in fields if f in naming.CONFIDENCE_OF}
    fixes = load_corrections(Path(part_path).parent)   # manual bpm/key (crate-dask fix) win over detected ones
    rows = pq.read_table(part_path, columns=sorted(cols | set(columns_in(part_path)))).to_pylist()
    plan, cands, paths, counts = [], [], [], Counter()
    for row in map(lambda r: apply_to_row(r, fixes), rows):
        path = os.fsdecode(row["path_bytes"])
        cur, problem, ident = locate(path, row["size"], row["mtime_ns"], context["moves"], context["writes"])
        row["size"], row["mtime_ns"] = ident or (row["size"], row["mtime_ns"])   # the plan checks the file as it is now
        paths.append(cur)
        new, status, reason = None, None, problem
        if problem:
            status = "missing" if "not found" in problem else "changed"
        elif row["error"] is not None:
            status, reason = "error-row", row["error"]
        elif missing := naming.missing_fields(fields, {**row, "stem": "x"}):
            status, reason = "missing-fields", "empty: " + ", ".join(missing)
        elif low := [f for f in fields if f in naming.CONFIDENCE_OF
                     and not (row[naming.CONFIDENCE_OF[f]] or 0.0) >= opts.min_confidence]:   # NaN is low
            status, reason = "low-confidence", f"confidence of {', '.join(low)} under {opts.min_confidence}"
        else:
            stem, ext = os.path.splitext(os.path.basename(cur))
            rel = naming.render_relpath(opts.template, {**row, "stem": stem}, ext=ext)
            new = os.path.join(root if opts.base == "root" else os.path.dirname(cur), *rel.split("/"))
            same = unicodedata.normalize("NFC", new) == unicodedata.normalize("NFC", cur)
            status, reason = ("unchanged", "") if same else ("rename", "")
            if not same:
                cands.append((cur, new))
        counts[status] += 1
        plan.append(_plan_row(cur, new if status == "rename" else None, status, reason, row, root))
    name = Path(part_path).name[:-len(".parquet")]
    write_partition(pa.Table.from_pylist(plan, schema=PLAN_SCHEMA), plan_dir, name, {"kind": "rename"})
    return {"part": name, "counts": dict(counts), "candidates": cands, "paths": paths}


def _plan_row(cur: str, new: str | None, status: str, reason: str | None, row: dict, root: str) -> dict:
    return {"old_path": display(cur), "new_path": display(new) if new else None,
            "old_relpath": display(os.path.relpath(cur, root)),
            "new_relpath": display(os.path.relpath(new, root)) if new else None,
            "status": status, "reason": reason or None, "old_path_bytes": os.fsencode(cur),
            "new_path_bytes": os.fsencode(new) if new else None,
            "size": row["size"], "mtime_ns": row["mtime_ns"], "content_id": row["content_id"]}


def _patch_plan(plan_dir: Path, part: str, changes: dict[str, tuple[str | None, str]], root: str) -> None:
    """Rewrite one plan partition with the targets of the collision pass."""
    rows = pq.read_table(plan_dir / f"{part}.parquet").to_pylist()
    for r in rows:
        old = os.fsdecode(r["old_path_bytes"])
        if r["status"] != "rename" or old not in changes:
            continue
        target, reason = changes[old]
        status = "conflict" if target is None else "unchanged" if reason == "unchanged" else "rename"
        r.update(_plan_row(old, target if status == "rename" else None, status,
                           "" if status == "unchanged" else reason, r, root))
    write_partition(pa.Table.from_pylist(rows, schema=PLAN_SCHEMA), plan_dir, part, {"kind": "rename"})


def _check(src: str, dst: str, ident: tuple[int, int]) -> str | None:
    try:
        st = os.lstat(src)
    except OSError:
        return "vanished since the plan"
    if (st.st_size, st.st_mtime_ns) != ident:
        return "changed since the plan"
    if os.path.lexists(dst) and not same_file(src, dst):
        return "target exists"
    return None


def _check_undo(cur: str, orig: str) -> str | None:
    if not os.path.lexists(cur):
        return "renamed file vanished"
    if os.path.lexists(orig) and not same_file(cur, orig):
        return "original name is now taken by another file"
    return None


def _tmp_for(src: str, dst: str) -> str | None:
    """A hidden temp name for a case-only rename (both names are one file on case-insensitive systems)."""
    if naming.collision_key(src) != naming.collision_key(dst):
        return None
    return os.path.join(os.path.dirname(src), f".crate-dask-{uuid.uuid4().hex[:12]}.tmp")


def _move(src: str, dst: str, tmp: str | None, dirs: list[str]) -> str:
    """Move without ever replacing a file: "done" or the reason it was not done."""
    try:
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if tmp is None:
            rename_noreplace(src, dst)
            return "done"
        rename_noreplace(src, tmp)
        try:
            rename_noreplace(tmp, dst)
        except OSError:
            rename_noreplace(tmp, src)
            raise
        return "done"
    except FileExistsError:
        return "target exists"
    except FileNotFoundError:
        return "vanished since the plan"
    except OSError as exc:
        if is_full(exc):   # creating a folder on a full disk: stop, the intent is settled on the rerun
            raise NoSpaceError(describe(os.path.dirname(dst)), f"creating folders for {display(dst)}") from None
        return f"cannot rename: {exc.strerror or exc}"


def _settle(src: str, dst: str, tmp: str | None) -> str:
    """After a crash: "done" if the move happened, "todo" if not, else the reason it cannot proceed."""
    if tmp and os.path.lexists(tmp):   # killed between the two steps of a case-only rename
        return _move(tmp, dst, None, [])
    if tmp:   # case-only: one file under either name, so compare exact names
        if listed(dst) and not listed(src):
            return "done"
        return "todo" if listed(src) else "vanished since the plan"
    s, d = os.path.lexists(src), os.path.lexists(dst)
    if d and not s:
        return "done"
    if s and not d:
        return "todo"
    return "target exists" if s else "vanished since the plan"
