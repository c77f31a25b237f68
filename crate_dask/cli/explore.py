"""The ``query``, ``mix``, ``fix``, ``duplicates`` and ``report`` commands (``cli.main`` registers them).

They read a results folder through :func:`crate_dask.open_results` (never the
whole dataset at once). A bad query, an unknown column or a bad value is one
line ``error: ...`` with a suggestion and exit code 2; a missing results folder
is exit code 1.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from crate_dask.cli.messages import run_command
from crate_dask.cli.progress import plural
from crate_dask.errors import FatalError, ParameterError

_OUT = click.argument("out", type=click.Path(file_okay=False, path_type=Path))
_FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                       show_default=True, help="Output format (csv and json go to stdout).")




def _open(out: Path):
    from crate_dask.explore.results import open_results

    if not out.is_dir():
        raise FatalError(f"no results folder {out}")
    return open_results(out)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".")
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def _emit(df, fmt: str, *, title: str | None = None, header: bool = True) -> None:
    if fmt == "json":
        for rec in df.to_dict("records"):
            sys.stdout.write(json.dumps({k: _jsonable(v) for k, v in rec.items()}, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        if header:
            w.writerow(df.columns)
        for rec in df.itertuples(index=False):
            w.writerow([_cell(v) for v in rec])
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_lines=False)
        for c in df.columns:
            t.add_column(c, overflow="fold", justify="right" if df[c].dtype.kind in "fi" else "left")
        for rec in df.itertuples(index=False):
            t.add_row(*[_cell(v) for v in rec])
        Console(soft_wrap=False).print(t)
    sys.stdout.flush()


def _columns(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [c.strip() for c in value.split(",") if c.strip()]


@click.command()
@_OUT
@click.option("--where", "-w", "where", default=None, metavar="EXPR",
              help="Filter: \"bpm between 120 and 130 and key_camelot in ('8A','9A')\", "
                   "\"artist contains 'daft' or not corrected\", or the short form \"bpm:120..130 key:8A artist:daft\".")
@click.option("--columns", "-c", default=None, metavar="A,B,...", help="Columns to show [default: a useful few].")
@click.option("--order-by", "-s", default=None, metavar="COL[,-COL]", help="Sort: bpm, -bpm or 'bpm desc'.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--limit", "-n", type=click.IntRange(min=0), default=50, show_default=True,
              help="Rows to show (0: all, streamed; not with --order-by on huge results).")
@click.option("--count", "count_only", is_flag=True, help="Print only the number of matching rows.")
@_FORMAT
def query(out: Path, where: str | None, columns: str | None, order_by: str | None, offset: int, limit: int,
          count_only: bool, fmt: str) -> None:
    """List the results in OUT that match a filter (like `beet ls bpm:120..130 key:8A`)."""

    def go() -> int:
        r = _open(out)
        q = r.query(where)
        if count_only:
            click.echo(r.count(q))
            return 0
        cols = _columns(columns)
        if limit == 0 and not order_by and fmt != "table":
            first = True
            skipped = 0
            for t in r.batches(cols, q):
                if skipped < offset:
                    cut = min(offset - skipped, t.num_rows)
                    skipped += cut
                    t = t.slice(cut)
                if t.num_rows:
                    _emit(t.to_pandas(), fmt, header=first)
                    first = False
            return 0
        df = r.page(offset, limit or len(r), where=q, order_by=order_by, columns=cols)
        if fmt == "table":
            total = r.count(q)
            _emit(df, fmt, title=f"{len(df)} of {total} matching files (of {len(r)})"
                  + (f", from {offset + 1}" if offset else ""))
        else:
            _emit(df, fmt)
        return 0

    run_command(go)


@click.command()
@_OUT
@click.argument("path")
@click.option("--bpm-tolerance", type=click.FloatRange(0, 0.5), default=0.06, show_default=True,
              help="Tempo difference allowed, as a fraction (also at half/double time).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=30, show_default=True)
@_FORMAT
def mix(out: Path, path: str, bpm_tolerance: float, limit: int, fmt: str) -> None:
    """List the tracks in OUT that mix with PATH: compatible Camelot key, tempo within tolerance."""

    def go() -> int:
        r = _open(out)
        seed = r.row(path, ["relpath", "bpm", "key_camelot", "corrected"])
        df = r.compatible(path, bpm_tolerance=bpm_tolerance, limit=limit)
        title = f"{len(df)} tracks mix with {seed['relpath']} ({_cell(seed['bpm'])} BPM, {seed['key_camelot']})"
        _emit(df, fmt, title=title)
        return 0

    run_command(go)


@click.command()
@_OUT
@click.argument("path", required=False)
@click.option("--bpm", type=float, default=None, help="The right tempo.")
@click.option("--double", is_flag=True, help="The right tempo is twice the current one.")
@click.option("--half", is_flag=True, help="The right tempo is half the current one.")
@click.option("--key", default=None, help="The right key, in any notation: Am, 8A, 1m, 'A minor'.")
@click.option("--clear", is_flag=True, help="Forget the correction of PATH (back to the detected values).")
@click.option("--from", "from_csv", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Bulk corrections: a CSV with a path column and bpm and/or key columns (an empty cell keeps).")
def fix(out: Path, path: str | None, bpm: float | None, double: bool, half: bool, key: str | None, clear: bool,
        from_csv: Path | None) -> None:
    """Record a manual BPM or key for PATH (kept across reruns and renames; used by rename and tag)."""

    def go() -> int:
        from crate_dask.store.corrections import load_corrections, save_corrections
        from crate_dask.store.partitions import exclusive

        if from_csv is not None:
            if path or bpm is not None or double or half or key or clear:
                raise ParameterError("--from takes its values from the CSV: give no PATH, --bpm, --key or --clear")
        else:
            if not path:
                raise ParameterError("give PATH (or --from corrections.csv)")
            if sum([bpm is not None, double, half]) > 1:
                raise ParameterError("give only one of --bpm, --double, --half")
            if clear and (bpm is not None or double or half or key):
                raise ParameterError("--clear takes no values")
            if not clear and bpm is None and not (double or half) and key is None:
                raise ParameterError("nothing to fix: give --bpm, --double, --half, --key or --clear")
        r = _open(out)
        with exclusive(out, "fix"):
            fixes = load_corrections(out)
            r.corrections = fixes
            if from_csv is not None:
                done = _fix_from_csv(r, fixes, from_csv)
                save_corrections(out, fixes)
                click.echo(f"{plural(done, 'correction')} recorded in {out}")
                return 0
            row = r.row(path, ["relpath", "path", "content_id", "fingerprint", "bpm", "key", "bpm_detected",
                               "key_detected", "corrected"] if "fingerprint" in r.columns else
                        ["relpath", "path", "content_id", "bpm", "key", "bpm_detected", "key_detected", "corrected"])
            if clear:
                had = fixes.clear(row)
                save_corrections(out, fixes)
                click.echo(f"{row['relpath']}: " + ("correction cleared" if had else "had no correction")
                           + f" (detected: {_cell(row['bpm_detected'])} BPM, {row['key_detected'] or 'no key'})")
                return 0
            new_bpm = bpm
            if double or half:
                cur = row["bpm"]
                if cur is None or (isinstance(cur, float) and math.isnan(cur)):
                    raise ParameterError(f"{row['relpath']} has no tempo to double or halve: give --bpm")
                new_bpm = cur * (2.0 if double else 0.5)
            e = fixes.set(row, bpm=new_bpm, key=key)
            save_corrections(out, fixes)
            click.echo(_fix_line(row, e))
        return 0

    run_command(go)


def _fix_line(row: dict, e: dict) -> str:
    from crate_dask.features.notation import to_camelot

    parts = []
    if e.get("bpm") is not None:
        parts.append(f"bpm {_cell(e['bpm'])} (detected {_cell(row['bpm_detected']) or 'none'})")
    if e.get("key") is not None:
        parts.append(f"key {e['key']} / {to_camelot(e['key'])} (detected {row['key_detected'] or 'none'})")
    return f"{row['relpath']}: " + ", ".join(parts)


def _fix_from_csv(r, fixes, csv_path: Path) -> int:
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        if "path" not in fields or not ({"bpm", "key"} & set(fields)):
            raise ParameterError(f"{csv_path}: needs a 'path' column and a 'bpm' and/or 'key' column "
                                 f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})")
        rows = list(reader)
    problems, todo = [], []
    cols = [c for c in ("relpath", "path", "content_id", "fingerprint", "bpm", "key", "bpm_detected",
                        "key_detected") if c in r.columns]
    for i, rec in enumerate(rows, start=2):
        p = (rec.get(fields["path"]) or "").strip()
        b = (rec.get(fields.get("bpm", ""), "") or "").strip() if "bpm" in fields else ""
        k = (rec.get(fields.get("key", ""), "") or "").strip() if "key" in fields else ""
        try:
            row = r.row(p, cols)
            from crate_dask.store.corrections import _check_bpm, normalise_key

            bv = _check_bpm(float(b)) if b else None
            kv = normalise_key(k) if k else None
        except ValueError as exc:   # ParameterError is a ValueError, and so is float("x")
            problems.append(f"line {i}: {exc}")
            continue
        if bv is not None or kv is not None:
            todo.append((row, bv, kv))
    if problems:
        raise ParameterError(f"{csv_path}: nothing recorded, {len(problems)} bad lines:\n  " + "\n  ".join(problems))
    for row, bv, kv in todo:
        fixes.set(row, bpm=bv, key=kv)
    return len(todo)


@click.command()
@_OUT
@click.option("--max-ber", type=click.FloatRange(0, 0.5), default=None,
              help="Fingerprint bit error rate under which two files are the same recording [default: 0.3].")
@click.option("--no-metadata", is_flag=True, help="Only audio evidence (identical content, fingerprint).")
@_FORMAT
def duplicates(out: Path, max_ber: float | None, no_metadata: bool, fmt: str) -> None:
    """Group files in OUT holding the same recording, and say which one to keep and why."""

    def go() -> int:
        r = _open(out)
        kw = {"metadata": not no_metadata}
        if max_ber is not None:
            kw["max_ber"] = max_ber
        df = r.duplicates(**kw)
        if fmt == "json":
            groups = []
            for gid, g in df.groupby("group", sort=True):
                groups.append({"group": int(gid), "evidence": g["evidence"].iloc[0],
                               "keep": g.loc[g["keep"], "relpath"].iloc[0], "why": g.loc[g["keep"], "why"].iloc[0],
                               "files": [{k: _jsonable(v) for k, v in rec.items()} for rec in
                                         g.drop(columns=["group"]).to_dict("records")]})
            sys.stdout.write(json.dumps({"groups": groups}, ensure_ascii=False, indent=1) + "\n")
            return 0
        if fmt == "csv":
            _emit(df, "csv")
            return 0
        n_groups = df["group"].nunique() if len(df) else 0
        shown = df.assign(keep=df["keep"].map({True: "KEEP", False: ""}))
        _emit(shown, "table", title=f"{n_groups} groups of duplicates, {len(df) - n_groups} files could go")
        return 0

    run_command(go)


@click.command()
@_OUT
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the report (one self-contained HTML file).")
@click.option("--max-ber", type=click.FloatRange(0, 0.5), default=None, help="See `duplicates`.")
def report(out: Path, html_path: Path, max_ber: float | None) -> None:
    """Write a self-contained HTML report of OUT: plots, QA, duplicates and a table of every track."""

    def go() -> int:
        from crate_dask.explore.report import write_report

        r = _open(out)
        info = write_report(r, html_path, **({"max_ber": max_ber} if max_ber is not None else {}))
        click.echo(f"report: {html_path} ({info['tracks']} tracks, {info['bytes'] / 1e6:.1f} MB)")
        return 0

    run_command(go)


COMMANDS = (query, mix, fix, duplicates, report)
