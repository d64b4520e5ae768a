import numpy as np

from recgraph.retrieval.item_knn import ItemKNN
from tests.retrieval.conformance import RetrieverConformance, two_cliques


class TestItemKNN(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "num_threads": 1}


class TestItemKNNBM25(RetrieverConformance):
    model_name = "item_knn"
    params = {"neighbours": 10, "num_threads": 1, "similarity": "bm25"}


def test_scores_are_sums_of_cosines_to_liked_items():
    data = two_cliques("items")
    model = ItemKNN(neighbours=10).fit(data)
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
