import networkx as nx

from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.test_neighborhood import MatchesNetworkx


class TestJaccard(RetrieverConformance, MatchesNetworkx):
    model_name = "jaccard"
    networkx_index = nx.jaccard_coefficient


def test_set_sizes_are_the_true_ones_under_the_first_hop_cap(tmp_path) -> None:
    import numpy as np

    from recgraph.data.interactions import Interactions
    from recgraph.retrieval import Retriever, create_retriever

    # account 0 follows 1..6; each of them follows account 7
    src = np.r_[np.zeros(6, int), np.arange(1, 7)]
    dst = np.r_[np.arange(1, 7), np.full(6, 7)]
    graph = Interactions.from_indices(src, dst, n_users=8, one_sided=True, directed=True)
    model = create_retriever("jaccard", {"first_hop_cap": 2}).fit(graph)
    common = 2.0  # the cap keeps two of the six paths to 7
    want = common / (6 + 6 - common)  # |S(0)| = 6 follows, |T(7)| = 6 followers
    assert model.score_pairs([0], [7])[0] == np.float32(want)
    model.save(tmp_path / "m")
    assert Retriever.load(tmp_path / "m").score_pairs([0], [7])[0] == np.float32(want)
