"""How the served ranker is taught once validation keeps it: ``final_fit`` (refit one level
up, on the outer slice) and ``final_slices`` (more outer slices, each fitted on its own rest),
and which users ``check_users`` judges on."""

from __future__ import annotations

import numpy as np

from recgraph.pipeline import QuestionModel
from recgraph.pipeline import ranking as ranking_module
from tests.pipeline.ranked import _pairs, ranked_config, spy_on_label_slices


def test_final_fit_outer_teaches_the_served_ranker_again_on_the_outer_slice(feed_graph):
    """After the nested check keeps the ranker, ``final_fit="outer"`` (the default) refits it
    one level up."""
    spec = {"label_split": "random_per_user", "check": "nested", "min_gain": -10.0, "blend": False}
    folds = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], final_fit="folds", **spec)
    ).fit(feed_graph)
    outer = QuestionModel("feed", ranked_config(["item_knn", "popular"], **spec)).fit(feed_graph)
    assert folds.ranked and outer.ranked
    assert folds.ranking.report["final_fit"] == "folds"
    assert folds.ranking.report["final_slices_used"] == 0
    report = outer.ranking.report
    assert report["final_fit"] == "outer" and report["final_train_rows"] > 0
    # the check itself is the same; the served ranker is another fit
    assert report["valid_ndcg@20_ranker"] == folds.ranking.report["valid_ndcg@20_ranker"]
    users = np.arange(feed_graph.n_users)
    assert report["final_fit_report"] == outer.ranking.ranker.fit_report
    assert outer.ranking.ranker is not folds.ranking.ranker
    assert not np.array_equal(outer.recommend(users, 10).scores, folds.recommend(users, 10).scores)


def test_final_slices_teaches_the_served_ranker_on_more_outer_slices_the_same_way_each_time(
    feed_graph,
):
    """``final_slices=3``: the check is the same, the served ranker learns from three outer
    slices (about three times the rows), and the same seed gives the same ranker."""
    spec = {"label_split": "random_per_user", "check": "nested", "min_gain": -10.0, "blend": False}
    one = QuestionModel("feed", ranked_config(["item_knn", "popular"], **spec)).fit(feed_graph)
    three = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], final_slices=3, **spec)
    ).fit(feed_graph)
    again = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], final_slices=3, **spec)
    ).fit(feed_graph)
    assert one.ranked and three.ranked
    report = three.ranking.report
    assert report["final_slices_used"] == 3 and one.ranking.report["final_slices_used"] == 1
    assert list(report["final_slice_rows"]) == [
        "random_per_user",
        "random_per_user+1",
        "random_per_user+2",
    ]
    assert sum(report["final_slice_rows"].values()) == report["final_train_rows"]
    assert report["valid_ndcg@20_ranker"] == one.ranking.report["valid_ndcg@20_ranker"]
    assert report["final_train_rows"] > 2 * one.ranking.report["final_train_rows"]
    users = np.arange(feed_graph.n_users)
    served = three.recommend(users, 10)
    assert not np.array_equal(served.scores, one.recommend(users, 10).scores)
    np.testing.assert_array_equal(served.ids, again.recommend(users, 10).ids)
    np.testing.assert_array_equal(served.scores, again.recommend(users, 10).scores)


def _spy_on_slices(monkeypatch):
    """Record each label slice cut (:func:`spy_on_label_slices`) and each retriever fit of
    ``train_stage`` (the data fitted on, and the users whose candidates it pooled)."""
    from recgraph.pipeline import question as question_module

    fits = []
    real_train = question_module.train_stage

    def train_stage(spec, fit_stage_one, *args, **kwargs):
        def fit(rest):
            stage_one = fit_stage_one(rest)
            pooled, pool = [], stage_one.pool

            def spy_pool(users, *more, **named):
                pooled.append(np.asarray(users).copy())
                return pool(users, *more, **named)

            stage_one.pool = spy_pool
            fits.append((rest, pooled))
            return stage_one

        return real_train(spec, fit, *args, **kwargs)

    monkeypatch.setattr(question_module, "train_stage", train_stage)
    return spy_on_label_slices(monkeypatch), fits


