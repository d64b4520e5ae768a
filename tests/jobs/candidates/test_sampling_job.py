"""Degree-capped samples: the local job is the GNNs' sampler, Spark gives the very same samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recgraph.data.sampling import SamplingConfig, degree_capped_samples, id_hash
from recgraph.errors import ConfigError
from recgraph.jobs.candidates.graph_input import GraphSource
from recgraph.jobs.candidates.runner import CandidatesRequest, run_candidates
from recgraph.jobs.candidates.sampling_job import read_samples, sampling_config
from tests.jobs.candidates.lists import real_graph, write_edges

PARAMS = {"num_samples": 3, "max_degree": 8}


def run(tmp_path, graph, engine, spark=None, params=PARAMS):
    edges = tmp_path / "follows.parquet"
    if not edges.exists():
        write_edges(graph, edges)
    request = CandidatesRequest(
        job="samples",
        engine=engine,
        source=GraphSource(str(edges), directed=graph.directed),
        output=str(tmp_path / f"samples-{engine}.parquet"),
        params=params,
    )
    summary = run_candidates(request, spark=spark)
    frame = read_samples(summary.output)
    assert summary.rows == len(frame)
    return frame


@pytest.mark.datasets
def test_the_local_job_writes_the_samplers_own_samples(tmp_path):
    graph = real_graph("college-msg")
    frame = run(tmp_path, graph, "local")
    names = graph.users.ids.astype(str)
    pairs = len(graph.dedupe())
    for sample in degree_capped_samples(graph, SamplingConfig(**PARAMS)):
        expected = pd.DataFrame({"src": names[sample.src], "dst": names[sample.dst]})
        got = frame[frame["sample"] == sample.index][["src", "dst"]]
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True),
            expected.sort_values(["src", "dst"]).reset_index(drop=True),
        )
        # the cap drops edges of hubs and keeps some of everyone's
        assert 0 < len(got) < pairs
    first, second = (frame[frame["sample"] == i][["src", "dst"]] for i in (0, 1))
    assert not first.reset_index(drop=True).equals(second.reset_index(drop=True))


@pytest.mark.spark
@pytest.mark.datasets
@pytest.mark.parametrize("graph_name", ["college-msg", "ego-facebook"])
def test_spark_gives_the_same_samples(spark, tmp_path, graph_name):
    # CollegeMsg repeats pairs (messages): degrees count distinct pairs on both engines;
    # ego-Facebook is undirected: a friend count is both ends of the pair
    graph = real_graph(graph_name)
    local = run(tmp_path, graph, "local")
    remote = run(tmp_path, graph, "spark", spark)
    assert len(local) > 0
    assert sorted(local["sample"].unique()) == [0, 1, 2]
    pd.testing.assert_frame_equal(local, remote)


@pytest.mark.spark
@pytest.mark.datasets
def test_spark_holds_more_samples_than_one_mask_long(spark, tmp_path):
    # 70 samples: two keep-bit longs on Spark (62 + 8), on the first 3000 messages
    graph = real_graph("college-msg")
    part = graph.subset(np.arange(3000))
    params = {"num_samples": 70, "max_degree": 4}
    local = run(tmp_path, part, "local", params=params)
    remote = run(tmp_path, part, "spark", spark, params=params)
    assert local["sample"].max() == 69 and local["sample"].nunique() == 70
    pd.testing.assert_frame_equal(local, remote)


@pytest.mark.spark
def test_sparks_md5_column_is_the_samplers_id_hash(spark):
    from recgraph.jobs.candidates.sampling_job import id_hash_column

    ids = ["0", "42", "did:plc:z72i7hdynmk6r22z27h6tvur", "ñandú", "日本", "x" * 300]
    frame = spark.createDataFrame([(i,) for i in ids], "id string")
    got = [row["h"] for row in frame.select(id_hash_column(frame["id"]).alias("h")).collect()]
    assert got == [id_hash(i) for i in ids]
    assert max(got) < 2**32 and np.unique(got).size == len(ids)


def test_bad_sampling_parameters_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown parameter 'hub_cap'"):
        sampling_config({"hub_cap": 3})
    with pytest.raises(ConfigError, match="max_degree must be at least 1"):
        sampling_config({"max_degree": 0})
    assert sampling_config({"num_samples": "4"}) == SamplingConfig(num_samples=4)
