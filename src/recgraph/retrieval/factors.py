"""What the item models share: the training matrix by value kind, and factor scores.

:func:`positive_matrix` is the one place where an ``Interactions`` becomes
the ``users x targets`` matrix a model learns from, reading what each row's
value means (:class:`~recgraph.data.interactions.ValueKind`):

- ``none`` (binary): 1 per liked pair; the value carries nothing;
- ``rating``: a rated target was watched or read, which is what full-ranking
  evaluation (and the next thing a user picks) follows, so every rating
  counts; a liked one (at least three quarters up the scale, as
  :meth:`Interactions.liked` says) weighs 1 and a lower one
  :data:`LOW_RATING_WEIGHT`. Dropping low ratings altogether cost EASE 11% of
  its test nDCG@20 on MovieLens 100k (0.4403 -> 0.3905). Reasons still cite
  only liked ratings;
- ``count`` (plays, views, clicks): the pair's counts summed, then the
  confidence :func:`count_confidence` (1 for one play, growing with the log of
  the count), so a thousand plays weigh about ten times one play, not a
  thousand times;
- ``weight``: the pair's weights summed, used as given (negative ones as 0).

Dislikes never enter. ``ALS`` and ``BPR`` (through ``implicit``) keep user and
item factors plus that matrix; :class:`FactorRetriever` scores, exposes and
saves those, so each model file holds only what is its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recgraph.data.interactions import Interactions, Kind, ValueKind, liked_rating
from recgraph.data.sparse_rows import pad_rows
from recgraph.files import csr_arrays, csr_from_arrays
from recgraph.retrieval.base import Retriever, RetrieverConfig

#: The default ``count_epsilon`` of every item model: counts become
#: ``log(1 + c / 1) / log 2`` (1 play: 1, 3 plays: 2, 1,000 plays: 10). Chosen
#: on the validation splits of the generated play-count case
#: (benchmarks/feeds.py, ``count_epsilon`` rows of its defaults study).
DEFAULT_COUNT_EPSILON = 1.0


#: What a rating below the liked threshold weighs in training (a liked one weighs 1):
#: chosen on validation carved from train (benchmarks/rating_weight.py: mean nDCG@20 of EASE,
#: item-kNN and ALS over MovieLens 100k and latest-small, random and temporal: 0 -> 0.1875,
#: 0.25 -> 0.1952, 0.5 -> 0.1949, 1 -> 0.1853).
LOW_RATING_WEIGHT = 0.25

#: Where the item models' defaults come from (``recgraph models`` prints it).
DEFAULTS_STUDY = (
    "validation nDCG@20 (carved from train) on MovieLens 100k and latest-small, random "
    "and temporal splits, and generated play counts (benchmarks/defaults_study.py)"
)


#: Where item_knn's and bpr's defaults come from: the second and third rounds of
#: the study (the third: bpr's own trainer and item_knn's recency half-life).
DEFAULTS_STUDY_SECOND_ROUND = (
    "validation nDCG@20 (carved from train) on MovieLens 100k random and global temporal "
    "(three cuts), latest-small random, and generated play counts "
    "(benchmarks/defaults_study.py, second and third rounds)"
)


class CountWeightingConfig(RetrieverConfig):
    """The config field every item model shares: how ``count`` values weigh.

    ``count_epsilon`` is the bend of :func:`count_confidence`; ``None`` reads
    counts as presence only. It changes nothing on binary, rating or weight data.
    """

    count_epsilon: float | None = Field(default=DEFAULT_COUNT_EPSILON, gt=0)
    #: What the defaults were chosen on (not a parameter).
    defaults_chosen_on: ClassVar[str] = DEFAULTS_STUDY


def factor_scores(user_factors: np.ndarray, item_factors: np.ndarray) -> np.ndarray:
    """``user_factors @ item_factors.T`` in float64.

    BLAS sums a batch (matrix-matrix) and a single user (matrix-vector) in a
    different order; in float32 that noise reorders near-ties, so a user would
    get different lists alone and in a batch.
    """
    return user_factors.astype(np.float64) @ item_factors.T.astype(np.float64)


def count_confidence(counts: np.ndarray, epsilon: float | None) -> np.ndarray:
    r"""How much a pair with ``counts`` plays says: :math:`\log(1 + c/\epsilon) / \log(1 + 1/\epsilon)`.

    One play weighs 1, as a binary like does, and the weight grows with the
    log of the count (Hu, Koren & Volinsky 2008, section 4). ``epsilon``
    bends it: small values flatten every count towards 1 (``None``: presence
    only), large ones approach the raw count.
    """
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 0.0)
    if epsilon is None:
        return (counts > 0).astype(np.float32)
    return (np.log1p(counts / epsilon) / np.log1p(1.0 / epsilon)).astype(np.float32)


def rating_threshold(data: Interactions) -> float | None:
    """The lowest liked rating of ``data``'s rating rows (``None`` when it has none).

    Models that train incrementally keep it from ``fit``, so a small batch of
    new ratings is judged on the scale of the whole training data.
    """
    ratings = data.value[data.value_kind == ValueKind.RATING]
    return liked_rating(ratings) if len(ratings) else None


def liked_rows(data: Interactions, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the rows that are likes: :meth:`Interactions.liked`, or that rule
    with a rating ``threshold`` kept from an earlier fit."""
    if threshold is None:
        return data.liked()
    mask = data.kind != Kind.DISLIKE
    rating = data.value_kind == ValueKind.RATING
    return mask & (~rating | (data.value >= threshold))


