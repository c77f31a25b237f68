"""Choose where in a track the key is read: one window from the middle, or several spread over it.

Usage::

    python benchmarks/tune_key_windows.py MUSIC_DIR [--cache DIR] [--profile NAME ...]
    python benchmarks/tune_key_windows.py MUSIC_DIR --cache DIR --placements 20

Label-free, on full-length real tracks (``benchmarks/get_real_music.sh``): each track is decoded whole
once (cached with ``--cache``), then every layout of windows is cut out of it and given to
:func:`crate_dask.features.key.estimate_key`, and its key is compared with the key of the whole track
(``excerpt=whole``) and, applying the same layout to each half, the first half's key with the second's
(``half=half``). ``decoded s`` is the audio the layout decodes per track (what decoding costs): its windows
and the middle 90 s excerpt that tempo needs in any case, where windows inside it are cut from it.
A layout that samples the track's harmony better agrees with the whole track more often.

``--placements N`` compares grids of short windows (``GRIDS``: how many for a track of a given length) at
N placements each, the grid moved by (j + 0.5) / N of its spacing: one placement can hit or miss a passage
by luck (48 x 1 s scored 0.85-0.94 over three), N of them give the expected agreement. Printed: agreeing
tracks expected (mean over placements), the fewest and most at one placement, the decoded seconds, and
the difference to the first grid with a 95 % bootstrap interval over tracks.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from crate_dask.config import AnalysisSettings
from crate_dask.features import key as keymod
from crate_dask.library.audio import key_window_count, load_excerpt

AUDIO_EXT = {".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a"}

#: name -> windows as (centre as a fraction of the track, length in seconds)
LAYOUTS: dict[str, list[tuple[float, float]]] = {
    "middle 90 s (main)": [(0.5, 90.0)],
    "5 x 18 s at 10..90 %": [(f, 18.0) for f in (0.1, 0.3, 0.5, 0.7, 0.9)],
    "middle 90 s + 2 x 15 s at 20/80 %": [(0.2, 15.0), (0.5, 90.0), (0.8, 15.0)],
    "middle 90 s + 2 x 15 s at 15/85 %": [(0.15, 15.0), (0.5, 90.0), (0.85, 15.0)],
    "middle 90 s + 2 x 20 s at 20/80 %": [(0.2, 20.0), (0.5, 90.0), (0.8, 20.0)],
    "middle 90 s + 4 x 10 s at 10/30/70/90 %": [(0.1, 10.0), (0.3, 10.0), (0.5, 90.0), (0.7, 10.0), (0.9, 10.0)],
    "middle 90 s + 2 x 30 s at 15/85 %": [(0.15, 30.0), (0.5, 90.0), (0.85, 30.0)],
    # Short windows centred evenly over the whole track, (i + 0.5) / K (what the pipeline does since ANALYSIS_VERSION 4).
    **{f"{k} x {length:g} s evenly": [((i + 0.5) / k, length) for i in range(k)]
       for k, length in ((24, 2.0), (32, 1.0), (48, 1.0), (64, 1.0), (48, 0.75))},
}


#: name -> (number of 1 s windows for a track of ``dur`` seconds): the grids ``--placements`` compares.
GRIDS = {
    "48 x 1 s (ANALYSIS_VERSION 4-5)": lambda dur: 48,
    "72 x 1 s": lambda dur: 72,
    "96 x 1 s": lambda dur: 96,
    "1 s per 4 s, 48-96": lambda dur: min(96, max(48, round(dur / 4))),
    "1 s per 5 s, 48-72": lambda dur: min(72, max(48, round(dur / 5))),
    "1 s per 5 s, 48-96 (ANALYSIS_VERSION 6)": lambda dur: key_window_count(dur, 48, 5.0),   # the pipeline's rule
    "1 s per 5 s, 48-120": lambda dur: min(120, max(48, round(dur / 5))),
}


def placements(tracks: Iterable[tuple[str, np.ndarray]], sr: int, n: int, profile: str) -> pd.DataFrame:
    """Key of each grid of ``GRIDS`` at ``n`` placements against the key of the whole track, per track."""
    rows = []
    for name, y in tracks:
        ref = keymod.estimate_key(y, sr=sr, profile=profile).key
        dur = len(y) / sr
        for grid, count in GRIDS.items():
            k = count(dur)
            for j in range(n):
                layout = [((i + (j + 0.5) / n) / k, 1.0) for i in range(k)]
                got = keymod.estimate_key(cut(y, sr, layout), sr=sr, profile=profile).key
                rows.append({"file": name, "grid": grid, "placement": j, "decoded s": decoded_s(len(y), sr, layout),
                             "agrees": got is not None and got == ref})
    return pd.DataFrame(rows)


def summarise_placements(df: pd.DataFrame) -> pd.DataFrame:
    """Expected agreeing tracks per grid, its range over placements, and the difference to the first grid."""
    per_track = df.groupby(["grid", "file"], sort=False)["agrees"].mean()
    per_placement = df.groupby(["grid", "placement"], sort=False)["agrees"].sum()
    first = per_track.loc[next(iter(GRIDS))]
    rng = np.random.default_rng(0)
    out = []
    for grid in df["grid"].unique():
        diff = (per_track.loc[grid] - first).to_numpy()
        boot = [diff[rng.integers(0, len(diff), len(diff))].sum() for _ in range(2000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out.append({"grid": grid, "tracks": len(diff), "agree (expected)": round(per_track.loc[grid].sum(), 2),
                    "fewest": int(per_placement.loc[grid].min()), "most": int(per_placement.loc[grid].max()),
                    "decoded s": round(df.loc[df["grid"] == grid, "decoded s"].mean(), 1),
                    "vs first": f"{diff.sum():+.2f} [{lo:+.2f}, {hi:+.2f}]"})
    return pd.DataFrame(out).set_index("grid")


def decoded_s(n: int, sr: int, layout: list[tuple[float, float]], excerpt_s: float = 90.0) -> float:
    """Seconds the pipeline decodes for ``layout``: the union of its windows and the middle excerpt that tempo needs."""
    mask = np.zeros(n, bool)
    for centre, length in [*layout, (0.5, excerpt_s)]:
        m = int(length * sr)
        start = int(np.clip(centre * n - m / 2, 0, max(0, n - m)))
        mask[start:start + m] = True
    return float(mask.sum() / sr)


def cut(y: np.ndarray, sr: int, layout: list[tuple[float, float]]) -> list[np.ndarray]:
    """The windows of ``layout`` in ``y``, kept inside it (the whole of ``y`` when it is shorter)."""
    n = len(y)
    if sum(length for _, length in layout) * sr >= n:
        return [y]
    out = []
    for centre, length in layout:
        m = int(length * sr)
        start = int(np.clip(centre * n - m / 2, 0, n - m))
        out.append(y[start:start + m])
    return out


def whole_track(p: Path, sr: int, cache: Path | None) -> np.ndarray:
    if cache is None:
        return load_excerpt(p, sr=sr, excerpt_s=None).y
    f = cache / (hashlib.sha1(str(p).encode()).hexdigest()[:16] + ".npy")
    if not f.exists():
        np.save(f, load_excerpt(p, sr=sr, excerpt_s=None).y)
    return np.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("music", type=Path)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--profile", nargs="*", default=["auto"])
    ap.add_argument("--layout", nargs="*", default=None, help="only the layouts whose names contain these")
    ap.add_argument("--placements", type=int, default=None, metavar="N",
                    help="compare GRIDS at N placements each instead of the fixed layouts")
    args = ap.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    sr = AnalysisSettings().sample_rate
    files = sorted(q for q in args.music.rglob("*") if q.suffix.lower() in AUDIO_EXT)
    if args.placements:
        tracks = ((p.name, y) for p in files if len(y := whole_track(p, sr, args.cache)) >= 135 * sr)
        table = summarise_placements(placements(tracks, sr, args.placements, args.profile[0]))
        print(f"{table['tracks'].iloc[0]} full-length tracks in {args.music.name}/, {args.placements} placements "
              f"per grid, key of the windows = key of the whole track\n")
        print(table.to_string())
        return
    rows = []
    for p in files:
        y = whole_track(p, sr, args.cache)
        if len(y) < 135 * sr:
            continue
        half = len(y) // 2
        for prof in args.profile:
            ref = keymod.estimate_key(y, sr=sr, profile=prof).key
            for name, layout in LAYOUTS.items():
                if args.layout and not any(w in name for w in args.layout):
                    continue
                k = keymod.estimate_key(cut(y, sr, layout), sr=sr, profile=prof)
                k1 = keymod.estimate_key(cut(y[:half], sr, layout), sr=sr, profile=prof).key
                k2 = keymod.estimate_key(cut(y[half:], sr, layout), sr=sr, profile=prof).key
                rows.append({"file": p.name, "profile": prof, "layout": name,
                             "decoded s": decoded_s(len(y), sr, layout),
                             "excerpt=whole": k.key is not None and k.key == ref,
                             "half=half": k1 is not None and k1 == k2,
                             "agreement": k.agreement, "confidence": k.confidence})
    df = pd.DataFrame(rows)
    print(f"{df['file'].nunique()} full-length tracks in {args.music.name}/\n")
    print(df.groupby(["profile", "layout"], sort=False)[["decoded s", "excerpt=whole", "half=half", "agreement"]]
          .mean().round(3).to_string())


if __name__ == "__main__":
    main()
