"""What the walk retrievers share: the memory-mapped graph and the overlay of new edges."""

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.retrieval import Retriever, create_retriever
from tests.retrieval.test_neighborhood import random_graph


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


def test_the_kernel_graph_reads_both_overlay_sides_from_one_snapshot(monkeypatch) -> None:
    """A feedback write between reading the overlay's out and in sides would mix two
    snapshots in one walk: the kernel graph takes both from one."""
    model = create_retriever("ppr").fit(chain_and_island())
    overlay, walk = model.overlay, model.walk_graph_
    read = overlay._sides

    def read_then_write():  # a write lands right after each read
        sides = read()
        overlay.add([0], [len(overlay) + 2])
        return sides

    monkeypatch.setattr(overlay, "_sides", read_then_write)
    graph = walk.kernel_graph()
    out_nodes, out_indices, in_nodes, in_indices = graph[4], graph[6], graph[7], graph[9]
    assert len(out_indices) == len(in_indices), "one snapshot: as many edges each way"
    assert sorted(out_nodes.tolist()) == sorted(set(in_indices.tolist()))
    assert sorted(in_nodes.tolist()) == sorted(set(out_indices.tolist()))


def test_requests_run_the_kernels_warm_up_compiled_even_on_read_only_int64_rows(tmp_path) -> None:
    """A loaded model's requests (a memory-mapped int64 history row is a read-only view,
    an allowed mask, the overlay, explanations) reach no kernel with argument types
    warm_up did not compile: numba would compile another version in the first request."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import json
import numpy as np
from numba.core.registry import CPUDispatcher
from recgraph.retrieval import Retriever, create_retriever, pixie_kernels, walk_kernels
from tests.retrieval.test_walks import chain_and_island

def signatures():
    return {{f"{{m.__name__}}.{{n}}": len(f.signatures) for m in (walk_kernels, pixie_kernels)
            for n, f in vars(m).items() if isinstance(f, CPUDispatcher)}}

pixie_kernels.warm_up()
before = signatures()
for name in ("ppr", "salsa", "pixie"):
    create_retriever(name).fit(chain_and_island()).save({str(tmp_path)!r} + "/" + name)
    model = Retriever.load({str(tmp_path)!r} + "/" + name)
    indices = np.asarray(model._seen.indices, np.int64)
    indices.flags.writeable = False
    model._seen.indices = indices
    frozen = np.ones(model.n_items, bool)
    frozen.flags.writeable = False
    for user in range(model.n_users):
        model.recommend([user], k=1)
        model.recommend([user], k=1, candidates=np.arange(2))
        model.recommend([user], k=1, candidates=frozen)
    model.observe(["a"], ["x"])
    for user in range(model.n_users):
        model.recommend([user], k=1)
        model.explain(user, [0, 1])
after = signatures()
print(json.dumps({{k: [before.get(k, 0), v] for k, v in after.items() if v > before.get(k, 0)}}))
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=False
    )
    assert done.returncode == 0, done.stderr
    compiled_again = json.loads(done.stdout.strip().splitlines()[-1])
    called_from_python = {"top_allowed", "ppr_push", "ppr_sweep", "ppr_explain", "gather",
                          "salsa", "best_first", "effective_cap", "pixie_walk", "pixie_combine"}  # fmt: skip
    assert not {k: v for k, v in compiled_again.items() if k.split(".")[-1] in called_from_python}


def test_walk_cache_is_bounded_by_bytes_and_count(monkeypatch):
    import recgraph.retrieval.walks as walks_module
    from recgraph.retrieval import create_retriever

    rng = np.random.default_rng(0)
    src, dst = np.nonzero(rng.random((60, 60)) < 0.1)
    keep = src != dst
    data = Interactions.from_indices(src[keep], dst[keep], n_users=60, one_sided=True)
    model = create_retriever("ppr").fit(data)
    sizes = [walks_module._nbytes(model.cached_row(u)) for u in range(3)]
    assert model._cache_bytes == sum(sizes)
    monkeypatch.setattr(walks_module, "ROW_CACHE_BYTES", sizes[1] + sizes[2] + 1)
    model.cached_row(3)  # past the byte budget: the least recently used rows go
    assert list(model._cache) == [("row", 2), ("row", 3)]
    assert model._cache_bytes == sum(walks_module._nbytes(v[1]) for v in model._cache.values())
    monkeypatch.setattr(walks_module, "ROW_CACHE", 1)
    again = model.cached_row(2)  # a hit: the same arrays, nothing walked
    assert again is model._cache[("row", 2)][1]
    model.cached_row(5)
    assert list(model._cache) == [("row", 5)]
    model._forget_walks()
    assert not model._cache and model._cache_bytes == 0


def test_a_walk_score_below_float32s_least_is_the_general_paths_zero() -> None:
    """A request's list scores a walk's float64 row as the batch path's float32 rows do: a
    score that rounds to 0 is no score, so the zero fill ranks that target by its index."""
    graph = random_graph(30, 0.1, seed=1, directed=True)
    model = create_retriever("ppr").fit(graph)
    row = (np.array([5, 9, 20, 25], np.int64), np.array([0.5, 1e-60, 0.25, 1e-50]))
    model.cached_row = lambda user: row
    for k in (2, 3, 6):
        got = model.recommend([0], k, exclude_seen=False)
        want = model.recommend([0, 1], k, exclude_seen=False)
        np.testing.assert_array_equal(got[0][0], want[0][0])
        assert got[1][0].tobytes() == want[1][0].tobytes()
    assert got[0][0].tolist() == [5, 20, 0, 1, 2, 3]
