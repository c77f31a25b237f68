"""Nothing lost, nothing stuck: the results folder never touches what is not crate_dask's, a torn
journal line or a full disk never strands an operation, and every fault ends in one line.

Full disks are real: a small tmpfs mounted by the test (root only; skipped otherwise), filled
either up front or, at an exact point of the journal protocol, by the command itself
(``CRATE_DASK_TEST_FILL_AT``), so no test depends on timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from conftest import make_library, run_cli
from test_rename import _cli, build_results, paths

from crate_dask.cli.main import main
from crate_dask.store.partitions import read_part_info


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root``: relpath -> SHA-1 of its bytes."""
    return {str(Path(d, f).relative_to(root)): hashlib.sha1(Path(d, f).read_bytes()).hexdigest()
            for d, _, fs in os.walk(root) for f in fs}


def cli(*args: str, env: dict | None = None) -> Result:
    """``crate-dask ARGS`` in this process (the real click group; faster than a subprocess)."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def one_error_line(r, *parts: str) -> str:
    text = r.output
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text
    for p in parts:
        assert p in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    d = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.fixture(autouse=True)
def _fresh_fault_counters():
    from crate_dask.store import journal

    journal._test_counts.clear()   # the fault points count records per process; tests run in this one


def fill(disk: Path, leave_kb: int) -> Path:
    """Fill ``disk`` so that ``leave_kb`` KiB stay free; returns the filler (delete it to free space)."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as fh:
        n = max(free - leave_kb * 1024, 0)
        while n > 0:
            n -= fh.write(b"\0" * min(n, 1 << 16))
    return filler


def analyze(lib, out, *extra):
    r = cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--partition-size", "10", "--no-progress",
            *extra)
    return r


# -- item 1: the results folder touches only what carries crate_dask's mark ---------------------------------

def test_out_that_is_or_contains_the_library_is_refused(tmp_path):
    lib = tmp_path / "music" / "lib"
    make_library(lib, 3)
    before = tree(tmp_path)
    for out in (lib, lib.parent, lib / ".."):
        r = analyze(lib, out, "--sequential")
        assert r.exit_code == 1
        one_error_line(r, "output folder", "library")
    assert tree(tmp_path) == before and not (lib / "_crate").exists()
    r = analyze(lib, lib / "results", "--sequential", "--json")   # inside the library: allowed, not scanned
    assert r.exit_code == 0, r.stderr
    assert analyze(lib, lib / "results", "--sequential").exit_code == 0
    assert len(pd.read_parquet(lib / "results")) == 3


def test_user_folders_named_like_bookkeeping_are_never_touched(tmp_path):
    lib, out = tmp_path / "lib", tmp_path / "out"
    make_library(lib, 15)
    for folder in ("_plan", "_stale", "_journal", "_tmp"):   # a user's own folders, with music in them
        make_library(out / folder, 3, exts=("mp3",))
    (out / "_crate.json").write_text("my own notes")
    (out / ".lock").write_text("mine")
    (out / "_runs.jsonl").write_text("not json\n")
    user = tree(out)
    assert analyze(lib, out, "--sequential").exit_code == 0
    shutil.rmtree(lib / "folder1")          # partitions change: stale and plan folders are used and cleared
    make_library(lib / "new", 4)
    assert analyze(lib, out, "--sequential").exit_code == 0
    now = tree(out)
    assert {k: now.get(k) for k in user} == user                     # every user file, byte for byte
    assert len(pd.read_parquet(out)) == 15 - 5 + 4                   # pandas reads the partitions only
    assert (out / "_crate" / "CRATE_DASK").is_file()


def test_foreign_parquet_files_in_out_are_refused(tmp_path):
    lib, out = tmp_path / "lib", tmp_path / "out"
    make_library(lib, 2)
    out.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(out / "part-00000.parquet")
    before = tree(out)
    r = analyze(lib, out, "--sequential")
    assert r.exit_code == 1
    one_error_line(r, "did not write")
    assert tree(out) == before


