import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval.lightgcn import LightGCN
from tests.retrieval.conformance import QUIET_TRAINING, RetrieverConformance, two_cliques
from tests.retrieval.test_biased_mf import communities

SMALL = {
    **QUIET_TRAINING,
    "dim": 8,
    "layers": 2,
    "epochs": 60,
    "batch_size": 64,
    "learning_rate": 0.05,
}


class TestLightGCN(RetrieverConformance):
    model_name = "lightgcn"
    params = SMALL
    seeded = True


def test_early_stopping_on_validation_keeps_the_best_epoch(tmp_path):
    data = communities()
    params = {**SMALL, "validation_fraction": 0.2, "validate_every": 2, "patience": 2}
    model = LightGCN(params, epochs=40, checkpoint_dir=str(tmp_path)).fit(data)
    summary = model.training_
    assert summary["best_validation_ndcg@20"] > 0.3  # far above chance for two communities
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= 40
    # the best epoch's weights, as safetensors (never a pickled checkpoint)
    from safetensors.numpy import load_file

    best = load_file(str(tmp_path / "lightgcn-best.safetensors"))
    assert best and not list(tmp_path.glob("*.ckpt"))
    # the saved model is npz + JSON, and says how training went
    model.save(tmp_path / "model")
    manifest = (tmp_path / "model" / "model.json").read_text()
    assert "best_validation_ndcg@20" in manifest


def test_recommendations_stay_in_the_community():
    data = communities()
    model = LightGCN({**SMALL, "epochs": 80}).fit(data)
    ids, _ = model.recommend(np.arange(data.n_users), k=5)
    item_community = np.array([int(x) >= 30 for x in data.items.ids])
    user_community = np.array([int(x) >= 40 for x in data.users.ids])
    agree = item_community[ids] == user_community[:, None]
    assert agree.mean() > 0.95


def test_fold_in_gives_a_new_user_the_mean_of_its_items():
    data = two_cliques("items")
    model = LightGCN(SMALL).fit(data)
    new = Interactions.from_arrays(["new"], ["3"], users=model.users, items=model.items)
    model.fold_in(new)
    user = model.users.index_of("new")
    item = model.items.index_of("3")
    np.testing.assert_allclose(model.user_vectors()[user], model.item_vectors()[item], rtol=1e-6)
    ids, _ = model.recommend([user], k=3)
    assert item not in ids[0].tolist()
    assert set(ids[0].tolist()) <= set(range(5))  # the clique of item 3


def test_index_option_serves_through_faiss():
    data = two_cliques("items")
    exact = LightGCN(SMALL).fit(data)
    flat = LightGCN(SMALL, index="faiss_flat").fit(data)
    a, _ = exact.recommend(np.arange(10), k=3)
    b, _ = flat.recommend(np.arange(10), k=3)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])


def test_tracking_without_mlflow_says_which_extra():
    import importlib.util

    import pytest

    from recgraph.errors import ConfigError

    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed: tracking would run")
    with pytest.raises(ConfigError, match=r"recgraph\[mlflow\]"):
        LightGCN(SMALL, track=True).fit(two_cliques("items"))


def test_refit_trains_again_on_everything_for_the_validated_epochs():
    data = communities()
    params = {**SMALL, "validation_fraction": 0.2, "validate_every": 2, "patience": 2}
    model = LightGCN(params, epochs=30, refit=True).fit(data)
    first = model.training_["validation_run"]
    assert model.training_["epochs_run"] == first["best_epoch"]
    assert model.training_["best_validation_ndcg@20"] is None  # the refit has no validation
    assert model.config.validation_fraction == 0.2  # the config is what was asked
