"""PPR's ``sweep_budget``: recall@20 against exact PPR, the lists' change, and CPU per user,
by budget, on VALIDATION carved from train.

Split (the protocol of ``benchmarks/graph_defaults.py``: outer test first, validation
from its train part, by ``common.validation_of``): per shared graph the outer split
is the one every graph benchmark scores, ``common.SNAP_CASES`` (wiki-Vote and
ego-Facebook: ``edge_holdout`` 10%, seed 0; CollegeMsg: ``temporal_pairs`` 20%),
set aside and never read here; validation is
:func:`recgraph.data.splits.validation_split` of its train part (same method,
20%, seed 1), the rest fitted on. ``--synthetic FOLLOWS`` adds
``benchmarks/scale.py``'s heavy-tailed generated follows, which no benchmark
splits otherwise: there 10% of the edges at random (seed 0) are the outer test,
10% of the rest at random (seed 2) validation, where walking either way made the
unbounded sweep gather 10^5 hub edges per user (the budget binds). Recall@20 of
the validation edges for 300 of their users (seed 3; ``--users``), for exact PPR
(``EXACT``: power iteration, 50 steps) and for the local push with each sweep
budget (``0``: no bound); ``same_top20`` is the share of the unbounded sweep's
top 20 a budget keeps. Each setting answers a few users once before its CPU is
timed (the first pays the kernels' loading).

Run: ``python benchmarks/ppr_sweep_budget.py --synthetic 1e6 --out NAME``.
Prints a table and saves ``benchmarks/results/NAME.json`` (default ``ppr_sweep_budget``).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from common import REPO, SNAP_CASES, case_validation, outer_split_of, save_results
from recgraph.data.interactions import Interactions
from recgraph.evaluation.metrics import capped_recall
from recgraph.retrieval import create_retriever

BUDGETS = (0, 50_000, 20_000, 10_000, 5_000)
EXACT = {"method": "power", "iterations": 50, "tol": 1e-7}
OUTER_SEED, VALIDATION_SEED, USERS_SEED = 0, 2, 3


def recall_at(model, held: Interactions, users: np.ndarray, k: int = 20) -> float:
    ids, _ = model.recommend(users, k=k)
    return capped_recall(ids, held.csr("binary")[users], k)


def synthetic(follows: int) -> Interactions:
    """``scale.generated_chunks``' heavy-tailed follows as a directed graph."""
    from scale import generated_chunks

    chunks, _ = generated_chunks(follows)
    src, dst = (np.concatenate(part) for part in zip(*chunks, strict=True))
    return Interactions.from_arrays(src.astype(str), dst.astype(str), one_sided=True)


def random_validation_of(graph: Interactions) -> tuple[Interactions, Interactions]:
    """``(fit, validation)`` of the generated follows: a random 10% outer test dropped,
    10% of the rest at random as validation."""
    outer_test = np.random.default_rng(OUTER_SEED).random(len(graph)) < 0.1
    train = graph.subset(np.flatnonzero(~outer_test))
    carved = np.random.default_rng(VALIDATION_SEED).random(len(train)) < 0.1
    return train.subset(np.flatnonzero(~carved)), train.subset(np.flatnonzero(carved))


def validation_users(held: Interactions, count: int = 300) -> np.ndarray:
    """``count`` of the validation edges' users (seed ``USERS_SEED``)."""
    users = np.unique(held.src)
    return np.random.default_rng(USERS_SEED).choice(
        users, size=min(count, len(users)), replace=False
    )


def same_top20(lists: dict[str, np.ndarray], first: str) -> dict[str, float]:
    """Per setting, the share of the ``first`` setting's top 20 it keeps (1.0: the same)."""
    out = {}
    for label, ids in lists.items():
        kept = [
            len(np.intersect1d(a[a >= 0], b[b >= 0])) / max((b >= 0).sum(), 1)
            for a, b in zip(ids, lists[first], strict=True)
        ]
        out[label] = round(float(np.mean(kept)), 4)
    return out


def graph_loaders(only_synthetic: bool, synthetic_follows: float) -> dict:
    """``{name: load()}``, each ``load`` giving ``(fit, validation)``: the shared graphs'
    (unless ``only_synthetic``) and the generated follows' (``synthetic_follows``, 0: none)."""
    graphs = {}
    if not only_synthetic:
        for name, case in SNAP_CASES.items():
            graphs[name] = lambda c=case: case_validation(c)
    if synthetic_follows:
        graphs[f"synthetic-{int(synthetic_follows)}"] = lambda: random_validation_of(
            synthetic(int(synthetic_follows))
        )
    return graphs


