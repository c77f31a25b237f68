"""``open_results(OUT)``: page, filter, sort and summarise a results folder without loading it.

Everything here is a pyarrow dataset scan over the partition files with a
column projection and, where possible, the row filter pushed down to the
scan (row groups whose statistics exclude the filter are skipped). Rows are
looked at in batches; a page keeps at most ``offset + limit`` rows while
sorting, so memory does not grow with the size of the library. DuckDB was not
needed: paging 100,000 rows takes milliseconds per page with pyarrow alone.

Manual corrections (``crate-dask fix``, :mod:`crate_dask.store.corrections`)
are applied to every batch: ``bpm``/``key``/``key_camelot``/``key_open`` are the
effective values, ``corrected`` marks them, ``bpm_detected``/``key_detected``
keep the estimator's values beside.

>>> import tempfile
>>> from crate_dask.explore.synthetic import write_synthetic_results
>>> out = write_synthetic_results(tempfile.mkdtemp(), n_rows=2500, partition_size=1000)
>>> r = open_results(out)
>>> len(r), len(r.page(0, 10, where="bpm:120..130", columns=["relpath", "bpm"]))
(2500, 10)
>>> r.count("bpm between 120 and 130") == int(((r.page(0, 3000, columns=['bpm']).bpm.between(120, 130))).sum())
True
"""

from __future__ import annotations

import functools
import math
import operator
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from crate_dask.explore.query import Query, QueryError, column_kinds, parse_query
from crate_dask.features.mixing import compatible_keys, tempo_ratio
from crate_dask.features.notation import to_camelot, to_open_key
from crate_dask.schema import SCHEMA
from crate_dask.store.corrections import KEY_COLUMNS, VALUE_COLUMNS, Corrections, load_corrections
from crate_dask.store.partitions import list_parts, load_state, no_results

__all__ = ["open_results", "Results", "DEFAULT_COLUMNS"]

#: What a page shows when no columns are asked for.
DEFAULT_COLUMNS = ["relpath", "artist", "title", "bpm", "key_camelot", "corrected", "format", "bitrate_kbps",
                   "duration_s", "error"]
#: Columns computed from the corrections, beside the stored ones.
VIRTUAL = {"corrected": pa.bool_(), "bpm_detected": pa.float64(), "key_detected": pa.string()}
BATCH_ROWS = 16_384
BPM_BINS = np.arange(60.0, 202.0, 2.0)


def open_results(out: str | os.PathLike) -> "Results":
    """Open the results folder ``out`` for querying (reads only the partition footers now).

    Raises
    ------
    crate_dask.errors.FatalError
        ``out`` holds no partition files.
    """
    return Results(out)


