"""Exports to DJ software: rekordbox XML, Traktor NML and M3U8 playlists, at the files' current paths.

All of them stream the results folder (memory flat in library size) and share one rule for
which BPM and key a track gets (:func:`~crate_dask.explore.export.tracks.choose_values`).
"""

from crate_dask.explore.export.playlists import write_playlists
from crate_dask.explore.export.rekordbox import export_rekordbox
from crate_dask.explore.export.tracks import Summary, choose_values, current_paths, iter_tracks
from crate_dask.explore.export.traktor import export_traktor

__all__ = ["export_rekordbox", "export_traktor", "write_playlists", "choose_values", "current_paths",
           "iter_tracks", "Summary"]
