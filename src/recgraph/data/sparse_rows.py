"""Sparse-row arithmetic that serving shares: a request's user row against many
candidates, read once (``row_products``), and the batch forms scipy gives.

The candidate features (:mod:`recgraph.ranking.features`) and the two-hop
retrievers' pair scores (:mod:`recgraph.retrieval.neighborhood`) both read
them, so they live below both. Every function here is exact (the request
path's sums are bit-identical to scipy's row-by-row products,
tests/ranking/test_request_features.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recgraph.data.kernel_inputs import KERNEL_FLOATS, KERNEL_INDICES, frozen
from recgraph.data.ranges import expand_ranges
from recgraph.data.sorted_keys import find_sorted


def binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def l2_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Rows scaled to unit length (empty rows stay empty)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix, dtype=np.float32)


def pair_sums(left: sp.csr_matrix, right: sp.csr_matrix, weights: np.ndarray | None = None):
    """``sum_w left[i, w] * right[i, w] * weights[w]`` for every row ``i``."""
    return pair_sums_by(left, right, (weights,))[0]


def pair_sums_by(
    left: sp.csr_matrix, right: sp.csr_matrix, weightings: Sequence[np.ndarray | None]
) -> list[np.ndarray]:
    """:func:`pair_sums` under each weighting (``None``: a plain count), one product for all."""
    both = left.multiply(right)
    out = []
    for weights in weightings:
        weighted = both if weights is None else both.multiply(weights[None, :])
        out.append(np.asarray(weighted.sum(axis=1), dtype=np.float64).ravel())
    return out


def row_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``matrix.data`` of the entries of ``rows`` in turn, and the row number of each."""
    starts = matrix.indptr[rows].astype(np.int64)
    return expand_ranges(starts, matrix.indptr[rows + 1].astype(np.int64) - starts)


#: What reading the product from the transposed side pays per entry it reads, in entries
#: the forward read (each candidate's row against the user's) reads: both look entries up
#: in a table and gather, the transposed read sorts its hits too (measured on MovieLens and
#: ego-Facebook requests: 1 is as good as any).
READ_COST = 1
#: :func:`row_products` finds candidates by a table over every item when there are at most
#: this many items per entry it reads (else by a search in the sorted candidates).
DENSE_LOOKUP = 8


def one_user(users: np.ndarray) -> int | None:
    """The user of every row when there is one (a request), else ``None``."""
    return int(users[0]) if len(users) and (users == users[0]).all() else None


