"""Evening out the keep-alive connections of a server's workers (``--workers N``, Linux).

Each worker listens on its own ``SO_REUSEPORT`` socket (:mod:`recgraph.serving.server`),
so the kernel hashes every new connection to one of them; 64 long-lived keep-alive
connections then split like coin tosses (measured 27/37, 26/38, 43/21, 23/41), and
they never move: the busier worker carries up to two thirds of the load for as long
as they stay open. So the workers share a small table of how many connections each
holds, and a worker that holds more than its fair share plus :data:`SLACK`
(``ceil(total / live workers) + 1``) answers the next request on one of its
connections with ``Connection: close``. The client reconnects and the kernel hashes
the new connection again; over a few rounds the split converges to even. The total is the
largest seen in the last :data:`PEAK_SECONDS`: a connection shed and not yet connected
again is held by no worker, and shares taken from the dipped total made both workers shed
past the excess (measured 1.7-4.1 times it; about 2 times is unavoidable, since half the
new connections hash back to the worker that shed them).

Only a request's own response is marked, never an idle connection closed (a request
sent meanwhile would be lost). A request pipelined behind the marked one before its
response has started takes the mark back (both are answered, the connection stays); one
pipelined after the marked response has started is not answered: the connection closes
after the marked response, as HTTP/1.1 allows (RFC 9112 9.3.2: a client retries the
pipelined requests not answered). Only httptools' protocol marks (uvicorn's default when
httptools is installed); h11's reads a pipelined request only after the answer, too late
to take a mark back, so a worker on h11 counts its connections but never sheds one.

A worker not yet listening (loading its model) or stopping counts for nothing, so nobody
sheds connections that could only come back to itself; nor does a slot whose worker is
gone (killed outright: its figures stay in the table), which each worker looks for at
most once every :data:`RECHECK_SECONDS`, and the parent clears on the next spawn.

The table: :data:`FIELDS` 32-bit integers a slot (the worker's pid, whether it
listens, its open connections), written by its own worker alone (and cleared by the
parent once that worker is gone), in an anonymous ``memfd`` the parent makes and each
spawned worker gets a copy of the descriptor of (nothing named to clean up, freed with
the last process). The parent gives each worker a slot as it pickles the config into it:
first one whose worker is gone, cleared (uvicorn restarts a dead worker, or, on
``SIGHUP``, starts each replacement before it stops the old one: :data:`SLOTS_PER_WORKER`
slots a worker), else one never given. A slot given but not taken after
:data:`TAKE_SECONDS` counts as gone (that spawn died before attaching). With no slot free
the new worker is left out of balancing (a warning): a slot is never shared.
"""

from __future__ import annotations

import logging
import mmap
import os
import time
from collections import deque
from multiprocessing.context import get_spawning_popen
from typing import Any

from recgraph.serving.processes import process_alive

log = logging.getLogger("recgraph.serving")

#: Connections a worker may hold above its even share (``ceil(total / workers)``)
#: before it sheds one.
SLACK = 1
#: Integers a slot: the worker's pid (``-1``: given, not yet taken), listening (0/1), open
#: connections.
FIELDS = 3
_PID, _LIVE, _OPEN = range(FIELDS)
#: Slots a worker: room for uvicorn's replacements started before the old ones stop.
SLOTS_PER_WORKER = 2
#: Seconds a worker looks again which slots' workers are gone (their figures not counted).
RECHECK_SECONDS = 1.0
#: Seconds a total of connections counts for the share after it was seen: a connection shed
#: and not yet connected again is held by no worker, so the bare total dips (64 -> 60 while
#: four reconnect) and a share taken from it would shed more than the excess, on both workers.
PEAK_SECONDS = 1.0
#: Seconds a slot given to a spawning worker stays its own before the worker takes it (a
#: worker attaches as it unpickles its config, before importing the app).
TAKE_SECONDS = 120.0


