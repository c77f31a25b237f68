"""Rename plan/apply/undo on real generated audio files: nothing lost, nothing overwritten."""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crate_dask import schema
from crate_dask.actions.plan import display
from crate_dask.actions.rename import RenameOptions, apply_renames, plan_renames
from crate_dask.actions.undo import undo_last
from crate_dask.cli.actions import rename, undo
from crate_dask.library.tags import read_tags, write_tags
from crate_dask.store import partitions as store

_SF = {"wav": {}, "flac": {}, "aiff": {"format": "AIFF"}, "mp3": {"format": "MP3"},
       "ogg": {"format": "OGG", "subtype": "VORBIS"}}


def make_audio(path: Path, seed: int = 0) -> None:
    """A short real audio file (a distinct tone per seed); M4A through PyAV's AAC encoder."""
    y = (0.2 * np.sin(np.arange(4410) * 2 * np.pi * (220 + 10 * seed) / 22050)).astype("float32")
    ext = path.suffix.lower().lstrip(".")
    if ext == "m4a":
        import av

        with av.open(str(path), "w", format="mp4") as c:
            s = c.add_stream("aac", rate=22050)
            s.layout = "mono"
            frame = av.AudioFrame.from_ndarray(y[None, :], format="flt", layout="mono")
            frame.sample_rate = 22050
            for pkt in [*s.encode(frame), *s.encode(None)]:
                c.mux(pkt)
    else:   # through a file object: libsndfile cannot open non-UTF-8 names itself
        with open(path, "wb") as fh:
            sf.write(fh, y, 22050, **{"format": ext.upper(), **_SF[ext]})


