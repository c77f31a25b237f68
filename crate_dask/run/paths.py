"""Paths as the workers see them: ``--path-map CLIENT_PREFIX=WORKER_PREFIX``.

On a cluster of several machines the library and the results folder may be
mounted at other paths on the workers (a Mac laptop with ``/Volumes/Music``,
Linux workers with ``/mnt/music``). The client plans with its own paths; every
path it sends to a worker goes through :func:`to_worker`. Rows keep the
client's paths, so that ``rename`` and ``tag`` run on the client as usual.

>>> from crate_dask.config import parse_path_maps
>>> pm = parse_path_maps(["/Volumes/Music=/mnt/music", "/Volumes/Music/Crates=/srv/crates"])
>>> to_worker("/Volumes/Music/House/a.mp3", pm)
'/mnt/music/House/a.mp3'
>>> to_worker("/Volumes/Music/Crates/x", pm), to_worker("/Volumes/MusicOld/a.mp3", pm)
('/srv/crates/x', '/Volumes/MusicOld/a.mp3')
"""

from __future__ import annotations

import os
from typing import Sequence


def to_worker(path: str | os.PathLike, path_map: Sequence[tuple[str, str]]) -> str:
    """``path`` on the workers: the longest matching client prefix replaced (whole path components only)."""
    s = os.fspath(path)
    for client, worker in sorted(path_map, key=lambda p: -len(p[0])):
        if s == client:
            return worker
        if s.startswith(client.rstrip("/") + "/"):
            return worker.rstrip("/") + "/" + s[len(client.rstrip("/")) + 1:]
    return s
