"""Stage 2 inside a question: trained from the training data alone, saved, served, and dropped
when validation says it does not help."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data import splits
from recgraph.pipeline import QuestionModel
from recgraph.pipeline import ranking as ranking_module
from recgraph.pipeline.config import QuestionConfig
from tests.pipeline.ranked import FAST, _pairs, ranked_config, spy_on_label_slices


@pytest.fixture(scope="module")
def ranked_feed(feed_graph):
    return QuestionModel("feed", ranked_config(["item_knn", "popular"])).fit(feed_graph)


def test_a_ranked_feed_answers_with_the_rules_applied(ranked_feed, feed_graph):
    stage = ranked_feed.ranking
    assert stage is not None and stage.report["train_rows"] > 0
    assert set(stage.report) >= {"valid_ndcg@20_ranker", "valid_ndcg@20_item_knn", "label_split"}
    users = np.arange(feed_graph.n_users)
    result = ranked_feed.recommend(users, 10)
    seen = feed_graph.seen()
    for user in users[:50]:
        got = result.ids[user][result.ids[user] >= 0]
        assert not set(got.tolist()) & set(seen[user].indices.tolist())
        assert len(set(got.tolist())) == len(got)


def test_ranked_results_are_the_rankers_order_of_the_pool(feed_graph):
    # min_gain < 0 and no blend: validation keeps the ranker itself (on this small graph it
    # would keep the merge, and the test would have nothing to check)
    config = ranked_config(["item_knn", "popular"], min_gain=-1.0, blend=False)
    question = QuestionModel("feed", config).fit(feed_graph)
    assert question.ranked and question.ranking.order == "ranker"
    user = int(np.argmax(question.history.counts))
    pool = question.pool(np.array([user]), question.config.ranker.depth)
    scores = question.ranking.ranker.score(question.ranking.batch(pool))
    best = pool.ids[pool.valid][np.argsort(-scores, kind="stable")][:5]
    assert question.recommend([user], 5).ids[0].tolist() == best.tolist()


def test_save_and_load_serve_the_same(ranked_feed, feed_graph, tmp_path):
    ranked_feed.save(tmp_path / "q")
    again = QuestionModel.load("feed", ranked_feed.config, tmp_path / "q")
    assert again.ranked == ranked_feed.ranked
    users = np.arange(0, feed_graph.n_users, 7)
    a, b = ranked_feed.recommend(users, 10), again.recommend(users, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not list(tmp_path.rglob("*.pkl"))


def test_the_same_seed_gives_the_same_ranker(ranked_feed, feed_graph):
    again = QuestionModel("feed", ranked_feed.config).fit(feed_graph)
    users = np.arange(0, feed_graph.n_users, 5)
    np.testing.assert_array_equal(
        again.recommend(users, 10).ids, ranked_feed.recommend(users, 10).ids
    )
    assert again.ranking.report == ranked_feed.ranking.report


def test_no_test_row_reaches_the_rankers_training(feed_graph, monkeypatch):
    train, test = splits.split(feed_graph, "temporal_global", fraction=0.2)
    test_pairs = set(zip(test.src.tolist(), test.dst.tolist(), strict=True))
    train_pairs = set(zip(train.src.tolist(), train.dst.tolist(), strict=True))
    sliced = spy_on_label_slices(monkeypatch)
    config = ranked_config(["item_knn", "popular"], folds=2, label_split="both")
    QuestionModel("feed", config).fit(train)
    kinds = ranking_module.label_kinds(train, config.ranker)
    assert kinds == ["temporal_per_user", "random_per_user"]
    assert len(sliced) == len(kinds) * (1 + 2)  # per kind: the outer slice, then two folds
    for data, rest, labels, _ in sliced:
        for part in (data, rest, labels):
            pairs = set(zip(part.src.tolist(), part.dst.tolist(), strict=True))
            assert not pairs & (test_pairs - train_pairs), "a test pair reached the ranker"
            assert pairs <= set(zip(train.src.tolist(), train.dst.tolist(), strict=True))


def test_validation_can_say_no_ranker(feed_graph):
    plain = QuestionModel(
        "feed",
        QuestionConfig(
            retrievers=[{"name": "item_knn"}, {"name": "popular"}],
            fallback=[],
            cold_start_min_interactions=1,
        ),
    ).fit(feed_graph)
    never = QuestionModel(
        "feed", ranked_config(["item_knn", "popular"], min_gain=10.0, stand_down="merge")
    ).fit(feed_graph)
    assert never.ranking is not None and not never.ranked
    assert "ranker not used" in never.ranking_note
    users = np.arange(0, feed_graph.n_users, 3)
    np.testing.assert_array_equal(never.recommend(users, 10).ids, plain.recommend(users, 10).ids)


def test_a_ranked_who_to_follow(follow_graph):
    q = QuestionModel(
        "who_to_follow",
        ranked_config([{"name": "adamic_adar", "min_score": 0.0}, "popular"], labels="positive"),
    ).fit(follow_graph)
    stage = q.ranking
    assert stage is not None
    names = stage.batch(q.pool(np.array([0, 1]), 10)).feature_names
    assert {"common_neighbors", "follows_back", "adamic_adar:rank"} <= set(names)
    assert (q.recommend([0], 5).ids >= 0).all()


class _PopularityRanker:
    """A ranker written in a test: orders candidates by the candidate's popularity feature."""


