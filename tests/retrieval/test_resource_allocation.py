import networkx as nx

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import MatchesNetworkx


class TestResourceAllocation(RetrieverConformance, MatchesNetworkx):
    model_name = "resource_allocation"
    networkx_index = nx.resource_allocation_index
