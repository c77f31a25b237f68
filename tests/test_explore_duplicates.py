"""Duplicates on real re-encodings (PyAV's FFmpeg), found from the fingerprint computed during the analysis."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from crate_dask import open_results
from crate_dask.config import build_settings
from crate_dask.demo import write_audio
from crate_dask.explore.duplicates import group_duplicates
from crate_dask.library.tags import write_tags
from crate_dask.run.api import run_analysis
from crate_dask.synth import track
from tests.conftest import run_cli
from tests.reencode import encode, pad_silence, trim

SR = 22050


@pytest.fixture(scope="module")
def dup_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("dups")
    lib = root / "lib"
    (lib / "copies").mkdir(parents=True)
    a = track(bpm=124.0, key="A minor", seconds=30.0, sr=SR, seed=1)
    b = track(bpm=98.0, key="D major", seconds=30.0, sr=SR, seed=2)
    c = track(bpm=140.0, key="F# minor", seconds=30.0, sr=SR, seed=3)
    d = track(bpm=128.0, key="C major", seconds=30.0, sr=SR, seed=4)
    for name, y, tags in [("A.flac", a, {"artist": "Alpha", "title": "First", "album": "LP", "genre": "House"}),
                          ("B.flac", b, {"artist": "Beta", "title": "Second"}),
                          ("C.flac", c, {"artist": "Gamma", "title": "Third"}),
                          ("D other mix.flac", d, {"artist": "Gamma", "title": "Third"})]:
        write_audio(lib / name, y, SR)
        write_tags(lib / name, tags)
    shutil.copy(lib / "A.flac", lib / "copies" / "A copy.flac")                    # identical content
    encode(a, SR, lib / "A 192k.mp3", bitrate=192_000)                              # another codec and bitrate
    encode(trim(a, SR, start_s=1.5), SR, lib / "A trimmed.m4a")                     # trimmed intro, AAC
    encode(pad_silence(b, SR, 2.0), SR, lib / "B padded.opus", bitrate=64_000)     # padded, Opus at 64k
    out = root / "out"
    run_analysis(lib, out, build_settings(cli={"sequential": True, "progress": False}))
    return out


def _groups(df):
    return {frozenset(g["relpath"]) for _, g in df.groupby("group")}


def test_reencodings_and_copies_are_grouped_and_other_audio_is_not(dup_results):
    r = open_results(dup_results)
    assert len(r) == 8 and r.count("analysis_note is null") == 8
    df = r.duplicates()
    assert _groups(df) == {frozenset({"A.flac", "copies/A copy.flac", "A 192k.mp3", "A trimmed.m4a"}),
                           frozenset({"B.flac", "B padded.opus"})}
    a = df[df.relpath.str.startswith(("A", "copies"))]
    assert a[a.keep].relpath.tolist() == ["A.flac"]     # lossless, tagged, shortest path among the two copies
    assert "shortest path" in a[a.keep].why.iloc[0]
    assert set(a.match) >= {"identical"} and any(m.startswith("audio (BER") for m in a.match)
    b = df[df.relpath.str.startswith("B")]
    assert b[b.keep].relpath.tolist() == ["B.flac"] and "lossless" in b[b.keep].why.iloc[0]
    # same artist + title + duration, but the fingerprints say it is other audio: not a duplicate
    assert not df.relpath.isin(["C.flac", "D other mix.flac"]).any()


def test_audio_evidence_alone_finds_the_reencodings(dup_results):
    df = open_results(dup_results).duplicates(metadata=False)
    assert frozenset({"A.flac", "copies/A copy.flac", "A 192k.mp3", "A trimmed.m4a"}) in _groups(df)
    assert set(df.evidence) == {"audio"} and {m.split(" ")[0] for m in df.match} == {"identical", "audio"}


def test_likely_duplicates_by_normalised_tags_and_duration():
    rows = pd.DataFrame({
        "relpath": ["a.mp3", "b.flac", "c.mp3", "d.mp3"], "content_id": ["1", "2", "3", "4"],
        "artist": ["Daft Punk", "daft punk", "Daft Punk", "Other"],
        "title": ["One More Time (Original Mix)", "One more time", "One More Time", "One More Time"],
        "duration_s": [320.0, 321.5, 400.0, 320.0], "format": ["mp3", "flac", "mp3", "mp3"],
        "codec": ["mp3", "flac", "mp3", "mp3"], "bitrate_kbps": [320.0, 900.0, 320.0, 320.0], "error": [None] * 4})
    df = group_duplicates(rows)
    assert _groups(df) == {frozenset({"a.mp3", "b.flac"})}          # c is 80 s longer: another edit
    assert df.evidence.tolist() == ["metadata", "metadata"] and df[df.keep].relpath.tolist() == ["b.flac"]


def test_duplicates_cli_json(dup_results):
    p = run_cli("duplicates", str(dup_results), "--format", "json")
    assert p.returncode == 0, p.stderr
    groups = json.loads(p.stdout)["groups"]
    assert sorted(len(g["files"]) for g in groups) == [2, 4]
    assert {g["keep"] for g in groups} == {"A.flac", "B.flac"} and all(g["why"] for g in groups)
    assert np.all([g["evidence"] in ("identical", "audio", "metadata") for g in groups])
