"""Undo: revert the most recent operation of a results folder, last first (a stack)."""

from __future__ import annotations

import os
from collections import Counter

from crate_dask.actions.loop import locked
from crate_dask.actions.rename import undo_renames
from crate_dask.actions.retag import undo_tags
from crate_dask.store.journal import Operation, last_undoable

#: How each kind of operation is reverted.
UNDO = {"rename": undo_renames, "tag": undo_tags}


def undo_last(out: str | os.PathLike) -> tuple[Operation, Counter] | None:
    """Undo the most recent rename or tag operation of ``out`` (``None`` if there is none)."""
    with locked(out):
        op = last_undoable(out)
        if op is None:
            return None
        return op, UNDO[op.kind](op)
