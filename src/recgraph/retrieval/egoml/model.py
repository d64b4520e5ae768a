"""EGOML, the learned ego-graph measure for who to follow: the :class:`EgoML` retriever.

The maths is in the class docstring; features in :mod:`.features`, labels in
:mod:`.labels`, candidate generation in :mod:`.candidates`, online scoring
in :mod:`.online`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.errors import ConfigError
from recgraph.progress import progress_bar
from recgraph.retrieval.base import Request, Retriever, RetrieverConfig, TopK
from recgraph.retrieval.egoml.features import (
    DEFAULT_BATCH_LOOKUPS,
    EgoGraph,
    FeatureTables,
    feature_tables,
    pair_triples,
    user_triples,
)
from recgraph.retrieval.egoml.labels import TrainingPairs, make_training_pairs
from recgraph.retrieval.neighborhood import spans_by_work
from recgraph.retrieval.sparse_top_k import sparse_top_k

#: Where EGOML tells the user what it did (a one-line message, no source path).
log = logging.getLogger("recgraph.egoml")


#: Raw model outputs are clipped to this before ``exp`` (a float64 never overflows).
MAX_LOGIT = 60.0


class EgoMLConfig(RetrieverConfig):
    """EGOML's parameters: variant, labels, LightGBM and memory bounds.

    ``label_fraction`` of the training pairs (the latest by first-seen time,
    or random ones without timestamps) become the labels; at most
    ``negatives_per_user`` negatives per user and ``max_train_users`` users
    are drawn with ``seed`` (2000 users bound the training time on big graphs;
    ``None`` uses all). ``recent_days`` is the window of the "recent
    edges" features. ``centre_as_candidate`` (follow graphs only) lets a
    centre ``c`` vote for itself as a candidate of the members of its ego
    graph: an account that follows ``u`` is then scored even when the two
    share no neighbour. ``batch_lookups`` bounds the work (and memory) of one
    vectorised batch. ``num_threads`` is LightGBM's: 1 by default, because its
    OpenMP threads spin-wait and on a busy machine one thread was several
    times faster than two; 0 uses every core.
    """

    variant: Literal["exact", "ab"] = "ab"
    objective: Literal["lambdarank", "pair_softmax"] = "pair_softmax"
    label_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    negatives_per_user: int = Field(default=100, ge=1)
    max_train_users: int | None = Field(default=2000, ge=1)
    num_boost_round: int = Field(default=100, ge=1)
    learning_rate: float = Field(default=0.05, gt=0.0)
    num_leaves: int = Field(default=31, ge=2)
    min_data_in_leaf: int = Field(default=20, ge=1)
    lambda_l2: float = Field(default=1.0, ge=0.0)
    recent_days: float = Field(default=14.0, gt=0.0)
    fallback: Literal["none", "degree"] = "degree"
    centre_as_candidate: bool = True
    num_threads: int = Field(default=1, ge=0)
    seed: int = 0
    batch_lookups: int = Field(default=DEFAULT_BATCH_LOOKUPS, ge=1000)


# ---------------------------------------------------------------------- boosting
class PairSoftmaxObjective:
    """LightGBM objective: softmax cross-entropy of ``E`` over each user's pairs.

    Rows are triples; ``pair_of_row`` and ``group_of_row`` say which pair and
    which user group each belongs to (groups contiguous). The hessian is the
    diagonal ``pi (1 - pi)``, floored, as for a multiclass softmax.
    """

    def __init__(self, pair_of_row: np.ndarray, group_of_row: np.ndarray, pair_label: np.ndarray):
        self.pair = np.asarray(pair_of_row, dtype=np.int64)
        self.group = np.asarray(group_of_row, dtype=np.int64)
        self.n_pairs = len(pair_label)
        self.n_groups = int(self.group.max()) + 1 if len(self.group) else 0
        self.positive_row = np.asarray(pair_label, dtype=bool)[self.pair]
        group_of_pair = np.zeros(self.n_pairs, dtype=np.int64)
        group_of_pair[self.pair] = self.group
        positives = np.bincount(
            group_of_pair, weights=np.asarray(pair_label, np.float64), minlength=self.n_groups
        )
        self.positives_of_row = np.maximum(positives, 1.0)[self.group]
        self.group_starts = np.r_[0, np.flatnonzero(np.diff(self.group)) + 1]

    def loss(self, raw: np.ndarray) -> float:
        """Mean over groups of the cross-entropy (for tests and monitoring)."""
        z, _, _, rho_den = self._terms(raw)
        group_total = np.bincount(self.group, weights=z, minlength=self.n_groups)
        pair_total = rho_den
        pos_pairs = np.unique(self.pair[self.positive_row])
        group_of_pair = np.zeros(self.n_pairs, dtype=np.int64)
        group_of_pair[self.pair] = self.group
        per_pos = -np.log(pair_total[pos_pairs] / group_total[group_of_pair[pos_pairs]])
        counts = np.bincount(group_of_pair[pos_pairs], minlength=self.n_groups)
        sums = np.bincount(group_of_pair[pos_pairs], weights=per_pos, minlength=self.n_groups)
        has = counts > 0
        return float(np.mean(sums[has] / counts[has])) if has.any() else 0.0

    def _terms(self, raw: np.ndarray):
        raw = np.asarray(raw, dtype=np.float64)
        group_max = np.maximum.reduceat(raw, self.group_starts)
        z = np.exp(raw - group_max[self.group])
        group_total = np.bincount(self.group, weights=z, minlength=self.n_groups)
        pair_total = np.bincount(self.pair, weights=z, minlength=self.n_pairs)
        return z, group_total, self.group_starts, pair_total

    def __call__(self, raw: np.ndarray, dataset: Any = None) -> tuple[np.ndarray, np.ndarray]:
        z, group_total, _, pair_total = self._terms(raw)
        pi = z / group_total[self.group]
        rho = z / pair_total[self.pair]
        grad = pi - np.where(self.positive_row, rho / self.positives_of_row, 0.0)
        hess = np.maximum(pi * (1.0 - pi), 1e-6)
        return grad, hess


def _booster_params(config: EgoMLConfig) -> dict[str, Any]:
    return {
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "lambda_l2": config.lambda_l2,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }


def _train(
    config: EgoMLConfig,
    features: np.ndarray,
    names: list[str],
    triple_pair: np.ndarray,
    pairs: TrainingPairs,
    init_score: np.ndarray | None,
    description: str,
):
    """One LightGBM booster on triples; ``init_score`` starts it from another model.

    ``None`` (a model that scores 0, so the fallback order decides) when
    LightGBM finds no feature it can split on, as on a graph of a handful of
    accounts (too few rows for its bins and leaves).
    """
    import lightgbm as lgb

    labels = pairs.labels[triple_pair].astype(np.float64)
    triple_user = pairs.users[triple_pair]
    boundaries = np.r_[0, np.flatnonzero(np.diff(triple_user)) + 1, len(triple_user)]
    params = _booster_params(config)
    if config.objective == "lambdarank":
        params.update(objective="lambdarank", label_gain=[0.0, 1.0])
    else:
        group_of_row = np.repeat(np.arange(len(boundaries) - 1), np.diff(boundaries))
        params["objective"] = PairSoftmaxObjective(triple_pair, group_of_row, pairs.labels)
    dataset = lgb.Dataset(
        features,
        label=labels,
        group=np.diff(boundaries),
        init_score=init_score,
        feature_name=names,
        free_raw_data=True,
        params={"verbose": -1},
    )
    with progress_bar(description, total=config.num_boost_round, unit="rounds") as advance:
        try:
            return lgb.train(
                params,
                dataset,
                num_boost_round=config.num_boost_round,
                callbacks=[lambda env: advance(1)],
            )
        except lgb.basic.LightGBMError as exc:
            if "num_features" not in str(exc):
                raise
    log.warning(
        "egoml: no feature can split the %d training rows (a very small graph?); "
        "%s scores 0 and candidates keep the fallback order",
        len(features),
        description.removeprefix("egoml: "),
    )
    return None


def booster_logits(booster, rows: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Raw outputs of a booster (0 when it was never trained), clipped to ``MAX_LOGIT``.

    The one place a model output becomes a logit: the distributed scoring job
    applies it to the same rows with the booster shipped as text.
    """
    if booster is None or not len(rows):
        return np.zeros(len(rows), dtype=np.float64)
    raw = booster.predict(rows, raw_score=True, num_threads=num_threads)
    return np.clip(raw, -MAX_LOGIT, MAX_LOGIT)


