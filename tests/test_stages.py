"""Bad input is data: every file gets exactly one row with a clear error, through the real stages."""

import os

import pytest
from conftest import make_file
from pathological import streamed_wav
from privileges import as_unprivileged

from crate_dask.config import AnalysisSettings
from crate_dask.library.scan import FileEntry, scan_library
from crate_dask.run.stages import content_id, process_file

META = AnalysisSettings(metadata_only=True)


def rows_for(root):
    res = scan_library(root)
    return {e.relpath: process_file(res.root, e, META) for e in res.files}


def test_good_file_has_tags_and_no_error(tmp_path):
    make_file(tmp_path / "ok.flac", tags={"artist": "A", "title": "T"})
    row = rows_for(tmp_path)["ok.flac"]
    assert row["error"] is None and row["error_stage"] is None
    assert (row["artist"], row["title"], row["format"], row["ext"]) == ("A", "T", "flac", "flac")
    assert row["content_id"] and row["size"] == (tmp_path / "ok.flac").stat().st_size


def test_every_kind_of_bad_file_becomes_one_row(tmp_path):
    make_file(tmp_path / "good.mp3")
    (tmp_path / "empty.mp3").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("hello, I am not audio\n" * 50)
    (tmp_path / "garbage.flac").write_bytes(os.urandom(5000))
    good = make_file(tmp_path / "full.wav", seconds=2.0).read_bytes()
    (tmp_path / "truncated.wav").write_bytes(good[:2000])
    (tmp_path / "mislabelled.ogg").write_bytes(make_file(tmp_path / "src" / "x.flac").read_bytes())
    rows = rows_for(tmp_path)
    assert len(rows) == 8   # incl. full.wav and src/x.flac
    assert rows["good.mp3"]["error"] is None
    assert rows["empty.mp3"]["error"] == "empty file (0 bytes)"
    for name in ("text.mp3", "garbage.flac", "truncated.wav"):
        assert rows[name]["error_stage"] == "tags" and rows[name]["error"], name
    assert "truncated" in rows["truncated.wav"]["error"]
    # a FLAC named .ogg is still read: the container is sniffed from the content, and format says so
    assert rows["mislabelled.ogg"]["error"] is None and rows["mislabelled.ogg"]["format"] == "flac"


def test_vanished_file_gets_a_row(tmp_path):
    p = make_file(tmp_path / "a.flac")
    (entry,) = scan_library(tmp_path).files
    p.unlink()
    row = process_file(str(tmp_path), entry, META)
    assert row["error_stage"] == "file" and "vanished" in row["error"]
    assert row["relpath"] == "a.flac"


def test_broken_symlink_gets_a_row(tmp_path):
    os.symlink(tmp_path / "nowhere.mp3", tmp_path / "link.mp3")
    row = rows_for(tmp_path)["link.mp3"]
    assert row["error_stage"] == "file" and "broken symlink" in row["error"]


def test_permission_denied_gets_a_row(open_tmp):
    make_file(open_tmp / "secret.flac")
    make_file(open_tmp / "public.flac")
    (open_tmp / "secret.flac").chmod(0)
    rows = as_unprivileged(rows_for, open_tmp)
    assert rows["public.flac"]["error"] is None
    assert rows["secret.flac"]["error_stage"] == "file" and "permission denied" in rows["secret.flac"]["error"]


def test_non_utf8_name_row_identifies_the_file(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"\xff\xfe odd.flac")
    src = make_file(tmp_path / "src.flac")
    os.rename(src, raw)
    (row,) = rows_for(tmp_path).values()
    assert row["error"] is None
    assert os.path.exists(os.fsdecode(row["path_bytes"])) and row["path_bytes"] == raw
    assert "\\xff" in row["path"]   # displayable, valid UTF-8


def test_content_id_changes_with_content_not_name(tmp_path):
    p = make_file(tmp_path / "a.flac", seconds=2.0)
    before = content_id(str(p), p.stat().st_size)
    q = tmp_path / "renamed.flac"
    p.rename(q)
    assert content_id(str(q), q.stat().st_size) == before
    from crate_dask.library.tags import write_tags
    write_tags(q, {"title": "changed"})
    assert content_id(str(q), q.stat().st_size) != before


def test_stat_problem_from_scan_is_reported(tmp_path):
    row = process_file(str(tmp_path), FileEntry("x.mp3", -1, 0, 0, "cannot stat file: broken symlink"), META)
    assert row["error_stage"] == "file" and row["size"] is None


def test_every_error_row_carries_a_structured_cause(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("hello, I am not audio\n" * 50)
    good = make_file(tmp_path / "src" / "full.wav", seconds=2.0).read_bytes()
    (tmp_path / "truncated.wav").write_bytes(good[:2000])
    os.symlink(tmp_path / "nowhere.mp3", tmp_path / "broken.mp3")
    rows = rows_for(tmp_path)
    assert {k: r["error_type"] for k, r in rows.items()} == {
        "empty.mp3": "unreadable", "text.mp3": "unreadable", "truncated.wav": "truncated",
        "broken.mp3": "unreadable", "src/full.wav": None}
    assert all(r["error_limit"] is None for r in rows.values())


def test_a_fifo_named_mp3_gets_a_row_and_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp3")   # opening it for reading would block until a writer comes
    make_file(tmp_path / "ok.flac")
    rows = rows_for(tmp_path)
    assert rows["ok.flac"]["error"] is None
    row = rows["pipe.mp3"]
    assert (row["error_stage"], row["error_type"]) == ("file", "unreadable") and "named pipe" in row["error"]


def test_a_symlink_loop_says_loop_not_broken(tmp_path):
    os.symlink(tmp_path / "b.mp3", tmp_path / "a.mp3")
    os.symlink(tmp_path / "a.mp3", tmp_path / "b.mp3")
    rows = rows_for(tmp_path)
    for name in ("a.mp3", "b.mp3"):
        assert "symlink loop" in rows[name]["error"] and "broken" not in rows[name]["error"]
        assert rows[name]["error_type"] == "unreadable"


@pytest.mark.parametrize("size_field", [0, 0xFFFFFFFF])
def test_a_wav_written_to_a_pipe_is_read_as_a_stream(tmp_path, size_field):
    streamed_wav(tmp_path / "piped.wav", size_field, seconds=2.0)
    row = rows_for(tmp_path)["piped.wav"]
    assert row["error"] is None, row["error"]
    assert (row["format"], row["sample_rate"], row["channels"]) == ("wav", 22050, 1)
    assert abs(row["duration_s"] - 2.0) < 0.01
    full = process_file(str(tmp_path), scan_library(tmp_path).files[0], AnalysisSettings(excerpt_s=30.0))
    assert full["error"] is None and full["analysis_s"] is not None
