import numpy as np
import pytest

pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install 'recgraph[ann]')")

from recgraph.index import create_index  # noqa: E402
from tests.index.conformance import IndexConformance  # noqa: E402


class TestFaissFlat(IndexConformance):
    index_name = "faiss_flat"
    recall_floor = 1.0
    exact = True


class TestFaissHNSW(IndexConformance):
    index_name = "faiss_hnsw"
    params = {"m": 16, "ef_construction": 40, "ef_search": 64}
    recall_floor = 0.9


class TestFaissIVF(IndexConformance):
    index_name = "faiss_ivf"
    params = {"n_lists": 32, "n_probe": 8}
    recall_floor = 0.95


def test_ivf_default_lists_stay_trainable_on_small_data():
    index = create_index("faiss_ivf")
    assert index.n_lists_for(100) == 2  # 100 // 39: enough points per cell
    assert index.n_lists_for(1_000_000) == 2000
    assert create_index("faiss_ivf", n_lists=50).n_lists_for(10) == 10


def test_hnsw_ef_search_grows_with_k():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(500, 8)).astype(np.float32)
    index = create_index("faiss_hnsw", ef_search=4).build(items)
    ids, _ = index.search(items[:3], 50)
    assert (ids >= 0).all(), "efSearch below k must not cut results short"