class ConnectionTable:
    """The parent's table; pickled into a worker (by uvicorn's spawning) it is that worker's
    :class:`WorkerShare`, with a slot of its own."""

    def __init__(self, workers: int) -> None:
        self.slots = SLOTS_PER_WORKER * workers
        self.fd = os.memfd_create("recgraph-connections", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, self.slots * FIELDS * 4)
            self._map = mmap.mmap(self.fd, self.slots * FIELDS * 4)
        except OSError:
            os.close(self.fd)
            raise
        self.values = memoryview(self._map).cast("i")
        self._given = 0
        #: When each slot given and not yet taken (pid ``-1``) was given (``time.monotonic``).
        self._given_at: dict[int, float] = {}

    def _free_slot(self) -> int | None:
        """A slot for a worker about to be spawned (marked given, pid ``-1``): every slot whose
        worker is gone cleared first and the first of them given, else one never given;
        ``None`` when none is free."""
        values, now, free = self.values, time.monotonic(), None
        for slot in range(self._given):
            base = slot * FIELDS
            pid = values[base + _PID]
            if pid == -1 and now - self._given_at[slot] < TAKE_SECONDS:
                continue  # given to a worker still starting
            if pid == -1 or not process_alive(pid, unknown=False):
                values[base + _LIVE], values[base + _OPEN] = 0, 0
                if free is None:
                    free = slot
        if free is None and self._given < self.slots:
            free = self._given
            self._given += 1
        if free is not None:
            self._given_at[free] = now
            base = free * FIELDS
            values[base + _PID], values[base + _LIVE], values[base + _OPEN] = -1, 0, 0
        return free

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from multiprocessing.reduction import DupFd

        if get_spawning_popen() is None:  # not into a spawned worker: a copy without a slot
            return (_unbalanced, ("the config was copied outside a worker's spawning",))
        slot = self._free_slot()
        if slot is None:
            log.warning(
                "no free slot among %d in the connection table: this worker is left out "
                "of evening out connections",
                self.slots,
            )
            return (_unbalanced, ("no free slot",))
        return (_attach, (DupFd(self.fd), self.slots, slot))

    def close(self) -> None:
        self.values.release()
        self._map.close()
        os.close(self.fd)


def _unbalanced(why: str) -> None:
    """What a :class:`ConnectionTable` unpickles to without a slot: no share (``why``)."""
    log.debug("no share of the connection table: %s", why)
    return None


def _attach(dup: Any, slots: int, slot: int) -> WorkerShare:
    fd = dup.detach()
    share = WorkerShare(mmap.mmap(fd, slots * FIELDS * 4), slots, slot)
    os.close(fd)
    return share


