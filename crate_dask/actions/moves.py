"""Safe moves for journaled renames: never overwrite, create and remove folders."""

from __future__ import annotations

import ctypes
import errno
import os


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def missing_dirs(folder: str) -> list[str]:
    """The folders to create for ``folder``, outermost first (undo removes them again if empty)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing[::-1]


def remove_dirs(dirs: list[str]) -> None:
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def listed(path: str) -> bool:
    try:
        return os.path.basename(path) in os.listdir(os.path.dirname(path) or ".")
    except OSError:
        return False


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_libc = None


def rename_noreplace(src: str, dst: str) -> None:
    """Atomic rename that fails with FileExistsError instead of replacing ``dst``."""
    global _libc
    if hasattr(os, "uname") and os.uname().sysname == "Linux":
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(_libc, "renameat2", None)
        if fn is not None:
            if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):   # else: file system lacks it
                raise OSError(err, os.strerror(err), src, None, dst)   # EEXIST gives FileExistsError
    if os.path.lexists(dst) and not same_file(src, dst):   # fallback: check, then rename (a small race)
        raise FileExistsError(errno.EEXIST, "target exists", dst)
    os.rename(src, dst)
