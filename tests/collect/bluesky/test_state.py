"""Crawl state: breadth-first order, leases that expire, failures that give up."""

from __future__ import annotations

import sqlalchemy as sa

from recgraph.collect.bluesky import state
from recgraph.data.store import Store
from tests.collect.bluesky.conftest import claim as take_leases

NOW = 1_700_000_000.0


def add(store: Store, dids: list[str], depth: int) -> list[int]:
    with store.writer() as w:
        keys = w.account_keys(dids).tolist()
        state.add_accounts(w.conn, w.dialect, keys, depth)
    return keys


def claim(store: Store, owner: str, now: float = NOW, **options) -> list[state.Claim]:
    return take_leases(store, owner, now, **options)


def test_state_table_lives_in_the_store(any_store: Store) -> None:
    store = any_store
    assert "crawl_state" in sa.inspect(store.engine).get_table_names()


def test_claims_shallowest_first_then_discovery_order(any_store: Store) -> None:
    store = any_store
    add(store, ["did:plc:deep"], 2)
    add(store, ["did:plc:seed"], 0)
    add(store, ["did:plc:b", "did:plc:a"], 1)
    add(store, ["did:plc:deep"], 1)  # found again closer: the smaller depth wins
    claims = claim(store, "w1")
    assert [(c.did, c.depth) for c in claims] == [
        ("did:plc:seed", 0),
        ("did:plc:deep", 1),
        ("did:plc:b", 1),
        ("did:plc:a", 1),
    ]
    assert claim(store, "w2") == []  # all leased


def test_a_crashed_workers_lease_runs_out(any_store: Store) -> None:
    store = any_store
    add(store, ["did:plc:x", "did:plc:y"], 0)
    held = claim(store, "crashed", lease_seconds=30)
    assert len(held) == 2
    assert claim(store, "other", now=NOW + 29) == []
    taken = claim(store, "other", now=NOW + 31)
    assert {c.did for c in taken} == {"did:plc:x", "did:plc:y"}
    # The same worker id (a restart) may take its own leases back at once.
    assert len(claim(store, "other", now=NOW + 32)) == 2


def test_renewed_leases_are_not_lost(any_store: Store) -> None:
    store = any_store
    (key,) = add(store, ["did:plc:x"], 0)
    claim(store, "alive", lease_seconds=10)
    with store.engine.begin() as conn:
        assert state.renew(conn, [key], owner="alive", now=NOW + 8, lease_seconds=10) == 1
    assert claim(store, "thief", now=NOW + 12) == []
    assert len(claim(store, "thief", now=NOW + 19)) == 1


def test_finished_accounts_come_back_when_stale(any_store: Store) -> None:
    store = any_store
    (key,) = add(store, ["did:plc:x"], 0)
    claim(store, "w")
    with store.engine.begin() as conn:
        state.finish(conn, key, now=NOW, status="done", follows_count=3)
        done = state.progress(conn, now=NOW)
    assert (done.crawled, done.pending, done.follows) == (1, 0, 3)
    assert claim(store, "w", now=NOW + 10) == []  # a first build is over
    assert claim(store, "w", now=NOW + 10, stale_before=NOW - 5) == []
    assert len(claim(store, "w", now=NOW + 10, stale_before=NOW)) == 1


def test_failures_wait_then_give_up(any_store: Store) -> None:
    store = any_store
    (key,) = add(store, ["did:plc:x"], 0)
    now = NOW
    outcomes = []
    for _ in range(3):
        assert len(claim(store, "w", now=now)) == 1
        with store.engine.begin() as conn:
            outcomes.append(
                state.fail(conn, key, now=now, error="boom", retry_after_seconds=60, max_attempts=3)
            )
        assert claim(store, "w", now=now + 30) == []  # waits out the retry delay
        now += 61
    assert outcomes == [False, False, True]
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(state.crawl_state).where(state.crawl_state.c.account_id == key)
        ).one()
    assert row.status == "failed" and row.crawled_at > 0 and row.error == "boom"


def test_max_depth_and_exclusions(any_store: Store) -> None:
    store = any_store
    keys = add(store, ["did:plc:a"], 0) + add(store, ["did:plc:b"], 3)
    assert [c.did for c in claim(store, "w", max_depth=2)] == ["did:plc:a"]
    assert claim(store, "w", exclude=keys) == []
