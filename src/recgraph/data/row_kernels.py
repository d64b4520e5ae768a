"""One user's sparse row times many candidates' rows, compiled, entry for entry as numpy's.

:func:`~recgraph.data.sparse_rows.row_products` reads a request's product
(the user's row against a few hundred candidates' rows, kept in CSR form) from
either end; in numpy each read was a dozen array calls (expanding ranges,
looking up, masking, a stable sort, a bincount) whose fixed cost was most of
the ~0.2 CPU ms each of an ego-Facebook request's calls took.
:func:`forward_products` and :func:`transposed_products` are those reads as
loops, writing the same entries in the same order (candidate by candidate,
columns ascending, no zero product), so every sum over them is the same float
(tests/data/test_row_kernels.py; a NaN may differ in its sign bit only);
:func:`row_sums_by` is the features' plain and weighted sums, added in numpy's order.

Compiled as every kernel is (:func:`recgraph.compiled.kernel`: ``njit(cache=True, nogil=True)``);
each call allocates its own output and lookup table, so threads share nothing.
"""

from __future__ import annotations

import numpy as np

from recgraph.compiled import kernel, pairwise_sum
from recgraph.data.kernel_inputs import KERNEL_FLOATS, KERNEL_INDICES, frozen


@kernel
def position(sorted_keys, key):
    """Where ``key`` is in the ascending ``sorted_keys`` (a binary search), or -1."""
    lo, hi = 0, len(sorted_keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(sorted_keys) and sorted_keys[lo] == key else -1


@kernel
def forward_products(cols, values, indptr, indices, data, items, n_cols, dense):
    """Each candidate's row (canonical) read in turn, its columns looked up in the user's
    sorted ``cols`` (by a table over the ``n_cols`` columns when ``dense``, else by binary
    search); nonzero products kept in the candidate's column order."""
    m = len(items)
    lookup = np.full(n_cols if dense else 0, -1, np.int64)
    for j in range(len(cols)):
        if dense:
            lookup[cols[j]] = j
    total = 0
    for i in range(m):
        total += indptr[items[i] + 1] - indptr[items[i]]
    out_indptr = np.zeros(m + 1, np.int64)
    out_columns = np.empty(total, np.int64)
    out_data = np.empty(total, data.dtype)
    n = 0
    for i in range(m):
        item = items[i]
        for p in range(indptr[item], indptr[item + 1]):
            column = indices[p]
            # the table read here, not in a helper: a call per entry passes (and counts
            # references to) the arrays, 20 times the read itself
            at = lookup[column] if dense else position(cols, column)
            if at >= 0:
                product = values[at] * data[p]
                if product != 0:
                    out_columns[n] = column
                    out_data[n] = product
                    n += 1
        out_indptr[i + 1] = n
    return out_indptr, out_columns[:n], out_data[:n]


@kernel
def transposed_products(cols, values, t_indptr, t_indices, t_data, items, order, n_items, dense):
    """For each column of the user's row (ascending), the candidates (distinct ``items``,
    ``order`` sorting them) that have it, read from the transposed item side; then ordered
    candidate by candidate (a counting sort, stable: columns stay ascending in a candidate)."""
    m = len(items)
    ranked = items[order]
    lookup = np.full(n_items if dense else 0, -1, np.int64)
    if dense:
        for i in range(m):
            lookup[ranked[i]] = i
    reads = 0
    for j in range(len(cols)):
        reads += t_indptr[cols[j] + 1] - t_indptr[cols[j]]
    hit_rows = np.empty(reads, np.int64)
    hit_cols = np.empty(reads, np.int64)
    hit_data = np.empty(reads, t_data.dtype)
    counts = np.zeros(m + 1, np.int64)
    n = 0
    for j in range(len(cols)):
        column = cols[j]
        for p in range(t_indptr[column], t_indptr[column + 1]):
            at = lookup[t_indices[p]] if dense else position(ranked, t_indices[p])
            if at >= 0:
                row = order[at]
                product = values[j] * t_data[p]
                if product != 0:
                    hit_rows[n] = row
                    hit_cols[n] = column
                    hit_data[n] = product
                    counts[row + 1] += 1
                    n += 1
    for i in range(m):
        counts[i + 1] += counts[i]
    out_columns = np.empty(n, np.int64)
    out_data = np.empty(n, t_data.dtype)
    place = counts[:m].copy()
    for e in range(n):
        at = place[hit_rows[e]]
        out_columns[at] = hit_cols[e]
        out_data[at] = hit_data[e]
        place[hit_rows[e]] = at + 1
    return counts, out_columns, out_data


@kernel
def request_products(
    cols, values, indptr, indices, data, t_indptr, t_indices, t_data, transposed, items,
    n_items, n_cols, read_cost, dense_lookup,
):  # fmt: skip
    """:func:`~recgraph.data.sparse_rows.row_products`'s choice and read in one call: the
    transposed read (``t_*``, when ``transposed``) when it reads at most as much as the
    forward one (cost ``read_cost`` per entry) and the candidates are distinct, else the
    forward read; each looks up by a table when ``dense_lookup`` entries per slot or fewer."""
    forward = 0
    for i in range(len(items)):
        forward += indptr[items[i] + 1] - indptr[items[i]]
    if transposed:
        reads = 0
        for j in range(len(cols)):
            reads += t_indptr[cols[j] + 1] - t_indptr[cols[j]]
        order = np.argsort(items, kind="mergesort")
        distinct = True
        for i in range(1, len(items)):
            if items[order[i]] == items[order[i - 1]]:
                distinct = False
                break
        if distinct and reads * read_cost <= forward:
            return transposed_products(
                cols, values, t_indptr, t_indices, t_data, items, order, n_items,
                n_items <= dense_lookup * reads,
            )  # fmt: skip
    return forward_products(
        cols, values, indptr, indices, data, items, n_cols, n_cols <= dense_lookup * forward
    )


_WARM: list[bool] = []


def warm_up() -> None:
    """Run every kernel once for every index and data dtype they are given (read-only
    arrays, as :func:`~recgraph.data.sparse_rows.row_products` passes them), so a loaded
    model's first request finds them compiled. Once per process."""
    if _WARM:
        return
    for index in KERNEL_INDICES:
        for floats in KERNEL_FLOATS:
            indptr = frozen(np.array([0, 1, 2], index))
            indices = frozen(np.array([0, 1], index))
            data = frozen(np.array([1.0, 2.0], floats))
            cols = frozen(np.array([0, 1], np.int64))
            items = frozen(np.array([1, 0], np.int64))
            for dense in (True, False):
                forward_products(cols, data, indptr, indices, data, items, 2, dense)
                transposed_products(
                    cols, data, indptr, indices, data, items, frozen(np.array([1, 0])), 2, dense
                )
            for transposed in (True, False):
                request_products(
                    cols, data, indptr, indices, data, indptr, indices, data, transposed, items,
                    2, 2, 1, 8,
                )  # fmt: skip
            # a request's products' indices are int64 whatever the matrices'
            weights = frozen(np.ones((2, 2)))
            row_sums_by(frozen(np.array([0, 1, 2], np.int64)), cols, data, weights)
    _WARM.append(True)


@kernel
def row_sums_by(indptr, indices, data, weights):
    """Per row, the sum of its entries as ``np.add.reduceat`` adds them (the first entry plus
    numpy's pairwise sum of the rest, in ``data``'s dtype; 0 for an empty row: what
    :func:`~recgraph.data.sparse_rows.row_sums` gives), and under each row ``w`` of
    ``weights`` the float64 sum of ``data[k] * weights[w, indices[k]]`` added from zero in
    the entries' order (what ``np.bincount(rows, weights=terms)`` adds): every sum of a
    request's pair features in one call."""
    m = len(indptr) - 1
    plain = np.zeros(m, data.dtype)
    weighted = np.zeros((weights.shape[0], m), np.float64)
    for i in range(m):
        lo, hi = indptr[i], indptr[i + 1]
        if hi > lo:
            plain[i] = data[lo] + pairwise_sum(data[lo + 1 : hi])
        for w in range(weights.shape[0]):
            total = 0.0
            for k in range(lo, hi):
                total += data[k] * weights[w, indices[k]]
            weighted[w, i] = total
    return plain, weighted
