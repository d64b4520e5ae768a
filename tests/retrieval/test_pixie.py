import numpy as np
import pytest

from recgraph.retrieval import create_retriever
from tests.retrieval.conformance import RetrieverConformance


class TestPixie(RetrieverConformance):
    model_name = "pixie"
    params = {"steps": 2000}


def liked_items(n_users: int = 60, n_items: int = 80, seed: int = 0):
    from recgraph.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    pairs = np.unique(rng.integers(0, [n_users, n_items], size=(900, 2)), axis=0)
    times = rng.integers(0, 100 * 86_400, size=len(pairs))
    return Interactions.from_indices(
        pairs[:, 0], pairs[:, 1], n_users=n_users, n_items=n_items, timestamp=times
    )


def test_query_items_are_the_latest_with_decaying_weights() -> None:
    graph = liked_items()
    model = create_retriever("pixie", {"query_items": 5, "half_life_days": 10}).fit(graph)
    for user in (0, 7):
        mine = graph.src == user
        latest = graph.dst[mine][np.argsort(-graph.timestamp[mine], kind="stable")][:5]
        items, weights = model.query(user)
        assert sorted(items.tolist()) == sorted(latest.tolist())
        assert weights[0] == 1.0 and (np.diff(weights) <= 0).all()


def test_scores_are_boosted_visit_counts() -> None:
    graph = liked_items()
    model = create_retriever("pixie", {"steps": 3000, "early_candidates": 0}).fit(graph)
    items, _, visits = model.walk(3)
    roots = {}
    total = 0.0
    for nodes, counts in visits:
        total += counts.sum()
        for node, count in zip(nodes.tolist(), counts.tolist(), strict=True):
            roots[node] = roots.get(node, 0.0) + np.sqrt(count)
    nodes, scores = model.user_row(3)
    np.testing.assert_allclose(scores, [roots[n] ** 2 for n in nodes.tolist()])
    assert total >= 3000 * 0.5, "without early stopping the budget is walked"
    plain = create_retriever("pixie", {"steps": 3000, "early_candidates": 0, "boost": False})
    nodes, scores = plain.fit(graph).user_row(3)
    assert scores.sum() == pytest.approx(total)


def test_early_stopping_walks_less() -> None:
    graph = liked_items()
    full = create_retriever("pixie", {"steps": 20_000, "early_candidates": 0}).fit(graph)
    early = create_retriever(
        "pixie", {"steps": 20_000, "early_candidates": 10, "visit_threshold": 2}
    ).fit(graph)
    walked = sum(c.sum() for _, c in full.walk(4)[2])
    stopped = sum(c.sum() for _, c in early.walk(4)[2])
    assert stopped < walked / 2


def test_a_like_after_training_becomes_the_newest_query_item() -> None:
    graph = liked_items()
    model = create_retriever("pixie", {"query_items": 4}).fit(graph)
    new_item = next(i for i in range(graph.n_items) if i not in graph.dst[graph.src == 2])
    assert model.observe([str(graph.users.ids[2])], [str(graph.items.ids[new_item])]) == 1
    items, weights = model.query(2)
    assert items[0] == new_item and weights[0] == 1.0 and len(items) == 4
    ids, _ = model.recommend([2], k=graph.n_items)
    assert new_item not in ids[0].tolist()


def test_explanations_are_the_query_items_that_reached_the_candidate() -> None:
    graph = liked_items()
    model = create_retriever("pixie").fit(graph)
    ids, scores = model.recommend([5], k=3)
    query, _ = model.query(5)
    for e, score in zip(model.explain(5, ids[0], top=None), scores[0], strict=True):
        assert set(e.via.tolist()) <= set(query.tolist())
        assert e.contributions.sum() == pytest.approx(float(score), rel=1e-4)


def test_a_walk_that_fails_gives_both_scratch_slots_back(monkeypatch) -> None:
    from recgraph.retrieval.ppr import SCRATCH_ARRAYS

    graph = liked_items()
    model = create_retriever("pixie", {"early_candidates": 10, "visit_threshold": 2}).fit(graph)
    expected = model.walk(4)[2]
    import recgraph.retrieval.pixie_kernels as kernels

    def broken(*args):
        visits_of, flags = args[-2:]
        visits_of[:3], flags[:3] = 1.0, 1  # the walk had begun counting
        raise RuntimeError("a step failed")

    monkeypatch.setattr(kernels, "pixie_walk", broken)
    for _ in range(SCRATCH_ARRAYS + 1):  # more failures than slots
        with pytest.raises(RuntimeError, match="a step failed"):
            model.walk(4)  # walk itself: user_row keeps a walk it has done
    monkeypatch.undo()
    for dtype in (np.float64, np.uint8):
        pool, _, slots = model._scratch_pool(dtype)
        assert slots._value == SCRATCH_ARRAYS  # every slot free: no later walk waits forever
        assert all(not scratch.any() for scratch in pool)  # and every array clean
    for (nodes, counts), (again, recount) in zip(expected, model.walk(4)[2], strict=True):
        np.testing.assert_array_equal(nodes, again)
        np.testing.assert_array_equal(counts, recount)


def test_a_walk_without_early_stopping_takes_no_scratch_array() -> None:
    model = create_retriever("pixie", {"early_candidates": 0}).fit(liked_items())
    assert model.walk(4)[2]
    assert model._scratch_pool(np.float64)[0] == []
    assert model._scratch_pool(np.uint8)[0] == []
