"""Popularity: the baseline every model must beat, and the cold-start fallback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.retrieval.base import Retriever, RetrieverConfig


class PopularConfig(RetrieverConfig):
    """How popularity is counted.

    ``weight="users"`` counts distinct users per target (in-degree on a follow
    graph, degree on a friendship graph); ``"value"`` sums edge values
    (e.g. ratings). ``window_days`` counts only the last days of the training
    data (needs timestamps): what is popular *now*.
    """

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
        data = train.positives()
        cfg = self.config
        if cfg.window_days is not None and data.has_timestamps and len(data):
            assert data.timestamp is not None
            start = data.timestamp.max() - cfg.window_days * 86400
            data = data.subset(data.timestamp >= start)
        matrix = data.csr("value" if cfg.weight == "value" else "binary")
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
