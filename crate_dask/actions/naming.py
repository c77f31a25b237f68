"""File-name templates and safe file names: pure functions, no file system access.

A template is Python format syntax over the result columns
(:data:`FIELDS`), e.g. ``"{artist} - {title} [{key_camelot} {bpm:.0f}]"``.
A ``/`` written in the template itself makes subfolders; a ``/`` inside a tag
value never does (``AC/DC`` becomes ``AC_DC``). Every path component is made
safe for the file systems DJs meet (ext4, APFS, NTFS, exFAT/FAT USB sticks).

>>> fields = parse_template("{artist} - {title} [{key_camelot} {bpm:.0f}]")
>>> fields
('artist', 'title', 'key_camelot', 'bpm')
>>> render_relpath("{artist} - {title} [{key_camelot} {bpm:.0f}]",
...                {"artist": "AC/DC", "title": "T.N.T.", "key_camelot": "8A", "bpm": 125.6}, ext=".mp3")
'AC_DC - T.N.T. [8A 126].mp3'
>>> numbered("Artist - Title.mp3", 2)
'Artist - Title (2).mp3'
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from typing import Any, Mapping

from crate_dask.errors import ParameterError
from crate_dask.schema import SCHEMA

#: The template used when none is given.
DEFAULT_TEMPLATE = "{artist} - {title}"

_NOT_FIELDS = {"path", "path_bytes", "relpath", "mtime", "mtime_ns", "size", "error", "error_stage",
               "error_type", "error_limit", "crashes", "analysis_s", "analysis_note"}
#: Fields a template may use: the result columns, plus ``stem`` (the current name without extension).
FIELDS: frozenset[str] = frozenset({f.name for f in SCHEMA if f.name not in _NOT_FIELDS} | {"stem"})

#: The confidence column that vouches for each analysed field.
CONFIDENCE_OF: dict[str, str] = {"bpm": "bpm_confidence", "bpm_alt": "bpm_confidence",
                                 "key": "key_confidence", "key_camelot": "key_confidence",
                                 "key_open": "key_confidence"}

#: The largest file-name component most file systems accept, in bytes (UTF-8).
MAX_NAME_BYTES = 255

_ILLEGAL = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')   # NTFS/exFAT-illegal characters, controls, separators
_SPACES = re.compile(r"[\t\n\r\v\f]+")
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                       *(f"LPT{i}" for i in range(1, 10))})


def _sample_value(name: str) -> Any:
    """A typed stand-in used to check format specs before any file is touched."""
    if name == "stem":
        return "x"
    t = SCHEMA.field(name).type
    return 1 if str(t).startswith("int") else 1.5 if str(t).startswith("double") else "x"


def parse_template(template: str) -> tuple[str, ...]:
    """Check a template and return the fields it uses, in order.

    Parameters
    ----------
    template : str
        Python format syntax over :data:`FIELDS`; ``/`` in the literal text makes subfolders.

    Returns
    -------
    tuple of str
        The field names, each once.

    Raises
    ------
    ParameterError
        Unknown field, positional or attribute access, a format spec that does not fit
        the field's type, or a template that cannot give a file name.

    Examples
    --------
    >>> parse_template("{genre}/{artist} - {title}")
    ('genre', 'artist', 'title')
    >>> parse_template("{artst}")
    Traceback (most recent call last):
    ...
    crate_dask.errors.ParameterError: unknown template field 'artst' (did you mean 'artist'?)
    """
    if not isinstance(template, str) or not template.strip():
        raise ParameterError("the template is empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ParameterError(f"bad template {template!r}: {exc}") from None
    names: list[str] = []
    literal = ""
    for text, name, spec, _conv in parsed:
        literal += text
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ParameterError("template fields must be named, e.g. {artist}")
        if name not in FIELDS:
            base = re.split(r"[.\[]", name)[0]
            if base in FIELDS:
                raise ParameterError(f"template field {name!r}: attribute and index access are not allowed")
            import difflib

            close = difflib.get_close_matches(name, sorted(FIELDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(FIELDS))})"
            raise ParameterError(f"unknown template field {name!r}{hint}")
        if spec and "{" in spec:
            raise ParameterError(f"nested fields in the format spec of {{{name}}} are not allowed")
        if name not in names:
            names.append(name)
    if not names:
        raise ParameterError("the template uses no field, so every file would get the same name")
    if template.startswith("/") or any(part in (".", "..") for part in literal.split("/")):
        raise ParameterError("the template must be a relative path without '.' or '..' folders")
    try:
        template.format_map({n: _sample_value(n) for n in names})
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"template {template!r} does not fit the field types: {exc}") from None
    return tuple(names)


def is_empty(value: Any) -> bool:
    """Whether a column value counts as missing (None, NaN or blank text).

    >>> [is_empty(v) for v in (None, float("nan"), "  ", 0, "x")]
    [True, True, True, False, False]
    """
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def missing_fields(fields: tuple[str, ...], values: Mapping[str, Any]) -> list[str]:
    """The template fields that are empty in ``values``.

    >>> missing_fields(("artist", "title"), {"artist": "", "title": "x"})
    ['artist']
    """
    return [f for f in fields if is_empty(values.get(f))]


def safe_component(text: str, *, max_bytes: int = MAX_NAME_BYTES, replacement: str = "_") -> str:
    """Make ``text`` a safe single path component (a file or folder name).

    Unicode is normalised to NFC; separators, characters illegal on NTFS/exFAT and
    control characters are replaced; leading dots (hidden files) and trailing dots or
    spaces are trimmed; reserved device names get a suffix; the result fits
    ``max_bytes`` of UTF-8 without splitting a character. Never empty, never ``.``/``..``.

    Examples
    --------
    >>> safe_component("AC/DC: Back in Black?")
    'AC_DC_ Back in Black_'
    >>> safe_component("../../x"), safe_component("CON"), safe_component("song. . "), safe_component("")
    ('_.._x', 'CON_', 'song', '_')
    >>> len(safe_component("é" * 300).encode())
    254
    """
    s = unicodedata.normalize("NFC", str(text)).encode("utf-8", "replace").decode("utf-8")
    s = _ILLEGAL.sub(replacement, _SPACES.sub(" ", s))
    s = s.strip(" ").lstrip(".").rstrip(". ")
    stem = s.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED:
        s = s[:len(s.split(".", 1)[0])] + replacement + s[len(s.split(".", 1)[0]):]
    s = _truncate(s, max_bytes).rstrip(". ")
    return s or replacement


def _truncate(s: str, max_bytes: int) -> str:
    """Cut ``s`` to at most ``max_bytes`` of UTF-8 at a character boundary."""
    b = s.encode("utf-8")
    return s if len(b) <= max_bytes else b[:max_bytes].decode("utf-8", "ignore")


def safe_filename(stem: str, ext: str, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A safe file name ``stem + ext`` that fits ``max_bytes``, always keeping the extension.

    >>> safe_filename("a" * 300, ".flac").endswith("a.flac"), len(safe_filename("a" * 300, ".flac"))
    (True, 255)
    >>> safe_filename("NUL", ".mp3")
    'NUL_.mp3'
    """
    ext = safe_component(ext.lstrip("."), max_bytes=32) if ext.strip(".") else ""
    ext = f".{ext}" if ext else ""
    return safe_component(stem, max_bytes=max_bytes - len(ext.encode("utf-8"))) + ext


