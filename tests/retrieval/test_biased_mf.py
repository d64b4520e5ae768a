import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.errors import ConfigError
from recgraph.retrieval import Retriever
from recgraph.retrieval.biased_mf import BiasedMF, feedback_targets
from tests.retrieval.conformance import RetrieverConformance, two_cliques
from tests.retrieval.fold_in import moved_users
from tests.retrieval.play_counts import plays

#: The settings these tests were written for: Adam and sampled negatives (the
#: defaults are now Adagrad with the Gramian term, tested on their own below).
ADAM_SAMPLED = {
    "optimizer": "adam",
    "negatives": 4,
    "unobserved_weight": 0.0,
    "regularization": 0.01,
    "partial_learning_rate": None,
}
SMALL = {
    **ADAM_SAMPLED,
    "epochs": 100,
    "learning_rate": 0.05,
    "factors": 4,
    "regularization": 0.1,
    "negatives": 1,
}


def communities(seed: int = 0, users: int = 40, items: int = 30, density: float = 0.5):
    """Two communities: users 0..39 like items 0..29 at random, users 40..79 items 30..59."""
    rng = np.random.default_rng(seed)
    src, dst = [], []
    for community in range(2):
        for u in range(users):
            for i in range(items):
                if rng.random() < density:
                    src.append(str(community * users + u))
                    dst.append(str(community * items + i))
    return Interactions.from_arrays(src, dst)


class TestBiasedMF(RetrieverConformance):
    model_name = "biased_mf"
    params = SMALL
    seeded = True


def test_targets_scale_ratings_and_prefer_explicit_then_latest():
    data = Interactions.from_arrays(
        ["a", "a", "a", "b", "b", "c", "c"],
        ["x", "y", "z", "x", "x", "y", "y"],
        value=[1, 1, 1, 5, 2, 1, 1],
        kind=np.array(
            [Kind.LIKE, Kind.DISLIKE, Kind.VIEW, Kind.RATING, Kind.RATING, Kind.LIKE, Kind.VIEW],
            np.int8,
        ),
        timestamp=[0, 0, 0, 1, 2, 0, 5],
    )
    src, dst, target, weight = feedback_targets(data, rating_range=(1.0, 5.0), view_target=0.3)
    assert (weight == 1).all()
    got = {
        (data.users.ids[u], data.items.ids[i]): round(float(t), 4)
        for u, i, t in zip(src, dst, target, strict=True)
    }
    # b rated x 5 then 2: the later rating wins, scaled to (2-1)/4; c's later view loses to the like
    assert got == {
        ("a", "x"): 1.0,
        ("a", "y"): 0.0,
        ("a", "z"): 0.3,
        ("b", "x"): 0.25,
        ("c", "y"): 1.0,
    }


def test_play_counts_are_likes_weighted_by_log_confidence():
    # one pair played 1 + 6 times over two rows, one 1,000 times: targets 1, weights grow
    # with the log of the summed count (Hu et al.), never read as ratings on a scale
    data = plays(["a", "a", "a", "b"], ["x", "x", "y", "x"], [1, 6, 1000, 1])
    src, dst, target, weight = feedback_targets(
        data, rating_range=(0.0, 1.0), view_target=1.0, count_epsilon=1.0
    )
    got = {
        (data.users.ids[u], data.items.ids[i]): (float(t), round(float(w), 3))
        for u, i, t, w in zip(src, dst, target, weight, strict=True)
    }
    # log2(1 + 7) = 3 and log2(1001) for a, scaled so that a's weights average 1
    a_x, a_y = 3.0, np.log2(1001)
    assert got == {
        ("a", "x"): (1.0, round(2 * a_x / (a_x + a_y), 3)),
        ("a", "y"): (1.0, round(2 * a_y / (a_x + a_y), 3)),
        ("b", "x"): (1.0, 1.0),
    }


def test_ratings_below_the_liked_threshold_are_not_likes():
    # a value column declared as ratings (value_kind) is a rating whatever the row's kind
    data = Interactions.from_arrays(
        ["a", "a"], ["x", "y"], value=[1, 5], value_kind=ValueKind.RATING
    )
    model = BiasedMF(SMALL).fit(data)
    assert model.rating_range_ == (1.0, 5.0)
    _, _, target, _ = feedback_targets(data, model.rating_range_, 1.0)
    assert target.tolist() == [0.0, 1.0]


def test_beats_popularity_on_play_counts():
    """Play counts far above any rating scale: the defect of issue 11 (nDCG 0.0003)."""
    from recgraph.evaluation import evaluate
    from tests.retrieval.play_counts import play_count_split

    train, test = play_count_split()
    report = evaluate(["popular", BiasedMF()], train, test, (20,), progress=False)
    popular, mf = (r.metrics["ndcg@20"] for r in report.results)
    assert mf > popular


