r"""Personalised PageRank (random walk with restart) from each user.

A walker starts at ``u``, follows a random edge of the walk direction at each
step, and jumps back to ``u`` with probability ``restart`` (and whenever it is
stuck on a node with no edge out). Its stationary distribution

.. math::

    \pi_u = \alpha\, e_u + (1 - \alpha) \left(\pi_u P + (\pi_u \cdot d)\, e_u\right),
    \qquad P = D^{-1} W,\ d_w = [\deg w = 0]

(``alpha`` the restart probability, ``W`` the walk matrix, ``D`` its
out-degrees) scores every account for ``u``. It is found by power iteration
on a batch of seed vectors at once: ``X <- (1 - alpha) P^T X + (alpha + (1 -
alpha) lost) E``, with ``P^T`` sparse and ``X`` a dense ``n x batch`` block,
until a user's vector moves less than ``tol`` (L1) or ``iterations`` steps
are done. Each user's vector stops on its own, so a user scores the same
alone or in a batch. This is NetworkX's ``pagerank(G, alpha=1 - restart,
personalization={u: 1})`` (dangling mass back to the seed), and it sees
further than two hops: candidates many short paths lead to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.retrieval.base import rows_as_csr, top_k
from recgraph.retrieval.explanation import Explanation
from recgraph.retrieval.neighborhood import (
    RELATION,
    GraphRetriever,
    GraphWalkConfig,
    cap_rows,
    resolve_threads,
    run_batches,
    top_contributions,
)

#: Floats of one dense ``n x batch`` walk block (1 MB): a block that stays in cache is faster.
PPR_BLOCK_FLOATS = 1 << 18

_WALK_RELATION = {"out": "followed by", "in": "follows", "undirected": "connected to"}


class PPRConfig(GraphWalkConfig):
    """Personalised PageRank settings.

    ``restart`` is the probability of jumping back to the user at each step
    (higher: more local); ``iterations`` bounds the power iteration and
    ``tol`` stops a user's vector earlier once it moves less than that (L1;
    0 runs every iteration). ``walk`` is the direction of a step on a follow
    graph: ``out`` along follows (u -> accounts u follows -> ...), ``in``
    along followers, ``undirected`` either way. A node with more than
    ``hub_cap`` edges out walks on to a seeded sample of ``hub_cap`` of them
    (``hub_policy="sample"``) or sends its walkers home (``"skip"``);
    ``hub_cap=0`` walks every edge.
    """

    restart: float = Field(default=0.3, gt=0, lt=1)
    iterations: int = Field(default=20, ge=1)
    tol: float = Field(default=1e-6, ge=0)
    walk: Literal["out", "in", "undirected"] = "out"


class PersonalizedPageRank(GraphRetriever):
    """Random walk with restart from each user; see the module docstring for the maths."""

    name = "ppr"
    config_class: ClassVar[type[PPRConfig]] = PPRConfig
    config: PPRConfig

    def _build(self) -> None:
        cfg = self.config
        adjacency = self.adjacency_
        if cfg.walk == "out":
            walk = adjacency
        elif cfg.walk == "in":
            walk = adjacency.T.tocsr()
        else:
            walk = (adjacency + adjacency.T).tocsr()
            walk.data[:] = 1.0
        walk.sort_indices()
        capped = cap_rows(walk, cfg.hub_cap, cfg.hub_policy, cfg.seed)
        degree = np.diff(capped.indptr).astype(np.float64)
        self.dangling_ = degree == 0
        # a 1 x n row, so the mass on dangling nodes is summed in a fixed order per user
        self._dangling_row = sp.csr_matrix(self.dangling_.astype(np.float32)[None, :])
        inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        self.transition_ = (sp.diags(inverse) @ capped).tocsr().astype(np.float32)
        self.transition_t_ = self.transition_.T.tocsr()
        self.transition_t_.sort_indices()

    @property
    def relation(self) -> str:
        return (
            RELATION["friends"]
            if self.graph_kind == "friends"
            else _WALK_RELATION[self.config.walk]
        )

    # ------------------------------------------------------------------ the walk
    def _walk(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last two iterates ``(previous, final)``, each ``(n, len(users))`` float32.

        Columns that have converged leave the working block, so each user's
        vector sees exactly the same arithmetic alone or in any batch.
        """
        cfg = self.config
        n, width = self.n_users, len(users)
        alpha = np.float32(cfg.restart)
        previous_out = np.empty((n, width), dtype=np.float32)
        final_out = np.empty((n, width), dtype=np.float32)
        active = np.arange(width)
        x = np.zeros((n, width), dtype=np.float32)
        x[users, active] = 1.0
        before = x
        for _ in range(cfg.iterations):
            step = self.transition_t_ @ x
            lost = np.asarray(self._dangling_row @ x).ravel()
            step *= 1 - alpha
            step[users[active], np.arange(len(active))] += alpha + (1 - alpha) * lost
            before, x = x, step
            if cfg.tol > 0:
                moved = np.abs(x - before).sum(axis=0)
                done = moved < cfg.tol
                if done.any():
                    previous_out[:, active[done]] = before[:, done]
                    final_out[:, active[done]] = x[:, done]
                    keep = ~done
                    active, before, x = active[keep], before[:, keep], x[:, keep]
                    if not len(active):
                        break
        previous_out[:, active] = before
        final_out[:, active] = x
        return previous_out, final_out

    def score_rows(self, users: Sequence[int] | np.ndarray) -> np.ndarray:
        """Personalised PageRank vectors of ``users``, dense ``(len(users), n)`` float32."""
        users = self._check_users(users)
        return np.ascontiguousarray(self._walk(users)[1].T)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.score_rows(users)

    def batch_size(self) -> int:
        return max(1, PPR_BLOCK_FLOATS // max(1, self.n_users))

    def recommend(
        self,
        users: Sequence[int] | np.ndarray | int,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: sp.spmatrix | Sequence[Sequence[int]] | None = None,
        candidates: np.ndarray | Sequence[int] | sp.spmatrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` accounts per user by PageRank from the user; see :meth:`Retriever.recommend`.

        Batches of users walk at once, on ``n_threads`` threads; each dense
        block is masked and cut with the base class's ``_mask_scores`` and
        ``top_k``.
        """
        users = self._check_users(users)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        exclude_m = rows_as_csr(exclude, len(users), self.n_items, "exclude")
        allowed = self._allowed(candidates, len(users))
        ids = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float32)
        step = self.batch_size()
        spans = [(s, min(s + step, len(users))) for s in range(0, len(users), step)]

        def work(start: int, stop: int) -> None:
            batch = users[start:stop]
            block = self._score(batch)
            self._mask_scores(
                block,
                batch,
                exclude_seen=exclude_seen,
                exclude=None if exclude_m is None else exclude_m[start:stop],
                allowed=allowed[start:stop] if sp.issparse(allowed) else allowed,
            )
            ids[start:stop], scores[start:stop] = top_k(block, k)

        run_batches(spans, work, resolve_threads(self.config.n_threads), f"ppr top-{k}", len(users))
        return ids, scores

    # ------------------------------------------------------------------ explanations
    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        r"""The nodes the walk reaches each candidate from, best first.

        The last step of the walk splits a candidate's score exactly:
        :math:`\pi_u(v) = (1 - \alpha) \sum_w \pi_u(w) P[w, v]` for
        ``v != u``, so node ``w`` contributes
        :math:`(1 - \alpha)\, \pi_u(w) P[w, v]` (with ``pi`` the previous
        iterate, so the parts sum to the returned score). These are mostly
        the user's own neighbours: "followed by X and Y".
        """
        user = int(self._check_users([user])[0])
        candidates = self._check_users(candidates)
        previous, current = self._walk(np.array([user]))
        previous, current = previous[:, 0], current[:, 0]
        into = self.transition_t_[candidates]
        alpha = self.config.restart
        out = []
        for j, candidate in enumerate(candidates):
            lo, hi = into.indptr[j], into.indptr[j + 1]
            via = into.indices[lo:hi]
            contrib = (1 - alpha) * previous[via].astype(np.float64) * into.data[lo:hi]
            nonzero = contrib > 0
            via, contrib = top_contributions(via[nonzero], contrib[nonzero], top)
            out.append(self._explanation(user, candidate, current[candidate], via, contrib))
        return out
