r"""Biased matrix factorisation for feeds (PyTorch), with incremental training.

The model of the OLEG AI feed: small user and item embeddings plus biases,
trained by regression on the feedback. Its author found that these plain
embeddings beat a neural net on likes/dislikes, that training from scratch is
cheap, and that incremental updates alone drift (hence
:mod:`recgraph.retrieval.retraining`).

The maths. For user :math:`u` and item :math:`i`

.. math::

    \hat y_{ui} = \mu + b_u + b_i + p_u^\top q_i,
    \qquad p_u, q_i \in \mathbb{R}^K \; (K = 32 \text{ by default}),

fitted to targets :math:`y_{ui} \in [0, 1]` by mini-batch Adam (or Adagrad,
``optimizer``) on

.. math::

    \frac{1}{|B|} \sum_{(u,i) \in B} w_{ui} (\hat y_{ui} - y_{ui})^2
    + \lambda \left(\lVert p_u \rVert^2 + \lVert q_i \rVert^2 + b_u^2 + b_i^2\right).

Targets, by what each row's value means (its ``value_kind``): like (and
follow) = 1, dislike = 0, a rating :math:`r` scaled to
:math:`(r - r_{min}) / (r_{max} - r_{min})` (so a 1-star rating is a 0, never
a like), a view ``view_target``, a play count 1 with the loss weight
:math:`w_{ui} = \log(1 + c/\epsilon) / \log(1 + 1/\epsilon)` of its
:math:`c` plays (``count_epsilon``; Hu et al. 2008), a weight row 1 with its
weight. Where a
pair has several rows, explicit feedback beats a view and the latest row wins.
With implicit data (likes only) a regression would learn "everything is 1",
so each epoch also draws ``negatives`` items per known pair, uniformly among
the items that user has not seen, with target 0: the usual pointwise recipe
for one-class data; ``negative_weight`` (:math:`w_{ui}` of a sampled
negative) lets a few samples stand for the many unseen
pairs of a large catalogue.

Or, with ``unobserved_weight`` :math:`\alpha > 0`, no sampling: each known
pair of user :math:`u` in a batch adds :math:`\tfrac{\alpha}{|I|} \sum_j
\hat y_{uj}^2`, a zero target on every item, so a user with :math:`n_u`
pairs weighs each unseen item :math:`\alpha n_u / |I|` per epoch, as
``negatives * negative_weight`` = :math:`\alpha` would on average. Writing
:math:`\hat y_{uj} = a_u^\top z_j` with :math:`a_u = [p_u, b_u, 1, \mu]`
and :math:`z_j = [q_j, 1, b_j, 1]`, the sum is :math:`a_u^\top G a_u` with
the Gramian :math:`G = \sum_j z_j z_j^\top`, a :math:`(K+3)^2` matrix: a
batch costs :math:`O(|I| K^2)` however many pairs it stands for, and every
item gets the gradient :math:`2 M z_j`,
:math:`M = \tfrac{\alpha}{|I|} \sum_{(u,i) \in B} a_u a_u^\top`.

:math:`b_i` is what nearly everyone likes: the cold-start ranking of
the pipeline serves it to users the model cannot personalise for (``cold_start_scores``).

``partial_fit(new)`` continues from the current weights on the new
interactions only, growing the tables for new users and items (new rows start
like a fresh fit: small random vectors, zero biases): first the users of
``new`` are fitted with the items fixed (``fold_in_epochs``; this alone is
``fold_in``), then users and items together (``partial_epochs``). The first
phase matters: Adam moves every row it touches by about one step size
whatever its gradient, so without it a few new likes drag the liked items
towards a still-random user vector. Each call starts a fresh Adam (or
Adagrad), whose state stays zero for rows that never get a gradient, so users
absent from ``new`` keep their vectors exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.sorted_keys import in_sorted
from recgraph.progress import progress_bar
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.factors import (
    DEFAULT_COUNT_EPSILON,
    CountWeightingConfig,
    count_confidence,
    factor_scores,
)


class BiasedMFConfig(CountWeightingConfig):
    """Hyperparameters of :class:`BiasedMF`.

    Defaults (K=32, Adagrad at 0.1, L2 0.1, 40 epochs, every unseen pair a
    zero through the Gramian with ``unobserved_weight`` 48, no sampled
    negatives) are the validation choice of benchmarks/defaults_study.py: the
    one point of its grid above popularity on every case. ``count_epsilon``
    ``None`` (play counts read as presence): its second stage on the
    generated play counts, nDCG@20 0.1938 against 0.1923 (0.1) and 0.1916 (1).

    ``rating_range`` scales ratings to [0, 1]; ``None`` takes the smallest and
    largest rating of the data given to ``fit`` (and keeps them for
    ``partial_fit``). ``view_target`` is the target of a view without other
    feedback: 1 treats views as positives (as ``Interactions.positives`` does);
    a feed that logs every shown post as a view may prefer something near 0.
    """

    count_epsilon: float | None = Field(default=None, gt=0)
    factors: int = Field(default=32, ge=1)
    epochs: int = Field(default=40, ge=1)
    #: Epochs over the new interactions in ``partial_fit`` (users and items).
    partial_epochs: int = Field(default=5, ge=1)
    #: Epochs with the items fixed before that (and in ``fold_in``).
    fold_in_epochs: int = Field(default=20, ge=0)
    #: Adam step size in ``partial_fit`` (``None``: ``learning_rate``). Adam moves
    #: every touched row by about this much per step whatever its gradient, so
    #: a smaller value keeps incremental updates from shaking older users.
    partial_learning_rate: float | None = Field(default=0.01, gt=0)
    batch_size: int = Field(default=512, ge=1)
    #: Adagrad's step (Adam wants about 0.003).
    learning_rate: float = Field(default=0.1, gt=0)
    #: ``adam``, or ``adagrad``: its steps shrink as a row's squared gradients
    #: add up, so frequent users and items settle while rare ones keep
    #: learning. It wants a larger ``learning_rate`` (0.05 to 0.1) and beat
    #: Adam on MovieLens validation splits by 4% (100k) to 9% (latest-small)
    #: nDCG@20 (benchmarks/biased_mf_tuning.py). ``partial_fit`` and
    #: ``fold_in`` use it too, at ``partial_learning_rate``: its first step
    #: also moves a row by about the step size, so keep that one small.
    optimizer: Literal["adam", "adagrad"] = "adagrad"
    regularization: float = Field(default=0.1, ge=0)
    #: Sampled unseen items (target 0) per known pair and epoch.
    negatives: int = Field(default=0, ge=0)
    #: Loss weight of a sampled negative. Each epoch samples only a few of the
    #: unseen pairs; a weight above 1 stands in for more of them (a large
    #: catalogue has many more unseen pairs per like than a small one).
    negative_weight: float = Field(default=1.0, gt=0)
    #: Sampled negatives drawn with probability proportional to
    #: ``(count + 1) ** negative_popularity`` (count: the users who have seen
    #: the item), then kept if the user has not seen it. 0 is uniform; above 0
    #: the model learns to rank a user's likes above the popular items it
    #: would otherwise show everyone, not just above obscure ones. On MovieLens
    #: latest-small validation it did not pay: 0.1 to 0.25 within noise of
    #: uniform, 0.5 and above worse (benchmarks/biased_mf_tuning.py).
    negative_popularity: float = Field(default=0.0, ge=0)
    #: Zero-target weight each known pair spreads evenly over the whole
    #: catalogue, computed exactly through the item Gramian instead of sampled:
    #: the exact counterpart of ``negatives * negative_weight`` (a user with
    #: :math:`n_u` pairs pays :math:`\alpha n_u / |I|` per item), as in iALS
    #: (Hu et al. 2008) trained by mini-batches (Krichene et al. 2019), except
    #: that iALS weighs every user alike where this grows with :math:`n_u`, as
    #: sampled negatives do. 0 turns it off; with it on, ``negatives`` can be
    #: 0 (benchmarks/biased_mf_tuning.py).
    unobserved_weight: float = Field(default=48.0, ge=0)
    init_std: float = Field(default=0.05, ge=0)
    rating_range: tuple[float, float] | None = None
    view_target: float = Field(default=1.0, ge=0, le=1)
    seed: int = 0
    #: Torch intra-op threads while training (restored afterwards); tiny
    #: embeddings gain nothing from more than one or two.
    num_threads: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> BiasedMFConfig:
        if self.rating_range is not None and not self.rating_range[0] < self.rating_range[1]:
            raise ValueError("rating_range must be (low, high) with low < high")
        return self


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads (at most the cores there are), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def feedback_targets(
    data: Interactions,
    rating_range: tuple[float, float],
    view_target: float,
    count_epsilon: float | None = DEFAULT_COUNT_EPSILON,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One regression target in [0, 1] and one loss weight per (user, item) pair of ``data``.

    Targets follow what each row's value means (its ``value_kind``): a rating
    is scaled to [0, 1] on ``rating_range`` (a 1-star rating is a 0, as a
    dislike, never a like); a dislike is 0; a view ``view_target``; any other
    row (a like, a play count, a weight) 1. Weights: a play count's
    :func:`~recgraph.retrieval.factors.count_confidence` (the pair's counts
    summed), a weight row's value, else 1.

    Returns
    -------
    src, dst, target, weight
        Pairs, targets and loss weights; explicit feedback beats a view, then
        the latest row (by timestamp, then by position) wins.
    """
    n = len(data)
    target = np.ones(n, dtype=np.float32)
    kind = data.kind
    target[kind == Kind.DISLIKE] = 0.0
    rating = (data.value_kind == ValueKind.RATING) & (kind != Kind.DISLIKE)
    if rating.any():
        low, high = rating_range
        scaled = (data.value[rating] - low) / (high - low) if high > low else 1.0
        target[rating] = np.clip(scaled, 0.0, 1.0)
    view = (kind == Kind.VIEW) & ~rating
    target[view] = view_target
    keys = data.pair_keys()
    weight = np.ones(n, dtype=np.float32)
    count = (data.value_kind == ValueKind.COUNT) & (kind != Kind.DISLIKE)
    if count.any():
        pair_of_row = np.unique(keys, return_inverse=True)[1].ravel()
        summed = np.bincount(pair_of_row[count], weights=data.value[count])
        weight[count] = np.maximum(count_confidence(summed[pair_of_row[count]], count_epsilon), 0)
    given = (data.value_kind == ValueKind.WEIGHT) & (kind != Kind.DISLIKE)
    weight[given] = np.maximum(data.value[given], 0.0)
    time_key = data.timestamp if data.timestamp is not None else np.zeros(n, np.int64)
    order = np.lexsort((np.arange(n), time_key, (~view).astype(np.int8), keys))
    sorted_keys = keys[order]
    last = order[np.r_[sorted_keys[1:] != sorted_keys[:-1], True]] if n else order
    src, weight = data.src[last], weight[last]
    if len(src) and (weight != 1).any():
        # Each user's weights average 1: plays say which of a user's items matter
        # more, not that a heavy listener outweighs everyone (the all-items zero
        # term grows with a user's pairs, not with their plays).
        totals = np.bincount(src, weights=weight)
        pairs = np.bincount(src)
        mean = totals[src] / pairs[src]
        weight = np.where(mean > 0, weight / np.where(mean > 0, mean, 1), 0).astype(np.float32)
    return src, data.dst[last], target[last], weight