class WorkerShare:
    """A worker's view of the table: its own slot to write, everyone's to read."""

    def __init__(self, shared: mmap.mmap, slots: int, slot: int) -> None:
        self._map = shared
        self.values = memoryview(shared).cast("i")
        self.slots = slots
        self.base = slot * FIELDS
        self.values[self.base + _PID] = os.getpid()
        #: Connections told to close and not closed yet.
        self.shedding = 0
        #: Connections this worker has told to close since it started.
        self.shed = 0
        #: Slots whose worker is gone (not counted), as found at ``_checked``
        #: (``time.monotonic``): the offset of their listening field to the pid found there.
        self._gone: dict[int, int] = {}
        self._checked = float("-inf")
        #: Totals seen in the last :data:`PEAK_SECONDS` that no later one reached:
        #: ``(time.monotonic, total)``, the oldest (largest) first.
        self._peaks: deque[tuple[float, int]] = deque()

    def listening(self, live: bool) -> None:
        """Count this worker in (it accepts connections) or out (it stops)."""
        if not live:
            self.values[self.base + _OPEN] = 0
        self.values[self.base + _LIVE] = int(live)

    def opened(self, count: int) -> None:
        """This worker's open connections are now ``count``."""
        self.values[self.base + _OPEN] = count

    def over_share(self) -> bool:
        """Whether this worker, holding the connections it last counted (:meth:`opened`;
        those told to close among them), should tell one more to close."""
        values, total, live = self.values, 0, 0
        mine = self.base + _LIVE
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            self._checked = now
            self._gone = {
                at: values[at - _LIVE + _PID]
                for at in range(_LIVE, self.slots * FIELDS, FIELDS)
                if at != mine
                and values[at]
                and not process_alive(values[at - _LIVE + _PID], unknown=False)
            }
        gone = self._gone
        for at in range(_LIVE, self.slots * FIELDS, FIELDS):
            # (a slot found gone but since given again to a new worker counts)
            if values[at] and gone.get(at) != values[at - _LIVE + _PID]:
                live += 1
                total += values[at + 1]
        total = self._recent_peak(now, total)
        held = values[self.base + _OPEN]
        return live > 1 and held - self.shedding > -(-total // live) + SLACK

    def _recent_peak(self, now: float, total: int) -> int:
        """The largest total seen in the last :data:`PEAK_SECONDS`, ``total`` (seen ``now``)
        included: the share is not lowered by connections shed and still reconnecting; one
        closed for good stops counting after :data:`PEAK_SECONDS`."""
        peaks = self._peaks
        while peaks and peaks[-1][1] <= total:
            peaks.pop()
        peaks.append((now, total))
        while now - peaks[0][0] > PEAK_SECONDS:
            peaks.popleft()
        return peaks[0][1]


def balanced_protocol(base: type, share: WorkerShare) -> type:
    """uvicorn's HTTP protocol class ``base`` (httptools' or h11's), counting this worker's
    connections into ``share`` and (httptools' only) marking a response
    ``Connection: close`` while the worker holds more than its share."""
    marks = _is_httptools(base)

    class Balanced(base):  # type: ignore[valid-type, misc]
        _shed_cycle: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            share.opened(len(self.connections))

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            share.opened(len(self.connections))
            if self._shed_cycle is not None:
                self._shed_cycle = None
                share.shedding -= 1

        def shutdown(self) -> None:
            share.listening(False)  # the server stops: its socket no longer listens
            super().shutdown()

        if marks:  # (h11's reads no request behind an answer: never marked, nothing to add)

            def data_received(self, data: bytes) -> None:
                cycle = self.cycle
                super().data_received(data)
                if self.cycle is cycle:  # no new request
                    return
                shed = self._shed_cycle
                if shed is not None:
                    if not shed.response_started:
                        # a request queued behind the marked one: answer it too (taken back)
                        shed.keep_alive = True
                        self._shed_cycle = None
                        share.shedding -= 1
                    return
                if self.cycle.keep_alive and not self.pipeline and share.over_share():
                    # httptools' protocol says "connection: close" and closes after the answer
                    self.cycle.keep_alive = False
                    self._shed_cycle = self.cycle
                    share.shedding += 1
                    share.shed += 1

    Balanced.__name__ = Balanced.__qualname__ = f"Balanced{base.__name__}"
    return Balanced


def _is_httptools(base: type) -> bool:
    """Whether ``base`` is uvicorn's httptools protocol (it reads a pipelined request while
    the one before is answered, so a mark can be taken back)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: uvicorn's protocol is h11's
        return False
    return issubclass(base, HttpToolsProtocol)


def listening_lifespan(base: type, share: WorkerShare) -> type:
    """uvicorn's lifespan class ``base``, counting the worker in once its app has started
    (uvicorn then makes its socket listen) and out when it stops."""

    class Listening(base):  # type: ignore[valid-type, misc]
        async def startup(self) -> None:
            await super().startup()
            if not self.should_exit:
                share.listening(True)

        async def shutdown(self) -> None:
            share.listening(False)  # (uvicorn has closed the socket by now)
            log.debug("this worker told %d connections to close", share.shed)
            await super().shutdown()

    Listening.__name__ = Listening.__qualname__ = f"Listening{base.__name__}"
    return Listening
