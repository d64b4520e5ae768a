import numpy as np
import pytest

from recgraph.ranking import RankingBatch, ndcg_at


def test_batches_keep_each_user_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        RankingBatch(np.array([0, 1, 0]), np.zeros(3), np.zeros((3, 1)), ("f",))
    batch = RankingBatch(np.array([3, 3, 1]), np.zeros(3), np.zeros((3, 1)), ("f",))
    assert batch.group_sizes().tolist() == [2, 1]


def test_ndcg_of_a_perfect_and_a_reversed_order():
    labels = np.array([1, 0, 0, 0, 1])
    assert ndcg_at(np.array([5, 4, 3, 2, 1.0]), labels, [3, 2], 3) == pytest.approx(
        (1.0 + 1 / np.log2(3)) / 2
    )
    # one user, two likes: the top two hold one of them
    assert ndcg_at(np.array([1, 2, 3, 4, 5.0]), labels, [5], 2) == pytest.approx(
        1 / (1 + 1 / np.log2(3))
    )
