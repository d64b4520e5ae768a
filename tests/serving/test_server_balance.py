"""The workers of ``run(workers=2)`` even out their keep-alive connections
(:mod:`recgraph.serving.balance`): connections opened unevenly on purpose end within the
slack of even, every request answered whole, the ones shed told ``Connection: close``."""

import copy
import errno
import logging
import math
import mmap
import os
import socket
import subprocess
import sys
import time
from multiprocessing.context import set_spawning_popen

import pytest

from recgraph.serving.balance import (
    _OPEN,
    FIELDS,
    PEAK_SECONDS,
    SLACK,
    TAKE_SECONDS,
    ConnectionTable,
    WorkerShare,
)
from recgraph.serving.server import SPREAD_CONNECTIONS, established_connections
from tests.serving.test_server_workers import load_workers, serving_two_workers

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
            head, body = load_workers.answer(client)
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
        assert not first.over_share()  # alone listening: a shed connection comes back
        second.listening(True)
        second.opened(24)
        assert first.over_share() and not second.over_share()  # 40 > 32 + 1
        first.shedding = 7  # told to close, not closed yet: 33 left
        assert not first.over_share()
        first.shedding = 0
        first.opened(33)  # the 7 closed, and come back to the second
        second.opened(31)
        assert not first.over_share() and not second.over_share()  # 33 <= 32 + 1
        second.listening(False)  # stopping: counted out, its connections too
        assert not first.over_share()
        assert table.values[1 * FIELDS + _OPEN] == 0
    finally:
        table.close()


class _Clock:
    """``time`` as :mod:`recgraph.serving.balance` reads it, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_connections_shed_and_reconnecting_do_not_lower_the_share_until_peak_seconds(
    monkeypatch,
):
    """40/24 sheds 7; while they reconnect the bare total is 57 (share 29 + 1 < 33): counted
    from it, both halves of the split would shed more. A total that stays low counts once
    :data:`PEAK_SECONDS` have passed."""
    from recgraph.serving import balance

    clock = _Clock()
    monkeypatch.setattr(balance, "time", clock)
    table = ConnectionTable(2)
    try:
        first, second = _share(table, 0), _share(table, 1)
        first.listening(True)
        second.listening(True)
        first.opened(40)
        second.opened(24)
        assert first.over_share()
        first.opened(33)  # the 7 shed closed, none connected again yet
        clock.now += PEAK_SECONDS / 2
        assert not first.over_share()  # 33 <= ceil(64 / 2) + 1, not ceil(57 / 2) + 1
        second.opened(27)  # 3 came back to the second: 60
        assert not first.over_share() and not second.over_share()
        clock.now += PEAK_SECONDS  # the other 4 never came back
        assert first.over_share()  # 33 > ceil(60 / 2) + 1
    finally:
        table.close()


def test_the_recent_peak_is_the_largest_total_of_the_last_peak_seconds():
    table = ConnectionTable(1)
    try:
        share = _share(table, 0)
        seen = [
            share._recent_peak(at * PEAK_SECONDS, total)
            for at, total in [(0.0, 64), (0.3, 60), (0.6, 62), (0.9, 58), (1.2, 57), (1.7, 57)]
        ]
        # 64 until PEAK_SECONDS after it; then 62 (seen at 0.6) until 1.6; then 58 (0.9)
        assert seen == [64, 64, 64, 64, 62, 58]
        assert share._recent_peak(1.8 * PEAK_SECONDS, 70) == 70  # a higher total at once
    finally:
        table.close()


def _gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_replacement_worker_gets_the_slot_of_one_gone():
    table = ConnectionTable(1)  # two slots
    try:
        assert [table._free_slot(), table._free_slot()] == [0, 1]
        table.values[0 * FIELDS] = os.getpid()  # alive
        table.values[1 * FIELDS] = 2**31 - 1  # no such process
        assert table._free_slot() == 1
    finally:
        table.close()


def test_a_killed_workers_slot_is_cleared_and_reused_before_one_never_given():
    """A worker killed outright leaves its slot listening with its figures: the next spawn
    clears every such slot and takes one of them, not a slot never given."""
    table = ConnectionTable(2)  # four slots
    try:
        killed, kept = _share(table, table._free_slot()), _share(table, table._free_slot())
        killed.values[killed.base] = _gone_pid()
        killed.listening(True)
        killed.opened(5)
        kept.listening(True)
        kept.opened(7)
        assert table._free_slot() == 0
        assert list(table.values[0:FIELDS]) == [-1, 0, 0]  # cleared, given
        assert list(table.values[FIELDS : 2 * FIELDS]) == [os.getpid(), 1, 7]  # untouched
    finally:
        table.close()


def test_a_slot_whose_worker_is_gone_is_not_counted_so_an_even_split_sheds_nothing():
    """32/32 between two live workers, a killed worker's slot still saying listening with 0
    connections: counted, the share would be ceil(64 / 3) + 1 and both would shed."""
    table = ConnectionTable(2)
    try:
        killed, first, second = _share(table, 0), _share(table, 1), _share(table, 2)
        killed.values[killed.base] = _gone_pid()
        for share in (killed, first, second):
            share.listening(True)
        first.opened(32)
        second.opened(32)
        assert not first.over_share() and not second.over_share()
        first.opened(40)
        assert first.over_share()  # still sheds above its share among the two alive
    finally:
        table.close()


def test_a_slot_given_but_never_taken_is_free_again_after_a_while():
    table = ConnectionTable(1)  # two slots
    try:
        with _spawning():
            table.__reduce__(), table.__reduce__()  # two spawns, neither attached (died)
        assert table._free_slot() is None  # both may still be starting
        table._given_at = {slot: at - TAKE_SECONDS for slot, at in table._given_at.items()}
        assert table._free_slot() == 0
    finally:
        table.close()


def test_with_no_free_slot_a_new_worker_is_left_out_never_sharing_one(caplog):
    table = ConnectionTable(1)  # two slots, both held by live workers
    try:
        for slot in (table._free_slot(), table._free_slot()):
            share = _share(table, slot)
            share.listening(True)
            share.opened(3)
        before = list(table.values)
        with _spawning(), caplog.at_level(logging.WARNING, "recgraph.serving"):
            assert copy.copy(table) is None  # the worker's config carries no share
        assert list(table.values) == before
        assert "left out" in caplog.text
    finally:
        table.close()


def test_copied_outside_a_spawn_the_table_uses_no_slot():
    table = ConnectionTable(1)
    try:
        assert copy.deepcopy(table) is None
        assert table._given == 0 and list(table.values) == [0] * (2 * FIELDS)
    finally:
        table.close()


class _Spawning:
    """What multiprocessing's spawning ``Popen`` lends a pickled descriptor."""

    def DupFd(self, fd: int) -> object:  # noqa: N802 (multiprocessing's name)
        return fd

    def duplicate_for_child(self, fd: int) -> int:
        return fd


