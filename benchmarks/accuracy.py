"""Score crate_dask's BPM and key estimates against a dataset with ground truth.

Usage::

    python benchmarks/accuracy.py DATASET_DIR [--direct] [--baseline] [--excerpt S] [--json]
    python benchmarks/accuracy.py --stability MUSIC_DIR [--limit N]

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

* tempo Accuracy1: within 4 % of the truth, raw and "folded" (a label outside
  the DJ range 78-180 is folded into it by octaves first, e.g. a chart at 190
  scores against 95; a label inside the range is kept, so 170 vs 85 is a miss);
  Accuracy2: also at x2, x3, 1/2, 1/3;
* DJ precision: within 0.5 BPM (what beat matching needs), raw and folded;
* key: the MIREX weighted score (``mir_eval.key.weighted_score``: same key 1,
  fifth 0.5, relative 0.3, parallel 0.2), tracks with a key only;
* ``n`` counts the tracks scored for tempo / key, ``none`` how many of them got
  no answer (a missing estimate scores 0).

With ``--direct`` also confidence calibration: folded Accuracy1 / MIREX key of
the most confident half and the least confident quarter of the tracks (by
``bpm_confidence`` / ``key_confidence``), and the same for the rows flagged
``needs_review`` and the rest.

``--peer-keys CSV ...`` scores the key against other estimators instead of human labels
(``benchmarks/peer_keys.py`` writes the CSVs: Essentia's KeyExtractor and madmom's CNN key model):
a file's label is the key on which all the ``--consensus`` estimators agree (default
``essentia_bgate madmom_cnn``: a DSP and a neural method, independent of each other); files without
consensus get no key label. With it, ``DATASET_DIR`` may be a plain folder of audio without
``annotations.csv`` (no tempo labels then). This is how key accuracy on real recordings is measured
here, where only 6 human key labels exist: two strong peers that agree are right more often than
either alone, and the set is far larger.

``--peer-tempo CSV ...`` adds other tempo estimators (``benchmarks/peer_tempo.py`` writes the CSVs:
Essentia's RhythmExtractor2013 and PercivalBpmEstimator, madmom's RNN beat tracker; each on the
same middle 90 s) as systems beside crate_dask, their BPM folded into the DJ range 78-180 as
crate_dask's is, and ``peer consensus``: the mean of the ``--tempo-consensus`` estimators (default
``essentia_multifeature madmom_dbn``) where they are within 4 % of each other, no BPM elsewhere. Where
the dataset has no tempo labels (a plain folder), that consensus is the label: orchestral, folk and
other real music beside the dance-chart labels. It also prints each of crate_dask and the consensus
estimators scored against the consensus of the others, so that none is scored on labels it made.

``--stability MUSIC_DIR`` is the label-free key check on full-length tracks
(``benchmarks/get_real_music.sh`` fetches some): for every track, does the key
(and the BPM) of the default excerpt agree with the whole track, with the
first half against the second, and with the excerpt of an MP3 re-encoding?

Prints Markdown tables (for the README).
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
    ap.add_argument("dataset", type=Path, nargs="?")
    ap.add_argument("--direct", action="store_true", help="call the library in-process instead of the CLI")
    ap.add_argument("--baseline", action="store_true", help="also score the naive librosa pipeline")
    ap.add_argument("--excerpt", type=float, default=None, help="excerpt seconds (default: the settings')")
    ap.add_argument("--workers", type=int, default=None, help="CLI workers")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON too")
    ap.add_argument("--per-track", type=Path, default=None, help="write per-track results to this CSV")
    ap.add_argument("--stability", type=Path, default=None, metavar="MUSIC_DIR",
                    help="label-free key/BPM stability on the full-length tracks in MUSIC_DIR")
    ap.add_argument("--limit", type=int, default=None, help="--stability: at most this many tracks")
    ap.add_argument("--peer-keys", type=Path, nargs="+", default=None, metavar="CSV",
                    help="key labels from other estimators (benchmarks/peer_keys.py) instead of the annotations'")
    ap.add_argument("--consensus", nargs="+", default=list(CONSENSUS), metavar="ESTIMATOR",
                    help="--peer-keys: a file is labelled where all of these agree")
    ap.add_argument("--peer-tempo", type=Path, nargs="+", default=None, metavar="CSV",
                    help="other tempo estimators (benchmarks/peer_tempo.py) side by side; their consensus "
                         "labels a set without tempo labels")
    ap.add_argument("--tempo-consensus", nargs="+", default=list(TEMPO_CONSENSUS), metavar="ESTIMATOR",
                    help="--peer-tempo: the estimators whose agreement is the consensus")
    args = ap.parse_args(argv)
    if args.stability is not None:
        print(stability(args.stability, args.limit))
        return 0
    if args.dataset is None:
        ap.error("DATASET_DIR or --stability MUSIC_DIR is required")

    truth = load_annotations(args.dataset, required=args.peer_keys is None and args.peer_tempo is None)
    names = [Path(f).name for f in truth["file"]]
    if args.peer_keys:
        labels = peer_consensus(args.peer_keys, args.consensus)
        truth["key"] = [labels.get(n) for n in names]
        print(f"key labels: {' = '.join(args.consensus)} on {sum(isinstance(k, str) for k in truth['key'])} of "
              f"{len(truth)} files", file=sys.stderr)
    peers_bpm: dict[str, dict[str, float]] = {}
    if args.peer_tempo:
        peers_bpm = peer_tempo(args.peer_tempo)
        peers_bpm["peer consensus"] = tempo_consensus(peers_bpm, args.tempo_consensus)
        if not np.isfinite(truth["bpm"].to_numpy(float)).any():
            truth["bpm"] = [peers_bpm["peer consensus"].get(n, math.nan) for n in names]
            print(f"tempo labels: {' = '.join(args.tempo_consensus)} (within 4 %) on "
                  f"{int(np.isfinite(truth['bpm']).sum())} of {len(truth)} files", file=sys.stderr)
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
        audio_dir = args.dataset / "audio" if (args.dataset / "audio").is_dir() else args.dataset   # or a plain folder
        systems["crate_dask"] = run_cli(audio_dir, paths, args.excerpt, args.workers)
    print(f"crate_dask: {len(paths)} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.baseline:
        t0 = time.perf_counter()
        systems["naive librosa"] = run_baseline(paths)
        print(f"baseline: {len(paths)} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    for name, bpms in peers_bpm.items():
        systems[name] = pd.DataFrame({"bpm": [bpms.get(n, math.nan) for n in names]})
    scores = {name: score(truth, est) for name, est in systems.items()}
    print(markdown(scores))
    if peers_bpm:
        bpm = pd.to_numeric(systems["crate_dask"]["bpm"], errors="coerce").to_numpy(float)
        panel = {"crate_dask": {n: b for n, b in zip(names, bpm) if math.isfinite(b)},
                 **{e: peers_bpm.get(e, {}) for e in args.tempo_consensus}}
        print()
        print(versus_the_others_markdown(versus_the_others(panel)))
    est = systems["crate_dask"]
    est["bpm_confidence"] = pd.to_numeric(est.get("bpm_confidence"), errors="coerce").fillna(0.0)
    est["key_confidence"] = pd.to_numeric(est.get("key_confidence"), errors="coerce").fillna(0.0)
    est["needs_review"] = est.get("needs_review", pd.Series(False, index=est.index)).fillna(False).astype(bool)
    if "bpm_confidence" in est:
        print()
        print(calibration_markdown(calibration(truth, est)))
    if args.per_track:
        merged = truth.copy()
        for name, est in systems.items():
            for col in est.columns:
                merged[f"{name}:{col}"] = est[col].to_numpy()
        merged.to_csv(args.per_track, index=False)
    if args.json:
        print(json.dumps(scores, indent=2))
    return 0


CONSENSUS = ("essentia_bgate", "madmom_cnn")


def peer_consensus(csvs: list[Path], estimators: list[str]) -> dict[str, str]:
    """File name -> the key on which every estimator in ``estimators`` agrees, from peer_keys.py's CSVs.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    ...     _ = f.write("file,estimator,key,strength,error,seconds\\n"
    ...                 "a.mp3,essentia_bgate,A minor,0.8,,0.1\\na.mp3,madmom_cnn,A minor,0.9,,3\\n"
    ...                 "b.mp3,essentia_bgate,C major,0.8,,0.1\\nb.mp3,madmom_cnn,A minor,0.9,,3\\n")
    >>> peer_consensus([Path(f.name)], ["essentia_bgate", "madmom_cnn"])
    {'a.mp3': 'A minor'}
    """
    peers = pd.concat([pd.read_csv(p, dtype=str) for p in csvs])
    peers = peers[peers["estimator"].isin(estimators) & peers["key"].notna()]
    out = {}
    for name, g in peers.groupby("file"):
        keys = dict(zip(g["estimator"], g["key"]))
        if len(keys) == len(estimators) and len(set(keys.values())) == 1:
            out[Path(name).name] = next(iter(keys.values()))
    return out


TEMPO_CONSENSUS = ("essentia_multifeature", "madmom_dbn")


def peer_tempo(csvs: list[Path]) -> dict[str, dict[str, float]]:
    """Estimator -> {file name: BPM folded into the DJ range}, from peer_tempo.py's CSVs."""
    peers = pd.concat([pd.read_csv(p, dtype={"file": str, "estimator": str}) for p in csvs])
    peers["bpm"] = pd.to_numeric(peers["bpm"], errors="coerce")
    peers = peers[np.isfinite(peers["bpm"]) & (peers["bpm"] > 0)]
    return {est: {Path(f).name: fold_label(float(b)) for f, b in zip(g["file"], g["bpm"])}
            for est, g in peers.groupby("estimator")}


