"""A small, safe query language over the result columns, compiled to pyarrow expressions.

Two forms, both parsed by hand here (user input is never given to ``eval``):

* expressions: comparisons (``= == != < <= > >=``), ``and``/``or``/``not``,
  parentheses, ranges (``bpm between 120 and 130``, ``bpm in 120..130``), sets
  (``key_camelot in ('8A', '9A')``), case-insensitive text search
  (``artist contains 'daft'``, or ``artist ~ 'daft'``), ``is null``/``is not null``
  and bare boolean columns (``corrected``, ``not corrected``);
* the beets-like short form: ``bpm:120..130 key:8A artist:daft`` (terms are
  and-ed; ``col:value`` is *contains* for text and *equals* otherwise; ``lo..hi``,
  ``lo..`` and ``..hi`` are ranges; a bare word searches artist, title, album and path).

A comparison with a missing value is neither true nor false, as in SQL:
``not bpm < 125`` leaves out the tracks without a tempo (``bpm is null`` finds them).
Key columns accept any key notation: ``key = 'Am'``, ``key_camelot = 'A minor'``
and ``key:8A`` all mean A minor.

>>> columns = {"bpm": "number", "artist": "text", "key": "text", "corrected": "bool"}
>>> q = parse_query("bpm:120..130 key:8A artist:daft", columns)
>>> sorted(q.columns)
['artist', 'bpm', 'key']
>>> parse_query("bmp > 120", columns)
Traceback (most recent call last):
...
crate_dask.explore.query.QueryError: unknown column 'bmp' (did you mean 'bpm'?)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crate_dask.errors import ParameterError
from crate_dask.features.notation import format_key, parse_key

__all__ = ["parse_query", "Query", "QueryError", "column_kinds"]

MAX_LENGTH = 4000
MAX_DEPTH = 40
_KEY_NOTATION = {"key": "musical", "key_camelot": "camelot", "key_open": "open", "key_detected": "musical"}
_TEXT_SEARCH = ("artist", "title", "album", "path")


class QueryError(ParameterError):
    """A query that cannot be parsed or refers to an unknown column (exit code 2 on the command line)."""


@dataclass
class Query:
    """A parsed query: the pyarrow filter expression and the columns it reads."""

    text: str
    expression: pc.Expression | None
    columns: set[str] = field(default_factory=set)


def column_kinds(schema: pa.Schema) -> dict[str, str]:
    """``number``, ``text``, ``bool`` or ``time`` for each queryable column of ``schema`` (binary ones are not)."""
    kinds = {}
    for f in schema:
        t = f.type
        if pa.types.is_boolean(t):
            kinds[f.name] = "bool"
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            kinds[f.name] = "number"
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            kinds[f.name] = "text"
        elif pa.types.is_timestamp(t):
            kinds[f.name] = "time"
    return kinds


def parse_query(text: str | None, columns: dict[str, str]) -> Query:
    """Parse an expression or a short-form query against ``columns`` (name -> kind, see :func:`column_kinds`).

    Raises
    ------
    QueryError
        A syntax error, an unknown column (with the closest names), a value of the wrong type.

    Examples
    --------
    >>> cols = {"bpm": "number", "key_camelot": "text", "title": "text", "corrected": "bool"}
    >>> sorted(parse_query("bpm >= 120 and (key_camelot in ('8A', '9A') or title contains 'mix')", cols).columns)
    ['bpm', 'key_camelot', 'title']
    >>> parse_query("not corrected and bpm in 120..130", cols).columns == {"corrected", "bpm"}
    True
    >>> sorted(parse_query("daft bpm:120..130", cols).columns)   # a bare word searches the text columns
    ['bpm', 'title']
    >>> parse_query("__import__('os').system('id')", cols)
    Traceback (most recent call last):
    ...
    crate_dask.explore.query.QueryError: unexpected '.' at position 17: __import__('os')>>>.system('id')
    """
    text = (text or "").strip()
    if not text:
        return Query("", None, set())
    if len(text) > MAX_LENGTH:
        raise QueryError(f"query too long ({len(text)} characters, at most {MAX_LENGTH})")
    if re.match(r"^[A-Za-z_]\w*:", text):
        return _parse_short(text, columns)
    try:
        p = _Parser(_tokenize(text), columns, text)
        expr = p.parse()
    except QueryError:
        # Words with no operator, keyword or column name ("daft punk", "sheep bpm:120..130", "洞窟")
        # are the short form's text search, as in beets; anything else keeps the expression's error.
        terms = _split_terms(text)
        if not terms or re.search(r"[=<>~(),]", text) or any(t.lower() in _KEYWORDS or t in columns for t in terms):
            raise
        return _parse_short(text, columns)
    return Query(text, expr, p.used)


# --- tokens -------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<range>-?\d+(?:\.\d+)?\.\.-?\d+(?:\.\d+)?)
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<op>==|!=|<>|<=|>=|=|<|>|~)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][\w#]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "between", "contains", "is", "null", "true", "false"}


def _tokenize(text: str) -> list[tuple[str, Any, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise QueryError(f"unexpected {text[pos]!r} at position {pos + 1}: {_caret(text, pos)}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "string":
            q = val[0]
            val = re.sub(r"\\(.)", r"\1", val[1:-1].replace(q * 2, q))
        elif kind == "number":
            val = float(val)
        elif kind == "range":
            lo, hi = val.split("..")
            val = (float(lo), float(hi))
        elif kind == "word" and val.lower() in _KEYWORDS:
            kind, val = "kw", val.lower()
        if kind != "ws":
            out.append((kind, val, pos))
        pos = m.end()
    out.append(("end", None, len(text)))
    return out


def _caret(text: str, pos: int) -> str:
    return f"{text[:pos]}>>>{text[pos:]}" if len(text) < 120 else f"...{text[max(0, pos - 30):pos + 30]}..."


# --- expressions --------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens, columns: dict[str, str], text: str):
        self.t, self.i, self.columns, self.text, self.used, self.depth = tokens, 0, columns, text, set(), 0

    def peek(self, kind=None, value=None) -> bool:
        k, v, _ = self.t[self.i]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(self, kind=None, value=None, what: str = ""):
        if not self.peek(kind, value):
            k, v, pos = self.t[self.i]
            found = "the end" if k == "end" else repr(v if not isinstance(v, tuple) else f"{v[0]:g}..{v[1]:g}")
            raise QueryError(f"expected {what or value or kind} but found {found} at position {pos + 1}: "
                             f"{_caret(self.text, pos)}")
        tok = self.t[self.i]
        self.i += 1
        return tok

    def parse(self) -> pc.Expression:
        e = self.or_()
        self.take("end", what="and/or or the end of the query")
        return e

    def or_(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"query nested too deeply (more than {MAX_DEPTH} levels)")
        e = self.and_()
        while self.peek("kw", "or"):
            self.take()
            e = e | self.and_()
        self.depth -= 1
        return e

    def and_(self):
        e = self.not_()
        while self.peek("kw", "and"):
            self.take()
            e = e & self.not_()
        return e

    def not_(self):
        if self.peek("kw", "not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"query nested too deeply (more than {MAX_DEPTH} levels)")
            e = ~self.not_()
            self.depth -= 1
            return e
        return self.atom()

    def atom(self):
        if self.peek("punct", "("):
            self.take()
            e = self.or_()
            self.take("punct", ")", what="')'")
            return e
        _, name, _ = self.take("word", what="a column name")
        kind = _column(name, self.columns)
        self.used.add(name)
        f = pc.field(name)
        if self.peek("op"):
            _, op, pos = self.take()
            if op == "~":
                return _contains(f, name, kind, self.value(), pos)
            return _compare(f, name, kind, op, self.value())
        if self.peek("kw", "contains"):
            _, _, pos = self.take()
            return _contains(f, name, kind, self.value(), pos)
        if self.peek("kw", "between"):
            self.take()
            lo = self.value()
            self.take("kw", "and", what="'and' of 'between'")
            hi = self.value()
            return _compare(f, name, kind, ">=", lo) & _compare(f, name, kind, "<=", hi)
        negate = False
        if self.peek("kw", "not") and self.t[self.i + 1][:2] == ("kw", "in"):
            self.take()
            negate = True
        if self.peek("kw", "in"):
            self.take()
            if self.peek("range"):
                lo, hi = self.take()[1]
                e = _compare(f, name, kind, ">=", lo) & _compare(f, name, kind, "<=", hi)
            else:
                self.take("punct", "(", what="'(' or a range lo..hi after 'in'")
                values = [self.value()]
                while self.peek("punct", ","):
                    self.take()
                    values.append(self.value())
                self.take("punct", ")", what="',' or ')'")
                e = f.isin([_literal(name, kind, v) for v in values])
            return ~e if negate else e
        if self.peek("kw", "is"):
            self.take()
            neg = bool(self.peek("kw", "not")) and bool(self.take())
            self.take("kw", "null", what="'null'")
            return f.is_valid() if neg else f.is_null()
        if kind == "bool":
            return f == True   # noqa: E712 (a pyarrow expression, not a Python comparison)
        k, v, pos = self.t[self.i]
        raise QueryError(f"expected a comparison after {name!r} (=, <, >, in, between, contains, is null) "
                         f"at position {pos + 1}: {_caret(self.text, pos)}")

    def value(self):
        k, v, pos = self.t[self.i]
        if k in ("string", "number"):
            self.i += 1
            return v
        if k == "kw" and v in ("true", "false"):
            self.i += 1
            return v == "true"
        if k == "word":   # a bare word as a value: 8A, Am, mp3
            self.i += 1
            return v
        if k == "range":
            raise QueryError(f"a range needs 'in': write 'in {v[0]:g}..{v[1]:g}' at position {pos + 1}")
        found = "the end" if k == "end" else repr(v)
        raise QueryError(f"expected a value (number, 'text', true/false) but found {found} at position {pos + 1}: "
                         f"{_caret(self.text, pos)}")


def _column(name: str, columns: dict[str, str]) -> str:
    if name in columns:
        return columns[name]
    close = difflib.get_close_matches(name, list(columns), n=3, cutoff=0.6)
    if close:
        raise QueryError(f"unknown column {name!r} (did you mean {' or '.join(repr(c) for c in close)}?)")
    raise QueryError(f"unknown column {name!r}; columns: {', '.join(sorted(columns))}")


def _literal(name: str, kind: str, v):
    if name in _KEY_NOTATION and isinstance(v, str):
        key = parse_key(v)
        if key is None:
            raise QueryError(f"{name}: {v!r} is not a key (write Am, 8A, 1m or 'A minor')")
        return format_key(key, _KEY_NOTATION[name])
    if kind == "number":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                return float(v)
            except (TypeError, ValueError):
                raise QueryError(f"{name} is a number; {v!r} is not") from None
        return float(v)
    if kind == "bool":
        if isinstance(v, bool):
            return v
        raise QueryError(f"{name} is true or false; {v!r} is neither")
    if kind == "time":
        raise QueryError(f"{name} is a time; compare it from Python with open_results(...).page(where=...)")
    return v if isinstance(v, str) else (f"{v:g}" if isinstance(v, float) else str(v))


def _compare(f, name, kind, op, v):
    lit = _literal(name, kind, v)
    if kind in ("text", "bool") and op in ("<", "<=", ">", ">=") and kind == "bool":
        raise QueryError(f"{name} is true or false: use = or !=")
    return {"=": f == lit, "==": f == lit, "!=": f != lit, "<>": f != lit, "<": f < lit, "<=": f <= lit,
            ">": f > lit, ">=": f >= lit}[op]


def _contains(f, name, kind, v, pos):
    if kind != "text":
        raise QueryError(f"'contains' needs a text column; {name} is a {kind} (use =, <, > or between)")
    if not isinstance(v, str):
        v = f"{v:g}" if isinstance(v, float) else str(v)
    return pc.match_substring(f, v, ignore_case=True)


# --- the short form -----------------------------------------------------------------------------------

_SHORT = re.compile(r"^(?:(?P<col>[A-Za-z_]\w*):)?(?P<val>.*)$")


def _split_terms(text: str) -> list[str]:
    # spaces separate terms, except inside quotes: artist:"daft punk"
    terms, cur, quote = [], "", None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                cur += ch
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if cur:
                terms.append(cur)
            cur = ""
        else:
            cur += ch
    if quote:
        raise QueryError("unclosed quote in the query")
    if cur:
        terms.append(cur)
    return terms


def _parse_short(text: str, columns: dict[str, str]) -> Query:
    expr, used = None, set()
    for term in _split_terms(text):
        m = _SHORT.match(term)
        col, val = m.group("col"), m.group("val")
        if col is None:   # a bare word: search the usual text columns
            fields = [c for c in _TEXT_SEARCH if c in columns]
            used |= set(fields)
            e = None
            for c in fields:
                t = pc.match_substring(pc.field(c), val, ignore_case=True)
                e = t if e is None else e | t
        else:
            kind = _column(col, columns)
            used.add(col)
            f = pc.field(col)
            if ".." in val and kind == "number":
                lo, _, hi = val.partition("..")
                e = None
                if lo:
                    e = _compare(f, col, kind, ">=", lo)
                if hi:
                    h = _compare(f, col, kind, "<=", hi)
                    e = h if e is None else e & h
                if e is None:
                    raise QueryError(f"empty range in {term!r}: write {col}:LOW..HIGH")
            elif val == "":
                e = f.is_null()
            elif kind == "text" and col not in _KEY_NOTATION:
                e = pc.match_substring(f, val, ignore_case=True)
            elif kind == "bool":
                if val.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise QueryError(f"{col} is true or false; {val!r} is neither")
                e = f == (val.lower() in ("true", "yes", "1"))
            else:
                e = _compare(f, col, kind, "=", val)
        if e is not None:
            expr = e if expr is None else expr & e
    return Query(text, expr, used)
