"""The shared machinery of the neighbourhood retrievers, and helpers their tests share.

The helpers (graphs, brute-force scores, the NetworkX comparison) are imported
by ``test_common_neighbors.py`` and the other model tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions
from recgraph.retrieval import create_retriever, top_k
from recgraph.retrieval.base import rows_as_csr
from recgraph.retrieval.neighborhood import (
    Explanation,
    cap_rows,
    reading_matrices,
    spans_by_work,
)
from recgraph.retrieval.sparse_top_k import sparse_top_k
from tests.datasets import edge_list

TWO_HOP_MODELS = ["common_neighbors", "adamic_adar", "resource_allocation", "jaccard"]
PATHS = ["out_out", "in_out", "out_in", "in_in", "undirected"]


# ---------------------------------------------------------------------- shared helpers
def ego_facebook() -> Interactions:
    """SNAP ego-Facebook as a friendship graph; skips when the file is absent."""
    return edge_list("ego-facebook")


def random_graph(n: int, p: float, seed: int, directed: bool) -> Interactions:
    """A G(n, p) graph on indices, each undirected pair once; no self-loops."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n, n)) < p
    np.fill_diagonal(mask, False)
    if not directed:
        mask = np.triu(mask)
    src, dst = np.nonzero(mask)
    return Interactions.from_indices(src, dst, n_users=n, one_sided=True, directed=directed)


def to_networkx(graph: Interactions):
    import networkx as nx

    g = nx.DiGraph() if graph.directed else nx.Graph()
    g.add_nodes_from(range(graph.n_users))
    g.add_edges_from(zip(graph.src.tolist(), graph.dst.tolist(), strict=True))
    return g


def brute_force_scores(graph: Interactions, model: str, path: str, degree: str) -> np.ndarray:
    """Dense ``n x n`` scores from set arithmetic, straight from the definitions."""
    n = graph.n_users
    out = [set() for _ in range(n)]
    into = [set() for _ in range(n)]
    for a, b in zip(graph.src.tolist(), graph.dst.tolist(), strict=True):
        if a == b:
            continue
        out[a].add(b)
        into[b].add(a)
        if not graph.directed:
            out[b].add(a)
            into[a].add(b)
    both = [out[i] | into[i] for i in range(n)]
    side = {"out": out, "in": into}
    if path == "undirected":
        first_side = second_side = both
    else:
        first_name, second_name = path.split("_")
        first_side, second_side = side[first_name], side[second_name]
    entered = [set() for _ in range(n)]  # T(v): middles whose second hop reaches v
    for w in range(n):
        for v in second_side[w]:
            entered[v].add(w)
    reached = [set() for _ in range(n)]  # who reaches w on the first hop
    for u in range(n):
        for w in first_side[u]:
            reached[w].add(u)
    deg = {
        "exit": [len(second_side[w]) for w in range(n)],
        "entry": [len(reached[w]) for w in range(n)],
        "total": [len(both[w]) for w in range(n)],
    }[degree]
    scores = np.zeros((n, n))
    for u in range(n):
        for v in range(n):
            middles = first_side[u] & entered[v]
            if model == "common_neighbors":
                s = len(middles)
            elif model == "adamic_adar":
                s = sum(1 / math.log(max(deg[w], 2)) for w in middles)
            elif model == "resource_allocation":
                s = sum(1 / max(deg[w], 1) for w in middles)
            else:
                union = len(first_side[u] | entered[v])
                s = len(middles) / union if union else 0.0
            scores[u, v] = s
    return scores


