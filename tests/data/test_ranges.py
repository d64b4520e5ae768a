import numpy as np

from recgraph.data.ranges import expand_ranges


def test_ranges_are_concatenated_with_the_range_of_each_position():
    positions, owner = expand_ranges(np.array([5, 0, 9]), np.array([2, 0, 3]))
    assert positions.tolist() == [5, 6, 9, 10, 11] and owner.tolist() == [0, 0, 2, 2, 2]
    assert positions.dtype == np.int64 and owner.dtype == np.int64


def test_empty_ranges_give_empty_int64_arrays():
    positions, owner = expand_ranges(np.array([3, 7]), np.array([0, 0]))
    assert len(positions) == 0 and len(owner) == 0
    assert positions.dtype == np.int64 and owner.dtype == np.int64


def test_matches_the_python_loop():
    rng = np.random.default_rng(0)
    starts, lengths = rng.integers(0, 100, 30), rng.integers(0, 6, 30)
    positions, owner = expand_ranges(starts, lengths)
    expected = [
        (s + j, i) for i, (s, n) in enumerate(zip(starts, lengths, strict=True)) for j in range(n)
    ]
    assert list(zip(positions.tolist(), owner.tolist(), strict=True)) == expected
