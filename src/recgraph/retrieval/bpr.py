r"""Bayesian personalised ranking (Rendle et al. 2009), trained by recgraph (torch, one thread).

The maths. For triples of a user :math:`u`, an item :math:`i` they have and
an item :math:`j` they have not, maximise

.. math::

    \sum_{(u,i,j)} \ln \sigma(\hat x_{ui} - \hat x_{uj})
    - \lambda \lVert \Theta \rVert^2,
    \qquad \hat x_{ui} = x_u^\top y_i + b_i,

by stochastic gradient ascent over sampled triples: every liked pair once
per iteration, in a random order, each with a negative :math:`j` drawn with
probability :math:`\propto n_j^\beta` (:math:`n_j`: the item's users;
``negative_exponent`` :math:`\beta`). As in ``implicit``, the item bias
:math:`b_i` is the last column of the item vectors and a constant 1 the last
column of the user vectors, so the score is one dot product; the bias is what
everyone likes, used by the feed's cold start (``item_bias_``).

Why not ``implicit``'s BPR, which this module used before: it draws the
negative from the items of a random training pair, i.e. :math:`\beta = 1`.
A popular item is then a negative as often as it is a positive, so the bias
learns little of popularity, which is much of what the next item is. Rendle
et al. draw negatives uniformly (:math:`\beta = 0`, the default): on
validation carved from train, at 64 factors, it lifted MovieLens 100k random
nDCG@20 from 0.1326 (popularity-drawn) to 0.2706 (``defaults_study.md``). On a large long-tailed
catalogue a uniform draw is mostly an item far from every user, which
teaches nothing; so each liked pair draws ``negative_candidates`` items and
learns from the one the model ranks highest for the user (dynamic negative
sampling, Zhang et al. 2013).

:meth:`BPR.fold_in` runs the same objective on the new user's row alone
(items fixed): a few epochs of full-batch gradient ascent on that one vector,
negatives drawn from the same distribution as in training (one per draw).
Nothing else moves.

Training runs over the users and items that have a pair; the others (a
split's test-side ids, a catalogue's new items) draw no starting vector and
are never a negative, and keep a zero vector and bias, so what the id maps
hold besides the training pairs changes no answer. Validation nDCG@20 of the
defaults (5 seeds, carved from train as defaults_study.load_case does), fitted
over every id before and over these after: ML-100k temporal_global 0.1559 ->
0.1554, latest-small temporal_global 0.1143 -> 0.1058 (sd 0.008 each): the
defaults were chosen with the no-pair items among the negatives.

Handles ``items``, ``follows`` and ``friends`` graphs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions
from recgraph.data.sorted_keys import in_sorted
from recgraph.progress import progress_bar, track
from recgraph.retrieval.base import RetrieverConfig
from recgraph.retrieval.biased_mf import torch_threads
from recgraph.retrieval.factors import (
    DEFAULTS_STUDY_SECOND_ROUND,
    FactorRetriever,
    rows_and_columns_with_pairs,
)

if TYPE_CHECKING:
    import torch


class BPRConfig(RetrieverConfig):
    """Hyperparameters of :class:`BPR` (names follow ``implicit``'s)."""

    defaults_chosen_on: ClassVar[str] = DEFAULTS_STUDY_SECOND_ROUND

    #: 64 factors, step 0.05, L2 0.01, 50 iterations, uniform negatives, the
    #: hardest of 3 per liked pair, steps of 1,024 triples: the third round of
    #: benchmarks/defaults_study.py (validation carved from train on issue
    #: 11's target cases: ML-100k random and global temporal at three cuts,
    #: latest-small random, generated play counts). Validation nDCG@20 0.2435,
    #: 0.1490, 0.1778, 0.1862 there, against 0.1890, 0.1461, 0.1493, 0.1568
    #: for the second round's choice on implicit's trainer, and popularity's
    #: 0.1618, 0.1417, 0.1258, 0.1109. Plain uniform draws did best on
    #: MovieLens but fell to popularity on the play counts' 15,000 artists;
    #: steps of 256 triples scored the same (0.2432, 0.1493, 0.1766, 0.1864)
    #: and took 1.5-1.8x as long (``fit_seconds`` in defaults_study.json).
    #: Test figures: benchmarks/results/feeds.md.
    factors: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    regularization: float = Field(default=0.01, ge=0)
    iterations: int = Field(default=50, ge=1)
    verify_negative_samples: bool = True
    #: Negatives are drawn with probability proportional to the item's users
    #: to this power: 0 uniform (Rendle et al. 2009), 1 by popularity (what
    #: ``implicit``'s BPR does), which leaves the item bias nothing to learn.
    negative_exponent: float = Field(default=0.0, ge=0, le=1)
    #: Negatives drawn per liked pair; the one the model ranks highest for the
    #: user is the one learnt from (dynamic negative sampling, Zhang et al.
    #: 2013): with many items, a uniform draw is mostly an item the user was
    #: never near, from which nothing is learnt.
    negative_candidates: int = Field(default=3, ge=1)
    #: Triples per stochastic-gradient step (their gradients are summed).
    batch_size: int = Field(default=1024, ge=1)
    seed: int = 0
    #: Unused since training left ``implicit`` (one thread, the same result
    #: every run); kept so configs saved before load.
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

    def _binary_matrix(self) -> bool:
        # BPR ranks a like above a non-like, whatever its value; a low rating is not a like
        return True

    def _new_user_rows(self, n: int) -> np.ndarray:
        rows = super()._new_user_rows(n)
        rows[:, -1] = 1.0  # the constant 1 that carries the item bias, as in _fit
        return rows

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        self.matrix_ = self._training_matrix(train, fitting=True)
        # Fitted over the users and items that have a pair, the rest kept at zero (a user's
        # bias carrier 1, so it scores by the item bias, as fold_in gives a user without
        # likes): starting vectors and uniform negatives drawn for ids without a pair (a
        # split's test-side ids, a catalogue's new items) would move every answer.
        active_users, active_items = rows_and_columns_with_pairs(self.matrix_)
        user_vectors, item_vectors = self._fit_active(self.matrix_[active_users][:, active_items])
        self.user_factors_ = np.zeros((self.matrix_.shape[0], cfg.factors + 1), np.float32)
        self.user_factors_[:, -1] = 1.0
        self.user_factors_[active_users] = user_vectors
        self.item_factors_ = np.zeros((self.matrix_.shape[1], cfg.factors + 1), np.float32)
        self.item_factors_[active_items] = item_vectors

    def _fit_active(self, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """User and item vectors (bias last) of a matrix whose every row and column has a pair."""
        import torch

        cfg = self.config
        n_users, n_items = matrix.shape
        rng = np.random.default_rng(cfg.seed)
        # implicit's initialisation: uniform around 0, scaled by 1 / factors;
        # the users' last column is the constant 1 that carries the item bias
        users = ((rng.random((n_users, cfg.factors + 1)) - 0.5) / cfg.factors).astype(np.float32)
        users[:, -1] = 1.0
        items = ((rng.random((n_items, cfg.factors + 1)) - 0.5) / cfg.factors).astype(np.float32)
        rows = np.repeat(np.arange(n_users), np.diff(matrix.indptr))
        cols = matrix.indices.astype(np.int64)
        pairs = rows * n_items + cols  # sorted: a CSR matrix with sorted indices
        sampler = NegativeSampler(_item_counts(matrix), cfg.negative_exponent)
        has_pair = _pair_test(pairs, n_users * n_items)
        user_vectors, item_vectors = torch.from_numpy(users), torch.from_numpy(items)
        with progress_bar("bpr fit", total=cfg.iterations, unit="iterations") as advance:
            for _ in range(cfg.iterations):
                order = rng.permutation(len(cols))
                u, i = rows[order], cols[order]
                m = cfg.negative_candidates
                j = sampler.draw(rng, len(u) * m).reshape(len(u), m)
                valid = np.ones(j.shape, bool)
                if cfg.verify_negative_samples and len(pairs):
                    owner = u[:, None]
                    clash = has_pair(owner * n_items + j)
                    for _retry in range(3):  # a negative the user has is drawn again
                        if not clash.any():
                            break
                        j[clash] = sampler.draw(rng, int(clash.sum()))
                        clash = has_pair(owner * n_items + j)
                    valid = ~clash
                    keep = valid.any(axis=1)
                    u, i, j, valid = u[keep], i[keep], j[keep], valid[keep]
                with torch_threads(1):
                    _sgd_epoch(user_vectors, item_vectors, (u, i, j, valid), cfg)
                advance(1)
        return user_vectors.numpy(), item_vectors.numpy()

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
        new = self._absorb(new)
        sampler = NegativeSampler(_item_counts(self.matrix_), self.config.negative_exponent)
        for user in track(np.unique(new.src), "bpr fold-in"):
            self.user_factors_[user] = self._fold_in_user(int(user), sampler)
        return self

    def _fold_in_user(self, user: int, sampler: NegativeSampler) -> np.ndarray:
        """Gradient ascent on one user's BPR objective with the item vectors fixed."""
        cfg = self.config
        liked = self.matrix_[user].indices
        vector = np.zeros(self.item_factors_.shape[1], np.float32)
        vector[-1] = 1.0
        if len(liked) == 0:
            return vector
        rng = np.random.default_rng([cfg.seed, user])
        positives = np.repeat(liked, cfg.fold_in_negatives)
        for _ in range(cfg.fold_in_epochs):
            negatives = sampler.draw(rng, len(positives))
            keep = ~np.isin(negatives, liked)
            diff = self.item_factors_[positives[keep]] - self.item_factors_[negatives[keep]]
            margin = diff @ vector
            weight = 1.0 / (1.0 + np.exp(np.clip(margin, -30, 30)))  # sigma(-margin)
            gradient = (weight[:, None] * diff).mean(axis=0) - cfg.regularization * vector
            gradient[-1] = 0.0  # the constant that carries the item bias
            vector += cfg.fold_in_learning_rate * gradient.astype(np.float32)
        return vector


class NegativeSampler:
    r"""Draws items with probability :math:`\propto n_j^\beta` (:math:`n_j`: the item's users).

    :math:`\beta = 0` is uniform, Rendle et al.'s sampler; :math:`\beta = 1`
    follows popularity, as ``implicit``'s BPR does (it draws the negative
    from the items of a random training pair).
    """

    def __init__(self, counts: np.ndarray, exponent: float) -> None:
        self.n_items = len(counts)
        self.cumulative: np.ndarray | None = None
        #: The items drawn uniformly (``exponent`` 0): those with a user, when some have
        #: none (a fold-in beside items new to the model); ``None``: every item.
        self.support: np.ndarray | None = None
        if exponent != 0 and counts.sum() > 0:
            weights = np.power(counts, exponent, where=counts > 0, out=np.zeros_like(counts))
            self.cumulative = np.cumsum(weights / weights.sum())
        elif counts.sum() > 0 and not counts.all():
            self.support = np.flatnonzero(counts > 0)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.support is not None:
            return self.support[rng.integers(0, len(self.support), size=size)]
        if self.cumulative is None:
            return rng.integers(0, self.n_items, size=size)
        at = np.searchsorted(self.cumulative, rng.random(size), side="right")
        return np.minimum(at, self.n_items - 1)


def _item_counts(matrix: sp.csr_matrix) -> np.ndarray:
    """How many users have each item (what popularity-weighted negatives follow)."""
    return np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)


#: Up to this many user x item cells, the liked pairs are looked up in a dense
#: table (one byte a cell) rather than by binary search.
DENSE_PAIRS_MAX = 32_000_000


def _pair_test(pairs: np.ndarray, cells: int) -> Callable[[np.ndarray], np.ndarray]:
    """``keys -> mask`` of the keys (``user * n_items + item``) that are liked pairs."""
    if cells <= DENSE_PAIRS_MAX:
        table = np.zeros(cells, bool)
        table[pairs] = True
        return lambda keys: table[keys]
    return lambda keys: in_sorted(pairs, keys)


def _sgd_epoch(
    users: torch.Tensor,
    items: torch.Tensor,
    triples: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    cfg: BPRConfig,
) -> None:
    """One pass of stochastic-gradient ascent over ``(user, liked, negatives, valid)``.

    As ``implicit``'s update, in batches of ``batch_size`` whose gradients are
    summed per vector (a vector drawn twice gets both); the users' bias
    column stays 1, the items' bias column is learnt. Each triple carries
    ``negative_candidates`` drawn negatives; the one the model scores highest
    for the user (among the valid ones: not the user's own) is used.
    """
    import torch

    u_all, i_all, j_all, valid_all = (torch.from_numpy(np.ascontiguousarray(t)) for t in triples)
    step, reg = cfg.learning_rate, cfg.regularization
    for start in range(0, len(u_all), cfg.batch_size):
        u = u_all[start : start + cfg.batch_size]
        i = i_all[start : start + cfg.batch_size]
        j = j_all[start : start + cfg.batch_size]
        x_u, y_i = users[u], items[i]
        if j.shape[1] > 1:
            scores = torch.einsum("bf,bmf->bm", x_u, items[j])
            scores[~valid_all[start : start + cfg.batch_size]] = -torch.inf
            j = j.gather(1, scores.argmax(dim=1, keepdim=True))
        j = j[:, 0]
        y_j = items[j]
        diff = y_i - y_j
        z = torch.sigmoid(-(x_u * diff).sum(dim=1, keepdim=True))
        grad_u = z * diff - reg * x_u
        grad_u[:, -1] = 0.0
        users.index_add_(0, u, grad_u, alpha=step)
        items.index_add_(0, i, z * x_u - reg * y_i, alpha=step)
        items.index_add_(0, j, -z * x_u - reg * y_j, alpha=step)
