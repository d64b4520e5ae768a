"""Saved objects are rebuilt through the class their manifest names (lazy_registry.open_saved)."""

import pytest

from recgraph.index import create_index
from recgraph.index.base import Index
from recgraph.retrieval import Retriever, create_retriever
from recgraph.retrieval.popular import Popular
from tests.retrieval.conformance import two_cliques


def test_a_saved_model_comes_back_as_its_class_and_not_through_another(tmp_path):
    model = create_retriever("common_neighbors").fit(two_cliques("follows"))
    model.save(tmp_path / "m")
    assert list(model.manifest())[:3] == ["format_version", "model", "config"]
    assert model.manifest()["model"] == "common_neighbors"
    assert type(Retriever.load(tmp_path / "m")) is type(model)
    with pytest.raises(TypeError, match="holds a .*, not a Popular"):
        Popular.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no saved model here"):
        Retriever.load(tmp_path / "nothing")


def test_a_saved_index_comes_back_as_its_class(tmp_path):
    import numpy as np

    index = create_index("exact")
    index.build(np.eye(4, dtype=np.float32))
    index.save(tmp_path / "i")
    assert list(index.manifest())[:3] == ["format_version", "index", "config"]
    again = Index.load(tmp_path / "i")
    assert type(again) is type(index) and again.n_items == 4
