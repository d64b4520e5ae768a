"""The tests every index type passes, against exact search on clustered random data.

A test module does::

    class TestMyIndex(IndexConformance):
        index_name = "my_index"
        params = {...}           # small and fast
        recall_floor = 0.9       # recall@10 against exact search, per metric
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.errors import InputError, NotFittedError
from recgraph.index import Index, create_index, load_index
from recgraph.index.synthetic import clustered_embeddings

N_ITEMS = 3000
DIM = 16
N_QUERIES = 60
K = 10


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true ids (``-1`` ignored) that ``found`` holds."""
    shares = []
    for got, want in zip(found, truth, strict=True):
        want = set(want[want >= 0].tolist())
        if want:
            shares.append(len(want & set(got.tolist())) / len(want))
    return float(np.mean(shares))


class IndexConformance:
    index_name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    #: recall@10 against exact search that the type must reach on the test data
    recall_floor: ClassVar[float] = 0.9
    #: whether results equal exact search (ids and scores)
    exact: ClassVar[bool] = False

    # ------------------------------------------------------------------ helpers
    @pytest.fixture(scope="class")
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return clustered_embeddings(N_ITEMS, DIM, n_queries=N_QUERIES, n_clusters=12, seed=7)

    def make(self, metric: str = "ip", **extra: Any) -> Index:
        return create_index(self.index_name, {**self.params, **extra}, metric=metric)

    @pytest.fixture(scope="class", params=["ip", "l2"])
    def built(self, request, embeddings) -> tuple[Index, Index, np.ndarray]:
        """(this index, the exact index, queries) for one metric, built once per class."""
        items, queries = embeddings
        metric = request.param
        return (
            self.make(metric).build(items),
            create_index("exact", metric=metric).build(items),
            queries,
        )

    # ------------------------------------------------------------------ quality
    def test_recall_against_exact_search(self, built):
        index, exact, queries = built
        ids, scores = index.search(queries, K)
        true_ids, true_scores = exact.search(queries, K)
        recall = recall_at_k(ids, true_ids)
        assert recall >= self.recall_floor, f"{index}: recall@10 {recall:.3f}"
        if self.exact:
            np.testing.assert_array_equal(ids, true_ids)
            np.testing.assert_allclose(scores, true_scores, rtol=1e-4, atol=1e-4)

    def test_scores_are_the_metric_best_first(self, built, embeddings):
        index, _, queries = built
        items, _ = embeddings
        ids, scores = index.search(queries[:5], K)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        assert (np.diff(scores, axis=1) <= 1e-5).all(), "scores must not increase"
        vectors = items[ids]
        if index.metric == "ip":
            expected = np.einsum("qkd,qd->qk", vectors, queries[:5])
        else:
            expected = -((vectors - queries[:5, None, :]) ** 2).sum(axis=2)
        # re-ranked or exact scores; quantized ones are close
        np.testing.assert_allclose(scores, expected, rtol=0.05, atol=0.05)

    # ------------------------------------------------------------------ exclusions
    def test_per_query_exclusions_are_never_returned(self, built):
        index, exact, queries = built
        true_ids, _ = exact.search(queries, 3 * K)
        # the hardest case: each query excludes its own 2k nearest items
        banned = [row[: 2 * K].tolist() for row in true_ids]
        ids, scores = index.search(queries, K, exclude=banned)
        for row, excluded in zip(ids, banned, strict=True):
            assert not set(row.tolist()) & set(excluded)
            valid = row[row >= 0]
            assert len(set(valid.tolist())) == len(valid), "duplicate ids"
        assert (ids >= 0).mean() >= 0.9, "exclusions must not empty the results"
        expected, _ = exact.search(queries, K, exclude=banned)
        assert recall_at_k(ids, expected) >= self.recall_floor - 0.1
        if self.exact:
            np.testing.assert_array_equal(ids, expected)

    def test_exclusions_as_a_sparse_matrix(self, built):
        index, _, queries = built
        rng = np.random.default_rng(1)
        mask = sp.random(len(queries), index.n_items, density=0.2, random_state=rng, format="csr")
        ids, _ = index.search(queries, K, exclude=mask)
        dense = mask.toarray() != 0
        rows = np.repeat(np.arange(len(queries))[:, None], K, axis=1)
        hit = ids >= 0
        assert not dense[rows[hit], ids[hit]].any()
        assert hit.mean() >= 0.9

    def test_allowed_mask_and_exclusions_together(self, built):
        index, exact, queries = built
        rng = np.random.default_rng(2)
        allowed = rng.random(index.n_items) < 0.3
        banned = [rng.choice(index.n_items, 50, replace=False).tolist() for _ in queries]
        ids, _ = index.search(queries, K, exclude=banned, allowed=allowed)
        for row, excluded in zip(ids, banned, strict=True):
            valid = row[row >= 0]
            assert allowed[valid].all()
            assert not set(valid.tolist()) & set(excluded)
        expected, _ = exact.search(queries, K, exclude=banned, allowed=allowed)
        assert recall_at_k(ids, expected) >= self.recall_floor - 0.15

    def test_allowed_ids_fewer_than_k_pad_with_minus_one(self, built):
        index, _, queries = built
        allowed = np.array([3, 77, 1500])
        ids, scores = index.search(queries[:4], K, allowed=allowed)
        assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())
        assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
        assert np.isneginf(scores[ids < 0]).all()
        if self.exact:
            assert (ids[:, :3] >= 0).all()

    def test_k_beyond_the_items_pads(self, embeddings):
        items, queries = embeddings
        small = self.make().build(items[:7])
        ids, scores = small.search(queries[:2], 12)
        assert ids.shape == (2, 12)
        assert (ids[:, 7:] == -1).all() and np.isneginf(scores[:, 7:]).all()
        assert all(set(r[r >= 0].tolist()) <= set(range(7)) for r in ids)

    # ------------------------------------------------------------------ interface
    def test_one_query_as_a_vector(self, built):
        index, _, queries = built
        one_ids, one_scores = index.search(queries[0], K)
        assert one_ids.shape == (1, K)
        assert one_ids[0, 0] >= 0

    def test_bad_input_names_the_field(self, built):
        index, _, queries = built
        with pytest.raises(InputError, match="queries"):
            index.search(queries[:, :5], K)
        bad = queries[:2].copy()
        bad[1, 0] = np.nan
        with pytest.raises(InputError, match="row 1"):
            index.search(bad, K)
        with pytest.raises(InputError, match="allowed"):
            index.search(queries, K, allowed=np.ones(5, bool))
        with pytest.raises(ValueError, match="k must be"):
            index.search(queries, 0)

    def test_search_before_build_is_an_error(self):
        with pytest.raises(NotFittedError):
            self.make().search(np.zeros((1, DIM), np.float32), K)

    def test_save_and_load_give_the_same_results(self, built, tmp_path):
        index, _, queries = built
        folder = index.save(tmp_path / "index")
        loaded = load_index(folder)
        assert type(loaded) is type(index)
        assert (loaded.n_items, loaded.dim, loaded.metric) == (
            index.n_items,
            index.dim,
            index.metric,
        )
        assert loaded.config == index.config
        banned = [[0, 1, 2]] * len(queries)
        for kwargs in ({}, {"exclude": banned}):
            want_ids, want_scores = index.search(queries, K, **kwargs)
            got_ids, got_scores = loaded.search(queries, K, **kwargs)
            np.testing.assert_array_equal(got_ids, want_ids)
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)
        assert not any(p.suffix == ".pkl" for p in folder.rglob("*")), "never pickle"
