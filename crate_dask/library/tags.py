"""Read and write tags with mutagen: a thin I/O wrapper that raises domain errors.

``read_tags`` returns flat snake_case columns (see :mod:`crate_dask.schema`) for
every container DJs meet: MP3 (ID3), FLAC/OGG/Opus (Vorbis comments), MP4/M4A
(iTunes atoms), WAV/AIFF (ID3 chunks) and WMA (ASF). ``write_tags`` writes the
same fields back into the field each ecosystem reads.

>>> import numpy as np, soundfile as sf, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "t.flac")
>>> sf.write(p, np.zeros(4410), 44100)
>>> write_tags(p, {"artist": "Daft Punk", "title": "Da Funk", "bpm": 111, "key": "E minor"})
>>> t = read_tags(p)
>>> (t["format"], t["artist"], t["tag_bpm"], t["tag_key"])
('flac', 'Daft Punk', 111.0, 'E minor')
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any, Mapping

import mutagen
from mutagen.id3 import ID3

from crate_dask.errors import UnreadableFileError

# column -> (ID3 frame, Vorbis key(s), MP4 atom, ASF attribute)
_TEXT_FIELDS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "artist": ("TPE1", ("artist",), "\xa9ART", "Author"),
    "title": ("TIT2", ("title",), "\xa9nam", "Title"),
    "album": ("TALB", ("album",), "\xa9alb", "WM/AlbumTitle"),
    "album_artist": ("TPE2", ("albumartist", "album artist", "album_artist"), "aART", "WM/AlbumArtist"),
    "genre": ("TCON", ("genre",), "\xa9gen", "WM/Genre"),
    "label": ("TPUB", ("label", "organization", "publisher"), "----:com.apple.iTunes:LABEL", "WM/Publisher"),
    "comment": ("COMM", ("comment", "description"), "\xa9cmt", "Description"),
    "tag_key": ("TKEY", ("initialkey", "key"), "----:com.apple.iTunes:initialkey", "WM/InitialKey"),
}
_MP4_KEY_ATOMS = ("----:com.apple.iTunes:initialkey", "----:com.apple.iTunes:KEY", "----:com.apple.iTunes:initialKey")

_FORMATS = {  # mutagen class name -> (format, codec)
    "MP3": ("mp3", "mp3"), "EasyMP3": ("mp3", "mp3"), "FLAC": ("flac", "flac"),
    "WAVE": ("wav", "pcm"), "AIFF": ("aiff", "pcm"), "OggVorbis": ("ogg", "vorbis"),
    "OggOpus": ("opus", "opus"), "OggFLAC": ("ogg", "flac"), "OggSpeex": ("ogg", "speex"),
    "MP4": ("mp4", "aac"), "EasyMP4": ("mp4", "aac"), "ASF": ("asf", "wma"), "AAC": ("aac", "aac"),
    "AC3": ("ac3", "ac3"), "WavPack": ("wavpack", "wavpack"), "APEv2File": ("ape", "ape"),
    "MonkeysAudio": ("ape", "ape"), "TrueAudio": ("tta", "tta"), "DSF": ("dsf", "dsd"),
    "DSDIFF": ("dff", "dsd"), "Musepack": ("mpc", "musepack"), "OptimFROG": ("ofr", "optimfrog"),
}


def _kind_for(ext: str, head: bytes) -> type | None:
    """The mutagen class for a file whose first bytes match its extension, else None (sniff instead)."""
    for magic_ok, exts, modname, clsname in _MAGIC:
        if ext in exts and magic_ok(head):
            import importlib

            return getattr(importlib.import_module(modname), clsname)
    return None


_MAGIC = [
    (lambda h: h[:3] == b"ID3" or (len(h) > 1 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0),
     ("mp3",), "mutagen.mp3", "MP3"),
    (lambda h: h[:4] == b"fLaC", ("flac",), "mutagen.flac", "FLAC"),
    (lambda h: h[:4] == b"OggS" and b"\x01vorbis" in h[:64], ("ogg", "oga"), "mutagen.oggvorbis", "OggVorbis"),
    (lambda h: h[:4] == b"OggS" and b"OpusHead" in h[:64], ("opus", "ogg"), "mutagen.oggopus", "OggOpus"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE", ("wav", "wave"), "mutagen.wave", "WAVE"),
    (lambda h: h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"), ("aif", "aiff", "aifc"), "mutagen.aiff", "AIFF"),
    (lambda h: h[4:8] == b"ftyp", ("m4a", "mp4", "m4b", "alac", "aac"), "mutagen.mp4", "MP4"),
]


def open_audio(path: str | os.PathLike | bytes, *, head: bytes | None = None) -> mutagen.FileType:
    """Open ``path`` with mutagen; the container is recognised from the content, not the name.

    ``head`` (the file's first bytes, if the caller already read them) lets the
    common case skip mutagen's format sniffing: when the magic bytes match the
    extension the matching class is used directly (about 30% faster on small
    files); otherwise, or if that fails, mutagen sniffs every format.

    Raises
    ------
    UnreadableFileError
        Empty, unrecognised, truncated or corrupt container, or an OS error.
    """
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableFileError("empty file (0 bytes)")
        f = None
        if head:
            ext = os.fsdecode(path).rsplit(".", 1)[-1].lower()
            kind = _kind_for(ext, head)
            if kind is not None:
                try:
                    f = kind(path)
                except mutagen.MutagenError:
                    f = None   # let the sniffing below decide (and word the error)
        if f is None:
            f = mutagen.File(path)
    except UnreadableFileError:
        raise
    except FileNotFoundError:
        raise UnreadableFileError("file vanished before it could be read", error_type="vanished") from None
    except PermissionError:
        raise UnreadableFileError("permission denied", error_type="permission") from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot read file: {exc.strerror or exc}") from None
    except mutagen.MutagenError as exc:
        raise UnreadableFileError(f"corrupt or truncated audio container ({_short(exc)})") from None
    except MemoryError:
        raise                 # over the memory limit: the isolated reader records it as such
    except Exception as exc:  # mutagen raises assorted errors on garbage; all mean "unreadable"
        raise UnreadableFileError(f"corrupt audio container ({type(exc).__name__}: {_short(exc)})") from None
    if f is None:
        raise UnreadableFileError("not a recognised audio file (content does not match any audio format)")
    return f


def read_tags(path: str | os.PathLike | bytes, *, head: bytes | None = None) -> dict[str, Any]:
    """Read stream facts and tags of one file as flat columns.

    Missing values are ``None``; numbers are parsed leniently ("3/12" -> 3,
    "2019-05-01" -> 2019, "128.00" -> 128.0). A WAV written to a pipe (its
    sizes are placeholders) is read as a stream: its audio runs to the end of the file.
    """
    stream = _streamed_wav(path, head)
    if stream is not None:
        return stream
    f = open_audio(path, head=head)
    kind = type(f).__name__
    fmt, codec = _FORMATS.get(kind, (kind.lower(), None))
    info = f.info
    out: dict[str, Any] = {
        "format": fmt,
        "codec": codec,
        "duration_s": _num(getattr(info, "length", None)),
        "bitrate_kbps": _kbps(getattr(info, "bitrate", None)),
        "sample_rate": _int(getattr(info, "sample_rate", None)),
        "channels": _int(getattr(info, "channels", None)),
        "bits_per_sample": _int(getattr(info, "bits_per_sample", None)),
    }
    if kind == "OggOpus":
        out["sample_rate"] = out["sample_rate"] or 48000   # Opus always decodes at 48 kHz
    if kind in ("MP4", "EasyMP4"):
        c = (getattr(info, "codec", "") or "").lower()
        out["codec"] = "alac" if c.startswith("alac") else "aac" if c.startswith("mp4a") else (c or "aac")
    if not out["duration_s"] and kind in ("MP3",):
        raise UnreadableFileError("no MPEG audio frames found")
    _check_complete(f, kind, path)
    tags = f.tags
    raw: dict[str, Any] = {}
    if tags is not None:
        if isinstance(tags, ID3):
            raw = _read_id3(tags)
        elif kind in ("MP4", "EasyMP4"):
            raw = _read_mp4(tags)
        elif kind == "ASF":
            raw = _read_generic(tags, {c: (v[3],) for c, v in _TEXT_FIELDS.items()},
                                {"date": ("WM/Year",), "track": ("WM/TrackNumber",), "disc": ("WM/PartOfSet",),
                                 "bpm": ("WM/BeatsPerMinute",)})
        else:  # Vorbis comments and APEv2 are case-insensitive mappings
            raw = _read_generic(tags, {c: v[1] for c, v in _TEXT_FIELDS.items()},
                                {"date": ("date", "year", "originaldate"), "track": ("tracknumber", "track"),
                                 "track_total": ("tracktotal", "totaltracks"), "disc": ("discnumber", "disc"),
                                 "bpm": ("bpm", "tempo")})
    for col in _TEXT_FIELDS:
        out[col] = _clean(raw.get(col))
    track, total = _pair(raw.get("track"))
    out["track"] = track
    out["track_total"] = _int(raw.get("track_total")) or total
    out["disc"] = _pair(raw.get("disc"))[0]
    out["year"] = _year(raw.get("date"))
    out["tag_bpm"] = _num(raw.get("bpm"))
    return out


_PLACEHOLDERS = (0, 0xFFFFFFFF)   # what a WAV writer that cannot seek back leaves in the size fields


def _streamed_wav(path, head: bytes | None) -> dict[str, Any] | None:
    """Stream facts of a WAV whose data chunk size is a placeholder (0 or 0xFFFFFFFF), else ``None``.

    mutagen trusts the sizes (0 s, 27 hours, or "container chunk data size < 4")
    while decoders read such a file to its end, so its facts come from the
    ``fmt`` chunk and the file size. The tags of a streamed WAV would follow
    its data, which has no end: there are none to read.
    """
    if head is None or not (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        if head is not None:
            return None
        try:
            with open(path, "rb") as fh:
                head = fh.read(8192)
        except OSError:
            return None   # open_audio words the error
        if not (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
            return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"fmt " and size >= 16 and pos + 24 <= len(head):
            fmt = head[pos + 8:pos + 24]
        elif cid == b"data":
            if size not in _PLACEHOLDERS or fmt is None:
                return None
            tag, channels, sr, byte_rate, _block, bits = struct.unpack("<HHIIHH", fmt)
            if not (channels and sr and byte_rate):
                return None
            data = os.path.getsize(path) - (pos + 8)
            out: dict[str, Any] = dict.fromkeys([*_TEXT_FIELDS, "track", "track_total", "disc", "year", "tag_bpm"])
            out.update(format="wav", codec="pcm", duration_s=max(data, 0) / byte_rate,
                       bitrate_kbps=round(byte_rate * 8 / 1000.0, 1), sample_rate=sr, channels=channels,
                       bits_per_sample=bits or None)
            return out
        pos += 8 + size + (size & 1)
    return None


def _check_complete(f: mutagen.FileType, kind: str, path) -> None:
    """Detect truncation from the header alone: the file is much smaller than the audio it declares."""
    length, bitrate = getattr(f.info, "length", 0) or 0, getattr(f.info, "bitrate", 0) or 0
    if not length or not bitrate:
        return
    size = os.path.getsize(path)
    if kind == "FLAC":
        # STREAMINFO's smallest frame size times the number of frames is a hard lower bound on the size
        info = f.info
        block = getattr(info, "max_blocksize", 0) or 4096
        frames = -(-int(getattr(info, "total_samples", 0) or 0) // block)
        floor = (getattr(info, "min_framesize", 0) or 0) * max(frames - 1, 0)
        if size < floor or bitrate < 500:
            raise UnreadableFileError(f"truncated file: {size} bytes cannot hold the {length:.1f} s it declares",
                                      error_type="truncated")
        return
    if kind in ("WAVE", "AIFF") or (kind == "MP3" and getattr(f.info, "bitrate_mode", 0)):
        expected = bitrate / 8.0 * length
        if size < 0.9 * expected:
            raise UnreadableFileError(f"truncated file: it holds {100 * size / expected:.0f}% of the audio data "
                                      f"its header declares ({length:.1f} s)", error_type="truncated")


def _read_id3(tags: ID3) -> dict[str, Any]:
    # one pass over the frames: getall() scans every frame for each field
    by_id: dict[str, list] = {}
    for fr in tags.values():
        by_id.setdefault(fr.FrameID, []).append(fr)
    raw: dict[str, Any] = {}
    for col, (frame, *_rest) in _TEXT_FIELDS.items():
        frames = by_id.get(frame, ())
        if frame == "COMM":  # skip iTunes' machine comments (iTunNORM, ...)
            frames = [fr for fr in frames if not fr.desc.startswith("iTun")]
        if frames and frames[0].text:
            raw[col] = str(frames[0].text[0])
    for key, frame in (("date", "TDRC"), ("track", "TRCK"), ("disc", "TPOS"), ("bpm", "TBPM")):
        frames = by_id.get(frame) or (by_id.get("TYER") if frame == "TDRC" else None)
        if frames and frames[0].text:
            raw[key] = str(frames[0].text[0])
    return raw


def _read_mp4(tags: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for col, (_, _, atom, _) in _TEXT_FIELDS.items():
        atoms = _MP4_KEY_ATOMS if col == "tag_key" else (atom,)
        for a in atoms:
            if a in tags and tags[a]:
                raw[col] = _text(tags[a][0])
                break
    if "\xa9day" in tags:
        raw["date"] = _text(tags["\xa9day"][0])
    for key, atom in (("track", "trkn"), ("disc", "disk")):
        if atom in tags and tags[atom]:
            n, total = tags[atom][0]
            raw[key] = f"{n}/{total}" if total else str(n)
    if "tmpo" in tags and tags["tmpo"]:
        raw["bpm"] = str(tags["tmpo"][0])
    return raw


def _read_generic(tags: Any, text: Mapping[str, tuple[str, ...]], extra: Mapping[str, tuple[str, ...]]) -> dict:
    # Vorbis comments are a list scanned on every lookup: index them once, case-insensitively
    first: dict[str, Any] = {}
    for k, v in tags.items():
        if v:
            first.setdefault(str(k).lower(), v[0] if isinstance(v, list) else v)
    raw: dict[str, Any] = {}
    for col, keys in [*text.items(), *extra.items()]:
        for k in keys:
            v = first.get(k.lower())
            if v is not None and v != "":
                raw[col] = _text(v)
                break
    return raw


def write_tags(path: str | os.PathLike | bytes, values: Mapping[str, Any], *, id3_version: int = 3) -> None:
    """Write tag ``values`` (columns of :func:`read_tags` names, plus ``bpm``/``key``) into ``path``.

    ``bpm`` goes to ID3 TBPM / Vorbis BPM / MP4 tmpo / WM/BeatsPerMinute; ``key``
    to TKEY / INITIALKEY / the iTunes ``initialkey`` atom / WM/InitialKey. A value
    of ``None`` removes the field. Only tag data is rewritten, never audio data.

    Only the given fields change: an existing ID3 tag keeps its version (v2.4
    stays v2.4, so multi-value frames stay multi-value; v2.2 becomes v2.3),
    every other frame (TXXX, APIC, ...) is kept, an ID3v1 tail stays byte for
    byte, and existing padding is reused, never grown (when the new values do
    not fit, the file grows by exactly what they need). A file without ID3 gets
    ``id3_version`` (v2.3, the version every DJ application reads).

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from mutagen.id3 import ID3, TPE1
    >>> p = os.path.join(tempfile.mkdtemp(), "t.mp3")
    >>> sf.write(p, np.zeros(4410), 44100, format="MP3")
    >>> t = ID3(); t.add(TPE1(encoding=3, text=["Artist A", "Artist B"])); t.save(p, v2_version=4)
    >>> write_tags(p, {"bpm": 128})
    >>> t = ID3(p); t.version, t["TPE1"].text, str(t["TBPM"])
    ((2, 4, 0), ['Artist A', 'Artist B'], '128')

    Raises
    ------
    OSError
        The file cannot be written (permission, full disk): the OS error itself, not mutagen's
        wrapper around it, so that callers can tell a full disk from the rest.
    UnreadableFileError
        The file cannot be read, or mutagen cannot write this container.
    """
    try:
        _write_tags(path, values, id3_version)
    except mutagen.MutagenError as exc:
        if isinstance(exc.__context__, OSError):   # mutagen wraps the OS error in its own
            raise exc.__context__ from None
        raise UnreadableFileError(f"cannot write this container's tags ({_short(exc)})") from None


def _write_tags(path, values: Mapping[str, Any], id3_version: int) -> None:
    f = open_audio(path)
    kind = type(f).__name__
    had_tags = f.tags is not None
    if not had_tags:
        f.add_tags()
    tags = f.tags
    vals = {("tag_key" if k == "key" else "bpm" if k == "tag_bpm" else k): v for k, v in values.items()}
    if isinstance(tags, ID3):
        version = (4 if tags.version >= (2, 4, 0) else 3) if had_tags else id3_version
        _write_id3(tags, vals)
        tail = _id3v1_tail(path) if kind == "MP3" else None
        f.save(v2_version=version, padding=_keep_padding)
        if tail is not None:
            _put_id3v1_tail(path, tail)
        return
    for col, v in vals.items():
        if kind in ("MP4", "EasyMP4"):
            _write_mp4(tags, col, v)
        elif kind == "ASF":
            _set(tags, _asf_key(col), None if v is None else str(_fmt(col, v)))
        else:
            keys = _TEXT_FIELDS[col][1] if col in _TEXT_FIELDS else {
                "year": ("date",), "track": ("tracknumber",), "track_total": ("tracktotal",),
                "disc": ("discnumber",), "bpm": ("bpm",)}[col]
            _set(tags, keys[0].upper(), None if v is None else [str(_fmt(col, v))])
    if kind == "ASF":
        f.save()
    else:
        f.save(padding=_keep_padding)


def _keep_padding(info: Any) -> int:
    # mutagen's default grows padding to 1 KiB + 0.1% of the file when the tags do not fit, and shrinks
    # large padding: both change bytes the user did not ask for. Keep what is left; add nothing.
    return max(info.padding, 0)


def _id3v1_tail(path) -> bytes | None:
    """The 128-byte ID3v1 tag at the end of an MP3, if there is one."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 128:
            return None
        fh.seek(-128, os.SEEK_END)
        tail = fh.read(128)
    return tail if tail[:3] == b"TAG" else None


def _put_id3v1_tail(path, tail: bytes) -> None:
    # mutagen rewrites the ID3v1 tag from the v2 frames (v1=1): put the original bytes back
    with open(path, "r+b") as fh:
        fh.seek(-128, os.SEEK_END)
        if fh.read(3) == b"TAG":
            fh.seek(-128, os.SEEK_END)
            fh.write(tail)


def _write_id3(tags: ID3, vals: Mapping[str, Any]) -> None:
    from mutagen import id3

    frames = {c: v[0] for c, v in _TEXT_FIELDS.items()}
    frames.update({"year": "TDRC", "track": "TRCK", "disc": "TPOS", "bpm": "TBPM"})
    for col, v in vals.items():
        fid = frames[col]
        tags.delall(fid)
        if v is None:
            continue
        if fid == "COMM":
            tags.add(id3.COMM(encoding=3, lang="eng", desc="", text=[str(v)]))
        elif fid == "TPUB" or fid.startswith("T"):
            tags.add(getattr(id3, fid)(encoding=3, text=[str(_fmt(col, v))]))


def _write_mp4(tags: Any, col: str, v: Any) -> None:
    from mutagen.mp4 import MP4FreeForm

    if col == "bpm":
        _set(tags, "tmpo", None if v is None else [int(round(float(v)))])
    elif col in ("track", "disc"):
        _set(tags, "trkn" if col == "track" else "disk", None if v is None else [(int(v), 0)])
    elif col == "year":
        _set(tags, "\xa9day", None if v is None else [str(v)])
    else:
        atom = _TEXT_FIELDS[col][2]
        if atom.startswith("----"):
            _set(tags, atom, None if v is None else [MP4FreeForm(str(v).encode("utf-8"))])
        else:
            _set(tags, atom, None if v is None else [str(v)])


def _asf_key(col: str) -> str:
    return {"year": "WM/Year", "track": "WM/TrackNumber", "disc": "WM/PartOfSet",
            "bpm": "WM/BeatsPerMinute"}.get(col) or _TEXT_FIELDS[col][3]


def _set(tags: Any, key: str, value: Any) -> None:
    if value is None:
        if key in tags:
            del tags[key]
    else:
        tags[key] = value


def _fmt(col: str, v: Any) -> Any:
    if col == "bpm":
        fv = float(v)
        return int(round(fv)) if fv == round(fv) else round(fv, 2)
    return v


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _clean(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).replace("\x00", " ").strip()
    return s or None


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        x = float(str(v).strip().replace(",", "."))
    except ValueError:
        return None
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def _int(v: Any) -> int | None:
    x = _num(v)
    return int(x) if x is not None else None


def _kbps(v: Any) -> float | None:
    x = _num(v)
    return round(x / 1000.0, 1) if x else None


def _pair(v: Any) -> tuple[int | None, int | None]:
    if v is None:
        return None, None
    m = re.match(r"\s*(\d+)\s*(?:/\s*(\d+))?", str(v))
    if not m:
        return None, None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


def _year(v: Any) -> int | None:
    if v is None:
        return None
    m = re.search(r"(\d{4})", str(v))
    return int(m.group(1)) if m else None


def _short(exc: BaseException) -> str:
    s = str(exc).strip() or type(exc).__name__
    return s if len(s) <= 160 else s[:157] + "..."