class BiasedMF(Retriever):
    """Biased matrix factorisation trained by regression (see the module docstring).

    Handles ``items`` graphs (likes, dislikes, views, ratings) and ``follows``
    graphs (a follow is a like of an account).
    """

    name = "biased_mf"
    has_cold_start = True
    config_class = BiasedMFConfig
    config: BiasedMFConfig
    supports = frozenset({"items", "follows"})

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    global_bias_: float

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        self.rating_range_ = self._rating_range(train)
        self.n_updates_ = 0
        rng = np.random.default_rng(cfg.seed)
        self.user_factors_ = (
            rng.standard_normal((train.n_users, cfg.factors)) * cfg.init_std
        ).astype(np.float32)
        self.item_factors_ = (
            rng.standard_normal((train.n_items, cfg.factors)) * cfg.init_std
        ).astype(np.float32)
        self.user_bias_ = np.zeros(train.n_users, np.float32)
        self.item_bias_ = np.zeros(train.n_items, np.float32)
        src, dst, target, weight = feedback_targets(
            train, self.rating_range_, cfg.view_target, cfg.count_epsilon
        )
        negative_share = cfg.negatives / (1 + cfg.negatives)
        self.global_bias_ = float(target.mean() * (1 - negative_share)) if len(target) else 0.0
        self._train(src, dst, target, weight, cfg.epochs, rng, "biased_mf fit", cfg.learning_rate)

    def partial_fit(self, new: Interactions) -> BiasedMF:
        """Continue training on ``new`` only, growing the tables for new users and items.

        Two phases over the new interactions: ``fold_in_epochs`` with the item
        table fixed (new and changed users first fit the current items, as in
        :meth:`fold_in`), then ``partial_epochs`` on users, items and the
        global bias together.

        Parameters
        ----------
        new
            New interactions; their id maps should extend the model's (build
            them with ``users=model.users, items=model.items``), otherwise they
            are re-indexed by external id.

        Returns
        -------
        BiasedMF
            ``self``.
        """
        cfg = self.config
        new, rng = self._absorb(new)
        src, dst, target, weight = feedback_targets(
            new, self.rating_range_, cfg.view_target, cfg.count_epsilon
        )
        learning_rate = cfg.partial_learning_rate or cfg.learning_rate
        if cfg.fold_in_epochs:
            self._train(
                src,
                dst,
                target,
                weight,
                cfg.fold_in_epochs,
                rng,
                "biased_mf fold-in",
                learning_rate,
                True,
            )
        self._train(
            src,
            dst,
            target,
            weight,
            cfg.partial_epochs,
            rng,
            "biased_mf update",
            learning_rate,
            touched_items_only=True,
        )
        return self

    def fold_in(self, new: Interactions) -> BiasedMF:
        """Fit the users of ``new`` to their feedback with every item fixed.

        Only the rows of users in ``new`` change (``fold_in_epochs`` epochs);
        new items get a row but keep their initial values until ``partial_fit``.
        """
        cfg = self.config
        new, rng = self._absorb(new)
        src, dst, target, weight = feedback_targets(
            new, self.rating_range_, cfg.view_target, cfg.count_epsilon
        )
        epochs = max(cfg.fold_in_epochs, 1)
        learning_rate = cfg.partial_learning_rate or cfg.learning_rate
        self._train(src, dst, target, weight, epochs, rng, "biased_mf fold-in", learning_rate, True)
        return self

    def _absorb(self, new: Interactions) -> tuple[Interactions, np.random.Generator]:
        """Put ``new`` on the model's id maps; grow the tables and the seen matrix."""
        self._check_fitted()
        assert self._seen is not None and self.users is not None and self.items is not None
        new = new.reindexed_onto(self.users, self.items)
        cfg = self.config
        self.n_updates_ += 1
        rng = np.random.default_rng([cfg.seed, self.n_updates_])
        extra_users = new.n_users - self.user_factors_.shape[0]
        extra_items = new.n_items - self.item_factors_.shape[0]
        if extra_users > 0:
            grown = rng.standard_normal((extra_users, cfg.factors)) * cfg.init_std
            self.user_factors_ = np.vstack([self.user_factors_, grown.astype(np.float32)])
            self.user_bias_ = np.r_[self.user_bias_, np.zeros(extra_users, np.float32)]
        if extra_items > 0:
            grown = rng.standard_normal((extra_items, cfg.factors)) * cfg.init_std
            self.item_factors_ = np.vstack([self.item_factors_, grown.astype(np.float32)])
            self.item_bias_ = np.r_[self.item_bias_, np.zeros(extra_items, np.float32)]
        self._extend_history(new)
        self.users, self.items = new.users, new.items
        return new, rng

    def _rating_range(self, train: Interactions) -> tuple[float, float]:
        if self.config.rating_range is not None:
            return self.config.rating_range
        ratings = train.value[(train.value_kind == ValueKind.RATING) & (train.kind != Kind.DISLIKE)]
        if len(ratings) == 0:
            return (0.0, 1.0)
        return (float(ratings.min()), float(ratings.max()))

    def _sample_negatives(
        self, src: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``negatives`` random items per row of ``src``, minus those the user has seen."""
        assert self._seen is not None
        if self.config.negatives == 0:
            empty = np.zeros(0, np.int64)
            return empty, empty
        n_items = self._seen.shape[1]
        users = np.repeat(src, self.config.negatives)
        alpha = self.config.negative_popularity
        if alpha > 0:
            counts = np.asarray((self._seen != 0).sum(axis=0)).ravel()
            cdf = np.cumsum((counts + 1.0) ** alpha)
            items = np.searchsorted(cdf, rng.random(len(users)) * cdf[-1], side="right")
            items = np.minimum(items, n_items - 1)
        else:
            items = rng.integers(0, n_items, size=len(users))
        seen = self._seen.tocoo()
        seen_keys = np.sort(seen.row.astype(np.int64) * n_items + seen.col)
        keys = users.astype(np.int64) * n_items + items
        hit = in_sorted(seen_keys, keys)
        return users[~hit], items[~hit]

    def _train(
        self,
        src: np.ndarray,
        dst: np.ndarray,
        target: np.ndarray,
        pair_weight: np.ndarray,
        epochs: int,
        rng: np.random.Generator,
        description: str,
        learning_rate: float,
        users_only: bool = False,
        touched_items_only: bool = False,
    ) -> None:
        """Mini-batch Adam (or Adagrad) over the pairs plus fresh negatives each epoch.

        ``touched_items_only`` keeps the all-items term's gradient off the items
        absent from ``dst``: an optimiser's first steps move every row with a
        gradient by about the step size, however small that gradient is.
        """
        import torch

        cfg = self.config
        if len(src) == 0:
            return
        k = cfg.factors
        with torch_threads(cfg.num_threads), torch.no_grad():
            # One table per side, [p_u, b_u] and [q_i, b_i]: fewer ops per step.
            user_table = torch.nn.Parameter(
                torch.from_numpy(np.hstack([self.user_factors_, self.user_bias_[:, None]]))
            )
            item_table = torch.nn.Parameter(
                torch.from_numpy(np.hstack([self.item_factors_, self.item_bias_[:, None]]))
            )
            global_bias = torch.nn.Parameter(torch.tensor([self.global_bias_], dtype=torch.float32))
            # A fresh optimiser: rows without a gradient in this call keep their values.
            trained = [user_table] if users_only else [user_table, item_table, global_bias]
            optimizer = (
                torch.optim.Adagrad(trained, lr=learning_rate)
                if cfg.optimizer == "adagrad"
                else torch.optim.Adam(trained, lr=learning_rate, fused=True)
            )
            # Each known pair spreads unobserved_weight evenly over the catalogue.
            unobserved = np.full(len(src), cfg.unobserved_weight / item_table.shape[0], np.float32)
            # With the items fixed, their Gramian is too.
            gramian = _gramian(item_table, k) if users_only and cfg.unobserved_weight > 0 else None
            gramian_on = cfg.unobserved_weight > 0
            item_mask = None
            if touched_items_only and gramian_on:
                item_mask = torch.zeros(item_table.shape[0], 1)
                item_mask[torch.from_numpy(np.unique(dst).astype(np.int64))] = 1.0
            with progress_bar(description, total=epochs, unit="epochs") as advance:
                for _ in range(epochs):
                    neg_users, neg_items = self._sample_negatives(src, rng)
                    users = np.concatenate([src, neg_users])
                    items = np.concatenate([dst, neg_items])
                    ys = np.concatenate([target, np.zeros(len(neg_users), np.float32)])
                    weights = np.concatenate(
                        [
                            pair_weight.astype(np.float32),
                            np.full(len(neg_users), cfg.negative_weight, np.float32),
                        ]
                    )
                    shares = np.concatenate([unobserved, np.zeros(len(neg_users), np.float32)])
                    order = rng.permutation(len(users))
                    users_t = torch.from_numpy(users[order].astype(np.int64))
                    items_t = torch.from_numpy(items[order].astype(np.int64))
                    ys_t = torch.from_numpy(ys[order])
                    weights_t = torch.from_numpy(weights[order])
                    shares_t = torch.from_numpy(shares[order]) if gramian_on else None
                    for start in range(0, len(users_t), cfg.batch_size):
                        stop = start + cfg.batch_size
                        self._step(
                            user_table,
                            item_table,
                            global_bias,
                            users_t[start:stop],
                            items_t[start:stop],
                            ys_t[start:stop],
                            weights_t[start:stop],
                            users_only,
                            shares_t[start:stop] if shares_t is not None else None,
                            gramian,
                            item_mask,
                        )
                        optimizer.step()
                    advance(1)
            users_w = user_table.detach().numpy()
            items_w = item_table.detach().numpy()
            self.user_factors_ = np.ascontiguousarray(users_w[:, :k])
            self.user_bias_ = users_w[:, k].copy()
            self.item_factors_ = np.ascontiguousarray(items_w[:, :k])
            self.item_bias_ = items_w[:, k].copy()
            self.global_bias_ = float(global_bias.item())

    def _step(
        self,
        user_table,
        item_table,
        global_bias,
        users,
        items,
        ys,
        weights,
        users_only: bool,
        shares=None,
        gramian=None,
        item_mask=None,
    ):
        """Set the gradients of one mini-batch's loss (written out: 3x faster than autograd).

        With :math:`e = w (\\hat y - y)` (:math:`w`: 1, or ``negative_weight``
        for a sampled negative) over a batch of :math:`B` pairs,
        :math:`\\partial L / \\partial [p_u, b_u] = \\tfrac{2}{B}(e\\,[q_i, 1] + \\lambda [p_u, b_u])`,
        symmetrically for :math:`[q_i, b_i]`, and
        :math:`\\partial L / \\partial \\mu = \\tfrac{2}{B} \\sum e`.
        ``shares`` (:math:`\\alpha / |I|` per pair) add the all-items term of
        the module docstring: :math:`\\tfrac{2}{B} \\tfrac{\\alpha}{|I|} G a_u`
        to each user and :math:`\\tfrac{2}{B} M z_j` to every item (where
        ``item_mask`` is 1).
        """
        import torch

        k, size = self.config.factors, len(users)
        decay = 2.0 * self.config.regularization / size
        a = user_table.index_select(0, users)
        b = item_table.index_select(0, items)
        error = (a[:, :k] * b[:, :k]).sum(1) + a[:, k] + b[:, k] + global_bias - ys
        slope = (error * weights * (2.0 / size))[:, None]
        grad_a = b.clone()
        grad_a[:, k] = 1.0
        grad_a.mul_(slope).add_(a, alpha=decay)
        mu_grad = slope.sum()
        if shares is not None:
            # a_u = [p_u, b_u, 1, mu]; its Gramian gradient, weighted per pair.
            augmented = torch.cat([a, torch.ones(size, 1), global_bias.expand(size, 1)], dim=1)
            every_item = None
            if gramian is None:
                every_item = _augmented_items(item_table, k)
                gramian = every_item.T @ every_item
            weighted = augmented * (shares * (2.0 / size))[:, None]
            pulled = weighted @ gramian
            grad_a.add_(pulled[:, : k + 1])
            mu_grad = mu_grad + pulled[:, k + 2].sum()
        user_table.grad = torch.zeros_like(user_table).index_add_(0, users, grad_a)
        if users_only:
            return
        if shares is not None:
            # z_j = [q_j, 1, b_j, 1]: 2/B M z_j, of which q_j and b_j take their parts.
            if every_item is None:
                every_item = _augmented_items(item_table, k)
            pulled = every_item @ (weighted.T @ augmented)
            if item_mask is not None:
                pulled.mul_(item_mask)
            item_table.grad = torch.cat([pulled[:, :k], pulled[:, k + 1 : k + 2]], dim=1)
        else:
            item_table.grad = torch.zeros_like(item_table)
        grad_b = a
        grad_b[:, k] = 1.0
        grad_b.mul_(slope).add_(b, alpha=decay)
        item_table.grad.index_add_(0, items, grad_b)
        global_bias.grad = mu_grad.reshape(1)

    # ------------------------------------------------------------------ inference
    def _score(self, users: np.ndarray) -> np.ndarray:
        return (
            factor_scores(self.user_factors_[users], self.item_factors_)
            + self.user_bias_[users, None]
            + self.item_bias_[None, :]
            + self.global_bias_
        )

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted targets for pairs (e.g. the chance of a like), not clipped."""
        self._check_fitted()
        users, items = np.asarray(users), np.asarray(items)
        return (
            np.einsum("nk,nk->n", self.user_factors_[users], self.item_factors_[items])
            + self.user_bias_[users]
            + self.item_bias_[items]
            + self.global_bias_
        ).astype(np.float32)

    def user_vectors(self) -> np.ndarray:
        """``[p_u, b_u, 1]``: with :meth:`item_vectors`, the dot product is the score minus μ."""
        ones = np.ones((len(self.user_bias_), 1), np.float32)
        return np.hstack([self.user_factors_, self.user_bias_[:, None], ones])

    def item_vectors(self) -> np.ndarray:
        """``[q_i, 1, b_i]``: see :meth:`user_vectors`."""
        ones = np.ones((len(self.item_bias_), 1), np.float32)
        return np.hstack([self.item_factors_, ones, self.item_bias_[:, None]])

    # ------------------------------------------------------------------ persistence
    def cold_start_scores(self) -> np.ndarray:
        """The learnt item bias: what everyone likes, before anything is known of a user."""
        self._check_fitted()
        return np.asarray(self.item_bias_, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
            "global_bias": np.asarray([self.global_bias_], np.float32),
            "rating_range": np.asarray(self.rating_range_, np.float64),
            "n_updates": np.asarray([self.n_updates_], np.int64),
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
        self.user_bias_ = state["user_bias"]
        self.item_bias_ = state["item_bias"]
        self.global_bias_ = float(state["global_bias"][0])
        low, high = state["rating_range"].tolist()
        self.rating_range_ = (low, high)
        self.n_updates_ = int(state["n_updates"][0])


def _augmented_items(item_table, k: int):
    """``[q_j, 1, b_j, 1]`` per item: with ``[p_u, b_u, 1, mu]`` the dot product is the score."""
    import torch

    ones = torch.ones(item_table.shape[0], 1)
    return torch.cat([item_table[:, :k], ones, item_table[:, k:], ones], dim=1)


def _gramian(item_table, k: int):
    """:math:`G = \\sum_j z_j z_j^\\top` over the augmented item vectors."""
    z = _augmented_items(item_table, k)
    return z.T @ z
