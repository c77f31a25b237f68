"""Generated results datasets of any size, with the real schema, for tests, doctests and benchmarks.

The rows look like a DJ library's (formats, bitrates, tempi, keys, tag BPMs
sometimes at half or double time, a few errors and missing tags) but no audio
exists behind them: they exercise the query, QA and report layers at 100,000
rows in a second, without analysing anything.

>>> import tempfile, pyarrow.parquet as pq
>>> out = write_synthetic_results(tempfile.mkdtemp(), n_rows=1500, partition_size=1000)
>>> sorted(p.name for p in out.glob("part-*.parquet"))
['part-00000.parquet', 'part-00001.parquet']
>>> pq.read_table(out).num_rows
1500
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from crate_dask.features.notation import KEYS, to_camelot, to_id3_key, to_open_key
from crate_dask.schema import COLUMNS, SCHEMA
from crate_dask.store.partitions import save_state, write_partition

_FORMATS = [("mp3", "mp3", "mp3", 320.0), ("mp3", "mp3", "mp3", 192.0), ("flac", "flac", "flac", 900.0),
            ("wav", "wav", "pcm", 1411.0), ("aiff", "aiff", "pcm", 1411.0), ("m4a", "mp4", "aac", 256.0),
            ("ogg", "ogg", "vorbis", 160.0), ("opus", "opus", "opus", 128.0)]
_WORDS = ("night", "deep", "sun", "acid", "moon", "fire", "city", "love", "dream", "bass", "soul", "rain",
          "gold", "wave", "echo", "pulse", "velvet", "neon", "storm", "shadow")
_ERRORS = [("audio", "cannot decode: File contains data in an unknown format."),
           ("tags", "cannot read tags: not a valid MPEG frame"),
           ("audio", "analysis took longer than the 60 s limit; skipped"),
           ("file", "permission denied")]


def write_synthetic_results(out: str | os.PathLike, *, n_rows: int = 1000, partition_size: int = 1000,
                            seed: int = 0, root: str = "/music") -> Path:
    """Write ``n_rows`` generated result rows as partition files in ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_state(out, {"root": root, "generated": True})
    for start in range(0, n_rows, partition_size):
        n = min(partition_size, n_rows - start)
        table = _rows(rng, start, n, root)
        write_partition(table, out, f"part-{start // partition_size:05d}", {"rows": n, "generated": True})
    return out


def _rows(rng: np.random.Generator, start: int, n: int, root: str) -> pa.Table:
    idx = np.arange(start, start + n)
    fmt = rng.integers(len(_FORMATS), size=n)
    ext = np.array([_FORMATS[f][0] for f in fmt], object)
    words = np.array(_WORDS, object)
    artist = np.char.add("Artist ", (idx % 997).astype(str)).astype(object)
    title = np.array([f"{words[a].title()} {words[b]}" for a, b in rng.integers(len(_WORDS), size=(n, 2))], object)
    relpath = np.array([f"{a}/{a} - {t} {i:06d}.{e}" for a, t, i, e in zip(artist, title, idx, ext)], object)
    bpm = np.round(rng.choice([85.0, 98.0, 110.0, 120.0, 122.0, 124.0, 126.0, 128.0, 130.0, 140.0, 174.0], n)
                   + rng.normal(0, 0.3, n), 2)
    key = np.array(KEYS, object)[rng.integers(24, size=n)]
    dur = np.round(rng.uniform(120, 480, n), 2)
    err = rng.random(n) < 0.03
    which = rng.integers(len(_ERRORS), size=n)
    tag_bpm = np.where(rng.random(n) < 0.5, bpm * rng.choice([1.0, 1.0, 1.0, 0.5, 2.0], n), np.nan).round(0)
    other = np.array(KEYS, object)[rng.integers(24, size=n)]          # about 4 % of key tags disagree
    tag_key = np.array([to_id3_key(k if r < 0.36 else o) if r < 0.4 else None
                        for k, o, r in zip(key, other, rng.random(n))], object)
    missing = rng.random(n) < 0.02
    cols = {c: pa.nulls(n, SCHEMA.field(c).type) for c in COLUMNS}
    size = (dur * np.array([_FORMATS[f][3] for f in fmt]) * 125).astype(np.int64)
    mtime = np.full(n, 1_700_000_000_000_000_000, np.int64) + idx.astype(np.int64) * 1_000_000_000
    ok = ~err
    cols.update(
        path=pa.array([f"{root}/{r}" for r in relpath]), path_bytes=pa.array([f"{root}/{r}".encode() for r in relpath]),
        relpath=pa.array(relpath), ext=pa.array(ext), size=pa.array(size), mtime=pa.array(mtime, pa.timestamp("ns", "UTC")),
        mtime_ns=pa.array(mtime), content_id=pa.array([f"{i:032x}" for i in rng.integers(0, 2**62, n)]),
        format=pa.array([_FORMATS[f][1] for f in fmt]), codec=pa.array([_FORMATS[f][2] for f in fmt]),
        duration_s=pa.array(dur), bitrate_kbps=pa.array([_FORMATS[f][3] for f in fmt]),
        sample_rate=pa.array(np.full(n, 44100)), channels=pa.array(np.full(n, 2)),
        artist=pa.array(np.where(missing, None, artist)), title=pa.array(np.where(missing[::-1], None, title)),
        album=pa.array(np.char.add("Album ", (idx % 301).astype(str)).astype(object)),
        genre=pa.array(rng.choice(["House", "Techno", "Disco", "Drum & Bass"], n).astype(object)),
        year=pa.array(rng.integers(1975, 2026, n)),
        tag_bpm=pa.array(np.where(ok, tag_bpm, np.nan), from_pandas=True),
        tag_key=pa.array(np.where(ok, tag_key, None)),
        bpm=pa.array(np.where(ok, bpm, np.nan), from_pandas=True),
        bpm_alt=pa.array(np.where(ok, np.where(bpm > 120, bpm / 2, bpm * 2), np.nan), from_pandas=True),
        bpm_confidence=pa.array(np.where(ok, rng.uniform(0.2, 1.0, n).round(3), np.nan), from_pandas=True),
        key=pa.array(np.where(ok, key, None)),
        key_camelot=pa.array([to_camelot(k) if o else None for k, o in zip(key, ok)]),
        key_open=pa.array([to_open_key(k) if o else None for k, o in zip(key, ok)]),
        key_confidence=pa.array(np.where(ok, rng.uniform(0.1, 0.9, n).round(3), np.nan), from_pandas=True),
        loudness_lufs=pa.array(np.where(ok, rng.normal(-9, 2, n).round(2), np.nan), from_pandas=True),
        analysis_s=pa.array(np.where(ok, rng.gamma(4, 0.6, n).round(3), np.nan), from_pandas=True),
        error_stage=pa.array([_ERRORS[w][0] if e else None for w, e in zip(which, err)]),
        error=pa.array([_ERRORS[w][1] if e else None for w, e in zip(which, err)]),
    )
    return pa.table({c: cols[c].cast(SCHEMA.field(c).type) for c in COLUMNS}, schema=SCHEMA)
