"""Ego-graph features for EGOML: what a centre ``c`` knows about a pair ``(u, v)``.

``ego(c)`` is ``c``, its neighbours ``N(c)`` and the edges among them. For a
user ``u`` and a candidate ``v`` with ``c`` in ``N(u) ∩ N(v)``, EGOML scores
the pair from three kinds of columns:

- **centre** features of ``c`` alone (``|N(c)|``, the density of ``ego(c)``,
  its recent growth);
- **member** features of an edge ``(c, x)``, used once for ``x = u`` (the
  ``u.`` columns) and once for ``x = v`` (the ``v.`` columns): common
  neighbours of ``x`` and ``c`` (= the degree of ``x`` inside ``ego(c)``
  minus its edge to ``c``), the degree of ``x``, the intensity on ``x–c``
  (message counts / weights), the age of the ``x–c`` edge and the time since
  ``x`` last gained a neighbour inside ``ego(c)``;
- the **pair** feature ``|N(u) ∩ N(v) ∩ N(c)|`` (common neighbours of ``u``
  and ``v`` inside ``ego(c)``), for the exact variant only: it cannot be
  split into a ``u`` part and a ``v`` part.

Everything is computed on the *structure view* of the graph: ``x ~ y`` when
either has an edge to the other (on a follow graph the direction is kept as
member features). Edges are numbered by their position in the CSR of the
structure view (row = centre, column = member), so a per-edge array holds
one value per ``(c, x)``; the work is vectorised over batches of edges, with
a budget that bounds memory.

The common-neighbour sets ``N(c) ∩ N(x)`` are found by a sort-merge of edge
keys (``row * n + column``): for the edges ``(c, x)`` of a batch, every
neighbour ``w`` of ``x`` is looked up among the edges of ``c``. The hits are
the triangles ``(c, x, w)``; one pass over them yields every member feature,
and (exact variant) the *ego matrix* ``B`` over edge ids with
``B[(c,u), (c,w)] = 1`` iff ``u ~ w`` inside ``ego(c)``, so that
``(B @ B)[(c,u), (c,v)] = |N(u) ∩ N(v) ∩ N(c)|``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.data.ranges import expand_ranges
from recgraph.data.sorted_keys import sorted_lookup
from recgraph.data.sparse_rows import divided
from recgraph.progress import progress_bar
from recgraph.retrieval.neighborhood import spans_by_work

DAY = 86400.0
#: Default bound on the neighbour look-ups of one batch (memory ~ 40 bytes each).
DEFAULT_BATCH_LOOKUPS = 4_000_000


# ---------------------------------------------------------------------- the graph
@dataclass(eq=False)
class EgoGraph:
    """The structure view of a one-sided graph with per-edge attributes.

    Edge ``e`` is the ``e``-th nonzero of the symmetric CSR
    (``indptr``, ``indices``): row ``c``, column ``x``; both orientations of
    a pair are edges. Per-edge arrays are aligned with that order.

    Attributes
    ----------
    indptr, indices
        CSR structure of the symmetric adjacency, sorted, without self-loops.
    edge_out
        ``True`` when the row has an edge *to* the column (always on an
        undirected graph).
    edge_weight
        Summed values of all rows on the pair (both directions): message
        counts on a temporal multigraph, 1 on a plain graph.
    edge_first, edge_last
        Unix time of the first and the last row on the pair, or ``None``.
    now
        The reference time that ages are measured from (seconds).
    directed
        Whether the source graph is a follow graph.
    """

    indptr: np.ndarray
    indices: np.ndarray
    edge_out: np.ndarray
    edge_weight: np.ndarray
    edge_first: np.ndarray | None
    edge_last: np.ndarray | None
    now: float
    directed: bool
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_interactions(cls, data: Interactions, now: float | None = None) -> EgoGraph:
        """The structure view of ``data``'s positive rows (self-loops dropped).

        ``now`` defaults to the latest timestamp in ``data`` (0 without time).
        """
        if not data.one_sided:
            raise ValueError(
                "EGOML works on account graphs (follows or friends), not users x items"
            )
        data = data.positives()
        n = data.n_users
        keep = data.src != data.dst
        src = data.src[keep].astype(np.int64)
        dst = data.dst[keep].astype(np.int64)
        value = data.value[keep].astype(np.float64)
        stamps = None if data.timestamp is None else data.timestamp[keep].astype(np.int64)
        low, high = np.minimum(src, dst), np.maximum(src, dst)
        pair_keys, pair_of_row = np.unique(low * n + high, return_inverse=True)
        pair_of_row = pair_of_row.ravel()
        n_pairs = len(pair_keys)
        a, b = pair_keys // n, pair_keys % n
        weight = np.bincount(pair_of_row, weights=value, minlength=n_pairs)
        forward = np.zeros(n_pairs, dtype=bool)  # a -> b
        backward = np.zeros(n_pairs, dtype=bool)  # b -> a
        forward[pair_of_row[src == low]] = True
        backward[pair_of_row[src != low]] = True
        if not data.directed:
            forward[:] = backward[:] = True
        first = last = None
        if stamps is not None:
            first = np.full(n_pairs, np.iinfo(np.int64).max, dtype=np.int64)
            last = np.full(n_pairs, np.iinfo(np.int64).min, dtype=np.int64)
            np.minimum.at(first, pair_of_row, stamps)
            np.maximum.at(last, pair_of_row, stamps)
        rows = np.concatenate([a, b])
        cols = np.concatenate([b, a])
        pair_id = np.concatenate([np.arange(n_pairs), np.arange(n_pairs)])
        out = np.concatenate([forward, backward])
        order = np.lexsort((cols, rows))
        rows, cols, pair_id, out = rows[order], cols[order], pair_id[order], out[order]
        indptr = np.zeros(n + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.bincount(rows, minlength=n))
        if now is None:
            now = float(stamps.max()) if stamps is not None and len(stamps) else 0.0
        return cls(
            indptr=indptr,
            indices=cols.astype(np.int64),
            edge_out=out,
            edge_weight=weight[pair_id].astype(np.float32),
            edge_first=None if first is None else first[pair_id],
            edge_last=None if last is None else last[pair_id],
            now=float(now),
            directed=bool(data.directed),
        )

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The graph as plain arrays (for ``state.npz``), keys starting with ``prefix``."""
        arrays = {
            f"{prefix}indptr": self.indptr,
            f"{prefix}indices": self.indices,
            f"{prefix}edge_out": self.edge_out,
            f"{prefix}edge_weight": self.edge_weight,
            f"{prefix}meta": np.array([self.now, float(self.directed)], dtype=np.float64),
        }
        if self.edge_first is not None and self.edge_last is not None:
            arrays[f"{prefix}edge_first"] = self.edge_first
            arrays[f"{prefix}edge_last"] = self.edge_last
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> EgoGraph:
        now, directed = arrays[f"{prefix}meta"].tolist()
        return cls(
            indptr=arrays[f"{prefix}indptr"].astype(np.int64),
            indices=arrays[f"{prefix}indices"].astype(np.int64),
            edge_out=arrays[f"{prefix}edge_out"].astype(bool),
            edge_weight=arrays[f"{prefix}edge_weight"].astype(np.float32),
            edge_first=arrays.get(f"{prefix}edge_first"),
            edge_last=arrays.get(f"{prefix}edge_last"),
            now=float(now),
            directed=bool(directed),
        )

    # ------------------------------------------------------------------ shape
    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_edges(self) -> int:
        """Edges of the structure view, both orientations counted."""
        return len(self.indices)

    @property
    def has_time(self) -> bool:
        return self.edge_first is not None

    @property
    def has_weights(self) -> bool:
        """Whether intensity varies at all (message counts, weights)."""
        return bool(len(self.edge_weight)) and bool(np.any(self.edge_weight != 1.0))

    def _cached(self, key: str, make):
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = make()
        return value

    @property
    def degree(self) -> np.ndarray:
        """Neighbours per node in the structure view."""
        return self._cached("degree", lambda: np.diff(self.indptr))

    @property
    def edge_rows(self) -> np.ndarray:
        """The centre (row) of every edge."""
        return self._cached(
            "edge_rows", lambda: np.repeat(np.arange(self.n_nodes, dtype=np.int64), self.degree)
        )

    @property
    def edge_keys(self) -> np.ndarray:
        """``row * n + column`` per edge: sorted, for vectorised look-ups."""
        return self._cached("edge_keys", lambda: self.edge_rows * self.n_nodes + self.indices)

    @property
    def reverse(self) -> np.ndarray:
        """Id of the edge ``(x, c)`` for every edge ``(c, x)``."""
        return self._cached(
            "reverse",
            lambda: sorted_lookup(self.edge_keys, self.indices * self.n_nodes + self.edge_rows),
        )

    def edge_ids(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Edge id of each ``(rows[i], cols[i])``, ``-1`` when they are not neighbours."""
        rows = np.asarray(rows, dtype=np.int64)
        return sorted_lookup(self.edge_keys, rows * self.n_nodes + np.asarray(cols, np.int64))

    def adjacency(self) -> sp.csr_matrix:
        """Binary symmetric adjacency of the structure view."""
        return self._cached(
            "adjacency",
            lambda: sp.csr_matrix(
                (np.ones(self.n_edges, np.float32), self.indices, self.indptr),
                shape=(self.n_nodes, self.n_nodes),
            ),
        )

    @property
    def out_degree(self) -> np.ndarray:
        return self._cached(
            "out_degree",
            lambda: np.bincount(self.edge_rows[self.edge_out], minlength=self.n_nodes),
        )

    @property
    def in_degree(self) -> np.ndarray:
        return self._cached(
            "in_degree",
            lambda: np.bincount(
                self.edge_rows[self.edge_out[self.reverse]], minlength=self.n_nodes
            ),
        )

    @property
    def strength(self) -> np.ndarray:
        """Summed intensity per node."""
        return self._cached(
            "strength",
            lambda: np.bincount(self.edge_rows, weights=self.edge_weight, minlength=self.n_nodes),
        )

    def wedge_counts(self) -> np.ndarray:
        """Paths ``x - c - y`` that start at each node: ``sum of deg(c) over c in N(x)``."""
        return self._cached(
            "wedges",
            lambda: np.bincount(
                self.edge_rows, weights=self.degree[self.indices], minlength=self.n_nodes
            ).astype(np.int64),
        )


# ---------------------------------------------------------------------- triangles
@dataclass(frozen=True)
class EgoStats:
    """Per-edge aggregates over the triangles ``(c, x, w)``, and the ego matrix.

    Attributes
    ----------
    common
        ``|N(c) ∩ N(x)|`` per edge ``(c, x)``.
    joined
        Latest first-seen time of an edge from ``x`` into ``ego(c)`` (the edge
        ``x–c`` itself included); ``None`` without time.
    recent_in_ego
        How many of ``x``'s edges into ``ego(c)`` appeared in the recent window.
    ego_matrix
        ``B`` over edge ids (exact variant only, else ``None``).
    """

    common: np.ndarray
    joined: np.ndarray | None
    recent_in_ego: np.ndarray | None
    ego_matrix: sp.csr_matrix | None


def ego_stats(
    graph: EgoGraph,
    *,
    recent_days: float = 14.0,
    keep_ego_matrix: bool = False,
    batch_lookups: int = DEFAULT_BATCH_LOOKUPS,
    progress: bool = True,
) -> EgoStats:
    """One pass over every triangle ``(c, x, w)``: the member aggregates of each edge.

    Batches of edges ``(c, x)`` (in id order) look up every neighbour ``w``
    of ``x`` among the edges of ``c``; a batch holds about ``batch_lookups``
    look-ups, so memory stays bounded on hubs.
    """
    m = graph.n_edges
    common = np.zeros(m, dtype=np.int64)
    joined = None
    recent_in_ego = None
    recent_edge = None
    if graph.has_time:
        assert graph.edge_first is not None
        joined = graph.edge_first.astype(np.int64).copy()  # the edge x-c itself
        recent_edge = graph.edge_first >= graph.now - recent_days * DAY
        recent_in_ego = recent_edge.astype(np.int64)
    ego_rows: list[np.ndarray] = []
    ego_cols: list[np.ndarray] = []
    members = graph.indices
    lookups = graph.degree[members]
    batches = spans_by_work(lookups, batch_lookups)
    bar = progress_bar("egoml: ego graphs", total=m, unit="edges") if progress else None
    with bar if bar is not None else nullcontext(lambda n=1: None) as advance:
        for start, stop in batches:
            edges = np.arange(start, stop, dtype=np.int64)
            member_edges, owner = expand_ranges(graph.indptr[members[edges]], lookups[edges])
            if len(member_edges):
                centre = graph.edge_rows[edges][owner]
                centre_edges = graph.edge_ids(centre, graph.indices[member_edges])
                hit = centre_edges >= 0
                edge_cx = edges[owner[hit]]
                edge_cw = centre_edges[hit]
                edge_xw = member_edges[hit]
                common[start:stop] = np.bincount(edge_cx - start, minlength=stop - start)
                if joined is not None and len(edge_cx):
                    assert graph.edge_first is not None and recent_edge is not None
                    assert recent_in_ego is not None
                    # edge_cx is sorted: a segmented max per edge
                    firsts, starts = np.unique(edge_cx, return_index=True)
                    latest = np.maximum.reduceat(graph.edge_first[edge_xw], starts)
                    joined[firsts] = np.maximum(joined[firsts], latest)
                    recent_in_ego[start:stop] += np.bincount(
                        edge_cx - start, weights=recent_edge[edge_xw], minlength=stop - start
                    ).astype(np.int64)
                if keep_ego_matrix:
                    ego_rows.append(edge_cx)
                    ego_cols.append(edge_cw)
            advance(stop - start)
    ego_matrix = None
    if keep_ego_matrix:
        cols = np.concatenate(ego_cols) if ego_cols else np.zeros(0, np.int64)
        indptr = np.zeros(m + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(common)
        ego_matrix = sp.csr_matrix(
            (
                np.ones(len(cols), np.float32),
                cols.astype(np.int32 if m < 2**31 else np.int64),
                indptr,
            ),
            shape=(m, m),
        )
        ego_matrix.has_sorted_indices = True
    return EgoStats(
        common=common, joined=joined, recent_in_ego=recent_in_ego, ego_matrix=ego_matrix
    )


# ---------------------------------------------------------------------- feature tables
@dataclass(frozen=True)
class FeatureTables:
    """Centre features per node and member features per edge, with their names."""

    centre_names: tuple[str, ...]
    centre: np.ndarray  # (n_nodes, len(centre_names)) float32
    member_names: tuple[str, ...]
    member: np.ndarray  # (n_edges [+ n_nodes], len(member_names)) float32
    stats: EgoStats
    self_rows: bool = False

    def pair_feature(self, edges_u: np.ndarray, edges_v: np.ndarray) -> np.ndarray:
        """``|N(u) ∩ N(v) ∩ N(c)|`` per triple; for ``v = c`` it is ``|N(u) ∩ N(c)|``."""
        assert self.stats.ego_matrix is not None, "the exact variant keeps the ego matrix"
        edges_u = np.asarray(edges_u, dtype=np.int64)
        edges_v = np.asarray(edges_v, dtype=np.int64)
        m = len(self.stats.common)
        is_self = edges_v >= m
        out = np.empty(len(edges_u), np.float32)
        out[is_self] = self.stats.common[edges_u[is_self]]
        out[~is_self] = pair_common_in_ego(
            self.stats.ego_matrix, edges_u[~is_self], edges_v[~is_self]
        )
        return out

    def side_names(self, side: str) -> list[str]:
        """Column names of one side: ``centre.*`` then ``u.*`` or ``v.*``."""
        return [f"centre.{n}" for n in self.centre_names] + [
            f"{side}.{n}" for n in self.member_names
        ]

    def side(self, centres: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Rows ``[centre features of c, member features of (c, x)]`` for edges ``(c, x)``."""
        return np.hstack([self.centre[centres], self.member[edges]])

    def exact(
        self, centres: np.ndarray, edges_u: np.ndarray, edges_v: np.ndarray, pair: np.ndarray
    ) -> np.ndarray:
        """Rows of the exact variant: centre, ``u`` side, ``v`` side, pair feature."""
        return np.hstack(
            [
                self.centre[centres],
                self.member[edges_u],
                self.member[edges_v],
                np.asarray(pair, np.float32)[:, None],
            ]
        )

    def exact_names(self) -> list[str]:
        return (
            [f"centre.{n}" for n in self.centre_names]
            + [f"u.{n}" for n in self.member_names]
            + [f"v.{n}" for n in self.member_names]
            + ["pair.common_in_ego"]
        )


def feature_tables(
    graph: EgoGraph,
    *,
    recent_days: float = 14.0,
    keep_ego_matrix: bool = False,
    self_rows: bool = False,
    batch_lookups: int = DEFAULT_BATCH_LOOKUPS,
    progress: bool = True,
) -> FeatureTables:
    """Every centre and member feature of ``graph``.

    With ``self_rows`` the member table has ``n`` more rows, ``n_edges + c``
    for the centre ``c`` as a member of its own ego graph (column
    ``is_centre``): the ``v``-side of the candidate ``v = c``, which a
    follow graph needs for accounts that follow ``u`` but that ``u`` does
    not follow yet. Their node columns (degrees, recent edges) are ``c``'s
    own; their edge columns are 0.

    Columns depend on what the graph has: direction columns on follow graphs,
    intensity columns when weights vary, time columns with timestamps. The
    names are kept with the model, so scoring always uses the same columns.
    """
    stats = ego_stats(
        graph,
        recent_days=recent_days,
        keep_ego_matrix=keep_ego_matrix,
        batch_lookups=batch_lookups,
        progress=progress,
    )
    degree = graph.degree.astype(np.float64)
    rows, members = graph.edge_rows, graph.indices
    triangles = np.bincount(rows, weights=stats.common, minlength=graph.n_nodes) / 2.0
    pairs_in_ego = degree * (degree - 1) / 2.0

    centre: dict[str, np.ndarray] = {
        "degree": degree,
        "ego_density": divided(triangles, pairs_in_ego, 0.0),
        "triangles": triangles,
    }
    member: dict[str, np.ndarray] = {
        "degree": degree[members],
        "common_with_centre": stats.common.astype(np.float64),
        "share_of_ego": divided(stats.common, degree[rows] - 1, 0.0),
        "share_of_member": divided(stats.common, degree[members] - 1, 0.0),
    }
    if graph.directed:
        out_deg, in_deg = graph.out_degree.astype(np.float64), graph.in_degree.astype(np.float64)
        centre["out_degree"] = out_deg
        centre["in_degree"] = in_deg
        member["to_centre"] = graph.edge_out[graph.reverse].astype(np.float64)
        member["from_centre"] = graph.edge_out.astype(np.float64)
        member["out_degree"] = out_deg[members]
        member["in_degree"] = in_deg[members]
    if graph.has_weights:
        strength = graph.strength
        weight = graph.edge_weight.astype(np.float64)
        centre["strength"] = strength
        member["intensity"] = weight
        member["intensity_share_of_member"] = divided(weight, strength[members], 0.0)
        member["intensity_share_of_centre"] = divided(weight, strength[rows], 0.0)
    if graph.has_time:
        assert graph.edge_first is not None and graph.edge_last is not None
        assert stats.joined is not None and stats.recent_in_ego is not None
        now = graph.now
        recent = (graph.edge_first >= now - recent_days * DAY).astype(np.float64)
        recent_per_node = np.bincount(rows, weights=recent, minlength=graph.n_nodes)
        centre["recent_edges"] = recent_per_node
        member["edge_age_days"] = (now - graph.edge_first) / DAY
        member["days_since_last_contact"] = (now - graph.edge_last) / DAY
        member["days_since_joined_ego"] = (now - stats.joined) / DAY
        member["recent_edges"] = recent_per_node[members]
        member["recent_in_ego"] = stats.recent_in_ego.astype(np.float64)

    n_member_rows = graph.n_edges
    if self_rows:
        own = {
            "degree": degree,
            "out_degree": centre.get("out_degree"),
            "in_degree": centre.get("in_degree"),
            "recent_edges": centre.get("recent_edges"),
        }
        for name in member:
            value = own.get(name)
            extra = np.zeros(graph.n_nodes) if value is None else value
            member[name] = np.concatenate([member[name], extra])
        member["is_centre"] = np.r_[np.zeros(graph.n_edges), np.ones(graph.n_nodes)]
        n_member_rows += graph.n_nodes

    def stack(columns: dict[str, np.ndarray], length: int) -> np.ndarray:
        if not columns:
            return np.zeros((length, 0), np.float32)
        return np.column_stack(list(columns.values())).astype(np.float32)

    return FeatureTables(
        centre_names=tuple(centre),
        centre=stack(centre, graph.n_nodes),
        member_names=tuple(member),
        member=stack(member, n_member_rows),
        stats=stats,
        self_rows=self_rows,
    )


# ---------------------------------------------------------------------- triples
@dataclass(frozen=True)
class Triples:
    """Centre-member-candidate triples ``(c, u, v)`` with their two edge ids.

    ``owner`` indexes the pair (or the user) each triple belongs to.
    """

    owner: np.ndarray
    centre: np.ndarray
    edge_u: np.ndarray  # edge (c, u)
    edge_v: np.ndarray  # edge (c, v)
    target: np.ndarray  # v

    def __len__(self) -> int:
        return len(self.centre)


def pair_triples(
    graph: EgoGraph, users: np.ndarray, targets: np.ndarray, with_self: bool = False
) -> Triples:
    """For each pair ``(u, v)``, one triple per common neighbour ``c`` (pairs in order).

    ``with_self`` adds the triple ``(v, u, v)`` when ``v`` is a neighbour of
    ``u`` (its ``edge_v`` is the self row ``n_edges + v``).
    """
    users = np.asarray(users, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    degree = graph.degree
    # walk the shorter neighbour list, look the other up
    walk_u = degree[users] <= degree[targets]
    walker = np.where(walk_u, users, targets)
    other = np.where(walk_u, targets, users)
    walked, owner = expand_ranges(graph.indptr[walker], degree[walker])
    centre = graph.indices[walked]
    other_edge = graph.edge_ids(centre, other[owner])  # edge (c, other)
    hit = other_edge >= 0
    owner, centre, walked, other_edge = owner[hit], centre[hit], walked[hit], other_edge[hit]
    reverse = graph.reverse
    walker_edge = reverse[walked]  # edge (c, walker)
    by_u = walk_u[owner]
    edge_u = np.where(by_u, walker_edge, other_edge)
    edge_v = np.where(by_u, other_edge, walker_edge)
    triples = Triples(
        owner=owner, centre=centre, edge_u=edge_u, edge_v=edge_v, target=targets[owner]
    )
    if not with_self:
        return triples
    edge_vu = graph.edge_ids(targets, users)
    pairs = np.flatnonzero(edge_vu >= 0)
    own = Triples(
        owner=pairs,
        centre=targets[pairs],
        edge_u=edge_vu[pairs],
        edge_v=graph.n_edges + targets[pairs],
        target=targets[pairs],
    )
    return _merge_by_owner(triples, own)


def _merge_by_owner(first: Triples, second: Triples) -> Triples:
    """Both sets of triples, ordered by owner (stable: ``first``'s before ``second``'s)."""
    owner = np.r_[first.owner, second.owner]
    order = np.argsort(owner, kind="stable")
    return Triples(
        owner=owner[order],
        centre=np.r_[first.centre, second.centre][order],
        edge_u=np.r_[first.edge_u, second.edge_u][order],
        edge_v=np.r_[first.edge_v, second.edge_v][order],
        target=np.r_[first.target, second.target][order],
    )


def user_triples(
    graph: EgoGraph,
    users: np.ndarray,
    drop: sp.csr_matrix | None = None,
    with_self: bool = False,
) -> Triples:
    """Every triple ``(c, u, v)`` with ``c`` in ``N(u)``, ``v`` in ``N(c)``, ``v != u``.

    ``owner`` is the position of ``u`` in ``users``. Pairs nonzero in ``drop``
    (rows indexed like ``users``, e.g. what each user already has) are left
    out. ``with_self`` adds ``(c, u, c)`` for every ``c`` in ``N(u)``, with
    the self row ``n_edges + c`` as ``edge_v``.
    """
    users = np.asarray(users, dtype=np.int64)
    degree = graph.degree
    edge_uc, first_owner = expand_ranges(graph.indptr[users], degree[users])
    first_centre = graph.indices[edge_uc]
    first_edge_cu = graph.reverse[edge_uc]
    edge_cv, second = expand_ranges(graph.indptr[first_centre], degree[first_centre])
    owner = first_owner[second]
    centre = first_centre[second]
    edge_cu = first_edge_cu[second]
    target = graph.indices[edge_cv]
    if with_self:
        owner = np.r_[owner, first_owner]
        centre = np.r_[centre, first_centre]
        edge_cu = np.r_[edge_cu, first_edge_cu]
        edge_cv = np.r_[edge_cv, graph.n_edges + first_centre]
        target = np.r_[target, first_centre]
    keep = target != users[owner]
    if drop is not None and drop.nnz:
        drop = sp.csr_matrix(drop)
        drop.sort_indices()
        drop_rows = np.repeat(np.arange(drop.shape[0], dtype=np.int64), np.diff(drop.indptr))
        drop_keys = drop_rows * graph.n_nodes + drop.indices
        keep &= sorted_lookup(drop_keys, owner * graph.n_nodes + target) < 0
    return Triples(
        owner=owner[keep],
        centre=centre[keep],
        edge_u=edge_cu[keep],
        edge_v=edge_cv[keep],
        target=target[keep],
    )


def pair_common_in_ego(
    ego_matrix: sp.csr_matrix, edge_u: np.ndarray, edge_v: np.ndarray
) -> np.ndarray:
    """``|N(u) ∩ N(v) ∩ N(c)|`` for triples given by their edges ``(c, u)`` and ``(c, v)``.

    Rows of ``B @ B`` for the distinct ``(c, u)`` only: the work is the sum of
    ``common(c, w)`` over the ego neighbours ``w`` of each ``u``, which is what
    counting 4-paths inside the egos costs, and no more.
    """
    edge_u = np.asarray(edge_u, dtype=np.int64)
    edge_v = np.asarray(edge_v, dtype=np.int64)
    if not len(edge_u):
        return np.zeros(0, np.float32)
    rows, row_of_triple = np.unique(edge_u, return_inverse=True)
    product = (ego_matrix[rows] @ ego_matrix).tocsr()
    product.sort_indices()
    m = ego_matrix.shape[1]
    keys = (
        np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(product.indptr)) * m
        + product.indices
    )
    pos = sorted_lookup(keys, row_of_triple.ravel() * m + edge_v)
    out = np.zeros(len(edge_u), np.float32)
    found = pos >= 0
    out[found] = product.data[pos[found]]
    return out
