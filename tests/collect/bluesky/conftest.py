"""Fixtures: a fake AppView on 127.0.0.1 and a crawler configuration scaled to milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgraph.collect.bluesky import state
from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph
from recgraph.data.store import Store


def fast_client(url: str, **overrides) -> dict:
    """Client settings for tests: short timeouts and backoffs, so faults cost milliseconds."""
    config = {
        "base_url": url,
        "concurrency": 6,
        "timeout_seconds": 0.3,
        "backoff": {"base_seconds": 0.005, "max_seconds": 0.05, "max_attempts": 10},
        "rate_limit": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.1},
    }
    config.update(overrides)
    return config


def claim(
    store: Store, owner: str, now: float, *, lease_seconds: float = 30, limit: int = 10, **options
) -> list[state.Claim]:
    """Take the leases of up to ``limit`` accounts: ``state.candidates`` then ``state.take``,
    in one transaction (the crawler runs them in two, see ``state.take``)."""
    with store.engine.begin() as conn:
        found = state.candidates(conn, owner=owner, now=now, limit=limit, **options)
        return state.take(conn, found, owner=owner, now=now, lease_seconds=lease_seconds)


def stored_edges(store: Store) -> set[tuple[str, str]]:
    """Active follows of the store as ``(src DID, dst DID)``."""
    edges: set[tuple[str, str]] = set()
    for frame in store.iter_frames("follows"):
        edges.update(zip(frame["src"], frame["dst"], strict=True))
    return edges


@pytest.fixture
def small_graph() -> FakeGraph:
    return FakeGraph.generate(80, seed=11, mean_follows=12, max_follows=260)


@pytest.fixture
def server(small_graph: FakeGraph):
    with FakeAppView(small_graph) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'crawl.db'}") as opened:
        yield opened
