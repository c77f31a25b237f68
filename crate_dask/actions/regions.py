"""Byte-exact undo of a tag write: the regions a write changed, saved so they can be put back.

A tag write changes a few places of a file (the ID3 tag at the start of an MP3,
the FLAC metadata blocks, a RIFF/AIFF size field and its ID3 chunk, an Ogg
comment page, the MP4 ``moov`` atom) and moves the rest unchanged. :func:`diff`
compares the file before and after the write and returns the changed places
(*hunks*: offset and length in each file); the original bytes of those hunks
are all undo needs, together with the rewritten file: :func:`rebuild` copies the
unchanged stretches from the current file and the saved bytes in between,
and checks the result against the original file's SHA-256.

A hunk often holds bytes that only moved (an embedded picture after a frame
that grew): :func:`encode` stores the original bytes of a hunk as copies from
the new hunk plus the few literal bytes that are really new, so a 500 KB cover
costs a few hundred journal bytes, not 500 KB.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> a, b = os.path.join(d, "a"), os.path.join(d, "b")
>>> _ = open(a, "wb").write(b"RIFF\\x10\\x00" + bytes(5000) + b"id3 old")
>>> _ = open(b, "wb").write(b"RIFF\\x14\\x00" + bytes(5000) + b"id3 new tag")
>>> diff(a, b)
[(4, 1, 4, 1), (5010, 3, 5010, 7)]
"""

from __future__ import annotations

import hashlib
import mmap
import os
from typing import BinaryIO

Hunk = tuple[int, int, int, int]   # offset and length in the original file, offset and length in the new one

_CHUNK = 1 << 20
_GAP = 64   # mismatches closer than this become one hunk (fewer, slightly larger hunks)


def diff(original: str | os.PathLike, new: str | os.PathLike) -> list[Hunk]:
    """The places where ``new`` differs from ``original``: ``(a_off, a_len, b_off, b_len)``, in order.

    Between two hunks (and before the first, after the last) both files hold the
    same bytes. Finds what a tag write changes: a common tail (the audio after a
    tag that grew), same-offset changes (size fields) and a changed end (a tag
    chunk at the end). Not a general diff: an edit in the middle that shifts the
    rest becomes one hunk up to where the common tail starts.
    """
    with open(original, "rb") as fa, open(new, "rb") as fb:
        a, b = _map(fa), _map(fb)
        try:
            return _diff(a, b)
        finally:
            for m in (a, b):
                if isinstance(m, mmap.mmap):
                    m.close()


def _map(fh: BinaryIO):
    size = os.fstat(fh.fileno()).st_size
    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""


def _diff(a, b) -> list[Hunk]:
    la, lb = len(a), len(b)
    tail = _common_tail(a, b, min(la, lb))
    ea, eb = la - tail, lb - tail          # the parts before the common tail
    hunks: list[list[int]] = []
    m = min(ea, eb)
    pos = 0
    while pos < m:                         # same-offset comparison, a chunk at a time
        n = min(_CHUNK, m - pos)
        if a[pos:pos + n] != b[pos:pos + n]:
            for start, stop in _mismatches(a[pos:pos + n], b[pos:pos + n]):
                s, e = pos + start, pos + stop
                if hunks and s - (hunks[-1][0] + hunks[-1][1]) < _GAP:
                    hunks[-1][1] = e - hunks[-1][0]
                else:
                    hunks.append([s, e - s])
        pos += n
    out = [(s, n, s, n) for s, n in hunks]
    if ea != eb or (m < ea):               # one file is longer before the common tail
        if out and m - (out[-1][0] + out[-1][1]) < _GAP:
            s = out.pop()[0]
        else:
            s = m
        out.append((s, ea - s, s, eb - s))
    return out


def _common_tail(a, b, limit: int) -> int:
    la, lb, n = len(a), len(b), 0
    while n < limit:
        k = min(_CHUNK, limit - n)
        x, y = a[la - n - k:la - n], b[lb - n - k:lb - n]
        if x == y:
            n += k
            continue
        import numpy as np

        diffs = np.flatnonzero(np.frombuffer(x, np.uint8) != np.frombuffer(y, np.uint8))
        return n + (k - 1 - int(diffs[-1]))
    return n


def _mismatches(x: bytes, y: bytes) -> list[tuple[int, int]]:
    """Runs of differing bytes of two equal-length buffers, merged across gaps under ``_GAP``."""
    import numpy as np

    idx = np.flatnonzero(np.frombuffer(x, np.uint8) != np.frombuffer(y, np.uint8))
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) >= _GAP)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), stops.tolist()))


_BLOCK = 32          # the granularity of moved-bytes detection
_SMALL = 4096        # hunks up to this size are saved as they are


