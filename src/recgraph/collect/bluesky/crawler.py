"""The Bluesky follow-graph crawler: breadth-first over ``app.bsky.graph.getFollows``.

How it stays correct when things go wrong:

- **One transaction per account.** An account's whole follow list is
  fetched first (``limit=100``, cursor paging), then written in one
  transaction together with marking the account crawled and enqueueing the
  accounts it follows. Kill the process at any moment: either the account
  is done with all its edges, or it is not done and nothing of it was
  written. Edges are keyed ``(source, target)``, so a repeated write never
  doubles one.
- **Leases, not flags.** A worker claims the stalest accounts (never crawled
  first, then shallowest, see :mod:`.state`) with a lease that expires, and
  renews it while it works; leases of a crashed worker run out and the
  accounts are claimed again.
- **Unfollows.** A crawl replaces the account's follow set through
  :meth:`recgraph.data.store.Writer.replace_follows`: edges that are gone get
  ``removed_at``, they are not silently kept.
- **Paging.** It ends when the cursor is absent. A repeated cursor, or an
  empty page that still has a cursor, also ends it, with a warning (a known
  AppView bug); DIDs listed twice are written once.
- **Errors.** Rate limits and retries are the client's
  (:mod:`.client`, :mod:`.ratelimit`). ``400 Actor not found`` marks the
  account ``not_found`` (its stored edges are kept: deactivation can be
  undone) and moves on; any other failure is retried later, and after
  ``max_attempts`` the account is marked ``failed``.

Modes: ``until_done`` exits once every account discovered from the seeds
(within ``max_depth``) has been crawled once; ``stop_when_idle`` exits when
nothing is due (one pass, for the scheduler); otherwise it keeps re-crawling
accounts older than ``recrawl_after_seconds``, stalest first.
``max_accounts`` bounds the accounts one run crawls.

Follows get ``created_at`` = the first time the crawler saw them (the API
does not say when a follow was made) and ``seen_at`` = the latest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from recgraph.collect.bluesky import state
from recgraph.collect.bluesky.client import ActorNotFound, ClientConfig, XrpcClient, XrpcError
from recgraph.collect.bluesky.identity import clean_handle, is_did, resolve_actors
from recgraph.data import schema
from recgraph.data.sql import memory_per_thread
from recgraph.data.store import Store, Writer
from recgraph.errors import ConfigError, InputError
from recgraph.progress import progress_enabled
from recgraph.settings import config_of

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How a follow list's paging ended.
END_COMPLETE = "complete"
END_REPEATED_CURSOR = "repeated_cursor"
END_EMPTY_PAGE = "empty_page"

#: Most accounts one group commit writes.
_GROUP_COMMIT_MAX = 64


class CrawlConfig(BaseModel):
    """What to crawl and how.

    ``seeds`` are handles or DIDs. ``lease_seconds`` is how long a claimed
    account stays reserved without a heartbeat (a crashed worker's accounts
    come back after it). ``recrawl_after_seconds`` is the age at which a
    crawled account is due again (continuous mode).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seeds: list[str] = Field(default_factory=list)
    client: ClientConfig = Field(default_factory=ClientConfig)
    page_limit: int = Field(default=100, ge=1, le=100)
    until_done: bool = False
    stop_when_idle: bool = False
    max_accounts: int | None = Field(default=None, ge=1)
    max_depth: int | None = Field(default=None, ge=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    recrawl_after_seconds: float = Field(default=86_400.0, ge=0)
    idle_sleep_seconds: float = Field(default=5.0, gt=0)
    retry_failed_after_seconds: float = Field(default=60.0, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    worker_id: str | None = None


@dataclass
class CrawlReport:
    """What one run did."""

    accounts: int = 0
    edges: int = 0
    added: int = 0
    removed: int = 0
    not_found: int = 0
    failed: int = 0
    duplicates: int = 0
    repeated_cursors: int = 0
    empty_pages: int = 0
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    rate_limit_sleep_seconds: float = 0.0
    seconds: float = 0.0
    finished: bool = False

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["requests_per_second"] = self.requests_per_second
        return out


@dataclass
class FollowList:
    """One account's complete follow list, as paged out of the AppView."""

    subject: dict[str, Any]
    #: Followed DID -> handle (None when invalid), in list order, each once.
    follows: dict[str, str | None] = field(default_factory=dict)
    pages: int = 0
    duplicates: int = 0
    end: str = END_COMPLETE


async def fetch_follow_list(
    client: XrpcClient,
    actor: str,
    *,
    limit: int = 100,
    on_page: Callable[[], None] | None = None,
) -> FollowList:
    """Page through ``getFollows`` of ``actor`` until the cursor is absent (or misbehaves).

    Raises
    ------
    ActorNotFound
        The actor is unknown, taken down or deactivated.
    XrpcError
        Any other failure after the client's retries.
    """
    result: FollowList | None = None
    cursor: str | None = None
    used: set[str] = set()
    while True:
        page = await client.get_follows(actor, cursor=cursor, limit=limit)
        if result is None:
            result = FollowList(subject=page["subject"])
        result.pages += 1
        entries = page["follows"]
        for profile in entries:
            did = profile.get("did") if isinstance(profile, dict) else None
            if not isinstance(did, str) or not is_did(did):
                log.warning("%s: skipping a follow without a valid DID: %r", actor, profile)
                continue
            if did in result.follows:
                result.duplicates += 1
            else:
                result.follows[did] = clean_handle(profile.get("handle"))
        next_cursor = page.get("cursor")
        if not next_cursor:
            result.end = END_COMPLETE
            return result
        if not entries:
            log.warning(
                "%s: empty page with a cursor after %d pages; paging ends", actor, result.pages
            )
            result.end = END_EMPTY_PAGE
            return result
        if next_cursor == cursor or next_cursor in used:
            log.warning("%s: the cursor repeats after %d pages; paging ends", actor, result.pages)
            result.end = END_REPEATED_CURSOR
            return result
        used.add(next_cursor)
        cursor = next_cursor
        if on_page is not None:
            on_page()


def default_worker_id() -> str:
    """``host:pid``: unique per live process, new after a restart."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Crawler:
    """Crawls the follow graph into ``store``; run it with ``await crawler.run()``.

    Parameters
    ----------
    store
        The store (a file or server database: the crawler writes from a
        worker thread, which an in-memory SQLite database cannot share).
    config
        A :class:`CrawlConfig` or its fields.
    clock
        Unix seconds (injected for tests).
    """

    def __init__(
        self,
        store: Store,
        config: CrawlConfig | Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config_of(CrawlConfig, config)
        _check_store(store)
        self.owner = self.config.worker_id or default_worker_id()
        self.clock = clock
        self.report = CrawlReport()
        self.client: XrpcClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._queue: deque[state.Claim] = deque()
        self._active: dict[int, state.Claim] = {}
        #: Claims taken and not settled yet (queued or in progress): leases to renew or return.
        self._held: dict[int, state.Claim] = {}
        self._claim_lock: asyncio.Lock | None = None
        self._claimed = 0
        self._started_at = 0.0
        self._started_wall = 0.0
        self._display: _CrawlDisplay | None = None
        self._writes: asyncio.Queue | None = None
        self._writer_task: asyncio.Task | None = None
        #: The claim being taken, if any: it finishes even when its worker is cancelled.
        self._claiming: asyncio.Future | None = None

    # ---------------------------------------------------------------- running
    async def run(self) -> CrawlReport:
        """Crawl until the mode says stop; return what was done."""
        cfg = self.config
        self._started_at = time.monotonic()
        self._started_wall = self.clock()
        self._claim_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recgraph-crawl-db")
        heartbeat: asyncio.Task | None = None
        try:
            await self._db(state.ensure_table, self.store.engine)
            async with XrpcClient(cfg.client) as client:
                self.client = client
                if cfg.seeds:
                    await self._add_seeds(cfg.seeds)
                self._display = _CrawlDisplay.start(self) if progress_enabled() else None
                heartbeat = asyncio.create_task(self._heartbeat())
                workers = [
                    asyncio.create_task(self._worker()) for _ in range(cfg.client.concurrency)
                ]
                try:
                    results = await asyncio.gather(*workers)
                finally:
                    for task in workers:
                        task.cancel()
                self.report.finished = all(results)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            if self._claiming is not None and not self._claiming.done():
                # Its database call runs to the end anyway: wait, then return its leases too.
                await asyncio.wait([self._claiming])
            held = list(self._held)
            if held and self._executor is not None:
                await self._db(self._release, held)
            self._finish_report()
            if self._display is not None:
                self._display.stop()
            self._executor.shutdown(wait=True)
        return self.report

    def _finish_report(self) -> None:
        self.report.seconds = time.monotonic() - self._started_at
        if self.client is not None:
            stats = self.client.stats
            self.report.requests = stats.requests
            self.report.rate_limited = stats.rate_limited
            self.report.retries = stats.retries
            self.report.rate_limit_sleep_seconds = self.client.limiter.seconds_slept

    async def _db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a database call on the crawler's one database thread (writes never overlap)."""
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def _add_seeds(self, seeds: list[str]) -> None:
        assert self.client is not None
        dids = await resolve_actors(self.client, seeds, field="seed")
        handles = {
            did: (None if actor.startswith("did:") else actor.lower().lstrip("@"))
            for actor, did in dids.items()
        }
        await self._db(self._write_seeds, handles)

    def _write_seeds(self, handles: dict[str, str | None]) -> None:
        with self.store.writer() as w:
            w.accounts(
                pd.DataFrame({"external_id": list(handles), "handle": list(handles.values())})
            )
            keys = w.account_keys(list(handles))
            state.add_accounts(w.conn, w.dialect, keys.tolist(), 0)

    # ---------------------------------------------------------------- workers
    async def _worker(self) -> bool:
        """Crawl claimed accounts until the mode says stop; True when the crawl is complete."""
        while True:
            claim = await self._next_claim()
            if claim is None:
                stop, complete = await self._idle()
                if stop:
                    return complete
                continue
            self._active[claim.account_id] = claim
            try:
                await self._crawl(claim)
            finally:
                self._active.pop(claim.account_id, None)
            # Only now is the claim settled; a cancelled crawl keeps it in
            # ``_held`` so that ``run`` hands the lease back.
            self._held.pop(claim.account_id, None)

    def _stale_before(self, now: float) -> float | None:
        """Crawled accounts at or before this time are due again (None: only new ones)."""
        if self.config.until_done:
            return None
        stale = now - self.config.recrawl_after_seconds
        if self.config.stop_when_idle:
            # One pass: never take an account this run has already crawled.
            stale = min(stale, self._started_wall - 1)
        return stale

    async def _next_claim(self) -> state.Claim | None:
        assert self._claim_lock is not None
        cfg = self.config
        async with self._claim_lock:
            if not self._queue:
                room = cfg.client.concurrency
                if cfg.max_accounts is not None:
                    room = min(room, cfg.max_accounts - self._claimed)
                if room > 0:
                    # Shielded: a cancelled worker must not lose leases the
                    # database has already granted (run returns them).
                    self._claiming = asyncio.ensure_future(self._take_claims(room))
                    self._queue.extend(await asyncio.shield(self._claiming))
            return self._queue.popleft() if self._queue else None

    async def _take_claims(self, room: int) -> list[state.Claim]:
        now = self.clock()
        claims = await self._db(
            self._claim,
            now=now,
            limit=room,
            stale_before=self._stale_before(now),
            exclude=list(self._held),
        )
        self._claimed += len(claims)
        self._held.update((c.account_id, c) for c in claims)
        return claims

    def _claim(
        self, *, now: float, limit: int, stale_before: float | None, exclude: list[int]
    ) -> list[state.Claim]:
        # Read, then write in a transaction of its own (see state.take).
        with self.store.engine.connect() as conn:
            found = state.candidates(
                conn,
                owner=self.owner,
                now=now,
                limit=limit,
                max_depth=self.config.max_depth,
                stale_before=stale_before,
                exclude=exclude,
            )
        if not found:
            return []
        with self.store.engine.begin() as conn:
            return state.take(
                conn, found, owner=self.owner, now=now, lease_seconds=self.config.lease_seconds
            )

    async def _idle(self) -> tuple[bool, bool]:
        """Nothing to claim: wait, or say stop. Returns ``(stop, crawl complete)``."""
        cfg = self.config
        if cfg.max_accounts is not None and self._claimed >= cfg.max_accounts:
            return True, False
        if self._active:
            await asyncio.sleep(0.02)  # others may still discover accounts
            return False, False
        now = self.clock()
        if cfg.until_done:
            progress = await self._db(self._progress, now)
            if progress.pending == 0:
                return True, True
            free_at = await self._db(self._next_free_time, None)
            wait = cfg.idle_sleep_seconds if free_at is None else free_at + 1 - now
        elif cfg.stop_when_idle:
            return True, True
        else:
            oldest = await self._db(self._next_stale_time)
            wait = (
                cfg.idle_sleep_seconds
                if oldest is None
                else oldest + cfg.recrawl_after_seconds - now
            )
        await asyncio.sleep(min(cfg.idle_sleep_seconds, max(0.05, wait)))
        return False, False

    def _progress(self, now: float) -> state.CrawlProgress:
        with self.store.engine.connect() as conn:
            return state.progress(conn, now=now, max_depth=self.config.max_depth)

    def _next_free_time(self, stale_before: float | None) -> int | None:
        with self.store.engine.connect() as conn:
            return state.next_free_time(
                conn, owner=self.owner, max_depth=self.config.max_depth, stale_before=stale_before
            )

    def _next_stale_time(self) -> int | None:
        with self.store.engine.connect() as conn:
            return state.next_stale_time(conn, max_depth=self.config.max_depth)

    async def _heartbeat(self) -> None:
        """Renew the leases of accounts in progress or queued, three times per lease."""
        period = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            held = list(self._held)
            if held:
                try:
                    await self._db(self._renew, held)
                except sa.exc.SQLAlchemyError as exc:  # a busy database: try next beat
                    log.warning("could not renew leases: %s", exc)

    def _renew(self, account_ids: list[int]) -> None:
        with self.store.engine.begin() as conn:
            state.renew(
                conn,
                account_ids,
                owner=self.owner,
                now=self.clock(),
                lease_seconds=self.config.lease_seconds,
            )

    def _release(self, account_ids: list[int]) -> None:
        with self.store.engine.begin() as conn:
            state.release(conn, account_ids, owner=self.owner)

    # ---------------------------------------------------------------- one account
    async def _crawl(self, claim: state.Claim) -> None:
        assert self.client is not None
        try:
            follow_list = await fetch_follow_list(
                self.client, claim.did, limit=self.config.page_limit
            )
        except ActorNotFound as exc:
            outcome = _Outcome(claim, self.clock(), status="not_found", error=str(exc))
        except XrpcError as exc:
            outcome = _Outcome(claim, self.clock(), status="failed", error=str(exc))
        else:
            outcome = _Outcome(claim, self.clock(), status="done", follow_list=follow_list)
        try:
            await self._write(outcome)
        except sa.exc.SQLAlchemyError as exc:
            # Nothing of it was written; its lease runs out and it is crawled again.
            log.error("%s: could not store the crawl: %s", claim.did, exc)
            return
        self._count(outcome)

    def _count(self, outcome: _Outcome) -> None:
        r = self.report
        if outcome.status == "failed":
            log.warning(
                "%s: %s%s",
                outcome.claim.did,
                outcome.error,
                " (giving up)" if outcome.gave_up else "",
            )
            if not outcome.gave_up:
                return
            r.failed += 1
        elif outcome.status == "not_found":
            r.not_found += 1
        r.accounts += 1
        follow_list = outcome.follow_list
        if follow_list is not None:
            r.edges += len(follow_list.follows)
            r.added += outcome.counts.get("added", 0)
            r.removed += outcome.counts.get("removed", 0)
            r.duplicates += follow_list.duplicates
            r.repeated_cursors += follow_list.end == END_REPEATED_CURSOR
            r.empty_pages += follow_list.end == END_EMPTY_PAGE

    async def _write(self, outcome: _Outcome) -> None:
        """Queue ``outcome`` for the next group commit and wait until it is stored."""
        if self._writes is None:
            self._writes = asyncio.Queue()
        future = asyncio.get_running_loop().create_future()
        await self._writes.put((outcome, future))
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.create_task(self._writer())
        await future

    async def _writer(self) -> None:
        """Group commit: every outcome waiting is written in one transaction.

        Each account's follow list and its crawl-state row still commit
        together (same transaction), so atomicity per account holds; sharing
        the transaction saves the per-commit overhead when many small lists
        arrive at once.
        """
        assert self._writes is not None
        while not self._writes.empty():
            batch = [self._writes.get_nowait()]
            while not self._writes.empty() and len(batch) < _GROUP_COMMIT_MAX:
                batch.append(self._writes.get_nowait())
            try:
                await self._db(self._write_batch, [outcome for outcome, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _write_batch(self, outcomes: list[_Outcome]) -> None:
        """Follow sets, new accounts and crawl states of ``outcomes``: one transaction."""
        listed = [o for o in outcomes if o.follow_list is not None]
        with self.store.writer() as w:
            if listed:
                self._write_lists(w, listed)
            for o in outcomes:
                if o.status == "failed":
                    o.gave_up = state.fail(
                        w.conn,
                        o.claim.account_id,
                        now=o.finished_at,
                        error=o.error or "failed",
                        retry_after_seconds=self.config.retry_failed_after_seconds,
                        max_attempts=self.config.max_attempts,
                    )
                else:
                    follow_list = o.follow_list
                    note = o.error
                    if follow_list is not None and follow_list.end != END_COMPLETE:
                        note = f"paging ended: {follow_list.end}"
                    state.finish(
                        w.conn,
                        o.claim.account_id,
                        now=o.finished_at,
                        status=o.status,
                        follows_count=None if follow_list is None else len(follow_list.follows),
                        error=note,
                    )

    def _write_lists(self, w: Writer, listed: list[_Outcome]) -> None:
        """Replace the follow sets of ``listed`` and enqueue the accounts they follow.

        Accounts without any active edge (every first crawl) need nothing
        removed, so their lists go in as one bulk upsert, which is what
        :meth:`~recgraph.data.store.Writer.replace_follows` would do for each;
        the others go through ``replace_follows`` one by one.
        """
        dids, handles = [], []
        for o in listed:
            assert o.follow_list is not None
            dids.append(o.claim.did)
            handles.append(clean_handle(o.follow_list.subject.get("handle")))
            dids.extend(o.follow_list.follows)
            handles.extend(o.follow_list.follows.values())
        w.accounts(pd.DataFrame({"external_id": dids, "handle": handles}))
        sources = [o.claim.account_id for o in listed]
        f = schema.follows.c
        with_edges = {
            int(key)
            for (key,) in w.conn.execute(
                sa.select(f.source_id)
                .where(f.source_id.in_(sources), f.removed_at.is_(None))
                .distinct()
            )
        }
        fresh = [o for o in listed if o.claim.account_id not in with_edges]
        if fresh:
            src, dst, seen = [], [], []
            for o in fresh:
                assert o.follow_list is not None
                targets = list(o.follow_list.follows)
                src.extend([o.claim.did] * len(targets))
                dst.extend(targets)
                seen.extend([int(o.finished_at)] * len(targets))
                o.counts = {"added": len(targets), "kept": 0, "removed": 0}
            if src:
                w.follows(
                    pd.DataFrame({"src": src, "dst": dst, "created_at": seen, "seen_at": seen}),
                    directed=True,
                )
        for o in listed:
            if o.claim.account_id in with_edges:
                assert o.follow_list is not None
                targets = list(o.follow_list.follows)
                o.counts = w.replace_follows(
                    o.claim.did,
                    pd.DataFrame(
                        {"dst": targets, "created_at": [int(o.finished_at)] * len(targets)}
                    ),
                    seen_at=int(o.finished_at),
                )
        by_depth: dict[int, list[str]] = {}
        for o in listed:
            assert o.follow_list is not None
            by_depth.setdefault(o.claim.depth + 1, []).extend(o.follow_list.follows)
        for depth, targets in sorted(by_depth.items()):
            if targets:
                state.add_accounts(w.conn, w.dialect, w.account_keys(targets).tolist(), depth)


@dataclass
class _Outcome:
    """How the crawl of one account ended, waiting to be written."""

    claim: state.Claim
    finished_at: float
    status: str
    follow_list: FollowList | None = None
    error: str | None = None
    gave_up: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def _check_store(store: Store) -> None:
    if memory_per_thread(store.url):
        raise ConfigError(
            "the crawler needs a database file, a shared-cache in-memory one or a server "
            "(it writes from a worker thread, which would write a database of its own); "
            f"got {store.safe_url}"
        )
    if store.follows_directed() is False:
        raise InputError(
            f"{store.safe_url} holds an undirected (friendship) graph; "
            "crawl Bluesky follows into another database",
            field="db",
        )


def crawl(store: Store, config: CrawlConfig | Mapping[str, Any] | None = None) -> CrawlReport:
    """Run a :class:`Crawler` to completion in a new event loop (for scripts and the CLI)."""
    return asyncio.run(Crawler(store, config).run())


class _CrawlDisplay:
    """Live progress on stderr: accounts done, edges, requests/s, rate-limit sleeps."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]crawl[/]"),
            TextColumn("{task.fields[accounts]}"),
            TextColumn("{task.fields[edges]:,} edges"),
            TextColumn("{task.fields[rate]:.1f} req/s"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(
            "crawl", total=None, accounts="", edges=0, rate=0.0, status=""
        )
        self._updater: asyncio.Task | None = None

    @classmethod
    def start(cls, crawler: Crawler) -> _CrawlDisplay:
        display = cls(crawler)
        display.progress.start()
        display._updater = asyncio.create_task(display._update_forever())
        return display

    async def _update_forever(self) -> None:
        discovered: state.CrawlProgress | None = None
        tick = 0
        while True:
            crawler = self.crawler
            if tick % 8 == 0:
                try:
                    discovered = await crawler._db(crawler._progress, crawler.clock())
                except sa.exc.SQLAlchemyError:
                    pass
            tick += 1
            report, client = crawler.report, crawler.client
            limiter = client.limiter if client is not None else None
            status = ""
            if limiter is not None and limiter.is_sleeping():
                left = (limiter.sleeping_until or 0) - time.time()
                status = f"[yellow]sleeping for rate limit ({left:.1f} s)[/]"
            elif limiter is not None and limiter.remaining is not None and limiter.limit:
                left = max(0.0, (limiter.reset_at or 0) - time.time())
                status = (
                    f"budget {max(0, limiter.remaining)}/{limiter.limit} left, "
                    f"resets in {left:.0f} s"
                )
            total = f" of {discovered.discovered:,} discovered" if discovered else ""
            self.progress.update(
                self.task,
                accounts=f"{report.accounts:,} accounts done{total}",
                edges=report.edges,
                rate=client.stats.requests_per_second(5.0) if client is not None else 0.0,
                status=status,
            )
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self._updater is not None:
            self._updater.cancel()
        self.progress.stop()


__all__ = [
    "END_COMPLETE",
    "END_EMPTY_PAGE",
    "END_REPEATED_CURSOR",
    "CrawlConfig",
    "CrawlReport",
    "Crawler",
    "FollowList",
    "crawl",
    "default_worker_id",
    "fetch_follow_list",
]
