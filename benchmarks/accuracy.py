"""Score crate_dask's BPM and key estimates against a dataset with ground truth.

Usage::

    python benchmarks/accuracy.py DATASET_DIR [--direct] [--baseline] [--excerpt S] [--json]

``DATASET_DIR`` holds ``annotations.csv`` (``file,bpm,key[,source]``; ``file``
relative to ``DATASET_DIR``, e.g. ``audio/track_001.mp3``; empty bpm or key =
unknown) and the audio under ``DATASET_DIR/audio``.

By default the real pipeline runs: ``crate-dask analyze DATASET_DIR/audio --out
TMP --no-progress`` in a subprocess, then ``pandas.read_parquet(TMP)``, rows
matched by file name. ``--direct`` calls :func:`crate_dask.library.audio.load_excerpt`
and :func:`crate_dask.features.signal.analyze_signal` in this process instead (no CLI,
no Dask). ``--baseline`` adds the naive librosa pipeline (whole track at 22050
Hz, ``beat_track``, ``chroma_cqt``, Krumhansl template) side by side.

Metrics, for all tracks and per ``source``:

* tempo Accuracy1: within 4 % of the truth; Accuracy2: also at x2, x3, 1/2, 1/3;
* DJ precision: within 0.5 BPM (what beat matching needs);
* key: the MIREX weighted score (``mir_eval.key.weighted_score``: same key 1,
  fifth 0.5, relative 0.3, parallel 0.2), tracks with a key only;
* ``n`` counts the tracks scored for tempo / key. A missing estimate scores 0.

Prints a Markdown table (for the README).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--direct", action="store_true", help="call the library in-process instead of the CLI")
    ap.add_argument("--baseline", action="store_true", help="also score the naive librosa pipeline")
    ap.add_argument("--excerpt", type=float, default=None, help="excerpt seconds (default: the settings')")
    ap.add_argument("--workers", type=int, default=None, help="CLI workers")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON too")
    ap.add_argument("--per-track", type=Path, default=None, help="write per-track results to this CSV")
    args = ap.parse_args(argv)

    truth = load_annotations(args.dataset)
    paths = [args.dataset / f for f in truth["file"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"missing audio files: {missing[:5]}{' ...' if len(missing) > 5 else ''}", file=sys.stderr)
        return 2

    systems: dict[str, pd.DataFrame] = {}
    t0 = time.perf_counter()
    if args.direct:
        systems["crate_dask"] = run_direct(paths, args.excerpt)
    else:
        systems["crate_dask"] = run_cli(args.dataset / "audio", paths, args.excerpt, args.workers)
    print(f"crate_dask: {len(paths)} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.baseline:
        t0 = time.perf_counter()
        systems["naive librosa"] = run_baseline(paths)
        print(f"baseline: {len(paths)} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    scores = {name: score(truth, est) for name, est in systems.items()}
    print(markdown(scores))
    if args.per_track:
        merged = truth.copy()
        for name, est in systems.items():
            merged[f"{name}:bpm"] = est["bpm"].to_numpy()
            merged[f"{name}:key"] = est["key"].to_numpy()
        merged.to_csv(args.per_track, index=False)
    if args.json:
        print(json.dumps(scores, indent=2))
    return 0


def load_annotations(dataset: Path) -> pd.DataFrame:
    """``file, bpm (float or nan), key (str or None), source``."""
    df = pd.read_csv(dataset / "annotations.csv", dtype={"file": str, "key": str, "source": str})
    df["bpm"] = pd.to_numeric(df["bpm"], errors="coerce")
    df["key"] = [k.strip() if isinstance(k, str) and k.strip() else None for k in df["key"]]
    if "source" not in df:
        df["source"] = "all"
    df["source"] = df["source"].fillna("unknown")
    return df


def run_direct(paths: list[Path], excerpt_s: float | None) -> pd.DataFrame:
    """crate_dask's estimates, computed in this process."""
    from crate_dask.config import AnalysisSettings
    from crate_dask.errors import FileProblem
    from crate_dask.features.signal import analyze_signal
    from crate_dask.library.audio import load_excerpt

    settings = AnalysisSettings() if excerpt_s is None else AnalysisSettings(excerpt_s=excerpt_s)
    rows = []
    for p in paths:
        try:
            ex = load_excerpt(p, sr=settings.sample_rate, excerpt_s=settings.excerpt_s)
            r = analyze_signal(ex.y, sr=ex.sr, settings=settings)
            rows.append({"bpm": r["bpm"], "key": r["key"]})
        except FileProblem as exc:
            print(f"{p.name}: {exc}", file=sys.stderr)
            rows.append({"bpm": math.nan, "key": None})
    return pd.DataFrame(rows)


