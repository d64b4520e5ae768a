"""SALSA's circle budget (the circle PPR's ``sweep_budget``): recall@20 against SALSA on
the exact circle, the lists' change, and CPU per user, by budget.

As ``benchmarks/ppr_sweep_budget.py`` (whose graphs, split and recall it uses):
per graph 10% of the edges held out at random (seed 0) as validation, the
rest trained on; recall@20 of the held-out edges for 300 users (seed 1), for
SALSA on the exact circle (``circle_method="power"``) and on the pushed circle
with each sweep budget; ``same_top20`` is the share of the default budget's
top 20 a budget keeps (1.0: the same accounts). ``--synthetic FOLLOWS`` adds
``benchmarks/scale.py``'s heavy-tailed generated follows (where the 20,000
budget binds: a 10^7 graph's circle sweep gathers ~17,000 edges a request).

Run: ``python benchmarks/salsa_budget.py --synthetic 1e6 --out NAME``.
Saves ``benchmarks/results/NAME.json`` (default ``salsa_budget``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import REPO, datasets_folder, save_results
from ppr_sweep_budget import GRAPHS, recall_at
from recgraph.data.interactions import Interactions
from recgraph.data.readers import read_edge_list
from recgraph.retrieval import create_retriever

BUDGETS = (20_000, 10_000, 5_000, 2_000)
DEFAULT = 20_000


def synthetic(follows: int) -> Interactions:
    """``scale.generated_chunks``' heavy-tailed follows as a directed graph."""
    from scale import generated_chunks

    chunks, _ = generated_chunks(follows)
    src, dst = (np.concatenate(part) for part in zip(*chunks, strict=True))
    return Interactions.from_arrays(src.astype(str), dst.astype(str), one_sided=True)


def measure(graph: Interactions, budgets: list[int]) -> dict:
    test = np.random.default_rng(0).random(len(graph)) < 0.1
    train, held = graph.subset(np.flatnonzero(~test)), graph.subset(np.flatnonzero(test))
    users = np.unique(held.src)
    users = np.random.default_rng(1).choice(users, size=min(300, len(users)), replace=False)
    exact = recall_at(create_retriever("salsa", {"circle_method": "power"}).fit(train), held, users)
    out: dict = {"exact_recall@20": round(exact, 4), "budgets": {}}
    lists = {}
    for budget in budgets:
        model = create_retriever("salsa", {"sweep_budget": budget}).fit(train)
        cpu = time.process_time()
        value = recall_at(model, held, users)
        spent = time.process_time() - cpu
        lists[budget], _ = model.recommend(users, k=20)
        out["budgets"][str(budget)] = {
            "recall@20": round(value, 4),
            "over_exact": round(value / exact, 4),
            "cpu_ms_per_user": round(spent / len(users) * 1000, 2),
        }
    if DEFAULT in lists:
        for budget in budgets:
            kept = [
                len(np.intersect1d(a[a >= 0], b[b >= 0])) / max((b >= 0).sum(), 1)
                for a, b in zip(lists[budget], lists[DEFAULT], strict=True)
            ]
            out["budgets"][str(budget)]["same_top20"] = round(float(np.mean(kept)), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--synthetic", type=float, default=0, help="generated follows (0: none)")
    parser.add_argument("--only-synthetic", action="store_true")
    parser.add_argument("--out", default="salsa_budget")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    graphs = {}
    if not args.only_synthetic:
        for name, (path, directed, timestamps) in GRAPHS.items():
            graphs[name] = lambda p=path, d=directed, t=timestamps: read_edge_list(
                datasets_folder() / p, directed=d, timestamps=t
            ).dedupe()
    if args.synthetic:
        graphs[f"synthetic-{int(args.synthetic)}"] = lambda: synthetic(int(args.synthetic))
    results = {}
    print(f"{'graph':18s} {'budget':>7s} {'x exact':>8s} {'same top20':>10s} {'CPU ms/user':>12s}")
    for name, load in graphs.items():
        results[name] = measure(load(), budgets)
        for budget, row in results[name]["budgets"].items():
            print(
                f"{name:18s} {budget:>7s} {row['over_exact']:8.3f} "
                f"{row.get('same_top20', float('nan')):10.3f} {row['cpu_ms_per_user']:12.2f}",
                flush=True,
            )
    out = REPO / "benchmarks" / "results" / f"{args.out}.json"
    save_results(out, "salsa_budget", budgets=budgets, graphs=results)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
