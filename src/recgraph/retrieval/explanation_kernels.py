"""Compiled: per candidate, the history entries a served reason cites (``history_via``).

A request's reason asks EASE or item-kNN which of the user's liked items
weigh most for each of about ten results. The numpy way (a liked x candidates
block, a stable sort down each column, the top cut, the positive kept, each
column turned into a list) cost more in calls than in arithmetic. Here one
pass per column picks its ``top`` largest positive products, best first, ties
to the earlier row, as the stable sort of the negated column does (a value
that is not positive, ``NaN`` included, is never cited, and every positive
one sorts before it). The products are the numpy ones (one multiply in the
operands' own dtype), compared exactly. Each pick rescans the column, so the
cost grows with ``top`` times the rows: callers take the stable sort above
:data:`recgraph.retrieval.explanation.PICK_AT_MOST` (and for every row).

Compiled as every kernel is (:func:`recgraph.compiled.kernel`); imported inside
the functions that run it, so importing a model does not load numba.
"""

from __future__ import annotations

import numpy as np

from recgraph.compiled import kernel


@kernel
def _pick(values, top, out, at):
    """Write the positions of the ``top`` largest positive ``values`` (ties: the lower
    position first) to ``out[at:]``, best first; return how many."""
    n_values = len(values)
    taken = 0
    last_value = np.inf
    last = -1
    while taken < top:
        best = -1
        for i in range(n_values):
            v = values[i]
            if not v > 0:
                continue
            # after the last pick in (value descending, position ascending) order
            if v < last_value or (v == last_value and i > last):
                if best < 0 or v > values[best]:
                    best = i
        if best < 0:
            break
        out[at + taken] = best
        last_value = values[best]
        last = best
        taken += 1
    return taken


@kernel
def top_positive_dense(weights, rows, columns, strength, top):
    """Per column ``c`` of ``columns``: the positions ``i`` of its ``top`` largest positive
    ``weights[rows[i], c] * strength[i]``, best first, all columns' laid end to end, and
    how many each has."""
    n_rows = len(rows)
    cut = min(top, n_rows)
    out = np.empty(len(columns) * cut, dtype=np.int64)
    counts = np.zeros(len(columns), dtype=np.int64)
    values = np.empty(n_rows, dtype=np.float64)  # the products, exactly (widened)
    at = 0
    for j in range(len(columns)):
        c = columns[j]
        for i in range(n_rows):
            values[i] = weights[rows[i], c] * strength[i]
        counts[j] = _pick(values, cut, out, at)
        at += counts[j]
    return out[:at], counts


@kernel
def top_positive_block(block, top):
    """:func:`top_positive_dense` of a ready ``block`` (rows x columns)."""
    n_rows, n_columns = block.shape
    cut = min(top, n_rows)
    out = np.empty(n_columns * cut, dtype=np.int64)
    counts = np.zeros(n_columns, dtype=np.int64)
    values = np.empty(n_rows, dtype=np.float64)
    at = 0
    for j in range(n_columns):
        for i in range(n_rows):
            values[i] = block[i, j]
        counts[j] = _pick(values, cut, out, at)
        at += counts[j]
    return out[:at], counts


def split_cited(liked: np.ndarray, picked: np.ndarray, counts: np.ndarray) -> list[list[int]]:
    """The kernels' answer as one list of liked items per column."""
    cited = liked[picked].tolist()
    ends = np.cumsum(counts).tolist()
    return [cited[end - n : end] for end, n in zip(ends, counts.tolist(), strict=True)]


def warm_up(weights: np.ndarray | None, strength_dtype: np.dtype) -> None:
    """Compile (or read from numba's cache) the kernels for these dtypes, so a loaded
    model's first request does not. ``weights``: EASE's (``None``: item-kNN's block)."""
    rows = np.zeros(0, dtype=np.int64)
    strength = np.zeros(0, dtype=strength_dtype)
    if weights is not None:
        top_positive_dense(weights, rows, rows, strength, 1)
    else:
        top_positive_block(np.zeros((0, 0), dtype=strength_dtype), 1)
