"""A request's reads (one user, a few candidates) give the bits the general paths give.

Served answers are ranked on features and explained from these reads; the
ranker learnt from the general paths (batches, scipy's products), so the
request paths must not move a bit: these tests compare bits, not closeness.
"""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data import sparse_rows
from recgraph.data.interactions import Interactions
from recgraph.retrieval import create_retriever, top_k


def graph(n: int = 80, density: float = 0.12, seed: int = 0, directed: bool = True) -> Interactions:
    rng = np.random.default_rng(seed)
    src, dst = np.nonzero(rng.random((n, n)) < density)
    keep = src != dst if directed else src < dst
    # a hub, so that the hub cap samples some rows
    src = np.r_[src[keep], np.zeros(n - 1, dtype=np.int64)]
    dst = np.r_[dst[keep], np.arange(1, n)]
    if not directed:
        src, dst = np.minimum(src, dst), np.maximum(src, dst)
        pairs = np.unique(src * n + dst)
        src, dst = pairs // n, pairs % n
    return Interactions.from_indices(src, dst, n_users=n, one_sided=True, directed=directed)


def same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("read_cost", [0, 10**9])
@pytest.mark.parametrize("name", ["adamic_adar", "resource_allocation", "jaccard"])
def test_one_users_pair_scores_are_the_batch_products(name, read_cost, monkeypatch):
    # READ_COST 0: the paths read from the user's middles; 10**9: from each candidate's row
    monkeypatch.setattr(sparse_rows, "READ_COST", read_cost)
    model = create_retriever(name, {"hub_cap": 20}).fit(graph())
    rng = np.random.default_rng(1)
    for user in (0, 3, 17, 40):
        for size in (5, 60):
            targets = rng.choice(model.n_items, size=size, replace=False)
            targets = np.r_[targets, targets[:2]]  # a candidate twice
            got = model.score_pairs(np.full(len(targets), user), targets)
            common = model.first_[np.full(len(targets), user)].multiply(model.expansion_t_[targets])
            sums = np.asarray(common.sum(axis=1), dtype=np.float32).ravel()
            want = model._normalise(sums, np.full(len(targets), user), targets)
            same_bits(got, want.astype(np.float32))
            assert (got > 0).any()


def test_explanations_read_the_paths_scipys_slice_gives():
    model = create_retriever("adamic_adar", {"hub_cap": 20}).fit(graph())
    rng = np.random.default_rng(2)
    for user in (0, 5, 33):
        middles = model.first_[user].indices
        candidates = rng.choice(model.n_items, size=12, replace=False)
        want = model.expansion_[middles][:, candidates].tocsc()
        indptr, rows, values = model._through(middles, candidates)
        np.testing.assert_array_equal(indptr, want.indptr)
        np.testing.assert_array_equal(rows, want.indices)
        same_bits(values, want.data)
        assert len(values)
        # and the reasons the explanations give are whole: the parts sum to the score
        explained = model.explain(user, candidates, None)
        for entry in explained:
            assert np.isclose(sum(entry.contributions), entry.score, rtol=1e-5)


def test_a_friendship_walk_reads_one_side_for_both():
    friends = graph(directed=False)
    model = create_retriever("ppr", {"hub_cap": 15}).fit(friends)
    assert model.symmetric_
    nodes = np.array([0, 2, 9, 30, 31])
    fast = model._neighbours(nodes)
    model.symmetric_ = False
    slow = model._neighbours(nodes)
    for a, b in zip(fast, slow, strict=True):
        same_bits(a, b)
    # the pushed scores are those of the union either way, bit for bit
    pushed = model.user_row(4)
    model.symmetric_ = True
    model._forget_walks()
    for a, b in zip(model.user_row(4), pushed, strict=True):
        same_bits(a, b)
    # a follow graph is not read so
    assert not create_retriever("ppr").fit(graph()).symmetric_


@pytest.mark.parametrize("name", ["adamic_adar", "common_neighbors", "resource_allocation"])
def test_one_users_list_from_its_own_paths_is_the_products(name):
    model = create_retriever(name, {"hub_cap": 20}).fit(graph())
    general = create_retriever(name, {"hub_cap": 20}).fit(graph())
    general._recommend_one = lambda *args: None  # the sparse product and sparse_top_k
    rng = np.random.default_rng(7)
    fast = 0
    for user in range(0, 80, 7):
        exclude = [rng.choice(80, size=5, replace=False)]
        for k in (3, 20, 79):
            fast += model._recommend_one(user, k, True, None) is not None
            for kwargs in ({}, {"exclude": exclude}, {"exclude_seen": False}):
                got = model.recommend([user], k, **kwargs)
                want = general.recommend([user], k, **kwargs)
                np.testing.assert_array_equal(got[0], want[0])
                same_bits(got[1], want[1])
    assert fast  # the request path was taken, and where it was not, the general one answered


def items_graph(seed: int = 3) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((40, 60)) < 0.15)
    return Interactions.from_indices(users, items, n_users=40, n_items=60)


def one_users_lists_are_the_batchs(model, user, k, exclude, allowed) -> list[np.ndarray]:
    """``user``'s top ``k`` alone (a request's path) and beside another user (the batch
    path) under each filter: the same ids and score bits. Returns the request's scores."""
    scores = []
    for kwargs in (
        {},
        {"exclude": exclude},
        {"exclude_seen": False},
        {"candidates": allowed},
        {"exclude": exclude, "candidates": np.flatnonzero(allowed)},
    ):
        got = model.recommend([user], k, **kwargs)
        batch_kwargs = dict(kwargs)
        if "exclude" in kwargs:  # the batch path: the user beside another
            batch_kwargs["exclude"] = [kwargs["exclude"][0], []]
        want = model.recommend([user, (user + 1) % model.n_users], k, **batch_kwargs)
        np.testing.assert_array_equal(got[0][0], want[0][0])
        same_bits(got[1][0], want[1][0])
        scores.append(got[1][0])
    return scores


