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

Two ways to compute it (``method`` in the config):

- ``push`` (the default): the local push of Andersen, Chung and Lang. A
  residual ``r`` starts as ``e_u``; every node whose residual is at least
  ``epsilon`` times its degree keeps ``alpha`` of it as score and passes the
  rest evenly to its neighbours (to ``u`` when it has none), all such nodes
  at once in a round (compiled: :mod:`~recgraph.retrieval.walk_kernels`);
  ``u`` itself pushes in the first round whatever its degree (above
  ``1 / epsilon`` edges it would never reach its threshold). The answer ``p`` satisfies
  ``p + PPR(r) = PPR(e_u)`` with every ``r[v] < epsilon * deg(v)``; the
  work is at most ``1 / (alpha * epsilon)`` edge visits whatever the graph's
  size, and each node expands at most ``hub_cap`` of its edges (a fixed
  evenly spaced sample). A last sweep spreads the residual one step. The
  scores are a short sparse vector, so a server answers from a
  memory-mapped graph (:mod:`recgraph.retrieval.walks`), and edges added
  after training (the overlay) are walked too.
- ``power``: exact power iteration over the whole graph, for small graphs
  and as the reference the push is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from recgraph.retrieval import walk_kernels as kernels
from recgraph.retrieval.base import Request, Retriever, TopK, top_k
from recgraph.retrieval.explanation import Explanation, make_explanation
from recgraph.retrieval.neighborhood import (
    RELATION,
    cap_rows,
    resolve_threads,
    run_batches,
    top_contributions,
)
from recgraph.retrieval.walk_kernels import BOTH, IN, OUT
from recgraph.retrieval.walks import SCRATCH_ARRAYS as SCRATCH_ARRAYS  # its old home
from recgraph.retrieval.walks import WalkConfig, WalkRetriever

#: Floats of one dense ``n x batch`` walk block (1 MB): a block that stays in cache is faster.
PPR_BLOCK_FLOATS = 1 << 18

_WALK_RELATION = {"out": "followed by", "in": "follows", "undirected": "connected to"}


def unbounded_sweep_if_saved_before(data: Any, fields: Any, added: set[str]) -> Any:
    """A config saved before ``sweep_budget`` existed (every other field there but the
    ``added`` ones) swept every residual node: a loaded model keeps answering as it did."""
    if isinstance(data, dict) and "sweep_budget" not in data:
        if set(fields) - added - {"sweep_budget"} <= set(data):
            return {**data, "sweep_budget": 0}
    return data


