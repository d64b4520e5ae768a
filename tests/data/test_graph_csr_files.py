"""The single-array helpers of graph_csr: binary CSR files, memory-mapped without copies."""

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.graph_csr import (
    GraphCSR,
    binary_csr_files,
    index_dtype,
    link_or_copy,
    load_binary_csr,
    same_file,
    save_array,
    save_binary_csr,
)
from recgraph.errors import InputError


def binary(n_rows: int, n_cols: int, seed: int) -> sp.csr_matrix:
    matrix = sp.random(n_rows, n_cols, density=0.05, format="csr", random_state=seed)
    matrix.data[:] = 1.0
    return matrix.astype(np.float32)


def test_a_saved_binary_csr_opens_as_read_only_maps_of_int32(tmp_path) -> None:
    matrix = binary(300, 200, seed=1)
    save_binary_csr(tmp_path, "seen", matrix)
    opened = load_binary_csr(tmp_path, "seen", matrix.shape)
    assert (opened != matrix).nnz == 0 and opened.has_sorted_indices
    assert opened.indptr.dtype == opened.indices.dtype == np.int32
    for array in (opened.indptr, opened.indices, opened.data):
        assert not array.flags.writeable  # a view of the map, not a private copy
        assert not array.flags.owndata
    rows = [3, 150, 299]
    assert (opened[rows] != matrix[rows]).nnz == 0  # scipy reads the maps as it reads arrays
    with pytest.raises(ValueError):
        opened.data[0] = 2.0


def test_an_unsorted_matrix_is_saved_canonical_and_left_unchanged(tmp_path) -> None:
    matrix = sp.csr_matrix(
        (np.ones(4, np.float32), np.array([2, 0, 1, 1]), np.array([0, 2, 4])), shape=(2, 3)
    )
    before = matrix.indices.copy()
    save_binary_csr(tmp_path, "m", matrix)
    np.testing.assert_array_equal(matrix.indices, before)
    opened = load_binary_csr(tmp_path, "m", (2, 3))
    np.testing.assert_array_equal(opened.indices, [0, 2, 1])
    np.testing.assert_array_equal(opened.data, [1, 1, 1])


def test_files_that_do_not_make_the_shape_are_a_clear_error(tmp_path) -> None:
    save_binary_csr(tmp_path, "seen", binary(10, 10, seed=2))
    with pytest.raises(InputError, match="seen"):
        load_binary_csr(tmp_path, "seen", (11, 10))


def test_index_dtype_widens_only_past_int32() -> None:
    assert index_dtype(10, 5, 5) == np.int32
    assert index_dtype(2**31 - 1, 5, 5) == np.int32
    assert index_dtype(2**31, 5, 5) == np.int64
    assert index_dtype(0, 2**31, 1) == np.int64


def test_link_or_copy_makes_one_file_and_replaces_the_target(tmp_path) -> None:
    source = save_array(tmp_path / "a.npy", np.arange(5))
    target = save_array(tmp_path / "b.npy", np.zeros(3))
    link_or_copy(source, target)
    assert same_file(source, target)
    np.testing.assert_array_equal(np.load(target), np.arange(5))
    assert not same_file(source, tmp_path / "missing.npy")
    assert not list(tmp_path.glob(".*.part"))


def test_a_graph_from_a_canonical_int32_matrix_reads_its_indices_in_place() -> None:
    matrix = binary(50, 50, seed=3)
    graph = GraphCSR.from_csr(matrix)
    assert np.shares_memory(graph.out_indices, matrix.indices)
    assert (graph.to_csr("in") != matrix.T).nnz == 0
    files = binary_csr_files("x", "seen")
    assert [f.name for f in files] == ["seen.indptr.npy", "seen.indices.npy", "seen.data.npy"]
