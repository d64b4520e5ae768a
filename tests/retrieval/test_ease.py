import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.errors import ConfigError
from recgraph.retrieval.ease import EASE, ease_weights
from tests.retrieval.conformance import RetrieverConformance, two_cliques


class TestEASE(RetrieverConformance):
    model_name = "ease"
    params = {"regularization": 1.0}


def direct_solve(x: np.ndarray, lam: float) -> np.ndarray:
    """The constrained problem one column at a time: item j from every other item."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        xo = x[:, others]
        b[others, j] = np.linalg.solve(xo.T @ xo + lam * np.eye(n - 1), xo.T @ x[:, j])
    return b


def test_closed_form_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 8)) < 0.4).astype(np.float64)
    import scipy.sparse as sp

    got = ease_weights(sp.csr_matrix(x), 3.0)
    np.testing.assert_allclose(got, direct_solve(x, 3.0), rtol=1e-4, atol=1e-5)
    assert (np.diag(got) == 0).all()


def test_scores_are_x_times_b():
    data = two_cliques("items")
    model = EASE(regularization=2.0).fit(data)
    x = data.positives().csr().toarray()
    np.testing.assert_allclose(
        model._score(np.arange(10)), x @ direct_solve(x, 2.0), rtol=1e-4, atol=1e-5
    )


def test_rare_items_left_out_score_below_the_rest():
    data = two_cliques("items").concat(Interactions.from_arrays(["0"], ["rare"]))
    model = EASE(regularization=1.0, min_item_count=2).fit(data)
    rare = model.items.index_of("rare")
    assert rare not in model.active_items_ and model.weights_.shape == (10, 10)
    scores = model._score(np.arange(10))
    assert (scores[:, rare] < np.delete(scores, rare, axis=1).min(axis=1)).all()
    ids, _ = model.recommend([5], k=model.n_items)
    assert ids[0][ids[0] >= 0][-1] == rare


def test_explain_names_liked_items():
    model = EASE(regularization=1.0).fit(two_cliques("items"))
    (reason,) = model.explain(0, [1], top=2)
    assert len(reason.via) == 2 and set(reason.via.tolist()) <= {0, 2, 3, 4}
    assert reason.candidate == 1 and (reason.contributions > 0).all()


def test_regularisation_must_be_positive():
    with pytest.raises(ConfigError, match="regularization"):
        EASE(regularization=0)
