"""Exact top-k of sparse score rows, without ever forming a dense ``n x n`` block.

Shared by the graph retrievers, EGOML and the candidate jobs: ``sparse_top_k``
samples each row's entries to find a threshold, keeps what is above it, and
fills rows with fewer than ``k`` scores with zero-score accounts (ties to the
lower index), as a dense ``argpartition`` would.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.data.sparse_rows import row_entries

_SENTINEL = np.iinfo(np.int64).max
_FLOAT_BITS = np.int64(0x7FFFFFFF)


def sparse_top_k(
    scores: sp.csr_matrix,
    k: int,
    *,
    forbidden: sp.csr_matrix | None = None,
    allowed: np.ndarray | sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row of a sparse, non-negative score matrix.

    The result equals :func:`recgraph.retrieval.base.top_k` on the dense
    matrix (absent entries score 0) with ``-inf`` on ``forbidden`` entries and
    outside ``allowed``: best first, ties to the lower column, zero-score
    columns after every positive one in column order, ``-1`` / ``-inf`` when
    no column is left. The work is linear in the stored entries plus
    ``rows * k``; nothing of size ``rows x n_cols`` is made.

    Parameters
    ----------
    scores
        ``(n_rows, n_cols)`` CSR matrix with non-negative values; stored
        ``-inf`` entries count as forbidden (a product can veto entries
        itself, see :meth:`TwoHopRetriever.recommend`).
    k
        Columns per row.
    forbidden
        CSR of the same shape: nonzero entries are never returned.
    allowed
        A boolean mask of ``n_cols`` columns for every row, or a CSR of the
        same shape whose nonzero entries are each row's only allowed columns.

    Returns
    -------
    ids, values
        ``(n_rows, k)`` int64 column indices and float32 scores.
    """
    n_rows, n_cols = scores.shape
    if n_cols >= 1 << 32:
        raise ValueError("sparse_top_k handles at most 2**32 columns")
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if n_rows == 0 or k == 0:
        return ids, values
    scores = sp.csr_matrix(scores, dtype=np.float32)
    if forbidden is not None and forbidden.nnz:
        forbidden = _binary(forbidden)
        scores = (scores + forbidden * np.float32(-np.inf)).tocsr()
    row_mask = allowed if sp.issparse(allowed) else None
    column_mask = None if sp.issparse(allowed) else allowed
    if row_mask is not None:
        row_mask = _binary(row_mask)
        scores = scores.multiply(row_mask).tocsr()

    data, cols, indptr = scores.data, scores.indices, scores.indptr
    lengths = np.diff(indptr)
    valid = None if column_mask is None else (data > 0) & column_mask[cols]
    bound = _sampled_bounds(data, cols, valid, indptr, n_cols, k)
    if bound is None:
        keep = data > 0 if valid is None else valid
    else:
        # bound values are positive: this also drops zero and -inf (vetoed) entries
        bound_value = np.repeat(bound[0], lengths)
        bound_col = np.repeat(bound[1], lengths)
        keep = (data > bound_value) | ((data == bound_value) & (cols <= bound_col))
        if valid is not None:
            keep &= valid
    kept_before = np.zeros(len(keep) + 1, dtype=np.int32 if len(keep) < 1 << 31 else np.int64)
    np.cumsum(keep, out=kept_before[1:])
    kept_lengths = (kept_before[indptr[1:]] - kept_before[indptr[:-1]]).astype(np.int64)
    counts = _select_top(kept_lengths, cols[keep], data[keep], n_cols, k, ids, values)
    short = np.flatnonzero(counts < k)
    if len(short):
        # the -inf entries of the rows to complete: never to be filled in
        entries, owner = row_entries(scores, short)
        vetoed = data[entries] == -np.inf
        _fill_zero_scores(
            ids,
            values,
            counts,
            n_cols,
            short[owner[vetoed]],
            cols[entries[vetoed]],
            column_mask,
            row_mask,
        )
    return ids, values


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    """A canonical float32 CSR copy with 1 on every stored entry (the caller's is untouched)."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


#: Sampled entries per ``k`` in a long row, for the bound of :func:`_sampled_bounds`.
_SAMPLE_PER_K = 3


def _entry_keys(values: np.ndarray, cols: np.ndarray, col_bits: int) -> np.ndarray:
    """One int64 per entry, smaller for better: ``(~value bits, column)``.

    For positive float32 values the bit pattern orders like the value, so
    the smallest keys are the best scores with ties to the lower column.
    """
    inverted = _FLOAT_BITS - values.view(np.int32).astype(np.int64)
    return (inverted << col_bits) | cols.astype(np.int64)


def _sampled_bounds(
    data: np.ndarray,
    cols: np.ndarray,
    valid: np.ndarray | None,
    indptr: np.ndarray,
    n_cols: int,
    k: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A cheap bound (value, column) per row that every entry of the row's top ``k`` meets.

    The ``k``-th best of ``3k`` evenly spaced entries of a row (by value,
    then lower column) is no better than the ``k``-th best of the whole row,
    so every entry worse than it can go before the exact selection, which
    then sees about a third of a long row (on ego-Facebook's Adamic-Adar
    rows, 0.7M of 2.9M entries), for a sample of ``3k`` per row.
    Rows not filtered get a bound every positive entry meets. Only positive entries (and ``valid`` ones, when given) are
    sampled. ``None`` when no row is longer than ``k``.
    """
    lengths = np.diff(indptr)
    long_rows = np.flatnonzero(lengths > k)
    if not len(long_rows):
        return None
    col_bits = max(1, int(n_cols - 1).bit_length())
    long_lengths = lengths[long_rows]
    width = int(min(_SAMPLE_PER_K * k, long_lengths.max()))
    # evenly spaced over the row: its storage order follows the middle nodes
    stride = np.maximum(long_lengths // width, 1)
    offsets = np.arange(width)
    where = indptr[long_rows][:, None] + offsets[None, :] * stride[:, None]
    inside = offsets[None, :] < long_lengths[:, None]
    where = np.minimum(where, len(data) - 1)
    values = data[where]
    usable = inside & (values > 0)
    if valid is not None:
        usable &= valid[where]
    sample = np.where(usable, _entry_keys(values, cols[where], col_bits), _SENTINEL)
    sample.partition(k - 1, axis=1)
    kth = sample[:, k - 1]
    bounded = kth != _SENTINEL
    # unbounded rows: every positive entry is at least the smallest positive float
    bound_value = np.full(len(lengths), np.nextafter(np.float32(0), np.float32(1)))
    bound_col = np.full(len(lengths), n_cols, dtype=cols.dtype)
    rows, kth = long_rows[bounded], kth[bounded]
    bound_value[rows] = (_FLOAT_BITS - (kth >> col_bits)).astype(np.int32).view(np.float32)
    bound_col[rows] = kth & np.int64((1 << col_bits) - 1)
    return bound_value, bound_col


def _select_top(
    lengths: np.ndarray,
    cols: np.ndarray,
    data: np.ndarray,
    n_cols: int,
    k: int,
    ids: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """Write each row's best ``min(k, length)`` entries into ``ids``/``values``.

    ``cols`` and ``data`` hold the rows' positive entries one row after the
    other, ``lengths`` how many each row has. A row's best ``k`` are its
    ``k`` smallest :func:`_entry_keys`. Rows are grouped by length (powers
    of two), gathered into a padded 2-D array per group, and cut with
    ``np.partition`` along the rows: linear work, no ``n_cols``-wide arrays.
    Returns the number written per row.
    """
    n_rows = len(lengths)
    counts = np.minimum(lengths, k)
    if not len(cols):
        return counts
    col_bits = max(1, int(n_cols - 1).bit_length())
    col_mask = np.int64((1 << col_bits) - 1)
    keys = _entry_keys(data, cols, col_bits)
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    # group g holds the rows of length in (2**(g-1), 2**g]: padding at most doubles them
    group_of_row = np.frexp(np.maximum(lengths - 1, 0))[1]
    group_of_row[lengths == 0] = -1
    for group in np.unique(group_of_row[group_of_row >= 0]):
        members = np.flatnonzero(group_of_row == group)
        member_lengths = lengths[members]
        width = int(member_lengths.max())
        offsets = np.arange(width)
        where = np.minimum(starts[members][:, None] + offsets[None, :], len(keys) - 1)
        block = np.where(offsets[None, :] < member_lengths[:, None], keys[where], _SENTINEL)
        if width > k:
            block.partition(k - 1, axis=1)
            block = block[:, :k]
        block.sort(axis=1)
        taken = block.shape[1]
        valid = block != _SENTINEL
        chosen_cols = block & col_mask
        chosen_bits = (_FLOAT_BITS - (block >> col_bits)).astype(np.int32)
        ids[members, :taken] = np.where(valid, chosen_cols, -1)
        values[members, :taken] = np.where(valid, chosen_bits.view(np.float32), -np.inf)
    return counts


def _fill_zero_scores(
    ids: np.ndarray,
    values: np.ndarray,
    counts: np.ndarray,
    n_cols: int,
    vetoed_rows: np.ndarray,
    vetoed_cols: np.ndarray,
    column_mask: np.ndarray | None,
    row_mask: sp.csr_matrix | None,
) -> None:
    """Complete rows with fewer than ``k`` positives by zero-score columns, lowest first.

    A row short of ``k`` positives has all of them in ``ids`` already, so the
    columns it may still get are the allowed ones minus (vetoed | taken),
    vetoed being the ``-inf`` entries ``(vetoed_rows, vetoed_cols)``.
    With every column allowed, the ``j``-th free column is found without
    listing the free ones: if ``E`` is the row's sorted excluded columns and
    ``g_i = E_i - i`` (free columns before ``E_i``), it is ``j + #{i: g_i <= j}``.
    """
    n_rows, k = ids.shape
    short = np.flatnonzero(counts < k)
    if not len(short):
        return
    need = k - counts[short]
    taken_rows = np.repeat(np.arange(len(short)), counts[short])
    taken_cols = ids[short][np.arange(k)[None, :] < counts[short][:, None]]
    position = np.full(n_rows, -1, dtype=np.int64)
    position[short] = np.arange(len(short))
    vetoed_rows = position[vetoed_rows]
    in_short = vetoed_rows >= 0
    excluded = sp.csr_matrix(
        (
            np.ones(len(taken_cols) + int(in_short.sum()), np.float32),
            (
                np.concatenate([taken_rows, vetoed_rows[in_short]]),
                np.concatenate([taken_cols, vetoed_cols[in_short]]),
            ),
        ),
        shape=(len(short), n_cols),
    )
    excluded.sum_duplicates()

    if row_mask is not None:
        allowed = row_mask[short]
        allowed.sort_indices()
        free = (allowed - allowed.multiply(excluded)).tocsr()
        free.eliminate_zeros()
        free.sort_indices()
        lengths = np.diff(free.indptr)
        free_rows = np.repeat(np.arange(len(short)), lengths)
        rank = np.arange(free.nnz) - free.indptr[free_rows]
        pick = rank < need[free_rows]
        out_rows, slot, chosen = free_rows[pick], rank[pick], free.indices[pick]
    else:
        if column_mask is None:
            universe = None
            size = n_cols
            ex_rows = np.repeat(np.arange(len(short)), np.diff(excluded.indptr))
            ex_rank = excluded.indices.astype(np.int64)
        else:
            universe = np.flatnonzero(column_mask)
            size = len(universe)
            rank_of = np.cumsum(column_mask) - 1
            all_rows = np.repeat(np.arange(len(short)), np.diff(excluded.indptr))
            inside = column_mask[excluded.indices]
            ex_rows, ex_rank = all_rows[inside], rank_of[excluded.indices[inside]]
        ex_start = np.searchsorted(ex_rows, np.arange(len(short)))
        gaps = ex_rank - (np.arange(len(ex_rows)) - ex_start[ex_rows])
        slots = np.minimum(need, size)
        slot_start = np.cumsum(slots) - slots
        out_rows = np.repeat(np.arange(len(short)), slots)
        slot = np.arange(len(out_rows)) - slot_start[out_rows]
        # #{i: g_i <= j} for every slot j of a row: a histogram of the gaps, summed up
        early = gaps < slots[ex_rows]
        hist = np.bincount(slot_start[ex_rows[early]] + gaps[early], minlength=len(out_rows))
        running = np.zeros(len(out_rows) + 1, dtype=np.int64)
        np.cumsum(hist, out=running[1:])
        below = running[1:] - running[slot_start][out_rows]
        answer = slot + below
        ok = answer < size
        out_rows, slot, answer = out_rows[ok], slot[ok], answer[ok]
        chosen = answer if universe is None else universe[answer]
    target_rows = short[out_rows]
    target_slots = counts[target_rows] + slot
    ids[target_rows, target_slots] = chosen
    values[target_rows, target_slots] = 0.0
