import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind
from recgraph.retrieval.biased_mf import BiasedMF
from recgraph.retrieval.ease import EASE
from recgraph.retrieval.feed import FeedConfig, FeedResult, cold_start_scores, recommend_feed
from recgraph.retrieval.item_knn import ItemKNN
from recgraph.retrieval.popular import Popular
from tests.retrieval.conformance import two_cliques

WARM = {"cold_start_min_interactions": 3}


@pytest.fixture(scope="module")
def data() -> Interactions:
    return two_cliques("items")


@pytest.fixture(scope="module")
def knn(data) -> ItemKNN:
    return ItemKNN(neighbours=10).fit(data)


@pytest.fixture(scope="module")
def mf(data) -> BiasedMF:
    return BiasedMF(epochs=100, learning_rate=0.05, factors=4, regularization=0.1, negatives=1).fit(
        data
    )


def test_cold_start_by_default_for_short_histories(mf):
    (feed,) = recommend_feed(mf, [0], k=3)  # 4 interactions < 30
    assert [r.reason for r in feed] == ["cold_start"] * 3
    order = np.argsort(-mf.item_bias_, kind="stable")
    expected = [i for i in order if i not in {0, 2, 3, 4}][:3]
    assert [r.item for r in feed] == expected
    assert [r.score for r in feed] == pytest.approx(mf.item_bias_[expected].tolist())


def test_cold_start_uses_popularity_without_a_bias(knn, data):
    np.testing.assert_array_equal(
        cold_start_scores(knn), np.diff(data.positives().csr().tocsc().indptr)
    )
    np.testing.assert_array_equal(
        cold_start_scores(Popular().fit(data)), Popular().fit(data).popularity_
    )
    (feed,) = recommend_feed(knn, [-1], k=2)  # a user the model never saw
    assert [r.item for r in feed] == [0, 2] and {r.reason for r in feed} == {"cold_start"}


def test_warm_users_are_personalised_and_never_see_seen_or_disliked(knn, data):
    feeds = recommend_feed(knn, np.arange(10), k=10, config=WARM)
    seen = data.seen()
    for user, feed in enumerate(feeds):
        assert {r.reason for r in feed} == {"personalised"}
        assert not {r.item for r in feed} & set(seen[user].indices.tolist())
    assert 7 not in {r.item for r in feeds[2]}, "user 2 disliked item 7"
    assert feeds[0][0].item == 1 and feeds[0][0].item_id == "1"


def test_exclude_covers_feedback_after_training(knn):
    (feed,) = recommend_feed(knn, [0], k=3, config=WARM, exclude=[[1]])
    assert 1 not in [r.item for r in feed]
    (cold,) = recommend_feed(knn, [0], k=3, exclude=[[1, 5]])
    assert not {1, 5} & {r.item for r in cold}


def test_freshness_window(knn):
    now = 100 * 86400.0
    created = np.full(10, now - 10 * 86400)
    created[[6, 8]] = now - 3600  # the only fresh posts
    created[9] = np.nan  # unknown age: never fresh
    config = {**WARM, "max_age_days": 2}
    feeds = recommend_feed(knn, [0, 5, -1], k=5, config=config, now=now, item_created_at=created)
    for feed in feeds:
        assert {r.item for r in feed} <= {6, 8}
    assert [r.item for r in feeds[1]] == [6], "user 5 already has 8"
    with pytest.raises(ValueError, match="item_created_at"):
        recommend_feed(knn, [0], config=config)


def test_explanations_name_liked_items(knn, data):
    (feed,) = recommend_feed(knn, [0], k=2, config={**WARM, "explain_top": 2})
    assert feed[0].item == 1
    assert len(feed[0].because) == 2 and set(feed[0].because) <= {"0", "2", "3", "4"}
    (ease_feed,) = recommend_feed(EASE(regularization=1.0).fit(data), [0], k=1, config=WARM)
    assert ease_feed[0].because and set(ease_feed[0].because) <= {"0", "2", "3", "4"}


def test_no_explanations_without_an_explain_method(mf):
    (feed,) = recommend_feed(mf, [0], k=2, config=WARM)
    assert feed[0].reason == "personalised" and feed[0].because == ()


def test_results_serialise():
    result = FeedResult(item=3, item_id="post-3", score=0.5, reason="cold_start")
    assert result.to_dict() == {
        "item": "post-3",
        "score": 0.5,
        "reason": "cold_start",
        "because": [],
    }


def test_bad_arguments(knn):
    with pytest.raises(ValueError):
        recommend_feed(knn, [0], k=0)
    with pytest.raises(IndexError):
        recommend_feed(knn, [10])
    with pytest.raises(ValueError):
        FeedConfig(max_age_days=-1)


def test_cold_start_excludes_dislikes():
    kinds = np.array([Kind.DISLIKE, Kind.LIKE, Kind.LIKE, Kind.LIKE, Kind.LIKE], np.int8)
    data = Interactions.from_arrays(
        ["a", "a", "b", "c", "b"], ["x", "y", "x", "x", "z"], kind=kinds
    )
    model = Popular().fit(data)
    (feed,) = recommend_feed(model, [0], k=5)
    assert [r.item_id for r in feed] == ["z"], "x is the most popular, but user a disliked it"
