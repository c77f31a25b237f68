"""Reading the library: files, tags and decoded audio.

Thin I/O wrappers and nothing else: :mod:`~crate_dask.library.scan` finds audio
files, :mod:`~crate_dask.library.tags` reads and writes tags with mutagen,
:mod:`~crate_dask.library.audio` decodes an excerpt to mono float32. They raise
the domain errors of :mod:`crate_dask.errors` (``UnreadableFileError``,
``DecodeError``) and know nothing of Dask, the results folder or the CLI.
"""
