"""Measure the key estimator on datasets with ground truth and compare key profiles.

Usage::

    python benchmarks/tune_key.py DATASET_DIR [DATASET_DIR ...] [--sr 22050] [--excerpt-s 120]
        [--fmin 50 --fmax 2000 --prominence 4 --compress 100 --harmonics 1] [--grid]

Each DATASET_DIR holds ``annotations.csv`` (``file,bpm,key,source``) and the audio it names. Audio is
decoded once (middle ``--excerpt-s`` seconds, mono, resampled to ``--sr``). Prints the MIREX weighted
key score (``mir_eval.key.weighted_score``: same key 1, fifth 0.5, relative 0.3, parallel 0.2) overall
and per source for every profile, how often rows without a key (e.g. drum loops) get no key, and the
CPU cost of ``estimate_key`` per excerpt. ``--grid`` also tries a few chroma settings.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from collections import defaultdict
from pathlib import Path

import mir_eval
import numpy as np
import soundfile as sf

from crate_dask.features import key as keymod


def load(path: Path, sr: int, excerpt_s: float) -> np.ndarray:
    """Decode the middle excerpt of a file to mono float32 at sr."""
    y, file_sr = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    n = int(excerpt_s * file_sr)
    if len(y) > n:
        start = (len(y) - n) // 2
        y = y[start:start + n]
    if file_sr != sr:
        import soxr  # librosa's resampler backend

        y = soxr.resample(y, file_sr, sr).astype(np.float32)
    return y


def score(ref: str, est: str | None) -> float:
    return 0.0 if est is None else float(mir_eval.key.weighted_score(ref, est))


def evaluate(items, params: dict, profiles) -> dict:
    """Weighted score per profile and source (and the share of keyless rows left keyless)."""
    chromas = [keymod.chroma_profile(y, sr=sr, **params) for y, sr, _, _ in items]
    res: dict = {}
    for prof in profiles:
        per = defaultdict(list)
        for (y, sr, ref, src), (chroma, tonal) in zip(items, chromas):
            s = keymod.key_scores(chroma, profile=prof)
            i = int(np.argmax(s))
            est = f"{keymod.PITCH_CLASSES[i % 12]} {'major' if i < 12 else 'minor'}"
            if tonal < keymod._MIN_TONAL or s[i] < keymod._MIN_CORR:
                est = None
            if ref:
                per[src].append(score(ref, est))
                per["ALL"].append(score(ref, est))
            else:
                per[f"{src} (no key: share left keyless)"].append(float(est is None))
        res[prof] = {k: (float(np.mean(v)), len(v)) for k, v in per.items()}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--excerpt-s", type=float, default=120.0)
    ap.add_argument("--fmin", type=float, default=keymod._FMIN)
    ap.add_argument("--fmax", type=float, default=keymod._FMAX)
    ap.add_argument("--prominence", type=float, default=keymod._PROMINENCE)
    ap.add_argument("--compress", type=float, default=10.0)
    ap.add_argument("--harmonics", type=int, default=3)
    ap.add_argument("--grid", action="store_true", help="also try a small grid of chroma settings")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args(argv)

    items = []
    for d in args.datasets:
        with open(d / "annotations.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                items.append((load(d / row["file"], args.sr, args.excerpt_s), args.sr, row["key"].strip(),
                              f"{d.name}/{row['source']}", row["file"]))
    print(f"{len(items)} items, sr={args.sr}")
    core = [it[:4] for it in items]
    profiles = list(keymod.PROFILES) + ["ensemble"]
    base = dict(fmin=args.fmin, fmax=args.fmax, prominence=args.prominence, compress=args.compress,
                harmonics=args.harmonics)
    settings = [base]
    if args.grid:
        for fmin, fmax, comp, harm in itertools.product((50.0, 80.0), (1200.0, 2000.0, 3500.0), (10.0, 100.0),
                                                          (1, 3)):
            settings.append(dict(base, fmin=fmin, fmax=fmax, compress=comp, harmonics=harm))
    for params in settings:
        res = evaluate(core, params, profiles)
        print(f"\n== {params}")
        sources = sorted({k for r in res.values() for k in r})
        print(f"{'profile':<11}" + "".join(f"{s[:26]:>28}" for s in sources))
        for prof, r in res.items():
            print(f"{prof:<11}" + "".join(f"{r[s][0]:>22.3f} (n={r[s][1]:>2})" if s in r else f"{'':>28}"
                                          for s in sources))

    # Cost and errors of the public function with its defaults.
    t0 = time.process_time()
    results = [keymod.estimate_key(y, sr=sr) for y, sr, *_ in items]
    dt = time.process_time() - t0
    secs = sum(len(y) / sr for y, sr, *_ in items)
    print(f"\nestimate_key defaults (profile={keymod.AUTO_PROFILE}): {dt / len(items) * 1000:.1f} ms CPU per item, "
          f"{dt / secs * 120 * 1000:.1f} ms per 120 s of audio")
    if args.show_errors:
        for (y, sr, ref, src, name), k in zip(items, results):
            if ref and k.key != ref:
                print(f"  {src:<28} {name:<24} ref={ref:<10} est={k.key} conf={k.confidence:.2f} note={k.note}")
    conf_ok = [k.confidence for (_, _, ref, *_), k in zip(items, results) if ref and k.key == ref]
    conf_bad = [k.confidence for (_, _, ref, *_), k in zip(items, results) if ref and k.key != ref]
    if conf_ok and conf_bad:
        print(f"mean confidence: correct {np.mean(conf_ok):.2f} (n={len(conf_ok)}), "
              f"wrong {np.mean(conf_bad):.2f} (n={len(conf_bad)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
