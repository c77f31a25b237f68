"""How fast is crate_dask's audio analysis, against the naive librosa pipeline, on real files?

Usage::

    python benchmarks/analysis_speed.py DIR [--limit N] [--excerpt S] [--skip-cli] [--skip-baseline] [--json]

On the same audio files of ``DIR`` (recursively), in one run:

a. decode only: :func:`crate_dask.library.audio.load_excerpt` with the default settings;
b. the full crate_dask analysis: decode + :func:`crate_dask.features.signal.analyze_signal`;
c. the naive baseline: ``librosa.load`` of the whole file at 22050 Hz,
   ``librosa.beat.beat_track``, ``librosa.feature.chroma_cqt`` and a
   Krumhansl key template (its stages are timed separately);

each as CPU seconds (``time.process_time``, one thread: OMP/OPENBLAS/MKL/NUMBA
threads are set to 1 before numpy loads) per minute of audio, per 4-minute
track (per minute x 4) and per file, with the ratio to the baseline. Then

d. throughput of whole ``crate-dask analyze DIR --out TMP --workers 1`` and
   ``--workers 2`` runs (files/s, wall clock, speedup of 2 workers over 1);
e. worker start-up: a fresh process importing crate_dask (and librosa) and
   running :func:`crate_dask.features.signal.warm_up`, with a cold numba cache (an
   empty ``NUMBA_CACHE_DIR``) and a warm one.

Goals: full analysis <= 0.30 CPU-s per 4-minute track and >= 8x cheaper than the
baseline; 2 workers >= 1.8x one worker (on an otherwise idle machine).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: one core means one thread
# librosa caches its numba code next to its sources; processes compiling it at the same
# time can leave a corrupt cache there that segfaults later. A private cache avoids that.
if "NUMBA_CACHE_DIR" not in os.environ:
    import tempfile as _tempfile
    os.environ["NUMBA_CACHE_DIR"] = _tempfile.mkdtemp(prefix="numba_cache_")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

AUDIO_EXTS = {".mp3", ".flac", ".wav", ".aif", ".aiff", ".ogg", ".opus", ".m4a", ".mp4", ".aac", ".wma"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="use the first N files only")
    ap.add_argument("--excerpt", type=float, default=None, help="excerpt seconds (default: the settings')")
    ap.add_argument("--skip-cli", action="store_true", help="skip the crate-dask analyze runs (d)")
    ap.add_argument("--skip-per-file", action="store_true", help="skip the per-file CPU measurements (a-c)")
    ap.add_argument("--skip-baseline", action="store_true", help="skip the naive librosa pipeline (c)")
    ap.add_argument("--skip-startup", action="store_true", help="skip the worker start-up timing (e)")
    ap.add_argument("--decode-formats", action="store_true",
                    help="only compare excerpt and whole-file decoding per file format")
    ap.add_argument("--cli-copies", type=int, default=3,
                    help="run the CLI on this many hard-linked copies of each file (d) [default: 3]")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)

    files = sorted(p for p in args.dir.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file())
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no audio files under {args.dir}", file=sys.stderr)
        return 2
    results: dict = {"files": len(files)}
    if args.decode_formats:
        results["decode_formats"] = decode_by_format(files, args.excerpt)
        print(report_formats(results["decode_formats"]))
        if args.json:
            print(json.dumps(results, indent=2, default=float))
        return 0
    if not args.skip_per_file:
        results["per_file"] = per_file_costs(files, args.excerpt, baseline=not args.skip_baseline)
    if not args.skip_cli:
        results["cli"] = cli_throughput(args.dir, args.excerpt, args.cli_copies)
    if not args.skip_startup:
        results["startup"] = startup_times()
    print(report(results))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    return 0


def per_file_costs(files: list[Path], excerpt_s: float | None, *, baseline: bool) -> dict:
    from crate_dask.config import AnalysisSettings
    from crate_dask.errors import FileProblem
    from crate_dask.features.signal import analyze_signal, warm_up
    from crate_dask.library.audio import load_excerpt

    settings = AnalysisSettings() if excerpt_s is None else AnalysisSettings(excerpt_s=excerpt_s)
    warm_up(settings=settings)
    if baseline:
        _warm_up_librosa()
    acc = {k: 0.0 for k in ("decode", "analyze", "naive_load", "naive_beat", "naive_chroma", "minutes")}
    n_ok = 0
    for p in files:
        try:
            t0 = time.process_time()
            ex = load_excerpt(p, **settings.excerpt_options())
            t1 = time.process_time()
            analyze_signal(ex.y, sr=ex.sr, settings=settings, key_windows=ex.key_windows)
            t2 = time.process_time()
        except FileProblem as exc:
            print(f"skip {p.name}: {exc}", file=sys.stderr)
            continue
        if baseline:
            naive = naive_costs(p)
            for k, v in naive.items():
                acc[k] += v
        acc["decode"] += t1 - t0
        acc["analyze"] += t2 - t1
        acc["minutes"] += (ex.track_duration_s or ex.duration_s) / 60.0
        n_ok += 1
    out = {"n": n_ok, "minutes": acc["minutes"], "excerpt_s": settings.excerpt_s, "stages": {}}
    stages = {"decode only (a)": acc["decode"], "full crate_dask (b)": acc["decode"] + acc["analyze"]}
    if baseline:
        stages.update({"naive: librosa.load": acc["naive_load"], "naive: beat_track": acc["naive_beat"],
                       "naive: chroma_cqt + template": acc["naive_chroma"],
                       "naive baseline (c)": acc["naive_load"] + acc["naive_beat"] + acc["naive_chroma"]})
    for name, cpu in stages.items():
        out["stages"][name] = {"cpu_s": cpu, "per_min": cpu / acc["minutes"],
                               "per_4min_track": 4 * cpu / acc["minutes"], "per_file": cpu / n_ok}
    return out


def _warm_up_librosa() -> None:
    """JIT-compile librosa's numba code before timing (a worker would pay it once)."""
    import librosa

    y = np.random.default_rng(0).normal(0, 0.1, 22050 * 5).astype(np.float32)
    librosa.beat.beat_track(y=y, sr=22050)
    librosa.feature.chroma_cqt(y=y, sr=22050)


