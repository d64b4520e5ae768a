"""Train/test splits that cannot leak: seeded, deterministic, sharing id maps.

Every split returns ``(train, test)`` as row subsets of the input, so both
keep the input's id maps and an index means the same node in each. The
evaluation harness (:func:`recgraph.evaluation.evaluate`) then drops test rows
that the training data cannot support (users or targets never seen in train,
pairs already in train) and reports how many.

Which split for which data:

- ``random_per_user``: ratings or likes without a meaningful clock (the LensKit
  default for MovieLens);
- ``temporal_global`` / ``leave_last_n``: data with timestamps, to predict the
  future from the past;
- ``edge_holdout``: a static graph (friendships, follows) where the task is to
  recover hidden edges;
- ``temporal_pairs``: a temporal multigraph (messages, as CollegeMsg) where
  the task is to predict which *new* pairs appear.

Tuning carves its validation set from train only with :func:`validation_split`,
so the test set is never looked at before the final evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.errors import InputError

Split = tuple[Interactions, Interactions]


# ---------------------------------------------------------------------- helpers
def _check_fraction(test_fraction: float) -> float:
    fraction = float(test_fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    return fraction


def _require_timestamps(data: Interactions, method: str) -> np.ndarray:
    if data.timestamp is None:
        raise InputError(
            f"the {method} split orders rows by time, but the data has no timestamps; "
            "use random_per_user or edge_holdout instead",
            field="timestamp",
        )
    return data.timestamp


def _round_half_up(values: np.ndarray) -> np.ndarray:
    """Conventional rounding (2.5 -> 3), unlike numpy's round-half-to-even."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def _pair_groups(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """``(pair_of_row, first_row_of_pair)``: rows grouped by their (src, dst) pair.

    Splitting whole pairs, not rows, keeps repeated interactions of one pair
    on the same side, so a pair can never be both trained on and tested.
    """
    _, first_row, pair_of_row = np.unique(data.pair_keys(), return_index=True, return_inverse=True)
    return pair_of_row.ravel(), first_row


def _rank_within_groups(groups: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Position of each element within its group, following ``order`` (sorted by group)."""
    ranks = np.empty(len(groups), dtype=np.int64)
    if not len(groups):
        return ranks
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1]
    run_lengths = np.diff(np.r_[starts, len(groups)])
    ranks[order] = np.arange(len(groups)) - np.repeat(starts, run_lengths)
    return ranks


def _split_rows(data: Interactions, test_rows: np.ndarray) -> Split:
    return data.subset(~test_rows), data.subset(test_rows)


def holds_out_by_time(timestamps: np.ndarray, test_fraction: float) -> bool:
    """Whether one cut in time (as :func:`temporal_global` makes it) puts any row in test.

    It does not when at least ``1 - f`` of the rows share the latest time
    (rows imported with one stamp, say): every row at the cut trains.
    """
    timestamps = np.asarray(timestamps)
    return bool(len(timestamps)) and bool((timestamps > _time_cut(timestamps, test_fraction)).any())


def _time_cut(timestamps: np.ndarray, test_fraction: float) -> int:
    """The latest timestamp that goes to train: the (1 - f) quantile, ties all to train.

    Rows at the cut all train, so the test share can fall below ``f`` when
    many rows share the cut time; it never exceeds it.
    """
    ordered = np.sort(timestamps)
    n_train = int(np.ceil(len(ordered) * (1.0 - test_fraction)))
    return int(ordered[max(n_train, 1) - 1])


