import networkx as nx

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import MatchesNetworkx


class TestJaccard(RetrieverConformance, MatchesNetworkx):
    model_name = "jaccard"
    networkx_index = nx.jaccard_coefficient
