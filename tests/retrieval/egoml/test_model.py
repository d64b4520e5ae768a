"""EGOML as a retriever: conformance for both variants, A/B algebra, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recgraph.data.interactions import Interactions, Kind
from recgraph.retrieval import Retriever, create_retriever
from recgraph.retrieval.egoml.model import EgoML, PairSoftmaxObjective
from tests.retrieval.conformance import RetrieverConformance
from tests.retrieval.egoml.test_labels import growing_graph

FAST = {"num_boost_round": 5, "negatives_per_user": 10, "min_data_in_leaf": 2, "num_leaves": 4}


class TestEgoMLAB(RetrieverConformance):
    model_name = "egoml"
    params = {**FAST, "variant": "ab"}


class TestEgoMLExact(RetrieverConformance):
    model_name = "egoml"
    params = {**FAST, "variant": "exact"}


class TestEgoMLLambdarank(RetrieverConformance):
    model_name = "egoml"
    params = {**FAST, "variant": "ab", "objective": "lambdarank", "fallback": "none"}


@pytest.fixture(scope="module", params=["ab", "exact"])
def trained(request) -> tuple[EgoML, Interactions]:
    data = growing_graph(directed=True, seed=11, n=60, rows=900)
    model = EgoML(variant=request.param, num_boost_round=20, min_data_in_leaf=3, num_leaves=7)
    return model.fit(data), data


def test_it_learned_something(trained) -> None:
    model, _ = trained
    assert model.training_["trained"] and model.training_["positive_pairs"] > 0
    assert "temporal labels" in model.training_["labels"]
    keys = {"ab": ["a", "b"], "exact": ["exact"]}[model.config.variant]
    assert sorted(model.boosters_) == keys
    if model.config.variant == "exact":
        assert "pair.common_in_ego" in model.feature_names_["exact"]
    else:
        assert all(not n.startswith(("v.", "pair.")) for n in model.feature_names_["a"])
        assert all(not n.startswith(("u.", "pair.")) for n in model.feature_names_["b"])


def test_ab_scores_are_dot_products_of_stored_vectors(trained) -> None:
    model, data = trained
    if model.config.variant != "ab":
        pytest.skip("vectors exist for the A/B variant")
    x, y = model.vectors()
    graph = model.graph_
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.n_users, 200)
    targets = rng.integers(0, data.n_users, 200)
    # include pairs where v follows u (scored by v as its own centre)
    follows_back = np.flatnonzero(np.asarray(data.adjacency("in")[users].sum(axis=1)).ravel() > 0)[
        :20
    ]
    targets[follows_back] = [data.adjacency("in")[users[i]].indices[0] for i in follows_back]
    assert model.y_self_ is not None
    # E(u, v) = <x_u, y_v> = sum over common neighbours c of exp(a_c(u) + b_c(v))
    tables = model._serving_tables()
    for u, v, score in zip(users, targets, model.score_pairs(users, targets), strict=True):
        dense = (x[u].toarray() @ y[v].toarray().T).item()
        assert score == pytest.approx(dense, rel=1e-9)
        expected = 0.0
        neighbours_u = set(graph.indices[graph.indptr[u] : graph.indptr[u + 1]].tolist())
        neighbours_v = set(graph.indices[graph.indptr[v] : graph.indptr[v + 1]].tolist())
        # (centre c, v's row in the member table): common neighbours, then v as a centre
        voters = [
            (c, graph.edge_ids(np.array([c]), np.array([v]))[0])
            for c in neighbours_u & neighbours_v
        ]
        if v in neighbours_u:
            voters.append((v, graph.n_edges + v))
        for c, row_v in voters:
            e_cu = graph.edge_ids(np.array([c]), np.array([u]))[0]
            a = model.boosters_["a"].predict(
                tables.side(np.array([c]), np.array([e_cu])), raw_score=True
            )
            b = model.boosters_["b"].predict(
                tables.side(np.array([c]), np.array([row_v])), raw_score=True
            )
            expected += float(np.exp(a[0] + b[0]))
        assert score == pytest.approx(expected, rel=1e-6)
    # and recommend ranks by the same numbers
    rows = model.score_rows(users[:5]).toarray()
    np.testing.assert_allclose(
        rows[np.arange(5), targets[:5]], model.score_pairs(users[:5], targets[:5]), rtol=1e-9
    )


def test_exact_pair_scores_match_rows(trained) -> None:
    model, data = trained
    users = np.arange(10)
    rows = model.score_rows(users).toarray()
    targets = np.argmax(rows, axis=1)
    np.testing.assert_allclose(model.score_pairs(users, targets), rows[users, targets], rtol=1e-6)
    # a pair without a common neighbour scores 0
    graph = model.graph_
    adjacency = graph.adjacency()
    two_hop = (adjacency @ adjacency).toarray()
    u, v = map(int, np.argwhere(two_hop == 0)[0])
    assert model.score_pairs([u], [v])[0] == 0.0


def test_recommend_ranks_by_e(trained) -> None:
    model, data = trained
    users = np.arange(8)
    ids, scores = model.recommend(users, k=5)
    seen = data.seen()
    for row, u in enumerate(users):
        scored = ids[row][scores[row] > 0]
        e = model.score_pairs(np.full(len(scored), u), scored)
        np.testing.assert_allclose(e, scores[row][scores[row] > 0], rtol=1e-5)
        assert not set(scored.tolist()) & set(seen[u].indices.tolist())


def test_fallback_orders_unscored_by_degree(trained) -> None:
    model, data = trained
    k = data.n_users
    ids, scores = model.recommend([0], k=k)
    valid = ids[0] >= 0
    zero = ids[0][valid & (scores[0] == 0)]
    degree = model.graph_.degree[zero]
    assert (np.diff(degree) <= 0).all()
    none = EgoML(model.config.model_dump() | {"fallback": "none"})
    none.__dict__.update({k_: v for k_, v in model.__dict__.items() if k_ != "config"})
    ids2, scores2 = none.recommend([0], k=k)
    zero2 = ids2[0][(ids2[0] >= 0) & (scores2[0] == 0)]
    assert (np.diff(zero2) > 0).all()  # id order without the fallback
    assert sorted(zero2.tolist()) == sorted(zero.tolist())


def test_save_load_keeps_boosters_as_text(trained, tmp_path) -> None:
    model, data = trained
    model.save(tmp_path / "m")
    loaded = Retriever.load(tmp_path / "m")
    users = np.arange(data.n_users)
    a_ids, a_scores = model.recommend(users, k=6)
    b_ids, b_scores = loaded.recommend(users, k=6)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-6)
    with np.load(tmp_path / "m" / "state.npz", allow_pickle=False) as state:
        key = "state.booster.a" if model.config.variant == "ab" else "state.booster.exact"
        text = bytes(state[key]).decode()
    assert text.startswith("tree")
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    assert manifest["training"]["trained"] and manifest["feature_names"]
    assert loaded.training_ == model.training_


def test_score_pair_by_external_id(trained) -> None:
    model, _ = trained
    u, v = model.users.ids[3], model.users.ids[7]
    assert model.score_pair(u, v) == pytest.approx(model.score_pairs([3], [7])[0])
    with pytest.raises(KeyError):
        model.score_pair("no such user", v)


def test_friends_without_time_trains_on_a_holdout(caplog) -> None:
    data = growing_graph(directed=False, seed=4, n=50, rows=600)
    static = Interactions.from_indices(
        data.src, data.dst, n_users=50, one_sided=True, directed=False
    )
    with caplog.at_level("WARNING", logger="recgraph.egoml"):
        model = create_retriever("egoml", {**FAST, "variant": "ab"}).fit(static)
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "edge holdout" in record.getMessage()
    assert model.training_["label_method"] == "edge_holdout"
    assert "no timestamps" in model.training_["labels"]


def test_items_graph_is_refused() -> None:
    from recgraph.errors import ConfigError
    from tests.retrieval.conformance import two_cliques

    with pytest.raises(ConfigError, match="does not handle items"):
        EgoML().fit(two_cliques("items"))


def test_pair_softmax_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    # 2 groups; pairs 0-2 in group 0 (pair 1 positive), pairs 3-4 in group 1 (pair 4 positive)
    pair_of_row = np.array([0, 0, 1, 1, 1, 2, 3, 4, 4])
    group_of_row = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    labels = np.array([0, 1, 0, 0, 1])
    objective = PairSoftmaxObjective(pair_of_row, group_of_row, labels)
    raw = rng.normal(size=len(pair_of_row))
    grad, hess = objective(raw)
    step = 1e-6
    for i in range(len(raw)):
        bumped = raw.copy()
        bumped[i] += step
        numeric = (
            (objective.loss(bumped) - objective.loss(raw)) / step * 2
        )  # loss is a mean over 2 groups
        assert grad[i] == pytest.approx(numeric, abs=1e-4)
    assert (hess > 0).all()


def test_no_timestamps_message_is_one_clean_line(tmp_path) -> None:
    """What a user of ``recgraph evaluate`` sees: one line, no Python warning or source path."""
    import os
    import subprocess
    import sys

    rows = ["src,dst"] + [f"{a},{b}" for a in range(12) for b in range(a + 1, 12) if (a + b) % 3]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("src,dst\n0,3\n1,4\n")
    script = (
        "import sys; from recgraph.cli.main import main; "
        f"sys.exit(main(['evaluate', '--train', {str(tmp_path / 'train.csv')!r}, "
        f"'--test', {str(tmp_path / 'test.csv')!r}, '--kind', 'friends', '--model', 'egoml', "
        + ", ".join(f"'--param', 'egoml.{k}={v}'" for k, v in FAST.items())
        + "]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "timestamps" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("egoml: the training data has no timestamps")
    assert "Warning" not in done.stderr and ".py:" not in done.stderr


@pytest.mark.parametrize("variant", ["ab", "exact"])
def test_a_graph_too_small_to_learn_from_trains_and_saves(variant, tmp_path, caplog):
    # four accounts: LightGBM finds no feature it can split on (it used to raise
    # "num_features > 0" and take the whole pipeline's training down with it)
    data = Interactions.from_arrays(
        ["a", "b", "c", "a", "d"], ["b", "c", "a", "c", "a"], one_sided=True, kind=Kind.FOLLOW
    )
    model = create_retriever("egoml", {"variant": variant}).fit(data)
    assert "no feature can split" in caplog.text
    ids, scores = model.recommend([0, 1, 2, 3], k=2)
    assert ids.shape == (4, 2)
    assert all(ids[row, 0] != row for row in range(4))  # never the user itself
    loaded = Retriever.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.recommend([0, 1, 2, 3], k=2)[0], ids)
