"""Tests for crate_dask.features.notation: the key notation maps are bijections and parse_key inverts them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crate_dask.errors import ParameterError
from crate_dask.features.notation import (
    KEYS,
    NOTATIONS,
    format_key,
    parse_key,
    to_camelot,
    to_id3_key,
    to_open_key,
)

keys = st.sampled_from(KEYS)
notations = st.sampled_from(NOTATIONS)


@pytest.mark.parametrize("fn", [to_camelot, to_open_key, to_id3_key])
def test_maps_are_bijections_over_24_keys(fn):
    images = [fn(k) for k in KEYS]
    assert len(set(images)) == 24


@given(keys, notations)
def test_parse_inverts_every_notation(key, notation):
    assert parse_key(format_key(key, notation)) == key


@given(keys, keys)
def test_distinct_keys_have_distinct_codes(a, b):
    if a != b:
        assert to_camelot(a) != to_camelot(b) and to_open_key(a) != to_open_key(b) and to_id3_key(a) != to_id3_key(b)


@given(keys)
def test_relative_keys_share_a_wheel_number(key):
    # Camelot and Open Key put a minor key and its relative major on the same number.
    pc, mode = key.split()
    idx = KEYS.index(key)
    relative = KEYS[(idx % 12 + (9 if mode == "major" else 3)) % 12 + (12 if mode == "major" else 0)]
    assert to_camelot(key)[:-1] == to_camelot(relative)[:-1]
    assert to_open_key(key)[:-1] == to_open_key(relative)[:-1]


@given(keys)
def test_id3_codes_fit_the_tkey_frame(key):
    code = to_id3_key(key)
    assert 1 <= len(code) <= 3 and code[0] in "ABCDEFG" and set(code[1:]) <= set("#bm")


@pytest.mark.parametrize("key, camelot, open_key", [
    ("C major", "8B", "1d"), ("A minor", "8A", "1m"), ("G major", "9B", "2d"), ("E minor", "9A", "2m"),
    ("F major", "7B", "12d"), ("D minor", "7A", "12m"), ("B major", "1B", "6d"), ("G# minor", "1A", "6m"),
    ("F# major", "2B", "7d"), ("D# minor", "2A", "7m"), ("A# major", "6B", "11d"), ("G minor", "6A", "11m"),
])
def test_wheel_codes_match_the_published_wheels(key, camelot, open_key):
    assert to_camelot(key) == camelot and to_open_key(key) == open_key


@pytest.mark.parametrize("text, expected", [
    ("Am", "A minor"), ("A min", "A minor"), ("a minor", "A minor"), ("A Minor", "A minor"),
    ("8A", "A minor"), ("8a", "A minor"), ("1m", "A minor"), ("01m", "A minor"), ("F#m", "F# minor"),
    ("Gb", "F# major"), ("Bbm", "A# minor"), ("Abmaj", "G# major"), ("Ab major", "G# major"),
    ("Db", "C# major"), ("D♭ major", "C# major"), ("G♯m", "G# minor"), ("E-flat minor", "D# minor"),
    ("B- major", "A# major"), ("C:min", "C minor"), ("CM", "C major"), ("Cm", "C minor"), ("B", "B major"),
    ("bm", "B minor"), ("Cb", "B major"), ("E#m", "F minor"), ("12B", "E major"), ("12d", "F major"),
    ("  Em  ", "E minor"), ("C sharp minor", "C# minor"),
])
def test_parse_key_is_lenient(text, expected):
    assert parse_key(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "o", "H", "13A", "0B", "8C", "128 BPM", "Am7", "C dorian", None, 8])
def test_parse_key_rejects_non_keys(text):
    assert parse_key(text) is None


def test_id3_spelling_uses_key_signature_flats():
    assert [to_id3_key(k) for k in ("A minor", "F# major", "A# minor", "D# major", "C# minor")] == \
        ["Am", "F#", "Bbm", "Eb", "C#m"]


def test_bad_input_raises():
    with pytest.raises(ParameterError):
        to_camelot("not a key")
    with pytest.raises(ParameterError):
        format_key("A minor", "roman")
