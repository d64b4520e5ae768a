"""Shared test set-up: the conformance mixin runs once per graph shape a model supports."""

from __future__ import annotations

import pytest

from recgraph.data.store import Store
from recgraph.data.synthetic import SyntheticConfig
from recgraph.jobs.quickstart import load_synthetic

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


SMALL = SyntheticConfig(n_accounts=200, n_items=300, mean_follows=10, mean_interactions=15)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """A small synthetic store (follows, likes, dislikes, handles, titles), shared read-only."""
    path = tmp_path_factory.mktemp("store") / "small.db"
    store = Store(f"sqlite:///{path}")
    load_synthetic(store, SMALL)
    yield store
    store.close()


@pytest.fixture(scope="session")
def trained(small_store):
    """The default pipeline trained on the small store (do not mutate)."""
    from recgraph.pipeline import Pipeline

    return Pipeline().fit_store(small_store)
