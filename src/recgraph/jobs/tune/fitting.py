"""Fitting trials cheaply (retrievers cached by data and parameters) and scoring them on validation carved from train."""

from __future__ import annotations

import hashlib
import json
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from recgraph.data import splits
from recgraph.data.interactions import Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.errors import ConfigError
from recgraph.evaluation.evaluate import evaluation_targets
from recgraph.evaluation.metrics import in_rows, metrics_from_hits
from recgraph.jobs.tune.spaces import validation_method
from recgraph.pipeline import QuestionModel
from recgraph.pipeline.config import (
    QuestionConfig,
    RetrieverSpec,
)
from recgraph.pipeline.history import History
from recgraph.pipeline.ranking import train_stage
from recgraph.ranking.features import CandidateFeatures
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.registry import create_retriever

#: Fitted retrievers kept in memory (an EASE on 10^4 items is 400 MB).
CACHE_SIZE = 24


# ---------------------------------------------------------------------- fitting with a cache
def fingerprint(data: Interactions) -> str:
    """A content digest of the rows (order-sensitive; the slices here are deterministic)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"{data.n_users},{data.n_items},{data.graph_kind},{len(data)}".encode())
    for array in (data.src, data.dst, data.value, data.kind, data.timestamp):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class FitCache:
    """Retrievers fitted once per (data, name, parameters); questions built from them."""

    def __init__(
        self,
        question: str,
        item_created_at: np.ndarray | None = None,
        item_features: ItemFeatures | None = None,
        size: int = CACHE_SIZE,
        holdout: str | None = None,
    ) -> None:
        self.question = question
        #: How the answers are judged (a split method; ``None``: served), read by a ranker whose
        #: label slice is ``auto`` (:func:`recgraph.pipeline.ranking.label_kinds`)
        self.holdout = holdout
        self.item_created_at = item_created_at
        self.item_features = item_features
        self.size = size
        self._models: OrderedDict[tuple[str, str, str], Retriever] = OrderedDict()
        self._history: dict[str, History] = {}
        self._features: dict[str, CandidateFeatures] = {}
        # weak keys: a trial's label slices are not kept alive by their fingerprints
        self._prints: weakref.WeakKeyDictionary[Interactions, str] = weakref.WeakKeyDictionary()

    def _print(self, data: Interactions) -> str:
        held = self._prints.get(data)
        if held is None:
            held = self._prints[data] = fingerprint(data)
        return held

    def retriever(self, spec: RetrieverSpec, data: Interactions) -> Retriever:
        key = (self._print(data), spec.name, json.dumps(spec.params, sort_keys=True))
        model = self._models.get(key)
        if model is None:
            model = create_retriever(spec.name, spec.params)
            model.fit(data, item_features=self.item_features)
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        return model

    def features(self, data: Interactions) -> CandidateFeatures:
        key = self._print(data)
        if key not in self._features:
            self._features = {
                key: CandidateFeatures(data, self.item_created_at, self.item_features)
            }
        return self._features[key]

    def plain(self, config: QuestionConfig, data: Interactions) -> QuestionModel:
        """``config`` without a ranker, fitted on ``data`` from cached retrievers."""
        plain = config.model_copy(update={"ranker": None})
        shell = QuestionModel(self.question, plain)
        models = {key: self.retriever(spec, data) for key, spec in shell.specs.items()}
        key = self._print(data)
        if key not in self._history:
            self._history[key] = History.from_interactions(
                data, item_created_at=self.item_created_at
            )
        return QuestionModel(self.question, plain, models=models, history=self._history[key])

    def fit(self, config: QuestionConfig, data: Interactions) -> QuestionModel:
        """``config`` fitted on ``data`` as :meth:`QuestionModel.fit` would, ranker included."""
        plain = self.plain(config, data)
        if config.ranker is None:
            return plain
        model = QuestionModel(
            self.question,
            config,
            models=plain.models,
            history=plain.history,
        )
        try:
            stage = train_stage(
                config.ranker,
                lambda rest: self.plain(config, rest),
                data,
                self.item_created_at,
                model.main_keys,
                self.item_features,
                holdout=self.holdout,
            )
        except ValueError as exc:
            model.ranking_note = f"ranker not trained: {exc}"
            return model
        stage.features = self.features(data)
        model.ranking = stage
        return model


# ---------------------------------------------------------------------- scoring
@dataclass
class Validation:
    """The validation side: targets of the users scored, the metric and its cut-off."""

    fit: Interactions
    users: np.ndarray
    truth: Any
    candidates: np.ndarray
    metric: str
    k: int

    def score(self, model: QuestionModel, batch: int = 512) -> float:
        values = []
        for start in range(0, len(self.users), batch):
            users = self.users[start : start + batch]
            result = model.recommend(users, self.k, allowed=self.candidates)
            rows = self.truth[users]
            hits = in_rows(result.ids, rows) & (result.ids >= 0)
            values.append(metrics_from_hits(hits, np.diff(rows.indptr), (self.k,))[self.metric])
        return float(np.mean(np.concatenate(values))) if values else 0.0


def carve_validation(
    train: Interactions,
    method: str = "auto",
    fraction: float = 0.2,
    seed: int = 0,
    metric: str | None = None,
    max_users: int = 3000,
) -> tuple[Validation, dict[str, Any]]:
    """``(validation, description)`` carved from ``train`` alone."""
    if method == "auto":
        method = validation_method(train)
    fit, held = splits.validation_split(train, method, fraction=fraction, seed=seed)
    targets = evaluation_targets(fit, held)
    users = targets.users
    if len(users) > max_users:
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(users, max_users, replace=False))
    if not len(users):
        raise ConfigError("the validation split left no user to score; give more data")
    metric = metric or ("ndcg@20" if train.graph_kind == "items" else "recall@20")
    name, _, k = metric.partition("@")
    if name not in ("ndcg", "recall", "precision", "hit_rate", "map", "mrr") or not k.isdigit():
        raise ConfigError(f"metric {metric!r}: expected e.g. ndcg@20 or recall@20")
    validation = Validation(fit, users, targets.truth, targets.candidates, metric, int(k))
    description = {
        "method": method,
        "fraction": fraction,
        "seed": seed,
        "rows_fit": len(fit),
        "rows_valid": len(held),
        "users": int(len(users)),
    }
    return validation, description
