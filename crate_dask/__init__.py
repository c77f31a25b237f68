"""crate_dask: resumable analysis of huge DJ music libraries on Dask.

Scan a library into partitions, read tags (mutagen) and estimate BPM and key
(librosa) per file on a local or multi-machine Dask cluster, and write one
Parquet file per partition so that a rerun resumes where it stopped.
"""

__version__ = "0.1.0"


def open_results(out):
    """Open a results folder for paging, filtering, summaries, QA, duplicates and mixing.

    See :class:`crate_dask.explore.results.Results`; imported lazily so that ``import crate_dask`` stays light.
    """
    from crate_dask.explore.results import open_results as _open

    return _open(out)


__all__ = ["open_results", "__version__"]
