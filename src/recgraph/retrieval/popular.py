"""Popularity: the baseline every model must beat, and the cold-start fallback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.data.sorted_keys import in_sorted
from recgraph.retrieval.base import Request, Retriever, TopK
from recgraph.retrieval.factors import (
    CountWeightingConfig,
    liked_rows,
    positive_matrix,
    rating_threshold,
)
from recgraph.retrieval.neighborhood import best_first

#: Targets kept ranked, best first (8 bytes each): an answer walks down them, skipping what
#: the user may not get, and sorts every target only when its exclusions eat through them.
RANKED_HEAD = 4096


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
            self.__dict__.pop("_ranked", None)
            return
        matrix = positive_matrix(
            data,
            binary=cfg.weight == "users",
            count_epsilon=cfg.count_epsilon,
            threshold=threshold,
        )
        self.popularity_ = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)
        self.__dict__.pop("_ranked", None)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_)))

    def ranked(self) -> np.ndarray:
        """The ``RANKED_HEAD`` most popular targets, best first, ties to the lower index
        (:func:`~recgraph.retrieval.base.top_k`'s order), ranked once per fitted or loaded model."""
        self._check_fitted()
        head = self.__dict__.get("_ranked")
        if head is None:
            n = len(self.popularity_)
            head = best_first(self.popularity_, np.arange(n), min(RANKED_HEAD, n))
            self.__dict__["_ranked"] = head
        return head

    def top_of_ranked(
        self, k: int, forbidden: sp.csr_matrix | None, allowed: np.ndarray | None
    ) -> TopK | None:
        """The best ``k`` per row of ``forbidden`` (one row a user, or ``None``: nothing is)
        that are not forbidden and are ``allowed``, from the ranked head: what a dense top
        ``k`` over every target returns, at the cost of the head and the exclusions
        (17 ms a request at 10^6 accounts, dense). ``None`` when some row's exclusions eat
        through the head (the dense path answers then)."""
        head = self.ranked()
        n_items = len(self.popularity_)
        rows = 1 if forbidden is None else forbidden.shape[0]
        ids = np.full((rows, k), -1, dtype=np.int64)
        scores = np.full((rows, k), -np.inf, dtype=np.float32)
        usable = np.ones(len(head), dtype=bool) if allowed is None else allowed[head]
        for i in range(rows):
            keep = usable
            if forbidden is not None:
                barred = np.sort(forbidden.indices[forbidden.indptr[i] : forbidden.indptr[i + 1]])
                keep = usable & ~in_sorted(barred, head)
            picked = head[keep][:k]
            if len(picked) < k and len(head) < n_items:
                return None  # the rest of the targets may hold more
            ids[i, : len(picked)] = picked
            scores[i, : len(picked)] = self.popularity_[picked]
        return ids, scores

    def _recommend(self, users: np.ndarray, k: int, request: Request) -> TopK:
        """The ranked head minus each user's exclusions (:meth:`top_of_ranked`); the dense
        path when a user's exclusions eat through it, or per-user candidate rows."""
        if not sp.issparse(request.allowed):
            forbidden = self.forbidden(users, request.exclude_seen, request.exclude)
            if forbidden is None:
                forbidden = sp.csr_matrix((len(users), len(self.popularity_)), dtype=np.float32)
            quick = self.top_of_ranked(k, forbidden, request.allowed)
            if quick is not None:
                return quick
        return super()._recommend(users, k, request)

    def cold_start_scores(self) -> np.ndarray:
        """Popularity as configured (in its window, by users or by value)."""
        self._check_fitted()
        return self.popularity_

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.popularity_ = state["popularity"]
        self.__dict__.pop("_ranked", None)
        self.ranked()  # at load, not on a first request
