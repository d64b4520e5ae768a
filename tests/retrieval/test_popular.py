import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval.popular import Popular
from tests.retrieval.conformance import RetrieverConformance, two_cliques
from tests.retrieval.play_counts import plays


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


def test_every_rating_counts_as_a_view_and_counts_weigh_by_log():
    from recgraph.data.interactions import Kind

    ratings = Interactions.from_arrays(
        ["a", "b", "c"], ["x", "x", "y"], value=[1, 2, 5], kind=Kind.RATING
    )
    from recgraph.retrieval.factors import LOW_RATING_WEIGHT

    # two users watched x (and rated it low), one y: by users, x is the more popular
    assert Popular().fit(ratings).popularity_.tolist() == [2.0, 1.0]
    by_rating = Popular(weight="value").fit(ratings).popularity_
    np.testing.assert_allclose(by_rating, [2 * LOW_RATING_WEIGHT, 1.0])
    played = plays(["a", "b", "c"], ["x", "x", "y"], [1, 1, 1023])
    assert Popular().fit(played).popularity_.tolist() == [2.0, 1.0]
    by_value = Popular(weight="value", count_epsilon=1.0).fit(played).popularity_
    np.testing.assert_allclose(by_value, [2.0, 10.0])


def test_the_ranked_head_answers_as_the_dense_top_k(monkeypatch, tmp_path):
    # the head of RANKED_HEAD targets, minus each user's exclusions: the dense path's ids and
    # scores (ties to the lower index), also when exclusions eat through a head of 8
    import recgraph.retrieval.popular as popular
    from recgraph.retrieval.base import Request, Retriever, rows_as_csr

    rng = np.random.default_rng(3)
    n_users, n_items = 40, 60
    src = rng.integers(0, n_users, 900)
    dst = np.minimum(rng.zipf(1.6, 900) - 1, n_items - 1)  # heavy head, many ties in the tail
    data = Interactions.from_indices(src, dst, n_users=n_users, n_items=n_items)
    for head in (8, 4096):
        monkeypatch.setattr(popular, "RANKED_HEAD", head)
        model = Popular().fit(data)
        users = np.arange(n_users)
        exclude = [rng.choice(n_items, int(rng.integers(0, 12)), replace=False) for _ in users]
        allowed = rng.random(n_items) < 0.8
        for k in (1, 5, 20, 70):
            for kwargs in ({}, {"exclude": exclude}, {"candidates": allowed}):
                got = model.recommend(users, k, **kwargs)
                request = Request(
                    True,
                    None
                    if "exclude" not in kwargs
                    else rows_as_csr(exclude, n_users, n_items, "exclude"),
                    allowed if "candidates" in kwargs else None,
                )
                want = Retriever._recommend(model, users, k, request)
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])
        assert len(model.ranked()) == min(head, n_items)
        model.save(tmp_path / str(head))
        loaded = Popular.load(tmp_path / str(head))
        assert loaded.ranked().tolist() == model.ranked().tolist()
