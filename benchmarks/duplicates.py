"""Precision and recall of `crate-dask duplicates` on generated re-encodings of real tracks.

Usage::

    python benchmarks/duplicates.py SOURCE_DIR [--tracks 10] [--work DIR]

Takes ``--tracks`` real recordings from SOURCE_DIR (e.g. the tracks fetched by
``benchmarks/get_real_music.sh``), cuts each to ``--seconds`` around its middle
(MP3 encoding dominates the run time otherwise), writes each of them five ways with PyAV's
FFmpeg (FLAC; MP3 128k; AAC with 2 s of intro trimmed; Opus 64k with 3 s of
silence before; MP3 320k without its last 5 s), all *untagged* so that only
the audio can link them, analyses the library with the default settings
(sequential) and scores the groups of ``find_duplicates(metadata=False)`` as
pairs: a pair is right when both files come from the same source.
Also prints the bit error rates of same-source and different-source pairs.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reencode import decode, encode, pad_silence, trim  # noqa: E402

from crate_dask import open_results  # noqa: E402
from crate_dask.config import build_settings  # noqa: E402
from crate_dask.features.fingerprint import bit_error_rate  # noqa: E402
from crate_dask.run.api import run_analysis  # noqa: E402

VARIANTS = [("flac", {}, None), ("mp3", {"bitrate": 128_000}, None), ("m4a", {}, ("trim", 2.0)),
            ("opus", {"bitrate": 64_000}, ("pad", 3.0)), ("mp3", {"bitrate": 320_000}, ("end", 5.0))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source", type=Path)
    ap.add_argument("--tracks", type=int, default=10)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="analyse the library already in --work as it is")
    ap.add_argument("--seconds", type=float, default=100.0,
                    help="cut each source to this many seconds around its middle first (encoding is the slow part)")
    a = ap.parse_args()
    src = sorted(p for p in a.source.rglob("*") if p.suffix.lower() in (".mp3", ".ogg", ".flac", ".opus", ".wav"))
    step = max(1, len(src) // a.tracks)
    src = src[::step][:a.tracks]
    work = a.work or Path(tempfile.mkdtemp(prefix="dups-bench-"))
    lib = work / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, s in enumerate([] if a.reuse else src):
        y, sr = decode(s)
        keep = int(a.seconds * sr)
        if y.shape[1] > keep:
            y = y[:, (y.shape[1] - keep) // 2:][:, :keep]
        for j, (ext, kw, edit) in enumerate(VARIANTS):
            z = y
            if edit and edit[0] == "trim":
                z = trim(y, sr, start_s=edit[1])
            elif edit and edit[0] == "pad":
                z = pad_silence(y, sr, edit[1])
            elif edit and edit[0] == "end":
                z = trim(y, sr, end_s=edit[1])
            out = lib / f"src{i:02d}" / f"v{j}.{ext}"
            out.parent.mkdir(exist_ok=True)
            if not out.exists():
                encode(z, sr, out, **kw)
    t_enc = time.perf_counter() - t0
    out = work / "out"
    t0 = time.perf_counter()
    run_analysis(lib, out, build_settings(cli={"sequential": True, "progress": False}))
    t_an = time.perf_counter() - t0
    r = open_results(out)
    t0 = time.perf_counter()
    groups = r.duplicates(metadata=False)
    t_dup = time.perf_counter() - t0
    rows = r.page(0, len(r), columns=["relpath", "fingerprint", "error"])
    files = rows.relpath.tolist()
    source = {f: f.split("/")[0] for f in files}
    group_of = dict(zip(groups.relpath, groups.group))
    tp = fp = fn = 0
    same_ber, diff_ber = [], []
    fps = dict(zip(rows.relpath, rows.fingerprint))
    for x, y in itertools.combinations(files, 2):
        truth = source[x] == source[y]
        pred = x in group_of and group_of.get(x) == group_of.get(y)
        tp += truth and pred
        fp += (not truth) and pred
        fn += truth and not pred
        (same_ber if truth else diff_ber).append(bit_error_rate(fps[x], fps[y]))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    n_src = len({source[f] for f in files})
    print(f"{n_src} real tracks x {len(VARIANTS)} encodings = {len(files)} files "
          f"({int(rows.error.notna().sum())} errors); encode {t_enc:.0f} s, analyse {t_an:.0f} s, "
          f"duplicates {t_dup:.2f} s")
    print(f"pairs: precision {precision:.3f} ({tp}/{tp + fp}), recall {recall:.3f} ({tp}/{tp + fn})")
    print(f"bit error rate, same recording: median {np.median(same_ber):.3f}, max {np.max(same_ber):.3f}; "
          f"different recordings: min {np.min(diff_ber):.3f}, median {np.median(diff_ber):.3f}")
    print(f"groups: {groups.group.nunique()} (expected {n_src})")


if __name__ == "__main__":
    main()
