"""Full disks: turn ENOSPC/EDQUOT into one :class:`~crate_dask.errors.NoSpaceError` that names the place.

Every store writer wraps its writes in :func:`writing`, so a full disk anywhere
(results folder, journal, plan, a library file being retagged) is one clear
line, never a traceback, and the temp file of the failed write is removed.

>>> import errno
>>> try:
...     with writing("/tmp", "writing the journal"):
...         raise OSError(errno.ENOSPC, "No space left on device")
... except Exception as exc:
...     print(type(exc).__name__, str(exc).startswith("no space left on /tmp"))
NoSpaceError True
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

from crate_dask.errors import NoSpaceError

_FULL = {errno.ENOSPC, errno.EDQUOT}


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk or the quota is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def describe(path: str | os.PathLike) -> str:
    """``path``'s folder, plus the mount point of its file system when that is elsewhere."""
    p = Path(os.path.abspath(path))
    folder = p if p.is_dir() else p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    mount = folder
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return str(folder) if mount == folder else f"{folder} (file system at {mount})"


@contextlib.contextmanager
def writing(path: str | os.PathLike, doing: str, *, cleanup: str | os.PathLike | None = None) -> Iterator[None]:
    """Run a write to ``path``; on a full disk remove ``cleanup`` (a temp file) and raise NoSpaceError."""
    try:
        yield
    except OSError as exc:
        if not is_full(exc):
            raise
        if cleanup is not None:
            with contextlib.suppress(OSError):
                os.unlink(cleanup)
        raise NoSpaceError(describe(path), doing) from None


def write_parquet_atomically(table, tmp: Path, final: Path, where: str | os.PathLike, doing: str, **options) -> None:
    """Write ``table`` to ``tmp``, fsync it and rename it to ``final``: a reader sees all of it or nothing.

    ``options`` go to ``pyarrow.parquet.write_table``. On a full disk (of ``where``) the temp file is
    removed and :class:`~crate_dask.errors.NoSpaceError` says ``doing``; on any error no temp file stays.
    """
    import pyarrow.parquet as pq

    try:
        with writing(where, doing, cleanup=tmp):
            tmp.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, **options)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