def render_relpath(template: str, values: Mapping[str, Any], *, ext: str,
                   max_bytes: int = MAX_NAME_BYTES) -> str:
    """Render ``template`` with ``values`` into a safe relative path (``/``-separated) ending in ``ext``.

    Tag values are sanitised before formatting, so they never add folders; the
    template's own ``/`` make folders. Call :func:`missing_fields` first: empty
    values render as empty text here.

    Examples
    --------
    >>> render_relpath("{genre}/{artist} - {title}", {"genre": "Drum & Bass", "artist": "Ed Rush",
    ...                "title": "../../etc/passwd"}, ext=".flac")
    'Drum & Bass/Ed Rush - .._.._etc_passwd.flac'
    >>> render_relpath("{track:02d} {title}", {"track": 3, "title": "😀 Intro"}, ext=".MP3")
    '03 😀 Intro.MP3'
    """
    clean = {k: (_ILLEGAL.sub("_", v) if isinstance(v, str) else ("" if is_empty(v) else v))
             for k, v in values.items()}
    text = template.format_map(_Missing(clean))
    parts = [p for p in text.split("/") if p.strip(" .")]
    if not parts:
        parts = ["_"]
    folders = [safe_component(p, max_bytes=max_bytes) for p in parts[:-1]]
    return "/".join([*folders, safe_filename(parts[-1], ext, max_bytes=max_bytes)])


class _Missing(dict):
    def __missing__(self, key: str) -> str:  # a field absent from the row renders empty
        return ""


def numbered(relpath: str, n: int, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``relpath`` with `` (n)`` before its extension, still within ``max_bytes``.

    >>> numbered("Techno/" + "x" * 260 + ".wav", 3).endswith("x (3).wav")
    True
    """
    folder, _, name = relpath.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    suffix = f" ({n})" + (f".{ext}" if dot else "")
    name = _truncate(stem, max_bytes - len(suffix.encode("utf-8"))).rstrip(". ") + suffix
    return f"{folder}/{name}" if folder else name


def collision_key(relpath: str) -> str:
    """The key under which two names clash on a case-insensitive, normalising file system.

    >>> collision_key("Björk.mp3") == collision_key("BJO\\u0308RK.MP3")
    True
    """
    return unicodedata.normalize("NFC", relpath).casefold()
