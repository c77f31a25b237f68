"""Acting on the results: rename files from a template and write BPM/key into tags.

Each action is planned first (a Dask bag over the results partitions, written
as a plan dataset), previewed, then applied through a write-ahead journal that
makes it resumable after a crash and undoable. :mod:`~crate_dask.actions.naming`
turns a row into a safe file name.
"""
