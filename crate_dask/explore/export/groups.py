"""Which playlist a track goes in, for each ``--by``: Camelot key, BPM band, genre or folder.

>>> from crate_dask.explore.export.tracks import Chosen
>>> c = Chosen(bpm=127.4, key="A minor", bpm_source="analysis", key_source="analysis",
...            beat_offset_s=None, downbeat_offset_s=None)
>>> playlist_name("camelot", c, genre="", folder=""), playlist_name("bpm", c, genre="", folder="")
('8A', '125-130 BPM')
>>> sorted(["10A", "2B", "1A", "No key", "2A"], key=lambda n: sort_key("camelot", n))
['1A', '2A', '2B', '10A', 'No key']
"""

from __future__ import annotations

import math
import re

from crate_dask.features.notation import to_camelot

#: The ``--by`` choices.
GROUPINGS = ("camelot", "bpm", "genre", "folder")
NO_KEY, NO_BPM, NO_GENRE, ROOT_FOLDER = "No key", "No BPM", "No genre", "(library root)"


def playlist_name(by: str, chosen, *, genre: str, folder: str, band: float = 5.0) -> str:
    """The playlist of a track with exported values ``chosen`` for grouping ``by``."""
    if by == "camelot":
        return to_camelot(chosen.key) if chosen.key else NO_KEY
    if by == "bpm":
        if chosen.bpm is None:
            return NO_BPM
        lo = math.floor(chosen.bpm / band) * band
        return f"{lo:g}-{lo + band:g} BPM"
    if by == "genre":
        return genre.strip() or NO_GENRE
    if by == "folder":
        return folder or ROOT_FOLDER
    raise ValueError(f"unknown grouping {by!r}")


def sort_key(by: str, name: str):
    """Order playlists as a DJ reads them: 1A 1B 2A ..., BPM bands ascending, else by name; gaps last."""
    if name in (NO_KEY, NO_BPM, NO_GENRE):
        return (1, 0.0, "")
    if by == "camelot":
        m = re.fullmatch(r"(\d+)([AB])", name)
        return (0, float(m.group(1)), m.group(2)) if m else (0, 99.0, name)
    if by == "bpm":
        return (0, float(name.split("-")[0]), "")
    return (0, 0.0, name.casefold())
