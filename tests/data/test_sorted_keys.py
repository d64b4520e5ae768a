import numpy as np

from recgraph.data.sorted_keys import distinct_sorted, find_sorted, in_sorted, sorted_lookup


def test_found_keys_point_at_themselves_and_others_are_not_found():
    sorted_keys = np.array([2, 5, 9], dtype=np.int64)
    keys = np.array([9, 1, 5, 10, 2, 6])
    position, found = find_sorted(sorted_keys, keys)
    assert found.tolist() == [True, False, True, False, True, False]
    assert sorted_keys[position[found]].tolist() == [9, 5, 2]
    assert (position >= 0).all() and (position < len(sorted_keys)).all()


def test_sorted_lookup_gives_the_position_or_minus_one():
    found = sorted_lookup(np.array([1, 4, 9]), np.array([4, 5, 9, 0, 10]))
    assert found.tolist() == [1, -1, 2, -1, -1]


def test_empty_key_array_finds_nothing_and_keeps_the_query_shape():
    keys = np.array([[1, 2], [3, 4]])
    position, found = find_sorted(np.zeros(0, np.int64), keys)
    assert found.shape == keys.shape and not found.any()
    assert position.shape == keys.shape


def test_in_sorted_matches_numpy_isin():
    rng = np.random.default_rng(0)
    sorted_keys = np.unique(rng.integers(0, 1000, 300))
    keys = rng.integers(-5, 1005, (40, 7))
    assert (in_sorted(sorted_keys, keys) == np.isin(keys, sorted_keys)).all()


def test_distinct_sorted_is_numpy_unique():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 50, 400).astype(np.int64)
    np.testing.assert_array_equal(distinct_sorted(keys), np.unique(keys))
    assert len(distinct_sorted(np.zeros(0, np.int64))) == 0
    runs = np.concatenate([np.sort(keys[:150]), np.sort(keys[150:])])  # sorted chunks end to end
    np.testing.assert_array_equal(distinct_sorted(runs, runs=True), np.unique(keys))
    np.testing.assert_array_equal(distinct_sorted(keys, runs=True), np.unique(keys))


def test_canonical_numbers_take_only_text_that_maps_one_to_one():
    import pyarrow as pa

    from recgraph.data.sorted_keys import canonical_numbers

    good = canonical_numbers(pa.array(["0", "7", "4096", "999999999999999999"]))
    assert good is not None and good.tolist() == [0, 7, 4096, 999999999999999999]
    bad_ids = ("07", "+7", "-7", " 7", "7 ", "7.0", "1e3", "x", "", "1000000000000000000")
    for bad in (*bad_ids, "0xFFFFF", "0XFFFFF", "0x3B9ACA00", "\u0667", "\uff11\uff12"):
        assert canonical_numbers(pa.array(["5", bad])) is None, bad
    assert canonical_numbers(pa.array(["5", None])) is None
    assert canonical_numbers(pa.array([5, 6])) is None  # numbers, not text


def test_sorted_key_map_keys_new_ids_in_order_of_first_appearance():
    from recgraph.data.sorted_keys import SortedKeyMap

    rng = np.random.default_rng(3)
    held, reference = SortedKeyMap(), {}
    next_key = 1
    for _ in range(5):
        values = rng.integers(0, 400, 300)
        keys, new = held.keys_of(values, next_key)
        expected_new = [v for v in dict.fromkeys(values.tolist()) if v not in reference]
        assert new.tolist() == expected_new
        reference.update(zip(expected_new, range(next_key, next_key + len(new)), strict=True))
        next_key += len(new)
        assert keys.tolist() == [reference[v] for v in values.tolist()]
    assert held.ids.tolist() == sorted(reference)
    assert held.keys.tolist() == [reference[v] for v in sorted(reference)]


class _CountingNumpy:
    """numpy, counting the elements of every array one of ``ALLOCATING`` makes."""

    ALLOCATING = frozenset({"insert", "concatenate", "empty", "zeros", "ones"})

    def __init__(self) -> None:
        self.written = 0

    def __getattr__(self, name):
        function = getattr(np, name)
        if name not in self.ALLOCATING:
            return function

        def counted(*args, **kwargs):
            out = function(*args, **kwargs)
            self.written += out.size
            return out

        return counted


def test_sorted_key_map_grows_in_amortised_time(monkeypatch):
    """A stream of chunks of new ids copies each id O(log n) times, not once per chunk:
    growing one sorted array by np.insert wrote chunks x ids held (26M elements here)."""
    from recgraph.data import sorted_keys

    counting = _CountingNumpy()
    monkeypatch.setattr(sorted_keys, "np", counting)
    held = sorted_keys.SortedKeyMap()
    rng = np.random.default_rng(5)
    chunks, fresh_per_chunk = 512, 100
    ids = rng.permutation(10 * chunks * fresh_per_chunk)[: chunks * fresh_per_chunk]
    next_key = 1
    for chunk in np.split(ids, chunks):
        earlier = rng.integers(0, next_key - 1, 50) if next_key > 1 else np.zeros(0, np.int64)
        keys, new = held.keys_of(np.concatenate((chunk, ids[earlier])), next_key)
        assert new.tolist() == chunk.tolist()
        assert (
            keys.tolist() == list(range(next_key, next_key + len(chunk))) + (earlier + 1).tolist()
        )
        next_key += len(new)
    n = len(ids)
    assert len(held) == n
    assert counting.written <= 6 * n * (np.log2(chunks) + 1), counting.written
    monkeypatch.undo()
    order = np.argsort(ids)
    assert held.ids.tolist() == ids[order].tolist()
    assert held.keys.tolist() == (order + 1).tolist()
