"""The request path's dense gathers are numpy's multi-index gathers, value for value."""

import numpy as np
import pytest

from recgraph.ranking.item_history import gather


@pytest.mark.parametrize("shape", [(7, 5), (40, 33), (3, 0), (0, 4)])
def test_gather_is_the_multi_index_gather(shape):
    rng = np.random.default_rng(sum(shape))
    dense = rng.random(shape).astype(np.float32)
    for _ in range(20):
        rows = rng.integers(0, max(shape[0], 1), rng.integers(0, 12)) if shape[0] else []
        cols = rng.integers(0, max(shape[1], 1), rng.integers(0, 9)) if shape[1] else []
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        want = dense[np.ix_(rows, cols)]
        got = gather(dense, rows, cols)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(gather(dense, None, cols), dense[:, cols])
