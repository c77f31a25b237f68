"""How the analysis scales over workers: 1 and 2 local workers, 2 workers behind a separate `dask scheduler`.

Usage::

    benchmarks/get_real_music.sh ~/crate-music          # real full-length tracks (Debian game music)
    python benchmarks/scaling.py ~/crate-music --tracks 50 --tracks 500

For each library size, the same tracks hard-linked over and over (more work,
no more disk), the real ``crate-dask analyze`` command runs with the default
partition size in each configuration, side by side in the same run:

- ``1 local``: one worker (the baseline of the speed-up);
- ``2 local``: two local workers;
- ``2 external``: ``dask scheduler`` + two ``dask worker`` processes, as on several machines;
- ``2 local, 1 task per partition``: ``--chunk-size 1000``, how runs were cut before chunks;
- with ``--baseline PYTHON`` (the interpreter of another checkout, e.g. main's
  venv), ``1 local`` and ``2 local`` again with that code, in the same run.

The external cluster is started (and its workers registered) before the
command's clock starts, as on a cluster that is already up; its start-up time
is reported beside it (``cluster start``), and ``files/s incl. start`` counts
it, which is what the local configurations pay.

Reported: files/s end to end, the speed-up over one worker, files/s from the
workers being ready to the last file (the ``cluster`` line of
``--progress-jsonl``: the analysis without the cluster's start-up, which the
external configuration pays before its clock starts), CPU utilisation (CPU seconds
of the whole process tree / (wall seconds x workers)), the idle tail (time
from 95% to 100% of the files, from ``--progress-jsonl``) as a share of the
wall time, peak memory (RSS) of the client and of the busiest worker
(with its analysis process), and the CPU seconds of each kind of process
(client with, for local runs, the scheduler and nannies in it; scheduler;
nanny; worker; analysis). Then the scheduler's overhead per task
(``N`` empty tasks on two workers), the throughput this predicts for 8,
32 and 100 cores, and the CPU an idle 2-worker local cluster takes with
crate-dask's settings and with Dask's defaults. Runs are fresh (``--force``); the first seconds of each
(worker start-up, analysis process import) count, as they do for a user.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

AUDIO = {".mp3", ".flac", ".wav", ".aiff", ".aif", ".m4a", ".ogg", ".opus"}


def linked_library(music: Path, n: int, dest: Path) -> Path:
    """``n`` files: the tracks of ``music`` hard-linked in turn (``d000/`` ...) under ``dest``."""
    tracks = sorted(p for p in music.iterdir() if p.suffix.lower() in AUDIO)
    if not tracks:
        sys.exit(f"no audio files in {music}")
    for i in range(n):
        src = tracks[i % len(tracks)]
        q = dest / f"d{i // 100:03d}" / f"{i:05d}-{src.name}"
        q.parent.mkdir(parents=True, exist_ok=True)
        if not q.exists():
            os.link(src, q)
    return dest


KINDS = ("client", "scheduler", "nanny", "worker", "analysis")


def kind_of(cmd: str) -> str:
    """Which part of a run a process is, from its command line."""
    return ("analysis" if "crate_dask.run.isolation" in cmd else "client" if "crate_dask.cli" in cmd else
            "scheduler" if "dask_scheduler" in cmd else "nanny" if "dask_worker" in cmd else "worker")


class TreeSampler:
    """CPU seconds and peak RSS of a process and all its descendants, sampled twice a second."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.cpu: dict[int, float] = {}
        self.rss: dict[int, int] = {}
        self.kind: dict[int, str] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _procs(self):
        for r in self.roots:
            try:
                p = psutil.Process(r)
                yield p
                yield from p.children(recursive=True)
            except psutil.NoSuchProcess:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self._procs():
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        self.cpu[p.pid] = t.user + t.system
                        self.rss[p.pid] = max(self.rss.get(p.pid, 0), p.memory_info().rss)
                        if p.pid not in self.kind:
                            cmd = " ".join(p.cmdline())
                            self.kind[p.pid] = kind_of(cmd)
                except psutil.Error:
                    continue
            self._stop.wait(0.5)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        by = {k: [pid for pid, kk in self.kind.items() if kk == k] for k in KINDS}
        return {"cpu_s": sum(self.cpu.values()),
                "cpu_by_kind": {k: round(sum(self.cpu.get(p, 0.0) for p in by[k]), 1) for k in KINDS if by[k]},
                "client_rss_mb": max((self.rss[p] for p in by["client"]), default=0) / 2**20,
                "worker_rss_mb": max((self.rss[p] for p in by["worker"]), default=0) / 2**20,
                "analysis_rss_mb": max((self.rss[p] for p in by["analysis"]), default=0) / 2**20}