def tempo_consensus(peers: dict[str, dict[str, float]], estimators: list[str],
                    tol: float = 0.04) -> dict[str, float]:
    """File name -> the mean folded BPM of ``estimators`` where they are within ``tol`` of each other
    (highest - lowest <= ``tol`` x mean).

    >>> tempo_consensus({"a": {"x.mp3": 120.0, "y.mp3": 85.0}, "b": {"x.mp3": 121.0, "y.mp3": 170.0}}, ["a", "b"])
    {'x.mp3': 120.5}
    """
    out = {}
    for name in set.intersection(*(set(peers.get(e, {})) for e in estimators)):
        bpms = np.array([peers[e][name] for e in estimators])
        mean = float(bpms.mean())
        if bpms.max() - bpms.min() <= tol * mean:
            out[name] = mean
    return dict(sorted(out.items()))


def versus_the_others(panel: dict[str, dict[str, float]], tol: float = 0.04) -> dict[str, tuple[int, int]]:
    """System -> (files on which all the other systems agree, files where this one agrees with them too).

    Each estimator is scored against the consensus of the others, so none is scored against labels it
    helped to make: a fair comparison of crate_dask with the peers on music without human labels.

    >>> versus_the_others({"a": {"x": 120.0, "y": 85.0}, "b": {"x": 121.0, "y": 170.0},
    ...                    "c": {"x": 120.5, "y": 171.0}})
    {'a': (2, 1), 'b': (1, 1), 'c': (1, 1)}
    """
    out = {}
    for name, bpms in panel.items():
        others = {k: v for k, v in panel.items() if k != name}
        labels = tempo_consensus(others, list(others), tol)
        hits = sum(1 for f, t in labels.items() if f in bpms and abs(bpms[f] - t) <= tol * t)
        out[name] = (len(labels), hits)
    return out


