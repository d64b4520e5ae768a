"""Edges written after training, kept in memory so that graph walks see them at once.

GraphJet's way: the big graph is read-only (a memory-mapped
:class:`~recgraph.data.graph_csr.GraphCSR`); follows and likes that arrive
later (``POST /v1/feedback``, the crawler) go into a small overlay that
every walk reads beside it, until the next training folds them into the big
graph. The overlay holds dense indices of the model's id maps; edges to or
from nodes the model never saw cannot be walked and are left out by the
caller (:meth:`GraphOverlay.add` ignores negative indices).

Reads are vectorised: the edges are kept as two small sorted CSRs (by
source and by target), rebuilt on the first read after a write, so a walk
asks for the overlay neighbours of many nodes with one ``searchsorted``.
Thread-safe: writes take a lock; a read takes the current snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.ranges import expand_ranges
from recgraph.data.sorted_keys import find_sorted

#: Edges an overlay keeps at most; past it the oldest are dropped (train again to keep them).
DEFAULT_MAX_EDGES = 1_000_000


@dataclass(frozen=True)
class _Side:
    nodes: np.ndarray  # sorted distinct row nodes (int64)
    indptr: np.ndarray  # len(nodes) + 1
    indices: np.ndarray  # neighbours (int64)

    @classmethod
    def build(cls, rows: np.ndarray, cols: np.ndarray) -> _Side:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        nodes, counts = np.unique(rows, return_counts=True)
        indptr = np.zeros(len(nodes) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(nodes, indptr, cols)

    def degrees(self, nodes: np.ndarray) -> np.ndarray:
        if not len(self.nodes):
            return np.zeros(len(nodes), dtype=np.int64)
        at, hit = find_sorted(self.nodes, nodes)
        return np.where(hit, self.indptr[at + 1] - self.indptr[at], 0)

    def gather(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.nodes) or not len(nodes):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        at, hit = find_sorted(self.nodes, nodes)
        lengths = np.where(hit, self.indptr[at + 1] - self.indptr[at], 0)
        positions, owner = expand_ranges(self.indptr[at], lengths)
        return owner, self.indices[positions]


_EMPTY = _Side(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))


class GraphOverlay:
    """New edges ``src -> dst`` (dense indices) that walks read beside the trained graph."""

    def __init__(self, max_edges: int = DEFAULT_MAX_EDGES) -> None:
        self.max_edges = max_edges
        self._lock = threading.Lock()
        self._src: list[np.ndarray] = []
        self._dst: list[np.ndarray] = []
        self._pairs: set[tuple[int, int]] = set()
        self._snapshot: tuple[_Side, _Side] | None = (_EMPTY, _EMPTY)
        self.version = 0

    def __len__(self) -> int:
        return len(self._pairs)

    def add(self, src: np.ndarray | list[int], dst: np.ndarray | list[int]) -> int:
        """Add edges (duplicates and negative indices are skipped); return how many were new."""
        src = np.atleast_1d(np.asarray(src, dtype=np.int64))
        dst = np.atleast_1d(np.asarray(dst, dtype=np.int64))
        if src.shape != dst.shape:
            raise ValueError("src and dst differ in length")
        added_src, added_dst = [], []
        with self._lock:
            for s, d in zip(src.tolist(), dst.tolist(), strict=True):
                if s < 0 or d < 0 or (s, d) in self._pairs:
                    continue
                self._pairs.add((s, d))
                added_src.append(s)
                added_dst.append(d)
            if added_src:
                self._src.append(np.asarray(added_src, np.int64))
                self._dst.append(np.asarray(added_dst, np.int64))
                if len(self._pairs) > self.max_edges:
                    self._trim()
                self._snapshot = None
                self.version += 1
        return len(added_src)

    def clear(self) -> None:
        """Forget every edge (after a training that folded them in)."""
        with self._lock:
            self._src, self._dst, self._pairs = [], [], set()
            self._snapshot = (_EMPTY, _EMPTY)
            self.version += 1

    def _trim(self) -> None:
        src, dst = np.concatenate(self._src), np.concatenate(self._dst)
        if len(src) > self.max_edges:
            for s, d in zip(
                src[: -self.max_edges].tolist(), dst[: -self.max_edges].tolist(), strict=True
            ):
                self._pairs.discard((s, d))
            src, dst = src[-self.max_edges :], dst[-self.max_edges :]
        self._src, self._dst = [src], [dst]

    def _sides(self) -> tuple[_Side, _Side]:
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        with self._lock:
            if self._snapshot is None:
                src = np.concatenate(self._src) if self._src else np.zeros(0, np.int64)
                dst = np.concatenate(self._dst) if self._dst else np.zeros(0, np.int64)
                self._snapshot = (_Side.build(src, dst), _Side.build(dst, src))
            return self._snapshot

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Every overlay edge as ``(src, dst)`` arrays, sorted by source."""
        out = self._sides()[0]
        return np.repeat(out.nodes, np.diff(out.indptr)), out.indices.copy()

    def degrees(self, nodes: np.ndarray, side: str = "out") -> np.ndarray:
        """Overlay edges per node: out of it (``out``) or into it (``in``)."""
        return self._sides()[0 if side == "out" else 1].degrees(np.asarray(nodes, np.int64))

    def gather(self, nodes: np.ndarray, side: str = "out") -> tuple[np.ndarray, np.ndarray]:
        """``(owner, neighbour)`` pairs as :meth:`GraphCSR.gather` gives them, overlay edges only."""
        return self._sides()[0 if side == "out" else 1].gather(np.asarray(nodes, np.int64))

    def arrays(self, side: str = "out") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One side as ``(sorted row nodes, row pointers, neighbours)`` (int64; a snapshot:
        later writes build new arrays), the form the compiled walks read."""
        return self.snapshot()[0 if side == "out" else 1]

    def snapshot(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """Both sides as :meth:`arrays` gives them, from one read: a write between two calls
        of :meth:`arrays` would give one walk two snapshots."""
        return tuple((s.nodes, s.indptr, s.indices) for s in self._sides())  # type: ignore[return-value]


def recent_follows(store, since: int) -> tuple[np.ndarray, np.ndarray]:
    """External ids ``(src, dst)`` of the active follows created at or after ``since``
    (or first seen then, when the creation time is unknown).

    What a crawler wrote after training, for a server to put in its overlay.
    """
    f = schema.follows.c
    return _edge_ids(
        store,
        schema.follows,
        (f.source_id, schema.accounts),
        (f.target_id, schema.accounts),
        f.removed_at.is_(None),
        sa.or_(f.created_at >= since, sa.and_(f.created_at.is_(None), f.seen_at >= since)),
    )


def recent_likes(store, since: int) -> tuple[np.ndarray, np.ndarray]:
    """External ids ``(user, item)`` of the interactions other than dislikes stamped at or after
    ``since``: what ``POST /v1/feedback`` wrote after training, for a server's overlay."""
    i = schema.interactions.c
    return _edge_ids(
        store,
        schema.interactions,
        (i.user_id, schema.accounts),
        (i.item_id, schema.items),
        i.kind != "dislike",
        i.timestamp >= since,
    )


def _edge_ids(store, table: sa.Table, source, target, *conditions) -> tuple[np.ndarray, np.ndarray]:
    """Distinct external id pairs of ``table``'s rows meeting ``conditions``; ``source`` and
    ``target`` are ``(key column, table of ids)``."""
    (src_key, src_table), (dst_key, dst_table) = source, target
    a_src, a_dst = src_table.alias("s"), dst_table.alias("d")
    query = (
        sa.select(a_src.c.external_id, a_dst.c.external_id)
        .select_from(table.join(a_src, a_src.c.id == src_key).join(a_dst, a_dst.c.id == dst_key))
        .where(*conditions)
        .distinct()
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    src = np.asarray([r[0] for r in rows], dtype=object)
    dst = np.asarray([r[1] for r in rows], dtype=object)
    return src, dst
