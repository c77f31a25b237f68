"""Templates and safe names (pure functions)."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crate_dask.actions import naming
from crate_dask.errors import ParameterError


@pytest.mark.parametrize("template, message", [
    ("{artst} - {title}", "unknown template field 'artst'"),
    ("{0}", "must be named"),
    ("{artist.upper}", "attribute"),
    ("{artist:.0f}", "does not fit"),
    ("{bpm:d}", "does not fit"),
    ("plain text", "uses no field"),
    ("../{artist}", "relative path"),
    ("{artist", "bad template"),
])
def test_bad_templates_fail_with_a_clear_message(template, message):
    with pytest.raises(ParameterError, match=message):
        naming.parse_template(template)


def test_subfolders_and_format_specs():
    values = {"genre": "Techno", "artist": "Surgeon", "title": "Klonk", "bpm": 133.4, "key_camelot": "5A",
              "track": 7}
    rel = naming.render_relpath("{genre}/{track:02d} {artist} - {title} [{key_camelot} {bpm:.0f}]", values,
                                ext=".flac")
    assert rel == "Techno/07 Surgeon - Klonk [5A 133].flac"


@pytest.mark.parametrize("value", ["AC/DC", "../../x", "a\\b", "..", ".", "x\x00y", "\u202e\x07evil"])
def test_tag_values_never_add_folders_or_escape(value):
    rel = naming.render_relpath("{artist} - {title}", {"artist": value, "title": value}, ext=".mp3")
    assert "/" not in rel and "\\" not in rel and not rel.startswith(".")
    assert all(ord(c) >= 32 for c in rel)


def test_reserved_long_and_emoji_names():
    assert naming.safe_filename("con", ".wav") == "con_.wav"
    assert naming.safe_filename("LPT1.remix", ".wav") == "LPT1_.remix.wav"
    long = naming.render_relpath("{title}", {"title": "🎧" * 300}, ext=".flac")
    assert len(long.encode()) <= 255 and long.endswith("🎧.flac")
    assert naming.safe_component("trailing dots... ") == "trailing dots"


def test_numbered_names_differ_and_fit():
    base = "x" * 250 + ".mp3"
    names = {naming.numbered(base, n) for n in range(2, 30)}
    assert len(names) == 28 and all(len(n.encode()) <= 255 and n.endswith(".mp3") for n in names)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_safe_component_is_always_a_valid_name(text):
    s = naming.safe_component(text)
    assert s and s not in (".", "..") and "/" not in s and "\x00" not in s
    assert len(s.encode("utf-8")) <= 255
    assert s == unicodedata.normalize("NFC", s) and not s.endswith((".", " ")) and not s.startswith(".")
    assert s.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from([".mp3", ".flac", ".M4A", ".aiff"]))
def test_rendered_names_keep_the_extension(title, ext):
    rel = naming.render_relpath("{artist} - {title}", {"artist": "a", "title": title}, ext=ext)
    assert rel.endswith(ext) and "/" not in rel and len(rel.encode()) <= 255
