"""Traktor NML collection (``collection.nml``, or a file for Traktor's ``Import Collection``).

One ``ENTRY`` per track::

    <ENTRY TITLE="..." ARTIST="...">
      <LOCATION DIR="/:Music/:House/:" FILE="a b.mp3" VOLUME="Macintosh HD" VOLUMEID="Macintosh HD"/>
      <ALBUM TITLE="..."/>
      <INFO BITRATE="320000" GENRE="House" KEY="1m" PLAYTIME="312" PLAYTIME_FLOAT="312.45" FILESIZE="7300"/>
      <TEMPO BPM="128.000000" BPM_QUALITY="100.000000"/>
      <MUSICAL_KEY VALUE="21"/>
      <CUE_V2 NAME="AutoGrid" DISPL_ORDER="0" TYPE="4" START="25.000000" LEN="0.000000" REPEATS="-1" HOTCUE="0"/>
    </ENTRY>

``LOCATION`` splits the path: ``VOLUME`` is the disk (``C:`` on Windows, the volume
name on macOS; ``--traktor-volume``), ``DIR`` the folders each preceded by ``/:``
and closed by ``/:``, ``FILE`` the name. ``INFO KEY`` is Traktor's Open Key text
("1m" ... "12d"), ``FILESIZE`` in KiB, ``BITRATE`` in bit/s. The grid is the
``CUE_V2`` of ``TYPE="4"`` (AutoGrid) with ``START`` in **milliseconds** at the
first beat; Traktor draws its grid from there at ``TEMPO BPM``.

``MUSICAL_KEY VALUE`` is Traktor's own key number: 0-11 the major keys from C
by semitones (0 C, 1 C#/Db, 2 D, ... 11 B), 12-23 the minor keys the same way
(12 Cm, 13 C#m, ... 21 Am, 23 Bm); see :func:`traktor_key`.

Streamed like the rekordbox export; playlists are left to the M3U8 export
(Traktor imports M3U playlists), so the NML's PLAYLISTS holds only the root folder.
"""

from __future__ import annotations

import datetime
import os
from typing import IO, Any, Mapping

from crate_dask.errors import FatalError
from crate_dask.explore.export.output import atomic_text, attrs
from crate_dask.explore.export.tracks import Summary, Track, count_rows, iter_tracks
from crate_dask.features.notation import PITCH_CLASSES, format_key
from crate_dask.library.scan import display_path

__all__ = ["export_traktor", "traktor_key", "traktor_location", "SUPPORTED"]

#: Formats Traktor plays.
SUPPORTED = {"mp3", "m4a", "mp4", "aac", "wav", "aif", "aiff", "flac", "ogg"}


def traktor_key(key: str) -> int:
    """Traktor's ``MUSICAL_KEY VALUE`` of a canonical key: 0-11 C..B major, 12-23 C..B minor.

    Examples
    --------
    >>> traktor_key("C major"), traktor_key("C# major"), traktor_key("A minor"), traktor_key("B minor")
    (0, 1, 21, 23)
    """
    tonic, mode = key.split()
    return PITCH_CLASSES.index(tonic) + (12 if mode == "minor" else 0)


def traktor_location(path: str, volume: str = "") -> dict[str, str]:
    """``LOCATION`` attributes (and the playlist key) of an absolute path.

    Examples
    --------
    >>> traktor_location("/Music/House/a b.mp3", "Macintosh HD")["DIR"]
    '/:Music/:House/:'
    >>> traktor_location("/a.mp3")["DIR"]
    '/:'
    """
    folder, name = os.path.split(path)
    parts = [p for p in folder.split("/") if p]
    d = "/:" + "".join(f"{p}/:" for p in parts)
    return {"DIR": d, "FILE": name, "VOLUME": volume, "VOLUMEID": volume}


