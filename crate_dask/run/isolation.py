"""Read tags and analyse audio in a child process, one file at a time, with a time and a memory limit.

A pathological file (a WAV with millions of empty chunks that makes mutagen
allocate gigabytes, a decoder that loops, a segfault in a native decoder)
must not stall or kill its partition. Python cannot interrupt a thread stuck
in C code, so each Dask worker keeps long-lived child processes
(``python -m crate_dask.run.isolation``): one that reads tags (it imports
mutagen only, so metadata-only runs never pay for librosa) and, for audio
runs, one that imports the audio stack once, warms it up, and reads tags and
analyses audio on request.

Requests are pipelined (up to :data:`WINDOW` in flight), so reading tags in a
child costs little throughput: the child never waits for the worker. The child
answers in order, so the file in flight is always the oldest unanswered one.
When it exceeds ``file_timeout_s`` the child is killed and the file recorded
as timed out; when the child dies the file is recorded as crashed; either
way a fresh child takes the remaining requests. Before each file the child
caps its address space (``RLIMIT_AS``) at its current size plus
``file_memory_mb``, so a file that needs more gets a ``MemoryError``: one
error row, and the child goes on.

The children run in a session of their own and ignore SIGINT: Ctrl-C in a
terminal (SIGINT to the foreground process group) must not look like a crash
of the file in flight. A child killed by SIGINT/SIGTERM/SIGHUP anyway means
the run is being stopped: :class:`~crate_dask.errors.WorkInterrupted` is
raised and nothing is recorded for the file.
"""

from __future__ import annotations

import atexit
import collections
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any, Iterator, Sequence

from crate_dask.errors import AnalysisTimeout, FileMemoryError, FileProblem, ReaderCrashed, WorkInterrupted

_STARTUP_TIMEOUT_S = 600.0   # a cold numba cache can take ~30 s; a loaded machine much longer
WINDOW = 32                  # requests in flight: the child never idles, and the answers fit a pipe buffer
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_WHAT = {"tags": "reading the tags", "audio": "the audio analysis"}


