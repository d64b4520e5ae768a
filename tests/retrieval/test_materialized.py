"""The materialized retriever: lists published by a batch job, served from the store or Redis."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.jobs.candidates.graph_input import GraphSource
from recgraph.jobs.candidates.publish import PublishTarget, publish_candidates
from recgraph.jobs.candidates.runner import CandidatesRequest, run_candidates
from recgraph.jobs.candidates.two_hop import two_hop_model
from recgraph.retrieval import create_retriever
from recgraph.retrieval.materialized import (
    RedisCandidateLists,
    decode_list,
    encode_list,
)
from tests.jobs.candidates.lists import real_graph, redis_or_skip, write_edges


def test_payloads_round_trip():
    text = encode_list(["b", "c"], [2.5, 1.0], [["adamic_adar"], ["adamic_adar", "egoml"]])
    candidates, scores, sources = decode_list(text)
    assert candidates == ["b", "c"]
    np.testing.assert_array_equal(scores, [2.5, 1.0])
    assert sources == [["adamic_adar"], ["adamic_adar", "egoml"]]
    with pytest.raises(ValueError):
        decode_list('{"f": 99}')


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """College-msg Adamic-Adar lists from the local engine, and the graph."""
    folder = tmp_path_factory.mktemp("materialized")
    graph = real_graph("college-msg")
    edges = write_edges(graph, folder / "follows.parquet")
    output = folder / "aa.parquet"
    run_candidates(
        CandidatesRequest(
            job="adamic_adar", source=GraphSource(str(edges)), output=str(output), k=15
        )
    )
    return graph, output


def _backend_params(backend: str, tmp_path) -> dict:
    if backend == "store":
        return {"backend": "store", "database_url": f"sqlite:///{tmp_path / 'store.db'}"}
    redis_or_skip()
    return {"backend": "redis", "prefix": f"test-materialized-{uuid.uuid4().hex}"}


@pytest.mark.parametrize("backend", ["store", pytest.param("redis", marks=pytest.mark.redis)])
def test_served_lists_are_the_jobs_lists_and_equal_the_models(published, tmp_path, backend):
    graph, output = published
    params = {"source": "aa", **_backend_params(backend, tmp_path)}
    target = PublishTarget(
        backend=params["backend"],
        name="aa",
        database_url=params.get("database_url"),
        prefix=params.get("prefix", "recgraph:candidates"),
    )
    result = publish_candidates(output, target)
    assert result.users > 1000
    retriever = create_retriever("materialized", params).fit(graph)
    assert retriever.seen_matrix().nnz == 0  # no graph kept in the serving process
    model = two_hop_model("adamic_adar").fit(graph)
    users = np.arange(0, graph.n_users, 7)
    ids, scores = retriever.recommend(users, 10)
    expected_ids, expected_scores = model.recommend(users, 10)
    scored = expected_scores > 0
    np.testing.assert_allclose(scores[scored], expected_scores[scored], rtol=2e-6)
    # the same accounts where no tie makes the order arbitrary
    tied = np.zeros_like(scored)
    same = np.isclose(expected_scores[:, 1:], expected_scores[:, :-1], rtol=2e-6)
    tied[:, 1:] |= same
    tied[:, :-1] |= same
    untied = scored & ~tied
    np.testing.assert_array_equal(ids[untied], expected_ids[untied])
    assert (ids[~scored] == -1).all()
    if backend == "redis":
        RedisCandidateLists("redis://127.0.0.1:6379/0", params["prefix"], "aa").delete_all()


def test_exclude_and_candidates_are_honoured_and_the_user_never_comes_back(published, tmp_path):
    graph, output = published
    params = {"source": "aa", **_backend_params("store", tmp_path)}
    publish_candidates(output, PublishTarget("store", "aa", database_url=params["database_url"]))
    retriever = create_retriever("materialized", params).fit(graph)
    users = np.arange(50)
    ids, _ = retriever.recommend(users, 5)
    first = ids[:, 0]
    has = first >= 0
    excluded = [[int(x)] if x >= 0 else [] for x in first]
    after, _ = retriever.recommend(users, 5, exclude=excluded)
    assert not np.any(after[has] == first[has, None])
    np.testing.assert_array_equal(after[has, :4], ids[has, 1:5])
    allowed = np.zeros(graph.n_users, dtype=bool)
    allowed[ids[has, 1]] = True
    only, _ = retriever.recommend(users, 5, candidates=allowed)
    assert np.all(allowed[only[only >= 0]])
    assert not np.any(ids == users[:, None])


def test_a_new_version_replaces_the_old_at_once_and_old_rows_are_dropped(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    graph = Interactions.from_arrays(["a", "b"], ["b", "c"], one_sided=True)
    retriever = create_retriever(
        "materialized", {"source": "x", "backend": "store", "database_url": url}
    ).fit(graph)
    lists = retriever.lists()
    assert retriever.recommend([0], 2)[0].tolist() == [[-1, -1]]
    for round_, candidate in enumerate(["c", "b", "c"], start=1):
        version = lists.new_version()
        lists.write(version, [("a", encode_list([candidate], [1.0], [["job"]]))])
        assert version == round_
        lists.switch(version)
        assert retriever.recommend([0], 1)[0].tolist() == [[graph.users.index_of(candidate)]]
    versions = {
        row[0]
        for row in lists.store.engine.connect().exec_driver_sql(
            "select distinct version from candidate_lists"
        )
    }
    assert versions == {2, 3}


def test_saved_and_loaded_it_keeps_only_the_id_maps(tmp_path):
    graph = real_graph("college-msg")
    retriever = create_retriever("materialized", {"source": "aa"}).fit(graph)
    retriever.save(tmp_path / "m")
    size = sum(p.stat().st_size for p in (tmp_path / "m").iterdir())
    loaded = type(retriever).load(tmp_path / "m")
    assert loaded.n_users == graph.n_users and loaded.config.source == "aa"
    assert size < 200_000


def test_a_pipeline_serves_the_published_lists_and_excludes_what_came_since(published, tmp_path):
    from recgraph.pipeline.pipeline import Pipeline

    graph, output = published
    url = f"sqlite:///{tmp_path / 'lists.db'}"
    publish_candidates(output, PublishTarget("store", "aa", database_url=url))
    pipeline = Pipeline(
        {
            "who_to_follow": {
                "retrievers": [
                    {"name": "materialized", "params": {"source": "aa", "database_url": url}}
                ],
                "fallback": ["popular"],
                "k": 5,
            },
            "feed": {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
        }
    ).fit(follows=graph)
    model = two_hop_model("adamic_adar").fit(graph)
    user = str(graph.users.ids[0])
    ids, scores = model.recommend([0], 5)
    expected = [str(x) for x in graph.users.external(ids[0][scores[0] > 0])]
    answer = pipeline.suggest_accounts(user, 5)
    served = [r.id for r in answer.results]
    assert served[: len(expected)] == expected or sorted(served[:2]) == sorted(expected[:2])
    assert all(r.retrievers == ("materialized",) for r in answer.results[: len(expected)])
    # a follow written since the lists were made is excluded at request time
    later = pipeline.suggest_accounts(user, 5, exclude=[served[0]])
    assert served[0] not in [r.id for r in later.results]
