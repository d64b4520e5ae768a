import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval import Retriever
from recgraph.retrieval.bpr import BPR
from tests.retrieval.conformance import RetrieverConformance, two_cliques

SMALL = {"factors": 4, "iterations": 100, "learning_rate": 0.05}


class TestBPR(RetrieverConformance):
    model_name = "bpr"
    params = SMALL


def test_fold_in_changes_only_that_user():
    model = BPR(SMALL).fit(two_cliques("items"))
    users, items = model.user_factors_.copy(), model.item_factors_.copy()
    model.fold_in(Interactions.from_arrays(["3"], ["7"], users=model.users, items=model.items))
    changed = np.flatnonzero(np.abs(model.user_factors_ - users).max(axis=1) > 0)
    assert changed.tolist() == [3]
    np.testing.assert_array_equal(model.item_factors_, items)
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
