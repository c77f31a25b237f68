"""Clusters as on several machines: `dask scheduler` and `dask worker` processes on 127.0.0.1.

The workers see the library and the results folder under another path
(``--path-map``): in a mount namespace of their own where the client's path
is hidden when the tests run as root, through a symlinked folder otherwise.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_file, make_library, run_cli

from crate_dask.store.layout import chunks_dir
from crate_dask.store.partitions import list_parts

PY = sys.executable


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    return r.returncode == 0


@contextlib.contextmanager
def dask_cluster(tmp_path: Path, n_workers: int = 2, *, hide: Path | None = None, view: Path | None = None):
    """A scheduler and ``n_workers`` workers; with ``hide``/``view``, workers see ``hide`` only at ``view``."""
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([PY, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        t0 = time.monotonic()
        while not sched_file.exists():
            assert time.monotonic() - t0 < 120, "the scheduler did not start"
            time.sleep(0.05)
        worker = [PY, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                  "--no-dashboard", "--host", "127.0.0.1"]
        for _ in range(n_workers):
            if hide is not None:
                # another "machine": the client's folder is an empty tmpfs, its content is at `view`
                script = (f"mount --bind '{hide}' '{view}' && mount -t tmpfs none '{hide}' && "
                          f"exec {' '.join(worker)}")
                cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
            else:
                cmd = worker
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(sched_file.read_text())["address"]
        from distributed import Client

        with Client(address) as c:
            c.wait_for_workers(n_workers, timeout=120)
        yield address, procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_path_map_for_workers_that_see_the_library_elsewhere(tmp_path):
    client_side = tmp_path / "client"
    lib, out = client_side / "lib", client_side / "out"
    make_library(lib, 12)
    out.mkdir()
    view = tmp_path / "worker-view"
    isolated = _can_unshare()
    if isolated:
        view.mkdir()
    else:
        view.symlink_to(client_side, target_is_directory=True)
    with dask_cluster(tmp_path, 2, hide=client_side if isolated else None, view=view) as (address, _):
        if isolated:
            # the workers cannot see the client's paths: named before any work starts
            r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--scheduler", address)
            (line,) = [x for x in r.stderr.splitlines() if "error" in x]
            assert r.returncode == 1 and line.startswith("error: worker tcp://127.0.0.1:"), r.stderr
            assert f"cannot read the library at {lib}" in line and "--path-map" in line
            assert "Traceback" not in r.stderr
            assert not list_parts(out) and not chunks_dir(out).exists()
        r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--scheduler", address,
                    "--chunk-size", "4", "--path-map", f"{client_side}={view}", "--json")
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert s["rows"] == 12 and s["errors"] == 0 and s["chunks"] == 3 and s["workers"] == 2
        df = pd.read_parquet(out)
        # rows name the files as the client sees them: rename and tag run on the client
        assert df["path"].str.startswith(str(lib) + "/").all() and df["title"].notna().all()


def test_a_worker_that_cannot_write_the_results_is_named_before_work_starts(tmp_path):
    lib = tmp_path / "lib"
    make_library(lib, 3)
    with dask_cluster(tmp_path, 1) as (address, _):
        r = run_cli("analyze", str(lib), "--out", str(tmp_path / "out"), "--metadata-only", "--scheduler", address,
                    "--path-map", f"{tmp_path / 'out'}={tmp_path / 'not-mounted'}")
        (line,) = [x for x in r.stderr.splitlines() if "error" in x]
        assert r.returncode == 1 and line.startswith("error: worker tcp://127.0.0.1:"), r.stderr
        assert f"cannot write the results folder at {tmp_path / 'not-mounted'}" in line
        assert "Traceback" not in r.stderr
        assert not list_parts(tmp_path / "out")


def test_losing_the_scheduler_is_one_line_and_a_rerun_resumes(tmp_path):
    lib = tmp_path / "lib"
    originals = [make_file(lib / "src" / f"o{i}.{e}", tags={"title": f"T{i}"}) for i, e in enumerate(["flac", "mp3"])]
    for i in range(1998):
        (lib / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(originals[i % 2], lib / f"d{i % 10}" / f"f{i:05d}{originals[i % 2].suffix}")
    out = tmp_path / "out"
    with dask_cluster(tmp_path, 1) as (address, procs):
        proc = subprocess.Popen([PY, "-m", "crate_dask.cli", "analyze", str(lib), "--out", str(out),
                                 "--metadata-only", "--scheduler", address, "--partition-size", "100",
                                 "--chunk-size", "10", "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
        t0 = time.monotonic()
        while len(list_parts(out)) < 1:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - t0 < 180
            time.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)          # the scheduler
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "distributed" not in err, err
    lost = [line for line in err.splitlines() if "lost the scheduler" in line]
    assert len(lost) == 1 and f"lost the scheduler at {address}" in lost[0] and "run the same command" in lost[0]
    assert "partition failed" not in err
    saved = len(list_parts(out))
    assert 1 <= saved < 20
    r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--sequential",
                "--partition-size", "100", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["partitions_done_before"] >= saved and s["rows"] == 2000
    assert len(pd.read_parquet(out)) == 2000


RECIPE = Path(__file__).resolve().parents[1] / "pipelines" / "cluster"


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command (installed by .ci/run)")
def test_cluster_recipe_with_tls_on_one_machine(tmp_path):
    from crate_dask.run.cluster import free_port

    lib = tmp_path / "lib"
    make_library(lib, 8)
    certs = tmp_path / "certs"
    subprocess.run(["bash", str(RECIPE / "make_certs.sh"), str(certs)], check=True, capture_output=True)
    port = free_port(0)
    env = {**os.environ, "SCHEDULER_HOST": "127.0.0.1", "SCHEDULER_PORT": str(port), "WORKER_HOSTS": "localhost",
           "WORKERS_PER_HOST": "2", "CERT_DIR": str(certs), "PYTHON": PY, "STATE_DIR": str(tmp_path / "state")}
    sh = ["bash", str(RECIPE / "cluster.sh")]
    try:
        r = subprocess.run([*sh, "start"], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and f"cluster at tls://127.0.0.1:{port}: 2 workers" in r.stdout, r.stderr
        r = subprocess.run([*sh, "analyze", str(lib), str(tmp_path / "out"), "--metadata-only", "--json"],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert s["rows"] == 8 and s["workers"] == 2 and s["status"] == "complete"
        assert not list(certs.glob("ca-key*")) and (tmp_path / "certs-ca" / "ca-key.pem").exists()
        tls = ["--scheduler", f"tls://127.0.0.1:{port}", "--tls-ca-file", str(certs / "ca.pem"),
               "--tls-cert", str(certs / "node.pem"), "--tls-key", str(certs / "node-key.pem")]
        r = run_cli("rename", str(tmp_path / "out"), "--template", "{stem}", *tls, timeout=120)
        assert r.returncode == 0 and "plan: 8 files" in r.stdout, r.stderr   # planned on the TLS cluster
        # without the certificates the scheduler does not talk to us
        r = run_cli("analyze", str(lib), "--out", str(tmp_path / "out2"), "--metadata-only",
                    "--scheduler", f"tls://127.0.0.1:{port}", timeout=120)
        assert r.returncode == 1 and "cannot connect to the Dask scheduler" in r.stderr, r.stderr
    finally:
        subprocess.run([*sh, "stop"], env=env, capture_output=True, timeout=120)
    assert not list((tmp_path / "state").glob("*.pid"))


def test_a_cluster_left_without_workers_stops_in_one_line(tmp_path):
    import psutil

    lib = tmp_path / "lib"
    originals = [make_file(lib / "src" / f"o{i}.{e}", tags={"title": f"T{i}"}) for i, e in enumerate(["flac", "mp3"])]
    for i in range(1998):
        (lib / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(originals[i % 2], lib / f"d{i % 10}" / f"f{i:05d}{originals[i % 2].suffix}")
    out = tmp_path / "out"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nno_workers_timeout_s = 5\n")
    with dask_cluster(tmp_path, 1) as (address, procs):
        proc = subprocess.Popen([PY, "-m", "crate_dask.cli", "analyze", str(lib), "--out", str(out),
                                 "--metadata-only", "--scheduler", address, "--partition-size", "100",
                                 "--chunk-size", "10", "--no-progress", "--config", str(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "COLUMNS": "200"})
        t0 = time.monotonic()
        while len(list_parts(out)) < 1:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - t0 < 180
            time.sleep(0.01)
        worker = psutil.Process(procs[1].pid)       # `dask worker` (its nanny) and the worker process
        for p in [*worker.children(recursive=True), worker]:
            p.kill()
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    # One line, never a wait without end. Usually the no-worker watch says it; on a loaded machine the
    # client can first see the dead worker's results vanish, which is reported as a lost cluster instead.
    lines = [x for x in err.splitlines() if "no worker" in x or x.startswith(("error:", "lost "))]
    assert len(lines) == 1, err
    (line,) = lines
    assert ("no worker for 5 s" in line or "lost" in line) and "partitions saved; run the same command" in line, err
