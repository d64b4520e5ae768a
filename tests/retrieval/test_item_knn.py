import numpy as np

from recgraph.retrieval.item_knn import ItemKNN
from tests.retrieval.conformance import RetrieverConformance, two_cliques

#: The plain item-kNN sum, without the defaults' row scaling and popularity blend.
PLAIN = {"normalize_rows": False, "popularity_blend": 0.0}


def plain_knn(**params) -> ItemKNN:
    return ItemKNN(**{**PLAIN, **params})


class TestItemKNN(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "num_threads": 1, "similarity": "cosine"}


class TestItemKNNBM25(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "num_threads": 1, "similarity": "bm25"}


def test_scores_are_sums_of_cosines_to_liked_items():
    data = two_cliques("items")
    model = plain_knn(neighbours=10, similarity="cosine").fit(data)
    x = data.positives().csr().toarray()
    norms = np.linalg.norm(x, axis=0)
    cosine = (x.T @ x) / np.outer(norms, norms)
    np.testing.assert_allclose(model._score(np.arange(10)), x @ cosine, rtol=1e-5)


def test_neighbours_limit_the_similarity_rows():
    model = plain_knn(neighbours=2).fit(two_cliques("items"))
    assert np.diff(model.similarity_.indptr).max() <= 2


def test_explain_sums_to_the_score():
    model = plain_knn(neighbours=10).fit(two_cliques("items"))
    (reason,) = model.explain(0, [1], top=10)
    assert set(reason.via.tolist()) == {0, 2, 3, 4}
    contributions = reason.contributions.tolist()
    assert contributions == sorted(contributions, reverse=True)
    assert np.isclose(sum(contributions), model._score(np.array([0]))[0, 1], rtol=1e-5)


def test_explanations_cite_only_liked_items():
    from tests.retrieval.low_ratings import HATED, cited, with_a_hated_twin

    data = with_a_hated_twin()
    for similarity in ("bm25", "cosine"):
        model = plain_knn(neighbours=10, similarity=similarity).fit(data)
        assert HATED not in cited(model, data)


def test_bm25_keeps_heavy_users_positive():
    """A user who has most of a small catalogue still adds to the similarities.

    ``implicit``'s inverse user frequency, log(N) - log(1 + items of the
    user), is 0 for the users of the 4-item catalogue below who have 3 items,
    which left ``liked1`` and ``liked2`` with no similarity to anything.
    """
    from tests.retrieval.low_ratings import with_a_hated_twin

    data = with_a_hated_twin()
    model = plain_knn(similarity="bm25").fit(data)
    similarity = model.similarity_.toarray()
    liked1, candidate = data.items.index_of("liked1"), data.items.index_of("candidate")
    assert similarity[liked1, candidate] > 0
    assert (similarity >= 0).all()


def test_recency_half_life_weighs_the_history():
    """An item liked one half-life before the user's latest weighs half; without time, all alike."""
    from recgraph.data.interactions import Interactions

    day = 86_400
    users = ["a", "a", "a", "b", "b", "c", "c"]
    items = ["x", "y", "z", "x", "y", "y", "z"]
    times = [0, 9 * day, 10 * day, 5 * day, 5 * day, 1 * day, 3 * day]
    data = Interactions.from_arrays(users, items, timestamp=times)
    model = plain_knn(neighbours=10, half_life_days=1.0).fit(data)
    weights = model.matrix_.toarray()
    a, b, c = (data.users.index_of(u) for u in "abc")
    x, y, z = (data.items.index_of(i) for i in "xyz")
    np.testing.assert_allclose(weights[a, [x, y, z]], [2.0**-10, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(weights[b, [x, y]], [1.0, 1.0])
    np.testing.assert_allclose(weights[c, [y, z]], [0.25, 1.0], rtol=1e-6)
    plain = plain_knn(neighbours=10).fit(data)
    np.testing.assert_array_equal(plain.similarity_.toarray(), model.similarity_.toarray())
    np.testing.assert_allclose(model._score(np.array([a])), weights[[a]] @ model.similarity_)
    untimed = Interactions.from_arrays(users, items)
    np.testing.assert_array_equal(
        plain_knn(neighbours=10, half_life_days=1.0).fit(untimed).matrix_.toarray(),
        plain_knn(neighbours=10).fit(untimed).matrix_.toarray(),
    )


def test_recency_keeps_the_latest_of_repeated_pairs():
    from recgraph.data.interactions import Interactions

    day = 86_400
    data = Interactions.from_arrays(
        ["a", "a", "a"], ["x", "x", "y"], timestamp=[0, 4 * day, 4 * day]
    )
    model = plain_knn(neighbours=10, half_life_days=2.0).fit(data)
    np.testing.assert_allclose(model.matrix_.toarray(), [[1.0, 1.0]])


def test_the_defaults_scale_rows_and_blend_a_tenth_of_popularity() -> None:
    model = ItemKNN().fit(two_cliques("items"))
    assert model.config.normalize_rows and model.config.popularity_blend == 0.1
    rows = model.similarity_.toarray().sum(axis=1)
    np.testing.assert_allclose(rows[rows > 0], 1.0, rtol=1e-5)


def test_importing_item_knn_imports_neither_pixie_nor_numba() -> None:
    """Item-kNN once took its DAY from pixie, importing the walk kernels and numba
    (0.7-2.4 s) into every process that only wanted item-kNN."""
    import subprocess
    import sys

    script = (
        "import sys, recgraph.retrieval.item_knn\n"
        "print(sorted(m for m in ('numba', 'recgraph.retrieval.pixie') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
