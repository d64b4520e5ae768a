"""Candidate features: what a ranker sees of a (user, candidate) pair, computed in batches.

A retriever ranks from one signal; the ranker gets many, all computed with
sparse and dense array operations over every row of a batch at once (never a
Python loop per pair):

- from the retrievers (given by the pipeline): each one's score of the pair,
  that score over the user's best score from it, its rank (``depth + 1`` when
  it did not propose the candidate) and whether it proposed it;
- popularity: how many users had the candidate, overall and in the last 7 and
  30 days before the end of the training data, as a share of the most
  popular; the candidate's age when items have a creation time;
- what users had at all (a film rated 2 was still watched): the candidate's
  popularity over every interaction but dislikes; on rated data the
  candidate's mean rating, the user's, and the difference (0-1 scale);
- the user: how active (targets had), how recently (days since their last
  interaction), and how popular what they usually take is, against this
  candidate's popularity ("people like you");
- time together: how many took the candidate in the user's own weeks (the
  candidate's normalised week histogram summed over the weeks the user was
  active), which no retriever that ignores time can see (people take what is
  new and talked about while they are active). ``time_affinity`` was meant as
  the cosine of the two week histograms but has always read these same sums
  (see :meth:`CandidateFeatures.matrix`), and trained rankers learnt it so;
- on a feed: how like the user's history the candidate is (the largest and
  the mean cosine similarity to what they liked, to their 10 most recent
  likes and to their 3 latest), on the item-item cosine of who had each item;
  popularity over more windows (3, 14, 90 days, each a share of its window's
  most popular, and the last 30 days' share against all time: rising or
  fading); with item side data (``item_features``: genres, titles), the
  cosine of the candidate's genres with the genres of all the user's likes
  and of their 10 latest, the candidate's age in years from the year its
  title ends with (films), and that year against the mean year of what the
  user liked (people keep to their eras); when asked for (optional, see
  :data:`OPTIONAL_ITEM_FEATURES`), on rated data, how the user rated what is
  like the candidate (``rating_dev_sim``: their ratings less their mean,
  averaged over what they rated weighted by its similarity to the candidate:
  a film watched is not a film liked; NaN without ratings, and from features
  saved before it existed);
- on an account graph: common neighbours, Adamic-Adar, resource allocation
  and Jaccard through the accounts the user follows, the candidate's in- and
  out-degrees, whether the candidate already follows the user, and the
  accounts both follow and the followers both have; the same neighbourhood
  scores through neighbours either way (who messaged whom, on a directed
  message graph, is a tie both ways), the two-step paths from the candidate
  back to the user, the user's own in- and out-degrees, and personalised
  PageRank of the candidate from the user, walking along follows and either
  way (exact power iteration over the batch's users at once, on graphs up to
  :data:`PPR_MAX_NODES` accounts; missing above; when the question runs a
  PPR retriever walking either way, the either-way values are its own
  scores of the pool, see :meth:`CandidateFeatures.matrix`). These are the signals of
  the neighbourhood and walk retrievers, so the ranker has them for every
  candidate whichever retrievers the question runs. With timestamps (a
  message graph), the ties' time too: days since the candidate's latest tie
  to the user (a message waiting for an answer is answered soon or never),
  days since the candidate's latest action of any kind, and how many of its
  ties were last active in the final 30 days (a share of the most): who is
  active now; missing without times.

Times are measured from the end of the training data, so a ranker trained on
a label slice and one serving later read them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recgraph.data.interactions import DAY, Interactions, Kind, ValueKind
from recgraph.data.item_features import ItemFeatures
from recgraph.data.sorted_keys import find_sorted
from recgraph.data.sparse_rows import (
    binary,
    divided,
    l2_rows,
    one_user,
    pair_sums_rows,
    row_sums,
)
from recgraph.ranking.base import feature_matrix
from recgraph.ranking.item_history import (
    HistoryProducts,
    ascending,
    dense_reductions,
    item_neighbours,
    rating_deviations,
    small_dense,
)
from recgraph.ranking.pagerank import ppr_pairs, transition

#: The most recent likes of a user that the ``recent_*`` features compare with.
RECENT_LIKES = 10

ITEM_FEATURES = (
    "hist_sim_max",
    "hist_sim_mean",
    "recent_sim_max",
    "recent_sim_mean",
    "last_sim_max",
    "last_sim_mean",
    "cand_pop_3d",
    "cand_pop_14d",
    "cand_pop_90d",
    "cand_pop_trend",
    "genre_sim",
    "recent_genre_sim",
    "cand_year_age",
    "cand_year_vs_user",
)
#: Feed features computed only when asked for (``optional`` of :func:`feature_names` and
#: :meth:`CandidateFeatures.matrix`), on by no default. ``rating_dev_sim`` lifted the
#: forced ranker by 2.5% of EASE's validation nDCG@20 on all three MovieLens 100k random
#: draws, did nothing on latest-small random and cost 9% on MovieLens 100k global-temporal
#: (four ranker seeds, none better; benchmarks/ranker_features.py, validation carved from
#: train): for a rated catalogue judged on random holdouts, not for recency.
OPTIONAL_ITEM_FEATURES = ("rating_dev_sim",)
#: The latest likes of a user that the ``last_*`` features compare with.
LAST_LIKES = 3
#: Windows (days) of the feed's ``cand_pop_{n}d`` features, each a share of its window's most popular.
ITEM_WINDOWS = (3, 14, 90)
ACCOUNT_FEATURES = (
    "common_neighbors",
    "adamic_adar",
    "resource_allocation",
    "jaccard",
    "cand_in_degree",
    "cand_out_degree",
    "follows_back",
    "co_following",
    "shared_followers",
    "cn_undirected",
    "aa_undirected",
    "ra_undirected",
    "cand_reaches_user",
    "user_in_degree",
    "user_out_degree",
    "ppr_out",
    "ppr_undirected",
    "ppr_undirected_vs_best",
    "tie_back_days",
    "cand_recency_days",
    "cand_out_30d",
)
#: Largest graph (accounts) the ``ppr_*`` features are computed on (NaN above).
PPR_MAX_NODES = 200_000
#: Width of the time buckets of the ``time_*`` features.
WEEK = 7 * DAY

COMMON_FEATURES = (
    "time_affinity",
    "cand_pop_in_user_weeks",
    "cand_pop",
    "cand_pop_7d",
    "cand_pop_30d",
    "cand_age_days",
    "user_activity",
    "user_recency_days",
    "user_mean_pop",
    "cand_pop_vs_user",
    "cand_had_pop",
    "cand_mean_rating",
    "user_mean_rating",
    "cand_rating_vs_user",
)
#: Per retriever: raw scores are left out on purpose. The ranker learns on
#: retrievers fitted on part of the training data and serves with ones fitted
#: on all of it, whose raw scores run larger; a score over the user's best,
#: and ranks, read the same in both.
RETRIEVER_PARTS = ("score_norm", "rank", "proposed")


@dataclass(frozen=True)
class RetrieverColumns:
    """One retriever's view of each row: its score, its rank (0: not proposed) and its best score."""

    scores: np.ndarray
    ranks: np.ndarray
    user_best: np.ndarray


