import json
from math import log2
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.data.interactions import Interactions, Kind
from recgraph.data.splits import random_per_user
from recgraph.errors import InputError
from recgraph.evaluation import DROP_REASONS, evaluate, evaluation_targets
from recgraph.retrieval.base import Retriever
from recgraph.retrieval.popular import Popular
from tests.datasets import shared_path

# ---------------------------------------------------------------- a tiny known example
# train: u0 has i0 i1; u1 has i0 i2; u2 has i0 i1 i3
# popularity: i0 = 3, i1 = 2, i2 = 1, i3 = 1
TRAIN_ROWS = [("u0", "i0"), ("u0", "i1"), ("u1", "i0"), ("u1", "i2")]
TRAIN_ROWS += [("u2", "i0"), ("u2", "i1"), ("u2", "i3")]
# scored test rows: u0 -> {i2, i3}, u1 -> {i3}, u2 -> {i2}; then one row per drop reason
TEST_ROWS = [
    ("u0", "i2", Kind.LIKE),
    ("u0", "i3", Kind.LIKE),
    ("u1", "i3", Kind.LIKE),
    ("u2", "i2", Kind.LIKE),
    ("u2", "i2", Kind.DISLIKE),  # dislike
    ("u9", "i0", Kind.LIKE),  # user_not_in_train
    ("u0", "i9", Kind.LIKE),  # target_not_in_train
    ("u1", "i0", Kind.LIKE),  # already_in_train
    ("u0", "i2", Kind.LIKE),  # duplicate
]


def tiny() -> tuple[Interactions, Interactions]:
    src, dst = zip(*TRAIN_ROWS, strict=True)
    train = Interactions.from_arrays(src, dst)
    src, dst, kind = zip(*TEST_ROWS, strict=True)
    test = Interactions.from_arrays(
        src, dst, kind=np.asarray(kind, np.int8), users=train.users, items=train.items
    )
    return train, test


def test_popular_on_a_tiny_example_by_hand() -> None:
    train, test = tiny()
    report = evaluate([Popular()], train, test, ks=(1, 2), progress=False)
    # rankings (seen removed, ties to the lower index):
    #   u0 -> [i2, i3]   targets {i2, i3}
    #   u1 -> [i1, i3]   targets {i3}
    #   u2 -> [i2]       targets {i2}
    expected = {
        "recall@1": (1 / 2 + 0 + 1) / 3,
        "ndcg@1": (1 + 0 + 1) / 3,
        "hit@1": 2 / 3,
        "mrr@1": 2 / 3,
        "map@1": 2 / 3,
        "coverage@1": 2 / 4,  # {i1, i2} of 4 candidates
        "recall@2": 1.0,
        "ndcg@2": (1 + 1 / log2(3) + 1) / 3,
        "hit@2": 1.0,
        "mrr@2": (1 + 1 / 2 + 1) / 3,
        "map@2": (1 + 1 / 2 + 1) / 3,
        "coverage@2": 3 / 4,  # {i1, i2, i3}
    }
    result = report.result("popular")
    assert list(result.metrics) == list(expected)
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-12), key
    assert report.n_users == 3 and report.n_test_targets == 4 and report.n_candidates == 4
    assert result.invalid_recommendations == 0


def test_dropped_rows_are_counted_by_reason() -> None:
    train, test = tiny()
    targets = evaluation_targets(train, test)
    assert targets.dropped_by_reason == {
        "dislike": 1,
        "user_not_in_train": 1,
        "target_not_in_train": 1,
        "self_loop": 0,
        "already_in_train": 1,
        "duplicate": 1,
    }
    assert tuple(targets.dropped_by_reason) == DROP_REASONS
    report = evaluate("popular", train, test, ks=(2,), progress=False)
    assert report.dropped_test_rows == 5 == len(test) - targets.truth.nnz


def test_friendship_targets_both_ends_and_excludes_self() -> None:
    # train: a 4-cycle 0-1-2-3-0; test: the chord 0-2, plus rows that must be dropped
    train = Interactions.from_indices(
        [0, 1, 2, 3], [1, 2, 3, 0], n_users=5, one_sided=True, directed=False
    )
    test = Interactions.from_indices(
        [0, 1, 1, 4], [2, 1, 0, 0], n_users=5, one_sided=True, directed=False
    )
    targets = evaluation_targets(train, test)
    assert targets.dropped_by_reason["self_loop"] == 1
    assert targets.dropped_by_reason["already_in_train"] == 1  # 1-0 is 0-1 reversed
    assert targets.dropped_by_reason["user_not_in_train"] == 1  # node 4 has no train edge
    assert targets.truth[0].indices.tolist() == [2] and targets.truth[2].indices.tolist() == [0]
    assert not targets.candidates[4]
    report = evaluate("popular", train, test, ks=(1, 3), progress=False)
    # each of 0 and 2 has exactly one candidate left: the other one
    assert report.result("popular").metrics["recall@1"] == 1.0
    assert report.result("popular").metrics["coverage@3"] == 2 / 4


def test_follows_targets_only_the_source() -> None:
    train = Interactions.from_indices([0, 1, 2], [1, 2, 0], n_users=3, one_sided=True)
    test = Interactions.from_indices([0], [2], n_users=3, one_sided=True)
    targets = evaluation_targets(train, test)
    assert targets.users.tolist() == [0]