class PPRConfig(WalkConfig):
    """Personalised PageRank settings.

    ``restart`` is the probability of jumping back to the user at each step
    (higher: more local); ``iterations`` bounds the power iteration and
    ``tol`` stops a user's vector earlier once it moves less than that (L1;
    0 runs every iteration). ``walk`` is the direction of a step on a follow
    graph: ``out`` along follows (u -> accounts u follows -> ...), ``in``
    along followers, ``undirected`` either way (the default: a tie either
    way is a tie, so the people who follow or message you are reached too;
    on the validation splits carved from train of CollegeMsg, temporal and
    random, and wiki-Vote it ranked first or within a few per cent of the
    first, where ``out`` lost more than half of CollegeMsg's recall@20:
    ``benchmarks/graph_defaults.py``). A node with more than
    ``hub_cap`` edges out walks on to a seeded sample of ``hub_cap`` of them
    (``hub_policy="sample"``) or sends its walkers home (``"skip"``);
    ``hub_cap=0`` walks every edge.

    ``method`` picks local ``push`` (bounded work per user: at most
    ``1 / (restart * epsilon)`` edge visits, and ``max_rounds`` rounds of
    pushes) or exact ``power`` iteration (``iterations`` and ``tol``; the
    whole graph per user, for small graphs). The push's hub sample is a
    fixed evenly spaced one; the power iteration's a seeded random one.
    After the pushes, one ``sweep`` turns the residual left below the
    thresholds into scores as one more step would (``alpha r`` on each node,
    the rest over at most ``sweep`` of its neighbours; ``0``: no sweep). It
    costs at most ``sweep`` edges per residual node and ranks the far tail
    the way the exact vector does: with the default ``epsilon = 1e-4`` the
    top-20 lists recall as much as power iteration's on wiki-Vote,
    ego-Facebook and CollegeMsg (``tests/retrieval/test_walk_recall.py``).
    ``sweep_budget`` bounds the sweep's edges in all (``0``: no bound), spent
    on the residual nodes with the largest share per edge: on a synthetic
    heavy-tailed graph of 10^6 follows walked either way the unbounded sweep
    gathered 10^5-3*10^5 edges per user. The default 20,000 was kept on
    validation carved from train (``benchmarks/ppr_sweep_budget.py``: each
    shared graph's benchmark outer split set aside unread, validation carved
    from its train part as ``benchmarks/graph_defaults.py`` carves it): it
    recalls no less than the unbounded sweep there, at 0.35-0.74 CPU ms a
    user (unbounded 0.35-1.07); recall@20 over the exact vector's on wiki-Vote, ego-Facebook and
    CollegeMsg was 1.07x, 1.02x and 1.05x against 1.04x, 1.02x and 1.05x
    unbounded for 300 validation users, 1.11x, 1.02x and 1.04x against
    1.08x, 1.02x and 1.04x for 2,000 (CollegeMsg: all its 721). On 10^6
    generated follows (split at random) it was 0.793x the exact vector's
    against 0.818x unbounded for 2,000 validation users (0.725x against
    0.805x for 300: the synthetic figure moves with the user sample), 0.812x
    at 35,000 and 0.815x at 50,000, at 1.2 CPU ms a user against 3.4 (1.6,
    1.9). At 10^8 follows a larger budget costs what a served request cannot
    spare there: the model's CPU a request was 3.2 ms at 20,000, 4.5 at
    35,000 and 5.8 at 50,000 (``benchmarks/walk_cpu.py --params``), of the
    10 ms two cores have a request at 200 requests/s.
    """

    restart: float = Field(default=0.3, gt=0, lt=1)
    iterations: int = Field(default=20, ge=1)
    tol: float = Field(default=1e-6, ge=0)
    walk: Literal["out", "in", "undirected"] = "undirected"
    method: Literal["push", "power"] = "push"
    epsilon: float = Field(default=1e-4, gt=0, lt=1)
    max_rounds: int = Field(default=100, ge=1)
    sweep: int = Field(default=1000, ge=0)
    sweep_budget: int = Field(default=20_000, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _saved_before_the_budget(cls, data: Any) -> Any:
        return unbounded_sweep_if_saved_before(data, cls.model_fields, {"warm_pages"})

    hub_policy: Literal["sample", "skip"] = "sample"  # type: ignore[assignment]


class PersonalizedPageRank(WalkRetriever):
    """Random walk with restart from each user; see the module docstring for the maths."""

    name = "ppr"
    supports: ClassVar[frozenset[str]] = frozenset({"follows", "friends"})
    config_class: ClassVar[type[PPRConfig]] = PPRConfig
    config: PPRConfig

    def _build(self) -> None:
        super()._build()
        out, inn = self.graph_.arrays("out"), self.graph_.arrays("in")
        #: A friendship graph's rows are its columns: either way is one side (see _neighbours).
        self.symmetric_ = self.graph_kind == "friends" and all(
            np.array_equal(a, b) for a, b in zip(out, inn, strict=True)
        )
        if self.config.method == "power":
            self._build_power()

    @property
    def adjacency_(self) -> sp.csr_matrix:
        """The trained follow graph as a scipy CSR (a copy, in memory)."""
        return self.graph_.to_csr("out")

    # ------------------------------------------------------------------ local push
    def _modes(self) -> tuple[int, int]:
        """``(gathered sides, threshold degree)`` as the kernels name them."""
        mode = {"out": OUT, "in": IN}
        sides = self._gathered_sides()
        return (mode[sides[0]] if len(sides) == 1 else BOTH), mode.get(self.config.walk, BOTH)

    def _neighbours(
        self, nodes: np.ndarray, cap: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Capped walk-direction neighbours of ``nodes`` (overlay included), distinct per owner:
        ``(owner, neighbour)``; ``cap`` narrows the hub cap for this call."""
        with self._scratches(np.uint8) as (flags,):
            return kernels.gather(
                self.walk_graph_.kernel_graph(),
                np.asarray(nodes, np.int64),
                self._modes()[0],
                kernels.effective_cap(self.config.hub_cap, -1 if cap is None else cap),
                flags,
            )

    def _gathered_sides(self) -> tuple[str, ...]:
        """The sides one step reads: the walk's, or both either way, except on a friendship
        graph with no overlay, whose two sides are the same sorted, distinct rows (sampled
        alike): their union is one of them."""
        walk = self.config.walk
        if walk != "undirected":
            return (walk,)
        return ("out",) if self.symmetric_ and not len(self.walk_graph_.overlay) else ("out", "in")

    def _thresholds(self, nodes: np.ndarray) -> np.ndarray:
        graph = self.walk_graph_
        walk = self.config.walk
        if walk == "undirected":
            degree = graph.degree(nodes, "out") + graph.degree(nodes, "in")
        else:
            degree = graph.degree(nodes, walk)
        return self.config.epsilon * np.maximum(degree, 1)

    def _push(
        self, user: int, residual: np.ndarray, flags: np.ndarray, graph: tuple, modes: tuple
    ) -> tuple:
        """:func:`~recgraph.retrieval.walk_kernels.ppr_push` on ``graph`` (one overlay
        snapshot, :meth:`WalkGraph.kernel_graph`) with ``modes`` (:meth:`_modes`)."""
        cfg = self.config
        if not 0 <= user < self.n_users:
            raise IndexError(f"node {user} is outside the graph's {self.n_users} nodes")
        mode, degree_mode = modes
        return kernels.ppr_push(
            graph, user, mode, degree_mode, cfg.hub_cap,
            cfg.restart, cfg.epsilon, cfg.max_rounds, residual, flags,
        )  # fmt: skip

    def push(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Local push from ``user``: ``(nodes, scores, residual nodes, residuals)``, sorted by node
        (:func:`~recgraph.retrieval.walk_kernels.ppr_push`).

        The residual lives in a dense scratch array from a shared pool, zeroed again where
        it was touched, so a push costs what it touches.
        """
        graph, modes = self.walk_graph_.kernel_graph(), self._modes()
        with self._scratches(np.float64, np.uint8) as (residual, flags):
            return self._push(user, residual, flags, graph, modes)

    def user_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """Pushed scores plus one last sweep of the residual (see :class:`PPRConfig`)."""
        cfg = self.config
        # one overlay snapshot and one reading of the modes for the push and the sweep
        graph, modes = self.walk_graph_.kernel_graph(), self._modes()
        with self._scratches(np.float64, np.uint8) as (residual, flags):
            nodes, scores, r_nodes, r_vals = self._push(user, residual, flags, graph, modes)
            if not cfg.sweep or not len(r_nodes):
                return nodes, scores
            return kernels.ppr_sweep(
                graph, nodes, scores, r_nodes, r_vals, modes[0], cfg.hub_cap, cfg.restart,
                cfg.sweep, cfg.sweep_budget, residual, flags,
            )  # fmt: skip

    def _sweep_choice(self, r_nodes: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """Positions of the residual nodes whose mass the sweep spreads, within ``sweep_budget``
        (:func:`~recgraph.retrieval.walk_kernels.sweep_choice`).

        Largest share per edge first: a hub's residual, split over thousands of
        followers, adds almost nothing to any one of them, yet gathering its
        edges was most of a request's cost on a heavy-tailed graph walked
        either way. The rest keep ``alpha r`` on themselves.
        """
        cfg = self.config
        return kernels.sweep_choice(
            self.walk_graph_.kernel_graph(), np.asarray(r_nodes, np.int64),
            np.asarray(residual, np.float64), self._modes()[0], cfg.hub_cap, cfg.sweep,
            cfg.sweep_budget,
        )  # fmt: skip

    # ------------------------------------------------------------------ power iteration
    def _build_power(self) -> None:
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

    def score_rows(self, users: Sequence[int] | np.ndarray) -> np.ndarray | sp.csr_matrix:
        """Personalised PageRank vectors of ``users``, ``(len(users), n)`` float32.

        Dense with ``method="power"``, sparse (the pushed scores) with ``push``.
        """
        users = self._check_users(users)
        if self.config.method == "push":
            return self._rows(users)
        return np.ascontiguousarray(self._walk(users)[1].T)

    def score_pairs(
        self, users: Sequence[int] | np.ndarray, targets: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """PageRank of ``targets[i]`` from ``users[i]`` (float32)."""
        if self.config.method == "push":
            return super().score_pairs(users, targets)
        return Retriever.score_pairs(self, users, targets)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.score_rows(users)

    def batch_size(self) -> int:
        return max(1, PPR_BLOCK_FLOATS // max(1, self.n_users))

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """Top ``k`` accounts per user by PageRank from the user; see :meth:`Retriever.recommend`.

        ``push``: one sparse row per user (:class:`WalkRetriever`). ``power``:
        batches of users walk at once, on ``n_threads`` threads; each dense
        block is masked and cut with the base class's ``_mask_scores`` and
        ``top_k``.
        """
        if self.config.method == "push":
            return super()._recommend(users, k, request)
        exclude_seen, exclude_m, allowed = request.exclude_seen, request.exclude, request.allowed
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
        if self.config.method == "push":
            return self._explain_push(user, candidates, top)
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
            assert self.users is not None
            out.append(
                make_explanation(
                    self.users,
                    self.users,
                    user,
                    int(candidate),
                    current[candidate],
                    via,
                    contrib,
                    self.relation,
                )
            )
        return out

    def _explain_push(
        self, user: int, candidates: np.ndarray, top: int | None
    ) -> list[Explanation]:
        """Pushed scores: the candidate's walk-side predecessors ``w``, each weighted by
        ``(1 - alpha) p(w) / deg(w)`` (what ``w`` passed on in the last step), scaled to
        sum to the candidate's score (:func:`~recgraph.retrieval.walk_kernels.ppr_explain`,
        every candidate in one compiled pass over its capped rows)."""
        assert self.users is not None
        nodes, scores = self.cached_row(user)
        back = {"out": IN, "in": OUT}.get(self.config.walk, BOTH)
        candidates = np.asarray(candidates, dtype=np.int64)
        with self._scratches(np.uint8) as (flags,):
            bounds, via, contrib, own = kernels.ppr_explain(
                self.walk_graph_.kernel_graph(), np.asarray(nodes, np.int64),
                np.asarray(scores, np.float64), candidates, back, self._modes()[1],
                self.config.hub_cap, self.config.epsilon, -1 if top is None else max(top, 0),
                flags,
            )  # fmt: skip
        ranked = contrib.astype(np.float32)
        return [
            make_explanation(
                self.users,
                self.users,
                user,
                candidate,
                float(own[j]),
                via[bounds[j] : bounds[j + 1]],
                ranked[bounds[j] : bounds[j + 1]],
                self.relation,
            )  # fmt: skip
            for j, candidate in enumerate(candidates.tolist())
        ]
