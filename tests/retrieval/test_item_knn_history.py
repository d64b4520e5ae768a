"""item_knn's fifth-round options: history recency by position, the latest items, a recent-share window."""

import numpy as np

from recgraph.data.interactions import IdMap, Interactions
from recgraph.retrieval import Retriever
from recgraph.retrieval.item_knn import (
    ADDED_SINCE_SECOND_ROUND,
    FIFTH_ROUND_FIELDS,
    ItemKNN,
    history_positions,
    history_weighted,
)
from recgraph.retrieval.popular import Popular
from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_item_knn import plain_knn
from tests.retrieval.test_item_knn_options import saved_as_before

DAY = 86_400


class TestItemKNNHistory(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "history_half_life_items": 3.0, "recency_floor": 0.5}


def history() -> Interactions:
    """User a: x first, y and z at the same second, w last; user b: y then x; c: no time order."""
    users = ["a", "a", "a", "a", "b", "b"]
    items = ["x", "y", "z", "w", "y", "x"]
    return Interactions.from_arrays(users, items, timestamp=[1, 5, 5, 9, 2, 3])


def test_positions_count_the_later_items_and_ties_share_one():
    data = history()
    matrix = data.positives().csr()
    dense = np.zeros(matrix.shape)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    dense[rows, matrix.indices] = history_positions(matrix, data)
    a, b = (data.users.index_of(u) for u in "ab")
    x, y, z, w = (data.items.index_of(i) for i in "xyzw")
    np.testing.assert_array_equal(dense[a, [x, y, z, w]], [3, 1, 1, 0])
    np.testing.assert_array_equal(dense[b, [x, y]], [0, 1])
    assert history_positions(matrix, Interactions.from_arrays(["a"], ["x"])) is None


def test_history_weights_halve_per_half_life_above_the_floor_and_keep_the_latest():
    data = history()
    matrix = data.positives().csr()
    a, b = (data.users.index_of(u) for u in "ab")
    x, y, z, w = (data.items.index_of(i) for i in "xyzw")
    halved = history_weighted(matrix, data, half_life_items=1.0).toarray()
    np.testing.assert_allclose(halved[a, [x, y, z, w]], [0.125, 0.5, 0.5, 1.0])
    floored = history_weighted(matrix, data, half_life_items=1.0, floor=0.5).toarray()
    np.testing.assert_allclose(floored[a, [x, y, z, w]], [0.5625, 0.75, 0.75, 1.0])
    latest = history_weighted(matrix, data, keep=2).toarray()  # w, then y and z tied
    np.testing.assert_array_equal(latest[a, [x, y, z, w]], [0, 1, 1, 1])
    np.testing.assert_array_equal(latest[b, [x, y]], [1, 1])


def test_history_options_weigh_the_users_sum_only():
    data = history()
    plain = plain_knn(neighbours=10).fit(data)
    model = plain_knn(neighbours=10, history_half_life_items=1.0).fit(data)
    np.testing.assert_array_equal(model.similarity_.toarray(), plain.similarity_.toarray())
    want = history_weighted(plain.matrix_, data, half_life_items=1.0)
    np.testing.assert_allclose(model.matrix_.toarray(), want.toarray())
    users = np.arange(2)
    np.testing.assert_allclose(model._score(users), (want[users] @ plain.similarity_).toarray())
    untimed = Interactions.from_arrays(["a", "a", "b"], ["x", "y", "x"])
    np.testing.assert_array_equal(
        plain_knn(history_items=1, history_half_life_items=1.0).fit(untimed).matrix_.toarray(),
        plain_knn().fit(untimed).matrix_.toarray(),
    )


def test_recency_floor_applies_to_the_half_life_in_days():
    data = Interactions.from_arrays(["a", "a"], ["x", "y"], timestamp=[0, 2 * DAY])
    model = plain_knn(half_life_days=1.0, recency_floor=0.5).fit(data)
    x, y = (data.items.index_of(i) for i in "xy")
    np.testing.assert_allclose(model.matrix_.toarray()[0, [x, y]], [0.5 + 0.5 * 0.25, 1.0])


