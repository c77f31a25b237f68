"""How long a run will take, from the rates measured by earlier runs: the numbers behind the size warning.

>>> format_duration(42.0), format_duration(245), format_duration(11_520)
('42.0 s', '4 min 05 s', '3 h 12 min')
>>> size_warning(500, mode="audio", workers=2, rate=2.5, partition_size=1000) is None
True
"""

from __future__ import annotations

from typing import Any

#: Files per second per worker used for estimates before a run has measured its own (this machine, 2026).
DEFAULT_RATES = {"metadata": 2000.0, "audio": 2.5}
WARN_FILES, STRONG_WARN_FILES = 10_000, 25_000


def rate_per_worker(history: list[dict[str, Any]], mode: str) -> float:
    """The best-known files/s per worker for ``mode``: the last measured run, else a default."""
    for rec in reversed(history):
        if rec.get("mode") == mode and rec.get("files_per_s_per_worker"):
            return float(rec["files_per_s_per_worker"])
    return DEFAULT_RATES[mode]


def size_warning(n_files: int, *, mode: str, workers: int, rate: float, partition_size: int) -> str | None:
    """A warning with a time estimate and suggestions for large libraries (None below the threshold)."""
    if n_files <= WARN_FILES:
        return None
    eta = n_files / max(rate * workers, 1e-9)
    lines = [f"{'LARGE LIBRARY' if n_files > STRONG_WARN_FILES else 'Large library'}: {n_files:,} files to "
             f"analyze; estimated {format_duration(eta)} on {workers} worker(s) at {rate:,.1f} files/s each."]
    if n_files > STRONG_WARN_FILES:
        lines.append("This is a long run. It is safe to stop at any time (Ctrl-C) and run the same command "
                     "again: finished partitions are kept.")
    tips = []
    if mode == "audio":
        tips.append("--metadata-only reads tags only (about 500x faster), then run the audio analysis later")
    tips.append("--scheduler tcp://HOST:8786 spreads the work over a Dask cluster of several machines "
                "(the output folder must be shared by all of them)")
    if partition_size > 2000 or partition_size < 200:
        tips.append(f"--partition-size 1000 (now {partition_size}) balances resume granularity and overhead")
    else:
        tips.append(f"--partition-size {partition_size} is saved after each partition; smaller partitions "
                    "lose less work on a crash")
    lines += [f"  - {t}" for t in tips]
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """'3 h 12 min', '4 min 05 s', '12.3 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class LiveRate:
    """Files done, the recent rate and the time left, for the progress of a running run.

    The rate is over the last ``window_s`` seconds (whole run until then), so
    the ETA follows the workers as they warm up or as the machine gets busy.

    >>> r = LiveRate(100, clock=iter([0.0, 10.0, 20.0]).__next__)
    >>> r.add(10, 1); r.done, r.errors, r.rate(), r.eta()
    (10, 1, 1.0, 90.0)
    """

    def __init__(self, total: int, *, window_s: float = 60.0, clock=None) -> None:
        import collections
        import time

        self._clock = clock or time.monotonic
        self.total, self.window_s = total, window_s
        self.done = self.errors = 0
        self._t0 = self._clock()
        self._hist: collections.deque = collections.deque([(self._t0, 0)])
        self._now = self._t0

    def add(self, files: int, errors: int) -> None:
        """Count a finished chunk."""
        self._now = self._clock()
        self.done += files
        self.errors += errors
        self._hist.append((self._now, self.done))
        while len(self._hist) > 2 and self._hist[1][0] < self._now - self.window_s:
            self._hist.popleft()

    def elapsed(self) -> float:
        """Seconds from the start to the last finished chunk."""
        return self._now - self._t0

    def rate(self) -> float | None:
        """Files per second over the recent window (``None`` before the first chunk)."""
        t_old, n_old = self._hist[0]
        dt = self._now - t_old
        return round((self.done - n_old) / dt, 3) if dt > 0 and self.done > n_old else None

    def eta(self) -> float | None:
        """Seconds left at the recent rate."""
        r = self.rate()
        return round(max(self.total - self.done, 0) / r, 1) if r else None
