import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval.popular import Popular
from tests.retrieval.conformance import RetrieverConformance, two_cliques


class TestPopular(RetrieverConformance):
    model_name = "popular"
    structural = False


def test_counts_distinct_users_and_ignores_dislikes():
    model = Popular().fit(two_cliques("items"))
    # item 1 and item 6 miss one like each; the dislike of item 7 does not count
    expected = np.array([5, 4, 5, 5, 5, 5, 4, 5, 5, 5], dtype=np.float32)
    np.testing.assert_array_equal(model.popularity_, expected)
    ids, scores = model.recommend([0], k=3)
    # user 0 has items 0,2,3,4: the best left are 5, 7, 8 (5 likes each, lower id first)
    assert ids[0].tolist() == [5, 7, 8]
    assert scores[0].tolist() == [5.0, 5.0, 5.0]


def test_window_counts_only_recent_interactions():
    data = Interactions.from_indices(
        [0, 1, 2, 3], [0, 0, 1, 1], n_users=4, n_items=2, timestamp=[0, 0, 10 * 86400, 10 * 86400]
    )
    assert Popular(window_days=1).fit(data).popularity_.tolist() == [0.0, 2.0]
    assert Popular().fit(data).popularity_.tolist() == [2.0, 2.0]


def test_follow_graph_popularity_is_in_degree():
    data = Interactions.from_indices([0, 1, 2, 0], [3, 3, 3, 1], n_users=4, one_sided=True)
    assert Popular().fit(data).popularity_.tolist() == [0.0, 1.0, 0.0, 3.0]


def test_low_ratings_are_not_counted_and_counts_weigh_by_log():
    from recgraph.data.interactions import Kind, ValueKind

    ratings = Interactions.from_arrays(
        ["a", "b", "c"], ["x", "x", "y"], value=[1, 2, 5], kind=Kind.RATING
    )
    assert Popular().fit(ratings).popularity_.tolist() == [0.0, 1.0]
    plays = Interactions.from_arrays(
        ["a", "b", "c"], ["x", "x", "y"], value=[1, 1, 1023], value_kind=ValueKind.COUNT
    )
    assert Popular().fit(plays).popularity_.tolist() == [2.0, 1.0]
    by_value = Popular(weight="value", count_epsilon=1.0).fit(plays).popularity_
    np.testing.assert_allclose(by_value, [2.0, 10.0])