def positive_matrix(
    data: Interactions,
    *,
    binary: bool = False,
    count_epsilon: float | None = DEFAULT_COUNT_EPSILON,
    threshold: float | None = None,
    low_rating_weight: float | None = None,
) -> sp.csr_matrix:
    """The ``users x targets`` matrix of what users had, weighted by what values mean.

    Parameters
    ----------
    data
        The training interactions (symmetrised for friendships, as ``csr``).
    binary
        1 on every liked pair, whatever its value (for models that read
        presence only: BPR, or the ``binary`` weighting of ALS).
    count_epsilon
        The bend of :func:`count_confidence` for ``count`` rows; ``None``
        counts presence only.
    threshold
        The lowest liked rating, when it should not come from ``data`` (see
        :func:`rating_threshold`).
    low_rating_weight
        What a rating below the threshold weighs (a liked one weighs 1);
        default :data:`LOW_RATING_WEIGHT`.

    Returns
    -------
    scipy.sparse.csr_matrix
        float32, sorted indices, no explicit zeros; no dislikes.
    """
    if low_rating_weight is None:
        low_rating_weight = LOW_RATING_WEIGHT
    liked_mask = liked_rows(data, threshold)
    rated = data.value_kind == ValueKind.RATING
    keep = liked_mask | (rated & (data.kind != Kind.DISLIKE) & (low_rating_weight > 0))
    liked = data.subset(keep)
    if binary or len(liked) == 0:
        return liked.csr("binary")
    value_kind = liked.value_kind
    parts = []
    plain = value_kind == ValueKind.NONE
    if plain.any():
        parts.append(liked.subset(plain).csr("binary"))
    rating = value_kind == ValueKind.RATING
    if rating.any():
        ratings = liked.subset(rating)
        weights = np.where(liked_mask[keep][rating], 1.0, low_rating_weight).astype(np.float32)
        matrix = sp.csr_matrix(
            (weights, (ratings.src, ratings.dst)), shape=(liked.n_users, liked.n_items)
        )
        matrix.sum_duplicates()
        matrix.data = np.minimum(matrix.data, 1.0)
        parts.append(matrix.tocsr())
    count = value_kind == ValueKind.COUNT
    if count.any():
        counts = liked.subset(count).csr("value")
        counts.data = count_confidence(counts.data, count_epsilon)
        parts.append(counts)
    weight = value_kind == ValueKind.WEIGHT
    if weight.any():
        weights = liked.subset(weight).csr("value")
        weights.data = np.maximum(weights.data, 0.0).astype(np.float32)
        parts.append(weights)
    matrix = parts[0]
    for part in parts[1:]:
        matrix = matrix.maximum(part)
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def bm25_weight(matrix: sp.spmatrix, k1: float, b: float) -> sp.csr_matrix:
    r"""BM25 weights of a ``users x items`` matrix, each item a document and each user a term,
    counted over the items that have a pair: the one BM25 of item_knn and ALS.

    :math:`w_{ui} = x_{ui} (k_1 + 1) / (k_1 L_i + x_{ui}) \cdot \mathrm{idf}_u`,
    with the item's length norm :math:`L_i = 1 - b + b\, n_i / \bar n` and
    Lucene's inverse user frequency
    :math:`\mathrm{idf}_u = \log(1 + (N - d_u + 0.5) / (d_u + 0.5))`
    (:math:`N` items with a pair, :math:`\bar n` their mean length, :math:`d_u`
    the user's items). ``implicit``'s own ``bm25_weight`` takes
    :math:`\log N - \log(1 + d_u)`, which is 0 or negative for a user who has
    more than a third of the catalogue: on a small catalogue every such user's
    co-occurrences vanish or count against the items. Lucene's form stays
    positive and matches the other for ordinary users.

    :math:`N` and :math:`\bar n` leave out the columns without a pair (a
    catalogue's new items, or a split's id maps that also hold the test side's
    items), and rows without a pair take no part either, so the weights are
    the same whatever else the id maps hold: with those columns counted, the
    66 items only the test side has moved item_knn's test nDCG@20 on the
    ML-100k global temporal split from 0.1577 to 0.1592, latest-small's 1,857
    from 0.1442 to 0.1331, and a split read from files gave other answers than
    the same split in memory.
    """
    coo = sp.coo_matrix(matrix, dtype=np.float64)
    user_items = np.bincount(coo.row, minlength=coo.shape[0]).astype(np.float64)
    item_sums = np.bincount(coo.col, weights=coo.data, minlength=coo.shape[1])
    with_pairs = item_sums[np.bincount(coo.col, minlength=coo.shape[1]) > 0]
    n_items = float(len(with_pairs))
    idf = np.log1p((n_items - user_items + 0.5) / (user_items + 0.5))
    mean_length = with_pairs.mean() if len(with_pairs) else 0.0
    length = (1.0 - b) + b * item_sums / max(mean_length, 1e-12)
    data = coo.data * (k1 + 1.0) / (k1 * length[coo.col] + coo.data) * idf[coo.row]
    out = sp.csr_matrix((data.astype(np.float32), (coo.row, coo.col)), shape=coo.shape)
    out.sort_indices()
    return out


