"""rekordbox XML export of a real analysed library, read back with pyrekordbox; after rename, undo and --relocate-from."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from export_library import BROKEN, SHORT, TRACKS, analysed
from pyrekordbox.rbxml import RekordboxXml

from crate_dask.features.beats import beat_phase_error
from crate_dask.features.notation import format_key, to_camelot


@pytest.fixture
def results(tmp_path_factory, tmp_path):
    return analysed(tmp_path_factory.getbasetemp() / "export-cache", tmp_path, run_cli)


def read_back(xml_path: Path) -> dict[str, object]:
    """pyrekordbox's view: absolute path -> Track (its decode_path drops the leading '/' of POSIX paths)."""
    xml = RekordboxXml(xml_path)
    return {"/" + t["Location"].lstrip("/"): t for t in xml.get_tracks()}, xml


def test_every_track_with_location_bpm_key_and_grid(results, tmp_path):
    lib, out = results
    dest = tmp_path / "collection.xml"
    r = run_cli("export", str(out), "--rekordbox", str(dest), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)[0]
    df = pd.read_parquet(out)
    tracks, xml = read_back(dest)
    assert xml.num_tracks == len(df) == len(TRACKS) + 2 == len(tracks)
    assert set(tracks) == {str(lib / rel) for rel in df.relpath}          # every row, its real path
    assert all(os.path.exists(p) for p in tracks)
    for rel, (bpm, key, lead, _tags) in TRACKS.items():
        t = tracks[str(lib / rel)]
        row = df[df.relpath == rel].iloc[0]
        assert t["AverageBpm"] == pytest.approx(row.bpm, abs=0.005)
        assert abs(t["AverageBpm"] - bpm) < 0.1, rel
        assert t["Tonality"] == format_key(key, "id3")
        assert t["Kind"].endswith(" File") and t["Size"] == row["size"] and t["TotalTime"] == round(row.duration_s)
        (tempo,) = t.tempos
        assert tempo["Bpm"] == pytest.approx(t["AverageBpm"]) and tempo["Metro"] == "4/4"
        # The grid lands on the beats as generated (through the MP3/AAC encoders and the decoder), in
        # rekordbox's timeline: for LAME MP3s it keeps the encoder + decoder delay the decoders skip.
        shift = 1105 / 44100 if rel.endswith(".mp3") else 0.0
        assert row.gapless_delay_s == pytest.approx(shift, abs=1e-6)
        assert beat_phase_error(tempo["Inizio"], lead + shift, bpm) < 0.020, rel
        if math_finite(row.downbeat_offset_s):
            bar_start = (tempo["Inizio"] - (tempo["Battito"] - 1) * 60 / tempo["Bpm"])
            assert beat_phase_error(bar_start, lead, bpm / 4) < 0.020, rel
    # Bad input is exported too, without a grid, and counted.
    for rel in (BROKEN, SHORT):
        t = tracks[str(lib / rel)]
        assert t.tempos == [] and t["AverageBpm"] == 0
    assert summary["tracks"] == len(df) and summary["with_grid"] == len(TRACKS)
    assert summary["no_grid_error"] == 1 and summary["no_grid_no_bpm"] == 1 and summary["missing_files"] == 0
    # Locations are percent-encoded UTF-8 (spaces, '&', '%', '#', accents), as rekordbox writes them.
    raw = dest.read_text(encoding="utf-8")
    assert "House/%C3%82me%20%26%20%C3%9Cmlaut%20-%20D%C3%A4%20Track.mp3" in raw
    assert "Techno/100%25%20%231%20%5Bedit%5D.m4a" in raw
    # Playlists: by Camelot key, BPM band and folder; each grouping holds every track once.
    folder = xml.get_playlist("crate-dask")
    for grouping in ("By key (Camelot)", "By BPM", "By folder"):
        node = folder.get_playlist(grouping)
        ids = [k for p in node.get_playlists() for k in p.get_tracks()]
        assert sorted(ids) == sorted(t["TrackID"] for t in tracks.values()), grouping
    am = xml.get_playlist("crate-dask", "By key (Camelot)", to_camelot("A minor"))
    assert am.get_tracks() == [tracks[str(lib / "House/Âme & Ümlaut - Dä Track.mp3")]["TrackID"]]
    assert {p.name for p in xml.get_playlist("crate-dask", "By folder").get_playlists()} == {
        "House", "House/deep cuts", "Techno", "(library root)"}


def math_finite(v) -> bool:
    return v is not None and v == v


