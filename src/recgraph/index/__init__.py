"""Nearest-neighbour search over embeddings: exact, FAISS (flat, HNSW, IVF) and ScaNN, one interface.

>>> from recgraph.index import create_index
>>> index = create_index("faiss_hnsw", metric="ip").build(model.item_vectors())  # doctest: +SKIP
>>> ids, scores = index.search(model.user_vectors()[users], k=10, exclude=seen)  # doctest: +SKIP
"""

from recgraph.index.base import Index, IndexConfig, overfetch_search
from recgraph.index.registry import available_indexes, create_index, get_index_class, load_index

__all__ = [
    "Index",
    "IndexConfig",
    "available_indexes",
    "create_index",
    "get_index_class",
    "load_index",
    "overfetch_search",
]
