"""Ranking: the stage-2 part of a question, between candidate retrieval and the cut.

Each retriever proposes ``depth`` candidates per user (the serving rules
already applied); their union, with provenance, is the :class:`CandidatePool`.
Every retriever then scores every candidate of the pool, proposed by it or not
(``Retriever.score_pairs``), and :class:`~recgraph.ranking.features.CandidateFeatures`
adds what no retriever sees (recent popularity, age, the user's activity,
graph features of the pair). The ranker orders the pool; the best ``k`` are
the answer.

The ranker learns from the training data alone (:func:`label_slice`): a
slice of the interactions, cut as the answers will be judged
(:func:`label_kinds`: served, the latest after one cut in time), is held
out, the retrievers are fitted on the rest, and the held-out likes label
their candidates; validation on that slice decides whether the ranker, a
retriever alone or the merge answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from recgraph.data import splits
from recgraph.data.interactions import Interactions, Kind
from recgraph.data.sorted_keys import find_sorted
from recgraph.files import saved_folder
from recgraph.pipeline.candidates import RankedList
from recgraph.pipeline.config import RankerSpec
from recgraph.pipeline.merge import merge_with_ranks
from recgraph.ranking.base import Ranker, RankingBatch, ndcg_at
from recgraph.ranking.features import (
    OPTIONAL_ITEM_FEATURES,
    CandidateFeatures,
    RetrieverColumns,
    feature_names,
)
from recgraph.ranking.pagerank import PPR_RESTART
from recgraph.ranking.registry import create_ranker, load_ranker
from recgraph.retrieval.base import Retriever, compiled_top_row, shared_scores, top_k

RANKING_DIR = "ranking"
STAGE_FILE = "stage.json"
#: nDCG depth the validation compares the ranker and the merge at.
VALID_AT = 20

Propose = Callable[[str, np.ndarray, int], RankedList]


@dataclass(frozen=True)
class CandidatePool:
    """The union of the retrievers' lists for a batch of users, ``(n, width)`` arrays.

    ``merged`` is the stage-1 order (the question's merge score), what the
    service would answer without a ranker; ``columns`` holds each retriever's
    view of every candidate (its score, its rank or 0, and the user's best).
    """

    users: np.ndarray
    ids: np.ndarray
    merged: np.ndarray
    sources: np.ndarray
    columns: dict[str, RetrieverColumns] = field(default_factory=dict)

    @cached_property
    def valid(self) -> np.ndarray:
        """Where the pool holds a candidate (computed once: the pool is not changed)."""
        return self.ids >= 0

    @cached_property
    def full(self) -> bool:
        """Whether every entry is a candidate (a request's pool, cut to its longest row): then
        the valid entries are the arrays raveled, no mask needed."""
        return bool(self.valid.all())

    def entries(self, values: np.ndarray) -> np.ndarray:
        """The valid entries of a pool-shaped array, in row order (raveled when full: no mask)."""
        return values.reshape(-1) if self.full else values[self.valid]

    @cached_property
    def entry_rows(self) -> np.ndarray:
        """The pool row of each valid entry (see :meth:`entries`; computed once: the pool and a
        request's batch both read it)."""
        if self.full:
            return np.repeat(np.arange(len(self.ids)), self.ids.shape[1])
        return np.nonzero(self.valid)[0]

    def spread(self, values: np.ndarray, fill: float, dtype: type) -> np.ndarray:
        """``values``, given over the valid entries, as a pool-shaped array (``fill`` elsewhere);
        :meth:`entries` undone."""
        if self.full:
            return np.asarray(values, dtype=dtype).reshape(self.ids.shape)
        out = np.full(self.ids.shape, fill, dtype=dtype)
        out[self.valid] = values
        return out

    def recall(self, truth: sp.csr_matrix) -> np.ndarray:
        """Per user, the share of ``truth``'s targets that the pool holds."""
        rows = truth[self.users]
        found = np.zeros(len(self.users))
        for i in range(len(self.users)):
            targets = rows[i].indices
            if len(targets):
                found[i] = np.isin(targets, self.ids[i][self.valid[i]]).mean()
        return found


def _rank_lookup(pool_ids: np.ndarray, part: RankedList) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1-based, 0: absent) and score of each pool entry in one retriever's list."""
    n, width = pool_ids.shape
    rank = np.zeros((n, width), dtype=np.int64)
    score = np.full((n, width), np.nan)
    rows, cols = np.nonzero(part.ids >= 0)
    if not len(rows):
        return rank, score
    span = np.int64(max(int(pool_ids.max(initial=-1)), int(part.ids.max())) + 1)
    keys = rows.astype(np.int64) * span + part.ids[rows, cols]
    order = np.argsort(keys)
    keys, list_rank, list_score = keys[order], cols[order] + 1, part.scores[rows, cols][order]
    pool_rows, pool_cols = np.nonzero(pool_ids >= 0)
    query = pool_rows.astype(np.int64) * span + pool_ids[pool_rows, pool_cols]
    where, hit = find_sorted(keys, query)
    rank[pool_rows[hit], pool_cols[hit]] = list_rank[where[hit]]
    score[pool_rows[hit], pool_cols[hit]] = list_score[where[hit]]
    return rank, score


@shared_scores()
def candidate_pool(
    keys: list[str],
    models: dict[str, Retriever],
    propose: Propose,
    users: np.ndarray,
    depth: int,
    *,
    method: str,
    weights: list[float],
    rrf_k: float,
    candidates: np.ndarray | None = None,
) -> CandidatePool:
    """Every retriever's ``depth`` best for ``users`` (known, warm), as one pool.

    ``candidates`` (``(n, width)``, ``-1`` padding) replaces the merged lists
    with candidates from elsewhere (the batch ranking job's file): each
    retriever still ranks and scores them from its own ``depth`` list, and
    ``merged`` is NaN, ``sources`` 0. Within the call each retriever's dense rows,
    computed to propose, are read again to score the rest (:func:`shared_scores`).
    """
    lists = [propose(key, users, depth) for key in keys]
    if candidates is None:
        width = sum(part.ids.shape[1] for part in lists)
        ids, merged, sources, _, where = merge_with_ranks(
            [p.ids for p in lists],
            [p.scores for p in lists],
            [p.sources for p in lists],
            k=width,
            method=method,
            weights=weights,
            rrf_k=rrf_k,
        )
        used = int((ids >= 0).sum(axis=1).max(initial=0))
        ids, merged, sources = ids[:, :used], merged[:, :used], sources[:, :used]
        where = [(rank[:, :used], score[:, :used]) for rank, score in where]
    else:
        ids = np.array(candidates, dtype=np.int64)  # a copy: the pool caches what it holds
        merged, sources = np.full(ids.shape, np.nan), np.zeros(ids.shape, dtype=np.int64)
        where = [_rank_lookup(ids, part) for part in lists]
    pool = CandidatePool(users=users, ids=ids, merged=merged, sources=sources, columns={})
    rows = pool.entry_rows
    for key, part, (rank, score) in zip(keys, lists, where, strict=True):
        mr, mc = np.nonzero(rank == 0 if pool.full else pool.valid & (rank == 0))
        if len(mr):
            # what the retriever thinks of candidates it did not propose
            score[mr, mc] = models[key].score_pairs(users[mr], ids[mr, mc])
        # the user's best finite score of the list (NaN: none), per pool entry
        finite = np.where(np.isfinite(part.scores), part.scores, -np.inf)
        best = finite.max(axis=1, initial=-np.inf)
        best[np.isinf(best)] = np.nan
        pool.columns[key] = RetrieverColumns(
            scores=pool.entries(score),
            ranks=pool.entries(rank),
            user_best=best[rows],
        )
    return pool


#: Whether a ranker trained from now on reads its ``ppr_undirected`` features from the
#: question's PPR retriever (:func:`ppr_source`); ``False``: the features' own exact power
#: iteration, as before (what a stage saved without a ``ppr_key`` reads anyway).
PPR_FROM_RETRIEVER = True


def ppr_source(models: Mapping[str, Retriever], keys: list[str]) -> str | None:
    """The first of ``keys`` whose retriever is personalised PageRank walking ties either
    way at the ``ppr_*`` features' restart (:data:`PPR_RESTART`), or ``None``.

    Its scores of a pool are then the features' PPR (see
    :meth:`CandidateFeatures.matrix`): the walk the request has already taken
    for the candidates, read instead of walked again. On ego-Facebook the
    features' own power iteration was the largest part of a ranked request
    (1.9 of 7 CPU ms on a loaded machine). The values differ from the exact
    ones by the retriever's push tolerance (the ranker is trained on the same
    source as it serves from).
    """
    if not PPR_FROM_RETRIEVER:
        return None
    for key in keys:
        model = models.get(key)
        config = getattr(model, "config", None)
        if (
            model is not None
            and model.name == "ppr"
            and getattr(config, "walk", None) == "undirected"
            and getattr(config, "restart", None) == PPR_RESTART
        ):
            return key
    return None


class RankingStage:
    """A fitted ranker, the feature context it reads, and whether validation kept it.

    Parameters
    ----------
    spec
        The question's :class:`RankerSpec`.
    ranker
        The fitted :class:`Ranker`.
    features
        The :class:`CandidateFeatures` of the graph the retrievers serve from.
    keys
        The retrievers whose columns the features hold, in order.
    active
        ``False`` when validation found neither the ranker nor any single
        retriever better than the merge: the question then answers by the
        merge, as without a ranker.
    report
        What training measured (label rows, validation nDCG with and without).
    order
        What orders the pool when active: ``"ranker"``, or the key of the
        retriever that validation found best when the ranker did not beat it
        (its own order over the pool, i.e. its answer alone), so that a ranked
        question is never worse on validation than its best retriever.
    blend, base
        With ``order == "ranker"`` and ``blend < 1``: the pool is ordered by
        ``blend / log2(1 + ranker's rank) + (1 - blend) / log2(1 + base's
        rank)``, the ranker's order fused with that of the retriever
        ``base`` (the best alone on validation), when validation found the
        fusion better than either.
    ppr_key
        The retriever whose scores are the ``ppr_undirected`` features
        (:func:`ppr_source`; ``None``: the features' own power iteration, as
        for a stage saved before the key existed, whose ranker learnt those).
    """

    def __init__(
        self,
        spec: RankerSpec,
        ranker: Ranker,
        features: CandidateFeatures,
        keys: list[str],
        *,
        active: bool = True,
        report: dict[str, Any] | None = None,
        order: str = "ranker",
        blend: float = 1.0,
        base: str | None = None,
        ppr_key: str | None = None,
    ) -> None:
        self.spec, self.ranker, self.features, self.keys = spec, ranker, features, keys
        self.ppr_key = ppr_key
        from recgraph.data import row_kernels  # numba: not on import
        from recgraph.pipeline import explain_kernels
        from recgraph.pipeline.merge_kernels import warm_up_pool_ranks
        from recgraph.ranking import history_kernels
        from recgraph.retrieval import score_kernels
        from recgraph.retrieval.walk_kernels import warm_up_top_row

        # a request's feature kernels, its retrievers' one-row top k, its fusion's ranks and
        # its ranked reasons' kernels compiled now
        history_kernels.warm_up()
        row_kernels.warm_up()
        warm_up_top_row()
        score_kernels.warm_up_masked_top()  # its retrievers' masked one-row cut
        warm_up_pool_ranks()
        explain_kernels.warm_up()
        self.active = active
        self.report = dict(report or {})
        self.order = order
        self.blend, self.base = float(blend), base
        # the column layout per (ranker's names, graph, retrievers): :meth:`_layout`
        self._layouts: dict[tuple, tuple[tuple[str, ...], tuple[str, ...], list[int] | None]] = {}

    def batch(self, pool: CandidatePool, labels: sp.csr_matrix | None = None) -> RankingBatch:
        """The pool's candidate rows as a :class:`RankingBatch` (with labels from ``labels``)."""
        rows = pool.entry_rows
        users, items = pool.users[rows], pool.entries(pool.ids)
        ppr = None
        if self.ppr_key is not None:
            if self.ppr_key not in pool.columns:
                # exact PPR is not what this ranker learnt from: refuse rather than skew
                raise ValueError(
                    f"the ranker reads PPR from retriever {self.ppr_key!r}, which this pool lacks"
                )
            ppr = pool.columns[self.ppr_key]
        optional, names, known_columns = self._layout(self.ranker.feature_names)
        matrix = self.features.matrix(
            users, items, pool.columns, self.spec.depth, ppr=ppr, optional=optional
        )
        y = None
        if labels is not None:
            y = np.asarray(labels[users, items]).ravel() > 0
        if known_columns is not None:
            matrix = matrix[:, known_columns]
        # one list per pool row: a user asked twice in one batch is two lists, not one broken up
        return RankingBatch(
            users, items, matrix, names, None if y is None else y.astype(np.int8), groups=rows
        )

    def _layout(
        self, known: tuple[str, ...] | None
    ) -> tuple[tuple[str, ...], tuple[str, ...], list[int] | None]:
        """``(optional, names, columns)`` of a batch for a ranker that knows ``known``: the
        optional features it was taught with (computed for it again), the batch's column names
        and, for a ranker saved before newer features existed, the matrix columns it reads
        (``None``: all); worked out once per layout, not per request."""
        key = (known, self.features.graph_kind, tuple(self.keys))
        layout = self._layouts.get(key)
        if layout is None:
            optional = tuple(name for name in OPTIONAL_ITEM_FEATURES if name in (known or ()))
            names = feature_names(self.features.graph_kind, self.keys, optional=optional)
            columns = None
            if known is not None and known != names and set(known) <= set(names):
                columns, names = [names.index(name) for name in known], known
            layout = self._layouts[key] = (optional, names, columns)
        return layout

    def scores(self, pool: CandidatePool) -> np.ndarray:
        """The ranker's score of each valid pool entry, fused with ``base``'s order when blended."""
        scores = self.ranker.score(self.batch(pool))
        if self.blend < 1 and self.base is not None:
            scores = _fused(pool, scores, self.base, self.blend)
        return scores

    def rank(self, pool: CandidatePool, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ranker's best ``k`` of the pool: ``(ids, scores, sources)``, ``(n, k)``."""
        values = np.zeros(0)  # no candidate: nothing scored, every cell -inf
        if pool.valid.any():
            if self.order == "ranker":
                values = self.scores(pool)
            else:  # the best retriever's own order: rank first, its score among the rest
                own = _own_order(pool.columns[self.order])
                values = -np.argsort(np.argsort(-own, kind="stable"), kind="stable")
        scores = pool.spread(values, -np.inf, np.float32)
        top_row = compiled_top_row() if len(scores) == 1 else None
        if top_row is not None and not np.isnan(scores).any():
            order, best = (a[None, :] for a in top_row(scores[0], k))  # a request's: compiled
        else:
            order, best = top_k(scores, k)
        rows = np.arange(len(pool.users))[:, None]
        chosen = np.maximum(order, 0)
        ids = np.where(order >= 0, pool.ids[rows, chosen], -1)
        sources = np.where(order >= 0, pool.sources[rows, chosen], 0)
        return ids, best, sources

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        stage = {
            "keys": self.keys,
            "active": self.active,
            "order": self.order,
            "blend": self.blend,
            "base": self.base,
            "ppr_key": self.ppr_key,
            "report": self.report,
        }
        with saved_folder(folder, STAGE_FILE, lambda: stage) as folder:  # stage.json last
            self.ranker.save(folder / "ranker")
            self.features.save(folder / "features.npz")

    @classmethod
    def load(cls, spec: RankerSpec, folder: Path) -> RankingStage:
        stage = json.loads((folder / STAGE_FILE).read_text())
        return cls(
            spec,
            load_ranker(folder / "ranker"),
            CandidateFeatures.load(folder / "features.npz"),
            list(stage["keys"]),
            active=bool(stage["active"]),
            report=stage.get("report") or {},
            order=stage.get("order", "ranker"),
            blend=stage.get("blend", 1.0),
            base=stage.get("base"),
            ppr_key=stage.get("ppr_key"),
        )


# ---------------------------------------------------------------------- training
class StageOne(Protocol):
    """What training needs of the retrievers fitted on one fold's rest."""

    def pool(self, users: np.ndarray, depth: int) -> CandidatePool: ...

    def warm(self, users: np.ndarray) -> np.ndarray: ...


#: What ``holdout`` means when the caller gives none: the answers are served, i.e. judged
#: by what users do next, after the training data ends.
SERVING = "future"


#: Label slices cut in time: their folds are successive earlier periods (see :func:`train_stage`).
TIME_SLICES = ("temporal_global", "temporal_per_user")


#: Each holdout (a split method of :mod:`recgraph.data.splits`, or ``future``:
#: serving, one cut in time for everyone) -> the ``label_split`` that asks its question.
HOLDOUT_LABEL_SPLITS = {
    "random_per_user": "random_per_user",
    "edge_holdout": "random_per_user",
    "temporal_per_user": "temporal_per_user",
    "leave_last_n": "temporal_per_user",
    "temporal_global": "temporal_global",
    "temporal_pairs": "temporal_global",
    SERVING: "temporal_global",
}


def label_split_for(method: str) -> str:
    """How the ranker's label slice is cut to ask the question of a held-out ``method``
    (:data:`HOLDOUT_LABEL_SPLITS`); anything else is refused by name, since a typo would
    otherwise train a time-cut ranker unnoticed."""
    if method not in HOLDOUT_LABEL_SPLITS:
        raise ValueError(f"holdout {method!r}: one of {', '.join(HOLDOUT_LABEL_SPLITS)}")
    return HOLDOUT_LABEL_SPLITS[method]


def label_kinds(data: Interactions, spec: RankerSpec, holdout: str | None = None) -> list[str]:
    """The label slice kinds ``spec.label_split`` means on ``data`` (see :class:`RankerSpec`).

    ``holdout``: how the answers will be judged, a split method of
    :mod:`recgraph.data.splits` (``recgraph evaluate`` on split files says
    which) or ``None``: served, i.e. judged by what users do after the
    training data ends (:data:`SERVING`).

    ``auto`` on a feed: the slice cut as the answers are judged
    (:func:`label_split_for`): one cut in time for everyone
    (``temporal_global``) when serving or on a global temporal split, each
    user's latest on a per-user temporal one, a random slice of each user's
    interactions on a random split. Taught by a random slice, the ranker
    cannot learn recency and its stand-down is judged where recent
    popularity means nothing (MovieLens 100k temporal: 0.72x popular-14d;
    cut at one time, the shipped feed 1.21x and the code defaults 1.08x,
    benchmarks/results/two_stage.feedfloor.json); taught by each user's
    latest likes, it learnt "what was new when the user was active" and
    fell to 0.6x EASE on a random split. On either kind of graph, without
    timestamps, or where one cut in time would hold out nothing (as many
    rows at the latest time as the slice would take),
    ``random_per_user``. On an account graph with
    timestamps one moment for everyone (``temporal_global``), whatever the
    holdout: who to follow asks which new ties come next, and a slice of
    each user's own latest ties (for a user last active a year ago, ties of
    a year ago) teaches other features than the ones serving reads; on
    CollegeMsg validation the global cut took the default ranked pipeline
    from recall@20 0.1125 to 0.1461. ``both``: ``temporal_per_user`` and
    ``random_per_user`` (where there are timestamps): the ranker learns
    from both and must hold on both.
    """
    method = spec.label_split
    if method == "auto":
        times = data.timestamp if data.has_timestamps else None
        if times is None or not splits.holds_out_by_time(times, spec.label_fraction):
            # no time to cut at (none, or so many rows at the latest time that
            # the cut holds out nothing): a random slice still labels
            return ["random_per_user"]
        if data.graph_kind == "items":
            return [label_split_for(holdout or SERVING)]
        return ["temporal_global"]
    if method == "both":
        return (
            ["temporal_per_user", "random_per_user"] if data.has_timestamps else ["random_per_user"]
        )
    return [method]


def nested_check(data: Interactions, spec: RankerSpec, holdout: str | None = None) -> bool:
    """Whether validation measures the ranker across a refit (``spec.check``).

    ``auto``: on feeds, unless the label slice is one global time cut, where
    nesting would teach the ranker from a period further back than the one
    it serves (measured on MovieLens 100k: it then lost to recent popularity
    alone).
    """
    if spec.check != "auto":
        return spec.check == "nested"
    return data.graph_kind == "items" and label_kinds(data, spec, holdout) != ["temporal_global"]


def pools_final_slices(data: Interactions, spec: RankerSpec, holdout: str | None = None) -> bool:
    """Whether ``spec.final_slices > 1`` can change the served ranker on ``data``: only
    ``final_fit="outer"`` with the nested check refits it, and only a seeded (random) label
    kind draws a different slice per seed (a slice cut in time, :data:`TIME_SLICES`, is the
    same whatever the seed, so it pools its outer slice alone). Whether the check keeps the
    ranker is known only after the fit."""
    return (
        spec.final_fit == "outer"
        and nested_check(data, spec, holdout)
        and any(kind not in TIME_SLICES for kind in label_kinds(data, spec, holdout))
    )


def label_slice(
    data: Interactions,
    spec: RankerSpec,
    fold: int = 0,
    method: str | None = None,
    holdout: str | None = None,
) -> tuple[Interactions, Interactions, str]:
    """``(rest, labels, how)``: the training data split for the ranker (see :class:`RankerSpec`).

    ``method`` is one of :func:`label_kinds` (default its first, for
    ``holdout``). Fold ``f`` draws its random slice with seed ``seed + f``;
    a temporal slice is the same for every fold.
    """
    method = method or label_kinds(data, spec, holdout)[0]
    rest, labels = splits.split(data, method, fraction=spec.label_fraction, seed=spec.seed + fold)
    return rest, labels, method


def _liked_matrix(labels: Interactions, what: str = "liked") -> sp.csr_matrix:
    """The label matrix: what users liked in the slice, or everything but dislikes.

    A held-out friendship is a target of both friends (as evaluation counts
    it): labelled for its first account only, the second one's candidate was
    a negative, and on ego-Facebook the ranker learnt an order that beat
    resource allocation on its own slice (validation nDCG@20 0.32 vs 0.28)
    and lost to it on held-out friendships (recall@20 0.601 vs 0.619).
    """
    liked = labels.subset(labels.liked() if what == "liked" else labels.kind != Kind.DISLIKE)
    src, dst = liked.src, liked.dst
    if labels.one_sided and not labels.directed:
        src, dst = np.r_[src, dst], np.r_[dst, src]
    truth = sp.csr_matrix(
        (np.ones(len(src), np.float32), (src, dst)),
        shape=(labels.n_users, labels.n_items),
    )
    truth.sum_duplicates()
    truth.data[:] = 1.0
    return truth


def _own_order(view: RetrieverColumns) -> np.ndarray:
    """A retriever's own order of a pool: its rank, then its score for what it did not propose
    (``np.nan_to_num(scores, nan=-1e9)``'s values, the infinities the largest floats, without
    its cost: ~5x this function's other steps on a request's pool)."""
    order = np.where(view.ranks > 0, -view.ranks.astype(np.float64), -1e9)
    scores = np.asarray(view.scores)
    largest = np.finfo(scores.dtype).max if scores.dtype.kind == "f" else None
    clean = np.where(np.isnan(scores), -1e9, scores)
    if largest is not None:
        np.minimum(clean, largest, out=clean)
        np.maximum(clean, -largest, out=clean)
    clean *= 1e-12
    order += clean
    return order


def _ndcg_by_order(
    pools: list[tuple[CandidatePool, RankingBatch]], scores: np.ndarray | None, keys: list[str]
) -> dict[str, float]:
    """Validation nDCG of the ranker (``scores``), the merge and each retriever alone."""
    batch = RankingBatch.concat([b for _, b in pools])
    groups = batch.group_sizes()
    out = {} if scores is None else {"ranker": ndcg_at(scores, batch.labels, groups, VALID_AT)}
    merged = np.concatenate([pool.entries(pool.merged) for pool, _ in pools])
    out["merge"] = ndcg_at(merged, batch.labels, groups, VALID_AT)
    for key in keys:
        own = np.concatenate([_own_order(pool.columns[key]) for pool, _ in pools])
        out[key] = ndcg_at(own, batch.labels, groups, VALID_AT)
    return out


def _pool_ranks(pool: CandidatePool, values: np.ndarray) -> np.ndarray:
    """Per user, each valid candidate's 1-based rank by ``values`` (given over ``pool.valid``)."""
    full = pool.spread(values, -np.inf, np.float64)
    from recgraph.pipeline.merge_kernels import pool_ranks  # numba: not on import

    ranks = pool_ranks(full)  # one compiled pass per row: the same ranks
    if ranks is None:
        order = np.argsort(-full, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, full.shape[1] + 1)[None, :], axis=1)
    return pool.entries(ranks)


def _fused(pool: CandidatePool, ranker_scores: np.ndarray, base: str, blend: float) -> np.ndarray:
    """The ranker's order fused with retriever ``base``'s (see :class:`RankingStage`)."""
    mine = _pool_ranks(pool, ranker_scores)
    theirs = _pool_ranks(pool, _own_order(pool.columns[base]))
    return blend / np.log2(1.0 + mine) + (1.0 - blend) / np.log2(1.0 + theirs)


#: Shares of the ranker tried when fusing its order with the best retriever's.
BLENDS = (0.25, 0.5, 0.75)


def train_stage(
    spec: RankerSpec,
    fit_stage_one: Callable[[Interactions], StageOne],
    data: Interactions,
    item_created_at: np.ndarray | None,
    keys: list[str],
    item_features: Any = None,
    holdout: str | None = None,
) -> RankingStage:
    """Fit a ranker on label slices of ``data`` (see :class:`RankerSpec`).

    ``holdout``: how the answers will be judged (see :func:`label_kinds`;
    ``None``: served). For each label kind (:func:`label_kinds`) and each of ``spec.folds``
    folds: hold out a label slice, fit the retrievers on the rest
    (``fit_stage_one``), pool their candidates for the users with held-out
    likes and label them. Users are split once into training and validation
    users (the same everywhere, so no validation user teaches the ranker).
    A random slice is drawn anew per fold; a slice cut in time
    (:data:`TIME_SLICES`) would be the same every time, so fold ``f + 1``
    is the slice before fold ``f``'s (cut from its rest): the ranker learns
    from several periods, and each earlier period is judged on its own, like
    another label kind (its validation nDCG is reported as ``[kind@f]``).

    With the nested check (:func:`nested_check`, feeds by default) the folds
    are cut from the rest of an outer slice, and the decision is taken on the
    outer slice with retrievers fitted on that larger rest: the ranker is
    judged across a refit on more data, as it serves (trained on retrievers
    of part of the data, serving beside retrievers of all of it), which is
    where a ranker that copies one retriever's rank loses. Otherwise the
    decision is taken on the folds' validation users. The ranker is kept
    only when it beats the merge and every retriever alone on every label
    kind by more than ``min_gain``; else (``stand_down="best"``) the
    retriever best across the kinds answers alone, or the merge. Returns the
    stage with the feature context of the last rest used (the caller swaps
    in the one of all the data for serving).
    """
    rng = np.random.default_rng(spec.seed)
    is_valid_user = rng.random(data.n_users) < spec.valid_users
    ranker = create_ranker(spec.name, spec.params)
    nested = nested_check(data, spec, holdout)
    kinds = label_kinds(data, spec, holdout)
    batches: dict[str, list[RankingBatch]] = {"train": [], "valid": []}
    # the outer slice's training and validation users' rows (final_fit="outer")
    outer_train: list[tuple[str, RankingBatch]] = []
    outer_valid: list[RankingBatch] = []
    decide: dict[str, list[tuple[CandidatePool, RankingBatch]]] = {kind: [] for kind in kinds}
    label_rows, features = 0, None
    ppr_key: str | None = None
    # (label kind, PPR source) of each outer slice: more of them teach the served ranker
    extra_slices: list[tuple[str, str | None]] = []

    def labelled_users(stage_one: StageOne, truth: sp.csr_matrix) -> np.ndarray:
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        users = users[stage_one.warm(users)]
        if len(users) > spec.max_train_users:
            users = np.sort(rng.choice(users, spec.max_train_users, replace=False))
        return users

    for kind in kinds:
        source = data
        if nested:
            source, outer_labels, _ = label_slice(data, spec, 0, kind)
        cut_from = source
        for fold in range(spec.folds):
            rest, labels, _ = label_slice(cut_from, spec, fold + int(nested), kind)
            # a time slice is the same for every seed: the next fold is the slice before this one
            # (cut from this fold's rest), so folds are earlier periods, each judged on its own
            earlier = kind in TIME_SLICES and fold > 0
            if kind in TIME_SLICES:
                cut_from = rest
            truth = _liked_matrix(labels, spec.labels)
            label_rows += truth.nnz
            stage_one = fit_stage_one(rest)
            ppr_key = ppr_source(getattr(stage_one, "models", {}), keys)
            users = labelled_users(stage_one, truth)
            features = CandidateFeatures(rest, item_created_at, item_features)
            fold_stage = RankingStage(spec, ranker, features, keys, ppr_key=ppr_key)
            for name, chosen in (
                ("train", users[~is_valid_user[users]]),
                ("valid", users[is_valid_user[users]]),
            ):
                if not len(chosen):
                    continue
                pool = stage_one.pool(chosen, spec.depth)
                batch = fold_stage.batch(pool, truth)
                batches[name].append(batch)
                if name == "valid" and not nested:
                    decide.setdefault(f"{kind}@{fold}" if earlier else kind, []).append(
                        (pool, batch)
                    )
        if nested:
            truth = _liked_matrix(outer_labels, spec.labels)
            stage_one = fit_stage_one(source)
            labelled = labelled_users(stage_one, truth)
            users = labelled[is_valid_user[labelled]]
            features = CandidateFeatures(source, item_created_at, item_features)
            # every fit has the same retrievers, so the same PPR source as the folds'
            outer_stage = RankingStage(spec, ranker, features, keys, ppr_key=ppr_key)
            extra_slices.append((kind, ppr_key))
            if len(users):
                pool = stage_one.pool(users, spec.depth)
                decide[kind].append((pool, outer_stage.batch(pool, truth)))
                outer_valid.append(decide[kind][-1][1])
            users = labelled[~is_valid_user[labelled]]
            if len(users) and (spec.final_fit == "outer" or spec.check_users == "all"):
                pool = stage_one.pool(users, spec.depth)
                batch = outer_stage.batch(pool, truth)
                if spec.final_fit == "outer":
                    outer_train.append((kind, batch))
                if spec.check_users == "all":
                    # the outer slice is unseen by the ranker whoever the user: all of them judge
                    decide[kind].append((pool, batch))
    decide = {kind: pools for kind, pools in decide.items() if pools}
    if not batches["train"] or not batches["valid"] or not decide:
        raise ValueError("too few users have held-out likes to train and validate a ranker")

    def sampled(batch: RankingBatch) -> RankingBatch:
        if spec.negatives < 1 and batch.labels is not None:
            batch = batch.rows((batch.labels > 0) | (rng.random(len(batch)) < spec.negatives))
        return batch

    train_batch = sampled(RankingBatch.concat(batches["train"]))
    valid_batch = RankingBatch.concat(batches["valid"])
    if not train_batch.labels.any():
        raise ValueError("no held-out like is among the retrievers' candidates: nothing to learn")
    ranker.fit(train_batch, valid_batch)
    measured = {}
    for kind, pools in decide.items():
        scored = np.concatenate([ranker.score(batch) for _, batch in pools])
        measured[kind] = _ndcg_by_order(pools, scored, keys)
    # each order's nDCG as a share of the best order's on that kind, averaged over the kinds
    share = {
        order: float(np.mean([m[order] / max(max(m.values()), 1e-12) for m in measured.values()]))
        for order in ["merge", *keys]
    }
    best_key = max(keys, key=share.get) if keys else None
    learnt = ["ranker"]
    if best_key is not None and (
        spec.blend if spec.blend is not None else data.graph_kind == "items"
    ):
        learnt += [f"blend_{blend}" for blend in BLENDS]
        for kind, pools in decide.items():
            batch = RankingBatch.concat([b for _, b in pools])
            for blend in BLENDS:
                fused = np.concatenate(
                    [_fused(pool, ranker.score(b), best_key, blend) for pool, b in pools]
                )
                measured[kind][f"blend_{blend}"] = ndcg_at(
                    fused, batch.labels, batch.group_sizes(), VALID_AT
                )
    mean = {
        order: float(np.mean([m[order] for m in measured.values()]))
        for order in [*learnt, "merge", *keys]
    }
    assert features is not None
    stage = RankingStage(spec, ranker, features, keys, ppr_key=ppr_key)

    # a learnt order is kept when it beats the merge and every retriever alone on every kind
    # a learnt order is kept when, over the label kinds, it beats the best other order (the
    # merge or a retriever alone) by more than min_gain on average and falls more than
    # `tolerance` of it behind on none: with one kind, when it beats them all
    def margin(order: str, m: dict[str, float]) -> float:
        return m[order] - max(v for o, v in m.items() if o not in learnt)

    winners = [
        order
        for order in learnt
        if (
            len(measured) == 1
            or all(
                margin(order, m) >= -spec.tolerance * (m[order] - margin(order, m))
                for m in measured.values()
            )
        )
        and np.mean([margin(order, m) for m in measured.values()]) > spec.min_gain
    ]
    if winners:
        chosen = max(winners, key=lambda o: np.mean([margin(o, m) for m in measured.values()]))
        stage.order, stage.active = "ranker", True
        if chosen != "ranker":
            stage.blend, stage.base = float(chosen.removeprefix("blend_")), best_key
    elif (
        spec.stand_down == "best"
        and best_key is not None
        and share[best_key] > share["merge"]
        and len(keys) > 1
    ):
        stage.order, stage.active = best_key, True
    else:
        stage.order, stage.active = "ranker", False
    final: dict[str, Any] = {"final_fit": "none (the ranker stood down)", "final_slices_used": 0}
    if stage.active and stage.order == "ranker":
        final["final_fit"] = "folds" if nested else "folds (no nested check)"
    if spec.final_fit == "outer" and nested and stage.active and stage.order == "ranker":
        # taught again one level up: on the outer slice, beside retrievers of 80% of the data
        # (the check judged a ranker of 64% beside retrievers of 80%; serving is 80% -> 100%)
        # and on final_slices - 1 more outer slices drawn with the next seeds (see RankerSpec);
        # a slice cut in time is the same whatever the seed, so a time kind pools its outer
        # slice alone
        for kind, key in extra_slices:
            for extra in range(1, spec.final_slices if kind not in TIME_SLICES else 1):
                rest, labels, _ = label_slice(data, spec, spec.folds + extra, kind)
                truth = _liked_matrix(labels, spec.labels)
                stage_one = fit_stage_one(rest)
                users = labelled_users(stage_one, truth)
                users = users[~is_valid_user[users]]
                if len(users):
                    context = CandidateFeatures(rest, item_created_at, item_features)
                    slice_stage = RankingStage(spec, ranker, context, keys, ppr_key=key)
                    outer_train.append(
                        (
                            f"{kind}+{extra}",
                            slice_stage.batch(stage_one.pool(users, spec.depth), truth),
                        )
                    )
        outer = RankingBatch.concat([b for _, b in outer_train]) if outer_train else None
        if outer is not None and outer.labels.any():
            refit = create_ranker(spec.name, spec.params)
            stop_on = RankingBatch.concat(outer_valid) if outer_valid else None
            stage.ranker = refit.fit(sampled(outer), stop_on)
            final = {
                "final_fit": "outer",
                # the slices whose lists the served ranker learnt from (not the setting)
                "final_slices_used": len(outer_train),
                "final_slice_rows": {name: int(len(b)) for name, b in outer_train},
                "final_train_rows": int(len(outer)),
                "final_stop_rows": int(len(stop_on)) if stop_on is not None else 0,
                "final_fit_report": refit.fit_report,
            }
        else:
            final["final_fit"] = "folds (the outer slice had no labelled training list)"
    stage.report = {
        "order": (
            "merge"
            if not stage.active
            else f"ranker {stage.blend:g} + {stage.base}"
            if stage.blend < 1
            else stage.order
        ),
        "label_split": "+".join(kinds),
        "holdout": holdout or SERVING,
        "check": "nested" if nested else "same",
        "folds": spec.folds,
        "label_rows": int(label_rows),
        "train_lists": int(len(train_batch.group_sizes())),
        "valid_lists": int(
            sum(len(RankingBatch.concat([b for _, b in p]).group_sizes()) for p in decide.values())
        ),
        "train_rows": int(len(train_batch)),
        "positives_in_pool": float(train_batch.labels.mean()),
        **{f"valid_ndcg@{VALID_AT}_{order}": value for order, value in mean.items()},
        **{
            f"valid_ndcg@{VALID_AT}_{order}[{kind}]": float(value)
            for kind, m in measured.items()
            for order, value in m.items()
            if len(measured) > 1
        },
        **ranker.fit_report,
        **final,
    }
    return stage