def save(original: str | os.PathLike, new: str | os.PathLike, hunks: list[Hunk]) -> tuple[list[list], bytes]:
    """What undo needs besides the new file: per hunk its place and copy/literal ops, and the literal bytes.

    Returns ``(records, literals)``; each record is ``[a_off, a_len, b_off, b_len, ops]``
    (``ops`` ``None``: the hunk's original bytes are all in ``literals``).
    """
    records, lits = [], []
    with open(original, "rb") as fa, open(new, "rb") as fb:
        for a_off, a_len, b_off, b_len in hunks:
            fa.seek(a_off)
            a = fa.read(a_len)
            ops = None
            if a_len > _SMALL:
                fb.seek(b_off)
                ops, lit = encode(a, fb.read(b_len))
                if len(lit) > a_len // 2:   # mostly new bytes: ops would not pay
                    ops, lit = None, a
            else:
                lit = a
            records.append([a_off, a_len, b_off, b_len, ops])
            lits.append(lit)
    return records, b"".join(lits)


def encode(a: bytes, b: bytes) -> tuple[list[list[int]], bytes]:
    """``a`` as ops over ``b``: ``[b_off, n]`` copies ``b[b_off:b_off+n]``, ``[-1, n]`` takes n literal bytes.

    >>> b = b"NEW!" + bytes(range(256)) * 40
    >>> a = b"old" + bytes(range(256)) * 40
    >>> ops, lit = encode(a, b)
    >>> lit, ops, decode(ops, lit, b) == a
    (b'old', [[-1, 3], [4, 10240]], True)
    """
    index: dict[bytes, int] = {}
    for j in range(0, len(b) - _BLOCK + 1, _BLOCK):
        index.setdefault(b[j:j + _BLOCK], j)
    ops: list[list[int]] = []
    lit = bytearray()
    pa, n = 0, len(a)
    start_lit = 0
    while pa + _BLOCK <= n:
        pb = index.get(a[pa:pa + _BLOCK])
        if pb is None:
            pa += 1
            continue
        while pa > start_lit and pb > 0 and a[pa - 1] == b[pb - 1]:   # the match may start earlier
            pa, pb = pa - 1, pb - 1
        length = _match_length(a, pa, b, pb)
        if pa > start_lit:
            ops.append([-1, pa - start_lit])
            lit += a[start_lit:pa]
        ops.append([pb, length])
        pa += length
        start_lit = pa
    if start_lit < n:
        ops.append([-1, n - start_lit])
        lit += a[start_lit:]
    return ops, bytes(lit)


def _match_length(a: bytes, pa: int, b: bytes, pb: int) -> int:
    """How many bytes ``a[pa:]`` and ``b[pb:]`` have in common (exponential then binary search)."""
    limit = min(len(a) - pa, len(b) - pb)
    lo, step = 0, _BLOCK
    while lo + step <= limit and a[pa + lo:pa + lo + step] == b[pb + lo:pb + lo + step]:
        lo += step
        step *= 2
    hi = min(lo + step, limit)
    while lo < hi:   # the longest equal prefix is in [lo, hi]
        mid = (lo + hi + 1) // 2
        if a[pa + lo:pa + mid] == b[pb + lo:pb + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def decode(ops: list[list[int]], lit: bytes, b: bytes) -> bytes:
    """The inverse of :func:`encode`."""
    out, k = [], 0
    for off, n in ops:
        if off < 0:
            out.append(lit[k:k + n])
            k += n
        else:
            out.append(b[off:off + n])
    return b"".join(out)


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a whole file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def rebuild(current: str | os.PathLike, records: list[list], saved: bytes, target: str | os.PathLike,
            *, sha_current: str, sha_original: str) -> bool:
    """Write the original file to ``target`` from ``current`` (the rewritten file) and the ``saved`` bytes.

    ``records`` and ``saved`` are what :func:`save` returned. Returns ``False``
    (and writes nothing usable) unless ``current`` is exactly the file the write
    produced and the result is exactly the original.
    """
    h_cur, h_out = hashlib.sha256(), hashlib.sha256()
    pos, k = 0, 0
    with open(current, "rb") as src, open(target, "wb") as dst:
        def copy(n: int) -> None:
            while n > 0:
                block = src.read(min(_CHUNK, n))
                if not block:
                    raise EOFError
                h_cur.update(block)
                h_out.update(block)
                dst.write(block)
                n -= len(block)

        try:
            for a_off, a_len, b_off, b_len, ops in records:
                copy(b_off - pos)
                b = src.read(b_len)
                h_cur.update(b)
                if ops is None:
                    piece = saved[k:k + a_len]
                    k += a_len
                else:
                    n_lit = sum(n for off, n in ops if off < 0)
                    piece = decode(ops, saved[k:k + n_lit], b)
                    k += n_lit
                h_out.update(piece)
                dst.write(piece)
                pos = b_off + b_len
            for block in iter(lambda: src.read(_CHUNK), b""):
                h_cur.update(block)
                h_out.update(block)
                dst.write(block)
        except EOFError:
            return False
        dst.flush()
        os.fsync(dst.fileno())
    return h_cur.hexdigest() == sha_current and h_out.hexdigest() == sha_original
