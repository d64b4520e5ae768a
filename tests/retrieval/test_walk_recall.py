"""The budgeted walks find what the exact computations find, on the shared graphs.

Per graph: 10% of the edges held out at random, the rest trained on;
recall@20 of the held-out edges for 300 users (fixed seeds), with the
default (budgeted) models against the exact ones: personalised PageRank by
local push against power iteration, and SALSA on the pushed circle against
SALSA on the exact circle with 10 rounds (pinned: the default's rounds
may change, the reference must not). Target: at least 0.98x the exact recall.
"""

import numpy as np
import pytest

from recgraph.data.interactions import Interactions
from recgraph.evaluation.metrics import capped_recall
from recgraph.retrieval import create_retriever
from tests.datasets import GRAPHS, edge_list

PAIRS = {
    "ppr": ({"method": "power", "iterations": 50, "tol": 1e-7}, {}),
    "salsa": ({"circle_method": "power", "iterations": 10}, {}),
}


def load(name: str) -> Interactions:
    return edge_list(name).dedupe()


def recall_at(model, held: Interactions, users: np.ndarray, k: int = 20) -> float:
    ids, _ = model.recommend(users, k=k)
    return capped_recall(ids, held.csr("binary")[users], k)


@pytest.mark.slow
@pytest.mark.datasets
@pytest.mark.parametrize("model", sorted(PAIRS))
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_budgeted_recall_is_within_two_percent_of_exact(name: str, model: str) -> None:
    graph = load(name)
    rng = np.random.default_rng(0)
    test = rng.random(len(graph)) < 0.1
    train, held = graph.subset(np.flatnonzero(~test)), graph.subset(np.flatnonzero(test))
    users = np.unique(held.src)
    users = np.random.default_rng(1).choice(users, size=min(300, len(users)), replace=False)
    exact_params, budget_params = PAIRS[model]
    exact = recall_at(create_retriever(model, exact_params).fit(train), held, users)
    budgeted = recall_at(create_retriever(model, budget_params).fit(train), held, users)
    assert exact > 0.01, "the exact model finds something to compare with"
    assert budgeted >= 0.98 * exact, f"{name} {model}: {budgeted:.4f} vs exact {exact:.4f}"
