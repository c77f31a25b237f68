"""Harmonic mixing: which tracks mix well with a given one (key and tempo), from the results.

The Camelot wheel's rule: a track mixes with the same key, one step around the
wheel (a fifth up or down, same mode) and its relative key (same number, other
letter). Tempi mix within a few percent, also at half or double time.

>>> compatible_keys("8A")
['8A', '7A', '9A', '8B']
>>> compatible_keys("12B")
['12B', '11B', '1B', '12A']
"""

from __future__ import annotations

import re

import pandas as pd

from crate_dask.errors import ParameterError

_CAMELOT = re.compile(r"^(1[0-2]|[1-9])([AB])$")


def compatible_keys(camelot: str) -> list[str]:
    """The Camelot keys that mix harmonically with ``camelot``: itself, its wheel neighbours, its relative."""
    m = _CAMELOT.match(str(camelot).strip().upper())
    if not m:
        raise ParameterError(f"not a Camelot key: {camelot!r}")
    n, letter = int(m.group(1)), m.group(2)
    other = "B" if letter == "A" else "A"
    return [f"{n}{letter}", f"{(n - 2) % 12 + 1}{letter}", f"{n % 12 + 1}{letter}", f"{n}{other}"]


def tempo_ratio(bpm: float, target: float) -> float:
    """Relative tempo distance of ``bpm`` to ``target``, allowing half and double time.

    >>> round(tempo_ratio(126.0, 128.0), 4), round(tempo_ratio(64.0, 128.0), 4)
    (0.0156, 0.0)
    """
    if not (bpm > 0 and target > 0):
        return float("nan")
    return min(abs(bpm * f - target) / target for f in (0.5, 1.0, 2.0))


def mix_candidates(results: pd.DataFrame, relpath: str, *, bpm_tolerance: float = 0.06) -> pd.DataFrame:
    """Tracks of ``results`` that mix with the track at ``relpath``: compatible key, tempo within tolerance.

    Sorted by tempo distance; the track itself is left out. ``results`` is the
    results dataset (``pandas.read_parquet(OUT)``) or any frame with ``relpath``,
    ``bpm`` and ``key_camelot`` columns.
    """
    rows = results[results["relpath"] == relpath]
    if rows.empty:
        raise ParameterError(f"no track {relpath!r} in the results")
    seed = rows.iloc[0]
    if pd.isna(seed["key_camelot"]) or pd.isna(seed["bpm"]):
        raise ParameterError(f"{relpath!r} has no key or tempo (analysis_note: {seed.get('analysis_note')})")
    keys = compatible_keys(seed["key_camelot"])
    others = results[(results["relpath"] != relpath) & results["key_camelot"].isin(keys)].copy()
    others["tempo_diff"] = [tempo_ratio(b, seed["bpm"]) for b in others["bpm"]]
    return others[others["tempo_diff"] <= bpm_tolerance].sort_values(["tempo_diff", "relpath"])
