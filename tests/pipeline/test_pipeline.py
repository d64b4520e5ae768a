import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind
from recgraph.errors import InputError, NotFittedError
from recgraph.evaluation import evaluate
from recgraph.evaluation.pipeline_retriever import QuestionRetriever
from recgraph.pipeline import Pipeline, QuestionModel, merge_lists
from recgraph.pipeline.config import QuestionConfig
from recgraph.serving.registry import ModelRegistry
from tests.retrieval.conformance import two_cliques as conformance_cliques


# ---------------------------------------------------------------------- merge
def lists(rows):
    ids = np.array(rows, dtype=np.int64)
    return ids, np.where(ids >= 0, 1.0, -np.inf).astype(np.float32)


def test_rrf_fuses_ranks_and_keeps_every_source():
    a_ids, a_scores = lists([[1, 2, 3]])
    b_ids, b_scores = lists([[3, 1, -1]])
    ids, scores, sources, origin = merge_lists(
        [a_ids, b_ids],
        [a_scores, b_scores],
        [np.where(a_ids >= 0, 1, 0), np.where(b_ids >= 0, 2, 0)],
        k=4,
        method="rrf",
        rrf_k=0.0,
    )
    # 1: 1/1 + 1/2, 3: 1/3 + 1/1, 2: 1/2
    assert ids[0].tolist() == [1, 3, 2, -1]
    assert scores[0][:3] == pytest.approx([1.5, 1 + 1 / 3, 0.5])
    assert sources[0][:3].tolist() == [3, 3, 1]
    assert origin[0][0] == 0 and origin[0][1] == 1  # the list that gave most


def test_priority_keeps_the_first_list_then_fills():
    a_ids = np.array([[5, -1, -1]])
    b_ids = np.array([[7, 5, 6]])
    ids, scores, sources, origin = merge_lists(
        [a_ids, b_ids],
        [np.array([[9.0, -np.inf, -np.inf]]), np.array([[3.0, 2.0, 1.0]])],
        [np.array([[1, 0, 0]]), np.array([[2, 2, 2]])],
        k=3,
        method="priority",
    )
    assert ids[0].tolist() == [5, 7, 6]
    assert scores[0].tolist() == [9.0, 3.0, 1.0]
    assert origin[0].tolist() == [0, 1, 1]
    assert sources[0].tolist() == [3, 2, 2]


def test_a_single_list_keeps_its_own_scores():
    ids, scores, *_ = merge_lists(
        [np.array([[4, 2]])], [np.array([[0.8, 0.3]])], [np.array([[1, 1]])], k=2, method="rrf"
    )
    assert ids[0].tolist() == [4, 2] and scores[0] == pytest.approx([0.8, 0.3])


# ---------------------------------------------------------------------- two cliques
def two_cliques():
    """The conformance graph's two 5-cliques of follows (both directions) with one missing edge
    each, 0->1 and 5->6, plus a lonely follower 10->0 (one follow, no paths) and account 11."""
    cliques = conformance_cliques("follows")
    src, dst = np.r_[cliques.src, 10], np.r_[cliques.dst, 0]
    return Interactions.from_indices(src, dst, n_users=12, one_sided=True)


def test_the_missing_edge_is_suggested_with_its_reason_and_source():
    question = QuestionModel(
        "who_to_follow",
        QuestionConfig(
            retrievers=[{"name": "adamic_adar", "min_score": 0.0}, {"name": "common_neighbors"}],
            fallback=["popular"],
        ),
    ).fit(two_cliques())
    answer = question.answer("0", 1)
    best = answer.results[0]
    assert best.id == "1" and not best.fallback and not answer.cold
    assert set(best.retrievers) == {"adamic_adar", "common_neighbors"}
    assert best.reason.startswith("followed by ") and best.reason_code == "connections"
    assert set(best.via) <= {"2", "3", "4"} and len(best.via) == 2


@pytest.fixture
def adamic_adar_then_popular() -> QuestionModel:
    """Who to follow from Adamic-Adar (every path scored), topped up by popularity."""
    return QuestionModel(
        "who_to_follow",
        QuestionConfig(
            retrievers=[{"name": "adamic_adar", "min_score": 0.0}], fallback=["popular"]
        ),
    ).fit(two_cliques())


def test_short_lists_are_topped_up_by_the_fallback_chain(adamic_adar_then_popular):
    question = adamic_adar_then_popular
    answer = question.answer("0", 5)
    assert answer.results[0].id == "1" and not answer.results[0].fallback
    rest = answer.results[1:]
    assert rest and all(r.fallback and r.retrievers == ("popular",) for r in rest)
    assert all(r.reason == "popular" for r in rest)  # a warm user: not "new user"
    ids = [r.id for r in answer.results]
    assert "0" not in ids and not {"2", "3", "4"} & set(ids)  # never self, never followed