def run_cli(audio_dir: Path, paths: list[Path], excerpt_s: float | None, workers: int | None) -> pd.DataFrame:
    """crate_dask's estimates from a real ``crate-dask analyze`` run, in annotation order."""
    with tempfile.TemporaryDirectory(prefix="crate_dask_acc_") as out:
        cmd = [sys.executable, "-m", "crate_dask.cli", "analyze", str(audio_dir), "--out", out, "--no-progress"]
        if excerpt_s is not None:
            cmd += ["--excerpt", str(excerpt_s)]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"crate-dask analyze failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        res = pd.read_parquet(out)
    audio_dir = audio_dir.resolve()
    by_rel = {str(r): i for i, r in enumerate(res["relpath"])}
    by_name = {Path(r).name: i for i, r in enumerate(res["relpath"])}
    rows = []
    for p in paths:
        rel = str(p.resolve().relative_to(audio_dir)) if p.resolve().is_relative_to(audio_dir) else p.name
        i = by_rel.get(rel, by_name.get(p.name))
        if i is None:
            rows.append({"bpm": math.nan, "key": None})
            continue
        row = res.iloc[i]
        if isinstance(row.get("error"), str):
            print(f"{p.name}: {row['error']}", file=sys.stderr)
        rows.append({"bpm": row["bpm"], "key": row["key"]})
    return pd.DataFrame(rows)


# -- the naive baseline ------------------------------------------------------------------------

_KRUMHANSL_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KRUMHANSL_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def naive_analysis(path) -> dict:
    """What one would write first: librosa.load the whole file, beat_track, chroma_cqt, Krumhansl."""
    import librosa

    y, sr = naive_load(path)
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    return {"bpm": float(np.atleast_1d(tempo)[0]), "key": krumhansl_key(chroma)}


def naive_load(path) -> tuple[np.ndarray, int]:
    """``librosa.load`` of the whole file at 22050 Hz; M4A (which it cannot read without a
    system ffmpeg) falls back to a whole-file PyAV decode."""
    import librosa

    try:
        return librosa.load(path, sr=22050, mono=True)
    except Exception:
        from crate_dask.library.audio import load_excerpt

        return load_excerpt(path, sr=22050, excerpt_s=None).y, 22050


def krumhansl_key(chroma: np.ndarray) -> str | None:
    """The best-correlated of the 24 rotated Krumhansl-Kessler profiles."""
    if not np.any(chroma > 0):
        return None
    best, name = -np.inf, None
    for mode, prof in (("major", _KRUMHANSL_MAJOR), ("minor", _KRUMHANSL_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(chroma, np.roll(prof, tonic))[0, 1]
            if r > best:
                best, name = r, f"{_PITCHES[tonic]} {mode}"
    return name


def run_baseline(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for p in paths:
        try:
            rows.append(naive_analysis(p))
        except Exception as exc:  # the baseline has no error handling of its own
            print(f"baseline {p.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            rows.append({"bpm": math.nan, "key": None})
    return pd.DataFrame(rows)


# -- scoring -----------------------------------------------------------------------------------

def tempo_scores(truth: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Accuracy1, Accuracy2 and DJ precision (fractions) over tracks with a true bpm."""
    ok = np.isfinite(truth)
    t, e = truth[ok], np.where(np.isfinite(est[ok]), est[ok], -1e9)
    if t.size == 0:
        return {"acc1": math.nan, "acc2": math.nan, "dj": math.nan, "n": 0}
    acc1 = np.abs(e - t) <= 0.04 * t
    acc2 = np.zeros_like(acc1)
    for f in (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0):
        acc2 |= np.abs(e - f * t) <= 0.04 * f * t
    dj = np.abs(e - t) <= 0.5
    return {"acc1": float(acc1.mean()), "acc2": float(acc2.mean()), "dj": float(dj.mean()), "n": int(t.size)}


def key_score(truth: list, est: list) -> dict[str, float]:
    """Mean MIREX weighted score over tracks with a true key; a missing estimate scores 0."""
    import mir_eval

    s = [mir_eval.key.weighted_score(t, e) if isinstance(e, str) and e else 0.0
         for t, e in zip(truth, est) if isinstance(t, str) and t]
    return {"key": float(np.mean(s)) if s else math.nan, "n_key": len(s)}


def score(truth: pd.DataFrame, est: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Scores for ``all`` and for every source."""
    out = {}
    groups = [("all", np.ones(len(truth), bool))] + [
        (src, (truth["source"] == src).to_numpy()) for src in sorted(truth["source"].unique())]
    for name, m in groups:
        t_bpm = truth["bpm"].to_numpy(float)[m]
        e_bpm = pd.to_numeric(est["bpm"], errors="coerce").to_numpy(float)[m]
        keys_t = [k for k, sel in zip(truth["key"], m) if sel]
        keys_e = [k if isinstance(k, str) and k else None for k, sel in zip(est["key"], m) if sel]
        out[name] = {**tempo_scores(t_bpm, e_bpm), **key_score(keys_t, keys_e)}
    return out


def markdown(scores: dict[str, dict[str, dict[str, float]]]) -> str:
    def pct(v: float) -> str:
        return "–" if not math.isfinite(v) else f"{100 * v:.1f} %"

    def num(v: float) -> str:
        return "–" if not math.isfinite(v) else f"{v:.3f}"

    lines = ["| system | tracks | n tempo | Accuracy1 | Accuracy2 | DJ (±0.5 BPM) | n key | MIREX key |",
             "|---|---|---|---|---|---|---|---|"]
    for system, by_group in scores.items():
        for group, s in by_group.items():
            lines.append(f"| {system} | {group} | {s['n']} | {pct(s['acc1'])} | {pct(s['acc2'])} | "
                         f"{pct(s['dj'])} | {s['n_key']} | {num(s['key'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    # librosa's numba cache beside its sources can be corrupted by concurrent compiles: use our own.
    os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numba_cache_"))
    sys.exit(main())
