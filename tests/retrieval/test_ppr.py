import networkx as nx
import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval import create_retriever
from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import (
    dense_reference,
    ego_facebook,
    random_graph,
    to_networkx,
)

#: Enough iterations for the fixed point, to compare with NetworkX.
CONVERGED = {"method": "power", "iterations": 300, "tol": 1e-9, "hub_cap": 0}


class TestPersonalizedPageRank(RetrieverConformance):
    model_name = "ppr"


def with_dangling_nodes() -> Interactions:
    """A random follow graph in which accounts 0-3 follow nobody."""
    graph = random_graph(40, 0.08, seed=2, directed=True)
    keep = graph.src >= 4
    return Interactions.from_indices(
        graph.src[keep], graph.dst[keep], n_users=40, one_sided=True, directed=True
    )


@pytest.mark.parametrize("walk", ["out", "in", "undirected"])
@pytest.mark.parametrize("restart", [0.15, 0.5])
def test_equals_networkx_personalised_pagerank(walk: str, restart: float) -> None:
    graph = with_dangling_nodes()
    g = to_networkx(graph)
    if walk == "in":
        g = g.reverse()
    elif walk == "undirected":
        g = g.to_undirected()
    model = create_retriever("ppr", {**CONVERGED, "walk": walk, "restart": restart}).fit(graph)
    users = np.array([0, 4, 9, 31])
    rows = model.score_rows(users)
    for row, u in zip(rows, users, strict=True):
        ranks = nx.pagerank(
            g, alpha=1 - restart, personalization={int(u): 1}, tol=1e-10, max_iter=1000
        )
        expected = np.array([ranks[v] for v in range(graph.n_users)])
        np.testing.assert_allclose(row, expected, atol=2e-6)
        assert row.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.datasets
def test_equals_networkx_on_ego_facebook() -> None:
    graph = ego_facebook()
    g = to_networkx(graph)
    model = create_retriever("ppr", {**CONVERGED, "restart": 0.3}).fit(graph)
    for u in (107, 2000):
        ranks = nx.pagerank(g, alpha=0.7, personalization={u: 1}, tol=1e-10)
        expected = np.array([ranks[v] for v in range(graph.n_users)])
        np.testing.assert_allclose(model.score_rows([u])[0], expected, atol=1e-6)


def test_a_user_scores_the_same_alone_or_in_a_batch_with_early_stopping() -> None:
    graph = with_dangling_nodes()
    model = create_retriever("ppr", {"method": "power", "tol": 1e-4, "iterations": 100}).fit(graph)
    users = np.arange(graph.n_users)
    together = model.score_rows(users)
    for u in (0, 5, 17):
        np.testing.assert_array_equal(model.score_rows([u])[0], together[u])
    fewer = (
        create_retriever("ppr", {"method": "power", "tol": 0, "iterations": 3})
        .fit(graph)
        .score_rows(users)
    )
    assert np.abs(fewer - together).max() > 1e-3, "iterations are honoured"


def test_recommend_is_the_masked_top_of_the_scores_on_threads() -> None:
    graph = random_graph(70, 0.06, seed=3, directed=True)
    users = np.arange(graph.n_users)
    model = create_retriever("ppr", {"method": "power", "n_threads": 2}).fit(graph)
    import recgraph.retrieval.ppr as ppr_module

    original = ppr_module.PPR_BLOCK_FLOATS
    ppr_module.PPR_BLOCK_FLOATS = 70 * 8  # many small blocks
    try:
        ids, scores = model.recommend(users, k=6)
    finally:
        ppr_module.PPR_BLOCK_FLOATS = original
    forbidden = graph.seen().toarray() > 0
    np.fill_diagonal(forbidden, True)
    want_ids, want_scores = dense_reference(model.score_rows(users), 6, forbidden)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_walk_direction_decides_who_is_reached() -> None:
    # a -> b -> c: walking along follows from a reaches c; walking along followers does not
    graph = Interactions.from_arrays(["a", "b"], ["b", "c"], one_sided=True, directed=True)
    a, c = graph.users.index_of("a"), graph.users.index_of("c")
    out = create_retriever("ppr", {"walk": "out"}).fit(graph).score_rows([a]).toarray()[0]
    back = create_retriever("ppr", {"walk": "in"}).fit(graph).score_rows([a]).toarray()[0]
    assert out[c] > 0 and back[c] == 0


