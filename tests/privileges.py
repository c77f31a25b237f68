"""Run a function as an unprivileged user, so permission errors are real even when tests run as root."""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Callable

NOBODY = 65534


def _child(conn, fn, args):
    try:
        if os.geteuid() == 0:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # report anything to the parent
        conn.send(("err", repr(exc)))
    finally:
        conn.close()


def as_unprivileged(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child that dropped root privileges (modules are already imported)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child, args=(child, fn, args))
    p.start()
    status, value = parent.recv()
    p.join()
    if status == "err":
        raise RuntimeError(value)
    return value

