"""Benchmark: metadata mode on a 100,000-file library, side by side with a plain mutagen loop.

Usage::

    python benchmarks/metadata_speed.py [--files 100000] [--library DIR] [--workers 2] [--json]

Generates (once; reused if DIR already holds it) a library of small tagged
files in nested folders with unicode names, in five formats, then measures in
one run:

1. baseline: a plain single-process loop of ``mutagen.File`` over the same files;
2. ``crate-dask analyze --metadata-only`` on ``--workers`` local workers;
3. the rerun on the unchanged library.

Reports files/s, the ratio to the baseline, per-core figures, the rerun time,
and the peak memory (RSS) of the client and of each worker process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

NAMES = ["Ásgeir", "Björk", "Motörhead", "Sigur Rós", "坂本龍一", "Лёд", "Daft Punk", "Ólafur Arnalds",
         "Beyoncé", "Mø", "Ñu", "Kraftwerk"]


def _make_originals(folder: Path) -> list[Path]:
    import numpy as np

    from crate_dask.demo import write_audio

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("mp3", "flac", "ogg", "m4a", "wav"):
        sr = 22050
        y = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(0.5 * sr)) / sr)).astype("float32")
        p = folder / f"original.{ext}"
        write_audio(p, y, sr)
        out.append(p)
    return out


def _make_chunk(args: tuple[str, list[str], int, int]) -> None:
    from crate_dask.library.tags import write_tags

    root, originals, start, stop = args
    data = [Path(o).read_bytes() for o in originals]
    for i in range(start, stop):
        k = i % len(originals)
        artist = NAMES[i % len(NAMES)]
        p = Path(root) / f"{artist}" / f"Album {i // 500:03d}" / f"{i:06d} {artist} – Track {i}.{originals[k].rsplit('.', 1)[1]}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data[k])
        write_tags(p, {"artist": artist, "title": f"Track {i} ♫", "album": f"Album {i // 500:03d}",
                       "genre": "House", "bpm": 120 + i % 10, "key": "Am", "track": i % 20 + 1})


def make_library(root: Path, n: int) -> None:
    """Create ``n`` small tagged files under ``root`` (skipped if a marker says it is done)."""
    marker = root / ".generated"
    if marker.exists() and marker.read_text().strip() == str(n):
        return
    shutil.rmtree(root, ignore_errors=True)
    originals = [str(p) for p in _make_originals(root.parent / (root.name + "-originals"))]
    step = 2000
    chunks = [(str(root), originals, s, min(s + step, n)) for s in range(0, n, step)]
    with mp.Pool(os.cpu_count()) as pool:
        pool.map(_make_chunk, chunks)
    marker.write_text(str(n))


def _burn(n: int) -> float:
    t0 = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i * i
    return time.perf_counter() - t0


def machine_ceiling(workers: int) -> float:
    """Throughput of ``workers`` processes of pure CPU work relative to one: what this machine allows."""
    n = 15_000_000
    one = _burn(n)
    with mp.Pool(workers) as pool:
        t0 = time.perf_counter()
        pool.map(_burn, [n] * workers)
        many = time.perf_counter() - t0
    return workers * one / many


def baseline(root: Path) -> tuple[int, float]:
    """A plain single-process mutagen loop over every audio file."""
    import mutagen

    from crate_dask.library.scan import scan_library

    files = [os.path.join(root, f.relpath) for f in scan_library(root).files]
    t0 = time.perf_counter()
    for p in files:
        f = mutagen.File(p)
        _ = f.info.length, f.tags
    return len(files), time.perf_counter() - t0


def run_crate(root: Path, out: Path, workers: int) -> dict:
    """Run the CLI, sampling the RSS of the client and each worker process."""
    cmd = [sys.executable, "-m", "crate_dask.cli", "analyze", str(root), "--out", str(out), "--metadata-only",
           "--workers", str(workers), "--no-progress", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, int]] = {}
    done = threading.Event()

    def sample() -> None:
        client = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [client, *client.children(recursive=True)]
                for p in procs:
                    rss = p.memory_info().rss
                    name = "client" if p.pid == proc.pid else ("worker" if "spawn" in " ".join(p.cmdline())
                                                               or "multiprocessing" in " ".join(p.cmdline())
                                                               else "other")
                    if rss > peaks.get(p.pid, ("", 0))[1]:
                        peaks[p.pid] = (name, rss)
            except psutil.Error:
                pass
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"crate-dask failed:\n{stderr}")
    summary = json.loads(stdout)
    mib = 1024 * 1024
    summary["wall_s"] = wall
    summary["client_peak_mib"] = round(max((r for n, r in peaks.values() if n == "client"), default=0) / mib, 1)
    summary["worker_peaks_mib"] = sorted((round(r / mib, 1) for n, r in peaks.values() if n == "worker"),
                                         reverse=True)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--library", type=Path, default=Path(tempfile.gettempdir()) / "crate-bench-library")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    make_library(a.library, a.files)
    gen_s = time.perf_counter() - t0
    n, base_s = baseline(a.library)                      # also warms the page cache for both contenders
    n, base_s = baseline(a.library)
    ceiling = machine_ceiling(a.workers)
    out = Path(tempfile.mkdtemp(prefix="crate-bench-out-"))
    first = run_crate(a.library, out, a.workers)
    rerun = run_crate(a.library, out, a.workers)
    shutil.rmtree(out, ignore_errors=True)
    base_rate = n / base_s
    rate = n / first["wall_s"]
    res = {
        "files": n, "generation_s": round(gen_s, 1), "cores": os.cpu_count(), "workers": a.workers,
        "baseline_s": round(base_s, 2), "baseline_files_per_s": round(base_rate),
        "crate_s": round(first["wall_s"], 2), "crate_files_per_s": round(rate),
        "crate_files_per_s_per_worker": round(rate / a.workers),
        "ratio_to_baseline": round(rate / base_rate, 2),
        "rerun_s": round(rerun["wall_s"], 2), "rerun_partitions_computed": rerun["partitions_computed"],
        "client_peak_mib": first["client_peak_mib"], "worker_peaks_mib": first["worker_peaks_mib"],
        "rerun_client_peak_mib": rerun["client_peak_mib"], "rows": first["rows"], "errors": first["errors"],
        "machine_ceiling": round(ceiling, 2),
    }
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"library: {n:,} files (generated in {gen_s:.0f} s), {os.cpu_count()} cores, {a.workers} workers")
    print("| run | wall s | files/s | files/s per core | vs baseline |")
    print("|---|---|---|---|---|")
    print(f"| mutagen loop, 1 process (baseline) | {base_s:.1f} | {base_rate:,.0f} | {base_rate:,.0f} | 1.00x |")
    print(f"| crate-dask --metadata-only, {a.workers} workers | {first['wall_s']:.1f} | {rate:,.0f} | "
          f"{rate / a.workers:,.0f} | {rate / base_rate:.2f}x |")
    print(f"| rerun, unchanged library | {rerun['wall_s']:.1f} | - | - | - |")
    print(f"machine ceiling: {a.workers} processes of pure CPU work run {ceiling:.2f}x one process here")
    print(f"peak RSS: client {first['client_peak_mib']} MiB (rerun {rerun['client_peak_mib']} MiB); "
          f"workers {first['worker_peaks_mib']} MiB")


if __name__ == "__main__":
    main()