@pytest.mark.parametrize("name", ["ease", "item_knn", "biased_mf"])
@pytest.mark.parametrize("account_graph", [False, True])
def test_one_users_masked_cut_is_the_general_paths(name, account_graph, monkeypatch):
    from recgraph.retrieval import score_kernels, walk_kernels

    data = graph(n=50) if account_graph else items_graph()
    try:
        model = create_retriever(name).fit(data)
    except Exception as exc:  # a model that does not handle account graphs
        pytest.skip(str(exc))
    walk_kernels.warm_up_top_row()  # what a ranking stage warms, whatever the model
    score_kernels.warm_up_masked_top()
    calls = []
    fused = score_kernels.masked_top
    monkeypatch.setattr(score_kernels, "masked_top", lambda *a: calls.append(1) or fused(*a))
    rng = np.random.default_rng(4)
    n = model.n_items
    model_scores = model._score  # a NaN in the row: masked as the general path masks it

    def with_nan(users):
        block = np.array(model_scores(users), dtype=np.float32)
        block[:, 1] = np.nan
        return block

    model._score = with_nan
    allowed = rng.random(n) < 0.7
    for user in (0, 5, 17, 31):
        exclude = [rng.choice(n, size=4, replace=False)]
        for k in (1, 5, 20, n + 3):
            one_users_lists_are_the_batchs(model, user, k, exclude, allowed)
    assert calls  # the compiled request path answered


@pytest.mark.parametrize("name", ["ease", "ppr"])
def test_one_users_pair_scores_are_the_batchs(name):
    model = create_retriever(name).fit(graph(n=50))
    rng = np.random.default_rng(5)
    for user in (0, 7, 21):
        targets = rng.choice(model.n_items, size=30)  # a target twice, now and then
        got = model.score_pairs(np.full(len(targets), user), targets)
        users = np.r_[np.full(len(targets), user), [3, 4]]
        want = model.score_pairs(users, np.r_[targets, [1, 2]])[: len(targets)]
        same_bits(got, want)
        assert (got != 0).any()


@pytest.mark.parametrize("name", ["ppr", "salsa", "pixie"])
def test_one_users_walk_list_is_the_batchs_short_or_not(name):
    rng = np.random.default_rng(8)
    if name == "pixie":
        users, items = np.nonzero(rng.random((40, 200)) < 0.02)
        data = Interactions.from_indices(users, items, n_users=40, n_items=200)
    else:  # sparse, no hub: many walks reach fewer accounts than asked
        src, dst = np.nonzero(rng.random((150, 150)) < 0.015)
        keep = src != dst
        data = Interactions.from_indices(
            src[keep], dst[keep], n_users=150, one_sided=True, directed=True
        )
    try:
        model = create_retriever(name).fit(data)
    except Exception as exc:  # a model that does not handle this graph
        pytest.skip(str(exc))
    n = model.n_items
    allowed = rng.random(n) < 0.6
    short = 0
    for user in range(0, model.n_users, 5):
        reached = len(model.cached_row(user)[0])
        exclude = [rng.choice(n, size=6, replace=False)]
        for k in (2, max(1, reached // 2), reached + 4, n + 3):
            for got in one_users_lists_are_the_batchs(model, user, k, exclude, allowed):
                short += bool((got == 0).any())
    assert short  # some lists were filled with zero-score targets


def masked_top_k(values, seen, self_index, exclude, allowed, k):
    """The numpy path of one row: masked as ``Retriever._mask_scores`` masks it, then
    :func:`top_k` (a copy, a partition and a stable sort)."""
    row = np.array(values, dtype=np.float32, copy=True)
    row[np.isnan(row)] = -np.inf
    row[seen] = -np.inf
    if self_index >= 0:
        row[self_index] = -np.inf
    row[exclude] = -np.inf
    if len(allowed):
        row[~allowed] = -np.inf
    ids, scores = top_k(row[None, :], k)
    return ids[0], scores[0]


def test_the_radix_cut_is_the_masked_numpy_top_k():
    from recgraph.retrieval import score_kernels

    rng = np.random.default_rng(9)
    empty = np.zeros(0, np.int64)
    for n in (1, 7, 300, 5000):
        for kind in ("spread", "ties", "signs"):
            if kind == "spread":
                row = rng.random(n).astype(np.float32)
            elif kind == "ties":  # a boundary bucket of equal keys; zeros both signs
                row = rng.choice(np.float32([0.5, 0.25, 0.0, -0.0, 0.125]), size=n)
            else:
                row = rng.normal(size=n).astype(np.float32) * 1e3
                row[rng.random(n) < 0.1] = np.inf
                row[rng.random(n) < 0.1] = -np.inf
                row[rng.random(n) < 0.1] = np.nan
            seen = rng.choice(n, size=n // 4, replace=False).astype(np.int64)
            extra = rng.choice(n, size=min(n, 3)).astype(np.int64) - n // 2  # some negative
            for allowed in (np.zeros(0, bool), rng.random(n) < 0.5):
                for k in (1, 2, 10, n // 3 + 1, n + 5):
                    args = (row, seen, np.int64(n // 2), extra, allowed, k)
                    want = masked_top_k(*args)
                    got = score_kernels.masked_top(*args)
                    np.testing.assert_array_equal(got[0], want[0])
                    same_bits(got[1], want[1])
    for bad in (np.array([n], np.int64), np.array([-n - 1], np.int64)):
        with pytest.raises(IndexError):
            score_kernels.masked_top(row, bad, np.int64(-1), empty, np.zeros(0, bool), 3)
