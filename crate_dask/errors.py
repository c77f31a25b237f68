"""The small exception hierarchy of crate_dask.

Expected problems with a *file* (it cannot be read, decoded, ...) are
``FileProblem`` subclasses: the stage wrapper turns them into row fields.
Problems with the *run* (bad settings, missing library) are ``FatalError``:
the CLI prints them as one line and exits non-zero.
"""


class CrateDaskError(Exception):
    """Base class of every crate_dask exception."""


class FatalError(CrateDaskError):
    """The run cannot go on (missing library, unwritable output, bad option)."""


class FileProblem(CrateDaskError):
    """An expected, per-file problem: becomes ``error_stage``/``error`` in the row."""


class UnreadableFileError(FileProblem):
    """The file cannot be opened or its container/tags cannot be parsed."""


class DecodeError(FileProblem):
    """The audio data cannot be decoded."""


class FileChangedError(FileProblem):
    """The file vanished or changed while it was being processed."""


class AnalysisTimeout(FileProblem):
    """Analysing one file took longer than the configured limit."""


class ParameterError(CrateDaskError, ValueError):
    """An analysis function was called with invalid parameters."""
