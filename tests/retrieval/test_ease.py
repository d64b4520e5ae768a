import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.errors import ConfigError
from recgraph.retrieval.ease import EASE, ease_weights
from tests.retrieval.conformance import RetrieverConformance, two_cliques
from tests.retrieval.play_counts import plays


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


def test_explanations_cite_only_liked_items():
    from tests.retrieval.low_ratings import HATED, cited, with_a_hated_twin

    data = with_a_hated_twin()
    model = EASE(regularization=1.0).fit(data)
    assert cited(model, data) <= {"liked1", "liked2"} and HATED not in cited(model, data)


def test_dual_form_gives_the_primal_weights():
    import scipy.sparse as sp

    from recgraph.retrieval.ease import _dual_weights, _primal_weights

    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((25, 60)) < 0.2) * rng.integers(1, 5, (25, 60)), dtype=float)
    primal, dual = _primal_weights(x, 2.0), _dual_weights(x, 2.0)
    np.testing.assert_allclose(dual, primal, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dual, direct_solve(x.toarray(), 2.0), rtol=1e-4, atol=1e-5)


def test_auto_solver_picks_the_smaller_side(monkeypatch):
    import scipy.sparse as sp

    import recgraph.retrieval.ease as ease

    used = []
    monkeypatch.setattr(ease, "_dual_weights", lambda m, r: used.append("dual") or np.zeros(1))
    monkeypatch.setattr(ease, "_primal_weights", lambda m, r: used.append("primal") or np.zeros(1))
    ease.ease_weights(sp.csr_matrix(np.ones((3, 5))), 1.0)
    ease.ease_weights(sp.csr_matrix(np.ones((5, 3))), 1.0)
    ease.ease_weights(sp.csr_matrix(np.ones((3, 5))), 1.0, "primal")
    assert used == ["dual", "primal", "primal"]


def test_play_counts_weigh_by_log_confidence():
    data = plays(["a", "a", "b", "b"], ["x", "y", "x", "y"], [1, 1000, 3, 1])
    model = EASE(regularization=1.0, count_epsilon=1.0).fit(data)
    assert sorted(model.matrix_.data.tolist()) == pytest.approx([1.0, 1.0, 2.0, np.log2(1001)])
