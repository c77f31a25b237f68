"""Manual corrections: recorded by `crate-dask fix`, kept across analyze reruns, renames and tag writes, used by both."""

from __future__ import annotations

import json

import pytest

from crate_dask import open_results
from crate_dask.config import build_settings
from crate_dask.demo import write_audio
from crate_dask.library.tags import read_tags, write_tags
from crate_dask.run.api import run_analysis
from crate_dask.store.layout import corrections_path
from crate_dask.synth import track
from tests.conftest import run_cli

SR = 22050


def _analyze(lib, out):
    summary = run_analysis(lib, out, build_settings(cli={"sequential": True, "progress": False}))
    assert summary["status"] == "complete", summary


def _row(out, relpath):
    return open_results(out).row(relpath, ["relpath", "bpm", "bpm_detected", "key", "key_camelot", "key_detected",
                                           "corrected"])


def _make(tmp_path):
    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    for name, bpm, key in (("a.flac", 124.0, "A minor"), ("b.flac", 98.0, "D major")):
        write_audio(lib / name, track(bpm=bpm, key=key, seconds=12.0, sr=SR, seed=int(bpm)), SR)
        write_tags(lib / name, {"artist": "Alpha" if name == "a.flac" else "Beta", "title": "Song"})
    _analyze(lib, out)
    return lib, out


@pytest.fixture
def lib_out(tmp_path):
    return _make(tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("fix"))


def test_fix_survives_rerun_rename_and_tag_and_is_what_they_use(lib_out):
    lib, out = lib_out
    before = _row(out, "a.flac")
    assert before["corrected"] is False and before["bpm"] == pytest.approx(124, abs=1)
    p = run_cli("fix", str(out), str(lib / "a.flac"), "--half", "--key", "8B")   # 8B = C major, any notation
    assert p.returncode == 0, p.stderr
    assert "a.flac: bpm 62" in p.stdout and "C major / 8B (detected A minor)" in p.stdout
    fixed = _row(out, "a.flac")
    assert fixed == {**fixed, "bpm": pytest.approx(before["bpm"] / 2, abs=0.01), "bpm_detected": before["bpm"],
                     "key": "C major", "key_camelot": "8B", "key_detected": "A minor", "corrected": True}
    assert _row(out, "b.flac")["corrected"] is False
    q = run_cli("query", str(out), "--where", "corrected", "--format", "json", "--columns",
                "relpath,bpm,bpm_detected,key_camelot,corrected")
    assert [json.loads(x)["relpath"] for x in q.stdout.splitlines()] == ["a.flac"]
    assert open_results(out).count("bpm < 70") == 1          # filters see the corrected value

    _analyze(lib, out)                                          # a rerun keeps them (separate data)
    assert corrections_path(out).exists() and _row(out, "a.flac")["corrected"] is True

    p = run_cli("rename", str(out), "--template", "{artist} - {title} [{key_camelot} {bpm:.0f}]", "--apply",
                "--sequential")
    assert p.returncode == 0, p.stderr + p.stdout
    assert (lib / "Alpha - Song [8B 62].flac").exists()        # the name uses the corrected values
    _analyze(lib, out)                                          # the renamed file: found again by content id
    assert _row(out, "Alpha - Song [8B 62].flac")["corrected"] is True

    p = run_cli("tag", str(out), "--apply", "--sequential", "--key-notation", "camelot")
    assert p.returncode == 0, p.stderr + p.stdout
    tags = read_tags(str(lib / "Alpha - Song [8B 62].flac"))
    assert tags["tag_bpm"] == 62 and tags["tag_key"] == "8B"    # the tags use the corrected values
    b = read_tags(str(next(lib.glob("Beta*"))))
    assert b["tag_key"] == "10B"                                 # D major as detected, not corrected
    _analyze(lib, out)                                          # new bytes, new content id: found by path
    row = _row(out, "Alpha - Song [8B 62].flac")
    assert row["corrected"] is True and row["key"] == "C major" and row["bpm"] == pytest.approx(62, abs=0.01)

    p = run_cli("fix", str(out), "Alpha - Song [8B 62].flac", "--clear")
    assert p.returncode == 0 and "correction cleared" in p.stdout
    assert _row(out, "Alpha - Song [8B 62].flac")["corrected"] is False


@pytest.mark.parametrize("args, message", [
    (["a.flac", "--bpm", "120", "--double"], "only one of"),
    (["a.flac"], "nothing to fix"),
    (["a.flac", "--key", "H minor"], "not a key"),
    (["a.flac", "--bpm", "1000"], "out of range"),
    (["nope.flac", "--bpm", "120"], "no file 'nope.flac'"),
])
def test_fix_usage_errors_exit_2(shared, args, message):
    _, out = shared
    p = run_cli("fix", str(out), *args)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and message in p.stderr


def test_bulk_fix_from_csv_is_all_or_nothing(shared, tmp_path):
    lib, out = shared
    bad = tmp_path / "bad.csv"
    bad.write_text("path,bpm,key\na.flac,128,Am\nb.flac,fast,\nmissing.flac,120,\n")
    p = run_cli("fix", str(out), "--from", str(bad))
    assert p.returncode == 2 and "line 3" in p.stderr and "line 4" in p.stderr and "no file 'missing.flac'" in p.stderr
    assert not corrections_path(out).exists()
    good = tmp_path / "good.csv"
    good.write_text("path,bpm,key\na.flac,128,\nb.flac,,F#m\n")
    p = run_cli("fix", str(out), "--from", str(good))
    assert p.returncode == 0 and "2 corrections" in p.stdout, p.stderr
    assert _row(out, "a.flac")["bpm"] == 128 and _row(out, "b.flac")["key"] == "F# minor"


def test_a_file_renamed_or_put_back_since_its_row_is_found_by_its_current_path(lib_out):
    """fix and mix take the path a file has now, before the next analyze (the rows still hold the earlier one)."""
    lib, out = lib_out
    assert run_cli("rename", str(out), "--template", "{artist} x", "--apply", "--sequential").returncode == 0
    assert (lib / "Alpha x.flac").exists() and not (lib / "a.flac").exists()
    p = run_cli("fix", str(out), str(lib / "Alpha x.flac"), "--key", "8B")
    assert p.returncode == 0 and p.stdout.startswith("Alpha x.flac: key C major"), p.stderr
    _analyze(lib, out)   # the rows now hold the new name; undo puts the old one back
    assert run_cli("undo", str(out)).returncode == 0 and (lib / "a.flac").exists()
    p = run_cli("mix", str(out), str(lib / "a.flac"))
    assert p.returncode == 0 and "mix with a.flac" in p.stdout, p.stderr
    assert _row(out, str(lib / "a.flac")) == {**_row(out, str(lib / "a.flac")), "relpath": "a.flac", "key": "C major"}
    p = run_cli("fix", str(out), str(lib / "nowhere.flac"), "--key", "8B")
    assert p.returncode != 0 and "no file" in p.stderr