def _booster_to_array(booster) -> np.ndarray:
    if booster is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(booster.model_to_string().encode("utf-8"), dtype=np.uint8).copy()


def _booster_from_array(array: np.ndarray | None):
    if array is None or not len(array):
        return None
    import lightgbm as lgb

    return lgb.Booster(model_str=bytes(np.asarray(array, dtype=np.uint8)).decode("utf-8"))


def _relabel(matrix, order: np.ndarray):
    """Columns renumbered so that new column ``j`` is old column ``order[j]``."""
    if matrix is None:
        return None
    if not sp.issparse(matrix):
        return np.asarray(matrix)[order]
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    out = sp.csr_matrix(matrix, copy=True)
    out.indices = position[out.indices].astype(out.indices.dtype)
    out.has_sorted_indices = False
    out.sort_indices()
    return out


# ---------------------------------------------------------------------- the model
class EgoML(Retriever):
    r"""EGOML: a learned ego-graph measure for who to follow (after VK's friend suggestions).

    The model, registered as ``egoml``, scores a candidate ``v`` for a user ``u``
    by what each common neighbour ``c`` sees of the pair in its ego graph, and
    sums the evidence:

    .. math::

        E(u, v) = \sum_{c \in N(u) \cap N(v)} ez_c(u, v), \qquad
        ez_c(u, v) = \exp f(\phi_c(u, v)),

    where :math:`\phi_c(u, v)` are the features of :mod:`.features` and ``f`` is
    a LightGBM model trained to rank, per user ``u``, the pairs that connected
    after a time ``T`` above those that did not (labels in :mod:`.labels`).

    Two variants (config ``variant``):

    - ``"exact"``: one model ``f`` on centre, ``u``-side, ``v``-side and pair
      features (the pair feature ``|N(u) ∩ N(v) ∩ N(c)|`` included). Scoring a
      user walks all its 2-hop paths through the model: slow, the reference.
    - ``"ab"``: the split trick. Model ``A`` sees only ``u``-side features (of
      ``c``, ``ego(c)`` and the edge ``c–u``); model ``B`` only ``v``-side ones
      and is boosted from ``A``'s predictions (LightGBM ``init_score``), so
      ``f = a_c(u) + b_c(v)`` and

      .. math::

          E(u, v) = \sum_c e^{a_c(u)} e^{b_c(v)} = \langle x_u, y_v \rangle,
          \qquad x_u[c] = e^{a_c(u)},\; y_v[c] = e^{b_c(v)}.

      ``x`` and ``y`` are one number per edge, precomputed once (``O(|E|)``
      model evaluations); all-user candidates are a sparse product, a map over
      centres and a reduce over pairs (:mod:`.candidates`), and one pair is a
      sparse dot in ``O(|N(u)| + |N(v)|)`` (:mod:`.online`).

    Objectives (config ``objective``):

    - ``"lambdarank"`` (the original): every triple ``(c, u, v)`` is a row with
      its pair's label, ranked by LightGBM's lambdarank within the group ``u``.
    - ``"pair_softmax"``: trains the sum itself. Within a user's group the loss
      is the softmax cross-entropy of ``E`` over its labelled pairs,
      :math:`-\frac{1}{|P_u|}\sum_{p \in P_u} \log \frac{E_p}{\sum_q E_q}`,
      whose gradient on a triple ``t`` of pair ``p`` is
      :math:`\pi_t - [p \in P_u]\,\rho_t / |P_u|` with
      :math:`\pi_t = e^{f_t} / \sum_{t' \in u} e^{f_{t'}}` and
      :math:`\rho_t = e^{f_t} / E_p`: what the ranking uses is what is fitted.

    On a follow graph a centre is also a candidate of its own ego graph
    (``centre_as_candidate``): an account ``v`` that follows ``u`` (so
    ``u`` is in ``ego(v)``) but whom ``u`` does not follow gets the extra term
    :math:`ez_v(u, v) = e^{a_v(u)} e^{b_v(v)}`, with ``b_v(v)`` read from
    ``v``'s own row of the member table (``is_centre = 1``). In vector form
    that is the diagonal ``y_v[v]``, so ``E = <x_u, y_v>`` still holds. On a
    friendship graph such a ``v`` is already a friend and never a candidate.

    Candidates that share no neighbour with ``u`` have no evidence (``E = 0``);
    with ``fallback="degree"`` they follow all scored candidates, by degree.
    """

    name = "egoml"
    config_class = EgoMLConfig
    config: EgoMLConfig
    supports = frozenset({"follows", "friends"})

    def __init__(self, config=None, **params: Any) -> None:
        super().__init__(config, **params)
        self.graph_: EgoGraph | None = None
        self.boosters_: dict[str, Any] = {}
        self.feature_names_: dict[str, list[str]] = {}
        self.x_: np.ndarray | None = None  # per edge (c, u): exp(a_c(u)), centre-major
        self.y_: np.ndarray | None = None  # per edge (c, v): exp(b_c(v))
        self.y_self_: np.ndarray | None = None  # per node c: exp(b_c(c)), follow graphs
        self.training_: dict[str, Any] = {}
        self._tables: FeatureTables | None = None
        self._vectors: tuple[sp.csr_matrix, sp.csr_matrix] | None = None

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        exact = cfg.variant == "exact"
        start = time.perf_counter()
        with_self = self._centre_is_candidate(train.directed)
        pairs = make_training_pairs(
            train,
            label_fraction=cfg.label_fraction,
            negatives_per_user=cfg.negatives_per_user,
            max_users=cfg.max_train_users,
            direct_candidates=with_self,
            seed=cfg.seed,
        )
        if pairs.method == "edge_holdout":
            log.warning(
                "egoml: the training data has no timestamps, so its labels come from a random "
                "%.0f%% edge holdout of train, not from time",
                cfg.label_fraction * 100,
            )
        graph_at_cut = EgoGraph.from_interactions(pairs.graph)
        tables = self._tables_of(graph_at_cut, exact)
        triples = pair_triples(graph_at_cut, pairs.users, pairs.targets, with_self)
        label_seconds = time.perf_counter() - start

        start = time.perf_counter()
        self.boosters_ = {}
        self.feature_names_ = {}
        has_positive = bool(len(triples)) and bool(pairs.labels[triples.owner].any())
        if exact:
            names = tables.exact_names()
            self.feature_names_["exact"] = names
            if has_positive:
                pair = tables.pair_feature(triples.edge_u, triples.edge_v)
                rows = tables.exact(triples.centre, triples.edge_u, triples.edge_v, pair)
                self.boosters_["exact"] = _train(
                    cfg, rows, names, triples.owner, pairs, None, "egoml: boosting the exact model"
                )
        else:
            self.feature_names_["a"] = tables.side_names("u")
            self.feature_names_["b"] = tables.side_names("v")
            if has_positive:
                init = None  # model B boosts on from model A's raw scores
                for side, end in (("a", triples.edge_u), ("b", triples.edge_v)):
                    rows = tables.side(triples.centre, end)
                    booster = _train(
                        cfg,
                        rows,
                        self.feature_names_[side],
                        triples.owner,
                        pairs,
                        init,
                        f"egoml: boosting model {side.upper()}",
                    )
                    self.boosters_[side] = booster
                    if side == "a":
                        init = (
                            np.zeros(len(rows))
                            if booster is None
                            else booster.predict(rows, raw_score=True, num_threads=cfg.num_threads)
                        )
        train_seconds = time.perf_counter() - start

        self.training_ = {
            "labels": pairs.description,
            "label_method": pairs.method,
            "pairs": len(pairs),
            "positive_pairs": int(pairs.labels.sum()),
            "triples": len(triples),
            "trained": bool(self.boosters_),
            "label_seconds": round(label_seconds, 3),
            "boost_seconds": round(train_seconds, 3),
        }
        self.graph_ = EgoGraph.from_interactions(train)
        self._tables = None
        self._vectors = None
        if not exact:
            self._compute_vectors()

    def _centre_is_candidate(self, directed: bool) -> bool:
        """Centres vote for themselves on follow graphs only (on friendships they are seen)."""
        return self.config.centre_as_candidate and directed

    def _tables_of(self, graph: EgoGraph, exact: bool) -> FeatureTables:
        return feature_tables(
            graph,
            recent_days=self.config.recent_days,
            keep_ego_matrix=exact,
            self_rows=self._centre_is_candidate(graph.directed),
            batch_lookups=self.config.batch_lookups,
        )

    def _serving_tables(self) -> FeatureTables:
        """Features of the full training graph (computed once, lazily after ``load``)."""
        if self._tables is None:
            assert self.graph_ is not None
            tables = self._tables_of(self.graph_, self.config.variant == "exact")
            names = (
                tables.exact_names()
                if self.config.variant == "exact"
                else tables.side_names("u") + tables.side_names("v")
            )
            expected = (
                self.feature_names_["exact"]
                if self.config.variant == "exact"
                else self.feature_names_["a"] + self.feature_names_["b"]
            )
            if names != expected:
                raise ValueError(
                    "the graph's feature columns differ from the trained ones: "
                    f"{names} vs {expected}"
                )
            self._tables = tables
        return self._tables

    def _predict(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Raw outputs of one booster (0 when it was never trained), clipped."""
        return booster_logits(self.boosters_.get(key), rows, self.config.num_threads)

    def _compute_vectors(self) -> None:
        """``x`` and ``y`` of every edge: the whole A/B model, ``2 |E|`` predictions."""
        graph = self.graph_
        assert graph is not None
        tables = self._serving_tables()
        centres = graph.edge_rows
        edges = np.arange(graph.n_edges)
        x = np.empty(graph.n_edges, dtype=np.float64)
        y = np.empty(graph.n_edges, dtype=np.float64)
        for start in range(0, graph.n_edges, 1_000_000):
            part = slice(start, start + 1_000_000)
            rows = tables.side(centres[part], edges[part])
            x[part] = np.exp(self._predict("a", rows))
            y[part] = np.exp(self._predict("b", rows))
        self.x_, self.y_ = x, y
        self.y_self_ = None
        if tables.self_rows:
            nodes = np.arange(graph.n_nodes)
            rows = tables.side(nodes, graph.n_edges + nodes)
            self.y_self_ = np.exp(self._predict("b", rows))
        self._vectors = None

    # ------------------------------------------------------------------ vectors
    def vectors(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(X, Y)``: ``X[u, c] = exp(a_c(u))`` and ``Y[v, c] = exp(b_c(v))`` (A/B only).

        ``E = X @ Y.T``; row ``u`` of ``X`` is ``x_u``, indexed by centre.
        """
        self._check_fitted()
        if self.config.variant != "ab":
            raise ConfigError("per-user vectors exist for variant='ab' only")
        if self._vectors is None:
            graph = self.graph_
            assert graph is not None and self.x_ is not None and self.y_ is not None
            shape = (graph.n_nodes, graph.n_nodes)
            # row u of X lists the edges (u, c); its value sits on the edge (c, u)
            x = sp.csr_matrix((self.x_[graph.reverse], graph.indices, graph.indptr), shape=shape)
            y = sp.csr_matrix((self.y_[graph.reverse], graph.indices, graph.indptr), shape=shape)
            if self.y_self_ is not None:
                # y_v[v]: v as a candidate of its own ego graph
                y = (y + sp.diags(self.y_self_, format="csr")).tocsr()
                y.sort_indices()
            self._vectors = (x, y)
        return self._vectors

    # ------------------------------------------------------------------ scoring
    def _score(self, users: np.ndarray) -> np.ndarray:
        """Dense ``E`` (no fallback): the protocol's scoring hook, for small batches."""
        return self.score_rows(users).toarray()

    def score_rows(
        self, users: Sequence[int] | np.ndarray, drop_seen: bool = False
    ) -> sp.csr_matrix:
        """``E(u, ·)`` of ``users`` as a sparse ``(len(users), n)`` matrix (no fallback).

        Only candidates sharing a neighbour with ``u`` are stored. With
        ``drop_seen`` the exact variant skips targets the user already has
        (they score 0), which saves their model evaluations.
        """
        users = self._check_users(users)
        if self.config.variant == "ab":
            x, y = self.vectors()
            block = (x[users] @ y.T).tocsr()
            block.sort_indices()
            return block
        return self._exact_rows(users, drop_seen)

    def _exact_rows(self, users: np.ndarray, drop_seen: bool) -> sp.csr_matrix:
        """``E`` by walking every 2-hop path of ``users`` through the exact model."""
        graph = self.graph_
        assert graph is not None and self._seen is not None
        tables = self._serving_tables()
        assert tables.stats.ego_matrix is not None
        n = graph.n_nodes
        parts = []
        spans = spans_by_work(graph.wedge_counts()[users], max(self.config.batch_lookups // 4, 1))
        with progress_bar("egoml exact: scoring", total=len(users), unit="users") as advance:
            for start, stop in spans:
                part = users[start:stop]
                drop = self._seen[part] if drop_seen else None
                triples = user_triples(graph, part, drop, tables.self_rows)
                pair = tables.pair_feature(triples.edge_u, triples.edge_v)
                rows = tables.exact(triples.centre, triples.edge_u, triples.edge_v, pair)
                ez = np.exp(self._predict("exact", rows))
                block = sp.csr_matrix((ez, (triples.owner, triples.target)), shape=(len(part), n))
                block.sum_duplicates()
                parts.append(block)
                advance(stop - start)
        if not parts:
            return sp.csr_matrix((0, n), dtype=np.float64)
        return sp.vstack(parts, format="csr")

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """Top ``k`` candidates per user by ``E(u, v)`` (see :meth:`Retriever.recommend`).

        Scores stay sparse and each row is cut to its top ``k`` by
        :func:`~recgraph.retrieval.neighborhood.sparse_top_k`. Candidates
        without a common neighbour score 0 and come after every scored one:
        in id order, or by degree with ``fallback="degree"`` (the columns are
        relabelled by degree for the cut and mapped back).
        """
        exclude_seen, exclude_m, allowed = request.exclude_seen, request.exclude, request.allowed
        order = self._column_order()
        ids = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        assert self.graph_ is not None
        wedges = self.graph_.wedge_counts()[users]
        for start, stop in spans_by_work(wedges, self.config.batch_lookups):
            batch = users[start:stop]
            block = self.score_rows(batch, drop_seen=exclude_seen)
            forbidden = self.forbidden(
                batch, exclude_seen, None if exclude_m is None else exclude_m[start:stop]
            )
            batch_allowed = allowed[start:stop] if sp.issparse(allowed) else allowed
            if order is not None:
                block, forbidden, batch_allowed = (
                    _relabel(m, order) for m in (block, forbidden, batch_allowed)
                )
            part_ids, scores[start:stop] = sparse_top_k(
                block, k, forbidden=forbidden, allowed=batch_allowed
            )
            if order is not None:
                part_ids = np.where(part_ids >= 0, order[np.maximum(part_ids, 0)], -1)
            ids[start:stop] = part_ids
        return ids, scores

    def _column_order(self) -> np.ndarray | None:
        """Columns by degree (desc, then id) for ``fallback="degree"``, else ``None``."""
        if self.config.fallback != "degree":
            return None
        assert self.graph_ is not None
        degree = self.graph_.degree
        return np.lexsort((np.arange(len(degree)), -degree))

    def score_pairs(self, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``E(u, v)`` for given pairs (indices), without fallback: 0 when no common neighbour.

        A/B: a sparse dot per pair; exact: the model over the pair's common
        neighbours. Both equal the scores :meth:`recommend` ranks by.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        targets = np.atleast_1d(np.asarray(targets, dtype=np.int64))
        if users.shape != targets.shape:
            raise ValueError("users and targets differ in length")
        for what, values in (("user", users), ("target", targets)):
            if len(values) and (values.min() < 0 or values.max() >= self.n_users):
                raise IndexError(f"{what} index outside 0..{self.n_users - 1}")
        if self.config.variant == "ab":
            x, y = self.vectors()
            return np.asarray(x[users].multiply(y[targets]).sum(axis=1)).ravel()
        graph = self.graph_
        assert graph is not None
        tables = self._serving_tables()
        assert tables.stats.ego_matrix is not None
        triples = pair_triples(graph, users, targets, tables.self_rows)
        pair = tables.pair_feature(triples.edge_u, triples.edge_v)
        rows = tables.exact(triples.centre, triples.edge_u, triples.edge_v, pair)
        ez = np.exp(self._predict("exact", rows))
        return np.bincount(triples.owner, weights=ez, minlength=len(users))

    def score_pair(self, user: str, target: str) -> float:
        """``E(user, target)`` for two external ids: the call an API endpoint makes.

        ``O(|N(u)| + |N(v)|)`` for the A/B variant. Unknown ids raise ``KeyError``.
        """
        self._check_fitted()
        assert self.users is not None
        u = self.users.index_of(user)
        v = self.users.index_of(target)
        return float(self.score_pairs(np.array([u]), np.array([v]))[0])

    def all_candidates(self, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` candidates of every user, ``(n, k)`` ids and ``E`` (no fallback).

        A/B: the map over centres and reduce over pairs of
        :func:`~recgraph.retrieval.egoml.candidates.generate_candidates`;
        exact: every user's 2-hop paths through the model.
        """
        self._check_fitted()
        from recgraph.retrieval.egoml.candidates import generate_candidates, top_k_pairs

        graph = self.graph_
        assert graph is not None and self._seen is not None
        exclude = self._seen if exclude_seen else None
        if self.config.variant == "ab":
            assert self.x_ is not None and self.y_ is not None
            return generate_candidates(
                graph.indptr,
                graph.indices,
                self.x_,
                self.y_,
                k,
                y_self=self.y_self_,
                exclude=exclude,
                batch_lookups=self.config.batch_lookups,
            )
        ids = np.full((graph.n_nodes, k), -1, dtype=np.int64)
        scores = np.full((graph.n_nodes, k), -np.inf, dtype=np.float32)
        users = np.arange(graph.n_nodes)
        for start, stop in spans_by_work(graph.wedge_counts(), self.config.batch_lookups):
            block = self._exact_rows(users[start:stop], drop_seen=exclude_seen).tocoo()
            keep = block.row + start != block.col
            ids[start:stop], scores[start:stop] = top_k_pairs(
                block.row[keep], block.col[keep], block.data[keep], k, n_users=stop - start
            )
        return ids, scores

    def online_scorer(self, store=None, namespace: str = "egoml"):
        """An :class:`~recgraph.retrieval.egoml.online.OnlineScorer` over this model's vectors.

        The vectors of every user are written to ``store`` (an in-process
        dict when ``None``, or e.g. a :class:`RedisVectorStore`) first.
        """
        from recgraph.retrieval.egoml.online import DictVectorStore, OnlineScorer, export_vectors

        store = DictVectorStore() if store is None else store
        export_vectors(self, store, namespace=namespace)
        return OnlineScorer(store, namespace=namespace)

    # ------------------------------------------------------------------ persistence
    def manifest(self) -> dict[str, Any]:
        manifest = super().manifest()
        manifest["feature_names"] = self.feature_names_
        return manifest

    def _state(self) -> dict[str, np.ndarray]:
        assert self.graph_ is not None
        state = self.graph_.to_arrays("graph.")
        for key in ("exact", "a", "b"):
            if key in self.feature_names_:
                state[f"booster.{key}"] = _booster_to_array(self.boosters_.get(key))
                state[f"features.{key}"] = np.asarray(self.feature_names_[key], dtype=str)
        if self.x_ is not None and self.y_ is not None:
            state["x"] = self.x_
            state["y"] = self.y_
        if self.y_self_ is not None:
            state["y_self"] = self.y_self_
        state["training"] = np.asarray(json.dumps(self.training_), dtype=str)
        return state

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.graph_ = EgoGraph.from_arrays(dict(state), "graph.")
        self.boosters_ = {}
        self.feature_names_ = {}
        for key in ("exact", "a", "b"):
            if f"features.{key}" in state:
                self.feature_names_[key] = [str(x) for x in state[f"features.{key}"]]
                booster = _booster_from_array(state.get(f"booster.{key}"))
                if booster is not None:
                    self.boosters_[key] = booster
        self.x_ = state.get("x")
        self.y_ = state.get("y")
        self.y_self_ = state.get("y_self")
        self.training_ = json.loads(str(state["training"])) if "training" in state else {}
        self._tables = None
        self._vectors = None
