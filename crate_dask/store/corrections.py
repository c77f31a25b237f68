"""Manual BPM and key corrections, kept in the results folder as data of their own.

``crate-dask fix`` records a value a DJ knows better than the estimator. The
corrections live in ``OUT/_crate/corrections.json`` (:func:`crate_dask.store.layout.corrections_path`),
beside the partitions, so no rerun of ``analyze`` ever drops them. Each entry
names its file three ways, tried in this order when the corrections are applied
to a results row:

1. ``content_id`` (size + head + tail hash): the same file after a rename or move;
2. ``path``: the same file after its tags were rewritten (``crate-dask tag``
   changes its bytes, so its content id, but not its name);
3. ``fingerprint`` (the audio fingerprint): the same audio after both.

:func:`apply_to_row` is the single function the rest of the code calls: the
query/report layer shows its result with a ``corrected`` marker and the
detected values beside, and ``rename`` and ``tag`` plan with it.

>>> c = Corrections([{"content_id": "c1", "path": "/l/a.mp3", "bpm": 128.0, "key": "A minor"}])
>>> row = {"content_id": "c1", "path": "/l/renamed.mp3", "bpm": 64.0, "bpm_confidence": 0.4, "key": "C major"}
>>> apply_to_row(row, c)["bpm"], row["key"], row["key_camelot"], row["corrected"], row["bpm_detected"]
(128.0, 'A minor', '8A', True, 64.0)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

from crate_dask.errors import ParameterError
from crate_dask.features.notation import parse_key, to_camelot, to_open_key
from crate_dask.library.scan import display_path
from crate_dask.store.layout import corrections_path

#: The columns that identify a row's file, read beside the bpm/key columns to apply corrections.
KEY_COLUMNS = ("content_id", "path", "path_bytes", "fingerprint")
#: The result columns a correction can change.
VALUE_COLUMNS = ("bpm", "bpm_confidence", "key", "key_camelot", "key_open", "key_confidence")


class Corrections:
    """The corrections of one results folder, indexed for matching rows.

    Parameters
    ----------
    entries : iterable of dict
        ``{"content_id", "path", "fingerprint" (hex or None), "bpm" (or None), "key" (canonical or None),
        "time"}``; later entries for the same file replace earlier ones.
    """

    def __init__(self, entries: Iterable[dict[str, Any]] = ()):
        self.entries: list[dict[str, Any]] = []
        for e in entries:
            self._put(e)

    def _put(self, entry: dict[str, Any]) -> None:
        same = self._find(entry.get("content_id"), entry.get("path"), entry.get("fingerprint"))
        if same is not None:
            self.entries.pop(same)
        if entry.get("bpm") is not None or entry.get("key") is not None:
            self.entries.append(entry)
        self._index()

    def _index(self) -> None:
        self._by: dict[str, dict[Any, int]] = {k: {} for k in ("content_id", "path", "fingerprint")}
        for i, e in enumerate(self.entries):
            for k in self._by:
                if e.get(k):
                    self._by[k][e[k]] = i

    def _find(self, content_id, path, fingerprint) -> int | None:
        if not self.entries:
            return None
        for k, v in (("content_id", content_id), ("path", path), ("fingerprint", fingerprint)):
            if v and v in self._by[k]:
                return self._by[k][v]
        return None

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The correction that applies to a results row (by content id, then path, then fingerprint)."""
        if not self.entries:
            return None
        fp = row.get("fingerprint")
        return self._at(self._find(row.get("content_id"), _row_path(row), fp.hex() if fp else None))

    def _at(self, i: int | None) -> dict[str, Any] | None:
        return None if i is None else self.entries[i]

    def set(self, row: dict[str, Any], *, bpm: float | None = None, key: str | None = None) -> dict[str, Any]:
        """Record a correction for the file of ``row`` (a results row); returns the entry.

        ``bpm``/``key`` of ``None`` keep the previous correction of that field, if any.
        """
        old = self.lookup(row) or {}
        fp = row.get("fingerprint")
        entry = {"content_id": row.get("content_id"), "path": _row_path(row), "fingerprint": fp.hex() if fp else None,
                 "bpm": _check_bpm(bpm) if bpm is not None else old.get("bpm"),
                 "key": normalise_key(key) if key is not None else old.get("key"),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._put(entry)
        return entry

    def clear(self, row: dict[str, Any]) -> bool:
        """Forget the correction of the file of ``row``; whether there was one."""
        fp = row.get("fingerprint")
        i = self._find(row.get("content_id"), _row_path(row), fp.hex() if fp else None)
        if i is None:
            return False
        self.entries.pop(i)
        self._index()
        return True


def normalise_key(text: str) -> str:
    """A key in any notation (``Am``, ``8A``, ``1m``, ``A minor``) as its canonical name.

    >>> [normalise_key(k) for k in ("Am", "8A", "1m", "A minor")]
    ['A minor', 'A minor', 'A minor', 'A minor']
    """
    key = parse_key(text)
    if key is None:
        raise ParameterError(f"not a key: {text!r} (write it as Am, 8A, 1m or 'A minor')")
    return key


def _check_bpm(bpm: float) -> float:
    bpm = float(bpm)
    if not (math.isfinite(bpm) and 20.0 <= bpm <= 400.0):
        raise ParameterError(f"BPM {bpm:g} is out of range (20..400)")
    return round(bpm, 2)


def _row_path(row: dict[str, Any]) -> str | None:
    if row.get("path"):
        return row["path"]
    pb = row.get("path_bytes")
    return display_path(os.fsdecode(pb)) if pb else None


def apply_to_row(row: dict[str, Any], corrections: Corrections) -> dict[str, Any]:
    """Replace the detected bpm/key of a results row by its correction, in place; returns the row.

    Sets ``corrected`` (bool) and keeps the detected values as ``bpm_detected`` and
    ``key_detected``. A corrected value has confidence 1.0 (it passes every
    ``--min-confidence``); its Camelot and Open Key spellings follow the key.
    """
    row.setdefault("bpm_detected", row.get("bpm"))
    row.setdefault("key_detected", row.get("key"))
    c = corrections.lookup(row)
    row["corrected"] = c is not None
    if c is None:
        return row
    if c.get("bpm") is not None:
        row["bpm"], row["bpm_confidence"] = c["bpm"], 1.0
    if c.get("key") is not None:
        row.update(key=c["key"], key_camelot=to_camelot(c["key"]), key_open=to_open_key(c["key"]), key_confidence=1.0)
    return row


def load_corrections(out: str | os.PathLike) -> Corrections:
    """The corrections of results folder ``out`` (none if the file does not exist).

    Raises
    ------
    crate_dask.errors.FatalError
        The file exists but is not readable JSON (it is never silently replaced).
    """
    from crate_dask.errors import FatalError

    path = corrections_path(out)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Corrections()
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot read the corrections {path}: {exc}") from None
    return Corrections(data.get("corrections", []))


def save_corrections(out: str | os.PathLike, corrections: Corrections) -> Path:
    """Write the corrections of ``out`` atomically (callers hold :func:`partitions.exclusive`)."""
    from crate_dask.store.partitions import write_json_atomic

    path = corrections_path(out)
    write_json_atomic(path, {"version": 1, "corrections": corrections.entries})
    return path


def columns_in(part_path: str | os.PathLike) -> list[str]:
    """The :data:`KEY_COLUMNS` that a partition file has (results older than the fingerprint lack it)."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(part_path).names)
    return [c for c in KEY_COLUMNS if c in names]
