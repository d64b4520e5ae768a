"""Rankers by name, imported only when asked for (LightGBM and PyTorch stay unloaded until used).

A new ranker adds one line to ``_RANKERS``, or calls :func:`register_ranker`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from recgraph.errors import ConfigError
from recgraph.ranking.base import Ranker

_RANKERS: dict[str, str] = {
    "gbdt_ranker": "recgraph.ranking.gbdt_ranker:GBDTRanker",
    "mlp_ranker": "recgraph.ranking.mlp_ranker:MLPRanker",
}


def available_rankers() -> list[str]:
    return sorted(_RANKERS)


def register_ranker(name: str, target: str) -> None:
    """Make ``module:Class`` reachable as ``name`` (for plug-ins and tests)."""
    _RANKERS[name] = target


def get_ranker_class(name: str) -> type[Ranker]:
    try:
        target = _RANKERS[name]
    except KeyError:
        known = ", ".join(available_rankers())
        raise ConfigError(f"unknown ranker {name!r}; known rankers: {known}") from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"ranker {name!r} needs a package that is not installed ({exc.name}); "
            "pip install 'recgraph[ranking]'"
        ) from exc
    return getattr(module, class_name)


def create_ranker(name: str, params: Mapping[str, Any] | None = None) -> Ranker:
    """A new, unfitted ranker ``name`` with ``params`` over its config defaults."""
    return get_ranker_class(name)(dict(params or {}))


def load_ranker(path) -> Ranker:
    return Ranker.load(path)


Ranker.class_for_name = staticmethod(get_ranker_class)  # type: ignore[assignment]
