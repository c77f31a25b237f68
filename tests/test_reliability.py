"""Nothing lost, nothing stuck: limits per file, retry policy, quarantine, Ctrl-C, with real files and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import FOREGROUND_CLI, make_library
from pathological import wav_with_empty_chunks

from crate_dask.config import build_settings
from crate_dask.run.api import run_analysis
from crate_dask.store.partitions import list_parts, read_part_info

CLI = [sys.executable, "-m", "crate_dask.cli"]
PATHOLOGICAL_CHUNKS = 100_000   # mutagen: ~3 s and ~50 MiB on this file; over a 16 MiB limit in ~1 s


def settings(**kw):
    return build_settings(cli={"metadata_only": True, "partition_size": 4, "progress": False, **kw})


def rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out).set_index("relpath")


def wait_until_open(path: Path, timeout: float = 300, proc: subprocess.Popen | None = None) -> int:
    """The pid of the isolated reader once it has ``path`` open (polls /proc: the file is then in flight)."""
    target = os.path.realpath(path)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                if b"crate_dask.run.isolation" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return int(pid)
                except OSError:
                    continue
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"finished before {path.name} was opened: {proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail(f"nobody opened {path} within {timeout} s")


def test_a_file_over_the_memory_limit_is_one_row_and_its_partition_keeps_every_other_row(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 7, nested=1)
    wav_with_empty_chunks(lib / "folder0" / "track 0003 chunks.wav", PATHOLOGICAL_CHUNKS)
    out = tmp_path / "out"
    s = run_analysis(lib, out, settings(file_memory_mb=16), client=client)
    assert s["status"] == "complete" and s["rows"] == 8 and s["errors"] == 1 and s["partitions_failed"] == 0
    df = rows(out)
    bad = df.loc["folder0/track 0003 chunks.wav"]
    assert (bad["error_stage"], bad["error_type"], bad["error_limit"]) == ("tags", "memory", 16.0)
    assert "16 MiB" in bad["error"] and df.drop(bad.name)["error"].isna().all()
    # the same limit: nothing to retry, the file is not read again
    assert run_analysis(lib, out, settings(file_memory_mb=16), client=client)["files_computed"] == 0
    # a higher limit retries exactly that row, without --force
    s = run_analysis(lib, out, settings(file_memory_mb=256, file_timeout_s=600), client=client)
    assert s["files_computed"] == 1 and s["files_reused"] == 3 and s["errors"] == 0
    assert rows(out).loc["folder0/track 0003 chunks.wav", "format"] == "wav"


def test_a_timeout_is_retried_when_the_time_limit_is_raised(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 3, nested=1)
    wav_with_empty_chunks(lib / "folder0" / "slow.wav", 4 * PATHOLOGICAL_CHUNKS)   # ~4.5 s of mutagen on an idle machine: 4x the limit
    out = tmp_path / "out"
    s = run_analysis(lib, out, settings(file_timeout_s=1.0), client=client)
    slow = rows(out).loc["folder0/slow.wav"]
    assert s["errors"] == 1 and (slow["error_type"], slow["error_limit"]) == ("timeout", 1.0)
    info = read_part_info(list_parts(out)[0])
    assert info.meta["error_types"] == {"timeout": 1} and info.meta["error_limits"] == {"timeout": 1.0}
    assert run_analysis(lib, out, settings(file_timeout_s=1.0), client=client)["partitions_computed"] == 0
    s = run_analysis(lib, out, settings(file_timeout_s=600), client=client)
    assert s["files_computed"] == 1 and s["errors"] == 0


def _crash_reader_on(path: Path) -> threading.Thread:
    """SIGKILL whatever process opens ``path`` (the isolated reader), once it has it open."""
    t = threading.Thread(target=lambda: os.kill(wait_until_open(path), signal.SIGKILL), daemon=True)
    t.start()
    return t


def test_a_file_that_crashes_the_reader_twice_is_quarantined_until_retry_errors(tmp_path):
    lib = tmp_path / "lib"
    make_library(lib, 5, nested=1)
    victim = wav_with_empty_chunks(lib / "folder0" / "track 0001 crash.wav", 4 * PATHOLOGICAL_CHUNKS)
    out = tmp_path / "out"
    seq = settings(sequential=True, file_timeout_s=600)
    killer = _crash_reader_on(victim)
    s = run_analysis(lib, out, seq)
    killer.join(60)
    row = rows(out).loc["folder0/track 0001 crash.wav"]
    assert s["status"] == "complete" and (row["error_type"], row["crashes"]) == ("crashed", 1)
    assert "signal 9" in row["error"]
    # a crash is retried on the next run (the file did not change): it crashes again and is quarantined
    killer = _crash_reader_on(victim)
    s = run_analysis(lib, out, seq)
    killer.join(60)
    row = rows(out).loc["folder0/track 0001 crash.wav"]
    assert s["files_computed"] == 1 and s["files_reused"] == 3
    assert (row["error_type"], row["crashes"]) == ("quarantined", 2) and "quarantined" in row["error"]
    # quarantined: later runs leave it alone ...
    assert run_analysis(lib, out, seq)["files_computed"] == 0
    # ... until --retry-errors, which recomputes the error rows only
    s = run_analysis(lib, out, settings(sequential=True, file_timeout_s=600, retry_errors=True))
    assert s["files_computed"] == 1 and s["files_reused"] == 3 and s["errors"] == 0


def test_retry_errors_recomputes_only_error_rows(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 6, nested=1)
    (lib / "folder0" / "track 0002 broken.mp3").write_text("not audio")
    out = tmp_path / "out"
    run_analysis(lib, out, settings(), client=client)
    assert rows(out).loc["folder0/track 0002 broken.mp3", "error_type"] == "unreadable"
    assert run_analysis(lib, out, settings(), client=client)["partitions_computed"] == 0   # a verdict: kept
    s = run_analysis(lib, out, settings(retry_errors=True), client=client)
    assert s["partitions_computed"] == 1 and s["files_computed"] == 1 and s["files_reused"] == 3
    from crate_dask.run.status import collect_status

    assert collect_status(out, scan=False)["errors_by_type"] == {"unreadable": 1}   # from footers, no parsing


def test_rows_of_the_previous_schema_are_upgraded_by_reuse_not_recomputed(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 6, nested=1)
    (lib / "folder0" / "track 0002 broken.mp3").write_text("not audio")
    out = tmp_path / "out"
    run_analysis(lib, out, settings(), client=client)
    for part in list_parts(out):   # rewrite every partition as schema 1 wrote it: no new columns
        t = pq.read_table(part)
        meta = json.loads(t.schema.metadata[b"crate_dask"])
        meta["settings"]["schema_version"], meta["fingerprint"] = 1, "1" * 16
        t = t.drop_columns(["error_type", "error_limit", "crashes"])
        pq.write_table(t.replace_schema_metadata({b"crate_dask": json.dumps(meta).encode()}), part)
    s = run_analysis(lib, out, settings(), client=client)
    assert s["partitions_computed"] == 2 and s["files_computed"] == 0 and s["files_reused"] == 7
    df = rows(out)
    assert df.loc["folder0/track 0002 broken.mp3", "error_type"] == "unreadable"
    assert all(read_part_info(p).settings["schema_version"] == 2 for p in list_parts(out))


def test_ctrl_c_in_a_terminal_records_no_false_error_and_the_summary_counts_what_is_on_disk(tmp_path):
    lib = tmp_path / "lib"
    make_library(lib, 6, nested=1)
    slow = wav_with_empty_chunks(lib / "folder0" / "track 0002 slow.wav", 4 * PATHOLOGICAL_CHUNKS)
    out = tmp_path / "out"
    args = [*FOREGROUND_CLI, "analyze", str(lib), "--out", str(out), "--metadata-only", "--workers", "2",
            "--partition-size", "2", "--file-timeout", "600", "--no-progress"]
    # its own session and process group, like a shell's foreground job: Ctrl-C is SIGINT to that group
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_open(slow, proc=proc)           # the slow file is in flight in a reader
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    on_disk = list_parts(out)
    saved = [line for line in err.splitlines() if line.startswith("saved ")]
    assert saved and saved[0].startswith(f"saved {len(on_disk)} of 4 partitions"), err
    found = pd.concat([pd.read_parquet(p) for p in on_disk]) if on_disk else pd.DataFrame(columns=["relpath"])
    # the file in flight got no row at all, in particular no "crashed" one
    assert "folder0/track 0002 slow.wav" not in set(found["relpath"])
    assert not on_disk or found["error"].isna().all()
