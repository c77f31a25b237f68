"""Traktor NML export of a real analysed library, parsed with the standard library and checked field by field."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from conftest import run_cli
from export_library import BROKEN, SHORT, TRACKS, analysed

from crate_dask.explore.export.traktor import traktor_key
from crate_dask.features.beats import beat_phase_error
from crate_dask.features.notation import PITCH_CLASSES, format_key


@pytest.fixture
def results(tmp_path_factory, tmp_path):
    return analysed(tmp_path_factory.getbasetemp() / "export-cache", tmp_path, run_cli)


def entries(nml) -> dict[str, ET.Element]:
    root = ET.parse(nml).getroot()
    assert root.tag == "NML"
    coll = root.find("COLLECTION")
    found = {}
    for e in coll.findall("ENTRY"):
        loc = e.find("LOCATION")
        d = loc.get("DIR")
        assert d.startswith("/:") and d.endswith("/:")
        folders = [p for p in d.split("/:") if p]
        found["/" + "/".join(folders + [loc.get("FILE")])] = e
    assert int(coll.get("ENTRIES")) == len(found)
    return found


def test_entries_field_by_field(results, tmp_path):
    lib, out = results
    nml = tmp_path / "collection.nml"
    r = run_cli("export", str(out), "--traktor", str(nml), "--traktor-volume", "Macintosh HD")
    assert r.returncode == 0, r.stderr
    assert "traktor: 7 tracks" in r.stderr and "grid on 5" in r.stderr
    df = pd.read_parquet(out).set_index("relpath")
    found = entries(nml)
    assert set(found) == {str(lib / rel) for rel in df.index}
    for rel, (bpm, key, lead, tags) in TRACKS.items():
        e, row = found[str(lib / rel)], df.loc[rel]
        assert os.path.exists(str(lib / rel))
        assert e.get("TITLE") == tags["title"] and e.get("ARTIST") == tags["artist"]
        assert e.find("LOCATION").get("VOLUME") == "Macintosh HD"
        info = e.find("INFO")
        assert info.get("GENRE") == tags.get("genre") and int(info.get("FILESIZE")) == row["size"] // 1024
        assert float(info.get("PLAYTIME_FLOAT")) == pytest.approx(row.duration_s, abs=1e-5)
        assert info.get("KEY") == format_key(key, "open")
        tempo = float(e.find("TEMPO").get("BPM"))
        assert tempo == pytest.approx(row.bpm) and abs(tempo - bpm) < 0.1
        assert int(e.find("MUSICAL_KEY").get("VALUE")) == traktor_key(key)
        (cue,) = e.findall("CUE_V2")
        assert cue.get("TYPE") == "4" and cue.get("NAME") == "AutoGrid"
        assert beat_phase_error(float(cue.get("START")) / 1000, lead, bpm) < 0.020, rel
    for rel in (BROKEN, SHORT):
        e = found[str(lib / rel)]
        assert e.find("TEMPO") is None and e.find("CUE_V2") is None and e.find("MUSICAL_KEY") is None


def test_traktor_key_numbering():
    # Traktor: 0-11 C..B major by semitones, 12-23 C..B minor.
    assert [traktor_key(f"{pc} major") for pc in PITCH_CLASSES] == list(range(12))
    assert [traktor_key(f"{pc} minor") for pc in PITCH_CLASSES] == list(range(12, 24))


def test_follows_rename(results, tmp_path):
    lib, out = results
    assert run_cli("rename", str(out), "--template", "{artist} - {title}", "--apply", "--sequential").returncode == 0
    nml = tmp_path / "c.nml"
    assert run_cli("export", str(out), "--traktor", str(nml)).returncode == 0
    found = entries(nml)
    assert all(os.path.exists(p) for p in found)
    assert str(lib / "Techno/Kölsch - 100% #1.m4a") in found