def feature_names(
    graph_kind: str, retriever_keys: list[str], optional: Sequence[str] = ()
) -> tuple[str, ...]:
    """Column names in order, for a question's graph and its retrievers, with the
    :data:`OPTIONAL_ITEM_FEATURES` asked for in ``optional`` last (in that order)."""
    specific = ITEM_FEATURES if graph_kind == "items" else ACCOUNT_FEATURES
    unknown = set(optional) - set(OPTIONAL_ITEM_FEATURES if graph_kind == "items" else ())
    if unknown:
        raise ValueError(f"no optional {graph_kind} feature {', '.join(sorted(unknown))}")
    per_retriever = tuple(f"{key}:{part}" for key in retriever_keys for part in RETRIEVER_PARTS)
    extra = tuple(name for name in OPTIONAL_ITEM_FEATURES if name in optional)
    return per_retriever + COMMON_FEATURES + specific + extra


def _week_histograms(data: Interactions) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """L2-normalised ``users x weeks`` and ``targets x weeks`` counts (empty without times)."""
    if data.timestamp is None or not len(data):
        return (
            sp.csr_matrix((data.n_users, 1), dtype=np.float32),
            sp.csr_matrix((data.n_items, 1), dtype=np.float32),
        )
    positive = data.kind != Kind.DISLIKE
    week = ((data.timestamp - data.timestamp.min()) // WEEK).astype(np.int64)[positive]
    n_weeks = int(week.max()) + 1 if len(week) else 1
    out = []
    for rows, n in ((data.src[positive], data.n_users), (data.dst[positive], data.n_items)):
        counts = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, week)), shape=(n, n_weeks))
        counts.sum_duplicates()
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        out.append(sp.csr_matrix(sp.diags(1.0 / norms) @ counts, dtype=np.float32))
    return out[0], out[1]


