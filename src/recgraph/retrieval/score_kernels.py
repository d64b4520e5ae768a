"""One user's row of a sparse matrix times an item-side matrix, compiled, to scipy's bits.

EASE and item-kNN score a request's user as ``X[u] @ B`` (``B`` dense for
EASE, sparse for item-kNN). For one row, scipy spent more on selecting it
(``X[[u]]``: fancy indexing, index dtype checks, a new matrix) and
dispatching the product than on the product (~0.3 CPU ms of a MovieLens
request for the two). :func:`row_times_dense` and :func:`row_times_sparse`
read the row in place and add ``X[u, j] * B[j, k]`` into ``out[k]`` entry by
entry in the row's order, from zero, as scipy's ``csr_matvecs`` and
``csr_matmat`` do (one multiply, one add, each rounded: no fused
multiply-add), so the scores are the same floats; a sum that is exactly zero
reads as scipy's dropped entry does (``+0.0``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.compiled import kernel

#: Operand dtypes the kernels take (both the same); scipy's product otherwise.
SAME_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@kernel
def row_times_dense(indptr, indices, data, user, dense, out):
    """``out += X[user] @ dense`` (``X`` as CSR arrays), entry by entry in row order."""
    for jj in range(indptr[user], indptr[user + 1]):
        value = data[jj]
        row = indices[jj]
        for k in range(dense.shape[1]):
            out[k] += value * dense[row, k]


@kernel
def row_times_sparse(indptr, indices, data, user, b_indptr, b_indices, b_data, out):
    """``out += X[user] @ B`` (both as CSR arrays), entry by entry in row order."""
    for jj in range(indptr[user], indptr[user + 1]):
        value = data[jj]
        row = indices[jj]
        for kk in range(b_indptr[row], b_indptr[row + 1]):
            out[b_indices[kk]] += value * b_data[kk]


def one_row_product(matrix: sp.csr_matrix, user: int, other) -> np.ndarray | None:
    """``(matrix[[user]] @ other)`` as a ``(1, n)`` array (``other`` dense or CSR), or
    ``None`` where scipy's product must answer (other dtypes; a ``user`` outside
    ``[0, rows)``: scipy counts a negative one from the end and refuses one too large).
    Entries are read in their stored order, as scipy reads them (duplicates add, unsorted
    rows are fine)."""
    if matrix.dtype not in SAME_FLOATS or other.dtype != matrix.dtype:
        return None
    if not 0 <= user < matrix.shape[0]:  # the kernels read indptr[user] unchecked
        return None
    out = np.zeros(other.shape[1], dtype=matrix.dtype)
    if isinstance(other, np.ndarray):
        row_times_dense(matrix.indptr, matrix.indices, matrix.data, user, other, out)
    elif sp.issparse(other) and other.format == "csr":
        row_times_sparse(
            matrix.indptr, matrix.indices, matrix.data, user,
            other.indptr, other.indices, other.data, out,
        )  # fmt: skip
    else:
        return None
    return out[None, :]


def warm_up(matrix: sp.csr_matrix, other) -> None:
    """Compile (or read from numba's cache) the kernel for these very arrays (their dtypes,
    and whether they are read-only), so a loaded model's first request does not."""
    if matrix.shape[0]:
        one_row_product(matrix, 0, other)
