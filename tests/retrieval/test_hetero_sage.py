import numpy as np
import pytest

from recgraph.data.item_features import ItemFeatures
from recgraph.retrieval.hetero_sage import HeteroSAGE
from tests.retrieval.conformance import QUIET_TRAINING, RetrieverConformance, two_cliques

SMALL = {
    **QUIET_TRAINING,
    "hidden": 8,
    "epochs": 60,
    "learning_rate": 0.03,
}


class TestHeteroSAGE(RetrieverConformance):
    model_name = "hetero_sage"
    params = SMALL


def genres() -> ItemFeatures:
    return ItemFeatures.from_records(
        [str(i) for i in range(10)],
        genres=[["Drama"] if i < 5 else ["Comedy", "Musical"] for i in range(10)],
    )


def test_genres_feed_a_linear_layer_and_seeds_repeat():
    data = two_cliques("items")
    a = HeteroSAGE(SMALL).fit(data, item_features=genres())
    b = HeteroSAGE(SMALL).fit(data, item_features=genres())
    assert a.weights_["item_lin.weight"].shape == (8, 3)
    np.testing.assert_array_equal(a.item_vectors(), b.item_vectors())
    plain = HeteroSAGE(SMALL).fit(data)
    assert "item_lin.weight" not in plain.weights_


@pytest.mark.parametrize(
    "options", [{"negatives": "static"}, {"batching": "mini", "batch_size": 8}]
)
def test_static_negatives_and_mini_batches_learn_the_cliques(options):
    model = HeteroSAGE({**SMALL, **options}).fit(two_cliques("items"), item_features=genres())
    ids, _ = model.recommend([0, 5], k=1)
    assert ids[:, 0].tolist() == [1, 6]