def split_description(users: int) -> dict:
    """The splits, as saved with the figures."""
    outer = {}
    for name, case in SNAP_CASES.items():
        method, fraction, seed = outer_split_of(case)
        outer[name] = f"{method} {fraction:.0%}" + (
            f", seed {seed}" if "--seed" in case["split"] else ""
        )
    return {
        "outer_test": {
            **outer,
            "synthetic": f"10% of edges at random, seed {OUTER_SEED}",
            "read": "never",
        },
        "validation": {
            "shared": "validation_split of the outer train (same method, 20%, seed 1)",
            "synthetic": f"10% of the outer train's edges at random, seed {VALIDATION_SEED}",
        },
        "users": f"{users} validation users, seed {USERS_SEED}",
    }


def compare(
    split: tuple[Interactions, Interactions],
    model: str,
    exact: dict,
    settings: dict[str, dict],
    count: int = 300,
) -> dict:
    """``model`` with each of ``settings`` against its ``exact`` config, fitted on ``split``'s
    first part and scored on its validation: recall@20 (and over the exact one's), CPU per
    user, and the top 20 kept from the first setting's."""
    fit, held = split
    users = validation_users(held, count)
    baseline = recall_at(create_retriever(model, exact).fit(fit), held, users)
    out: dict = {
        "fit_rows": len(fit),
        "validation_rows": len(held),
        "exact_recall@20": round(baseline, 4),
        "settings": {},
    }
    lists = {}
    for label, params in settings.items():
        fitted = create_retriever(model, params).fit(fit)
        fitted.recommend(users[:5], k=20)  # warm-up: kernel loading is not the setting's
        cpu = time.process_time()
        value = recall_at(fitted, held, users)
        spent = time.process_time() - cpu
        lists[label], _ = fitted.recommend(users, k=20)
        out["settings"][label] = {
            "recall@20": round(value, 4),
            "over_exact": round(value / baseline, 4),
            "cpu_ms_per_user": round(spent / len(users) * 1000, 2),
        }
    for label, kept in same_top20(lists, next(iter(settings))).items():
        out["settings"][label]["same_top20"] = kept
    return out


def measure(split: tuple[Interactions, Interactions], budgets: list[int], count: int = 300) -> dict:
    """:func:`compare` of the sweep budgets (the first: the base of ``same_top20``)."""
    out = compare(split, "ppr", EXACT, {str(b): {"sweep_budget": b} for b in budgets}, count)
    out["budgets"] = out.pop("settings")
    return out


def measure_graphs(graphs: dict, measure_one, rows: str) -> dict:
    """``measure_one(split)`` of each graph's validation split, its ``rows`` (setting -> figures)
    printed as one table as they come."""
    print(f"{'graph':18s} {'budget':>7s} {'x exact':>8s} {'same top20':>10s} {'CPU ms/user':>12s}")
    results = {}
    for name, load in graphs.items():
        results[name] = measure_one(load())
        for label, row in results[name][rows].items():
            print(
                f"{name:18s} {label:>7s} {row['over_exact']:8.3f} "
                f"{row.get('same_top20', float('nan')):10.3f} {row['cpu_ms_per_user']:12.2f}",
                flush=True,
            )
    return results


def graph_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The budget scripts' shared options: which graphs, how many users, the output name."""
    parser.add_argument("--synthetic", type=float, default=0, help="generated follows (0: none)")
    parser.add_argument("--only-synthetic", action="store_true")
    parser.add_argument("--users", type=int, default=300, help="validation users a graph")
    parser.add_argument("--out", default=out)


def measure_and_save(
    args: argparse.Namespace, benchmark: str, measure_one, rows: str, exact: dict, **fields
) -> None:
    """:func:`measure_graphs` over the graphs ``args`` asks for, saved as
    ``benchmarks/results/OUT.json`` with the split, the baseline ``exact`` and ``fields``."""
    graphs = graph_loaders(args.only_synthetic, args.synthetic)
    results = measure_graphs(graphs, measure_one, rows)
    out = REPO / "benchmarks" / "results" / f"{args.out}.json"
    save_results(
        out, benchmark, split=split_description(args.users), exact=exact, **fields, graphs=results
    )
    print(f"saved {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="first: the base")
    graph_arguments(parser, "ppr_sweep_budget")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    measure_one = partial(measure, budgets=budgets, count=args.users)
    measure_and_save(args, "ppr_sweep_budget", measure_one, "budgets", EXACT)


if __name__ == "__main__":
    main()
