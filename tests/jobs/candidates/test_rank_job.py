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


# ---------------------------------------------------------------------- a trained pipeline's ranker
FAST = {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 5, "early_stopping_rounds": 10}
DEPTH = 25


def ranked_pipeline_config(ranker: bool = True) -> dict:
    question = {
        "retrievers": [{"name": "adamic_adar"}, {"name": "popular"}],
        "fallback": [],
        "candidates": DEPTH,
    }
    if ranker:
        question["ranker"] = {"depth": DEPTH, "params": FAST}
    return {"who_to_follow": question}


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    """A who-to-follow pipeline with a LightGBM ranker on CollegeMsg, saved; its own pool as a file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recgraph.jobs.candidates.output import output_schema
    from recgraph.pipeline import Pipeline

    graph = real_graph("college-msg")
    pipeline = Pipeline(ranked_pipeline_config()).fit(follows=graph)
    folder = pipeline.save(tmp_path_factory.mktemp("pipeline") / "model")
    question = pipeline.questions["who_to_follow"]
    assert question.ranking is not None
    users = np.flatnonzero(question.warm(np.arange(graph.n_users)))
    pool = question.pool(users, DEPTH)
    rows, slots = np.nonzero(pool.valid)
    names = question.users.ids.astype(str)
    frame = pd.DataFrame(
        {
            "user": names[pool.users[rows]],
            "candidate": names[pool.ids[rows, slots]],
            "score": pool.merged[rows, slots].astype(np.float64),
            "rank": (slots + 1).astype(np.int32),
            "sources": [["pool"]] * len(rows),
        }
    ).sort_values(["user", "rank"], kind="stable")
    path = tmp_path_factory.mktemp("candidates") / "pool.parquet"
    pq.write_table(pa.Table.from_pandas(frame, schema=output_schema(), preserve_index=False), path)
    return question, folder, path, pool


def rank_request(engine, folder, candidates, output, **params):
    return CandidatesRequest(
        job="rank",
        engine=engine,
        source=GraphSource(str(candidates)),
        output=str(output),
        k=K_RANKED,
        model_dir=str(folder),
        params=params,
    )


K_RANKED = 10


@pytest.mark.datasets
def test_the_rank_job_orders_as_the_questions_own_ranker(ranked, tmp_path):
    from tests.jobs.candidates.lists import assert_same_lists

    question, folder, candidates, pool = ranked
    summary = run_candidates(rank_request("local", folder, candidates, tmp_path / "r.parquet"))
    got = read_candidates(summary.output)
    ids, scores, _ = question.ranking.rank(pool, K_RANKED)
    # every score counts (a ranker's may be negative), so not lists_frame
    rows, slots = np.nonzero(ids >= 0)
    expected = pd.DataFrame(
        {
            "user": question.users.ids[pool.users[rows]].astype(str),
            "candidate": question.users.ids[ids[rows, slots]].astype(str),
            "score": scores[rows, slots].astype(np.float64),
            "rank": slots + 1,
        }
    )
    assert summary.users == len(pool.users) and len(got) == len(expected) > 0
    assert_same_lists(expected, got, K_RANKED, rel=1e-9)
    # the ranker did re-order: its first is often not the merge's first
    before = read_candidates(candidates)
    first = before[before["rank"] == 1].set_index("user")["candidate"]
    now = got[got["rank"] == 1].set_index("user")["candidate"]
    assert (first.reindex(now.index) != now).mean() > 0.05


@pytest.mark.datasets
def test_a_rows_score_depends_on_its_user_alone(ranked):
    from recgraph.jobs.candidates.rank_job import make_scorer

    _, folder, candidates, _ = ranked
    rows = read_candidates(candidates)
    scorer = make_scorer(str(folder))
    whole = scorer(rows)
    users = rows["user"].unique()
    odd = rows["user"].isin(users[1::2]).to_numpy()
    parts = np.empty(len(rows))
    parts[odd] = scorer(rows[odd].reset_index(drop=True))
    parts[~odd] = scorer(rows[~odd].reset_index(drop=True))
    np.testing.assert_array_equal(parts, whole)
    assert np.isfinite(whole).all() and np.unique(whole).size > 10
    unknown = rows.head(3).assign(candidate="no-such-account")
    assert np.isneginf(scorer(unknown)).all()


def test_the_rank_job_needs_a_pipeline_with_a_ranker(tmp_path):
    from recgraph.pipeline import Pipeline

    graph = real_graph("college-msg")
    folder = Pipeline(ranked_pipeline_config(ranker=False)).fit(follows=graph).save(tmp_path / "p")
    candidates = tmp_path / "c.parquet"
    two_hop_local(graph, "adamic_adar", 3).write_parquet(candidates)
    with pytest.raises(ConfigError, match="has no trained ranker"):
        run_candidates(rank_request("local", folder, candidates, tmp_path / "o.parquet"))
    with pytest.raises(ConfigError, match="no saved pipeline"):
        run_candidates(rank_request("local", tmp_path / "none", candidates, tmp_path / "o.parquet"))
    with pytest.raises(ConfigError, match="unknown parameter 'depth'"):
        run_candidates(rank_request("local", folder, candidates, tmp_path / "o.parquet", depth=3))


@pytest.mark.spark
@pytest.mark.datasets
def test_both_engines_give_the_rankers_same_scores(spark, ranked, tmp_path):
    _, folder, candidates, _ = ranked
    outputs = {}
    for engine in ("local", "spark"):
        request = rank_request(engine, folder, candidates, tmp_path / f"{engine}.parquet")
        outputs[engine] = read_candidates(run_candidates(request, spark=spark).output)
    local, remote = outputs["local"], outputs["spark"]
    assert len(local) > 0
    assert local["user"].tolist() == remote["user"].tolist()
    assert local["candidate"].tolist() == remote["candidate"].tolist()
    np.testing.assert_allclose(remote["score"], local["score"], rtol=1e-9)
