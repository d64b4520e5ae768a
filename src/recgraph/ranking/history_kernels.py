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
of the rest, :func:`~recgraph.compiled.pairwise_sum`, in the products' dtype).
The same bits, save a NaN's: a sum that is NaN is NaN here too, but its sign
bit may differ from numpy's (``inf + -inf``), so compare them NaN-equal
(a ranking reads no NaN's sign).
"""

from __future__ import annotations

import numpy as np

from recgraph.compiled import kernel, pairwise_sum


@kernel
def history_reductions(values, block, rows, at, out_max, out_sum, scratch):
    """Per row ``i``: the nonzero products ``values[c] * block[rows[i], at[c]]`` in
    column order; their maximum into ``out_max[i]`` (float64) and their sum into
    ``out_sum[i]`` (as ``np.add.reduceat``), 0 for a row without one. ``scratch``: at least
    ``len(values)`` entries of the products' dtype."""
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
        out_sum[i] = scratch[0] + pairwise_sum(scratch[1:m])


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
        np.asarray(at, dtype=np.int64).copy(), out_max, out_sum, scratch,
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
