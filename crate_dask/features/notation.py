"""Key notations: musical names, Camelot, Open Key and ID3 ``TKEY`` spellings.

Every function here is a pure map between the 24 major and minor keys. The
canonical spelling is the one ``mir_eval`` reads: a tonic with sharps and a
mode, ``"A minor"``, ``"F# major"``. ``parse_key`` accepts what DJ software and
taggers write into files and returns that canonical spelling.

>>> to_camelot("A minor"), to_open_key("A minor"), to_id3_key("A# minor")
('8A', '1m', 'Bbm')
>>> parse_key("Abmaj"), parse_key("8A"), parse_key("1m"), parse_key("F#m")
('G# major', 'A minor', 'A minor', 'F# minor')
>>> format_key("C major", "camelot")
'8B'
"""

from __future__ import annotations

import re

from crate_dask.errors import ParameterError

#: Pitch-class names, sharps only (index = pitch class, C = 0).
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")
#: The 24 canonical key names: 12 major keys, then 12 minor keys.
KEYS = tuple(f"{pc} {mode}" for mode in MODES for pc in PITCH_CLASSES)
NOTATIONS = ("musical", "camelot", "open", "id3")

# ID3 spellings follow the usual key signatures: Bb major / Bb minor, not A# (fewer accidentals).
_ID3_MAJOR = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_ID3_MINOR = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")

_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"#": 1, "b": -1, "": 0}
_MODE_WORDS = {
    "": "major", "maj": "major", "major": "major", "dur": "major", "ionian": "major",
    "m": "minor", "mi": "minor", "min": "minor", "minor": "minor", "moll": "minor", "aeolian": "minor",
}
_NOTE_RE = re.compile(r"^([a-g])([#b])?[\s:_\-]*([a-z]*)$")
_WHEEL_RE = re.compile(r"^0?([1-9]|1[0-2])\s*([abdm])$")


def _split(key: str) -> tuple[int, str]:
    """Pitch class and mode of a canonical key name; ParameterError otherwise."""
    try:
        pc, mode = key.split(" ")
        return PITCH_CLASSES.index(pc), MODES[MODES.index(mode)]
    except (ValueError, AttributeError):
        raise ParameterError(f"not a canonical key name: {key!r} (expected e.g. 'A minor')") from None


def _canonical(key: str) -> tuple[int, str]:
    """Pitch class and mode of a canonical key, falling back to the lenient parser."""
    if isinstance(key, str) and key in _KEY_SET:
        return _split(key)
    parsed = parse_key(key) if isinstance(key, str) else None
    if parsed is None:
        raise ParameterError(f"not a key: {key!r}")
    return _split(parsed)


def _wheel_number(pc: int, mode: str) -> int:
    """Position (0..11) on the circle of fifths of a key's relative major, C major = 0."""
    major_pc = pc if mode == "major" else (pc + 3) % 12
    return (7 * major_pc) % 12


def to_camelot(key: str) -> str:
    """Camelot wheel code of a key: ``"8A"`` for A minor, ``"8B"`` for C major.

    Parameters
    ----------
    key : str
        A key name (canonical, or anything :func:`parse_key` reads).

    Returns
    -------
    str
        ``1A``..``12A`` (minor) or ``1B``..``12B`` (major).

    Examples
    --------
    >>> to_camelot("C major"), to_camelot("F# minor"), to_camelot("Bbm")
    ('8B', '11A', '3A')
    """
    pc, mode = _canonical(key)
    return f"{(_wheel_number(pc, mode) + 7) % 12 + 1}{'B' if mode == 'major' else 'A'}"


def to_open_key(key: str) -> str:
    """Open Key code of a key (as Traktor writes it): ``"1d"`` for C major, ``"1m"`` for A minor.

    Examples
    --------
    >>> to_open_key("C major"), to_open_key("E minor"), to_open_key("F major")
    ('1d', '2m', '12d')
    """
    pc, mode = _canonical(key)
    return f"{_wheel_number(pc, mode) + 1}{'d' if mode == 'major' else 'm'}"