def test_final_slices_fits_each_extra_slice_on_its_own_rest_for_training_users_only(
    feed_graph, monkeypatch
):
    """Each extra slice labels candidates of retrievers fitted on that slice's own rest
    (disjoint from its labels), pools lists of the check's training users alone (no
    validation user of the nested check is taught on), and its labels are another draw than
    the outer slice's and each other's."""
    cut, fits = _spy_on_slices(monkeypatch)
    spec = {"label_split": "random_per_user", "check": "nested", "min_gain": -10.0, "blend": False}
    model = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], final_slices=3, **spec)
    ).fit(feed_graph)
    assert model.ranking.report["final_slices_used"] == 3
    # cut: the outer slice, its one fold, two more outer slices; fitted: the fold's rest,
    # the outer rest, then each extra slice's rest
    assert len(cut) == 4 and len(fits) == 4
    (_, _, outer_labels, _), extras = cut[0], cut[2:]
    assert fits[1][0] is cut[0][1]
    is_valid = np.random.default_rng(0).random(feed_graph.n_users) < 0.2
    outer_valid = fits[1][1][0]  # the outer slice pools its validation users first
    assert len(outer_valid) and is_valid[outer_valid].all()
    for (_, rest, labels, _), (fitted, pooled) in zip(extras, fits[2:], strict=True):
        assert fitted is rest  # its own rest, not the outer slice's
        assert not _pairs(rest) & _pairs(labels)
        assert len(rest) + len(labels) == len(feed_graph)
        assert len(pooled) == 1 and len(pooled[0])
        assert not is_valid[pooled[0]].any()
        assert not np.isin(pooled[0], outer_valid).any()
    drawn = [_pairs(labels) for labels in (outer_labels, *(labels for _, _, labels, _ in extras))]
    assert drawn[0] != drawn[1] and drawn[0] != drawn[2] and drawn[1] != drawn[2]


def test_final_slices_pools_one_slice_cut_in_time_once(feed_graph, monkeypatch):
    """A slice cut in time is the same whatever the seed: with the nested check on
    ``temporal_per_user`` the served ranker learns from the outer slice alone (no copies of
    it), the report says 1 slice used, and the ranker is the one ``final_slices=1`` serves."""
    spec = {"label_split": "temporal_per_user", "check": "nested", "min_gain": -10.0}
    spec |= {"blend": False}
    one = QuestionModel("feed", ranked_config(["item_knn", "popular"], **spec)).fit(feed_graph)
    cut, fits = _spy_on_slices(monkeypatch)
    three = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], final_slices=3, **spec)
    ).fit(feed_graph)
    assert one.ranked and three.ranked and three.ranking.report["final_fit"] == "outer"
    assert len(cut) == 2 and len(fits) == 2  # the outer slice and its fold: nothing more
    report = three.ranking.report
    assert report["final_slices_used"] == 1
    assert report["final_slice_rows"] == {"temporal_per_user": report["final_train_rows"]}
    assert report["final_train_rows"] == one.ranking.report["final_train_rows"]
    users = np.arange(feed_graph.n_users)
    np.testing.assert_array_equal(
        three.recommend(users, 10).scores, one.recommend(users, 10).scores
    )
    assert not ranking_module.pools_final_slices(feed_graph, three.config.ranker)


def test_final_slices_reports_none_used_where_it_has_no_effect(feed_graph):
    """Without the nested check, or with ``final_fit="folds"``, the served ranker is the
    check's: the report says no outer slice was used, whatever ``final_slices`` says."""
    spec = {"label_split": "random_per_user", "min_gain": -10.0, "blend": False}
    for extra, said in (
        ({"check": "same"}, "folds (no nested check)"),
        ({"check": "nested", "final_fit": "folds"}, "folds"),
    ):
        config = ranked_config(["item_knn", "popular"], final_slices=3, **spec, **extra)
        model = QuestionModel("feed", config).fit(feed_graph)
        assert model.ranked
        assert model.ranking.report["final_fit"] == said
        assert model.ranking.report["final_slices_used"] == 0
        assert "final_slice_rows" not in model.ranking.report
        assert not ranking_module.pools_final_slices(feed_graph, config.ranker)
    nested = ranked_config(["item_knn", "popular"], check="nested", **spec)
    assert ranking_module.pools_final_slices(feed_graph, nested.ranker)


def test_check_users_all_judges_on_every_labelled_user_of_the_outer_slice(feed_graph):
    spec = {"label_split": "random_per_user", "check": "nested"}
    valid = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], check_users="valid", **spec)
    ).fit(feed_graph)
    every = QuestionModel("feed", ranked_config(["item_knn", "popular"], **spec)).fit(feed_graph)
    # the validation users' lists, then also the training users' (about four times as many)
    assert every.ranking.report["valid_lists"] > 2 * valid.ranking.report["valid_lists"]
    assert every.ranking.report["train_rows"] == valid.ranking.report["train_rows"]
