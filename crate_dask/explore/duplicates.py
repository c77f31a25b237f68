"""Duplicates: the same recording in several files, and which one to keep.

Three kinds of evidence link two files, strongest first:

* ``identical``: the same content id (size + head + tail hash), i.e. a copy;
* ``audio``: the audio fingerprints (:mod:`crate_dask.features.fingerprint`)
  match at some time shift: the same recording re-encoded (another format or
  bitrate, trimmed or padded silence). Candidates come from a k-d tree over
  the fingerprints' spectral profiles (scipy), so the cost grows as
  ``n log n``, not with the number of pairs; each candidate is then checked on
  its frame bits;
* ``metadata``: the same normalised artist and title and a duration within
  3 s (likely; never when both fingerprints exist and clearly differ).

Linked files form groups (union-find). In each group the file to keep is the
best copy: lossless before lossy, then the higher bitrate, then the more
complete tags, then the shorter path; ``why`` says which rule decided.

>>> normalise_text("Daft Punk feat. Pharrell - Get Lucky (Original Mix)")
'daft punk get lucky'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from crate_dask.features.fingerprint import SAME_RECORDING_BER, bit_error_rate, profile

LOSSLESS = {"flac", "wav", "aiff", "alac", "pcm", "wavpack", "ape"}
TAG_FIELDS = ("artist", "title", "album", "genre", "year", "tag_bpm", "tag_key")
# Candidates: the nearest profiles, within a loose bound (re-encodings of real tracks measured at <= 0.35,
# unrelated tracks mostly >= 0.9; the frame bits decide).
PROFILE_RADIUS = 2.0
NEIGHBOURS = 12
DURATION_TOLERANCE_S = 3.0
_RANK = {"identical": 0, "audio": 1, "metadata": 2}
_COLUMNS = ["relpath", "content_id", "format", "codec", "ext", "bitrate_kbps", "bits_per_sample", "sample_rate",
            "duration_s", "size", *TAG_FIELDS, "error"]


def normalise_text(text: str | None) -> str:
    """Lower case, no accents, punctuation, featured artists or mix names: for matching tags."""
    if not text:
        return ""
    s = unicodedata.normalize("NFKD", str(text))
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = re.sub(r"[\(\[][^\)\]]*(mix|edit|version|remaster(ed)?|radio|original)[^\)\]]*[\)\]]", " ", s)
    s = re.sub(r"\b(feat|ft|featuring)\b\.?.*?(?= - |$)", " ", s)
    s = re.sub(r"[^\w]+", " ", s)
    return re.sub(r"\s+", " ", s).strip()


class _Union:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(results, *, max_ber: float = SAME_RECORDING_BER, metadata: bool = True) -> pd.DataFrame:
    """Groups of duplicates in a results folder (:class:`~crate_dask.explore.results.Results`).

    Parameters
    ----------
    results : Results
        From :func:`crate_dask.open_results`.
    max_ber : float
        Fingerprint bit error rate under which two files hold the same recording.
    metadata : bool
        Also link files by normalised artist + title + duration.

    Returns
    -------
    pandas.DataFrame
        One row per file in a group: ``group, evidence, keep, why, match, relpath, format, bitrate_kbps,
        duration_s, artist, title, tags`` (``tags``: how many of the common tags are set), sorted by group,
        the kept file first.
    """
    cols = [c for c in _COLUMNS + ["fingerprint"] if c in results.columns]
    df = pd.concat([t.to_pandas() for t in results.batches(cols)], ignore_index=True)
    return group_duplicates(df, max_ber=max_ber, metadata=metadata)


def group_duplicates(df: pd.DataFrame, *, max_ber: float = SAME_RECORDING_BER, metadata: bool = True) -> pd.DataFrame:
    """:func:`find_duplicates` on a DataFrame of result rows (pure; no file access)."""
    n = len(df)
    links: list[tuple[int, int, str, float | None]] = []
    ok = df["error"].isna().to_numpy() if "error" in df else np.ones(n, bool)
    # identical content
    cid = df["content_id"].to_numpy(object)
    for _, idx in pd.Series(np.arange(n)).groupby(cid, dropna=True):
        idx = idx.to_numpy()
        links += [(int(idx[0]), int(j), "identical", 0.0) for j in idx[1:]]
    # the same audio
    fps = df["fingerprint"].to_numpy(object) if "fingerprint" in df else np.full(n, None, object)
    have = np.array([bool(f) and o for f, o in zip(fps, ok)])
    ber_cache: dict[tuple[int, int], float] = {}

    def ber(i: int, j: int) -> float:
        k = (min(i, j), max(i, j))
        if k not in ber_cache:
            ber_cache[k] = bit_error_rate(fps[i], fps[j])
        return ber_cache[k]

    idx = np.flatnonzero(have)
    if len(idx) > 1:
        from scipy.spatial import cKDTree

        prof = np.stack([profile(fps[i]) for i in idx])
        tree = cKDTree(prof)
        dist, nb = tree.query(prof, k=min(NEIGHBOURS + 1, len(idx)), distance_upper_bound=PROFILE_RADIUS)
        for a in range(len(idx)):
            for d, b in zip(np.atleast_1d(dist[a]), np.atleast_1d(nb[a])):
                if not np.isfinite(d) or b <= a:
                    continue
                i, j = int(idx[a]), int(idx[b])
                if cid[i] is not None and cid[i] == cid[j]:
                    continue
                e = ber(i, j)
                if e <= max_ber:
                    links.append((i, j, "audio", e))
    # likely: the same artist, title and duration
    if metadata and "artist" in df and "title" in df:
        key = [f"{normalise_text(a)}\x00{normalise_text(t)}" if (normalise_text(a) and normalise_text(t)) else None
               for a, t in zip(df["artist"], df["title"])]
        dur = df["duration_s"].to_numpy(float) if "duration_s" in df else np.zeros(n)
        for _, g in pd.Series(np.arange(n)).groupby(pd.Series(key, dtype=object), dropna=True):
            g = [int(i) for i in g if ok[i]]
            g.sort(key=lambda i: dur[i] if np.isfinite(dur[i]) else 0.0)
            for a, b in zip(g, g[1:]):
                if not (abs(dur[a] - dur[b]) <= DURATION_TOLERANCE_S):
                    continue
                if have[a] and have[b] and ber(a, b) > max(max_ber, 0.4):
                    continue      # the audio says otherwise (another mix, a live version)
                links.append((a, b, "metadata", None))
    return _groups(df, links)


def _groups(df: pd.DataFrame, links: list[tuple[int, int, str, float | None]]) -> pd.DataFrame:
    out_cols = ["group", "evidence", "keep", "why", "match", "relpath", "format", "bitrate_kbps", "duration_s",
                "artist", "title", "tags"]
    if not links:
        return pd.DataFrame(columns=out_cols)
    u = _Union(len(df))
    for a, b, _, _ in links:
        u.join(a, b)
    evidence: dict[int, str] = {}
    match: dict[int, str] = {}
    for a, b, kind, e in links:
        r = u.find(a)
        if r not in evidence or _RANK[kind] > _RANK[evidence[r]]:
            evidence[r] = kind          # a group is as weak as its weakest link
        text = kind if e is None or kind == "identical" else f"audio (BER {e:.2f})"
        for i in (a, b):
            if i not in match or _RANK[kind] < _RANK[match[i].split(" ")[0]]:
                match[i] = text
    members: dict[int, list[int]] = {}
    for i in {i for a, b, _, _ in links for i in (a, b)}:
        members.setdefault(u.find(i), []).append(i)
    rows = []
    for gid, (root, idx) in enumerate(sorted(members.items(), key=lambda kv: min(kv[1])), start=1):
        ranked = sorted(idx, key=lambda i: _quality(df.iloc[i]), reverse=True)
        why = _why(df.iloc[ranked[0]], df.iloc[ranked[1]])
        for i in ranked:
            r = df.iloc[i]
            rows.append({"group": gid, "evidence": evidence[root], "keep": i == ranked[0],
                         "why": why if i == ranked[0] else "", "match": match.get(i, ""),
                         "relpath": r["relpath"], "format": r.get("format"), "bitrate_kbps": r.get("bitrate_kbps"),
                         "duration_s": r.get("duration_s"), "artist": r.get("artist"), "title": r.get("title"),
                         "tags": _tag_count(r)})
    return pd.DataFrame(rows, columns=out_cols)


def _lossless(r) -> bool:
    return str(r.get("codec") or r.get("format") or "").lower() in LOSSLESS


def _tag_count(r) -> int:
    return int(sum(1 for f in TAG_FIELDS if f in r and pd.notna(r[f]) and str(r[f]).strip() != ""))


def _quality(r) -> tuple:
    br = r.get("bitrate_kbps")
    return (_lossless(r), float(br) if pd.notna(br) else 0.0, _tag_count(r), -len(str(r["relpath"])))


def _why(best, second) -> str:
    """The rule that put ``best`` before ``second``."""
    def fmt(r) -> str:
        br = r.get("bitrate_kbps")
        return f"{r.get('format') or r.get('ext')}" + (f" {br:.0f} kbps" if pd.notna(br) else "")

    if _lossless(best) and not _lossless(second):
        return f"lossless ({fmt(best)}) beats lossy ({fmt(second)})"
    b1, b2 = (float(x) if pd.notna(x) else 0.0 for x in (best.get("bitrate_kbps"), second.get("bitrate_kbps")))
    if b1 > b2 * 1.02:
        return f"higher bitrate: {fmt(best)} over {fmt(second)}"
    t1, t2 = _tag_count(best), _tag_count(second)
    if t1 > t2:
        return f"more complete tags ({t1} of {len(TAG_FIELDS)} vs {t2})"
    return "same quality and tags: shortest path"


def summary(groups: pd.DataFrame) -> dict[str, Any]:
    """Counts of a duplicates table: groups, files, files that could go, by evidence."""
    if groups.empty:
        return {"groups": 0, "files": 0, "redundant": 0, "by_evidence": {}}
    g = groups.drop_duplicates("group")
    return {"groups": int(len(g)), "files": int(len(groups)), "redundant": int(len(groups) - len(g)),
            "by_evidence": {k: int(v) for k, v in g["evidence"].value_counts().items()}}
