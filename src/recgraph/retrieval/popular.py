"""Popularity: the baseline every model must beat, and the cold-start fallback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.factors import (
    CountWeightingConfig,
    liked_rows,
    positive_matrix,
    rating_threshold,
)


class PopularConfig(CountWeightingConfig):
    """How popularity is counted.

    ``weight="users"`` counts distinct users who liked each target (in-degree
    on a follow graph, degree on a friendship graph; a low rating is not a
    like); ``"value"`` sums what each like weighs
    (:func:`~recgraph.retrieval.factors.positive_matrix`: play counts as log
    confidences, weights as given). ``window_days`` counts only the last days
    of the training data (needs timestamps): what is popular *now*.
    """

    #: Not tuned: the baseline counts every like since the start.
    defaults_chosen_on: ClassVar[str] = (
        "not tuned: all-time count of users who liked each target, the baseline every "
        "model must beat (a recent window is an option, not a default)"
    )

    weight: Literal["users", "value"] = "users"
    window_days: float | None = Field(default=None, gt=0)


class Popular(Retriever):
    r"""Rank targets by how many users have them: :math:`s(u, i) = |\{v : (v, i) \in E\}|`.

    The same list for everybody (minus what each user already has); ties go
    to the lower index, so results are deterministic.
    """

    name = "popular"
    has_cold_start = True
    config_class = PopularConfig
    config: PopularConfig

    def _fit(self, train: Interactions) -> None:
        data = train
        cfg = self.config
        threshold = rating_threshold(train)  # the whole scale, not the window's
        if cfg.window_days is not None and data.has_timestamps and len(data):
            assert data.timestamp is not None
            start = data.timestamp.max() - cfg.window_days * 86400
            data = data.subset(data.timestamp >= start)
        if cfg.weight == "users" and liked_rows(data, threshold).all():
            # every row a like (a follow graph): the binary matrix's column counts, counted
            # on the graph's own matrix instead of a copy of every row (the same numbers)
            matrix = data.csr("binary")
            counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
            self.popularity_ = counts.astype(np.float32)
            return
        matrix = positive_matrix(
            data,
            binary=cfg.weight == "users",
            count_epsilon=cfg.count_epsilon,
            threshold=threshold,
        )
        self.popularity_ = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_)))

    def cold_start_scores(self) -> np.ndarray:
        """Popularity as configured (in its window, by users or by value)."""
        self._check_fitted()
        return self.popularity_

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.popularity_ = state["popularity"]
