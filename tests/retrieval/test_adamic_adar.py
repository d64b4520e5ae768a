import networkx as nx

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import MatchesNetworkx


class TestAdamicAdar(RetrieverConformance, MatchesNetworkx):
    model_name = "adamic_adar"
    networkx_index = nx.adamic_adar_index
