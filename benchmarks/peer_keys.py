"""Key estimates of established open-source estimators, for scoring crate_dask's key on real music.

Only 6 human key labels on real recordings exist beside this project. Two strong peers of different
kinds, Essentia's ``KeyExtractor`` (HPCP chroma + key profiles, DSP) and madmom's CNN key model
(a neural network trained on labelled music), agree with each other on most real tracks, and where
they agree they are more likely right than either alone: ``benchmarks/accuracy.py --peer-keys``
uses their agreement as the label (README, "Accuracy").

They are not dependencies of crate_dask: ``benchmarks/get_peers.sh DIR`` makes two virtual
environments (Essentia wants a current numpy, madmom 0.16 an old one), and this script runs in the
Essentia one and sends the decoded audio to a madmom process in the other::

    benchmarks/get_peers.sh PEERS
    PEERS/essentia/bin/python benchmarks/peer_keys.py --madmom-python PEERS/madmom/bin/python \\
        --out dev_real.csv ../shared/eval/dev-real/audio
    python benchmarks/accuracy.py ../shared/eval/dev-real --direct --peer-keys dev_real.csv

Output CSV columns: ``file`` (base name), ``estimator`` (``essentia_bgate``, ``essentia_edma``,
``essentia_temperley``, ``madmom_cnn``), ``key`` (``"F# minor"``, sharps), ``strength``, ``error``,
``seconds`` (CPU seconds of the estimator, decoding excluded). A file that fails gets rows with
``error`` set. Whole files are analysed; ``--mid-out`` also writes the middle 90 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
PROFILES = ("bgate", "edma", "temperley")
FIELDS = ["file", "estimator", "key", "strength", "error", "seconds"]
_PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def norm_key(tonic: str, scale: str | None = None) -> str:
    """``("Ab", "minor")`` or ``"Bb major"`` as crate_dask spells keys.

    >>> norm_key("Ab", "minor"), norm_key("Bb maj")
    ('G# minor', 'A# major')
    """
    if scale is None:
        tonic, scale = tonic.split()
    pc = _NATURAL[tonic[0].upper()] + sum({"#": 1, "b": -1}[a] for a in tonic[1:])
    scale = {"maj": "major", "min": "minor"}.get(scale.strip().lower(), scale.strip().lower())
    return f"{_PITCHES[pc % 12]} {scale}"


def load(path: str) -> np.ndarray:
    """Mono float32 at 44.1 kHz: Essentia's loader, or PyAV where its FFmpeg lacks the codec.

    Opus goes straight to PyAV: Essentia's loader refuses it and then crashes the process that asked,
    which would stall the pool.
    """
    import essentia.standard as es

    if not path.lower().endswith(".opus"):
        try:
            a = es.MonoLoader(filename=path, sampleRate=SR)()
            if len(a):
                return np.asarray(a, dtype=np.float32)
        except Exception:  # noqa: BLE001 - any loader failure: try the other decoder
            pass
    import av

    chunks = []
    with av.open(path) as c:
        rs = av.AudioResampler(format="fltp", layout=None, rate=SR)
        for frame in c.decode(c.streams.audio[0]):
            chunks += [o.to_ndarray() for o in rs.resample(frame)]
        chunks += [o.to_ndarray() for o in rs.resample(None)]
    return np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32)


def audio_paths(paths: list[Path]) -> list[str]:
    """The audio files named or under the folders named, sorted."""
    return sorted(str(f) for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()
                  and f.suffix.lower() in {".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a", ".aiff", ".aif"})


_madmom: subprocess.Popen | None = None


def madmom_ask(task: str, audio: np.ndarray, python: str) -> dict:
    """madmom's answer to ``task`` (``"key"``, or ``"tempo"`` for peer_tempo.py) on ``audio``, from a madmom
    process (one per worker) in its own environment."""
    global _madmom
    if _madmom is None or _madmom.poll() is not None:
        _madmom = subprocess.Popen([python, __file__, "--madmom-server"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as f:
        np.save(f, audio)
    try:
        _madmom.stdin.write(f"{task} {f.name}\n")
        _madmom.stdin.flush()
        line = _madmom.stdout.readline()
        if not line:
            raise RuntimeError("the madmom process died")
        return json.loads(line)
    finally:
        os.unlink(f.name)


def estimates(audio: np.ndarray, madmom_python: str | None) -> list[dict]:
    import essentia.standard as es

    rows = []
    for prof in PROFILES:
        r = {"estimator": f"essentia_{prof}", "key": "", "strength": "", "error": "", "seconds": ""}
        try:
            t0 = time.process_time()
            k, s, strength = es.KeyExtractor(profileType=prof)(audio)
            r.update(seconds=round(time.process_time() - t0, 3), key=norm_key(k, s), strength=round(float(strength), 4))
        except Exception as e:  # noqa: BLE001 - one estimator's failure is that row's error
            r["error"] = f"{type(e).__name__}: {e}"
        rows.append(r)
    if madmom_python:
        r = {"estimator": "madmom_cnn", "key": "", "strength": "", "error": "", "seconds": ""}
        try:
            res = madmom_ask("key", audio, madmom_python)
            r.update(res, key=norm_key(res["key"]) if res.get("key") else "")
        except Exception as e:  # noqa: BLE001
            r["error"] = f"{type(e).__name__}: {e}"
        rows.append(r)
    return rows


def analyse(job: tuple[str, bool, str | None]) -> tuple[list[dict], list[dict]]:
    """(rows for the whole file, rows for its middle 90 s if asked for)."""
    path, mid, madmom_python = job
    import essentia

    essentia.log.warningActive = essentia.log.infoActive = False
    name = os.path.basename(path)
    try:
        audio = load(path)
        n = int(90 * SR)
        middle = audio[(len(audio) - n) // 2:][:n] if len(audio) > n else audio
        whole = estimates(audio, madmom_python)
        part = estimates(middle, madmom_python) if mid else []
    except Exception as e:  # noqa: BLE001 - a file that cannot be read gets rows with the error
        ests = [f"essentia_{p}" for p in PROFILES] + (["madmom_cnn"] if madmom_python else [])
        whole = [{"estimator": x, "key": "", "strength": "", "seconds": "", "error": f"{type(e).__name__}: {e}"}
                 for x in ests]
        part = [dict(r) for r in whole] if mid else []
    for r in whole + part:
        r["file"] = name
    return whole, part


def madmom_server() -> None:
    """Run under the madmom environment: one ``TASK PATH.npy`` per stdin line, one JSON line per answer.

    ``key``: the CNN key model. ``tempo``: the RNN beat activation, then the DBN beat tracker's beats
    (``bpm`` = 60 / median inter-beat interval) and the comb-filter tempo histogram on the same
    activation (``bpm_comb``, its strongest peak).
    """
    import collections
    import collections.abc

    for n in ("MutableSequence", "Sequence", "Iterable", "Mapping", "MutableMapping", "Callable"):
        setattr(collections, n, getattr(collections.abc, n))  # madmom 0.16 imports them from collections
    from madmom.audio.signal import Signal

    procs: dict = {}
    out, sys.stdout = sys.stdout, sys.stderr  # stray prints stay off the answers
    for line in sys.stdin:
        task, _, path = line.strip().partition(" ")
        res = {"error": ""}
        try:
            audio = Signal(np.load(path), sample_rate=SR)
            t0 = time.process_time()
            if task == "key":
                from madmom.features.key import CNNKeyRecognitionProcessor, key_prediction_to_label

                proc = procs.setdefault("key", CNNKeyRecognitionProcessor())
                pred = proc(audio)
                res.update(key=key_prediction_to_label(pred), strength=round(float(np.max(pred)), 4))
            elif task == "tempo":
                from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
                from madmom.features.tempo import TempoEstimationProcessor

                if "rnn" not in procs:
                    procs.update(rnn=RNNBeatProcessor(), dbn=DBNBeatTrackingProcessor(fps=100),
                                 comb=TempoEstimationProcessor(fps=100))
                act = procs["rnn"](audio)
                beats = procs["dbn"](act)
                ibi = np.diff(beats)
                res["bpm"] = round(60.0 / float(np.median(ibi)), 3) if len(ibi) else ""
                hist = procs["comb"](act)
                res["bpm_comb"] = round(float(hist[0, 0]), 3) if len(hist) else ""
                res["strength"] = round(float(hist[0, 1]), 4) if len(hist) else ""
            else:
                raise ValueError(f"unknown task {task!r}")
            res["seconds"] = round(time.process_time() - t0, 3)
        except Exception as e:  # noqa: BLE001
            res["error"] = f"{type(e).__name__}: {e}"
        out.write(json.dumps(res) + "\n")
        out.flush()


def main() -> None:
    if sys.argv[1:] == ["--madmom-server"]:
        return madmom_server()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="audio files or folders")
    ap.add_argument("--out", type=Path, required=True, help="CSV of the whole files' keys")
    ap.add_argument("--mid-out", type=Path, default=None, help="CSV of the middle 90 s' keys")
    ap.add_argument("--madmom-python", default=None, help="python of an environment with madmom 0.16")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    files = audio_paths(args.paths)
    whole, mid = [], []
    with mp.Pool(args.workers) as pool:
        for i, (w, m) in enumerate(pool.imap_unordered(analyse, [(f, bool(args.mid_out), args.madmom_python)
                                                                  for f in files]), 1):
            whole += w
            mid += m
            print(f"[{i}/{len(files)}] {w[0]['file']}", file=sys.stderr)
    for rows, path in ((whole, args.out), (mid, args.mid_out)):
        if path:
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS)
                writer.writeheader()
                writer.writerows(sorted(rows, key=lambda r: (r["file"], r["estimator"])))


if __name__ == "__main__":
    main()