def test_a_ranker_registered_from_outside_needs_no_pipeline_change(feed_graph, tmp_path):
    from recgraph.ranking import Ranker, RankingBatch, register_ranker

    global _PopularityRanker

    class _PopularityRanker(Ranker):  # noqa: F811 - defined here, importable by name below
        name = "popularity_plugin"

        def _fit(self, train: RankingBatch, valid: RankingBatch | None) -> None:
            self.column = train.feature_names.index("cand_pop")

        def _score(self, batch: RankingBatch) -> np.ndarray:
            return batch.features[:, batch.feature_names.index("cand_pop")]

    register_ranker("popularity_plugin", f"{__name__}:_PopularityRanker")
    config = ranked_config(
        ["item_knn", "popular"], name="popularity_plugin", min_gain=-1.0, blend=False
    )
    config.ranker.params = {}
    q = QuestionModel("feed", config).fit(feed_graph)
    assert q.ranked, q.ranking_note
    assert type(q.ranking.ranker).__name__ == "_PopularityRanker"
    user = int(np.argmax(q.history.counts))
    ids = q.recommend([user], 5).ids[0]
    pool = q.pool(np.array([user]), q.config.ranker.depth)
    pop = q.ranking.features.pop[pool.ids[pool.valid]]
    assert ids.tolist() == pool.ids[pool.valid][np.argsort(-pop, kind="stable")][:5].tolist()
    q.save(tmp_path / "q")
    again = QuestionModel.load("feed", q.config, tmp_path / "q")
    assert again.recommend([user], 5).ids.tolist() == q.recommend([user], 5).ids.tolist()


def test_a_bad_ranker_parameter_fails_before_training():
    from recgraph.errors import ConfigError
    from recgraph.pipeline import Pipeline

    bad = {
        "feed": {
            "retrievers": [{"name": "item_knn"}],
            "ranker": {"params": {"no_such_parameter": 1}},
        }
    }
    with pytest.raises(ConfigError, match="feed.ranker.*no_such_parameter"):
        Pipeline(bad)


# ---------------------------------------------------------------------- reasons of ranked answers
def test_ranked_accounts_are_explained_by_people_you_follow_and_follow_back():
    from recgraph.data.interactions import Interactions
    from recgraph.pipeline.explain import ranked_reasons
    from recgraph.pipeline.names import Names
    from recgraph.ranking.features import CandidateFeatures

    edges = [("u", "a"), ("u", "b"), ("u", "c"), ("a", "x"), ("b", "x"), ("c", "x"), ("x", "u")]
    edges += [("a", "y"), ("z", "u"), ("a", "w")]
    graph = Interactions.from_arrays(*zip(*edges, strict=True), one_sided=True)
    features = CandidateFeatures(graph)
    index = {name: graph.users.get(name) for name in "uxyzw"}
    ids = np.array([index["x"], index["y"], index["z"], index["w"]])
    reasons = ranked_reasons(features, index["u"], ids, Names(), graph.users.ids, top=2)
    first = reasons[0]
    assert first.code == "connections" and len(first.via) == 2 and set(first.via) <= {"a", "b", "c"}
    assert (
        first.text
        == f"followed by {first.via[0]}, {first.via[1]} and 1 more person you follow; follows you"
    )
    unnamed = ranked_reasons(features, index["u"], ids[:1], Names())[0]
    assert unnamed.text == "followed by 3 people you follow; follows you"
    assert reasons[1] is None  # one common followee: the retriever names them instead
    assert reasons[2].text == "follows you" and reasons[2].code == "follows_you"
    assert reasons[3] is None


