"""``benchmarks/load.py``'s watch on the server and its worker processes: whether it serves,
how many connections each worker holds, whether each is up before a phase starts, and
whether uvicorn restarted one."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

from common import process_tree
from recgraph.serving.processes import process_alive
from recgraph.serving.server import established_connections, uvicorn_workers

#: Seconds to wait before a phase for every worker to answer (a restarted one loads its model).
READY_SECONDS = 60.0
#: What uvicorn's supervisor logs when a worker exits and it starts a replacement.
RESTART_LINE = "Child process ["
RESTART_WORDS = "] died"


def wait_until_serving(process: subprocess.Popen, port: int, timeout: float) -> subprocess.Popen:
    """``process`` once its /healthz on ``port`` answers with a model; killed, and an error
    with the end of its stderr (when piped), if it exits first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stderr.read()[-2000:] if process.stderr else ""
            raise RuntimeError(
                f"the server exited with status {process.returncode}"
                + (f": {said}" if said else "")
            )
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
            if health.get("model_version"):
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not come up in {timeout:g} s")


def connections_per_worker(
    pids: list[int], port: int, stop: threading.Event
) -> tuple[list[int], list[int]]:
    """Established connections each worker in ``pids`` holds, sampled each 0.5 s until
    ``stop``: the first and the last of the samples with the most connections in all (a
    burst of keep-alive connections is shared out by the kernel; uneven and left so, one
    worker answers most of a phase; the workers even it out by shedding connections).
    Processes other than uvicorn's workers (multiprocessing's resource tracker) are left out."""
    pids = uvicorn_workers(pids)
    first: dict[int, int] = {}
    best: dict[int, int] = {}
    while not stop.wait(0.5):
        counts = established_connections(pids, port)
        if sum(counts.values()) > sum(first.values()):
            first = counts
        if sum(counts.values()) >= sum(best.values()):
            best = counts
    return [first.get(pid, 0) for pid in pids], [best.get(pid, 0) for pid in pids]


def answer(probe: socket.socket, path: str = "/healthz") -> tuple[bytes, bytes]:
    """``path`` asked on the keep-alive connection ``probe``: the answer's head and its whole
    body (``ConnectionError`` if the server closes first)."""
    probe.sendall(f"GET {path} HTTP/1.1\r\nHost: load\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = probe.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length:
        chunk = probe.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-answer")
        body += chunk
    return head, body


def answering_workers(
    server_pid: int, port: int, workers: int, timeout: float
) -> tuple[list[int], set[int], bool]:
    """``(process tree, workers that answered, ready)``: ready once each of the server's
    ``workers`` uvicorn workers holds an established connection or has answered one of the
    probes sent meanwhile (one a fresh connection, hashed by the kernel to either worker);
    not ready after ``timeout`` s or once the server is gone."""
    deadline = time.monotonic() + timeout
    answered: set[int] = set()
    while True:
        pids = process_tree(server_pid)
        current = uvicorn_workers(pids[1:])
        answered &= set(current)  # a worker gone meanwhile counts no more
        if len(current) >= workers and answered >= set(current):
            return pids, answered, True
        if time.monotonic() > deadline or not process_alive(server_pid, unknown=True):
            return pids, answered, False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                answer(probe)
                counts = established_connections(current, port)
                answered |= {pid for pid, held in counts.items() if held}
        except OSError:
            time.sleep(0.2)


def workers_ready(
    server_pid: int, port: int, workers: int, timeout: float = READY_SECONDS
) -> list[int]:
    """The server's process tree once each of its ``workers`` uvicorn workers has answered
    (:func:`answering_workers`); after ``timeout`` s a warning and the tree as it is. With
    one worker (no supervisor) the tree at once."""
    if workers <= 1:
        return process_tree(server_pid)
    pids, answered, ready = answering_workers(server_pid, port, workers, timeout)
    if not ready:
        why = (
            f"in {timeout:g} s"
            if process_alive(server_pid, unknown=True)
            else "before the server exited"
        )
        print(
            f"warning: {len(answered)} of {workers} workers answered {why}; "
            "the phase starts anyway",
            flush=True,
        )
    return pids


def restarts(stderr: Path) -> list[str]:
    """The lines of the server's ``stderr`` saying uvicorn found a worker dead (and started
    another in its place)."""
    try:
        text = stderr.read_text(errors="replace")
    except OSError:
        return []
    return [
        line.strip() for line in text.splitlines() if RESTART_LINE in line and RESTART_WORDS in line
    ]


def stderr_tail(stderr: Path, chars: int = 2000) -> str:
    """The last ``chars`` of the server's ``stderr`` file: what it said before a run failed."""
    try:
        return stderr.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(unreadable: {exc})"
