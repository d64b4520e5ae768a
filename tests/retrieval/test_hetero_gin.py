import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.retrieval.hetero_gin import HeteroGIN
from tests.retrieval.conformance import QUIET_TRAINING, RetrieverConformance, two_cliques

SMALL = {
    **QUIET_TRAINING,
    "dim": 8,
    "layers": 2,
    "epochs": 15,
    "num_samples": 4,
    "max_degree": 32,
    "learning_rate": 0.02,
}


class TestHeteroGIN(RetrieverConformance):
    model_name = "hetero_gin"
    params = SMALL
    seeded = True


def test_separate_vectors_and_distances():
    data = two_cliques("follows")
    one = HeteroGIN({**SMALL, "separate_vectors": False}).fit(data)
    np.testing.assert_array_equal(one.user_vectors(), one.item_vectors())
    two = HeteroGIN(SMALL).fit(data)
    assert not np.allclose(two.user_vectors(), two.item_vectors())
    ip = HeteroGIN({**SMALL, "distance": "ip"}).fit(data)
    assert ip.metric == "ip" and two.metric == "l2"


def test_a_new_account_gets_a_vector_from_its_hashed_id_and_edges():
    data = two_cliques("follows")
    model = HeteroGIN(SMALL).fit(data)
    before = model.user_vectors().copy()
    new = Interactions.from_arrays(
        ["newcomer", "newcomer", "7"], ["6", "8", "newcomer"], one_sided=True, users=model.users
    )
    model.fold_in(new)
    user = model.users.index_of("newcomer")
    np.testing.assert_array_equal(model.user_vectors()[:10], before)  # known accounts unchanged
    assert np.abs(model.user_vectors()[user]).sum() > 0
    ids, _ = model.recommend([user], k=3)
    assert not {6, 8} & set(ids[0].tolist())  # it already follows them


def test_degree_cap_off_trains_on_the_whole_graph():
    data = two_cliques("friends")
    model = HeteroGIN({**SMALL, "degree_cap": False}).fit(data)
    ids, _ = model.recommend([0, 5], k=1)
    assert ids[:, 0].tolist() == [1, 6]
