"""Library QA and the summary of a results dataset, computed from a stream of batches.

Pure functions over pyarrow tables (no file access): :func:`summarise` folds
batches into counts and histograms, :func:`qa_tables` collects the rows a DJ
should look at (tag BPM at half or double the detected tempo, a tag key that
disagrees with the detected key, missing artist/title, ``needs_review``),
:func:`error_cause` groups error messages by cause, and :func:`retry_hint` says
which command retries them.

>>> error_cause("audio", "cannot decode 'a.mp3': 3 frames missing at 12.5 s")
"audio: cannot decode '…': N frames missing at N s"
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from crate_dask.features.notation import parse_key

BPM_BINS = np.arange(60.0, 202.0, 2.0)
TIME_BINS = np.array([0, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, math.inf])
BITRATE_BINS = np.array([0, 96, 128, 160, 192, 256, 320, 500, 1000, 1500, math.inf])
QA_LIMIT = 5000   # rows kept per QA table (counts are exact; the table shows the first ones)


def error_cause(stage: str | None, error: str | None) -> str:
    """The cause of an error: its stage and message without names, numbers and quoted details."""
    if error is None:
        return ""
    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(error))
    msg = re.sub(r"(?<![A-Za-z])\d+(?:\.\d+)?", "N", msg)
    msg = re.sub(r"(/[^\s:]+)+", "PATH", msg)
    return f"{stage or '?'}: {msg[:100]}"


def retry_hint(cause: str, out: str = "OUT", root: str | None = None) -> str:
    """The command that retries the errors of ``cause`` (or what to do when a rerun cannot help).

    >>> retry_hint("file: permission denied", "res", "/music")
    'crate-dask analyze /music --out res   (retried on every run)'
    >>> retry_hint("audio: analysis took longer than the N s limit; skipped", "res", "/music")
    'crate-dask analyze /music --out res --force --file-timeout 300'
    """
    lib = root or "LIBRARY"
    if cause.startswith("file:") or "BUG" in cause or "permission" in cause or "vanished" in cause \
            or "crashed" in cause:
        return f"crate-dask analyze {lib} --out {out}   (retried on every run)"
    if "longer than" in cause:
        return f"crate-dask analyze {lib} --out {out} --force --file-timeout 300"
    return f"replace or repair the files, then: crate-dask analyze {lib} --out {out}   (changed files are redone)"


def _valid(a) -> np.ndarray:
    return np.asarray(pd.notna(a))


def summarise(batches: Iterable[pa.Table], *, out: str = "OUT", root: str | None = None) -> dict[str, Any]:
    """Fold result batches into the library summary.

    Returns
    -------
    dict
        ``files, analysed, errors, corrected, formats, extensions, codecs, bitrates (histogram),
        errors_by_cause (list of {cause, count, example, retry}), bpm_histogram {edges, counts},
        keys {camelot: count}, key_names, analysis_s {total, mean, max, histogram}, duration_h``.
    """
    n = analysed = errors = corrected = 0
    c: dict[str, Counter] = {k: Counter() for k in ("format", "ext", "codec", "key_camelot", "key")}
    causes: Counter = Counter()
    examples: dict[str, str] = {}
    bpm_counts = np.zeros(len(BPM_BINS) - 1, np.int64)
    time_counts = np.zeros(len(TIME_BINS) - 1, np.int64)
    br_counts = np.zeros(len(BITRATE_BINS) - 1, np.int64)
    t_total, t_max, t_n, dur = 0.0, 0.0, 0, 0.0
    for t in batches:
        df = t.to_pandas()
        n += len(df)
        for k in c:
            if k in df:
                c[k].update(df[k].value_counts().to_dict())
        if "error" in df:
            bad = df[df["error"].notna()]
            errors += len(bad)
            for stage, err in zip(bad.get("error_stage", [None] * len(bad)), bad["error"]):
                cause = error_cause(stage, err)
                causes[cause] += 1
                examples.setdefault(cause, err)
        if "corrected" in df:
            corrected += int(df["corrected"].sum())
        if "bpm" in df:
            b = df["bpm"].to_numpy(float)
            analysed += int(np.isfinite(b).sum())
            bpm_counts += np.histogram(np.clip(b[np.isfinite(b)], BPM_BINS[0], BPM_BINS[-1] - 1e-9), BPM_BINS)[0]
        if "analysis_s" in df:
            a = df["analysis_s"].to_numpy(float)
            a = a[np.isfinite(a)]
            t_total += float(a.sum())
            t_max = max(t_max, float(a.max()) if len(a) else 0.0)
            t_n += len(a)
            time_counts += np.histogram(a, TIME_BINS)[0]
        if "bitrate_kbps" in df:
            br = df["bitrate_kbps"].to_numpy(float)
            br_counts += np.histogram(br[np.isfinite(br)], BITRATE_BINS)[0]
        if "duration_s" in df:
            d = df["duration_s"].to_numpy(float)
            dur += float(np.nansum(d))
    return {
        "files": n, "analysed": analysed, "errors": errors, "corrected": corrected,
        "formats": dict(c["format"].most_common()), "extensions": dict(c["ext"].most_common()),
        "codecs": dict(c["codec"].most_common()),
        "bitrates": {"edges": BITRATE_BINS.tolist(), "counts": br_counts.tolist()},
        "errors_by_cause": [{"cause": k, "count": v, "example": examples[k], "retry": retry_hint(k, out, root)}
                            for k, v in causes.most_common()],
        "bpm_histogram": {"edges": BPM_BINS.tolist(), "counts": bpm_counts.tolist()},
        "keys": dict(c["key_camelot"].most_common()), "key_names": dict(c["key"].most_common()),
        "analysis_s": {"total": round(t_total, 2), "mean": round(t_total / t_n, 4) if t_n else None,
                       "max": round(t_max, 3), "edges": TIME_BINS.tolist(), "counts": time_counts.tolist()},
        "duration_h": round(dur / 3600, 2),
    }


def octave_error(tag_bpm: float, bpm: float, tolerance: float = 0.04) -> str | None:
    """``"half"``/``"double"`` when the tag BPM is half or double the detected one, else ``None``.

    >>> octave_error(64.0, 128.0), octave_error(256, 128.0), octave_error(127, 128.0), octave_error(None, 128.0)
    ('half', 'double', None, None)
    """
    if tag_bpm is None or bpm is None or not (tag_bpm > 0 and bpm > 0):
        return None
    for name, f in (("half", 0.5), ("double", 2.0)):
        if abs(tag_bpm - bpm * f) <= tolerance * bpm * f:
            return name
    return None


def key_disagrees(tag_key: str | None, key: str | None) -> bool:
    """Whether a key tag names another key than the detected one (an unreadable tag disagrees too).

    >>> key_disagrees("Am", "A minor"), key_disagrees("8A", "A minor"), key_disagrees("C", "A minor")
    (False, False, True)
    """
    if not tag_key or not key:
        return False
    return parse_key(tag_key) != key


def _octaves(tag: np.ndarray, bpm: np.ndarray, tolerance: float = 0.04) -> np.ndarray:
    """:func:`octave_error` for whole columns."""
    out = np.full(len(tag), None, object)
    with np.errstate(invalid="ignore"):
        for name, f in (("half", 0.5), ("double", 2.0)):
            out[np.abs(tag - bpm * f) <= tolerance * bpm * f] = name
    return out


_PARSED: dict[str, str | None] = {}


def _parse_cached(text):
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    if text in _PARSED:
        return _PARSED[text]
    key = parse_key(text)
    if len(_PARSED) < 10_000:
        _PARSED[text] = key
    return key


def qa_tables(batches: Iterable[pa.Table], *, limit: int = QA_LIMIT) -> dict[str, Any]:
    """The rows to review, by kind: ``tag_bpm_octave``, ``tag_key_disagrees``, ``missing_tags``, ``needs_review``.

    Each value is a DataFrame (at most ``limit`` rows); ``counts`` holds the exact number of each kind.
    """
    kinds = ("tag_bpm_octave", "tag_key_disagrees", "missing_tags", "needs_review")
    keep: dict[str, list[pd.DataFrame]] = {k: [] for k in kinds}
    counts = Counter({k: 0 for k in kinds})
    has_review = False
    for t in batches:
        df = t.to_pandas()
        ok = df["error"].isna() if "error" in df else pd.Series(True, index=df.index)
        bpm = df["bpm"] if "bpm" in df else pd.Series(np.nan, index=df.index)
        df["octave"] = _octaves(df["tag_bpm"].to_numpy(float), bpm.to_numpy(float))
        parsed = df["tag_key"].map(_parse_cached)      # a library has a few dozen distinct key spellings
        sel = {
            "tag_bpm_octave": ok & df["octave"].notna(),
            "tag_key_disagrees": ok & df["tag_key"].notna() & df["key"].notna() & (parsed != df["key"]),
            "missing_tags": ok & (df["artist"].isna() | df["title"].isna()
                                  | (df["artist"].fillna("x").str.strip() == "") | (df["title"].fillna("x").str.strip() == "")),
        }
        if "needs_review" in df:
            has_review = True
            sel["needs_review"] = df["needs_review"].fillna(False).astype(bool)
        for k, m in sel.items():
            m = m.to_numpy(bool)
            counts[k] += int(m.sum())
            if sum(len(x) for x in keep[k]) < limit and m.any():
                keep[k].append(df[m])
    cols = {"tag_bpm_octave": ["relpath", "artist", "title", "tag_bpm", "bpm", "octave", "corrected"],
            "tag_key_disagrees": ["relpath", "artist", "title", "tag_key", "key", "key_camelot", "corrected"],
            "missing_tags": ["relpath", "artist", "title"],
            "needs_review": ["relpath", "artist", "title", "bpm", "key_camelot"]}
    result: dict[str, Any] = {}
    for k in kinds:
        if k == "needs_review" and not has_review:
            continue
        df = pd.concat(keep[k], ignore_index=True).head(limit) if keep[k] else pd.DataFrame(columns=cols[k])
        result[k] = df[[c for c in cols[k] if c in df.columns]]
    result["counts"] = {k: v for k, v in counts.items() if k != "needs_review" or has_review}
    return result
