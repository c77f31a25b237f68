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


class NoSpaceError(FatalError):
    """The disk (or quota) of a folder crate_dask writes to is full.

    Carries where (the folder and its file system) and what was being written;
    ``progress`` says what is already safe (e.g. ``"12 partitions saved"``).
    Picklable, so a worker's error reaches the client intact.

    >>> str(NoSpaceError("/data/out", "writing partition part-00012", "11 partitions saved"))
    'no space left on /data/out while writing partition part-00012; 11 partitions saved; free space and run the same command again'
    """

    def __init__(self, where: str, doing: str, progress: str | None = None):
        super().__init__(where, doing, progress)
        self.where, self.doing, self.progress = where, doing, progress

    def with_progress(self, progress: str) -> "NoSpaceError":
        """The same error, saying what is already saved."""
        return NoSpaceError(self.where, self.doing, progress)

    def __str__(self) -> str:
        done = f"; {self.progress}" if self.progress else ""
        return f"no space left on {self.where} while {self.doing}{done}; free space and run the same command again"
