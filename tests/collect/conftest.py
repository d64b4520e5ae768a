"""Fixtures shared by the collectors' tests."""

from __future__ import annotations

import pytest

from recgraph.data.store import Store
from tests.data.conftest import store_url  # noqa: F401  (SQLite, MariaDB, PostgreSQL)


@pytest.fixture
def any_store(store_url: str):  # noqa: F811
    """An empty store on each backend (server backends skip when their server is absent)."""
    with Store(store_url) as opened:
        yield opened
