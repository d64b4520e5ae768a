import numpy as np
import scipy.sparse as sp

from recgraph.index.base import allowed_as_mask, drop_excluded, overfetch_search, partition_count


def make_raw_search(scores_row: np.ndarray, calls: list[int]):
    """An exact 'index' over one fixed score row, recording each fetch size."""
    order = np.argsort(-scores_row, kind="stable")

    def raw(queries, fetch):
        calls.append(fetch)
        ids = np.tile(order[:fetch], (len(queries), 1))
        return ids, scores_row[ids]

    return raw


def test_overfetch_never_returns_excluded_and_grows_geometrically():
    n = 1000
    scores = np.linspace(1.0, 0.0, n).astype(np.float32)  # id i is the i-th best
    calls: list[int] = []
    banned = [list(range(300))]  # the 300 best are excluded
    exclude = sp.csr_matrix((np.ones(300), (np.zeros(300, int), np.arange(300))), shape=(1, n))
    ids, got = overfetch_search(
        make_raw_search(scores, calls), np.zeros((1, 2)), 10, n, exclude, None
    )
    assert ids.tolist() == [list(range(300, 310))]
    assert not set(ids[0].tolist()) & set(banned[0])
    assert calls[0] == 10 + 32 and all(
        b == min(2 * a, 310) for a, b in zip(calls, calls[1:], strict=False)
    )
    assert calls[-1] <= 310


def test_overfetch_with_a_restrictive_allowed_mask_reaches_the_few_allowed():
    n = 500
    scores = np.linspace(1.0, 0.0, n).astype(np.float32)
    allowed = np.zeros(n, bool)
    allowed[[450, 499]] = True
    calls: list[int] = []
    ids, got = overfetch_search(
        make_raw_search(scores, calls), np.zeros((1, 2)), 5, n, None, allowed
    )
    assert ids.tolist() == [[450, 499, -1, -1, -1]]
    assert np.isneginf(got[0, 2:]).all()
    assert calls[-1] == n


def test_drop_excluded_keeps_order_and_pads():
    ids = np.array([[4, 2, -1, 7]])
    scores = np.array([[0.9, 0.8, -np.inf, 0.1]], np.float32)
    exclude = sp.csr_matrix(([1.0], ([0], [2])), shape=(1, 8))
    out_ids, out_scores, n_valid = drop_excluded(ids, scores, 5, exclude, None)
    assert out_ids.tolist() == [[4, 7, -1, -1, -1]]
    assert n_valid.tolist() == [2]
    assert out_scores[0, :2].tolist() == [np.float32(0.9), np.float32(0.1)]


def test_allowed_as_mask_accepts_ids_and_masks():
    assert allowed_as_mask(None, 4) is None
    assert allowed_as_mask(np.ones(4, bool), 4) is None  # everything allowed: no filter
    assert allowed_as_mask([1, 3], 4).tolist() == [False, True, False, True]


def test_partition_count_is_the_configured_or_default_number_within_one_and_the_items():
    assert partition_count(None, 1000, 32) == 32
    assert partition_count(64, 1000, 32) == 64
    assert partition_count(64, 10, 32) == 10  # never more partitions than items
    assert partition_count(None, 0, 0) == 1  # at least one
    assert partition_count(None, 10, 0) == 1
