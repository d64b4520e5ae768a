"""PPR's ``sweep_budget``: recall@20 against exact PPR, and CPU per user, by budget.

Per graph: 10% of the edges held out at random (seed 0), the rest trained on;
recall@20 of the held-out edges for 300 users (seed 1), for exact PPR (power
iteration, 50 steps) and for the local push with each sweep budget (``0``: no
bound). The shared graphs as in ``tests/retrieval/test_walk_recall.py``, and
``--store`` adds a store's follow graph (e.g. the synthetic heavy-tailed 10^6
follows of ``benchmarks/scale.py``), where walking either way made the
unbounded sweep gather 10^5 hub edges per user.

Run: ``python benchmarks/ppr_sweep_budget.py [--store sqlite:///...]``.
Prints a table and saves ``benchmarks/results/ppr_sweep_budget.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import REPO, datasets_folder, save_results
from recgraph.data.interactions import Interactions
from recgraph.data.readers import read_edge_list
from recgraph.data.store import Store
from recgraph.evaluation.metrics import capped_recall
from recgraph.retrieval import create_retriever

GRAPHS = {  # path, directed, timestamps
    "wiki-vote": ("snap-wiki-vote/wiki-Vote.txt", True, False),
    "ego-facebook": ("snap-ego-facebook/facebook_combined.txt", False, False),
    "college-msg": ("snap-college-msg/CollegeMsg.txt", True, True),
}
BUDGETS = (0, 50_000, 20_000, 10_000, 5_000)
EXACT = {"method": "power", "iterations": 50, "tol": 1e-7}


def recall_at(model, held: Interactions, users: np.ndarray, k: int = 20) -> float:
    ids, _ = model.recommend(users, k=k)
    return capped_recall(ids, held.csr("binary")[users], k)


def measure(graph: Interactions) -> dict:
    test = np.random.default_rng(0).random(len(graph)) < 0.1
    train, held = graph.subset(np.flatnonzero(~test)), graph.subset(np.flatnonzero(test))
    users = np.unique(held.src)
    users = np.random.default_rng(1).choice(users, size=min(300, len(users)), replace=False)
    exact = recall_at(create_retriever("ppr", EXACT).fit(train), held, users)
    out = {"exact_recall@20": round(exact, 4), "budgets": {}}
    for budget in BUDGETS:
        model = create_retriever("ppr", {"sweep_budget": budget}).fit(train)
        cpu = time.process_time()
        value = recall_at(model, held, users)
        out["budgets"][str(budget)] = {
            "recall@20": round(value, 4),
            "over_exact": round(value / exact, 4),
            "cpu_ms_per_user": round((time.process_time() - cpu) / len(users) * 1000, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="also a store's follow graph (URL)")
    args = parser.parse_args()
    graphs = {}
    for name, (path, directed, timestamps) in GRAPHS.items():
        graphs[name] = lambda p=path, d=directed, t=timestamps: read_edge_list(
            datasets_folder() / p, directed=d, timestamps=t
        ).dedupe()
    if args.store:
        graphs["store"] = lambda: Store(args.store).follows_graph()
    results = {}
    print(f"{'graph':14s} {'budget':>7s} {'x exact':>8s} {'CPU ms/user':>12s}")
    for name, load in graphs.items():
        results[name] = measure(load())
        for budget, row in results[name]["budgets"].items():
            print(
                f"{name:14s} {budget:>7s} {row['over_exact']:8.3f} {row['cpu_ms_per_user']:12.1f}",
                flush=True,
            )
    out = REPO / "benchmarks" / "results" / "ppr_sweep_budget.json"
    save_results(out, "ppr_sweep_budget", store=args.store, graphs=results)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
