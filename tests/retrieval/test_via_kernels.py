"""item-kNN's served reason read from the similarity rows in one pass (``via_kernels``) picks
what the dense block and its compiled pick pick: the same positions, order and counts, with
ties, negatives, zeros and NaNs, by the table lookup or the binary search."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.retrieval import explanation_kernels, via_kernels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dense", [0, 10**6])
def test_rows_pass_picks_what_the_block_picks(seed, dense):
    rng = np.random.default_rng(seed)
    n_items = 40
    values = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan], size=(n_items, n_items))
    values[rng.random((n_items, n_items)) < 0.5] = 0.0
    similarity = sp.csr_matrix(values.astype(np.float32))
    similarity.data[rng.random(similarity.nnz) < 0.1] = 0.0  # stored zeros too
    assert similarity.has_canonical_format
    liked = np.sort(rng.choice(n_items, size=12, replace=False)).astype(np.int32)
    weights = rng.choice([0.5, 1.0, 3.0], size=len(liked)).astype(np.float32)
    candidates = rng.choice(n_items, size=9, replace=False).astype(np.int64)
    block = similarity[liked][:, candidates].toarray() * weights[:, None]
    for top in (1, 3, 16):
        want = explanation_kernels.top_positive_block(block, top)
        got = via_kernels.top_positive_rows(
            similarity.indptr,
            similarity.indices,
            similarity.data,
            liked,
            weights,
            candidates,
            top,
            n_items,
            dense,
        )
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
