"""Set-up of the local worker processes crate_dask starts (a Dask preload module).

``connect`` names this module in ``distributed.worker.preload`` for its
``LocalCluster``; each worker process runs :func:`dask_setup` as it starts:

- Ctrl-C goes to the client, which closes the cluster: workers ignore SIGINT
  (and so do the analysis processes they start), instead of printing a
  traceback each under the progress bar;
- the worker's own output (logging, tracebacks) goes to the run's log file in
  the results folder (``crate-dask.worker-log`` in the Dask config);
- with ``--nice`` (``crate-dask.nice``), the lowest CPU priority and idle I/O
  priority, inherited by the threads and analysis processes it starts.
"""

from __future__ import annotations

import os
import signal


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
