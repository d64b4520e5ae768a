"""Two-hop models save what they derive (the capped hops, the weighted expansion and its
transpose) as ``.npy`` files that ``load`` memory-maps: every server worker shares one copy
instead of building ~40 bytes a follow of its own; a model saved without them still loads."""

import shutil

import numpy as np
import pytest

from recgraph.retrieval import create_retriever
from recgraph.retrieval.base import Retriever

from .test_neighborhood import PATHS, TWO_HOP_MODELS, random_graph


def answers(model, users, exclude_seen=True):
    ids, scores = model.recommend(users, k=6, exclude_seen=exclude_seen)
    pairs = model.score_pairs(users, (users + 3) % model.n_users)
    found = ids[1][ids[1] >= 0][:3]
    return ids, scores, pairs, [e.via.tolist() for e in model.explain(int(users[1]), found)]


@pytest.mark.parametrize("model_name", TWO_HOP_MODELS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("caps", [(0, 0), (3, 4)])
def test_a_loaded_two_hop_model_maps_its_matrices_and_answers_the_same(
    model_name, path, caps, tmp_path
) -> None:
    directed = path != "undirected"
    data = random_graph(30, 0.2, seed=5, directed=directed)
    config = {"path": path, "hub_cap": caps[0], "first_hop_cap": caps[1]}
    model = create_retriever(model_name, config).fit(data)
    users = np.arange(data.n_users)
    expected = answers(model, users)
    expected_all = answers(model, users, exclude_seen=False)
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    for matrix in (loaded.expansion_, loaded.expansion_t_, loaded.first_, loaded.adjacency_):
        assert not matrix.indices.flags.writeable  # a map of a file, not a copy
    assert loaded.adjacency_ is loaded.seen_matrix()  # no self-loops: one matrix
    for got, want in zip(answers(loaded, users), expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got, dtype=object), np.asarray(want, dtype=object))
    for got, want in zip(answers(loaded, users, False), expected_all, strict=True):
        np.testing.assert_array_equal(np.asarray(got, dtype=object), np.asarray(want, dtype=object))
    # saved before the files existed: derived on load, the same answers
    shutil.rmtree(tmp_path / "m" / "two_hop")
    rebuilt = Retriever.load(tmp_path / "m")
    assert rebuilt.expansion_.indices.flags.writeable
    for got, want in zip(answers(rebuilt, users), expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got, dtype=object), np.asarray(want, dtype=object))


def test_the_expansion_is_held_once() -> None:
    model = create_retriever("adamic_adar").fit(random_graph(25, 0.2, seed=2, directed=True))
    stop = model.expansion_.nnz
    assert np.shares_memory(model.expansion_.indices, model._expansion_with_veto.indices)
    np.testing.assert_array_equal(
        model._expansion_with_veto[: model.n_users].toarray(), model.expansion_.toarray()
    )
    assert stop == model._expansion_with_veto.indptr[model.n_users]