def test_explanations_split_the_score_over_the_last_step() -> None:
    graph = random_graph(40, 0.1, seed=4, directed=True)
    model = create_retriever("ppr", {"walk": "out"}).fit(graph)
    ids, scores = model.recommend([3], k=5)
    full = model.explain(3, ids[0], top=None)
    short = model.explain(3, ids[0], top=2)
    adjacency = graph.csr().toarray() > 0
    for j, (e, s) in enumerate(zip(full, short, strict=True)):
        assert e.score == pytest.approx(float(scores[0, j]), rel=1e-5)
        assert e.contributions.sum() == pytest.approx(e.score, rel=1e-4)
        assert adjacency[e.via, e.candidate].all(), "every explaining node follows the candidate"
        assert (np.diff(e.contributions) <= 0).all()
        np.testing.assert_array_equal(s.via, e.via[:2])
        assert s.text().startswith("followed by ")


def test_hub_cap_thins_the_walk_and_is_exact_above_the_max_degree() -> None:
    base = random_graph(60, 0.05, seed=5, directed=True)
    src = np.r_[base.src, np.full(59, 7)]
    dst = np.r_[base.dst, np.r_[np.arange(7), np.arange(8, 60)]]
    graph = Interactions.from_indices(src, dst, n_users=60, one_sided=True, directed=True)
    users = np.arange(60)
    exact = create_retriever("ppr", {"method": "power", "hub_cap": 0}).fit(graph)
    same = create_retriever("ppr", {"method": "power", "hub_cap": 59}).fit(graph)
    np.testing.assert_array_equal(exact.score_rows(users), same.score_rows(users))
    capped = create_retriever("ppr", {"method": "power", "hub_cap": 5}).fit(graph)
    assert capped.transition_[7].nnz == 5 and exact.transition_[7].nnz == 59
    assert capped.transition_[7].sum() == pytest.approx(1.0)
    skipped = create_retriever("ppr", {"method": "power", "hub_cap": 5, "hub_policy": "skip"}).fit(
        graph
    )
    assert skipped.transition_[7].nnz == 0 and skipped.dangling_[7]


# ---------------------------------------------------------------------- local push
@pytest.mark.parametrize("walk", ["out", "in", "undirected"])
def test_push_equals_power_iteration_when_epsilon_is_tiny(walk: str) -> None:
    graph = with_dangling_nodes()
    users = np.arange(graph.n_users)
    exact = create_retriever("ppr", {**CONVERGED, "walk": walk}).fit(graph).score_rows(users)
    push = create_retriever("ppr", {"epsilon": 1e-10, "hub_cap": 0, "walk": walk}).fit(graph)
    rows = push.score_rows(users)
    assert rows.shape == exact.shape
    np.testing.assert_allclose(rows.toarray(), exact, atol=1e-6)


def test_push_error_stays_within_epsilon_times_degree() -> None:
    graph = random_graph(80, 0.06, seed=7, directed=True)
    exact_model = create_retriever("ppr", {**CONVERGED, "walk": "out"}).fit(graph)
    epsilon = 1e-3
    push = create_retriever("ppr", {"epsilon": epsilon, "hub_cap": 0, "walk": "out"}).fit(graph)
    degree = np.maximum(np.diff(graph.csr().indptr), 1)
    for u in (0, 11, 42):
        exact = exact_model.score_rows([u])[0]
        nodes, scores, r_nodes, residual = push.push(u)
        approx = np.zeros(graph.n_users)
        approx[nodes] = scores
        assert (approx <= exact + 1e-6).all(), "the push never overshoots"
        assert (residual < epsilon * degree[r_nodes]).all()
        # what is missing is the PageRank of the residual: at most its mass
        assert exact.sum() - approx.sum() == pytest.approx(residual.sum(), abs=1e-5)
        assert np.abs(exact - approx).max() > 0, "a coarse epsilon is approximate"


