import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recgraph.data.graph_csr as graph_csr
from recgraph.data.graph_csr import GraphCSR, build_from_chunks, build_from_store
from recgraph.data.store import Store
from recgraph.errors import InputError


def random_edges(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = np.unique(rng.integers(0, n, size=(m, 2)), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return pairs[:, 0], pairs[:, 1]


def test_both_directions_hold_the_same_edges() -> None:
    src, dst = random_edges(50, 400, seed=0)
    graph = GraphCSR.from_edges(src, dst, 50)
    assert graph.n_edges == len(src)
    out = graph.to_csr("out")
    assert (out != graph.to_csr("in").T).nnz == 0
    assert graph.out_indices.dtype == np.int32 and graph.out_indptr.dtype == np.int64
    for u in (0, 7, 49):
        np.testing.assert_array_equal(graph.neighbors(u), np.sort(dst[src == u]))
        np.testing.assert_array_equal(graph.neighbors(u, "in"), np.sort(src[dst == u]))


def test_save_and_memory_mapped_load_round_trip(tmp_path) -> None:
    src, dst = random_edges(80, 900, seed=1)
    graph = GraphCSR.from_edges(src, dst, 80)
    graph.save(tmp_path / "g")
    loaded = GraphCSR.load(tmp_path / "g")
    for name in ("out_indptr", "out_indices", "in_indptr", "in_indices"):
        array = getattr(loaded, name)
        assert isinstance(array, np.memmap), f"{name} is mapped, not read"
        assert not array.flags.writeable
        np.testing.assert_array_equal(array, getattr(graph, name))
    assert (loaded.n_rows, loaded.n_cols) == (80, 80)
    in_memory = GraphCSR.load(tmp_path / "g", mmap=False)
    assert not isinstance(in_memory.out_indices, np.memmap)
    manifest = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert manifest["n_edges"] == len(src)


def test_a_bad_manifest_is_a_clear_error(tmp_path) -> None:
    GraphCSR.from_edges([0], [1], 2).save(tmp_path / "g")
    (tmp_path / "g" / "graph.json").write_text('{"format_version": 99}')
    with pytest.raises(InputError, match="format_version"):
        GraphCSR.load(tmp_path / "g")
    with pytest.raises(FileNotFoundError):
        GraphCSR.load(tmp_path / "nothing")


def test_gather_caps_every_row_with_a_fixed_sample() -> None:
    src = np.r_[np.zeros(100, int), [1, 1]]
    dst = np.r_[np.arange(1, 101), [2, 3]]
    graph = GraphCSR.from_edges(src, dst, 101)
    owner, neighbour = graph.gather(np.array([0, 1, 5]), cap=10)
    assert np.bincount(owner, minlength=3).tolist() == [10, 2, 0]
    assert len(set(neighbour[owner == 0].tolist())) == 10
    assert set(neighbour[owner == 0].tolist()) <= set(range(1, 101))
    again = graph.gather(np.array([0, 1, 5]), cap=10)
    np.testing.assert_array_equal(again[1], neighbour)
    owner, neighbour = graph.gather(np.array([0]), cap=0)
    assert len(neighbour) == 100


@pytest.mark.parametrize("symmetric", [False, True])
def test_streaming_build_equals_the_in_memory_one(tmp_path, monkeypatch, symmetric) -> None:
    monkeypatch.setattr(graph_csr, "SORT_CHUNK", 37)  # many counting-sort steps
    src, dst = random_edges(60, 700, seed=2)
    if symmetric:
        keep = src < dst
        src, dst = src[keep], dst[keep]
    chunks = [(src[i : i + 50], dst[i : i + 50]) for i in range(0, len(src), 50)]
    built = build_from_chunks(chunks, 60, tmp_path / "g", symmetric=symmetric)
    if symmetric:
        expected = GraphCSR.from_edges(np.r_[src, dst], np.r_[dst, src], 60)
    else:
        expected = GraphCSR.from_edges(src, dst, 60)
    assert isinstance(built.out_indices, np.memmap)
    for side in ("out", "in"):
        a, b = built.to_csr(side), expected.to_csr(side)
        a.sort_indices()
        assert (a != b).nnz == 0
    # rows of the in side come out sorted: the edges arrive sorted by source
    for v in range(60):
        row = built.neighbors(v, "in")
        assert (np.diff(row) > 0).all()
    assert not any(p.name.startswith("csr-") for p in (tmp_path / "g").iterdir()), "scratch removed"


def test_streaming_build_rejects_unsorted_or_out_of_range_edges(tmp_path) -> None:
    with pytest.raises(InputError, match="sorted"):
        build_from_chunks([(np.array([3, 1]), np.array([0, 0]))], 5, tmp_path / "a")
    with pytest.raises(InputError, match="outside"):
        build_from_chunks([(np.array([0]), np.array([9]))], 5, tmp_path / "b")


@pytest.mark.parametrize("directed", [True, False])
def test_build_from_the_store_streams_chunks(tmp_path, directed) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    src, dst = random_edges(40, 300, seed=3)
    with store.writer() as writer:
        writer.follows(
            pd.DataFrame({"src": [f"a{s}" for s in src], "dst": [f"a{d}" for d in dst]}),
            directed=directed,
        )
    graph, ids = build_from_store(store, tmp_path / "g", chunk_rows=17)
    reference = store.follows_graph()
    store.close()
    assert list(ids.ids) == list(reference.users.ids)
    expected = reference.csr("binary")
    got = graph.to_csr("out")
    got.sort_indices()
    assert got.shape == expected.shape and (got != sp.csr_matrix(expected)).nnz == 0
    assert (np.load(tmp_path / "g" / "ids.npy") == ids.to_array()).all()


def test_warm_pages_reads_the_maps_that_fit_and_skips_the_rest(tmp_path, monkeypatch):
    graph = GraphCSR.from_edges(np.arange(5000) % 97, (np.arange(5000) * 7) % 89, 100)
    loaded = GraphCSR.load(graph.save(tmp_path / "g"), mmap=True)
    arrays = [*loaded.arrays("out"), *loaded.arrays("in")]
    total = sum(a.nbytes for a in arrays)
    assert graph_csr.warm_pages(arrays) == total
    monkeypatch.setattr(graph_csr, "available_memory", lambda: total)  # more than half of it
    assert graph_csr.warm_pages(arrays) == 0
    assert graph_csr.warm_pages([np.zeros(0)]) == 0
    assert graph_csr.available_memory() > 0
