"""Index ranges expanded into one flat array: the vectorised ``for i: for j in range(...)``.

Reading many rows of a CSR at once (the neighbours of a batch of nodes, the
entries of a batch of rows) comes down to concatenating
``arange(starts[i], starts[i] + lengths[i])`` and remembering which ``i``
each element came from. Kept in ``data`` so that every layer above
(retrieval, ranking, the graph and its overlay) can share one copy.
"""

from __future__ import annotations

import numpy as np


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(start, start + length)`` per range, and each element's range.

    The vectorised form of ``for i: for j in range(starts[i], starts[i] + lengths[i])``;
    both arrays are int64, ``owner[j]`` is the ``i`` that position ``j`` came from.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    if total == 0:
        return np.zeros(0, np.int64), owner
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths)
    return np.repeat(starts, lengths) + positions, owner
