"""rekordbox XML collection (``File > Import > rekordbox xml``): tracks, beat grid and playlists.

The format (Pioneer DJ, "rekordbox XML format" spec)::

    <DJ_PLAYLISTS Version="1.0.0">
      <PRODUCT Name="crate-dask" Version="..." Company="crate-dask"/>
      <COLLECTION Entries="2">
        <TRACK TrackID="1" Name="..." Artist="..." Kind="MP3 File" Size="..." TotalTime="312"
               AverageBpm="128.00" Tonality="Am" Location="file://localhost/Music/A%20B.mp3" ...>
          <TEMPO Inizio="0.025" Bpm="128.00" Metro="4/4" Battito="1"/>
        </TRACK>
      </COLLECTION>
      <PLAYLISTS><NODE Type="0" Name="ROOT" Count="1"> folders (Type 0) and playlists (Type 1) </NODE></PLAYLISTS>
    </DJ_PLAYLISTS>

``TEMPO`` is one grid marker: ``Inizio`` its time in seconds in the decoded
track, ``Bpm`` the tempo from there on, ``Metro`` the meter and ``Battito`` the
beat number of the bar at ``Inizio`` (1-4). rekordbox does not play LAME MP3s
gapless (since 1.5.4), so for an MP3 with a LAME header its timeline keeps the
encoder + decoder delay that our decoders skip: ``Inizio`` gets the track's
``gapless_delay_s`` added (``lame_shift=False`` leaves it out; see
:mod:`crate_dask.library.audio`). ``Location`` is a ``file://localhost``
URL of the absolute path, every byte outside ``A-Za-z0-9_.-~/`` percent-encoded
(UTF-8), as rekordbox writes it.

Written with a streaming writer rather than pyrekordbox's ``RekordboxXml``,
which builds the whole ElementTree in memory (an export must stay flat in
library size: 100,000 tracks is ~250 MB of tree) and pulls SQLAlchemy and
SQLCipher in at import; pyrekordbox reads the output back in the tests.
Playlist membership is kept as 4-byte track IDs per playlist (0.4 MB per
100,000 tracks and grouping), the only state that grows with the library.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
import xml.etree.ElementTree as ET
from array import array
from typing import IO, Any, Iterable, Mapping

from crate_dask import __version__
from crate_dask.errors import FatalError
from crate_dask.explore.export.groups import playlist_name, sort_key
from crate_dask.explore.export.output import atomic_text, attrs, xml_text
from crate_dask.explore.export.tracks import Summary, Track, count_rows, current_paths, iter_tracks
from crate_dask.features.notation import format_key
from crate_dask.store.partitions import load_state

__all__ = ["export_rekordbox", "location_url", "location_path", "tonality", "KIND", "KEY_NOTATIONS"]

#: ``Kind`` per extension, as rekordbox names the formats it plays.
KIND = {"mp3": "MP3 File", "m4a": "M4A File", "mp4": "M4A File", "aac": "M4A File", "wav": "WAV File",
        "aif": "AIFF File", "aiff": "AIFF File", "flac": "FLAC File"}
#: ``--key-notation`` choices for ``Tonality``: the DJ's rekordbox key display setting.
KEY_NOTATIONS = ("musical", "camelot", "open")
#: Playlist groupings of the export, under one ``crate-dask`` folder.
GROUPINGS = (("camelot", "By key (Camelot)"), ("bpm", "By BPM"), ("folder", "By folder"))
_PREFIX = "file://localhost"
_FOLDER = "crate-dask"


def location_url(path_bytes: bytes) -> str:
    """The ``Location`` of an absolute POSIX path (bytes), percent-encoded as rekordbox writes it.

    Examples
    --------
    >>> location_url("/Music/Âme & Ümlaut/01 a b.mp3".encode())
    'file://localhost/Music/%C3%82me%20%26%20%C3%9Cmlaut/01%20a%20b.mp3'
    """
    folder, _, name = path_bytes.rpartition(b"/")
    return f"{_PREFIX}{_quoted_folder(folder)}/{urllib.parse.quote_from_bytes(name, safe='')}"


@functools.lru_cache(maxsize=4096)
def _quoted_folder(folder: bytes) -> str:
    # Tracks come folder by folder: quoting each folder once halves the cost of the URLs.
    return urllib.parse.quote_from_bytes(folder, safe="/") if folder else ""


def location_path(url: str) -> bytes:
    """The path (bytes) of a ``Location`` URL.

    Examples
    --------
    >>> location_path("file://localhost/Music/a%20b.mp3")
    b'/Music/a b.mp3'
    """
    parsed = urllib.parse.urlsplit(url)
    return urllib.parse.unquote_to_bytes(parsed.path)


@functools.lru_cache(maxsize=256)
def tonality(key: str | None, notation: str) -> str | None:
    """The ``Tonality`` text of a key in the DJ's notation (rekordbox shows musical keys as "Am", "Db").

    Examples
    --------
    >>> tonality("A minor", "musical"), tonality("A minor", "camelot"), tonality("C# major", "open")
    ('Am', '8A', '8d')
    """
    if key is None:
        return None
    if notation not in KEY_NOTATIONS:
        raise FatalError(f"key notation must be one of {', '.join(KEY_NOTATIONS)}, got {notation!r}")
    return format_key(key, "id3" if notation == "musical" else notation)


def _battito(beat: float, down: float | None, bpm: float) -> int:
    """The beat number in its bar (1-4) of the grid anchor ``beat``, 1 when the bar is unknown."""
    if down is None:
        return 1
    return int(round((beat - down) * bpm / 60.0)) % 4 + 1


def _track_attrs(t: Track, track_id: int, notation: str) -> dict[str, Any]:
    r, c = t.row, t.chosen
    ext = (r.get("ext") or "").lower()
    duration, bitrate, rate = t.number("duration_s"), t.number("bitrate_kbps"), t.number("sample_rate")
    return {
        "TrackID": track_id,
        "Name": t.text("title") or os.path.splitext(os.path.basename(t.path))[0],
        "Artist": t.text("artist"),
        "Album": t.text("album"),
        "Genre": t.text("genre"),
        "Kind": KIND.get(ext, f"{ext.upper()} File"),
        "Size": int(r["size"]) if r.get("size") is not None else None,
        "TotalTime": int(round(duration)) if duration is not None else 0,
        "TrackNumber": r.get("track") if r.get("track") is not None else None,
        "Year": r.get("year") if r.get("year") is not None else None,
        "AverageBpm": f"{c.bpm:.2f}" if c.bpm is not None else "0.00",
        "BitRate": int(round(bitrate)) if bitrate is not None else None,
        "SampleRate": int(rate) if rate is not None else None,
        "Comments": t.text("comment") or None,
        "Location": location_url(t.path_bytes),
        "Tonality": tonality(c.key, notation) or "",
        "Label": t.text("label") or None,
    }


def _write_track(fh: IO[str], t: Track, track_id: int, notation: str, lame_shift: bool = True) -> None:
    c = t.chosen
    fh.write(f"    <TRACK{attrs(_track_attrs(t, track_id, notation))}")
    if c.beat_offset_s is None:
        fh.write("/>\n")
        return
    shift = (t.number("gapless_delay_s") or 0.0) if lame_shift else 0.0
    tempo = {"Inizio": f"{c.beat_offset_s + shift:.3f}", "Bpm": f"{c.bpm:.2f}", "Metro": "4/4",
             "Battito": _battito(c.beat_offset_s, c.downbeat_offset_s, c.bpm)}
    fh.write(f">\n      <TEMPO{attrs(tempo)}/>\n    </TRACK>\n")


class _Playlists:
    """Track IDs per playlist per grouping, as compact arrays."""

    def __init__(self, band: float):
        self.band = band
        self.groups: dict[str, dict[str, array]] = {by: {} for by, _ in GROUPINGS}

    def add(self, t: Track, track_id: int) -> None:
        for by, ids in self.groups.items():
            name = playlist_name(by, t.chosen, genre=t.text("genre"), folder=t.folder, band=self.band)
            ids.setdefault(name, array("I")).append(track_id)

    def count(self) -> int:
        return sum(len(v) for v in self.groups.values())

    def write(self, fh: IO[str], indent: str = "      ") -> None:
        fh.write(f'{indent}<NODE{attrs({"Type": 0, "Name": _FOLDER, "Count": len(GROUPINGS)})}>\n')
        for by, title in GROUPINGS:
            lists = self.groups[by]
            fh.write(f'{indent}  <NODE{attrs({"Type": 0, "Name": title, "Count": len(lists)})}>\n')
            for name in sorted(lists, key=lambda n: sort_key(by, n)):
                ids = lists[name]
                fh.write(f'{indent}    <NODE{attrs({"Name": name, "Type": 1, "KeyType": 0, "Entries": len(ids)})}>\n')
                fh.writelines(f'{indent}      <TRACK Key="{i}"/>\n' for i in ids)
                fh.write(f"{indent}    </NODE>\n")
            fh.write(f"{indent}  </NODE>\n")
        fh.write(f"{indent}</NODE>\n")


def _head(fh: IO[str], entries: int) -> None:
    fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<DJ_PLAYLISTS Version="1.0.0">\n')
    fh.write(f'  <PRODUCT{attrs({"Name": "crate-dask", "Version": __version__, "Company": "crate-dask"})}/>\n')
    fh.write(f'  <COLLECTION Entries="{entries}">\n')


def export_rekordbox(out: str | os.PathLike, dest: str | os.PathLike, *, prefer: str = "analysis",
                     key_notation: str = "musical", bpm_band: float = 5.0, relocate_from: str | os.PathLike | None = None,
                     corrections: Mapping[str, Mapping[str, Any]] | None = None, lame_shift: bool = True) -> Summary:
    """Write the results folder ``out`` as a rekordbox XML collection at ``dest``.

    Parameters
    ----------
    out : path
        The results folder; tracks are exported at their current paths (renames followed).
    dest : path
        The XML file to write (atomically: replaced only when complete).
    prefer, corrections
        Which BPM/key to export: see :func:`crate_dask.explore.export.tracks.choose_values`.
    key_notation : {"musical", "camelot", "open"}
        ``Tonality`` as the DJ's rekordbox shows keys.
    bpm_band : float
        Width of the BPM playlists.
    relocate_from : path, optional
        An earlier collection XML (ours, or rekordbox's own export after editing): its tracks are
        kept with their IDs, cues, grids, ratings and play counts, pointed at the files' current
        paths; tracks of the results that it lacks are added after them.
    lame_shift : bool
        Add the LAME gapless delay of MP3s to the grid, as rekordbox (which ignores it) needs.

    Returns
    -------
    Summary
    """
    if key_notation not in KEY_NOTATIONS:
        raise FatalError(f"key notation must be one of {', '.join(KEY_NOTATIONS)}, got {key_notation!r}")
    summary = Summary(target="rekordbox", path=os.fspath(dest))
    if relocate_from is not None:
        return _relocate(out, dest, relocate_from, prefer, key_notation, bpm_band, corrections, summary, lame_shift)
    playlists = _Playlists(bpm_band)
    with atomic_text(dest) as fh:
        _head(fh, count_rows(out))
        for t in iter_tracks(out, prefer=prefer, corrections=corrections):
            _write_track(fh, t, t.track_id, key_notation, lame_shift)
            playlists.add(t, t.track_id)
            summary.count(t, supported=(t.row.get("ext") or "").lower() in KIND)
        fh.write('  </COLLECTION>\n  <PLAYLISTS>\n    <NODE Type="0" Name="ROOT" Count="1">\n')
        playlists.write(fh)
        fh.write("    </NODE>\n  </PLAYLISTS>\n</DJ_PLAYLISTS>\n")
    summary.playlists = sum(len(v) for v in playlists.groups.values())
    return summary


def _relocator(out: str | os.PathLike):
    """Old absolute path (bytes) -> current absolute path (bytes), following the rename journals."""
    root = load_state(out).get("root")
    current = current_paths(out)
    if not root:
        return lambda p: p
    root_b = os.fsencode(os.path.abspath(root)).rstrip(b"/") + b"/"

    def relocate(p: bytes) -> bytes:
        if not p.startswith(root_b):
            return p
        rel = os.fsdecode(p[len(root_b):])
        return root_b + os.fsencode(current(rel))

    return relocate


def _old_tracks(path: str | os.PathLike) -> Iterable[ET.Element]:
    """The COLLECTION/TRACK elements of an XML collection, one at a time (each cleared after use)."""
    try:
        depth = 0
        for event, el in ET.iterparse(os.fspath(path), events=("start", "end")):
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if el.tag == "TRACK" and depth == 2:      # DJ_PLAYLISTS/COLLECTION/TRACK
                yield el
                el.clear()
            elif el.tag == "COLLECTION":
                return
    except ET.ParseError as exc:
        raise FatalError(f"cannot read {path}: not a rekordbox XML collection ({exc})") from None
    except OSError as exc:
        raise FatalError(f"cannot read {path}: {exc.strerror or exc}") from None


def _old_playlists(path: str | os.PathLike) -> ET.Element | None:
    """The PLAYLISTS/NODE root of an XML collection (playlists are small: read whole)."""
    for _event, el in ET.iterparse(os.fspath(path), events=("end",)):
        if el.tag == "TRACK" and len(el) and el.get("Location"):
            el.clear()                                # collection tracks: not needed here
        if el.tag == "PLAYLISTS":
            return el.find("NODE")
    return None


def _relocate(out, dest, old_xml, prefer, notation, band, corrections, summary: Summary, lame_shift: bool) -> Summary:
    relocate = _relocator(out)
    # Pass 1 over the old XML: which current paths it covers, under which IDs.
    covered: dict[bytes, int] = {}
    max_id = 0
    for el in _old_tracks(old_xml):
        tid = int(el.get("TrackID") or 0)
        max_id = max(max_id, tid)
        loc = el.get("Location")
        if loc:
            covered[relocate(location_path(loc))] = tid
    # Pass over the results' paths only: how many tracks are new.
    new = sum(1 for t in iter_tracks(out, prefer=prefer, corrections=corrections) if t.path_bytes not in covered)
    playlists = _Playlists(band)
    with atomic_text(dest) as fh:
        _head(fh, len(covered) + new)
        # The old tracks: every attribute and child (cues, grid, rating...) kept, Location moved.
        for el in _old_tracks(old_xml):
            loc = el.get("Location")
            if loc:
                old, now = location_path(loc), relocate(location_path(loc))
                if now != old:
                    el.set("Location", location_url(now))
                    summary.relocated += 1
            el.tail = "\n"
            fh.write("    " + xml_text(ET.tostring(el, encoding="unicode")))
        next_id = max_id
        for t in iter_tracks(out, prefer=prefer, corrections=corrections):
            tid = covered.get(t.path_bytes)
            if tid is None:
                next_id += 1
                tid = next_id
                _write_track(fh, t, tid, notation, lame_shift)
                summary.count(t, supported=(t.row.get("ext") or "").lower() in KIND)
            else:
                summary.count(t, supported=(t.row.get("ext") or "").lower() in KIND)
            playlists.add(t, tid)
        summary.kept = len(covered) - (summary.tracks - new)
        # The old playlists (without an older crate-dask folder, replaced by the new one).
        root = _old_playlists(old_xml)
        children = [n for n in (root if root is not None else []) if n.get("Name") != _FOLDER]
        fh.write(f'  </COLLECTION>\n  <PLAYLISTS>\n    <NODE Type="0" Name="ROOT" Count="{len(children) + 1}">\n')
        for n in children:
            for leaf in n.iter("TRACK"):
                if n.get("KeyType") == "1" or leaf.get("Key", "").startswith(_PREFIX):   # keyed by Location
                    leaf.set("Key", location_url(relocate(location_path(leaf.get("Key", "")))))
            n.tail = "\n"
            fh.write("      " + xml_text(ET.tostring(n, encoding="unicode")))
        playlists.write(fh)
        fh.write("    </NODE>\n  </PLAYLISTS>\n</DJ_PLAYLISTS>\n")
    summary.playlists = sum(len(v) for v in playlists.groups.values())
    return summary
