import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval import create_retriever
from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import random_graph


class TestSALSA(RetrieverConformance):
    model_name = "salsa"


class TestSALSAExactCircle(RetrieverConformance):
    model_name = "salsa"
    params = {"circle_method": "power"}


def salsa_reference(adjacency: np.ndarray, circle: np.ndarray, iterations: int, beta: float):
    """Dense personalised SALSA from circle weights over every node (hubs x authorities)."""
    h0 = circle / circle.sum()
    hub = adjacency * (circle > 0)[:, None]
    hub_degree = hub.sum(axis=1)
    authority_degree = hub.sum(axis=0)
    inv_h = np.divide(1.0, hub_degree, out=np.zeros_like(hub_degree), where=hub_degree > 0)
    inv_a = np.divide(
        1.0, authority_degree, out=np.zeros_like(authority_degree), where=authority_degree > 0
    )
    h = h0
    a = hub.T @ (h * inv_h)
    for _ in range(iterations - 1):
        lost = h[(hub_degree == 0) & (circle > 0)].sum()
        h = beta * h0 + (1 - beta) * (hub @ (a * inv_a)) + (1 - beta) * lost * h0
        a = hub.T @ (h * inv_h)
    return a


EXACT = {"circle_method": "power", "circle": 10_000, "hub_cap": 0, "authorities_per_hub": 0}


@pytest.mark.parametrize("iterations", [1, 5])
def test_equals_dense_salsa_on_the_exact_circle(iterations: int) -> None:
    graph = random_graph(60, 0.07, seed=11, directed=True)
    model = create_retriever("salsa", {**EXACT, "iterations": iterations}).fit(graph)
    ppr = create_retriever(
        "ppr", {"method": "power", "iterations": 100, "tol": 1e-8, "hub_cap": 0}
    ).fit(graph)
    adjacency = graph.csr().toarray().astype(np.float64)
    np.fill_diagonal(adjacency, 0)
    for u in (0, 9, 33):
        circle = ppr.score_rows([u])[0].astype(np.float64)
        expected = salsa_reference(adjacency, circle, iterations, 0.15)
        got = model.score_rows([u]).toarray()[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_the_pushed_circle_gives_the_exact_lists() -> None:
    graph = random_graph(120, 0.05, seed=12, directed=True)
    users = np.arange(graph.n_users)
    exact = create_retriever("salsa", {**EXACT, "circle": 500}).fit(graph)
    pushed = create_retriever("salsa", {"epsilon": 1e-7}).fit(graph)
    a, _ = exact.recommend(users, k=10)
    b, _ = pushed.recommend(users, k=10)
    overlap = np.mean(
        [len(set(x) & set(y)) / 10 for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    )
    assert overlap >= 0.95


def test_the_circle_is_bounded_and_explanations_are_its_members() -> None:
    graph = random_graph(100, 0.08, seed=13, directed=True)
    model = create_retriever("salsa", {"circle": 12}).fit(graph)
    hubs, weights = model.circle_of_trust(5)
    assert len(hubs) == 12 and weights.sum() == pytest.approx(1.0)
    ids, scores = model.recommend([5], k=4)
    adjacency = graph.csr().toarray() > 0
    for e, score in zip(model.explain(5, ids[0], top=None), scores[0], strict=True):
        assert e.score == pytest.approx(float(score), rel=1e-5)
        assert e.contributions.sum() == pytest.approx(e.score, rel=1e-4)
        assert set(e.via.tolist()) <= set(hubs.tolist())
        assert adjacency[e.via, e.candidate].all(), "every explaining hub follows the candidate"
        assert e.text().startswith("followed by ")


@pytest.mark.parametrize("walk", ["out", "in", "undirected"])
def test_the_circle_walks_the_direction_configured(walk: str) -> None:
    model = create_retriever("salsa", {"circle_walk": walk}).fit(
        Interactions.from_indices([0, 1], [1, 2], n_users=3, one_sided=True, directed=True)
    )
    assert model.circle_model_.config.walk == walk
    reached = set(model.circle_of_trust(1)[0].tolist())
    assert (0 in reached) == (walk != "out"), "a follower is in the circle unless walking out"
    assert (2 in reached) == (walk != "in"), "a followed account is in the circle unless walking in"


def _scipy_salsa(model, user: int) -> tuple[np.ndarray, np.ndarray]:
    """SALSA as it was computed before the bincount products: scipy matrices, for the bits."""
    import scipy.sparse as sp

    cfg = model.config
    hubs, h0 = model.circle_of_trust(user)
    owner, followed = model.walk_graph_.gather(hubs, "out", cfg.authorities_per_hub)
    authorities, column = np.unique(followed, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(owner)), (owner, column)), shape=(len(hubs), len(authorities))
    )
    hub_degree = np.asarray(matrix.sum(axis=1)).ravel()
    authority_degree = np.asarray(matrix.sum(axis=0)).ravel()
    inv_h = np.divide(1.0, hub_degree, out=np.zeros_like(hub_degree), where=hub_degree > 0)
    inv_a = np.divide(
        1.0, authority_degree, out=np.zeros_like(authority_degree), where=authority_degree > 0
    )
    beta = cfg.salsa_restart
    h = h0
    a = matrix.T @ (h * inv_h)
    for _ in range(cfg.iterations - 1):
        lost = h[hub_degree == 0].sum()
        h = beta * h0 + (1 - beta) * (matrix @ (a * inv_a)) + (1 - beta) * lost * h0
        a = matrix.T @ (h * inv_h)
    return authorities, a


