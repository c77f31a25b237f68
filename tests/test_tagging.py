"""Tag writing on real files per format: values read back, audio untouched, undo restores."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import mutagen
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner
from privileges import as_unprivileged
from test_rename import _cli, build_results

from crate_dask.actions.rename import RenameOptions, apply_renames
from crate_dask.actions.retag import TagOptions, apply_tags, plan_tags
from crate_dask.actions.undo import undo_last
from crate_dask.cli.actions import tag, undo
from crate_dask.library.tags import read_tags
from crate_dask.store.history import moved_paths, tag_writes

FORMATS = ["mp3", "flac", "ogg", "m4a", "aiff", "wav"]
DETECTED = {"bpm": 127.6, "bpm_confidence": 0.9, "key": "A minor", "key_confidence": 0.8}


def audio_hash(path: Path) -> str:
    """A hash of the decoded samples (PyAV for M4A, libsndfile otherwise)."""
    if path.suffix == ".m4a":
        import av

        with av.open(str(path)) as c:
            data = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    else:
        data, _ = sf.read(path, dtype="float32")
    return hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest()


def raw_fields(path: Path) -> tuple:
    """BPM and key exactly as stored, read with mutagen directly (the ecosystem's fields)."""
    f = mutagen.File(path)
    t = f.tags
    if path.suffix in (".mp3", ".aiff", ".wav"):
        return str(t["TBPM"].text[0]), str(t["TKEY"].text[0]), t.version[:2]
    if path.suffix == ".m4a":
        return t["tmpo"][0], bytes(t["----:com.apple.iTunes:initialkey"][0]).decode(), None
    return t["BPM"][0], t["INITIALKEY"][0], None


@pytest.fixture()
def lib(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    files = {f"t.{ext}": {"artist": "A", "title": ext, **DETECTED} for ext in FORMATS}
    files["old.flac"] = {"artist": "B", "title": "old", "tag_bpm": 100, "tag_key": "Em", **DETECTED}
    files["low.mp3"] = {"artist": "C", "title": "low", **DETECTED, "key_confidence": 0.05}
    build_results(root, out, files)
    return root, out


def test_round_trip_per_format_and_undo(lib):
    root, out = lib
    audio = {p.name: audio_hash(p) for p in root.iterdir()}
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.iterdir()}
    s = apply_tags(out, TagOptions(key_notation="camelot", bpm_decimals=1))
    assert s.counts == {"written": len(FORMATS) + 2}
    for ext in FORMATS:
        p = root / f"t.{ext}"
        bpm, key, id3v = raw_fields(p)
        integer = ext in ("mp3", "aiff", "wav", "m4a")   # ID3 TBPM and MP4 tmpo hold integers
        assert (str(bpm), key) == (("128" if integer else "127.6"), "8A")
        assert id3v in (None, (2, 3))
        t = read_tags(p)
        assert (t["tag_bpm"], t["tag_key"], t["artist"]) == ((128.0 if integer else 127.6), "8A", "A")
    low = read_tags(root / "low.mp3")
    assert (low["tag_bpm"], low["tag_key"]) == (128.0, None)   # key confidence too low: not written
    assert {p.name: audio_hash(p) for p in root.iterdir()} == audio
    writes = tag_writes(out)
    assert set(writes) == {p.name for p in root.iterdir()}
    assert all(writes[n] == (os.stat(root / n).st_size, os.stat(root / n).st_mtime_ns) for n in writes)
    op, counts = undo_last(out)
    assert op.kind == "tag" and counts == {"restored": len(FORMATS) + 2}
    old = read_tags(root / "old.flac")
    assert (old["tag_bpm"], old["tag_key"]) == (100.0, "Em")
    assert all(read_tags(root / f"t.{ext}")["tag_bpm"] is None for ext in FORMATS)
    assert {p.name: audio_hash(p) for p in root.iterdir()} == audio
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.iterdir()} == before   # byte for byte


def test_plan_statuses_and_min_confidence(lib):
    root, out = lib
    s = plan_tags(out, TagOptions(fields=("key",), key_notation="id3"))
    plan = pd.read_parquet(s.op.plan_dir).set_index("relpath")
    assert plan.loc["low.mp3", "status"] == "low-confidence"
    assert plan.loc["old.flac", ["old_key", "new_key"]].tolist() == ["Em", "Am"]
    assert s.counts == {"write": len(FORMATS) + 1, "low-confidence": 1}
    s = plan_tags(out, TagOptions(fields=("key",), min_confidence=0.0))
    assert s.counts == {"write": len(FORMATS) + 2}
    apply_tags(out, TagOptions(fields=("key",)))
    again = plan_tags(out, TagOptions(fields=("key",)))   # files already hold the values
    assert again.counts == {"unchanged": len(FORMATS) + 1, "low-confidence": 1}


