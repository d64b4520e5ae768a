import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval import Retriever
from recgraph.retrieval.bpr import BPR
from tests.retrieval.conformance import RetrieverConformance, two_cliques
from tests.retrieval.fold_in import moved_users
from tests.retrieval.unpaired_ids import with_unpaired_ids

#: One negative per liked pair: on these 10-node graphs the hardest of several
#: draws is often the held-out answer itself (test_dynamic_negative_* cover it).
SMALL = {"factors": 4, "iterations": 100, "learning_rate": 0.05, "negative_candidates": 1}


class TestBPR(RetrieverConformance):
    model_name = "bpr"
    params = SMALL


def test_fold_in_changes_only_that_user():
    model = BPR(SMALL).fit(two_cliques("items"))
    assert moved_users(model, "3", "7") == [3]
    assert model.user_factors_[3, -1] == 1.0, "the bias column stays 1"


def test_fold_in_of_a_new_user():
    model = BPR(SMALL).fit(two_cliques("items"))
    model.fold_in(Interactions.from_arrays(["newcomer"] * 3, ["5", "7", "8"]))
    user = model.users.index_of("newcomer")
    assert model.user_factors_.shape == (11, 5)
    ids, _ = model.recommend([user], k=2)
    assert set(ids[0].tolist()) == {6, 9}


def test_item_bias_is_the_last_column():
    model = BPR(SMALL).fit(two_cliques("items"))
    np.testing.assert_array_equal(model.item_bias_, model.item_factors_[:, -1])
    assert (model.user_factors_[:, -1] == 1).all()


def test_npz_round_trip(tmp_path):
    model = BPR(SMALL).fit(two_cliques("items"))
    model.save(tmp_path / "bpr")
    loaded = Retriever.load(tmp_path / "bpr")
    np.testing.assert_array_equal(loaded.item_factors_, model.item_factors_)
    assert (loaded.matrix_ != model.matrix_).nnz == 0
    new = Interactions.from_arrays(["x"], ["0"], users=model.users, items=model.items)
    np.testing.assert_array_equal(
        loaded.fold_in(new).user_factors_, model.fold_in(new).user_factors_
    )


def test_negative_sampler_follows_popularity_to_the_power():
    from recgraph.retrieval.bpr import NegativeSampler

    counts = np.array([1.0, 4.0, 0.0, 16.0])
    rng = np.random.default_rng(0)
    uniform = np.bincount(NegativeSampler(counts, 0.0).draw(rng, 40_000), minlength=4) / 40_000
    # uniform over the items with a user: one without (new to the model) has no vector to learn
    np.testing.assert_allclose(uniform, [1 / 3, 1 / 3, 0, 1 / 3], atol=0.01)
    every = np.bincount(NegativeSampler(np.ones(4), 0.0).draw(rng, 40_000), minlength=4) / 40_000
    np.testing.assert_allclose(every, 0.25, atol=0.01)
    by_count = np.bincount(NegativeSampler(counts, 1.0).draw(rng, 40_000), minlength=4) / 40_000
    np.testing.assert_allclose(by_count, counts / counts.sum(), atol=0.01)
    root = np.bincount(NegativeSampler(counts, 0.5).draw(rng, 40_000), minlength=4) / 40_000
    np.testing.assert_allclose(root, [1 / 7, 2 / 7, 0, 4 / 7], atol=0.01)


def _one_hit_and_noise() -> Interactions:
    """40 users: 30 have item ``hit``; each also has 3 of 40 other items at random."""
    rng = np.random.default_rng(1)
    users, items = [], []
    for user in range(40):
        others = rng.choice(40, size=3, replace=False)
        for item in [*(f"i{o}" for o in others), *(["hit"] if user < 30 else [])]:
            users.append(f"u{user}")
            items.append(item)
    return Interactions.from_arrays(users, items)


def test_uniform_negatives_let_the_bias_learn_popularity():
    """Drawn by popularity (``implicit``'s sampler), a hit is a negative as often as a
    positive and its bias learns little; drawn uniformly, it tops the bias."""
    data = _one_hit_and_noise()
    hit = data.items.index_of("hit")
    params = {"factors": 4, "iterations": 30, "learning_rate": 0.05, "negative_candidates": 1}
    uniform = BPR(params).fit(data).item_bias_
    by_popularity = BPR({**params, "negative_exponent": 1.0}).fit(data).item_bias_
    assert np.argmax(uniform) == hit
    gap = uniform[hit] - np.median(uniform)
    assert gap > 1.5 * (by_popularity[hit] - np.median(by_popularity))


