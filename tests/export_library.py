"""A small analysed library for the export tests: real tracks with known beats, awkward names, a broken file.

Built once per test session with the real ``crate-dask analyze`` (sequential, no cluster:
the exports are what is tested, the cluster has its own tests) and copied for tests that
rename files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask.demo import write_audio
from crate_dask.library.tags import write_tags
from crate_dask.store.layout import state_path
from crate_dask.store.partitions import META_KEY, list_parts, load_state, save_state, write_partition
from crate_dask.synth import track

SR = 22050

#: relpath -> (bpm, key, first beat in s, tags). Names with spaces, accents, '&', '%', '#', brackets.
TRACKS = {
    "House/Âme & Ümlaut - Dä Track.mp3": (128.0, "A minor", 0.20, {"artist": "Âme & Ümlaut", "title": "Dä Track",
                                                                   "genre": "House"}),
    "House/deep cuts/Bicep - Glue.flac": (122.0, "D minor", 0.50, {"artist": "Bicep", "title": "Glue",
                                                                  "genre": "House", "bpm": "61", "key": "Dm"}),
    "Techno/100% #1 [edit].m4a": (134.0, "C major", 0.05, {"artist": "Kölsch", "title": "100% #1",
                                                          "genre": "Techno"}),
    "Techno/Charlotte de Witte - Sgadi.wav": (135.0, "F# minor", 0.31, {"artist": "Charlotte de Witte",
                                                                       "title": "Sgadi", "genre": "Techno"}),
    "root track.aiff": (100.0, "E major", 0.0, {"artist": "Root", "title": "Track", "bpm": "100", "key": "8B"}),
}
BROKEN = "Techno/broken file.mp3"
SHORT = "short clip.wav"
SECONDS = 20.0


def build(root: Path) -> None:
    for i, (rel, (bpm, key, lead, tags)) in enumerate(TRACKS.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        y = np.concatenate([np.zeros(int(round(lead * 44100)), np.float32),
                            track(bpm=bpm, key=key, seconds=SECONDS, sr=44100, seed=i)])
        write_audio(p, y, 44100)
        write_tags(p, tags)
    (root / BROKEN).write_bytes(b"\xff\xfb\x90\x00" + b"not really mpeg audio" * 50)
    t = np.arange(SR) / SR
    write_audio(root / SHORT, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)


def analysed(cache: Path, dest: Path, run_cli) -> tuple[Path, Path]:
    """(library root, results folder) under ``dest``: a copy of the session's analysed library."""
    src_lib, src_out = cache / "library", cache / "results"
    if not state_path(src_out).exists():
        build(src_lib)
        r = run_cli("analyze", str(src_lib), "--out", str(src_out), "--sequential", "--no-progress")
        assert r.returncode == 0, r.stderr
    lib, out = dest / "library", dest / "results"
    shutil.copytree(src_lib, lib)
    shutil.copytree(src_out, out)
    state = load_state(out)
    state["root"] = str(lib)          # the copy's own library, in the bookkeeping and in the rows
    save_state(out, state)
    for part in list_parts(out):
        pf = pq.ParquetFile(part)
        table = pf.read()
        paths = [os.path.join(lib, *rel.split("/")) for rel in table.column("relpath").to_pylist()]
        table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths))
        table = table.set_column(table.schema.get_field_index("path_bytes"), "path_bytes",
                                 pa.array([os.fsencode(p) for p in paths], pa.binary()))
        meta = json.loads((pf.schema_arrow.metadata or {}).get(META_KEY, b"{}"))
        write_partition(table, out, part.stem, meta)
    return lib, out
