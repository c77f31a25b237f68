"""M3U8 playlists of a real analysed library: entries equal to the tracks, paths that open, after rename and undo."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli
from export_library import BROKEN, SHORT, TRACKS, analysed


@pytest.fixture
def results(tmp_path_factory, tmp_path):
    return analysed(tmp_path_factory.getbasetemp() / "export-cache", tmp_path, run_cli)


def read_m3u8(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """file name -> [(EXTINF line, path)], checking the extended M3U structure."""
    found = {}
    for f in sorted(folder.glob("*.m3u8")):
        raw = f.read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")        # no BOM: some players show it as a character
        lines = raw.decode("utf-8").split("\n")
        assert lines[0] == "#EXTM3U" and lines[-1] == ""
        body = lines[1:-1]
        assert len(body) % 2 == 0
        found[f.name] = [(body[i], body[i + 1]) for i in range(0, len(body), 2)]
        assert all(inf.startswith("#EXTINF:") for inf, _ in found[f.name])
    return found


@pytest.mark.parametrize("by", ["camelot", "bpm", "genre", "folder"])
def test_entries_are_the_tracks(results, tmp_path, by):
    lib, out = results
    dest = tmp_path / "lists"
    r = run_cli("playlists", str(out), "--by", by, "--out-dir", str(dest))
    assert r.returncode == 0, r.stderr
    lists = read_m3u8(dest)
    paths = [p for entries in lists.values() for _, p in entries]
    df = pd.read_parquet(out)
    assert sorted(paths) == sorted(str(lib / rel) for rel in df[df.error.isna()].relpath)   # every playable track once
    assert str(lib / BROKEN) not in paths and "1 with errors left out" in r.stderr
    assert all(os.path.isabs(p) and os.path.exists(p) for p in paths)
    if by == "camelot":
        assert [p for _, p in lists["Camelot 08A.m3u8"]] == [str(lib / "House/Âme & Ümlaut - Dä Track.mp3")]
        (inf, _), = lists["Camelot 08A.m3u8"]
        row = df[df.relpath == "House/Âme & Ümlaut - Dä Track.mp3"].iloc[0]
        assert inf == f"#EXTINF:{round(row.duration_s)},Âme & Ümlaut - Dä Track"
        assert [p for _, p in lists["Camelot No key.m3u8"]] == [str(lib / SHORT)]   # no key, but playable
    if by == "bpm":   # zero-padded: a folder listing sorts them by tempo
        bands = sorted(n for n in lists if n != "BPM unknown.m3u8")
        assert bands == sorted(bands, key=lambda n: float(n.split()[1].split("-")[0])) and "BPM 100-105.m3u8" in lists
    if by == "genre":
        assert {n for n in lists} == {"Genre House.m3u8", "Genre Techno.m3u8", "Genre No genre.m3u8"}


def test_relative_paths_after_rename_and_undo(results, tmp_path):
    lib, out = results
    dest = lib / "Playlists"
    assert run_cli("rename", str(out), "--template", "{artist} - {title} [{bpm:.0f}]", "--apply",
                   "--sequential").returncode == 0
    assert run_cli("playlists", str(out), "--by", "folder", "--out-dir", str(dest), "--relative").returncode == 0
    lists = read_m3u8(dest)
    paths = [p for entries in lists.values() for _, p in entries]
    assert all(not os.path.isabs(p) and (dest / p).exists() for p in paths)
    assert "../House/Âme & Ümlaut - Dä Track [128].mp3" in paths
    assert run_cli("undo", str(out)).returncode == 0
    assert run_cli("playlists", str(out), "--by", "folder", "--out-dir", str(dest), "--relative").returncode == 0
    paths = [p for entries in read_m3u8(dest).values() for _, p in entries]
    df = pd.read_parquet(out)
    assert sorted((dest / p).resolve() for p in paths) == sorted((lib / rel).resolve()
                                                                 for rel in df[df.error.isna()].relpath)
    assert len(paths) == len(TRACKS) + 1   # the broken file is left out
