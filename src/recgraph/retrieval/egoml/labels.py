"""Training pairs for EGOML, labelled by time (or by a random edge holdout).

The graph is frozen at a time ``T`` inside the training data. A pair
``(u, v)`` is

- **positive** when ``u`` and ``v`` are not connected at ``T`` and connect
  in ``(T, T + ΔT]``, where ``T`` is the ``1 - label_fraction`` quantile of
  the pairs' first-seen times and ``T + ΔT`` is the end of the training data
  (the split of :func:`recgraph.data.splits.temporal_pairs`, applied to train);
- **negative** when it is not connected at ``T``, not positive, and shares at
  least one neighbour with ``u`` at ``T`` (the only pairs EGOML can score;
  with ``direct_candidates``, also a neighbour of ``u`` that ``u`` has no edge
  to, which the follow-graph model scores from that neighbour's own ego).

Pairs connected at ``T`` (on a follow graph: ``u -> v`` exists) are never
labelled. Only users with a reachable positive (one that shares a neighbour
at ``T``) form a ranking group; for each, at most ``negatives_per_user``
negatives are drawn uniformly without replacement from its candidates, with a
generator seeded by ``seed`` (the same data and seed give the same pairs).
``max_users`` caps the groups, drawn the same way.

Without timestamps there is no ``T``: a random ``label_fraction`` of the
training edges is held out (:func:`recgraph.data.splits.edge_holdout`) and
plays the part of the future. :attr:`TrainingPairs.description` says which
was done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.data.ranges import expand_ranges
from recgraph.data.sorted_keys import sorted_lookup
from recgraph.data.splits import edge_holdout, temporal_pairs
from recgraph.retrieval.egoml.features import EgoGraph


@dataclass(frozen=True)
class TrainingPairs:
    """Labelled pairs grouped by user (contiguous groups, users ascending).

    Attributes
    ----------
    graph
        The rows known at ``T``: features are computed on them.
    users, targets, labels
        The pairs ``(u, v)`` and 1 (connects later) or 0.
    method
        ``"temporal"`` or ``"edge_holdout"``.
    cut, horizon_end
        ``T`` and ``T + ΔT`` in unix seconds (temporal only).
    n_future_pairs
        Pairs that connect after ``T`` (before dropping unreachable ones).
    n_unreachable
        Future pairs dropped because ``u`` and ``v`` share no neighbour at ``T``.
    """

    graph: Interactions
    users: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    method: Literal["temporal", "edge_holdout"]
    cut: int | None
    horizon_end: int | None
    n_future_pairs: int
    n_unreachable: int

    def __len__(self) -> int:
        return len(self.users)

    @property
    def description(self) -> str:
        """One line saying how the labels were made."""
        pos = int(self.labels.sum())
        neg = len(self.labels) - pos
        groups = len(np.unique(self.users))
        if self.method == "temporal":
            how = (
                f"temporal labels: graph at T={self.cut}, positives = new pairs in "
                f"(T, {self.horizon_end}]"
            )
        else:
            how = (
                "no timestamps: labels from a random edge holdout of the training graph "
                "(held-out edges are the positives)"
            )
        return (
            f"{how}; {pos:,} positive and {neg:,} negative pairs over {groups:,} users; "
            f"{self.n_unreachable:,} of {self.n_future_pairs:,} future pairs cannot be "
            "scored at T (no common neighbour) and were left out"
        )


def split_for_labels(
    data: Interactions, label_fraction: float, seed: int
) -> tuple[Interactions, Interactions, Literal["temporal", "edge_holdout"]]:
    """``(graph at T, future rows, method)``: by time when there is time, else by holdout.

    The graph at ``T`` keeps every row up to ``T`` (repeated messages count
    as intensity); the future holds each pair's first row after ``T``.
    """
    data = data.positives()
    if data.has_timestamps:
        known, future = temporal_pairs(data, label_fraction)
        assert data.timestamp is not None and known.timestamp is not None
        cut = int(known.timestamp.max()) if len(known) else int(data.timestamp.min())
        return data.subset(data.timestamp <= cut), future, "temporal"
    known, future = edge_holdout(data, label_fraction, seed=seed)
    return known, future, "edge_holdout"


def make_training_pairs(
    data: Interactions,
    *,
    label_fraction: float = 0.2,
    negatives_per_user: int = 100,
    max_users: int | None = None,
    direct_candidates: bool = False,
    seed: int = 0,
) -> TrainingPairs:
    """Labelled pairs for EGOML from the training graph alone (see the module docstring).

    Parameters
    ----------
    data
        The training graph (one-sided).
    label_fraction
        Share of pairs (by first-seen time, or at random without time) that
        play the future.
    negatives_per_user
        At most this many negatives per user, drawn uniformly from the
        user's unconnected 2-hop candidates.
    max_users
        At most this many user groups (drawn at random), or all.
    direct_candidates
        Also count a neighbour of ``u`` that ``u`` is not connected *to* as a
        candidate (on a follow graph: an account that follows ``u`` whom ``u``
        does not follow), for the model that treats a centre as a candidate
        in its own ego graph.
    seed
        Seed of every random draw.
    """
    rng = np.random.default_rng(seed)
    known, future, method = split_for_labels(data, label_fraction, seed)
    graph = EgoGraph.from_interactions(known)
    n = graph.n_nodes
    # positives: future pairs, both orientations on a friendship graph
    f_src, f_dst = future.src.astype(np.int64), future.dst.astype(np.int64)
    if not data.directed:
        f_src, f_dst = np.r_[f_src, f_dst], np.r_[f_dst, f_src]
    keys = np.unique(f_src * n + f_dst)
    f_src, f_dst = keys // n, keys % n
    f_src, f_dst = f_src[f_src != f_dst], f_dst[f_src != f_dst]
    connected = _connected_keys(known)
    new = sorted_lookup(connected, f_src * n + f_dst) < 0
    f_src, f_dst = f_src[new], f_dst[new]
    n_future = len(f_src)
    reachable = _share_a_neighbour(graph, f_src, f_dst)
    if direct_candidates:
        reachable |= graph.edge_ids(f_src, f_dst) >= 0
    pos_u, pos_v = f_src[reachable], f_dst[reachable]

    group_users = np.unique(pos_u)
    if max_users is not None and len(group_users) > max_users:
        group_users = np.sort(rng.choice(group_users, size=max_users, replace=False))
        keep = np.isin(pos_u, group_users)
        pos_u, pos_v = pos_u[keep], pos_v[keep]

    neg_u, neg_v = _sample_negatives(
        graph, group_users, connected, pos_u * n + pos_v, negatives_per_user, rng, direct_candidates
    )
    users = np.r_[pos_u, neg_u]
    targets = np.r_[pos_v, neg_v]
    labels = np.r_[np.ones(len(pos_u), np.int8), np.zeros(len(neg_u), np.int8)]
    order = np.lexsort((targets, users))
    cut = horizon_end = None
    if method == "temporal":
        assert known.timestamp is not None and data.timestamp is not None
        cut = int(known.timestamp.max()) if len(known) else None
        horizon_end = int(data.timestamp.max())
    return TrainingPairs(
        graph=known,
        users=users[order],
        targets=targets[order],
        labels=labels[order],
        method=method,
        cut=cut,
        horizon_end=horizon_end,
        n_future_pairs=n_future,
        n_unreachable=int((~reachable).sum()),
    )


def _connected_keys(graph: Interactions) -> np.ndarray:
    """Sorted ``u * n + v`` of every pair already connected (both ways on friendships)."""
    n = graph.n_users
    src, dst = graph.src.astype(np.int64), graph.dst.astype(np.int64)
    if not graph.directed:
        src, dst = np.r_[src, dst], np.r_[dst, src]
    return np.unique(src * n + dst)


def _share_a_neighbour(graph: EgoGraph, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Whether each pair has a common neighbour in the structure view."""
    if not len(users):
        return np.zeros(0, dtype=bool)
    adjacency = graph.adjacency()
    common = np.asarray(adjacency[users].multiply(adjacency[targets]).sum(axis=1)).ravel()
    return common > 0