class CandidateFeatures:
    """The feature context of one training graph (see the module docstring).

    Parameters
    ----------
    data
        The graph the retrievers were trained on.
    item_created_at
        Per target, when it was posted (unix seconds, NaN unknown), or ``None``.
    """

    #: What :meth:`save` keeps: arrays, and sparse matrices by name.
    _ARRAYS = (
        "pop",
        "pop_7d",
        "pop_30d",
        "age_days",
        "activity",
        "recency_days",
        "user_mean_pop",
        "in_degree",
        "out_degree",
        "aa_weight",
        "ra_weight",
        "had_pop",
        "mean_rating",
        "user_rating",
        "aa_weight_undirected",
        "ra_weight_undirected",
        "out_30d",
    )
    _MATRICES = (
        "liked",
        "recent",
        "neighbours",
        "out",
        "inn",
        "either",
        "tie_days",
        "user_weeks",
        "item_weeks",
    )
    _ITEM_MATRICES = (
        "last",
        "item_genres",
        "user_genres",
        "recent_genres",
        "rating_dev",
    )
    _ITEM_ARRAYS = ("pop_windows", "pop_trend", "year", "user_year", "end_year")

    def __init__(
        self,
        data: Interactions,
        item_created_at: np.ndarray | None = None,
        item_features: ItemFeatures | None = None,
    ) -> None:
        self.graph_kind = data.graph_kind
        liked = data.subset(data.liked())
        self.end = float(data.timestamp.max()) if data.timestamp is not None and len(data) else 0.0
        self.liked = binary(liked.csr("binary"))
        n_targets = data.n_items
        popularity = np.diff(sp.csc_matrix(self.liked).indptr).astype(np.float64)
        top = max(popularity.max(initial=0.0), 1.0)
        self.pop = popularity / top
        self.pop_7d = self._recent_popularity(liked, 7) / top
        self.pop_30d = self._recent_popularity(liked, 30) / top
        self._ratings(data)
        self.age_days = np.full(n_targets, np.nan)
        if item_created_at is not None and self.end:
            self.age_days = (self.end - np.asarray(item_created_at, np.float64)) / DAY
        counts = np.diff(self.liked.indptr).astype(np.float64)
        # as a share of users at or below: more data makes every count larger, not this
        self.activity = np.searchsorted(np.sort(counts), counts, side="right") / max(len(counts), 1)
        self.recency_days = np.full(data.n_users, np.nan)
        if data.timestamp is not None and len(data):
            last = np.full(data.n_users, -np.inf)
            np.maximum.at(last, data.src, data.timestamp.astype(np.float64))
            seen = np.isfinite(last)
            self.recency_days[seen] = (self.end - last[seen]) / DAY
        with np.errstate(invalid="ignore", divide="ignore"):
            self.user_mean_pop = np.asarray(self.liked @ self.pop).ravel() / counts
        self.user_weeks, self.item_weeks = _week_histograms(data)
        if self.graph_kind == "items":
            self.recent = self._recent_likes(liked)
            self.neighbours = item_neighbours(self.liked)
            self._item_side(data, liked, item_features)
        else:
            self.out = binary(data.positives().csr("binary"))
            self.out.setdiag(0)
            self.out.eliminate_zeros()
            self.inn = self.out.T.tocsr()
            self.in_degree = np.diff(self.inn.indptr).astype(np.float64)
            self.out_degree = np.diff(self.out.indptr).astype(np.float64)
            degree = self.in_degree + self.out_degree
            with np.errstate(divide="ignore"):
                self.aa_weight = np.where(degree > 1, 1.0 / np.log(np.maximum(degree, 2)), 0.0)
                self.ra_weight = np.where(degree > 0, 1.0 / np.maximum(degree, 1), 0.0)
            self._undirected()
            self._tie_times(data)
        self._canonical()

    def _canonical(self) -> None:
        """Every matrix in canonical form (rows sorted, no repeated entry), as a product
        of sparse matrices or a sum of rows leaves it unsorted: a request's pair sums are
        then read from the user's row (:func:`row_products`) rather than by scipy's
        products of the candidates' rows (the genre and week sums of a MovieLens
        request: 0.6 CPU ms), and equal the batch's, which scipy computes over the same
        sorted entries, bit for bit. A sparse matrix holds the sum of its repeated
        entries, so summing them changes no value."""
        for name in self._MATRICES + self._ITEM_MATRICES:
            matrix = getattr(self, name, None)
            if matrix is not None and not matrix.has_canonical_format:
                matrix = matrix.copy()
                matrix.sum_duplicates()
                setattr(self, name, matrix)

    def _tie_times(self, data: Interactions) -> None:
        """Days from each tie's latest time to the end (``+1``, so a tie today is stored), and
        how many of each account's ties were last active in the 30 days before it (both ends
        of a friendship; self-ties left out, as ``out`` leaves them); empty and NaN without
        timestamps."""
        n = data.n_users
        self.tie_days = sp.csr_matrix((n, n), dtype=np.float64)
        self.out_30d = np.full(n, np.nan)
        positive = data.positives()
        if positive.timestamp is None or not len(positive):
            return
        src, dst, stamp = positive.src, positive.dst, positive.timestamp
        if positive.one_sided and not positive.directed:  # a friendship ties both ways
            src, dst, stamp = np.r_[src, dst], np.r_[dst, src], np.r_[stamp, stamp]
        own = src != dst  # self-ties are not edges of the graph the other features read
        src, dst, stamp = src[own], dst[own], stamp[own]
        keys = src.astype(np.int64) * n + dst
        order = np.lexsort((stamp, keys))
        keys, times = keys[order], stamp[order].astype(np.float64)
        last = np.r_[keys[1:] != keys[:-1], True]
        keys, days = keys[last], (self.end - times[last]) / DAY + 1.0
        self.tie_days = sp.csr_matrix((days, (keys // n, keys % n)), shape=(n, n))
        started = np.bincount(keys[days <= 31.0] // n, minlength=n).astype(np.float64)
        self.out_30d = started / max(started.max(initial=0.0), 1.0)

    def _undirected(self) -> None:
        """Neighbours either way, and the weights of a middle node by that degree."""
        self.either = binary(self.out + self.inn)
        degree = np.diff(self.either.indptr).astype(np.float64)
        with np.errstate(divide="ignore"):
            self.aa_weight_undirected = np.where(
                degree > 1, 1.0 / np.log(np.maximum(degree, 2)), 0.0
            )
            self.ra_weight_undirected = np.where(degree > 0, 1.0 / np.maximum(degree, 1), 0.0)

    def _walks(self) -> tuple[sp.csr_matrix, sp.csr_matrix] | None:
        """The ``ppr_*`` features' walk matrices (along follows, either way), built once."""
        if self.out.shape[0] > PPR_MAX_NODES:
            return None
        return self.derived("walks")

    def derived(self, name: str):
        """What follows from the saved arrays and every request reads, built on first use.

        ``walks`` and ``steps`` (the ``ppr_*`` walk matrices and their
        transposes), ``user_weeks_binary``, ``top_week`` (the largest entry
        of ``item_weeks``, at least 1), ``liked_by_item`` and
        ``neighbours_by_item`` (``liked`` and ``neighbours`` transposed),
        ``neighbours_dense``, ``item_genres_dense`` and ``item_weeks_dense`` (those matrices
        as arrays when small, else ``None``: :meth:`_pair_sums`),
        ``rated`` (where ``rating_dev`` has an entry, as ones),
        ``symmetric`` (whether ``out``, ``inn`` and ``either`` hold the same
        entries, as on a friendship graph).
        Not saved; concurrent first uses build the same value.
        """
        cache = self.__dict__.setdefault("_derived", {})
        if name not in cache:
            if name == "walks":
                either = transition(self.either)
                # on a friendship graph (or one where every follow is mutual) one walk is both
                along = either if self.either.nnz == self.out.nnz else transition(self.out)
                value = (along, either)
            elif name == "steps":
                along, either = self.derived("walks")
                step = either.T.tocsr()
                value = (step if along is either else along.T.tocsr(), step)
            elif name == "user_weeks_binary":
                value = binary(self.user_weeks.copy())  # binary works in place
            elif name == "top_week":
                value = max(float(self.item_weeks.max()) if self.item_weeks.nnz else 0.0, 1.0)
            elif name == "liked_by_item":
                value = self.liked.T.tocsr()
            elif name == "neighbours_by_item":
                value = self.neighbours.T.tocsr()
            elif name == "rated":  # rating_dev's entries, zero deviations too, as ones
                dev = self.rating_dev
                value = sp.csr_matrix(
                    (np.ones_like(dev.data), dev.indices, dev.indptr), shape=dev.shape
                )
            elif name.endswith("_dense"):  # neighbours, item_genres, item_weeks
                value = small_dense(getattr(self, name.removesuffix("_dense")))
            elif name == "symmetric":
                value = all(
                    other.shape == self.out.shape
                    and other.has_canonical_format
                    and self.out.has_canonical_format
                    and all(
                        np.array_equal(getattr(self.out, a), getattr(other, a))
                        for a in ("indptr", "indices", "data")
                    )
                    for other in (self.inn, self.either)
                )
            else:
                raise KeyError(name)
            cache[name] = value
        return cache[name]

    def save(self, path) -> None:
        """Every array and matrix as npz (no pickle)."""
        from recgraph.files import atomic_write, csr_arrays

        arrays: dict[str, np.ndarray] = {
            "graph_kind": np.asarray(self.graph_kind),
            "end": np.asarray(self.end),
        }
        for name in self._ARRAYS + self._ITEM_ARRAYS:
            if hasattr(self, name):
                arrays[name] = getattr(self, name)
        for name in self._MATRICES + self._ITEM_MATRICES:
            if hasattr(self, name):
                matrix = getattr(self, name)
                arrays.update(csr_arrays(name, matrix))
                arrays[f"{name}.shape"] = np.asarray(matrix.shape)
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path) -> CandidateFeatures:
        from recgraph.files import csr_from_arrays

        out = cls.__new__(cls)
        with np.load(path, allow_pickle=False) as data:
            out.graph_kind = str(data["graph_kind"])
            out.end = float(data["end"])
            for name in cls._ARRAYS + cls._ITEM_ARRAYS:
                if name in data:
                    setattr(out, name, data[name])
            for name in cls._MATRICES + cls._ITEM_MATRICES:
                if f"{name}.indptr" in data:
                    shape = tuple(int(x) for x in data[f"{name}.shape"])
                    setattr(out, name, csr_from_arrays(data, name, shape))
        if out.graph_kind != "items" and not hasattr(out, "either"):
            out._undirected()  # saved before the undirected features existed
        out._canonical()  # saved before matrices were kept canonical
        return out

    def _ratings(self, data: Interactions) -> None:
        """Popularity of what users had at all (not only liked), and mean ratings, on a 0-1 scale."""
        had = data.subset(data.kind != Kind.DISLIKE)
        had_matrix = binary(had.csr("binary")) if len(had) else None
        counts = (
            np.diff(sp.csc_matrix(had_matrix).indptr).astype(np.float64)
            if had_matrix is not None
            else np.zeros(data.n_items)
        )
        self.had_pop = counts / max(counts.max(initial=0.0), 1.0)
        self.mean_rating = np.full(data.n_items, np.nan)
        self.user_rating = np.full(data.n_users, np.nan)
        kinds = data.value_kind
        rated = (
            np.zeros(len(data), bool)
            if kinds is None
            else (kinds == ValueKind.RATING) & (data.kind != Kind.DISLIKE)
        )
        if rated.any():
            value = data.value[rated].astype(np.float64)
            scale = max(float(value.max()), 1e-9)
            for out, index, n in (
                (self.mean_rating, data.dst[rated], data.n_items),
                (self.user_rating, data.src[rated], data.n_users),
            ):
                total = np.bincount(index, weights=value / scale, minlength=n)
                count = np.bincount(index, minlength=n)
                has = count > 0
                out[has] = total[has] / count[has]

    def _recent_popularity(self, liked: Interactions, days: float) -> np.ndarray:
        if liked.timestamp is None or not len(liked):
            return np.zeros(liked.n_items, dtype=np.float64)
        window = liked.timestamp >= self.end - days * DAY
        return np.bincount(liked.dst[window], minlength=liked.n_items).astype(np.float64)

    def _item_side(
        self, data: Interactions, liked: Interactions, item_features: ItemFeatures | None
    ) -> None:
        """The feed's extra context: more popularity windows, genres and years (see the module)."""
        windows = []
        for days in ITEM_WINDOWS:
            counts = self._recent_popularity(liked, days)
            windows.append(counts / max(counts.max(initial=0.0), 1.0))
        self.pop_windows = np.stack(windows, axis=1) if windows else np.zeros((data.n_items, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.pop_trend = np.where(self.pop > 0, self.pop_30d / self.pop, np.nan)
        self.last = self._recent_likes(liked, LAST_LIKES)
        n_items = data.n_items
        self.year = np.full(n_items, np.nan)
        genres = sp.csr_matrix((n_items, 0), dtype=np.float32)
        if item_features is not None and len(item_features):
            described = item_features.aligned(data.items)
            self.year = described.years()
            genres = l2_rows(described.genre_matrix())
        self.item_genres = genres
        self.user_genres = l2_rows(self.liked @ genres)
        self.recent_genres = l2_rows(self.recent @ genres)
        self.rating_dev = rating_deviations(data, self.user_rating, self.liked.shape)
        known = sp.csr_matrix(self.liked.multiply(np.isfinite(self.year)[None, :]))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.user_year = np.asarray(known @ np.nan_to_num(self.year)).ravel() / np.diff(
                known.indptr
            )
        years_known = self.year[np.isfinite(self.year)]
        self.end_year = np.asarray(
            1970.0 + self.end / (365.25 * DAY)
            if self.end
            else (years_known.max() if len(years_known) else np.nan)
        )

    def _recent_likes(self, liked: Interactions, count: int = RECENT_LIKES) -> sp.csr_matrix:
        """Each user's ``count`` latest likes (all of them without timestamps)."""
        if liked.timestamp is None or not len(liked):
            return self.liked
        order = np.lexsort((-liked.timestamp, liked.src))
        src, dst = liked.src[order], liked.dst[order]
        starts = np.searchsorted(src, src, side="left")
        keep = (np.arange(len(src)) - starts) < count
        return binary(
            sp.csr_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=self.liked.shape)
        )

    # ------------------------------------------------------------------ rows
    def matrix(
        self,
        users: np.ndarray,
        items: np.ndarray,
        retrievers: Mapping[str, RetrieverColumns],
        depth: int,
        ppr: RetrieverColumns | None = None,
        optional: Sequence[str] = (),
    ) -> np.ndarray:
        """``(len(users), n_features)`` float32 in :func:`feature_names` order (with
        ``optional``'s features, as there).

        ``ppr``: on an account graph, a PPR retriever's view of the rows (walking
        either way from the user, restart :data:`~recgraph.ranking.pagerank.PPR_RESTART`),
        when the question runs one: ``ppr_undirected`` is then its score of the pair and
        ``ppr_undirected_vs_best`` that over its best for the user (its best
        candidate, ties and the user excluded), as the retriever computed them
        for its own list, instead of :data:`~recgraph.ranking.pagerank.PPR_ITERATIONS`
        steps of exact power iteration over the whole graph (the largest part of a
        ranked request's cost; see :meth:`_ppr`).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        columns: list[np.ndarray] = []
        for view in retrievers.values():
            scores = np.asarray(view.scores, dtype=np.float64)
            scale = np.abs(np.asarray(view.user_best, dtype=np.float64))
            norm = divided(scores, scale, np.nan)
            proposed = view.ranks > 0
            columns += [norm, np.where(proposed, view.ranks, depth + 1), proposed]
        (in_user_weeks,) = self._pair_sums(
            [self.derived("user_weeks_binary")], users, "item_weeks", items
        )
        # ``time_affinity`` has always read these same sums: the ranker was trained on code
        # that set the user's week rows to ones in place (``binary`` on a slice sharing its
        # arrays) before summing them against the candidate's weeks. Kept so, bit for bit.
        time_affinity = in_user_weeks
        pop = self.pop[items]
        columns += [
            time_affinity,
            in_user_weeks / self.derived("top_week"),
            pop,
            self.pop_7d[items],
            self.pop_30d[items],
            self.age_days[items],
            self.activity[users],
            self.recency_days[users],
            self.user_mean_pop[users],
            pop - self.user_mean_pop[users],
            self.had_pop[items],
            self.mean_rating[items],
            self.user_rating[users],
            self.mean_rating[items] - self.user_rating[users],
        ]
        columns += (
            self._items(users, items, "rating_dev_sim" in optional)
            if self.graph_kind == "items"
            else self._accounts(users, items, ppr)
        )
        return feature_matrix(columns)

    def _items(self, users: np.ndarray, items: np.ndarray, deviation: bool) -> list[np.ndarray]:
        deviations = getattr(self, "rating_dev", None)  # None: saved before it existed
        rated = deviation and deviations is not None and deviations.nnz > 0
        histories = [self.liked, self.recent, self.last]
        products = HistoryProducts(
            users,
            items,
            self.neighbours,
            self.derived("neighbours_dense"),
            self.derived("neighbours_by_item"),
            histories + ([deviations, self.derived("rated")] if rated else []),
        )
        out = []
        for history, (largest, total) in zip(histories, products.reduced(histories), strict=True):
            size = products.sizes(history)
            out += [largest, total / size]
        out += [self.pop_windows[items, j] for j in range(self.pop_windows.shape[1])]
        out.append(self.pop_trend[items])
        out += self._pair_sums(
            [self.user_genres, self.recent_genres], users, "item_genres", items, user_left=False
        )
        year = self.year[items]
        out += [self.end_year - year, year - self.user_year[users]]
        return out + ([self._rating_deviation(users, products, rated)] if deviation else [])

    def _pair_sums(
        self, sides: list[sp.csr_matrix], users: np.ndarray, name: str, items: np.ndarray, **how
    ) -> list[np.ndarray]:
        """:func:`pair_sums_rows` of each of ``sides`` (user side) and the item-side matrix
        ``name``; a request against a small one (genres, weeks) read from its dense rows at the
        user's columns, all ``sides`` in one pass (:func:`~.item_history.dense_reductions`:
        the same products and sums, so the same bits)."""
        user = one_user(users)
        dense = None if user is None else self.derived(f"{name}_dense")
        if dense is not None:
            rows = []
            for user_side in sides:
                lo, hi = user_side.indptr[user], user_side.indptr[user + 1]
                cols = user_side.indices[lo:hi]
                if not (user_side.has_canonical_format or ascending(cols)):
                    break
                rows.append((user_side.data[lo:hi], cols))
            else:
                reduced = dense_reductions(rows, dense, items)
                return [total.astype(np.float64) for _, total in reduced]
        item_side = getattr(self, name)
        return [pair_sums_rows(side, users, item_side, items, **how)[0] for side in sides]

    def _rating_deviation(self, users: np.ndarray, products, rated: bool) -> np.ndarray:
        """``rating_dev_sim``: the user's ratings less their mean, averaged over what they rated
        weighted by its similarity to the candidate (how the user rated films like it: a
        film watched is not a film liked, and the ranker learns what is liked).

        NaN without ratings, where nothing rated is similar, and for features saved before it
        existed (rankers saved then do not read it).
        """
        if not rated:
            return np.full(len(users), np.nan)
        indptr, data = products(self.rating_dev)
        total = row_sums(indptr, data).astype(np.float64)
        indptr, data = products(self.derived("rated"))
        weight = row_sums(indptr, data).astype(np.float64)
        return divided(total, weight, np.nan)

    def _accounts(
        self, users: np.ndarray, items: np.ndarray, ppr: RetrieverColumns | None = None
    ) -> list[np.ndarray]:
        # a matrix's transpose is the other matrix, except either way's, which is itself
        out, inn, either = self.out, self.inn, self.either
        symmetric = self.derived("symmetric")
        if symmetric:
            inn = either = out  # a friendship graph: one matrix, its products read once
        products: dict = {}  # a request's products by operands, shared by the calls below
        common, adamic_adar, resource = pair_sums_rows(
            out,
            users,
            inn,
            items,
            (None, self.aa_weight, self.ra_weight),
            transposed=out,
            products=products,
        )
        union = self.out_degree[users] + self.in_degree[items] - common
        jaccard = divided(common, union, 0.0)
        follows_back = self.follows_back(users, items)
        weights = (None, self.aa_weight_undirected, self.ra_weight_undirected)
        if symmetric and one_user(users) is not None:
            # a request on a friendship graph: the five plain counts below are sums of the
            # one product the request read (``products``), by the same function: ``common``
            either_sums = [
                common,
                *pair_sums_rows(
                    either, users, either, items, weights[1:], transposed=either, products=products
                ),
            ]
            co_following = shared_followers = reaches = common
        else:
            either_sums = pair_sums_rows(
                either, users, either, items, weights, transposed=either, products=products
            )
            (co_following,) = pair_sums_rows(
                out, users, out, items, transposed=inn, products=products
            )
            (shared_followers,) = pair_sums_rows(
                inn, users, inn, items, transposed=out, products=products
            )
            (reaches,) = pair_sums_rows(
                inn, users, out, items, transposed=inn, user_left=False, products=products
            )
        ppr_out, ppr_either, ppr_vs_best = self._ppr(users, items, ppr)
        return [
            common,
            adamic_adar,
            resource,
            jaccard,
            self.in_degree[items],
            self.out_degree[items],
            follows_back,
            co_following,
            shared_followers,
            *either_sums,
            reaches,
            self.in_degree[users],
            self.out_degree[users],
            ppr_out,
            ppr_either,
            ppr_vs_best,
            *self._tie_columns(users, items),
        ]

    def follows_back(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each candidate follows its user: ``out[items, users]`` as float64.

        For a request (one user), read in the user's row of ``inn`` (the
        transpose of ``out``, the same stored values).
        """
        user = one_user(users)
        if user is None or not self.out.has_canonical_format:
            return np.asarray(self.out[items, users]).ravel().astype(np.float64)
        lo, hi = self.inn.indptr[user], self.inn.indptr[user + 1]
        followers, values = self.inn.indices[lo:hi], self.inn.data[lo:hi]
        out = np.zeros(len(items), dtype=np.float64)
        at, hit = find_sorted(followers, items)
        out[hit] = values[at[hit]]
        return out

    def _tie_columns(self, users: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
        """``tie_back_days``, ``cand_recency_days``, ``cand_out_30d`` (NaN without times)."""
        tie_days = getattr(self, "tie_days", None)
        if tie_days is None or not tie_days.nnz:
            missing = np.full(len(users), np.nan)
            return [missing, missing, missing]
        back = np.asarray(tie_days[items, users]).ravel() - 1.0
        return [np.where(back >= 0, back, np.nan), self.recency_days[items], self.out_30d[items]]

    def _ppr(
        self, users: np.ndarray, items: np.ndarray, given: RetrieverColumns | None = None
    ) -> tuple[np.ndarray, ...]:
        """PPR of each pair along follows and either way, and the latter over the user's best.

        The best is over accounts the user is not yet tied to, so it reads the
        same for a user with many ties as for one with few. ``given``: the
        either-way walk's scores and best from a PPR retriever (see
        :meth:`matrix`); on a friendship graph the walk along follows is the
        same walk, so no power iteration runs at all, on any graph size.
        """
        if given is not None and len(users):
            ppr_either = np.asarray(given.scores, dtype=np.float64)
            best = np.asarray(given.user_best, dtype=np.float64)
            if self.either.nnz == self.out.nnz:  # every tie mutual (friendships): one walk
                ppr_out = ppr_either
            elif (walks := self._walks()) is None:
                ppr_out = np.full(len(users), np.nan)
            else:
                ppr_out = ppr_pairs(walks[0], users, items, step=self.derived("steps")[0])[0]
        else:
            walks = self._walks()
            if walks is None or not len(users):
                missing = np.full(len(users), np.nan)
                return missing, missing, missing
            along, either = walks
            step_along, step_either = self.derived("steps")
            ppr_either, best = ppr_pairs(either, users, items, tied=self.either, step=step_either)
            if along is either:  # friendships: one walk
                ppr_out = ppr_either
            else:
                ppr_out = ppr_pairs(along, users, items, step=step_along)[0]
        vs_best = divided(ppr_either, best, 0.0)
        return ppr_out, ppr_either, vs_best
