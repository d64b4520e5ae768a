import networkx as nx
import pytest

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import assert_matches_networkx, ego_facebook, random_graph


class TestResourceAllocation(RetrieverConformance):
    model_name = "resource_allocation"


def test_equals_networkx_on_a_random_graph():
    assert_matches_networkx(
        "resource_allocation", nx.resource_allocation_index, random_graph(80, 0.08, 0, False), 400
    )


@pytest.mark.datasets
def test_equals_networkx_on_ego_facebook():
    assert_matches_networkx(
        "resource_allocation", nx.resource_allocation_index, ego_facebook(), 3000
    )
