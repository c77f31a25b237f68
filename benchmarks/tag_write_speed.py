"""Benchmark: ``tag --apply`` and ``undo`` with byte-exact undo data, side by side with a plain tag write.

Usage::

    python benchmarks/tag_write_speed.py [--files 60] [--seconds 30] [--json]

Builds ``--files`` real files (MP3 with an ID3v2.4 tag and a 300 KB cover, FLAC
with a picture block, Ogg Vorbis; ``--seconds`` of audio each), a results
folder for them, then measures in one run, in one process (one core):

1. baseline: per file, copy + mutagen write of TBPM/TKEY + atomic replace (what
   the tag write did before: no hashes, no diff, no undo data);
2. ``plan_tags`` alone (after a warm-up plan, so imports are not counted);
3. ``apply_tags`` (plans again, then per file: journal, SHA-256 of both files,
   diff, undo data, swap); its apply phase is apply minus plan;
4. ``undo_last`` (rebuild byte for byte, checked against the original hash).

Reports files/s and MB/s, the ratios to the baseline, and the undo data kept
per file (journal side data and journal lines).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(root: Path, out: Path, n: int, seconds: float) -> None:
    import hashlib

    import numpy as np
    from mutagen.flac import FLAC, Picture
    from mutagen.id3 import APIC, ID3, TPE1, TXXX

    from crate_dask import schema
    from crate_dask.demo import write_audio
    from crate_dask.library.tags import read_tags
    from crate_dask.store import partitions as store

    cover = os.urandom(300_000)
    sr = 22050
    y = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype("float32")
    originals = {}
    for ext in ("mp3", "flac", "ogg"):
        p = root / f"original.{ext}"
        root.mkdir(parents=True, exist_ok=True)
        write_audio(p, y, sr)
        if ext == "mp3":
            t = ID3()
            t.add(TPE1(encoding=3, text=["Artist A", "Artist B"]))
            t.add(TXXX(encoding=3, desc="SERATO", text=["x"]))
            t.add(APIC(encoding=0, mime="image/jpeg", type=3, desc="", data=cover))
            t.save(p, v2_version=4)
        elif ext == "flac":
            f = FLAC(p)
            pic = Picture()
            pic.type, pic.mime, pic.data = 3, "image/jpeg", cover
            f.add_picture(pic)
            f.save()
        originals[ext] = p.read_bytes()
        p.unlink()
    rows = []
    for i in range(n):
        ext = ("mp3", "flac", "ogg")[i % 3]
        p = root / f"track {i:04d}.{ext}"
        p.write_bytes(originals[ext])
        st = p.stat()
        rows.append({**read_tags(p), "path": str(p), "path_bytes": os.fsencode(p), "relpath": p.name, "ext": ext,
                     "size": st.st_size, "mtime_ns": st.st_mtime_ns, "bpm": 126.0, "bpm_confidence": 0.9,
                     "key": "A minor", "key_confidence": 0.9,
                     "content_id": hashlib.sha1(originals[ext]).hexdigest()})
    out.mkdir(parents=True, exist_ok=True)
    store.write_partition(schema.to_table(rows), out, "part-00000", {})
    store.save_state(out, {"root": str(root)})


def baseline(files: list[Path]) -> float:
    """The plain write: copy, mutagen save (its defaults), replace."""
    from crate_dask.library.tags import open_audio
    from mutagen.id3 import ID3, TBPM, TKEY

    t0 = time.perf_counter()
    for p in files:
        tmp = p.with_name(f".bench-{uuid.uuid4().hex[:8]}{p.suffix}")
        shutil.copy2(p, tmp)
        f = open_audio(tmp)
        if isinstance(f.tags, ID3):
            f.tags.delall("TBPM")
            f.tags.delall("TKEY")
            f.tags.add(TBPM(encoding=3, text=["126"]))
            f.tags.add(TKEY(encoding=3, text=["Am"]))
            f.save(v2_version=3)
        else:
            f["BPM"], f["INITIALKEY"] = ["126"], ["Am"]
            f.save()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    from crate_dask.actions.retag import TagOptions, apply_tags, plan_tags
    from crate_dask.actions.undo import undo_last

    base = Path(tempfile.mkdtemp(prefix="crate-tag-bench-"))
    try:
        lib_a, out_a, lib_b, out_b = base / "a", base / "a-out", base / "b", base / "b-out"
        build(lib_a, out_a, a.files, a.seconds)
        shutil.copytree(lib_a, lib_b, copy_function=shutil.copy2)
        files = sorted(lib_b.iterdir())
        mb = sum(p.stat().st_size for p in files) / 1e6
        t_base = baseline(files)
        plan_tags(out_a, TagOptions())   # warm-up: imports, first Dask compute
        t0 = time.perf_counter()
        plan_tags(out_a, TagOptions())
        t_plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = apply_tags(out_a, TagOptions())
        t_apply = time.perf_counter() - t0 - t_plan
        assert s.counts == {"written": a.files}, s.counts
        t0 = time.perf_counter()
        _op, counts = undo_last(out_a)
        t_undo = time.perf_counter() - t0
        assert counts == {"restored": a.files}, counts
        data = sum(p.stat().st_size for p in out_a.glob("_crate/journal/tag-*/data/*.bin"))
        logs = sum(p.stat().st_size for p in out_a.glob("_crate/journal/tag-*/log/*.jsonl"))
        res = {"files": a.files, "mb": round(mb, 1), "cores": 1,
               "baseline_files_per_s": round(a.files / t_base, 1),
               "plan_files_per_s": round(a.files / t_plan, 1), "apply_files_per_s": round(a.files / t_apply, 1), "undo_files_per_s": round(a.files / t_undo, 1),
               "apply_mb_per_s": round(mb / t_apply, 1), "baseline_mb_per_s": round(mb / t_base, 1),
               "apply_vs_baseline": round(t_apply / t_base, 2), "undo_vs_baseline": round(t_undo / t_base, 2),
               "undo_data_bytes_per_file": round(data / a.files, 1),
               "journal_bytes_per_file": round(logs / a.files, 1)}
        if a.json:
            print(json.dumps(res))
        else:
            for k, v in res.items():
                print(f"{k:28s} {v}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