def test_window_share_counts_the_latest_share_of_the_pairs():
    # ten pairs a day apart: the latest 30% are the last three days' pairs
    users = [f"u{i}" for i in range(10)]
    items = ["old"] * 7 + ["new"] * 3
    data = Interactions.from_arrays(users, items, timestamp=[i * DAY for i in range(10)])
    model = ItemKNN(neighbours=10, popularity_window_share=0.3).fit(data)
    window = Popular(window_days=2.0).fit(data).popularity_
    np.testing.assert_allclose(model.prior_, window / window.max())
    assert model.prior_[data.items.index_of("old")] == 0
    # a window in days, when given, is the window
    days = ItemKNN(neighbours=10, popularity_window_share=0.3, popularity_window_days=0.5)
    assert days.fit(data).prior_[data.items.index_of("new")] == 1
    assert days.prior_[data.items.index_of("old")] == 0


def test_models_saved_before_the_fifth_round_load_and_answer_as_before(tmp_path):
    """A saved item_knn without the fifth round's fields answers exactly as it did."""
    data = history()
    saved = ItemKNN(neighbours=10).fit(data)
    loaded = saved_as_before(saved, tmp_path / "before", FIFTH_ROUND_FIELDS)
    assert loaded.config.history_half_life_items is None and loaded.config.recency_floor == 0
    assert loaded.config.popularity_window_share is None  # it blended all-time popularity
    users = np.arange(2)
    np.testing.assert_array_equal(loaded._score(users), saved._score(users))
    np.testing.assert_array_equal(loaded.recommend(users, 2)[0], saved.recommend(users, 2)[0])
    # and a model saved with the new options reloads with them
    weighted = ItemKNN(neighbours=10, history_half_life_items=1.0).fit(data)
    again = Retriever.load(weighted.save(tmp_path / "weighted"))
    np.testing.assert_array_equal(again._score(users), weighted._score(users))
    assert not np.allclose(again._score(users), saved._score(users))


def test_the_defaults_count_the_blend_over_the_latest_tenth():
    config = ItemKNN().config
    assert config.popularity_window_share == 0.1 and config.count_epsilon == 0.1
    assert config.history_half_life_items is None and config.history_items is None
    assert config.recency_floor == 0
    assert "fifth" in type(config).defaults_chosen_on
    # ten pairs a day apart, one user each: the blend's popularity is the latest pair's item
    users = [f"u{i}" for i in range(10)]
    items = ["old"] * 9 + ["new"]
    data = Interactions.from_arrays(users, items, timestamp=[i * DAY for i in range(10)])
    prior = ItemKNN().fit(data).prior_
    assert prior[data.items.index_of("new")] == 1 and prior[data.items.index_of("old")] == 0


def test_configs_written_by_older_code_keep_all_time_popularity():
    """Every field of its time there, no window share: the config it was saved with."""
    old = ItemKNN().config.model_dump()
    del old["popularity_window_share"]
    assert ItemKNN(**old).config.popularity_window_share is None
    for field in ADDED_SINCE_SECOND_ROUND & set(old):
        del old[field]
    assert ItemKNN(**old).config.popularity_window_share is None
    # what a user writes (some fields) takes the default
    assert ItemKNN(popularity_blend=0.2).config.popularity_window_share == 0.1


def test_bm25_ignores_items_nobody_has():
    """Items without a training pair (a catalogue's new ones) change no similarity."""
    users, items = ["a", "a", "b", "b", "b", "c"], ["x", "y", "x", "y", "z", "z"]
    data = Interactions.from_arrays(users, items)
    grown = Interactions.from_arrays(
        users, items, items=IdMap.from_array(np.array(["x", "y", "z", "new1", "new2"]))
    )
    assert grown.n_items == 5 and data.n_items == 3
    small = plain_knn(neighbours=10).fit(data).similarity_.toarray()
    large = plain_knn(neighbours=10).fit(grown).similarity_.toarray()
    np.testing.assert_allclose(large[:3, :3], small, rtol=1e-6)
    assert not large[3:].any() and not large[:, 3:].any()
