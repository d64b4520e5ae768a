"""The small store's two graphs, shared by the ranking stage's test files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def feed_graph(small_store):
    return small_store.interactions_graph()


@pytest.fixture(scope="module")
def follow_graph(small_store):
    return small_store.follows_graph()
