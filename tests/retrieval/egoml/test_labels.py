"""Training labels: time decides, connected pairs never appear, the draw is seeded."""

from __future__ import annotations

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval.egoml.features import EgoGraph
from recgraph.retrieval.egoml.labels import make_training_pairs


def growing_graph(directed: bool, seed: int = 0, n: int = 40, rows: int = 400) -> Interactions:
    """Random timed edges, closing triangles more often later (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, rows)
    dst = (src + rng.integers(1, 6, rows)) % n
    stamps = np.sort(rng.integers(0, 100 * 86400, rows))
    return Interactions.from_indices(
        src, dst, n_users=n, one_sided=True, directed=directed, timestamp=stamps
    )


def test_temporal_labels_respect_time_and_connections() -> None:
    for directed in (True, False):
        data = growing_graph(directed)
        pairs = make_training_pairs(data, label_fraction=0.3, negatives_per_user=5, seed=1)
        assert pairs.method == "temporal" and "temporal labels" in pairs.description
        assert pairs.labels.sum() > 0 and (pairs.labels == 0).sum() > 0
        cut = pairs.cut
        assert pairs.graph.timestamp.max() <= cut
        n = data.n_users
        # pairs connected at T: never labelled (either orientation on friendships)
        src, dst = pairs.graph.src, pairs.graph.dst
        connected = set(zip(src.tolist(), dst.tolist(), strict=True))
        if not directed:
            connected |= {(b, a) for a, b in connected}
        labelled = set(zip(pairs.users.tolist(), pairs.targets.tolist(), strict=True))
        assert not labelled & connected
        assert all(u != v for u, v in labelled)
        # positives connect after T, negatives never do before the end of the data
        later = data.subset(data.timestamp > cut)
        future = set(zip(later.src.tolist(), later.dst.tolist(), strict=True))
        if not directed:
            future |= {(b, a) for a, b in future}
        for u, v, y in zip(pairs.users.tolist(), pairs.targets.tolist(), pairs.labels, strict=True):
            assert (u, v) in future if y else (u, v) not in future
        # every labelled pair shares a neighbour at T
        graph = EgoGraph.from_interactions(pairs.graph)
        adjacency = graph.adjacency()
        common = adjacency[pairs.users].multiply(adjacency[pairs.targets]).sum(axis=1)
        assert (np.asarray(common).ravel() > 0).all()
        # groups are contiguous and every group has a positive
        assert (np.diff(pairs.users) >= 0).all()
        for u in np.unique(pairs.users):
            assert pairs.labels[pairs.users == u].any()
        assert (np.bincount(pairs.users[pairs.labels == 0], minlength=n) <= 5).all()


def test_same_seed_same_pairs_other_seed_other_draw() -> None:
    data = growing_graph(False, seed=3)
    a = make_training_pairs(data, negatives_per_user=3, seed=7)
    b = make_training_pairs(data, negatives_per_user=3, seed=7)
    c = make_training_pairs(data, negatives_per_user=3, seed=8)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.array_equal(a.targets, c.targets) or not np.array_equal(a.users, c.users)


def test_without_timestamps_a_holdout_says_so() -> None:
    data = growing_graph(False, seed=5)
    static = Interactions.from_indices(
        data.src, data.dst, n_users=data.n_users, one_sided=True, directed=False
    )
    pairs = make_training_pairs(static, label_fraction=0.2, negatives_per_user=4, seed=0)
    assert pairs.method == "edge_holdout" and pairs.cut is None
    assert "no timestamps" in pairs.description and "holdout" in pairs.description
    held = set(
        zip(
            pairs.users[pairs.labels == 1].tolist(),
            pairs.targets[pairs.labels == 1].tolist(),
            strict=True,
        )
    )
    known = set(zip(pairs.graph.src.tolist(), pairs.graph.dst.tolist(), strict=True))
    known |= {(b, a) for a, b in known}
    assert held and not held & known
    # held-out edges are edges of the input
    edges = set(zip(static.src.tolist(), static.dst.tolist(), strict=True))
    edges |= {(b, a) for a, b in edges}
    assert held <= edges


def test_max_users_caps_groups() -> None:
    data = growing_graph(True, seed=2)
    pairs = make_training_pairs(data, negatives_per_user=2, max_users=3, seed=0)
    assert len(np.unique(pairs.users)) == 3


def test_direct_candidates_reach_followers() -> None:
    data = growing_graph(True, seed=9)
    plain = make_training_pairs(data, negatives_per_user=50, seed=0)
    direct = make_training_pairs(data, negatives_per_user=50, seed=0, direct_candidates=True)
    assert direct.n_unreachable <= plain.n_unreachable
    graph = EgoGraph.from_interactions(direct.graph)
    adjacency = graph.adjacency()
    common = np.asarray(
        adjacency[direct.users].multiply(adjacency[direct.targets]).sum(axis=1)
    ).ravel()
    neighbour = graph.edge_ids(direct.users, direct.targets) >= 0
    assert ((common > 0) | neighbour).all()
    assert (neighbour & (common == 0)).any(), "some pairs are reachable only directly"
    # still never a pair u -> v that exists at T
    arcs = set(zip(direct.graph.src.tolist(), direct.graph.dst.tolist(), strict=True))
    assert not arcs & set(zip(direct.users.tolist(), direct.targets.tolist(), strict=True))
