"""Work finer than storage: chunk tasks on a real LocalCluster, chunk files that survive a SIGKILL, live progress."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pytest
from conftest import FOREGROUND_CLI, copies_library, make_library, run_cli

from crate_dask.config import build_settings
from crate_dask.run import events as ev
from crate_dask.run.api import run_analysis
from crate_dask.store.chunks import write_chunk
from crate_dask.store.layout import chunks_dir, log_dir
from crate_dask.store.partitions import list_parts

CLI = [sys.executable, "-m", "crate_dask.cli"]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


def test_small_library_keeps_both_workers_busy_and_reports_per_chunk(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 60)
    seen = []
    s = run_analysis(lib, tmp_path / "out", build_settings(cli={"progress": False}), client=client,
                     on_event=lambda e: seen.append((time.monotonic(), e)))
    assert s["status"] == "complete" and s["rows"] == 60 and s["partitions"] == 1 and s["errors"] == 0
    chunk_events = [e for _, e in seen if isinstance(e, ev.ChunkDone)]
    # one partition of the default size, yet several tasks on both workers
    assert len(chunk_events) >= 4 and sum(e.files for e in chunk_events) == 60
    assert set(e.worker for e in chunk_events) == set(client.scheduler_info()["workers"])
    # progress comes per chunk, long before the partition is done, and counts files
    t_first = next(t for t, e in seen if isinstance(e, ev.ChunkDone))
    t_part = next(t for t, e in seen if isinstance(e, ev.PartitionDone))
    assert t_first < t_part
    assert [e.files_done for e in chunk_events] == sorted(e.files_done for e in chunk_events)
    assert chunk_events[-1].files_done == chunk_events[-1].files_total == 60
    assert chunk_events[-1].files_per_s and chunk_events[-1].eta_s == 0
    assert s["chunks"] == len(chunk_events) and s["files_computed"] == 60
    df = pd.read_parquet(tmp_path / "out")
    assert len(df) == 60 and df["relpath"].is_unique and list(df["relpath"]) == sorted(df["relpath"])
    assert not chunks_dir(tmp_path / "out").exists()   # merged and removed


def test_read_parquet_never_sees_a_chunk(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 6)
    out = tmp_path / "out"
    run_analysis(lib, out, build_settings(cli={"progress": False, "metadata_only": True}), client=client)
    rows = pd.read_parquet(out)
    # a leftover chunk of a partition that was never finished, with the results' own schema
    write_chunk(pa.Table.from_pandas(rows, preserve_index=False), out, "part-00007", "d" * 32, "f" * 16)
    assert list(chunks_dir(out).rglob("*.parquet"))
    assert len(pd.read_parquet(out)) == 6




def chunk_rows(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    return {r for p in chunks_dir(out).rglob("*.parquet") for r in pq.read_table(p, columns=["relpath"])
            .column("relpath").to_pylist()}


def test_sigkill_of_the_client_mid_partition_keeps_the_finished_chunks(tmp_path):
    lib = copies_library(tmp_path / "lib", 2000)
    out = tmp_path / "out"
    args = [*CLI, "analyze", str(lib), "--out", str(out), "--metadata-only", "--workers", "2",
            "--partition-size", "2000", "--chunk-size", "20", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while len(list(chunks_dir(out).rglob("*.parquet"))) < 3:
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() - t0 < 180, "no chunk written in time"
        time.sleep(0.005)
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for p in tree:   # the orphaned local workers (they would go away by themselves, later)
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)
    assert not list_parts(out), "the partition was written: the kill came too late"
    kept = chunk_rows(out)
    assert 60 <= len(kept) < 2000 and len(kept) % 20 == 0
    r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--workers", "2",
                "--partition-size", "2000", "--chunk-size", "20", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["files_done_before"] == len(kept)
    assert s["files_computed"] == 2000 - len(kept)          # the finished chunks were not recomputed
    df = pd.read_parquet(out)
    assert len(df) == 2000 and df["relpath"].is_unique
    assert not chunks_dir(out).exists()


def test_progress_jsonl_has_one_line_per_chunk(tmp_path):
    lib = tmp_path / "lib"
    make_library(lib, 9)
    log = tmp_path / "progress.jsonl"
    r = run_cli("analyze", str(lib), "--out", str(tmp_path / "out"), "--metadata-only", "--sequential",
                "--chunk-size", "2", "--progress-jsonl", str(log), "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    chunks = [x for x in lines if x["event"] == "chunk"]
    assert [c["files"] for c in chunks] == [2, 2, 2, 2, 1]
    assert [c["files_done"] for c in chunks] == [2, 4, 6, 8, 9] and chunks[-1]["files_total"] == 9
    assert lines[0]["event"] == "cluster" and lines[0]["time"] <= chunks[0]["time"]
    assert lines[-1]["event"] == "finished" and lines[-1]["rows"] == 9
    assert json.loads(r.stdout)["rows"] == 9       # --json is unchanged by it


def test_bad_config_values_are_one_line_errors(tmp_path):
    (tmp_path / "lib").mkdir()
    for text, word in (('partition_size = "abc"\n', "partition_size"), ("[run]\nworkers = 2.5\n", "workers"),
                       ('path_map = ["nonsense"]\n', "path map")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(text)
        r = run_cli("analyze", str(tmp_path / "lib"), "--out", str(tmp_path / "o"), "--config", str(cfg))
        assert r.returncode == 1 and word in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
        assert r.stderr.startswith("error:")


def test_nice_workers_and_their_analysis_processes_run_at_low_priority(tmp_path):
    from crate_dask.config import RunSettings
    from crate_dask.run.cluster import connect
    from crate_dask.run.isolation import get_runner

    lib = tmp_path / "lib"
    make_library(lib, 2)
    settings = build_settings(cli={"progress": False, "workers": 1, "nice": True, "memory_limit": "1GiB"})
    with connect(settings.run, audio=True) as c:
        (worker_pid,) = c.run(os.getpid).values()
        # the analysis process is started with the worker, before any work (it overlaps the cluster's start)
        (early,) = [p for p in psutil.Process(worker_pid).children()
                    if "crate_dask.run.isolation" in p.cmdline()]
        s = run_analysis(lib, tmp_path / "out", settings, client=c)
        assert s["status"] == "complete" and s["memory_limit_per_worker"] == 2**30
        (child,) = c.run(lambda: get_runner().pid).values()
        assert child == early.pid
        assert psutil.Process(child).nice() == 19 and psutil.Process(worker_pid).nice() == 19
        assert psutil.Process(child).ionice().ioclass == psutil.IOPRIO_CLASS_IDLE
    assert os.getpriority(os.PRIO_PROCESS, 0) < 19    # the client itself is not reniced
    assert RunSettings().nice is False


def test_closing_a_local_cluster_ends_its_processes_and_keeps_their_last_output(tmp_path, monkeypatch):
    # the workers end with os._exit after a normal close (run/worker_setup.py): their processes must be gone,
    # the analysis process too, and output still in a buffer must reach the log
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)   # the workers' stdout buffered, as for most users
    from crate_dask.run.cluster import connect
    from crate_dask.run.isolation import get_runner

    lib = tmp_path / "lib"
    make_library(lib, 1)
    log = tmp_path / "cluster.log"
    settings = build_settings(cli={"progress": False, "workers": 1, "metadata_only": True})
    with connect(settings.run, log_file=log, audio=True) as c:   # audio: a pre-started analysis process too
        assert run_analysis(lib, tmp_path / "out", settings, client=c)["status"] == "complete"
        ((worker_pid, child),) = c.run(lambda: (os.getpid(), get_runner(False).pid)).values()
        assert child is not None
        (early,) = [p.pid for p in psutil.Process(worker_pid).children()
                    if "--audio" in p.cmdline()]
        c.run(print, "last words of the worker", end="")   # no newline: still in the stdout buffer
    for pid in (worker_pid, child, early):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "last words of the worker" in log.read_text()


def test_ctrl_c_prints_a_few_lines_and_the_cluster_logs_go_to_a_file(tmp_path):
    lib = copies_library(tmp_path / "lib", 3000)
    out = tmp_path / "out"
    proc = subprocess.Popen([*FOREGROUND_CLI, "analyze", str(lib), "--out", str(out), "--metadata-only", "--workers", "2",
                             "--chunk-size", "10", "--partition-size", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "COLUMNS": "200"})
    t0 = time.monotonic()
    while len(list(chunks_dir(out).rglob("*.parquet"))) + len(list_parts(out)) < 2:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() - t0 < 180
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)       # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "distributed" not in err, err
    assert len(err.strip().splitlines()) <= 8, err
    assert "run the same command again" in err and "files of unfinished ones" in err
    assert log_dir(out).is_dir()



def test_to_bag_is_still_a_bag_of_the_planned_partitions(tmp_path):
    from crate_dask.run.graph import commit_plan, prepare, to_bag
    from crate_dask.store.partitions import prepare_out

    lib = tmp_path / "lib"
    make_library(lib, 7)
    out = prepare_out(tmp_path / "out")
    rp = prepare(lib, out, build_settings(cli={"metadata_only": True, "partition_size": 3, "progress": False}))
    commit_plan(rp, workers=2, rate=2000.0)
    bag = to_bag(rp)                     # what a notebook user sees: one bag partition per 1000-file partition
    assert bag.npartitions == 3 and len(rp.chunks) == 3
    summaries = bag.compute(scheduler="sync")
    assert [s["rows"] for s in summaries] == [3, 3, 1]
    assert len(pd.read_parquet(out)) == 7


def test_sigkill_of_a_worker_is_survived(tmp_path):
    lib = copies_library(tmp_path / "lib", 1500)
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "analyze", str(lib), "--out", str(out), "--metadata-only", "--workers", "2",
                             "--partition-size", "500", "--chunk-size", "10", "--no-progress", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not list(chunks_dir(out).rglob("*.parquet")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() - t0 < 180
        time.sleep(0.005)
    workers = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2
    workers[0].kill()
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    s = json.loads(stdout)
    assert s["status"] == "complete" and s["rows"] == 1500
    df = pd.read_parquet(out)
    assert len(df) == 1500 and df["relpath"].is_unique