def build_results(root: Path, out: Path, files: dict[str, dict], parts: int = 2, decorate=None) -> None:
    """Write real files with tags, and a results dataset for them as ``analyze`` would.

    ``decorate(path)``, if given, changes each file further (more tags) before its row is taken.
    """
    rows = []
    for n, (rel, spec) in enumerate(sorted(files.items())):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        make_audio(p, n)
        tags = {k: v for k, v in spec.items() if k in ("artist", "title", "genre", "album", "tag_bpm", "tag_key")}
        if tags:
            write_tags(p, tags)
        if decorate is not None:
            decorate(p)
        st_ = p.stat()
        row = {**read_tags(p), "path": display(str(p)), "path_bytes": os.fsencode(p), "relpath": display(rel),
               "ext": p.suffix.lstrip(".").lower(), "size": st_.st_size, "mtime_ns": st_.st_mtime_ns,
               "content_id": hashlib.sha1(p.read_bytes()).hexdigest()}
        row.update({k: v for k, v in spec.items() if k not in tags})
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    step = -(-len(rows) // parts)
    for i in range(parts):
        store.write_partition(schema.to_table(rows[i * step:(i + 1) * step]), out, f"part-{i:05d}", {})
    store.save_state(out, {"root": str(root)})


def snapshot(root: Path) -> collections.Counter:
    """Every regular file under ``root`` (hidden ones too) as a multiset of content hashes."""
    return collections.Counter(hashlib.sha1(Path(d, f).read_bytes()).hexdigest()
                               for d, _, fs in os.walk(root) for f in fs)


def paths(root: Path) -> dict[str, str]:
    return {str(Path(d, f).relative_to(root)): hashlib.sha1(Path(d, f).read_bytes()).hexdigest()
            for d, _, fs in os.walk(root) for f in fs}


AWKWARD = {
    "a.mp3": {"artist": "AC/DC", "title": "T.N.T."},
    "b.flac": {"artist": "../../x", "title": "escape"},
    "c.ogg": {"artist": "Björk", "title": "Jóga 🎧"},
    "d.wav": {"artist": "Long", "title": "t" * 300},
    "e.aiff": {"title": "no artist"},
    "f.mp3": {"artist": "Dup", "title": "Same"},
    "g.mp3": {"artist": "dup", "title": "same"},
    "h.mp3": {"artist": "CON", "title": ""},
    "sub/i.flac": {"artist": "Dots...", "title": "...end. "},
    "sub/Dup - Same.mp3": {"artist": "Dup", "title": "Same"},
    "j.flac": {"artist": "Err", "title": "x", "error": "UnreadableFileError: boom", "error_stage": "tags"},
}


def test_plan_statuses_and_dataset(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, AWKWARD)
    before = paths(root)
    s = plan_renames(out, RenameOptions())
    assert paths(root) == before   # a plan touches nothing
    plan = pd.read_parquet(s.op.plan_dir)
    by = dict(zip(plan.old_relpath, zip(plan.status, plan.new_relpath)))
    assert by["a.mp3"] == ("rename", "AC_DC - T.N.T.mp3")
    assert by["b.flac"][1] == "_.._x - escape.flac"   # no hidden file, no folder
    assert by["e.aiff"][0] == by["h.mp3"][0] == "missing-fields"
    assert by["j.flac"][0] == "error-row"
    assert by["sub/Dup - Same.mp3"][0] == "unchanged"
    assert len(by["d.wav"][1].encode()) == 255 and by["d.wav"][1].endswith(".wav")
    assert by["sub/i.flac"][1] == "sub/Dots... - ...end.flac"
    # f and g want names equal up to case: distinct, deterministic (sorted by old path)
    assert {by["f.mp3"][1], by["g.mp3"][1]} == {"Dup - Same.mp3", "dup - same (2).mp3"}
    assert s.counts == plan.status.value_counts().to_dict()
    assert pd.read_parquet(out).shape[0] == len(AWKWARD)   # bookkeeping stays out of the results


def test_apply_rerun_is_idempotent_and_undo_restores(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, AWKWARD)
    before = paths(root)
    s = apply_renames(out, RenameOptions())
    after = paths(root)
    assert sorted(after.values()) == sorted(before.values())
    assert s.counts["renamed"] == 7 and "AC_DC - T.N.T.mp3" in after
    again = plan_renames(out, RenameOptions())   # the results still name the old paths: found via the journal
    assert set(again.counts) <= {"unchanged", "missing-fields", "error-row"}
    op, counts = undo_last(out)
    assert counts["restored"] == 7 and paths(root) == before
    assert undo_last(out) is None


def test_case_only_rename_and_subfolders(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {"x/dj - tune.mp3": {"artist": "DJ", "title": "Tune", "genre": "House"},
                              "y.flac": {"artist": "A", "title": "B", "genre": "House"}}, parts=1)
    before = paths(root)
    apply_renames(out, RenameOptions(template="{artist} - {title}"))
    assert "x/DJ - Tune.mp3" in paths(root) and not any(".crate-dask" in p for p in paths(root))
    undo_last(out)
    assert paths(root) == before
    apply_renames(out, RenameOptions(template="{genre}/{artist} - {title}", base="root"))
    assert set(paths(root)) == {"House/DJ - Tune.mp3", "House/A - B.flac"}
    undo_last(out)
    assert paths(root) == before and not (root / "House").exists()   # folders it made are removed


def test_changed_vanished_and_taken_targets_are_skipped(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {"a.mp3": {"artist": "A", "title": "1"}, "b.mp3": {"artist": "B", "title": "2"},
                              "c.mp3": {"artist": "C", "title": "3"}}, parts=1)
    (root / "b.mp3").unlink()
    with open(root / "c.mp3", "ab") as fh:
        fh.write(b"\0")
    (root / "A - 1.mp3").write_bytes(b"not part of the library")   # taken: numbered, never overwritten
    skip = plan_renames(out, RenameOptions(on_conflict="skip"))
    assert skip.counts == {"conflict": 1, "missing": 1, "changed": 1}
    s = apply_renames(out, RenameOptions())
    plan = pd.read_parquet(s.op.plan_dir).set_index("old_relpath")
    assert plan.loc["b.mp3", "status"] == "missing" and plan.loc["c.mp3", "status"] == "changed"
    assert (root / "A - 1 (2).mp3").exists() and (root / "A - 1.mp3").read_bytes() == b"not part of the library"


def test_cli_unknown_field_is_one_line_and_exit_2(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {"a.mp3": {"artist": "A", "title": "1"}}, parts=1)
    r = CliRunner().invoke(rename, [str(out), "--template", "{artst} - {title}", "--sequential"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "artst" in r.output
    assert not any(out.glob("_crate/journal/rename-*"))
    r = CliRunner().invoke(rename, [str(out), "--template", "{artist} [{bpm:.0f}]", "--sequential"])
    assert r.exit_code == 0, r.output
    assert "missing-fields 1" in r.output and "dry run" in r.output and (root / "a.mp3").exists()
    r = CliRunner().invoke(rename, [str(out), "--sequential", "--apply"])
    assert r.exit_code == 0 and (root / "A - 1.mp3").exists(), r.output
    assert CliRunner().invoke(undo, [str(out)]).exit_code == 0 and (root / "a.mp3").exists()


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_text, _text), min_size=1, max_size=6))
def test_property_plan_apply_undo_restores_every_path_and_hash(tags):
    with tempfile.TemporaryDirectory() as d:
        root, out = Path(d, "lib"), Path(d, "out")
        build_results(root, out, {f"f{i}.wav": {"artist": a, "title": t} for i, (a, t) in enumerate(tags)},
                      parts=2)
        before = paths(root)
        apply_renames(out, RenameOptions())
        assert sorted(paths(root).values()) == sorted(before.values())
        undo_last(out)
        assert paths(root) == before


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    code = "import sys; from crate_dask.cli.actions import _group; sys.exit(_group())"
    return subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_mid_apply_then_rerun_then_undo(tmp_path):
    # The child kills itself (SIGKILL) right after its 9th intent is on disk, before that file is
    # moved: a real kill at an exact point, so nothing depends on timing or reads files mid-rename.
    root, out = tmp_path / "lib", tmp_path / "out"
    files = {f"t{i:02d}.{['mp3', 'flac', 'wav'][i % 3]}": {"artist": f"Artist {i % 7}", "title": f"Song {i}"}
             for i in range(30)}
    files["t00.mp3"] = {"artist": "T00", "title": ""}
    files["case - x.mp3"] = {"artist": "Case", "title": "X"}   # a case-only rename
    build_results(root, out, files, parts=3)
    before, original = paths(root), snapshot(root)
    p = _cli("rename", str(out), "--apply", "--sequential", env={"CRATE_DASK_TEST_KILL_AT": "intent:9"})
    assert p.wait(timeout=300) == -signal.SIGKILL
    mid = paths(root)
    assert snapshot(root) == original and len(set(mid) - set(before)) == 8   # the 9th intent: not moved yet
    r = _cli("rename", str(out), "--apply", "--sequential")
    assert r.wait(timeout=300) == 0, r.stderr.read().decode()
    done = paths(root)
    assert snapshot(root) == original and len(set(done) - set(before)) == 30   # 30 renamed, t00 has no title
    u = _cli("undo", str(out))
    assert u.wait(timeout=300) == 0, u.stderr.read().decode()
    assert paths(root) == before


