import os
from pathlib import Path

import pytest
from privileges import as_unprivileged

from crate_dask.errors import FatalError
from crate_dask.library.scan import is_audio_name, scan_library


def touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("name", ["a.mp3", "A.MP3", "b.Flac", "c.wav", "d.aif", "e.AIFF", "f.ogg", "g.opus",
                                  "h.m4a", "i.mp4", "j.aac", "k.alac", "l.wma"])
def test_audio_extensions_case_insensitive(name):
    assert is_audio_name(name)


@pytest.mark.parametrize("name", ["notes.txt", "cover.jpg", ".hidden.mp3", "._a.mp3", "mp3", "a.mp3.part"])
def test_non_audio_and_hidden_names(name):
    assert not is_audio_name(name)


def test_scan_is_recursive_sorted_and_skips_hidden(tmp_path):
    for rel in ["b/2.mp3", "b/1.MP3", "a.flac", "a b/x.wav", ".cache/y.mp3", "c/._z.mp3", "c/.h.ogg",
                "c/cover.jpg", "c/deep/er/z.opus"]:
        touch(tmp_path / rel)
    rels = [f.relpath for f in scan_library(tmp_path).files]
    assert rels == ["a b/x.wav", "a.flac", "b/1.MP3", "b/2.mp3", "c/deep/er/z.opus"]
    assert rels == [f.relpath for f in scan_library(tmp_path).files]   # deterministic


def test_scan_records_size_and_mtime(tmp_path):
    p = touch(tmp_path / "a.mp3", b"12345")
    (f,) = scan_library(tmp_path).files
    assert f.size == 5 and f.mtime_ns == p.stat().st_mtime_ns


def test_symlink_loop_is_not_followed_forever(tmp_path):
    touch(tmp_path / "music/a.mp3")
    os.symlink(tmp_path / "music", tmp_path / "music/loop")
    res = scan_library(tmp_path)
    assert [f.relpath for f in res.files] == ["music/a.mp3"]
    assert any("loop" in p for p in res.problems)


def test_symlinked_folder_is_followed(tmp_path):
    touch(tmp_path / "elsewhere/b.mp3")
    (tmp_path / "lib").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "lib/linked")
    assert [f.relpath for f in scan_library(tmp_path / "lib").files] == ["linked/b.mp3"]


def test_broken_symlink_is_listed_with_a_problem(tmp_path):
    os.symlink(tmp_path / "gone.mp3", tmp_path / "dangling.mp3")
    (f,) = scan_library(tmp_path).files
    assert f.relpath == "dangling.mp3" and "broken symlink" in f.problem


def test_non_utf8_name_survives(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.mp3")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    (f,) = scan_library(tmp_path).files
    assert os.fsencode(f.relpath) == b"caf\xe9 \xff.mp3"
    assert os.path.exists(os.path.join(tmp_path, f.relpath))


def test_unreadable_folder_is_reported_not_fatal(open_tmp):
    tmp_path = open_tmp
    touch(tmp_path / "ok/a.mp3")
    touch(tmp_path / "locked/b.mp3")
    os.chmod(tmp_path / "locked", 0)
    try:
        res = as_unprivileged(scan_library, tmp_path)
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert [f.relpath for f in res.files] == ["ok/a.mp3"]
    assert any("locked" in p and "ermission" in p for p in res.problems)


def test_missing_library_is_fatal(tmp_path):
    with pytest.raises(FatalError, match="not found"):
        scan_library(tmp_path / "nope")


from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

_name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stems=st.lists(st.text(_name_chars, min_size=1, max_size=40).filter(lambda s: not s.startswith(".")),
                      min_size=1, max_size=5, unique_by=lambda s: s.encode("utf-8", "surrogatepass")))
def test_odd_file_names_survive_a_parquet_round_trip(tmp_path_factory, stems):
    import pandas as pd

    from crate_dask.config import build_settings
    from crate_dask.run.api import run_analysis

    root = tmp_path_factory.mktemp("names")
    lib = root / "lib"
    lib.mkdir()
    made = set()
    for s in stems:
        name = f"{s}.mp3"
        if len(name.encode()) > 255:
            continue
        (lib / name).write_bytes(b"")
        made.add(name)
    run_analysis(lib, root / "out", build_settings(cli={"metadata_only": True, "sequential": True,
                                                         "progress": False}))
    df = pd.read_parquet(root / "out")
    assert set(df["relpath"]) == made
    assert {os.fsdecode(b) for b in df["path_bytes"]} == {str(lib / n) for n in made}


def test_special_files_and_symlink_loops_are_listed_with_a_problem(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp3")
    os.symlink(tmp_path / "loop2.flac", tmp_path / "loop1.flac")
    os.symlink(tmp_path / "loop1.flac", tmp_path / "loop2.flac")
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "broken.wav")
    touch(tmp_path / "ok.mp3")
    found = {f.relpath: f.problem for f in scan_library(tmp_path).files}
    assert found == {"broken.wav": "cannot stat file: broken symlink",
                     "loop1.flac": "cannot stat file: symlink loop", "loop2.flac": "cannot stat file: symlink loop",
                     "ok.mp3": None, "pipe.mp3": "not a regular file: a named pipe (FIFO)"}
