import mutagen
import pytest
from conftest import make_file

from crate_dask.errors import UnreadableFileError
from crate_dask.library.tags import read_tags, write_tags

FORMATS = {"mp3": ("mp3", "mp3"), "flac": ("flac", "flac"), "ogg": ("ogg", "vorbis"), "opus": ("opus", "opus"),
           "wav": ("wav", "pcm"), "aiff": ("aiff", "pcm"), "m4a": ("mp4", "aac")}
TAGS = {"artist": "Röyksopp / Robyn", "title": "Do It Again 🎧", "album": "Album", "album_artist": "Various",
        "genre": "Electronic", "year": 2014, "track": 3, "comment": "promo", "label": "Dog Triumph"}


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_round_trip_every_format(tmp_path, ext):
    p = make_file(tmp_path / f"x.{ext}", seconds=1.0, tags={**TAGS, "bpm": 124, "key": "F#m"})
    t = read_tags(p)
    assert (t["format"], t["codec"]) == FORMATS[ext]
    assert t["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert t["sample_rate"] in (22050, 48000) and t["channels"] == 1
    for k, v in TAGS.items():
        assert t[k] == v, k
    assert t["tag_bpm"] == 124.0 and t["tag_key"] == "F#m"


@pytest.mark.parametrize("ext,field,check", [
    ("mp3", "TBPM", lambda f: str(f.tags["TBPM"]) == "128" and str(f.tags["TKEY"]) == "Am"),
    ("aiff", "TBPM", lambda f: str(f.tags["TBPM"]) == "128" and str(f.tags["TKEY"]) == "Am"),
    ("wav", "TBPM", lambda f: str(f.tags["TBPM"]) == "128" and str(f.tags["TKEY"]) == "Am"),
    ("flac", "BPM", lambda f: f.tags["BPM"] == ["128"] and f.tags["INITIALKEY"] == ["Am"]),
    ("ogg", "BPM", lambda f: f.tags["BPM"] == ["128"] and f.tags["INITIALKEY"] == ["Am"]),
    ("m4a", "tmpo", lambda f: f.tags["tmpo"] == [128]
     and bytes(f.tags["----:com.apple.iTunes:initialkey"][0]) == b"Am"),
])
def test_bpm_and_key_go_where_each_ecosystem_reads_them(tmp_path, ext, field, check):
    p = make_file(tmp_path / f"x.{ext}", seconds=0.5)
    write_tags(p, {"bpm": 128, "key": "Am"})
    assert check(mutagen.File(p))


def test_tags_written_by_other_software_are_read(tmp_path):
    from mutagen.id3 import ID3, TBPM, TDRC, TKEY, TRCK

    p = make_file(tmp_path / "x.mp3")
    id3 = ID3()
    id3.add(TBPM(encoding=3, text=["127.50"]))
    id3.add(TKEY(encoding=3, text=["11A"]))
    id3.add(TRCK(encoding=3, text=["4/12"]))
    id3.add(TDRC(encoding=3, text=["2019-05-01"]))
    id3.save(p)
    t = read_tags(p)
    assert (t["tag_bpm"], t["tag_key"], t["track"], t["track_total"], t["year"]) == (127.5, "11A", 4, 12, 2019)


def test_missing_tags_are_none(tmp_path):
    t = read_tags(make_file(tmp_path / "x.flac"))
    assert t["artist"] is None and t["tag_bpm"] is None and t["year"] is None


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"This is a text file, not audio.\n" * 20, "MPEG|not a recognised|corrupt"),
    (b"\x00" * 4096, "MPEG|not a recognised|corrupt"),
])
def test_unreadable_files_raise_domain_error(tmp_path, content, match):
    p = tmp_path / "bad.mp3"
    p.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=match):
        read_tags(p)


@pytest.mark.parametrize("ext", ["flac", "wav", "aiff"])
def test_truncated_files_are_detected_from_the_header(tmp_path, ext):
    p = make_file(tmp_path / f"x.{ext}", seconds=3.0)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 50])
    with pytest.raises(UnreadableFileError, match="truncated"):
        read_tags(p)


def test_vanished_file(tmp_path):
    with pytest.raises(UnreadableFileError, match="vanished"):
        read_tags(tmp_path / "gone.mp3")


def test_streamed_wav_sizes_are_placeholders_not_truncation(tmp_path):
    from pathological import streamed_wav

    for size_field in (0, 0xFFFFFFFF):
        t = read_tags(streamed_wav(tmp_path / f"s{size_field}.wav", size_field, seconds=3.0))
        assert (t["format"], t["codec"], t["sample_rate"], round(t["duration_s"], 2)) == ("wav", "pcm", 22050, 3.0)
