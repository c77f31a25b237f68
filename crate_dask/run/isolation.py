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
way a fresh child takes the remaining requests. While the child works on a
file, the worker checks its resident memory every 50 ms: growing by more than
``file_memory_mb`` kills it, and the file gets one ``memory`` error row (an
address-space cap, ``RLIMIT_AS``, at four times the limit stops a runaway
allocation sooner).

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
_POLL_S = 0.05   # how often the memory of a child busy on one file is checked (fast files never wait this long)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_BACKSTOP = 4    # the child's address space is capped at this many times the limit: a runaway allocation fails fast


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
        self._base_rss = 0
        self._spawned: subprocess.Popen | None = None   # pre-started, its "ready" not yet read
        # total seconds jobs waited for children to start (import + warm-up): work time is measured without it
        self.startup_s: float = 0.0

    def prestart(self) -> None:
        """Start the child now and read its "ready" when the first job comes.

        A worker calls this as it starts, so the child's imports and warm-up
        (about 2 s) overlap the cluster's start-up and the client's checks
        instead of delaying the first file.
        """
        if self._proc is None and self._spawned is None:
            self._spawned = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        # Native decoders chatter on stderr about every bad frame; failures come back through the pipe.
        # A session of its own: the terminal's Ctrl-C goes to the run, not to the file in flight.
        return subprocess.Popen([sys.executable, "-m", "crate_dask.run.isolation", *(["--audio"] * self.audio)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, start_new_session=True)

    def _start(self) -> subprocess.Popen:
        t0 = time.monotonic()   # what the job waits: a pre-started child may be ready already
        proc, self._spawned = self._spawned, None
        if proc is None or proc.poll() is not None:   # none pre-started, or it died: start one now
            proc = self._spawn()
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
        self._base_rss = _rss(proc.pid)
        return proc

    def _over(self, memory_mb: float | None) -> bool:
        """Whether the child's resident memory grew by more than ``memory_mb`` since it started."""
        return memory_mb is not None and self._proc is not None and (
            _rss(self._proc.pid) > self._base_rss + memory_mb * 2**20)

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
            # A child that died with files sent died on the oldest of them: the receive below reads its last
            # answers, then the EOF, and records the crash. Restarting here would resend that file to a fresh
            # child as if nothing had happened (seen on a loaded machine: a kill just as the file was opened).
            if self._proc is None or (self._proc.poll() is not None and not pending):
                self._proc = None
                self._proc = self._start()
            try:
                while todo and len(pending) < WINDOW:
                    op, args = jobs[todo[0]]
                    _send(self._proc.stdin, (op, args, settings if op == "audio" else None, memory_mb))
                    if not pending:
                        started = time.monotonic()
                    pending.append(todo.popleft())
            except (BrokenPipeError, OSError):
                pass   # the child died: the receive below sees it and says why
            fd = self._proc.stdout.fileno()
            if _wait_readable(fd, started + limit_s, lambda: self._over(memory_mb)) == "memory":
                self.close()
                what = _WHAT[jobs[pending.popleft()][0]]
                todo.extendleft(reversed(pending))
                pending.clear()
                yield _memory_error(what, memory_mb)
                continue
            try:
                status, payload, worn = _recv(fd, started + limit_s)
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
            if worn:   # the child grew or hit the memory limit: a fresh one gets the next files
                self.close()
                todo.extendleft(reversed(pending))
                pending.clear()
            if status in ("ok", "expected"):
                yield payload
            elif status == "memory":
                yield _memory_error(_WHAT[op], memory_mb)
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
        procs = [p for p in (self._proc, self._spawned) if p is not None]
        self._proc = self._spawned = None
        for proc in procs:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        """The child's process id, if one is running."""
        return None if self._proc is None else self._proc.pid


def _rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _wait_readable(fd: int, deadline: float, over_memory) -> str:
    """Wait for the child's answer: ``ready``, ``timeout``, or ``memory`` (checked every :data:`_POLL_S`)."""
    while True:
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        ready, _, _ = select.select([fd], [], [], min(deadline - now, _POLL_S))
        if ready:
            return "ready"
        if over_memory():
            return "memory"


def _memory_error(what: str, memory_mb: float) -> FileMemoryError:
    return FileMemoryError(f"{what} needed more than the {memory_mb:g} MiB memory limit per file; skipped "
                           "(a higher --file-memory retries it)", limit=memory_mb)


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


class _MemoryCap:
    """A backstop in the child: cap its address space (RLIMIT_AS) at its start-up size plus 4x the limit.

    The limit itself is enforced by the parent, which watches the child's
    resident memory while it works on a file: under an address-space cap
    alone, a library that swallows ``MemoryError`` in a loop can spin forever.
    When the child has grown by more than half the limit anyway (caches,
    fragmentation), or after a file hit the cap, it asks to be replaced.
    """

    def __init__(self) -> None:
        import resource

        self._statm, self._page = os.open("/proc/self/statm", os.O_RDONLY), os.sysconf("SC_PAGE_SIZE")
        self.base, self.base_rss = self.size(), self.size(1)
        self._hard = resource.getrlimit(resource.RLIMIT_AS)[1]

    def size(self, field: int = 0) -> int:
        return int(os.pread(self._statm, 64, 0).split()[field]) * self._page

    def set(self, memory_mb: float | None) -> None:
        import resource

        soft = self._hard if memory_mb is None else self.base + int(_BACKSTOP * memory_mb * 2**20)
        if self._hard != resource.RLIM_INFINITY:
            soft = min(soft, self._hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, self._hard))

    def worn(self, memory_mb: float | None) -> bool:
        return memory_mb is not None and self.size(1) > self.base_rss + memory_mb * 2**20 / 2


def _exit_with_parent(parent: int) -> None:
    """End this child when its worker is gone, even in the middle of a file (it would read on for nothing)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve(audio: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C stops the run, which stops this child
    _exit_with_parent(os.getppid())
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
    cap = _MemoryCap()
    _send(out, "ready")
    fd = sys.stdin.buffer.fileno()
    while True:
        try:
            op, args, settings, memory_mb = _recv(fd, None)
        except EOFError:
            return
        try:
            cap.set(memory_mb)
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
            cap.set(None)
        _send(out, (*answer, answer[0] == "memory" or cap.worn(memory_mb)))


if __name__ == "__main__":
    _serve("--audio" in sys.argv[1:])