def _send(fh, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(struct.pack("<I", len(data)) + data)
    fh.flush()


def _recv_exact(fd: int, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _recv(fd: int, deadline: float | None) -> Any:
    (n,) = struct.unpack("<I", _recv_exact(fd, 4, deadline))
    return pickle.loads(_recv_exact(fd, n, deadline))


class FileRunner:
    """A child process that reads tags (and, with ``audio``, analyses audio), restarted after a timeout or crash.

    Jobs are ``("tags", (path, head))`` or ``("audio", (path,))``; :meth:`run`
    yields each job's result (a dict) or the :class:`FileProblem` it raised.
    """

    def __init__(self, audio: bool = True) -> None:
        self.audio = audio
        self._proc: subprocess.Popen | None = None
        self.startup_s: float = 0.0   # total seconds spent starting children (import + warm-up)

    def _start(self) -> subprocess.Popen:
        t0 = time.monotonic()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        # Native decoders chatter on stderr about every bad frame; failures come back through the pipe.
        # A session of its own: the terminal's Ctrl-C goes to the run, not to the file in flight.
        proc = subprocess.Popen([sys.executable, "-m", "crate_dask.run.isolation", *(["--audio"] * self.audio)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        try:
            msg = _recv(proc.stdout.fileno(), time.monotonic() + _STARTUP_TIMEOUT_S)
        except (TimeoutError, EOFError):
            proc.kill()
            proc.wait()
            raise RuntimeError("the file reader process failed to start") from None
        if msg != "ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the file reader process failed to start: {msg}")
        self.startup_s += time.monotonic() - t0
        return proc

    def run(self, jobs: Sequence[tuple[str, tuple]], settings: Any) -> Iterator[Any]:
        """Run ``jobs`` in order in the child; yields one result dict or :class:`FileProblem` per job.

        Raises
        ------
        WorkInterrupted
            The child was stopped by SIGINT/SIGTERM/SIGHUP: the run is being cancelled.
        """
        limit_s = settings.file_timeout_s
        memory_mb = getattr(settings, "file_memory_mb", None)
        todo = collections.deque(range(len(jobs)))   # not yet sent
        pending: collections.deque[int] = collections.deque()   # sent, not answered; [0] is in flight
        started = 0.0
        while todo or pending:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = None
                self._proc = self._start()
                todo.extendleft(reversed(pending))   # a child that died while idle: resend what it had
                pending.clear()
            try:
                while todo and len(pending) < WINDOW:
                    op, args = jobs[todo[0]]
                    _send(self._proc.stdin, (op, args, settings if op == "audio" else None, memory_mb))
                    if not pending:
                        started = time.monotonic()
                    pending.append(todo.popleft())
            except (BrokenPipeError, OSError):
                pass   # the child died: the receive below sees it and says why
            try:
                status, payload = _recv(self._proc.stdout.fileno(), started + limit_s)
            except TimeoutError:
                self.close()
                what = _WHAT[jobs[pending.popleft()][0]]
                todo.extendleft(reversed(pending))
                pending.clear()
                yield AnalysisTimeout(f"{what} took longer than the {limit_s:g} s limit per file; skipped "
                                      "(a higher --file-timeout retries it)", limit=limit_s)
                continue
            except EOFError:
                code = self._proc.wait()
                self._proc = None
                if -code in _STOP_SIGNALS:
                    raise WorkInterrupted(f"the file reader was stopped (signal {-code})") from None
                pending.popleft()
                todo.extendleft(reversed(pending))
                pending.clear()
                why = f"signal {-code}" if code < 0 else f"exit code {code}"
                yield ReaderCrashed(f"the reader crashed on this file ({why})")
                continue
            op = jobs[pending.popleft()][0]
            started = time.monotonic()   # the child starts the next file as soon as it answered this one
            if status in ("ok", "expected"):
                yield payload
            elif status == "memory":
                yield FileMemoryError(f"{_WHAT[op]} needed more than the {memory_mb:g} MiB memory limit per "
                                      "file; skipped (a higher --file-memory retries it)", limit=memory_mb)
            else:
                yield RuntimeError(payload)   # a bug in the child: the stage wrapper makes it a loud row

    def analyze(self, path: str, settings: Any) -> dict[str, Any]:
        """Analyse the audio of ``path`` in the child; raises like the in-process stage."""
        return _one(self.run([("audio", (path,))], settings))

    def read_tags(self, path: str, settings: Any, head: bytes | None = None) -> dict[str, Any]:
        """Read the tags of ``path`` in the child; raises like the in-process stage."""
        return _one(self.run([("tags", (path, head))], settings))

    def close(self) -> None:
        """Stop the child process (if any)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    @property
    def pid(self) -> int | None:
        """The child's process id, if one is running."""
        return None if self._proc is None else self._proc.pid


def _one(results: Iterator[Any]) -> dict[str, Any]:
    (r,) = list(results)
    return unwrap(r)


def unwrap(result: Any) -> dict[str, Any]:
    """A result of :meth:`FileRunner.run` as a stage function would give it: the columns, or raise."""
    if isinstance(result, BaseException):
        raise result
    return result


AudioRunner = FileRunner   # the name of the audio-only runner before tags were isolated too

_RUNNERS: dict[bool, FileRunner] = {}


def get_runner(audio: bool = True) -> FileRunner:
    """The worker process's runner (one per kind and process, reused by every partition it runs)."""
    if audio not in _RUNNERS:
        _RUNNERS[audio] = FileRunner(audio)
        atexit.register(_RUNNERS[audio].close)
    return _RUNNERS[audio]


def _cap_memory(memory_mb: float | None, statm: int, page: int) -> None:
    """Allow the address space to grow by ``memory_mb`` beyond its current size (RLIMIT_AS)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if memory_mb is None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return
    vm = int(os.pread(statm, 64, 0).split()[0]) * page
    soft = vm + int(memory_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _serve(audio: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C stops the run, which stops this child
    from crate_dask.run.stages import read_file_tags

    out = sys.stdout.buffer
    sys.stdout = sys.stderr   # anything a library prints must not corrupt the protocol
    if audio:
        from crate_dask.features.signal import warm_up
        from crate_dask.run.stages import analyze_audio

        try:
            warm_up()
        except Exception as exc:  # pragma: no cover - a broken install
            _send(out, f"warm-up failed: {type(exc).__name__}: {exc}")
            return
    statm, page = os.open("/proc/self/statm", os.O_RDONLY), os.sysconf("SC_PAGE_SIZE")
    _send(out, "ready")
    fd = sys.stdin.buffer.fileno()
    while True:
        try:
            op, args, settings, memory_mb = _recv(fd, None)
        except EOFError:
            return
        try:
            _cap_memory(memory_mb, statm, page)
            result = read_file_tags(*args) if op == "tags" else analyze_audio(*args, settings)
            answer = ("ok", result)
        except FileProblem as exc:
            answer = ("expected", exc)
        except MemoryError:
            answer = ("memory", None)
        except Exception as exc:
            answer = ("bug", f"{type(exc).__name__}: {exc}")
        finally:
            result = None   # free the file's memory before lifting the cap
            _cap_memory(None, statm, page)
        _send(out, answer)


if __name__ == "__main__":
    _serve("--audio" in sys.argv[1:])
