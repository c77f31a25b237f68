"""The ``rename``, ``tag`` and ``undo`` commands (standalone click commands; ``cli.main`` adds them).

Both ``rename`` and ``tag`` preview by default: they compute the plan, write it
as a dataset and print counts and a sample; ``--apply`` touches files. Options
are validated before anything runs (a bad template is one error line, exit 2).
``python -m crate_dask.cli.actions --help`` runs them without the main CLI.
"""

from __future__ import annotations

import functools

import click

from crate_dask.actions import naming
from crate_dask.cli.messages import run_command
from crate_dask.cli.tls import TLS_OPTIONS
from crate_dask.config import RunSettings
from crate_dask.errors import FatalError, ParameterError

_ORDER = ("rename", "write", "unchanged", "conflict", "missing-fields", "low-confidence", "error-row",
          "unreadable", "missing", "changed")


def _cluster_options(fn):
    @click.option("--sequential", is_flag=True, help="Plan in this process, without a Dask cluster.")
    @click.option("--workers", type=click.IntRange(min=1), default=None, help="Local worker processes.")
    @click.option("--scheduler", default=None, metavar="ADDRESS",
                  help="Address of an existing Dask scheduler (tcp://host:8786, or tls://host:8786 with --tls-*).")
    @TLS_OPTIONS[0]
    @TLS_OPTIONS[1]
    @TLS_OPTIONS[2]
    @click.option("--sample", type=click.IntRange(min=0), default=10, show_default=True,
                  help="How many planned changes to show.")
    @click.option("--apply", "do_apply", is_flag=True, help="Change the files (default: preview only).")
    @click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.25, show_default=True,
                  help="Skip detected bpm/key values whose confidence is under this.")
    @functools.wraps(fn)
    def wrapper(*args, tls_ca_file=None, tls_cert=None, tls_key=None, **kw):
        return fn(*args, tls={"tls_ca_file": tls_ca_file, "tls_cert": tls_cert, "tls_key": tls_key}, **kw)
    return wrapper




def _plan_then(out, plan_fn, apply_fn, options, *, do_apply, sequential, workers, scheduler, tls, sample, noun):
    from crate_dask.run.cluster import connect

    run = RunSettings(sequential=sequential, workers=workers, scheduler=scheduler, progress=False, **tls)
    with connect(run) as client:
        if do_apply:
            s = apply_fn(out, options, client=client, sample=sample)
        else:
            s = plan_fn(out, options, client=client, sample=sample)
    plan_counts = s.op.meta().get("counts", {})
    click.echo(f"plan: {sum(plan_counts.values())} files: " + ", ".join(
        f"{k} {plan_counts[k]}" for k in sorted(plan_counts, key=_rank)))
    for old, new in s.sample:
        click.echo(f"  {old}\n    -> {new}")
    click.echo(f"plan dataset: {s.op.plan_dir}  (pandas.read_parquet)")
    if do_apply:
        done = s.counts
        click.echo("applied: " + (", ".join(f"{k} {v}" for k, v in sorted(done.items())) or "nothing to do"))
        click.echo(f"undo with: crate-dask undo {out}")
    else:
        click.echo(f"dry run: no file was changed; add --apply to {noun}.")


def _rank(status: str) -> int:
    return _ORDER.index(status) if status in _ORDER else len(_ORDER)


@click.command("rename")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--template", "-t", default=naming.DEFAULT_TEMPLATE, show_default=True,
              help="Python format syntax over result columns, e.g. '{artist} - {title} [{key_camelot} {bpm:.0f}]'; "
                   "'/' makes folders.")
@click.option("--base", type=click.Choice(["folder", "root"]), default="folder", show_default=True,
              help="folder: rename in place; root: the template is a path under the library root.")
@click.option("--on-conflict", type=click.Choice(["number", "skip"]), default="number", show_default=True,
              help="A taken name gets ' (2)'... (number) or the status conflict (skip).")
@_cluster_options
def rename(out, template, base, on_conflict, min_confidence, do_apply, sequential, workers, scheduler, sample,
           tls):
    """Rename the files of results folder OUT from a template (preview unless --apply)."""
    def go():
        from crate_dask.actions.rename import RenameOptions, apply_renames, plan_renames

        naming.parse_template(template)   # before anything runs
        options = RenameOptions(template=template, base=base, min_confidence=min_confidence,
                                on_conflict=on_conflict)
        _plan_then(out, plan_renames, apply_renames, options, do_apply=do_apply, sequential=sequential,
                   workers=workers, scheduler=scheduler, tls=tls, sample=sample, noun="rename")
    run_command(go)


@click.command("tag")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--fields", default="bpm,key", show_default=True, help="Which detected values to write.")
@click.option("--key-notation", type=click.Choice(["id3", "musical", "camelot", "open"]), default="id3",
              show_default=True, help="id3: musical per the ID3 spec ('Am', 'F#', 'Bbm').")
@click.option("--bpm-decimals", type=click.IntRange(0, 2), default=0, show_default=True,
              help="BPM rounding (ID3 TBPM and MP4 tmpo always hold an integer).")
@_cluster_options
def tag(out, fields, key_notation, bpm_decimals, min_confidence, do_apply, sequential, workers, scheduler, sample,
        tls):
    """Write detected BPM and key into the tags of the files of results folder OUT (preview unless --apply)."""
    def go():
        from crate_dask.actions.retag import TagOptions, apply_tags, plan_tags

        names = tuple(f.strip() for f in fields.split(",") if f.strip())
        try:
            options = TagOptions(fields=names, key_notation=key_notation, bpm_decimals=bpm_decimals,
                                 min_confidence=min_confidence)
        except FatalError as exc:
            raise ParameterError(str(exc)) from None
        _plan_then(out, plan_tags, apply_tags, options, do_apply=do_apply, sequential=sequential,
                   workers=workers, scheduler=scheduler, tls=tls, sample=sample, noun="write tags")
    run_command(go)


@click.command("undo")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--all", "undo_all", is_flag=True, help="Undo every rename and tag operation, newest first.")
def undo(out, undo_all):
    """Revert the last rename or tag operation of results folder OUT (resumable)."""
    def go():
        from crate_dask.actions.undo import undo_last

        n = 0
        while True:
            res = undo_last(out)
            if res is None:
                break
            op, counts = res
            n += 1
            click.echo(f"undid {op.kind} {op.op_id}: " +
                       (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing to revert"))
            if not undo_all:
                break
        if n == 0:
            click.echo("nothing to undo")
    run_command(go)


@click.group()
def _group():
    """crate-dask rename/tag/undo (standalone)."""


for _cmd in (rename, tag, undo):
    _group.add_command(_cmd)

if __name__ == "__main__":
    _group()
