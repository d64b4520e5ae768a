import networkx as nx
import numpy as np
import pytest

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import assert_matches_networkx, ego_facebook, random_graph


class TestCommonNeighbors(RetrieverConformance):
    model_name = "common_neighbors"


def networkx_common_neighbors(g, pairs):
    """``nx.common_neighbors`` as a link-prediction function: ``(u, v, count)``."""
    return ((u, v, len(nx.common_neighbors(g, u, v))) for u, v in pairs)


def test_equals_networkx_on_a_random_graph():
    assert_matches_networkx(
        "common_neighbors", networkx_common_neighbors, random_graph(80, 0.08, 0, False), 400
    )


@pytest.mark.datasets
def test_equals_networkx_on_ego_facebook():
    assert_matches_networkx("common_neighbors", networkx_common_neighbors, ego_facebook(), 3000)


def test_scores_are_counts():
    graph = random_graph(50, 0.1, 2, False)
    from recgraph.retrieval import create_retriever

    rows = create_retriever("common_neighbors").fit(graph).score_rows(np.arange(50))
    assert rows.nnz and np.array_equal(rows.data, np.round(rows.data))
