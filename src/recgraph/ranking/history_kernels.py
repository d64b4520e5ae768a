"""A feed request's history features (the maximum and the sum of each candidate's products
with the user's history) in one compiled pass, to the same bits.

:class:`~recgraph.ranking.item_history.HistoryProducts` hands the features a
request's products as CSR arrays (:func:`~recgraph.ranking.item_history.block_products`:
the user's row values times the candidates' dense neighbour rows, zero products
dropped), which :func:`~recgraph.data.sparse_rows.reduce_rows` and
:func:`~recgraph.data.sparse_rows.row_sums` then reduce: five whole-block numpy
steps per history, three histories a request (~0.3 CPU ms of a MovieLens
request). :func:`history_reductions` takes the same products row by row and
reduces them as numpy does: the maximum as ``np.maximum`` (a NaN wins), the sum
as ``np.add.reduceat`` adds a segment (its first entry plus numpy's pairwise sum
of the rest, in the products' dtype).
"""

from __future__ import annotations

import numpy as np

from recgraph.retrieval.walk_kernels import kernel


@kernel
def pairwise_sum_typed(values, n, zero):
    """``values[:n].sum()`` as numpy adds a contiguous array, in ``values``' own dtype
    (``zero``: ``-0.0`` of it; float32 partial sums for float32, where
    :func:`~recgraph.retrieval.walk_kernels.pairwise_sum` adds in float64): one by one
    from ``-0.0`` below 8 entries; up to 128, eight running sums over blocks of 8, paired,
    then the tail; above, the two halves (split at a multiple of 8)."""
    if n > 128:
        half = n // 2 - (n // 2) % 8
        return pairwise_sum_typed(values, half, zero) + pairwise_sum_typed(
            values[half:], n - half, zero
        )
    if n < 8:
        total = zero
        for i in range(n):
            total += values[i]
        return total
    lanes = values[:8].copy()
    blocks_end = n - n % 8
    for start in range(8, blocks_end, 8):
        for lane in range(8):
            lanes[lane] += values[start + lane]
    total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
        (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
    )
    for i in range(blocks_end, n):
        total += values[i]
    return total


@kernel
def history_reductions(values, block, rows, at, out_max, out_sum, scratch, zero):
    """Per row ``i``: the nonzero products ``values[c] * block[rows[i], at[c]]`` in
    column order; their maximum into ``out_max[i]`` (float64) and their sum into
    ``out_sum[i]`` (as ``np.add.reduceat``), 0 for a row without one. ``scratch``: at least
    ``len(values)`` entries of the products' dtype; ``zero``: ``-0.0`` of it."""
    for i in range(len(rows)):
        row = rows[i]
        m = 0
        for c in range(len(values)):
            product = values[c] * block[row, at[c]]
            if product != 0:
                scratch[m] = product
                m += 1
        if m == 0:
            out_max[i] = 0.0
            out_sum[i] = 0.0
            continue
        best = scratch[0]
        for j in range(1, m):
            if not np.isnan(best) and (np.isnan(scratch[j]) or scratch[j] > best):
                best = scratch[j]
        out_max[i] = best
        out_sum[i] = scratch[0] + pairwise_sum_typed(scratch[1:], m - 1, zero)


def reductions(
    values: np.ndarray, block: np.ndarray, rows: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(maximum, sum)`` per candidate of the products ``values[c] * block[rows[i], at[c]]``
    (see :func:`history_reductions`): the maximum float64, the sum in
    ``np.result_type(products, float32)`` as :func:`~recgraph.data.sparse_rows.row_sums` of
    :func:`~recgraph.ranking.item_history.block_products` gives it."""
    sum_dtype = np.result_type(np.result_type(values.dtype, block.dtype), np.float32)
    out_max = np.empty(len(rows), dtype=np.float64)
    out_sum = np.empty(len(rows), dtype=sum_dtype)
    scratch = np.empty(len(values), dtype=sum_dtype)
    # the small operands copied in the types the kernel is compiled for (the products are
    # the same: numpy multiplies a float32 by a float64 as float64); the block as it is
    history_reductions(
        values.astype(sum_dtype), np.asarray(block), np.asarray(rows, dtype=np.int64).copy(),
        np.asarray(at, dtype=np.int64).copy(), out_max, out_sum, scratch, sum_dtype.type(-0.0),
    )  # fmt: skip
    return out_max, out_sum


def warm_up() -> None:
    """Compile (or read from numba's cache) the kernel for the operands a request passes:
    float32 or float64 values, a float32 or float64 block, writable or read-only (a
    memory-mapped one)."""
    for values_dtype, block_dtype in ((np.float32, np.float32), (np.float64, np.float32),
                                      (np.float64, np.float64)):  # fmt: skip
        for writable in (True, False):
            block = np.ones((2, 9), block_dtype)
            block.flags.writeable = writable
            reductions(np.ones(9, values_dtype), block, np.arange(2), np.arange(9))
