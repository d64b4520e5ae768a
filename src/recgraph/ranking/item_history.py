"""What a feed's candidate features read of a user's history against the candidates.

The item-item neighbours (the cosine of the sets of users who liked each
item), how each user rated what they had against their mean, and a request's products of the user's history row with the candidates'
neighbour rows. Kept apart from :mod:`recgraph.ranking.features`, which
turns them into columns, so that each file holds one concern.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.sparse_rows import row_products

#: Item-item neighbours kept per item for the similarity features.
SIMILAR_NEIGHBOURS = 200
#: Rows of the item-item product computed at once (bounds memory).
SIMILARITY_CHUNK = 1024
#: Largest dense copy of the item-item neighbours a request reads its similarities from
#: (float32: catalogues up to ~2,900 items; above it they are read sparse).
DENSE_NEIGHBOURS_BYTES = 32 << 20


def item_neighbours(liked: sp.csr_matrix, top: int = SIMILAR_NEIGHBOURS) -> sp.csr_matrix:
    """``items x items`` cosine of the sets of users who liked each, ``top`` per row, no diagonal."""
    columns = sp.csc_matrix(liked, dtype=np.float32)
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    normalised = sp.csr_matrix(columns @ sp.diags(1.0 / norms))
    items_by_users = normalised.T.tocsr()
    n = items_by_users.shape[0]
    rows, cols, vals = [], [], []
    chunk = max(1, min(SIMILARITY_CHUNK, (1 << 24) // max(n, 1)))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = (items_by_users[start:stop] @ normalised).toarray()
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0
        keep = min(top, n)
        part = np.argpartition(-block, keep - 1, axis=1)[:, :keep] if keep < n else None
        idx = part if part is not None else np.broadcast_to(np.arange(n), block.shape)
        values = np.take_along_axis(block, idx, axis=1)
        nonzero = values > 0
        rows.append(np.repeat(np.arange(start, stop), nonzero.sum(axis=1)))
        cols.append(idx[nonzero])
        vals.append(values[nonzero])
    return sp.csr_matrix(
        (
            np.concatenate(vals) if vals else [],
            (np.concatenate(rows) if rows else [], np.concatenate(cols) if cols else []),
        ),
        shape=(n, n),
        dtype=np.float32,
    )


def dense_neighbours(neighbours: sp.csr_matrix) -> np.ndarray | None:
    """``neighbours`` as an array when it fits :data:`DENSE_NEIGHBOURS_BYTES`, else ``None``."""
    n = neighbours.shape[0]
    if n * n * neighbours.dtype.itemsize > DENSE_NEIGHBOURS_BYTES:
        return None
    return neighbours.toarray()


def request_similarities(
    history: sp.csr_matrix,
    user: int,
    items: np.ndarray,
    dense: np.ndarray | None,
    neighbours: sp.csr_matrix,
    by_item: sp.csr_matrix,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A request's ``(indptr, data)`` of ``neighbours[items]`` times the user's ``history`` row.

    With ``dense`` (:func:`dense_neighbours`, a small catalogue), one gather of
    the candidates' rows at the user's columns: its nonzero products, row by
    row, are what :func:`row_products` returns (candidate by candidate, columns
    ascending, zero products dropped), so every sum and maximum over them has
    the same bits, at a fifth of the cost (the user's likes read through the
    transposed neighbours, ``by_item``, were most of a MovieLens request's
    features). Otherwise :func:`row_products`; ``None`` where it declines.
    """
    if dense is None:
        part = row_products(history, user, neighbours, items, by_item)
        return None if part is None else (part[0], part[2])
    lo, hi = history.indptr[user], history.indptr[user + 1]
    cols, values = history.indices[lo:hi], history.data[lo:hi]
    if len(cols) > 1 and not (np.diff(cols) > 0).all():
        return None
    products = np.multiply(values[None, :], dense[np.ix_(items, cols)])
    kept = products != 0
    indptr = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(kept.sum(axis=1), out=indptr[1:])
    return indptr, products[kept]


def rating_deviations(
    data: Interactions, user_rating: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Each rated target's rating less the user's mean rating (``user_rating``; both on the
    0-1 scale of the highest rating), float32, empty without ratings.

    A deviation of exactly zero is kept as a stored zero: the entries are what the user
    rated, which ``rating_dev_sim`` averages over.
    """
    had = data.subset(data.kind != Kind.DISLIKE)
    rated = (
        np.zeros(len(had), bool) if had.value_kind is None else had.value_kind == ValueKind.RATING
    )
    if not rated.any():
        return sp.csr_matrix(shape, dtype=np.float32)
    value = had.value[rated].astype(np.float64)
    src, dst = had.src[rated], had.dst[rated]
    deviation = value / max(float(value.max()), 1e-9) - user_rating[src]
    matrix = sp.csr_matrix((deviation.astype(np.float32), (src, dst)), shape=shape)
    matrix.sum_duplicates()  # a target rated twice: the deviations add up (zeros stay stored)
    return matrix