def test_key_notation_prefer_tags_and_no_lame_shift(results, tmp_path):
    lib, out = results
    dest = tmp_path / "c.xml"
    assert run_cli("export", str(out), "--rekordbox", str(dest), "--key-notation", "camelot",
                   "--prefer", "tags", "--no-lame-shift").returncode == 0
    tracks, _ = read_back(dest)
    (tempo,) = tracks[str(lib / "House/Âme & Ümlaut - Dä Track.mp3")].tempos
    assert beat_phase_error(tempo["Inizio"], TRACKS["House/Âme & Ümlaut - Dä Track.mp3"][2], 128.0) < 0.020
    glue = tracks[str(lib / "House/deep cuts/Bicep - Glue.flac")]
    # The file's own tags win: 61 BPM (half the analysed 122: the grid still fits) and Dm.
    assert glue["AverageBpm"] == 61 and glue["Tonality"] == "7A" and len(glue.tempos) == 1
    assert tracks[str(lib / "House/Âme & Ümlaut - Dä Track.mp3")]["Tonality"] == "8A"   # no tag: the analysis


def test_a_manual_correction_is_what_is_exported(results, tmp_path):
    lib, out = results
    glue = lib / "House/deep cuts/Bicep - Glue.flac"
    r = run_cli("fix", str(out), str(glue), "--bpm", "61", "--key", "8A")
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "c.xml"
    assert run_cli("export", str(out), "--rekordbox", str(dest)).returncode == 0
    tracks, _ = read_back(dest)
    t = tracks[str(glue)]
    assert t["AverageBpm"] == 61 and t["Tonality"] == "Am"          # the correction, not the analysed 122 / Dm
    assert len(t.tempos) == 1                                       # half the analysed tempo: the grid still fits
    other = tracks[str(lib / "Techno/Charlotte de Witte - Sgadi.wav")]
    assert abs(other["AverageBpm"] - 135.0) < 0.1                   # the others keep the analysis


def test_follows_renames_and_undo_without_reanalysis(results, tmp_path):
    lib, out = results
    r = run_cli("rename", str(out), "--template", "{artist} - {title} [{key_camelot}]", "--apply", "--sequential")
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "after.xml"
    assert run_cli("export", str(out), "--rekordbox", str(dest)).returncode == 0
    tracks, _ = read_back(dest)
    assert all(os.path.exists(p) for p in tracks)
    assert str(lib / "House/Âme & Ümlaut - Dä Track [8A].mp3") in tracks
    assert str(lib / "House/Âme & Ümlaut - Dä Track.mp3") not in tracks
    assert run_cli("undo", str(out)).returncode == 0
    assert run_cli("export", str(out), "--rekordbox", str(dest)).returncode == 0
    tracks, _ = read_back(dest)
    assert set(tracks) == {str(lib / rel) for rel in pd.read_parquet(out).relpath}
    assert all(os.path.exists(p) for p in tracks)


def test_relocate_keeps_ids_cues_and_ratings(results, tmp_path):
    lib, out = results
    old = tmp_path / "old.xml"
    assert run_cli("export", str(out), "--rekordbox", str(old)).returncode == 0
    # The DJ imports it into rekordbox, sets cues and ratings, and rekordbox exports its collection:
    # here, the same XML with a hot cue, a rating and a track of another library added.
    tree = ET.parse(old)
    coll = tree.getroot().find("COLLECTION")
    target = next(t for t in coll if t.get("Location").endswith("Glue.flac"))
    target.set("Rating", "204")
    target.set("TrackID", "9001")                     # rekordbox's own IDs
    ET.SubElement(target, "POSITION_MARK", Name="drop", Type="0", Start="32.123", Num="0")
    ET.SubElement(coll, "TRACK", TrackID="77", Name="elsewhere", Location="file://localhost/other/x.mp3")
    coll.set("Entries", str(len(coll)))
    tree.write(old, encoding="UTF-8", xml_declaration=True)
    old_ids = {t.get("Location"): t.get("TrackID") for t in coll}

    r = run_cli("rename", str(out), "--template", "{artist} - {title} ({bpm:.0f})", "--apply", "--sequential")
    assert r.returncode == 0, r.stderr
    new = tmp_path / "new.xml"
    r = run_cli("export", str(out), "--rekordbox", str(new), "--relocate-from", str(old), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)[0]
    tracks, xml = read_back(new)
    assert xml.num_tracks == len(old_ids)
    glue = tracks[str(lib / "House/deep cuts/Bicep - Glue (122).flac")]
    assert glue["TrackID"] == 9001 and glue["Rating"] == 4
    assert [(m["Name"], m["Start"]) for m in glue.marks] == [("drop", 32.123)]
    assert "/other/x.mp3" in tracks and tracks["/other/x.mp3"]["TrackID"] == 77
    assert all(os.path.exists(p) for p in tracks if p != "/other/x.mp3")
    assert summary["relocated"] == len(TRACKS) and summary["kept"] == 1
    # The playlists keep working: every key is an ID of the collection.
    ids = {t["TrackID"] for t in tracks.values()}
    for p in xml.get_playlist("crate-dask", "By BPM").get_playlists():
        assert set(p.get_tracks()) <= ids