# ---------------------------------------------------------------------- splits
def random_per_user(data: Interactions, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out a random fraction of each user's pairs.

    Parameters
    ----------
    data
        Any interactions; a "user" is the source of a row.
    test_fraction
        Share of each user's distinct targets that go to test, rounded half
        up, but every user keeps at least one in train (a user with one
        target has none in test).
    seed
        Seed of the random generator: the same seed gives the same split.

    Returns
    -------
    train, test
        Row subsets of ``data`` with its id maps. All rows of one pair go to
        the same side. Dislikes are held out like any row (the evaluation
        does not count them as targets).
    """
    fraction = _check_fraction(test_fraction)
    if not len(data):
        return data, data
    pair_of_row, first_row = _pair_groups(data)
    pair_user = data.src[first_row]
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(first_row)), pair_user))
    rank = _rank_within_groups(pair_user, order)
    pairs_per_user = np.bincount(pair_user, minlength=data.n_users)
    n_test = np.minimum(_round_half_up(pairs_per_user * fraction), pairs_per_user - 1)
    test_pair = rank < n_test[pair_user]
    return _split_rows(data, test_pair[pair_of_row])


def temporal_global(data: Interactions, test_fraction: float = 0.2) -> Split:
    """One global cut in time: rows at or before it train, rows after it test.

    The cut is the timestamp at the ``1 - test_fraction`` quantile of the
    rows, so every test row is strictly later than every train row. Needs
    timestamps (:class:`~recgraph.errors.InputError` otherwise).
    """
    fraction = _check_fraction(test_fraction)
    timestamps = _require_timestamps(data, "temporal_global")
    if not len(data):
        return data, data
    cut = _time_cut(timestamps, fraction)
    return _split_rows(data, timestamps > cut)


def leave_last_n(data: Interactions, n: int = 1) -> Split:
    """Hold out each user's ``n`` latest rows (ties broken by row order).

    Every user keeps at least one row in train, so a user with ``n`` rows or
    fewer has ``rows - 1`` in test. Needs timestamps.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    timestamps = _require_timestamps(data, "leave_last_n")
    if not len(data):
        return data, data
    rows = np.arange(len(data))
    # latest first within each user; among equal times the later row is "later"
    order = np.lexsort((-rows, -timestamps, data.src))
    rank = _rank_within_groups(data.src, order)
    per_user = data.user_counts()
    n_test = np.minimum(n, per_user - 1)
    return _split_rows(data, rank < n_test[data.src])


def temporal_per_user(data: Interactions, test_fraction: float = 0.2) -> Split:
    """Hold out the latest ``test_fraction`` of each user's pairs (by first time seen).

    What a user did last, for every user: the label slice a stage-2 ranker
    learns from. Every user keeps at least one pair in train; all rows of a
    pair go to the same side. Needs timestamps.
    """
    fraction = _check_fraction(test_fraction)
    timestamps = _require_timestamps(data, "temporal_per_user")
    if not len(data):
        return data, data
    pair_of_row, first_row = _pair_groups(data)
    pair_user = data.src[first_row]
    first_time = np.full(len(first_row), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_time, pair_of_row, timestamps)
    # latest first within each user; ties by pair order, later pair first
    order = np.lexsort((-np.arange(len(first_row)), -first_time, pair_user))
    rank = _rank_within_groups(pair_user, order)
    pairs_per_user = np.bincount(pair_user, minlength=data.n_users)
    n_test = np.minimum(_round_half_up(pairs_per_user * fraction), pairs_per_user - 1)
    return _split_rows(data, (rank < n_test[pair_user])[pair_of_row])


def edge_holdout(graph: Interactions, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """Hold out random edges, never leaving a node without a train edge.

    Pairs are visited in a seeded random order and one goes to test only if
    both its ends keep at least one other train edge (in or out; for
    friendships, either end). Test therefore holds ``round(f * pairs)``
    pairs unless the graph is too sparse to spare that many, then fewer.
    Self-loops always stay in train and do not count as a node's edges.

    Meant for one-sided graphs (follows, friendships); on a users x items
    graph the same rule holds for users and items separately.
    """
    fraction = _check_fraction(test_fraction)
    if not len(graph):
        return graph, graph
    pair_of_row, first_row = _pair_groups(graph)
    src, dst = graph.src[first_row], graph.dst[first_row]
    if not graph.one_sided:
        dst = dst + graph.n_users  # users and items are different nodes
    n_nodes = graph.n_users + (0 if graph.one_sided else graph.n_items)
    loop = src == dst
    degree = np.bincount(src[~loop], minlength=n_nodes) + np.bincount(dst[~loop], minlength=n_nodes)
    wanted = int(_round_half_up(np.array([len(first_row) * fraction]))[0])
    rng = np.random.default_rng(seed)
    visit = rng.permutation(np.flatnonzero(~loop))
    test_pair = np.zeros(len(first_row), dtype=bool)
    degree_left = degree.tolist()
    taken = 0
    for pair, a, b in zip(visit.tolist(), src[visit].tolist(), dst[visit].tolist(), strict=True):
        if taken == wanted:
            break
        if degree_left[a] > 1 and degree_left[b] > 1:
            degree_left[a] -= 1
            degree_left[b] -= 1
            test_pair[pair] = True
            taken += 1
    return _split_rows(graph, test_pair[pair_of_row])


def temporal_pairs(graph: Interactions, test_fraction: float = 0.2) -> Split:
    """Predict new pairs: pairs first seen up to the cut train, later ones test.

    The graph is deduplicated first (one row per pair, its earliest), so a
    pair that recurs after the cut is in train only, and the test set holds
    only pairs never seen before the cut. The cut is the ``1 - f`` quantile
    of the pairs' first-seen times. Needs timestamps.
    """
    fraction = _check_fraction(test_fraction)
    _require_timestamps(graph, "temporal_pairs")
    first_seen = graph.dedupe(keep="first")
    if not len(first_seen):
        return first_seen, first_seen
    assert first_seen.timestamp is not None
    cut = _time_cut(first_seen.timestamp, fraction)
    return _split_rows(first_seen, first_seen.timestamp > cut)


# ---------------------------------------------------------------------- by name
SPLIT_METHODS: dict[str, Callable[..., Split]] = {
    "random_per_user": random_per_user,
    "temporal_global": temporal_global,
    "temporal_per_user": temporal_per_user,
    "leave_last_n": leave_last_n,
    "edge_holdout": edge_holdout,
    "temporal_pairs": temporal_pairs,
}


def split(
    data: Interactions,
    method: str,
    *,
    fraction: float = 0.2,
    seed: int = 0,
    n: int = 1,
) -> Split:
    """Run the split ``method`` by name, passing only the arguments it takes.

    ``fraction`` is the test share (``random_per_user``, ``temporal_global``,
    ``edge_holdout``, ``temporal_pairs``), ``seed`` seeds the random ones and
    ``n`` is the count of ``leave_last_n``.
    """
    try:
        function = SPLIT_METHODS[method]
    except KeyError:
        known = ", ".join(SPLIT_METHODS)
        raise ValueError(f"unknown split method {method!r}; known: {known}") from None
    kwargs: dict[str, Any] = {}
    if method == "leave_last_n":
        kwargs["n"] = n
    else:
        kwargs["test_fraction"] = fraction
        if method in ("random_per_user", "edge_holdout"):
            kwargs["seed"] = seed
    return function(data, **kwargs)


def validation_split(
    train: Interactions,
    method: str = "random_per_user",
    *,
    fraction: float = 0.1,
    seed: int = 0,
    n: int = 1,
) -> Split:
    """Carve ``(fit, validation)`` out of a training set, for tuning.

    Takes the training set only, so that the test set stays unseen until the
    final evaluation. Use the method of the outer split so that validation
    asks the same question as test (a temporal validation set is the latest
    part of train, still before every test row).
    """
    return split(train, method, fraction=fraction, seed=seed, n=n)


def train_validation_test(
    data: Interactions,
    method: str = "random_per_user",
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    seed: int = 0,
    n: int = 1,
) -> tuple[Interactions, Interactions, Interactions]:
    """``(fit, validation, test)``: test split off first, validation from the rest.

    ``validation_fraction`` is a share of the training part. The random
    splits use ``seed`` for test and ``seed + 1`` for validation.
    """
    train, test = split(data, method, fraction=test_fraction, seed=seed, n=n)
    fit, validation = validation_split(
        train, method, fraction=validation_fraction, seed=seed + 1, n=n
    )
    return fit, validation, test
