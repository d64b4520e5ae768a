"""Ego-graph features against a brute-force computation on small graphs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval.egoml.features import (
    DAY,
    EgoGraph,
    feature_tables,
    pair_common_in_ego,
    pair_triples,
    user_triples,
)


def random_graph(seed: int, directed: bool, n: int = 12, rows: int = 60) -> Interactions:
    """Repeated, timed messages between ``n`` accounts (some pairs many times)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, rows)
    dst = rng.integers(0, n, rows)
    stamps = rng.integers(0, 40 * 86400, rows)
    return Interactions.from_indices(
        src, dst, n_users=n, one_sided=True, directed=directed, timestamp=stamps
    )


def brute_force(data: Interactions, recent_days: float):
    """Every feature from Python sets and loops, the definitions written out."""
    n = data.n_users
    neighbours = {x: set() for x in range(n)}
    arcs = set()
    first: dict[frozenset, int] = {}
    last: dict[frozenset, int] = {}
    weight: dict[frozenset, float] = {}
    for s, d, t in zip(data.src.tolist(), data.dst.tolist(), data.timestamp.tolist(), strict=True):
        if s == d:
            continue
        neighbours[s].add(d)
        neighbours[d].add(s)
        arcs.add((s, d))
        if not data.directed:
            arcs.add((d, s))
        key = frozenset((s, d))
        first[key] = min(first.get(key, t), t)
        last[key] = max(last.get(key, t), t)
        weight[key] = weight.get(key, 0.0) + 1.0
    now = float(data.timestamp.max())
    window = now - recent_days * DAY

    def recent(a, b):
        return first[frozenset((a, b))] >= window

    centre, member = {}, {}
    for c in range(n):
        nc = neighbours[c]
        d = len(nc)
        tri = sum(1 for a, b in itertools.combinations(sorted(nc), 2) if b in neighbours[a])
        centre[c] = {
            "degree": d,
            "ego_density": tri / (d * (d - 1) / 2) if d > 1 else 0.0,
            "triangles": tri,
            "out_degree": sum(1 for x in range(n) if (c, x) in arcs),
            "in_degree": sum(1 for x in range(n) if (x, c) in arcs),
            "strength": sum(weight[frozenset((c, x))] for x in nc),
            "recent_edges": sum(1 for x in nc if recent(c, x)),
        }
        for x in nc:
            common = nc & neighbours[x]
            inside = common | {c}
            key = frozenset((c, x))
            strength_x = sum(weight[frozenset((x, y))] for y in neighbours[x])
            member[(c, x)] = {
                "degree": len(neighbours[x]),
                "common_with_centre": len(common),
                "share_of_ego": len(common) / (d - 1) if d > 1 else 0.0,
                "share_of_member": (
                    len(common) / (len(neighbours[x]) - 1) if len(neighbours[x]) > 1 else 0.0
                ),
                "to_centre": float((x, c) in arcs),
                "from_centre": float((c, x) in arcs),
                "out_degree": sum(1 for y in range(n) if (x, y) in arcs),
                "in_degree": sum(1 for y in range(n) if (y, x) in arcs),
                "intensity": weight[key],
                "intensity_share_of_member": weight[key] / strength_x,
                "intensity_share_of_centre": weight[key] / centre[c]["strength"],
                "edge_age_days": (now - first[key]) / DAY,
                "days_since_last_contact": (now - last[key]) / DAY,
                "days_since_joined_ego": (now - max(first[frozenset((x, w))] for w in inside))
                / DAY,
                "recent_edges": sum(1 for y in neighbours[x] if recent(x, y)),
                "recent_in_ego": sum(1 for w in inside if recent(x, w)),
            }
    return neighbours, centre, member


