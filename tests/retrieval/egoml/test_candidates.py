"""Map over centres, reduce over pairs: the same E as the model, for every user."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.retrieval.egoml.candidates import (
    generate_candidates,
    map_centre,
    map_centres,
    map_members,
    reduce_pairs,
    top_k_pairs,
)
from recgraph.retrieval.egoml.model import EgoML
from tests.retrieval.egoml.test_labels import growing_graph


@pytest.fixture(scope="module", params=["friends", "follows"])
def model(request) -> EgoML:
    data = growing_graph(directed=request.param == "follows", seed=21, n=50, rows=500)
    model = EgoML(variant="ab", num_boost_round=10, min_data_in_leaf=3, num_leaves=7).fit(data)
    # on a follow graph every centre is also a candidate of its own ego graph
    assert (model.y_self_ is not None) == (request.param == "follows")
    return model


def test_map_then_reduce_is_the_product_of_the_vectors(model: EgoML) -> None:
    graph = model.graph_
    n = graph.n_nodes
    # one centre at a time, as a Spark flatMap would call it
    parts = []
    for c in range(n):
        lo, hi = graph.indptr[c], graph.indptr[c + 1]
        own = None if model.y_self_ is None else model.y_self_[c]
        parts.append(map_centre(c, graph.indices[lo:hi], model.x_[lo:hi], model.y_[lo:hi], own))
    u, v, partial = (np.concatenate(p) for p in zip(*parts, strict=True))
    ru, rv, total = reduce_pairs(u, v, partial, n)
    x, y = model.vectors()
    product = (x @ y.T).toarray()
    np.fill_diagonal(product, 0.0)
    dense = np.zeros((n, n))
    dense[ru, rv] = total
    np.testing.assert_allclose(dense, product, rtol=1e-9, atol=1e-12)
    # the vectorised map gives the same rows
    bu, bv, bp = map_centres(
        graph.indptr, graph.indices, model.x_, model.y_, np.arange(n), model.y_self_
    )
    assert sorted(zip(bu.tolist(), bv.tolist(), np.round(bp, 12).tolist(), strict=True)) == sorted(
        zip(u.tolist(), v.tolist(), np.round(partial, 12).tolist(), strict=True)
    )
    # and one user partition of it is exactly that user's rows
    mu, mv, mp = map_members(
        graph.indptr,
        graph.indices,
        graph.reverse,
        model.x_,
        model.y_,
        np.array([4, 9]),
        model.y_self_,
    )
    mine = np.isin(u, [4, 9])
    assert sorted(zip(mu.tolist(), mv.tolist(), strict=True)) == sorted(
        zip(u[mine].tolist(), v[mine].tolist(), strict=True)
    )
    np.testing.assert_allclose(np.sort(mp), np.sort(partial[mine]), rtol=1e-12)


def test_generate_candidates_equals_recommend(model: EgoML) -> None:
    n = model.n_users
    ids, scores = generate_candidates(
        model.graph_.indptr,
        model.graph_.indices,
        model.x_,
        model.y_,
        7,
        y_self=model.y_self_,
        exclude=model._seen,
        batch_lookups=300,  # many user blocks
    )
    e = model.score_rows(np.arange(n)).toarray()
    for u in range(n):
        scored = e[u].copy()
        scored[u] = 0
        scored[model._seen[u].indices] = 0
        # ties broken by id after rounding away summation-order noise
        rounded = np.round(scored, 9)
        expected = [v for v in np.lexsort((np.arange(n), -rounded)) if scored[v] > 0][:7]
        got = ids[u][ids[u] >= 0].tolist()
        assert len(got) == len(expected)
        np.testing.assert_allclose(scores[u][: len(got)], scored[expected], rtol=1e-6)
        np.testing.assert_allclose(scores[u][: len(got)], scored[got], rtol=1e-6)
    # the model's own all-user call is this same job
    all_ids, _ = model.all_candidates(7)
    np.testing.assert_array_equal(all_ids, ids)


def test_top_k_pairs_ties_and_padding() -> None:
    ids, scores = top_k_pairs(
        np.array([0, 0, 0, 2]), np.array([5, 3, 4, 1]), np.array([1.0, 2.0, 1.0, 0.5]), 3, n_users=3
    )
    assert ids.tolist() == [[3, 4, 5], [-1, -1, -1], [1, -1, -1]]
    assert np.isneginf(scores[1]).all()
    excluded, _ = top_k_pairs(
        np.array([0, 0]),
        np.array([5, 3]),
        np.array([1.0, 2.0]),
        2,
        n_users=1,
        exclude_keys=np.array([3]),
        n_nodes=10,
    )
    assert excluded.tolist() == [[5, -1]]


def test_exact_all_candidates_match_recommend() -> None:
    data = growing_graph(directed=True, seed=5, n=40, rows=300)
    model = EgoML(variant="exact", num_boost_round=5, min_data_in_leaf=3, fallback="none").fit(data)
    ids, scores = model.all_candidates(4)
    rec_ids, rec_scores = model.recommend(np.arange(40), k=4)
    positive = rec_scores > 0
    # the same top 4 (float32 ties may swap neighbours), with the same E
    np.testing.assert_allclose(np.where(positive, rec_scores, -np.inf), scores, rtol=1e-5)
    for row in range(40):
        assert set(rec_ids[row][positive[row]].tolist()) == set(ids[row][ids[row] >= 0].tolist())
