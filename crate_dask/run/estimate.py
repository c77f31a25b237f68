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
