"""Compiled: item-kNN's served reason (``history_via``) in one pass from the similarity rows.

:meth:`ItemKNN.history_via` built, per block of candidates, a dense liked x candidates
block of the similarity (every entry of the liked items' rows expanded, looked up among
the candidates by a table over every item, scattered into the block) and multiplied it
by the liked items' weights before the compiled pick. For a request's ten or so
candidates that numpy glue cost ten times the pick. :func:`top_positive_rows` reads
each liked item's row once, finds its entries among the candidates by a binary search,
writes the same products (one multiply in the operands' own dtypes, widened exactly)
and picks each column's top positive ones with
:func:`~recgraph.retrieval.explanation_kernels._pick`: the same items, in the same order.

For a canonical similarity (sorted rows, no repeated entry) and distinct candidates,
as the block it replaces; the caller keeps the block for any other matrix.
Compiled as every kernel is (:func:`recgraph.compiled.kernel`); imported inside the
functions that run it, so importing a model does not load numba.
"""

from __future__ import annotations

import numpy as np

from recgraph.compiled import kernel
from recgraph.data.row_kernels import position
from recgraph.retrieval.explanation_kernels import _pick


@kernel
def top_positive_rows(indptr, indices, data, liked, weights, candidates, top, n_items, dense):
    """Per candidate ``c`` of ``candidates`` (distinct): the positions ``i`` of its ``top``
    largest positive ``similarity[liked[i], c] * weights[i]`` (``indptr, indices, data``:
    the similarity's canonical rows over ``n_items`` columns; an entry absent is 0), best
    first (ties: the lower ``i``), all candidates' laid end to end, and how many each has.
    The rows' entries are looked up among the candidates by a table over every column
    when there are at most ``dense`` columns per entry read, else by a binary search."""
    n_rows = len(liked)
    n_columns = len(candidates)
    cut = min(top, n_rows)
    total = 0
    for i in range(n_rows):
        total += indptr[liked[i] + 1] - indptr[liked[i]]
    use_table = n_items <= dense * max(total, 1)
    table = np.full(n_items if use_table else 0, -1, dtype=np.int64)
    order = np.argsort(candidates)
    sorted_candidates = candidates[order]
    if use_table:
        for j in range(n_columns):
            table[candidates[j]] = j
    # column by column (each candidate's products read in a row by the pick)
    block = np.zeros((n_columns, n_rows), dtype=np.float64)
    for i in range(n_rows):
        row = liked[i]
        weight = weights[i]
        for e in range(indptr[row], indptr[row + 1]):
            if use_table:
                j = table[indices[e]]
            else:
                at = position(sorted_candidates, indices[e])
                j = order[at] if at >= 0 else -1
            if j >= 0:
                block[j, i] = data[e] * weight
    out = np.empty(n_columns * cut, dtype=np.int64)
    counts = np.zeros(n_columns, dtype=np.int64)
    done = 0
    for j in range(n_columns):
        counts[j] = _pick(block[j], cut, out, done)
        done += counts[j]
    return out[:done], counts