def versus_the_others_markdown(table: dict[str, tuple[int, int]]) -> str:
    lines = ["| system | files on which the others agree (within 4 %) | this one agrees too |", "|---|---|---|"]
    lines += [f"| {name} | {n} | {hits}/{n} ({hits / n:.3f}) |" if n else f"| {name} | 0 | – |"
              for name, (n, hits) in table.items()]
    return "\n".join(lines)


def load_annotations(dataset: Path, required: bool = True) -> pd.DataFrame:
    """``file, bpm (float or nan), key (str or None), source``; without ``annotations.csv`` (and not
    ``required``) every audio file under ``dataset``, unlabelled."""
    if not required and not (dataset / "annotations.csv").is_file():
        return pd.DataFrame({"file": [str(p.relative_to(dataset)) for p in audio_files(dataset)], "bpm": math.nan,
                             "key": None, "source": dataset.name})
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
            ex = load_excerpt(p, **settings.excerpt_options())
            r = analyze_signal(ex.y, sr=ex.sr, settings=settings, key_windows=ex.key_windows)
            rows.append(r)
        except FileProblem as exc:
            print(f"{p.name}: {exc}", file=sys.stderr)
            rows.append({"bpm": math.nan, "key": None, "bpm_confidence": 0.0, "key_confidence": 0.0,
                         "needs_review": True})
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
            rows.append({"bpm": math.nan, "key": None, "bpm_confidence": 0.0, "key_confidence": 0.0,
                         "needs_review": False})
            continue
        row = res.iloc[i]
        if isinstance(row.get("error"), str):
            print(f"{p.name}: {row['error']}", file=sys.stderr)
        rows.append({c: row.get(c) for c in ("bpm", "key", "bpm_confidence", "key_confidence", "needs_review")})
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

