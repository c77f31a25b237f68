"""The per-file time limit and crash isolation of the audio stage, with a real child process."""

import dataclasses
import os
import signal
import threading
import time

import pytest

from crate_dask.config import AnalysisSettings
from crate_dask.demo import write_audio
from crate_dask.errors import AnalysisTimeout, DecodeError
from crate_dask.run.isolation import AudioRunner
from crate_dask.synth import track

SETTINGS = AnalysisSettings(excerpt_s=30.0)


@pytest.fixture(scope="module")
def runner():
    r = AudioRunner()
    yield r
    r.close()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    p = tmp_path_factory.mktemp("iso") / "good.flac"
    write_audio(p, track(bpm=126.0, key="A minor", seconds=10.0, sr=22050), 22050)
    return str(p)


def test_analyses_in_a_child_process(runner, good):
    cols = runner.analyze(good, SETTINGS)
    assert abs(cols["bpm"] - 126.0) < 0.5 and cols["key"] == "A minor" and cols["analysis_s"] > 0
    assert runner.pid is not None and runner.pid != os.getpid()


def test_a_file_that_hangs_times_out_and_the_next_file_works(runner, good, tmp_path):
    fifo = tmp_path / "hangs.wav"
    os.mkfifo(fifo)                    # opening it blocks forever: a stand-in for a decoder that loops
    t0 = time.monotonic()
    with pytest.raises(AnalysisTimeout, match="limit"):
        runner.analyze(str(fifo), dataclasses.replace(SETTINGS, file_timeout_s=2.0))
    assert 2.0 <= time.monotonic() - t0 < 10
    assert abs(runner.analyze(good, SETTINGS)["bpm"] - 126.0) < 0.5


def test_a_crash_while_analysing_is_an_error_row_not_a_dead_worker(runner, good, tmp_path):
    fifo = tmp_path / "crashes.wav"
    os.mkfifo(fifo)
    runner.analyze(good, SETTINGS)     # make sure a child is running
    pid = runner.pid
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(DecodeError, match="crashed.*signal 9"):
        runner.analyze(str(fifo), SETTINGS)
    assert abs(runner.analyze(good, SETTINGS)["bpm"] - 126.0) < 0.5 and runner.pid != pid


def test_a_child_killed_while_idle_is_restarted(runner, good):
    runner.analyze(good, SETTINGS)
    os.kill(runner.pid, signal.SIGKILL)
    time.sleep(0.2)
    assert abs(runner.analyze(good, SETTINGS)["bpm"] - 126.0) < 0.5


def test_decode_errors_come_back_as_domain_errors(runner, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + os.urandom(20000))
    with pytest.raises(DecodeError):
        runner.analyze(str(bad), SETTINGS)