def test_push_work_is_bounded_at_a_users_own_huge_follow_list() -> None:
    # account 0 follows 2,000 accounts; each of them follows account 1
    src = np.r_[np.zeros(2000, int), np.arange(2, 2002)]
    dst = np.r_[np.arange(2, 2002), np.ones(2000, int)]
    graph = Interactions.from_indices(src, dst, n_users=2002, one_sided=True, directed=True)
    model = create_retriever("ppr", {"hub_cap": 50, "walk": "out"}).fit(graph)
    owner, neighbour = model._neighbours(np.array([0]))
    assert len(neighbour) == 50
    nodes, scores = model.user_row(0)
    assert len(nodes) <= 52, "the walk spreads over the sample only"
    ids, _ = model.recommend([0], k=1)
    assert ids[0, 0] == 1, "the account everybody it follows follows comes first"


def test_explanations_of_the_push_split_the_score() -> None:
    graph = random_graph(40, 0.1, seed=4, directed=True)
    model = create_retriever("ppr", {"method": "push", "walk": "out"}).fit(graph)
    ids, scores = model.recommend([3], k=5)
    adjacency = graph.csr().toarray() > 0
    for e, score in zip(model.explain(3, ids[0], top=None), scores[0], strict=True):
        assert e.score == pytest.approx(float(score), rel=1e-5)
        assert e.contributions.sum() == pytest.approx(e.score, rel=1e-4)
        assert adjacency[e.via, e.candidate].all()


def reference_push_explanation(model, user: int, candidate: int) -> tuple[np.ndarray, np.ndarray]:
    """A pushed score's explanation from its definition: the candidate's scored walk-side
    neighbours (its capped rows gathered, then its overlay edges), each weighted by its
    score over its walk degree, scaled to sum to the candidate's score."""
    from recgraph.retrieval.neighborhood import top_contributions

    nodes, scores = model.cached_row(user)
    score_of = dict(zip(nodes.tolist(), scores.tolist(), strict=True))
    back = {"out": "in", "in": "out"}.get(model.config.walk)
    via = []
    for side in ("out", "in") if back is None else (back,):
        via += model.walk_graph_.gather(np.array([candidate]), side)[1].tolist()
    via = [w for w in via if w in score_of]
    via = np.array(sorted(set(via)) if back is None else via, dtype=np.int64)
    eps = model.config.epsilon
    weight = np.array([score_of[w] for w in via.tolist()], dtype=np.float64)
    weight = weight / np.maximum(model._thresholds(via) / eps, 1)
    score = score_of.get(candidate, 0.0)
    contrib = weight * (score / weight.sum()) if weight.sum() > 0 else weight
    return top_contributions(via[contrib > 0], contrib[contrib > 0], None)


@pytest.mark.parametrize("walk", ["out", "in", "undirected"])
def test_push_explanations_read_capped_rows_and_the_overlay_as_the_walk_does(walk: str) -> None:
    graph = random_graph(60, 0.15, seed=6, directed=True)
    model = create_retriever("ppr", {"walk": walk, "hub_cap": 4}).fit(graph)
    users = graph.users
    rng = np.random.default_rng(0)
    model.observe([users.ids[i] for i in rng.integers(0, 60, 40)],
                  [users.ids[i] for i in rng.integers(0, 60, 40)])  # fmt: skip
    assert len(model.overlay) > 20
    capped = 0
    for user in range(0, 60, 7):
        candidates = np.r_[model.recommend([user], k=8)[0][0], user, 3, 3]
        for e, c in zip(model.explain(user, candidates, top=None), candidates, strict=True):
            want_via, want = reference_push_explanation(model, user, int(c))
            np.testing.assert_array_equal(e.via, want_via)
            np.testing.assert_array_equal(e.contributions, want)
            capped += len(want_via) > 0 and model.walk_graph_.degree(np.array([c]), "in")[0] > 4
    assert capped, "some candidate's row was capped"


def test_pushed_scores_are_the_rankers_feature() -> None:
    graph = random_graph(50, 0.08, seed=8, directed=True)
    model = create_retriever("ppr").fit(graph)
    ids, scores = model.recommend([1, 2], k=4)
    got = model.score_pairs(np.repeat([1, 2], 4), ids.ravel())
    np.testing.assert_allclose(got, scores.ravel(), rtol=1e-6)
    assert model.score_pairs([1], [1]).dtype == np.float32


