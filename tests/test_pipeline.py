"""The pipeline on a real LocalCluster (worker processes): partitions, resume, reuse, provenance."""

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_file, make_library

from crate_dask.config import build_settings
from crate_dask.library.tags import write_tags
from crate_dask.run.api import run_analysis
from crate_dask.store.partitions import list_parts, read_part_info


def settings(**kw):
    return build_settings(cli={"metadata_only": True, "partition_size": 5, "progress": False, **kw})


def part_mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in list_parts(out)}


def test_run_on_local_cluster_writes_one_row_per_file(tmp_path, client):
    lib = tmp_path / "lib"
    files = make_library(lib, 23)
    (lib / "folder1" / "broken.mp3").write_text("not audio")
    s = run_analysis(lib, tmp_path / "out", settings(), client=client)
    assert s["status"] == "complete" and s["rows"] == 24 and s["errors"] == 1 and s["ok"] == 23
    parts = list_parts(tmp_path / "out")
    assert [p.name for p in parts] == [f"part-0000{i}.parquet" for i in range(5)]
    df = pd.read_parquet(tmp_path / "out")   # bookkeeping files are ignored
    assert len(df) == 24 and df["relpath"].is_unique
    assert set(df["path"]) == {str(p) for p in files} | {str(lib / "folder1" / "broken.mp3")}
    bad = df.set_index("relpath").loc["folder1/broken.mp3"]
    assert bad["error_stage"] == "tags" and "MPEG" in bad["error"]
    info = read_part_info(parts[0])
    assert info.rows == 5 and info.settings["metadata_only"] and info.version
    # workers, not the client, wrote the partitions
    assert len({os.getpid()}) == 1 and not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir()
                                                if p.suffix == ".parquet")


def test_rerun_on_unchanged_library_computes_nothing(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 12)
    run_analysis(lib, tmp_path / "out", settings(), client=client)
    before = part_mtimes(tmp_path / "out")
    s = run_analysis(lib, tmp_path / "out", settings(), client=client)
    assert s["partitions_computed"] == 0 and s["files_computed"] == 0 and s["partitions_done_before"] == 3
    assert part_mtimes(tmp_path / "out") == before


def test_changes_recompute_only_their_partitions_and_reuse_unchanged_rows(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 30, nested=1)          # folder0/track 0000 .. 0029, 6 partitions of 5
    out = tmp_path / "out"
    run_analysis(lib, out, settings(), client=client)
    before = part_mtimes(out)
    make_file(lib / "folder0" / "track 0002b.flac", tags={"title": "new"})       # added, partition 0
    write_tags(lib / "folder0" / "track 0017.flac" if (lib / "folder0" / "track 0017.flac").exists()
               else next((lib / "folder0").glob("track 0017.*")), {"title": "edited"})  # modified, partition 3
    next((lib / "folder0").glob("track 0026.*")).unlink()                            # removed, partition 5
    s = run_analysis(lib, out, settings(), client=client)
    assert s["partitions_computed"] == 3 and s["partitions_done_before"] == 3
    assert s["files_computed"] == 2                     # the new and the modified file
    assert s["files_reused"] == 5 + 4 + 4    # every other row of the three recomputed partitions
    after = part_mtimes(out)
    assert {n for n in before if after.get(n) != before[n]} == {"part-00000.parquet", "part-00003.parquet",
                                                                "part-00005.parquet"}
    df = pd.read_parquet(out).set_index("relpath")
    assert len(df) == 30 and df.index.is_unique
    assert df.loc["folder0/track 0002b.flac", "title"] == "new"
    assert df.filter(like="track 0017", axis=0)["title"].item() == "edited"


def test_insertion_at_the_front_touches_one_partition(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 20, nested=1)
    out = tmp_path / "out"
    run_analysis(lib, out, settings(), client=client)
    make_file(lib / "folder0" / "aaa first.flac")
    s = run_analysis(lib, out, settings(), client=client)
    assert s["partitions_computed"] == 1 and s["files_computed"] == 1 and s["partitions"] == 4


def test_growth_splits_a_partition_and_keeps_name_order(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 10, nested=1)
    out = tmp_path / "out"
    run_analysis(lib, out, settings(), client=client)
    for i in range(11):
        make_file(lib / "folder0" / f"track 0004-{i:02d}.flac")
    s = run_analysis(lib, out, settings(), client=client)
    assert s["rows"] == 21 and s["files_computed"] == 11
    names = [p.name for p in list_parts(out)]
    assert names == sorted(names) and len(names) >= 4 and "part-00000-001.parquet" in names
    df = pd.read_parquet(out)
    assert list(df["relpath"]) == sorted(df["relpath"])   # file order = partition order = path order
    assert not (out / "_crate" / "stale").exists()


