import numpy as np
import pytest

from recgraph.errors import ConfigError
from recgraph.index import create_index
from recgraph.index.exact import ExactIndex, merge_top_k, select_top_k
from recgraph.retrieval.base import top_k
from tests.index.conformance import IndexConformance


class TestExactIndex(IndexConformance):
    index_name = "exact"
    recall_floor = 1.0
    exact = True


class TestExactIndexInSmallBlocks(IndexConformance):
    """Blocks of 1024 floats: queries one at a time and items in chunks, merged."""

    index_name = "exact"
    params = {"block_floats": 1024}
    recall_floor = 1.0
    exact = True


@pytest.mark.parametrize("k", [1, 10, 100])
def test_select_top_k_equals_top_k_with_ties_and_masks(k):
    rng = np.random.default_rng(k)
    scores = np.round(rng.normal(size=(40, 20_000)), 1).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, :] = -np.inf  # a row with nothing to return
    scores[1, : 20_000 - 3] = -np.inf  # a row with fewer than k finite scores
    got_ids, got_scores = select_top_k(scores, k)
    want_ids, want_scores = top_k(scores, k)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_scores, want_scores)


def test_merge_top_k_prefers_higher_scores_then_lower_ids():
    ids, scores = merge_top_k(
        np.array([[5, 9, -1]]),
        np.array([[3.0, 1.0, -np.inf]], np.float32),
        np.array([[2, 7, 8]]),
        np.array([[3.0, 2.0, 1.0]], np.float32),
        4,
    )
    assert ids.tolist() == [[2, 5, 7, 8]]
    assert scores.tolist() == [[3.0, 3.0, 2.0, 1.0]]


def test_l2_scores_are_negated_squared_distances():
    items = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], np.float32)
    index = ExactIndex(metric="l2").build(items)
    ids, scores = index.search(np.array([[0.0, 0.0]], np.float32), 3)
    assert ids.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(scores, [[0.0, -1.0, -25.0]], atol=1e-6)


def test_unknown_parameter_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="nprobe"):
        create_index("exact", nprobe=3)
    with pytest.raises(ConfigError, match="metric"):
        create_index("exact", metric="cosine")
