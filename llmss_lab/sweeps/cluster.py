"""The dask.distributed cluster the points run on: a LocalCluster of worker processes, a scheduler address, or
a Client, checked before anything runs."""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import ClusterStartError, InputError
from ..ctrl_c import ctrl_c_held

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0   # a scheduler address that does not answer within this is an error, not a hang
HANDSHAKE_S = 5.0          # a dask scheduler sends its handshake as soon as a connection opens
WORKER_WAIT_S = 60.0       # nor is a scheduler that has no worker to run the points after this
LOCAL_START_TRIES = 2      # starts of a LocalCluster before its failure is an error


MAX_WORKERS_PER_CORE = 4


def _check_cluster_args(client: Any, n_workers: Any, source: str) -> None:
    """Bad cluster arguments fail here, before anything runs: a LocalCluster of no workers waits
    forever, and a malformed address is a bare ValueError deep inside dask."""
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
        raise InputError(f"must be a whole number of worker processes >= 1, got {n_workers!r}", source,
                         "--workers (n_workers)")
    if n_workers is not None and client is not None:   # the scheduler's own workers run the points
        raise InputError("sizes the local cluster started when no scheduler is given; a --dask-scheduler (client) "
                         "runs the points on its own workers", source, "--workers (n_workers)")
    most = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if n_workers is not None and n_workers > most:   # they would share the memory until each one pauses
        raise InputError(f"{n_workers} local worker processes on {os.cpu_count()} cores would only split the "
                         f"memory (each point runs on one core); give at most {most}, or a --dask-scheduler",
                         source, "--workers (n_workers)")
    if isinstance(client, str):
        from distributed.comm import get_address_host_port, parse_address

        where = "--dask-scheduler (client)"
        try:
            scheme, _ = parse_address(client)
            if scheme in ("tcp", "tls", "ws", "wss"):
                host, port = get_address_host_port(client)
                if not host or not 0 < port < 65536:
                    raise ValueError("needs a host and a port from 1 to 65535")
        except (ValueError, TypeError) as exc:
            raise InputError(f"{client!r} is not a dask scheduler address ({exc}); give tcp://HOST:PORT",
                             source, where) from None
    elif client is not None and not hasattr(client, "submit"):
        raise InputError(f"must be a scheduler address or a distributed.Client, got {client!r}", source,
                         "--dask-scheduler (client)")


def _main_script() -> Path | None:
    """The script (or ``python -m`` module) this process runs, if a new worker process would import it again:
    dask starts workers by spawning, and a spawned process re-runs the main module's top-level code."""
    import dask

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)   # none in Jupyter, the REPL and python -c
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if not path or name.endswith("__main__") or \
            dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        return None   # a package's __main__ (python -m llmss_lab, python -m pytest) is not run again
    return Path(path)


def _check_main_guard() -> None:
    """A script that starts a sweep at its top level, unguarded, would start it again in every worker it spawns,
    and the workers die with an error that reaches the user as 'Nanny failed to start': say what to do instead."""
    script = _main_script()
    if script is None:
        return
    try:
        text = script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if not re.search(r"""__name__\s*==\s*['"]__main__['"]""", text):
        raise InputError("a sweep starts dask worker processes, and each of them imports this script again: put "
                         "the code that runs the sweep under `if __name__ == \"__main__\":`", script)