def dense_reference(
    scores: np.ndarray,
    k: int,
    forbidden: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``base.top_k`` on the dense block with ``-inf`` where forbidden or not allowed."""
    block = np.array(scores, dtype=np.float32)
    if forbidden is not None:
        block[forbidden] = -np.inf
    if allowed is not None:
        block[~np.broadcast_to(allowed, block.shape)] = -np.inf
    return top_k(block, k)


def assert_matches_networkx(
    model_name: str, nx_function: Callable, graph: Interactions, n_pairs: int, seed: int = 0
) -> None:
    """Scores of sampled pairs (half of them two hops apart) equal NetworkX's."""
    g = to_networkx(graph)
    model = create_retriever(model_name, {"hub_cap": 0}).fit(graph)
    rng = np.random.default_rng(seed)
    n = graph.n_users
    users = rng.integers(0, n, n_pairs)
    targets = rng.integers(0, n, n_pairs)
    # the other half: a neighbour of a neighbour, so the scores are mostly nonzero
    adjacency = graph.csr()
    for i in range(n_pairs // 2):
        w = rng.choice(adjacency[users[i]].indices) if adjacency[users[i]].nnz else users[i]
        targets[i] = rng.choice(adjacency[w].indices) if adjacency[w].nnz else targets[i]
    keep = users != targets
    users, targets = users[keep], targets[keep]
    pairs = list(
        zip(users.tolist(), targets.tolist(), strict=True)
    )  # nx wants a list, not an iterator
    expected = np.array([p for _, _, p in nx_function(g, pairs)])
    assert len(expected) == len(pairs)
    got = model.score_pairs(users, targets)
    assert (expected > 0).sum() > len(expected) // 3, "the sample exercises nonzero scores"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # and what recommend returns for a few users is NetworkX's best
    for u in users[:4]:
        ids, scores = model.recommend([u], k=10)
        candidates = [v for v in range(n) if v != u and not g.has_edge(u, v)]
        reference = np.array([p for _, _, p in nx_function(g, [(u, v) for v in candidates])])
        best = np.sort(reference)[::-1][:10]
        np.testing.assert_allclose(scores[0], best, rtol=1e-5, atol=1e-7)
        by_nx = dict(zip(candidates, reference, strict=True))
        np.testing.assert_allclose(scores[0], [by_nx[int(v)] for v in ids[0]], rtol=1e-5, atol=1e-7)


class MatchesNetworkx:
    """Mixin: a neighbourhood model's scores and top lists equal NetworkX's link predictor.

    Set ``model_name`` and ``networkx_index`` (``(graph, pairs) -> (u, v, score)``).
    """

    model_name: str
    networkx_index: Callable

    def test_equals_networkx_on_a_random_graph(self):
        graph = random_graph(80, 0.08, 0, False)
        assert_matches_networkx(self.model_name, type(self).networkx_index, graph, 400)

    @pytest.mark.datasets
    def test_equals_networkx_on_ego_facebook(self):
        assert_matches_networkx(self.model_name, type(self).networkx_index, ego_facebook(), 3000)


# ---------------------------------------------------------------------- sparse top-k
def random_scores(rng: np.random.Generator, rows: int, cols: int, density: float) -> sp.csr_matrix:
    """Sparse scores with many ties (multiples of 1/4) and some stored zeros."""
    dense = rng.integers(1, 6, (rows, cols)) / 4.0
    dense[rng.random((rows, cols)) > density] = 0.0
    dense[0] = 0.0  # a row with no positive score at all
    stored_zero = (dense == 0) & (rng.random((rows, cols)) < 0.05)
    matrix = sp.csr_matrix(np.where(stored_zero, 7.0, dense).astype(np.float32))
    matrix.data[matrix.data == 7.0] = 0.0
    return matrix


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 4, 17, 60])
@pytest.mark.parametrize("allowed_kind", ["none", "mask", "rows"])
def test_sparse_top_k_equals_dense_top_k(seed: int, k: int, allowed_kind: str) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = 23, 41
    scores = random_scores(rng, rows, cols, density=[0.05, 0.3, 0.9][seed % 3])
    forbidden = rng.random((rows, cols)) < 0.15
    allowed = None
    allowed_arg: np.ndarray | sp.csr_matrix | None = None
    if allowed_kind == "mask":
        allowed = rng.random(cols) < 0.6
        allowed_arg = allowed
    elif allowed_kind == "rows":
        allowed = rng.random((rows, cols)) < 0.5
        allowed_arg = sp.csr_matrix(allowed.astype(np.float32))
    want_ids, want_scores = dense_reference(scores.toarray(), k, forbidden, allowed)
    got_ids, got_scores = sparse_top_k(
        scores, k, forbidden=sp.csr_matrix(forbidden.astype(np.float32)), allowed=allowed_arg
    )
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_scores, want_scores)