def test_push_scratch_arrays_are_as_many_as_pushes_at_once_not_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from recgraph.retrieval.walks import SCRATCH_ARRAYS

    model = create_retriever("ppr").fit(with_dangling_nodes())
    users = np.arange(model.n_users)

    def free() -> list[np.ndarray]:  # the residual arrays (float64) not in use
        return model._scratch_pool(np.float64)[0]

    alone = [model.push(int(u)) for u in users]
    assert len(free()) == 1  # one push at a time: one array, reused
    with ThreadPoolExecutor(max_workers=8) as pool:
        for u in users:  # a new thread may answer each request, one at a time
            pool.submit(model.push, int(u)).result()
        assert len(free()) == 1
        together = list(pool.map(lambda u: model.push(int(u)), users))
    assert 1 <= len(free()) <= SCRATCH_ARRAYS  # the other threads waited for one
    for a, b in zip(alone, together, strict=True):  # every array was zeroed after use
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert not any(s.any() for s in free())


def test_the_default_walk_reaches_the_accounts_that_tie_to_you() -> None:
    # b and c message a; nobody a messages ties back: walking along a's ties
    # alone never reaches b's partner d, the default walk (either way) does
    graph = Interactions.from_arrays(
        ["b", "c", "b", "a"], ["a", "a", "d", "e"], one_sided=True, directed=True
    )
    a, d = graph.users.index_of("a"), graph.users.index_of("d")
    default = create_retriever("ppr").fit(graph)
    assert default.config.walk == "undirected"
    assert default.score_rows([a]).toarray()[0][d] > 0
    out = create_retriever("ppr", {"walk": "out"}).fit(graph).score_rows([a]).toarray()[0]
    assert out[d] == 0


def test_the_sweep_spends_its_budget_on_the_largest_shares_per_edge() -> None:
    # account 0 follows 1..40; each of them is followed by 300 others (hubs to sweep)
    hubs = np.arange(1, 41)
    fans = np.arange(41, 341)
    src = np.r_[np.zeros(40, int), np.repeat(fans, 40)]
    dst = np.r_[hubs, np.tile(hubs, len(fans))]
    graph = Interactions.from_indices(src, dst, n_users=341, one_sided=True, directed=True)
    full = create_retriever("ppr", {"sweep_budget": 0, "epsilon": 1e-2}).fit(graph)
    budgeted = create_retriever("ppr", {"sweep_budget": 500, "epsilon": 1e-2}).fit(graph)
    _, _, r_nodes, residual = full.push(0)
    spread = budgeted._sweep_choice(r_nodes, residual)
    edges = np.diff(graph.csr().indptr)[r_nodes] + np.diff(graph.csr().T.tocsr().indptr)[r_nodes]
    assert 0 < len(spread) < len(r_nodes), "a budget below the residual's edges sweeps some"
    assert edges[spread].sum() <= 500
    share = residual / np.maximum(edges, 1)
    assert share[spread].min() >= np.delete(share, spread).max(), "largest shares first"
    assert len(full._sweep_choice(r_nodes, residual)) == len(r_nodes), "0: no budget"
    nodes_full, scores_full = full.user_row(0)
    nodes_b, scores_b = budgeted.user_row(0)
    assert scores_b.sum() < scores_full.sum(), "the unswept residual keeps only alpha r"
    assert set(nodes_b.tolist()) <= set(nodes_full.tolist())


def test_a_model_saved_before_the_sweep_budget_loads_unbounded(tmp_path) -> None:
    from recgraph.retrieval import Retriever
    from recgraph.retrieval.ppr import PPRConfig
    from recgraph.retrieval.salsa import SALSAConfig

    old = PPRConfig().model_dump()
    del old["sweep_budget"]
    assert PPRConfig.model_validate(old).sweep_budget == 0, "saved before: swept everything"
    assert PPRConfig.model_validate({"sweep": 500}).sweep_budget == 20_000, "a new config"
    old_salsa = SALSAConfig().model_dump()
    del old_salsa["sweep_budget"], old_salsa["circle_walk"]
    assert SALSAConfig.model_validate(old_salsa).sweep_budget == 0
    graph = random_graph(40, 0.1, seed=4, directed=True)
    model = create_retriever("salsa", {"sweep_budget": 7}).fit(graph)
    assert model.circle_model_.config.sweep_budget == 7
    model.save(tmp_path / "m")
    assert Retriever.load(tmp_path / "m").circle_model_.config.sweep_budget == 7


