"""Set-up of the local worker processes crate_dask starts (a Dask preload module).

``connect`` names this module in ``distributed.worker.preload`` for its
``LocalCluster``; each worker process runs :func:`dask_setup` as it starts:

- Ctrl-C goes to the client, which closes the cluster: workers ignore SIGINT
  (and so do the analysis processes they start), instead of printing a
  traceback each under the progress bar;
- the worker's own output (logging, tracebacks) goes to the run's log file in
  the results folder (``crate-dask.worker-log`` in the Dask config);
- with ``--nice`` (``crate-dask.nice``), the lowest CPU priority and idle I/O
  priority, inherited by the threads and analysis processes it starts;
- once the worker has closed normally, the process ends without the
  interpreter's tear-down (see :func:`_quick_exit`).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

_closed = False   # set when Dask closed the worker normally (not when it failed to start)


def dask_setup(worker) -> None:  # noqa: ARG001 - the preload protocol passes the worker
    """Called by Dask in each local worker process as it starts."""
    import dask

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:   # not the main thread: leave it
        pass
    log = dask.config.get("crate-dask.worker-log", None)
    if log:
        try:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        except OSError:
            pass   # keep the terminal rather than fail the worker
    if dask.config.get("crate-dask.nice", False):
        be_nice()
    # Registered before the analysis runner's own atexit handler, so it runs after it (atexit is LIFO).
    atexit.register(_quick_exit)
    if dask.config.get("crate-dask.prestart-audio", False):
        # after be_nice, so the analysis process inherits the priority; and after _quick_exit is
        # registered, so the runner's own atexit handler (registered as it is made) stops it first
        from crate_dask.run.isolation import get_runner

        get_runner(audio=True).prestart()


def dask_teardown(worker) -> None:  # noqa: ARG001 - the preload protocol passes the worker
    """Called by Dask as the worker closes normally."""
    global _closed
    _closed = True


def _quick_exit() -> None:
    """After a normal close, end the worker process at once instead of tearing the interpreter down.

    Measured (benchmarks/scaling.py): closing a local cluster of two workers
    took 1.0-1.6 s on a loaded 2-core machine, almost all of it the worker
    processes freeing the modules of distributed, pandas and pyarrow one by
    one; with this, 0.1 s. Nothing is lost: every result is on disk and
    reported, the nanny's queues and (by multiprocessing) stdio were flushed
    before the atexit handlers run, and the analysis process was stopped by
    its runner's handler, which runs before this one. Logging and stdio are
    flushed again for whatever those handlers wrote.
    """
    if not _closed:
        return   # a worker that failed keeps its exit code and full tear-down
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def be_nice() -> None:
    """Lowest CPU priority and idle I/O priority for the calling thread and what it starts later.

    Linux keeps both per thread and copies them into new threads and child
    processes: set in the worker's main thread before any task runs, they
    reach the task thread and the analysis process it starts.
    """
    import threading

    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, 19)
    except (OSError, AttributeError):
        pass
    try:
        import psutil

        if hasattr(psutil, "IOPRIO_CLASS_IDLE"):
            psutil.Process(tid).ionice(psutil.IOPRIO_CLASS_IDLE)
    except Exception:  # noqa: BLE001 - best effort: no I/O priorities on this system
        pass