def test_sigkill_then_undo_directly(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {f"s{i}.wav": {"artist": "A", "title": f"{i}"} for i in range(12)}, parts=2)
    before = paths(root)
    p = _cli("rename", str(out), "--apply", "--sequential", env={"CRATE_DASK_TEST_KILL_AT": "done:3"})
    assert p.wait(timeout=300) == -signal.SIGKILL
    r = _cli("rename", str(out), "--template", "{title}", "--sequential")   # refuses: an apply is pending
    assert r.wait(timeout=300) == 1 and b"interrupted rename" in r.stderr.read()
    assert _cli("undo", str(out)).wait(timeout=300) == 0
    assert paths(root) == before


def test_non_utf8_names_survive_rename_and_undo(tmp_path):
    root, out = tmp_path / "lib", tmp_path / "out"
    build_results(root, out, {os.fsdecode(b"caf\xe9/\xff old.wav"): {"artist": "X", "title": "Y"}}, parts=1)
    before = {os.fsencode(p) for p in paths(root)}
    s = apply_renames(out, RenameOptions())
    assert s.counts == {"renamed": 1} and {os.fsencode(p) for p in paths(root)} == {b"caf\xe9/X - Y.wav"}
    undo_last(out)
    assert {os.fsencode(p) for p in paths(root)} == before
