"""All-user EGOML candidates as a map over centres and a reduce over pairs.

With the A/B trick every centre ``c`` contributes ``x_u[c] * y_v[c]`` to
``E(u, v)`` for each ordered pair of its neighbours, independently of every
other centre. That is a MapReduce job:

- **map** (:func:`map_centre`): one centre, its neighbour list and the two
  per-neighbour numbers ``x_·[c]``, ``y_·[c]`` in, the partial scores
  ``(u, v, x_u[c] * y_v[c])`` out;
- **reduce** (:func:`reduce_pairs`): sum the partials of each ``(u, v)``;
- **top-k** (:func:`top_k_pairs`): per ``u``, the best ``k`` targets.

Every function here is pure and works on plain arrays (no model, no
Interactions), so a Spark job can ship them to executors as they are: a
``flatMap`` of :func:`map_centre` over the adjacency rows, a ``reduceByKey``
on ``(u, v)``, and :func:`top_k_pairs` per partition of users.

:func:`generate_candidates` runs the same job in one process: it partitions
the map output by user (as the shuffle would) and emits, for a block of users
at a time, only the partials whose ``u`` lies in the block, so memory is
bounded by the block and not by the whole 2-hop graph.

Layout: the adjacency is a symmetric CSR (``indptr``, ``indices``) with
sorted rows; ``x_edge[e]`` and ``y_edge[e]`` belong to the edge ``e = (c, x)``
(row ``c``, column ``x``): ``x_edge[e] = x_x[c]``, ``y_edge[e] = y_x[c]``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recgraph.data.ranges import expand_ranges
from recgraph.data.sorted_keys import sorted_lookup
from recgraph.retrieval.neighborhood import spans_by_work
from recgraph.retrieval.sparse_top_k import sparse_top_k


def map_centre(
    centre: int,
    members: np.ndarray,
    x_values: np.ndarray,
    y_values: np.ndarray,
    y_self: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The partial scores one centre gives: every ordered pair of its neighbours.

    Parameters
    ----------
    centre
        The centre ``c``.
    members
        ``N(c)``.
    x_values, y_values
        ``x_u[c]`` and ``y_u[c]`` for each ``u`` in ``members``.
    y_self
        ``y_c[c]`` when the centre is a candidate of its own ego graph (follow
        graphs): then ``(u, c, x_u[c] * y_c[c])`` is emitted for each member.

    Returns
    -------
    u, v, partial
        ``|N(c)| * (|N(c)| - 1)`` rows (plus ``|N(c)|`` with ``y_self``):
        ``partial = x_u[c] * y_v[c]``, ``u != v``.
    """
    members = np.asarray(members, dtype=np.int64)
    x_values = np.asarray(x_values, np.float64)
    d = len(members)
    u = np.repeat(members, d)
    v = np.tile(members, d)
    partial = np.outer(x_values, np.asarray(y_values, np.float64)).ravel()
    keep = u != v
    u, v, partial = u[keep], v[keep], partial[keep]
    if y_self is not None:
        u = np.r_[u, members]
        v = np.r_[v, np.full(d, centre, dtype=np.int64)]
        partial = np.r_[partial, x_values * float(y_self)]
    return u, v, partial


def map_centres(
    indptr: np.ndarray,
    indices: np.ndarray,
    x_edge: np.ndarray,
    y_edge: np.ndarray,
    centres: np.ndarray,
    y_self: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`map_centre` over many centres at once (vectorised, same output rows).

    ``y_self[c]`` (one per node) plays the part of :func:`map_centre`'s ``y_self``.
    """
    centres = np.asarray(centres, dtype=np.int64)
    degree = np.diff(indptr)[centres]
    # for each centre, each member u (the outer loop) ...
    edge_u, owner = expand_ranges(indptr[centres], degree)
    # ... paired with each member v of the same centre
    edge_v, second = expand_ranges(indptr[centres][owner], degree[owner])
    edge_u = edge_u[second]
    u, v = indices[edge_u], indices[edge_v]
    keep = u != v
    u = u[keep].astype(np.int64)
    v = v[keep].astype(np.int64)
    partial = (x_edge[edge_u] * y_edge[edge_v])[keep].astype(np.float64)
    if y_self is not None:
        own, own_centre = expand_ranges(indptr[centres], degree)
        u = np.r_[u, indices[own]]
        v = np.r_[v, centres[own_centre]]
        partial = np.r_[partial, x_edge[own] * y_self[centres[own_centre]]]
    return u, v, partial


def reduce_pairs(
    u: np.ndarray, v: np.ndarray, partial: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum the partials of each ``(u, v)``: ``E(u, v)``, sorted by ``u`` then ``v``.

    The reduce-by-key, done by scipy's COO to CSR conversion (a counting sort
    by ``u`` and a per-row sort by ``v``), not by a global sort.
    """
    u = np.asarray(u, dtype=np.int64)
    if not len(u):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    n_rows = int(u.max()) + 1
    summed = sp.csr_matrix(
        (np.asarray(partial, np.float64), (u, np.asarray(v, np.int64))), shape=(n_rows, n_nodes)
    )
    summed.sum_duplicates()
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(summed.indptr))
    return rows, summed.indices.astype(np.int64), summed.data