def test_unknown_and_cold_users_get_the_fallback_not_an_error():
    question = QuestionModel(
        "who_to_follow",
        QuestionConfig(
            retrievers=[{"name": "adamic_adar", "min_score": 0.0}],
            fallback=["popular"],
            cold_start_min_interactions=2,
        ),
    ).fit(two_cliques())
    for user, known in (("nobody", False), ("10", True)):
        answer = question.answer(user, 3)
        assert answer.cold and answer.known is known
        assert len(answer.results) == 3
        assert all(r.reason == "popular: new user" and r.fallback for r in answer.results)
    assert "0" not in [r.id for r in question.answer("10", 3).results]  # what 10 follows


def test_exclude_drops_feedback_that_arrived_after_training(adamic_adar_then_popular):
    question = adamic_adar_then_popular
    answer = question.answer("0", 3, exclude=["1", "not-an-account"])
    assert "1" not in [r.id for r in answer.results]


# ---------------------------------------------------------------------- the feed
def test_dislikes_and_seen_items_are_never_in_the_feed(trained, small_store):
    data = small_store.interactions_graph()
    feed = trained.questions["feed"]
    counts = np.bincount(data.src[data.kind == Kind.DISLIKE], minlength=data.n_users)
    user = int(np.argmax(counts))
    user_id = str(data.users.ids[user])
    had = set(data.items.external(data.dst[data.src == user]).tolist())
    answer = trained.feed(user_id, 50)
    assert len(answer.results) == 50 and not answer.cold
    assert not had & {r.id for r in answer.results}
    assert feed.history.counts[user] >= feed.config.cold_start_min_interactions


def test_feed_reasons_name_liked_items_by_title(trained):
    feed = trained.questions["feed"]
    user = str(feed.users.ids[int(np.argmax(feed.history.counts))])
    answer = trained.feed(user, 5)
    liked = [r for r in answer.results if r.reason_code == "liked"]
    assert liked, [r.reason for r in answer.results]
    assert liked[0].reason.startswith("because you liked “On ")
    assert all(v.startswith("post:") for v in liked[0].via)


def test_handles_resolve_to_accounts_and_reasons_use_handles(trained, small_store):
    accounts = small_store.accounts_frame()
    row = accounts.iloc[3]
    by_handle = trained.suggest_accounts("@" + row["handle"].upper(), 5)
    by_id = trained.suggest_accounts(row["external_id"], 5)
    assert by_handle.user == row["external_id"]
    assert [r.id for r in by_handle.results] == [r.id for r in by_id.results]
    graph = [r for r in by_id.results if r.reason_code == "connections"]
    assert graph and "@" in graph[0].reason and graph[0].label


def test_similar_items_exclude_the_item_and_unknown_items_raise(trained):
    results = trained.similar_items("post:000001", 5)
    assert results and all(r.id != "post:000001" for r in results)
    assert results[0].retrievers == ("item_knn",) and results[0].reason_code == "similarity"
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    with pytest.raises(KeyError):
        trained.similar_items("nope")


def test_save_load_round_trip_answers_the_same(trained, tmp_path):
    trained.save(tmp_path / "p")
    assert not list((tmp_path / "p").rglob("*.pkl"))
    loaded = Pipeline.load(tmp_path / "p")
    for user in ("did:synth:00007", "nobody"):
        assert loaded.suggest_accounts(user, 7) == trained.suggest_accounts(user, 7)
        assert loaded.feed(user, 7) == trained.feed(user, 7)


def test_publish_through_the_registry(trained, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    version = registry.publish(trained, data=trained.snapshots, metrics={"feed/recall@10": 0.1})
    manifest = registry.manifest(version)
    assert manifest["model"] == "pipeline" and manifest["graph_kind"] == "follows+items"
    assert manifest["data"]["rows"] > 0 and "feed" in manifest["data"]
    folder = registry.local_copy(version) / "model"
    assert Pipeline.load(folder).feed("nobody", 3) == trained.feed("nobody", 3)


def test_an_untrained_question_or_an_empty_store_is_a_clear_error(trained, tmp_path):
    from recgraph.data.store import Store

    with pytest.raises(InputError, match="nothing to train"):
        Pipeline().fit_store(Store(f"sqlite:///{tmp_path / 'empty.db'}"))
    only_follows = Pipeline().fit(follows=two_cliques())
    with pytest.raises(NotFittedError, match="no trained 'feed'"):
        only_follows.feed("0")


def test_the_question_evaluates_like_any_retriever(small_store):
    from recgraph.data.splits import edge_holdout

    graph = small_store.follows_graph()
    train, test = edge_holdout(graph, 0.1, seed=0)
    report = evaluate(
        ["popular", "adamic_adar", QuestionRetriever(question="who_to_follow")], train, test,
        (10,), progress=False,
    )  # fmt: skip
    names = [r.model for r in report.results]
    assert names == ["popular", "adamic_adar", "pipeline:who_to_follow"]
    recall = {name: report.result(name).metrics["recall@10"] for name in names}
    # adamic_adar ranks first; the fallback only replaces its zero-score (no path) tail
    assert recall["pipeline:who_to_follow"] > recall["popular"]
    assert recall["pipeline:who_to_follow"] == pytest.approx(recall["adamic_adar"], abs=0.03)
    assert report.result("pipeline:who_to_follow").invalid_recommendations == 0