def test_ranked_feed_items_are_explained_by_people_like_you_and_this_week():
    from recgraph.data.interactions import Interactions
    from recgraph.pipeline.explain import ranked_reasons
    from recgraph.pipeline.names import Names
    from recgraph.ranking.features import DAY, CandidateFeatures

    end = 1_000 * DAY
    rows = []
    # me and four look-alikes share films 1-3; the look-alikes all liked "fresh" last week
    # and "classic" long ago; "fad" is new this week among strangers only
    for user in ("me", "l1", "l2", "l3", "l4"):
        rows += [(user, f"f{i}", end - 400 * DAY) for i in (1, 2, 3)]
    for user in ("l1", "l2", "l3", "l4"):
        rows += [(user, "fresh", end - DAY), (user, "classic", end - 300 * DAY)]
    for user in ("s1", "s2", "s3", "s4", "s5"):
        rows += [(user, "fad", end - 2 * DAY)]
    rows += [("s1", "old", end - 500 * DAY)]
    src, dst, ts = zip(*rows, strict=True)
    data = Interactions.from_arrays(src, dst, timestamp=np.asarray(ts, dtype=np.int64))
    features = CandidateFeatures(data)
    items = [data.items.get(name) for name in ("fresh", "classic", "fad", "old")]
    reasons = ranked_reasons(features, data.users.get("me"), np.array(items), Names())
    assert reasons[0].text == "popular this week among people like you"
    assert reasons[1].text == "liked by 4 people with tastes like yours"
    assert reasons[2].text == "popular this week" and reasons[2].code == "popular"
    assert reasons[3] is None


def test_a_ranked_answer_carries_the_rankers_reasons(feed_graph):
    config = ranked_config(["item_knn", "popular"])
    question = QuestionModel("feed", config).fit(feed_graph)
    if not question.ranked:
        question.ranking.active = True  # explain what the ranker would answer
    user = str(feed_graph.users.ids[int(np.argmax(np.diff(feed_graph.csr().indptr)))])
    answer = question.answer(user, 10)
    assert answer.results
    texts = {r.reason for r in answer.results}
    allowed_prefixes = ("because you", "popular", "liked by", "picked for you")
    assert all(t.startswith(allowed_prefixes) for t in texts), texts
    assert any("popular this week" in t or "liked by" in t for t in texts), (
        "no result was explained by what the ranker saw"
    )


def test_a_ranker_that_stands_down_leaves_the_best_retriever_alone(feed_graph):
    # popular weighs 20x in the merge: the merge is about popularity alone
    retrievers = ["item_knn", {"name": "popular", "weight": 20.0}]
    question = QuestionModel("feed", ranked_config(retrievers, min_gain=10.0)).fit(feed_graph)
    report = question.ranking.report
    alone = {key: report[f"valid_ndcg@20_{key}"] for key in ("item_knn", "popular")}
    best = max(alone, key=alone.get)
    if alone[best] <= report["valid_ndcg@20_merge"]:
        pytest.skip("the merge beat every retriever alone on this graph's validation users")
    assert question.ranked and question.ranking.order == best and report["order"] == best
    single = QuestionModel(
        "feed",
        QuestionConfig(retrievers=[{"name": best}], fallback=[], cold_start_min_interactions=1),
    ).fit(feed_graph)
    users = np.arange(0, feed_graph.n_users, 3)
    ranked, own = question.recommend(users, 10).ids, single.recommend(users, 10).ids
    # the same list; where the retriever alone runs short, the others' candidates follow
    found = own >= 0
    np.testing.assert_array_equal(ranked[found], own[found])
    assert found.mean() > 0.9


def test_the_rankers_reason_adds_to_a_retrievers_history_reason():
    from recgraph.pipeline.explain import combined
    from recgraph.pipeline.results import Reason

    history = Reason("because you liked “Heat”", "liked", ("m1",))
    ranked = Reason("popular this week among people like you", "similar_users")
    both = combined(history, ranked)
    assert both.text == "because you liked “Heat”; popular this week among people like you"
    assert both.code == "liked" and both.via == ("m1",)
    assert combined(Reason("popular", "popular"), ranked) == ranked
    assert combined(history, None) == history
    people = Reason("followed by @a, @b and 3 more people you follow", "connections")
    assert combined(Reason("followed by @a", "connections"), people) == people


def test_the_nested_check_judges_the_ranker_on_labels_it_never_learnt_from(feed_graph, monkeypatch):
    """The folds the ranker learns from are cut from the outer rest; the outer labels decide."""
    sliced = spy_on_label_slices(monkeypatch)
    config = ranked_config(["item_knn", "popular"], label_split="both")
    question = QuestionModel("feed", config).fit(feed_graph)
    report = question.ranking.report
    assert report["check"] == "nested"
    assert report["label_split"] == "temporal_per_user+random_per_user"
    outer = [s for s in sliced if s[0] is feed_graph]
    inner = [s for s in sliced if s[0] is not feed_graph]
    assert len(outer) == 2 and len(inner) == 2
    for (_, outer_rest, outer_labels, how), (data, rest, labels, inner_how) in zip(
        outer, inner, strict=True
    ):
        assert how == inner_how and data is outer_rest
        # what the ranker learnt from (the inner rest and labels) never holds a deciding label
        assert not (_pairs(rest) | _pairs(labels)) & (_pairs(outer_labels) - _pairs(outer_rest))
    for kind in ("temporal_per_user", "random_per_user"):
        assert f"valid_ndcg@20_ranker[{kind}]" in report


