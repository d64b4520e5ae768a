r"""Bayesian personalised ranking (Rendle et al. 2009) through the ``implicit`` library.

The maths. For triples of a user :math:`u`, an item :math:`i` they have and
an item :math:`j` they have not, maximise

.. math::

    \sum_{(u,i,j)} \ln \sigma(\hat x_{ui} - \hat x_{uj})
    - \lambda \lVert \Theta \rVert^2,
    \qquad \hat x_{ui} = x_u^\top y_i + b_i,

by stochastic gradient ascent over sampled triples. ``implicit`` stores the
item bias :math:`b_i` as the last column of the item vectors and a constant 1
as the last column of the user vectors, so the score is one dot product; the
bias is what everyone likes, used by the feed's cold start (``item_bias_``).

``implicit`` has no ``recalculate_user`` for BPR, so :meth:`BPR.fold_in` runs
the same objective on the new user's row alone (items fixed): a few epochs of
full-batch gradient ascent on that one vector. Nothing else moves.

Handles ``items``, ``follows`` and ``friends`` graphs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.progress import progress_bar, track
from recgraph.retrieval.base import RetrieverConfig
from recgraph.retrieval.factors import (
    DEFAULTS_STUDY_SECOND_ROUND,
    FactorRetriever,
    merge_matrix,
)
from recgraph.retrieval.retraining import extend_onto


class BPRConfig(RetrieverConfig):
    """Hyperparameters of :class:`BPR` (names follow ``implicit``).

    ``num_threads = 1`` keeps training reproducible: with more threads
    ``implicit`` updates shared vectors without locks (Hogwild), faster but
    different on every run.
    """

    defaults_chosen_on: ClassVar[str] = DEFAULTS_STUDY_SECOND_ROUND

    #: 32 factors, step 0.02, L2 0.03, 50 iterations: the second round of
    #: benchmarks/defaults_study.py (issue 11's target cases, ML-100k global
    #: temporal validated at three cuts of train; best mean share of each
    #: case's best, 0.979, against 0.978 for the first round's 64 factors).
    #: On the temporal case every setting tried sits within 6% of popularity
    #: (0.1461 against 0.1417); more factors, iterations or L2 scored lower
    #: everywhere else. Test figures: benchmarks/results/feeds.md.
    factors: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=0.02, gt=0)
    regularization: float = Field(default=0.03, ge=0)
    iterations: int = Field(default=50, ge=1)
    verify_negative_samples: bool = True
    seed: int = 0
    num_threads: int = Field(default=1, ge=0)
    #: Gradient steps of :meth:`BPR.fold_in` on one user's vector.
    fold_in_epochs: int = Field(default=50, ge=1)
    fold_in_learning_rate: float = Field(default=0.5, gt=0)
    #: Sampled negatives per liked item and fold-in step.
    fold_in_negatives: int = Field(default=20, ge=1)


class BPR(FactorRetriever):
    """Bayesian personalised ranking (see the module docstring)."""

    name = "bpr"
    has_cold_start = True
    config_class = BPRConfig
    config: BPRConfig

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    #: Liked pairs (binary: BPR ranks a like above a non-like, whatever its
    #: value; a low rating is not a like), which fold-in rebuilds users from.
    matrix_: sp.csr_matrix

    def _binary_matrix(self) -> bool:
        return True

    def _fit(self, train: Interactions) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cfg = self.config
        self.matrix_ = self._training_matrix(train, fitting=True)
        model = BayesianPersonalizedRanking(
            factors=cfg.factors,
            learning_rate=cfg.learning_rate,
            regularization=cfg.regularization,
            iterations=cfg.iterations,
            verify_negative_samples=cfg.verify_negative_samples,
            num_threads=cfg.num_threads,
            random_state=cfg.seed,
        )
        with progress_bar("bpr fit", total=cfg.iterations, unit="iterations") as advance:
            model.fit(
                self.matrix_,
                show_progress=False,
                callback=lambda *_: advance(1),
            )
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    @property
    def item_bias_(self) -> np.ndarray:
        """The learnt item bias :math:`b_i` (last column of the item vectors)."""
        return self.item_factors_[:, -1]

    def cold_start_scores(self) -> np.ndarray:
        """The learnt item bias: what everyone likes, before anything is known of a user."""
        self._check_fitted()
        return np.asarray(self.item_bias_, dtype=np.float32)

    def fold_in(self, new: Interactions) -> BPR:
        """Re-learn the vectors of the users in ``new`` from all their feedback; nothing else moves.

        Parameters
        ----------
        new
            New interactions (their id maps should extend the model's;
            otherwise they are re-indexed by external id). Items new to the
            model get a zero vector (and bias) until the next ``fit``.
        """
        self._check_fitted()
        assert self._seen is not None and self.users is not None and self.items is not None
        new = extend_onto(new, self.users, self.items)
        width = self.user_factors_.shape[1]
        if new.n_users > len(self.user_factors_):
            grow = np.zeros((new.n_users - len(self.user_factors_), width), np.float32)
            grow[:, -1] = 1.0
            self.user_factors_ = np.vstack([self.user_factors_, grow])
        if new.n_items > len(self.item_factors_):
            grow = np.zeros((new.n_items - len(self.item_factors_), width), np.float32)
            self.item_factors_ = np.vstack([self.item_factors_, grow])
        self.matrix_ = merge_matrix(
            self.matrix_, self._training_matrix(new, fitting=False), binary=True
        )
        self._extend_history(new)
        self.users, self.items = new.users, new.items
        for user in track(np.unique(new.src), "bpr fold-in"):
            self.user_factors_[user] = self._fold_in_user(int(user))
        return self

    def _fold_in_user(self, user: int) -> np.ndarray:
        """Gradient ascent on one user's BPR objective with the item vectors fixed."""
        cfg = self.config
        liked = self.matrix_[user].indices
        vector = np.zeros(self.item_factors_.shape[1], np.float32)
        vector[-1] = 1.0
        if len(liked) == 0:
            return vector
        rng = np.random.default_rng([cfg.seed, user])
        n_items = len(self.item_factors_)
        positives = np.repeat(liked, cfg.fold_in_negatives)
        for _ in range(cfg.fold_in_epochs):
            negatives = rng.integers(0, n_items, size=len(positives))
            keep = ~np.isin(negatives, liked)
            diff = self.item_factors_[positives[keep]] - self.item_factors_[negatives[keep]]
            margin = diff @ vector
            weight = 1.0 / (1.0 + np.exp(np.clip(margin, -30, 30)))  # sigma(-margin)
            gradient = (weight[:, None] * diff).mean(axis=0) - cfg.regularization * vector
            gradient[-1] = 0.0  # the constant that carries the item bias
            vector += cfg.fold_in_learning_rate * gradient.astype(np.float32)
        return vector
