"""The compiled pick of a reason's history items: each column's ``top`` positive values, best
first, exactly as a stable sort of the negated column cut to ``top`` and kept where positive."""

import numpy as np
import pytest

from recgraph.retrieval.explanation_kernels import (
    split_cited,
    top_positive_block,
    top_positive_dense,
)


def _reference(block: np.ndarray, top: int) -> list[list[int]]:
    order = np.argsort(-block, axis=0, kind="stable")[:top]
    values = np.take_along_axis(block, order, axis=0)
    return [order[:, j][values[:, j] > 0].tolist() for j in range(block.shape[1])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("top", [0, 1, 3, 11, 100])
def test_the_pick_is_the_stable_sorts_positive_top(dtype, top):
    rng = np.random.default_rng(3)
    for _ in range(30):
        n_rows, n_columns = rng.integers(0, 25), rng.integers(0, 12)
        # few distinct values: many ties; zeros, negative zeros, negatives and NaN too
        block = rng.integers(-3, 4, (n_rows, n_columns)).astype(dtype) / dtype(4)
        block[rng.random(block.shape) < 0.05] = np.nan
        block[rng.random(block.shape) < 0.05] = -0.0
        picked, counts = top_positive_block(block, top)
        got = split_cited(np.arange(n_rows), picked, counts)
        assert got == _reference(block, top)


def test_the_dense_read_multiplies_as_numpy_does():
    """``weights[rows][:, columns] * strength``, in float32 as numpy multiplies float32."""
    rng = np.random.default_rng(4)
    weights = (rng.random((40, 40)) - 0.3).astype(np.float32)
    rows = rng.choice(40, 15, replace=False)
    columns = rng.choice(40, 8, replace=False)
    strength = rng.integers(1, 6, 15).astype(np.float32) / np.float32(3)
    picked, counts = top_positive_dense(weights, rows, columns, strength, 5)
    block = weights[np.ix_(rows, columns)] * strength[:, None]
    liked = np.arange(100, 115)
    assert split_cited(liked, picked, counts) == [
        liked[via].tolist() for via in _reference(block, 5)
    ]
    assert sum(map(len, split_cited(liked, picked, counts))) > 0
