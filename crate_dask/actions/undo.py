"""Undo: revert the most recent operation of a results folder, last first (a stack)."""

from __future__ import annotations

import os
from collections import Counter

from crate_dask.actions.loop import locked, run_undo
from crate_dask.actions.rename import RenameAction
from crate_dask.actions.retag import TagAction
from crate_dask.store.journal import Operation, last_undoable

#: The action that reverts each kind of operation (through the shared loop).
ACTIONS = {"rename": RenameAction, "tag": TagAction}


def undo_last(out: str | os.PathLike) -> tuple[Operation, Counter] | None:
    """Undo the most recent rename or tag operation of ``out`` (``None`` if there is none)."""
    with locked(out):
        op = last_undoable(out)
        if op is None:
            return None
        return op, run_undo(ACTIONS[op.kind](out), op)