def to_id3_key(key: str) -> str:
    """ID3v2 ``TKEY`` spelling: at most 3 characters, ``#``/``b`` accidentals, ``m`` for minor.

    Flats are used where the usual key signature has them (``"Bb"``, ``"Ebm"``).

    Examples
    --------
    >>> to_id3_key("A minor"), to_id3_key("F# major"), to_id3_key("A# minor"), to_id3_key("C# major")
    ('Am', 'F#', 'Bbm', 'Db')
    """
    pc, mode = _canonical(key)
    return (_ID3_MAJOR if mode == "major" else _ID3_MINOR)[pc]


def format_key(key: str, notation: str) -> str:
    """Write a key in one notation: ``"musical"``, ``"camelot"``, ``"open"`` or ``"id3"``.

    Examples
    --------
    >>> [format_key("D minor", n) for n in NOTATIONS]
    ['D minor', '7A', '12m', 'Dm']
    """
    if notation not in NOTATIONS:
        raise ParameterError(f"unknown key notation {notation!r}; expected one of {NOTATIONS}")
    pc, mode = _canonical(key)
    canonical = f"{PITCH_CLASSES[pc]} {mode}"
    if notation == "musical":
        return canonical
    return {"camelot": to_camelot, "open": to_open_key, "id3": to_id3_key}[notation](canonical)


def parse_key(text: str) -> str | None:
    """Read a key written in any common notation; ``None`` if ``text`` is not a key.

    Accepts musical names with sharps or flats (``"Am"``, ``"A min"``, ``"a minor"``,
    ``"F#m"``, ``"Gb"``, ``"Bbm"``, ``"Abmaj"``, ``"D♭ major"``, ``"C:min"``),
    Camelot (``"8A"``) and Open Key (``"1m"``, ``"12d"``). The ID3 "off key"
    marker ``"o"`` and empty strings give ``None``.

    Examples
    --------
    >>> parse_key("Am"), parse_key("Gb"), parse_key("12d"), parse_key("11B")
    ('A minor', 'F# major', 'F major', 'A major')
    >>> parse_key("o") is None, parse_key("128 BPM") is None
    (True, True)
    """
    if not isinstance(text, str):
        return None
    raw = text.strip()
    if not raw:
        return None
    # A bare "M" after a tonic is a major key in some taggers ("AM"); decide before lower-casing.
    m_upper = re.fullmatch(r"([A-Ga-g](?:#|♯|♭|b)?)M", raw)
    if m_upper:
        raw = m_upper.group(1) + "maj"
    s = raw.lower().replace("♭", "b").replace("♯", "#")
    s = re.sub(r"[\s_\-]*flat", "b", s)
    s = re.sub(r"[\s_\-]*sharp", "#", s)
    s = re.sub(r"^([a-g])-(?=\s|$)", r"\1b", s)  # music21 writes B flat as "B-"
    wheel = _WHEEL_RE.match(s)
    if wheel:
        n, letter = int(wheel.group(1)), wheel.group(2)
        if letter in "ab":       # Camelot: 8B = C major, 8A = A minor
            pos, mode = (n - 8) % 12, "major" if letter == "b" else "minor"
        else:                    # Open Key: 1d = C major, 1m = A minor
            pos, mode = (n - 1) % 12, "major" if letter == "d" else "minor"
        major_pc = (7 * pos) % 12  # 7 is its own inverse mod 12
        pc = major_pc if mode == "major" else (major_pc - 3) % 12
        return f"{PITCH_CLASSES[pc]} {mode}"
    m = _NOTE_RE.match(s)
    if not m:
        return None
    letter, accidental, mode_word = m.group(1), m.group(2) or "", m.group(3)
    mode = _MODE_WORDS.get(mode_word)
    if mode is None:
        return None
    pc = (_LETTERS[letter.upper()] + _ACCIDENTALS[accidental]) % 12
    return f"{PITCH_CLASSES[pc]} {mode}"


_KEY_SET = frozenset(KEYS)
