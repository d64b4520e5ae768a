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

:func:`masked_top` cuts the scored row to the request's top ``k`` (``Retriever._mask_scores``
then :func:`~recgraph.retrieval.base.top_k`'s answer) with each eligible entry as one
``uint64`` key (value order, then index) and a radix pass to the ``k`` best instead of a
copy, a partition and a merge sort (half the CPU of that, compiled): the cut of every model
scoring dense rows. :func:`paths_top` is a two-hop model's one-user top ``k`` in one call
(``TwoHopRetriever._recommend_one``): its path sums, the bar and the cut, keyed the same way.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.compiled import kernel
from recgraph.data.kernel_inputs import frozen

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


#: :func:`masked_top` compiled in this process (:func:`warm_up_masked_top`): requests use it
#: only then
MASKED_TOP_WARM = False
_RADIX_SHIFT = np.uint64(52)  # a key's top 12 bits: the sign, exponent and 3 bits of a value
_LOW = np.uint64(0xFFFFFFFF)


@kernel
def _smallest_sorted(keys, m, k):
    """The ``min(k, m)`` smallest of ``keys[:m]``, ascending: the keys of the buckets (top
    12 bits) wholly in, the boundary bucket's partitioned, the ``k`` then sorted."""
    if m <= k:
        return np.sort(keys[:m])
    counts = np.zeros(4096, np.int64)
    for i in range(m):
        counts[keys[i] >> _RADIX_SHIFT] += 1
    below, bucket = 0, 0
    while below + counts[bucket] < k:
        below += counts[bucket]
        bucket += 1
    edge = np.uint64(bucket)
    out = np.empty(k, np.uint64)
    tied = np.empty(counts[bucket], np.uint64)
    n_out, n_tied = 0, 0
    for i in range(m):
        top = keys[i] >> _RADIX_SHIFT
        if top < edge:
            out[n_out] = keys[i]
            n_out += 1
        elif top == edge:
            tied[n_tied] = keys[i]
            n_tied += 1
    need = k - n_out
    if need < n_tied:
        tied = np.partition(tied, need - 1)
    out[n_out:] = tied[:need]
    return np.sort(out)


@kernel
def masked_top(values, seen, self_index, exclude, allowed, k):
    """``values`` masked as ``Retriever._mask_scores`` masks one user's row (NaN, ``seen``,
    ``exclude``, ``self_index`` when ``>= 0`` and, with a non-empty ``allowed``, every target
    outside it), cut to its ``k`` best, ties to the lower index, best first, ``-1``/``-inf``
    past the finite entries; numpy's IndexError for a target outside the row; one call,
    without copying the row: each eligible entry (not
    barred, not NaN nor ``-inf``) becomes ``(descending value bits << 32) | index`` (``-0.0``
    read as ``+0.0``, equal as numpy compares them), and the ``k`` smallest keys are the
    answer in order."""
    n = len(values)
    barred = np.zeros(n, np.uint8)
    for j in range(len(seen)):
        if not -n <= seen[j] < n:  # numpy's IndexError, not a write outside the row
            raise IndexError("masked_top: a seen target outside the row")
        barred[seen[j]] = 1
    if self_index >= 0:
        if self_index >= n:
            raise IndexError("masked_top: the user's own target outside the row")
        barred[self_index] = 1
    for j in range(len(exclude)):
        if not -n <= exclude[j] < n:
            raise IndexError("masked_top: an excluded target outside the row")
        barred[exclude[j]] = 1
    masked = len(allowed) > 0
    bits = values.view(np.uint32)
    keys = np.empty(n, np.uint64)
    m = 0
    for i in range(n):
        if barred[i] or not values[i] > -np.inf or (masked and not allowed[i]):
            continue
        keys[m] = _key_of(bits[i], i)
        m += 1
    ids = np.full(k, -1, np.int64)
    out = np.full(k, -np.inf, np.float32)
    _write_chosen(_smallest_sorted(keys, m, k), values, ids, out)
    return ids, out


@kernel
def _key_of(u, at):
    """A float32's bits ``u`` at index ``at`` as a key that sorts larger values first, then
    lower indices: ``-0.0`` as ``+0.0``, which numpy finds equal."""
    if u == np.uint32(0x80000000):
        u = np.uint32(0)
    ascending = u ^ np.uint32(0x80000000) if u >> np.uint32(31) == 0 else ~u
    return (np.uint64(np.uint32(0xFFFFFFFF) - ascending) << np.uint64(32)) | np.uint64(at)