def test_sparse_top_k_without_masks_and_with_long_rows() -> None:
    rng = np.random.default_rng(7)
    # rows of very different lengths land in different length groups
    dense = np.zeros((5, 300), dtype=np.float32)
    for row, length in enumerate([0, 1, 3, 40, 300]):
        dense[row, rng.choice(300, length, replace=False)] = rng.integers(1, 4, length)
    for k in (1, 2, 10, 299, 300, 305):
        want = top_k(dense, k)
        got = sparse_top_k(sp.csr_matrix(dense), k)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_sparse_top_k_treats_stored_zeros_as_absent() -> None:
    dense = np.zeros((2, 300), dtype=np.float32)
    dense[0, 100:250] = np.arange(1, 151)  # a long row, cut by the sampled bound
    dense[1, 250:255] = 1.0  # a short row, completed with zero scores
    dense[1, 200:210] = 9.0
    matrix = sp.csr_matrix(dense)
    matrix.data[matrix.data == 9.0] = 0.0  # stored zeros at high columns
    for k in (5, 20, 160):
        want = top_k(matrix.toarray(), k)
        got = sparse_top_k(matrix, k)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_sparse_top_k_orders_tiny_and_large_floats_like_dense() -> None:
    values = np.array([[1e-30, 3.0, 1e-30, 7e5, 2.5e-8, 3.0]], dtype=np.float32)
    want = top_k(values, 6)
    got = sparse_top_k(sp.csr_matrix(values), 6)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0][0].tolist() == [3, 1, 5, 4, 0, 2]


def test_sparse_top_k_rejects_nothing_when_all_columns_are_taken() -> None:
    scores = sp.csr_matrix(np.zeros((2, 3), np.float32))
    forbidden = sp.csr_matrix(np.ones((2, 3), np.float32))
    ids, values = sparse_top_k(scores, 2, forbidden=forbidden)
    assert (ids == -1).all() and np.isneginf(values).all()


# ---------------------------------------------------------------------- helpers of the module
def test_spans_by_work_cover_everything_within_budget() -> None:
    work = np.array([5, 1, 1, 20, 3, 3, 3, 0, 9])
    spans = spans_by_work(work, budget=6)
    assert spans[0][0] == 0 and spans[-1][1] == len(work)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    for start, stop in spans:
        assert stop - start == 1 or np.maximum(work[start:stop], 1).sum() <= 6
    assert (3, 4) in spans, "a row above the budget gets a span of its own"
    assert spans_by_work(np.zeros(0, int), 10) == []


def test_reading_matrices_follow_the_arrows() -> None:
    # 0 -> 1 -> 2
    a = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 2])), shape=(3, 3), dtype=np.float32)
    first, second = reading_matrices(a, "out_out")
    assert (first @ second)[0, 2] == 1  # 2 is followed by the account 0 follows
    first, second = reading_matrices(a, "in_in")
    assert (first @ second)[2, 0] == 1  # 0 follows the account that follows 2
    first, second = reading_matrices(a, "undirected")
    assert (first != first.T).nnz == 0 and first[2, 1] == 1


def test_cap_rows_samples_hubs_and_keeps_the_rest() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 60)) < 0.1).astype(np.float32)
    dense[3] = 1.0  # a hub with 60 edges
    dense[8, :25] = 1.0
    matrix = sp.csr_matrix(dense)
    lengths = np.diff(matrix.indptr)
    assert cap_rows(matrix, int(lengths.max()), "sample", 0) is matrix
    assert cap_rows(matrix, 0, "sample", 0) is matrix
    capped = cap_rows(matrix, 12, "sample", 0)
    capped_lengths = np.diff(capped.indptr)
    assert capped_lengths.max() == 12
    small = lengths <= 12
    np.testing.assert_array_equal(capped.toarray()[small], dense[small])
    assert (capped.toarray() <= dense).all(), "only existing edges are kept"
    again = cap_rows(matrix, 12, "sample", 0)
    assert (again != capped).nnz == 0, "seeded"
    assert (cap_rows(matrix, 12, "sample", 1) != capped).nnz > 0
    skipped = cap_rows(matrix, 12, "skip", 0)
    assert skipped[3].nnz == 0 and skipped[8].nnz == 0
    np.testing.assert_array_equal(skipped.toarray()[small], dense[small])


