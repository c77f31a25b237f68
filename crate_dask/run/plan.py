"""The partition plan: which files go into which partition, stable across runs.

The first run cuts the sorted file list into chunks of ``partition_size``
(``part-00000``, ``part-00001``, ...). Later runs keep those boundaries: each
partition owns a range of relative paths, starting at its first file, so a new
file lands in the partition whose range covers it and only that partition is
recomputed. Adding 1% of files costs about 1% of the first run instead of
shifting every partition after the insertion point. A partition that grows
past twice the partition size is split into children (``part-00042-001``, ...)
whose names still sort in path order; empty partitions disappear.

>>> from crate_dask.library.scan import FileEntry
>>> files = [FileEntry(f"{i:03d}.mp3", 1, 1) for i in range(5)]
>>> p = plan_partitions(files, partition_size=2)
>>> [(part.name, [f.relpath for f in part.files]) for part in p]
[('part-00000', ['000.mp3', '001.mp3']), ('part-00001', ['002.mp3', '003.mp3']), ('part-00002', ['004.mp3'])]
>>> files.insert(1, FileEntry("000a.mp3", 1, 1))
>>> [len(part.files) for part in plan_partitions(files, partition_size=2, previous=boundaries(p))]
[3, 2, 1]
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Sequence

from crate_dask.library.scan import FileEntry, rel_sort_key


@dataclass(frozen=True)
class Partition:
    """One planned partition: its file name stem, first path of its range and its files."""

    name: str
    first: str
    files: tuple[FileEntry, ...]

    @property
    def size(self) -> int:
        """Number of files (also after :meth:`without_files`)."""
        return self.n if self.n >= 0 else len(self.files)

    n: int = -1

    def without_files(self) -> "Partition":
        """The same partition without its file list (what the client keeps while workers run)."""
        return Partition(self.name, self.first, (), self.size)

    def digest(self) -> str:
        """A hash of the partition's inputs (paths, sizes, mtimes): equal digests mean nothing changed."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.relpath}\0{f.size}\0{f.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()[:32]


def plan_partitions(files: Sequence[FileEntry], *, partition_size: int,
                    previous: Sequence[tuple[str, str]] | None = None) -> list[Partition]:
    """Group ``files`` (in scan order) into partitions.

    Parameters
    ----------
    files : sequence of FileEntry
        The scan result, sorted in scan order.
    partition_size : int > 0
        Files per partition on a fresh plan; partitions split when they exceed twice this.
    previous : sequence of (name, first relpath), optional
        The boundaries of the previous run (see :func:`boundaries`); ``None`` plans afresh.
    """
    if not previous:
        return [_part(f"part-{i // partition_size:05d}", files[i:i + partition_size])
                for i in range(0, len(files), partition_size)]
    starts = [rel_sort_key(first) for _, first in previous]
    buckets: list[list[FileEntry]] = [[] for _ in previous]
    for f in files:
        # files before the first boundary belong to the first partition
        buckets[max(bisect.bisect_right(starts, rel_sort_key(f.relpath)) - 1, 0)].append(f)
    plan: list[Partition] = []
    for (name, first), bucket in zip(previous, buckets):
        if not bucket:
            continue
        if len(bucket) <= 2 * partition_size:
            # keep the old boundary, so that the range does not drift from run to run
            plan.append(Partition(name, first if plan else bucket[0].relpath, tuple(bucket)))
        else:
            plan.extend(_part(f"{name}-{j // partition_size + 1:03d}", bucket[j:j + partition_size])
                        for j in range(0, len(bucket), partition_size))
    return plan


def boundaries(plan: Sequence[Partition]) -> list[tuple[str, str]]:
    """The (name, first relpath) pairs that let the next run keep this plan's ranges."""
    return [(p.name, p.first) for p in plan]


def _part(name: str, files: Sequence[FileEntry]) -> Partition:
    return Partition(name=name, first=files[0].relpath, files=tuple(files))