@kernel
def _write_chosen(chosen, values, ids, out):
    """The chosen keys' indices and values into ``ids`` and ``out``, in order."""
    for j in range(len(chosen)):
        at = np.int64(chosen[j] & _LOW)
        ids[j] = at
        out[j] = values[at]


@kernel
def paths_top(indptr, indices, data, user, b_indptr, b_indices, b_data, n_cols, barred, k):
    """A two-hop retriever's one-user top ``k`` (``TwoHopRetriever._recommend_one``'s
    answer) in one call: the path sums ``X[user] @ B`` (``n_cols`` columns) added as
    :func:`row_times_sparse` adds them (``path_sums_numpy``'s floats); the targets summing
    above 0 and not in ``barred`` (any order, repeats; indices outside the row ignored)
    ranked by their float32 sum, ties to the lower target; when fewer than ``k``, then
    the lowest other unbarred targets at 0; then ``-1``/``-inf``. The keys are only the
    reached targets' (a list of them kept while summing), not every column's."""
    lo, hi = indptr[user], indptr[user + 1]
    paths = 0
    for jj in range(lo, hi):
        paths += b_indptr[indices[jj] + 1] - b_indptr[indices[jj]]
    sums = np.zeros(n_cols, b_data.dtype)
    flags = np.zeros(n_cols, np.uint8)  # 4: reached, 1: barred, 2: listed with a score
    reached = np.empty(min(paths, n_cols), np.int64)
    r = 0
    for jj in range(lo, hi):
        value = data[jj]
        row = indices[jj]
        for kk in range(b_indptr[row], b_indptr[row + 1]):
            c = b_indices[kk]
            if flags[c] == 0:
                flags[c] = 4
                reached[r] = c
                r += 1
            sums[c] += value * b_data[kk]
    for j in range(len(barred)):
        if 0 <= barred[j] < n_cols:
            flags[barred[j]] |= 1
    keys = np.empty(r, np.uint64)
    one = np.empty(1, np.float32)  # a sum as float32, its bits read through the view
    bits = one.view(np.uint32)
    m = 0
    for i in range(r):
        c = reached[i]
        if sums[c] > 0 and flags[c] & 1 == 0:
            one[0] = sums[c]
            keys[m] = _key_of(bits[0], c)
            flags[c] |= 2
            m += 1
    ids = np.full(k, -1, np.int64)
    out = np.full(k, -np.inf, np.float32)
    chosen = _smallest_sorted(keys, m, k)
    _write_chosen(chosen, sums, ids, out)
    filled = len(chosen)
    c = 0
    while filled < k and c < n_cols:
        if flags[c] & 3 == 0:
            ids[filled] = c
            out[filled] = 0.0
            filled += 1
        c += 1
    return ids, out


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
    """Compile (or read from numba's cache) the one-row product for these very arrays (their
    dtypes, and whether they are read-only) and :func:`masked_top`, so a loaded model's first
    request does not."""
    if matrix.shape[0]:
        one_row_product(matrix, 0, other)
    warm_up_masked_top()


def warm_up_masked_top() -> None:
    """Compile (or read from numba's cache) :func:`masked_top` for a request's row: the cut of
    every model scoring dense rows (``Retriever._masked_top_one``)."""
    global MASKED_TOP_WARM
    empty = np.zeros(0, np.int64)
    for k in (2, 5):  # short of the row and past it
        masked_top(np.zeros(3, np.float32), empty, np.int64(-1), empty, np.zeros(0, bool), k)
    MASKED_TOP_WARM = True


def warm_up_paths(first: sp.csr_matrix, expansion: sp.csr_matrix) -> None:
    """Compile (or read from numba's cache) :func:`paths_top` for these very arrays, as
    ``TwoHopRetriever._recommend_one`` passes them (read-only)."""
    if first.shape[0]:
        paths_top(
            frozen(first.indptr), frozen(first.indices), frozen(first.data), 0,
            frozen(expansion.indptr), frozen(expansion.indices), frozen(expansion.data),
            expansion.shape[1], np.zeros(1, np.int64), 1,
        )  # fmt: skip