def test_explanation_text() -> None:
    def make(ids):
        return Explanation(
            user=0,
            user_id="me",
            candidate=1,
            candidate_id="c",
            score=1.0,
            via=np.arange(len(ids)),
            via_ids=np.array(ids),
            contributions=np.ones(len(ids)),
            relation="followed by",
        )

    assert make(["ann"]).text() == "followed by ann"
    assert make(["ann", "bob", "cy"]).text() == "followed by ann, bob and cy"
    assert make([]).text() == "no common connections"


# ---------------------------------------------------------------------- directed readings
@pytest.fixture(scope="module")
def digraph() -> Interactions:
    return random_graph(22, 0.15, seed=3, directed=True)


#: Every model with every reading; the degree side only where it enters the score.
READING_CASES = [
    (model, path, degree)
    for model in TWO_HOP_MODELS
    for path in PATHS
    for degree in (
        ["exit", "entry", "total"] if model in ("adamic_adar", "resource_allocation") else ["exit"]
    )
]


@pytest.mark.parametrize(("model_name", "path", "degree"), READING_CASES)
def test_directed_readings_equal_brute_force(
    digraph: Interactions, model_name: str, path: str, degree: str
) -> None:
    model = create_retriever(model_name, {"path": path, "degree": degree, "hub_cap": 0})
    model.fit(digraph)
    expected = brute_force_scores(digraph, model_name, path, degree)
    n = digraph.n_users
    users = np.arange(n)
    np.testing.assert_allclose(model.score_rows(users).toarray(), expected, rtol=1e-5, atol=1e-7)
    pairs_u, pairs_v = np.divmod(np.arange(n * n), n)
    np.testing.assert_allclose(
        model.score_pairs(pairs_u, pairs_v), expected.ravel(), rtol=1e-5, atol=1e-7
    )
    forbidden = digraph.seen().toarray() > 0
    np.fill_diagonal(forbidden, True)
    want_ids, want_scores = dense_reference(
        model.score_rows(users).toarray(), 7, forbidden=forbidden
    )
    got_ids, got_scores = model.recommend(users, k=7)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)


def test_readings_differ_on_a_directed_graph(digraph: Interactions) -> None:
    rows = {
        path: create_retriever("common_neighbors", {"path": path})
        .fit(digraph)
        .score_rows(np.arange(digraph.n_users))
        for path in PATHS
    }
    assert all((rows["out_out"] != rows[p]).nnz for p in PATHS[1:])
    np.testing.assert_array_equal(rows["out_in"].toarray(), rows["out_in"].toarray().T)


def test_readings_agree_on_a_friendship_graph() -> None:
    graph = random_graph(20, 0.2, seed=1, directed=False)
    users = np.arange(graph.n_users)
    scores = [
        create_retriever("adamic_adar", {"path": p}).fit(graph).score_rows(users).toarray()
        for p in PATHS
    ]
    for other in scores[1:]:
        np.testing.assert_allclose(other, scores[0], rtol=1e-6)


def test_self_loops_and_duplicate_edges_are_ignored() -> None:
    graph = random_graph(15, 0.2, seed=4, directed=True)
    noisy = Interactions.from_indices(
        np.r_[graph.src, graph.src[:5], [2, 7]],
        np.r_[graph.dst, graph.dst[:5], [2, 7]],
        n_users=graph.n_users,
        one_sided=True,
        directed=True,
    )
    users = np.arange(graph.n_users)
    for name in TWO_HOP_MODELS:
        clean = create_retriever(name).fit(graph).score_rows(users).toarray()
        messy = create_retriever(name).fit(noisy).score_rows(users).toarray()
        np.testing.assert_allclose(messy, clean, rtol=1e-6)


# ---------------------------------------------------------------------- batching, threads, hubs
@pytest.mark.parametrize("model_name", TWO_HOP_MODELS)
def test_batches_and_threads_change_nothing(model_name: str) -> None:
    graph = random_graph(60, 0.08, seed=5, directed=True)
    users = np.arange(graph.n_users)
    one = create_retriever(model_name, {"n_threads": 1}).fit(graph)
    many = create_retriever(model_name, {"n_threads": 2, "batch_paths": 7}).fit(graph)
    a_ids, a_scores = one.recommend(users, k=12)
    b_ids, b_scores = many.recommend(users, k=12)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_scores, b_scores)


