"""Shared test set-up: the conformance mixin runs once per graph shape a model supports."""

from __future__ import annotations

GRAPH_KINDS = ("items", "follows", "friends")


def pytest_generate_tests(metafunc):
    if "graph_kind" not in metafunc.fixturenames or metafunc.cls is None:
        return
    model_name = getattr(metafunc.cls, "model_name", None)
    if model_name is None:
        return
    from recgraph.retrieval import get_retriever_class

    supports = get_retriever_class(model_name).supports
    metafunc.parametrize("graph_kind", [k for k in GRAPH_KINDS if k in supports])