def external_cluster(workers: int, tmp: Path):
    """``dask scheduler`` + ``workers`` x ``dask worker``; returns the address, the processes, the start-up seconds."""
    t0 = time.time()
    sched_file = tmp / "scheduler.json"
    sched_file.unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    while not sched_file.exists():
        time.sleep(0.1)
    procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                str(sched_file), "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    address = json.loads(sched_file.read_text())["address"]
    from distributed import Client

    with Client(address) as c:
        c.wait_for_workers(workers, timeout=300)
    return address, procs, time.time() - t0


def run_one(library: Path, out: Path, extra: list[str], roots_extra: list[int], workers: int,
            python: str = sys.executable) -> dict:
    jsonl = out.with_suffix(".jsonl")
    jsonl.unlink(missing_ok=True)
    cmd = [python, "-m", "crate_dask.cli", "analyze", str(library), "--out", str(out), "--force",
           "--no-progress", "--json", "--progress-jsonl", str(jsonl), *extra]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler([proc.pid, *roots_extra])
    stdout, stderr = proc.communicate()
    t1 = time.time()
    usage = sampler.stop()
    if proc.returncode != 0:
        sys.exit(f"run failed: {stderr}")
    s = json.loads(stdout)
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    chunks = [c for c in lines if c["event"] == "chunk"]
    t_ready = next((c["time"] for c in lines if c["event"] == "cluster"), t0)
    total = chunks[-1]["files_total"] if chunks else s["rows"]
    t95 = next(c["time"] for c in chunks if c["files_done"] >= 0.95 * total)
    t_first = chunks[0]["time"] if chunks else t1
    wall = t1 - t0
    return {"files": s["rows"], "wall_s": wall, "files_per_s": s["rows"] / wall,
            # from the workers being ready to the last file: the analysis alone, without the cluster's start-up
            "start_s": t_ready - t0, "analysis_files_per_s": s["rows"] / (chunks[-1]["time"] - t_ready),
            "tail_s": t1 - t95, "tail_pct": 100 * (t1 - t95) / wall, "first_progress_s": t_first - t0,
            "cpu_util_pct": 100 * usage["cpu_s"] / (wall * workers), "chunks": s.get("chunks"),
            "client_rss_mb": usage["client_rss_mb"], "worker_rss_mb": usage["worker_rss_mb"],
            "analysis_rss_mb": usage["analysis_rss_mb"], "cpu_by_kind": usage["cpu_by_kind"]}