class Results:
    """A results folder as a queryable table. Use :func:`open_results`."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        parts = list_parts(out)
        if not parts:
            raise no_results(out)
        # Older partitions may lack newer columns (fingerprint, needs_review): one schema covers all of them.
        metas = [pq.read_metadata(p) for p in parts]
        self.schema = pa.unify_schemas([SCHEMA] + [m.schema.to_arrow_schema().remove_metadata() for m in metas])
        self._parts = [str(p) for p in parts]
        self._rows = [m.num_rows for m in metas]     # lets a plain page skip whole files without reading them
        self._ds = ds.dataset(self._parts, schema=self.schema, format="parquet")
        self.corrections: Corrections = load_corrections(out)
        self.root = load_state(out).get("root")
        full = pa.schema(list(self.schema) + [pa.field(n, t) for n, t in VIRTUAL.items()])
        self.kinds = column_kinds(full)
        self.columns = full.names

    # --- basics ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self._rows)

    def __repr__(self) -> str:
        return f"<Results {self.out}: {len(self)} files, {len(self.corrections)} corrections>"

    def query(self, where: str | Query | None) -> Query:
        """Parse ``where`` (expression or short form) against these columns; see :mod:`crate_dask.explore.query`."""
        return where if isinstance(where, Query) else parse_query(where, self.kinds)

    def batches(self, columns: Sequence[str] | None = None, where: str | Query | None = None,
                batch_rows: int = BATCH_ROWS, *, _dataset: ds.Dataset | None = None) -> Iterator[pa.Table]:
        """The matching rows, corrections applied, as a stream of tables with ``columns``."""
        q = self.query(where)
        cols = list(columns or DEFAULT_COLUMNS)
        self._check_columns(cols)
        need = set(cols) | q.columns
        corrected = bool(self.corrections) and bool(need & (set(VALUE_COLUMNS) | set(VIRTUAL)))
        read = {c for c in need if c not in VIRTUAL}
        if need & set(VIRTUAL):
            read |= {"bpm", "key"}
        if corrected:
            read |= set(VALUE_COLUMNS) | {c for c in KEY_COLUMNS if c in self.schema.names}
        # Push the filter into the scan when the stored values are the ones the filter means.
        pushdown = q.expression is not None and not (q.columns & set(VIRTUAL)) and not (
            corrected and q.columns & set(VALUE_COLUMNS))
        scanner = (_dataset or self._ds).scanner(columns=[c for c in self.schema.names if c in read], batch_size=batch_rows,
                                   filter=q.expression if pushdown else None, use_threads=False)
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            t = self._virtual(pa.Table.from_batches([batch]), corrected)
            if q.expression is not None and not pushdown:
                t = t.filter(q.expression)
                if t.num_rows == 0:
                    continue
            yield t.select(cols)

    def count(self, where: str | Query | None = None) -> int:
        """How many rows match ``where``."""
        q = self.query(where)
        if q.expression is None:
            return len(self)
        return sum(t.num_rows for t in self.batches(sorted(q.columns) or ["path"], q))

    def page(self, offset: int = 0, limit: int = 50, *, where: str | Query | None = None,
             order_by: str | Sequence[str] | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One page of matching rows as a DataFrame.

        Parameters
        ----------
        offset, limit : int
            Rows to skip, rows to return.
        where : str, optional
            An expression (``"bpm between 120 and 130 and key_camelot in ('8A','9A')"``) or the short
            form (``"bpm:120..130 key:8A artist:daft"``).
        order_by : str or list of str, optional
            Column names; ``-bpm`` or ``"bpm desc"`` sorts descending. Missing values sort last.
            Without it rows come in library order (path order).
        columns : list of str, optional
            The columns of the page [default: :data:`DEFAULT_COLUMNS`].

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import tempfile
        >>> from crate_dask.explore.synthetic import write_synthetic_results
        >>> r = open_results(write_synthetic_results(tempfile.mkdtemp(), n_rows=300))
        >>> p = r.page(0, 5, where="bpm > 100", order_by="-bpm", columns=["relpath", "bpm"])
        >>> bool(p.bpm.is_monotonic_decreasing and (p.bpm > 100).all())
        True
        """
        if offset < 0 or limit < 0:
            raise QueryError("offset and limit must not be negative")
        cols = list(columns or DEFAULT_COLUMNS)
        keys = _sort_keys(order_by)
        self._check_columns([k for k, _ in keys])
        read = cols + [k for k, _ in keys if k not in cols]
        keep = offset + limit
        if not keys:
            got, skipped, sub = [], 0, None
            if self.query(where).expression is None:   # skip whole files: their row counts are in the footers
                first = 0
                while first < len(self._rows) and skipped + self._rows[first] <= offset:
                    skipped += self._rows[first]
                    first += 1
                last, n = first, 0
                while last < len(self._rows) and n < offset - skipped + limit:
                    n += self._rows[last]
                    last += 1
                sub = ds.dataset(self._parts[first:last], schema=self.schema, format="parquet") \
                    if last > first else None
                if sub is None:
                    return self._empty(cols).to_pandas()
            for t in self.batches(read, where, _dataset=sub):
                if skipped + t.num_rows <= offset:
                    skipped += t.num_rows
                    continue
                t = t.slice(max(0, offset - skipped))
                skipped = offset
                got.append(t)
                if sum(g.num_rows for g in got) >= limit:
                    break
            table = pa.concat_tables(got).slice(0, limit) if got else self._empty(cols)
        else:
            best = None
            for t in self.batches(read, where):
                t = t if best is None else pa.concat_tables([best, t])
                best = t.sort_by(keys).slice(0, keep)    # never more than offset + limit rows
            table = best.slice(offset, limit) if best is not None else self._empty(read)
        return table.select(cols).to_pandas()

    # --- library overview -----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts, formats, bitrates, errors by cause, BPM and key distributions, analysis time.

        One streaming scan of a few columns. See :func:`crate_dask.explore.qa.summarise` for the keys.
        """
        from crate_dask.explore.qa import summarise

        cols = [c for c in ("format", "ext", "codec", "bitrate_kbps", "duration_s", "bpm", "bpm_detected", "key",
                            "key_camelot", "corrected", "analysis_s", "error_stage", "error", "artist", "title",
                            "tag_bpm", "tag_key", "needs_review") if c in self.columns]
        return summarise(self.batches(cols), out=str(self.out), root=self.root)

    def errors(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row with an error, with its cause (the message without file-specific details)."""
        from crate_dask.explore.qa import error_cause

        cols = list(columns or ["relpath", "error_stage", "error", "format", "size"])
        df = pd.concat([t.to_pandas() for t in self.batches(cols, "error is not null")] or
                       [self._empty(cols).to_pandas()], ignore_index=True)
        df["cause"] = [error_cause(s, e) for s, e in zip(df["error_stage"], df["error"])]
        return df

    def qa(self) -> dict[str, pd.DataFrame]:
        """Library QA tables: tag BPM at half/double, tag key disagreeing, missing artist/title, needs_review."""
        from crate_dask.explore.qa import qa_tables

        cols = [c for c in ("relpath", "artist", "title", "bpm", "bpm_detected", "tag_bpm", "key", "key_camelot",
                            "tag_key", "corrected", "error", "needs_review") if c in self.columns]
        return qa_tables(self.batches(cols))

    def duplicates(self, **kw: Any) -> pd.DataFrame:
        """Groups of files holding the same recording; see :func:`crate_dask.explore.duplicates.find_duplicates`."""
        from crate_dask.explore.duplicates import find_duplicates

        return find_duplicates(self, **kw)

    def row(self, path: str | os.PathLike, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """The results row of one file: ``path`` is absolute, relative to the current folder, or to the library root.

        Raises
        ------
        crate_dask.errors.ParameterError
            No such file in the results.
        """
        cols = list(columns or self.columns)
        self._check_columns(cols)
        text = os.fspath(path)
        absolute = os.path.abspath(text)
        tries = [pc.field("path") == absolute, pc.field("relpath") == text.strip("/"), pc.field("path") == text]
        # A file renamed (or put back by undo) since its row was written: its row has the earlier name.
        earlier, current = self._earlier_names(absolute, text.strip("/"))
        if earlier:
            tries.append(pc.field("relpath").isin(earlier))
        where = Query(text, functools.reduce(operator.or_, tries), {"path", "relpath"})
        found = [t for t in self.batches(sorted(set(cols) | {"path", "relpath"}), where)]
        if found:
            t = pa.concat_tables(found)
            for n, e in enumerate(tries):        # the most specific match first
                hit = t.filter(e)
                if hit.num_rows:
                    row = {c: hit.column(c)[0].as_py() for c in cols}
                    if n == 3:                   # found by an earlier name: say where the file is now
                        now = {"path": os.path.join(self.root, *current.split("/")), "relpath": current}
                        row.update({c: v for c, v in now.items() if c in row})
                    return row
        raise QueryError(f"no file {text!r} in the results of {self.out} (give its path, or its path relative "
                         f"to the library root {self.root})")

    def _earlier_names(self, absolute: str, rel: str) -> tuple[list[str], str | None]:
        """The relpaths that the file now at ``absolute`` (or at ``rel`` under the root) had before renames
        and undos, and its current relpath."""
        if not self.root:
            return [], None
        from crate_dask.store.history import moved_paths

        moves = moved_paths(self.out)
        for now in (os.path.relpath(absolute, self.root).replace(os.sep, "/"), rel):
            earlier = sorted(old for old, new in moves.items() if new == now and old != now)
            if earlier:
                return earlier, now
        return [], None

    def compatible(self, path: str | os.PathLike, *, bpm_tolerance: float = 0.06, limit: int | None = None,
                   columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Tracks that mix with ``path``: same or adjacent Camelot key or the relative key, tempo within
        ``bpm_tolerance`` (a fraction) also at half or double time. Closest tempo first.

        Examples
        --------
        >>> import tempfile
        >>> from crate_dask.explore.synthetic import write_synthetic_results
        >>> r = open_results(write_synthetic_results(tempfile.mkdtemp(), n_rows=400))
        >>> seed = r.page(0, 1, where="bpm is not null and key_camelot is not null").relpath[0]
        >>> m = r.compatible(seed)
        >>> s = r.row(seed)
        >>> bool(m.key_camelot.isin(compatible_keys(s["key_camelot"])).all()) and bool((m.tempo_diff <= 0.06).all())
        True
        """
        seed = self.row(path, ["relpath", "bpm", "key_camelot", "analysis_note"])
        if seed["bpm"] is None or (isinstance(seed["bpm"], float) and math.isnan(seed["bpm"])) \
                or not seed["key_camelot"]:
            raise QueryError(f"{seed['relpath']!r} has no key or tempo (analysis_note: {seed['analysis_note']})")
        keys = compatible_keys(seed["key_camelot"])
        bpm = float(seed["bpm"])
        lo, hi = 1 - bpm_tolerance, 1 + bpm_tolerance
        tempo = None
        for f in (0.5, 1.0, 2.0):   # a track at half or double time mixes too
            e = (pc.field("bpm") >= bpm * lo / f) & (pc.field("bpm") <= bpm * hi / f)
            tempo = e if tempo is None else tempo | e
        where = Query("compatible", pc.field("key_camelot").isin(keys) & tempo & (pc.field("relpath") != seed["relpath"]),
                      {"key_camelot", "bpm", "relpath"})
        cols = list(columns or ["relpath", "artist", "title", "bpm", "key_camelot", "corrected"])
        read = cols + [c for c in ("bpm", "key_camelot") if c not in cols]
        df = pd.concat([t.to_pandas() for t in self.batches(read, where)] or [self._empty(read).to_pandas()],
                       ignore_index=True)
        df["tempo_diff"] = [round(tempo_ratio(b, bpm), 4) for b in df["bpm"]]
        df["key_relation"] = [_relation(seed["key_camelot"], k) for k in df["key_camelot"]]
        df = df.sort_values(["tempo_diff", "relpath"], kind="stable").reset_index(drop=True)
        return (df if limit is None else df.head(limit))[cols + ["tempo_diff", "key_relation"]]

    # --- internals ------------------------------------------------------------------------------------

    def _check_columns(self, cols: Sequence[str]) -> None:
        from crate_dask.explore.query import _column

        for c in cols:
            if c not in self.columns:
                _column(c, dict.fromkeys(self.columns, ""))

    def _empty(self, cols: Sequence[str]) -> pa.Table:
        full = {f.name: f.type for f in self.schema} | VIRTUAL
        return pa.table({c: pa.array([], full[c]) for c in cols})

    def _virtual(self, t: pa.Table, corrected: bool) -> pa.Table:
        """Add ``corrected``/``bpm_detected``/``key_detected`` and apply the corrections."""
        n = t.num_rows
        if "bpm" in t.column_names:
            t = t.append_column("bpm_detected", t.column("bpm"))
        if "key" in t.column_names:
            t = t.append_column("key_detected", t.column("key"))
        if not corrected:
            return t.append_column("corrected", pa.array(np.zeros(n, bool)))
        keys = {c: t.column(c).to_pylist() for c in KEY_COLUMNS if c in t.column_names}
        hits = [self.corrections.lookup({c: keys[c][i] for c in keys}) for i in range(n)]
        if not any(hits):
            return t.append_column("corrected", pa.array(np.zeros(n, bool)))
        values = {c: t.column(c).to_pylist() for c in VALUE_COLUMNS if c in t.column_names}
        for i, h in enumerate(hits):
            if h is None:
                continue
            if h.get("bpm") is not None and "bpm" in values:
                values["bpm"][i] = h["bpm"]
                if "bpm_confidence" in values:
                    values["bpm_confidence"][i] = 1.0
            if h.get("key") is not None:
                for c, v in (("key", h["key"]), ("key_camelot", to_camelot(h["key"])),
                             ("key_open", to_open_key(h["key"])), ("key_confidence", 1.0)):
                    if c in values:
                        values[c][i] = v
        for c, v in values.items():
            t = t.set_column(t.column_names.index(c), c, pa.array(v, t.schema.field(c).type))
        return t.append_column("corrected", pa.array([h is not None for h in hits]))


def _sort_keys(order_by: str | Sequence[str] | None) -> list[tuple[str, str]]:
    if not order_by:
        return []
    items = [order_by] if isinstance(order_by, str) else list(order_by)
    keys = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(-?)(\w+)(?:\s+(asc|desc))?", part, re.IGNORECASE)
            if not m:
                raise QueryError(f"cannot sort by {part!r}: write a column name, -column or 'column desc'")
            desc = m.group(1) == "-" or (m.group(3) or "").lower() == "desc"
            keys.append((m.group(2), "descending" if desc else "ascending"))
    return keys


def _relation(seed: str, other: str) -> str:
    if other == seed:
        return "same key"
    if other[:-1] == seed[:-1]:
        return "relative"
    return "+1" if int(other[:-1]) == int(seed[:-1]) % 12 + 1 else "-1"
