import threading

import numpy as np
import pandas as pd

from recgraph.data.graph_overlay import GraphOverlay, recent_follows
from recgraph.data.store import Store


def test_edges_are_added_once_and_read_both_ways() -> None:
    overlay = GraphOverlay()
    assert overlay.add([0, 0, 3, -1], [5, 6, 5, 2]) == 3, "a negative index is skipped"
    assert overlay.add([0], [5]) == 0, "a repeat is no new edge"
    assert len(overlay) == 3
    owner, neighbour = overlay.gather(np.array([3, 0, 9]), "out")
    assert sorted(zip(owner.tolist(), neighbour.tolist(), strict=True)) == [(0, 5), (1, 5), (1, 6)]
    owner, neighbour = overlay.gather(np.array([5]), "in")
    assert sorted(neighbour.tolist()) == [0, 3]
    assert overlay.degrees(np.array([0, 3, 5, 7]), "out").tolist() == [2, 1, 0, 0]
    nodes, indptr, indices = overlay.arrays("out")
    assert (nodes.tolist(), indptr.tolist(), indices.tolist()) == ([0, 3], [0, 2, 3], [5, 6, 5])
    nodes, indptr, indices = overlay.arrays("in")
    assert (nodes.tolist(), indptr.tolist(), indices.tolist()) == ([5, 6], [0, 2, 3], [0, 3, 0])
    src, dst = overlay.edges()
    assert list(zip(src.tolist(), dst.tolist(), strict=True)) == [(0, 5), (0, 6), (3, 5)]


def test_the_oldest_edges_go_past_the_limit_and_clear_empties_it() -> None:
    overlay = GraphOverlay(max_edges=3)
    overlay.add([0, 1, 2, 3], [9, 9, 9, 9])
    assert len(overlay) == 3
    assert sorted(overlay.gather(np.array([9]), "in")[1].tolist()) == [1, 2, 3]
    assert overlay.add([0], [9]) == 1, "a dropped edge can come back"
    overlay.clear()
    assert len(overlay) == 0 and not len(overlay.gather(np.array([9]), "in")[1])


def test_concurrent_writers_lose_nothing() -> None:
    overlay = GraphOverlay()

    def write(start: int) -> None:
        for i in range(start, start + 200):
            overlay.add([i], [i + 1])
            overlay.gather(np.array([i]), "out")

    threads = [threading.Thread(target=write, args=(k * 200,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlay) == 800
    assert overlay.degrees(np.arange(800), "out").sum() == 800


def test_recent_follows_are_those_created_since(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    with store.writer() as writer:
        writer.follows(
            pd.DataFrame(
                {"src": ["a", "b", "c"], "dst": ["b", "c", "a"], "created_at": [10, 20, 30]}
            ),
            directed=True,
        )
    src, dst = recent_follows(store, 20)
    store.close()
    assert sorted(zip(src.tolist(), dst.tolist(), strict=True)) == [("b", "c"), ("c", "a")]
