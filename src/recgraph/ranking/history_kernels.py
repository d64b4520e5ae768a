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
def history_reductions(values, block, rows, at, bounds, out_max, out_sum, scratch):
    """Per history ``h`` (its columns ``at[bounds[h]:bounds[h + 1]]`` of ``block`` and its
    ``values`` there) and row ``i``: the nonzero products ``values[c] * block[rows[i], at[c]]``
    in column order; their maximum into ``out_max[h, i]`` (float64) and their sum into
    ``out_sum[h, i]`` (as ``np.add.reduceat``), 0 for a row without one. ``scratch``: at
    least the longest history's entries, of the products' dtype.

    The histories of a row read the same block row, once in cache. The products are kept
    without a branch (most are zero: a branch on each mispredicts); the maximum is a plain
    one unless a NaN was kept, then numpy's (the first NaN wins)."""
    for i in range(len(rows)):
        row = rows[i]
        for h in range(len(bounds) - 1):
            m = 0
            nan = False
            for c in range(bounds[h], bounds[h + 1]):
                product = values[c] * block[row, at[c]]
                scratch[m] = product
                m += product != 0
                nan |= product != product
            if m == 0:
                out_max[h, i] = 0.0
                out_sum[h, i] = 0.0
                continue
            best = scratch[0]
            if nan:
                for j in range(1, m):
                    if not np.isnan(best) and (np.isnan(scratch[j]) or scratch[j] > best):
                        best = scratch[j]
            else:
                for j in range(1, m):
                    if scratch[j] > best:
                        best = scratch[j]
            out_max[h, i] = best
            out_sum[h, i] = scratch[0] + pairwise_sum(scratch[1:m])


def reductions(
    values: np.ndarray, block: np.ndarray, rows: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(maximum, sum)`` per candidate of the products ``values[c] * block[rows[i], at[c]]``
    (see :func:`history_reductions`): the maximum float64, the sum in
    ``np.result_type(products, float32)`` as :func:`~recgraph.data.sparse_rows.row_sums` of
    :func:`~recgraph.ranking.item_history.block_products` gives it."""
    return many_reductions([(values, at)], block, rows)[0]


def many_reductions(
    histories: list[tuple[np.ndarray, np.ndarray]], block: np.ndarray, rows: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`reductions` of each ``(values, at)`` in ``histories`` against the same
    ``block`` rows, in one compiled call when their products share a dtype (else one call
    each): the same arrays as the calls one by one."""
    block = np.asarray(block)
    sum_dtype = _sum_dtype(histories[0][0].dtype, block.dtype)
    if len(histories) > 1 and any(
        _sum_dtype(values.dtype, block.dtype) != sum_dtype for values, _ in histories[1:]
    ):
        return [out for one in histories for out in many_reductions([one], block, rows)]
    rows = np.asarray(rows)
    if rows.dtype != np.int64 or not (rows.flags.c_contiguous and rows.flags.writeable):
        # the kernel is compiled for writable contiguous int64 indices
        rows = np.array(rows, dtype=np.int64)
    # the small operands copied in the types the kernel is compiled for (the products are
    # the same: numpy multiplies a float32 by a float64 as float64), writable and contiguous
    # (a copy: one type a request's calls share); the block as it is. Built with few numpy
    # calls: a request makes three of these, each otherwise costing several times its kernel.
    ends, total, longest = [0], 0, 0
    for values, _ in histories:
        total += len(values)
        longest = max(longest, len(values))
        ends.append(total)
    bounds = np.array(ends, dtype=np.int64)
    values = np.concatenate([values for values, _ in histories], dtype=sum_dtype)
    at = np.concatenate([at for _, at in histories], dtype=np.int64)
    out_max = np.empty((len(histories), len(rows)), dtype=np.float64)
    out_sum = np.empty((len(histories), len(rows)), dtype=sum_dtype)
    scratch = np.empty(max(longest, 1), dtype=sum_dtype)
    history_reductions(values, block, rows, at, bounds, out_max, out_sum, scratch)
    return [(out_max[h], out_sum[h]) for h in range(len(histories))]


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _sum_dtype(values: np.dtype, block: np.dtype) -> np.dtype:
    """``np.result_type(values, block, float32)``: the products' dtype, at least float32 (the
    float pairs a request passes without numpy's slower promotion)."""
    if values in (_F32, _F64) and block in (_F32, _F64):
        return _F64 if _F64 in (values, block) else _F32
    return np.result_type(np.result_type(values, block), np.float32)


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
