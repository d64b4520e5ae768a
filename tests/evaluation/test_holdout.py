"""How a pair of split files was cut, read from the rows' times, and handed to a pipeline's ranker."""

from __future__ import annotations

import numpy as np
import pytest

from recgraph.data import splits
from recgraph.data.interactions import Interactions
from recgraph.evaluation.holdout import detect_holdout


def _feed(timestamps: bool = True) -> Interactions:
    rng = np.random.default_rng(3)
    n = 3000
    src, dst = rng.integers(0, 60, n), rng.integers(0, 80, n)
    ts = rng.integers(1_000_000, 9_000_000, n) if timestamps else None
    graph = Interactions.from_indices(src, dst, n_users=60, n_items=80, timestamp=ts)
    return graph.dedupe(keep="first")


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("temporal_global", "temporal_global"),
        ("temporal_per_user", "temporal_per_user"),
        ("leave_last_n", "temporal_per_user"),
        ("random_per_user", "random_per_user"),
    ],
)
def test_the_split_is_read_back_from_the_times(method, expected):
    train, test = splits.split(_feed(), method, fraction=0.2, seed=0)
    found = detect_holdout(train, test)
    assert found.method == expected, found.reason
    assert found.reason


def test_without_timestamps_a_random_holdout_is_assumed():
    train, test = splits.split(_feed(timestamps=False), "random_per_user", fraction=0.2, seed=0)
    assert detect_holdout(train, test).method == "random_per_user"
    graph = Interactions.from_indices(
        np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0]), n_users=4, one_sided=True
    )
    assert detect_holdout(graph, graph).method == "edge_holdout"


def test_the_holdout_only_reads_when_test_rows_happened_not_what_they_hold():
    train, test = splits.split(_feed(), "temporal_global", fraction=0.2, seed=0)
    # other items, same users and times: the same answer
    shuffled = Interactions.from_indices(
        test.src,
        np.random.default_rng(0).permutation(test.dst),
        n_users=test.n_users,
        n_items=test.n_items,
        timestamp=test.timestamp,
    )
    assert detect_holdout(train, shuffled) == detect_holdout(train, test)


def test_a_pipeline_ranker_is_taught_as_the_holdout_says(small_store):
    from recgraph.evaluation.pipeline_retriever import QuestionRetriever

    feed = small_store.interactions_graph()
    assert feed.has_timestamps
    pipeline = {
        "feed": {
            "retrievers": [{"name": "item_knn"}, {"name": "popular"}],
            "fallback": [],
            "cold_start_min_interactions": 1,
            "ranker": {
                "depth": 30,
                "params": {"n_estimators": 20, "num_leaves": 7, "min_child_samples": 5},
            },
        }
    }
    seen = {}
    for holdout in ("random_per_user", "temporal_global", None):
        model = QuestionRetriever(question="feed", pipeline=pipeline, holdout=holdout).fit(feed)
        stage = model.question_model.ranking
        assert stage is not None
        seen[holdout] = (stage.report["label_split"], stage.report["check"])
    assert seen["random_per_user"] == ("random_per_user", "nested")
    assert seen["temporal_global"] == ("temporal_global", "same")
    # served: the future, one cut in time for everyone
    assert seen[None] == ("temporal_global", "same")


def test_test_users_unknown_to_train_say_nothing_about_their_own_last_rows():
    train, test = splits.split(_feed(), "random_per_user", fraction=0.2, seed=0)
    cold = Interactions.from_indices(
        test.src + train.n_users,
        test.dst,
        n_users=2 * train.n_users,
        n_items=train.n_items,
        timestamp=test.timestamp,
    )
    found = detect_holdout(train, cold)
    assert found.method == "random_per_user" and "no test user" in found.reason


def test_an_unknown_holdout_is_refused_by_name():
    from pydantic import ValidationError

    from recgraph.evaluation.pipeline_retriever import QuestionRetrieverConfig
    from recgraph.pipeline.ranking import label_split_for

    with pytest.raises(ValueError, match="holdout 'random'"):
        label_split_for("random")
    with pytest.raises(ValidationError, match="holdout 'random'"):
        QuestionRetrieverConfig(holdout="random")
    assert QuestionRetrieverConfig(holdout="temporal_pairs").holdout == "temporal_pairs"