DJ_RANGE = (78.0, 180.0)


def fold_label(bpm: float, bpm_range: tuple[float, float] = DJ_RANGE) -> float:
    """A label outside the DJ range moved into it by octaves; one inside it is kept as it is.

    >>> fold_label(190.0), fold_label(170.0), fold_label(67.0)
    (95.0, 170.0, 134.0)
    """
    low, high = bpm_range
    if not math.isfinite(bpm) or bpm <= 0:
        return bpm
    while bpm > high:
        bpm /= 2.0
    while bpm < low:
        bpm *= 2.0
    return bpm


def tempo_hits(truth: np.ndarray, est: np.ndarray) -> dict[str, np.ndarray]:
    """Per-track booleans: acc1, acc1 folded, acc2, within 0.5 BPM (raw, folded); truth must be finite."""
    e = np.where(np.isfinite(est), est, -1e9)
    folded = np.array([fold_label(float(t)) for t in truth])
    acc2 = np.zeros(truth.shape, bool)
    for f in (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0):
        acc2 |= np.abs(e - f * truth) <= 0.04 * f * truth
    return {"acc1": np.abs(e - truth) <= 0.04 * truth, "acc1_folded": np.abs(e - folded) <= 0.04 * folded,
            "acc2": acc2, "dj": np.abs(e - truth) <= 0.5, "dj_folded": np.abs(e - folded) <= 0.5}