def test_fit_is_reproducible():
    data = _one_hit_and_noise()
    a, b = BPR(SMALL).fit(data), BPR(SMALL).fit(data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_dynamic_negative_sampling_learns_from_the_highest_scored_valid_candidate():
    """Of the drawn candidates, only the one the user scores highest moves, never an invalid one."""
    import torch

    from recgraph.retrieval.bpr import BPRConfig, _sgd_epoch

    users = torch.tensor([[1.0, 0.0, 1.0]])
    # item 0 liked; candidates 1, 2, 3 score 0.2, 0.9 and 0.5 for the user, item 4 scores
    # most of all but is marked invalid (the user has it)
    items = torch.tensor(
        [[0.5, 0, 0], [0.2, 0, 0], [0.9, 0, 0], [0.5, 0, 0], [3.0, 0, 0]], dtype=torch.float32
    )
    before = items.clone()
    triples = (
        np.array([0]),
        np.array([0]),
        np.array([[1, 2, 4, 3]]),
        np.array([[True, True, False, True]]),
    )
    cfg = BPRConfig(learning_rate=0.1, regularization=0.0, negative_candidates=4)
    _sgd_epoch(users, items, triples, cfg)
    moved = torch.nonzero((items - before).abs().sum(dim=1)).flatten().tolist()
    assert moved == [0, 2]
    assert items[2, 0] < before[2, 0], "the negative is pushed down"


def test_dynamic_negatives_still_find_the_missing_items():
    model = BPR({**SMALL, "negative_candidates": 3}).fit(two_cliques("items"))
    ids, _ = model.recommend([0, 5], k=1)
    assert ids[:, 0].tolist() == [1, 6]


def test_dense_and_searched_pair_lookups_train_alike(monkeypatch):
    import recgraph.retrieval.bpr as bpr

    data = _one_hit_and_noise()
    dense = BPR({**SMALL, "negative_candidates": 3}).fit(data)
    monkeypatch.setattr(bpr, "DENSE_PAIRS_MAX", 0)
    searched = BPR({**SMALL, "negative_candidates": 3}).fit(data)
    np.testing.assert_array_equal(dense.item_factors_, searched.item_factors_)
    np.testing.assert_array_equal(dense.user_factors_, searched.user_factors_)


def test_ids_without_a_pair_change_no_answer():
    """Users and items the id maps hold without a training pair (a split's test-side ids,
    a catalogue's new items) draw no starting vector and no negative: every other vector
    and answer is the same, and an item without a pair keeps a zero vector and bias."""
    data, grown = with_unpaired_ids(first=True)
    params = {**SMALL, "iterations": 20}
    small, large = BPR(params).fit(data), BPR(params).fit(grown)
    old_users = grown.users.index(data.users.to_array())
    old_items = grown.items.index(data.items.to_array())
    np.testing.assert_array_equal(large.user_factors_[old_users], small.user_factors_)
    np.testing.assert_array_equal(large.item_factors_[old_items], small.item_factors_)
    new_items = np.setdiff1d(np.arange(grown.n_items), old_items)
    assert not large.item_factors_[new_items].any(), "no vector and no bias without a pair"
    new_users = np.setdiff1d(np.arange(grown.n_users), old_users)
    assert not large.user_factors_[new_users, :-1].any()
    assert (large.user_factors_[new_users, -1] == 1).all(), "scored by the item bias alone"
    # among the items with a pair, the same answers (an item without one scores 0, its
    # zero vector: above what a user scores below 0, below what they score above it)
    ids_small, _ = small.recommend(np.arange(data.n_users), 5)
    ids_large, _ = large.recommend(old_users, 5, candidates=old_items)
    np.testing.assert_array_equal(
        grown.items.to_array()[ids_large], data.items.to_array()[ids_small]
    )
    again = BPR(params).fit(grown)
    np.testing.assert_array_equal(again.item_factors_, large.item_factors_)