def test_recommend_honours_exclude_and_per_user_candidates() -> None:
    graph = random_graph(40, 0.1, seed=6, directed=True)
    model = create_retriever("resource_allocation").fit(graph)
    users = np.arange(graph.n_users)
    rng = np.random.default_rng(0)
    exclude = [rng.choice(40, 5, replace=False) for _ in users]
    candidates = sp.csr_matrix((rng.random((40, 40)) < 0.4).astype(np.float32))
    ids, scores = model.recommend(users, k=9, exclude=exclude, candidates=candidates)
    # the values a caller stores in a sparse exclude do not matter, negative ones included
    signed = rows_as_csr(exclude, 40, 40, "exclude")
    signed.data[:] = -3.0
    again = model.recommend(users, k=9, exclude=signed, candidates=candidates)
    np.testing.assert_array_equal(again[0], ids)
    forbidden = graph.seen().toarray() > 0
    np.fill_diagonal(forbidden, True)
    for u, row in enumerate(exclude):
        forbidden[u, row] = True
    want_ids, want_scores = dense_reference(
        model.score_rows(users).toarray(), 9, forbidden, candidates.toarray() > 0
    )
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def hub_graph() -> Interactions:
    """A random follow graph plus two hubs: one everybody follows, one that follows everybody."""
    base = random_graph(80, 0.05, seed=8, directed=True)
    fans = np.arange(1, 80)
    src = np.r_[base.src, fans, np.full(79, 40)]
    dst = np.r_[base.dst, np.zeros(79, np.int64), np.r_[np.arange(40), np.arange(41, 80)]]
    return Interactions.from_indices(src, dst, n_users=80, one_sided=True, directed=True)


@pytest.mark.parametrize("model_name", TWO_HOP_MODELS)
@pytest.mark.parametrize("path", ["out_out", "undirected"])
def test_hub_cap_above_max_degree_changes_nothing(model_name: str, path: str) -> None:
    graph = hub_graph()
    users = np.arange(graph.n_users)
    exact = create_retriever(model_name, {"hub_cap": 0, "path": path}).fit(graph)
    max_degree = int(np.diff(exact.second_.indptr).max())
    capped = create_retriever(model_name, {"hub_cap": max_degree, "path": path}).fit(graph)
    a_ids, a_scores = exact.recommend(users, k=15)
    b_ids, b_scores = capped.recommend(users, k=15)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_array_equal(a_scores, b_scores)
    np.testing.assert_array_equal(exact.path_counts(users), capped.path_counts(users))


@pytest.mark.parametrize("policy", ["sample", "skip"])
def test_hub_cap_below_max_degree_bounds_the_work(policy: str) -> None:
    graph = hub_graph()
    users = np.arange(graph.n_users)
    exact = create_retriever("common_neighbors", {"hub_cap": 0}).fit(graph)
    cap = 10
    capped = create_retriever("common_neighbors", {"hub_cap": cap, "hub_policy": policy})
    capped.fit(graph)
    exact_work = exact.path_counts(users)
    work = capped.path_counts(users)
    first_sizes = np.diff(capped.first_.indptr)
    assert (work <= first_sizes * cap).all()
    assert work.sum() < exact_work.sum() and (work <= exact_work).all()
    rows = capped.score_rows(users)
    assert (np.diff(rows.indptr) <= work).all(), "a row holds at most its paths"
    # kept paths keep their weight: a capped score never exceeds the exact one
    assert (rows.toarray() <= exact.score_rows(users).toarray() + 1e-6).all()
    # hubs keep their true degree in the weights
    aa = create_retriever("adamic_adar", {"hub_cap": cap, "hub_policy": policy}).fit(graph)
    np.testing.assert_array_equal(aa.degree_, exact.degree_)


