r"""SALSA on the circle of trust: Twitter's "who to follow" (WTF, Gupta et al. 2013).

For a user ``u``:

1. the **circle of trust**: the ``circle`` accounts with the highest
   personalised PageRank from ``u`` (local push, :mod:`recgraph.retrieval.ppr`;
   ``u`` itself included), weighted by that PageRank;
2. a bipartite graph of **hubs** (the circle) and **authorities** (every
   account a hub follows; at most ``authorities_per_hub`` per hub, a fixed
   sample);
3. **SALSA** on it, personalised: a hub passes its score evenly to the
   accounts it follows, an authority passes its score evenly back to the hubs
   that follow it, and each hub step restarts to the circle's weights with
   probability ``salsa_restart``:

.. math::

    a = H^\top D_h^{-1} h, \qquad
    h \leftarrow \beta h_0 + (1 - \beta) H D_a^{-1} a

(``H`` the hubs x authorities follow matrix, ``D`` its degrees, ``h_0`` the
circle's weights). After ``iterations`` rounds the authority scores ``a``
rank the candidates: accounts the people ``u`` trusts follow, weighted by how
much of the circle's attention they share. The work per request is bounded by
the push's ε and by ``circle * hub_cap`` edges, not by the graph.

An authority's score splits exactly over the hubs that follow it
(``h_w / deg w``): those are the explanation ("followed by X and Y").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from recgraph.data.sorted_keys import find_sorted
from recgraph.retrieval import walk_kernels as kernels
from recgraph.retrieval.explanation import Explanation, make_explanation
from recgraph.retrieval.neighborhood import RELATION
from recgraph.retrieval.ppr import PersonalizedPageRank, unbounded_sweep_if_saved_before
from recgraph.retrieval.walks import WalkConfig, WalkRetriever


class SALSAConfig(WalkConfig):
    """SALSA settings.

    ``restart``, ``epsilon`` and ``circle_method`` are the circle's PageRank
    (``push`` by default; ``power`` is exact, for small graphs and tests);
    ``circle`` its size (WTF used 500 on Twitter; 200 recalled more on
    wiki-Vote, ego-Facebook and CollegeMsg); ``authorities_per_hub`` the follows of one hub
    that enter the bipartite graph (a fixed evenly spaced sample; ``0``: up to
    ``hub_cap``); ``iterations`` SALSA rounds; ``salsa_restart`` the
    probability a hub step returns to the circle's weights. ``circle_walk``
    is the circle's walk direction: either way by default (WTF walked
    follows only; on validation carved from train either way had the best
    worst-case share of ``out``, ``in`` and either way, 0.827; ``out`` lost
    30% of wiki-Vote's recall@20 and 46% of CollegeMsg's edge holdout's:
    ``benchmarks/results/graph_defaults.md``).

    The circle needs only the top ``circle`` of the PageRank vector, not
    its far tail: its sweep is budgeted at 2,000 edges (PPR's own default
    is 20,000), and 5 SALSA rounds are run (10 before). On validation carved
    from train (``benchmarks/salsa_budget.py``: each shared graph's benchmark
    outer split set aside unread, validation carved from its train part as
    ``benchmarks/graph_defaults.py`` carves it; the generated follows split at
    random) recall@20 against SALSA on the exact circle (power iteration, 10
    rounds) went from 0.982x / 1.016x / 0.993x (wiki-Vote, ego-Facebook,
    CollegeMsg; 300 validation users) to 1.075x / 1.055x / 1.029x, and from
    1.039x / 1.012x / 0.965x to 1.089x / 1.055x / 1.065x for 2,000 (CollegeMsg:
    all its 721); on 10^6 generated follows from 1.056x to 1.083x; the new
    defaults hold >= 0.98x everywhere, the old ones did not (CollegeMsg);
    88-93% of the top 20 the same accounts. A whole served-shaped request on 10^7 generated follows
    (walk, recommend, explain) went from 3.1-3.2 to 1.5-1.7 CPU ms (the sweep
    had gathered ~17,000 edges to rank 200).
    """

    restart: float = Field(default=0.3, gt=0, lt=1)
    epsilon: float = Field(default=1e-4, gt=0, lt=1)
    circle: int = Field(default=200, ge=1)
    circle_method: Literal["push", "power"] = "push"
    circle_walk: Literal["out", "in", "undirected"] = "undirected"
    #: The circle's PPR ``sweep_budget`` (see :class:`~recgraph.retrieval.ppr.PPRConfig`).
    sweep_budget: int = Field(default=2_000, ge=0)
    authorities_per_hub: int = Field(default=200, ge=0)
    iterations: int = Field(default=5, ge=1)
    salsa_restart: float = Field(default=0.15, ge=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _saved_before_the_budget(cls, data: Any) -> Any:
        return unbounded_sweep_if_saved_before(
            data, cls.model_fields, {"circle_walk", "warm_pages"}
        )


class SALSA(WalkRetriever):
    """Circle of trust from PageRank walks, then SALSA on hubs x authorities."""

    name = "salsa"
    supports: ClassVar[frozenset[str]] = frozenset({"follows", "friends"})
    config_class: ClassVar[type[SALSAConfig]] = SALSAConfig
    config: SALSAConfig

    def _build(self) -> None:
        super()._build()
        cfg = self.config
        ppr = PersonalizedPageRank(
            {
                "restart": cfg.restart,
                "epsilon": cfg.epsilon,
                "method": cfg.circle_method,
                "walk": cfg.circle_walk,
                "sweep_budget": cfg.sweep_budget,
                "hub_cap": cfg.hub_cap,
                "iterations": 100,
                "tol": 1e-8,
                "n_threads": 1,
            }
        )
        self.circle_model_ = self._companion(ppr)

    @property
    def relation(self) -> str:
        return RELATION["friends"] if self.graph_kind == "friends" else RELATION["out_out"]

    def circle_of_trust(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``circle`` accounts of highest PageRank from ``user``: ``(nodes, weights)``, weights sum to 1."""
        model = self.circle_model_
        if self.config.circle_method == "push":
            nodes, scores = model.cached_row(user)
        else:
            row = np.asarray(model.score_rows([user]))[0].astype(np.float64)
            nodes = np.flatnonzero(row > 0)
            scores = row[nodes]
        if len(nodes) > self.config.circle:
            top = kernels.best_first(
                np.asarray(scores, np.float64), np.asarray(nodes, np.int64), self.config.circle
            )
            top.sort()  # the nodes come sorted: the circle in node order
            nodes, scores = nodes[top], scores[top]
        return nodes, scores / max(scores.sum(), 1e-300)

    def _salsa(
        self, user: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
        """``(authorities, scores, hubs, (hub, authority) positions of the follows, hub
        scores / hub degree)`` of one user (:func:`~recgraph.retrieval.walk_kernels.salsa`:
        the products add their terms in the order scipy's CSR / CSC products do)."""
        cfg = self.config
        hubs, h0 = self.circle_of_trust(user)
        hubs = np.asarray(hubs, np.int64)
        cap = kernels.effective_cap(cfg.hub_cap, cfg.authorities_per_hub)
        with self._scratches(np.uint8) as (flags,):
            authorities, a, hub_of, authority_of, by_hub = kernels.salsa(
                self.walk_graph_.kernel_graph(), hubs, np.asarray(h0, np.float64), cap,
                cfg.iterations, cfg.salsa_restart, flags,
            )  # fmt: skip
        return authorities, a, hubs, (hub_of, authority_of), by_hub

    def user_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        authorities, scores, _, _, _ = self._cached(("salsa", user), lambda: self._salsa(user))
        keep = scores > 0
        return authorities[keep], scores[keep]

    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """The circle members that follow each candidate, by their share of its score."""
        assert self.users is not None
        user = int(self._check_users([user])[0])
        candidates = self._check_users(candidates)
        authorities, scores, hubs, (hub_of, authority_of), by_hub = self._cached(
            ("salsa", user), lambda: self._salsa(user)
        )
        # the follows into the candidates only, ranked for every candidate in one sort: by
        # candidate, then share (largest first), then hub (ties to the lower node), as
        # top_contributions ranks one candidate's (a call a candidate was a third of explain)
        at, found = find_sorted(authorities, candidates)
        slot = np.full(len(authorities), -1, dtype=np.int64)
        slot[at[found]] = np.flatnonzero(found)  # a repeated candidate: its last position
        into = slot[authority_of]
        picked = np.flatnonzero(into >= 0)
        rows = hub_of[picked]
        group, via_all, share = into[picked], hubs[rows], by_hub[rows]
        order = np.lexsort((via_all, -share, group))
        group, via_all, share = group[order], via_all[order], share[order].astype(np.float32)
        starts = np.searchsorted(group, np.arange(len(candidates) + 1))
        out = []
        for j, candidate in enumerate(candidates):
            if found[j]:
                owner = slot[at[j]]  # the position whose follows were picked
                lo, hi = starts[owner], starts[owner + 1]
                via, contrib = via_all[lo:hi][:top], share[lo:hi][:top]
                score = float(scores[at[j]])
            else:
                via, contrib, score = np.zeros(0, np.int64), np.zeros(0), 0.0
            out.append(
                make_explanation(
                    self.users, self.users, user, int(candidate), score, via, contrib, self.relation
                )
            )
        return out
