"""The retry policy: which earlier error rows are computed again, decided from their structured cause.

* ``timeout`` / ``memory``: retried when ``--file-timeout`` / ``--file-memory``
  is raised above the limit the row records (``error_limit``), never otherwise;
* ``crashed``: retried on the next run; after :data:`QUARANTINE_AFTER` crashes
  of the unchanged file it becomes ``quarantined`` and is left alone;
* ``permission``, ``vanished``, ``bug``: retried whenever their partition is
  computed again (they may go away without the file changing);
* the rest (``unreadable``, ``truncated``, ``undecodable``, ``quarantined``):
  a verdict on the file, kept until the file changes.

``--retry-errors`` recomputes every error row, and nothing else. A partition
whose footer says it holds rows that this policy would retry is computed
again (its other rows are reused), so no setting needs ``--force``.

>>> from crate_dask.config import AnalysisSettings
>>> row = {"error": "too slow", "error_type": "timeout", "error_limit": 60.0}
>>> row_needs_retry(row, AnalysisSettings(file_timeout_s=60.0)), row_needs_retry(row, AnalysisSettings(file_timeout_s=300.0))
(False, True)
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from crate_dask.config import AnalysisSettings

#: Crashes of the same unchanged file (same size and mtime) after which it is quarantined.
QUARANTINE_AFTER = 2
_RETRIED = frozenset({"crashed", "permission", "vanished", "bug"})
_LIMIT_OF = {"timeout": "file_timeout_s", "memory": "file_memory_mb"}


def error_type_of(row: dict[str, Any]) -> str | None:
    """The row's ``error_type`` (derived for rows written before the column existed); ``None`` if no error."""
    if row.get("error") is None:
        return None
    return row.get("error_type") or legacy_error_type(row)


def legacy_error_type(row: dict[str, Any]) -> str:
    """The cause of a schema-1 row (no ``error_type``), from its message: the one place that parses messages.

    >>> legacy_error_type({"error_stage": "audio", "error": "the decoder crashed on this file (signal 11)"})
    'crashed'
    """
    err, stage = row.get("error") or "", row.get("error_stage")
    for needle, etype in (("BUG", "bug"), ("permission denied", "permission"), ("vanished", "vanished"),
                          ("crashed", "crashed"), ("longer than", "timeout"), ("truncated file", "truncated"),
                          ("truncated:", "truncated")):
        if needle in err:
            return etype
    return "vanished" if stage == "file" else "undecodable" if stage == "audio" else "unreadable"


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """An earlier row with the columns of the current schema (an old timeout has no limit: it is retried)."""
    if row.get("error") is not None and not row.get("error_type"):
        row = {**row, "error_type": legacy_error_type(row)}
    return row


def row_needs_retry(row: dict[str, Any], settings: AnalysisSettings, retry_errors: bool = False) -> bool:
    """Whether an earlier row of an unchanged file must be computed again."""
    etype = error_type_of(row)
    if etype is None:
        return False
    if retry_errors:
        return True
    if etype in _LIMIT_OF:
        limit = row.get("error_limit")
        return limit is None or getattr(settings, _LIMIT_OF[etype]) > limit
    return etype in _RETRIED


def count_crash(row: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """Count a crash on top of the earlier row of the same unchanged file; quarantine at :data:`QUARANTINE_AFTER`.

    >>> r = count_crash({"error": "crashed (signal 11)", "error_type": "crashed"},
    ...                 {"error": "crashed (signal 11)", "error_type": "crashed", "crashes": 1})
    >>> r["error_type"], r["crashes"]
    ('quarantined', 2)
    """
    if row.get("error_type") != "crashed":
        return row
    earlier = (before.get("crashes") or 1) if before is not None and error_type_of(before) in (
        "crashed", "quarantined") else 0
    row["crashes"] = earlier + 1
    if row["crashes"] >= QUARANTINE_AFTER:
        row["error_type"] = "quarantined"
        row["error"] = (f"{row['error']}; crashed in {row['crashes']} runs: quarantined until the file changes "
                        "(or --retry-errors)")
    return row


def partition_summary(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What a partition's footer records for the retry decision: error counts by type, lowest limits hit."""
    types: Counter = Counter()
    limits: dict[str, float] = {}
    for r in rows:
        etype = r.get("error_type")
        if r.get("error") is None or etype is None:
            continue
        types[etype] += 1
        if etype in _LIMIT_OF and r.get("error_limit") is not None:
            limits[etype] = min(limits.get(etype, r["error_limit"]), r["error_limit"])
    return {"error_types": dict(sorted(types.items())), "error_limits": limits}


def partition_needs_retry(meta: dict[str, Any], settings: AnalysisSettings, retry_errors: bool = False) -> bool:
    """Whether a finished partition (by its footer ``meta``) holds rows this run retries.

    >>> meta = {"errors": 1, "error_types": {"timeout": 1}, "error_limits": {"timeout": 60.0}}
    >>> partition_needs_retry(meta, AnalysisSettings()), partition_needs_retry(meta, AnalysisSettings(file_timeout_s=90))
    (False, True)
    """
    if not meta.get("errors"):
        return False
    if retry_errors:
        return True
    types = meta.get("error_types") or {}
    if types.get("crashed"):
        return True
    limits = meta.get("error_limits") or {}
    return any(types.get(t) and (t not in limits or getattr(settings, attr) > limits[t])
               for t, attr in _LIMIT_OF.items())