# ---------------------------------------------------------------------- explanations
@pytest.mark.parametrize("model_name", TWO_HOP_MODELS)
@pytest.mark.parametrize("path", ["out_out", "in_out", "undirected"])
def test_explanations_name_the_middle_nodes(model_name: str, path: str) -> None:
    graph = random_graph(30, 0.15, seed=9, directed=True)
    model = create_retriever(model_name, {"path": path}).fit(graph)
    first = model.first_.toarray() > 0
    second = model.second_.toarray() > 0
    for user in (0, 5, 11):
        ids, scores = model.recommend([user], k=5)
        full = model.explain(user, ids[0], top=None)
        short = model.explain(user, ids[0], top=2)
        for j, (e, s) in enumerate(zip(full, short, strict=True)):
            assert e.candidate == ids[0, j] and e.candidate_id == str(ids[0, j])
            middles = set(np.flatnonzero(first[user] & second[:, e.candidate]).tolist())
            assert set(e.via.tolist()) == middles
            assert e.score == pytest.approx(float(scores[0, j]), rel=1e-5)
            assert e.contributions.sum() == pytest.approx(e.score, rel=1e-5, abs=1e-7)
            order = np.lexsort((e.via, -e.contributions))
            np.testing.assert_array_equal(order, np.arange(len(e.via)))
            np.testing.assert_array_equal(s.via, e.via[:2])
            assert list(s.via_ids) == [str(v) for v in e.via[:2]]
            assert s.relation == model.relation


def test_explanations_say_followed_by_for_the_default_reading() -> None:
    # a and b both follow c; me follows a and b
    graph = Interactions.from_arrays(
        ["me", "me", "a", "b", "b"],
        ["a", "b", "c", "c", "d"],
        one_sided=True,
        directed=True,
    )
    model = create_retriever("common_neighbors").fit(graph)
    me = graph.users.index_of("me")
    ids, _ = model.recommend([me], k=2)
    assert graph.users.external(ids[0]).tolist() == ["c", "d"]
    (explanation,) = model.explain(me, ids[0][:1])
    assert explanation.text() == "followed by a and b"
    assert explanation.user_id == "me" and explanation.candidate_id == "c"
    friends = Interactions.from_arrays(["x", "y"], ["y", "z"], one_sided=True, directed=False)
    model = create_retriever("jaccard").fit(friends)
    (e,) = model.explain(friends.users.index_of("x"), [friends.users.index_of("z")])
    assert e.text() == "friends with y"


def test_no_cap_is_a_toml_value(tmp_path) -> None:
    from recgraph.retrieval import parse_param_overrides

    params_file = tmp_path / "params.toml"
    params_file.write_text('[adamic_adar]\nhub_cap = 0\npath = "in_out"\n')
    params = parse_param_overrides(["ppr.hub_cap=0"], params_file)
    model = create_retriever("adamic_adar", params["adamic_adar"]).fit(hub_graph())
    assert model.config.hub_cap == 0 and model.config.path == "in_out"
    assert model.expansion_.nnz == model.second_.nnz, "nothing capped"
    assert create_retriever("ppr", params["ppr"]).config.hub_cap == 0


def test_the_first_hop_cap_bounds_a_users_own_huge_follow_list() -> None:
    from recgraph.retrieval import create_retriever

    # account 0 follows 3,000 accounts; each follows account 1 and one other
    n = 3003
    src = np.r_[np.zeros(3000, int), np.arange(2, 3002), np.arange(2, 3002)]
    dst = np.r_[np.arange(2, 3002), np.ones(3000, int), np.full(3000, 3002)]
    graph = Interactions.from_indices(src, dst, n_users=n, one_sided=True, directed=True)
    exact = create_retriever("adamic_adar", {"first_hop_cap": 0}).fit(graph)
    capped = create_retriever("adamic_adar", {"first_hop_cap": 100}).fit(graph)
    assert exact.path_counts([0])[0] == 6000
    assert capped.path_counts([0])[0] == 200, "at most first_hop_cap x hub_cap paths"
    assert capped.recommend([0], k=2)[0][0].tolist() == exact.recommend([0], k=2)[0][0].tolist()
    others = np.arange(1, 50)
    (
        np.testing.assert_array_equal(
            capped.recommend(others, k=3)[0], exact.recommend(others, k=3)[0]
        ),
        "users below the cap are untouched",
    )
    default = create_retriever("adamic_adar").fit(graph)
    assert default.path_counts([0])[0] == 6000, "the default cap is above this list"


