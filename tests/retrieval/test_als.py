import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval import Retriever
from recgraph.retrieval.als import ALS
from tests.retrieval.conformance import RetrieverConformance, two_cliques
from tests.retrieval.fold_in import moved_users
from tests.retrieval.unpaired_ids import with_unpaired_ids

SMALL = {"factors": 4, "iterations": 15, "regularization": 1.0, "num_threads": 1}


class TestALS(RetrieverConformance):
    model_name = "als"
    params = SMALL


class TestALSBM25(RetrieverConformance):
    model_name = "als"
    params = {**SMALL, "weighting": "bm25", "bm25_k1": 1.2, "bm25_b": 0.75}


def test_fold_in_changes_only_that_user():
    model = ALS(SMALL).fit(two_cliques("items"))
    assert moved_users(model, "3", "7") == [3]
    assert 7 in model.seen_items(3)


def test_fold_in_of_a_new_user_needs_no_retraining():
    model = ALS(SMALL).fit(two_cliques("items"))
    items = model.item_factors_.copy()
    model.fold_in(Interactions.from_arrays(["newcomer"] * 3, ["5", "7", "8"]))  # its own id maps
    user = model.users.index_of("newcomer")
    assert user == 10 and model.user_factors_.shape == (11, 4)
    np.testing.assert_array_equal(model.item_factors_, items)
    ids, _ = model.recommend([user], k=2)
    assert set(ids[0].tolist()) == {6, 9}, "the rest of its clique first"
    # the same as implicit's own least-squares solve for that user
    expected = model._implicit_model().recalculate_user(user, model.matrix_[user])
    np.testing.assert_allclose(model.user_factors_[user], expected, rtol=1e-5, atol=1e-6)


def test_partial_fit_grows_items_and_updates_their_vectors():
    model = ALS(SMALL).fit(two_cliques("items"))
    new = Interactions.from_arrays(
        ["0", "1", "2"], ["fresh"] * 3, users=model.users, items=model.items
    )
    model.partial_fit(new)
    fresh = model.items.index_of("fresh")
    assert model.item_factors_.shape == (11, 4)
    assert np.abs(model.item_factors_[fresh]).sum() > 0
    ids, _ = model.recommend([3], k=2)
    assert fresh in ids[0], "a clique-A user now gets the item clique A likes"


def test_npz_round_trip_keeps_fold_in(tmp_path):
    model = ALS(SMALL).fit(two_cliques("items"))
    model.save(tmp_path / "als")
    with np.load(tmp_path / "als" / "state.npz", allow_pickle=False) as state:
        np.testing.assert_array_equal(state["state.user_factors"], model.user_factors_)
    loaded = Retriever.load(tmp_path / "als")
    new = Interactions.from_arrays(["x", "x"], ["0", "2"], users=model.users, items=model.items)
    model.fold_in(new)
    loaded.fold_in(new)
    np.testing.assert_allclose(loaded.user_factors_, model.user_factors_, rtol=1e-5, atol=1e-6)


def test_explain_names_liked_items():
    model = ALS(SMALL).fit(two_cliques("items"))
    (reason,) = model.explain(0, [1], top=2)
    assert len(reason.via) == 2
    assert set(reason.via.tolist()) <= {0, 2, 3, 4}
    assert reason.contributions[0] >= reason.contributions[1] > 0


@pytest.mark.parametrize("weighting", ["binary", "value", "bm25"])
def test_weightings_fit(weighting):
    data = two_cliques("items")
    model = ALS({**SMALL, "weighting": weighting}).fit(data)
    assert model.recommend([0], k=1)[0][0, 0] == 1


def test_explanations_cite_only_liked_items():
    from tests.retrieval.low_ratings import HATED, cited, with_a_hated_twin

    data = with_a_hated_twin()
    model = ALS(SMALL).fit(data)
    assert HATED not in cited(model, data)


def test_incremental_ratings_use_the_scale_of_fit():
    from recgraph.data.interactions import Kind

    data = Interactions.from_arrays(
        ["a", "a", "b"], ["x", "y", "x"], value=[1, 5, 4], kind=Kind.RATING
    )
    model = ALS(SMALL).fit(data)
    assert model.rating_threshold_ == 4.0
    new = Interactions.from_arrays(
        ["b"], ["y"], value=[2], kind=Kind.RATING, users=model.users, items=model.items
    )
    model.fold_in(new)
    from recgraph.retrieval.factors import LOW_RATING_WEIGHT

    row = model.matrix_[model.users.index_of("b")]
    # judged on the 1-5 scale of fit, 2 stars is a low rating, not a like
    assert dict(zip(row.indices.tolist(), row.data.tolist(), strict=True)) == {
        0: 1.0,
        1: LOW_RATING_WEIGHT,
    }


@pytest.mark.parametrize("weighting", ["value", "bm25"])
def test_ids_without_a_pair_change_no_answer(weighting):
    """Users and items the id maps hold without a training pair (a split's test-side ids,
    a catalogue's new items) change no weight, no vector and no answer."""
    data, grown = with_unpaired_ids()
    params = {**SMALL, "weighting": weighting, "bm25_k1": 1.2, "bm25_b": 0.75}
    small, large = ALS(params).fit(data), ALS(params).fit(grown)
    n_users, n_items = data.n_users, data.n_items
    np.testing.assert_array_equal(
        large._confidence()[:n_users, :n_items].toarray(), small._confidence().toarray()
    )
    np.testing.assert_array_equal(large.user_factors_[:n_users], small.user_factors_)
    np.testing.assert_array_equal(large.item_factors_[:n_items], small.item_factors_)
    assert not large.user_factors_[n_users:].any() and not large.item_factors_[n_items:].any()
    everyone = np.arange(n_users)
    np.testing.assert_array_equal(large.recommend(everyone, 5)[0], small.recommend(everyone, 5)[0])
    # what benchmarks/feeds.py hands bare implicit: the matrix fit solves, without the empty ids
    np.testing.assert_array_equal(
        ALS(params).implicit_input(grown).toarray(), small._confidence().toarray()
    )
