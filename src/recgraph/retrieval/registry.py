"""Retrievers by name, imported only when asked for (heavy deps stay unloaded).

A new model adds one line to ``_RETRIEVERS``: its name and ``module:Class``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recgraph.errors import ConfigError
from recgraph.lazy_registry import LazyRegistry
from recgraph.retrieval.base import Retriever

_RETRIEVERS: dict[str, str] = {
    "popular": "recgraph.retrieval.popular:Popular",
    "common_neighbors": "recgraph.retrieval.common_neighbors:CommonNeighbors",
    "adamic_adar": "recgraph.retrieval.adamic_adar:AdamicAdar",
    "resource_allocation": "recgraph.retrieval.resource_allocation:ResourceAllocation",
    "jaccard": "recgraph.retrieval.jaccard:Jaccard",
    "ppr": "recgraph.retrieval.ppr:PersonalizedPageRank",
    "salsa": "recgraph.retrieval.salsa:SALSA",
    "pixie": "recgraph.retrieval.pixie:Pixie",
    "biased_mf": "recgraph.retrieval.biased_mf:BiasedMF",
    "als": "recgraph.retrieval.als:ALS",
    "bpr": "recgraph.retrieval.bpr:BPR",
    "item_knn": "recgraph.retrieval.item_knn:ItemKNN",
    "ease": "recgraph.retrieval.ease:EASE",
    "egoml": "recgraph.retrieval.egoml.model:EgoML",
    "lightgcn": "recgraph.retrieval.lightgcn:LightGCN",
    "two_tower": "recgraph.retrieval.two_tower:TwoTower",
    "hetero_gin": "recgraph.retrieval.hetero_gin:HeteroGIN",
    "hetero_sage": "recgraph.retrieval.hetero_sage:HeteroSAGE",
    "materialized": "recgraph.retrieval.materialized:MaterializedRetriever",
}


_REGISTRY: LazyRegistry[Retriever] = LazyRegistry("model", _RETRIEVERS)


def available_retrievers() -> list[str]:
    """Names accepted by :func:`create_retriever` and ``recgraph evaluate --model``."""
    return _REGISTRY.names()


def register_retriever(name: str, target: str) -> None:
    """Make ``module:Class`` reachable as ``name`` (for plug-ins and tests)."""
    _REGISTRY.register(name, target)


def get_retriever_class(name: str) -> type[Retriever]:
    return _REGISTRY.get(name)


Retriever.class_for_name = staticmethod(get_retriever_class)  # type: ignore[assignment]


def load_retriever(path: str | Path) -> Retriever:
    """A saved model, whatever its class (by the name in its ``model.json``)."""
    return Retriever.load(path)


def create_retriever(name: str, params: Mapping[str, Any] | None = None) -> Retriever:
    """A new, unfitted retriever ``name`` with ``params`` over its config defaults."""
    return get_retriever_class(name)(dict(params or {}))


def parse_param_overrides(
    pairs: list[str] | None = None, toml_file: str | Path | None = None
) -> dict[str, dict[str, Any]]:
    """Per-model parameters from a TOML file and ``model.key=value`` strings.

    The TOML file has one table per model (``[adamic_adar]`` then ``key =
    value``); ``model.key=value`` pairs override it. Values from the command
    line stay text here; the model's typed config converts and checks them.
    """
    params: dict[str, dict[str, Any]] = {}
    if toml_file is not None:
        path = Path(toml_file)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for model, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{model}] must be a table of parameters")
            params.setdefault(model, {}).update(table)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        model, dot, field = key.strip().partition(".")
        if not sep or not dot or not model or not field:
            raise ConfigError(f"--param {pair!r}: expected model.key=value")
        params.setdefault(model, {})[field] = _parse_value(value.strip())
    return params


def _parse_value(text: str) -> Any:
    """A TOML scalar or array when the text is one (``10``, ``true``, ``[1, 2]``), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
