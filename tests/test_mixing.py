import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crate_dask.errors import ParameterError
from crate_dask.features.mixing import compatible_keys, mix_candidates, tempo_ratio
from crate_dask.features.notation import KEYS, to_camelot

CAMELOT = [to_camelot(k) for k in KEYS]


@given(st.sampled_from(CAMELOT), st.sampled_from(CAMELOT))
def test_compatibility_is_symmetric(a, b):
    assert (b in compatible_keys(a)) == (a in compatible_keys(b))


@given(st.sampled_from(CAMELOT))
def test_four_distinct_keys_including_itself(k):
    ks = compatible_keys(k)
    assert len(set(ks)) == 4 and ks[0] == k and all(x in CAMELOT for x in ks)


def test_relative_and_fifth_musically():
    # A minor (8A): E minor and D minor a fifth away, C major its relative
    assert {to_camelot(k) for k in ("A minor", "E minor", "D minor", "C major")} == set(compatible_keys("8A"))


@pytest.mark.parametrize("bad", ["13A", "0B", "8C", "Am", ""])
def test_bad_camelot_is_a_parameter_error(bad):
    with pytest.raises(ParameterError):
        compatible_keys(bad)


@given(st.floats(60, 200))
def test_half_and_double_time_are_distance_zero(bpm):
    assert tempo_ratio(bpm / 2, bpm) < 1e-9 and tempo_ratio(bpm * 2, bpm) < 1e-9


def test_mix_candidates_from_results():
    df = pd.DataFrame({"relpath": ["a", "b", "c", "d", "e"], "bpm": [128.0, 126.0, 64.0, 128.0, 140.0],
                       "key_camelot": ["8A", "9A", "8B", "3A", "8A"]})
    got = mix_candidates(df, "a")
    assert list(got["relpath"]) == ["c", "b"]          # d: key clashes; e: 9 % faster
    with pytest.raises(ParameterError):
        mix_candidates(df, "zzz")
