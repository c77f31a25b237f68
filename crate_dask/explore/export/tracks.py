"""The tracks of a results folder as the DJ software should get them: streamed, at their current paths.

:func:`iter_tracks` reads the partitions one record batch at a time (memory
flat in library size), points every row at where its file is *now* (rows of an
``analyze`` older than a rename follow the rename journals, see
:func:`current_paths`) and decides per track which BPM and key to export with
:func:`choose_values`, the one place that rule lives.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import pyarrow.parquet as pq

from crate_dask.errors import FatalError
from crate_dask.features.notation import parse_key as _parse_key
from crate_dask.library.scan import library_path
from crate_dask.store.corrections import load_corrections
from crate_dask.store.history import moved_paths
from crate_dask.store.partitions import list_parts, load_state, no_results

__all__ = ["Track", "Chosen", "choose_values", "current_paths", "iter_tracks", "count_rows", "PREFER"]

#: ``--prefer`` choices: the analysis (then the file's tag) or the file's own tags (then the analysis).
PREFER = ("analysis", "tags")

# Columns an export needs; partitions written before a column existed simply lack it (read as null).
_COLUMNS = ["path", "path_bytes", "relpath", "ext", "size", "duration_s", "bitrate_kbps", "sample_rate", "artist",
            "title", "album", "genre", "year", "track", "label", "comment", "tag_bpm", "tag_key", "bpm",
            "bpm_confidence", "key", "beat_offset_s", "downbeat_offset_s", "gapless_delay_s", "error", "error_stage", "content_id",
            "fingerprint"]
_BATCH = 4096


@dataclass(frozen=True)
class Chosen:
    """The exported BPM and key of a track and where each came from."""

    bpm: float | None          #: None when no source has one
    key: str | None            #: canonical ("A minor"), None when unknown
    bpm_source: str | None     #: "correction", "analysis" or "tag"
    key_source: str | None
    beat_offset_s: float | None     #: grid anchor, None when there is no grid for this BPM
    downbeat_offset_s: float | None


@dataclass(frozen=True)
class Track:
    """One exported track (a results row, moved to its current path, with its chosen values)."""

    track_id: int                   #: 1-based, in results order: stable for one results folder
    path: str                       #: current absolute path (str, surrogate-escaped if not UTF-8)
    path_bytes: bytes               #: the same path as bytes
    relpath: str                    #: current path relative to the library root
    row: dict[str, Any]             #: the results row (tags, file facts, error)
    chosen: Chosen

    @property
    def folder(self) -> str:
        """The folder relative to the library root ("" at the root)."""
        return self.relpath.rpartition("/")[0]

    def text(self, column: str) -> str:
        """A text column as a string ("" when empty)."""
        v = self.row.get(column)
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

    def number(self, column: str) -> float | None:
        v = self.row.get(column)
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


@functools.lru_cache(maxsize=4096)
def parse_key(text: str) -> str | None:
    """:func:`crate_dask.features.notation.parse_key`, cached: a library has a few dozen distinct key texts."""
    return _parse_key(text)


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def choose_values(row: Mapping[str, Any], *, prefer: str = "analysis",
                  correction: Mapping[str, Any] | None = None) -> Chosen:
    """Which BPM and key to export: a manual correction, else the analysis, else the file's tag.

    With ``prefer="tags"`` the file's own tags win over the analysis (a DJ who trusts the
    tags already in the files), and the analysis fills the gaps. A correction
    (``{"bpm": ..., "key": ...}``, either may be missing: the ``fix`` command's
    values for this file) always wins. The beat grid is exported only when the
    exported BPM is the analysed one or an octave of it (the grid's phase was
    measured for that tempo); its anchor is in the file's decoded timeline.

    Examples
    --------
    >>> row = {"bpm": 128.0, "key": "A minor", "tag_bpm": 127.0, "tag_key": "8A", "beat_offset_s": 0.1}
    >>> c = choose_values(row)
    >>> c.bpm, c.key, c.bpm_source, c.beat_offset_s
    (128.0, 'A minor', 'analysis', 0.1)
    >>> c = choose_values(row, prefer="tags")
    >>> c.bpm, c.key, c.key_source, c.beat_offset_s
    (127.0, 'A minor', 'tag', None)
    >>> choose_values(row, correction={"bpm": 64.0}).bpm_source, choose_values(row, correction={"bpm": 64.0}).beat_offset_s
    ('correction', 0.1)
    >>> choose_values({"bpm": float("nan"), "tag_bpm": None, "key": None, "tag_key": "junk"}).bpm is None
    True
    """
    if prefer not in PREFER:
        raise FatalError(f"prefer must be one of {', '.join(PREFER)}, got {prefer!r}")
    correction = correction or {}
    analysis_bpm, tag_bpm = _num(row.get("bpm")), _num(row.get("tag_bpm"))
    analysis_key = parse_key(row["key"]) if isinstance(row.get("key"), str) else None
    tag_key = parse_key(row["tag_key"]) if isinstance(row.get("tag_key"), str) else None
    order = (("analysis", analysis_bpm, analysis_key), ("tag", tag_bpm, tag_key))
    if prefer == "tags":
        order = order[::-1]
    order = (("correction", _num(correction.get("bpm")),
              parse_key(correction["key"]) if isinstance(correction.get("key"), str) else None),) + order
    bpm, bpm_src = next(((b, s) for s, b, _ in order if b is not None), (None, None))
    key, key_src = next(((k, s) for s, _, k in order if k is not None), (None, None))
    beat, down = _finite(row.get("beat_offset_s")), _finite(row.get("downbeat_offset_s"))
    if beat is None or bpm is None or analysis_bpm is None or not _same_grid(bpm, analysis_bpm):
        beat = down = None
    return Chosen(bpm, key, bpm_src, key_src, beat, down)


def _same_grid(bpm: float, analysed: float) -> bool:
    """The exported tempo is the analysed one or its double/half (the measured beats stay on the grid)."""
    return any(abs(bpm - analysed * r) <= 0.005 * bpm + 0.011 for r in (0.5, 1.0, 2.0))


def current_paths(out: str | os.PathLike) -> Callable[[str], str]:
    """A function from a row's relpath to its file's current relpath, following the rename journals.

    Rows of an ``analyze`` run before a rename carry the old name; renames (and
    their undos) done since are replayed from ``OUT/_journal``
    (:func:`crate_dask.store.history.moved_paths`). Rows analysed after the rename
    already have the new name and pass through.
    """
    moves = moved_paths(out)
    return lambda rel: moves.get(rel, rel)


def count_rows(out: str | os.PathLike) -> int:
    """Rows of the results dataset, from the Parquet footers (no data read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in _parts(out))


