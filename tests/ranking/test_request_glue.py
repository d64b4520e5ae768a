"""A request's cheaper glue gives the arrays of the numpy it replaced, bit for bit."""

import numpy as np
import scipy.sparse as sp

from recgraph.data.sparse_rows import divided
from recgraph.pipeline.ranking import _own_order
from recgraph.ranking.features import RetrieverColumns
from recgraph.ranking.item_history import HistoryProducts


def _bits(a: np.ndarray) -> list:
    return a.view(np.uint8).tolist()


def test_divided_is_where_of_the_division():
    rng = np.random.default_rng(0)
    num = rng.normal(size=50)
    den = rng.normal(size=50)
    den[:5] = [0.0, -0.0, np.nan, np.inf, -np.inf]
    num[5:8] = [np.nan, np.inf, 0.0]
    for fill in (0.0, np.nan):
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(den > 0, num / den, fill)
        got = divided(num, den, fill)
        assert got.dtype == expected.dtype and _bits(got) == _bits(expected)
    # other dtypes: numpy's own result type
    small = divided(num.astype(np.float32), den.astype(np.float32), 0.0)
    assert small.dtype == np.float32


def test_own_order_is_nan_to_num():
    ranks = np.array([0, 3, 0, 1, 0, 0, 2])
    for dtype in (np.float64, np.float32):
        scores = np.array([np.nan, 0.5, np.inf, -np.inf, -0.0, 7.0, np.nan], dtype=dtype)
        expected = np.where(ranks > 0, -ranks.astype(np.float64), -1e9)
        expected = expected + np.nan_to_num(scores, nan=-1e9) * 1e-12
        got = _own_order(RetrieverColumns(scores=scores, ranks=ranks, user_best=scores))
        assert got.dtype == expected.dtype and _bits(got) == _bits(expected)


def test_history_sizes_of_a_request_and_a_batch():
    history = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=np.float32))
    neighbours = sp.csr_matrix(np.eye(3, dtype=np.float32))
    for users in (np.array([2, 2, 2]), np.array([1, 1]), np.array([0, 1, 2, 0])):
        products = HistoryProducts(
            users, np.arange(len(users)) % 3, neighbours, None, neighbours, [history]
        )
        expected = np.maximum(history.indptr[users + 1] - history.indptr[users], 1)
        got = products.sizes(history)
        assert got.dtype == expected.dtype and (got == expected).all()


def test_divided_takes_an_integer_fill():
    """An ``int`` fill still gives float ratios (the output is float64 whatever ``fill`` is)."""
    out = divided(np.array([1.0, 3.0]), np.array([2.0, 0.0]), 0)
    assert out.dtype == np.float64
    assert out.tolist() == [0.5, 0.0]
