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
