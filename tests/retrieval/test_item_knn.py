import numpy as np

from recgraph.retrieval.item_knn import ItemKNN
from tests.retrieval.conformance import RetrieverConformance, two_cliques


class TestItemKNN(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "num_threads": 1, "similarity": "cosine"}


class TestItemKNNBM25(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "num_threads": 1, "similarity": "bm25"}


def test_scores_are_sums_of_cosines_to_liked_items():
    data = two_cliques("items")
    model = ItemKNN(neighbours=10, similarity="cosine").fit(data)
    x = data.positives().csr().toarray()
    norms = np.linalg.norm(x, axis=0)
    cosine = (x.T @ x) / np.outer(norms, norms)
    np.testing.assert_allclose(model._score(np.arange(10)), x @ cosine, rtol=1e-5)


def test_neighbours_limit_the_similarity_rows():
    model = ItemKNN(neighbours=2).fit(two_cliques("items"))
    assert np.diff(model.similarity_.indptr).max() <= 2


def test_explain_sums_to_the_score():
    model = ItemKNN(neighbours=10).fit(two_cliques("items"))
    (reason,) = model.explain(0, [1], top=10)
    assert set(reason.via.tolist()) == {0, 2, 3, 4}
    contributions = reason.contributions.tolist()
    assert contributions == sorted(contributions, reverse=True)
    assert np.isclose(sum(contributions), model._score(np.array([0]))[0, 1], rtol=1e-5)


def test_explanations_cite_only_liked_items():
    from tests.retrieval.low_ratings import HATED, cited, with_a_hated_twin

    data = with_a_hated_twin()
    for similarity in ("bm25", "cosine"):
        model = ItemKNN(neighbours=10, similarity=similarity).fit(data)
        assert HATED not in cited(model, data)


def test_bm25_keeps_heavy_users_positive():
    """A user who has most of a small catalogue still adds to the similarities.

    ``implicit``'s inverse user frequency, log(N) - log(1 + items of the
    user), is 0 for the users of the 4-item catalogue below who have 3 items,
    which left ``liked1`` and ``liked2`` with no similarity to anything.
    """
    from tests.retrieval.low_ratings import with_a_hated_twin

    data = with_a_hated_twin()
    model = ItemKNN(similarity="bm25").fit(data)
    similarity = model.similarity_.toarray()
    liked1, candidate = data.items.index_of("liked1"), data.items.index_of("candidate")
    assert similarity[liked1, candidate] > 0
    assert (similarity >= 0).all()
