"""item_knn's fourth-round options: asymmetric cosine, shrinkage, time decay, row scaling, blend."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.retrieval import Retriever
from recgraph.retrieval.item_knn import (
    FIFTH_ROUND_FIELDS,
    FOURTH_ROUND_FIELDS,
    asymmetric_cosine_knn,
    time_decayed,
)
from tests.retrieval.conformance import RetrieverConformance, two_cliques
from tests.retrieval.test_item_knn import plain_knn

DAY = 86_400


def saved_as_before(model: Retriever, folder, fields: tuple[str, ...]) -> Retriever:
    """``model`` saved, its config stripped of ``fields`` (as older code wrote it), loaded."""
    folder = model.save(folder)
    manifest = json.loads((folder / "model.json").read_text())
    for field in fields:
        del manifest["config"][field]
    (folder / "model.json").write_text(json.dumps(manifest))
    return Retriever.load(folder)


class TestItemKNNAsymmetric(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "similarity": "asymmetric", "asymmetric_alpha": 0.8, "shrink": 1.0}


class TestItemKNNBlend(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "popularity_blend": 0.1, "normalize_rows": True}


def dense_asymmetric(x: np.ndarray, alpha: float, shrink: float) -> np.ndarray:
    squares = (x * x).sum(axis=0)
    with np.errstate(invalid="ignore"):  # the item nobody has: 0 / 0
        return (x.T @ x) / (np.outer(squares**alpha, squares ** (1 - alpha)) + shrink)


def random_matrix(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((40, 30)) < 0.2).astype(np.float64)
    x[:, 7] = 0  # an item nobody has
    return x * rng.integers(1, 4, size=x.shape)


@pytest.mark.parametrize(("alpha", "shrink"), [(0.5, 0.0), (0.8, 0.0), (0.95, 5.0), (0.0, 1.0)])
def test_asymmetric_cosine_is_the_dense_formula(alpha, shrink):
    x = random_matrix()
    got = asymmetric_cosine_knn(sp.csr_matrix(x), k=30, alpha=alpha, shrink=shrink).toarray()
    want = np.nan_to_num(dense_asymmetric(x, alpha, shrink))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not got[7].any() and not got[:, 7].any()


def test_asymmetric_cosine_keeps_the_k_largest_per_row():
    x = random_matrix(1)
    got = asymmetric_cosine_knn(sp.csr_matrix(x), k=4, alpha=0.8).toarray()
    want = dense_asymmetric(x, 0.8, 0.0)
    for i in range(x.shape[1]):
        kept = np.flatnonzero(got[i])
        assert len(kept) <= 4
        if len(kept):  # nothing left out is larger than what was kept
            dropped = np.delete(np.nan_to_num(want[i]), kept)
            assert dropped.max(initial=0) <= got[i, kept].min() + 1e-9


def test_asymmetric_alpha_half_is_implicits_cosine():
    data = two_cliques("items")
    cosine = plain_knn(neighbours=10, similarity="cosine").fit(data).similarity_.toarray()
    half = plain_knn(neighbours=10, similarity="asymmetric").fit(data).similarity_.toarray()
    np.testing.assert_allclose(half, cosine, rtol=1e-5, atol=1e-7)


def test_larger_alpha_favours_popular_candidates():
    # item 0: 6 users; items 1 and 2 each share 2 users with item 0; item 2 has 8 users, item 1 has 2
    users = [0, 1, 2, 3, 4, 5] + [0, 1] + [2, 3, 6, 7, 8, 9, 10, 11]
    items = [0] * 6 + [1] * 2 + [2] * 8
    data = Interactions.from_indices(users, items, n_users=12, n_items=3)
    low = plain_knn(similarity="asymmetric", asymmetric_alpha=0.5).fit(data).similarity_.toarray()
    high = plain_knn(similarity="asymmetric", asymmetric_alpha=1.0).fit(data).similarity_.toarray()
    assert low[0, 1] > low[0, 2]
    np.testing.assert_allclose(high[0, [1, 2]], [2 / 6, 2 / 6], rtol=1e-6)


def test_shrink_needs_a_normalised_similarity():
    with pytest.raises(ValueError, match="shrink"):
        plain_knn(similarity="bm25", shrink=5.0).fit(two_cliques("items"))


def timed():
    users = ["a", "a", "b", "b", "c"]
    items = ["x", "y", "x", "y", "z"]
    times = [0, 0, 10 * DAY, 10 * DAY, 20 * DAY]
    return Interactions.from_arrays(users, items, timestamp=times)


def test_time_decay_halves_per_half_life_before_the_latest_pair():
    data = timed()
    model = plain_knn(neighbours=10)
    matrix = time_decayed(data.positives().csr(), data, half_life_days=10.0).toarray()
    a, b, c = (data.users.index_of(u) for u in "abc")
    x, y, z = (data.items.index_of(i) for i in "xyz")
    np.testing.assert_allclose(matrix[a, [x, y]], [0.25, 0.25])
    np.testing.assert_allclose(matrix[b, [x, y]], [0.5, 0.5])
    np.testing.assert_allclose(matrix[c, z], 1.0)
    # the similarity is built from the decayed pairs, the user's sum from the plain ones
    decayed = plain_knn(neighbours=10, similarity_half_life_days=10.0).fit(data)
    plain = model.fit(data)
    np.testing.assert_array_equal(decayed.matrix_.toarray(), plain.matrix_.toarray())
    assert not np.allclose(decayed.similarity_.toarray(), plain.similarity_.toarray())
    untimed = Interactions.from_arrays(["a", "a", "b", "b", "c"], ["x", "y", "x", "y", "z"])
    np.testing.assert_array_equal(
        plain_knn(neighbours=10, similarity_half_life_days=1.0).fit(untimed).similarity_.toarray(),
        plain_knn(neighbours=10).fit(untimed).similarity_.toarray(),
    )


def test_normalised_rows_sum_to_one():
    model = plain_knn(neighbours=10, normalize_rows=True).fit(two_cliques("items"))
    sums = np.asarray(model.similarity_.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[sums > 0], 1.0, rtol=1e-6)


def test_popularity_blend_is_the_scaled_mixture():
    data = two_cliques("items")
    plain = plain_knn(neighbours=10).fit(data)
    blended = plain_knn(neighbours=10, popularity_blend=0.25).fit(data)
    users = np.arange(10)
    base = plain._score(users)
    popularity = np.asarray(data.positives().csr("binary").sum(axis=0)).ravel()
    want = 0.75 * base / base.max(axis=1, keepdims=True) + 0.25 * popularity / popularity.max()
    np.testing.assert_allclose(blended._score(users), want, rtol=1e-5)


def test_saved_blend_loads_and_old_models_load_without_prior(tmp_path):
    data = two_cliques("items")
    blended = plain_knn(neighbours=10, popularity_blend=0.2, popularity_window_days=30.0).fit(data)
    again = Retriever.load(blended.save(tmp_path / "blend"))
    np.testing.assert_array_equal(
        again.recommend(np.arange(10), 3)[0], blended.recommend(np.arange(10), 3)[0]
    )
    np.testing.assert_allclose(again._score(np.arange(10)), blended._score(np.arange(10)))
    # a model saved before these options: its state has no prior, its config none of the fields
    plain = plain_knn(neighbours=10).fit(data)
    loaded = saved_as_before(plain, tmp_path / "plain", FOURTH_ROUND_FIELDS + FIFTH_ROUND_FIELDS)
    assert loaded.prior_ is None and loaded.config.popularity_window_share is None
    np.testing.assert_allclose(loaded._score(np.arange(10)), plain._score(np.arange(10)))


def test_normalised_users_weigh_alike_in_the_similarity():
    """A user with three items adds 1/3 per co-occurrence, one with two items 1/2 (cosine of unit rows)."""
    data = Interactions.from_arrays(["a", "a", "a", "b", "b"], ["x", "y", "z", "x", "y"])
    model = plain_knn(neighbours=10, similarity="cooccurrence", normalize_users=True).fit(data)
    x, y, z = (data.items.index_of(i) for i in "xyz")
    np.testing.assert_allclose(model.similarity_[x, y], 1 / 3 + 1 / 2, rtol=1e-6)
    np.testing.assert_allclose(model.similarity_[x, z], 1 / 3, rtol=1e-6)
    np.testing.assert_array_equal(model.matrix_.toarray(), data.positives().csr().toarray())


def test_half_life_share_is_a_share_of_the_training_span():
    data = timed()  # 20 days from the first pair to the last
    share = plain_knn(neighbours=10, similarity_half_life_share=0.5).fit(data)
    days = plain_knn(neighbours=10, similarity_half_life_days=10.0).fit(data)
    np.testing.assert_allclose(share.similarity_.toarray(), days.similarity_.toarray())
    with pytest.raises(ValueError, match="not both"):
        plain_knn(similarity_half_life_days=1.0, similarity_half_life_share=0.1).fit(data)
