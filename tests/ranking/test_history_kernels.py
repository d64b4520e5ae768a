"""The compiled history reductions give numpy's maximum and reduceat sum bit for bit."""

import numpy as np
import pytest

from recgraph.data.sparse_rows import reduce_rows, row_sums
from recgraph.ranking.history_kernels import many_reductions, reductions
from recgraph.ranking.item_history import block_products, gather


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reductions_are_numpys(dtype):
    rng = np.random.default_rng(3)
    for length in [0, 1, 2, 7, 8, 9, 15, 16, 17, 127, 128, 129, 130, 255, 256, 600, 1100]:
        width = length + 5
        block = rng.random((40, width)).astype(dtype) * rng.choice([1e-3, 1.0, 1e3])
        block[rng.random(block.shape) < 0.4] = 0  # zero products are dropped
        block[0] = 0  # a candidate with no product
        if length:
            block[1, rng.integers(0, width)] = np.nan  # a NaN wins the maximum
        at = np.sort(rng.choice(width, length, replace=False))
        values = (rng.random(length) - 0.3).astype(dtype)
        # the candidates: rows of the block, some twice, in any order
        rows = rng.integers(0, len(block), 60)
        rows[:2] = [0, 1]
        indptr, data = block_products(values, gather(block, rows, at))
        expected_max, expected_sum = reduce_rows(indptr, data, np.maximum), row_sums(indptr, data)
        got_max, got_sum = reductions(values, block, rows, at)
        assert got_max.dtype == expected_max.dtype and got_sum.dtype == expected_sum.dtype
        np.testing.assert_array_equal(got_max, expected_max)
        # the same bits (a -0.0 and a 0.0 would compare equal)
        assert (got_sum.view(np.uint8) == expected_sum.view(np.uint8)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_several_histories_in_one_pass_are_each_alone(dtype):
    """A request's histories reduced in one call: each one's arrays are numpy's, whatever
    the others hold (an empty one, a NaN, one longer than the rest)."""
    rng = np.random.default_rng(5)
    width = 300
    block = rng.random((50, width)).astype(dtype)
    block[rng.random(block.shape) < 0.85] = 0
    block[3, 7] = np.nan
    rows = rng.integers(0, len(block), 80)
    rows[:2] = [3, 0]
    histories = []
    for length in (140, 0, 9, 1, 200):
        at = np.sort(rng.choice(width, length, replace=False)).astype(np.int32)
        if length > 100:
            at[0] = 7  # row 3's NaN is read here
        histories.append(((rng.random(length) - 0.2).astype(np.float32), at))
    got = many_reductions(histories, block, rows)
    assert len(got) == len(histories)
    for (values, at), (got_max, got_sum) in zip(histories, got, strict=True):
        indptr, data = block_products(values, gather(block, rows, at))
        expected_max, expected_sum = reduce_rows(indptr, data, np.maximum), row_sums(indptr, data)
        assert got_sum.dtype == expected_sum.dtype
        assert got_max.tobytes() == expected_max.tobytes()
        assert got_sum.tobytes() == expected_sum.tobytes()
    assert np.isnan(got[0][0][0]) and not np.isnan(got[2][0]).any()


def test_histories_of_different_product_types_are_reduced_apart():
    rng = np.random.default_rng(6)
    block = rng.random((20, 30)).astype(np.float32)
    at = np.arange(0, 30, 3)
    rows = np.arange(20)
    histories = [(rng.random(10).astype(np.float32), at), (rng.random(10), at)]
    (_, single), (_, double) = many_reductions(histories, block, rows)
    assert single.dtype == np.float32 and double.dtype == np.float64
    assert double.tobytes() == reductions(histories[1][0], block, rows, at)[1].tobytes()


def test_mixed_float_types_multiply_as_numpy():
    rng = np.random.default_rng(4)
    block = rng.random((30, 40)).astype(np.float32)
    block.flags.writeable = False  # a memory-mapped block
    values = rng.random(25)  # float64 values against a float32 block: float64 products
    at = np.sort(rng.choice(40, 25, replace=False))
    rows = np.arange(30)
    indptr, data = block_products(values, gather(block, rows, at))
    got_max, got_sum = reductions(values, block, rows, at)
    assert got_sum.dtype == np.float64
    assert got_sum.tobytes() == row_sums(indptr, data).tobytes()
    np.testing.assert_array_equal(got_max, reduce_rows(indptr, data, np.maximum))


@pytest.mark.parametrize("extra", [0, 1])
def test_feature_matrix_is_the_stacked_float32_matrix(extra):
    """A request's rows (stacked at once) and a batch's (column by column) alike."""
    from recgraph.ranking.base import STACKED_ROWS, feature_matrix

    rng = np.random.default_rng(0)
    n = 50 if not extra else STACKED_ROWS + extra
    columns = [
        rng.normal(size=n) * 1e6,
        rng.normal(size=n).astype(np.float32),
        rng.integers(0, 2**40, n),  # through float64 first, as the stack does
        rng.random(n) < 0.5,
        np.full(n, np.nan),
    ]
    expected = np.stack(columns, axis=1).astype(np.float32)
    got = feature_matrix(columns)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.tobytes() == expected.tobytes()


def test_feature_matrix_refuses_what_the_stack_refused():
    from recgraph.ranking.base import feature_matrix

    with pytest.raises(ValueError):
        feature_matrix([])
    for columns in (
        [np.zeros(5), np.zeros(4)],
        [np.zeros(5), np.zeros(1)],  # would broadcast into the column unchecked
        [np.zeros(5), np.zeros((5, 2))],
    ):
        with pytest.raises(ValueError, match="feature column 1"):
            feature_matrix(columns)
