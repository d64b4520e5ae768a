import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recgraph.data.interactions import Interactions
from recgraph.data.splits import (
    SPLIT_METHODS,
    edge_holdout,
    leave_last_n,
    random_per_user,
    split,
    temporal_global,
    temporal_pairs,
    train_validation_test,
    validation_split,
)
from recgraph.errors import InputError


def ratings(seed: int = 0, n_users: int = 30, n_items: int = 40, per_user: int = 10):
    """Each user rates ``per_user`` distinct items at distinct times."""
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(n_users), per_user)
    dst = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    ts = rng.permutation(len(src)) * 10
    return Interactions.from_indices(src, dst, n_users=n_users, n_items=n_items, timestamp=ts)


def random_graph(seed: int, n: int = 60, m: int = 300, directed: bool = False) -> Interactions:
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = src != dst
    return Interactions.from_indices(
        src[keep], dst[keep], n_users=n, one_sided=True, directed=directed
    ).dedupe()


def half_up(x: float) -> int:
    """The splits round half up (2.5 -> 3), unlike Python's ``round``."""
    return math.floor(x + 0.5)


def pairs(data: Interactions) -> set[tuple[int, int]]:
    keys = data.pair_keys()
    return set(zip(keys // data.n_items, keys % data.n_items, strict=True))


# ---------------------------------------------------------------- random_per_user
def test_random_per_user_is_seeded() -> None:
    data = ratings()
    a_train, a_test = random_per_user(data, 0.2, seed=7)
    b_train, b_test = random_per_user(data, 0.2, seed=7)
    _, c_test = random_per_user(data, 0.2, seed=8)
    np.testing.assert_array_equal(a_test.src, b_test.src)
    np.testing.assert_array_equal(a_test.dst, b_test.dst)
    assert pairs(a_test) != pairs(c_test)


def test_random_per_user_fraction_is_per_user() -> None:
    data = ratings(per_user=10)
    train, test = random_per_user(data, 0.2, seed=0)
    assert (test.user_counts() == 2).all()  # 20% of 10, for every user
    assert (train.user_counts() == 8).all()
    assert train.users is data.users and test.items is data.items
    assert not pairs(train) & pairs(test)


def test_random_per_user_keeps_one_in_train() -> None:
    # user 0 has 1 item, user 1 has 2, user 2 has 3: round(0.5 * n) capped at n - 1
    data = Interactions.from_indices([0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2], n_users=3, n_items=3)
    train, test = random_per_user(data, 0.5, seed=0)
    assert train.user_counts().tolist() == [1, 1, 1]
    assert test.user_counts().tolist() == [0, 1, 2]


def test_random_per_user_keeps_repeated_pairs_together() -> None:
    # user 0 rated item 1 three times: all three rows on one side, whatever the seed
    data = Interactions.from_indices(
        [0, 0, 0, 0, 0, 0], [1, 1, 1, 2, 3, 4], n_users=1, n_items=5, timestamp=[1, 2, 3, 4, 5, 6]
    )
    for seed in range(20):
        train, test = random_per_user(data, 0.5, seed=seed)
        assert not pairs(train) & pairs(test)
        assert len(pairs(test)) == 2  # round(0.5 * 4 distinct items)


# ---------------------------------------------------------------- temporal
def test_temporal_global_test_is_strictly_later() -> None:
    data = ratings()
    train, test = temporal_global(data, 0.25)
    assert train.timestamp.max() < test.timestamp.min()
    assert len(test) == pytest.approx(0.25 * len(data), abs=1)
    assert len(train) + len(test) == len(data)


def test_temporal_global_ties_at_the_cut_go_to_train() -> None:
    data = Interactions.from_indices(
        [0, 1, 2, 3], [0, 0, 0, 0], n_users=4, n_items=1, timestamp=[1, 2, 2, 2]
    )
    train, test = temporal_global(data, 0.5)
    assert len(test) == 0 and len(train) == 4  # never a tie split across the cut


def test_temporal_splits_need_timestamps() -> None:
    data = Interactions.from_indices([0, 1], [0, 1], n_users=2, n_items=2)
    for method in ("temporal_global", "leave_last_n", "temporal_pairs"):
        with pytest.raises(InputError, match="timestamp"):
            split(data, method)


def test_leave_last_n_holds_out_each_users_latest() -> None:
    data = Interactions.from_indices(
        [0, 0, 0, 0, 1, 1, 2],
        [0, 1, 2, 3, 0, 1, 0],
        n_users=3,
        n_items=4,
        timestamp=[40, 10, 30, 20, 5, 6, 1],
    )
    train, test = leave_last_n(data, n=2)
    assert sorted(zip(test.src.tolist(), test.dst.tolist(), strict=True)) == [
        (0, 0),
        (0, 2),
        (1, 1),
    ]
    # user 1 (2 rows) keeps one, user 2 (1 row) keeps it
    assert train.user_counts().tolist() == [2, 1, 1]


def test_leave_last_n_latest_per_user_on_random_data() -> None:
    data = ratings(seed=3)
    train, test = leave_last_n(data, n=3)
    assert (test.user_counts() == 3).all()
    for user in range(data.n_users):
        assert train.timestamp[train.src == user].max() < test.timestamp[test.src == user].min()


def test_temporal_pairs_predicts_only_new_pairs() -> None:
    # a->b at 1 and again at 9; c->d first at 8; b->a at 2
    data = Interactions.from_arrays(
        ["a", "a", "c", "b", "c"],
        ["b", "b", "d", "a", "d"],
        timestamp=[1, 9, 8, 2, 10],
        one_sided=True,
    )
    train, test = temporal_pairs(data, 1 / 3)
    ids = data.users
    as_names = lambda d: {(ids.ids[s], ids.ids[t]) for s, t in zip(d.src, d.dst, strict=True)}  # noqa: E731
    assert as_names(train) == {("a", "b"), ("b", "a")}
    assert as_names(test) == {("c", "d")}
    assert len(train) == 2 and len(test) == 1  # deduplicated: one row per pair
    assert train.timestamp.max() < test.timestamp.min()


# ---------------------------------------------------------------- edge holdout
@pytest.mark.parametrize("directed", [False, True])
def test_edge_holdout_fraction_and_determinism(directed: bool) -> None:
    graph = random_graph(0, n=50, m=600, directed=directed)
    train, test = edge_holdout(graph, 0.1, seed=3)
    again_train, again_test = edge_holdout(graph, 0.1, seed=3)
    assert len(test) == half_up(0.1 * len(graph))
    assert len(train) + len(test) == len(graph)
    assert pairs(test) == pairs(again_test)
    assert pairs(test) != pairs(edge_holdout(graph, 0.1, seed=4)[1])


def test_edge_holdout_cannot_strip_a_star() -> None:
    # every edge of a star touches a leaf of degree one: nothing can go to test
    star = Interactions.from_indices(
        [0] * 5, [1, 2, 3, 4, 5], n_users=6, one_sided=True, directed=False
    )
    train, test = edge_holdout(star, 0.5, seed=0)
    assert len(test) == 0 and len(train) == 5


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    fraction=st.floats(0.05, 0.9),
    directed=st.booleans(),
)
def test_edge_holdout_leaves_every_node_a_train_edge(
    seed: int, fraction: float, directed: bool
) -> None:
    graph = random_graph(seed, n=30, m=80, directed=directed)
    train, test = edge_holdout(graph, fraction, seed=seed)
    had_edge = graph.active_users()
    has_train_edge = train.active_users()
    assert (has_train_edge[had_edge]).all()
    assert not pairs(train) & pairs(test)
    assert len(test) <= half_up(fraction * len(graph))


def test_edge_holdout_on_items_keeps_users_and_items() -> None:
    data = ratings(per_user=3, n_items=12)
    train, test = edge_holdout(data, 0.5, seed=0)
    assert (train.user_counts() >= 1).all()
    assert (train.item_counts()[data.item_counts() > 0] >= 1).all()
    assert len(test) > 0


# ---------------------------------------------------------------- by name, validation
def test_split_by_name_and_bad_arguments() -> None:
    data = ratings()
    for method in SPLIT_METHODS:
        train, test = split(data, method, fraction=0.2, seed=1, n=1)
        assert len(train) + len(test) <= len(data) and len(test) > 0
    with pytest.raises(ValueError, match="unknown split method"):
        split(data, "by_moon_phase")
    with pytest.raises(ValueError, match="test_fraction"):
        random_per_user(data, 1.0)
    with pytest.raises(ValueError, match="n must be"):
        leave_last_n(data, 0)


def test_validation_is_carved_from_train_only() -> None:
    data = ratings()
    train, test = random_per_user(data, 0.2, seed=0)
    fit, validation = validation_split(train, "random_per_user", fraction=0.25, seed=1)
    assert len(fit) + len(validation) == len(train)
    assert not pairs(validation) & pairs(test) and not pairs(fit) & pairs(validation)
    fit3, validation3, test3 = train_validation_test(
        data, "temporal_global", test_fraction=0.2, validation_fraction=0.25
    )
    assert fit3.timestamp.max() < validation3.timestamp.min()
    assert validation3.timestamp.max() < test3.timestamp.min()
    assert len(fit3) + len(validation3) + len(test3) == len(data)


def test_temporal_per_user_holds_out_each_users_latest_pairs():
    from recgraph.data.splits import temporal_per_user

    data = Interactions.from_arrays(
        ["u"] * 5 + ["v"] * 2 + ["w"],
        ["a", "b", "c", "d", "a", "a", "b", "a"],
        timestamp=[10, 50, 30, 40, 60, 5, 1, 7],
    )
    train, test = temporal_per_user(data, 0.4)
    held = set(zip(test.users.external(test.src), test.items.external(test.dst), strict=True))
    # u: pairs a (first seen 10), b 50, c 30, d 40 -> 2 latest: b, d; both rows of a stay
    assert held == {("u", "b"), ("u", "d"), ("v", "a")}
    assert len(train) + len(test) == len(data)