def test_label_kinds_follow_the_graph_and_its_timestamps(feed_graph, follow_graph):
    from recgraph.pipeline.config import RankerSpec

    spec = RankerSpec()
    assert feed_graph.has_timestamps
    # served (no holdout given), a feed is judged by what comes next: one cut for everyone
    assert ranking_module.label_kinds(feed_graph, spec) == ["temporal_global"]
    assert not ranking_module.nested_check(feed_graph, spec)
    # on split files, the slice is cut as the test was
    for holdout, kind in (
        ("random_per_user", "random_per_user"),
        ("temporal_global", "temporal_global"),
        ("temporal_per_user", "temporal_per_user"),
        ("leave_last_n", "temporal_per_user"),
        ("future", "temporal_global"),
    ):
        assert ranking_module.label_kinds(feed_graph, spec, holdout) == [kind]
    assert ranking_module.nested_check(feed_graph, spec, "random_per_user")
    # an explicit label_split is kept whatever the holdout
    assert ranking_module.label_kinds(
        feed_graph, RankerSpec(label_split="random_per_user"), "temporal_global"
    ) == ["random_per_user"]
    both = RankerSpec(label_split="both")
    assert ranking_module.label_kinds(feed_graph, both) == ["temporal_per_user", "random_per_user"]
    no_times = feed_graph.subset(np.arange(len(feed_graph)))
    object.__setattr__(no_times, "timestamp", None)
    assert ranking_module.label_kinds(no_times, both) == ["random_per_user"]
    # one time for every row (an import that stamped them all): nothing to cut at
    one_time = feed_graph.subset(np.arange(len(feed_graph)))
    object.__setattr__(one_time, "timestamp", np.full(len(feed_graph), 5, dtype=np.int64))
    assert ranking_module.label_kinds(one_time, spec) == ["random_per_user"]
    expected = "temporal_global" if follow_graph.has_timestamps else "random_per_user"
    assert ranking_module.label_kinds(follow_graph, spec) == [expected]
    # an account graph keeps its one cut in time whatever the holdout
    assert ranking_module.label_kinds(follow_graph, spec, "random_per_user") == [expected]
    assert not ranking_module.nested_check(follow_graph, spec)
    assert ranking_module.label_kinds(feed_graph, RankerSpec(label_split="random_per_user")) == [
        "random_per_user"
    ]


