"""How every command ends: one convention for errors and exit codes.

A command's body is a function returning an exit code (or None for 0);
:func:`run_command` runs it. Bad usage (:class:`~crate_dask.errors.ParameterError`)
is one ``error:`` line and exit 2, any other expected problem
(:class:`~crate_dask.errors.CrateDaskError`: a missing folder, a full disk, a
lock held by another command) one ``error:`` line and exit 1, and SIGTERM or
Ctrl-C outside a run (which reports its own cancellation) exit 130.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable

from rich.markup import escape

from crate_dask.cli.progress import console
from crate_dask.errors import CrateDaskError, ParameterError

EXIT_USAGE, EXIT_FATAL, EXIT_CANCELLED = 2, 1, 130


class Cancelled(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it unwinds like Ctrl-C."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Cancelled()


def error(message: str) -> None:
    """One ``error: ...`` line on stderr."""
    console.print(f"[bold red]error:[/] {escape(str(message))}")


def run_command(fn: Callable[[], int | None]) -> None:
    """Run a command's body and exit with its code, or with one line for an expected error."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = fn()
    except ParameterError as exc:
        error(exc)
        sys.exit(EXIT_USAGE)
    except CrateDaskError as exc:
        error(exc)
        sys.exit(EXIT_FATAL)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: what was finished is saved; run the same command again to go on")
        sys.exit(EXIT_CANCELLED)
    sys.exit(code or 0)
