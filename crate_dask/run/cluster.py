"""Choosing and starting the Dask scheduler: done at the edge (CLI, scripts, notebooks) only.

``connect`` gives a ``distributed.Client`` for a new ``LocalCluster`` (worker
processes, one thread each, dashboard on 127.0.0.1, a memory limit each), for
an existing cluster (``scheduler="tcp://host:8786"`` or ``tls://`` with TLS
settings), or ``None`` for in-process sequential runs. ``check_workers``
makes sure, before any work, that every worker can read the library and write
the results folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
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


# Dask's housekeeping, set down for the local cluster. Measured idle (2 workers, nothing to do): the
# crate-dask process (scheduler, nannies, client) used 6.8% of a core and each worker 4.4%, together 8% of a
# 2-core machine taken from the analysis, which two workers need whole; with these, 1.3% and 0.4% each.
# The worker's statistical profiler (100 samples a second of every thread) was most of the workers' share:
# the dashboard's Profile page stays empty, every other page works.
QUIET = {"distributed.worker.profile.enabled": False,
         "distributed.admin.tick.interval": "1s",              # event-loop latency check, default 20 ms
         "distributed.admin.system-monitor.interval": "2s",    # CPU/memory/network plots, default 500 ms
         "distributed.worker.memory.monitor-interval": "500ms"}   # Dask's memory limit, default 100 ms


@contextlib.contextmanager
def connect(run: RunSettings, *, log_file: str | os.PathLike | None = None,
            audio: bool = False) -> Iterator["Client | None"]:  # noqa: F821
    """Yield a client for the cluster ``run`` asks for, closing what this function started.

    ``audio``: the run analyses audio, so each local worker starts its analysis
    process as it starts (measured: ~2 s of imports and warm-up taken off the
    first chunk).

    ``run.sequential`` yields ``None``: the caller computes with ``scheduler="sync"``.
    ``log_file``: where the cluster's own logging goes while the client is open
    (Dask's warnings and tracebacks; the user sees one line per event instead).
    """
    if run.sequential:
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    with cluster_logging(log_file):
        if run.scheduler:
            try:
                client = Client(run.scheduler, timeout="10s", security=security(run))
            except (OSError, TimeoutError, ValueError, TypeError) as exc:
                raise FatalError(f"cannot connect to the Dask scheduler at {run.scheduler}: "
                                 f"{_one_line(exc)}") from None
            try:
                yield client
            finally:
                with contextlib.suppress(Exception):
                    client.close(timeout=10)
            return
        n = run.workers or default_workers()
        port = free_port(run.dashboard_port)
        config = {"distributed.worker.daemon": False,   # workers may start analysis subprocesses
                  "distributed.admin.tick.limit": "30s",
                  **QUIET,
                  # a chunk that killed its worker twice is retried file by file (see run/graph.py)
                  "distributed.scheduler.allowed-failures": 1,
                  "distributed.worker.preload": ["crate_dask.run.worker_setup"],
                  "crate-dask": {"worker-log": str(log_file) if log_file else None, "nice": run.nice,
                                 "prestart-audio": audio}}
        with dask.config.set(config):
            try:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=f"127.0.0.1:{port}",
                                       memory_limit=run.memory_limit, silence_logs=logging.WARNING)
            except ValueError as exc:   # e.g. a memory limit Dask cannot parse
                raise FatalError(f"cannot start the local cluster: {_one_line(exc)}") from None
            client = Client(cluster)
            try:
                yield client
            finally:
                with contextlib.suppress(Exception):
                    client.close(timeout=10)
                with contextlib.suppress(Exception):
                    cluster.close(timeout=10)


def security(run: RunSettings):
    """Dask's TLS settings for ``--scheduler tls://...`` (``None``: Dask's own config, e.g. ``~/.config/dask``)."""
    if not (run.tls_ca_file or run.tls_cert or run.tls_key):
        return None
    from distributed.security import Security

    for name, path in (("tls_ca_file", run.tls_ca_file), ("tls_cert", run.tls_cert), ("tls_key", run.tls_key)):
        if path and not os.path.isfile(path):
            raise FatalError(f"{name}: file not found: {path}")
    return Security(tls_ca_file=run.tls_ca_file, tls_client_cert=run.tls_cert, tls_client_key=run.tls_key,
                    require_encryption=True)


_NOISY = ("distributed", "tornado", "bokeh", "asyncio", "py.warnings")


@contextlib.contextmanager
def cluster_logging(log_file: str | os.PathLike | None) -> Iterator[None]:
    """Send the cluster's logging in this process to ``log_file`` (not the terminal) while the block runs."""
    if log_file is None:
        yield
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    saved = []
    # Dask's logging config gives some loggers ("distributed.client", ...) stream handlers of their own.
    children = [lg for name, lg in list(logging.Logger.manager.loggerDict.items())
                if isinstance(lg, logging.Logger) and name.startswith(tuple(f"{n}." for n in _NOISY))
                and (lg.handlers or not lg.propagate)]
    for lg in children:
        saved.append((lg, lg.handlers[:], lg.propagate, lg.level))
        lg.handlers, lg.propagate = [], True
    for name in _NOISY:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.propagate, lg.level))
        lg.handlers = [handler]
        lg.propagate = False
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for lg, handlers, propagate, level in reversed(saved):
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
        handler.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_workers(client, paths: dict[str, str], *, timeout: float = 60.0) -> list[dict]:
    """Before any work: every worker can read the library and write the results folder (its own paths).

    ``paths`` = {"library": worker path, "out": worker path}. Raises a one-line
    ``FatalError`` naming the first worker that cannot; returns what each worker
    reported (host, pid, memory limit).
    """
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise FatalError(f"no Dask worker joined the scheduler within {timeout:.0f} s") from None
    try:
        answers = client.run(_probe, paths["library"], paths["out"])
    except Exception as exc:  # noqa: BLE001 - a worker that died meanwhile: say so in one line
        raise FatalError(f"checking the workers failed: {_one_line(exc)}") from None
    bad = sorted((addr, a["problem"]) for addr, a in answers.items() if a.get("problem"))
    if bad:
        addr, problem = bad[0]
        more = f" (and {len(bad) - 1} more worker(s))" if len(bad) > 1 else ""
        host = answers[addr].get("host", "")
        raise FatalError(f"worker {addr} ({host}) {problem}{more}; mount them there or use --path-map "
                         "CLIENT_PREFIX=WORKER_PREFIX")
    return [{"worker": addr, **a} for addr, a in sorted(answers.items())]


def _probe(library: str, out: str) -> dict:
    """Runs on each worker: list the library root, create and delete a file in the results folder."""
    import uuid

    info = {"host": socket.gethostname(), "pid": os.getpid(), "problem": None}
    try:
        with os.scandir(library) as it:
            next(it, None)
    except OSError as exc:
        info["problem"] = f"cannot read the library at {library}: {exc.strerror or exc}"
        return info
    probe = os.path.join(out, f".crate-dask-probe-{uuid.uuid4().hex[:8]}")
    try:
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        info["problem"] = f"cannot write the results folder at {out}: {exc.strerror or exc}"
    return info


def memory_limits(client) -> list[int]:
    """Each worker's memory limit in bytes (0: none), as the scheduler reports it."""
    workers = client.scheduler_info().get("workers", {})
    return [int(w.get("memory_limit") or 0) for w in workers.values()]


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
