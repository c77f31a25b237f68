"""A tag write changes only the fields it writes, and undo restores every file byte for byte.

Real files with what DJ libraries carry: ID3v2.4 and v2.3 tags with multi-value frames, TXXX
frames, comments and embedded pictures, an ID3v1 tail; FLAC with a picture block and padding;
Ogg Vorbis and Opus, M4A, WAV and AIFF with ID3 chunks.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import mutagen
import pytest
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, COMM, ID3, TBPM, TCON, TPE1, TXXX
from test_rename import build_results

from crate_dask.actions.retag import TagOptions, apply_tags
from crate_dask.actions.undo import undo_last

DETECTED = {"bpm": 127.6, "bpm_confidence": 0.9, "key": "A minor", "key_confidence": 0.8}
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(30000) + b"\xff\xd9"   # a 30 KB "cover"


def id3_frames(tags: ID3) -> dict:
    """Every frame as stored (text lists, descriptions, picture bytes), by frame key."""
    return {k: repr(getattr(f, "text", None) or getattr(f, "data", None) or f) for k, f in tags.items()}


def decorate_id3(path: Path, version: int) -> None:
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    t = f.tags
    t.add(TPE1(encoding=3, text=["Artist A", "Artist B"]))   # a two-value artist
    t.add(TCON(encoding=3, text=["House", "Deep House"]))
    t.add(TXXX(encoding=3, desc="SERATO_PLAYCOUNT", text=["12"]))
    t.add(TXXX(encoding=3, desc="Rating", text=["5"]))
    t.add(COMM(encoding=3, lang="eng", desc="", text=["my notes"]))
    t.add(APIC(encoding=0, mime="image/jpeg", type=3, desc="cover", data=JPEG))
    t.add(TBPM(encoding=3, text=["100"]))
    f.save(v2_version=version, padding=lambda info: 2048)
    if path.suffix != ".mp3":
        return
    with open(path, "ab") as fh:   # an ID3v1 tail, as old rippers leave it
        fh.write(b"TAG" + b"Old v1 title".ljust(30, b"\0") + b"Old v1 artist".ljust(30, b"\0") + bytes(65))


def decorate(path: Path) -> None:
    """What a DJ's files carry besides our fields, per format."""
    if path.name in ("v24.mp3", "t.wav"):
        decorate_id3(path, 4)
    elif path.name in ("v23.mp3", "t.aiff"):
        decorate_id3(path, 3)
    elif path.name == "pic.flac":
        f = FLAC(path)
        pic = Picture()
        pic.type, pic.mime, pic.data = 3, "image/jpeg", JPEG
        f.add_picture(pic)
        f["ARTIST"] = ["Artist A", "Artist B"]
        f.save(padding=lambda info: 4096)


@pytest.fixture()
def library(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    names = ["v24.mp3", "v23.mp3", "pic.flac", "t.ogg", "t.m4a", "t.wav", "t.aiff"]
    build_results(root, out, {n: {"artist": "A", "title": n, **DETECTED} for n in names}, parts=1,
                  decorate=decorate)
    return root, out


def test_tag_write_changes_only_its_fields_and_undo_restores_every_byte(library):
    root, out = library
    before = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.iterdir()}
    id3_before = {n: (ID3(root / n).version, id3_frames(ID3(root / n))) for n in ("v24.mp3", "v23.mp3")}
    v1_before = (root / "v24.mp3").read_bytes()[-128:]
    sizes = {p.name: p.stat().st_size for p in root.iterdir()}

    s = apply_tags(out, TagOptions(key_notation="camelot"))
    assert s.counts == {"written": 7}
    for n, (version, frames) in id3_before.items():
        t = ID3(root / n)
        assert t.version == version                                    # v2.4 stays v2.4, v2.3 stays v2.3
        now = id3_frames(t)
        assert now.pop("TBPM") != frames.pop("TBPM") and now.pop("TKEY") == repr(["8A"])
        assert now == frames                                           # every other frame as it was
    assert ID3(root / "v24.mp3")["TPE1"].text == ["Artist A", "Artist B"]
    assert (root / "v24.mp3").read_bytes()[-128:] == v1_before         # ID3v1 tail byte for byte
    flac = FLAC(root / "pic.flac")
    assert flac.pictures[0].data == JPEG and flac["ARTIST"] == ["Artist A", "Artist B"]
    for n in ("v24.mp3", "v23.mp3", "pic.flac"):                     # padding absorbed the new fields
        assert (root / n).stat().st_size == sizes[n], n
    assert (root / "t.ogg").stat().st_size - sizes["t.ogg"] < 64      # no kilobytes of new padding
    assert mutagen.File(root / "t.wav").tags["TXXX:SERATO_PLAYCOUNT"].text == ["12"]

    op, counts = undo_last(out)
    assert counts == {"restored": 7}
    after = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.iterdir()}
    assert after == before                                             # bytes and mtime of every file