def test_bincount_products_are_scipys_bits_with_overlay_edges() -> None:
    """The request's products, added in the order scipy's CSR/CSC products add them, give
    the same float64 scores, also when edges written after training come after the rest."""
    data = random_graph(80, 0.08, seed=4, directed=True)
    model = create_retriever("salsa", {"circle": 25, "hub_cap": 6}).fit(data)
    users = np.arange(0, 80, 7)
    rng = np.random.default_rng(0)
    for observed in (False, True):
        if observed:
            src, dst = rng.integers(0, 80, 40), rng.integers(0, 80, 40)
            model.observe([data.users.ids[s] for s in src], [data.users.ids[d] for d in dst])
        for user in users:
            authorities, scores, *_ = model._salsa(int(user))
            want_authorities, want = _scipy_salsa(model, int(user))
            np.testing.assert_array_equal(authorities, want_authorities)
            assert scores.tobytes() == np.asarray(want, dtype=np.float64).tobytes()


def test_explanations_rank_each_candidates_hubs_by_share_then_node() -> None:
    """Every candidate's hubs come from one sort over all candidates: the same as ranking
    each candidate's alone (share h_w / deg w largest first, ties to the lower hub), cut at
    ``top``, for a repeated candidate and one the walk never reached too."""
    from recgraph.retrieval.neighborhood import top_contributions

    graph = random_graph(100, 0.08, seed=14, directed=True)
    model = create_retriever("salsa", {"circle": 30}).fit(graph)
    authorities, scores, hubs, (hub_of, authority_of), by_hub = model._salsa(7)
    reached = authorities[scores > 0]
    unreached = next(v for v in range(100) if v not in set(authorities.tolist()) and v != 7)
    candidates = np.r_[reached[:6], reached[2], unreached]
    for top in (None, 0, 2, 50):
        for e in model.explain(7, candidates, top=top):
            at = np.searchsorted(authorities, e.candidate)
            if at < len(authorities) and authorities[at] == e.candidate:
                rows = hub_of[authority_of == at]
                via, contrib = top_contributions(hubs[rows], by_hub[rows], top)
            else:
                via, contrib = np.zeros(0, np.int64), np.zeros(0, np.float32)
            assert np.array_equal(e.via, via), (top, e.candidate)
            assert np.array_equal(e.contributions, contrib.astype(np.float64))
    # two hubs of equal share: the lower node first
    pairs = Interactions.from_arrays(["a", "a", "b", "c"], ["b", "c", "d", "d"], one_sided=True)
    tied = create_retriever("salsa", {"circle_method": "power"}).fit(pairs)
    a, b, c, d = (int(tied.users.index([x])[0]) for x in "abcd")
    (e,) = tied.explain(a, [d], top=None)
    assert e.contributions[0] == e.contributions[1], "b and c share alike"
    assert e.via.tolist() == sorted([b, c])
