"""Indexes by name, imported only when asked for (FAISS and ScaNN stay unloaded until used).

A new index type adds one line to ``_INDEXES``: its name and ``module:Class``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from recgraph.index.base import Index, IndexConfig
from recgraph.lazy_registry import LazyRegistry

_INDEXES: dict[str, str] = {
    "exact": "recgraph.index.exact:ExactIndex",
    "faiss_flat": "recgraph.index.faiss_index:FaissFlatIndex",
    "faiss_hnsw": "recgraph.index.faiss_index:FaissHNSWIndex",
    "faiss_ivf": "recgraph.index.faiss_index:FaissIVFIndex",
    "scann": "recgraph.index.scann_index:ScannIndex",
}
#: The package each optional index type needs, for the error message.
_EXTRAS = {"faiss": "ann", "scann": "scann"}


_REGISTRY: LazyRegistry[Index] = LazyRegistry(
    "index",
    _INDEXES,
    lambda exc: f"pip install 'recgraph[{_EXTRAS.get((exc.name or '').split('.')[0], 'ann')}]'",
    plural="indexes",
)


def available_indexes() -> list[str]:
    """Names accepted by :func:`create_index` (whether or not their package is installed)."""
    return _REGISTRY.names()


def get_index_class(name: str) -> type[Index]:
    """The class of index type ``name``; a :class:`ConfigError` names what is missing."""
    return _REGISTRY.get(name)


def create_index(
    name: str, config: IndexConfig | Mapping[str, Any] | None = None, **params: Any
) -> Index:
    """A new, unbuilt index of type ``name``.

    Parameters
    ----------
    name
        One of :func:`available_indexes`: ``exact``, ``faiss_flat``,
        ``faiss_hnsw``, ``faiss_ivf``, ``scann``.
    config, params
        The type's config (object or mapping) and keyword overrides, checked
        by its pydantic model; unknown keys are an error naming them.
    """
    return get_index_class(name)(config, **params)


def load_index(path: str | os.PathLike) -> Index:
    """An index saved with :meth:`Index.save`, of whatever type it was."""
    return Index.load(path)


Index.class_for_name = staticmethod(get_index_class)  # type: ignore[assignment]
