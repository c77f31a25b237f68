"""The results folder: what is on disk and what it means.

Partition Parquet files written atomically, the folder's state and run log,
the one-command-at-a-time lock, the write-ahead journals of rename and tag
operations, and the history of each file derived from them (where a file was
moved, which tag writes changed it). Everything that reads or writes the
results folder's bookkeeping lives here; the pipeline and the actions use it.
"""
