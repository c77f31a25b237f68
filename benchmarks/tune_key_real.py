"""Choose the key profile and the way frames are pooled, on real recordings and rendered chorales together.

Usage::

    python benchmarks/tune_key_real.py --labelled ../shared/eval/dev-real ../shared/eval/dev \\
        --stability MUSIC_DIR [--cache DIR]

Two kinds of evidence, because real recordings with key labels are scarce:

* **labelled**: MIREX weighted key score (mir_eval) on every row of ``annotations.csv`` with a key
  (the default 90 s excerpt, as the pipeline analyses it), per source;
* **label-free** on full-length real tracks (``benchmarks/get_real_music.sh``): how often the key of
  the default excerpt equals the key of the whole track, and the key of the first half that of the
  second half. A profile or pooling that reads the same music as the same key wherever it is sampled
  is preferred; agreement alone cannot tell a right key from a consistently wrong one, so both
  kinds are reported side by side.

The per-frame chroma (:func:`crate_dask.features.key.chroma_frames`) is computed once per signal and cached;
each variant only re-pools and re-scores it. ``--loso`` also reports, for every labelled source,
the variant chosen on the other sources and how it scores on the held-out one.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd

from crate_dask.features import key as keymod
from crate_dask.library.audio import load_excerpt
from crate_dask.config import AnalysisSettings

AUDIO_EXT = {".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a"}


def frames_of(y: np.ndarray, sr: int, harmonics: int) -> np.ndarray:
    f, tonal = keymod.chroma_frames(y, sr=sr, harmonics=harmonics)
    return f


def cached(cache: Path | None, tag: str, fn):
    if cache is None:
        return fn()
    p = cache / (hashlib.sha1(tag.encode()).hexdigest()[:16] + ".npz")
    if p.exists():
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    out = fn()
    np.savez(p, **out)
    return out


def pool(frames: np.ndarray, how: str, n_windows: int) -> np.ndarray:
    """One 12-bin chroma from per-frame chroma."""
    if how == "sum" or frames.shape[0] < 2:
        c = frames.sum(axis=0)
    elif how == "windows":   # equal weight per window: a loud chorus does not outvote a verse
        parts = [p.sum(axis=0) for p in np.array_split(frames, min(n_windows, frames.shape[0]))]
        c = sum(p / p.sum() for p in parts if p.sum() > 0)
    elif how == "frames":    # equal weight per frame
        tot = frames.sum(axis=1, keepdims=True)
        c = (frames / np.where(tot > 0, tot, 1.0)).sum(axis=0)
    else:
        raise ValueError(how)
    return c / c.sum() if np.sum(c) > 0 else c


def key_name(scores: np.ndarray) -> str:
    i = int(np.argmax(scores))
    return f"{keymod.PITCH_CLASSES[i % 12]} {'major' if i < 12 else 'minor'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", type=Path, nargs="*", default=[])
    ap.add_argument("--stability", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--loso", action="store_true")
    args = ap.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    st = AnalysisSettings()
    sr = st.sample_rate
    harmonics_grid = (1, 3)

    labelled = []  # (source, truth, {h: frames})
    for ds in args.labelled:
        ann = pd.read_csv(ds / "annotations.csv", dtype=str)
        for _, r in ann.iterrows():
            if not isinstance(r["key"], str) or not r["key"].strip():
                continue
            p = ds / r["file"]

            def compute(p=p):
                y = load_excerpt(p, sr=sr, excerpt_s=st.excerpt_s).y
                return {f"h{h}": frames_of(y, sr, h) for h in harmonics_grid}
            labelled.append((r.get("source", ds.name), r["key"].strip(), cached(args.cache, f"lab:{p}", compute)))

    tracks = []  # {part: {h: frames}}
    if args.stability:
        for p in sorted(q for q in args.stability.rglob("*") if q.suffix.lower() in AUDIO_EXT):
            def compute(p=p):
                whole = load_excerpt(p, sr=sr, excerpt_s=None).y
                ex = load_excerpt(p, sr=sr, excerpt_s=st.excerpt_s).y
                half = whole.size // 2
                out = {}
                for part, y in (("excerpt", ex), ("whole", whole), ("first", whole[:half]), ("second", whole[half:])):
                    for h in harmonics_grid:
                        out[f"{part}:h{h}"] = frames_of(y, sr, h)
                out["duration"] = np.array(whole.size / sr)
                return out
            d = cached(args.cache, f"stab:{p}", compute)
            if float(d["duration"]) >= 1.5 * (st.excerpt_s or 90.0):
                tracks.append(d)

    profiles = [*keymod.PROFILES, "ensemble"]
    variants = list(itertools.product(profiles, harmonics_grid, ("sum", "windows", "frames")))
    sources = sorted({s for s, _, _ in labelled})
    rows = []
    for prof, h, how in variants:
        res = {"profile": prof, "harmonics": h, "pooling": how}
        for src in sources:
            pts = [mir_eval.key.weighted_score(t, key_name(keymod.key_scores(pool(f[f"h{h}"], how, 8), profile=prof)))
                   for s, t, f in labelled if s == src]
            res[src] = float(np.mean(pts))
        if sources:
            res["labelled mean"] = float(np.mean([res[s] for s in sources]))
        if tracks:
            k = {part: [key_name(keymod.key_scores(pool(t[f"{part}:h{h}"], how, 8), profile=prof)) for t in tracks]
                 for part in ("excerpt", "whole", "first", "second")}
            res["excerpt=whole"] = float(np.mean([a == b for a, b in zip(k["excerpt"], k["whole"])]))
            res["half=half"] = float(np.mean([a == b for a, b in zip(k["first"], k["second"])]))
        rows.append(res)
    df = pd.DataFrame(rows)
    print(f"{len(labelled)} labelled excerpts ({', '.join(sources)}), {len(tracks)} full-length tracks\n")
    print(df.sort_values("labelled mean" if sources else "excerpt=whole", ascending=False)
          .round(3).to_string(index=False))
    if args.loso and len(sources) > 1:
        print("\nleave one source out (choose on the others by labelled mean + excerpt=whole):")
        for src in sources:
            others = [s for s in sources if s != src]
            crit = df[others].mean(axis=1) + (df["excerpt=whole"] if tracks else 0)
            best = df.loc[crit.idxmax()]
            print(f"- held out {src}: chose {best['profile']}/h{best['harmonics']}/{best['pooling']}, "
                  f"scores {best[src]:.3f} there (best possible {df[src].max():.3f})")


if __name__ == "__main__":
    main()