def tempo_scores(truth: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """Accuracy1 (raw, folded), Accuracy2 and DJ precision (raw, folded) over tracks with a true bpm."""
    ok = np.isfinite(truth)
    t, e = truth[ok], est[ok]
    if t.size == 0:
        return {"acc1": math.nan, "acc1_folded": math.nan, "acc2": math.nan, "dj": math.nan,
                "dj_folded": math.nan, "n": 0, "none": 0}
    hits = tempo_hits(t, e)
    return {**{k: float(v.mean()) for k, v in hits.items()}, "n": int(t.size), "none": int((~np.isfinite(e)).sum())}


def key_points(truth: list, est: list) -> list[float]:
    """MIREX weighted score per track with a true key; a missing estimate scores 0."""
    import mir_eval

    return [mir_eval.key.weighted_score(t, e) if isinstance(e, str) and e else 0.0
            for t, e in zip(truth, est) if isinstance(t, str) and t]


def key_score(truth: list, est: list) -> dict[str, float]:
    """Mean MIREX weighted score over tracks with a true key, and how many of them got no key."""
    s = key_points(truth, est)
    none = sum(1 for t, e in zip(truth, est) if isinstance(t, str) and t and not (isinstance(e, str) and e))
    return {"key": float(np.mean(s)) if s else math.nan, "n_key": len(s), "none_key": none}


def score(truth: pd.DataFrame, est: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Scores for ``all`` and for every source."""
    out = {}
    groups = [("all", np.ones(len(truth), bool))] + [
        (src, (truth["source"] == src).to_numpy()) for src in sorted(truth["source"].unique())]
    for name, m in groups:
        t_bpm = truth["bpm"].to_numpy(float)[m]
        e_bpm = pd.to_numeric(est["bpm"], errors="coerce").to_numpy(float)[m]
        if "key" in est:
            keys_t = [k for k, sel in zip(truth["key"], m) if sel]
            keys_e = [k if isinstance(k, str) and k else None for k, sel in zip(est["key"], m) if sel]
            keys = key_score(keys_t, keys_e)
        else:  # a tempo-only system (--peer-tempo)
            keys = {"key": math.nan, "n_key": 0, "none_key": 0}
        out[name] = {**tempo_scores(t_bpm, e_bpm), **keys}
    return out


def calibration(truth: pd.DataFrame, est: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Folded Accuracy1 and MIREX key of the most confident half, the least confident quarter,
    and of the rows flagged ``needs_review`` against the rest (over all tracks with a label)."""
    out: dict[str, dict[str, float]] = {}
    t_bpm = truth["bpm"].to_numpy(float)
    ok = np.isfinite(t_bpm)
    if ok.any():
        hit = tempo_hits(t_bpm[ok], pd.to_numeric(est["bpm"], errors="coerce").to_numpy(float)[ok])["acc1_folded"]
        out["tempo"] = _split(hit.astype(float), est["bpm_confidence"].to_numpy(float)[ok],
                              est["needs_review"].to_numpy(bool)[ok] if "needs_review" in est else None)
    has_key = np.array([isinstance(k, str) and bool(k) for k in truth["key"]])
    if has_key.any():
        pts = np.array(key_points(list(truth["key"]), [k if isinstance(k, str) else None for k in est["key"]]))
        out["key"] = _split(pts, est["key_confidence"].to_numpy(float)[has_key],
                            est["needs_review"].to_numpy(bool)[has_key] if "needs_review" in est else None)
    return out


def _split(points: np.ndarray, conf: np.ndarray, review: np.ndarray | None) -> dict[str, float]:
    conf = np.nan_to_num(conf, nan=0.0)
    order = np.argsort(-conf, kind="stable")
    n = len(points)
    top, bottom = order[: max(1, n // 2)], order[n - max(1, n // 4):]
    res = {"n": n, "all": float(points.mean()), "top_half": float(points[top].mean()),
           "bottom_quarter": float(points[bottom].mean())}
    if review is not None:
        res["flagged"] = int(review.sum())
        res["flagged_score"] = float(points[review].mean()) if review.any() else math.nan
        res["unflagged_score"] = float(points[~review].mean()) if (~review).any() else math.nan
    return res


def calibration_markdown(cal: dict[str, dict[str, float]]) -> str:
    def num(v: float) -> str:
        return "–" if not math.isfinite(v) else f"{v:.3f}"

    lines = ["| value | n | all | most confident half | least confident quarter | needs_review: n | "
             "flagged | not flagged |", "|---|---|---|---|---|---|---|---|"]
    for what, r in cal.items():
        metric = "folded Acc1" if what == "tempo" else "MIREX"
        lines.append(f"| {what} ({metric}) | {r['n']} | {num(r['all'])} | {num(r['top_half'])} | "
                     f"{num(r['bottom_quarter'])} | {r.get('flagged', '–')} | {num(r.get('flagged_score', math.nan))} | "
                     f"{num(r.get('unflagged_score', math.nan))} |")
    return "\n".join(lines)


def markdown(scores: dict[str, dict[str, dict[str, float]]]) -> str:
    def pct(v: float) -> str:
        return "–" if not math.isfinite(v) else f"{100 * v:.1f} %"

    def num(v: float) -> str:
        return "–" if not math.isfinite(v) else f"{v:.3f}"

    lines = ["| system | tracks | n tempo | no BPM | Acc1 | Acc1 folded | Acc2 | ±0.5 BPM | ±0.5 folded | "
             "n key | no key | MIREX key |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for system, by_group in scores.items():
        for group, s in by_group.items():
            lines.append(f"| {system} | {group} | {s['n']} | {s['none']} | {pct(s['acc1'])} | "
                         f"{pct(s['acc1_folded'])} | {pct(s['acc2'])} | {pct(s['dj'])} | {pct(s['dj_folded'])} | "
                         f"{s['n_key']} | {s['none_key']} | {num(s['key'])} |")
    return "\n".join(lines)


# -- label-free stability on full-length tracks ------------------------------------------------

AUDIO_EXT = {".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a", ".aiff", ".aif"}


def audio_files(folder: Path) -> list[Path]:
    """The audio files under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXT and p.is_file())


def stability(music_dir: Path, limit: int | None = None) -> str:
    """Key/BPM agreement: default excerpt vs whole track, first vs second half, excerpt vs MP3 copy."""
    import soundfile as sf

    from crate_dask.features.signal import analyze_signal
    from crate_dask.library.audio import load_excerpt
    from crate_dask.config import AnalysisSettings

    settings = AnalysisSettings()
    files = audio_files(music_dir)[:limit]
    rows = []
    for p in files:
        whole = load_excerpt(p, sr=settings.sample_rate, excerpt_s=None)
        if whole.duration_s < 2 * (settings.excerpt_s or 90.0) * 0.75:
            continue  # too short for the excerpt to differ from the whole track
        ex = load_excerpt(p, **settings.excerpt_options())
        y, sr = whole.y, whole.sr
        half = y.size // 2
        with tempfile.TemporaryDirectory() as tmp:
            mp3 = Path(tmp) / "copy.mp3"
            with sf.SoundFile(str(mp3), "w", sr, 1, format="MP3") as f:
                for i in range(0, y.size, 65536):
                    f.write(y[i:i + 65536])
            ex_mp3 = load_excerpt(mp3, **settings.excerpt_options())
        # The excerpts as the pipeline analyses them (with the key windows), the whole track and its halves whole.
        r = {name: analyze_signal(e.y, sr=sr, settings=settings, key_windows=e.key_windows)
             for name, e in (("excerpt", ex), ("mp3", ex_mp3))}
        r.update({name: analyze_signal(sig, sr=sr, settings=settings)
                  for name, sig in (("whole", y), ("first", y[:half]), ("second", y[half:]))})
        rows.append({"file": p.name, **{f"{k}:key": v["key"] for k, v in r.items()},
                     **{f"{k}:bpm": v["bpm"] for k, v in r.items()},
                     "review": bool(r["excerpt"].get("needs_review", False)),
                     "key_conf": float(r["excerpt"]["key_confidence"] or 0.0)})

    def agree(a: str, b: str, what: str, flagged: bool | None = None) -> str:
        sel = [x for x in rows if flagged is None or x["review"] == flagged]
        if not sel:
            return "–"
        if what == "key":
            same = [x[f"{a}:key"] is not None and x[f"{a}:key"] == x[f"{b}:key"] for x in sel]
        else:
            same = [abs(x[f"{a}:bpm"] - x[f"{b}:bpm"]) <= 0.5 for x in sel]
        return f"{sum(same)}/{len(same)} ({100 * np.mean(same):.0f} %)"

    lines = [f"{len(rows)} full-length tracks in {music_dir.name}/ (default excerpt {settings.excerpt_s} s)", "",
             "| pair | key agrees | BPM within 0.5 | key agrees, not needs_review | key agrees, needs_review |",
             "|---|---|---|---|---|"]
    for a, b, label in (("excerpt", "whole", "default excerpt vs whole track"),
                        ("first", "second", "first half vs second half"),
                        ("excerpt", "mp3", "excerpt vs excerpt of an MP3 copy")):
        lines.append(f"| {label} | {agree(a, b, 'key')} | {agree(a, b, 'bpm')} | {agree(a, b, 'key', False)} | "
                     f"{agree(a, b, 'key', True)} |")
    if rows:
        order = sorted(rows, key=lambda x: -x["key_conf"])
        n = len(order)
        top, bottom = order[: max(1, n // 2)], order[n - max(1, n // 4):]

        def share(sel: list[dict]) -> str:
            same = [x["excerpt:key"] is not None and x["excerpt:key"] == x["whole:key"] for x in sel]
            return f"{sum(same)}/{len(same)} ({100 * np.mean(same):.0f} %)"
        lines += ["", "| excerpt vs whole track, by key_confidence | key agrees |", "|---|---|",
                  f"| most confident half | {share(top)} |", f"| least confident quarter | {share(bottom)} |",
                  f"| needs_review false | {share([x for x in rows if not x['review']])} |",
                  f"| needs_review true | {share([x for x in rows if x['review']])} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    # librosa's numba cache beside its sources can be corrupted by concurrent compiles: use our own.
    os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numba_cache_"))
    sys.exit(main())
