"""The history of each file in a results folder, replayed from the rename and tag journals.

Where a file was moved (so ``analyze`` finds its earlier row under the new name)
and which tag writes changed it (so its audio analysis stays valid). This is a
property of the results folder, not of the actions that wrote the journals: the
pipeline reads it from here.
"""

from __future__ import annotations

import os
from typing import Any

from crate_dask.store.journal import fold, list_operations
from crate_dask.store.partitions import load_state


def replay(out: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """Replay every journal in time order.

    Returns
    -------
    moves : dict
        Absolute path -> current absolute path, for every earlier name of a file moved by
        renames (so rows of any ``analyze`` between renames are found again).
    writes : dict
        Current absolute path -> ``(size, mtime_ns)`` after the last tag write (or tag undo).
    """
    events: list[tuple[int, str, Any, Any]] = []
    for op in list_operations(out):
        for j in op.journals():
            for e in fold(j.records()).values():
                if op.kind == "rename":   # "t": when the rename was done, "ut": when it was undone
                    if "t" in e and "src" in e and "dst" in e:
                        events.append((e["t"], "move", e["src"], e["dst"]))
                    if "ut" in e and "src" in e and "dst" in e:
                        events.append((e["ut"], "move", e["dst"], e["src"]))
                else:                     # tag writes record the file's (size, mtime_ns) after each write
                    if "t" in e and e.get("after") and "path" in e:
                        events.append((e["t"], "write", e["path"], tuple(e["after"])))
                    if "ut" in e and e.get("undo_after") and "path" in e:
                        events.append((e["ut"], "write", e["path"], tuple(e["undo_after"])))
    names: dict[str, list[str]] = {}   # current path -> every earlier name of that file
    writes: dict[str, tuple[int, int]] = {}
    for _t, kind, a, b in sorted(events, key=lambda ev: ev[0]):
        if kind == "move":
            names[b] = names.pop(a, []) + [a]
            if a in writes:
                writes[b] = writes.pop(a)
        else:
            writes[a] = b
    moves = {old: cur for cur, olds in names.items() for old in olds if old != cur}
    return moves, writes


def moved_paths(out: str | os.PathLike) -> dict[str, str]:
    """Earlier relpath -> current relpath of every file moved by renames (and undos) in ``out``.

    Lets ``analyze`` carry a row to its file's new name even when the content changed
    too (a tag write after the rename): see :func:`:func:`tag_writes``.
    """
    root = load_state(out).get("root")
    if not root:
        return {}
    rel = lambda p: os.path.relpath(p, root).replace(os.sep, "/")   # noqa: E731
    return {rel(a): rel(b) for a, b in replay(out)[0].items()}


def tag_writes(out: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """relpath -> ``(size, mtime_ns)`` after our last tag write (or tag undo) of each file.

    Paths are where the files are now (moved along applied renames), relative to
    the library root, ``/``-separated, undecodable bytes surrogate-escaped as in
    :mod:`crate_dask.library.scan`. A file whose ``(size, mtime_ns)`` still equals this
    changed only by our tag write, so its audio analysis stays valid.
    """
    root = load_state(out).get("root")
    if not root:
        return {}
    _moves, writes = replay(out)
    return {os.path.relpath(p, root).replace(os.sep, "/"): (int(s), int(m)) for p, (s, m) in writes.items()}
