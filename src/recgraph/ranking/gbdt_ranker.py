r"""LambdaRank with gradient-boosted trees (LightGBM), grouped by user.

LambdaRank (Burges 2010) trains trees on the gradients of a pairwise loss
weighted by how much swapping the two rows would change nDCG:

.. math::

    \lambda_{ij} = \frac{-\sigma}{1 + e^{\sigma (s_i - s_j)}}\,|\Delta \mathrm{nDCG}_{ij}|

for every pair of rows of one user where row ``i`` is liked and ``j`` is not,
so the model spends its capacity on the top of each user's list. Boosting
stops when validation nDCG@``eval_at`` (on users held out of training) has
not improved for ``early_stopping_rounds`` rounds. The booster is saved as
LightGBM's text format, never pickle.

With ``bags > 1`` the ranker is a bag of boosters (Breiman's bagging): each
is fitted with its own seed on its own draw of ``bag_users`` of the training
lists (whole lists, so each list's pairs stay together; when the lists of
several label slices are pooled, ``RankerSpec.final_slices``, one user has a
list per slice and those can fall in different bags), early-stopped on the
same validation lists, and the ranker's score is their mean. Off by default
(``bags = 1``): on validation carved from MovieLens 100k's random training
split (benchmarks/ranker_bagging.py, the shipped feed, three ranker seeds) a
bag of five reached 0.970x EASE against one booster's 0.973x, with the same
spread (0.015 vs 0.016): what moves between runs there is the stand-down's
choice (which order answers), not the booster. Scoring costs one pass per
booster (1.55 vs 1.25 CPU ms per user in that batch run, load ~10).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from recgraph.ranking.base import Ranker, RankerConfig, RankingBatch, ndcg_at

BOOSTER_FILE = "booster.txt"
#: Bag ``b > 0``'s booster file (bag 0 is :data:`BOOSTER_FILE`, as a single booster is saved).
BAG_FILE = "booster_{}.txt"


def _booster_file(bag: int) -> str:
    """The first booster keeps the name a ranker saved before bags had (one bag: the only)."""
    return BAG_FILE.format(bag) if bag else BOOSTER_FILE


#: Batches smaller than this are scored on one thread.
SINGLE_THREAD_ROWS = 20_000


class GBDTRankerConfig(RankerConfig):
    """LightGBM LambdaRank parameters (LightGBM's names and meanings).

    The learning rate and round cap are what ``recgraph tune`` settled near on
    MovieLens 100k validation (0.03-0.07 with early stopping): a rate of 0.05
    reaches the same validation nDCG as 0.02 in well under half the rounds.
    ``objective``: ``lambdarank`` weighs each swap by its change in nDCG, so
    the trees spend their capacity on the first few places; ``binary``
    (pointwise log-loss) orders by the chance that a candidate is liked,
    every place alike, which is what recall@k counts (sorting by that chance
    maximises the expected hits in any top k); ``rank_xendcg`` is
    LightGBM's cross-entropy nDCG surrogate. Early stopping reads validation
    nDCG@``eval_at`` whichever is chosen. ``bags``: how many boosters are
    averaged (see the module docstring), each on ``bag_users`` of the
    training lists with seed ``seed + b``; 1 is one booster on every list.
    ``residual``: the boosters start from a retriever's order instead of from
    nothing (LightGBM's ``init_score``, ``residual_scale / log2(1 + rank)``
    of that retriever's ``KEY:rank`` column, 1 the best; a candidate it did
    not propose has rank depth + 1 and starts just below its last), so the
    trees learn what to change of that order rather than to rebuild it from
    its rank column; ``auto``: the retriever whose own order is best on the
    training lists by nDCG@``eval_at`` (``None``: from nothing).
    ``auto`` is the default, chosen on validation carved from train
    (benchmarks/ranker_bagging.py, the shipped pipeline as configured, ranker
    seeds 0 and 1, validation metric over the best retriever alone; load
    11-16 on 2 cores): MovieLens 100k random 1.0156x / 1.0071x EASE on draws
    0 / 1 against 0.9975x / 0.9799x from nothing; MovieLens 100k global
    temporal 1.138x popular-14d against 0.999x (spread between seeds 0.005
    against 0.33); CollegeMsg 1.165x PPR against 1.048x. Starting from a
    retriever's order, the stand-down's blend with that retriever (which
    moved most between runs) matters less. Pinning EASE's rank instead of
    ``auto`` did less on MovieLens random (0.999x / 0.990x at seed 0).
    ``truncation_level``: LightGBM's ``lambdarank_truncation_level`` (how
    deep in each list pairs are weighed; ``None``: LightGBM's default).
    """

    objective: Literal["lambdarank", "binary", "rank_xendcg"] = "lambdarank"

    n_estimators: int = Field(default=600, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=100, ge=1)
    feature_fraction: float = Field(default=0.9, gt=0, le=1)
    lambda_l2: float = Field(default=1.0, ge=0)
    eval_at: int = Field(default=20, ge=1)
    early_stopping_rounds: int = Field(default=40, ge=1)
    seed: int = 0
    n_threads: int = Field(default=0, ge=0)
    bags: int = Field(default=1, ge=1, le=32)
    bag_users: float = Field(default=0.8, gt=0, le=1)
    truncation_level: int | None = Field(default=None, ge=1)
    residual: str | None = "auto"
    residual_scale: float = Field(default=2.0, gt=0)


class GBDTRanker(Ranker):
    """LightGBM LambdaRank over candidate features (see the module docstring)."""

    name = "gbdt_ranker"
    config_class = GBDTRankerConfig
    config: GBDTRankerConfig

    def __init__(self, config: Any = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.boosters_: list[Any] = []
        self.residual_on_: str | None = None
        #: Per booster, ``(the booster, its trees compiled)``
        #: (:class:`~.tree_kernels.CompiledTrees` or ``None``): a booster swapped in later
        #: is never scored with another's trees.
        self.compiled_: list[tuple[Any, Any]] = []

    # ------------------------------------------------------------------ residual
    def _residual_column(self, batch: RankingBatch) -> str | None:
        """The rank column the boosters start from (``residual``; ``auto``: the retriever
        whose own order is best on ``batch``'s lists), or ``None``."""
        wanted = self.config.residual
        if wanted is None:
            return None
        names = batch.feature_names
        if wanted != "auto":
            if not wanted.endswith(":rank"):
                raise ValueError(
                    f"residual: {wanted!r} is not a retriever's rank column (KEY:rank)"
                )
            if wanted not in names:
                raise ValueError(f"residual: no feature {wanted!r} among {', '.join(names)}")
            return wanted
        ranks = [n for n in names if n.endswith(":rank")]
        if not ranks or batch.labels is None:
            return None
        groups = batch.group_sizes()
        return max(
            ranks,
            key=lambda n: ndcg_at(
                -batch.features[:, names.index(n)], batch.labels, groups, self.config.eval_at
            ),
        )

    def _init_score(self, batch: RankingBatch) -> np.ndarray | None:
        """``residual_scale / log2(1 + rank)`` of the residual column (the boosters learn
        what to change of that retriever's order), or ``None``."""
        column = self.residual_on_
        if column is None:
            return None
        rank = batch.features[:, batch.feature_names.index(column)].astype(np.float64)
        rank = np.where(np.isfinite(rank) & (rank >= 1), rank, 1e6)
        return self.config.residual_scale / np.log2(1.0 + rank)

    def _params(self, seed: int | None = None) -> dict[str, Any]:
        cfg = self.config
        return {
            "objective": cfg.objective,
            "metric": "ndcg",
            "eval_at": [cfg.eval_at],
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction,
            "lambda_l2": cfg.lambda_l2,
            "seed": cfg.seed if seed is None else seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": cfg.n_threads,
            "verbosity": -1,
            **(
                {"lambdarank_truncation_level": cfg.truncation_level}
                if cfg.truncation_level is not None
                else {}
            ),
        }

    def _fit(self, train: RankingBatch, valid: RankingBatch | None) -> None:
        assert train.labels is not None
        cfg = self.config
        self.residual_on_ = self._residual_column(train)
        residual = {} if self.residual_on_ is None else {"residual_on": self.residual_on_}
        if cfg.bags == 1:
            booster, self.fit_report = self._fit_one(train, valid, cfg.seed)
            self.fit_report.update(residual)
            self.boosters_ = [booster]
            self._compile()
            return
        sizes = train.group_sizes()
        list_of_row = np.repeat(np.arange(len(sizes)), sizes)
        take = max(1, int(round(cfg.bag_users * len(sizes))))
        self.boosters_, reports = [], []
        for bag in range(cfg.bags):
            rng = np.random.default_rng([cfg.seed, bag])
            chosen = np.zeros(len(sizes), dtype=bool)
            chosen[rng.choice(len(sizes), take, replace=False)] = True
            rows = train.rows(chosen[list_of_row])
            if not rows.labels.any():
                rows = train
            booster, report = self._fit_one(rows, valid, cfg.seed + bag)
            self.boosters_.append(booster)
            reports.append(report)
        self._compile()
        self.fit_report = {
            "bags": cfg.bags,
            "rounds": [r["rounds"] for r in reports],
            **residual,
        }
        if all("valid_ndcg" in r for r in reports):
            self.fit_report["valid_ndcg"] = [r["valid_ndcg"] for r in reports]
            if valid is not None:
                # what the bag's mean order reaches on the same validation lists
                self.fit_report["bag_valid_ndcg"] = float(
                    ndcg_at(self._score(valid), valid.labels, valid.group_sizes(), cfg.eval_at)
                )

    def _fit_one(
        self, train: RankingBatch, valid: RankingBatch | None, seed: int
    ) -> tuple[Any, dict[str, Any]]:
        import lightgbm as lgb

        names = [re.sub(r"[^A-Za-z0-9_]", "_", n) for n in train.feature_names]
        data = lgb.Dataset(
            train.features,
            label=train.labels.astype(np.int32),
            group=train.group_sizes(),
            init_score=self._init_score(train),
            feature_name=names,
            free_raw_data=True,
        )
        sets, callbacks = [], []
        if valid is not None and len(valid) and valid.labels is not None and valid.labels.any():
            sets = [
                lgb.Dataset(
                    valid.features,
                    label=valid.labels.astype(np.int32),
                    group=valid.group_sizes(),
                    init_score=self._init_score(valid),
                    reference=data,
                )
            ]
            callbacks = [
                lgb.early_stopping(self.config.early_stopping_rounds, verbose=False),
                lgb.record_evaluation(evals := {}),
            ]
        booster = lgb.train(
            self._params(seed),
            data,
            num_boost_round=self.config.n_estimators,
            valid_sets=sets,
            callbacks=callbacks,
        )
        report: dict[str, Any] = {"rounds": int(booster.current_iteration())}
        if sets:
            curve = evals["valid_0"][f"ndcg@{self.config.eval_at}"]
            report.update(
                best_iteration=int(booster.best_iteration),
                valid_ndcg=float(max(curve)),
            )
        return booster, report

    def _compile(self, texts: list[str] | None = None) -> None:
        """Each booster's trees compiled as :meth:`_score` reads them (the kernel compiled or
        read from numba's cache now, not in the first request); ``texts``: the boosters'
        text models as loaded, if at hand."""
        from recgraph.ranking import tree_kernels  # numba: not on import

        tree_kernels.warm_up()
        raw = self.residual_on_ is not None  # as _score asks LightGBM
        self.compiled_ = [
            (
                b,
                tree_kernels.CompiledTrees.from_booster(
                    b, b.best_iteration or None, raw_score=raw, text=texts[i] if texts else None
                ),
            )
            for i, b in enumerate(self.boosters_)
        ]

    def _score(self, batch: RankingBatch) -> np.ndarray:
        # one request's few hundred rows: threads cost more than they save (4x the CPU)
        threads = 1 if len(batch) < SINGLE_THREAD_ROWS else self.config.n_threads
        total = None
        init = self._init_score(batch)
        for bag, booster in enumerate(self.boosters_):
            trees = None
            if threads == 1 and bag < len(self.compiled_) and self.compiled_[bag][0] is booster:
                trees = self.compiled_[bag][1]
            if trees is not None and batch.features.shape[1] == trees.n_features:
                scores = trees.predict(batch.features)
            else:
                best = booster.best_iteration or None
                scores = booster.predict(
                    batch.features,
                    num_iteration=best,
                    num_threads=threads,
                    raw_score=init is not None,
                )
            total = scores if total is None else total + scores
        if len(self.boosters_) > 1:
            total = total / len(self.boosters_)  # one booster: x / 1 is x (no copy)
        return total if init is None else total + init

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature (summed over the bag), for reports."""
        gains = sum(b.feature_importance(importance_type="gain") for b in self.boosters_)
        return dict(zip(self.feature_names or (), map(float, gains), strict=True))

    def _save_files(self, path: Path) -> None:
        from recgraph.files import atomic_write

        for bag, booster in enumerate(self.boosters_):
            with atomic_write(path / _booster_file(bag), "w") as out:
                out.write(booster.model_to_string())

    def _load_files(self, path: Path) -> None:
        import lightgbm as lgb

        self.residual_on_ = self.fit_report.get("residual_on")

        texts = [(path / _booster_file(bag)).read_text() for bag in range(self.config.bags)]
        self.boosters_ = [lgb.Booster(model_str=text) for text in texts]
        self._compile(texts)
