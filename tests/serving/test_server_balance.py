"""The workers of ``run(workers=2)`` even out their keep-alive connections
(:mod:`recgraph.serving.balance`): connections opened unevenly on purpose end within the
slack of even, every request answered whole, the ones shed told ``Connection: close``."""

import math
import mmap
import os
import socket
import time

import pytest

from recgraph.serving.balance import (
    FIELDS,
    SLACK,
    ConnectionTable,
    WorkerShare,
)
from recgraph.serving.server import SPREAD_CONNECTIONS, established_connections
from tests.serving.test_server_workers import _answer, serving_two_workers

pytestmark = pytest.mark.skipif(not SPREAD_CONNECTIONS, reason="SO_REUSEPORT spreading is Linux's")

#: Connections kept on the first worker and on the second, before any request.
HEAVY, LIGHT = 30, 4


def _uneven(port: int, workers: list[int]) -> tuple[list[socket.socket], dict[int, int]]:
    """:data:`HEAVY` connections held by ``workers[0]`` and :data:`LIGHT` by ``workers[1]``,
    opened one at a time and kept or closed by where the kernel put them (no request yet)."""
    kept: list[socket.socket] = []
    held = {pid: 0 for pid in workers}
    want = {workers[0]: HEAVY, workers[1]: LIGHT}
    deadline = time.monotonic() + 60
    while held != want:
        assert time.monotonic() < deadline, f"could not open {want} connections: {held}"
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        while True:  # until a worker has accepted it
            counts = established_connections(workers, port)
            if sum(counts.values()) > sum(held.values()):
                break
            time.sleep(0.01)
        taker = next(pid for pid in workers if counts[pid] > held[pid])
        if held[taker] < want[taker]:
            kept.append(client)
            held[taker] += 1
            continue
        client.close()
        while sum(established_connections(workers, port).values()) > sum(held.values()):
            time.sleep(0.01)
    return kept, held


def _rounds(port: int, clients: list[socket.socket], rounds: int) -> tuple[int, list[bytes]]:
    """Each client asks ``/healthz`` once a round; one told to close is replaced by a new
    connection. ``(connections shed, every answer's status line)``."""
    shed, statuses = 0, []
    for _ in range(rounds):
        for k, client in enumerate(clients):
            head, body = _answer(client)
            statuses.append(head.split(b"\r\n")[0])
            assert body.startswith(b"{") and body.endswith(b"}"), body  # answered whole
            if b"\r\nconnection: close" in head.lower():
                assert client.recv(10) == b""  # then closed by the server
                client.close()
                clients[k] = socket.create_connection(("127.0.0.1", port), timeout=30)
                shed += 1
    return shed, statuses


def _settled(port: int, workers: list[int], total: int) -> dict[int, int]:
    deadline = time.monotonic() + 10
    counts = established_connections(workers, port)
    while sum(counts.values()) != total and time.monotonic() < deadline:
        time.sleep(0.02)
        counts = established_connections(workers, port)
    return counts


def test_connections_opened_unevenly_are_evened_out_every_answer_whole(tmp_path):
    with serving_two_workers(tmp_path) as (_, port, workers):
        clients, held = _uneven(port, workers)
        try:
            shed, statuses = _rounds(port, clients, rounds=25)
            counts = _settled(port, workers, HEAVY + LIGHT)
        finally:
            for client in clients:
                client.close()
    assert held == {workers[0]: HEAVY, workers[1]: LIGHT}
    assert all(status.endswith(b"200 OK") for status in statuses)
    assert shed >= HEAVY - (HEAVY + LIGHT) // 2 - SLACK, shed  # at least the excess, once
    assert sum(counts.values()) == HEAVY + LIGHT, counts
    assert max(counts.values()) <= math.ceil((HEAVY + LIGHT) / 2) + SLACK, counts


