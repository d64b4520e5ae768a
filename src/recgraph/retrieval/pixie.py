r"""Pixie: biased random walks from a user's recent items (Eksombatchai et al., WWW 2018).

Pinterest's Pixie answers from a bipartite graph of users and items held in
memory: for a user it takes the items the user acted on lately (the query
items), runs short random walks from each (item -> a user who has it ->
another item of that user's, restarting at the query item with probability
``restart`` after each step) and ranks items by how often the walks visit them.

As in the paper:

- the **step budget** ``steps`` is shared over the query items in proportion
  to their weight times ``deg(q) (C - log deg(q))`` (a popular item gets more
  steps, but less than in proportion to its degree; ``C`` is the log of the
  largest item degree plus one);
- the walks are **biased** toward the user: a query item's weight decays
  with its age relative to the user's latest action (``half_life_days``;
  edges written after training, the overlay, are the newest of all);
- each query item's walk **stops early** once ``early_candidates`` items
  have been visited at least ``visit_threshold`` times;
- visits from several query items are **boosted**: an item's score is
  :math:`(\sum_q \sqrt{V_q})^2`, so items reached from many query items beat
  items reached often from one.

The cost per request is the step budget, whatever the graph's size. The same
model serves who-to-follow on a follow graph (the "items" are accounts, a
user's query items the accounts they follow, latest first). Walks are seeded
per user, so a user gets the same answer alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from recgraph.data.interactions import DAY, Interactions
from recgraph.retrieval import pixie_kernels as kernels
from recgraph.retrieval.explanation import FROM_HISTORY, Explanation, make_explanation
from recgraph.retrieval.neighborhood import top_contributions
from recgraph.retrieval.walks import WalkConfig, WalkRetriever


class PixieConfig(WalkConfig):
    """Pixie settings (see the module docstring).

    ``steps``: the walk budget per user (item -> user -> item counts as one
    step); ``walkers``: walks run side by side (shared over the query items);
    ``query_items``: the user's most recent items walked from;
    ``early_candidates = 0`` turns early stopping off; ``boost = false``
    sums the visits instead.
    """

    steps: int = Field(default=20_000, ge=1)
    restart: float = Field(default=0.5, gt=0, le=1)
    query_items: int = Field(default=20, ge=1)
    half_life_days: float | None = Field(default=30.0, gt=0)
    visit_threshold: int = Field(default=4, ge=1)
    early_candidates: int = Field(default=500, ge=0)
    walkers: int = Field(default=2048, ge=1)
    boost: bool = True


class Pixie(WalkRetriever):
    """Random walks with restart over users x items from a user's recent items; visit counts score."""

    name = "pixie"
    supports: ClassVar[frozenset[str]] = frozenset({"items", "follows", "friends"})
    config_class: ClassVar[type[PixieConfig]] = PixieConfig
    config: PixieConfig

    def _fit(self, train: Interactions) -> None:
        positives = train.positives()
        if train.one_sided and not train.directed:
            # a friendship is recent for both ends
            src = np.concatenate([positives.src, positives.dst])
            dst = np.concatenate([positives.dst, positives.src])
            ts = positives.timestamp
            ts = np.concatenate([ts, ts]) if ts is not None else None
        else:
            src, dst, ts = positives.src, positives.dst, positives.timestamp
        keep = src != dst if train.one_sided else np.ones(len(src), dtype=bool)
        src, dst = np.asarray(src[keep], np.int64), np.asarray(dst[keep], np.int64)
        ts = np.zeros(len(src), np.int64) if ts is None else np.asarray(ts[keep], np.int64)
        # each user's latest query_items targets, latest first (ties: lower target first)
        order = np.lexsort((dst, -ts, src))
        src, dst, ts = src[order], dst[order], ts[order]
        first = np.r_[True, (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])]
        src, dst, ts = src[first], dst[first], ts[first]
        starts = np.searchsorted(src, src, side="left")
        rank = np.arange(len(src)) - starts
        recent = rank < self.config.query_items
        counts = np.bincount(src[recent], minlength=train.n_users)
        self.recent_indptr_ = np.zeros(train.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=self.recent_indptr_[1:])
        self.recent_items_ = dst[recent].astype(np.int32)
        self.recent_times_ = ts[recent]
        super()._fit(train)

    def _warm_up(self) -> None:
        kernels.warm_up()

    def _build(self) -> None:
        super()._build()
        in_degree = self.walk_graph_.in_degree
        self._log_constant = float(np.log(max(int(in_degree.max(initial=1)), 1))) + 1.0

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "recent.indptr": self.recent_indptr_,
            "recent.items": self.recent_items_,
            "recent.times": self.recent_times_,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.recent_indptr_ = state["recent.indptr"]
        self.recent_items_ = state["recent.items"]
        self.recent_times_ = state["recent.times"]

    @property
    def relation(self) -> str:
        if self.graph_kind == "items":
            return FROM_HISTORY
        return "similar to"

    # ------------------------------------------------------------------ the walks
    def query(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's query items and their weights (newest first; overlay edges newest of all)."""
        lo, hi = self.recent_indptr_[user], self.recent_indptr_[user + 1]
        items = self.recent_items_[lo:hi].astype(np.int64)
        times = self.recent_times_[lo:hi].astype(np.float64)
        half_life = self.config.half_life_days
        if half_life is not None and len(times):
            weights = 0.5 ** ((times.max() - times) / (half_life * DAY))
        else:
            weights = np.ones(len(items))
        if len(self.overlay):
            fresh = self.overlay.gather(np.array([user]), "out")[1]
            fresh = fresh[~np.isin(fresh, items)][-self.config.query_items :]
            items = np.concatenate([fresh[::-1], items])[: self.config.query_items]
            weights = np.concatenate([np.ones(len(fresh)), weights])[: self.config.query_items]
        return items, weights

    def walk(self, user: int) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """``(query items, their weights, per query item (visited items, visit counts))``.

        Every query item's walkers run side by side, each restarting at its own query
        item (:func:`~recgraph.retrieval.walk_kernels.pixie_walk`, seeded by the config's
        seed and the user).
        """
        cfg = self.config
        items, weights = self.query(user)
        if not len(items):
            return items, weights, []
        graph = self.walk_graph_
        degree = np.maximum(graph.degree(items, "in", capped=False), 1).astype(np.float64)
        scaled = weights * degree * np.maximum(self._log_constant - np.log(degree), 1e-3)
        budget = np.maximum(np.rint(cfg.steps * scaled / scaled.sum()).astype(np.int64), 1)
        # walkers per query item in proportion to its budget; each runs budget / walkers steps
        width = np.maximum(np.minimum(budget, np.rint(cfg.walkers * budget / budget.sum())), 1)
        n_items = self.n_items
        early = cfg.early_candidates
        # the early stop's counts (pooled, cleared where touched): only when it may stop early
        dtypes = (np.float64, np.uint8) if early else ()
        with self._scratches(*dtypes, size=n_items) as scratch:
            visits_of, flags = scratch if early else (np.zeros(0), np.zeros(0, np.uint8))
            keys, counts = kernels.pixie_walk(
                graph.kernel_graph(), np.asarray(items, np.int64), budget,
                width.astype(np.int64), float(cfg.restart), int(cfg.seed), int(user),
                float(cfg.visit_threshold), int(early), visits_of, flags,
            )  # fmt: skip
        query_of = keys // n_items
        bounds = np.searchsorted(query_of, np.arange(len(items) + 1))
        visits = [
            (keys[bounds[q] : bounds[q + 1]] % n_items, counts[bounds[q] : bounds[q + 1]])
            for q in range(len(items))
        ]
        return items, weights, visits

    def _combine(
        self, visits: list[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        if not visits:
            return np.zeros(0, np.int64), np.zeros(0)
        nodes = np.concatenate([v[0] for v in visits])
        counts = np.concatenate([v[1] for v in visits])
        with self._scratches(np.float64, np.uint8, size=self.n_items) as (sums, flags):
            return kernels.pixie_combine(nodes, counts, self.config.boost, sums, flags)

    def user_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        _, _, visits = self._cached(("walk", user), lambda: self.walk(user))
        return self._combine(visits)

    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """The query items whose walks reached each candidate, by their share of its score."""
        assert self.users is not None and self.items is not None
        user = int(self._check_users([user])[0])
        candidates = self._check_users_items(candidates)
        items, _, visits = self._cached(("walk", user), lambda: self.walk(user))
        out = []
        for candidate in candidates.tolist():
            per_query = np.zeros(len(visits))
            for j, (nodes, counts) in enumerate(visits):
                at = np.searchsorted(nodes, candidate)
                if at < len(nodes) and nodes[at] == candidate:
                    per_query[j] = counts[at]
            if self.config.boost:
                roots = np.sqrt(per_query)
                contrib, score = roots * roots.sum(), float(roots.sum() ** 2)
            else:
                contrib, score = per_query, float(per_query.sum())
            keep = contrib > 0
            via, share = top_contributions(items[keep], contrib[keep], top)
            out.append(
                make_explanation(
                    self.users, self.items, user, int(candidate), score, via, share, self.relation
                )
            )
        return out

    def _check_users_items(self, candidates: Sequence[int] | np.ndarray) -> np.ndarray:
        candidates = np.atleast_1d(np.asarray(candidates, dtype=np.int64))
        if len(candidates) and (candidates.min() < 0 or candidates.max() >= self.n_items):
            raise IndexError("candidate index outside the item range")
        return candidates
