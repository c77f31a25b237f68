"""crate_dask: resumable analysis of huge DJ music libraries on Dask.

Scan a library into partitions, read tags (mutagen) and estimate BPM and key
(librosa) per file on a local or multi-machine Dask cluster, and write one
Parquet file per partition so that a rerun resumes where it stopped.
"""

__version__ = "0.1.0"
