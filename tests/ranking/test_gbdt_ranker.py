import pytest

from tests.ranking.conformance import RankerConformance


class TestGBDTRanker(RankerConformance):
    ranker_name = "gbdt_ranker"
    params = {"n_estimators": 60, "num_leaves": 8}


class TestGBDTPointwise(RankerConformance):
    """The pointwise objective (ordered by the chance of a like) passes the same test."""

    ranker_name = "gbdt_ranker"
    params = {"n_estimators": 60, "num_leaves": 8, "objective": "binary"}


def test_early_stopping_is_reported():
    from recgraph.ranking import create_ranker
    from tests.ranking.conformance import synthetic_batch

    ranker = create_ranker("gbdt_ranker", {"n_estimators": 300, "early_stopping_rounds": 5})
    ranker.fit(synthetic_batch(100, 20, 0), synthetic_batch(30, 20, 1))
    assert ranker.fit_report["best_iteration"] <= ranker.fit_report["rounds"] < 300
    assert 0 < ranker.fit_report["valid_ndcg"] <= 1


class TestGBDTBagged(RankerConformance):
    """A bag of boosters (the mean of their scores) passes the same test, save and load included."""

    ranker_name = "gbdt_ranker"
    params = {"n_estimators": 60, "num_leaves": 8, "bags": 3}


def test_a_bag_is_the_mean_of_boosters_on_other_draws():
    import numpy as np

    from recgraph.ranking import create_ranker
    from tests.ranking.conformance import synthetic_batch

    train, valid = synthetic_batch(100, 20, 0), synthetic_batch(30, 20, 1)
    # from nothing (residual None): the score is then the boosters' own mean
    bag = create_ranker("gbdt_ranker", {"n_estimators": 40, "bags": 3, "residual": None})
    bag.fit(train, valid)
    assert len(bag.boosters_) == 3 and bag.fit_report["bags"] == 3
    assert len(bag.fit_report["valid_ndcg"]) == 3 and 0 < bag.fit_report["bag_valid_ndcg"] <= 1
    each = [
        b.predict(valid.features, num_iteration=b.best_iteration or None) for b in bag.boosters_
    ]
    # the boosters differ (own seed, own 80% of the lists) and the score is their mean
    assert not np.allclose(each[0], each[1])
    np.testing.assert_allclose(bag.score(valid), np.mean(each, axis=0), rtol=1e-5)
    # one bag is the single booster on every list, as before bags existed
    one = create_ranker("gbdt_ranker", {"n_estimators": 40}).fit(train, valid)
    solo = create_ranker("gbdt_ranker", {"n_estimators": 40, "bags": 1}).fit(train, valid)
    np.testing.assert_array_equal(one.score(valid), solo.score(valid))
    assert "bags" not in one.fit_report


class TestGBDTResidual(RankerConformance):
    """Boosters that start from a retriever's rank (``residual``) pass the same test, save and
    load included (the column they start from is kept)."""

    ranker_name = "gbdt_ranker"
    params = {"n_estimators": 60, "num_leaves": 8, "residual": "knn:rank", "truncation_level": 10}


def test_a_residual_ranker_adds_the_boosters_to_its_retrievers_order():
    import dataclasses

    import numpy as np

    from recgraph.ranking import create_ranker
    from tests.ranking.conformance import synthetic_batch

    train, valid = synthetic_batch(100, 20, 0), synthetic_batch(30, 20, 1)
    ranker = create_ranker("gbdt_ranker", {"n_estimators": 20, "residual": "auto"})
    ranker.fit(train, valid)
    assert ranker.fit_report["residual_on"] == "knn:rank"
    (booster,) = ranker.boosters_
    raw = booster.predict(valid.features, num_iteration=booster.best_iteration or None)
    rank = valid.features[:, 2].astype(np.float64)
    assert rank.min() == 1  # ranks from 1, as the pipeline writes them
    start = 2.0 / np.log2(1.0 + rank)
    np.testing.assert_allclose(ranker.score(valid), raw + start, rtol=1e-5)
    # a bag adds the start once to its boosters' mean
    bag = create_ranker("gbdt_ranker", {"n_estimators": 20, "residual": "auto", "bags": 2})
    bag.fit(train, valid)
    each = [
        b.predict(valid.features, num_iteration=b.best_iteration or None) for b in bag.boosters_
    ]
    np.testing.assert_allclose(bag.score(valid), np.mean(each, axis=0) + start, rtol=1e-5)
    # no rank column: nothing to start from
    bare = create_ranker("gbdt_ranker", {"n_estimators": 5, "residual": "auto"})
    unranked = synthetic_batch(50, 10, 2)
    unranked = dataclasses.replace(unranked, feature_names=("signal", "noise", "other"))
    assert "residual_on" not in bare.fit(unranked).fit_report
    # a column that is not a retriever's rank is refused, not turned into a flat start
    with pytest.raises(ValueError, match="a retriever's rank column"):
        create_ranker("gbdt_ranker", {"n_estimators": 5, "residual": "signal"}).fit(train)
