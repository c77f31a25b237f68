"""``crate-dask status``: what a results folder holds and what a rerun would do."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from crate_dask.config import AnalysisSettings, Settings, build_settings
from crate_dask.errors import FatalError
from crate_dask.store.partitions import (
    list_parts,
    load_state,
    read_parts_info,
    read_run_log,
)


def collect_status(out: str | Path, *, scan: bool = True) -> dict[str, Any]:
    """Partitions done / pending / changed / other settings, rows and errors of ``out``."""
    out = Path(out).expanduser().absolute()
    state = load_state(out)
    infos = read_parts_info(out)
    if not state and not infos:
        raise FatalError(f"no crate_dask results in {out}")
    runs = read_run_log(out)
    last = runs[-1] if runs else {}
    st: dict[str, Any] = {"out": str(out), "library": state.get("root"), "partitions_on_disk": len(infos),
                          "rows": sum(i.rows for i in infos.values()),
                          "errors": sum(i.errors for i in infos.values()),
                          "versions": dict(Counter(i.version for i in infos.values())),
                          "modes": dict(Counter("metadata" if i.metadata_only else "audio" for i in infos.values())),
                          "last_run": {k: last.get(k) for k in ("time", "status", "files", "rows", "errors",
                                                                 "seconds", "mode")} if last else None}
    st["errors_by_stage"] = _errors_by_stage(out) if st["errors"] else {}
    st["errors_by_type"] = _errors_by_type(out) if st["errors"] else {}
    if scan and state.get("root") and Path(state["root"]).is_dir():
        from crate_dask.run.graph import prepare

        settings = _last_settings(last, state)
        rp = prepare(state["root"], out, settings)
        changed = [p.name for p, _ in rp.todo if p.name in infos]
        st.update(scanned=True, files_in_library=rp.files_total, partitions_planned=len(rp.plan),
                  done=len(rp.done), pending=len([p for p, _ in rp.todo if p.name not in infos]),
                  stale=len(changed), other_settings=len(rp.kept_other_settings),
                  superseded_files_on_disk=len(rp.remove))
    else:
        st.update(scanned=False, partitions_planned=len(state.get("boundaries", [])))
    st["stale_files_kept"] = len(list_parts(out, stale=True))
    st["operations"] = _operations(out)
    return st


def _operations(out: Path) -> list[dict[str, Any]]:
    """Rename and tag operations (newest last): what `undo` would revert, and anything interrupted."""
    from crate_dask.store.journal import list_operations

    return [{"kind": op.kind, "id": op.op_id, "status": op.status} for op in list_operations(out)
            if op.status != "planned"]


def _last_settings(last: dict, state: dict) -> Settings:
    known = set(AnalysisSettings.__dataclass_fields__)
    analysis = {k: v for k, v in (last.get("settings") or {}).items() if k in known}
    return build_settings(cli={**analysis, "partition_size": state.get("partition_size", 1000)})


def _errors_by_type(out: Path) -> dict[str, int]:
    """Error rows by structured cause, from the partition footers (no rows are read)."""
    counts: Counter = Counter()
    for info in read_parts_info(out).values():
        counts.update(info.meta.get("error_types") or {})
    return dict(sorted(counts.items()))


def _errors_by_stage(out: Path) -> dict[str, int]:
    counts: Counter = Counter()
    for p in list_parts(out):
        try:
            col = pq.read_table(p, columns=["error_stage"]).column("error_stage").to_pylist()
        except (OSError, ValueError):
            continue
        counts.update(s for s in col if s)
    return dict(counts)
