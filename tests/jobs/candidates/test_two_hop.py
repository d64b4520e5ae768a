"""The two-hop jobs: the local engine equals the retrievers, Spark equals the local engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recgraph.jobs.candidates.graph_input import GraphSource
from recgraph.jobs.candidates.output import read_candidates
from recgraph.jobs.candidates.runner import CandidatesRequest, run_candidates
from recgraph.jobs.candidates.two_hop import two_hop_local, two_hop_model
from tests.jobs.candidates.lists import assert_same_lists, model_lists, real_graph, write_edges

K = 20

LOCAL_CASES = [
    ("college-msg", "adamic_adar", {}),
    ("college-msg", "jaccard", {"path": "in_out"}),
    ("college-msg", "resource_allocation", {"hub_cap": 30, "degree": "entry"}),
    ("college-msg", "common_neighbors", {"path": "undirected", "hub_cap": 25}),
    ("wiki-vote", "adamic_adar", {"hub_cap": 50, "degree": "total"}),
    ("wiki-vote", "resource_allocation", {"path": "out_in"}),
    ("ego-facebook", "jaccard", {}),
    ("ego-facebook", "adamic_adar", {"hub_cap": 100, "hub_policy": "skip"}),
]


@pytest.mark.datasets
@pytest.mark.parametrize(("graph_name", "job", "params"), LOCAL_CASES)
def test_the_local_engine_gives_the_retrievers_own_lists(graph_name, job, params):
    graph = real_graph(graph_name)
    lists = two_hop_local(graph, job, K, params)
    model = two_hop_model(job, params).fit(graph)
    expected = model_lists(model, graph.users.ids, K)
    # the model sums in float32, the job in float64: equal to float32 precision
    assert_same_lists(expected, lists.to_frame(), K, rel=2e-6)


def test_the_hub_cap_bounds_the_paths_and_changes_the_lists(tmp_path):
    graph = real_graph("college-msg")
    capped = two_hop_local(graph, "common_neighbors", K, {"hub_cap": 5}).to_frame()
    exact = two_hop_local(graph, "common_neighbors", K, {"hub_cap": 0}).to_frame()
    assert capped["score"].sum() < exact["score"].sum()
    first_capped = two_hop_local(graph, "common_neighbors", K, {"first_hop_cap": 3}).to_frame()
    assert first_capped["score"].sum() < exact["score"].sum()


@pytest.mark.spark
@pytest.mark.datasets
@pytest.mark.parametrize(
    ("job", "params"),
    [
        ("adamic_adar", {"hub_cap": 40}),
        ("jaccard", {"path": "in_out"}),
        ("resource_allocation", {"degree": "total", "hub_cap": 30, "hub_policy": "skip"}),
        ("common_neighbors", {"path": "undirected"}),
        # a user's own first hop capped as well (seeded apart from the hub sample)
        ("adamic_adar", {"first_hop_cap": 8, "hub_cap": 40}),
        ("jaccard", {"path": "undirected", "first_hop_cap": 5}),
    ],
)
def test_spark_gives_the_local_engines_lists(spark, tmp_path, job, params):
    graph = real_graph("college-msg")
    edges = write_edges(graph, tmp_path / "follows.parquet")
    outputs = {}
    for engine in ("local", "spark"):
        request = CandidatesRequest(
            job=job,
            engine=engine,
            source=GraphSource(str(edges)),
            output=str(tmp_path / f"{engine}.parquet"),
            k=K,
            params=params,
        )
        summary = run_candidates(request, spark=spark)
        outputs[engine] = read_candidates(summary.output)
        assert summary.rows == len(outputs[engine]) > 0
    assert_same_lists(outputs["local"], outputs["spark"], K, rel=1e-9)
    assert (outputs["spark"]["sources"].map(tuple) == (job,)).all()


@pytest.mark.spark
@pytest.mark.datasets
@pytest.mark.slow
@pytest.mark.parametrize(
    ("graph_name", "job", "params"),
    [
        ("wiki-vote", "resource_allocation", {"hub_cap": 100}),
        ("ego-facebook", "adamic_adar", {}),
    ],
)
def test_spark_gives_the_local_engines_lists_on_larger_graphs(
    spark, tmp_path, graph_name, job, params
):
    graph = real_graph(graph_name)
    edges = write_edges(graph, tmp_path / "follows.parquet")
    local = two_hop_local(graph, job, K, params).to_frame()
    request = CandidatesRequest(
        job=job,
        engine="spark",
        source=GraphSource(str(edges), directed=graph.directed),
        output=str(tmp_path / "spark.parquet"),
        k=K,
        params=params,
    )
    run_candidates(request, spark=spark)
    assert_same_lists(local, read_candidates(tmp_path / "spark.parquet"), K, rel=1e-9)


def test_scores_are_float64_sums_of_the_models_float32_weights():
    graph = real_graph("college-msg")
    lists = two_hop_local(graph, "adamic_adar", 5).to_frame()
    model = two_hop_model("adamic_adar").fit(graph)
    users = graph.users.index(lists["user"])
    targets = graph.users.index(lists["candidate"])
    weights = model.weights_.astype(np.float64)
    first, second = model.first_, model.expansion_
    for u, v, score in list(zip(users, targets, lists["score"], strict=True))[:50]:
        middles = np.intersect1d(first[u].indices, second[:, v].tocoo().row)
        assert score == pytest.approx(weights[middles].sum(), rel=1e-12)
    assert pd.api.types.is_float_dtype(lists["score"])