def test_a_time_cut_that_would_hold_out_nothing_gives_way_to_a_random_slice(
    feed_graph, follow_graph
):
    from recgraph.pipeline.config import RankerSpec

    spec = RankerSpec()
    for graph in (feed_graph, follow_graph):
        # a quarter of the rows stamped at one latest moment (more than the 20% slice):
        # the cut at the 80% quantile keeps them all in training and labels nothing
        stamped = graph.subset(np.arange(len(graph)))
        times = np.arange(len(graph), dtype=np.int64)
        times[-(len(graph) // 4) :] = len(graph)
        object.__setattr__(stamped, "timestamp", times)
        assert not splits.holds_out_by_time(times, spec.label_fraction)
        assert ranking_module.label_kinds(stamped, spec) == ["random_per_user"]
        _, labels, how = ranking_module.label_slice(stamped, spec)
        assert how == "random_per_user" and len(labels) > 0
        # spread times: the cut holds out the latest rows as before
        spread = graph.subset(np.arange(len(graph)))
        object.__setattr__(spread, "timestamp", np.arange(len(graph), dtype=np.int64))
        assert splits.holds_out_by_time(spread.timestamp, spec.label_fraction)
        assert ranking_module.label_kinds(spread, spec) == ["temporal_global"]


def test_a_learnt_order_is_kept_only_when_no_label_kind_loses_more_than_the_tolerance(
    feed_graph,
):
    """Kept when ahead on average over the kinds and never more than `tolerance` behind."""
    kinds = ("temporal_per_user", "random_per_user")
    for tolerance in (0.0, 0.5):
        question = QuestionModel(
            "feed",
            ranked_config(
                ["item_knn", "popular"], stand_down="merge", tolerance=tolerance, label_split="both"
            ),
        ).fit(feed_graph)
        report = question.ranking.report
        learnt = ["ranker"] + [f"blend_{b}" for b in ranking_module.BLENDS]

        def margins(order, report=report):
            out = []
            for kind in kinds:
                best = max(
                    report[f"valid_ndcg@20_{o}[{kind}]"] for o in ("merge", "item_knn", "popular")
                )
                out.append((report[f"valid_ndcg@20_{order}[{kind}]"] - best, best))
            return out

        expected = any(
            all(m >= -tolerance * best for m, best in margins(o))
            and np.mean([m for m, _ in margins(o)]) > 0
            for o in learnt
        )
        assert question.ranked == expected, (tolerance, report)


def test_a_fused_order_lies_between_the_ranker_and_the_retriever():
    from recgraph.pipeline.ranking import CandidatePool, _fused
    from recgraph.ranking.features import RetrieverColumns

    ids = np.array([[10, 11, 12, 13]])
    # the retriever ranks 10 > 11 > 12 > 13; the ranker the reverse
    view = RetrieverColumns(
        scores=np.array([4.0, 3.0, 2.0, 1.0]), ranks=np.array([1, 2, 3, 4]), user_best=np.ones(4)
    )
    pool = CandidatePool(np.array([0]), ids, np.zeros((1, 4)), np.zeros((1, 4)), {"r": view})
    ranker = np.array([0.0, 1.0, 2.0, 3.0])

    def order(blend):
        return ids[0][np.argsort(-_fused(pool, ranker, "r", blend), kind="stable")].tolist()

    assert order(1.0) == [13, 12, 11, 10]
    assert order(0.0) == [10, 11, 12, 13]
    assert order(0.75)[0] == 13 and order(0.25)[0] == 10


@pytest.mark.parametrize(
    "ids", [np.array([[4, 5, 6], [7, 8, 9]]), np.array([[4, 5, -1], [7, -1, -1]])]
)
def test_a_pools_entries_are_its_valid_cells_in_row_order_full_or_padded(ids):
    from recgraph.pipeline.ranking import CandidatePool

    pool = CandidatePool(np.array([0, 1]), ids, ids * 10.0, np.zeros(ids.shape), {})
    rows, cols = np.nonzero(ids >= 0)
    assert pool.entries(pool.merged).tolist() == (ids[rows, cols] * 10.0).tolist()
    assert pool.entry_rows.tolist() == rows.tolist()
    spread = pool.spread(pool.entries(pool.ids), -1, np.int64)
    assert spread.dtype == np.int64 and spread.tolist() == ids.tolist()


def test_a_blended_stage_saves_and_loads(ranked_feed, tmp_path):
    stage = ranked_feed.ranking
    stage.blend, stage.base = 0.5, "item_knn"
    try:
        stage.save(tmp_path / "s")
        again = ranking_module.RankingStage.load(stage.spec, tmp_path / "s")
    finally:
        stage.blend, stage.base = 1.0, None
    assert (again.blend, again.base) == (0.5, "item_knn")


def test_a_global_time_slice_is_checked_on_its_own_folds(feed_graph):
    from recgraph.pipeline.config import RankerSpec

    assert not ranking_module.nested_check(feed_graph, RankerSpec(label_split="temporal_global"))
    assert ranking_module.nested_check(feed_graph, RankerSpec(label_split="random_per_user"))
    assert ranking_module.nested_check(
        feed_graph, RankerSpec(label_split="temporal_global", check="nested")
    )


def test_an_account_graph_with_times_is_labelled_after_one_cut_for_everyone():
    from recgraph.data.interactions import Interactions
    from recgraph.pipeline.config import RankerSpec

    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 40, 600), rng.integers(0, 40, 600)
    keep = src != dst
    # user 0 was last active long before the others: a per-user slice would label its old ties
    ts = np.where(src == 0, rng.integers(0, 100, 600), rng.integers(100, 1000, 600))
    graph = Interactions.from_indices(
        src[keep], dst[keep], n_users=40, one_sided=True, timestamp=ts[keep]
    )
    rest, labels, how = ranking_module.label_slice(graph, RankerSpec())
    assert how == "temporal_global"
    assert labels.timestamp.min() > rest.timestamp.max()
    assert not (labels.src == 0).any()
    # a feed: served, one cut too; on a random split a random slice of each user's (see
    # label_kinds); no times: random per user
    items = Interactions.from_indices(
        src, dst, n_users=40, n_items=40, timestamp=ts, one_sided=False
    )
    assert ranking_module.label_slice(items, RankerSpec())[2] == "temporal_global"
    random = ranking_module.label_slice(items, RankerSpec(), holdout="random_per_user")
    assert random[2] == "random_per_user" and (random[1].src == 0).any()
    untimed = Interactions.from_indices(src[keep], dst[keep], n_users=40, one_sided=True)
    assert ranking_module.label_slice(untimed, RankerSpec())[2] == "random_per_user"


def test_a_ranker_saved_before_newer_account_features_still_serves(tmp_path):
    from recgraph.data.interactions import Interactions
    from recgraph.pipeline.ranking import RankingStage
    from recgraph.ranking.base import RankingBatch
    from recgraph.ranking.features import CandidateFeatures, feature_names
    from recgraph.ranking.registry import create_ranker

    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, 30, 300), rng.integers(0, 30, 300)
    keep = src != dst
    graph = Interactions.from_indices(src[keep], dst[keep], n_users=30, one_sided=True)
    features = CandidateFeatures(graph)
    users, items = np.repeat(np.arange(30), 5), rng.integers(0, 30, 150)
    names = feature_names("follows", [])
    old = tuple(n for n in names if n not in ("ppr_out", "ppr_undirected", "cn_undirected"))
    matrix = features.matrix(users, items, {}, depth=10)[:, [names.index(n) for n in old]]
    labels = (rng.random(150) < 0.3).astype(np.int8)
    ranker = create_ranker("gbdt_ranker", FAST).fit(RankingBatch(users, items, matrix, old, labels))
    ranker.save(tmp_path / "ranker")
    stage = RankingStage(ranked_config(["adamic_adar"]).ranker, ranker, features, [])
    stage.ranker = type(ranker).load(tmp_path / "ranker")
    pool = ranking_module.CandidatePool(
        users=np.arange(30),
        ids=items.reshape(30, 5),
        merged=np.zeros((30, 5)),
        sources=np.zeros((30, 5), dtype=np.int64),
    )
    batch = stage.batch(pool)
    assert batch.feature_names == old
    np.testing.assert_allclose(
        stage.ranker.score(batch), ranker.score(batch.rows(np.ones(150, bool)))
    )
    ids, _, _ = stage.rank(pool, 3)
    assert ids.shape == (30, 3) and (ids >= 0).all()


