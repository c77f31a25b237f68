"""Compare chroma front ends and published key profiles on real and rendered sets, with their CPU cost.

Usage::

    python benchmarks/tune_key_chroma.py --labelled ../shared/eval/dev-real ../shared/eval/dev \\
        --stability MUSIC_DIR [--cache DIR] [--limit N]

Front ends: crate_dask's peak chroma (:func:`crate_dask.features.key.chroma_frames`, all frames) and
librosa's building blocks: ``chroma_stft`` (8192-point frames, tuning estimated), ``chroma_cqt``
(36 bins per octave, tuning estimated), ``chroma_cqt`` after harmonic/percussive separation of the
CQT magnitude (``librosa.decompose.hpss``), each also with log compression (``log1p(100 x)``).
Each front end's frames are scored with every profile in :data:`crate_dask.features.key.PROFILES`:

* labelled: MIREX weighted score of the default excerpt (as the pipeline decodes it), per source;
* label-free, on full-length tracks: the key from the frames of the pipeline's key windows (the middle
  ``key_windows`` windows of ``key_window_s`` spread over the track) against the key from all frames of the whole track.

``CPU s/90 s`` is the front end's process time per 90 s of audio at 22050 Hz (this run, this load).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd

from crate_dask.config import AnalysisSettings
from crate_dask.features import key as keymod
from crate_dask.library import audio as audiomod
from tune_key_real import key_name  # benchmarks/ is on the path when a script in it runs

AUDIO_EXT = {".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a"}
HOP = 2048


def front_ends(y: np.ndarray, sr: int) -> dict[str, tuple[np.ndarray, float, float]]:
    """name -> (frames (n, 12), seconds per frame, CPU seconds)."""
    import librosa

    out = {}
    t = time.process_time()
    old = keymod._MAX_FRAMES
    keymod._MAX_FRAMES = 10**9
    try:
        f, _ = keymod.chroma_frames(y, sr=sr)
    finally:
        keymod._MAX_FRAMES = old
    n_fft = int(2 ** round(np.log2(sr * 0.372)))
    out["peaks (crate_dask)"] = (f, n_fft / 2 / sr, time.process_time() - t)
    t = time.process_time()
    c = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=8192, hop_length=HOP).T
    out["chroma_stft"] = (c, HOP / sr, time.process_time() - t)
    t = time.process_time()
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=HOP, fmin=librosa.note_to_hz("C1"), n_bins=36 * 7,
                             bins_per_octave=36, tuning=librosa.estimate_tuning(y=y, sr=sr)))
    t_cqt = time.process_time() - t
    c = librosa.feature.chroma_cqt(C=cqt, sr=sr, bins_per_octave=36, hop_length=HOP).T
    out["chroma_cqt"] = (c, HOP / sr, time.process_time() - t)
    t = time.process_time()
    harm, _ = librosa.decompose.hpss(cqt, kernel_size=31)
    c = librosa.feature.chroma_cqt(C=harm, sr=sr, bins_per_octave=36, hop_length=HOP).T
    out["hpss + chroma_cqt"] = (c, HOP / sr, t_cqt + time.process_time() - t)
    for name in list(out):
        f, step, cpu = out[name]
        if name != "peaks (crate_dask)":
            out[name + ", log"] = (np.log1p(100.0 * f), step, cpu)
    return out


def cached(cache: Path | None, tag: str, fn):
    if cache is None:
        return fn()
    p = cache / ("chroma-" + hashlib.sha1(tag.encode()).hexdigest()[:16] + ".npz")
    if p.exists():
        with np.load(p, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        return {k[2:]: (d[k], float(d["s:" + k[2:]]), float(d["c:" + k[2:]])) for k in d if k.startswith("f:")}
    out = fn()
    np.savez(p, **{f"f:{k}": v[0] for k, v in out.items()}, **{f"s:{k}": v[1] for k, v in out.items()},
             **{f"c:{k}": v[2] for k, v in out.items()})
    return out


def key_of(frames: np.ndarray, profile: str) -> str | None:
    c = frames.sum(axis=0)
    return key_name(keymod.key_scores(c, profile=profile)) if c.any() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", type=Path, nargs="*", default=[])
    ap.add_argument("--stability", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    st = AnalysisSettings()
    sr = st.sample_rate
    labelled = []   # (source, truth, front ends)
    for ds in args.labelled:
        ann = pd.read_csv(ds / "annotations.csv", dtype=str)
        for _, r in ann.iterrows():
            if isinstance(r["key"], str) and r["key"].strip():
                p = ds / r["file"]
                fe = cached(args.cache, f"lab:{p}",
                            lambda p=p: front_ends(audiomod.load_excerpt(p, sr=sr, excerpt_s=st.excerpt_s).y, sr))
                labelled.append((r.get("source", ds.name), r["key"].strip(), fe))
    tracks = []     # (front ends, duration)
    if args.stability:
        files = sorted(q for q in args.stability.rglob("*") if q.suffix.lower() in AUDIO_EXT)[:args.limit]
        for p in files:
            fe = cached(args.cache, f"whole:{p}",
                        lambda p=p: front_ends(audiomod.load_excerpt(p, sr=sr, excerpt_s=None).y, sr))
            f, step, _ = next(iter(fe.values()))
            if len(f) * step >= 135:
                tracks.append(fe)
    sources = sorted({s for s, _, _ in labelled})
    rows = []
    names = list((labelled[0][2] if labelled else tracks[0]).keys())
    for fe_name in names:
        for prof in keymod.PROFILES:
            res = {"front end": fe_name, "profile": prof}
            for src in sources:
                res[src] = float(np.mean([mir_eval.key.weighted_score(t, key_of(fe[fe_name][0], prof) or "X")
                                          if key_of(fe[fe_name][0], prof) else 0.0
                                          for s, t, fe in labelled if s == src]))
            same_mid, same_win = [], []
            for fe in tracks:
                f, step, _ = fe[fe_name]
                dur = len(f) * step
                tm = np.arange(len(f)) * step
                ref = key_of(f, prof)
                off, length = audiomod._window(dur, st.excerpt_s)
                spans = audiomod._key_windows(dur, length, st.key_window_s, st.key_windows,
                                                 st.key_window_spacing_s) or [(off, length)]
                mid = (tm >= off) & (tm < off + length)
                win = np.zeros(len(f), bool)
                for o, n in spans:
                    win |= (tm >= o) & (tm < o + n)
                same_mid.append(key_of(f[mid], prof) == ref)
                same_win.append(key_of(f[win], prof) == ref)
            if tracks:
                res["middle=whole"] = float(np.mean(same_mid))
                res["windows=whole"] = float(np.mean(same_win))
            cpu = [fe[fe_name][2] / (len(fe[fe_name][0]) * fe[fe_name][1] / 90) for _, _, fe in labelled]
            res["CPU s/90 s"] = float(np.median(cpu)) if cpu else float("nan")
            rows.append(res)
    df = pd.DataFrame(rows)
    print(f"{len(labelled)} labelled excerpts ({', '.join(sources)}), {len(tracks)} full-length tracks\n")
    print(df.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
