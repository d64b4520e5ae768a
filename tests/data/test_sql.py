"""The SQL layer's helpers."""

import pytest

from recgraph.data.sql import is_memory, memory_per_thread


@pytest.mark.parametrize(
    ("url", "memory"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file::memory:?cache=shared&uri=true", True),
        ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", True),
        ("sqlite:///file:shared?cache=shared&mode=memory&uri=true", True),
        ("sqlite:///store.db", False),
        ("sqlite:////tmp/memory.db", False),
        ("sqlite:///file:store.db?mode=ro&uri=true", False),
        ("sqlite:///file:store.db?cache=shared&uri=true", False),
    ],
)
def test_is_memory(url, memory):
    assert is_memory(url) is memory


@pytest.mark.parametrize(
    ("url", "private"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file::memory:?uri=true", True),
        ("sqlite:///file:private?mode=memory&uri=true", True),
        ("sqlite:///file::memory:?cache=shared&uri=true", False),
        ("sqlite:///file:shared?mode=memory&cache=shared&uri=true", False),
        ("sqlite:///store.db", False),
        ("postgresql://host/", False),  # no database name: the server's default, not memory
    ],
)
def test_memory_per_thread(url, private):
    assert memory_per_thread(url) is private


def test_an_in_memory_engine_keeps_a_connection_per_thread(tmp_path):
    """Named, not left to SQLAlchemy's deprecated pick for ``mode=memory``; a file gets a pool."""
    import sqlalchemy as sa

    from recgraph.data.sql import create_engine

    for url in ("sqlite://", "sqlite:///file:sqltest?mode=memory&cache=shared&uri=true"):
        engine = create_engine(url, 1)
        assert isinstance(engine.pool, sa.pool.SingletonThreadPool), url
        engine.dispose()
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}", 1)
    assert isinstance(engine.pool, sa.pool.QueuePool)
    engine.dispose()
