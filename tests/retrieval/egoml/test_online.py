"""Online E(u, v) from stored vectors equals the batch score; Redis round trip."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from recgraph.errors import ConfigError
from recgraph.retrieval.egoml.model import EgoML
from recgraph.retrieval.egoml.online import (
    DictVectorStore,
    OnlineScorer,
    RedisVectorStore,
    decode_vector,
    encode_vector,
    export_vectors,
    sparse_dot,
)
from tests.retrieval.egoml.test_labels import growing_graph


@pytest.fixture(scope="module")
def model() -> EgoML:
    data = growing_graph(directed=True, seed=31, n=45, rows=500)
    return EgoML(variant="ab", num_boost_round=10, min_data_in_leaf=3, num_leaves=7).fit(data)


def test_vector_codec_and_dot() -> None:
    idx, val = np.array([1, 4, 9]), np.array([0.5, 2.0, -1.0])
    back = decode_vector(encode_vector(idx, val))
    np.testing.assert_array_equal(back[0], idx)
    np.testing.assert_array_equal(back[1], val)
    assert sparse_dot((idx, val), (np.array([0, 4, 9]), np.array([7.0, 3.0, 1.0]))) == 5.0
    assert sparse_dot((idx, val), (np.zeros(0, np.int64), np.zeros(0))) == 0.0
    with pytest.raises(ValueError):
        decode_vector(b"123")


def test_online_equals_batch(model: EgoML) -> None:
    scorer = model.online_scorer()
    rng = np.random.default_rng(0)
    users = rng.integers(0, model.n_users, 300)
    targets = rng.integers(0, model.n_users, 300)
    batch = model.score_pairs(users, targets)
    ids = model.users.ids
    online = [scorer.score(ids[u], ids[v]) for u, v in zip(users, targets, strict=True)]
    np.testing.assert_allclose(online, batch, rtol=1e-12)
    assert (batch > 0).sum() > 20, "the sample covers scored pairs"
    many = scorer.score_many(ids[users[0]], [ids[t] for t in targets[:10]] + ["unknown"])
    np.testing.assert_allclose(many[:10], model.score_pairs(np.full(10, users[0]), targets[:10]))
    assert many[10] == 0.0
    with pytest.raises(KeyError):
        scorer.score("unknown", ids[0])


def test_exact_variant_has_no_vectors() -> None:
    data = growing_graph(directed=True, seed=1, n=30, rows=200)
    model = EgoML(variant="exact", num_boost_round=2, min_data_in_leaf=3).fit(data)
    with pytest.raises(ConfigError, match="variant='ab'"):
        model.online_scorer()


@pytest.mark.redis
def test_redis_round_trip(model: EgoML) -> None:
    store = RedisVectorStore("redis://127.0.0.1:6379/0", batch=16)
    if not store.ping():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    namespace = f"test-egoml-{uuid.uuid4().hex}"
    try:
        assert export_vectors(model, store, namespace=namespace) == model.n_users
        scorer = OnlineScorer(store, namespace=namespace)
        local = OnlineScorer(DictVectorStore(), namespace=namespace)
        export_vectors(model, local.store, namespace=namespace)
        ids = model.users.ids
        for u, v in [(0, 1), (3, 8), (10, 2), (5, 5)]:
            assert scorer.score(ids[u], ids[v]) == local.score(ids[u], ids[v])
            assert scorer.score(ids[u], ids[v]) == pytest.approx(model.score_pairs([u], [v])[0])
        x, y = scorer.vectors(ids[3])
        xs, ys = model.vectors()
        np.testing.assert_array_equal(x[0], xs[3].indices)
        np.testing.assert_array_equal(y[1], ys[3].data)
    finally:
        assert store.delete_namespace(namespace) == 2 * model.n_users