def rows_and_columns_with_pairs(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The rows (users) and the columns (items) of ``matrix`` that hold a stored pair.

    What a factor model fits on (ALS, BPR): the id maps may also hold users and
    items without a training pair (a split's test-side ids, a catalogue's new
    items); fitting over them draws starting vectors (and, for BPR, negatives)
    for them, which moves every other vector and answer. They keep zero vectors.
    """
    matrix = sp.csr_matrix(matrix)
    rows = np.flatnonzero(np.diff(matrix.indptr))
    columns = np.flatnonzero(np.bincount(matrix.indices, minlength=matrix.shape[1]))
    return rows, columns


def merge_matrix(old: sp.csr_matrix, new: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    """``old`` grown to ``new``'s shape plus ``new`` (capped at 1 when ``binary``)."""
    merged = (pad_rows(old, *new.shape) + new).tocsr()
    if binary:
        merged.data[:] = 1.0
    merged.sort_indices()
    return merged


class FactorRetriever(Retriever):
    """A retriever whose state is ``user_factors_``, ``item_factors_`` and ``matrix_``.

    It also keeps the rating threshold of its training data
    (``rating_threshold_``), so that incremental updates judge new ratings on
    the same scale.
    """

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    #: Liked pairs as :func:`positive_matrix` weighs them (presence only where
    #: :meth:`_binary_matrix` says so), which fold-in rebuilds users from.
    matrix_: sp.csr_matrix
    rating_threshold_: float | None = None

    def _training_matrix(self, data: Interactions, *, fitting: bool) -> sp.csr_matrix:
        """:func:`positive_matrix` with the model's weighting; ``fitting`` sets the threshold."""
        if fitting:
            self.rating_threshold_ = rating_threshold(data)
        return positive_matrix(
            data,
            binary=self._binary_matrix(),
            count_epsilon=getattr(self.config, "count_epsilon", DEFAULT_COUNT_EPSILON),
            threshold=self.rating_threshold_,
        )

    def _binary_matrix(self) -> bool:
        """Whether the model reads presence only (values ignored)."""
        return False

    def _score(self, users: np.ndarray) -> np.ndarray:
        return factor_scores(self.user_factors_[users], self.item_factors_)

    def _absorb(self, new: Interactions) -> Interactions:
        """Put ``new`` on the model's (grown) id maps, factor tables, liked matrix and history.

        Users and items new to the model get :meth:`_new_user_rows` and zero
        item vectors until the next fit; their vectors are the caller's to learn.
        """
        self._check_fitted()
        assert self._seen is not None and self.users is not None and self.items is not None
        new = new.reindexed_onto(self.users, self.items)
        if new.n_users > len(self.user_factors_):
            grow = self._new_user_rows(new.n_users - len(self.user_factors_))
            self.user_factors_ = np.vstack([self.user_factors_, grow])
        if new.n_items > len(self.item_factors_):
            width = self.item_factors_.shape[1]
            grow = np.zeros((new.n_items - len(self.item_factors_), width), np.float32)
            self.item_factors_ = np.vstack([self.item_factors_, grow])
        self.matrix_ = merge_matrix(
            self.matrix_, self._training_matrix(new, fitting=False), binary=self._binary_matrix()
        )
        self._extend_history(new)
        self.users, self.items = new.users, new.items
        return new

    def _new_user_rows(self, n: int) -> np.ndarray:
        """Factor rows for ``n`` users new to the model: zeros."""
        return np.zeros((n, self.user_factors_.shape[1]), np.float32)

    def user_vectors(self) -> np.ndarray:
        return self.user_factors_

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            **csr_arrays("matrix", self.matrix_),
            "rating_threshold": np.asarray(
                [np.nan if self.rating_threshold_ is None else self.rating_threshold_]
            ),
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
        shape = (len(self.user_factors_), len(self.item_factors_))
        self.matrix_ = csr_from_arrays(state, "matrix", shape)
        threshold = state.get("rating_threshold")
        self.rating_threshold_ = (
            None if threshold is None or np.isnan(threshold[0]) else float(threshold[0])
        )
