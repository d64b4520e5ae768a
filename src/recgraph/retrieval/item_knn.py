r"""Item-based nearest neighbours through ``implicit.nearest_neighbours``.

The maths. With the ``users x items`` matrix :math:`X` of liked pairs
(:func:`~recgraph.retrieval.factors.positive_matrix`: binary for likes and
liked ratings, log confidences for play counts), ``implicit``
keeps for each item its ``neighbours`` most similar items,

.. math::

    S_{ij} = \frac{x_{\cdot i}^\top x_{\cdot j}}{\lVert x_{\cdot i}\rVert \lVert x_{\cdot j}\rVert}
    \quad\text{(cosine)}, \qquad
    S_{ij} = \tilde x_{\cdot i}^\top \tilde x_{\cdot j}
    \quad\text{(BM25: } \tilde X \text{ is } X \text{ BM25-weighted per item,}
    \text{ see } \texttt{factors.bm25\_weight}),

and a user's score for item :math:`j` is :math:`s_{uj} = \sum_{i} X_{ui} S_{ij}`:
the sum of the similarities of :math:`j` to what the user has. Each term is
one liked item's contribution, which :meth:`ItemKNN.explain` reports.

Published comparisons (Dacrema et al. 2019) find this baseline, tuned, ahead
of most neural recommenders on MovieLens.

Handles ``items``, ``follows`` and ``friends`` graphs (a target is any column).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.data.sorted_keys import find_sorted
from recgraph.retrieval.base import Retriever, ranked_row
from recgraph.retrieval.explanation import Explanation, history_explanations
from recgraph.retrieval.factors import (
    DEFAULTS_STUDY_SECOND_ROUND,
    CountWeightingConfig,
    bm25_weight,
    positive_matrix,
)
from recgraph.retrieval.pixie import DAY


class ItemKNNConfig(CountWeightingConfig):
    """Hyperparameters of :class:`ItemKNN`.

    ``neighbours`` is ``implicit``'s ``K`` (an item counts as its own
    neighbour). ``bm25_k1`` / ``bm25_b`` only matter for ``similarity="bm25"``.

    Defaults (BM25, 200 neighbours, ``b = 0.3``): the second round of
    ``benchmarks/defaults_study.py``, on validation only: MovieLens 100k
    random and global temporal (three cuts), latest-small random and the
    generated play counts. Against the first choice (cosine, 100
    neighbours) it gains 13% (100k random), 13% (latest-small) and 32%
    (play counts) of validation nDCG@20; on the global temporal case no
    setting tried (cosine, BM25, co-occurrence, 20 to 200 neighbours) moved
    more than 2% from popularity's 0.1417 (this one: 0.1398).

    ``half_life_days`` (off by default) weighs the user's history by recency.
    The third round tried 7, 30 and 365 days: 7 days is the best item_knn
    point on the global temporal validation (0.1437) but costs 5% on
    MovieLens 100k random and 16% on latest-small random, where the held-out
    items are not the latest; 365 days changes nothing.
    """

    defaults_chosen_on: ClassVar[str] = DEFAULTS_STUDY_SECOND_ROUND

    similarity: Literal["cosine", "bm25", "cooccurrence"] = "bm25"
    neighbours: int = Field(default=200, ge=1)
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.3, ge=0, le=1)
    num_threads: int = Field(default=0, ge=0)
    #: Each liked item's weight in the user's sum halves every
    #: ``half_life_days`` before the user's latest action (timestamps in Unix
    #: seconds; data without time, or ``None``, weighs every item alike).
    half_life_days: float | None = Field(default=None, gt=0)


def recency_weighted(
    matrix: sp.csr_matrix, train: Interactions, half_life_days: float
) -> sp.csr_matrix:
    r"""``matrix`` with each pair's weight times :math:`2^{-(t_u - t_{ui}) / h}`.

    :math:`t_{ui}` is the pair's latest timestamp in ``train``, :math:`t_u`
    the user's latest, :math:`h` the half-life in seconds. A pair with no
    timestamp (or data without time) keeps its weight.
    """
    if train.timestamp is None or matrix.nnz == 0:
        return matrix
    n_items = matrix.shape[1]
    src, dst, stamp = train.src, train.dst, train.timestamp
    if train.one_sided and not train.directed:  # friendships: both directions, as csr()
        src, dst, stamp = np.r_[src, dst], np.r_[dst, src], np.r_[stamp, stamp]
    keys = src.astype(np.int64) * n_items + dst
    order = np.lexsort((stamp, keys))
    keys, stamp = keys[order], stamp[order]
    last = np.r_[keys[1:] != keys[:-1], True]
    keys, stamp = keys[last], stamp[last].astype(np.float64)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    wanted = rows * n_items + matrix.indices
    at, found = find_sorted(keys, wanted)
    times = np.where(found, stamp[at], -np.inf)
    user_last = np.full(matrix.shape[0], -np.inf)
    np.maximum.at(user_last, rows, times)
    age = np.where(found, user_last[rows] - times, 0.0)
    out = matrix.copy()
    out.data = (out.data * 0.5 ** (age / (half_life_days * DAY))).astype(np.float32)
    return out


class ItemKNN(Retriever):
    """Item-item nearest neighbours (see the module docstring)."""

    name = "item_knn"
    explains = True
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    #: Item-item similarities, ``n_items x n_items``, ``neighbours`` per row.
    similarity_: sp.csr_matrix
    #: Liked pairs (weighted by value kind) the scores are summed over.
    matrix_: sp.csr_matrix

    def _fit(self, train: Interactions) -> None:
        from implicit.nearest_neighbours import CosineRecommender, ItemItemRecommender
        from implicit.utils import ParameterWarning

        cfg = self.config
        self.matrix_ = positive_matrix(train, count_epsilon=cfg.count_epsilon)
        weighted = self.matrix_
        if cfg.similarity == "bm25":
            # the item-item product of the BM25-weighted matrix, as implicit's
            # BM25Recommender, with an inverse user frequency that stays positive
            weighted = bm25_weight(self.matrix_, cfg.bm25_k1, cfg.bm25_b)
            model = ItemItemRecommender(K=cfg.neighbours, num_threads=cfg.num_threads)
        elif cfg.similarity == "cooccurrence":
            model = ItemItemRecommender(K=cfg.neighbours, num_threads=cfg.num_threads)
        else:
            model = CosineRecommender(K=cfg.neighbours, num_threads=cfg.num_threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ParameterWarning)
            # implicit's plain item-item product wants float64
            model.fit(weighted.astype(np.float64), show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.sort_indices()
        self.similarity_ = similarity
        if cfg.half_life_days is not None:
            self.matrix_ = recency_weighted(self.matrix_, train, cfg.half_life_days)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.matrix_[users] @ self.similarity_).toarray()

    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """For each candidate, the user's items that contributed most: :math:`X_{ui} S_{ij}`, largest first.

        Only what the user liked is cited (:meth:`liked_items`): never a dislike
        or a low rating, though a low rating still weighs a little in :math:`X`.
        """
        user, liked, weights = self.liked_weights(user, self.matrix_)
        assert self.users is not None and self.items is not None
        candidates = np.asarray(candidates, dtype=np.int64)
        columns = self.similarity_[liked][:, candidates].toarray()
        contributions = columns * weights[:, None]
        parts = []
        for column in contributions.T:
            order = np.argsort(-column, kind="stable")[:top]
            parts.append((liked[order], column[order]))
        return history_explanations(self.users, self.items, user, candidates, parts)

    def similar_items(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The items of the learnt item-item similarity row, best first (``similarity``)."""
        self._check_fitted()
        row = self.similarity_[item].toarray().ravel().astype(np.float32)
        row[row <= 0] = -np.inf
        return (*ranked_row(row, item, k), "similarity")

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "similarity.indptr": self.similarity_.indptr,
            "similarity.indices": self.similarity_.indices,
            "similarity.data": self.similarity_.data,
            "matrix.indptr": self.matrix_.indptr,
            "matrix.indices": self.matrix_.indices,
            "matrix.data": self.matrix_.data,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        n_items = len(state["similarity.indptr"]) - 1
        self.similarity_ = sp.csr_matrix(
            (state["similarity.data"], state["similarity.indices"], state["similarity.indptr"]),
            shape=(n_items, n_items),
        )
        self.matrix_ = sp.csr_matrix(
            (state["matrix.data"], state["matrix.indices"], state["matrix.indptr"]),
            shape=(len(state["matrix.indptr"]) - 1, n_items),
        )