def test_a_held_out_friendship_labels_both_friends():
    from recgraph.data.interactions import Interactions
    from recgraph.pipeline.ranking import _liked_matrix

    pairs = (np.array([0, 1, 2]), np.array([1, 2, 3]))
    friends = Interactions.from_indices(*pairs, n_users=4, one_sided=True, directed=False)
    truth = _liked_matrix(friends, "positive").toarray()
    assert truth[0, 1] == truth[1, 0] == 1 and truth[3, 2] == 1
    assert truth.sum() == 6 and set(np.unique(truth)) == {0.0, 1.0}
    follows = Interactions.from_indices(*pairs, n_users=4, one_sided=True, directed=True)
    assert _liked_matrix(follows, "positive").toarray()[1, 0] == 0, "a follow labels its follower"


def test_time_cut_folds_are_successive_earlier_periods_each_judged(feed_graph, monkeypatch):
    """Folds of a time slice are not copies: each is the slice before the last, and each
    period is a check of its own in the stand-down (``[kind@fold]``)."""
    sliced = spy_on_label_slices(monkeypatch)
    config = ranked_config(["item_knn", "popular"], label_split="temporal_global", folds=3)
    question = QuestionModel("feed", config).fit(feed_graph)
    assert len(sliced) == 3
    assert sliced[0][0] is feed_graph
    for (_, rest, labels, _), (data, _, earlier, _) in zip(sliced, sliced[1:], strict=False):
        assert data is rest  # the next fold is cut from this one's rest
        assert earlier.timestamp.max() <= labels.timestamp.min()
        assert not _pairs(earlier) & _pairs(labels)
    report = question.ranking.report
    judged = [key for key in report if key.startswith("valid_ndcg@20_ranker[")]
    assert judged == [
        "valid_ndcg@20_ranker[temporal_global]",
        "valid_ndcg@20_ranker[temporal_global@1]",
        "valid_ndcg@20_ranker[temporal_global@2]",
    ]


def test_a_request_is_ranked_as_the_batch_ranks_it_bit_for_bit(feed_graph):
    """One user's answer takes the request paths (its own walks, paths and feature rows);
    in a batch of two, the general ones the ranker was trained on: the same ids, the same
    score bits. On a friendship graph (its one matrix read for every neighbourhood sum) and
    on a feed."""
    from recgraph.data.interactions import Interactions

    rng = np.random.default_rng(0)
    src, dst = np.nonzero(np.triu(rng.random((160, 160)) < 0.08, 1))
    friends = Interactions.from_indices(src, dst, n_users=160, one_sided=True, directed=False)
    accounts = QuestionModel(
        "who_to_follow",
        ranked_config([{"name": "adamic_adar", "min_score": 0.0}, "ppr"], min_gain=-1.0, depth=40),
    ).fit(friends)
    feed = QuestionModel(
        "feed", ranked_config(["ease", {"name": "item_knn", "min_score": 0.0}], min_gain=-1.0)
    ).fit(feed_graph)
    for question in (accounts, feed):
        assert question.ranked and question.ranking.order == "ranker"
        users = np.flatnonzero(question.warm(np.arange(len(question.users))))[:12]
        for user, other in zip(users[:-1], users[1:], strict=True):
            alone = question.recommend([user], 10)
            batch = question.recommend([user, other], 10)
            np.testing.assert_array_equal(alone.ids[0], batch.ids[0])
            np.testing.assert_array_equal(
                alone.scores[0].view(np.uint32), batch.scores[0].view(np.uint32)
            )
            assert (alone.ids[0] >= 0).sum() >= 5
            # and the ranker read the same features, to the bit (a tree rarely shows a last bit)
            depth = question.ranking.spec.depth
            one = question.ranking.batch(question.pool(np.array([user]), depth))
            two = question.ranking.batch(question.pool(np.array([user, other]), depth))
            mine = two.users == user
            np.testing.assert_array_equal(one.items, two.items[mine])
            np.testing.assert_array_equal(
                one.features.view(np.uint32), two.features[mine].view(np.uint32)
            )


