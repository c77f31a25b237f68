"""Run the audio analysis of one file at a time in a child process, with a time limit.

A pathological file (a decoder that loops, a file that makes numpy allocate
forever, a segfault in a native decoder) must not stall or kill its
partition. Python cannot interrupt a thread stuck in C code, so each Dask
worker keeps one long-lived child process (``python -m crate_dask.run.isolation``)
that imports the audio stack once, warms it up, and analyses files on request.
When a file exceeds its time limit the child is killed and the file recorded
as timed out; the next file starts a fresh child. Metadata-only runs never
start it, so they never pay for importing librosa.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from typing import Any

from crate_dask.errors import AnalysisTimeout, DecodeError

_STARTUP_TIMEOUT_S = 600.0   # a cold numba cache can take ~30 s; a loaded machine much longer


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


class AudioRunner:
    """A child process that analyses audio files, restarted after a timeout or a crash."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self.startup_s: float = 0.0   # total seconds spent starting children (import + warm-up)

    def _start(self) -> subprocess.Popen:
        t0 = time.monotonic()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        # Native decoders chatter on stderr about every bad frame; failures come back through the pipe.
        proc = subprocess.Popen([sys.executable, "-m", "crate_dask.run.isolation"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        try:
            msg = _recv(proc.stdout.fileno(), time.monotonic() + _STARTUP_TIMEOUT_S)
        except (TimeoutError, EOFError):
            proc.kill()
            proc.wait()
            raise RuntimeError("the audio analysis process failed to start") from None
        if msg != "ready":
            proc.kill()
            raise RuntimeError(f"the audio analysis process failed to start: {msg}")
        self.startup_s += time.monotonic() - t0
        return proc

    def analyze(self, path: str, settings: Any) -> dict[str, Any]:
        """Analyse ``path`` in the child; raises DecodeError / AnalysisTimeout like the in-process stage."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        try:
            _send(self._proc.stdin, (path, settings))
        except (BrokenPipeError, OSError):   # the child died while idle (killed, out of memory): restart it
            self.close()
            self._proc = self._start()
            _send(self._proc.stdin, (path, settings))
        proc = self._proc
        limit = settings.file_timeout_s
        try:
            status, payload = _recv(proc.stdout.fileno(), time.monotonic() + limit)
        except TimeoutError:
            self.close()
            raise AnalysisTimeout(f"analysis took longer than the {limit:g} s limit; skipped") from None
        except EOFError:
            code = proc.wait()
            self._proc = None
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise DecodeError(f"the decoder crashed on this file ({why})") from None
        if status == "ok":
            return payload
        if status == "expected":
            raise payload
        raise RuntimeError(payload)

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


_RUNNER: AudioRunner | None = None


def get_runner() -> AudioRunner:
    """The worker process's runner (one per process, reused by every partition it runs)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = AudioRunner()
        atexit.register(_RUNNER.close)
    return _RUNNER


def _serve() -> None:
    from crate_dask.errors import FileProblem
    from crate_dask.features.signal import warm_up
    from crate_dask.run.stages import analyze_audio

    out = sys.stdout.buffer
    sys.stdout = sys.stderr   # anything a library prints must not corrupt the protocol
    try:
        warm_up()
    except Exception as exc:  # pragma: no cover - a broken install
        _send(out, f"warm-up failed: {type(exc).__name__}: {exc}")
        return
    _send(out, "ready")
    fd = sys.stdin.buffer.fileno()
    while True:
        try:
            path, settings = _recv(fd, None)
        except EOFError:
            return
        try:
            _send(out, ("ok", analyze_audio(path, settings)))
        except FileProblem as exc:
            _send(out, ("expected", exc))
        except MemoryError:
            _send(out, ("expected", DecodeError("out of memory while analysing this file")))
        except Exception as exc:
            _send(out, ("bug", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    _serve()
