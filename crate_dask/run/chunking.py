"""Work finer than storage: cutting the partitions to compute into tasks (chunks).

A partition stays the unit of storage and resume (1000 files), but a whole
partition per task leaves cores idle on small libraries, shows no progress for
minutes and idles at the end of a large run. So each partition's files are
cut into chunks sized from the measured rate (files/s per worker):

- the first chunk of each worker is short (about ``first_s`` seconds of work), so
  the progress bar moves soon after the first file is done;
- then guided self-scheduling: each chunk takes a share ``1/(2 W)`` of the work
  still to plan, at most ``target_s`` seconds of work, so chunks shrink
  towards the end and the last 5% of the work is spread over every worker;
- no chunk is shorter than ``min_s`` seconds of work (the scheduler's overhead
  per task is about a millisecond; this keeps it far below 1%).

>>> sizes = chunk_sizes([60], workers=2, rate=2.5)
>>> sum(sizes[0]), len(sizes[0]) >= 8, sizes[0][:2], sizes[0][-1]
(60, True, [5, 5], 2)
>>> chunk_sizes([1000, 1000], workers=8, rate=2000.0)   # metadata: one task per partition
[[1000], [1000]]
>>> max(max(s) for s in chunk_sizes([1000] * 10, workers=4, rate=2.5)) <= 25
True
"""

from __future__ import annotations

import math
from typing import Sequence


def chunk_sizes(pending: Sequence[int], *, workers: int, rate: float, target_s: float = 10.0,
                first_s: float = 2.0, min_s: float = 1.0, fixed: int | None = None) -> list[list[int]]:
    """For each partition with ``pending[i]`` files to compute, the sizes of its chunks, in order.

    ``fixed`` forces that many files per chunk (the ``chunk_size`` setting).
    """
    if fixed:
        return [[min(fixed, n - i) for i in range(0, n, fixed)] for n in pending]
    workers = max(workers, 1)
    rate = max(rate, 1e-3)
    biggest = max(1, round(rate * target_s))
    smallest = max(1, round(rate * min_s))
    first = max(1, min(biggest, round(rate * first_s)))
    remaining = sum(pending)
    planned = 0
    out: list[list[int]] = []
    for n in pending:
        sizes: list[int] = []
        left = n
        while left > 0:
            if planned < workers:
                size = first
            else:
                size = min(biggest, max(smallest, math.ceil(remaining / (2 * workers))))
            size = min(size, left)
            if 0 < left - size < smallest:
                size = left   # no tiny remainder chunk
            sizes.append(size)
            left -= size
            remaining -= size
            planned += 1
        out.append(sizes)
    return out
