"""Personalised PageRank by exact power iteration, for the ``ppr_*`` ranking features.

Kept apart from :mod:`recgraph.ranking.features`, which decides when to walk
(graph size, a PPR retriever's scores read instead) and reads these walks per
(user, candidate) pair.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.data.sparse_rows import row_entries

#: Restart probability of the ``ppr_*`` features' walks (PPR's default).
PPR_RESTART = 0.3
#: Power iterations of the ``ppr_*`` features (``0.7^12``: 1.4% of the mass left).
PPR_ITERATIONS = 12
#: Dense floats per power-iteration block (users x accounts); bounds memory.
PPR_BLOCK = 1 << 22


def transition(adjacency: sp.csr_matrix) -> sp.csr_matrix:
    """Row-stochastic walk matrix of ``adjacency`` (rows without edges stay zero)."""
    degree = np.asarray(adjacency.sum(axis=1), dtype=np.float64).ravel()
    with np.errstate(divide="ignore"):
        inverse = np.where(degree > 0, 1.0 / np.maximum(degree, 1e-12), 0.0)
    return sp.csr_matrix(sp.diags(inverse.astype(np.float32)) @ adjacency, dtype=np.float32)


def _ppr_blocks(
    walk: sp.csr_matrix,
    users: np.ndarray,
    restart: float,
    iterations: int,
    step: sp.csr_matrix | None = None,
):
    """``(start, x)`` per block of users: ``x`` is ``(n, block)``, column ``j`` user ``start + j``'s vector.

    ``step`` is ``walk.T.tocsr()`` when the caller keeps it (it costs more than a
    request's walk to build).
    """
    n = walk.shape[0]
    if step is None:
        step = walk.T.tocsr()  # x P computed as P^T x^T
    block = max(1, PPR_BLOCK // max(n, 1))
    for start in range(0, len(users), block):
        chunk = users[start : start + block]
        seed = np.zeros((n, len(chunk)), dtype=np.float32)
        seed[chunk, np.arange(len(chunk))] = 1.0
        x = seed.copy()
        for _ in range(iterations):
            x = restart * seed + (1.0 - restart) * (step @ x)
        yield start, x


def personalised_pagerank(
    walk: sp.csr_matrix,
    users: np.ndarray,
    restart: float = PPR_RESTART,
    iterations: int = PPR_ITERATIONS,
) -> np.ndarray:
    """``(len(users), n)`` PPR vectors by power iteration, a block of users at once.

    ``x <- restart * e_u + (1 - restart) * x P`` from ``x = e_u``; mass that
    reaches a node without exits is dropped (a sink; the PPR retriever gives
    it back to the user instead, so the two differ where sinks are reached;
    as a feature only the order matters). Blocks of users bound the work memory to
    :data:`PPR_BLOCK` floats (:func:`ppr_pairs` keeps no more than that).
    """
    out = np.zeros((len(users), walk.shape[0]), dtype=np.float32)
    for start, x in _ppr_blocks(walk, users, restart, iterations):
        out[start : start + x.shape[1]] = x.T
    return out


def ppr_pairs(
    walk: sp.csr_matrix,
    users: np.ndarray,
    items: np.ndarray,
    tied: sp.csr_matrix | None = None,
    restart: float = PPR_RESTART,
    iterations: int = PPR_ITERATIONS,
    step: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """PPR of each ``(users[i], items[i])`` pair, and each row's user's best score.

    The best is over accounts other than the user and those of ``tied``'s
    row (the accounts the user is tied to already). Only a block of vectors
    is held at a time. ``step``: ``walk.T.tocsr()``, when the caller keeps it.
    """
    unique, row = np.unique(users, return_inverse=True)
    values = np.zeros(len(users), dtype=np.float64)
    best = np.zeros(len(unique), dtype=np.float64)
    order = np.argsort(row, kind="stable")
    bounds = np.searchsorted(row[order], np.arange(len(unique) + 1))
    for start, x in _ppr_blocks(walk, unique, restart, iterations, step):
        stop = start + x.shape[1]
        rows = order[bounds[start] : bounds[stop]]
        values[rows] = x[items[rows], row[rows] - start]
        x[unique[start:stop], np.arange(stop - start)] = 0.0
        if tied is not None:
            pos, owner = row_entries(tied, unique[start:stop])
            x[tied.indices[pos], owner] = 0.0
        best[start:stop] = x.max(axis=0)
    return values, best[row]