def test_a_user_asked_twice_in_one_batch_gets_the_same_ranked_answer_twice(feed_graph):
    config = ranked_config(["item_knn", "popular"], min_gain=-1.0, blend=False)
    question = QuestionModel("feed", config).fit(feed_graph)
    assert question.ranked and question.ranking.order == "ranker"
    users = np.argsort(-question.history.counts)[:2]
    alone = question.recommend(users, 5)
    twice = question.recommend(np.r_[users[0], users[1], users[0]], 5)
    np.testing.assert_array_equal(twice.ids[0], alone.ids[0])
    np.testing.assert_array_equal(twice.ids[2], alone.ids[0])
    np.testing.assert_array_equal(twice.ids[1], alone.ids[1])


def _friendships(n: int = 160, p: float = 0.08, seed: int = 0):
    from recgraph.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    src, dst = np.nonzero(np.triu(rng.random((n, n)) < p, 1))
    return Interactions.from_indices(src, dst, n_users=n, one_sided=True, directed=False)


def test_the_ppr_features_read_the_ppr_retrievers_walk_when_the_question_runs_one(tmp_path):
    """With a PPR retriever walking either way at the features' restart, ``ppr_undirected``
    is its score of the pair and ``ppr_undirected_vs_best`` that over its best (no power
    iteration per request); with another walk, or a stage saved before, the exact ones."""
    from recgraph.pipeline.ranking import RankingStage, ppr_source
    from recgraph.ranking.pagerank import ppr_pairs

    friends = _friendships()
    question = QuestionModel(
        "who_to_follow",
        ranked_config([{"name": "adamic_adar", "min_score": 0.0}, "ppr"], min_gain=-1.0, depth=40),
    ).fit(friends)
    stage = question.ranking
    assert stage.ppr_key == "ppr" == ppr_source(question.models, question.main_keys)
    users = np.flatnonzero(question.warm(np.arange(len(question.users))))[:5]
    pool = question.pool(users, 40)
    batch = stage.batch(pool)
    column = {name: batch.features[:, i] for i, name in enumerate(batch.feature_names)}
    walked = pool.columns["ppr"]
    np.testing.assert_array_equal(column["ppr_undirected"], walked.scores.astype(np.float32))
    np.testing.assert_array_equal(column["ppr_out"], column["ppr_undirected"])  # one walk
    expected = np.where(walked.user_best > 0, walked.scores / walked.user_best, 0.0)
    np.testing.assert_allclose(column["ppr_undirected_vs_best"], expected, rtol=1e-6)
    # the exact features differ from the walk's (a push with a tolerance), so the source
    # matters: a stage saved before the key existed keeps reading the exact ones
    stage.save(tmp_path / "stage")
    saved = (tmp_path / "stage" / "stage.json").read_text()
    (tmp_path / "stage" / "stage.json").write_text(saved.replace('"ppr_key": "ppr"', '"x": 0'))
    old = RankingStage.load(stage.spec, tmp_path / "stage")
    assert old.ppr_key is None
    exact = old.batch(pool)
    features = stage.features
    either = features.derived("walks")[1]
    want, _ = ppr_pairs(either, batch.users, batch.items, tied=features.either)
    at = exact.feature_names.index("ppr_undirected")
    np.testing.assert_allclose(exact.features[:, at], want.astype(np.float32))
    assert not np.array_equal(exact.features[:, at], column["ppr_undirected"])
    # a pool without the walk the ranker learnt from is refused, not read exactly instead
    del pool.columns["ppr"]
    with pytest.raises(ValueError, match="lacks"):
        stage.batch(pool)
    # another walk is another feature: no key, the exact PPR
    along = QuestionConfig(
        retrievers=[{"name": "ppr", "params": {"walk": "out"}}, {"name": "adamic_adar"}]
    )
    assert ppr_source(QuestionModel("who_to_follow", along).new_retrievers(), ["ppr"]) is None
    # and the switch back to the exact features
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ranking_module, "PPR_FROM_RETRIEVER", False)
        assert ppr_source(question.models, question.main_keys) is None


