"""The whole life of a library through the real CLI: analyse, rename, tag, undo, re-analyse.

After crate_dask renames or tags files, the next `analyze` must not re-analyse their audio.
"""

import json

import pandas as pd
from conftest import run_cli

from crate_dask.demo import write_audio
from crate_dask.library.tags import write_tags
from crate_dask.synth import track

TRACKS = [("mp3", 124.0, "A minor"), ("flac", 128.0, "F major"), ("ogg", 98.0, "D minor"),
          ("m4a", 140.0, "G major"), ("aiff", 174.0, "C minor"), ("wav", 122.0, "E minor")]


def analyze(lib, out):
    r = run_cli("analyze", str(lib), "--out", str(out), "--sequential", "--json", "--partition-size", "4")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_rename_tag_undo_keep_the_audio_analysis(tmp_path):
    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    for i, (ext, bpm, key) in enumerate(TRACKS):
        p = lib / f"{i:02d} untitled.{ext}"
        write_audio(p, track(bpm=bpm, key=key, seconds=12.0, sr=22050, seed=i), 22050)
        write_tags(p, {"artist": f"Artist {i}", "title": f"Song {i}"})
    s = analyze(lib, out)
    assert s["files_computed"] == 6 and s["errors"] == 0
    first = pd.read_parquet(out).set_index("title")
    assert (first["bpm"].sub([b for _, b, _ in TRACKS]).abs() < 0.5).all()

    r = run_cli("rename", str(out), "--template", "{artist} - {title} [{key_camelot} {bpm:.0f}]", "--apply",
                "--sequential")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in lib.iterdir())[0].startswith("Artist 0 - Song 0 [8A 124]")
    s = analyze(lib, out)
    assert s["files_computed"] == 0 and s["files_reused"] == 6
    renamed = pd.read_parquet(out).set_index("title")
    assert renamed["relpath"].str.contains(r"\[").all()
    pd.testing.assert_series_equal(renamed["analysis_s"], first["analysis_s"])

    r = run_cli("tag", str(out), "--fields", "bpm,key", "--key-notation", "camelot", "--apply", "--sequential")
    assert r.returncode == 0, r.stderr
    s = analyze(lib, out)
    assert s["files_computed"] == 0
    tagged = pd.read_parquet(out).set_index("title")
    assert (tagged["tag_bpm"] == tagged["bpm"].round()).all()
    assert (tagged["tag_key"] == tagged["key_camelot"]).all()
    pd.testing.assert_series_equal(tagged["analysis_s"], first["analysis_s"])   # audio not re-analysed

    st = json.loads(run_cli("status", str(out), "--json").stdout)
    assert [(o["kind"], o["status"]) for o in st["operations"]] == [("rename", "applied"), ("tag", "applied")]

    r = run_cli("undo", str(out), "--all")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in lib.iterdir()) == sorted(f"{i:02d} untitled.{e}" for i, (e, _, _) in
                                                         enumerate(TRACKS))
    s = analyze(lib, out)
    assert s["files_computed"] == 0
    final = pd.read_parquet(out).set_index("title")
    assert final["tag_bpm"].isna().all() and final["tag_key"].isna().all()
    pd.testing.assert_series_equal(final["analysis_s"], first["analysis_s"])
