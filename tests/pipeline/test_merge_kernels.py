"""The compiled merge gives numpy's merge bit for bit: items, scores, sources, origins and
provenance, ties and repeated items included."""

import numpy as np
import pytest

from recgraph.pipeline import merge


def _both(ids, scores, sources, rule, provenance):
    try:
        merge.COMPILED = True
        fast = merge._merge(ids, scores, sources, rule, provenance)
        merge.COMPILED = False
        plain = merge._merge(ids, scores, sources, rule, provenance)
    finally:
        merge.COMPILED = True
    return fast, plain


def _assert_same(fast, plain):
    for a, b in zip(fast[:4], plain[:4], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert len(fast[4]) == len(plain[4])
    for (rank_a, score_a), (rank_b, score_b) in zip(fast[4], plain[4], strict=True):
        np.testing.assert_array_equal(rank_a, rank_b)
        np.testing.assert_array_equal(score_a, score_b)  # NaN where absent, on both


@pytest.mark.parametrize("method", ["rrf", "score", "priority"])
def test_compiled_merge_is_numpys_merge(method):
    rng = np.random.default_rng(7)
    for _ in range(400):
        n, lists = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        ids, scores, sources = [], [], []
        for _ in range(lists):
            width = int(rng.integers(0, 8))
            ids.append(rng.integers(-1, 10, (n, width)))  # repeats and gaps
            dtype = np.float32 if rng.random() < 0.5 else np.float64
            scores.append(rng.choice([0.25, 0.5, 1.0, 2.0], (n, width)).astype(dtype))  # ties
            sources.append(rng.integers(0, 8, (n, width)))
        weights = None if rng.random() < 0.5 else list(rng.choice([0.5, 1.0, 2.0], lists))
        rule = merge.MergeRule(int(rng.integers(1, 12)), method, weights, 60.0)
        for provenance in (False, True):
            _assert_same(*_both(ids, scores, sources, rule, provenance))


def test_a_nan_score_is_merged_by_numpy():
    ids = [np.array([[1, 2, 3]]), np.array([[3, 2]])]
    scores = [np.array([[np.nan, 1.0, 0.5]]), np.array([[2.0, np.inf]])]
    sources = [np.array([[1, 1, 1]]), np.array([[2, 2]])]
    rule = merge.MergeRule(3, "score", None, 60.0)
    from recgraph.pipeline.merge_kernels import merge_rows

    assert merge_rows((ids, scores, sources), rule, True) is None
    _assert_same(*_both(ids, scores, sources, rule, True))


@pytest.mark.parametrize("compiled", [True, False])
def test_weights_not_one_per_list_are_refused_both_ways(compiled):
    ids = [np.array([[1, 2]]), np.array([[2, 3]])]
    scores = [np.array([[0.5, 0.25]]), np.array([[0.75, 0.5]])]
    sources = [np.zeros((1, 2), np.int64), np.ones((1, 2), np.int64)]
    rule = merge.MergeRule(k=3, method="rrf", weights=[1.0])
    try:
        merge.COMPILED = compiled
        with pytest.raises(ValueError):
            merge._merge(ids, scores, sources, rule)
    finally:
        merge.COMPILED = True


def test_pool_ranks_are_numpys_stable_ranks():
    from recgraph.pipeline.merge_kernels import pool_ranks

    rng = np.random.default_rng(11)
    full = rng.integers(0, 6, size=(7, 40)).astype(np.float64)  # many ties
    full[rng.random(full.shape) < 0.3] = -np.inf  # no candidate there
    full[2, 5] = -0.0  # equal to 0.0: a tie, by column
    full[3] = -np.inf  # a user with an empty pool
    order = np.argsort(-full, axis=1, kind="stable")
    want = np.empty_like(order)
    np.put_along_axis(want, order, np.arange(1, full.shape[1] + 1)[None, :], axis=1)
    np.testing.assert_array_equal(pool_ranks(full), want)
    full[4, 4] = np.nan  # declined: numpy ranks
    assert pool_ranks(full) is None