def row_products(
    user_side: sp.csr_matrix,
    user: int,
    item_side: sp.csr_matrix,
    items: np.ndarray,
    transposed: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``user_side[[user] * m].multiply(item_side[items])`` as CSR arrays ``(indptr, indices, data)``.

    A request ranks one user's few hundred candidates: slicing that user's
    row once per candidate and multiplying two sparse matrices made most of
    a request's feature cost. Here the user's row is read once, and the
    product from whichever end reads less: for each column of the user's
    row, the candidates that have it, from ``transposed``
    (``item_side.T.tocsr()``, when the caller keeps one; work in the size of
    the user's neighbourhood), or each candidate's row searched in the
    user's (work in the size of the candidates' rows; also when a candidate
    repeats). When both operands are
    canonical (sorted, no duplicates: scipy then merges rows, keeping the
    nonzero products in column order) the arrays are scipy's, entry for
    entry, so every sum or maximum over them is bit-identical.

    ``None`` (the caller takes scipy's product) when that does not hold
    (scipy's other product orders its entries differently).
    """
    lo, hi = user_side.indptr[user], user_side.indptr[user + 1]
    cols, values = user_side.indices[lo:hi], user_side.data[lo:hi]
    if not item_side.has_canonical_format or (len(cols) > 1 and not (np.diff(cols) > 0).all()):
        return None
    m = len(items)
    items = np.asarray(items, dtype=np.int64)
    if not m or not len(cols):
        empty = np.zeros(0, np.result_type(values.dtype, item_side.dtype))
        return np.zeros(m + 1, dtype=np.int64), cols[:0].astype(np.int64), empty
    if _compiled(values, item_side, transposed):
        from recgraph.data import row_kernels  # numba: not on import

        other = item_side if transposed is None else transposed
        return row_kernels.request_products(
            frozen(cols.astype(np.int64)), frozen(values),
            frozen(item_side.indptr), frozen(item_side.indices), frozen(item_side.data),
            frozen(other.indptr), frozen(other.indices), frozen(other.data),
            transposed is not None, frozen(items), item_side.shape[0], item_side.shape[1],
            READ_COST, DENSE_LOOKUP,
        )  # fmt: skip
    if transposed is None:
        return _forward_products(cols, values, item_side, items)
    reads = int((transposed.indptr[cols + 1] - transposed.indptr[cols]).sum())
    forward = int((item_side.indptr[items + 1] - item_side.indptr[items]).sum())
    order = np.argsort(items, kind="stable")
    ranked = items[order]
    repeats = len(ranked) > 1 and not (np.diff(ranked) > 0).all()
    if repeats or reads * READ_COST > forward:
        return _forward_products(cols, values, item_side, items)
    pos, owner = row_entries(transposed, cols)
    candidates = transposed.indices[pos]
    if item_side.shape[0] <= DENSE_LOOKUP * len(pos):
        # few items against the entries: each candidate's row by a table, not a search
        lookup = np.full(item_side.shape[0], -1, dtype=np.int64)
        lookup[items] = np.arange(m)
        rows = lookup[candidates]
        hit = rows >= 0
        rows = rows[hit]
    else:
        at, hit = find_sorted(ranked, candidates)
        rows = order[at[hit]]
    owner = owner[hit]
    data = np.multiply(values[owner], transposed.data[pos[hit]])
    kept = data != 0  # scipy's merge keeps no zero product
    rows, columns, data = rows[kept], cols[owner[kept]].astype(np.int64), data[kept]
    # the forward product's order: pair by pair, columns ascending (they come ascending, so a
    # stable sort by pair, a radix sort on small keys, orders them)
    sort = np.argsort(rows.astype(np.uint16) if m <= 1 << 16 else rows, kind="stable")
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    return indptr, columns[sort], data[sort]


def _compiled(values: np.ndarray, item_side: sp.csr_matrix, transposed) -> bool:
    """Whether :mod:`~recgraph.data.row_kernels` reads this product: the dtypes it is warmed
    up for, the user's and the items' data alike (numpy's reads otherwise)."""
    other = item_side if transposed is None else transposed
    return (
        values.dtype in KERNEL_FLOATS
        and item_side.data.dtype == values.dtype
        and item_side.indptr.dtype in KERNEL_INDICES
        and item_side.indices.dtype == item_side.indptr.dtype
        and (other.data.dtype, other.indptr.dtype, other.indices.dtype)
        == (values.dtype, item_side.indptr.dtype, item_side.indptr.dtype)
    )


def _forward_products(
    cols: np.ndarray, values: np.ndarray, item_side: sp.csr_matrix, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`row_products` read from the candidates' rows (canonical), each searched for in the
    user's sorted ``cols``: scipy's merge, candidate by candidate, columns ascending."""
    pos, owner = row_entries(item_side, items)
    columns = item_side.indices[pos]
    if item_side.shape[1] <= DENSE_LOOKUP * len(pos):
        lookup = np.full(item_side.shape[1], -1, dtype=np.int64)
        lookup[cols] = np.arange(len(cols))
        at = lookup[columns]
        hit = at >= 0
    else:
        at, hit = find_sorted(cols, columns)
    data = np.multiply(values[at[hit]], item_side.data[pos[hit]])
    kept = data != 0
    rows = owner[hit][kept]
    indptr = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(items)), out=indptr[1:])
    return indptr, columns[hit][kept].astype(np.int64), data[kept]


def divided(numerator: np.ndarray, denominator: np.ndarray, fill: float) -> np.ndarray:
    """``np.where(denominator > 0, numerator / denominator, fill)`` without an errstate: two
    float64 arrays divided only where the denominator is positive (the same values; a
    request's few ratios cost more in silencing numpy's warnings than in dividing; an
    infinite numerator over an infinite denominator warns there, as numpy does)."""
    if numerator.dtype == denominator.dtype == np.float64 and numerator.shape == denominator.shape:
        out = np.full(numerator.shape, fill, dtype=np.float64)
        np.divide(numerator, denominator, out=out, where=denominator > 0)
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, fill)


def row_sums(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Per row, the sum of its entries as scipy's CSR ``sum(axis=1)`` adds them (``reduceat``)."""
    out = np.zeros(len(indptr) - 1, dtype=np.result_type(data.dtype, np.float32))
    has = np.flatnonzero(np.diff(indptr))
    if len(has):
        out[has] = np.add.reduceat(data, indptr[has])
    return out


def reduce_rows(indptr: np.ndarray, data: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Per row, ``ufunc`` over its entries (0 for an empty row), in float64."""
    out = np.zeros(len(indptr) - 1, dtype=np.float64)
    has = np.diff(indptr) > 0
    if has.any():
        out[has] = ufunc.reduceat(data, indptr[:-1][has])
    return out


def pair_sums_rows(
    user_side: sp.csr_matrix,
    users: np.ndarray,
    item_side: sp.csr_matrix,
    items: np.ndarray,
    weightings: Sequence[np.ndarray | None] = (None,),
    *,
    transposed: sp.csr_matrix | None = None,
    user_left: bool = True,
    products: dict | None = None,
) -> list[np.ndarray]:
    """:func:`pair_sums_by` of ``user_side[users]`` and ``item_side[items]``, bit for bit.

    On a request's rows (one user), by :func:`row_products` (reading from
    ``transposed``, ``item_side.T.tocsr()``, where that is cheaper; kept in
    ``products`` by operands when given, for calls that share them): an
    unweighted sum by :func:`row_sums`, a
    weighted one adding its float64 terms in order from 0, as scipy's sum
    of the weighted (COO) product does. Otherwise :func:`pair_sums_by`
    itself, the user's rows on the left unless ``user_left`` is false (the
    order of the operands orders the terms of scipy's other product).
    """
    user = one_user(users)
    part = None
    if user is not None:
        key = (id(user_side), id(item_side))
        if products is not None and key in products:
            part = products[key]
        else:
            part = row_products(user_side, user, item_side, items, transposed)
            if products is not None:
                products[key] = part
    if part is None:
        left, right = user_side[users], item_side[items]
        return pair_sums_by(*((left, right) if user_left else (right, left)), weightings)
    indptr, indices, data = part
    weighted = [weights for weights in weightings if weights is not None]
    if data.dtype in KERNEL_FLOATS and all(
        weights.dtype == np.float64 and weights.shape == weighted[0].shape for weights in weighted
    ):
        from recgraph.data import row_kernels  # numba: not on import

        # every weighting's sum in one compiled call, the same floats as one by one below
        stacked = np.stack(weighted) if weighted else np.zeros((0, 1))
        plain, sums = row_kernels.row_sums_by(
            frozen(indptr), frozen(indices), frozen(data), frozen(stacked)
        )
        each = iter(sums)
        return [
            plain.astype(np.float64) if weights is None else next(each) for weights in weightings
        ]
    out = []
    for weights in weightings:
        if weights is None:
            out.append(row_sums(indptr, data).astype(np.float64))
            continue
        terms = np.multiply(data, weights[indices])
        if terms.dtype != np.float64:
            raise TypeError("weighted pair sums are summed in float64: give float64 weights")
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        out.append(np.bincount(rows, weights=terms, minlength=len(indptr) - 1))
    return out


def pad_rows(matrix: sp.csr_matrix, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """``matrix`` with empty rows and columns appended up to ``(n_rows, n_cols)``."""
    matrix = sp.csr_matrix(matrix)
    extra = n_rows - matrix.shape[0]
    indptr = np.r_[matrix.indptr, np.full(extra, matrix.indptr[-1])] if extra else matrix.indptr
    return sp.csr_matrix((matrix.data, matrix.indices, indptr), shape=(n_rows, n_cols))