def test_results_folder_of_the_earlier_layout_is_migrated(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {f"m{i}.wav": {"artist": "A", "title": f"{i}"} for i in range(4)}, parts=1)
    before = paths(root)
    assert cli("rename", str(out), "--apply", "--sequential").exit_code == 0
    crate = out / "_crate"   # turn it into the earlier layout: OUT/_crate.json, _runs.jsonl, _journal/
    os.replace(crate / "state.json", out / "_crate.json")
    os.replace(crate / "journal", out / "_journal")
    (out / "_stale").mkdir()
    (out / "_stale" / "keep.txt").write_text("a user file")
    shutil.rmtree(crate)
    st = json.loads(cli("status", str(out), "--json", "--no-scan").stdout)   # read-only: still readable
    assert [o["status"] for o in st["operations"]] == ["applied"]
    u = cli("undo", str(out))
    assert u.exit_code == 0, u.output
    assert paths(root) == before
    assert (crate / "CRATE_DASK").is_file() and (crate / "state.json").is_file()
    assert not (out / "_crate.json").exists() and not (out / "_journal").exists()
    assert (out / "_stale" / "keep.txt").read_text() == "a user file"


# -- item 2: a torn journal line (a power cut) --------------------------------------------------------------

def test_torn_journal_line_then_rerun_then_undo_restores_every_path(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {f"t{i:02d}.{['mp3', 'flac', 'wav'][i % 3]}": {"artist": "A", "title": f"S{i}"}
                              for i in range(12)}, parts=2)
    before = paths(root)
    p = _cli("rename", str(out), "--apply", "--sequential", env={"CRATE_DASK_TEST_KILL_AT": "done:4"})
    assert p.wait(timeout=300) == -signal.SIGKILL
    (log,) = out.glob("_crate/journal/rename-*/log/part-00000.jsonl")
    with open(log, "a") as fh:   # what a power cut mid-append leaves: half a record, no newline
        fh.write('{"e": "intent", "i": 5, "src": "/x", "ds')
    r = cli("status", str(out), "--json", "--no-scan")
    assert r.exit_code == 0, r.output
    r = cli("rename", str(out), "--apply", "--sequential")
    assert r.exit_code == 0, r.output
    lines = log.read_text().splitlines()
    assert all(json.loads(ln) for ln in lines) and log.read_text().endswith("\n")   # the torn line is gone
    assert len(set(paths(root)) - set(before)) == 12
    assert analyze(root, out, "--sequential").exit_code == 0   # the history replays cleanly
    assert cli("undo", str(out)).exit_code == 0
    assert paths(root) == before


# -- item 3: a full disk is one line, never a traceback, never a corrupt file ---------------------------------

@pytest.mark.parametrize("leave_kb, while_", [(0, "preparing the output folder"), (12, "file list of partition"),
                                              (60, "writing partition")])
