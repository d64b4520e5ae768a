"""The compiled sparse-row reads (recgraph.data.row_kernels) pinned to scipy's products,
bit for bit, over both reads (forward, transposed), both lookups (table, search), both
float dtypes and both index dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data import row_kernels, sparse_rows
from recgraph.data.sparse_rows import pair_sums_by, pair_sums_rows, row_products


def _matrix(rng, n, dtype, index, zeros=False) -> sp.csr_matrix:
    matrix = sp.random(
        n, n, density=rng.uniform(0.02, 0.3), format="csr", dtype=dtype,
        random_state=int(rng.integers(1 << 30)),
    )  # fmt: skip
    matrix.data = (matrix.data * 3 - 1).astype(dtype)  # negatives too
    if zeros and matrix.nnz:
        matrix.data[rng.random(matrix.nnz) < 0.2] = 0  # stored zeros: their products drop
    matrix.sort_indices()
    matrix.indptr, matrix.indices = matrix.indptr.astype(index), matrix.indices.astype(index)
    return matrix


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_row_products_are_scipys_product(dtype, index) -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(5, 300))
        matrix = _matrix(rng, n, dtype, index, zeros=trial % 3 == 0)
        transposed = matrix.T.tocsr()
        transposed.sort_indices()
        user = int(rng.integers(n))
        items = rng.choice(n, int(rng.integers(1, n)), replace=trial % 4 == 0)
        want = matrix[[user] * len(items)].multiply(matrix[items]).tocsr()
        for other in (None, transposed):
            indptr, columns, data = row_products(matrix, user, matrix, items, other)
            assert np.array_equal(indptr, want.indptr)
            assert np.array_equal(columns, want.indices)
            assert data.dtype == want.dtype and data.tobytes() == want.data.tobytes()


def test_request_path_reads_the_kernels(monkeypatch) -> None:
    """The pins above read the compiled kernels, not numpy's fallback (other dtypes)."""
    called = []
    real = row_kernels.request_products
    monkeypatch.setattr(row_kernels, "request_products", lambda *a: called.append(1) or real(*a))
    rng = np.random.default_rng(1)
    matrix = _matrix(rng, 200, np.float32, np.int32)
    transposed = matrix.T.tocsr()
    row_products(matrix, 3, matrix, np.arange(0, 200, 2), None)
    row_products(matrix, 3, matrix, np.arange(0, 200, 2), transposed)
    assert len(called) == 2
    assert sparse_rows._compiled(matrix.data[:1], matrix, transposed)
    assert not sparse_rows._compiled(matrix.data[:1].astype(np.float64), matrix, None)


@pytest.mark.parametrize("dense", [True, False])
def test_each_read_and_lookup_is_scipys_product(dense) -> None:
    """Both reads and both lookups, whichever ``request_products`` would choose."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        n = int(rng.integers(5, 200))
        matrix = _matrix(rng, n, np.float32, np.int32, zeros=True)
        transposed = matrix.T.tocsr()
        user = int(rng.integers(n))
        items = rng.choice(n, int(rng.integers(1, n)), replace=False).astype(np.int64)
        want = matrix[[user] * len(items)].multiply(matrix[items]).tocsr()
        lo, hi = matrix.indptr[user], matrix.indptr[user + 1]
        cols, values = matrix.indices[lo:hi].astype(np.int64), matrix.data[lo:hi]
        reads = (
            row_kernels.forward_products(
                cols, values, matrix.indptr, matrix.indices, matrix.data, items, n, dense
            ),
            row_kernels.transposed_products(
                cols, values, transposed.indptr, transposed.indices, transposed.data, items,
                np.argsort(items), n, dense,
            ),
        )  # fmt: skip
        for indptr, columns, data in reads:
            assert np.array_equal(indptr, want.indptr)
            assert np.array_equal(columns, want.indices)
            assert data.tobytes() == want.data.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pattern", ["plain+2", "2+plain", "plain", "1", "plain+f32"])
def test_weighted_pair_sums_are_scipys(dtype, pattern) -> None:
    """Every weighting of a request in one compiled call (or numpy's, for a float32
    weighting) gives scipy's sums, whatever their order."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(5, 250))
        matrix = _matrix(rng, n, dtype, np.int32, zeros=True)
        items = rng.choice(n, int(rng.integers(1, n)), replace=False)
        users = np.full(len(items), int(rng.integers(n)))
        first, second = rng.random(n), 1 / np.log(2 + rng.integers(0, 40, n))
        weights = {
            "plain+2": (None, first, second),
            "2+plain": (second, None, first),
            "plain": (None,),
            "1": (first,),
            "plain+f32": (None, second.astype(np.float32)),
        }[pattern]
        if pattern == "plain+f32" and dtype == np.float32:
            with pytest.raises(TypeError, match="float64 weights"):
                pair_sums_rows(matrix, users, matrix, items, weights)
            continue
        got = pair_sums_rows(matrix, users, matrix, items, weights, transposed=matrix.T.tocsr())
        want = pair_sums_by(matrix[users], matrix[items], weights)
        for a, b in zip(got, want, strict=True):
            assert a.tobytes() == b.astype(np.float64).tobytes()


def test_warm_up_compiles_every_signature_once() -> None:
    row_kernels.warm_up()
    for function in (
        row_kernels.forward_products,
        row_kernels.transposed_products,
        row_kernels.request_products,
    ):
        assert len(function.signatures) >= 4
    assert len(row_kernels.row_sums_by.signatures) >= 2  # float32, float64 products