def _parts(out: str | os.PathLike):
    parts = list_parts(out)
    if not parts:
        raise no_results(out)
    return parts


def iter_tracks(out: str | os.PathLike, *, prefer: str = "analysis",
                corrections: Mapping[str, Mapping[str, Any]] | None = None) -> Iterator[Track]:
    """Stream the exported tracks of a results folder, one record batch in memory at a time.

    Parameters
    ----------
    out : path
        The results folder.
    prefer : {"analysis", "tags"}
        See :func:`choose_values`.
    corrections : mapping, optional
        Current relpath -> ``{"bpm": ..., "key": ...}``: manual corrections. By default,
        those recorded with ``crate-dask fix`` (:mod:`crate_dask.store.corrections`).

    Yields
    ------
    Track
        In results order, with 1-based ``track_id``.
    """
    parts = _parts(out)
    root = load_state(out).get("root")
    current = current_paths(out)
    # the fix command's corrections, found by content id, path or fingerprint (they follow renames)
    fixes = load_corrections(out) if corrections is None else None
    track_id = 0
    for part in parts:
        pf = pq.ParquetFile(part)
        have = set(pf.schema_arrow.names)
        cols = [c for c in _COLUMNS if c in have]
        missing = dict.fromkeys(c for c in _COLUMNS if c not in have)
        for batch in pf.iter_batches(batch_size=_BATCH, columns=cols):
            for row in batch.to_pylist():
                track_id += 1
                if missing:
                    row.update(missing)
                rel = _scanned_relpath(row, root)
                now = current(rel)
                if root and rel:   # root + relpath, not the stored path: the library may have moved since
                    path = library_path(root, now)
                    path_bytes = os.fsencode(path)
                else:
                    path_bytes = row.get("path_bytes") or os.fsencode(row.get("path") or "")
                    path = os.fsdecode(path_bytes)
                yield Track(track_id, path, path_bytes, now, row,
                            choose_values(row, prefer=prefer,
                                          correction=fixes.lookup(row) if fixes is not None else corrections.get(now)))


def _scanned_relpath(row: dict, root: str | None) -> str:
    """The row's relpath as the scanner and the journals spell it (undecodable bytes surrogate-escaped,
    so the path reaches the file); the stored ``relpath`` column is display text (``\\xNN`` escapes)."""
    path_bytes, rel = row.get("path_bytes"), row.get("relpath") or ""
    if path_bytes and root:
        prefix = os.fsencode(root).rstrip(b"/") + b"/"
        if path_bytes.startswith(prefix):
            return os.fsdecode(path_bytes[len(prefix):])
    return rel


@dataclass
class Summary:
    """What an export wrote, for the command's summary line and ``--json``."""

    target: str
    path: str
    tracks: int = 0
    with_grid: int = 0
    no_grid_error: int = 0        #: rows with an error: exported without BPM/grid
    no_grid_no_bpm: int = 0       #: readable, but no BPM from any source
    no_grid_other_bpm: int = 0    #: the exported BPM is not the analysed one: its grid is unknown
    missing_files: int = 0        #: the file is not at its current path (moved or deleted outside crate-dask)
    unsupported: int = 0          #: formats the target program does not play
    bpm_sources: dict[str, int] | None = None
    relocated: int = 0            #: --relocate-from: old entries pointed at their new path
    kept: int = 0                 #: --relocate-from: old entries whose file is not in the results, kept as is
    playlists: int = 0
    left_out_errors: int = 0      #: playlists: rows with an error, left out (not playable)

    def count(self, t: Track, *, supported: bool = True, check_exists: bool = True) -> None:
        """Count one exported track."""
        self.tracks += 1
        c = t.chosen
        if c.beat_offset_s is not None:
            self.with_grid += 1
        elif t.row.get("error"):
            self.no_grid_error += 1
        elif c.bpm is None:
            self.no_grid_no_bpm += 1
        else:
            self.no_grid_other_bpm += 1
        if self.bpm_sources is None:
            self.bpm_sources = {}
        src = c.bpm_source or "none"
        self.bpm_sources[src] = self.bpm_sources.get(src, 0) + 1
        if not supported:
            self.unsupported += 1
        if check_exists and not os.path.exists(t.path_bytes):
            self.missing_files += 1

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