def test_retrievers_explain_only_what_the_rankers_reason_does_not_replace(monkeypatch):
    """The ranker's reason naming the people replaces a retriever's: the retriever is not
    asked about those results, and every reason reads as when it was asked about all."""
    from recgraph.pipeline.explain import combined, ranked_reasons
    from recgraph.pipeline.names import Names

    question = QuestionModel(
        "who_to_follow",
        ranked_config([{"name": "adamic_adar", "min_score": 0.0}, "ppr"], min_gain=-1.0, depth=40),
    ).fit(_friendships())
    model = question.models["adamic_adar"]
    asked: list[int] = []
    real = type(model).explain

    def spy(self, user, candidates, top=3):
        asked.extend(int(c) for c in candidates)
        return real(self, user, candidates, top)

    monkeypatch.setattr(type(model), "explain", spy)
    explainer, names = question.explainer, Names()
    replaced = 0
    for user in np.flatnonzero(question.warm(np.arange(len(question.users))))[:20]:
        result = question.recommend([user], 10)
        valid = result.ids[0] >= 0
        ids, sources = result.ids[0][valid], result.sources[0][valid]
        origin = result.origin[0][valid]
        asked.clear()
        lazy = explainer.reasons(user, ids, sources, origin, False, names, question.ranking)
        asked_lazily = list(asked)
        plain = explainer.reasons(user, ids, sources, origin, False, names, None)
        said = ranked_reasons(question.ranking.features, user, ids, names, question.users.ids)
        assert lazy == [combined(p, s) for p, s in zip(plain, said, strict=True)]
        settled = {int(i) for i, s in zip(ids, said, strict=True) if s and s.code == "connections"}
        assert not settled & set(asked_lazily)
        replaced += len(settled)
    assert replaced > 0


@pytest.mark.parametrize("method", ["rrf", "score", "priority"])
def test_the_merges_own_ranks_are_the_ones_a_lookup_in_each_list_finds(method):
    """A pool reads each retriever's rank and score of its candidates from the merge itself:
    the same as looking every merged candidate up in every list, and the same merge."""
    from recgraph.pipeline.candidates import RankedList
    from recgraph.pipeline.merge import merge_lists, merge_with_ranks
    from recgraph.pipeline.ranking import _rank_lookup

    rng = np.random.default_rng(3)
    lists = []
    for j, width in enumerate((7, 5, 9)):
        ids = np.stack([rng.choice(20, width, replace=False) for _ in range(4)])
        ids[rng.random(ids.shape) < 0.2] = -1
        scores = np.where(ids >= 0, rng.random(ids.shape), -np.inf).astype(np.float32)
        lists.append(RankedList(ids, scores, np.where(ids >= 0, 1 << j, 0)))
    args = ([p.ids for p in lists], [p.scores for p in lists], [p.sources for p in lists])
    plain = merge_lists(*args, k=21, method=method, weights=[1.0, 0.5, 2.0])
    *merged, where = merge_with_ranks(*args, k=21, method=method, weights=[1.0, 0.5, 2.0])
    for a, b in zip(plain, merged, strict=True):
        np.testing.assert_array_equal(a, b)
    for part, (rank, score) in zip(lists, where, strict=True):
        want_rank, want_score = _rank_lookup(merged[0], part)
        np.testing.assert_array_equal(rank, want_rank)
        np.testing.assert_array_equal(score, want_score)
    assert all((rank > 0).any() for rank, _ in where)


def test_people_like_you_are_the_same_counted_in_a_table_or_by_a_sort(feed_graph, monkeypatch):
    from recgraph.pipeline import explain
    from recgraph.ranking.features import CandidateFeatures

    features = CandidateFeatures(feed_graph)
    users = range(feed_graph.n_users)
    monkeypatch.setattr(explain, "DENSE_COUNT", 10**9)
    table = [explain._people_like_you(features, u) for u in users]
    monkeypatch.setattr(explain, "DENSE_COUNT", 0)
    sort = [explain._people_like_you(features, u) for u in users]
    assert sum(len(x) for x in table) > 0
    for a, b in zip(table, sort, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_ranking_stage_compiles_its_reason_kernels_when_built(monkeypatch):
    """Built at load, a ranking stage leaves the ranked reasons' kernels compiled: a worker's
    first ranked answer does not load them from numba's cache while others wait."""
    from recgraph.pipeline import explain_kernels
    from recgraph.pipeline.ranking import RankingStage

    warmed = []
    monkeypatch.setattr(explain_kernels, "warm_up", lambda: warmed.append(True))
    RankingStage(ranked_config(["adamic_adar"]).ranker, None, None, [])
    assert warmed == [True]