@contextmanager
def local_client(n_workers: int) -> Iterator[Any]:
    """A Client on a LocalCluster of ``n_workers`` worker processes, both closed on exit.

    distributed gives its event-loop thread a fixed 10 s to start; a machine busy for a moment
    can miss that, so a failed start is tried once more before it is an error. A Ctrl-C while the
    workers start takes effect once they are up: a half-started cluster cannot be closed, and dask's
    exit hook then printed a traceback after the sweep had said it was interrupted."""
    from distributed import Client, LocalCluster

    _check_main_guard()
    cluster = c = None
    try:
        for attempt in range(1, LOCAL_START_TRIES + 1):
            try:
                # processes: the kernel is pure Python, so threads would share one GIL; the dashboard on a
                # free port (":8787" may be taken, and None does not turn it off)
                with ctrl_c_held():
                    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", preload=[__name__])   # dask_setup below
                break
            except (AssertionError, RuntimeError, TimeoutError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt == LOCAL_START_TRIES:
                    script = _main_script()
                    hint = (f"; if {script.name} starts the sweep outside `if __name__ == \"__main__\":`, move it "
                            "under that guard (each worker process imports the script again)") if script else ""
                    raise ClusterStartError(
                        f"dask could not start a local cluster of {n_workers} worker process(es) in "
                        f"{LOCAL_START_TRIES} tries (last: {why}); the machine may be short of CPU or memory: try "
                        f"fewer --workers, or start a dask cluster yourself and give --dask-scheduler{hint}") from exc
                log.warning("dask's local cluster did not start (%s); trying once more", why)
        c = Client(cluster, set_as_default=False)   # no global dask config left behind
        yield c
    finally:
        dask_log = logging.getLogger("distributed")
        level = dask_log.level
        dask_log.setLevel(logging.CRITICAL)   # heartbeats racing the shutdown log errors nobody can act on
        try:
            if c is not None:
                c.close()
            if cluster is not None:
                cluster.close()
        finally:
            dask_log.setLevel(level)


def _not_closing_on_a_cancelled_run(record: logging.LogRecord) -> bool:
    """False for the warning a worker logs when it closes under a run the search cancelled and the run has not
    yet seen it ("Async instruction for <Task cancelled ...> ended with CancelledError"): expected, and nothing a
    user can act on, where `llmss capacity` printed it under its table."""
    return not record.getMessage().endswith("ended with CancelledError")


def dask_setup(worker: Any) -> None:
    """dask's preload hook, run as each worker process of a local cluster starts: a Ctrl-C in the terminal
    reaches the whole process group, and the sweep stops its workers itself. Left to them, each printed a
    traceback, and the points they were running were saved as failed ("worker lost")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").addFilter(_not_closing_on_a_cancelled_run)


def _knock(address: str) -> float:
    """Raise OSError at once if nothing listens at a network scheduler address (dask's Client would
    retry a refused connection until its timeout, and leaves its event-loop thread running when it
    gives up), or if what answers at a tcp address does not speak first as dask does; returns the
    seconds of CONNECT_TIMEOUT_S left for the Client."""
    from distributed.comm import get_address_host_port, parse_address

    t0 = time.monotonic()
    scheme = parse_address(address)[0]
    if scheme in ("tcp", "tls", "ws", "wss"):
        with socket.create_connection(get_address_host_port(address), timeout=CONNECT_TIMEOUT_S) as sock:
            if scheme == "tcp":   # a dask scheduler speaks first (its handshake); a server that accepts and then
                sock.settimeout(HANDSHAKE_S)   # waits (HTTP) would hold the Client past its own timeout, for ever
                try:
                    first = sock.recv(1)
                except socket.timeout:
                    raise ConnectionError(f"it accepted the connection but sent nothing in {HANDSHAKE_S:g} s, as a "
                                          "dask scheduler would at once") from None
                if not first:
                    raise ConnectionError("it closed the connection at once")
    return max(1.0, CONNECT_TIMEOUT_S - (time.monotonic() - t0))


@contextmanager
def _client(client: Any, n_workers: int | None, n_tasks: int, source: str = "sweep", bar: Any = None) -> Iterator[Any]:
    """:func:`_connect`, with the progress ``bar`` saying what it waits for meanwhile: a local cluster takes
    seconds to start, a remote scheduler as long as its network."""
    show = bar is not None and not bar.disable and not hasattr(client, "submit")   # a Client: nothing to wait for
    label = bar.desc if show else ""
    if show:
        waiting = "starting dask workers" if client is None else "connecting to dask"
        bar.set_description_str(f"{label} ({waiting})")
    with _connect(client, n_workers, n_tasks, source) as c:
        if show:
            bar.set_description_str(label)
        yield c


@contextmanager
def _connect(client: Any, n_workers: int | None, n_tasks: int, source: str = "sweep") -> Iterator[Any]:
    """The given Client, a Client on a scheduler address, or a LocalCluster of worker processes."""
    from distributed import Client

    if client is None:
        n = n_workers or max(1, min(os.cpu_count() or 1, n_tasks))
        log.info("starting a local dask cluster of %d worker process%s", n, "es" if n > 1 else "")
        with local_client(n) as c:
            yield c
    elif isinstance(client, str):
        where = "--dask-scheduler (client)"
        try:
            left = _knock(client)
            c = Client(client, timeout=f"{left:.1f}s", set_as_default=False)
        except Exception as exc:   # noqa: BLE001 - whatever answers there (not dask: any error), say which address
            raise InputError(f"cannot reach the dask scheduler at {client!r} ({type(exc).__name__}: {exc}); is a "
                             "dask scheduler listening there?", source, where) from None
        try:
            try:
                c.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"the dask scheduler at {client!r} has no workers to run the points (waited "
                                 f"{WORKER_WAIT_S:g} s: {exc}); start one with `dask worker {client}`",
                                 source, where) from None
            yield c
        finally:
            c.close()
    else:
        try:          # a Client of a cluster with no workers would wait for one forever
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"the dask client's cluster has no workers to run the points (waited "
                             f"{WORKER_WAIT_S:g} s: {exc}); give it at least one (LocalCluster(n_workers=1))",
                             source, "client") from None
        yield client
