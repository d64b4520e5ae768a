"""The crawler against the fake AppView: the store must equal the server's graph, edge for edge."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from recgraph.collect.bluesky import state
from recgraph.collect.bluesky.client import XrpcClient
from recgraph.collect.bluesky.crawler import Crawler, CrawlReport, fetch_follow_list
from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph
from recgraph.data.store import Store
from recgraph.errors import ConfigError
from tests.collect.bluesky.conftest import claim, fast_client, stored_edges


def crawl(store: Store, server: FakeAppView, **overrides) -> CrawlReport:
    config = {
        "seeds": [server.graph.handles[0]],
        "until_done": True,
        "page_limit": 10,
        "client": fast_client(server.url),
        "idle_sleep_seconds": 0.2,
    }
    config.update(overrides)
    return asyncio.run(Crawler(store, config).run())


def leased_accounts(store: Store) -> int:
    """Accounts whose lease is still taken."""
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(state.crawl_state.c.lease_until > 0)
        ).scalar_one()


def statuses(store: Store) -> dict[str, str]:
    c, a = state.crawl_state.c, sa.table("accounts", sa.column("id"), sa.column("external_id"))
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.external_id, c.status).join_from(
                state.crawl_state, a, c.account_id == a.c.id
            )
        ).all()
    return dict(rows)


def test_crawl_equals_the_server_graph_despite_faults(small_graph: FakeGraph, store: Store) -> None:
    faults = {
        "p_429": 0.03,
        "p_500": 0.05,
        "p_502": 0.03,
        "p_503": 0.02,
        "p_timeout": 0.02,
        "p_short": 0.15,
        "p_duplicate": 0.15,
        "p_repeat_end": 0.1,
        "p_empty_end": 0.1,
        "timeout_seconds": 0.6,
        "injected_retry_after_seconds": 0.02,
        "seed": 3,
    }
    with FakeAppView(
        small_graph, rate_limit={"limit": 60, "window_seconds": 0.25}, faults=faults
    ) as server:
        server.inject("429", "500", "timeout", "502")
        report = crawl(store, server)
        served = server.faults_served
    expected = small_graph.crawl_edges([small_graph.dids[0]])
    assert stored_edges(store) == expected
    assert report.finished and report.edges == len(expected) == report.added
    assert store.counts()["follows"] == len(expected)  # nothing doubled
    for fault in ("429", "500", "502", "timeout", "short", "duplicate"):
        assert served[fault] > 0, fault
    assert report.duplicates > 0 and report.rate_limited > 0 and report.retries > 0
    found = statuses(store)
    assert set(found) == {
        small_graph.dids[i] for i in small_graph.crawl_depths([small_graph.dids[0]])
    }
    for index in small_graph.missing:
        assert found[small_graph.dids[index]] == "not_found"
    assert sum(s == "done" for s in found.values()) == len(found) - len(small_graph.missing)
    assert report.not_found == len(small_graph.missing)


def test_no_429_from_the_budget_when_paced(small_graph: FakeGraph, store: Store) -> None:
    with FakeAppView(small_graph, rate_limit={"limit": 25, "window_seconds": 0.5}) as server:
        report = crawl(store, server, page_limit=100, max_accounts=40)
        assert server.statuses.get(429, 0) == 0
    assert report.rate_limited == 0 and report.accounts == 40


def test_a_recrawl_records_unfollows(small_graph: FakeGraph, store: Store) -> None:
    with FakeAppView(small_graph) as server:
        crawl(store, server)
        dids = small_graph.dids
        gone = dids[small_graph.follows[0][0]]
        small_graph.unfollow(dids[0], gone)
        new = next(dids[i] for i in range(1, 80) if i not in small_graph.follows[0] and i != 0)
        small_graph.follow(dids[0], new)
        time.sleep(1.05)  # crawled_at is whole seconds
        # The seed was crawled first, so it is the stalest: one account is enough.
        report = crawl(
            store,
            server,
            until_done=False,
            stop_when_idle=True,
            recrawl_after_seconds=0,
            max_accounts=1,
        )
    assert report.accounts == 1 and report.removed == 1 and report.added == 1
    assert stored_edges(store) == small_graph.crawl_edges([dids[0]])
    counts = store.counts()
    assert counts["follows_removed"] == 1
    f = sa.table("follows", sa.column("removed_at"))
    with store.engine.connect() as conn:
        removed_at = conn.execute(
            sa.select(f.c.removed_at).where(f.c.removed_at.is_not(None))
        ).scalar()
    assert removed_at is not None and abs(removed_at - time.time()) < 30


def test_resume_after_interruption(small_graph: FakeGraph, store: Store) -> None:
    with FakeAppView(small_graph, rate_limit={"limit": 30, "window_seconds": 0.25}) as server:
        first = crawl(store, server, max_accounts=15)
        assert not first.finished and first.accounts == 15

        async def interrupted() -> None:
            task = asyncio.create_task(
                Crawler(
                    store,
                    {
                        "seeds": [],
                        "until_done": True,
                        "page_limit": 10,
                        "client": fast_client(server.url),
                    },
                ).run()
            )
            await asyncio.sleep(0.4)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(interrupted())
        assert leased_accounts(store) == 0  # a clean stop hands its leases back
        final = crawl(store, server, seeds=[])
    assert final.finished
    assert stored_edges(store) == small_graph.crawl_edges([small_graph.dids[0]])


class _SlowClaims(Crawler):
    """Signals once the database has granted a claim, then keeps the call busy."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.granted = threading.Event()

    def _claim(self, **kwargs):
        claims = super()._claim(**kwargs)
        if claims:
            self.granted.set()
            time.sleep(0.3)
        return claims


