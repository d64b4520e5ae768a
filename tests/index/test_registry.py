import numpy as np
import pytest

from recgraph.errors import ConfigError
from recgraph.index import Index, available_indexes, create_index, load_index


def test_every_name_is_listed():
    assert available_indexes() == ["exact", "faiss_flat", "faiss_hnsw", "faiss_ivf", "scann"]


def test_unknown_index_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known indexes: exact, faiss_flat"):
        create_index("annoy")


def test_config_object_or_mapping_plus_overrides():
    index = create_index("exact", {"metric": "l2"}, block_floats=4096)
    assert index.config.metric == "l2" and index.config.block_floats == 4096
    again = create_index("exact", index.config)
    assert again.config == index.config


def test_load_refuses_other_format_versions(tmp_path):
    items = np.eye(3, dtype=np.float32)
    folder = create_index("exact").build(items).save(tmp_path / "i")
    text = (folder / "index.json").read_text().replace('"format_version": 1', '"format_version": 9')
    (folder / "index.json").write_text(text)
    with pytest.raises(ValueError, match="format_version"):
        load_index(folder)
    with pytest.raises(FileNotFoundError):
        Index.load(tmp_path / "nothing")
