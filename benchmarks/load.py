"""Load on the HTTP API over loopback: throughput and latency of suggestions and feed.

For each dataset the real flow runs: import into a SQLite store, ``train_pipeline``
(the shipped default pipeline) into a fresh registry, then ``recgraph serve``
in its own process on 127.0.0.1. An open-loop generator (plain asyncio HTTP/1.1 on uvloop, 64 keep-alive connections) sends
requests at a fixed rate, whether or not earlier ones have answered, so a slow
server shows as latency instead of hiding behind a lower send rate:

- ``ego-Facebook``: ``GET /v1/accounts/{id}/suggestions?k=10`` (who to follow);
- ``MovieLens 100k``: ``GET /v1/users/{id}/feed?k=10`` (what to read);

each in two phases: ``steady`` and ``reload`` (the same load while a new
version is published and promoted halfway through, by a process of its own as
a training job would; the server polls the registry every 0.5 s, loads the new
version beside the old one and swaps).
5% of the users asked for are unknown (the cold-start fallback).

The ``ranked`` cases serve a two-stage pipeline instead of the shipped
default: two retrievers propose 250 candidates each and a LightGBM LambdaRank
ranker (``gbdt_ranker``, trained at ``train_pipeline`` on label slices of the
data) orders their union, about 300 candidates per request (the mean pool
size is measured and saved). The ranker is forced on (``min_gain = -1``) so
that every known user's request is ranked, whatever validation said.

The server runs ``--workers`` processes (default 1; each loads
the model and polls the registry on its own). Bounded: ``--rate`` requests/s for ``--seconds`` per phase (default 200 x 15 s
= 3,000 requests a phase), a 10 s timeout per request counted from when it was
due (queued for a free connection or sent), and the server is stopped at the
end. Latency is measured from the moment a request was due (or sent, when a
timer fired a little early) to its response. Target on a 2-core machine: p99 < 20 ms at 200 requests/s,
zero errors, reload included. Beside it, what a loaded machine does not
distort as it does wall-clock latency: the server's CPU milliseconds per
answered request in each phase (all its processes, from /proc, as
``scale.py`` reads them; HTTP, the store's reads and JSON included), the
CPU milliseconds a request costs in process (``recommend``, and ``answer``
with its reasons, for users whose walks are not cached yet), and the load
average around each phase.

The in-process figures are taken before the server starts, one thread alone
with the cores; the server's are taken while its workers, the load generator
and whatever else runs share them, which alone makes a millisecond of work
cost more CPU time. What the service adds to the model, measured side by side
in one process (``serving_overhead.py``), is a fraction of a millisecond; the
rest of the gap between the two figures is that contention.

Prints a table and saves ``benchmarks/results/load.json`` and ``load.png``.
Run: ``python benchmarks/load.py`` (needs ../shared/datasets or ``RECGRAPH_DATASETS``).
``--reuse DIR`` keeps each case's store and model in ``DIR`` and serves them again on the
next run, so that two checkouts are compared on one trained model, back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from common import datasets_folder, stop_process, tree_cpu_seconds
from load_publisher import PUBLISH_SECONDS, Publisher
from load_timeline import since_publishes, switches, timeline_for_json
from load_workers import (
    connections_per_worker,
    restarts,
    stderr_tail,
    wait_until_serving,
    workers_ready,
)
from recgraph.data.imports import import_edges, import_movielens
from recgraph.data.store import Store
from recgraph.jobs.train import train_pipeline
from recgraph.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry
from recgraph.serving.server import uvicorn_workers

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
UNKNOWN_SHARE = 0.05
TIMEOUT = 10.0
#: Seconds the server may take, after the reload phase, to serve the last version published.
SWAP_SECONDS = 30.0
#: How an answer spells its version (compact JSON: no space after the colon).
VERSION_KEY = b'"model_version":"'


CASES = [
    {
        "name": "ego-facebook",
        "endpoint": "suggestions",
        "path": "/v1/accounts/{user}/suggestions?k=10",
        "load": lambda store, root: import_edges(
            store, root / "snap-ego-facebook" / "facebook_combined.txt", directed=False
        ),
        "question": "who_to_follow",
    },
    {
        "name": "movielens-100k",
        "endpoint": "feed",
        "path": "/v1/users/{user}/feed?k=10",
        "load": lambda store, root: import_movielens(store, root / "movielens-100k"),
        "question": "feed",
    },
]


#: Two retrievers of 250 candidates each under a ranker: ~300 candidates ranked per request.
RANKED_DEPTH = 250
RANKER = {
    "depth": RANKED_DEPTH,
    "min_gain": -1.0,
    "max_train_users": 2000,
    "params": {"n_threads": 1, "learning_rate": 0.05, "n_estimators": 300},
}
RANKED_FEED = {
    "feed": {
        "retrievers": [{"name": "ease"}, {"name": "item_knn", "min_score": 0.0}],
        "fallback": ["popular"],
        "cold_start_min_interactions": 3,
        "ranker": RANKER,
    },
    "similar": {"retriever": "item_knn"},
}
RANKED_ACCOUNTS = {
    "who_to_follow": {
        "retrievers": [
            {"name": "adamic_adar", "min_score": 0.0},
            {"name": "ppr"},
        ],
        "fallback": ["popular"],
        "ranker": RANKER,
    }
}
CASES += [
    {**CASES[0], "name": "ego-facebook ranked", "pipeline": RANKED_ACCOUNTS},
    {**CASES[1], "name": "movielens-100k ranked", "pipeline": RANKED_FEED},
]


def request_cpu(question, users: list[str], n: int = 200, reasons: bool = False) -> dict:
    """CPU milliseconds of one user's ``recommend`` in this process (no HTTP), p50/p99.

    With ``reasons``: of ``answer``, what the service computes for a request
    (the results with their reasons), HTTP aside.

    CPU time, not wall time: on a machine shared with other jobs it says what
    a request costs, which wall-clock latency under load cannot.
    """
    if reasons:
        ask = [lambda u=u: question.answer(u, 10) for u in users[: n + 10]]
    else:
        ask = [
            lambda i=question.user_index(u): question.recommend([i], 10) for u in users[: n + 10]
        ]
    for call in ask[n:]:  # warm-up on other users: the walks cache each user's row
        call()
    times = []
    for call in ask[:n]:
        start = time.process_time()
        call()
        times.append(1000 * (time.process_time() - start))
    return {
        "p50": round(float(np.percentile(times, 50)), 2),
        "p99": round(float(np.percentile(times, 99)), 2),
        "mean": round(float(np.mean(times)), 2),
    }


def pool_sizes(question, users: list[str]) -> dict:
    """Candidates the ranker orders per request, measured on known users (mean, p10, p90)."""
    index = np.array([question.user_index(u) for u in users[:300]])
    index = index[index >= 0]
    index = index[question.warm(index)]
    if not question.ranked or not len(index):
        return {}
    pool = question.pool(index, question.config.ranker.depth)
    sizes = pool.valid.sum(axis=1)
    return {
        "mean": round(float(sizes.mean()), 1),
        "p10": int(np.percentile(sizes, 10)),
        "p90": int(np.percentile(sizes, 90)),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    registry: str,
    db: str,
    port: int,
    workers: int,
    stderr: Path,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``recgraph serve`` in its own process (environment ``env``, default this one's), its
    stderr written to the file ``stderr`` (a pipe nobody reads would stall a chatty server
    once full); returns once /healthz answers with a model (``timeout`` seconds at most: a
    pipeline of 10^8 follows loads for minutes on a busy machine)."""
    with stderr.open("w") as err:  # (the server has its own copy)
        process = subprocess.Popen(
            [
                sys.executable, "-m", "recgraph.cli.main", "serve", "--registry", registry,
                "--db", db, "--port", str(port), "--token", "bench", "--poll-seconds", "0.5",
                "--workers", str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )  # fmt: skip
    try:
        return wait_until_serving(process, port, timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; its stderr ends: {stderr_tail(stderr)}") from None


def served_version(body: bytes) -> str:
    """An answer's ``model_version``, found without parsing the whole answer."""
    start = body.index(VERSION_KEY) + len(VERSION_KEY)
    return body[start : body.index(b'"', start)].decode()


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the generator, one request at a time.

    Driven by callbacks, not coroutines: the generator shares the cores with the
    server it measures, and a request through asyncio's streams (a queue, a
    ``wait_for`` task, ``drain``, ``readuntil``, ``readexactly``, each asking for
    the running loop, which costs a ``getpid`` system call) cost it 0.20-0.25 CPU
    ms. Here a request is one write, a response one buffer scan per packet and a
    call of ``done``. Answers carry ``Content-Length`` (uvicorn sends no chunked JSON).
    """

    def __init__(self, host: str, done: Callable[[Connection, int, bytes | None], None]) -> None:
        self.host = host
        self.done = done  # (connection, status, body), or (connection, 0, None) when it broke
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.closed = False
        #: The last answer said ``Connection: close`` (the server sheds it): not asked again.
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, path: str) -> None:
        """Ask for ``path``; ``done`` is called with the response."""
        self.busy = True
        self.transport.write(  # type: ignore[union-attr]
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: application/json\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or not self.busy:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        self.closing = b"\r\nconnection: close" in head
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.busy = False
        self.done(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:  # (not closed yet: ``done`` then counts it as closed by the server)
            self.busy = False
            self.done(self, 0, None)
        self.closed = True

    def close(self) -> None:
        self.busy, self.closed = False, True
        if self.transport is not None:
            self.transport.close()


async def open_loop(
    url: str, paths: list[str], rate: float, seconds: float, connections: int = 64
) -> dict:
    """Send ``rate`` requests/s for ``seconds`` over ``connections`` keep-alive connections.

    A plain asyncio HTTP/1.1 client (:class:`Connection`; each request sent by a
    timer callback, no coroutine or timeout timer a request: measured paired with
    the stream client it replaced, 0.30 -> 0.18-0.21 CPU ms a request at 100/s,
    a quarter of it the kernel's loopback TCP). Each request has a due time; a
    request that finds every connection busy waits for the first one free, and
    that wait counts in its latency (open loop: latency is measured from the due
    time, or from the send when the timer fired early: uvloop's clock has
    millisecond resolution). A request not answered within :data:`TIMEOUT`
    seconds of its due time (looked at once a second), sent or still queued for a
    connection, is an error, and a sent one's connection is replaced. A
    connection that cannot be opened again (the server died) is an error of the
    request queued for it. A connection whose answer says ``Connection: close`` (a
    worker evening out its connections) is replaced too, no error: counted in
    ``connections_shed``; whatever is unanswered ``seconds + TIMEOUT + 5`` s
    after the start is an error too, so the run always ends.
    """
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    latencies = np.full(total, np.nan)
    statuses = np.zeros(total, dtype=np.int64)
    versions: dict[str, int] = {}
    answered_by = np.full(total, -1, dtype=np.int64)  # each answer's version, by first seen
    errors: list[str] = []
    idle: deque[Connection] = deque()
    waiting: deque[int] = deque()  # due requests that found no connection free
    asked: dict[Connection, tuple[int, float]] = {}  # request and when it was sent
    accounted = np.zeros(total, dtype=bool)
    finished = loop.create_future()
    answered = 0
    shed = 0  # connections closed by the server after a whole answer that said so

    def due_at(i: int) -> float:
        return start + i / rate

    def account(i: int, status: int, error: str | None, sent: float | None = None) -> None:
        """Request ``i`` over (answered, failed or timed out), once; ends the run at the last."""
        nonlocal answered
        if accounted[i]:
            return
        accounted[i] = True
        # a timer may fire up to ~1 ms early on uvloop: then the latency runs from the send
        latencies[i] = time.perf_counter() - min(due_at(i), sent if sent is not None else due_at(i))
        statuses[i] = status
        if error is not None:
            errors.append(error)
        answered += 1
        if answered == total and not finished.done():
            finished.set_result(None)

    def ask(connection: Connection, i: int) -> None:
        asked[connection] = (i, time.perf_counter())
        connection.send(paths[i % len(paths)])

    def done(connection: Connection, status: int, body: bytes | None) -> None:
        entry = asked.pop(connection, None)
        if entry is None:  # already timed out
            return
        i, sent = entry
        error = None
        try:
            if status == 200:
                version = served_version(body)  # type: ignore[arg-type]
                versions[version] = versions.get(version, 0) + 1
                answered_by[i] = list(versions).index(version)
            elif body is not None:
                error = f"{status}: {body[:200]!r}"
            elif not connection.closed:
                error = "the connection was closed"
            else:
                error = f"no answer in {TIMEOUT:g} s"
        except Exception as exc:  # an answer the generator cannot read is an error, counted
            status, error = 0, f"unreadable answer ({exc!r}): {(body or b'')[:200]!r}"
        account(i, status, error, sent)
        if finished.done():
            connection.close()
        elif body is None:  # closed by the server, or timed out: a new connection takes its place
            loop.create_task(replace(connection))
        else:
            free(connection, status)

    def free(connection: Connection, status: int | None = None) -> None:
        nonlocal shed
        if connection.closing:  # answered with "Connection: close": the server sheds it
            shed += status == 200  # (uvicorn closes after a 4xx/5xx too: not shedding)
            loop.create_task(replace(connection))
        elif connection.closed:  # closed by the server while idle
            loop.create_task(replace(connection))
        elif waiting:
            ask(connection, waiting.popleft())
        else:
            idle.append(connection)

    def timed_out(connection: Connection) -> None:
        connection.close()  # no late response may be read as the next one's (closed: no 2nd error)
        done(connection, 0, None)

    async def replace(connection: Connection) -> None:
        connection.close()
        try:
            fresh = await opened()
        except OSError as exc:  # the server is gone: the request queued first fails now
            if waiting:
                account(waiting.popleft(), 0, f"no connection: {exc!r}")
            if not finished.done():
                await asyncio.sleep(0.1)  # try again, gently (the deadline ends the run)
                loop.create_task(replace(connection))
            return
        if finished.done():
            fresh.close()
        else:
            free(fresh)

    async def opened() -> Connection:
        _, connection = await loop.create_connection(
            lambda: Connection(host, done), host, int(port)
        )
        return connection

    idle.extend(await asyncio.gather(*[opened() for _ in range(connections)]))
    cpu_before = os.times()
    start = time.perf_counter() + 0.2
    start_wall = time.time() + 0.2
    deadline = start + seconds + TIMEOUT + 5.0
    # each request sent by a timer callback that sets the next one (no coroutine a request)
    loop_start = loop.time() + (start - time.perf_counter())

    def due(i: int) -> None:
        while idle and idle[0].closed:  # closed by the server while idle
            loop.create_task(replace(idle.popleft()))
        if idle:
            ask(idle.popleft(), i)
        else:
            waiting.append(i)
        if i + 1 < total:
            loop.call_at(loop_start + (i + 1) / rate, due, i + 1)

    def watch() -> None:
        """Once a second (not a timer a request): requests past TIMEOUT are errors."""
        if finished.done():
            return
        now = time.perf_counter()
        for connection, (i, _) in list(asked.items()):
            if now - due_at(i) > TIMEOUT and connection in asked:
                timed_out(connection)
        while waiting and now - due_at(waiting[0]) > TIMEOUT:
            account(waiting.popleft(), 0, f"no connection free in {TIMEOUT:g} s")
        if now > deadline and not finished.done():  # what is left unanswered is an error
            for connection in list(asked):
                connection.close()
            asked.clear()
            waiting.clear()
            missing = np.flatnonzero(~accounted)
            errors.append(f"{len(missing)} requests unanswered at the run's deadline")
            for i in missing:
                account(int(i), 0, None)
        if not finished.done():
            loop.call_later(1.0, watch)

    if total:
        loop.call_at(loop_start, due, 0)
        watch()
        await finished
    wall = time.perf_counter() - start
    cpu_after = os.times()
    client_user = cpu_after.user - cpu_before.user
    client_system = cpu_after.system - cpu_before.system
    for connection in [*idle, *asked]:
        connection.close()
    ok = statuses == 200
    done_ms = latencies[ok] * 1000
    return {
        "requests": total,
        "ok": int(ok.sum()),
        "errors": int(total - ok.sum()),
        "error_samples": errors[:5],
        "seconds": round(wall, 3),
        "throughput_rps": round(ok.sum() / wall, 1),
        "p50_ms": round(float(np.percentile(done_ms, 50)), 2) if len(done_ms) else None,
        "p90_ms": round(float(np.percentile(done_ms, 90)), 2) if len(done_ms) else None,
        "p99_ms": round(float(np.percentile(done_ms, 99)), 2) if len(done_ms) else None,
        "max_ms": round(float(done_ms.max()), 2) if len(done_ms) else None,
        "versions_seen": versions,
        # closed by the server after an answer with "Connection: close", and replaced
        "connections_shed": shed,
        # this generator's own CPU (all its threads: in the reload phase, the publisher's too)
        "client_cpu_ms_per_request": round(1000 * (client_user + client_system) / max(total, 1), 3),
        # of which in the kernel (loopback TCP: a send delivers to the server's socket too)
        "client_system_ms_per_request": round(1000 * client_system / max(total, 1), 3),
        "latencies_ms": done_ms,
        # the timeline (dropped before saving): every request's latency by due time, its version
        "timeline": {
            "start": start_wall,
            "rate": rate,
            "latency_ms": latencies * 1000,
            "version": [list(versions)[v] if v >= 0 else None for v in answered_by],
        },
    }


def run_loop(coroutine):
    """``coroutine`` run to its end on uvloop (the serve extra's; asyncio's own where it is
    missing): the generator shares the cores with the server, so it should cost it little."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def warm_up(url: str, paths: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        for path in paths[:50]:
            await client.get(path)


def prepared(
    case: dict, root: Path, folder: Path
) -> tuple[Pipeline, str, float | None, float | None]:
    """The case's store and registry in ``folder``: imported and trained now, or, when an
    earlier ``--reuse`` run left them there, its ``v1`` made current again (so that runs of
    two versions of the code serve the same model). ``(pipeline, db, import s, fit s)``."""
    db = f"sqlite:///{folder / 'store.db'}"
    registry = ModelRegistry(folder / "models")
    if folder.exists() and registry.current_version() is not None:
        registry.set_current("v1")
        return Pipeline.load(registry.local_copy("v1") / "model"), db, None, None
    folder.mkdir(parents=True)
    store = Store(db)
    start = time.perf_counter()
    case["load"](store, root)
    imported = time.perf_counter() - start
    trained = train_pipeline(store, registry, case.get("pipeline"))
    store.close()
    return trained.pipeline, db, imported, trained.fit_seconds


def asked(case: dict, question) -> tuple[list[str], list[str]]:
    """2,000 users drawn from the model's (seed 0), and the paths asked for them, with
    :data:`UNKNOWN_SHARE` of them replaced by users the model never saw."""
    rng = np.random.default_rng(0)
    users = [str(u) for u in rng.choice(question.users.ids, size=2000)]
    unknown = [f"unknown-{i}" if rng.random() < UNKNOWN_SHARE else u for i, u in enumerate(users)]
    return users, [case["path"].format(user=u) for u in unknown]


def run_case(
    case: dict,
    root: Path,
    work: Path,
    rate: float,
    seconds: float,
    workers: int,
    publishes: int = 1,
) -> dict:
    name = case["name"]
    folder = work / name.replace(" ", "-")
    pipeline, db, imported, fit_seconds = prepared(case, root, folder)
    registry = ModelRegistry(folder / "models")
    question = pipeline.questions[case["question"]]
    assert question.users is not None
    users, paths = asked(case, question)
    pool = pool_sizes(question, users)
    # users the pool sizes did not walk for (their rows are cached): what a new request costs
    cpu = request_cpu(question, users[300:])
    answer_cpu = request_cpu(question, users[600:], reasons=True)
    how = (
        f"imported in {imported:.1f}s, trained in {fit_seconds:.1f}s"
        if fit_seconds is not None
        else f"trained model reused from {folder}"
    )
    print(
        f"{name}: {how} "
        f"({len(question.users):,} users x {len(question.items or []):,} targets); "
        f"CPU ms per request in process: recommend p50 {cpu['p50']} p99 {cpu['p99']}, "
        f"with reasons p50 {answer_cpu['p50']} p99 {answer_cpu['p99']}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    port = free_port()
    server_stderr = folder / "server.stderr"
    server = start_server(registry.root, db, port, workers, server_stderr)
    url = f"http://127.0.0.1:{port}"
    phases = {}
    try:
        asyncio.run(warm_up(url, paths))
        time.sleep(1.0)  # every worker up (the warm-up may have met only the first)
        asyncio.run(warm_up(url, paths[50:]))

        def measured(run) -> dict:
            """``run()``'s figures with the server's CPU per answered request and the load,
            once every worker is up (a worker restarted by uvicorn loads its model first)."""
            pids = workers_ready(server.pid, port, workers)
            load_before, cpu_before = os.getloadavg()[0], tree_cpu_seconds(pids)
            worker_pids = uvicorn_workers(pids[1:])
            workers_before = [tree_cpu_seconds([pid]) for pid in worker_pids]
            stop, counted = threading.Event(), []
            counter = threading.Thread(
                target=lambda: counted.append(connections_per_worker(pids[1:], port, stop)),
                daemon=True,
            )
            counter.start()
            try:
                result = run()
            finally:
                stop.set()
                counter.join()
            # the first and the last of the samples (0.5 s apart) with the most connections in
            # all (where the kernel put them, but for those shed by then: connections_shed)
            result["connections_per_worker"] = counted[0][1] if counted else None
            result["connections_per_worker_first"] = counted[0][0] if counted else None
            cpu = tree_cpu_seconds(pids) - cpu_before
            # each worker's CPU seconds in the phase: how the requests were shared out
            result["server_cpu_s_per_worker"] = [
                round(tree_cpu_seconds([pid]) - before, 2)
                for pid, before in zip(worker_pids, workers_before, strict=True)
            ]
            result["server_cpu_ms_per_request"] = round(1000 * cpu / max(result["ok"], 1), 2)
            result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            return result

        phases["steady"] = measured(lambda: run_loop(open_loop(url, paths, rate, seconds)))
        # the same load while v2 is published and promoted halfway through, by a process of
        # its own (as a training job does): published from this one, the publish's reads,
        # hashing and writes held this generator's interpreter and delayed its requests
        child = Publisher(registry.root, publishes)
        published: dict = {}
        versions: list[dict] = []
        cancelled = threading.Event()

        def publish_later() -> None:
            began = time.monotonic()
            for k in range(publishes):  # evenly spread: halfway through when only one
                wait = began + seconds * (k + 0.5) / publishes - time.monotonic()
                if cancelled.wait(max(wait, 0.0)):
                    return  # the phase failed before: never publish after it
                published["at"] = time.time()
                try:
                    published["version"] = child.publish()
                except Exception as exc:
                    published["error"] = exc
                    return
                versions.append({"version": published["version"], "at": published["at"]})

        # a daemon: a run that fails never waits for it, and it publishes nothing once
        # cancelled (the child is stopped with it)
        publisher = threading.Thread(target=publish_later, name="load-publisher", daemon=True)
        publisher.start()
        try:
            # (its CPU includes loading the new version in every worker)
            phases["reload"] = measured(lambda: run_loop(open_loop(url, paths, rate, seconds)))
            phase_end = time.monotonic()
            publisher.join(timeout=PUBLISH_SECONDS)
        finally:
            cancelled.set()
            child.close()
        if "error" in published:
            raise RuntimeError(f"the reload phase's publish failed: {published['error']}")
        if "version" not in published:
            raise RuntimeError("the reload phase's publisher did not publish in time")
        phases["reload"]["published"] = {
            "version": published["version"],
            "at": round(published["at"], 3),
        }
        if publishes > 1:
            phases["reload"]["publishes"] = [
                {"version": v["version"], "at": round(v["at"], 3)} for v in versions
            ]
        phases["reload"]["switches"] = switches(
            phases["reload"]["timeline"], [v["version"] for v in versions]
        )
        # by time since each publish: the publisher's work, then each worker's load and swap
        phases["reload"]["since_publish"] = since_publishes(
            phases["reload"]["timeline"], [v["at"] for v in versions]
        )
        stalls = [sw["stall_ms"] for sw in phases["reload"]["switches"]]
        if len(stalls) < publishes:
            print(
                f"warning: {len(stalls)} switches seen in the reload phase for {publishes} "
                "publishes (a version no request saw is missing from the switch figures)"
            )
        if stalls:
            phases["reload"]["switch_stall_ms"] = {
                "median": round(float(np.median(stalls)), 1),
                "max": round(float(np.max(stalls)), 1),
                "over_20ms": int(sum(x > 20 for x in stalls)),
                "switches": len(stalls),
            }
        health = httpx.get(f"{url}/healthz").json()
        late = health["model_version"] != published["version"]
        settle = time.monotonic() + SWAP_SECONDS  # a version published late may still load
        while health["model_version"] != published["version"] and time.monotonic() < settle:
            time.sleep(0.2)
            health = httpx.get(f"{url}/healthz").json()
        phases["reload"]["served_after"] = health["model_version"]
        # how long after the phase's end the last published version was served (0: within it)
        phases["reload"]["served_after_s"] = round(time.monotonic() - phase_end, 2) if late else 0.0
        if health["model_version"] != published["version"]:
            raise RuntimeError(
                f"the server answers with {health['model_version']} after the reload phase, "
                f"not the published {published['version']}"
            )
        metrics = httpx.get(f"{url}/metrics").text
        phases["reload"]["reloads"] = [
            line for line in metrics.splitlines() if line.startswith("recgraph_model_reloads_total")
        ]
    finally:
        stop_process(server, timeout=20)
    # uvicorn's "Child process [pid] died" lines: a worker restarted (it loaded its model
    # again, the phase's figures include that)
    died = restarts(server_stderr)
    if died:
        print(f"warning: {name}: {len(died)} server workers died and were restarted: {died}")
    return {
        "dataset": name,
        "endpoint": case["endpoint"],
        "users": len(question.users),
        "targets": len(question.items or []),
        "retrievers": question.main_keys,
        "fallback": question.chain_keys,
        "ranked": question.ranked,
        "ranker": question.config.ranker.model_dump(mode="json") if question.ranked else None,
        "candidates_ranked_per_request": pool,
        "request_cpu_ms_in_process": cpu,
        "answer_cpu_ms_in_process": answer_cpu,
        "fit_seconds": None if fit_seconds is None else round(fit_seconds, 1),
        "phases": phases,
        "worker_restarts": len(died),
        "worker_restart_lines": died[:20],
        "server_stderr": str(server_stderr),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for phase, data in result["phases"].items():
            values = np.sort(data["latencies_ms"])
            if len(values):
                ax.plot(
                    values,
                    np.linspace(0, 1, len(values)),
                    label=f"{phase} (p99 {data['p99_ms']} ms)",
                )
        ax.axvline(20, color="grey", linestyle="--", linewidth=1, label="20 ms target")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("share of requests")
        ax.set_title(f"{result['dataset']}: {result['endpoint']}")
        ax.legend(loc="lower right")
        ax.grid(True, alpha=0.3)
    fig.suptitle("recgraph API latency, open loop on 127.0.0.1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (recgraph serve --workers)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[case["name"] for case in CASES],
        help="run these cases only; the saved results of the others are kept",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="keep each case's store and trained model in this folder and serve them again "
        "on later runs (A/B runs of two checkouts on one model; the in-process figures "
        "then come from the loaded model)",
    )
    parser.add_argument(
        "--publishes",
        type=int,
        default=1,
        help="versions published in each reload phase, evenly spread (default 1, halfway): "
        "more switches sampled a run, each one's stall reported",
    )
    parser.add_argument(
        "--tag", help="save load.TAG.json and load.TAG.png (the shared load.json is left alone)"
    )
    parser.add_argument(
        "--timeline",
        type=Path,
        help="also write every request's latency and answering version, by due time, to this "
        "JSON file",
    )
    args = parser.parse_args()
    if args.rate * args.seconds > 20_000 or args.seconds > 60:
        sys.exit("keep it bounded: at most 60 s and 20,000 requests a phase")
    root = datasets_folder()
    work = args.reuse or Path(tempfile.mkdtemp(prefix="recgraph-load-"))
    try:
        results = [
            run_case(case, root, work, args.rate, args.seconds, args.workers, args.publishes)
            for case in CASES
            if not args.only or case["name"] in args.only
        ]
    finally:
        if args.reuse is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nopen loop at {args.rate:.0f} requests/s, {args.seconds:.0f} s a phase, 127.0.0.1, "
        f"{args.workers} server process(es)"
    )
    header = (
        f"{'dataset':22} {'endpoint':12} {'phase':7} {'ok':>6} {'errors':>6} {'rps':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU ms/req':>10} {'load avg':>11}  versions"
    )
    print(header)
    for result in results:
        for phase, data in result["phases"].items():
            load = "-".join(f"{x:.1f}" for x in data.get("load_average", []))
            print(
                f"{result['dataset']:22} {result['endpoint']:12} {phase:7} {data['ok']:>6} "
                f"{data['errors']:>6} {data['throughput_rps']:>7} {data['p50_ms']:>7} "
                f"{data['p99_ms']:>7} {data['max_ms']:>7} "
                f"{data.get('server_cpu_ms_per_request', '-'):>10} {load:>11}  "
                f"{data['versions_seen']}"
            )
            if "switch_stall_ms" in data:
                print(f"{'':44}switches: worst latency ms {data['switch_stall_ms']}")
                slices = " ".join(
                    f"{s['from_s']:+g}:{s['p50_ms']:g}/{s['p99_ms']:g}"
                    for s in data["since_publish"]
                )
                print(f"{'':44}since publish (s: p50/p99 ms): {slices}")
            if data.get("connections_per_worker"):
                print(
                    f"{'':44}connections per worker {data['connections_per_worker_first']} -> "
                    f"{data['connections_per_worker']} ({data['connections_shed']} shed), "
                    f"CPU s per worker {data['server_cpu_s_per_worker']}"
                )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"load.{args.tag}" if args.tag else "load"
    png = f"{stem}.png" if args.tag or not args.only else "load_ranked.png"
    plot(results, RESULTS / png)
    timelines = {}
    for result in results:
        for phase, data in result["phases"].items():
            data.pop("latencies_ms")
            timeline = data.pop("timeline")
            timelines[f"{result['dataset']} {phase}"] = timeline_for_json(timeline)
    if args.timeline:
        args.timeline.write_text(json.dumps(timelines, allow_nan=False) + "\n")
    saved = RESULTS / f"{stem}.json"
    if args.only and saved.exists():
        # keep the cases not rerun, in order
        ran = {r["dataset"] for r in results}
        kept = [r for r in json.loads(saved.read_text())["results"] if r["dataset"] not in ran]
        results = kept + results
    payload = {
        "benchmark": "load",
        "rate_rps": args.rate,
        "seconds_per_phase": args.seconds,
        "server_workers": args.workers,
        "publishes_per_reload_phase": args.publishes,
        "client": "plain asyncio HTTP/1.1 on uvloop, 64 keep-alive connections, open loop",
        "unknown_user_share": UNKNOWN_SHARE,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_end": os.getloadavg(),
        "target": "p99 < 20 ms at 200 requests/s, zero errors, during reload too; ranked cases: "
        "the same with ~300 candidates ranked per request",
        "results": results,
    }
    saved.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nsaved {saved} and {RESULTS / png}")


if __name__ == "__main__":
    main()