class Everything(Retriever):
    """A careless model: returns ids 0, 1, 2, ... whatever the user has."""

    name = "everything"

    def _fit(self, train: Interactions) -> None:
        pass

    def recommend(self, users, k=10, exclude_seen=True, exclude=None, candidates=None):
        users = self._check_users(users)
        ids = np.broadcast_to(np.arange(k) % self.n_items, (len(users), k)).copy()
        return ids, np.zeros((len(users), k), np.float32)


def test_nothing_outside_the_candidates_counts() -> None:
    # one user: has item 0 in train, item 1 is only in test (no candidate),
    # item 2 is the target; the careless model lists 0, 1, 2
    train = Interactions.from_indices([0, 1], [0, 2], n_users=2, n_items=3)
    test = Interactions.from_indices([0, 0], [1, 2], n_users=2, n_items=3)
    report = evaluate([Everything()], train, test, ks=(1, 3), progress=False)
    metrics = report.result("everything").metrics
    assert report.dropped_by_reason["target_not_in_train"] == 1
    assert metrics["hit@1"] == 0.0  # its first slot (a seen item) is blanked
    assert metrics["recall@3"] == 1.0 and metrics["mrr@3"] == pytest.approx(1 / 3)
    assert metrics["coverage@3"] == 1 / 2  # only item 2 of the candidates {0, 2}
    assert report.result("everything").invalid_recommendations == 2  # item 0 (seen), 1


class Oracle(Retriever):
    """Knows the test set: scores exactly the user's test targets."""

    name = "oracle"

    def __init__(self, answers: sp.csr_matrix) -> None:
        super().__init__()
        self.answers = answers

    def _fit(self, train: Interactions) -> None:
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.answers[users].toarray()


def test_a_perfect_oracle_scores_one() -> None:
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 40, 800), rng.integers(0, 60, 800)
    data = Interactions.from_indices(src, dst, n_users=40, n_items=60).dedupe()
    train, test = random_per_user(data, 0.2, seed=0)
    targets = evaluation_targets(train, test)
    k = int(np.diff(targets.truth.indptr).max())
    report = evaluate([Oracle(targets.truth), Popular()], train, test, ks=(k,), progress=False)
    oracle = report.result("oracle").metrics
    for metric in ("recall", "ndcg", "hit", "mrr", "map"):
        assert oracle[f"{metric}@{k}"] == pytest.approx(1.0), metric
    assert report.result("popular").metrics[f"recall@{k}"] < 1.0


def test_test_read_on_its_own_maps_is_realigned() -> None:
    train, test = tiny()
    alone = Interactions.from_arrays(
        test.users.external(test.src), test.items.external(test.dst), kind=test.kind
    )
    a = evaluate("popular", train, test, ks=(2,), progress=False)
    b = evaluate("popular", train, alone, ks=(2,), progress=False)
    assert a.result("popular").metrics == b.result("popular").metrics
    assert a.dropped_by_reason == b.dropped_by_reason


def test_json_shape(tmp_path: Path) -> None:
    train, test = tiny()
    report = evaluate(
        ["popular"], train, test, ks=(1, 2), params={"popular": {"weight": "value"}}, progress=False
    )
    data = json.loads(report.to_json(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text()) == data
    assert data["kind"] == "items" and data["dropped_test_rows"] == 5
    (result,) = data["results"]
    assert result["model"] == "popular" and result["params"] == {"weight": "value"}
    assert isinstance(result["fit_seconds"], float) and isinstance(
        result["recommend_seconds"], float
    )
    assert set(result["metrics"]) == {
        f"{m}@{k}" for m in ("recall", "ndcg", "hit", "mrr", "map", "coverage") for k in (1, 2)
    }
    assert data["dropped_by_reason"]["duplicate"] == 1


def test_plot_writes_a_png(tmp_path: Path) -> None:
    train, test = tiny()
    report = evaluate(["popular"], train, test, ks=(1, 2), progress=False)
    report.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batches_do_not_change_results() -> None:
    rng = np.random.default_rng(1)
    data = Interactions.from_indices(
        rng.integers(0, 50, 600), rng.integers(0, 30, 600), n_users=50, n_items=30
    ).dedupe()
    train, test = random_per_user(data, 0.3, seed=2)
    one = evaluate("popular", train, test, ks=(5,), batch_size=1, progress=False)
    many = evaluate("popular", train, test, ks=(5,), batch_size=1000, progress=False)
    assert one.result("popular").metrics == pytest.approx(many.result("popular").metrics)


def test_nothing_to_score_is_an_error() -> None:
    train, _ = tiny()
    test = Interactions.from_arrays(["u9"], ["i0"], users=train.users, items=train.items)
    with pytest.raises(InputError, match="user_not_in_train"):
        evaluate("popular", train, test, progress=False)


@pytest.mark.datasets
def test_popular_on_movielens_100k_matches_published_range() -> None:
    folder = shared_path("movielens-100k/u.data", "MovieLens 100k").parent
    from recgraph.data.movielens import read_movielens

    train, test = random_per_user(read_movielens(folder), 0.2, seed=0)
    report = evaluate("popular", train, test, ks=(20,), progress=False)
    # popularity on ML-100k: recall@20 roughly 0.1-0.2 depending on the protocol
    assert 0.1 < report.result("popular").metrics["recall@20"] < 0.2
    assert report.n_users == 943
