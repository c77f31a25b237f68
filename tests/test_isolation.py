"""Per-file time and memory limits and crash isolation of reading and analysis, with real child processes."""

import dataclasses
import os
import signal
import threading
import time

import pytest
from pathological import wav_with_empty_chunks

from crate_dask.config import AnalysisSettings
from crate_dask.demo import write_audio
from crate_dask.errors import AnalysisTimeout, FileMemoryError, FileProblem, ReaderCrashed, WorkInterrupted
from crate_dask.run.isolation import AudioRunner, FileRunner
from crate_dask.synth import track

SETTINGS = AnalysisSettings(excerpt_s=30.0)


@pytest.fixture(scope="module")
def runner():
    r = AudioRunner()
    yield r
    r.close()


@pytest.fixture(scope="module")
def tag_runner():
    r = FileRunner(audio=False)
    yield r
    r.close()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    p = tmp_path_factory.mktemp("iso") / "good.flac"
    write_audio(p, track(bpm=126.0, key="A minor", seconds=10.0, sr=22050), 22050)
    return str(p)


def _open_writer_when_child_reads(fifo):
    """Block until the child opens ``fifo`` for reading (then it is surely in flight), in a thread."""
    opened = threading.Event()

    def go():
        fd = os.open(fifo, os.O_WRONLY)   # returns once the reader (the child) has opened the FIFO
        opened.set()
        opened.fd = fd

    threading.Thread(target=go, daemon=True).start()
    return opened


def test_analyses_in_a_child_process(runner, good):
    cols = runner.analyze(good, SETTINGS)
    assert abs(cols["bpm"] - 126.0) < 0.5 and cols["key"] == "A minor" and cols["analysis_s"] > 0
    assert runner.pid is not None and runner.pid != os.getpid()


def test_a_file_that_hangs_times_out_and_the_next_file_works(runner, good, tmp_path):
    fifo = tmp_path / "hangs.wav"
    os.mkfifo(fifo)                    # opening it blocks forever: a stand-in for a decoder that loops
    t0 = time.monotonic()
    with pytest.raises(AnalysisTimeout, match="limit") as err:
        runner.analyze(str(fifo), dataclasses.replace(SETTINGS, file_timeout_s=2.0))
    assert 2.0 <= time.monotonic() - t0 and err.value.error_type == "timeout" and err.value.limit == 2.0
    assert abs(runner.analyze(good, SETTINGS)["bpm"] - 126.0) < 0.5


def test_a_crash_while_analysing_is_an_error_not_a_dead_worker(runner, good, tmp_path):
    fifo = tmp_path / "crashes.wav"
    os.mkfifo(fifo)
    runner.analyze(good, SETTINGS)     # make sure a child is running
    pid = runner.pid
    opened = _open_writer_when_child_reads(fifo)
    threading.Thread(target=lambda: opened.wait(600) and os.kill(pid, signal.SIGKILL), daemon=True).start()
    with pytest.raises(ReaderCrashed, match="crashed.*signal 9") as err:
        runner.analyze(str(fifo), SETTINGS)
    assert err.value.error_type == "crashed"
    assert abs(runner.analyze(good, SETTINGS)["bpm"] - 126.0) < 0.5 and runner.pid != pid


def test_a_child_killed_while_idle_is_restarted(runner, good):
    runner.analyze(good, SETTINGS)
    os.kill(runner.pid, signal.SIGKILL)
    runner._proc.wait(timeout=60)      # really dead before the next request
    assert abs(runner.analyze(good, SETTINGS)["bpm"] - 126.0) < 0.5


def test_a_child_found_dead_between_answers_is_a_crash_of_the_file_it_had_not_a_resend(tag_runner, good,
                                                                                          tmp_path):
    # The child answered the first file and died on the second before the runner looked again: that
    # file crashed it. (It used to be resent to a fresh child as if the child had died idle.)
    fifo = tmp_path / "dies-on-it.wav"
    os.mkfifo(fifo)
    tag_runner.read_tags(good, SETTINGS)
    opened = _open_writer_when_child_reads(fifo)
    results = tag_runner.run([("tags", (good, None)), ("tags", (str(fifo), None))],
                             dataclasses.replace(SETTINGS, file_timeout_s=60))   # a resend would time out
    assert next(results)["format"] == "flac"     # the runner now waits here, the FIFO already sent
    assert opened.wait(600)
    pid = tag_runner.pid
    os.kill(pid, signal.SIGKILL)
    tag_runner._proc.wait(timeout=60)          # dead before the runner looks: poll() says so
    os.close(opened.fd)
    crashed = next(results)
    assert isinstance(crashed, ReaderCrashed) and "signal 9" in str(crashed)
    assert tag_runner.read_tags(good, SETTINGS)["format"] == "flac" and tag_runner.pid != pid


def test_decode_errors_come_back_as_domain_errors(runner, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + os.urandom(20000))
    with pytest.raises(FileProblem):
        runner.analyze(str(bad), SETTINGS)


def test_tag_reading_over_the_memory_limit_is_one_error_and_the_reader_goes_on(tag_runner, good, tmp_path):
    # 300,000 empty chunks make mutagen allocate ~150 MiB; the limit allows 32 MiB per file
    huge = wav_with_empty_chunks(tmp_path / "chunks.wav", 300_000)
    s = AnalysisSettings(metadata_only=True, file_memory_mb=32, file_timeout_s=600)
    jobs = [("tags", (good, None)), ("tags", (str(huge), None)), ("tags", (good, None))]
    first, bad, last = tag_runner.run(jobs, s)
    assert isinstance(bad, FileMemoryError) and bad.error_type == "memory" and bad.limit == 32
    assert first["format"] == last["format"] == "flac"
    # with the default limit the same file reads fine (mutagen is just slow on it)
    assert tag_runner.read_tags(str(huge), AnalysisSettings(metadata_only=True, file_timeout_s=600))["format"] == "wav"


def test_tag_reading_over_the_time_limit_is_one_error_and_the_rest_of_the_batch_is_read(tag_runner, good,
                                                                                        tmp_path):
    slow = wav_with_empty_chunks(tmp_path / "slow.wav", 300_000)   # seconds of mutagen work
    s = AnalysisSettings(metadata_only=True, file_timeout_s=0.5)
    results = list(tag_runner.run([("tags", (good, None))] * 3 + [("tags", (str(slow), None))]
                                  + [("tags", (good, None))] * 40, s))
    assert len(results) == 44 and isinstance(results[3], AnalysisTimeout) and results[3].limit == 0.5
    assert all(isinstance(r, dict) and r["format"] == "flac" for i, r in enumerate(results) if i != 3)


def test_children_do_not_get_the_terminals_sigint_and_a_stopped_child_records_nothing(tag_runner, good,
                                                                                        tmp_path):
    tag_runner.read_tags(good, SETTINGS)
    pid = tag_runner.pid
    assert os.getsid(pid) == pid != os.getsid(0)   # a session of its own: Ctrl-C in a terminal misses it
    os.kill(pid, signal.SIGINT)                      # and ignores SIGINT sent to it directly
    assert tag_runner.read_tags(good, SETTINGS)["format"] == "flac" and tag_runner.pid == pid
    fifo = tmp_path / "in-flight.mp3"
    os.mkfifo(fifo)
    opened = _open_writer_when_child_reads(fifo)
    threading.Thread(target=lambda: opened.wait(600) and os.kill(pid, signal.SIGTERM), daemon=True).start()
    with pytest.raises(WorkInterrupted):
        tag_runner.read_tags(str(fifo), SETTINGS)
