"""crate_dask: resumable analysis of huge DJ music libraries on Dask.

Scan a library into partitions, read tags (mutagen) and estimate BPM and key
(librosa) per file on a local or multi-machine Dask cluster, and write one
Parquet file per partition so that a rerun resumes where it stopped.
"""

__version__ = "0.1.0"


def analyze(library, out, settings=None, *, client=None, on_event=None):
    """Analyse ``library`` into the results folder ``out``; returns the run summary.

    ``settings`` defaults to :func:`crate_dask.config.build_settings` with no
    config file; ``on_event`` receives the run's events (see
    :mod:`crate_dask.run.events`). A thin front for
    :func:`crate_dask.run.api.run_analysis`, imported on first use so that
    ``import crate_dask`` stays cheap for worker child processes.
    """
    from crate_dask.config import build_settings
    from crate_dask.run.api import run_analysis

    return run_analysis(library, out, settings or build_settings(), client=client, on_event=on_event)


def open_results(out):
    """Open a results folder for paging, filtering, summaries, QA, duplicates and mixing.

    See :class:`crate_dask.explore.results.Results`; imported lazily so that ``import crate_dask`` stays light.
    """
    from crate_dask.explore.results import open_results as _open

    return _open(out)


__all__ = ["analyze", "open_results", "__version__"]
