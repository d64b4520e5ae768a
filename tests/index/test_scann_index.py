import numpy as np
import pytest

from recgraph.errors import ConfigError
from recgraph.index import create_index
from tests.index.conformance import IndexConformance

try:
    import scann  # noqa: F401

    HAVE_SCANN = True
except ImportError:
    HAVE_SCANN = False

needs_scann = pytest.mark.skipif(
    not HAVE_SCANN, reason="scann is not installed (pip install 'recgraph[scann]')"
)


@needs_scann
class TestScannTree(IndexConformance):
    """Partitioning + anisotropic quantization + re-ranking (forced on small data)."""

    index_name = "scann"
    params = {"brute_force_below": 0, "n_leaves": 30, "leaves_to_search": 10, "reorder": 100}
    recall_floor = 0.95


@needs_scann
class TestScannBruteForce(IndexConformance):
    index_name = "scann"
    recall_floor = 0.999


def test_config_loads_without_scann_and_defaults_follow_size():
    index = create_index("scann")
    assert index.n_leaves_for(1_000_000) == 1000
    assert index.leaves_to_search_for(1000) == 50
    assert create_index("scann", n_leaves=64).n_leaves_for(10) == 10


@pytest.mark.skipif(HAVE_SCANN, reason="checks the message shown when scann is missing")
def test_missing_scann_says_how_to_install():
    with pytest.raises(ConfigError, match=r"recgraph\[scann\]"):
        create_index("scann").build(np.ones((3, 2), np.float32))
