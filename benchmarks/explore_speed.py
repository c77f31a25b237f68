"""Paging a big results folder with open_results, side by side with the pandas baseline (load all, then filter).

Usage::

    python benchmarks/explore_speed.py [--rows 100000] [--work DIR]

Writes a generated results dataset with the real schema (no audio behind it),
then runs each way in a fresh process and reports wall time and the growth of
the process's peak RSS (ru_maxrss) for: a filtered, sorted first page; a page
deep in the library; the count of a filter. The pandas baseline is what the
notebooks did before: ``pd.read_parquet(OUT)`` and pandas filtering.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WHERE = "bpm between 120 and 130 and key_camelot in ('8A', '9A')"

OURS = """
r = open_results(OUT)
a = r.page(0, 50, where=WHERE, order_by="-bpm")
b = r.page(len(r) // 2, 50)
n = r.count(WHERE)
"""
BASELINE = """
df = pd.read_parquet(OUT)
m = df[df.bpm.between(120, 130) & df.key_camelot.isin(["8A", "9A"])]
a = m.sort_values("bpm", ascending=False).head(50)
b = df.iloc[len(df) // 2:len(df) // 2 + 50]
n = len(m)
"""


def _run(out: Path, body: str) -> dict:
    code = textwrap.dedent(f"""
        import json, resource, time
        import pandas as pd
        from crate_dask import open_results
        OUT, WHERE = {str(out)!r}, {WHERE!r}
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
    """) + textwrap.dedent(body) + textwrap.dedent("""
        t = time.perf_counter() - t0
        print(json.dumps({"s": t, "rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024,
                          "n": n}))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    from crate_dask.explore.synthetic import write_synthetic_results

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    out = (a.work or Path(tempfile.mkdtemp(prefix="explore-bench-"))) / "out"
    if not out.exists():
        write_synthetic_results(out, n_rows=a.rows)
    ours, base = _run(out, OURS), _run(out, BASELINE)
    assert ours["n"] == base["n"], (ours, base)
    print(f"{a.rows} rows; filtered+sorted page, deep page and count ({ours['n']} matches)")
    print(f"open_results: {ours['s']:.2f} s, peak RSS +{ours['rss_mb']:.0f} MB")
    print(f"pandas (load all): {base['s']:.2f} s, peak RSS +{base['rss_mb']:.0f} MB")
    print(f"ratio: time x{base['s'] / ours['s']:.1f} faster, memory x{base['rss_mb'] / max(ours['rss_mb'], 1):.1f} "
          f"less (single process, one core)")


if __name__ == "__main__":
    main()
