"""Inputs: edge files and the store, numbered by sorted external id the same way on both engines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recgraph.data.store import Store
from recgraph.errors import ConfigError, InputError
from recgraph.jobs.candidates.graph_input import GraphSource, read_edge_file, read_graph
from recgraph.jobs.candidates.output import read_candidates
from recgraph.jobs.candidates.runner import CandidatesRequest, run_candidates
from tests.data.conftest import store_url  # noqa: F401  (the fixture: a fresh database per backend)
from tests.jobs.candidates.lists import assert_same_lists


def test_accounts_are_numbered_by_sorted_id(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame({"src": ["b", "c", "a"], "dst": ["a", "a", "d"]}).to_parquet(path)
    graph = read_edge_file(path)
    assert list(graph.users.ids) == ["a", "b", "c", "d"]
    assert graph.users.external(graph.src).tolist() == ["b", "c", "a"]
    assert graph.users.external(graph.dst).tolist() == ["a", "a", "d"]
    numbers = tmp_path / "n.parquet"
    pd.DataFrame({"src": [10, 9], "dst": [100, 10]}).to_parquet(numbers)
    assert list(read_edge_file(numbers).users.ids) == ["9", "10", "100"]  # numeric order


def test_bad_edge_files_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"source": ["a"], "dst": ["b"]}).to_parquet(path)
    with pytest.raises(InputError, match="bad.parquet.*'src'"):
        read_edge_file(path)
    extra = tmp_path / "extra.parquet"
    pd.DataFrame({"src": ["a"], "dst": ["b"], "weight": [1]}).to_parquet(extra)
    with pytest.raises(InputError, match="weight"):
        read_edge_file(extra)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"src": ["a", None], "dst": ["b", "c"]}).to_parquet(empty)
    with pytest.raises(InputError, match="line 2.*'src'"):
        read_edge_file(empty)


def _random_follows(n: int = 300, m: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, m)
    dst = (rng.pareto(1.2, m) * 5).astype(int) % n
    keep = src != dst
    frame = pd.DataFrame({"src": [f"u{x}" for x in src[keep]], "dst": [f"u{x}" for x in dst[keep]]})
    return frame.drop_duplicates().reset_index(drop=True)


def test_the_store_reads_like_its_export(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    follows = _random_follows()
    with Store(url) as store, store.writer() as writer:
        writer.follows(follows, directed=True)
    from_store = read_graph(GraphSource(None, database_url=url))
    path = tmp_path / "f.parquet"
    follows.to_parquet(path)
    from_file = read_edge_file(path)
    assert list(from_store.users.ids) == list(from_file.users.ids)
    assert (from_store.csr() != from_file.csr()).nnz == 0


@pytest.mark.spark
def test_spark_reads_the_store_over_jdbc(spark, store_url, tmp_path):  # noqa: F811
    follows = _random_follows()
    with Store(store_url) as store, store.writer() as writer:
        writer.follows(follows, directed=True)
    request = CandidatesRequest(
        job="resource_allocation",
        engine="spark",
        source=GraphSource(None, database_url=store_url),
        output=str(tmp_path / "spark.parquet"),
        k=10,
    )
    if store_url.startswith("sqlite"):
        with pytest.raises(ConfigError, match="JDBC"):
            run_candidates(request, spark=spark)
        return
    from recgraph.jobs.candidates.spark import jdbc_jars

    if not jdbc_jars():
        pytest.skip("no JDBC driver jar (apt-get install libpostgresql-jdbc-java libmariadb-java)")
    run_candidates(request, spark=spark)
    local = CandidatesRequest(
        job="resource_allocation",
        source=GraphSource(None, database_url=store_url),
        output=str(tmp_path / "local.parquet"),
        k=10,
    )
    run_candidates(local)
    expected = read_candidates(tmp_path / "local.parquet")
    assert len(expected) > 1000
    assert_same_lists(expected, read_candidates(tmp_path / "spark.parquet"), 10, rel=1e-9)


def test_a_blank_id_in_a_csv_names_its_line(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("src,dst\na,b\n ,c\n")
    with pytest.raises(InputError, match="e.csv, line 3, field 'src'"):
        read_edge_file(path)
