import networkx as nx
import numpy as np

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import (
    MatchesNetworkx,
    random_graph,
)


def networkx_common_neighbors(g, pairs):
    """``nx.common_neighbors`` as a link-prediction function: ``(u, v, count)``."""
    return ((u, v, len(nx.common_neighbors(g, u, v))) for u, v in pairs)


class TestCommonNeighbors(RetrieverConformance, MatchesNetworkx):
    model_name = "common_neighbors"
    networkx_index = networkx_common_neighbors


def test_scores_are_counts():
    graph = random_graph(50, 0.1, 2, False)
    from recgraph.retrieval import create_retriever

    rows = create_retriever("common_neighbors").fit(graph).score_rows(np.arange(50))
    assert rows.nnz and np.array_equal(rows.data, np.round(rows.data))
