"""Score ``crate_dask.features.tempo.estimate_tempo`` on an annotated dataset directory.

Use it when changing the tempo estimator. The directory must hold an
``annotations.csv`` with columns ``file,bpm,source`` (``file`` relative to the
directory; rows with an empty ``bpm`` are skipped). Each file is decoded with
librosa (mono, the middle ``--excerpt-s`` seconds, like the pipeline) and the
script prints Accuracy1 (within 4%), Accuracy2 (also x2, x3, x1/2, x1/3) and DJ
precision (within 0.5 BPM) overall and per source, plus the CPU time of the
estimator alone.

    python benchmarks/tune_tempo.py DATASET_DIR [--low 78 --high 180] [--sr 22050] [-v]

``--ranges 78-180,70-200,75-215`` scores several candidate default ranges on one
decode of the dataset (the comparison behind the ``bpm_min``/``bpm_max`` default).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections import defaultdict
from pathlib import Path

import librosa

from crate_dask.features.tempo import estimate_tempo


def accuracy1(est: float, ref: float) -> bool:
    """Within 4% of the reference."""
    return not math.isnan(est) and abs(est - ref) <= 0.04 * ref


def accuracy2(est: float, ref: float) -> bool:
    """Within 4% of the reference or of its double, triple, half or third."""
    return any(accuracy1(est, ref * f) for f in (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0))


def dj_precise(est: float, ref: float) -> bool:
    """Within 0.5 BPM: good enough to beat-match without nudging."""
    return not math.isnan(est) and abs(est - ref) <= 0.5


def load_excerpt(path: Path, sr: int, excerpt_s: float):
    """Decode the middle ``excerpt_s`` seconds of ``path`` as mono float32."""
    duration = librosa.get_duration(path=str(path))
    offset = max(0.0, duration / 2 - excerpt_s / 2)
    y, _ = librosa.load(str(path), sr=sr, mono=True, offset=offset, duration=excerpt_s)
    return y


def score(excerpts, bpm_range: tuple[float, float], sr: int, excerpt_s: float, verbose: bool) -> None:
    """Estimate every excerpt with ``bpm_range`` and print per-source accuracy and CPU time."""
    per_source: dict[str, list[tuple[bool, bool, bool]]] = defaultdict(list)
    cpu_s = 0.0
    long_cpu: list[float] = []   # CPU of full excerpts: the pipeline's budget is per excerpt
    for row, y in excerpts:
        ref = float(row["bpm"])
        t0 = time.process_time()
        tempo = estimate_tempo(y, sr=sr, bpm_range=bpm_range)
        cpu_s += time.process_time() - t0
        if y.size >= 0.99 * excerpt_s * sr:
            long_cpu.append(time.process_time() - t0)
        hits = (accuracy1(tempo.bpm, ref), accuracy2(tempo.bpm, ref), dj_precise(tempo.bpm, ref))
        per_source[row.get("source") or "all"].append(hits)
        if verbose:
            flag = "ok " if hits[2] else ("a1 " if hits[0] else ("a2 " if hits[1] else "BAD"))
            print(f"{flag} {row['file']:28s} {row.get('source', ''):10s} ref {ref:7.2f} est {tempo.bpm:7.2f} "
                  f"alt {tempo.bpm_alt:7.2f} conf {tempo.confidence:.2f} octave {tempo.octave_ratio:.2f} {tempo.note or ''}")

    print(f"range {bpm_range[0]:g}-{bpm_range[1]:g} BPM, sr {sr}, excerpt {excerpt_s:g} s")
    print(f"{'source':10s} {'n':>4s} {'Acc1':>6s} {'Acc2':>6s} {'DJ0.5':>6s}")
    everything = [h for hits in per_source.values() for h in hits]
    for name, hits in sorted(per_source.items()) + [("ALL", everything)]:
        n = len(hits)
        a1, a2, dj = (sum(h[i] for h in hits) / n for i in range(3))
        print(f"{name:10s} {n:4d} {a1:6.3f} {a2:6.3f} {dj:6.3f}")
    per_long = f", {1000 * sum(long_cpu) / len(long_cpu):.1f} ms per full excerpt (n={len(long_cpu)})" if long_cpu else ""
    print(f"estimator CPU: {cpu_s:.2f} s for {len(excerpts)} tracks{per_long}")


def parse_ranges(text: str) -> list[tuple[float, float]]:
    """``"78-180,70-200"`` -> ``[(78.0, 180.0), (70.0, 200.0)]``."""
    ranges = []
    for part in text.split(","):
        low, high = part.split("-")
        ranges.append((float(low), float(high)))
    return ranges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="directory with annotations.csv")
    parser.add_argument("--low", type=float, default=78.0)
    parser.add_argument("--high", type=float, default=180.0)
    parser.add_argument("--ranges", type=parse_ranges, default=None,
                        help="comma-separated LOW-HIGH ranges to compare (overrides --low/--high)")
    parser.add_argument("--sr", type=int, default=22050)
    parser.add_argument("--excerpt-s", type=float, default=120.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="print one line per track")
    args = parser.parse_args()

    with open(args.dataset / "annotations.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("bpm")]
    excerpts = [(row, load_excerpt(args.dataset / row["file"], args.sr, args.excerpt_s)) for row in rows]
    for i, bpm_range in enumerate(args.ranges or [(args.low, args.high)]):
        if i:
            print()
        score(excerpts, bpm_range, args.sr, args.excerpt_s, args.verbose)


if __name__ == "__main__":
    main()