@pytest.mark.parametrize("directed", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_features_match_brute_force(directed: bool, seed: int) -> None:
    data = random_graph(seed, directed)
    graph = EgoGraph.from_interactions(data)
    # tiny batches, so the batching itself is exercised
    tables = feature_tables(
        graph, recent_days=10.0, keep_ego_matrix=True, batch_lookups=7, progress=False
    )
    neighbours, centre, member = brute_force(data, 10.0)
    assert graph.has_weights and graph.has_time
    for c in range(graph.n_nodes):
        for j, name in enumerate(tables.centre_names):
            assert tables.centre[c, j] == pytest.approx(centre[c][name], rel=1e-5), (c, name)
    rows, cols = graph.edge_rows, graph.indices
    assert {(int(c), int(x)) for c, x in zip(rows, cols, strict=True)} == set(member)
    for e, (c, x) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        for j, name in enumerate(tables.member_names):
            assert tables.member[e, j] == pytest.approx(member[(c, x)][name], rel=1e-5, abs=1e-6), (
                c,
                x,
                name,
            )
    if directed:
        assert "to_centre" in tables.member_names
    else:
        assert "to_centre" not in tables.member_names

    # the pair feature of every triple (c, u, v) with u, v in N(c)
    users = np.arange(graph.n_nodes)
    triples = user_triples(graph, users)
    assert tables.stats.ego_matrix is not None
    pair = pair_common_in_ego(tables.stats.ego_matrix, triples.edge_u, triples.edge_v)
    expected_triples = set()
    for u in range(graph.n_nodes):
        for c in neighbours[u]:
            for v in neighbours[c] - {u}:
                expected_triples.add((c, u, v))
    got = set()
    for i in range(len(triples)):
        c, u, v = int(triples.centre[i]), int(triples.owner[i]), int(triples.target[i])
        got.add((c, u, v))
        assert graph.indices[triples.edge_u[i]] == u and graph.edge_rows[triples.edge_u[i]] == c
        assert graph.indices[triples.edge_v[i]] == v and graph.edge_rows[triples.edge_v[i]] == c
        assert pair[i] == len(neighbours[u] & neighbours[v] & neighbours[c])
    assert got == expected_triples


def test_pair_triples_are_the_common_neighbours() -> None:
    data = random_graph(3, directed=True)
    graph = EgoGraph.from_interactions(data)
    neighbours = [
        set(graph.indices[graph.indptr[x] : graph.indptr[x + 1]].tolist()) for x in range(12)
    ]
    users = np.array([0, 1, 2, 5, 7])
    targets = np.array([3, 4, 9, 6, 8])
    triples = pair_triples(graph, users, targets)
    for p, (u, v) in enumerate(zip(users.tolist(), targets.tolist(), strict=True)):
        mine = triples.centre[triples.owner == p].tolist()
        assert sorted(mine) == sorted(neighbours[u] & neighbours[v])
        for i in np.flatnonzero(triples.owner == p):
            assert graph.indices[triples.edge_u[i]] == u and graph.indices[triples.edge_v[i]] == v


def test_user_triples_drop_pairs() -> None:
    data = random_graph(4, directed=False)
    graph = EgoGraph.from_interactions(data)
    import scipy.sparse as sp

    drop = sp.csr_matrix(([1.0], ([0], [int(graph.indices[graph.indptr[1]])])), shape=(1, 12))
    all_triples = user_triples(graph, np.array([1]))
    fewer = user_triples(graph, np.array([1]), drop)
    dropped = int(graph.indices[graph.indptr[1]])
    assert dropped not in fewer.target.tolist()
    assert len(fewer) == int((all_triples.target != dropped).sum())


def test_plain_graph_has_no_time_or_weight_columns() -> None:
    data = Interactions.from_indices(
        [0, 1, 2, 0], [1, 2, 0, 3], n_users=4, one_sided=True, directed=False
    )
    tables = feature_tables(EgoGraph.from_interactions(data), progress=False)
    assert "intensity" not in tables.member_names and "edge_age_days" not in tables.member_names
    # the triangle 0-1-2: node 0 has neighbours 1, 2, 3 and one edge among them
    assert tables.centre[0, tables.centre_names.index("ego_density")] == pytest.approx(1 / 3)


def test_centre_as_its_own_candidate() -> None:
    data = random_graph(6, directed=True)
    graph = EgoGraph.from_interactions(data)
    tables = feature_tables(graph, keep_ego_matrix=True, self_rows=True, progress=False)
    m, n = graph.n_edges, graph.n_nodes
    assert tables.member.shape == (m + n, len(tables.member_names))
    is_centre = tables.member[:, tables.member_names.index("is_centre")]
    assert (is_centre[:m] == 0).all() and (is_centre[m:] == 1).all()
    degree = tables.member[m:, tables.member_names.index("degree")]
    np.testing.assert_array_equal(degree, graph.degree)
    # user triples gain (c, u, c) for each neighbour c of u
    users = np.arange(n)
    plain = user_triples(graph, users)
    both = user_triples(graph, users, with_self=True)
    own = both.edge_v >= m
    assert len(both) == len(plain) + graph.n_edges
    np.testing.assert_array_equal(both.target[own], both.centre[own])
    np.testing.assert_array_equal(both.edge_v[own], m + both.centre[own])
    np.testing.assert_array_equal(graph.indices[both.edge_u[own]], both.owner[own])
    # the pair feature of (c, u, c) is |N(u) ∩ N(c)|
    pair = tables.pair_feature(both.edge_u, both.edge_v)
    np.testing.assert_array_equal(pair[own], tables.stats.common[both.edge_u[own]])
    # pair triples: the target itself votes when it is a neighbour of the user
    u, v = int(graph.edge_rows[0]), int(graph.indices[0])
    with_self = pair_triples(graph, np.array([u]), np.array([v]), with_self=True)
    assert v in with_self.centre.tolist()
    assert v not in pair_triples(graph, np.array([u]), np.array([v])).centre.tolist()
