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
from recgraph.data.sparse_rows import one_user, reduce_rows, row_products, row_sums

#: The products' dtypes :meth:`HistoryProducts.reduced` reduces (numpy's otherwise).
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: Item-item neighbours kept per item for the similarity features.
SIMILAR_NEIGHBOURS = 200
#: Rows of the item-item product computed at once (bounds memory).
SIMILARITY_CHUNK = 1024
#: Largest dense copy of an item-side matrix a request gathers its products from (the
#: item-item neighbours, float32: catalogues up to ~2,900 items; genres and week
#: histograms); larger ones are read sparse.
DENSE_BYTES = 32 << 20


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


def block_products(values: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr, data)`` of a user's row values (sorted columns) times ``block``, the
    candidates' dense rows at those columns: the nonzero products row by row, in the order
    and with the floats of :func:`row_products` (which multiplies the same pairs)."""
    products = np.multiply(values[None, :], block)
    kept = products != 0
    indptr = np.zeros(len(block) + 1, dtype=np.int64)
    np.cumsum(kept.sum(axis=1), out=indptr[1:])
    return indptr, products[kept]


def gather(dense: np.ndarray, rows: np.ndarray | None, cols: np.ndarray) -> np.ndarray:
    """``dense[np.ix_(rows, cols)]`` (``rows`` ``None``: all of them), by one flat ``take``:
    the same values, at a fraction of the cost of numpy's multi-index gather (the largest
    single part of a feed request's features)."""
    width = dense.shape[1]
    rows = np.arange(dense.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    flat = rows[:, None] * width + np.asarray(cols, dtype=np.int64)[None, :]
    return np.take(np.ascontiguousarray(dense).reshape(-1), flat)


def ascending(cols: np.ndarray) -> bool:
    """Whether a row's columns rise strictly (what a canonical matrix's rows do)."""
    return len(cols) < 2 or bool((cols[1:] > cols[:-1]).all())


def small_dense(matrix: sp.csr_matrix) -> np.ndarray | None:
    """``matrix`` as an array when it fits :data:`DENSE_BYTES` and is canonical
    (what :func:`row_products` reads from; else ``None``)."""
    size = matrix.shape[0] * matrix.shape[1] * matrix.dtype.itemsize
    if size > DENSE_BYTES or not matrix.has_canonical_format:
        return None
    return matrix.toarray()


def dense_reductions(
    rows: list[tuple[np.ndarray, np.ndarray]], dense: np.ndarray, items: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per ``(values, cols)`` of ``rows`` (a user's row of each of several matrices) and per
    candidate ``items[i]``, the maximum and the sum of its products
    ``values * dense[items[i], cols]`` (:func:`~.history_kernels.many_reductions`: one
    compiled pass for them all), the kernel module imported here, on first use: importing
    the ranking does not load numba."""
    from recgraph.ranking.history_kernels import many_reductions

    return many_reductions(rows, dense, items)


class HistoryProducts:
    """``neighbours[items]`` times each of ``histories``' rows of ``users``, as CSR
    ``(indptr, data)`` (call with one of them): what the similarity features sum and maximise.

    A request (one user) on a catalogue small enough to hold the neighbours dense
    (``dense``, :func:`small_dense`) reads them there. :meth:`reduced` gives a
    history's maximum and sum per candidate in one compiled pass over the dense rows at
    the user's columns, with no products handed out; calling the object for a history's
    products gathers (lazily, once, for every history) the candidates' rows at the union
    of the user's columns, then takes that block at the history's columns, nonzero
    products row by row. Both are what :func:`row_products` gives (candidate by
    candidate, columns ascending, zero products dropped), so every sum and maximum has
    the same bits, at a fraction of the cost (the user's likes read through the
    transposed neighbours were most of a MovieLens request's features). A request on a
    larger catalogue reads each by :func:`row_products`
    (``by_item``: the neighbours transposed); a batch, and whatever
    :func:`row_products` declines, by scipy's products of the candidates' rows.
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        neighbours: sp.csr_matrix,
        dense: np.ndarray | None,
        by_item: sp.csr_matrix,
        histories: list[sp.csr_matrix],
    ) -> None:
        self.users, self.items = users, items
        self.neighbours, self.by_item = neighbours, by_item
        self.user = one_user(users)
        self.similar: sp.csr_matrix | None = None  # the candidates' rows, sliced once for a batch
        self.block: np.ndarray | None = None
        self.dense: np.ndarray | None = None  # a request's neighbours when its rows are sorted
        if self.user is None or dense is None:
            return
        self.histories = histories
        if all(
            history.has_canonical_format or ascending(self._row(history)[0])
            for history in histories
        ):
            self.dense = dense

    def sizes(self, history: sp.csr_matrix) -> np.ndarray:
        """Each row's count of ``history`` entries of its user, at least 1, in the dtype of
        ``history.indptr`` (a request's: counted once)."""
        indptr = history.indptr
        if self.user is None:
            return np.maximum(indptr[self.users + 1] - indptr[self.users], 1)
        return np.full(
            len(self.users), max(indptr[self.user + 1] - indptr[self.user], 1), indptr.dtype
        )

    def _block(self) -> np.ndarray:
        """The candidates' dense rows at the union of the user's columns, gathered once."""
        if self.block is None:
            assert self.dense is not None
            cols = [self._row(history)[0] for history in self.histories]
            self.union = np.unique(np.concatenate(cols))
            self.block = gather(self.dense, self.items, self.union)
        return self.block

    def _row(self, history: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = history.indptr[self.user], history.indptr[self.user + 1]
        return history.indices[lo:hi], history.data[lo:hi]

    def reduced(self, histories: list[sp.csr_matrix]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per history of ``histories`` and candidate, the maximum (float64) and the sum of
        its products with the history's row, as :func:`reduce_rows` and :func:`row_sums`
        reduce this call's arrays: on a request's dense neighbours in one compiled pass for
        all of them (:mod:`.history_kernels`: no block gathered, the same bits), else so."""
        rows = [self._row(history)[::-1] for history in histories] if self.dense is not None else []
        if rows and self.dense.dtype in FLOATS and all(v.dtype in FLOATS for v, _ in rows):
            return dense_reductions(rows, self.dense, self.items)
        out = []
        for history in histories:
            indptr, data = self(history)
            out.append((reduce_rows(indptr, data, np.maximum), row_sums(indptr, data)))
        return out

    def __call__(self, history: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        if self.dense is not None:
            cols, values = self._row(history)
            whole = self._block()
            at = np.searchsorted(self.union, cols)
            block = whole if len(at) == len(self.union) else gather(whole, None, at)
            return block_products(values, block)
        if self.user is not None:
            part = row_products(history, self.user, self.neighbours, self.items, self.by_item)
            if part is not None:
                return part[0], part[2]
        if self.similar is None:
            self.similar = self.neighbours[self.items]
        both = self.similar.multiply(history[self.users]).tocsr()
        return both.indptr, both.data


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