def _entry(fh: IO[str], t: Track, volume: str, today: str) -> None:
    c, r = t.chosen, t.row
    duration, bitrate = t.number("duration_s"), t.number("bitrate_kbps")
    fh.write(f'  <ENTRY{attrs({"MODIFIED_DATE": today, "TITLE": t.text("title") or os.path.basename(t.path), "ARTIST": t.text("artist")})}>\n')
    # A name that is not UTF-8 cannot be written exactly; its escaped text keeps the NML valid (unsupported).
    fh.write(f"    <LOCATION{attrs(traktor_location(t.path if _utf8(t.path) else display_path(t.path), volume))}/>\n")
    if t.text("album"):
        fh.write(f'    <ALBUM{attrs({"TITLE": t.text("album"), "TRACK": r.get("track")})}/>\n')
    info: dict[str, Any] = {
        "BITRATE": int(round(bitrate * 1000)) if bitrate is not None else None,
        "GENRE": t.text("genre") or None,
        "LABEL": t.text("label") or None,
        "COMMENT": t.text("comment") or None,
        "KEY": format_key(c.key, "open") if c.key else None,
        "PLAYTIME": int(round(duration)) if duration is not None else None,
        "PLAYTIME_FLOAT": f"{duration:.6f}" if duration is not None else None,
        "IMPORT_DATE": today,
        "RELEASE_DATE": f"{r['year']}/1/1" if r.get("year") else None,
        "FILESIZE": int(r["size"]) // 1024 if r.get("size") is not None else None,
    }
    fh.write(f"    <INFO{attrs(info)}/>\n")
    if c.bpm is not None:
        fh.write(f'    <TEMPO BPM="{c.bpm:.6f}" BPM_QUALITY="100.000000"/>\n')
    if c.key is not None:
        fh.write(f'    <MUSICAL_KEY VALUE="{traktor_key(c.key)}"/>\n')
    if c.beat_offset_s is not None:
        cue = {"NAME": "AutoGrid", "DISPL_ORDER": 0, "TYPE": 4, "START": f"{c.beat_offset_s * 1000:.6f}",
               "LEN": "0.000000", "REPEATS": -1, "HOTCUE": 0}
        fh.write(f"    <CUE_V2{attrs(cue)}/>\n")
    fh.write("  </ENTRY>\n")


def _utf8(path: str) -> bool:
    """NML is UTF-8 text: a name whose bytes are not UTF-8 cannot be written exactly (counted as unsupported)."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def export_traktor(out: str | os.PathLike, dest: str | os.PathLike, *, prefer: str = "analysis", volume: str = "",
                   corrections: Mapping[str, Mapping[str, Any]] | None = None) -> Summary:
    """Write the results folder ``out`` as a Traktor NML collection at ``dest`` (atomically).

    Parameters
    ----------
    out : path
        The results folder; tracks are exported at their current paths.
    dest : path
        The ``.nml`` file to write.
    prefer, corrections
        Which BPM/key to export: see :func:`crate_dask.explore.export.tracks.choose_values`.
    volume : str
        ``LOCATION VOLUME``: the volume name Traktor knows the disk by ("Macintosh HD", "C:").

    Returns
    -------
    Summary
    """
    if "/" in volume:
        raise FatalError(f"--traktor-volume is a volume name such as 'Macintosh HD' or 'C:', not a path: {volume!r}")
    summary = Summary(target="traktor", path=os.fspath(dest))
    today = datetime.date.today()
    stamp = f"{today.year}/{today.month}/{today.day}"
    with atomic_text(dest) as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n<NML VERSION="19">'
                 '<HEAD COMPANY="www.native-instruments.com" PROGRAM="Traktor"/>\n<MUSICFOLDERS/>\n')
        fh.write(f'<COLLECTION ENTRIES="{count_rows(out)}">\n')
        for t in iter_tracks(out, prefer=prefer, corrections=corrections):
            _entry(fh, t, volume, stamp)
            summary.count(t, supported=(t.row.get("ext") or "").lower() in SUPPORTED and _utf8(t.path))
        fh.write('</COLLECTION>\n<SETS ENTRIES="0"/>\n<PLAYLISTS><NODE TYPE="FOLDER" NAME="$ROOT">'
                 '<SUBNODES COUNT="0"/></NODE></PLAYLISTS>\n</NML>\n')
    return summary