def test_tag_after_rename_acts_on_current_paths(lib):
    root, out = lib
    apply_renames(out, RenameOptions(template="{artist} - {title}"))
    s = apply_tags(out, TagOptions())
    assert s.counts == {"written": len(FORMATS) + 2}
    assert read_tags(root / "A - flac.flac")["tag_key"] == "Am"
    assert "A - flac.flac" in tag_writes(out) and moved_paths(out)["t.flac"] == "A - flac.flac"
    undo_last(out)   # tags first (last-first), then names
    undo_last(out)
    assert moved_paths(out)["A - flac.flac"] == "t.flac"
    assert read_tags(root / "t.flac")["tag_key"] is None
    assert tag_writes(out)["t.flac"] == (os.stat(root / "t.flac").st_size, os.stat(root / "t.flac").st_mtime_ns)


def test_cli_preview_apply_undo(lib):
    root, out = lib
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    r = CliRunner().invoke(tag, [str(out), "--fields", "bpm,key", "--key-notation", "open", "--sequential"])
    assert r.exit_code == 0 and "dry run" in r.output and "write 8" in r.output, r.output
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    r = CliRunner().invoke(tag, [str(out), "--fields", "bpm,colour", "--sequential"])
    assert r.exit_code == 2 and "fields" in r.output
    r = CliRunner().invoke(tag, [str(out), "--key-notation", "open", "--sequential", "--apply"])
    assert r.exit_code == 0 and "written 8" in r.output, r.output
    assert read_tags(root / "t.ogg")["tag_key"] == "1m"
    r = CliRunner().invoke(undo, [str(out), "--all"])
    assert r.exit_code == 0 and read_tags(root / "t.ogg")["tag_key"] is None


def _tag_then_undo(out: str) -> tuple[dict, dict]:
    return apply_tags(out, TagOptions()).counts, dict(undo_last(out)[1])


def test_read_only_file_is_skipped_with_a_reason_and_the_rest_written(open_tmp):
    """A file its owner made read-only is left alone, with a reason; the others get their tags and the
    operation ends (a rerun or a rename is not refused). Run as an unprivileged user: root may write anyway."""
    root, out = open_tmp / "lib", open_tmp / "out"
    build_results(root, out, {f"t.{ext}": {"artist": "A", "title": ext, **DETECTED} for ext in FORMATS})
    for p in [root, out, *root.rglob("*"), *out.rglob("*")]:
        os.chown(p, 65534, 65534)
    (root / "t.flac").chmod(0o444)
    before = (root / "t.flac").read_bytes()
    counts, undone = as_unprivileged(_tag_then_undo, str(out))
    assert counts == {"written": len(FORMATS) - 1, "skipped: cannot write tags: the file is read-only": 1}
    assert undone == {"restored": len(FORMATS) - 1}
    assert (root / "t.flac").read_bytes() == before and not list(root.glob(".crate-dask-*"))
    counts, _ = _tag_then_undo(str(out))   # as this user (root in CI): a file marked read-only is still left alone
    assert counts["skipped: cannot write tags: the file is read-only"] == 1 and (root / "t.flac").read_bytes() == before


def file_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too): name -> SHA-1 of its bytes."""
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in root.iterdir()}


@pytest.mark.parametrize("kill_at", ["intent:4", "ready:4", "done:4"])
def test_sigkill_mid_tag_apply_then_rerun_then_undo(tmp_path, kill_at):
    # The child SIGKILLs itself right after its 4th intent (file untouched), "ready" (new copy journaled,
    # not swapped in) or "done" record: every window of the protocol, with no timing involved.
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {f"k{i:02d}.{FORMATS[i % 6]}": {"artist": "A", "title": str(i), **DETECTED}
                              for i in range(18)}, parts=2)
    before = file_hashes(root)
    p = _cli("tag", str(out), "--apply", "--sequential", env={"CRATE_DASK_TEST_KILL_AT": kill_at})
    assert p.wait(timeout=300) == -signal.SIGKILL
    written = [n for n in before if read_tags(root / n)["tag_key"] == "Am"]
    assert len(written) == (4 if kill_at == "done:4" else 3)   # killed before or after the 4th swap
    assert _cli("tag", str(out), "--apply", "--sequential").wait(timeout=300) == 0
    assert all(read_tags(root / n)["tag_key"] == "Am" for n in before)
    assert set(file_hashes(root)) == set(before)   # no temp copy left behind
    u = _cli("undo", str(out))
    assert u.wait(timeout=300) == 0
    assert b"restored 18" in u.stdout.read()
    assert file_hashes(root) == before   # every file byte for byte as it was
