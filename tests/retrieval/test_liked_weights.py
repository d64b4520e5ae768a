"""``liked_weights``: a user's row of a matrix cut to what the user liked, as ``np.isin`` cuts it,
whether the liked rows are sorted (one search) or not (``np.isin``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.retrieval import create_retriever


def fitted():
    rng = np.random.default_rng(3)
    users, items = np.nonzero(rng.random((30, 25)) < 0.3)
    return create_retriever("item_knn").fit(
        Interactions.from_indices(users, items, n_users=30, n_items=25)
    )


def liked_subset(model, sorted_rows: bool) -> sp.csr_matrix:
    seen = model.seen_matrix()
    rng = np.random.default_rng(4)
    keep = rng.random(seen.nnz) < 0.5
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))[keep]
    cut = sp.csr_matrix((np.ones(keep.sum()), (rows, seen.indices[keep])), shape=seen.shape)
    cut.sort_indices()
    if not sorted_rows:  # each row's entries reversed: the same sets, unsorted
        for user in range(cut.shape[0]):
            lo, hi = cut.indptr[user], cut.indptr[user + 1]
            cut.indices[lo:hi] = cut.indices[lo:hi][::-1].copy()
        cut = sp.csr_matrix((cut.data, cut.indices, cut.indptr), shape=cut.shape)
        assert not cut.has_sorted_indices
    return cut


@pytest.mark.parametrize("sorted_rows", [True, False])
def test_liked_weights_keep_what_isin_keeps(sorted_rows):
    model = fitted()
    model._liked = liked_subset(model, sorted_rows)
    for user in range(model.n_users):
        row = model.matrix_[user]
        keep = np.isin(row.indices, model.liked_items(user))
        got_user, liked, weights = model.liked_weights(np.int64(user), model.matrix_)
        assert got_user == user and type(got_user) is int
        np.testing.assert_array_equal(liked, row.indices[keep])
        np.testing.assert_array_equal(weights, row.data[keep])
    for bad in (-1, model.n_users):
        with pytest.raises(IndexError, match="outside"):
            model.liked_weights(bad, model.matrix_)
