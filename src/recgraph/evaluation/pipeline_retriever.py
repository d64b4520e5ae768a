"""A question of a pipeline as one retriever, so a whole pipeline is evaluated like any model.

``fit`` trains the question's retrievers on the training split only;
``recommend`` returns the merged lists with the fallback chain and the serving
rules, exactly as the service ranks them. It saves and loads like any other
retriever (its question's retriever folders sit beside ``model.json``), so an
evaluated pipeline can be kept and scored again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import field_validator

from recgraph.data.interactions import Interactions
from recgraph.pipeline import PipelineConfig, QuestionModel, parse_pipeline
from recgraph.pipeline.ranking import label_split_for
from recgraph.retrieval.base import Request, Retriever, RetrieverConfig, TopK

QUESTION_DIR = "question"


class QuestionRetrieverConfig(RetrieverConfig):
    """A question of a pipeline as one retriever: ``question`` and the pipeline's fields.

    ``holdout``: how the answers will be judged, a split method (see
    :func:`recgraph.evaluation.holdout.detect_holdout`) or ``None``/``future``:
    as served. The ranker's label slice and its stand-down check are cut
    that way (:func:`recgraph.pipeline.ranking.label_kinds`).
    """

    question: str = "who_to_follow"
    pipeline: dict[str, Any] = {}
    holdout: str | None = None

    @field_validator("holdout")
    @classmethod
    def _known_holdout(cls, value: str | None) -> str | None:
        if value is not None:
            label_split_for(value)  # raises, naming the methods, on anything else
        return value


class QuestionRetriever(Retriever):
    """One question of a pipeline behind the :class:`Retriever` protocol, to evaluate it."""

    name = "pipeline"
    config_class = QuestionRetrieverConfig
    #: Item side data (``--items``) is handed on to the question's retrievers.
    uses_item_features = True
    config: QuestionRetrieverConfig

    def __init__(self, config: Any = None, **params: Any) -> None:
        super().__init__(config, **params)
        pipeline_config = (
            parse_pipeline(self.config.pipeline) if self.config.pipeline else PipelineConfig()
        )
        self.question_config = pipeline_config.question(self.config.question)
        self.question_model = QuestionModel(self.config.question, self.question_config)
        self.name = f"pipeline:{self.config.question}"  # type: ignore[misc]

    def _fit(self, train: Interactions) -> None:
        self.question_model = QuestionModel(self.config.question, self.question_config).fit(
            train, item_features=self.item_features, holdout=self.config.holdout
        )

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        if not request.exclude_seen:
            raise ValueError("a pipeline always leaves out what users already have")
        if sp.issparse(request.allowed):
            raise ValueError("a pipeline takes one candidate set for all users, not one per user")
        result = self.question_model.recommend(
            users, k, exclude=request.exclude, allowed=request.allowed
        )
        return result.ids, result.scores

    def manifest(self) -> dict[str, Any]:
        return {**super().manifest(), "model": type(self).name}

    def _save_files(self, path: Path) -> None:
        self.question_model.save(path / QUESTION_DIR)

    def _load_files(self, path: Path) -> None:
        self.question_model = QuestionModel.load(
            self.config.question, self.question_config, path / QUESTION_DIR
        )