def test_top_contributions_cut_equals_the_full_sort_with_ties_and_nan():
    """The partial selection (only entries at least the top-th best are sorted) gives the
    full lexsort's first ``top``: best first, ties to the lower middle, NaN never before a number."""
    from recgraph.retrieval.neighborhood import top_contributions

    rng = np.random.default_rng(3)
    for trial in range(600):
        n = int(rng.integers(0, 30))
        middles = rng.permutation(200)[:n]
        values = rng.integers(0, 4, n).astype(np.float64)  # many ties
        if trial % 3 == 0:
            values = rng.random(n)
        if trial % 5 == 0 and n:
            values[rng.integers(0, n, 2)] = np.nan
        top = [None, 0, 1, 3, 8, 40][trial % 6]
        order = np.lexsort((middles, -values))
        order = order if top is None else order[:top]
        via, contrib = top_contributions(middles, values, top)
        assert via.tolist() == middles[order].tolist()
        np.testing.assert_array_equal(contrib, values[order].astype(np.float32))


@pytest.mark.parametrize("name", ["adamic_adar", "jaccard", "resource_allocation"])
def test_explanations_from_the_pair_products_equal_the_middles_rows(name, monkeypatch):
    """explain reads the paths once from the pair products (either side): the same middles,
    contributions and scores, bit for bit, as reading every middle's row (``_through``)."""
    from recgraph.retrieval import neighborhood

    data = random_graph(120, 0.06, seed=5, directed=True)
    model = create_retriever(name, {"hub_cap": 6}).fit(data)
    asked = []
    for user in range(0, 120, 11):
        ids, _ = model.recommend([user], 8)
        candidates = np.concatenate([ids[0][ids[0] >= 0], [3, 3, 50]])
        asked.append((user, candidates, model.explain(user, candidates, None)))
    monkeypatch.setattr(neighborhood, "row_products", lambda *args: None)
    for user, candidates, got in asked:
        want = model.explain(user, candidates, None)
        for a, b in zip(got, want, strict=True):
            assert a.score == b.score
            assert a.via.tolist() == b.via.tolist()
            assert a.contributions.tobytes() == b.contributions.tobytes()


@pytest.mark.parametrize("name", ["adamic_adar", "common_neighbors", "resource_allocation"])
@pytest.mark.parametrize("dense_lookup", [0, 1 << 30])
def test_a_short_request_list_is_the_general_paths_with_zero_score_fill(
    name, dense_lookup, monkeypatch
):
    """Users with fewer than k scored accounts: the request path lists them, then zero-score
    accounts lowest first that are not seen, not excluded and not the user, exactly as the
    batch path (sparse product and sparse_top_k) does, without a product over every account;
    the paths summed either way (``DENSE_LOOKUP`` forced)."""
    data = random_graph(60, 0.03, seed=9, directed=True)  # sparse: most users reach few
    model = create_retriever(name).fit(data)
    taken = forced_paths(monkeypatch, dense_lookup)
    rng = np.random.default_rng(0)
    asked = []
    for user in range(60):
        for exclude_seen in (True, False):
            exclude = rows_as_csr([rng.integers(0, 60, 3).tolist()], 1, 60, "exclude")
            for ex in (None, exclude):
                k = int(rng.integers(5, 70))
                got = model.recommend([user], k, exclude_seen=exclude_seen, exclude=ex)
                asked.append((user, k, exclude_seen, ex, got))
    assert any((got[1][0] == 0).any() for *_, got in asked)  # fills happened
    assert any((got[0][0] == -1).any() for *_, got in asked)  # and ran out of accounts
    assert took_the_forced_side(taken, dense_lookup)
    monkeypatch.setattr(type(model), "_recommend_one", lambda *args: None)
    for user, k, exclude_seen, ex, got in asked:
        want = model.recommend([user], k, exclude_seen=exclude_seen, exclude=ex)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1].tobytes() == want[1].tobytes()


