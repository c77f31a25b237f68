"""Choosing and starting the Dask scheduler: done at the edge (CLI, scripts, notebooks) only.

``connect`` gives a ``distributed.Client`` for a new ``LocalCluster`` (worker
processes, one thread each, dashboard on 127.0.0.1), for an existing cluster
(``scheduler="tcp://host:8786"``), or ``None`` for in-process sequential runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Iterator

from crate_dask.config import RunSettings
from crate_dask.errors import FatalError


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free on ``host``, else a free port chosen by the OS."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise FatalError("no free port for the dashboard")


def default_workers() -> int:
    """One worker per usable core."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


@contextlib.contextmanager
def connect(run: RunSettings) -> Iterator["Client | None"]:  # noqa: F821
    """Yield a client for the cluster ``run`` asks for, closing what this function started.

    ``run.sequential`` yields ``None``: the caller computes with ``scheduler="sync"``.
    """
    if run.sequential:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    if run.scheduler:
        try:
            client = Client(run.scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise FatalError(f"cannot connect to the Dask scheduler at {run.scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = run.workers or default_workers()
    port = free_port(run.dashboard_port)
    # Quiet the cluster's own INFO logging: the CLI shows its own progress.
    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with dask.config.set({"distributed.worker.daemon": False,   # workers may start analysis subprocesses
                          "distributed.admin.tick.limit": "30s"}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=f"127.0.0.1:{port}",
                               silence_logs=logging.WARNING)
        client = Client(cluster)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)


def dashboard_link(client) -> str | None:
    """The dashboard URL of ``client``'s cluster, if it serves one."""
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    try:
        link = client.dashboard_link
        # A scheduler started with --no-dashboard still serves HTTP on that port, answering 404.
        # HEAD does not open a dashboard session (a GET would, and keep it updating).
        with urlopen(Request(link, method="HEAD"), timeout=3):
            return link
    except HTTPError as exc:
        return None if exc.code == 404 else link
    except Exception:
        return None
