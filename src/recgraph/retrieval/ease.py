r"""EASE: embarrassingly shallow autoencoder (Steck 2019), in closed form.

The maths. With the binary ``users x items`` matrix :math:`X`, learn an
item-item weight matrix with a zero diagonal (so an item cannot predict
itself):

.. math::

    \hat B = \arg\min_B \lVert X - XB \rVert_F^2 + \lambda \lVert B \rVert_F^2
    \quad \text{s.t.} \quad \operatorname{diag}(B) = 0.

The Lagrangian gives the closed form

.. math::

    P = (X^\top X + \lambda I)^{-1}, \qquad
    \hat B_{ij} = -\frac{P_{ij}}{P_{jj}} \;(i \ne j), \qquad \hat B_{jj} = 0,

i.e. :math:`\hat B = I - P \operatorname{diagMat}(1 / \operatorname{diag} P)`.
A user's scores are :math:`x_u^\top \hat B`; the term :math:`X_{ui} \hat B_{ij}`
is liked item :math:`i`'s contribution to item :math:`j`
(:meth:`EASE.explain`). :math:`\lambda` is ``regularization`` (Steck: a few
hundred on MovieLens-sized data).

Cost: one dense ``n x n`` Cholesky inverse in float64 (about ``8 n^2`` bytes:
0.8 GB for 10k items), so it suits catalogues up to some tens of thousands.
Items with fewer than ``min_item_count`` positives are left out of the Gram
matrix; they score below every learnt item.

Handles ``items``, ``follows`` and ``friends`` graphs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.retrieval.base import Retriever, RetrieverConfig
from recgraph.retrieval.explanation import Explanation, history_explanations
from recgraph.retrieval.factors import positive_matrix


class EASEConfig(RetrieverConfig):
    """Hyperparameters of :class:`EASE`: the L2 weight λ and which items enter."""

    regularization: float = Field(default=500.0, gt=0)
    min_item_count: int = Field(default=1, ge=1)


def ease_weights(matrix: sp.spmatrix, regularization: float) -> np.ndarray:
    """:math:`\\hat B` for a ``users x items`` matrix (float64 in, float32 out).

    The inverse comes from LAPACK's Cholesky routines in place, so only one
    ``n x n`` float64 buffer is held at a time.
    """
    gram = np.asarray((matrix.T @ matrix).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"X^T X + lambda I is not positive definite (info={info})")
    inverse, info = scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (info={info})")
    inverse = np.triu(inverse) + np.triu(inverse, 1).T
    weights = inverse / (-np.diag(inverse))[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


class EASE(Retriever):
    """Steck's EASE (see the module docstring)."""

    name = "ease"
    explains = True
    config_class = EASEConfig
    config: EASEConfig

    #: :math:`\hat B` over the active items, ``n_active x n_active``.
    weights_: np.ndarray
    #: Indices of the items in ``weights_``.
    active_items_: np.ndarray
    #: Binary positive feedback the scores are computed from.
    matrix_: sp.csr_matrix

    def _fit(self, train: Interactions) -> None:
        self.matrix_ = positive_matrix(train, "binary")
        counts = np.asarray(self.matrix_.sum(axis=0)).ravel()
        self.active_items_ = np.flatnonzero(counts >= self.config.min_item_count)
        self.weights_ = ease_weights(
            self.matrix_[:, self.active_items_], self.config.regularization
        )

    def _score(self, users: np.ndarray) -> np.ndarray:
        active = self.matrix_[users][:, self.active_items_] @ self.weights_
        active = np.asarray(active, dtype=np.float32)
        if len(self.active_items_) == self.matrix_.shape[1]:
            return active
        floor = (active.min(axis=1, keepdims=True) if active.size else 0.0) - 1.0
        scores = np.broadcast_to(floor, (len(users), self.matrix_.shape[1])).copy()
        scores[:, self.active_items_] = active
        return scores

    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """For each candidate, the user's items with the largest positive :math:`\\hat B_{ij}`."""
        self._check_fitted()
        assert self.users is not None and self.items is not None
        user = int(self._check_users([user])[0])
        candidates = np.asarray(candidates, dtype=np.int64)
        position = np.full(self.matrix_.shape[1], -1, dtype=np.int64)
        position[self.active_items_] = np.arange(len(self.active_items_))
        liked = self.matrix_[user].indices
        liked = liked[position[liked] >= 0]
        parts = []
        for item in candidates:
            if position[item] < 0 or len(liked) == 0:
                parts.append((np.zeros(0, np.int64), np.zeros(0)))
                continue
            column = self.weights_[position[liked], position[item]]
            order = np.argsort(-column, kind="stable")[:top]
            parts.append((liked[order], column[order]))
        return history_explanations(self.users, self.items, user, candidates, parts)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "weights": self.weights_,
            "active_items": self.active_items_,
            "matrix.indptr": self.matrix_.indptr,
            "matrix.indices": self.matrix_.indices,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.weights_ = state["weights"]
        self.active_items_ = state["active_items"]
        indices = state["matrix.indices"]
        self.matrix_ = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, state["matrix.indptr"]),
            shape=(len(state["matrix.indptr"]) - 1, self.n_items),
        )