def test_renamed_file_is_found_again_by_content(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 10, nested=2)
    out = tmp_path / "out"
    run_analysis(lib, out, settings(), client=client)
    src = next((lib / "folder1").glob("track 0003.*"))
    os.rename(src, lib / "folder0" / f"renamed{src.suffix}")
    s = run_analysis(lib, out, settings(), client=client)
    assert s["files_computed"] == 0 and s["files_reused"] >= 1
    row = pd.read_parquet(out).set_index("relpath").loc[f"folder0/renamed{src.suffix}"]
    assert row["title"] == "Title 3" and row["path"].endswith(f"renamed{src.suffix}")


def test_settings_change_is_reported_and_force_recomputes(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 6)
    out = tmp_path / "out"
    run_analysis(lib, out, build_settings(cli={"partition_size": 5, "progress": False, "excerpt_s": 30.0,
                                               "metadata_only": True}), client=client)
    # a metadata-only result does not depend on audio settings: nothing to redo
    s = run_analysis(lib, out, settings(excerpt_s=10.0), client=client)
    assert s["partitions_computed"] == 0
    # fake an older result made with other settings by editing one footer's settings through a real rewrite
    part = list_parts(out)[0]
    t = pq.read_table(part)
    import json
    meta = json.loads(t.schema.metadata[b"crate_dask"])
    meta["fingerprint"], meta["settings"]["crate_dask_version"] = "0" * 16, "0.0"
    pq.write_table(t.replace_schema_metadata({b"crate_dask": json.dumps(meta).encode()}), part)
    s = run_analysis(lib, out, settings(), client=client)
    assert s["partitions_other_settings"] == 1 and s["partitions_computed"] == 0
    s = run_analysis(lib, out, settings(force=True), client=client)
    assert s["partitions_computed"] == 2 and s["files_reused"] == 0


def test_sequential_mode_gives_the_same_rows(tmp_path, client):
    lib = tmp_path / "lib"
    make_library(lib, 8)
    run_analysis(lib, tmp_path / "a", settings(), client=client)
    run_analysis(lib, tmp_path / "b", settings(sequential=True))
    a, b = pd.read_parquet(tmp_path / "a"), pd.read_parquet(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)


def test_other_library_in_same_out_is_refused(tmp_path, client):
    from crate_dask.errors import FatalError

    make_library(tmp_path / "one", 2)
    make_library(tmp_path / "two", 2)
    run_analysis(tmp_path / "one", tmp_path / "out", settings(), client=client)
    with pytest.raises(FatalError, match="another library"):
        run_analysis(tmp_path / "two", tmp_path / "out", settings(), client=client)


def test_non_utf8_names_round_trip_through_parquet(tmp_path, client):
    lib = tmp_path / "lib"
    src = make_file(lib / "x.flac", tags={"title": "odd"})
    raw = os.path.join(os.fsencode(lib), "Beyonc\u00e9 \U0001F3A7.flac".encode()[:-5] + b"\xe9.flac")
    os.rename(src, raw)
    run_analysis(lib, tmp_path / "out", settings(), client=client)
    (row,) = pd.read_parquet(tmp_path / "out").to_dict("records")
    assert row["path_bytes"] == raw and row["title"] == "odd" and pd.isna(row["error"])


def test_metadata_mode_does_not_import_the_audio_stack_in_workers(tmp_path, client):
    import sys

    make_library(tmp_path / "lib", 4)
    run_analysis(tmp_path / "lib", tmp_path / "out", settings(), client=client)
    loaded = client.run(lambda: sorted(m for m in ("librosa", "numba", "scipy.signal", "av") if m in sys.modules))
    assert all(v == [] for v in loaded.values()), loaded


def test_a_file_moved_into_a_later_partition_is_reused_whatever_the_task_order(tmp_path):
    # The partition the file left is recomputed too; in sequential mode it is written first, and its
    # new file no longer holds the moved row: the reuse must read the partition as it was (a snapshot).
    lib = tmp_path / "lib"
    make_library(lib, 10, nested=2)
    out = tmp_path / "out"
    seq = settings(sequential=True)
    run_analysis(lib, out, seq)
    src = next((lib / "folder0").glob("track 0002.*"))
    os.rename(src, lib / "folder1" / f"zz moved{src.suffix}")
    s = run_analysis(lib, out, seq)
    assert s["partitions_computed"] == 2 and s["files_computed"] == 0 and s["files_reused"] == 10
    row = pd.read_parquet(out).set_index("relpath").loc[f"folder1/zz moved{src.suffix}"]
    assert row["title"] == "Title 2"
