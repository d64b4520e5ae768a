"""Running the app under uvicorn: the port claimed first, settings handed to every worker, logs.

:func:`reserve_port` binds the address before any other work, so a busy
port is reported at once with what to do (``--port``), not as ``Errno 98``
after minutes of training; the bound socket is then the one served on, so
nothing can take the port in between.

With several workers on Linux each worker listens on a socket of its own,
bound to the port with ``SO_REUSEPORT`` (:class:`WorkerSocket`): the kernel
hashes every new connection to one of them, so long-lived connections are
spread evenly. A shared socket is accepted from by whichever worker wakes
first, which takes every pending connection at once (measured: 46/18 of 64
keep-alive connections, one worker saturated). The parent then keeps the port
by a bound socket that does not listen (:func:`hold_port`).

The kernel's hash is a coin toss a connection, and keep-alive connections never
move: 64 of them split 27/37, 43/21, 23/41. So the workers also share a table of
their open connections, and one holding more than its share sheds some by
``Connection: close`` on a response (:mod:`recgraph.serving.balance`; setting
``balance_connections``).

The trade-offs: until a worker has loaded its model the port refuses
connections (with one worker, or a shared socket, they wait in the backlog),
so clients should retry ``/healthz`` at startup; a worker that dies resets the
connections queued on its socket (Linux 5.14+ moves them to another worker with
``sysctl net.ipv4.tcp_migrate_req=1``); and the held port can be joined by
``SO_REUSEPORT`` sockets of the same user (no other program can bind it).

Worker processes get the :class:`~recgraph.settings.Settings` object itself:
:class:`ServerConfig` carries it inside uvicorn's config, which uvicorn hands
to each worker it spawns. Nothing is written to the environment, so no
setting is lost on the way; the one exception is the C library's
``MALLOC_ARENA_MAX`` (:func:`limit_malloc_arenas`), which only the environment
can give a process before it starts.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import inspect
import logging
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOG_LEVELS, STARTUP_FAILURE

from recgraph.errors import RecgraphError
from recgraph.serving.balance import (
    ConnectionTable,
    WorkerShare,
    balanced_protocol,
    listening_lifespan,
)
from recgraph.settings import RedactingFilter, Settings

log = logging.getLogger("recgraph.serving")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Pending connections the socket holds (uvicorn's default).
BACKLOG = 2048
#: How long a worker may take to answer uvicorn's first health check.
WORKER_STARTUP_SECONDS = 60
#: glibc malloc arenas per server process. Each request thread that meets a lock gets an
#: arena of its own (up to 8 per core) and keeps its freed memory: measured on a served
#: 10^6-follow registry at 200 requests/s, two workers' PSS went 606 -> 534 MB with 2.
MALLOC_ARENAS = 2
#: ``mallopt``'s parameter number for the arena limit (``M_ARENA_MAX`` in malloc.h).
_M_ARENA_MAX = -8


#: Each worker listens on its own ``SO_REUSEPORT`` socket (Linux); elsewhere they share one.
SPREAD_CONNECTIONS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class PortInUseError(RecgraphError, OSError):
    """The address to serve on cannot be had."""


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, as uvicorn would open it.

    It listens at once because on Linux a merely bound socket does not keep
    another process from binding the same port; connections that arrive
    before the app starts wait in the backlog. Not so with several workers on
    Linux: :func:`run` swaps it for a holder that does not listen, and the port
    refuses connections until a worker has loaded its model (clients should
    retry ``/healthz`` at startup).

    Raises
    ------
    PortInUseError
        The port is taken, needs privileges, or ``host`` is not an address
        of this machine; the message says which option to change.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise PortInUseError(_bind_problem(host, port, exc)) from None
    sock.set_inheritable(True)
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        spare = _free_port_near(host, port)
        hint = f", e.g. --port {spare}" if spare else ""
        return (
            f"port {port} on {host} is already in use (another recgraph serve?): "
            f"pick another with --port{hint}, or stop what is listening on {where}"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {where}: ports below 1024 need root; use --port 8000"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {host!r} is not an address of this machine (--host)"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _free_port_near(host: str, port: int, tries: int = 20) -> int | None:
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        try:
            reserve_port(host, candidate).close()
        except PortInUseError:
            continue
        return candidate
    return None


def hold_port(sock: socket.socket) -> socket.socket | None:
    """A bound socket that keeps ``sock``'s port for workers' ``SO_REUSEPORT`` sockets alone.

    It does not listen, so the kernel hands it no connection (one hashed to a
    listening socket nobody accepts from would wait forever); it is not
    ``SO_REUSEADDR`` either, so no other program can bind the port, while the
    workers' sockets (``SO_REUSEPORT``, same user) can. ``sock`` is closed once
    the port is held, and connections already queued on it are reset first
    (:func:`_reset_queued`); ``None`` where this cannot be done (e.g. the TIME_WAIT
    of a previous single-socket server's connections), with a warning and ``sock``
    left listening: not ``SO_REUSEPORT``, so no other program can join the port.
    """
    holder = None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _reset_queued(sock)
        holder = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(sock.getsockname()[:2])
    except OSError as exc:
        if holder is not None:
            holder.close()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
        except OSError:
            pass
        log.warning(
            "cannot give each worker its own socket on port %s (%s): the workers share "
            "one, so connections will not be spread evenly over them",
            sock.getsockname()[1],
            exc.strerror or exc,
        )
        return None
    sock.close()
    return holder


def _reset_queued(sock: socket.socket) -> None:
    """Reset the connections already queued on the listening ``sock``.

    Accepted before ``SO_REUSEPORT`` was set on ``sock``, they lack it and keep the holder
    off the port: one client retrying ``/healthz`` while the server starts (as
    :func:`reserve_port` asks clients to) used to leave the workers sharing one socket,
    unbalanced. Closed with a zero linger, they leave no TIME_WAIT (which would keep the
    holder off too); their clients see a reset and retry, as while the port refuses.
    Connections queued from here on inherit ``SO_REUSEPORT`` and do not matter."""
    blocking = sock.getblocking()
    sock.setblocking(False)
    reset = 0
    try:
        while True:
            try:
                connection, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
            reset += 1
    finally:
        sock.setblocking(blocking)
    if reset:
        log.info("reset %d connection(s) made while the workers were starting", reset)


class WorkerSocket:
    """Stands for a worker's own socket in the list uvicorn hands every worker.

    uvicorn pickles the list into each worker process it spawns; unpickled
    there, this is a new socket bound to the port with ``SO_REUSEPORT``. It
    does not listen yet: uvicorn makes it listen once the worker's app has
    started, so no connection is hashed to a worker still loading its model.
    """

    def __init__(self, family: socket.AddressFamily, address: tuple[str, int]) -> None:
        self.family = family
        self.address = address

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_worker_socket, (self.family, self.address))


#: Worker sockets made in this process from a :class:`WorkerSocket` (by unpickling).
_worker_sockets_made = 0


def _worker_socket(family: socket.AddressFamily, address: tuple[str, int]) -> socket.socket:
    global _worker_sockets_made
    _worker_sockets_made += 1
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # the connections it accepts inherit its options: without SO_REUSEADDR the TIME_WAIT
    # of those the server closed would keep the next reserve_port off the port for a
    # minute. The port stays the server's: the holder is not SO_REUSEADDR
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:  # the same failure in every worker: uvicorn stops the server
        sock.close()
        log.error("worker cannot bind %s:%s: %s", *address[:2], exc)
        sys.exit(STARTUP_FAILURE)
    return sock


def _check_worker_sockets() -> None:
    """Stop the worker, as a startup failure, if its :class:`WorkerSocket` was not made a socket.

    That takes uvicorn's spawning its workers, which pickles the socket list into each;
    started otherwise (a fork) a worker would get the bare placeholder and fail later,
    obscurely, after loading its model.
    """
    if not _worker_sockets_made:
        log.error(
            "worker got no socket of its own: uvicorn did not spawn it (a fork start "
            "method?), which --workers on Linux needs"
        )
        sys.exit(STARTUP_FAILURE)


def established_connections(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local ``port`` each of ``pids`` holds (Linux).

    Read from ``/proc``: the socket inodes among each process's open files,
    matched with the established entries of ``/proc/net/tcp`` and ``tcp6``.
    For showing how a server's workers share their connections. A process whose
    open files cannot be read (gone, or another user's) is left out, with a warning.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    counts = {}
    for pid in pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError as exc:
            log.warning(
                "cannot read the open files of process %s (%s): its connections are not counted",
                pid,
                exc.strerror or exc,
            )
            continue
        counts[pid] = held
    return counts


def uvicorn_workers(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are uvicorn's workers: processes started by multiprocessing's
    ``spawn_main`` (not its resource tracker, nor processes that are gone)."""
    workers = []
    for pid in pids:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            continue
    return workers


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Show recgraph's own log lines (model loads and hot reloads) on stderr, secrets masked."""
    logger = logging.getLogger("recgraph")
    logger.setLevel(level)
    if not any(getattr(h, "_recgraph", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RedactingFilter(settings.secrets()))
        handler._recgraph = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas in this process and the workers it starts.

    Workers read ``MALLOC_ARENA_MAX`` from the environment they are started with
    (an operator's own value is kept); this process, already running, is told by
    ``mallopt``, which takes effect for arenas not yet created (the request threads').
    A no-op where the C library is not glibc.
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, int(os.environ["MALLOC_ARENA_MAX"]))
    except (OSError, AttributeError, ValueError):  # not glibc, or a value that is not a number
        pass


def _build_app(settings: Settings) -> Any:
    from recgraph.serving.app import create_app

    configure_logging(settings)
    return create_app(settings)


class ServerConfig(uvicorn.Config):
    """uvicorn's config, carrying the settings to every worker (it is pickled with them)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("recgraph.serving.app:create_app", factory=True, **kwargs)
        self.recgraph_settings = settings
        #: Set by :func:`run` when each worker is to make a socket of its own.
        self.worker_sockets = False
        #: Set by :func:`run` when the workers even out their connections: the parent's
        #: :class:`~recgraph.serving.balance.ConnectionTable`, in a worker its share of it.
        self.connection_share: ConnectionTable | WorkerShare | None = None

    def load(self) -> None:
        """uvicorn's, then (in a worker that evens out connections) its protocol and
        lifespan classes made to count its connections into the shared table."""
        super().load()
        share = self.connection_share
        if isinstance(share, WorkerShare):
            self.http_protocol_class = balanced_protocol(self.http_protocol_class, share)
            self.lifespan_class = listening_lifespan(self.lifespan_class, share)

    def load_app(self) -> Any:
        """The app factory, bound to these settings (called once in each worker)."""
        if self.worker_sockets:
            _check_worker_sockets()
        return functools.partial(_build_app, self.recgraph_settings)


def run(
    settings: Settings,
    *,
    log_level: str = "info",
    workers: int = 1,
    sock: socket.socket | None = None,
) -> None:
    """Serve until interrupted (what ``recgraph serve`` and ``recgraph quickstart`` run).

    Parameters
    ----------
    settings
        Everything the app needs; each worker gets this very object.
    log_level
        uvicorn's log level (recgraph's own lines are shown at INFO).
    workers
        Server processes; each loads the model.
    sock
        A socket from :func:`reserve_port` (default: one is reserved now).
    """
    from uvicorn.supervisors import Multiprocess

    limit_malloc_arenas()  # before any worker or request thread starts
    sock = sock or reserve_port(settings.host, settings.port)
    config = ServerConfig(
        settings,
        host=settings.host,
        port=sock.getsockname()[1],
        workers=workers,
        log_level=log_level,
        # below INFO nothing is printed, but uvicorn formats each request's client address
        # and quoted path for its access logger all the same
        access_log=LOG_LEVELS.get(log_level, logging.INFO) <= logging.INFO,
        backlog=BACKLOG,
        # a worker first imports recgraph (numpy, pandas) to read its settings: seconds on
        # a busy machine, past which uvicorn would kill it as hung and start another
        timeout_worker_healthcheck=WORKER_STARTUP_SECONDS,
    )
    server = uvicorn.Server(config)
    table = None
    try:
        if workers > 1:
            extra = (
                {"target": server.run}
                if "target" in inspect.signature(Multiprocess).parameters
                else {}
            )
            holder = hold_port(sock) if SPREAD_CONNECTIONS else None
            if holder is not None:
                sock = holder
                shared: list[Any] = [WorkerSocket(sock.family, sock.getsockname()[:2])]
                config.worker_sockets = True
                if settings.balance_connections:
                    try:
                        config.connection_share = table = ConnectionTable(workers)
                    except OSError as error:  # no memfd (e.g. ENOSYS in a sandbox)
                        log.warning(
                            "serving without evening out connections: no shared table (%s)",
                            error,
                        )
            else:
                shared = [sock]
            Multiprocess(config, sockets=shared, **extra).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if table is not None:
            table.close()
