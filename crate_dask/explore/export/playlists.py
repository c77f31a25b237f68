"""Extended M3U8 playlists: one file per Camelot key, BPM band, genre or folder.

Every DJ program (rekordbox, Traktor, Serato, Engine DJ, Mixxx, VirtualDJ) and
media player reads them::

    #EXTM3U
    #EXTINF:312,Artist - Title
    /Music/House/Artist - Title.mp3

UTF-8 without a byte-order mark, ``\\n`` line ends, one path per entry,
absolute or (``relative=True``) relative to the playlist's folder with ``/``
separators. A path whose bytes are not UTF-8 is written as its exact bytes
(the player needs the real name more than valid text).

Streamed: each track's line is appended to its playlist's file as it comes,
through a small pool of open files, so memory does not grow with the library.
The playlists are written into a fresh temporary folder next to ``out_dir``
and moved into place at the end, so an interrupted export leaves the old set.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any, Mapping

from crate_dask.errors import FatalError
from crate_dask.explore.export.groups import GROUPINGS, NO_BPM, playlist_name
from crate_dask.explore.export.tracks import Summary, Track, iter_tracks

__all__ = ["write_playlists", "playlist_filename", "extinf"]

_OPEN_FILES = 64


def playlist_filename(by: str, name: str) -> str:
    """A portable file name for a playlist (no separators or characters Windows refuses).

    Examples
    --------
    Numbers are zero-padded so that a folder listing sorts as a DJ reads them (1A 2A ... 12A, 80 ... 175 BPM):

    >>> playlist_filename("camelot", "8A"), playlist_filename("folder", "House/Deep: 2024")
    ('Camelot 08A.m3u8', 'Folder House - Deep_ 2024.m3u8')
    >>> playlist_filename("bpm", "80-85 BPM"), playlist_filename("bpm", "120-125 BPM"), playlist_filename("bpm", NO_BPM)
    ('BPM 080-085.m3u8', 'BPM 120-125.m3u8', 'BPM unknown.m3u8')
    """
    prefix = {"camelot": "Camelot", "bpm": "BPM", "genre": "Genre", "folder": "Folder"}[by]
    if by == "bpm":
        name = "unknown" if name == NO_BPM else re.sub(r"(?<![.\d])\d+", lambda m: m.group(0).zfill(3),
                                                      name.replace(" BPM", ""))
    elif by == "camelot":
        name = re.sub(r"^(\d)([AB])$", r"0\1\2", name)
    safe = re.sub(r'[<>:"\\|?*\x00-\x1f]', "_", name.replace("/", " - ")).strip(" .") or "_"
    return f"{prefix} {safe}"[:200] + ".m3u8"


def extinf(t: Track) -> str:
    """The ``#EXTINF`` line of a track: whole seconds (-1 unknown) and "Artist - Title".

    Examples
    --------
    >>> from crate_dask.explore.export.tracks import Track, choose_values
    >>> row = {"artist": "Bicep", "title": "Glue", "duration_s": 269.6}
    >>> extinf(Track(1, "/m/g.mp3", b"/m/g.mp3", "g.mp3", row, choose_values(row)))
    '#EXTINF:270,Bicep - Glue'
    """
    d = t.number("duration_s")
    artist, title = t.text("artist"), t.text("title")
    label = f"{artist} - {title}" if artist and title else (title or artist or os.path.basename(t.path))
    return f"#EXTINF:{int(round(d)) if d is not None else -1},{' '.join(label.splitlines())}"


@dataclass
class _Pool:
    """Playlist files opened for appending, at most ``_OPEN_FILES`` at a time."""

    folder: str
    open: "collections.OrderedDict[str, IO[str]]" = field(default_factory=collections.OrderedDict)
    entries: dict[str, int] = field(default_factory=dict)

    def append(self, filename: str, text: str) -> None:
        fh = self.open.pop(filename, None)
        if fh is None:
            if len(self.open) >= _OPEN_FILES:
                self.open.popitem(last=False)[1].close()
            new = filename not in self.entries
            fh = open(os.path.join(self.folder, filename), "w" if new else "a", encoding="utf-8",
                      errors="surrogateescape", newline="\n")
            if new:
                fh.write("#EXTM3U\n")
                self.entries[filename] = 0
        self.open[filename] = fh
        fh.write(text)
        self.entries[filename] += 1

    def close(self) -> None:
        for fh in self.open.values():
            fh.close()
        self.open.clear()


def write_playlists(out: str | os.PathLike, out_dir: str | os.PathLike, *, by: str = "camelot",
                    relative: bool = False, bpm_band: float = 5.0, prefer: str = "analysis",
                    corrections: Mapping[str, Mapping[str, Any]] | None = None) -> Summary:
    """Write one extended M3U8 playlist per group of the results folder ``out`` into ``out_dir``.

    Parameters
    ----------
    out : path
        The results folder; entries are the tracks' current paths (renames followed).
    out_dir : path
        Folder of the playlists; existing ``<Prefix> *.m3u8`` files of the same grouping are replaced.
    by : {"camelot", "bpm", "genre", "folder"}
        The grouping.
    relative : bool
        Paths relative to ``out_dir`` instead of absolute.
    bpm_band : float
        Width of the BPM bands.
    prefer, corrections
        Which BPM/key decide the group: see :func:`crate_dask.explore.export.tracks.choose_values`.

    Returns
    -------
    Summary
        ``playlists`` is the number of files written.
    """
    if by not in GROUPINGS:
        raise FatalError(f"--by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise FatalError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    summary = Summary(target=f"m3u8 by {by}", path=out_dir)
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=".tmp-playlists-")
    pool = _Pool(tmp)
    base = os.fsencode(out_dir)
    try:
        for t in iter_tracks(out, prefer=prefer, corrections=corrections):
            if t.row.get("error"):   # not playable: a player would only skip it (it stays in the results)
                summary.left_out_errors += 1
                continue
            name = playlist_name(by, t.chosen, genre=t.text("genre"), folder=t.folder, band=bpm_band)
            target = os.fsdecode(os.path.relpath(t.path_bytes, base)) if relative else t.path
            pool.append(playlist_filename(by, name), f"{extinf(t)}\n{' '.join(target.splitlines())}\n")
            summary.count(t)
        pool.close()
        for f in os.listdir(tmp):
            with open(os.path.join(tmp, f), "rb+") as fh:
                os.fsync(fh.fileno())
        prefix = playlist_filename(by, "x").rsplit(" ", 1)[0] + " "
        for old in os.listdir(out_dir):   # the previous set of this grouping: groups may have gone
            if old.startswith(prefix) and old.endswith(".m3u8") and old not in pool.entries:
                os.unlink(os.path.join(out_dir, old))
        for f in pool.entries:
            os.replace(os.path.join(tmp, f), os.path.join(out_dir, f))
    finally:
        pool.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary.playlists = len(pool.entries)
    return summary