def test_cancel_while_claiming_returns_those_leases(small_graph: FakeGraph, store: Store) -> None:
    """A stop that lands while leases are being granted must still hand them back."""
    with FakeAppView(small_graph) as server:
        crawl(store, server, max_accounts=1)  # the seed is crawled, its follows are pending
        crawler = _SlowClaims(
            store, {"seeds": [], "until_done": True, "client": fast_client(server.url)}
        )

        async def cancelled_mid_claim() -> None:
            task = asyncio.create_task(crawler.run())
            while not crawler.granted.is_set():
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancelled_mid_claim())
    assert leased_accounts(store) == 0


def test_leases_of_a_crashed_worker_expire(small_graph: FakeGraph, store: Store) -> None:
    with FakeAppView(small_graph) as server:
        crawl(store, server, max_accounts=1)  # the seed is crawled, its follows are pending
        stolen = claim(store, "crashed", time.time(), lease_seconds=1, limit=5)
        assert len(stolen) == 5
        started = time.monotonic()
        report = crawl(store, server, seeds=[])
        waited = time.monotonic() - started
    assert report.finished and waited >= 0.5
    assert stored_edges(store) == small_graph.crawl_edges([small_graph.dids[0]])


def test_max_depth_bounds_the_crawl(small_graph: FakeGraph, any_store: Store) -> None:
    store = any_store  # on every backend
    with FakeAppView(small_graph) as server:
        report = crawl(store, server, max_depth=1)
    seed = small_graph.dids[0]
    assert report.finished
    assert stored_edges(store) == small_graph.crawl_edges([seed], max_depth=1)
    assert stored_edges(store) != small_graph.crawl_edges([seed])


def test_paging_stops_on_a_repeated_cursor_and_dedupes(
    small_graph: FakeGraph, server: FakeAppView, caplog: pytest.LogCaptureFixture
) -> None:
    account = max(small_graph.follows, key=lambda a: len(small_graph.follows[a]))
    listed = [small_graph.dids[t] for t in small_graph.follows[account]]
    assert len(listed) > 15

    async def fetch(*faults: str):
        server.inject(*faults)
        async with XrpcClient(fast_client(server.url)) as client:
            return await fetch_follow_list(client, small_graph.dids[account], limit=5)

    with caplog.at_level(logging.WARNING):
        stuck = asyncio.run(fetch("short", "repeat_cursor"))
    assert stuck.end == "repeated_cursor" and stuck.pages == 2
    assert list(stuck.follows) == listed[: len(stuck.follows)] and len(stuck.follows) < len(listed)
    assert "cursor repeats" in caplog.text
    doubled = asyncio.run(fetch("duplicate", "duplicate", "duplicate"))
    assert doubled.end == "complete" and doubled.duplicates == 3
    assert list(doubled.follows) == listed


def test_refuses_an_in_memory_database_each_thread_has_its_own_of() -> None:
    for url in ("sqlite://", "sqlite:///file:crawlmem?mode=memory&uri=true"):
        with Store(url) as store, pytest.raises(ConfigError, match="database file"):
            Crawler(store, {"seeds": ["a.test"]})


def test_crawls_into_a_shared_cache_in_memory_database(small_graph: FakeGraph) -> None:
    """One database across threads: what the crawl's worker thread writes, the caller reads."""
    url = "sqlite:///file:crawlshared?mode=memory&cache=shared&uri=true"
    with Store(url) as store, FakeAppView(small_graph) as server:
        report = crawl(store, server)
        expected = small_graph.crawl_edges([small_graph.dids[0]])
        assert report.finished and expected and stored_edges(store) == expected


def _crawl_process(db: str, url: str, seed: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "recgraph.cli.main",
        "crawl",
        "bluesky",
        "--seed",
        seed,
        "--base-url",
        url,
        "--until-done",
        "--db",
        db,
        "--lease-seconds",
        "1",
        "--timeout-seconds",
        "0.5",
    ]
    env = {**os.environ, "RECGRAPH_PROGRESS": "0"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    graph = FakeGraph.generate(250, seed=21, mean_follows=25)
    seed = graph.dids[0]
    db = f"sqlite:///{tmp_path / 'killed.db'}"
    rng = random.Random(5)
    faults = {"p_500": 0.02, "seed": 1}
    with FakeAppView(
        graph, rate_limit={"limit": 40, "window_seconds": 0.5}, faults=faults
    ) as server:
        kills = 0
        while kills < 4:
            process = _crawl_process(db, server.url, seed)
            time.sleep(rng.uniform(0.8, 2.5))
            if process.poll() is not None:
                break
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        final = _crawl_process(db, server.url, seed)
        out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert "crawl complete" in out
    expected = graph.crawl_edges([seed])
    with Store(db) as store:
        assert stored_edges(store) == expected
        assert store.counts()["follows"] == len(expected)
    assert kills >= 1
