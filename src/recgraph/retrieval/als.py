r"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through the ``implicit`` library.

The maths. With preferences :math:`p_{ui} = 1` where user :math:`u` liked item
:math:`i` (else 0) and confidences :math:`c_{ui} = \alpha\, w_{ui}` on those
pairs (1 elsewhere; :math:`w` is the training matrix of
:func:`~recgraph.retrieval.factors.positive_matrix`: 1 per like or liked
rating, :math:`\log(1 + c/\epsilon) / \log(1 + 1/\epsilon)` for :math:`c`
plays; or binary, or BM25-weighted),

.. math::

    \min_{X, Y} \sum_{u,i} c_{ui} (p_{ui} - x_u^\top y_i)^2
    + \lambda \Big(\sum_u \lVert x_u \rVert^2 + \sum_i \lVert y_i \rVert^2\Big),

solved by alternating exact (or conjugate-gradient) least squares on users and
items; the score is :math:`x_u^\top y_i`. ``implicit`` does the solving; this
module adds the protocol, persistence without pickle, and three things a feed
needs:

- :meth:`ALS.fold_in`: a user's vector recomputed from their interactions
  alone, with the item vectors fixed (``implicit``'s ``recalculate_user``):
  new users and fresh likes count at once, without retraining, and no other
  user changes;
- :meth:`ALS.partial_fit`: fold in the users of a batch, then recompute the
  vectors of its items (``recalculate_item``);
- :meth:`ALS.explain`: the user's liked items that contributed most to a
  score (Hu et al., section 5, via ``implicit``'s ``explain``).

Handles ``items``, ``follows`` and ``friends`` graphs (a target is any column
of the user x target matrix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.progress import progress_bar
from recgraph.retrieval.explanation import Explanation, history_explanations
from recgraph.retrieval.factors import (
    CountWeightingConfig,
    FactorRetriever,
    bm25_weight,
    rows_and_columns_with_pairs,
)


class ALSConfig(CountWeightingConfig):
    """Hyperparameters of :class:`ALS` (names follow ``implicit``).

    ``weighting`` builds :math:`w_{ui}`: ``value`` (what each liked pair's
    value means: 1 per like, log confidence of a play count, a weight as
    given; the same as ``binary`` on binary or rating data), ``binary`` (1 per
    liked pair) or ``bm25`` (binary, then BM25 weighted with ``bm25_k1`` /
    ``bm25_b``: item_knn's :func:`~recgraph.retrieval.factors.bm25_weight`).
    Dislikes and low ratings are never positives.

    ``bm25`` changed meaning in 0.1 (the ``defects`` merge): it is the transpose
    of the weighting ALS had before, which was ``implicit``'s ``bm25_weight`` of
    the users x items matrix (one inverse frequency per item, counted over all
    users; each user's row normalised by its length; :math:`N` = users). Now
    each user is a term and each item a document, as in item_knn: one Lucene
    inverse frequency per user (a user with many items weighs less), each
    item's column normalised by its length (a popular item's pairs damped),
    and :math:`N` and the mean length counted over the items that have a pair.
    The same ``bm25_k1`` / ``bm25_b`` therefore weigh differently than before;
    the defaults were chosen with ``weighting = "value"``, which did not change.
    """

    #: 32 factors, L2 10, alpha 1: the validation choice of
    #: benchmarks/defaults_study.py (the old 64 / 0.01 fell below popularity
    #: on small explicit-rating data).
    #: ``count_epsilon`` 0.1: best of None / 0.01 / 0.1 / 1 on the play-count
    #: validation split (0.2117 against 0.2094 for 1).
    count_epsilon: float | None = Field(default=0.1, gt=0)
    factors: int = Field(default=32, ge=1)
    regularization: float = Field(default=10.0, ge=0)
    alpha: float = Field(default=1.0, gt=0)
    iterations: int = Field(default=15, ge=1)
    #: ``bm25``: item_knn's BM25 (one weight per user, length normalised per item, N =
    #: items with a pair), the transpose of the implicit ``bm25_weight`` used before 0.1.
    weighting: Literal["binary", "value", "bm25"] = "value"
    bm25_k1: float = Field(default=100.0, gt=0)
    bm25_b: float = Field(default=0.8, ge=0, le=1)
    use_cg: bool = True
    seed: int = 0
    #: 0 = all cores. Results do not depend on it (each row is solved alone).
    num_threads: int = Field(default=0, ge=0)


class ALS(FactorRetriever):
    """Implicit-feedback alternating least squares (see the module docstring).

    ``matrix_`` holds the liked pairs before BM25 weighting.
    """

    name = "als"
    explains = True
    config_class = ALSConfig
    config: ALSConfig

    # ------------------------------------------------------------------ implicit
    def _implicit_model(self):
        """An ``implicit`` CPU model with this config (and the learned factors, if any)."""
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        cfg = self.config
        # implicit warns when BLAS runs its own threads (its solver has its own).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                use_cg=cfg.use_cg,
                num_threads=cfg.num_threads,
                random_state=cfg.seed,
            )
        if hasattr(self, "user_factors_"):
            model.user_factors = self.user_factors_
            model.item_factors = self.item_factors_
        return model

    def _confidence(self) -> sp.csr_matrix:
        """:math:`w_{ui}` from the stored matrix (``implicit`` multiplies by alpha)."""
        cfg = self.config
        if cfg.weighting != "bm25":
            return self.matrix_
        return bm25_weight(self.matrix_, cfg.bm25_k1, cfg.bm25_b)

    def _binary_matrix(self) -> bool:
        return self.config.weighting != "value"

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions) -> None:
        from threadpoolctl import threadpool_limits

        self.matrix_ = self._training_matrix(train, fitting=True)
        for attr in ("user_factors_", "item_factors_"):
            self.__dict__.pop(attr, None)  # implicit would continue from them
        confidence, users, items = self._fit_input()
        model = self._implicit_model()
        with (
            threadpool_limits(1, "blas"),
            progress_bar("als fit", total=self.config.iterations, unit="iterations") as advance,
        ):
            model.fit(confidence, show_progress=False, callback=lambda *_: advance(1))
        factors = self.config.factors
        self.user_factors_ = np.zeros((self.matrix_.shape[0], factors), dtype=np.float32)
        self.item_factors_ = np.zeros((self.matrix_.shape[1], factors), dtype=np.float32)
        self.user_factors_[users] = model.user_factors
        self.item_factors_[items] = model.item_factors

    def _fit_input(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """The matrix ``implicit`` is fitted on, and the users and items its rows and columns are.

        Solved over the users and items that have a pair, the rest kept at zero: implicit
        draws its starting vectors for every row and column, so users and items without a
        pair (a split's test-side ids, a catalogue's new items) would move every answer.
        """
        confidence = self._confidence()
        users, items = rows_and_columns_with_pairs(confidence)
        if len(users) < confidence.shape[0] or len(items) < confidence.shape[1]:
            confidence = confidence[users][:, items]
        return confidence, users, items

    def implicit_input(self, train: Interactions) -> sp.csr_matrix:
        """What :meth:`fit` on ``train`` hands ``implicit`` (this config's weighting, over
        the users and items with a pair), without fitting: to time bare ``implicit`` on the
        same input (benchmarks/feeds.py)."""
        model = type(self)(self.config)
        model.matrix_ = model._training_matrix(train, fitting=True)
        return model._fit_input()[0]

    def fold_in(self, new: Interactions) -> ALS:
        """Recompute the vectors of the users in ``new`` from all their feedback; nothing else moves.

        This is ``implicit``'s ``recalculate_user``: one least-squares solve
        per user against the fixed item vectors, so a new user's first likes
        count at once, without retraining. Items new to the model get a zero
        vector until the next ``partial_fit`` or ``fit``.

        Parameters
        ----------
        new
            New interactions (their id maps should extend the model's;
            otherwise they are re-indexed by external id).
        """
        new = self._absorb(new)
        users = np.unique(new.src)
        if len(users):
            self._recalculate_users(users)
        return self

    def partial_fit(self, new: Interactions) -> ALS:
        """Fold in the users of ``new``, then recompute the vectors of its items.

        One half-step of ALS restricted to what changed: cheap, but vectors of
        users and items outside ``new`` go stale, so retrain from scratch now
        and then (:mod:`recgraph.retrieval.retraining`).
        """
        new = self._absorb(new)
        users, items = np.unique(new.src), np.unique(new.dst)
        if len(users):
            self._recalculate_users(users)
        if len(items):
            model = self._implicit_model()
            item_users = self._confidence().T.tocsr()[items]
            self.item_factors_[items] = model.recalculate_item(items, item_users)
        return self

    def _recalculate_users(self, users: np.ndarray) -> None:
        model = self._implicit_model()
        self.user_factors_[users] = model.recalculate_user(users, self._confidence()[users])

    # ------------------------------------------------------------------ inference
    def explain(
        self, user: int, candidates: Sequence[int] | np.ndarray, top: int | None = 3
    ) -> list[Explanation]:
        """For each candidate, the user's items that contributed most (Hu et al. 2008, section 5)."""
        self._check_fitted()
        assert self.users is not None and self.items is not None
        user = int(self._check_users([user])[0])
        candidates = np.asarray(candidates, dtype=np.int64)
        row = self._confidence()[user]
        if row.nnz == 0:
            empty = (np.zeros(0, np.int64), np.zeros(0))
            return history_explanations(
                self.users, self.items, user, candidates, [empty] * len(candidates)
            )
        model = self._implicit_model()
        liked = self.liked_items(user)
        weights = None
        parts = []
        for item in candidates:
            # every contribution, then only liked items, then the cut: a low rating is never cited
            _, found, weights = model.explain(0, row, int(item), user_weights=weights, N=row.nnz)
            via = np.array([i for i, _ in found], np.int64)
            share = np.array([c for _, c in found])
            keep = np.isin(via, liked)
            parts.append((via[keep][:top], share[keep][:top]))
        return history_explanations(self.users, self.items, user, candidates, parts)
