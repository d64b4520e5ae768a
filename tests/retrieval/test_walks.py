"""What the walk retrievers share: the memory-mapped graph and the overlay of new edges."""

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval import Retriever, create_retriever


def chain_and_island() -> Interactions:
    """a -> b -> c -> a, and an island nobody reaches: x -> y -> z, p -> x, p -> z."""
    return Interactions.from_arrays(
        ["a", "b", "c", "x", "y", "p", "p"],
        ["b", "c", "a", "y", "z", "x", "z"],
        one_sided=True,
        directed=True,
    )


@pytest.mark.parametrize("name", ["ppr", "salsa", "pixie"])
def test_a_follow_written_after_training_is_walked_at_once(name: str) -> None:
    graph = chain_and_island()
    model = create_retriever(name, {"steps": 4000} if name == "pixie" else {}).fit(graph)
    a, x, y, z = (graph.users.index_of(s) for s in "axyz")
    before = model.score_pairs([a, a], [y, z])
    assert (before == 0).all(), "the island is out of reach before"
    assert model.observe(["a"], ["x"]) == 1
    after = model.score_pairs([a, a], [y, z])
    assert (after > 0).any(), f"{name} walks the new edge into the island"
    # pixie: accounts followed by x's other followers (p follows z); the others: x's follows
    assert after[1 if name == "pixie" else 0] > 0
    ids, _ = model.recommend([a], k=3)
    assert x not in ids[0].tolist(), "the new follow counts as seen"


def test_observe_skips_unknown_ids_and_edges_already_trained() -> None:
    graph = chain_and_island()
    model = create_retriever("ppr").fit(graph)
    assert model.observe(["a", "nobody", "a"], ["b", "c", "someone"]) == 0
    assert len(model.overlay) == 0


def test_a_loaded_model_maps_its_graph_and_keeps_answering(tmp_path) -> None:
    graph = chain_and_island()
    model = create_retriever("salsa").fit(graph)
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    assert isinstance(loaded.graph_.out_indices, np.memmap)
    users = np.arange(graph.n_users)
    np.testing.assert_array_equal(loaded.recommend(users, k=3)[0], model.recommend(users, k=3)[0])
    assert loaded.observe(["a"], ["x"]) == 1, "a loaded (read-only) graph still takes new edges"


def test_aggregate_is_np_unique_and_bincount_bit_for_bit() -> None:
    """The stable-sort aggregate gives np.unique's nodes and the per-node sums added in
    input order (bincount over the inverse), the same float64 bits."""
    from recgraph.retrieval.walks import aggregate

    rng = np.random.default_rng(2)
    for trial in range(50):
        runs = [np.sort(rng.choice(10_000, int(rng.integers(1, 300)), replace=False))]
        runs += [rng.integers(0, 10_000, int(rng.integers(0, 300))) for _ in range(trial % 4)]
        nodes = np.concatenate(runs)
        values = rng.random(len(nodes)) * 10.0 ** rng.integers(-8, 2, len(nodes))
        unique, inverse = np.unique(nodes, return_inverse=True)
        want = np.bincount(inverse, weights=values, minlength=len(unique))
        got_nodes, got = aggregate(nodes, values)
        np.testing.assert_array_equal(got_nodes, unique)
        assert got.tobytes() == want.tobytes()


def test_aggregate_into_a_scratch_array_is_the_same_bits_and_leaves_it_zeroed() -> None:
    """The dense path (values added into a pooled array in their order) gives the sorted
    path's nodes and sums bit for bit, and hands the array back all zeros."""
    from recgraph.retrieval.walks import aggregate

    rng = np.random.default_rng(3)
    scratch = np.zeros(100_000)
    for trial in range(50):
        runs = [np.sort(rng.choice(100_000, int(rng.integers(1, 300)), replace=False))]
        runs += [rng.integers(0, 100_000, int(rng.integers(0, 300))) for _ in range(trial % 4)]
        nodes = np.concatenate(runs)
        values = rng.random(len(nodes)) * 10.0 ** rng.integers(-8, 2, len(nodes))
        want_nodes, want = aggregate(nodes, values)
        got_nodes, got = aggregate(nodes, values, len(scratch), scratch)
        np.testing.assert_array_equal(got_nodes, want_nodes)
        assert got.tobytes() == want.tobytes()
        assert not scratch.any()


@pytest.mark.parametrize("cap", [0, 1, 3, 7, 1000])
def test_the_walks_gather_is_the_graphs_gather(cap: int) -> None:
    """WalkGraph's own gather (fewer passes) gives GraphCSR.gather's arrays, capped or not,
    for repeated nodes, empty rows and no nodes."""
    from recgraph.data.graph_csr import GraphCSR
    from recgraph.data.graph_overlay import GraphOverlay
    from recgraph.retrieval.walks import WalkGraph
    from tests.retrieval.test_neighborhood import random_graph

    graph = GraphCSR.from_csr(random_graph(80, 0.08, seed=cap, directed=True).csr("binary"))
    walk = WalkGraph(graph, GraphOverlay(), cap)
    rng = np.random.default_rng(cap)
    for nodes in (rng.integers(0, 80, 30), np.array([5, 5, 5]), np.zeros(0, np.int64)):
        for side in ("out", "in"):
            want = graph.gather(nodes, side, cap)
            got = walk.trained_neighbours(nodes, side, cap)
            for w, g in zip(want, got, strict=True):
                np.testing.assert_array_equal(g, w)
                assert g.dtype == w.dtype


def test_a_random_neighbour_is_the_drawn_edge_or_minus_one_for_an_empty_row() -> None:
    """Without an overlay, a draw d picks edge floor(d * degree) of the node's row (the
    last one at most), and a node with no edge gets -1; with one the overlay's edges follow."""
    from recgraph.data.graph_csr import GraphCSR
    from recgraph.data.graph_overlay import GraphOverlay
    from recgraph.retrieval.walks import WalkGraph
    from tests.retrieval.test_neighborhood import random_graph

    graph = GraphCSR.from_csr(random_graph(60, 0.05, seed=9, directed=True).csr("binary"))
    overlay = GraphOverlay()
    walk = WalkGraph(graph, overlay, 0)
    rng = np.random.default_rng(9)
    nodes = rng.integers(0, 60, 500)
    draws = np.r_[rng.random(499), np.nextafter(1.0, 0.0)]
    for side in ("out", "in"):
        indptr, indices = graph.arrays(side)
        degree = np.diff(indptr)[nodes]
        assert (degree == 0).any(), "some rows are empty"
        picked = walk.random_neighbor(nodes, side, draws)
        want = np.full(len(nodes), -1)
        has = degree > 0
        at = indptr[nodes[has]] + np.minimum(
            (draws[has] * degree[has]).astype(int), degree[has] - 1
        )
        want[has] = indices[at]
        np.testing.assert_array_equal(picked, want)
    overlay.add(nodes[:1], [int(nodes[1])])
    first = walk.random_neighbor(nodes[:1], "out", np.array([np.nextafter(1.0, 0.0)]))
    assert first[0] == nodes[1], "the last draw picks the overlay's edge after the row"
