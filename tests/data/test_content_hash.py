"""The snapshot's content hash: one value whatever the row order, by blocks or not."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data import snapshot
from recgraph.data.interactions import IdMap, Interactions


def graph(src, dst, timestamp) -> Interactions:
    ids = IdMap(np.array([str(i) for i in range(40)], dtype=object))
    n = len(src)
    return Interactions(
        src=np.asarray(src),
        dst=np.asarray(dst),
        users=ids,
        items=ids,
        value=np.ones(n, np.float32),
        kind=np.zeros(n, np.int8),
        timestamp=timestamp,
        one_sided=True,
        directed=True,
    )


@pytest.mark.parametrize("timed", [False, True])
@pytest.mark.parametrize("block", [3, 1 << 20])
def test_rows_in_store_order_hash_as_any_shuffle_of_them(monkeypatch, timed, block):
    """Sorted distinct pairs skip the sort; a shuffle is sorted: both give one hash."""
    monkeypatch.setattr(snapshot, "HASH_BLOCK", block)
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 40 * 40, 500))
    src, dst = keys // 40, keys % 40
    times = rng.integers(0, 1_000, len(keys)) if timed else None
    ordered = graph(src, dst, times)
    assert snapshot._distinct_sorted_pairs(ordered.src, ordered.dst)
    shuffle = rng.permutation(len(keys))
    shuffled = graph(src[shuffle], dst[shuffle], None if times is None else times[shuffle])
    assert not snapshot._distinct_sorted_pairs(shuffled.src, shuffled.dst)
    assert snapshot.content_hash(ordered) == snapshot.content_hash(shuffled)
    other = graph(src, (dst + 1) % 40, times)
    assert snapshot.content_hash(other) != snapshot.content_hash(ordered)


def test_a_repeated_pair_is_not_taken_as_sorted():
    assert not snapshot._distinct_sorted_pairs(np.array([0, 1, 1]), np.array([5, 2, 2]))
    assert snapshot._distinct_sorted_pairs(np.array([0, 1, 1]), np.array([5, 2, 3]))
    assert snapshot._distinct_sorted_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))


def test_a_snapshot_read_pauses_the_cycle_collector_and_restores_it(tmp_path) -> None:
    import gc

    import pandas as pd

    from recgraph.data.snapshot import TrainingSnapshot
    from recgraph.data.store import Store

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.writer() as writer:
        writer.follows(pd.DataFrame({"src": ["a", "b"], "dst": ["b", "c"]}), directed=True)
    seen = []
    original = store.follows_graph
    store.follows_graph = lambda: (seen.append(gc.isenabled()), original())[1]
    assert gc.isenabled()
    snapshot = TrainingSnapshot.from_store(store)
    assert seen == [False] and gc.isenabled()  # off while reading, back on after
    assert snapshot.follows is not None and len(snapshot.follows) == 2
