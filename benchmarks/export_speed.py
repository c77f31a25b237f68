"""Export time and peak memory for generated result rows: the streaming exports against in-memory baselines.

Writes a results folder of N generated rows (partitions of 1000, realistic tags, paths
with accents and spaces, a grid on most rows, some error rows), then times each export
in a fresh process and reads its peak RSS (``ru_maxrss``), at two library sizes, so that
"memory flat in library size" is a measured ratio. Baselines in the same run:

* ``pyrekordbox``: the same tracks and grids written with pyrekordbox's ``RekordboxXml``
  (an in-memory ElementTree), the library the issue suggests for the format;
* ``pandas``: just loading the results into one DataFrame, what a non-streaming export starts with.

Single process: the per-core figure is the rows/s column.

    python benchmarks/export_speed.py                 # 10,000 and 100,000 rows
    python benchmarks/export_speed.py --sizes 2000 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_CHILD = r"""
import json, os, resource, sys, time
kind, out, dest = sys.argv[1:4]
import crate_dask.explore.export as ex, pyarrow, pandas   # imports before the baseline reading
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if kind == "rekordbox":
    ex.export_rekordbox(out, dest)
elif kind == "traktor":
    ex.export_traktor(out, dest)
elif kind == "m3u8":
    ex.write_playlists(out, dest, by="camelot")
elif kind == "pandas":
    df = pandas.read_parquet(out)
elif kind == "pyrekordbox":
    from pyrekordbox.rbxml import RekordboxXml
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    xml = RekordboxXml(name="rekordbox", version="6.0.0", company="Pioneer DJ")
    for t in ex.iter_tracks(out):
        tr = xml.add_track(t.path, TrackID=t.track_id, Name=t.text("title"), Artist=t.text("artist"),
                           Album=t.text("album"), Genre=t.text("genre"), Kind="MP3 File",
                           Size=int(t.row["size"] or 0), TotalTime=int(t.row["duration_s"] or 0),
                           AverageBpm=t.chosen.bpm or 0.0, Tonality=t.chosen.key or "")
        if t.chosen.beat_offset_s is not None:
            tr.add_tempo(Inizio=t.chosen.beat_offset_s, Bpm=t.chosen.bpm, Metro="4/4", Battito=1)
    xml.save(dest)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024}))
"""


def make_results(out: str, n: int, seed: int = 0) -> None:
    from crate_dask import schema
    from crate_dask.features.notation import KEYS, to_camelot, to_open_key
    from crate_dask.store.partitions import save_state, write_partition

    rng = np.random.default_rng(seed)
    root = "/music/Bibliothèque DJ"
    os.makedirs(out, exist_ok=True)
    genres = ["House", "Techno", "Drum & Bass", "Hip-Hop", "Disco", ""]
    for p0 in range(0, n, 1000):
        rows = []
        for i in range(p0, min(n, p0 + 1000)):
            rel = f"{genres[i % 6] or 'Misc'}/Artïst {i % 977}/{i:06d} Artïst {i % 977} - Tïtle {i} (Extended Mix).mp3"
            err = i % 50 == 0
            bpm = None if err else float(np.round(rng.uniform(80, 175), 2))
            key = None if err else KEYS[i % 24]
            rows.append({
                "path": f"{root}/{rel}", "path_bytes": f"{root}/{rel}".encode(), "relpath": rel, "ext": "mp3",
                "size": int(rng.integers(3e6, 2e7)), "mtime_ns": 1_700_000_000_000_000_000 + i,
                "duration_s": float(rng.uniform(180, 540)), "bitrate_kbps": 320.0, "sample_rate": 44100,
                "channels": 2, "artist": f"Artïst {i % 977}", "title": f"Tïtle {i} (Extended Mix)",
                "album": f"Album {i % 3001}", "genre": genres[i % 6], "year": 2000 + i % 25,
                "bpm": bpm, "bpm_confidence": 0.8, "key": key,
                "key_camelot": to_camelot(key) if key else None, "key_open": to_open_key(key) if key else None,
                "beat_offset_s": None if err else float(rng.uniform(0, 60 / bpm)),
                "downbeat_offset_s": None, "error": "DecodeError: generated" if err else None,
                "error_stage": "audio" if err else None,
            })
        write_partition(schema.to_table(rows), out, f"part-{p0 // 1000:05d}", {})
    save_state(out, {"root": root})


def run(kind: str, out: str, dest: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", _CHILD, kind, out, dest], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"{kind} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args()
    kinds = ["rekordbox", "traktor", "m3u8"] + ([] if args.no_baselines else ["pyrekordbox", "pandas"])
    table: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            out = os.path.join(tmp, f"results-{n}")
            t0 = time.perf_counter()
            make_results(out, n)
            print(f"generated {n} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            for kind in kinds:
                dest = os.path.join(tmp, f"{kind}-{n}" + ("" if kind == "m3u8" else ".xml"))
                table[kind, n] = res = run(kind, out, dest)
                size = (os.path.getsize(dest) if os.path.isfile(dest) else
                        sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest)) if os.path.isdir(dest) else 0)
                res["mb_out"] = size / 1e6
                print(f"{kind:12s} {n:7d} rows  {res['seconds']:7.2f} s  {n / res['seconds']:8.0f} rows/s  "
                      f"peak RSS {res['peak_mb']:7.1f} MB  growth {res['growth_mb']:7.1f} MB  output {res['mb_out']:6.1f} MB")
    small, large = args.sizes
    print(f"\nratios, {large} vs {small} rows (x{large / small:.0f} rows): time and memory growth")
    for kind in kinds:
        a, b = table[kind, small], table[kind, large]
        print(f"  {kind:12s} time x{b['seconds'] / a['seconds']:5.1f}   memory growth "
              f"{a['growth_mb']:6.1f} -> {b['growth_mb']:6.1f} MB")
    if not args.no_baselines:
        ours, theirs = table["rekordbox", large], table["pyrekordbox", large]
        print(f"\nrekordbox XML at {large} rows, streaming vs pyrekordbox: time x{theirs['seconds'] / ours['seconds']:.1f} "
              f"faster, memory growth {ours['growth_mb']:.1f} vs {theirs['growth_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
