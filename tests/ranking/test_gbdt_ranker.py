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