def test_dislikes_pull_an_item_down():
    data = communities()
    item = data.items.index_of("5")
    likers = set(data.src[data.dst == item].tolist())
    dislikers = [u for u in range(40) if u not in likers][:10]
    dislikes = Interactions.from_arrays(
        data.users.external(dislikers),
        ["5"] * len(dislikers),
        kind=Kind.DISLIKE,
        users=data.users,
        items=data.items,
    )
    params = {"epochs": 30, "learning_rate": 0.02, "factors": 4}
    plain = BiasedMF(params).fit(data)
    taught = BiasedMF(params).fit(data.concat(dislikes))
    assert taught.item_bias_[item] < plain.item_bias_[item]
    assert (
        taught.predict(dislikers, [item] * 10).mean() < plain.predict(dislikers, [item] * 10).mean()
    )


def test_partial_fit_grows_tables_and_leaves_other_users_close():
    data = communities()
    model = BiasedMF(
        ADAM_SAMPLED, epochs=30, learning_rate=0.02, factors=4, partial_learning_rate=0.002
    )
    model.fit(data)
    before = model.predict(np.repeat(np.arange(80), 60), np.tile(np.arange(60), 80))
    new = Interactions.from_arrays(
        ["new"] * 3 + ["5"], ["0", "1", "2", "new_item"], users=model.users, items=model.items
    )
    assert model.partial_fit(new) is model
    assert model.user_factors_.shape == (81, 4) and model.item_factors_.shape == (61, 4)
    assert len(model.user_bias_) == 81 and len(model.item_bias_) == 61
    assert model.users.ids[-1] == "new" and model.items.ids[-1] == "new_item"
    assert set(model.items.external(model.seen_items(80))) == {"0", "1", "2"}
    assert 60 in model.seen_items(model.users.index_of("5"))
    others = np.setdiff1d(np.arange(80), [model.users.index_of("5")])
    after = model.predict(np.repeat(others, 60), np.tile(np.arange(60), len(others)))
    before = before.reshape(80, 60)[others].ravel()
    assert np.abs(after - before).max() < 0.05
    assert np.corrcoef(after, before)[0, 1] > 0.99


def test_partial_fit_teaches_a_new_user():
    data = communities()
    model = BiasedMF(ADAM_SAMPLED, epochs=30, learning_rate=0.02, factors=4, fold_in_epochs=60).fit(
        data
    )
    liked = [str(i) for i in range(40, 50)]  # community B's items
    model.partial_fit(Interactions.from_arrays(["new"] * len(liked), liked))  # other id maps
    user = model.users.index_of("new")
    ids, _ = model.recommend([user], k=10)
    community = model.items.external(ids[0]).astype(int) >= 30
    assert community.sum() >= 8, model.items.external(ids[0])


def test_partial_fit_after_load(tmp_path):
    model = BiasedMF(SMALL).fit(two_cliques("items"))
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    new = Interactions.from_arrays(["0"], ["1"], users=model.users, items=model.items)
    model.partial_fit(new)
    loaded.partial_fit(new)
    np.testing.assert_allclose(loaded.item_factors_, model.item_factors_, atol=1e-6)
    assert loaded.n_updates_ == 1


def test_vectors_reproduce_scores():
    model = BiasedMF(SMALL).fit(two_cliques("items"))
    dots = model.user_vectors() @ model.item_vectors().T + model.global_bias_
    np.testing.assert_allclose(dots, model._score(np.arange(10)), rtol=1e-5, atol=1e-5)


def test_bad_rating_range_is_a_config_error():
    with pytest.raises(ConfigError, match="rating_range"):
        BiasedMF(rating_range=(5, 1))


def test_fold_in_changes_only_that_user():
    model = BiasedMF(SMALL).fit(two_cliques("items"))
    bias = model.item_bias_.copy()
    assert moved_users(model, "3", "7") == [3]
    np.testing.assert_array_equal(model.item_bias_, bias)


def test_negative_popularity_samples_popular_unseen_items_more():
    # Item "hit" is seen by users 0..29, the 20 "rare" items by nobody but user 30.
    src = [str(u) for u in range(30)] + ["30"] * 20
    dst = ["hit"] * 30 + [f"rare{i}" for i in range(20)]
    data = Interactions.from_arrays(src + ["31"], dst + ["rare0"])
    hit, user = data.items.index_of("hit"), data.users.index_of("31")
    shares = {}
    for alpha in (0.0, 1.0):
        model = BiasedMF({**SMALL, "negatives": 2000, "negative_popularity": alpha}).fit(data)
        users, items = model._sample_negatives(np.array([user]), np.random.default_rng(0))
        assert (users == user).all()
        assert not (items == data.items.index_of("rare0")).any()  # seen: never a negative
        shares[alpha] = np.mean(items == hit)
    assert shares[0.0] < 0.1  # uniform: 1 in 20 unseen items
    assert shares[1.0] > 0.35  # (30 + 1) / (31 + 19 * 2) = 0.45