def test_a_user_above_one_over_epsilon_edges_still_walks_two_hops() -> None:
    """A user whose degree exceeds 1 / epsilon never reaches its push threshold with its
    whole mass: it pushes first anyway, so the walk (and the sweep) go past its own
    neighbours, and its list agrees with the exact vector's."""
    # account 0 follows 300 accounts (1 / epsilon = 100); account j follows 301 + j % 5
    src = np.r_[np.zeros(300, int), np.arange(1, 301)]
    dst = np.r_[np.arange(1, 301), 301 + np.arange(1, 301) % 5]
    graph = Interactions.from_indices(src, dst, n_users=306, one_sided=True, directed=True)
    model = create_retriever("ppr", {"walk": "out", "epsilon": 0.01}).fit(graph)
    nodes, scores = model.user_row(0)
    assert set(range(301, 306)) <= set(nodes[scores > 0].tolist()), "two hops reached"
    ids, values = model.recommend([0], k=5)
    assert sorted(ids[0].tolist()) == list(range(301, 306)) and (values > 0).all()
    exact = create_retriever("ppr", {"walk": "out", **CONVERGED}).fit(graph)
    assert sorted(exact.recommend([0], k=5)[0][0].tolist()) == list(range(301, 306))


def test_a_loaded_walk_model_warms_its_pages_unless_told_not_to(tmp_path, monkeypatch) -> None:
    import recgraph.retrieval.walks as walks

    warmed: list[int] = []
    monkeypatch.setattr(walks, "warm_pages", lambda arrays: warmed.append(len(list(arrays))))
    data = with_dangling_nodes()
    for flag in (True, False):
        model = create_retriever("ppr", {"warm_pages": flag}).fit(data)
        model.save(tmp_path / str(flag))
        loaded = type(model).load(tmp_path / str(flag))
        assert loaded.config.warm_pages is flag
        np.testing.assert_array_equal(
            loaded.score_rows([0]).toarray(), model.score_rows([0]).toarray()
        )
    assert warmed == [6]  # both sides of the graph and the seen matrix, once: the flag off skips it


def test_a_push_waits_for_a_scratch_array_when_the_pool_is_spent() -> None:
    import threading

    from recgraph.retrieval.ppr import SCRATCH_ARRAYS

    model = create_retriever("ppr").fit(with_dangling_nodes())
    alone = model.push(0)
    held = [model._scratch() for _ in range(SCRATCH_ARRAYS)]  # every array in use
    result: list = []
    walker = threading.Thread(target=lambda: result.append(model.push(0)))
    walker.start()
    walker.join(0.3)
    assert walker.is_alive() and not result  # waits: no fifth array
    model._give_back(held.pop())
    walker.join(10)
    assert not walker.is_alive()
    for a, b in zip(alone, result[0], strict=True):
        np.testing.assert_array_equal(a, b)
    for scratch in held:
        model._give_back(scratch)
    assert len(model._scratch_pool(np.float64)[0]) == SCRATCH_ARRAYS


def test_a_push_that_fails_gives_its_scratch_slot_back(monkeypatch) -> None:
    from recgraph.retrieval.ppr import SCRATCH_ARRAYS

    model = create_retriever("ppr").fit(with_dangling_nodes())
    expected = model.push(0)
    for _ in range(SCRATCH_ARRAYS + 1):  # more failures than slots
        with pytest.raises(IndexError):
            model.push(model.n_users + 5)
    model._scratch_pool(np.float64)[0].clear()  # the next arrays are made afresh
    monkeypatch.setattr(type(model), "n_users", property(lambda self: 2**40))  # 8 TiB each
    for _ in range(SCRATCH_ARRAYS + 1):
        with pytest.raises(MemoryError):
            model._scratch()
    monkeypatch.undo()
    slots = model._scratch_pool(np.float64)[2]
    assert slots._value == SCRATCH_ARRAYS  # every slot free: no later push waits forever
    for a, b in zip(expected, model.push(0), strict=True):
        np.testing.assert_array_equal(a, b)
