"""The small exception hierarchy of crate_dask.

Expected problems with a *file* (it cannot be read, decoded, ...) are
``FileProblem`` subclasses: the stage wrapper turns them into row fields,
including a structured cause, ``error_type`` (one of :data:`ERROR_TYPES`), so
that retry policies and reports never parse messages. Problems with the *run*
(bad settings, missing library) are ``FatalError``: the CLI prints them as one
line and exits non-zero. ``WorkInterrupted`` is neither: the run is being
cancelled, and the work in flight must be dropped, never recorded.

>>> FileProblem("bad").error_type, AnalysisTimeout("slow", limit=60.0).error_type
('unreadable', 'timeout')
>>> UnreadableFileError("cut", error_type="truncated").error_type
'truncated'
"""

#: The causes a row's ``error_type`` can hold, and what they mean.
ERROR_TYPES: dict[str, str] = {
    "unreadable": "the container or its tags cannot be parsed, or the file is not audio",
    "truncated": "the file holds less audio than its header declares",
    "undecodable": "the container is readable but the audio data cannot be decoded",
    "timeout": "reading or analysing the file exceeded --file-timeout (retried when it is raised)",
    "memory": "reading or analysing the file exceeded --file-memory (retried when it is raised)",
    "crashed": "the reader or decoder process died on this file (retried on the next run)",
    "quarantined": "the file crashed the reader repeatedly: not retried until it changes or --retry-errors",
    "permission": "permission denied (retried)",
    "vanished": "the file disappeared or could not be stat'ed during the run (retried)",
    "bug": "an unexpected exception in crate_dask (retried; please report it)",
}


class CrateDaskError(Exception):
    """Base class of every crate_dask exception."""


class FatalError(CrateDaskError):
    """The run cannot go on (missing library, unwritable output, bad option)."""


class FileProblem(CrateDaskError):
    """An expected, per-file problem: becomes ``error_stage``/``error_type``/``error`` in the row.

    ``error_type`` defaults to the class's; ``limit`` is the setting a time or
    memory limit error exceeded (seconds or MiB), recorded so that raising the
    setting retries exactly those rows.
    """

    error_type = "unreadable"

    def __init__(self, message: str = "", *, error_type: str | None = None, limit: float | None = None) -> None:
        super().__init__(message)
        if error_type is not None:
            if error_type not in ERROR_TYPES:
                raise ValueError(f"unknown error type {error_type!r}")
            self.error_type = error_type
        self.limit = limit

    def __reduce__(self):   # survive pickling through the isolation pipe with type and limit
        return (_rebuild, (type(self), str(self), self.error_type, self.limit))


def _rebuild(cls, message, error_type, limit):
    return cls(message, error_type=error_type, limit=limit)


class UnreadableFileError(FileProblem):
    """The file cannot be opened or its container/tags cannot be parsed."""


class DecodeError(FileProblem):
    """The audio data cannot be decoded."""

    error_type = "undecodable"


class FileChangedError(FileProblem):
    """The file vanished or changed while it was being processed."""

    error_type = "vanished"


class AnalysisTimeout(FileProblem):
    """Reading or analysing one file took longer than the configured limit."""

    error_type = "timeout"


class FileMemoryError(FileProblem):
    """Reading or analysing one file needed more memory than the configured limit."""

    error_type = "memory"


class ReaderCrashed(FileProblem):
    """The isolated reader/decoder process died while it worked on this file."""

    error_type = "crashed"


class WorkInterrupted(CrateDaskError):
    """The run is being cancelled (SIGINT/SIGTERM reached the work): drop the file in flight, record nothing."""


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