def _sample_negatives(
    graph: EgoGraph,
    users: np.ndarray,
    connected: np.ndarray,
    positive_keys: np.ndarray,
    per_user: int,
    rng: np.random.Generator,
    direct: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_user`` random 2-hop (or, with ``direct``, 1-hop), unconnected,
    non-positive targets per user."""
    if not len(users) or per_user == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = graph.n_nodes
    adjacency = graph.adjacency()
    out_u: list[np.ndarray] = []
    out_v: list[np.ndarray] = []
    positive_keys = np.sort(positive_keys)
    # users in blocks so the 2-hop rows stay small
    wedges = graph.wedge_counts()[users]
    start = 0
    while start < len(users):
        stop = start + 1
        total = wedges[start]
        while stop < len(users) and total + wedges[stop] <= 4_000_000:
            total += wedges[stop]
            stop += 1
        block = users[start:stop]
        two_hop = (adjacency[block] @ adjacency).tocsr()
        if direct:
            two_hop = (two_hop + adjacency[block]).tocsr()
        rows = np.repeat(np.arange(len(block)), np.diff(two_hop.indptr))
        u = block[rows]
        v = two_hop.indices.astype(np.int64)
        keys = u * n + v
        ok = (u != v) & (sorted_lookup(connected, keys) < 0)
        ok &= sorted_lookup(positive_keys, keys) < 0
        u, v = u[ok], v[ok]
        # a random rank within each user; keep the first per_user
        order = np.lexsort((rng.random(len(u)), u))
        u, v = u[order], v[order]
        starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1] if len(u) else np.zeros(0, int)
        lengths = np.diff(np.r_[starts, len(u)])
        take, _ = expand_ranges(starts, np.minimum(lengths, per_user))
        out_u.append(u[take])
        out_v.append(v[take])
        start = stop
    return np.concatenate(out_u), np.concatenate(out_v)
