"""The SQL layer's helpers."""

import pytest

from recgraph.data.sql import is_memory


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