def task_overhead(n: int = 2000) -> dict:
    """Seconds per task of the scheduler round trip: ``n`` empty tasks on two local workers."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        c.gather(c.map(int, range(50), key=[f"warm-{i}" for i in range(50)]))
        t0 = time.perf_counter()
        c.gather(c.map(int, range(n), key=[f"empty-{i}" for i in range(n)]))
        return {"tasks": n, "s_per_task": (time.perf_counter() - t0) / n}


def idle_overhead(seconds: float = 15.0) -> dict:
    """CPU share (% of one core) of a 2-worker local cluster doing nothing: crate-dask's settings vs Dask's defaults.

    What Dask's housekeeping (profiler, event-loop ticks, monitors) takes from
    the analysis on a machine with as many workers as cores.
    """
    from crate_dask.config import build_settings
    from crate_dask.run import cluster

    out = {}
    quiet = cluster.QUIET
    for name, cfg in (("dask defaults", {}), ("crate-dask", quiet)):
        cluster.QUIET = cfg   # connect() reads it as it starts the cluster
        try:
            with cluster.connect(build_settings(cli={"workers": 2}).run) as c:
                procs = [psutil.Process()] + [psutil.Process(p) for p in c.run(os.getpid).values()]

                def cpu() -> list[float]:
                    return [sum(p.cpu_times()[:2]) for p in procs]

                a = cpu()
                time.sleep(seconds)
                b = cpu()
        finally:
            cluster.QUIET = quiet
        share = [100 * (y - x) / seconds for x, y in zip(a, b)]
        out[name] = {"client_pct": round(share[0], 1), "workers_pct": [round(x, 1) for x in share[1:]],
                     "total_pct": round(sum(share), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("music", type=Path, help="folder of real tracks (benchmarks/get_real_music.sh)")
    ap.add_argument("--tracks", type=int, action="append", help="library sizes [default: 50 and 500]")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder [default: a temp folder]")
    ap.add_argument("--skip-old", action="store_true", help="leave out the one-task-per-partition run")
    ap.add_argument("--baseline", default=None, metavar="PYTHON",
                    help="also run 1 and 2 local workers with this interpreter (another checkout's venv)")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="crate-scaling-"))
    rows = []
    for n in a.tracks or [50, 500]:
        lib = linked_library(a.music, n, work / f"lib{n}")
        configs = [("1 local", ["--workers", "1"], 1), ("2 local", ["--workers", "2"], 2)]
        if not a.skip_old:
            configs.append(("2 local, 1 task per partition", ["--workers", "2", "--chunk-size", "1000"], 2))
        configs = [(name, extra, w, sys.executable) for name, extra, w in configs]
        if a.baseline:
            configs += [(f"{name} (baseline)", extra, w, a.baseline) for name, extra, w, _ in configs[:2]]
        for name, extra, w, python in configs:
            slug = name.split(",")[0].replace(" ", "").replace("(", "-").replace(")", "")
            r = run_one(lib, work / f"out{n}-{slug}", extra, [], w, python)
            rows.append({"tracks": n, "config": name, **r})
            print(json.dumps(rows[-1]), flush=True)
        address, procs, start_s = external_cluster(2, work)
        try:
            r = run_one(lib, work / f"out{n}-ext", ["--scheduler", address], [p.pid for p in procs], 2)
            rows.append({"tracks": n, "config": "2 external", **r, "cluster_start_s": start_s,
                         "files_per_s_incl_start": r["files"] / (r["wall_s"] + start_s)})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
    ov = task_overhead()
    print(json.dumps(ov))
    idle = idle_overhead()
    print(json.dumps(idle))
    print(report(rows, ov))
    for name, r in idle.items():
        print(f"idle 2-worker local cluster, {name}: {r['total_pct']:.1f}% of a core (crate-dask process "
              f"{r['client_pct']:.1f}%, workers {', '.join(f'{w:.1f}%' for w in r['workers_pct'])})")
    return 0


def report(rows: list[dict], ov: dict) -> str:
    lines = ["| tracks | configuration | files/s | speed-up | files/s from workers ready (speed-up) | CPU use | "
             "first progress | tail 95->100% | client / worker / analysis peak RSS | CPU s by process |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base_an = {(r["tracks"], r["config"].endswith("(baseline)")): r["analysis_files_per_s"] for r in rows
               if r["config"].startswith("1 local")}
    # each configuration against one local worker of the same code
    base = {(r["tracks"], r["config"].endswith("(baseline)")): r["files_per_s"] for r in rows
            if r["config"].startswith("1 local")}
    for r in rows:
        speed = r["files_per_s"] / base[(r["tracks"], r["config"].endswith("(baseline)"))]
        files_s = f"{r['files_per_s']:.2f}"
        if "cluster_start_s" in r:
            speed_incl = r["files_per_s_incl_start"] / base[(r["tracks"], False)]
            files_s += f" ({r['files_per_s_incl_start']:.2f} incl. {r['cluster_start_s']:.0f} s cluster start)"
            speed = f"{speed:.2f}x ({speed_incl:.2f}x)"
        else:
            speed = f"{speed:.2f}x"
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r.get("cpu_by_kind", {}).items())
        an = r["analysis_files_per_s"]
        an_speed = an / base_an[(r["tracks"], r["config"].endswith("(baseline)"))]
        lines.append(f"| {r['tracks']} | {r['config']} | {files_s} | {speed} | {an:.2f} ({an_speed:.2f}x, "
                     f"start {r['start_s']:.1f} s) | {r['cpu_util_pct']:.0f}% | "
                     f"{r['first_progress_s']:.0f} s | {r['tail_s']:.1f} s ({r['tail_pct']:.0f}%) | "
                     f"{r['client_rss_mb']:.0f} / {r['worker_rss_mb']:.0f} / {r['analysis_rss_mb']:.0f} MB | "
                     f"{cpu} |")
    per_core = max((r["files_per_s"] / 2 for r in rows if r["config"] == "2 local"), default=0)
    lines.append("")
    lines.append(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    lines.append("")
    lines.append(f"scheduler overhead: {ov['s_per_task'] * 1000:.2f} ms per task ({ov['tasks']} empty tasks); "
                 f"per-core rate {per_core:.2f} files/s")
    for cores in (8, 32, 100):
        # chunks take ~10 s of work each: tasks/s the scheduler must handle = cores / 10
        load = cores / 10 * ov["s_per_task"]
        lines.append(f"  {cores} cores: ~{per_core * cores:.0f} files/s if I/O keeps up; scheduler busy "
                     f"{100 * load:.1f}% of the time")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
