"""The one training matrix every item model reads: what each value kind means."""

import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.retrieval.factors import (
    count_confidence,
    positive_matrix,
    rating_threshold,
)
from tests.retrieval.play_counts import plays


def cell(matrix, data: Interactions, user: str, item: str) -> float:
    return float(matrix[data.users.index_of(user), data.items.index_of(item)])


def test_binary_rows_weigh_one_whatever_their_value():
    data = Interactions.from_arrays(["a", "a", "b"], ["x", "x", "y"], value=[7, 3, 0.5])
    matrix = positive_matrix(data)
    assert matrix.data.tolist() == [1.0, 1.0]


def test_low_ratings_are_not_likes():
    data = Interactions.from_arrays(
        ["a", "a", "a", "b"],
        ["x", "y", "z", "x"],
        value=[1, 2, 4, 5],
        kind=Kind.RATING,
    )
    from recgraph.retrieval.factors import LOW_RATING_WEIGHT

    matrix = positive_matrix(data)
    # 1-5 stars: liked from 4 up; 1 and 2 stars were watched, and weigh a little
    assert cell(matrix, data, "a", "x") == cell(matrix, data, "a", "y") == LOW_RATING_WEIGHT
    assert cell(matrix, data, "a", "z") == 1 and cell(matrix, data, "b", "x") == 1
    assert 0 < LOW_RATING_WEIGHT < 1
    assert positive_matrix(data, low_rating_weight=0).nnz == 2, "likes only"
    assert rating_threshold(data) == 4.0


def test_a_kept_threshold_judges_a_small_batch_on_the_whole_scale():
    # alone, a batch holding one 2-star rating looks like a 2-2 scale where 2 is liked
    from recgraph.retrieval.factors import LOW_RATING_WEIGHT

    batch = Interactions.from_arrays(["a"], ["x"], value=[2], kind=Kind.RATING)
    assert positive_matrix(batch).data.tolist() == [1.0]
    assert positive_matrix(batch, threshold=4.0).data.tolist() == [LOW_RATING_WEIGHT]


def test_counts_are_summed_per_pair_then_log_weighted():
    data = plays(["a", "a", "a", "b"], ["x", "x", "y", "x"], [1, 2, 1000, 1])
    matrix = positive_matrix(data, count_epsilon=1.0)
    assert cell(matrix, data, "a", "x") == pytest.approx(2.0)  # log2(1 + 3)
    assert cell(matrix, data, "a", "y") == pytest.approx(np.log2(1001), rel=1e-6)
    assert cell(matrix, data, "b", "x") == pytest.approx(1.0)
    assert positive_matrix(data, count_epsilon=None).data.tolist() == [1.0, 1.0, 1.0]
    assert positive_matrix(data, binary=True).data.tolist() == [1.0, 1.0, 1.0]


def test_count_confidence_runs_from_presence_to_the_raw_count():
    counts = np.array([1.0, 10.0, 100.0])
    assert count_confidence(counts, 1.0)[0] == pytest.approx(1.0)
    flat = count_confidence(counts, 1e-6)
    assert flat[-1] < 1.5, "a tiny epsilon flattens every count towards 1"
    steep = count_confidence(counts, 1e6)
    np.testing.assert_allclose(steep, counts, rtol=1e-3)


def test_weights_are_used_as_given_and_dislikes_never_enter():
    data = Interactions.from_arrays(
        ["a", "a", "b", "b"],
        ["x", "y", "x", "y"],
        value=[0.25, 3.0, 2.0, 1.0],
        kind=np.array([Kind.LIKE, Kind.LIKE, Kind.LIKE, Kind.DISLIKE], np.int8),
        value_kind=ValueKind.WEIGHT,
    )
    matrix = positive_matrix(data)
    assert cell(matrix, data, "a", "x") == pytest.approx(0.25)
    assert cell(matrix, data, "a", "y") == pytest.approx(3.0)
    assert cell(matrix, data, "b", "y") == 0


def test_rows_of_different_kinds_mix():
    data = Interactions.from_arrays(
        ["a", "a", "a"],
        ["x", "y", "z"],
        value=[1, 7, 2],
        kind=np.array([Kind.LIKE, Kind.VIEW, Kind.RATING], np.int8),
        value_kind=np.array([ValueKind.NONE, ValueKind.COUNT, ValueKind.RATING], np.int8),
    )
    matrix = positive_matrix(data, count_epsilon=1.0)
    assert cell(matrix, data, "a", "x") == 1.0
    assert cell(matrix, data, "a", "y") == pytest.approx(3.0)  # log2(8)
    assert cell(matrix, data, "a", "z") == 1.0  # the only rating: its own scale


@pytest.mark.parametrize("name", ["ease", "item_knn", "als", "bpr", "biased_mf"])
def test_with_defaults_every_item_model_beats_popularity_on_play_counts(name):
    """Issue 11: play counts once sank a model below popularity (read as ratings)."""
    from recgraph.evaluation import evaluate
    from tests.retrieval.play_counts import play_count_split

    train, test = play_count_split()
    report = evaluate(["popular", name], train, test, (20,), progress=False)
    popular, model = (r.metrics["ndcg@20"] for r in report.results)
    assert model > popular, (name, model, popular)
