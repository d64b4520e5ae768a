"""Stage-1 candidate generators: one module per model, all behind :class:`Retriever`."""

from recgraph.retrieval.base import Retriever, RetrieverConfig, top_k
from recgraph.retrieval.registry import (
    available_retrievers,
    create_retriever,
    get_retriever_class,
    parse_param_overrides,
    register_retriever,
)

__all__ = [
    "Retriever",
    "RetrieverConfig",
    "available_retrievers",
    "create_retriever",
    "get_retriever_class",
    "parse_param_overrides",
    "register_retriever",
    "top_k",
]