def test_usage_errors(results, tmp_path):
    _lib, out = results
    r = run_cli("export", str(out))
    assert r.returncode == 2 and r.stderr.startswith("error: nothing to export")
    r = run_cli("export", str(tmp_path / "nowhere"), "--rekordbox", str(tmp_path / "x.xml"))
    assert r.returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("export", str(empty), "--rekordbox", str(tmp_path / "x.xml"))
    assert r.returncode == 1 and "error: no results" in r.stderr and not (tmp_path / "x.xml").exists()
    r = run_cli("export", str(out), "--traktor", str(tmp_path / "no such folder" / "c.nml"))
    assert r.returncode == 1 and r.stderr.startswith("error: cannot write") and len(r.stderr.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_leaves_no_partial_file(results, tmp_path):
    import subprocess

    _lib, out = results
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        old = disk / "collection.xml"
        old.write_text("the previous export")
        with open(disk / "filler", "wb", buffering=0) as fh:     # fill the disk to the last block
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        r = run_cli("export", str(out), "--rekordbox", str(old))
        assert r.returncode == 1 and r.stderr.startswith("error: cannot write"), r.stderr
        assert old.read_text() == "the previous export"                    # the old file is intact
        assert sorted(p.name for p in disk.iterdir()) == ["collection.xml", "filler"]   # no temp file left
    finally:
        subprocess.run(["umount", str(disk)])


def test_a_name_that_is_not_utf8_reaches_its_file_in_every_export(tmp_path):
    """rekordbox gets the name's bytes percent-encoded, M3U8 the bytes themselves, Traktor valid XML (counted
    unsupported); all of them follow a rename of the file without a new analysis."""
    import numpy as np

    from crate_dask.demo import write_audio
    from crate_dask.explore.export.rekordbox import location_path
    from crate_dask.library.tags import write_tags
    from crate_dask.synth import track

    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    name = os.fsdecode(b"caf\xe9 latin1.wav")   # as os.listdir gives it: surrogate-escaped
    write_audio(lib / "plain.wav", track(bpm=120.0, key="A minor", seconds=12.0, sr=22050, seed=1).astype(np.float32),
                22050)
    write_tags(lib / "plain.wav", {"artist": "Artist", "title": "Renamed"})
    os.rename(lib / "plain.wav", lib / name)
    assert run_cli("analyze", str(lib), "--out", str(out), "--sequential", "--no-progress").returncode == 0

    def exported() -> tuple[bytes, bytes, ET.ElementTree, dict]:
        xml, nml, pl = tmp_path / "r.xml", tmp_path / "t.nml", tmp_path / "pl"
        p = run_cli("export", str(out), "--rekordbox", str(xml), "--traktor", str(nml), "--json")
        assert p.returncode == 0, p.stderr
        assert run_cli("playlists", str(out), "--out-dir", str(pl), "--by", "camelot").returncode == 0
        loc = ET.parse(xml).find(".//COLLECTION/TRACK").get("Location")
        m3u = b"".join((pl / f).read_bytes() for f in os.listdir(pl)).splitlines()[-1]
        return location_path(loc), m3u, ET.parse(nml), json.loads(p.stdout)

    loc, m3u, nml, summary = exported()
    want = os.fsencode(lib / name)
    assert loc == want and m3u == want and os.path.exists(loc)
    assert "%E9" in ET.tostring(ET.parse(tmp_path / "r.xml").getroot(), encoding="unicode")
    assert nml.find(".//LOCATION").get("FILE") == "caf\\xe9 latin1.wav"
    assert [s["unsupported"] for s in summary if s["target"] == "traktor"] == [1], summary
    assert run_cli("rename", str(out), "--template", "{title}", "--apply", "--sequential").returncode == 0
    assert os.listdir(lib) == ["Renamed.wav"]
    loc, m3u, nml, summary = exported()
    assert loc == m3u == os.fsencode(lib / "Renamed.wav")
    assert nml.find(".//LOCATION").get("FILE") == "Renamed.wav"
    assert [s["unsupported"] for s in summary if s["target"] == "traktor"] == [0], summary
