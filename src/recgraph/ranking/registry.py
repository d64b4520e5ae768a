"""Rankers by name, imported only when asked for (LightGBM and PyTorch stay unloaded until used).

A new ranker adds one line to ``_RANKERS``, or calls :func:`register_ranker`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recgraph.lazy_registry import LazyRegistry
from recgraph.ranking.base import Ranker

_RANKERS: dict[str, str] = {
    "gbdt_ranker": "recgraph.ranking.gbdt_ranker:GBDTRanker",
    "mlp_ranker": "recgraph.ranking.mlp_ranker:MLPRanker",
}


_REGISTRY: LazyRegistry[Ranker] = LazyRegistry(
    "ranker", _RANKERS, lambda exc: "pip install 'recgraph[ranking]'"
)


def available_rankers() -> list[str]:
    return _REGISTRY.names()


def register_ranker(name: str, target: str) -> None:
    """Make ``module:Class`` reachable as ``name`` (for plug-ins and tests)."""
    _REGISTRY.register(name, target)


def get_ranker_class(name: str) -> type[Ranker]:
    return _REGISTRY.get(name)


def create_ranker(name: str, params: Mapping[str, Any] | None = None) -> Ranker:
    """A new, unfitted ranker ``name`` with ``params`` over its config defaults."""
    return get_ranker_class(name)(dict(params or {}))


def load_ranker(path) -> Ranker:
    return Ranker.load(path)


Ranker.class_for_name = staticmethod(get_ranker_class)  # type: ignore[assignment]