def test_full_disk_during_analyze_is_one_line_then_rerun_completes(tmp_path, small_disk, leave_kb, while_):
    lib, out = tmp_path / "lib", small_disk / "out"
    make_library(lib, 60, exts=("mp3", "flac", "wav"))
    filler = fill(small_disk, leave_kb)
    r = analyze(lib, out, "--sequential")
    assert r.exit_code == 1
    line = one_error_line(r, "no space left on", while_, "free space and run the same command again")
    saved = int(re.search(r"(\d+) partitions saved", line).group(1))
    parts = sorted(out.glob("part-*.parquet")) if out.exists() else []
    assert saved == len(parts) and all(read_part_info(p) for p in parts)   # complete partitions only
    assert not list(out.glob("_crate/tmp/*")) and not list(out.glob(".*tmp*"))
    filler.unlink()
    r = analyze(lib, out, "--sequential", "--json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["rows"] == 60 and s["partitions_done_before"] == saved
    assert pd.read_parquet(out)["relpath"].is_unique and len(pd.read_parquet(out)) == 60


def test_full_disk_on_workers_is_one_line_not_worker_tracebacks(tmp_path, small_disk):
    lib, out = tmp_path / "lib", small_disk / "out"
    make_library(lib, 60, exts=("mp3", "flac", "wav"))
    filler = fill(small_disk, 60)
    r = run_cli("analyze", str(lib), "--out", str(out), "--metadata-only", "--partition-size", "10", "--no-progress",
                "--workers", "2")   # a real process: the workers' own stderr is part of what the user sees
    assert r.returncode == 1
    r.output = r.stderr + r.stdout
    one_error_line(r, "no space left on", "writing partition", "partitions saved")
    assert "Compute Failed" not in r.stderr and all(read_part_info(p) for p in out.glob("part-*.parquet"))
    filler.unlink()
    assert analyze(lib, out, "--sequential").exit_code == 0
    assert len(pd.read_parquet(out)) == 60


def test_full_disk_during_rename_apply_then_rerun_then_undo(tmp_path, small_disk):
    root, out = tmp_path / "lib", small_disk / "out"
    build_results(root, out, {f"r{i:02d}.wav": {"artist": "A", "title": f"S{i}"} for i in range(10)}, parts=2)
    before = paths(root)
    fill_env = {"CRATE_DASK_TEST_FILL_AT": "intent:5", "CRATE_DASK_TEST_FILL_FILE": str(small_disk / "filler")}
    r = cli("rename", str(out), "--apply", "--sequential", env=fill_env)
    assert r.exit_code == 1
    line = one_error_line(r, "no space left on", "writing the journal")
    renamed = int(re.search(r"(\d+) files renamed so far", line).group(1))
    assert renamed >= 4 and len(set(paths(root)) - set(before)) in (renamed, renamed + 1)   # + the one in flight
    for log in out.glob("_crate/journal/rename-*/log/*.jsonl"):   # no torn line, nothing glued
        text = log.read_text()
        assert not text or (text.endswith("\n") and all(json.loads(ln) for ln in text.splitlines()))
    r = cli("rename", str(out), "--apply", "--sequential")   # still full: the same one line, nothing lost
    assert r.exit_code == 1 and "no space left" in r.output
    (small_disk / "filler").unlink()
    r = cli("rename", str(out), "--apply", "--sequential")
    assert r.exit_code == 0, r.output
    assert len(set(paths(root)) - set(before)) == 10
    assert cli("undo", str(out)).exit_code == 0
    assert paths(root) == before


def test_full_disk_during_tag_apply_then_rerun_then_undo_restores_every_byte(tmp_path, small_disk):
    root, out = small_disk / "lib", small_disk / "out"   # the library is on the full disk too
    build_results(root, out, {f"g{i:02d}.{['mp3', 'flac', 'ogg'][i % 3]}": {
        "artist": "A", "title": f"{i}", "bpm": 126.0, "bpm_confidence": 0.9, "key": "A minor",
        "key_confidence": 0.9} for i in range(9)}, parts=1)
    before = tree(root)
    env = {"CRATE_DASK_TEST_FILL_AT": "intent:3", "CRATE_DASK_TEST_FILL_FILE": str(small_disk / "filler")}
    r = cli("tag", str(out), "--apply", "--sequential", env=env)
    assert r.exit_code == 1
    one_error_line(r, "no space left on", "2 files written so far")
    assert set(tree(root)) == set(before)   # no hidden copy left in the library
    (small_disk / "filler").unlink()
    r = cli("tag", str(out), "--apply", "--sequential")
    assert r.exit_code == 0, r.output
    assert tree(root) != before
    u = cli("undo", str(out))
    assert u.exit_code == 0 and "restored 9" in u.output
    assert tree(root) == before
    assert pq.read_table(next(out.glob("_crate/journal/tag-*/plan/*.parquet"))).num_rows == 9


def test_full_disk_while_a_rename_plan_is_written(tmp_path, small_disk):
    root, out = tmp_path / "lib", small_disk / "out"
    build_results(root, out, {f"p{i}.wav": {"artist": "A", "title": f"{i}"} for i in range(4)}, parts=2)
    before = paths(root)
    filler = fill(small_disk, 0)
    r = cli("rename", str(out), "--apply", "--sequential")
    assert r.exit_code == 1
    one_error_line(r, "no space left on", "free space and run the same command again")
    assert paths(root) == before
    filler.unlink()
    assert cli("rename", str(out), "--apply", "--sequential").exit_code == 0
    assert cli("undo", str(out)).exit_code == 0 and paths(root) == before


def test_journal_append_that_runs_out_of_space_mid_line_leaves_no_torn_line(small_disk):
    from crate_dask.errors import NoSpaceError
    from crate_dask.store.journal import Journal

    j = Journal(small_disk / "log" / "part-00000.jsonl")
    for i in range(13):   # about 4000 bytes: the next record crosses into a page the full disk cannot give
        j.append({"e": "intent", "i": i, "src": "x" * 270})
    size = j.path.stat().st_size
    assert 3800 < size < 4096
    filler = fill(small_disk, 0)
    with pytest.raises(NoSpaceError, match="writing the journal"):
        j.append({"e": "intent", "i": 13, "src": "y" * 600}, durable=True)
    assert j.path.stat().st_size == size and j.path.read_bytes().endswith(b"\n")   # the part written is cut off
    filler.unlink()
    j.append({"e": "done", "i": 13, "t": 1})
    assert [r["i"] for r in j.records()] == list(range(13)) + [13]