def decode_by_format(files: list[Path], excerpt_s: float | None) -> dict:
    """CPU seconds per file of excerpt vs whole-file decoding, by file extension."""
    from crate_dask.config import AnalysisSettings
    from crate_dask.library.audio import load_excerpt

    settings = AnalysisSettings() if excerpt_s is None else AnalysisSettings(excerpt_s=excerpt_s)
    out: dict[str, dict[str, float]] = {}
    for p in files:
        t0 = time.process_time()
        ex = load_excerpt(p, sr=settings.sample_rate, excerpt_s=settings.excerpt_s)
        t1 = time.process_time()
        whole = load_excerpt(p, sr=settings.sample_rate, excerpt_s=None)
        t2 = time.process_time()
        d = out.setdefault(p.suffix.lower().lstrip("."), {"n": 0, "excerpt_cpu_s": 0.0, "whole_cpu_s": 0.0,
                                                           "excerpt_min": 0.0, "whole_min": 0.0})
        d["n"] += 1
        d["excerpt_cpu_s"] += t1 - t0
        d["whole_cpu_s"] += t2 - t1
        d["excerpt_min"] += ex.duration_s / 60
        d["whole_min"] += whole.duration_s / 60
    return out


def report_formats(r: dict) -> str:
    lines = ["| format | files | excerpt CPU-s / file | whole file CPU-s / file | mean track min | "
             "CPU-s per decoded min (excerpt / whole) |", "|---|---|---|---|---|---|"]
    for ext, d in sorted(r.items()):
        n = d["n"]
        lines.append(f"| {ext} | {n} | {d['excerpt_cpu_s'] / n:.3f} | {d['whole_cpu_s'] / n:.3f} | "
                     f"{d['whole_min'] / n:.2f} | {d['excerpt_cpu_s'] / d['excerpt_min']:.3f} / "
                     f"{d['whole_cpu_s'] / d['whole_min']:.3f} |")
    return "\n".join(lines)


