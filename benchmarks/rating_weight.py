"""What a low rating should weigh when an item model trains on ratings.

Full-ranking evaluation counts every rated film of the test period as a
target, so a model that drops low ratings from training (keeping only likes)
learns less about what users go on to watch. This measures, on VALIDATION
splits carved from train (the test split is never read), the nDCG@20 of the
default EASE, item-kNN and ALS when a rating below the liked threshold
weighs 0 (likes only), 0.25, 0.5 or 1 (every rating counts), and saves the
table: ``recgraph.retrieval.factors.LOW_RATING_WEIGHT`` is the weight it picks.

    python benchmarks/rating_weight.py
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from common import datasets_folder
from recgraph.data import splits
from recgraph.data.movielens import read_movielens
from recgraph.evaluation import evaluate
from recgraph.retrieval import create_retriever

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = (0.0, 0.25, 0.5, 1.0)
MODELS = ("ease", "item_knn", "als")
DATASETS = ("movielens-100k", "movielens-latest-small")
METHODS = ("random_per_user", "temporal_global")


def main() -> None:
    import recgraph.retrieval.factors as factors

    rows = []
    for dataset in DATASETS:
        data = read_movielens(datasets_folder() / dataset)
        for method in METHODS:
            train, _test = splits.split(data, method, fraction=0.2, seed=0)
            fit, valid = splits.validation_split(train, method, fraction=0.1, seed=1)
            for weight in WEIGHTS:
                factors.LOW_RATING_WEIGHT = weight
                models = [create_retriever(name) for name in MODELS]
                report = evaluate(models, fit, valid, (20,), progress=False)
                for result in report.results:
                    row = {
                        "dataset": dataset,
                        "split": method,
                        "low_rating_weight": weight,
                        "model": result.model,
                        "valid_ndcg@20": round(result.metrics["ndcg@20"], 4),
                    }
                    rows.append(row)
                    print(row, flush=True)
    mean = {
        w: float(np.mean([r["valid_ndcg@20"] for r in rows if r["low_rating_weight"] == w]))
        for w in WEIGHTS
    }
    best = max(mean, key=mean.get)
    out = {"rows": rows, "mean_by_weight": mean, "chosen": best, "machine": platform.node()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rating_weight.json").write_text(json.dumps(out, indent=2))
    lines = ["| dataset | split | model | " + " | ".join(f"w={w}" for w in WEIGHTS) + " |"]
    lines.append("|" + "---|" * (3 + len(WEIGHTS)))
    for dataset in DATASETS:
        for method in METHODS:
            for model in MODELS:
                cells = [
                    f"{r['valid_ndcg@20']:.4f}"
                    for w in WEIGHTS
                    for r in rows
                    if (r["dataset"], r["split"], r["model"], r["low_rating_weight"])
                    == (dataset, method, model, w)
                ]
                lines.append(f"| {dataset} | {method} | {model} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"mean validation nDCG@20 by weight: {mean}; chosen: {best}")
    (RESULTS / "rating_weight.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
