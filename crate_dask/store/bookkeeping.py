"""crate_dask's own folder in a results folder: created with a marker, the only place it deletes.

:func:`ensure` creates ``OUT/_crate/`` with its marker file (or checks an existing
one carries it); :func:`migrate` (run under the lock) moves the bookkeeping of a
results folder of the earlier layout (``OUT/_crate.json``, ``_runs.jsonl``,
``_journal/`` ...) into it, only files that are provably crate_dask's.
:func:`remove_tree` and :func:`owned` are the guard
every delete and move goes through: a path outside the marked folder is never
touched, whatever it is called.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> _ = ensure(out)
>>> owned(out, out / "_crate" / "stale"), owned(out, out / "_stale")
(True, False)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from crate_dask.errors import FatalError
from crate_dask.store import layout
from crate_dask.store.space import writing


def ensure(out: str | os.PathLike) -> Path:
    """Create (or check) ``OUT/_crate/`` with its marker. Returns the folder."""
    out = Path(out)
    folder = layout.bookkeeping_dir(out)
    marker = layout.marker_path(out)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise FatalError(f"{folder} exists and is not crate_dask's folder; choose another --out")
    if folder.is_dir() and not marker.is_file():
        if any(folder.iterdir()):
            raise FatalError(f"{folder} exists and was not created by crate_dask; choose another output folder")
    if not marker.is_file():
        with writing(out, "creating its bookkeeping folder"):
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{layout.MARKER}.tmp"
            tmp.write_text(json.dumps({"created_by": "crate_dask", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                           + "\n")
            os.replace(tmp, marker)
    return folder


def is_marked(out: str | os.PathLike) -> bool:
    """Whether ``OUT/_crate/`` exists and carries crate_dask's marker."""
    return layout.marker_path(out).is_file()


def owned(out: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` lies inside the marked bookkeeping folder of ``out`` (not the folder itself)."""
    base = os.path.realpath(layout.bookkeeping_dir(out))
    p = os.path.realpath(path)
    return is_marked(out) and p != base and os.path.commonpath([base, p]) == base


def remove_tree(out: str | os.PathLike, path: str | os.PathLike) -> None:
    """Delete ``path`` (a file or folder), only if it lies inside crate_dask's marked folder."""
    if not owned(out, path):
        raise AssertionError(f"refusing to delete {path}: not inside {layout.bookkeeping_dir(out)}")
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def check_out(library: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse an output folder that is the library or contains it (one inside the library is fine).

    >>> check_out("/music/lib", "/music/lib/_results")
    >>> check_out("/music/lib", "/music")
    Traceback (most recent call last):
    ...
    crate_dask.errors.FatalError: the output folder /music contains the library /music/lib: choose an output folder outside the library (or inside it, e.g. /music/lib/crate-results)
    """
    lib, o = os.path.realpath(library), os.path.realpath(out)
    if os.path.commonpath([lib, o]) != o:
        return
    what = "is the library itself" if lib == o else f"contains the library {lib}"
    raise FatalError(f"the output folder {o} {what}: choose an output folder outside the library "
                     f"(or inside it, e.g. {os.path.join(lib, 'crate-results')})")


_LEGACY_TMP = re.compile(r"^\.part-\d{5}(-\d{3})*\.parquet\.tmp-[0-9a-f]{8}$")


def migrate(out: str | os.PathLike) -> None:
    """Move the bookkeeping of the earlier layout into ``_crate/``: only what is provably crate_dask's.

    Called with the lock of ``out`` held (:func:`crate_dask.store.partitions.exclusive`).
    """
    out = Path(out)
    old_state = layout.legacy_path(out, "state")
    if old_state.is_file() and not layout.state_path(out).exists():
        try:
            state = json.loads(old_state.read_text())
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and "root" in state:
            os.replace(old_state, layout.state_path(out))
    old_runs = layout.legacy_path(out, "runs")
    if old_runs.is_file() and not layout.runs_path(out).exists() and _is_run_log(old_runs):
        os.replace(old_runs, layout.runs_path(out))
    old_journal = layout.legacy_path(out, "journal")
    if old_journal.is_dir():
        for d in sorted(old_journal.iterdir()):
            target = layout.journal_dir(out) / d.name
            if d.is_dir() and re.match(r"^(rename|tag)-\d{8}T\d{6}\.\d{9}$", d.name) and (d / "op.json").is_file() \
                    and not target.exists():
                layout.journal_dir(out).mkdir(exist_ok=True)
                os.replace(d, target)
        _rmdir_if_empty(old_journal)
    old_stale = layout.legacy_path(out, "stale")
    if old_stale.is_dir():
        for p in sorted(old_stale.glob(layout.PART_GLOB)):
            if has_footer(p) and not (layout.stale_dir(out) / p.name).exists():
                layout.stale_dir(out).mkdir(exist_ok=True)
                os.replace(p, layout.stale_dir(out) / p.name)
        _rmdir_if_empty(old_stale)
    old_plan = layout.legacy_path(out, "plan")
    if old_plan.is_dir():
        for p in sorted(old_plan.glob(layout.PART_GLOB)):
            if _is_file_list(p):
                p.unlink()
        _rmdir_if_empty(old_plan)
    old_lock = layout.legacy_path(out, "lock")
    if old_lock.is_file() and old_lock.stat().st_size < 200:
        text = old_lock.read_text(errors="replace")
        if text == "" or text.startswith("crate-dask "):
            old_lock.unlink()
    for p in out.iterdir():
        if _LEGACY_TMP.match(p.name) and p.is_file():
            p.unlink()


def has_footer(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Parquet file that carries crate_dask's provenance footer (so crate_dask wrote it)."""
    import pyarrow.parquet as pq

    try:
        return layout.META_KEY in (pq.read_metadata(path).metadata or {})
    except Exception:   # not Parquet, unreadable: not ours
        return False


def _is_run_log(path: Path) -> bool:
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        return bool(first) and isinstance(json.loads(first[0]), dict) and "status" in json.loads(first[0])
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def _is_file_list(path: Path) -> bool:
    try:
        import pyarrow.parquet as pq

        return pq.read_schema(path).names == ["relpath", "size", "mtime_ns", "ino", "problem"]
    except Exception:   # not a Parquet file: not ours
        return False


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
