"""What the factorisation models share: the positive-feedback matrix and factor scores.

``ALS`` and ``BPR`` (through ``implicit``) keep user and item factors plus the
matrix they were trained on; :class:`FactorRetriever` scores, exposes and saves
those, so each model file holds only what is its own.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.retrieval.base import Retriever, pad_rows


def factor_scores(user_factors: np.ndarray, item_factors: np.ndarray) -> np.ndarray:
    """``user_factors @ item_factors.T`` in float64.

    BLAS sums a batch (matrix-matrix) and a single user (matrix-vector) in a
    different order; in float32 that noise reorders near-ties, so a user would
    get different lists alone and in a batch.
    """
    return user_factors.astype(np.float64) @ item_factors.T.astype(np.float64)


def positive_matrix(data: Interactions, weighting: str) -> sp.csr_matrix:
    """The ``users x targets`` matrix of positive feedback: binary, or summed values."""
    return data.positives().csr("value" if weighting == "value" else "binary")


def merge_matrix(old: sp.csr_matrix, new: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    """``old`` grown to ``new``'s shape plus ``new`` (capped at 1 when ``binary``)."""
    merged = (pad_rows(old, *new.shape) + new).tocsr()
    if binary:
        merged.data[:] = 1.0
    merged.sort_indices()
    return merged


class FactorRetriever(Retriever):
    """A retriever whose state is ``user_factors_``, ``item_factors_`` and ``matrix_``."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    matrix_: sp.csr_matrix

    def _score(self, users: np.ndarray) -> np.ndarray:
        return factor_scores(self.user_factors_[users], self.item_factors_)

    def user_vectors(self) -> np.ndarray:
        return self.user_factors_

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "matrix.indptr": self.matrix_.indptr,
            "matrix.indices": self.matrix_.indices,
            "matrix.data": self.matrix_.data,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
        self.matrix_ = sp.csr_matrix(
            (state["matrix.data"], state["matrix.indices"], state["matrix.indptr"]),
            shape=(len(self.user_factors_), len(self.item_factors_)),
        )
