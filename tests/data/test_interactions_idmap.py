"""IdMap on arrays: lookups by binary search, the same answers and errors as a dict gave."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data import IdMap
from recgraph.errors import InputError


def test_lookups_answer_like_a_dict():
    ids = ["did:plc:b", "7", "alice", "", "did:plc:a"]
    idmap = IdMap(ids)
    reference = {x: i for i, x in enumerate(ids)}
    assert idmap.ids.tolist() == ids and len(idmap) == 5
    assert idmap.index(["alice", "", "did:plc:a", "7"]).tolist() == [2, 3, 4, 1]
    assert all(idmap.index_of(x) == i for x, i in reference.items())
    assert idmap.index([7]).tolist() == [1]  # ids are text: 7 is "7"
    assert idmap.get("nobody") == -1 and idmap.get("nobody", -5) == -5
    assert "alice" in idmap and "alic" not in idmap and "alicex" not in idmap
    assert idmap.index(["x", "alice", "zzz"], missing=-1).tolist() == [-1, 2, -1]
    assert idmap.external([4, 0]).tolist() == ["did:plc:a", "did:plc:b"]
    assert idmap.external([0]).dtype == object


def test_unknown_and_duplicate_ids_are_named():
    idmap = IdMap(["a", "b"])
    with pytest.raises(KeyError, match="unknown id 'c'"):
        idmap.index_of("c")
    with pytest.raises(KeyError, match="unknown id 'zz'"):
        idmap.index(["a", "zz", "yy"])
    # the first id seen a second time, in the order given
    with pytest.raises(ValueError, match="duplicate external id 'y' in IdMap"):
        IdMap(["z", "y", "x", "y", "z"])
    assert IdMap([]).index([], missing=-1).tolist() == []
    with pytest.raises(KeyError, match="unknown id 'a'"):
        IdMap([]).index_of("a")


def test_factorize_keeps_the_order_of_first_appearance():
    rng = np.random.default_rng(0)
    values = rng.choice([f"id{i}" for i in range(50)], size=400).tolist()
    idmap, codes = IdMap.factorize(values)
    first = list(dict.fromkeys(values))
    assert idmap.ids.tolist() == first
    assert codes.tolist() == [first.index(v) for v in values]
    assert idmap.index(first).tolist() == list(range(len(first)))  # its permutation sorts
    empty, none = IdMap.factorize([])
    assert len(empty) == 0 and len(none) == 0


def test_extend_appends_unseen_ids_once_in_order():
    idmap = IdMap(["a", "b"])
    grown = idmap.extend(["c", "a", "d", "c"])
    assert grown.ids.tolist() == ["a", "b", "c", "d"] and grown.extends(idmap)
    assert grown.index(["d", "b"]).tolist() == [3, 1]
    assert idmap.extend(["b", "a"]) is idmap


def test_saved_map_loads_memory_mapped(tmp_path):
    idmap = IdMap([f"did:plc:{i:05d}" for i in range(300, 0, -1)])
    path = idmap.save(tmp_path / "ids.npy")
    assert IdMap.order_file(path) == tmp_path / "ids.order.npy"
    loaded = IdMap.load(path)
    assert isinstance(loaded.ids, np.memmap) and loaded == idmap
    assert loaded.index(["did:plc:00001", "did:plc:00300"]).tolist() == [299, 0]
    # a file written before the permutation was saved beside it loads too
    IdMap.order_file(path).unlink()
    assert IdMap.load(path, mmap=False).index_of("did:plc:00002") == 298


def test_a_permutation_of_another_length_is_refused(tmp_path):
    path = IdMap(["a", "b", "c"]).save(tmp_path / "ids.npy")
    np.save(IdMap.order_file(path), np.arange(2, dtype=np.int32))
    with pytest.raises(InputError, match="ids.npy"):
        IdMap.load(path)


def test_an_order_left_from_other_ids_is_refused(tmp_path):
    path = IdMap(["a", "b", "c"]).save(tmp_path / "ids.npy")
    np.save(path, np.asarray(["c", "b", "a"]))  # the ids replaced, their order left behind
    with pytest.raises(InputError, match="does not sort"):
        IdMap.load(path)


def test_ids_ending_in_nul_are_refused_not_merged():
    """numpy's unicode arrays drop trailing NULs: "a\\x00" must not become "a"."""
    with pytest.raises(ValueError, match="NUL"):
        IdMap(["a", "a\x00"])
    with pytest.raises(ValueError, match="NUL"):
        IdMap.factorize(["x\x00", "x"])
    idmap = IdMap(["a"])
    assert "a\x00" not in idmap and idmap.get("a\x00") == -1
