"""One user's row times an item-side matrix, compiled, gives scipy's product bit for bit."""

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.retrieval.score_kernels import one_row_product


def _rows(dtype, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(30, 50, density=0.2, format="csr", dtype=dtype, random_state=seed)
    matrix.data = (matrix.data * 10 - 3).astype(dtype)  # signs: sums that cancel
    # an unsorted row with a repeated column (entries read in their stored order)
    lo, hi = matrix.indptr[3], matrix.indptr[4]
    matrix.indices[lo:hi] = matrix.indices[lo:hi][::-1]
    if hi - lo > 1:
        matrix.indices[lo] = matrix.indices[lo + 1]
    matrix._has_canonical_format = False
    return matrix, rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_row_times_dense_and_sparse_is_scipys(dtype):
    matrix, rng = _rows(dtype, 1)
    dense = rng.normal(size=(50, 40)).astype(dtype)
    other = sp.random(50, 40, density=0.3, format="csr", dtype=dtype, random_state=2)
    for user in range(matrix.shape[0]):
        fast = one_row_product(matrix, user, dense)
        expected = np.asarray(matrix[[user]] @ dense)
        assert fast.dtype == expected.dtype and fast.tobytes() == expected.tobytes()
        fast = one_row_product(matrix, user, other)
        expected = (matrix[[user]] @ other).toarray()
        assert fast.dtype == expected.dtype and fast.tobytes() == expected.tobytes()


def test_other_dtypes_are_left_to_scipy():
    matrix, _ = _rows(np.float32, 0)
    assert one_row_product(matrix, 0, np.ones((50, 3), np.float64)) is None


def test_a_user_outside_the_rows_is_left_to_scipy():
    """The kernels read ``indptr[user]`` unchecked: a negative user (scipy counts it from the
    end) or one past the rows (scipy refuses it) gets ``None``, and scipy answers."""
    matrix, rng = _rows(np.float64, 3)
    dense = rng.normal(size=(50, 4))
    for user in (-1, -matrix.shape[0], matrix.shape[0], matrix.shape[0] + 5):
        assert one_row_product(matrix, user, dense) is None
    assert one_row_product(matrix, matrix.shape[0] - 1, dense) is not None
