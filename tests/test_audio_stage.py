"""The audio stage through the real pipeline and CLI: every format, degenerate audio, time limits."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from crate_dask.demo import write_audio
from crate_dask.library.tags import write_tags
from crate_dask.synth import track

CASES = [("house.mp3", 124.0, "A minor"), ("techno.flac", 132.0, "F# minor"), ("disco.ogg", 118.0, "C major"),
         ("dnb.m4a", 174.0, "D minor"), ("hiphop.wav", 92.0, "Eb major"), ("garage.aiff", 130.0, "G minor"),
         ("deep.opus", 122.0, "E major")]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    lib = root / "lib"
    lib.mkdir()
    for name, bpm, key in CASES:
        sr = 48000 if name.endswith(".opus") else 44100
        write_audio(lib / name, track(bpm=bpm, key=key.replace("Eb", "D#"), seconds=20.0, sr=sr), sr)
        write_tags(lib / name, {"artist": "Synth", "title": name})
    write_audio(lib / "silence.wav", np.zeros(44100 * 10, np.float32), 44100)
    write_audio(lib / "blip.flac", track(bpm=120.0, key="C major", seconds=1.0, sr=44100), 44100)
    # valid ID3 tags and the first MPEG frames, then garbage instead of audio
    broken = lib / "corrupt after tags.mp3"
    write_audio(broken, track(bpm=124.0, key="A minor", seconds=20.0, sr=44100), 44100)
    write_tags(broken, {"artist": "Still", "title": "Tagged"})
    data = broken.read_bytes()
    id3_end = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])   # syncsafe tag size
    noise = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    broken.write_bytes(data[:id3_end + 2000] + noise)
    r = run_cli("analyze", str(lib), "--out", str(root / "out"), "--workers", "2", "--json", "--partition-size", "4")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), pd.read_parquet(root / "out").set_index("title", drop=False)


def test_every_format_gets_tempo_and_key(analysed):
    summary, df = analysed
    assert summary["rows"] == len(CASES) + 3
    for name, bpm, key in CASES:
        row = df.loc[name]
        assert row["error"] is None or pd.isna(row["error"]), (name, row["error"])
        assert abs(row["bpm"] - bpm) <= 0.2, (name, row["bpm"])
        assert row["key"] == key.replace("Eb", "D#"), (name, row["key"])
        assert 0 < row["bpm_confidence"] <= 1 and 0 < row["key_confidence"] <= 1
        assert row["key_camelot"] and row["key_open"] and -40 < row["loudness_lufs"] < 0
        assert 0 < row["analysis_s"] < 30


def test_degenerate_audio_is_data_with_a_reason(analysed):
    _, df = analysed
    by_rel = df.set_index("relpath")
    silent = by_rel.loc["silence.wav"]
    assert pd.isna(silent["bpm"]) and pd.isna(silent["key"]) and silent["analysis_note"] == "silent"
    blip = by_rel.loc["blip.flac"]
    assert pd.isna(blip["bpm"]) and "too short" in blip["analysis_note"]


def test_undecodable_audio_keeps_its_tags(analysed):
    _, df = analysed
    row = df.set_index("relpath").loc["corrupt after tags.mp3"]
    assert row["error_stage"] == "audio" and row["error"]
    assert (row["artist"], row["title"]) == ("Still", "Tagged")


def test_file_time_limit_is_recorded_and_the_run_goes_on(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, bpm, key in CASES[:2]:
        write_audio(lib / name, track(bpm=bpm, key=key, seconds=20.0, sr=44100), 44100)
    r = run_cli("analyze", str(lib), "--out", str(tmp_path / "out"), "--sequential", "--json",
                "--file-timeout", "0.001")
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(tmp_path / "out")
    # the limit bounds reading the tags too (1 ms is less than a round trip to the reader)
    assert (df["error_type"] == "timeout").all() and (df["error_limit"] == 0.001).all()
    assert df["error_stage"].isin(["tags", "audio"]).all() and df["error"].str.contains("limit").all()
