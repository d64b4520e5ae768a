import numpy as np
import pandas as pd
import pytest

from recgraph.data.interactions import Kind
from recgraph.data.synthetic import SyntheticConfig, generate_social


@pytest.fixture(scope="module")
def data():
    return generate_social(n_accounts=600, n_items=800, seed=3)


def test_same_seed_same_data(data):
    again = generate_social(n_accounts=600, n_items=800, seed=3)
    pd.testing.assert_frame_equal(data.follows, again.follows)
    pd.testing.assert_frame_equal(data.interactions, again.interactions)
    other = generate_social(n_accounts=600, n_items=800, seed=4)
    assert not data.follows.equals(other.follows)


def test_follow_graph_is_simple_and_heavy_tailed(data):
    graph = data.follows_graph()
    assert not (graph.src == graph.dst).any(), "no self-follows"
    assert len(np.unique(graph.pair_keys())) == len(graph), "no duplicate follows"
    indeg = graph.item_counts()
    outdeg = graph.user_counts()
    assert indeg.max() > 10 * max(1, np.median(indeg))
    assert outdeg.max() > 4 * np.median(outdeg)


def test_communities_are_homophilous(data):
    community = dict(zip(data.accounts.external_id, data.accounts.community, strict=True))
    same = (data.follows.src.map(community) == data.follows.dst.map(community)).mean()
    assert same > 0.6


def test_later_follows_close_triangles_of_earlier_ones(data):
    """What a temporal split asks a who-to-follow model to predict must be reachable."""
    graph = data.follows_graph()
    cut = np.quantile(graph.timestamp, 0.8)
    train = graph.subset(graph.timestamp <= cut).csr()
    later = graph.subset(graph.timestamp > cut)
    two_hop = (train @ train).tocsr()
    reachable = np.asarray(two_hop[later.src, later.dst]).ravel() > 0
    assert reachable.mean() > 0.5


def test_interactions_mix_likes_and_dislikes(data):
    graph = data.interactions_graph()
    kinds = np.bincount(graph.kind, minlength=5)
    assert kinds[Kind.LIKE] > 3 * kinds[Kind.DISLIKE] > 0
    author = dict(zip(data.items.external_id, data.items.author, strict=True))
    assert not (data.interactions.item.map(author) == data.interactions.user).any()
    assert len(graph.dedupe()) == len(graph), "one interaction per user and item"


def test_config_rejects_unknown_fields():
    with pytest.raises(ValueError):
        SyntheticConfig(n_acounts=10)
