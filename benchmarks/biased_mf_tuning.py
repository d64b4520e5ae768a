"""biased_mf on MovieLens random 80/20: validation tuning, then one test run (issue 5).

Reproduces the split of ``benchmarks/feeds.py`` exactly (every rating an
implicit like; ``recgraph split --method random_per_user --fraction 0.2
--seed 0``; tuning on ``validation_split(train, "random_per_user",
fraction=0.2, seed=1)``), scores each candidate configuration of
``biased_mf`` on the validation split by nDCG@20, then fits the chosen ones
and EASE (its tuned regularisation from ``benchmarks/results/feeds.json``) on
the whole train file and scores the test file with
:func:`recgraph.evaluation.evaluate` (test only for configurations picked by
validation: the best Adagrad one, what feeds.py had picked before, and the
best ``unobserved_weight`` ones at K=32 and at the default K=13).

Run: ``python benchmarks/biased_mf_tuning.py [--dataset movielens-latest-small]
[--only NAME ...] [--test NAME ...]`` (``--only`` with no names: no
validation). Saves (merges into) ``benchmarks/results/biased_mf_tuning.json``.
Candidates were run a few at a time, two processes side by side, as results
came in; fit seconds are from that shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feeds import as_implicit, datasets_folder, run_cli, write_table  # noqa: E402
from recgraph.data.interactions import Interactions  # noqa: E402
from recgraph.data.movielens import read_movielens  # noqa: E402
from recgraph.data.splits import validation_split  # noqa: E402
from recgraph.evaluation import evaluate  # noqa: E402
from recgraph.retrieval.registry import create_retriever  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "biased_mf_tuning.json"
METHOD = "random_per_user"
#: EASE regularisation as tuned by benchmarks/feeds.py on each validation split.
EASE = {"movielens-100k": 500.0, "movielens-latest-small": 200.0}
OLD = {"factors": 13, "learning_rate": 0.003, "regularization": 0.01}
#: Candidates (name: params). "feeds_best" is what feeds.py chose before.
CANDIDATES: dict[str, dict[str, Any]] = {
    "uniform_n16_w4_e20": {**OLD, "epochs": 20, "negatives": 16, "negative_weight": 4.0},
    "uniform_n4_w1_e40": {**OLD, "epochs": 40, "negatives": 4, "negative_weight": 1.0},
    "uniform_n4_w4_e40": {**OLD, "epochs": 40, "negatives": 4, "negative_weight": 4.0},
}


def add_popularity_candidate(alpha: float, negatives: int, weight: float, epochs: int) -> None:
    """A candidate with popularity-weighted negatives over the old settings."""
    CANDIDATES[f"pop{alpha}_n{negatives}_w{weight:g}_e{epochs}"] = {
        **OLD,
        "epochs": epochs,
        "negatives": negatives,
        "negative_weight": weight,
        "negative_popularity": alpha,
    }


for alpha in (0.25, 0.5, 0.75, 1.0):
    for negatives, weight, epochs in ((4, 1.0, 40), (4, 4.0, 40), (16, 4.0, 20), (8, 2.0, 30)):
        add_popularity_candidate(alpha, negatives, weight, epochs)
for grid_point in (
    (0.1, 16, 4.0, 20),
    (0.25, 32, 2.0, 20),
    (0.25, 16, 8.0, 20),
    (0.375, 16, 4.0, 20),
    (0.25, 16, 4.0, 30),
    (0.25, 32, 4.0, 20),
    (0.25, 16, 4.0, 40),
):
    add_popularity_candidate(*grid_point)
for factors, reg, lr, epochs, negatives, weight in (
    (32, 0.01, 0.003, 20, 16, 4.0),
    (32, 0.03, 0.003, 20, 16, 4.0),
    (64, 0.03, 0.003, 20, 16, 4.0),
    (13, 0.01, 0.003, 20, 32, 2.0),
    (13, 0.01, 0.003, 30, 16, 4.0),
    (13, 0.003, 0.003, 20, 16, 4.0),
    (13, 0.01, 0.01, 20, 16, 4.0),
    (13, 0.01, 0.003, 40, 16, 4.0),
    (13, 0.01, 0.003, 60, 16, 4.0),
    (13, 0.01, 0.003, 40, 16, 8.0),
    (32, 0.01, 0.003, 40, 16, 4.0),
    (13, 0.01, 0.003, 30, 8, 2.0),
    (13, 0.01, 0.003, 30, 8, 4.0),
    (13, 0.01, 0.002, 60, 16, 4.0),
):
    CANDIDATES[f"k{factors}_l2{reg:g}_lr{lr:g}_n{negatives}_w{weight:g}_e{epochs}"] = {
        "factors": factors,
        "learning_rate": lr,
        "regularization": reg,
        "epochs": epochs,
        "negatives": negatives,
        "negative_weight": weight,
    }
for negatives, weight, epochs, lr in (
    (16, 4.0, 30, 0.05),
    (16, 4.0, 30, 0.1),
    (16, 4.0, 20, 0.05),
    (4, 1.0, 40, 0.05),
    (8, 2.0, 30, 0.05),
    (8, 2.0, 30, 0.1),
    (16, 4.0, 30, 0.2),
    (8, 4.0, 30, 0.1),
    (16, 4.0, 20, 0.1),
    (16, 4.0, 40, 0.1),
    (16, 6.0, 30, 0.1),
    (24, 4.0, 30, 0.1),
    (16, 4.0, 30, 0.15),
):
    CANDIDATES[f"adagrad_lr{lr:g}_n{negatives}_w{weight:g}_e{epochs}"] = {
        **OLD,
        "learning_rate": lr,
        "optimizer": "adagrad",
        "epochs": epochs,
        "negatives": negatives,
        "negative_weight": weight,
    }

for factors, reg in ((32, 0.01), (32, 0.03)):
    CANDIDATES[f"adagrad_k{factors}_l2{reg:g}_lr0.1_n16_w4_e30"] = {
        "factors": factors,
        "learning_rate": 0.1,
        "regularization": reg,
        "optimizer": "adagrad",
        "epochs": 30,
        "negatives": 16,
        "negative_weight": 4.0,
    }

#: ``unobserved_weight``: every unseen pair a weighted zero through the item
#: Gramian (the counterpart of negatives * negative_weight), no sampling.
for alpha, factors, reg, lr, epochs in (
    (48, 13, 0.01, 0.1, 60),
    (16, 13, 0.01, 0.1, 60),
    (32, 13, 0.01, 0.1, 60),
    (64, 13, 0.01, 0.1, 60),
    (96, 13, 0.01, 0.1, 60),
    (48, 13, 0.01, 0.1, 30),
    (48, 13, 0.01, 0.1, 100),
    (48, 13, 0.01, 0.2, 60),
    (48, 13, 0.03, 0.1, 60),
    (48, 32, 0.03, 0.1, 60),
    (48, 64, 0.03, 0.1, 60),
    (48, 13, 0.06, 0.1, 60),
    (48, 13, 0.1, 0.1, 60),
    (48, 32, 0.1, 0.1, 60),
    (48, 64, 0.1, 0.1, 60),
    (64, 13, 0.03, 0.1, 60),
    (48, 32, 0.2, 0.1, 60),
    (64, 32, 0.1, 0.1, 60),
    (48, 64, 0.2, 0.1, 60),
):
    CANDIDATES[f"gram_a{alpha:g}_k{factors}_l2{reg:g}_lr{lr:g}_e{epochs}"] = {
        "factors": factors,
        "learning_rate": lr,
        "regularization": reg,
        "optimizer": "adagrad",
        "epochs": epochs,
        "negatives": 0,
        "unobserved_weight": float(alpha),
    }


def load(dataset: str, work: Path) -> tuple[Interactions, Interactions]:
    source = work / f"{dataset}.csv"
    write_table(as_implicit(read_movielens(datasets_folder() / dataset)), source)
    train_path, test_path = work / "train.csv", work / "test.csv"
    run_cli(
        ["split", str(source), "--kind", "items", "--method", METHOD, "--fraction", "0.2"]
        + ["--seed", "0", "--train", str(train_path), "--test", str(test_path)]
    )
    return (
        Interactions.read_table(str(train_path), "items"),
        Interactions.read_table(str(test_path), "items"),
    )


def score(name: str, params: dict[str, Any], train: Interactions, test: Interactions) -> dict:
    report = evaluate([create_retriever(name, params)], train, test, (20,), progress=False)
    r = report.results[0]
    return {"ndcg@20": round(r.metrics["ndcg@20"], 4), "fit_seconds": round(r.fit_seconds, 1)}


def save(case: str, phase: str, name: str, result: dict) -> None:
    """Merge one result into the results file (re-read first: runs may overlap)."""
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved.setdefault(case, {"validation": {}, "test": {}})[phase][name] = result
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="movielens-latest-small")
    parser.add_argument("--only", nargs="*", help="candidates to validate (default: all)")
    parser.add_argument("--test", nargs="*", default=[], help="candidates to score on test")
    args = parser.parse_args()
    key = f"{args.dataset} {METHOD}"
    with tempfile.TemporaryDirectory(prefix="recgraph-bmf-") as tmp:
        train, test = load(args.dataset, Path(tmp))
        fit, validation = validation_split(train, METHOD, fraction=0.2, seed=1)
        for name in args.only if args.only is not None else CANDIDATES:
            started = time.perf_counter()
            result = {
                "params": CANDIDATES[name],
                **score("biased_mf", CANDIDATES[name], fit, validation),
            }
            save(key, "validation", name, result)
            print(
                f"{args.dataset} val {name:<28} nDCG@20 {result['ndcg@20']:.4f}"
                f"  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        for name in args.test:
            if name == "ease":
                params = {"regularization": EASE[args.dataset]}
                result = {"params": params, **score("ease", params, train, test)}
            else:
                result = {
                    "params": CANDIDATES[name],
                    **score("biased_mf", CANDIDATES[name], train, test),
                }
            save(key, "test", name, result)
            print(f"{args.dataset} TEST {name:<28} nDCG@20 {result['ndcg@20']:.4f}", flush=True)


if __name__ == "__main__":
    main()
