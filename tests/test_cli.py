"""The real `crate-dask` command in subprocesses: resume after SIGKILL, cancel, fatal errors, JSON, status."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import copies_library, make_file, make_library, run_cli

from crate_dask.run.estimate import size_warning
from crate_dask.store.partitions import list_parts

CLI = [sys.executable, "-m", "crate_dask.cli"]




def wait_for_parts(proc, out: Path, n: int, timeout: float = 120) -> list[Path]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        parts = list_parts(out)
        if len(parts) >= n:
            return parts
        if proc.poll() is not None:
            pytest.fail(f"finished before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("no partitions written in time")


def test_sigkill_then_rerun_resumes_without_recomputing(tmp_path):
    lib = copies_library(tmp_path / "lib", 3000)
    out = tmp_path / "out"
    args = [*CLI, "analyze", str(lib), "--out", str(out), "--metadata-only", "--sequential",
            "--partition-size", "50", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_parts(proc, out, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = {p.name: p.stat().st_mtime_ns for p in list_parts(out)}
    assert 3 <= len(saved) < 60
    r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--sequential",
                "--partition-size", "50", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["partitions_done_before"] >= len(saved)
    assert summary["partitions_computed"] == 60 - summary["partitions_done_before"]
    assert all(p.stat().st_mtime_ns == saved[p.name] for p in list_parts(out) if p.name in saved)
    df = pd.read_parquet(out)
    assert len(df) == 3000 and df["relpath"].is_unique
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_sigterm_cancels_cleanly_closes_the_cluster_and_resumes(tmp_path):
    lib = copies_library(tmp_path / "lib", 3000)
    out = tmp_path / "out"
    args = [*CLI, "analyze", str(lib), "--out", str(out), "--metadata-only", "--workers", "2",
            "--partition-size", "20", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_parts(proc, out, 2)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelled" in err and "run the same command again" in err
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, "worker processes survived the cancel"
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--sequential",
                "--partition-size", "20", "--json")
    assert r.returncode == 0 and len(pd.read_parquet(out)) == 3000


def test_json_summary_and_status(tmp_path):
    lib = tmp_path / "lib"
    make_library(lib, 7)
    (lib / "bad.flac").write_bytes(b"fLaC garbage")
    r = run_cli("analyze", str(lib), "--out", str(tmp_path / "out"), "--metadata-only", "--sequential",
                "--partition-size", "3", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["rows"], s["ok"], s["errors"], s["partitions"], s["status"]) == (8, 7, 1, 3, "complete")
    r = run_cli("status", str(tmp_path / "out"), "--json")
    st = json.loads(r.stdout)
    assert (st["done"], st["pending"], st["stale"], st["rows"], st["errors"]) == (3, 0, 0, 8, 1)
    assert st["errors_by_stage"] == {"tags": 1}
    make_file(lib / "zzz new.flac")
    st = json.loads(run_cli("status", str(tmp_path / "out"), "--json").stdout)
    assert (st["done"], st["stale"]) == (2, 1)
    r = run_cli("status", str(tmp_path / "out"))
    assert r.returncode == 0 and "stale" in r.stdout   # the output, not a message: `status OUT | grep` works


def test_fatal_errors_are_one_line_and_nonzero(tmp_path):
    r = run_cli("analyze", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "not found" in r.stderr
    (tmp_path / "lib").mkdir()
    (tmp_path / "file").write_text("x")
    r = run_cli("analyze", str(tmp_path / "lib"), "--out", str(tmp_path / "file" / "out"))
    assert r.returncode == 1 and "not writable" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("analyze", str(tmp_path / "lib"), "--out", str(tmp_path / "o"), "--partition-size", "0")
    assert r.returncode == 1 and "partition_size" in r.stderr


@pytest.mark.parametrize("command", [["undo"], ["rename", "--sequential"], ["tag", "--apply", "--sequential"],
                                     ["export", "--rekordbox", "x.xml"], ["playlists", "--out-dir", "pl"]])
def test_a_folder_that_holds_no_results_is_refused_and_left_as_it_was(tmp_path, command):
    """The music library given for OUT by mistake: one line, exit 1, and no lock or _crate/ left in it."""
    lib = tmp_path / "lib"
    make_library(lib, 2)
    before = sorted(p.relative_to(lib) for p in lib.rglob("*"))
    r = run_cli(command[0], str(lib), *[str(tmp_path / a) if a in ("x.xml", "pl") else a for a in command[1:]])
    assert r.returncode == 1 and r.stderr.strip() == (f"error: no results in {lib}: run "
                                                      f"`crate-dask analyze LIBRARY --out {lib}` first"), r.stderr
    assert sorted(p.relative_to(lib) for p in lib.rglob("*")) == before and not (tmp_path / "pl").exists()


def test_config_file_precedence(tmp_path):
    lib = tmp_path / "lib"
    make_library(lib, 6)
    cfg = tmp_path / "crate.toml"
    cfg.write_text("[run]\npartition_size = 2\n[analysis]\nmetadata_only = true\n")
    r = run_cli("analyze", str(lib), "--out", str(tmp_path / "a"), "--config", str(cfg), "--sequential", "--json")
    assert json.loads(r.stdout)["partitions"] == 3
    r = run_cli("analyze", str(lib), "--out", str(tmp_path / "b"), "--config", str(cfg), "--sequential",
                "--partition-size", "3", "--json")
    assert json.loads(r.stdout)["partitions"] == 2 and json.loads(r.stdout)["mode"] == "metadata"
    cfg.write_text("partition_sise = 2\n")
    r = run_cli("analyze", str(lib), "--out", str(tmp_path / "c"), "--config", str(cfg))
    assert r.returncode == 1 and "unknown setting" in r.stderr


def test_large_library_warns_with_estimate_and_never_blocks(tmp_path):
    lib = tmp_path / "lib"
    for d in range(10):
        (lib / f"d{d}").mkdir(parents=True)
        for i in range(1001):
            (lib / f"d{d}" / f"{i}.mp3").touch()
    r = subprocess.run([*CLI, "analyze", str(lib), "--out", str(tmp_path / "out"), "--metadata-only",
                        "--sequential", "--json"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=300)
    assert r.returncode == 0
    assert "Large library: 10,010 files" in r.stderr and "estimated" in r.stderr and "--scheduler" in r.stderr
    s = json.loads(r.stdout)
    assert s["rows"] == 10010 and s["errors"] == 10010   # every empty file is a row with an error


def test_size_warning_levels():
    assert size_warning(10_000, mode="audio", workers=2, rate=3.0, partition_size=1000) is None
    w = size_warning(12_000, mode="audio", workers=2, rate=3.0, partition_size=1000)
    assert w.startswith("Large library") and "33 min" in w and "--metadata-only" in w
    w = size_warning(60_000, mode="audio", workers=4, rate=3.0, partition_size=1000)
    assert w.startswith("LARGE LIBRARY") and "1 h 23 min" in w and "Ctrl-C" in w
    assert "--metadata-only" not in size_warning(60_000, mode="metadata", workers=2, rate=1500.0,
                                                 partition_size=1000)


def test_existing_cluster_via_scheduler_address(tmp_path):
    """Two `dask worker` processes and a `dask scheduler` on 127.0.0.1, as on three machines."""
    lib = tmp_path / "lib"
    make_library(lib, 15)
    sched_file = tmp_path / "scheduler.json"
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask_cli, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], stderr=subprocess.DEVNULL)]
    try:
        t0 = time.monotonic()
        while not sched_file.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                           "--scheduler-file", str(sched_file), "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1"], stderr=subprocess.DEVNULL))
        address = json.loads(sched_file.read_text())["address"]
        from distributed import Client
        with Client(address) as c:
            c.wait_for_workers(2, timeout=60)
        # the full analysis: each external worker starts its own analysis child process
        r = run_cli("analyze", str(lib), "--out", str(tmp_path / "out"), "--scheduler",
                    address, "--partition-size", "4", "--json")
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert s["rows"] == 15 and s["workers"] == 2 and s["partitions_computed"] == 4 and s["errors"] == 0
        assert s["dashboard"] is None          # the scheduler was started with --no-dashboard
        df = pd.read_parquet(tmp_path / "out")
        assert len(df) == 15 and (df["analysis_note"] == "too short").all() and df["analysis_s"].notna().all()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_unreachable_scheduler_is_fatal(tmp_path):
    (tmp_path / "lib").mkdir()
    make_file(tmp_path / "lib" / "a.flac")
    r = run_cli("analyze", str(tmp_path / "lib"), "--out", str(tmp_path / "out"), "--metadata-only",
                "--scheduler", "tcp://127.0.0.1:1", timeout=120)
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_one_command_at_a_time_per_results_folder(tmp_path):
    from crate_dask.store.partitions import exclusive

    make_library(tmp_path / "lib", 2)
    (tmp_path / "out").mkdir()
    with exclusive(tmp_path / "out", "rename"):
        r = run_cli("analyze", str(tmp_path / "lib"), "--out", str(tmp_path / "out"), "--sequential")
        assert r.returncode == 1 and "in use by crate-dask rename" in r.stderr
    r = run_cli("analyze", str(tmp_path / "lib"), "--out", str(tmp_path / "out"), "--sequential", "--metadata-only")
    assert r.returncode == 0, r.stderr


def test_demo_builds_a_library_and_analyses_it(tmp_path):
    r = run_cli("demo", "--dir", str(tmp_path / "demo"), "--tracks", "7", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "dashboard: http://127.0.0.1:" in r.stderr and "results:" in r.stderr and "first 10 of 11 rows" in r.stderr
    df = pd.read_parquet(tmp_path / "demo" / "results")
    assert len(df) == 11 and df["error"].notna().sum() == 3          # empty, text-as-mp3, truncated
    assert set(df["ext"]) >= {"mp3", "flac", "wav", "ogg", "aiff", "m4a", "opus"}
    ok = df[df["error"].isna() & df["bpm"].notna()]
    assert len(ok) == 7 and ok["key"].notna().all()
