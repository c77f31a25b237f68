"""Rename an analysed library from a template, then (optionally) write BPM and key tags.

Use it after ``crate-dask analyze LIBRARY --out OUT`` when you want the whole
clean-up in one script (e.g. from cron or a notebook): it previews by default,
prints the plan counts and where the plan datasets are, and only touches files
with ``--apply``. Everything it does is undone with ``crate-dask undo OUT --all``.

    python pipelines/rename_library.py OUT --template "{artist} - {title} [{key_camelot} {bpm:.0f}]"
    python pipelines/rename_library.py OUT --tag --key-notation camelot --apply
"""

from __future__ import annotations

import argparse
import sys

from crate_dask.actions.naming import DEFAULT_TEMPLATE, parse_template
from crate_dask.actions.rename import RenameOptions, apply_renames, plan_renames
from crate_dask.actions.retag import TagOptions, apply_tags, plan_tags
from crate_dask.config import RunSettings
from crate_dask.errors import CrateDaskError
from crate_dask.run.cluster import connect


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="results folder written by crate-dask analyze")
    ap.add_argument("--template", default=DEFAULT_TEMPLATE)
    ap.add_argument("--min-confidence", type=float, default=0.25)
    ap.add_argument("--tag", action="store_true", help="also write BPM and key tags (after renaming)")
    ap.add_argument("--key-notation", default="id3", choices=["id3", "musical", "camelot", "open"])
    ap.add_argument("--apply", action="store_true", help="change files (default: preview)")
    ap.add_argument("--workers", type=int, default=None, help="Dask workers (default: one per core)")
    ap.add_argument("--sequential", action="store_true", help="no Dask cluster")
    args = ap.parse_args(argv)
    try:
        parse_template(args.template)
        steps = [(plan_renames, apply_renames, RenameOptions(template=args.template,
                                                            min_confidence=args.min_confidence))]
        if args.tag:
            steps.append((plan_tags, apply_tags, TagOptions(key_notation=args.key_notation,
                                                           min_confidence=args.min_confidence)))
        with connect(RunSettings(sequential=args.sequential, workers=args.workers)) as client:
            for plan, apply, options in steps:
                s = (apply if args.apply else plan)(args.out, options, client=client)
                print(f"{s.op.kind}: plan {s.op.meta().get('counts')} -> {s.op.plan_dir}")
                print(f"  {'applied' if args.apply else 'preview'}: {s.counts}")
                for old, new in s.sample:
                    print(f"  {old}  ->  {new}")
    except CrateDaskError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