def top_k_pairs(
    u: np.ndarray,
    v: np.ndarray,
    score: np.ndarray,
    k: int,
    n_users: int,
    exclude_keys: np.ndarray | None = None,
    n_nodes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` targets per user from reduced ``(u, v, score)`` rows (``score > 0``).

    Ties go to the lower target id (as :func:`recgraph.retrieval.base.top_k`).
    ``exclude_keys`` (sorted ``u * n_nodes + v``) are dropped first. Returns
    ``(n_users, k)`` ids (``-1`` padded) and float32 scores (``-inf`` padded):
    only scored pairs, never a filler. The selection is
    :func:`~recgraph.retrieval.neighborhood.sparse_top_k`'s.
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    if exclude_keys is not None and len(exclude_keys):
        if n_nodes is None:
            raise ValueError("exclude_keys needs n_nodes")
        keep = sorted_lookup(exclude_keys, u * n_nodes + v) < 0
        u, v, score = u[keep], v[keep], score[keep]
    n_cols = int(max(n_nodes or 0, v.max() + 1 if len(v) else 1))
    scores = sp.csr_matrix((score, (u, v)), shape=(n_users, n_cols))
    ids, values = sparse_top_k(scores, k)
    unscored = ~(values > 0)
    ids[unscored] = -1
    values[unscored] = -np.inf
    return ids, values


def map_members(
    indptr: np.ndarray,
    indices: np.ndarray,
    reverse: np.ndarray,
    x_edge: np.ndarray,
    y_edge: np.ndarray,
    users: np.ndarray,
    y_self: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The map output restricted to ``u`` in ``users``: one user partition of the shuffle.

    Equal, as a multiset of rows, to the rows of :func:`map_centres` over all
    centres whose ``u`` lies in ``users``; ``reverse[e]`` is the edge ``(x, c)``
    of the edge ``e = (c, x)``.
    """
    users = np.asarray(users, dtype=np.int64)
    degree = np.diff(indptr)
    edge_uc, owner = expand_ranges(indptr[users], degree[users])
    centre = indices[edge_uc]
    edge_cu = reverse[edge_uc]
    edge_cv, second = expand_ranges(indptr[centre], degree[centre])
    u = users[owner[second]]
    v = indices[edge_cv].astype(np.int64)
    keep = u != v
    partial = x_edge[edge_cu[second]] * y_edge[edge_cv]
    u, v, partial = u[keep], v[keep], partial[keep].astype(np.float64)
    if y_self is not None:
        u = np.r_[u, users[owner]]
        v = np.r_[v, centre.astype(np.int64)]
        partial = np.r_[partial, x_edge[edge_cu] * y_self[centre]]
    return u, v, partial


def generate_candidates(
    indptr: np.ndarray,
    indices: np.ndarray,
    x_edge: np.ndarray,
    y_edge: np.ndarray,
    k: int,
    *,
    y_self: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    batch_lookups: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` EGOML candidates of every node, by map, reduce and top-k per user block.

    Parameters
    ----------
    indptr, indices
        Symmetric CSR adjacency (sorted rows).
    x_edge, y_edge
        Per-edge ``x`` and ``y`` (see the module docstring).
    k
        Candidates per node.
    y_self
        Per node ``y_c[c]``, when centres are candidates of their own ego graph.
    exclude
        ``(n, n)`` sparse matrix of pairs never to return (what each user
        already has); the node itself is never returned.
    batch_lookups
        About how many partial scores one user block emits.

    Returns
    -------
    ids, scores
        ``(n, k)``: targets best first and their ``E`` (``-1`` / ``-inf`` padding).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    keys = rows * n + indices
    reverse = sorted_lookup(keys, indices * n + rows)
    exclude_keys = None
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        exclude.sort_indices()
        ex_rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
        exclude_keys = ex_rows * n + exclude.indices.astype(np.int64)
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    degree = np.diff(indptr)
    wedges = np.bincount(rows, weights=degree[indices], minlength=n).astype(np.int64)
    for start, stop in spans_by_work(wedges, batch_lookups):
        users = np.arange(start, stop, dtype=np.int64)
        u, v, partial = map_members(indptr, indices, reverse, x_edge, y_edge, users, y_self)
        u, v, total = reduce_pairs(u, v, partial, n)
        block_ids, block_scores = top_k_pairs(
            u - start, v, total, k, stop - start, _shift(exclude_keys, start, stop, n), n
        )
        ids[start:stop], scores[start:stop] = block_ids, block_scores
    return ids, scores


def _shift(keys: np.ndarray | None, start: int, stop: int, n: int) -> np.ndarray | None:
    """Exclusion keys of rows ``start..stop`` re-based to row 0."""
    if keys is None:
        return None
    lo, hi = np.searchsorted(keys, [start * n, stop * n])
    return keys[lo:hi] - start * n