def naive_costs(path: Path) -> dict[str, float]:
    """CPU seconds of each stage of the naive librosa pipeline on one file."""
    import librosa

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import krumhansl_key, naive_load

    t0 = time.process_time()
    y, sr = naive_load(path)
    t1 = time.process_time()
    librosa.beat.beat_track(y=y, sr=sr)
    t2 = time.process_time()
    krumhansl_key(librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1))
    t3 = time.process_time()
    return {"naive_load": t1 - t0, "naive_beat": t2 - t1, "naive_chroma": t3 - t2}


def _cli_command() -> list[str] | None:
    try:
        import crate_dask.cli.main  # noqa: F401
    except ImportError:
        return None
    exe = shutil.which("crate-dask")
    return [exe] if exe else [sys.executable, "-c", "import sys; from crate_dask.cli.main import main; sys.exit(main())"]


def _linked_copies(library: Path, copies: int, dest: Path) -> Path:
    """A library of ``copies`` hard-linked copies of every audio file (more work per run, no extra disk)."""
    for p in sorted(library.rglob("*")):
        if p.suffix.lower() in AUDIO_EXTS and p.is_file():
            for c in range(copies):
                q = dest / f"copy{c}" / p.relative_to(library)
                q.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(p, q)
                except OSError:
                    shutil.copyfile(p, q)
    return dest


