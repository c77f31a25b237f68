"""Tempo estimates of established open-source estimators, for scoring crate_dask's BPM on real music.

The tempo labels beside this project are hand-synced charts of dance, pop and game music plus 7 GTZAN
excerpts; orchestral, folk and other rubato material has none. As for the key (``peer_keys.py``), two
strong peers of different kinds give labels where they agree: Essentia's ``RhythmExtractor2013``
(multifeature beat tracker, DSP) and madmom's RNN beat activation with its DBN beat tracker (a neural
network trained on annotated beats). ``benchmarks/accuracy.py --peer-tempo`` takes their agreement,
both folded into the DJ range 78-180 and within 4 % of each other, as the label (README, "Accuracy").
On a set with human labels it also says how often that consensus matches them.

Same environments as ``peer_keys.py`` (``benchmarks/get_peers.sh DIR``); runs in the Essentia one::

    PEERS/essentia/bin/python benchmarks/peer_tempo.py --madmom-python PEERS/madmom/bin/python \\
        --out dev_real_tempo.csv ../shared/eval/dev-real/audio
    python benchmarks/accuracy.py ../shared/eval/dev-real --direct --peer-tempo dev_real_tempo.csv

Each file's middle 90 s is analysed (the whole file if shorter): crate_dask's default excerpt, so every
estimator hears the same audio. Output CSV columns: ``file`` (base name), ``estimator``
(``essentia_multifeature``, ``essentia_percival``, ``madmom_dbn``, ``madmom_comb``), ``bpm`` (as the
estimator gives it, not folded), ``strength`` (the estimator's own confidence, where it has one),
``error``, ``seconds`` (CPU seconds of the estimator, decoding excluded; the two madmom rows share one
beat activation, which is counted in ``madmom_dbn``).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_keys import SR, audio_paths, load, madmom_ask  # noqa: E402 - the sibling script, wherever this runs from

FIELDS = ["file", "estimator", "bpm", "strength", "error", "seconds"]
ESSENTIA = ("essentia_multifeature", "essentia_percival")
MADMOM = ("madmom_dbn", "madmom_comb")   # one beat activation, two tempo readings of it
EXCERPT_S = 90.0


def estimates(audio: np.ndarray, madmom_python: str | None) -> list[dict]:
    import essentia.standard as es

    def row(name: str) -> dict:
        return {"estimator": name, "bpm": "", "strength": "", "error": "", "seconds": ""}

    rows = []
    r = row(ESSENTIA[0])
    try:
        t0 = time.process_time()
        bpm, _ticks, confidence, _est, _intervals = es.RhythmExtractor2013(method="multifeature")(audio)
        r.update(seconds=round(time.process_time() - t0, 3), bpm=round(float(bpm), 3),
                 strength=round(float(confidence), 4))
    except Exception as e:  # noqa: BLE001 - one estimator's failure is that row's error
        r["error"] = f"{type(e).__name__}: {e}"
    rows.append(r)
    r = row(ESSENTIA[1])
    try:
        t0 = time.process_time()
        bpm = es.PercivalBpmEstimator(sampleRate=SR)(audio)
        r.update(seconds=round(time.process_time() - t0, 3), bpm=round(float(bpm), 3))
    except Exception as e:  # noqa: BLE001
        r["error"] = f"{type(e).__name__}: {e}"
    rows.append(r)
    if madmom_python:
        dbn, comb = row(MADMOM[0]), row(MADMOM[1])
        try:
            res = madmom_ask("tempo", audio, madmom_python)
            if res.get("error"):
                raise RuntimeError(res["error"])
            dbn.update(bpm=res["bpm"], seconds=res["seconds"])
            comb.update(bpm=res["bpm_comb"], strength=res["strength"])
        except Exception as e:  # noqa: BLE001
            dbn["error"] = comb["error"] = f"{type(e).__name__}: {e}"
        rows += [dbn, comb]
    return rows


def analyse(job: tuple[str, str | None]) -> list[dict]:
    path, madmom_python = job
    import essentia

    essentia.log.warningActive = essentia.log.infoActive = False
    try:
        audio = load(path)
        n = int(EXCERPT_S * SR)
        rows = estimates(audio[(len(audio) - n) // 2:][:n] if len(audio) > n else audio, madmom_python)
    except Exception as e:  # noqa: BLE001 - a file that cannot be read gets rows with the error
        rows = [{"estimator": x, "bpm": "", "strength": "", "seconds": "", "error": f"{type(e).__name__}: {e}"}
                for x in ESSENTIA + (MADMOM if madmom_python else ())]
    for r in rows:
        r["file"] = os.path.basename(path)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="audio files or folders")
    ap.add_argument("--out", type=Path, required=True, help="CSV of the estimates")
    ap.add_argument("--madmom-python", default=None, help="python of an environment with madmom 0.16")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    files = audio_paths(args.paths)
    rows = []
    with mp.Pool(args.workers) as pool:
        for i, r in enumerate(pool.imap_unordered(analyse, [(f, args.madmom_python) for f in files]), 1):
            rows += r
            print(f"[{i}/{len(files)}] {r[0]['file']}", file=sys.stderr)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["file"], r["estimator"])))


if __name__ == "__main__":
    main()
