"""The ``crate-dask`` command: one click group, progress display and messages.

The only package that imports ``click`` and ``rich`` and the only place that
chooses a scheduler for the user, prints, or turns a fatal error into one line
and an exit code.
"""

from crate_dask.cli.main import main

__all__ = ["main"]
