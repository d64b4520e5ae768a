import networkx as nx
import pytest

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import assert_matches_networkx, ego_facebook, random_graph


class TestJaccard(RetrieverConformance):
    model_name = "jaccard"


def test_equals_networkx_on_a_random_graph():
    assert_matches_networkx(
        "jaccard", nx.jaccard_coefficient, random_graph(80, 0.08, 0, False), 400
    )


@pytest.mark.datasets
def test_equals_networkx_on_ego_facebook():
    assert_matches_networkx("jaccard", nx.jaccard_coefficient, ego_facebook(), 3000)
