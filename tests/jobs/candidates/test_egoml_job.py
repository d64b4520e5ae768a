"""EGOML scoring: the local engine equals the model, Spark equals the local engine, vectors agree."""

from __future__ import annotations

import uuid

import pytest

from recgraph.jobs.candidates.egoml_job import egoml_local
from recgraph.jobs.candidates.output import read_candidates
from recgraph.jobs.candidates.runner import CandidatesRequest, VectorTarget, run_candidates
from recgraph.retrieval.egoml.model import EgoML
from recgraph.retrieval.egoml.online import OnlineScorer, RedisVectorStore
from tests.jobs.candidates.lists import (
    REDIS_URL as REDIS,
)
from tests.jobs.candidates.lists import (
    assert_same_lists,
    model_lists,
    real_graph,
    redis_or_skip,
)

K = 20


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small EGOML on CollegeMsg (temporal labels), saved for the runner."""
    graph = real_graph("college-msg")
    model = EgoML(
        num_boost_round=15, max_train_users=300, negatives_per_user=20, fallback="none"
    ).fit(graph)
    folder = tmp_path_factory.mktemp("egoml") / "model"
    model.save(folder)
    return graph, model, folder


@pytest.mark.datasets
def test_the_local_engine_gives_the_models_own_lists(fitted):
    graph, model, _ = fitted
    lists = egoml_local(model, K)
    assert_same_lists(model_lists(model, graph.users.ids, K), lists.to_frame(), K, rel=2e-6)


@pytest.mark.spark
@pytest.mark.datasets
@pytest.mark.redis
def test_spark_gives_the_local_lists_and_the_same_vectors(spark, fitted, tmp_path):
    client = redis_or_skip(REDIS)
    graph, model, folder = fitted
    run = uuid.uuid4().hex
    outputs = {}
    for engine in ("local", "spark"):
        request = CandidatesRequest(
            job="egoml",
            engine=engine,
            model_dir=str(folder),
            output=str(tmp_path / f"{engine}.parquet"),
            k=K,
            vectors=VectorTarget(REDIS, f"test-egoml-{run}-{engine}"),
        )
        summary = run_candidates(request, spark=spark)
        assert summary.vectors_written == graph.n_users
        outputs[engine] = read_candidates(summary.output)
    assert_same_lists(outputs["local"], outputs["spark"], K, rel=1e-9)
    try:
        for user in graph.users.ids[::25]:
            for side in ("x", "y"):
                local = client.get(f"test-egoml-{run}-local:{side}:{user}")
                assert local is not None
                assert client.get(f"test-egoml-{run}-spark:{side}:{user}") == local
        scorer = OnlineScorer(RedisVectorStore(REDIS), namespace=f"test-egoml-{run}-spark")
        row = outputs["spark"].iloc[0]
        assert scorer.score(row["user"], row["candidate"]) == pytest.approx(row["score"], rel=1e-12)
    finally:
        for engine in ("local", "spark"):
            RedisVectorStore(REDIS).delete_namespace(f"test-egoml-{run}-{engine}")


def test_the_spark_engine_refuses_the_exact_variant(tmp_path):
    from recgraph.errors import ConfigError
    from recgraph.jobs.candidates.egoml_job import check_model

    graph = real_graph("college-msg")
    model = EgoML(variant="exact", num_boost_round=2, max_train_users=50).fit(graph)
    with pytest.raises(ConfigError, match="variant='ab'"):
        check_model(model, "spark")
