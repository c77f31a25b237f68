"""``crate-dask status`` as text: the data comes from :func:`crate_dask.run.status.collect_status`."""

from __future__ import annotations

from typing import Any

import click


def print_status(st: dict[str, Any]) -> None:
    """Human-readable status on stdout (it is the command's output: ``status OUT | grep errors`` works)."""
    click.echo(f"results: {st['out']}")
    click.echo(f"library: {st['library']}")
    if st.get("scanned"):
        click.echo(f"files in library: {st['files_in_library']:,}  partitions: {st['partitions_planned']}")
        click.echo(f"  done: {st['done']}  pending: {st['pending']}  stale (files changed): {st['stale']}  "
                   f"other settings: {st['other_settings']}")
    else:
        click.echo(f"partitions on disk: {st['partitions_on_disk']} of {st['partitions_planned']} planned "
                   "(library not scanned)")
    click.echo(f"rows: {st['rows']:,}  with errors: {st['errors']:,}"
               + (f"  ({', '.join(f'{k}: {v}' for k, v in st['errors_by_stage'].items())})"
                  if st["errors_by_stage"] else ""))
    if st.get("errors_by_type"):
        click.echo("  by cause: " + ", ".join(f"{k}: {v}" for k, v in st["errors_by_type"].items()))
    click.echo(f"modes: {st['modes']}  versions: {st['versions']}")
    for op in st["operations"][-5:]:
        hint = {"applied": "  (crate-dask undo reverts it)",
                "applying": "  (interrupted: rerun the same command to finish, or crate-dask undo)",
                "undoing": "  (interrupted: run crate-dask undo again)"}.get(op["status"], "")
        click.echo(f"{op['kind']} {op['id']}: {op['status']}{hint}")
    if st.get("last_run"):
        lr = st["last_run"]
        click.echo(f"last run: {lr.get('time')} {lr.get('status')} ({lr.get('mode')}, {lr.get('seconds')} s)")
