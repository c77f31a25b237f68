"""Shared fixtures: real audio files on disk, generated with numpy + soundfile and tagged with mutagen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crate_dask.demo import write_audio
from crate_dask.library.tags import write_tags

SR = 22050


def tone(seconds: float = 0.5, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    """A short sine tone (cheap to encode; enough for metadata tests)."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_file(path: Path, *, seconds: float = 0.5, sr: int = SR, tags: dict | None = None,
              freq: float = 440.0) -> Path:
    """Write one real, tagged audio file; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, tone(seconds, sr if not str(path).endswith(".opus") else 48000, freq),
                sr if not str(path).endswith(".opus") else 48000)
    if tags:
        write_tags(path, tags)
    return path


def make_library(root: Path, n: int, *, exts=("flac", "wav", "mp3", "ogg", "aiff"), nested: int = 3) -> list[Path]:
    """``n`` real tagged files spread over ``nested`` folders, cycling through ``exts``."""
    paths = []
    for i in range(n):
        ext = exts[i % len(exts)]
        p = root / f"folder{i % nested}" / f"track {i:04d}.{ext}"
        make_file(p, seconds=0.3, freq=220.0 + 10 * i,
                  tags={"artist": f"Artist {i % 7}", "title": f"Title {i}", "album": "Album", "genre": "House"})
        paths.append(p)
    return paths


#: ``crate-dask`` as a terminal's foreground job starts it, with Ctrl-C (SIGINT) acted on. A shell without job
#: control starts background commands with SIGINT ignored, and Python then leaves it ignored; tests that send
#: SIGINT must not depend on how the test run itself was started.
FOREGROUND_CLI = [sys.executable, "-c", "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                  "runpy.run_module('crate_dask.cli', run_name='__main__', alter_sys=True)"]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``crate-dask ARGS`` in a subprocess (the real console entry point)."""
    return subprocess.run([sys.executable, "-m", "crate_dask.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    make_library(root, 23)
    return root


@pytest.fixture
def open_tmp():
    """A temp folder an unprivileged user can reach (pytest's base folder is private to root)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="crate-dask-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def copies_library(root: Path, n: int) -> Path:
    """``n`` real audio files (copies of a few tagged originals) in nested folders: quick to make."""
    originals = [make_file(root / "src" / f"o{i}.{ext}", tags={"artist": f"A{i}", "title": f"T{i}"})
                 for i, ext in enumerate(["flac", "mp3", "wav"])]
    for i in range(n - len(originals)):
        dst = root / f"d{i % 10}" / f"f{i:05d}{originals[i % 3].suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(originals[i % 3], dst)
    return root


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster of two worker processes, shared by the tests of one module."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c
