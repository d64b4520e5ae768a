r"""Item-based nearest neighbours through ``implicit.nearest_neighbours``.

The maths. With the binary ``users x items`` matrix :math:`X`, ``implicit``
keeps for each item its ``neighbours`` most similar items,

.. math::

    S_{ij} = \frac{x_{\cdot i}^\top x_{\cdot j}}{\lVert x_{\cdot i}\rVert \lVert x_{\cdot j}\rVert}
    \quad\text{(cosine)}, \qquad
    S_{ij} = \tilde x_{\cdot i}^\top \tilde x_{\cdot j}
    \quad\text{(BM25: } \tilde X \text{ is } X \text{ BM25-weighted per item)},

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
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.retrieval.base import Retriever, RetrieverConfig, ranked_row
from recgraph.retrieval.explanation import Explanation, history_explanations
from recgraph.retrieval.factors import positive_matrix


class ItemKNNConfig(RetrieverConfig):
    """Hyperparameters of :class:`ItemKNN`.

    ``neighbours`` is ``implicit``'s ``K`` (an item counts as its own
    neighbour). ``bm25_k1`` / ``bm25_b`` only matter for ``similarity="bm25"``.
    """

    similarity: Literal["cosine", "bm25"] = "cosine"
    neighbours: int = Field(default=100, ge=1)
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    num_threads: int = Field(default=0, ge=0)


class ItemKNN(Retriever):
    """Item-item nearest neighbours (see the module docstring)."""

    name = "item_knn"
    explains = True
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    #: Item-item similarities, ``n_items x n_items``, ``neighbours`` per row.
    similarity_: sp.csr_matrix
    #: Binary positive feedback the scores are summed over.
    matrix_: sp.csr_matrix

    def _fit(self, train: Interactions) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        cfg = self.config
        self.matrix_ = positive_matrix(train, "binary")
        if cfg.similarity == "bm25":
            model = BM25Recommender(
                K=cfg.neighbours, K1=cfg.bm25_k1, B=cfg.bm25_b, num_threads=cfg.num_threads
            )
        else:
            model = CosineRecommender(K=cfg.neighbours, num_threads=cfg.num_threads)
        with warnings.catch_warnings():
            # BM25Recommender hands its own weighted COO matrix to implicit's
            # kNN, which then warns that it converts it to CSR; harmless.
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(self.matrix_, show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.sort_indices()
        self.similarity_ = similarity

    def _score(self, users: np.ndarray) -> np.ndarray:
        return (self.matrix_[users] @ self.similarity_).toarray()

    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """For each candidate, the user's items that contributed most: :math:`X_{ui} S_{ij}`, largest first."""
        self._check_fitted()
        assert self.users is not None and self.items is not None
        user = int(self._check_users([user])[0])
        candidates = np.asarray(candidates, dtype=np.int64)
        liked = self.matrix_[user].indices
        weights = self.matrix_[user].data
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