def cli_throughput(library: Path, excerpt_s: float | None, copies: int = 1) -> dict:
    """Wall-clock throughput of whole CLI runs on every file of ``library``, 1 and 2 workers.

    Also times a run on a one-file library per worker count: the fixed cost (cluster and
    analysis-process start-up), so that the steady-state rate can be told apart from it.
    """
    cmd = _cli_command()
    if cmd is None:
        return {"skipped": "crate_dask.cli is not available yet"}
    if copies > 1:
        tmp_lib = Path(tempfile.mkdtemp(prefix="crate_dask_speed_lib_"))
        try:
            return cli_throughput(_linked_copies(library, copies, tmp_lib), excerpt_s)
        finally:
            shutil.rmtree(tmp_lib, ignore_errors=True)
    n_files = sum(1 for p in library.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file())
    # A partition is the unit of work of a worker: a small library needs small partitions
    # (8 per worker) or one worker gets everything.
    part = str(max(1, n_files // 16))
    out = {"partition_size": int(part)}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="crate_dask_speed_") as tmp:
            args = cmd + ["analyze", str(library), "--out", tmp, "--workers", str(workers), "--no-progress",
                          "--partition-size", part]
            if excerpt_s is not None:
                args += ["--excerpt", str(excerpt_s)]
            t0 = time.perf_counter()
            proc = subprocess.run(args, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                return {"skipped": f"crate-dask analyze failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"}
            import pandas as pd

            n = len(pd.read_parquet(tmp, columns=["path"]))
        fixed = _fixed_cost(cmd, library, workers, excerpt_s)
        out[f"workers_{workers}"] = {"files": n, "wall_s": wall, "files_per_s": n / wall, "fixed_s": fixed,
                                     "steady_files_per_s": n / max(wall - fixed, 1e-9)}
    out["speedup"] = out["workers_2"]["files_per_s"] / out["workers_1"]["files_per_s"]
    out["steady_speedup"] = out["workers_2"]["steady_files_per_s"] / out["workers_1"]["steady_files_per_s"]
    return out


def _fixed_cost(cmd: list[str], library: Path, workers: int, excerpt_s: float | None) -> float:
    """Wall time of the same command on a library of one file: start-up and shut-down."""
    first = next(p for p in sorted(library.rglob("*")) if p.suffix.lower() in AUDIO_EXTS and p.is_file())
    with tempfile.TemporaryDirectory(prefix="crate_dask_speed_one_") as tmp:
        one = Path(tmp) / "lib"
        one.mkdir()
        shutil.copyfile(first, one / first.name)
        args = cmd + ["analyze", str(one), "--out", str(Path(tmp) / "out"), "--workers", str(workers),
                      "--no-progress"] + (["--excerpt", str(excerpt_s)] if excerpt_s is not None else [])
        t0 = time.perf_counter()
        subprocess.run(args, capture_output=True, text=True)
        return time.perf_counter() - t0


_STARTUP = """
import time
t0 = time.perf_counter()
import crate_dask.features.signal, crate_dask.library.audio
t1 = time.perf_counter()
import librosa
t2 = time.perf_counter()
crate_dask.features.signal.warm_up()
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t3 - t0)
"""


def startup_times() -> dict:
    """Seconds for a fresh process to import and warm up, cold and warm numba cache."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold numba cache", "warm numba cache"):
            res = subprocess.run([sys.executable, "-c", _STARTUP], capture_output=True, text=True, env=env)
            if res.returncode != 0:
                return {"skipped": res.stderr.strip()[-500:]}
            crate, librosa_s, warm, total = (float(v) for v in res.stdout.split())
            out[label] = {"import_crate_dask_s": crate, "import_librosa_s": librosa_s, "warm_up_s": warm,
                          "total_s": total}
    return out


def report(r: dict) -> str:
    lines = report_per_file(r["per_file"]) if "per_file" in r else []
    cli = r.get("cli")
    if cli is not None:
        lines.append("")
        if "skipped" in cli:
            lines.append(f"crate-dask analyze throughput: skipped ({cli['skipped']})")
        else:
            lines += [f"| crate-dask analyze (partition size {cli['partition_size']}) | files | wall s | files/s "
                      "| fixed start-up s | files/s after start-up |", "|---|---|---|---|---|---|"]
            for w in (1, 2):
                c = cli[f"workers_{w}"]
                lines.append(f"| --workers {w} | {c['files']} | {c['wall_s']:.1f} | {c['files_per_s']:.2f} "
                             f"| {c['fixed_s']:.1f} | {c['steady_files_per_s']:.2f} |")
            lines.append(f"\nspeedup 2 workers vs 1: {cli['speedup']:.2f}x wall, {cli['steady_speedup']:.2f}x "
                         "after start-up")
    st = r.get("startup")
    if st is not None:
        lines.append("")
        if "skipped" in st:
            lines.append(f"worker start-up: skipped ({st['skipped']})")
        else:
            lines += ["| worker start-up | import crate_dask s | import librosa s | warm_up() s | total s |",
                      "|---|---|---|---|---|"]
            for label, s in st.items():
                lines.append(f"| {label} | {s['import_crate_dask_s']:.2f} | {s['import_librosa_s']:.2f} | "
                             f"{s['warm_up_s']:.2f} | {s['total_s']:.2f} |")
    return "\n".join(lines)


def report_per_file(pf: dict) -> list[str]:
    lines = [f"{pf['n']} files, {pf['minutes']:.1f} min of audio "
             f"(mean track {pf['minutes'] / max(pf['n'], 1):.2f} min), excerpt {pf['excerpt_s']} s, one thread",
             "",
             "| stage | CPU-s / min audio | CPU-s / 4-min track | CPU-s / file | naive / this |",
             "|---|---|---|---|---|"]
    base = pf["stages"].get("naive baseline (c)")
    for name, s in pf["stages"].items():
        ratio = f"{base['per_file'] / s['per_file']:.1f}x" if base and not name.startswith("naive") else ""
        lines.append(f"| {name} | {s['per_min']:.4f} | {s['per_4min_track']:.3f} | {s['per_file']:.3f} | {ratio} |")
    lines.append("\n(per 4-min track = per minute x 4. crate_dask decodes a fixed excerpt, so its cost per "
                 "track is nearly constant for tracks longer than the excerpt: read its 'per file' column "
                 "as the cost of a 4-min track.)")
    return lines


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")  # librosa's audioread deprecation noise on M4A
    sys.exit(main())
