"""The rules every answer of a question follows, whatever retrievers it has.

Ported from the feed rules that used to live in retrieval/feed.py, plus the
defects a new user found (issue 11): reasons citing disliked items, own posts
in the feed, cold-start answers credited to retrievers that could not have
produced them, candidates filtered after the cut.
"""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind
from recgraph.errors import ConfigError
from recgraph.pipeline import QuestionModel
from recgraph.pipeline.config import QuestionConfig
from recgraph.retrieval import register_retriever
from recgraph.retrieval.base import Retriever
from tests.retrieval.conformance import two_cliques


def feed(retrievers=("item_knn",), fallback=("popular",), **fields) -> QuestionModel:
    specs = [{"name": r} if isinstance(r, str) else r for r in retrievers]
    return QuestionModel(
        "feed", QuestionConfig(retrievers=specs, fallback=list(fallback), **fields)
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return two_cliques("items")


# ---------------------------------------------------------------------- cold start
def test_cold_users_get_the_chain_alone(data):
    q = feed(cold_start_min_interactions=30).fit(data)
    result = q.recommend([0], 3)
    assert result.cold.tolist() == [True]
    assert (result.origin[0] == 1).all(), "the popular fallback supplied everything"
    popularity = q.models["popular"].cold_start_scores()
    expected = [i for i in np.argsort(-popularity, kind="stable") if i not in {0, 2, 3, 4}][:3]
    assert result.ids[0].tolist() == expected


def test_an_unknown_user_is_never_credited_to_a_personalised_retriever(data):
    # item_knn in the chain cannot know a user it never saw: popular answers alone
    config = QuestionConfig(retrievers=[{"name": "ease"}], fallback=["item_knn", "popular"])
    q = QuestionModel("feed", config).fit(data)
    answer = q.answer("nobody", 3)
    assert answer.cold and not answer.known and len(answer.results) == 3
    assert {r.retrievers for r in answer.results} == {("popular",)}
    assert {r.reason_code for r in answer.results} == {"new_user"}


def test_unknown_accounts_get_popular_accounts_named_popular():
    follows = two_cliques("follows")
    config = QuestionConfig(
        retrievers=[{"name": "adamic_adar", "min_score": 0.0}], fallback=["popular"]
    )
    q = QuestionModel("who_to_follow", config).fit(follows)
    answer = q.answer("stranger", 4)
    assert [r.retrievers for r in answer.results] == [("popular",)] * 4


def test_an_account_that_is_only_followed_is_not_cold():
    # b and c follow a; a follows nobody yet. The walk either way knows a (follow b back)
    follows = Interactions.from_arrays(
        ["b", "c", "b", "d"], ["a", "a", "d", "c"], one_sided=True, directed=True
    )
    config = QuestionConfig(retrievers=[{"name": "ppr", "min_score": 0.0}], fallback=[])
    q = QuestionModel("who_to_follow", config).fit(follows)
    a = follows.users.index_of("a")
    assert q.warm(np.array([a])).tolist() == [True]
    answer = q.answer("a", 3)
    assert not answer.cold and {r.retrievers for r in answer.results} == {("ppr",)}
    assert len(answer.results) == 3, "b, c and d are reached either way"
    # a user tied to nobody at all is still cold
    lonely = QuestionModel(
        "who_to_follow", config.model_copy(update={"cold_start_min_interactions": 3})
    ).fit(follows)
    assert lonely.warm(np.array([a])).tolist() == [False]


def test_a_chain_model_with_its_own_cold_start_answers_unknown_users(data):
    config = QuestionConfig(
        retrievers=[{"name": "item_knn"}],
        fallback=["biased_mf"],
    )
    q = QuestionModel("feed", config)
    q.specs["biased_mf"].params.update(epochs=30, factors=4, negatives=1)
    q.fit(data)
    result = q.recommend([-1], 3)
    bias = q.models["biased_mf"].cold_start_scores()
    assert result.ids[0].tolist() == np.argsort(-bias, kind="stable")[:3].tolist()


# ---------------------------------------------------------------------- exclusion
def test_warm_users_never_see_seen_or_disliked(data):
    q = feed(cold_start_min_interactions=3).fit(data)
    result = q.recommend(np.arange(10), 10)
    seen = data.seen()
    for user in range(10):
        got = set(result.ids[user][result.ids[user] >= 0].tolist())
        assert not got & set(seen[user].indices.tolist())
    assert 7 not in result.ids[2].tolist(), "user 2 disliked item 7"
    assert result.ids[0, 0] == 1


def test_exclude_covers_feedback_after_training(data):
    q = feed(cold_start_min_interactions=3).fit(data)
    assert 1 not in q.recommend([0], 3, exclude=[[1]]).ids[0].tolist()
    cold = feed(cold_start_min_interactions=30).fit(data)
    assert not {1, 5} & set(cold.recommend([0], 3, exclude=[[1, 5]]).ids[0].tolist())


def test_cold_start_excludes_dislikes():
    kinds = np.array([Kind.DISLIKE, Kind.LIKE, Kind.LIKE, Kind.LIKE, Kind.LIKE], np.int8)
    data = Interactions.from_arrays(
        ["a", "a", "b", "c", "b"], ["x", "y", "x", "x", "z"], kind=kinds
    )
    q = feed(("popular",), fallback=(), cold_start_min_interactions=0).fit(data)
    answer = q.answer("a", 5)
    assert [r.id for r in answer.results] == ["z"], "x is most popular, but user a disliked it"


def test_own_posts_are_never_in_a_feed():
    # u1 posted p1, the most popular item; u1 has enough history to be warm
    users = ["u1", "u1", "u1", "u2", "u2", "u3", "u3", "u4", "u5"]
    items = ["a", "b", "c", "p1", "a", "p1", "b", "p1", "a"]
    data = Interactions.from_arrays(users, items)
    authors = np.asarray(["" if i != "p1" else "u1" for i in data.items.ids], dtype=object)
    for cold_min in (0, 30):  # personalised and cold-start paths
        q = feed(("item_knn",), cold_start_min_interactions=cold_min).fit(
            data, item_authors=authors
        )
        assert "p1" not in {r.id for r in q.answer("u1", 5).results}
        assert "p1" in {r.id for r in q.answer("u5", 5).results}, "others still get it"


def test_freshness_window_before_the_cut(data):
    now = 100 * 86400.0
    created = np.full(10, now - 10 * 86400)
    created[[6, 8]] = now - 3600  # the only fresh posts
    created[9] = np.nan  # unknown age: never fresh
    q = feed(cold_start_min_interactions=3, max_age_days=2).fit(data, item_created_at=created)
    result = q.recommend([0, 5, -1], 5, now=now)
    for row in result.ids:
        assert set(row[row >= 0].tolist()) <= {6, 8}
    assert result.ids[1][result.ids[1] >= 0].tolist() == [6], "user 5 already has 8"
    with pytest.raises(ConfigError, match="max_age_days"):
        feed(max_age_days=2).fit(data)


def test_allowed_applies_before_the_cut(data):
    # a single retriever is asked for exactly k: a filter after its cut would leave holes
    q = feed(("item_knn",), fallback=(), cold_start_min_interactions=3).fit(data)
    allowed = np.zeros(10, dtype=bool)
    allowed[[6, 8]] = True  # user 0's best (item 1) is not allowed
    result = q.recommend([0], 2, allowed=allowed)
    assert sorted(result.ids[0].tolist()) == [6, 8]


# ---------------------------------------------------------------------- reasons
def test_reasons_cite_only_liked_items_never_low_ratings():
    # u rated a (5) and b (1); both are "similar" to c through v, who liked all three
    data = Interactions.from_arrays(
        ["u", "u", "v", "v", "v", "w", "w"],
        ["a", "b", "a", "b", "c", "a", "b"],
        value=[5, 1, 5, 5, 5, 4, 1],
        kind=Kind.RATING,
    )
    q = feed(("item_knn",), cold_start_min_interactions=1, explain_top=3).fit(data)
    (result,) = q.answer("u", 1).results
    assert result.id == "c" and result.reason_code == "liked"
    assert result.via == ("a",), result.reason
    assert result.reason == "because you rated “a” highly"


def test_reasons_say_what_the_interaction_was():
    data = Interactions.from_arrays(
        ["u", "v", "v"], ["a", "a", "c"], kind=[Kind.VIEW, Kind.LIKE, Kind.LIKE]
    )
    q = feed(("item_knn",), cold_start_min_interactions=1).fit(data)
    (result,) = q.answer("u", 1).results
    assert result.reason == "because you viewed “a”" and result.reason_code == "viewed"


def test_connections_reasons_on_follow_graphs():
    follows = two_cliques("follows")
    config = QuestionConfig(
        retrievers=[{"name": "adamic_adar", "min_score": 0.0}], fallback=["popular"]
    )
    q = QuestionModel("who_to_follow", config).fit(follows)
    first = q.answer("0", 1).results[0]
    assert first.id == "1" and first.reason.startswith("followed by ")
    assert first.reason_code == "connections" and set(first.via) <= {"2", "3", "4"}


# ---------------------------------------------------------------------- a plug-in
class _LastItem(Retriever):
    """A retriever written in a test: every user's best target is the last one."""

    name = "last_item_plugin"

    def _fit(self, train):
        pass

    def _score(self, users):
        return np.tile(np.arange(self.n_items, dtype=np.float32), (len(users), 1))


def test_a_retriever_registered_from_outside_needs_no_pipeline_change(data, tmp_path):
    register_retriever("last_item_plugin", f"{__name__}:_LastItem")
    q = feed(("last_item_plugin",), cold_start_min_interactions=0).fit(data)
    result = q.answer("0", 2)
    assert [r.id for r in result.results] == ["9", "8"]
    assert result.results[0].retrievers == ("last_item_plugin",)
    assert result.results[0].reason == "picked for you by last_item_plugin"
    q.save(tmp_path / "q")
    again = QuestionModel.load("feed", q.config, tmp_path / "q")
    assert again.recommend([0], 2).ids.tolist() == q.recommend([0], 2).ids.tolist()


def test_rows_of_a_matrix_are_the_matrix_itself_only_when_all_in_order():
    import scipy.sparse as sp

    from recgraph.pipeline.question import _rows_of

    matrix = sp.csr_matrix(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert _rows_of(matrix, np.arange(4)) is matrix
    for rows in (np.array([1, 0, 2, 3]), np.array([2]), np.array([0, 1, 2])):
        got = _rows_of(matrix, rows)
        assert got is not matrix
        np.testing.assert_array_equal(got.toarray(), matrix.toarray()[rows])


def test_reasons_read_from_history_via_are_the_ones_explain_gives(monkeypatch):
    """The Explainer asks EASE and item-kNN for the items they cite (``history_via``), not for
    whole explanations: every answer's reasons are the ones read through ``explain``."""
    from recgraph.retrieval.ease import EASE
    from recgraph.retrieval.item_knn import ItemKNN

    rng = np.random.default_rng(3)
    pairs = np.argwhere(rng.random((30, 25)) < 0.35)
    kinds = rng.choice([Kind.RATING, Kind.LIKE, Kind.VIEW], len(pairs))
    data = Interactions.from_arrays(
        [f"u{u}" for u in pairs[:, 0]],
        [f"i{i}" for i in pairs[:, 1]],
        value=rng.integers(1, 6, len(pairs)),
        kind=kinds,
    )
    q = feed(("ease", "item_knn"), cold_start_min_interactions=1, explain_top=3).fit(data)
    users = [f"u{u}" for u in range(30)]
    fast = [[(r.id, r.reason, r.reason_code, r.via) for r in q.answer(u, 8).results] for u in users]
    monkeypatch.delattr(EASE, "history_via")
    monkeypatch.delattr(ItemKNN, "history_via")
    slow = [[(r.id, r.reason, r.reason_code, r.via) for r in q.answer(u, 8).results] for u in users]
    assert fast == slow
    assert sum(code in ("liked", "viewed", "history") for a in fast for _, _, code, _ in a) > 20
