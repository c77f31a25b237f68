"""open_results over partitions of different schema versions: older ones without the fingerprint, newer ones
with the fingerprint and needs_review columns, in one dataset."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from crate_dask import open_results
from crate_dask.explore.synthetic import write_synthetic_results


def test_mixed_schemas_are_read_as_one_dataset(tmp_path):
    out = write_synthetic_results(tmp_path / "out", n_rows=300, partition_size=100)
    old, new = out / "part-00000.parquet", out / "part-00001.parquet"
    t = pq.read_table(old)
    pq.write_table(t.drop_columns(["fingerprint", "needs_review"]), old)      # schema 1: neither column
    t = pq.read_table(new)
    flags = pa.array([i % 10 == 0 for i in range(t.num_rows)])
    i = t.schema.get_field_index("needs_review")
    pq.write_table(t.set_column(i, "needs_review", flags), new)               # the current schema
    r = open_results(out)
    assert len(r) == 300 and "needs_review" in r.columns
    assert r.count("needs_review") == 10 and r.count("needs_review:true") == 10
    qa = r.qa()
    assert qa["counts"]["needs_review"] == 10 and len(qa["needs_review"]) == 10
    assert len(r.page(0, 300, columns=["relpath", "fingerprint", "needs_review"])) == 300
    assert r.duplicates().empty or set(r.duplicates().evidence) <= {"metadata"}
