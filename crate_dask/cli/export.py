"""The ``export`` (rekordbox XML, Traktor NML) and ``playlists`` (M3U8) commands.

Both read a results folder and write files elsewhere; they never touch the
library. They hold the results folder's lock while they run, so that a rename
cannot move files between the moment a path is read and the moment it is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from crate_dask.cli.messages import run_command
from crate_dask.errors import ParameterError

_PREFER = click.option("--prefer", type=click.Choice(["analysis", "tags"]), default="analysis", show_default=True,
                       help="Which BPM/key win: the analysis (then the file's tag) or the file's own tags. "
                            "A manual correction always wins.")
_BAND = click.option("--bpm-band", type=click.FloatRange(min=1, max=50), default=5.0, show_default=True,
                     help="Width of the BPM playlists.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")




def _report(summaries, as_json: bool) -> None:
    if as_json:
        import json

        click.echo(json.dumps([s.as_dict() for s in summaries], indent=2))
        return
    for s in summaries:
        no_grid = s.no_grid_error + s.no_grid_no_bpm + s.no_grid_other_bpm
        line = (f"{s.target}: {s.tracks} tracks -> {s.path}; grid on {s.with_grid}, without grid {no_grid} "
                f"({s.no_grid_error} with errors, {s.no_grid_no_bpm} without BPM, "
                f"{s.no_grid_other_bpm} with a BPM that is not the analysed one)")
        extra = [f"{s.playlists} playlists" if s.playlists else "",
                 f"{s.relocated} relocated, {s.kept} kept from the old collection" if s.relocated or s.kept else "",
                 f"{s.missing_files} files missing at their path" if s.missing_files else "",
                 f"{s.unsupported} in formats {s.target} does not play" if s.unsupported else "",
                 f"{s.left_out_errors} with errors left out" if s.left_out_errors else ""]
        click.echo(line + "".join(f"; {e}" for e in extra if e), err=True)


@click.command("export")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--rekordbox", "rekordbox_xml", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a rekordbox XML collection (File > Import Collection in rekordbox).")
@click.option("--traktor", "traktor_nml", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a Traktor NML collection.")
@click.option("--relocate-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="An earlier rekordbox XML: keep its track IDs, cues, grids and ratings, at the current paths.")
@click.option("--key-notation", type=click.Choice(["musical", "camelot", "open"]), default="musical",
              show_default=True, help="rekordbox Tonality, as your rekordbox shows keys (Traktor: its own numbers).")
@click.option("--no-lame-shift", is_flag=True,
              help="rekordbox grids of LAME MP3s without the encoder delay rekordbox plays (only for a rekordbox "
                   "that plays them gapless).")
@click.option("--traktor-volume", default="", metavar="NAME",
              help="Traktor LOCATION VOLUME: the disk's volume name ('Macintosh HD', 'C:') [default: none].")
@_PREFER
@_BAND
@_JSON
def export(out, rekordbox_xml, traktor_nml, relocate_from, key_notation, no_lame_shift, traktor_volume, prefer, bpm_band,
           as_json):
    """Export results folder OUT to DJ software, with the beat grid and at the files' current paths."""
    def go():
        from crate_dask.explore.export import export_rekordbox, export_traktor
        from crate_dask.store.partitions import exclusive, require_results

        if not rekordbox_xml and not traktor_nml:
            raise ParameterError("nothing to export: give --rekordbox FILE and/or --traktor FILE")
        if relocate_from and not rekordbox_xml:
            raise ParameterError("--relocate-from needs --rekordbox NEW.xml")
        if relocate_from and rekordbox_xml and relocate_from.resolve() == rekordbox_xml.resolve():
            raise ParameterError("--relocate-from and --rekordbox must be different files")
        summaries = []
        require_results(out)
        with exclusive(out, "export"):
            if rekordbox_xml:
                summaries.append(export_rekordbox(out, rekordbox_xml, prefer=prefer, key_notation=key_notation,
                                                  bpm_band=bpm_band, relocate_from=relocate_from,
                                                  lame_shift=not no_lame_shift))
            if traktor_nml:
                summaries.append(export_traktor(out, traktor_nml, prefer=prefer, volume=traktor_volume))
        _report(summaries, as_json)
    run_command(go)


@click.command("playlists")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--by", type=click.Choice(["camelot", "bpm", "genre", "folder"]), default="camelot",
              show_default=True, help="One playlist per Camelot key, BPM band, genre or library folder.")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the .m3u8 files (created if needed).")
@click.option("--relative", is_flag=True, help="Paths relative to --out-dir instead of absolute.")
@_PREFER
@_BAND
@_JSON
def playlists(out, by, out_dir, relative, prefer, bpm_band, as_json):
    """Write extended M3U8 playlists of results folder OUT, readable by every DJ program and player."""
    def go():
        from crate_dask.explore.export import write_playlists
        from crate_dask.store.partitions import exclusive, require_results

        require_results(out)
        with exclusive(out, "playlists"):
            s = write_playlists(out, out_dir, by=by, relative=relative, bpm_band=bpm_band, prefer=prefer)
        _report([s], as_json)
    run_command(go)