class _spawning:  # noqa: N801
    """Within: pickling as into a worker being spawned."""

    def __enter__(self) -> None:
        set_spawning_popen(_Spawning())

    def __exit__(self, *exc: object) -> None:
        set_spawning_popen(None)


def test_serve_goes_on_without_balancing_when_no_memfd_can_be_made(monkeypatch, caplog, tmp_path):
    from uvicorn.supervisors import Multiprocess

    from recgraph.serving import server
    from recgraph.settings import Settings

    def no_memfd(*args, **kwargs):
        raise OSError(errno.ENOSYS, "Function not implemented")

    ran = []
    monkeypatch.setattr(os, "memfd_create", no_memfd)
    monkeypatch.setattr(Multiprocess, "run", lambda self: ran.append(self.config))
    settings = Settings(
        registry=str(tmp_path / "models"), database_url=f"sqlite:///{tmp_path / 'r.db'}", port=0
    )
    with caplog.at_level(logging.WARNING, "recgraph.serving"):
        server.run(settings, workers=2, sock=server.reserve_port("127.0.0.1", 0))
    assert len(ran) == 1 and ran[0].connection_share is None
    assert "without evening out connections" in caplog.text


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
    request pipelined behind one not yet answered takes the mark back. h11's protocol
    reads no request before the answer (too late to take a mark back): it never marks."""
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
        if kind == "h11":  # never marked: a request pipelined behind could not take it back
            assert b"connection: close" not in shed.written.lower() and not shed.closed
            assert heavy.shedding == 0 and heavy.shed == 0
            return
        assert b"connection: close" in shed.written.lower() and shed.closed
        assert heavy.shedding == 1 and heavy.shed == 1
        kept = asyncio.run(served(pipelined=True))
        assert kept.written.count(b"HTTP/1.1 200 OK") == 2
        assert b"connection: close" not in kept.written.lower() and not kept.closed
        assert heavy.shedding == 1 and heavy.shed == 2  # marked, then taken back
    finally:
        table.close()
