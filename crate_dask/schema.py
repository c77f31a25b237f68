"""The Parquet schema of the results dataset (one row per audio file) and its version.

Every partition file has exactly this schema, whatever its mode (metadata-only
partitions have null analysis columns), so ``pandas.read_parquet(OUT)`` reads
the whole dataset without schema conflicts.

>>> empty_row()["error"] is None
True
>>> "tag_bpm" in COLUMNS and "bpm" in COLUMNS
True
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

#: 2: error_type, error_limit and crashes; beat_offset_s, downbeat_offset_s, gapless_delay_s; fingerprint;
#: needs_review (rows of version 1 are upgraded when reused: the new columns are empty until a file is
#: analysed again).
SCHEMA_VERSION = 2

# (name, type, meaning); the order is the column order in the files.
_FIELDS: list[tuple[str, pa.DataType, str]] = [
    # file facts, from the scan
    ("path", pa.string(), "absolute path (undecodable bytes shown as \\xNN escapes)"),
    ("path_bytes", pa.binary(), "the exact absolute path as bytes (os.fsencode); use it to act on the file"),
    ("relpath", pa.string(), "path relative to the library root"),
    ("ext", pa.string(), "lower-case extension without the dot"),
    ("size", pa.int64(), "size in bytes at scan time"),
    ("mtime", pa.timestamp("ns", tz="UTC"), "modification time at scan time"),
    ("mtime_ns", pa.int64(), "modification time, integer nanoseconds (exact change detection)"),
    ("content_id", pa.string(), "hash of size + first and last 64 KiB: finds a file again after a rename"),
    # container and stream, from mutagen
    ("format", pa.string(), "container as detected from the content: mp3, flac, wav, aiff, ogg, opus, mp4, asf..."),
    ("codec", pa.string(), "audio codec: mp3, flac, pcm, vorbis, opus, aac, alac, wma..."),
    ("duration_s", pa.float64(), "duration in seconds"),
    ("bitrate_kbps", pa.float64(), "average bitrate in kbit/s"),
    ("sample_rate", pa.int64(), "sample rate in Hz"),
    ("channels", pa.int64(), "number of channels"),
    ("bits_per_sample", pa.int64(), "bits per sample (lossless formats)"),
    # tags
    ("artist", pa.string(), ""),
    ("title", pa.string(), ""),
    ("album", pa.string(), ""),
    ("album_artist", pa.string(), ""),
    ("genre", pa.string(), ""),
    ("year", pa.int64(), "year of the date tag"),
    ("track", pa.int64(), "track number"),
    ("track_total", pa.int64(), ""),
    ("disc", pa.int64(), ""),
    ("label", pa.string(), "publisher / label"),
    ("comment", pa.string(), ""),
    ("tag_bpm", pa.float64(), "BPM tag as written in the file (TBPM, BPM, tmpo...)"),
    ("tag_key", pa.string(), "key tag as written in the file (TKEY, INITIALKEY, initialkey...)"),
    # audio analysis
    ("bpm", pa.float64(), "estimated tempo, folded into the DJ range"),
    ("bpm_alt", pa.float64(), "the competing octave of bpm (x2 or /2)"),
    ("bpm_confidence", pa.float64(), "0..1"),
    ("key", pa.string(), "estimated key, mir_eval style: 'A minor', 'F# major'"),
    ("key_camelot", pa.string(), "Camelot notation: '8A'"),
    ("key_open", pa.string(), "Open Key notation: '1m'"),
    ("key_confidence", pa.float64(), "0..1"),
    ("needs_review", pa.bool_(), "bpm or key is likely wrong (octave toss-up, weak beat, low key margin, "
                                 "key changes within the excerpt): check by ear; null when not analysed"),
    ("beat_offset_s", pa.float64(), "first beat of the beat grid, seconds from the start of the decoded file"),
    ("downbeat_offset_s", pa.float64(), "first bar start (beat 1) of the grid, seconds; null when the bar is unclear"),
    ("gapless_delay_s", pa.float64(), "MP3: start the decoder skipped per the LAME header (rekordbox does not skip it)"),
    ("loudness_lufs", pa.float64(), "integrated loudness of the analysed excerpt (approximate LUFS)"),
    ("analysis_note", pa.string(), "why bpm/key are empty for a readable file (silence, too short...)"),
    ("fingerprint", pa.binary(), "audio fingerprint of the excerpt (features/fingerprint.py): finds re-encodings"),
    ("analysis_s", pa.float64(), "seconds spent analysing this file"),
    # outcome
    ("error_stage", pa.string(), "file, tags or audio: the stage that failed; null if none"),
    ("error_type", pa.string(), "structured cause: unreadable, truncated, undecodable, timeout, memory, crashed, "
                                "quarantined, permission, vanished or bug (see crate_dask.errors.ERROR_TYPES)"),
    ("error", pa.string(), "readable error message; null if none"),
    ("error_limit", pa.float64(), "for timeout / memory errors: the limit exceeded (seconds / MiB)"),
    ("crashes", pa.int64(), "how many runs in a row the reader crashed on this unchanged file"),
]

SCHEMA: pa.Schema = pa.schema([pa.field(n, t) for n, t, _ in _FIELDS])
COLUMNS: list[str] = [n for n, _, _ in _FIELDS]
DESCRIPTIONS: dict[str, str] = {n: d for n, _, d in _FIELDS}
AUDIO_COLUMNS: list[str] = ["bpm", "bpm_alt", "bpm_confidence", "key", "key_camelot", "key_open",
                            "key_confidence", "needs_review", "beat_offset_s", "downbeat_offset_s", "gapless_delay_s",
                            "loudness_lufs", "analysis_note", "fingerprint", "analysis_s"]


def empty_row() -> dict[str, Any]:
    """A row with every column set to null."""
    return dict.fromkeys(COLUMNS)


def to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Build a table with exactly :data:`SCHEMA` from row dicts (missing keys become null)."""
    rows = list(rows)
    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    cols["mtime"] = cols["mtime_ns"]   # one source of truth; pyarrow reads int64 ns as a timestamp
    return pa.Table.from_pydict(cols, schema=SCHEMA)
