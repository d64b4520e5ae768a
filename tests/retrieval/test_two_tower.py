import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.retrieval import Retriever
from recgraph.retrieval.two_tower import TwoTower
from tests.retrieval.conformance import QUIET_TRAINING, RetrieverConformance, two_cliques

SMALL = {
    **QUIET_TRAINING,
    "embedding_dim": 8,
    "layers": [16, 8],
    "epochs": 40,
    "batch_size": 16,
    "learning_rate": 0.02,
    "temperature": 0.2,
}


class TestTwoTower(RetrieverConformance):
    model_name = "two_tower"
    params = SMALL


def timed_cliques() -> tuple[Interactions, ItemFeatures]:
    """The items cliques with timestamps (item 9 liked late) and titles per clique."""
    base = two_cliques("items")
    timestamp = 1_000_000 + np.arange(len(base)) * 100
    data = Interactions.from_arrays(
        base.users.external(base.src),
        base.items.external(base.dst),
        kind=base.kind,
        timestamp=timestamp,
    )
    titles = [f"red apple {i}" if i < 5 else f"blue ocean {i}" for i in range(10)]
    features = ItemFeatures.from_records([str(i) for i in range(10)], titles)
    return data, features


def test_titles_and_time_reach_the_towers_and_survive_save_load(tmp_path):
    data, features = timed_cliques()
    model = TwoTower(SMALL).fit(data, item_features=features)
    assert {"red", "apple", "blue", "ocean"} <= set(model.vocabulary_)
    assert model.time_scale_ is not None
    assert "time_bucket.weight" in model.weights_ and "words.weight" in model.weights_
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    np.testing.assert_allclose(
        loaded.query_vectors(np.arange(10)),
        model.query_vectors(np.arange(10)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_same_seed_same_vectors():
    data, features = timed_cliques()
    a = TwoTower(SMALL).fit(data, item_features=features)
    b = TwoTower(SMALL).fit(data, item_features=features)
    np.testing.assert_array_equal(a.item_vectors(), b.item_vectors())
    np.testing.assert_array_equal(a.user_vectors(), b.user_vectors())


def test_query_time_moves_the_query_and_is_clipped_to_training():
    data, _ = timed_cliques()
    model = TwoTower(SMALL).fit(data)
    early = model.query_vectors([0], at=float(data.timestamp.min()))
    late = model.query_vectors([0], at=float(data.timestamp.max()))
    later = model.query_vectors([0], at=float(data.timestamp.max()) + 1e9)
    assert not np.allclose(early, late)
    np.testing.assert_allclose(late, later)
    off = TwoTower(SMALL, use_time=False).fit(data)
    assert off.time_scale_ is None and "time_bucket.weight" not in off.weights_


def test_a_new_item_gets_a_vector_from_its_title():
    data, features = timed_cliques()
    model = TwoTower({**SMALL, "epochs": 80}).fit(data, item_features=features)
    new = Interactions.from_arrays(["0"], ["fresh"], users=model.users, items=model.items)
    described = ItemFeatures.from_records(["fresh"], ["red apple fresh"])
    model.fold_in(new, item_features=described)
    item = model.items.index_of("fresh")
    vectors = model.item_vectors()
    assert np.abs(vectors[item]).sum() > 0
    # it looks like the red-apple clique rather than the blue-ocean one
    red = np.linalg.norm(vectors[:5].mean(0) - vectors[item])
    blue = np.linalg.norm(vectors[5:10].mean(0) - vectors[item])
    assert red < blue


def test_genres_reach_the_candidate_tower_place_a_new_item_and_survive_save_load(tmp_path):
    data, _ = timed_cliques()
    # titles say nothing; only the genres tell the cliques apart
    features = ItemFeatures.from_records(
        [str(i) for i in range(10)],
        ["film"] * 10,
        [("Drama", "War") if i < 5 else ("Comedy",) for i in range(10)],
    )
    model = TwoTower({**SMALL, "epochs": 80, "use_genres": True}).fit(data, item_features=features)
    assert model.genres_ == ["Comedy", "Drama", "War"]
    assert model.weights_["genres.weight"].shape == (3, SMALL["embedding_dim"])
    assert "genres.weight" not in TwoTower(SMALL).fit(data, item_features=features).weights_
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    assert loaded.genres_ == model.genres_
    probe = ItemFeatures.from_records(["x", "y"], ["film", "film"], [("War",), ("Comedy",)])
    np.testing.assert_allclose(
        loaded.candidate_vectors(np.full(2, 1 << 40), probe),
        model.candidate_vectors(np.full(2, 1 << 40), probe),
        rtol=1e-5,
        atol=1e-6,
    )
    new = Interactions.from_arrays(["0"], ["fresh"], users=model.users, items=model.items)
    model.fold_in(new, item_features=ItemFeatures.from_records(["fresh"], ["film"], [("War",)]))
    vectors = model.item_vectors()
    item = model.items.index_of("fresh")
    war = np.linalg.norm(vectors[:5].mean(0) - vectors[item])
    comedy = np.linalg.norm(vectors[5:10].mean(0) - vectors[item])
    assert war < comedy


@pytest.mark.parametrize("flag", ["log_q_correction", "remove_accidental_hits"])
def test_loss_options_train(flag):
    model = TwoTower({**SMALL, flag: False}).fit(two_cliques("items"))
    ids, _ = model.recommend([0, 5], k=1)
    assert ids[:, 0].tolist() == [1, 6]


def test_last_seen_asks_each_user_at_its_latest_training_interaction(tmp_path):
    data, _ = timed_cliques()
    model = TwoTower({**SMALL, "serving_time": "last_seen"}).fit(data)
    last = model.user_last_time_
    assert last is not None and last.shape == (data.n_users,)
    liked = data.positives()
    for user in range(data.n_users):
        assert last[user] == liked.timestamp[liked.src == user].max()
    assert last.min() < data.timestamp.max()  # not everyone is asked at the end of training
    served = model.user_vectors()
    now = model.query_vectors(np.arange(data.n_users))
    np.testing.assert_allclose(served, now, rtol=1e-5, atol=1e-6)
    # the same weights asked at each user's own time under "now" give the same vectors
    clock = model.config.model_copy(update={"serving_time": "now"})
    lasting, model.config = model.config, clock
    at_own_time = np.vstack([model.query_vectors([u], at=float(last[u])) for u in range(10)])
    at_the_end = model.query_vectors(np.arange(10))
    early = float(data.timestamp.min())
    at_start = model.query_vectors([0], at=early)
    model.config = lasting
    np.testing.assert_allclose(served[:10], at_own_time, rtol=1e-5, atol=1e-6)
    assert not np.allclose(served[:10], at_the_end)
    # a time before the user's latest interaction is kept as it is
    np.testing.assert_allclose(model.query_vectors([0], at=early), at_start, rtol=1e-5)
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.user_last_time_, last)
    np.testing.assert_allclose(
        loaded.query_vectors(np.arange(10)), served[:10], rtol=1e-5, atol=1e-6
    )


def test_refit_by_default_only_after_a_temporal_validation_slice():
    from tests.retrieval.test_biased_mf import communities

    base = communities()
    data = Interactions.from_arrays(
        base.users.external(base.src),
        base.items.external(base.dst),
        timestamp=1_000_000 + np.random.default_rng(0).permutation(len(base)) * 60,
    )
    params = {**SMALL, "epochs": 6, "validation_fraction": 0.2, "batch_size": 64}
    temporal = TwoTower(params, validation_method="temporal_global").fit(data)
    assert TwoTower(params).config.refit is None
    assert "validation_run" in temporal.training_  # trained again on all of train
    assert temporal.training_["epochs_run"] == temporal.training_["validation_run"]["best_epoch"]
    random = TwoTower(params).fit(data)
    assert "validation_run" not in random.training_
    forced = TwoTower(params, refit=False, validation_method="temporal_global").fit(data)
    assert "validation_run" not in forced.training_
