"""The account-graph candidate features against their definitions, on small graphs worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.ranking.features import (
    ACCOUNT_FEATURES,
    CandidateFeatures,
    feature_names,
)
from recgraph.ranking.pagerank import personalised_pagerank, ppr_pairs
from recgraph.retrieval.registry import create_retriever


def follows(edges, n, directed=True):
    src, dst = (np.asarray(x, dtype=np.int64) for x in zip(*edges, strict=True))
    return Interactions.from_indices(src, dst, n_users=n, one_sided=True, directed=directed)


# 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3, 3 -> 0, 4 -> 0, 4 -> 3, 5 -> 4
EDGES = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 0), (4, 0), (4, 3), (5, 4)]


def columns(features: CandidateFeatures, users, items) -> dict[str, np.ndarray]:
    matrix = features.matrix(np.asarray(users), np.asarray(items), {}, depth=10)
    names = feature_names("follows", [])
    return {name: matrix[:, names.index(name)] for name in ACCOUNT_FEATURES}


def test_the_account_features_count_what_their_names_say():
    features = CandidateFeatures(follows(EDGES, 6))
    # user 0 and candidate 4: 4 follows 0 and 3; 0 follows 1, 2
    got = columns(features, [0, 0, 1], [4, 3, 4])
    assert got["follows_back"].tolist() == [1.0, 1.0, 0.0]
    # 0 -> {1, 2} -> 3: two paths along follows
    assert got["common_neighbors"][1] == 2.0
    # either way, 0 is tied to {1, 2, 3, 4} and 4 to {0, 3, 5}: 3 is shared
    assert got["cn_undirected"][0] == 1.0
    # 4 -> 3 -> 0: one path from the candidate back to the user
    assert got["cand_reaches_user"][0] == 1.0
    assert got["user_in_degree"].tolist() == [2.0, 2.0, 1.0]
    assert got["user_out_degree"].tolist() == [2.0, 2.0, 1.0]
    # resource allocation either way through 3, whose degree either way is 4 (0, 1, 2, 4)
    assert got["ra_undirected"][0] == pytest.approx(1 / 4)
    assert got["aa_undirected"][0] == pytest.approx(1 / np.log(4))


@pytest.mark.parametrize("walk", ["out", "undirected"])
def test_the_ppr_features_are_the_ppr_retrievers_power_iteration(walk):
    graph = follows(EDGES, 6)
    features = CandidateFeatures(graph)
    users = np.array([0, 0, 1, 5, 5])
    items = np.array([3, 4, 0, 3, 1])
    got = columns(features, users, items)["ppr_out" if walk == "out" else "ppr_undirected"]
    model = create_retriever(
        "ppr",
        {"walk": walk, "restart": 0.3, "method": "power", "iterations": 12, "tol": 0.0},
    ).fit(graph)
    want = model.score_pairs(users, items)
    assert np.corrcoef(got, want)[0, 1] > 0.999
    # the order of candidates per user is the retriever's
    assert (got[0] > got[1]) == (want[0] > want[1])
    assert (got[3] > got[4]) == (want[3] > want[4])


def test_ppr_vectors_hold_the_restart_mass_and_block_any_batch_size(monkeypatch):
    features = CandidateFeatures(follows(EDGES, 6, directed=False))
    walk = features._walks()[1]
    whole = personalised_pagerank(walk, np.arange(6))
    assert whole.sum(axis=1) == pytest.approx(np.ones(6), abs=1e-5)  # no sinks undirected
    assert (whole.argmax(axis=1) == np.arange(6)).all()  # the restart keeps most at home
    monkeypatch.setattr("recgraph.ranking.pagerank.PPR_BLOCK", 6)  # one user per block
    assert personalised_pagerank(walk, np.arange(6)) == pytest.approx(whole, abs=1e-6)


def test_on_friendships_the_walk_along_follows_is_the_walk_either_way():
    features = CandidateFeatures(follows(EDGES, 6, directed=False))
    got = columns(features, [0, 1, 5], [5, 4, 2])
    assert got["ppr_out"] == pytest.approx(got["ppr_undirected"])
    assert got["common_neighbors"] == pytest.approx(got["cn_undirected"])
    # over the user's best untied account: 1 at most, and 1 for someone
    assert (got["ppr_undirected_vs_best"] <= 1.0 + 1e-6).all()


def test_ppr_is_missing_above_the_size_limit(monkeypatch):
    monkeypatch.setattr("recgraph.ranking.features.PPR_MAX_NODES", 5)
    got = columns(CandidateFeatures(follows(EDGES, 6)), [0], [3])
    assert np.isnan(got["ppr_out"]).all() and np.isnan(got["ppr_undirected"]).all()
    assert got["cn_undirected"][0] == 3.0  # the rest is computed: 1, 2 and 4 either way


def test_saved_and_loaded_features_read_the_same(tmp_path):
    features = CandidateFeatures(follows(EDGES, 6))
    features.save(tmp_path / "f.npz")
    loaded = CandidateFeatures.load(tmp_path / "f.npz")
    users, items = np.array([0, 1, 5, 4]), np.array([4, 0, 3, 1])
    a = features.matrix(users, items, {}, depth=10)
    b = loaded.matrix(users, items, {}, depth=10)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-6)


def test_ppr_pairs_read_the_vectors_block_by_block(monkeypatch):
    features = CandidateFeatures(follows(EDGES, 6))
    walk = features._walks()[1]
    users = np.array([5, 0, 3, 0, 5, 2])
    items = np.array([0, 3, 1, 4, 2, 5])
    whole = personalised_pagerank(walk, np.arange(6))
    blocked = []
    for block in (6, 12, 1 << 22):  # one, two and all users per block
        monkeypatch.setattr("recgraph.ranking.pagerank.PPR_BLOCK", block)
        values, best = ppr_pairs(walk, users, items, tied=features.either)
        blocked.append((values, best))
        assert values == pytest.approx(whole[users, items], abs=1e-6)
    untied = whole.copy()
    untied[np.arange(6), np.arange(6)] = 0.0
    either = features.either.toarray() > 0
    untied[either] = 0.0
    for _values, best in blocked:
        assert best == pytest.approx(untied.max(axis=1)[users], abs=1e-6)


def test_tie_times_say_how_long_ago_the_candidate_reached_out_and_who_is_active(tmp_path):
    day = 86400
    # 4 -> 0 twice (days 10 and 38), 3 -> 0 on day 2, 1 -> 3 on day 39, 5 -> 4 on day 40 (the end)
    src = np.array([4, 4, 3, 1, 5, 0])
    dst = np.array([0, 0, 0, 3, 4, 1])
    times = np.array([10, 38, 2, 39, 40, 1]) * day
    graph = Interactions.from_indices(
        src, dst, n_users=6, one_sided=True, directed=True, timestamp=times
    )
    features = CandidateFeatures(graph)
    got = columns(features, [0, 0, 0, 5], [4, 3, 2, 1])
    # the latest 4 -> 0 is 2 days before the end; 3 -> 0 is 38; 2 never reached 0
    np.testing.assert_allclose(got["tie_back_days"][:2], [2.0, 38.0])
    assert np.isnan(got["tie_back_days"][2]) and np.isnan(got["tie_back_days"][3])
    # the candidate's latest tie to anyone: 4 on day 38, 3 on day 2, 1 on day 39
    np.testing.assert_allclose(got["cand_recency_days"][[0, 1, 3]], [2.0, 38.0, 1.0])
    assert np.isnan(got["cand_recency_days"][2]), "2 never started a tie"
    # ties started in the last 30 days: 4 -> 0 (day 38), 1 -> 3, 5 -> 4: one each; 3 none
    np.testing.assert_allclose(got["cand_out_30d"], [1.0, 0.0, 0.0, 1.0])
    features.save(tmp_path / "f.npz")
    loaded = columns(CandidateFeatures.load(tmp_path / "f.npz"), [0, 0, 0, 5], [4, 3, 2, 1])
    for name in ("tie_back_days", "cand_recency_days", "cand_out_30d"):
        np.testing.assert_array_equal(loaded[name], got[name])
    # without times the three are missing
    untimed = columns(CandidateFeatures(follows(EDGES, 6)), [0], [4])
    assert all(
        np.isnan(untimed[n][0]) for n in ("tie_back_days", "cand_recency_days", "cand_out_30d")
    )


def test_tie_times_on_friendships_count_both_friends_and_leave_self_ties_out():
    day = 86400
    # friendships 1-0, 2-0, 3-0 (0 is the hub, always in the second column) and 4-5, on
    # day 40 (the end); 4's own self-tie on day 40 is no edge of the graph
    src = np.array([1, 2, 3, 4, 4])
    dst = np.array([0, 0, 0, 5, 4])
    times = np.full(5, 40 * day)
    graph = Interactions.from_indices(
        src, dst, n_users=6, one_sided=True, directed=False, timestamp=times
    )
    features = CandidateFeatures(graph)
    # the hub's three friendships are its ties as much as its friends'
    assert features.tie_days[0].nnz == 3
    np.testing.assert_allclose(features.out_30d, [1.0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    got = columns(features, [1, 0], [0, 1])
    # each friend tied to the other today, whichever column the file put them in
    np.testing.assert_allclose(got["tie_back_days"], [0.0, 0.0])
    assert features.tie_days[4, 4] == 0, "a self-tie is not a tie"