def test_turned_off_the_connections_stay_where_the_kernel_put_them(tmp_path):
    with serving_two_workers(tmp_path, RECGRAPH_BALANCE_CONNECTIONS="0") as (_, port, workers):
        clients, _ = _uneven(port, workers)
        try:
            shed, _ = _rounds(port, clients, rounds=3)
            counts = established_connections(workers, port)
        finally:
            for client in clients:
                client.close()
    assert shed == 0
    assert counts == {workers[0]: HEAVY, workers[1]: LIGHT}


def _share(table: ConnectionTable, slot: int) -> WorkerShare:
    """A worker's view of ``table`` in this process (as a spawned worker attaches)."""
    fd = os.dup(table.fd)
    try:
        return WorkerShare(mmap.mmap(fd, table.slots * FIELDS * 4), table.slots, slot)
    finally:
        os.close(fd)


def test_only_a_worker_above_its_share_sheds_and_only_among_listening_workers():
    table = ConnectionTable(2)
    try:
        first, second = _share(table, 0), _share(table, 1)
        first.listening(True)
        first.opened(40)
        assert not first.over_share(40)  # alone listening: a shed connection comes back
        second.listening(True)
        second.opened(24)
        assert first.over_share(40) and not second.over_share(24)  # 40 > 32 + 1
        first.shedding = 7  # told to close, not closed yet: 33 left
        assert not first.over_share(40)
        first.shedding = 0
        first.opened(33)  # the 7 closed, and come back to the second
        second.opened(31)
        assert not first.over_share(33) and not second.over_share(31)  # 33 <= 32 + 1
        second.listening(False)  # stopping: counted out, its connections too
        assert not first.over_share(33)
        assert table.values[1 * FIELDS + 2] == 0
    finally:
        table.close()


def test_a_replacement_worker_gets_the_slot_of_one_gone():
    table = ConnectionTable(1)  # two slots
    try:
        assert [table._free_slot(), table._free_slot()] == [0, 1]
        table.values[0 * FIELDS] = os.getpid()  # alive
        table.values[1 * FIELDS] = 2**31 - 1  # no such process
        assert table._free_slot() == 1
    finally:
        table.close()


class _Transport:
    """What uvicorn's protocol writes to and closes."""

    def __init__(self) -> None:
        self.written, self.closed = b"", False

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.mark.parametrize("kind", ["httptools", "h11"])
def test_a_worker_above_its_share_marks_the_next_answer_close_unless_a_request_queues_behind(
    kind,
):
    """The answer is whole, says ``Connection: close``, then the connection closes; a
    request pipelined behind one not yet answered takes the mark back (httptools; h11 reads
    no request before the answer)."""
    import asyncio

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from recgraph.serving.balance import balanced_protocol

    table = ConnectionTable(2)
    heavy, light = _share(table, 0), _share(table, 1)
    heavy.listening(True)
    light.listening(True)
    light.opened(4)
    go = None

    async def app(scope, receive, send):
        await go.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def served(pipelined: bool) -> _Transport:
        nonlocal go
        go = asyncio.Event()
        config = Config(app=app, http=kind, lifespan="off")
        config.load()
        protocol_class = balanced_protocol(config.http_protocol_class, heavy)
        state = ServerState()
        for _ in range(19):  # 20 with this one, against 4: over ceil(24 / 2) + 1
            state.connections.add(object())
        protocol = protocol_class(config=config, server_state=state, app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(GET)
        if pipelined:
            protocol.data_received(GET)
        go.set()
        for _ in range(50):
            await asyncio.sleep(0.01)
        return transport

    try:
        shed = asyncio.run(served(pipelined=False))
        assert shed.written.count(b"HTTP/1.1 200 OK") == 1 and shed.written.endswith(b"{}")
        assert b"connection: close" in shed.written.lower() and shed.closed
        assert heavy.shedding == 1 and heavy.shed == 1
        if kind == "httptools":
            kept = asyncio.run(served(pipelined=True))
            assert kept.written.count(b"HTTP/1.1 200 OK") == 2
            assert b"connection: close" not in kept.written.lower() and not kept.closed
            assert heavy.shedding == 1 and heavy.shed == 2  # marked, then taken back
    finally:
        table.close()
