"""Every metric against examples worked by hand (see the comments for the sums)."""

from math import log2

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.evaluation.metrics import (
    CoverageCounter,
    catalogue_coverage,
    first_occurrences,
    in_rows,
    metric_key,
    user_metrics,
)


def truth_matrix(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    indices = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))


# user 0: targets {1, 4, 7}, hits at ranks 1 and 3
# user 1: targets {9} (fewer targets than k), hit at rank 2, then empty slots
# user 2: targets {2, 3}, first hit at rank 5
RECOMMENDED = np.array(
    [
        [1, 2, 4, 3, 5],
        [0, 9, -1, -1, -1],
        [5, 6, 7, 8, 3],
    ]
)
TRUTH = truth_matrix([[1, 4, 7], [9], [2, 3]])
IDCG_3 = 1 + 1 / log2(3) + 1 / log2(4)  # three targets at the top
IDCG_2 = 1 + 1 / log2(3)

EXPECTED = {
    # k = 1: only rank 1 counts
    "recall@1": [1 / 3, 0, 0],
    "ndcg@1": [1, 0, 0],  # ideal over min(1, |T|) = 1 target
    "hit@1": [1, 0, 0],
    "mrr@1": [1, 0, 0],
    "map@1": [1, 0, 0],  # P@1 = 1 over min(1, 3)
    # k = 3
    "recall@3": [2 / 3, 1, 0],
    "ndcg@3": [(1 + 1 / log2(4)) / IDCG_3, (1 / log2(3)) / 1, 0],
    "hit@3": [1, 1, 0],
    "mrr@3": [1, 1 / 2, 0],
    "map@3": [(1 / 1 + 2 / 3) / 3, (1 / 2) / 1, 0],
    # k = 5: user 0's ideal stays at 3 targets, user 2 hits at rank 5
    "recall@5": [2 / 3, 1, 1 / 2],
    "ndcg@5": [(1 + 1 / log2(4)) / IDCG_3, 1 / log2(3), (1 / log2(6)) / IDCG_2],
    "hit@5": [1, 1, 1],
    "mrr@5": [1, 1 / 2, 1 / 5],
    "map@5": [(1 + 2 / 3) / 3, 1 / 2, (1 / 5) / 2],
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_hand_worked_example(key: str) -> None:
    values = user_metrics(RECOMMENDED, TRUTH, ks=(1, 3, 5))
    np.testing.assert_allclose(values[key], EXPECTED[key], rtol=1e-12, atol=1e-12)


def test_every_metric_and_k_is_reported() -> None:
    values = user_metrics(RECOMMENDED, TRUTH, ks=(1, 3))
    assert set(values) == {
        metric_key(m, k) for m in ("recall", "ndcg", "hit", "mrr", "map") for k in (1, 3)
    }


def test_perfect_ranking_scores_one() -> None:
    truth = truth_matrix([[3, 1], [0]])
    recommended = np.array([[1, 3, 5], [0, 2, 4]])
    values = user_metrics(recommended, truth, ks=(2, 3))
    for key in ("recall@2", "ndcg@2", "hit@2", "mrr@2", "map@2", "ndcg@3", "map@3"):
        np.testing.assert_allclose(values[key], [1.0, 1.0], err_msg=key)


def test_repeated_ids_count_once() -> None:
    # a buggy list naming target 4 three times: one hit, not three
    values = user_metrics(np.array([[4, 4, 4]]), truth_matrix([[4, 6]]), ks=(3,))
    assert values["recall@3"][0] == pytest.approx(1 / 2)
    assert values["map@3"][0] == pytest.approx((1 / 1) / 2)
    assert values["ndcg@3"][0] == pytest.approx(1 / (1 + 1 / log2(3)))


def test_user_without_targets_is_nan() -> None:
    values = user_metrics(np.array([[1, 2], [1, 2]]), truth_matrix([[1], []]), ks=(2,))
    assert values["recall@2"][0] == 1.0
    assert np.isnan(values["recall@2"][1]) and np.isnan(values["ndcg@2"][1])


def test_k_larger_than_the_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="k=6"):
        user_metrics(RECOMMENDED, TRUTH, ks=(6,))


def test_in_rows_and_first_occurrences() -> None:
    rows = truth_matrix([[2, 5], []], n_items=6)
    got = in_rows(np.array([[5, -1, 2, 7], [2, 5, 0, -1]]), rows)
    assert got.tolist() == [[True, False, True, False], [False, False, False, False]]
    assert first_occurrences(np.array([[3, 1, 3, -1, -1, 1]])).tolist() == [[3, 1, -1, -1, -1, -1]]


def test_catalogue_coverage_by_hand() -> None:
    recommended = np.array([[1, 2], [2, 3], [-1, -1]])
    # top-1: {1, 2} of 10 candidates; top-2: {1, 2, 3}
    assert catalogue_coverage(recommended, 1, n_candidates=10) == pytest.approx(0.2)
    assert catalogue_coverage(recommended, 2, n_candidates=10) == pytest.approx(0.3)


def test_coverage_accumulates_over_batches() -> None:
    counter = CoverageCounter((1, 2), n_candidates=4)
    counter.add(np.array([[0, 1]]))
    counter.add(np.array([[0, 3], [2, -1]]))
    assert counter.coverage() == {"coverage@1": 2 / 4, "coverage@2": 4 / 4}


def test_capped_recall_is_hits_over_the_fewer_of_targets_and_k():
    import scipy.sparse as sp

    from recgraph.evaluation.metrics import capped_recall

    rng = np.random.default_rng(4)
    truth = sp.random(30, 50, density=0.15, random_state=5, format="csr")
    recommended = np.array([rng.permutation(50)[:12] for _ in range(30)])
    recommended[0, 3] = recommended[0, 2]  # a repeat counts once
    recommended[1, 5] = -1
    k, want = 10, []
    for row, user in zip(recommended, range(30), strict=True):
        wanted = set(truth[user].indices.tolist())
        if wanted:
            want.append(len(wanted & set(row[:k].tolist())) / min(len(wanted), k))
    assert capped_recall(recommended, truth, k) == pytest.approx(float(np.mean(want)))
