"""Exact top-k of sparse float64 score rows, and the batched loop the local engines share.

The distributed jobs sum path weights in double precision, so the local
engine must select in double precision too, or two engines would disagree on
near-ties that float32 rounding merges. :func:`exact_top_k` keeps the linear
selection of :func:`~recgraph.retrieval.neighborhood.sparse_top_k` as a
filter: it runs on the float32 copy to find each row's ``k``-th value, and
rounding to float32 keeps order (``x >= y`` implies ``f32(x) >= f32(y)``), so
every entry of the exact top ``k`` survives the filter ``f32(x) >= kth``.
Only the few survivors are sorted in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recgraph.retrieval.neighborhood import (
    resolve_threads,
    run_batches,
    spans_by_work,
)
from recgraph.retrieval.sparse_top_k import sparse_top_k


def exact_top_k(scores: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` positive entries of each row, by float64 value, ties to the lower column.

    Parameters
    ----------
    scores
        ``(n_rows, n_cols)`` CSR of float64 scores; entries that are not
        positive (zero, negative, NaN) are never returned.
    k
        Entries per row.

    Returns
    -------
    ids, values
        ``(n_rows, k)`` int64 columns (``-1`` past a row's positives) and
        float64 scores (``-inf`` there).
    """
    scores = sp.csr_matrix(scores, dtype=np.float64)
    n_rows = scores.shape[0]
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf, dtype=np.float64)
    if n_rows == 0 or k == 0 or scores.nnz == 0:
        return ids, values
    single = np.maximum(scores.data, 0.0).astype(np.float32)  # NaN and negatives: never chosen
    # sparse_top_k fills rows short of k positives with zero scores: their bound keeps them all
    _, kth = sparse_top_k(sp.csr_matrix((single, scores.indices, scores.indptr), scores.shape), k)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(scores.indptr))
    keep = (scores.data > 0) & (single >= kth[rows, k - 1])
    rows, cols, data = rows[keep], scores.indices[keep].astype(np.int64), scores.data[keep]
    order = np.lexsort((cols, -data, rows))
    rows, cols, data = rows[order], cols[order], data[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    take = rank < k
    ids[rows[take], rank[take]] = cols[take]
    values[rows[take], rank[take]] = data[take]
    return ids, values


def drop_entries(scores: sp.csr_matrix, forbidden: sp.csr_matrix | None) -> sp.csr_matrix:
    """``scores`` without the entries stored in ``forbidden`` (same shape)."""
    if forbidden is None or not forbidden.nnz:
        return scores
    mask = sp.csr_matrix(forbidden, dtype=np.float64, copy=True)
    mask.data[:] = 1.0
    kept = (scores - scores.multiply(mask)).tocsr()
    kept.eliminate_zeros()
    return kept


def local_top_k(
    n_users: int,
    k: int,
    score_rows: Callable[[np.ndarray], sp.csr_matrix],
    forbidden_rows: Callable[[np.ndarray], sp.csr_matrix | None],
    work: np.ndarray,
    budget: int,
    n_threads: int = 0,
    description: str = "candidates",
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of every user, block by block: the one-machine form of map, reduce and top-k.

    A block of users is one partition of the shuffle: ``score_rows(users)``
    is the map over the centres restricted to the block and the reduce over
    its pairs (a sparse product sums the paths of each pair), and
    :func:`exact_top_k` cuts each row. Blocks hold about ``budget`` units of
    ``work`` (two-hop paths) each, so memory is bounded by the block, and run
    on ``n_threads`` threads (scipy and numpy release the GIL).

    Returns
    -------
    ids, scores
        ``(n_users, k)``: candidates best first (``-1`` padding) and their
        float64 scores (``-inf`` padding).
    """
    ids = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float64)
    users = np.arange(n_users, dtype=np.int64)

    def block(start: int, stop: int) -> None:
        batch = users[start:stop]
        rows = drop_entries(score_rows(batch), forbidden_rows(batch))
        ids[start:stop], scores[start:stop] = exact_top_k(rows, k)

    run_batches(
        spans_by_work(np.asarray(work, dtype=np.int64), budget),
        block,
        resolve_threads(n_threads),
        description,
        n_users,
    )
    return ids, scores
