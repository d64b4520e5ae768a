"""Stage-2 batch scoring: whole users per call, the same re-ranking on both engines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recgraph.errors import ConfigError
from recgraph.jobs.candidates.graph_input import GraphSource
from recgraph.jobs.candidates.output import read_candidates
from recgraph.jobs.candidates.rank_job import load_scorer, rerank, whole_users
from recgraph.jobs.candidates.runner import CandidatesRequest, run_candidates
from recgraph.jobs.candidates.two_hop import two_hop_local
from tests.jobs.candidates.lists import real_graph


def make_scorer(weight: float = 1.0):
    """A stand-in ranker: prefers candidates further down the list, and checks its contract."""

    def score_partition(rows: pd.DataFrame) -> np.ndarray:
        users = rows["user"].to_numpy()
        # whole users only: every user's rank 1 is in the partition
        assert set(users) == set(users[rows["rank"].to_numpy() == 1])
        return weight * rows["rank"].to_numpy() + rows["score"].to_numpy() * 1e-3

    return score_partition


def test_whole_users_never_splits_a_user():
    frame = pd.DataFrame({"user": list("aaabbbbcc"), "rank": [1, 2, 3, 1, 2, 3, 4, 1, 2]})
    pieces = [frame.iloc[:2], frame.iloc[2:5], frame.iloc[5:6], frame.iloc[6:]]
    chunks = list(whole_users(iter(pieces)))
    assert pd.concat(chunks)["user"].tolist() == frame["user"].tolist()
    for chunk in chunks:
        for user in set(chunk["user"]):
            assert (chunk["user"] == user).sum() == (frame["user"] == user).sum()


def test_rerank_orders_by_the_new_scores_and_cuts_k():
    rows = pd.DataFrame(
        {
            "user": ["a"] * 3 + ["b"] * 2,
            "candidate": ["x", "y", "z", "x", "w"],
            "score": [3.0, 2.0, 1.0, 5.0, 4.0],
            "rank": [1, 2, 3, 1, 2],
            "sources": [["j"]] * 5,
        }
    )
    out = rerank(rows, lambda r: -r["score"].to_numpy(), 2)
    assert out["candidate"].tolist() == ["z", "y", "w", "x"]
    assert out["rank"].tolist() == [1, 2, 1, 2]


def test_a_bad_scorer_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="module:function"):
        load_scorer("nocolon")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_scorer("recgraph.nothing:here")


@pytest.mark.spark
@pytest.mark.datasets
def test_both_engines_rank_the_same(spark, tmp_path):
    graph = real_graph("college-msg")
    candidates = tmp_path / "aa.parquet"
    two_hop_local(graph, "adamic_adar", 10).write_parquet(candidates)
    outputs = {}
    for engine in ("local", "spark"):
        request = CandidatesRequest(
            job="rank",
            engine=engine,
            source=GraphSource(str(candidates)),
            output=str(tmp_path / f"ranked-{engine}.parquet"),
            k=5,
            params={"scorer": "tests.jobs.candidates.test_rank_job:make_scorer", "weight": 2.0},
        )
        summary = run_candidates(request, spark=spark)
        outputs[engine] = read_candidates(summary.output)
        assert summary.users == outputs[engine]["user"].nunique()
    pd.testing.assert_frame_equal(outputs["local"], outputs["spark"], check_dtype=False)
    before = read_candidates(candidates)
    # the stand-in ranker reverses each list: the old last is the new first
    last = before.groupby("user")["rank"].transform("max") == before["rank"]
    expected = before[last].set_index("user")["candidate"].sort_index()
    got = outputs["local"][outputs["local"]["rank"] == 1].set_index("user")["candidate"]
    pd.testing.assert_series_equal(got.sort_index(), expected, check_names=False)