def test_best_first_is_the_lexsort_head_with_ties_to_the_lower_key() -> None:
    # the circle of trust, a walk's top k and an explanation's best middles all cut this way
    from recgraph.retrieval.neighborhood import best_first

    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(2, 40))
        nodes = rng.permutation(500)[:n]
        scores = rng.integers(1, 4, n) / 7.0  # many ties
        if rng.random() < 0.2:
            scores[rng.integers(0, n)] = np.nan  # NaN last, as in the lexsort
        want = np.lexsort((nodes, -scores))
        for count in (int(rng.integers(1, n)), n, n + 3, None):
            got = best_first(scores, nodes, count)
            assert got.tolist() == want[:count].tolist()


def test_sorted_groups_is_np_unique_with_the_inverse() -> None:
    from recgraph.data.sorted_keys import sorted_groups

    rng = np.random.default_rng(2)
    for size in (0, 1, 7, 500):
        keys = np.sort(rng.integers(0, 50, size))  # sorted runs, as a walk's entries come
        keys = np.concatenate([keys, np.sort(rng.integers(0, 50, size))])
        order, distinct, group = sorted_groups(keys)
        unique, inverse = np.unique(keys, return_inverse=True)
        assert distinct.tolist() == unique.tolist()
        back = np.empty(len(keys), dtype=np.int64)
        back[order] = group
        assert back.tolist() == inverse.ravel().tolist()
        assert (np.diff(order[group == 0]) > 0).all() if len(keys) else True  # stable


def forced_paths(monkeypatch, dense_lookup: int) -> list[str]:
    """Make one-user two-hop requests sum their paths by ``dense_lookup`` (0: always in
    numpy, by the paths; huge: always compiled, over every account, where there are paths);
    returns the list each request's branch is appended to."""
    from recgraph.retrieval import neighborhood, score_kernels

    monkeypatch.setattr(neighborhood, "DENSE_LOOKUP", dense_lookup)
    taken: list[str] = []
    dense, sparse = score_kernels.paths_top, neighborhood.path_sums_numpy
    monkeypatch.setattr(score_kernels, "paths_top", lambda *a: taken.append("dense") or dense(*a))
    monkeypatch.setattr(
        neighborhood, "path_sums_numpy", lambda *a: taken.append("sparse") or sparse(*a)
    )
    return taken


def took_the_forced_side(taken: list[str], dense_lookup: int) -> bool:
    """Every request summed its paths in numpy (``DENSE_LOOKUP`` 0), or some compiled (a user
    without a path still takes numpy's)."""
    return set(taken) == {"sparse"} if dense_lookup == 0 else "dense" in taken


@pytest.mark.parametrize("model_name", ["common_neighbors", "adamic_adar"])
@pytest.mark.parametrize("p", [0.02, 0.3])
@pytest.mark.parametrize("dense_lookup", [0, 1 << 30])
def test_both_path_sums_give_the_batchs_top_k(model_name, p, dense_lookup, monkeypatch):
    """One request's top ``k``, its paths summed compiled over every account or in numpy
    over the paths (``DENSE_LOOKUP`` forced each way), is the batch path's, bit for bit."""
    graph = random_graph(120, p, seed=4, directed=True)
    model = create_retriever(model_name, {"hub_cap": 0}).fit(graph)
    users = np.arange(0, 120, 11)
    ids, scores = model.recommend(users, k=5)
    taken = forced_paths(monkeypatch, dense_lookup)
    for i, user in enumerate(users):
        one_ids, one_scores = model.recommend(np.array([user]), k=5)
        assert np.array_equal(one_ids[0], ids[i])
        assert one_scores[0].tobytes() == scores[i].tobytes()
    assert took_the_forced_side(taken, dense_lookup)


@pytest.mark.parametrize("name", ["jaccard", "adamic_adar"])
def test_load_warms_the_paths_kernel_only_where_requests_call_it(name, monkeypatch):
    """Jaccard's requests take the general path (normalised scores), never ``paths_top``."""
    from recgraph.retrieval import score_kernels

    warmed = []
    monkeypatch.setattr(score_kernels, "warm_up_paths", lambda *a: warmed.append(1))
    model = create_retriever(name).fit(random_graph(30, 0.2, seed=2, directed=True))
    model._warm_up_request_kernels()
    assert bool(warmed) == (name != "jaccard")
    fast = model._recommend_one(3, 5, True, None)
    assert (fast is None) == (name == "jaccard")