def test_adagrad_learns_the_communities_and_partial_fit_keeps_other_users():
    data = communities()
    params = {**SMALL, "epochs": 30, "optimizer": "adagrad", "learning_rate": 0.1}
    model = BiasedMF(params).fit(data)
    assert not np.allclose(model.user_factors_, BiasedMF(SMALL, epochs=30).fit(data).user_factors_)
    scores = model._score(np.arange(80))
    assert scores[:40, :30].mean() > scores[:40, 30:].mean() + 0.2
    assert scores[40:, 30:].mean() > scores[40:, :30].mean() + 0.2
    assert moved_users(model, "3", "40") == [3]


def test_unknown_optimizer_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer"):
        BiasedMF(optimizer="sgd")


GRAMIAN = {**SMALL, "negatives": 0, "unobserved_weight": 8.0, "optimizer": "adagrad"}


class TestBiasedMFUnobservedWeight(RetrieverConformance):
    model_name = "biased_mf"
    params = {**GRAMIAN, "learning_rate": 0.1}


def test_unobserved_weight_gradients_match_autograd():
    """The written-out gradients of the all-items (Gramian) term equal autograd's."""
    import torch

    k, n_users, n_items = 4, 6, 9
    generator = torch.Generator().manual_seed(0)
    user_table = torch.nn.Parameter(torch.randn(n_users, k + 1, generator=generator))
    item_table = torch.nn.Parameter(torch.randn(n_items, k + 1, generator=generator))
    global_bias = torch.nn.Parameter(torch.tensor([0.2]))
    users, items = torch.tensor([0, 1, 1, 3, 5, 0]), torch.tensor([2, 3, 4, 4, 8, 0])
    ys = torch.tensor([1.0, 0.0, 1.0, 0.5, 1.0, 1.0])
    weights = torch.tensor([1.0, 1.0, 2.0, 1.0, 1.0, 1.0])
    shares = torch.tensor([0.1, 0.2, 0.3, 0.1, 0.4, 0.1])
    model = BiasedMF(ADAM_SAMPLED, factors=k, regularization=0.05)
    with torch.no_grad():
        model._step(user_table, item_table, global_bias, users, items, ys, weights, False, shares)
    written = [t.grad.clone() for t in (user_table, item_table, global_bias)]
    for table in (user_table, item_table, global_bias):
        table.grad = None
    a, b, size = user_table[users], item_table[items], len(users)
    predicted = (a[:, :k] * b[:, :k]).sum(1) + a[:, k] + b[:, k] + global_bias
    every_item = (
        user_table[:, :k] @ item_table[:, :k].T
        + user_table[:, k : k + 1]
        + item_table[:, k][None, :]
        + global_bias
    )
    loss = (
        (weights * (predicted - ys) ** 2).sum()
        + 0.05 * ((a**2).sum() + (b**2).sum())
        + (shares * (every_item[users] ** 2).sum(1)).sum()
    ) / size
    loss.backward()
    references = (user_table.grad, item_table.grad, global_bias.grad)
    for mine, reference in zip(written, references, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5)


def test_unobserved_weight_alone_learns_the_communities():
    data = communities()
    model = BiasedMF({**GRAMIAN, "epochs": 30, "learning_rate": 0.1}).fit(data)
    scores = model._score(np.arange(80))
    # Every user's own community's items score above every other item.
    assert (scores[:40, :30].min(axis=1) > scores[:40, 30:].max(axis=1)).all()
    assert (scores[40:, 30:].min(axis=1) > scores[40:, :30].max(axis=1)).all()
    # Without any zero targets a regression on likes only learns "everything is 1".
    flat = BiasedMF({**GRAMIAN, "epochs": 30, "unobserved_weight": 0.0}).fit(data)
    flat_scores = flat._score(np.arange(80))
    assert abs(flat_scores[:40, :30].mean() - flat_scores[:40, 30:].mean()) < 0.1


def test_unobserved_weight_fold_in_changes_only_that_user():
    model = BiasedMF({**GRAMIAN, "learning_rate": 0.1}).fit(communities())
    assert moved_users(model, "3", "40") == [3]


def test_unobserved_weight_partial_fit_teaches_a_new_user_and_keeps_the_others():
    data = communities()
    model = BiasedMF(
        {**GRAMIAN, "epochs": 30, "learning_rate": 0.1, "partial_learning_rate": 0.003}
    ).fit(data)
    before = model._score(np.arange(80))
    liked = [str(i) for i in range(40, 50)]  # community B's items
    model.partial_fit(Interactions.from_arrays(["new"] * len(liked), liked))
    user = model.users.index_of("new")
    ids, _ = model.recommend([user], k=10)
    assert (model.items.external(ids[0]).astype(int) >= 30).sum() >= 8
    # Only the liked items moved, a little (the all-items term stays off the others).
    after = model._score(np.arange(80))
    assert np.abs(after - before).max() < 0.05
    assert np.corrcoef(after.ravel(), before.ravel())[0, 1] > 0.99
