"""Popularity through ``recgraph split`` + ``recgraph evaluate``, timed per stage.

Two protocols, each run end to end through the command line as a user would
script it:

- MovieLens 100k: every rating is a positive, random 80/20 per user, seed 0;
- ego-Facebook: undirected friendships, 10% edge holdout, seed 0.

Prints a summary and saves ``benchmarks/results/evaluate_popular.json``.
Stages: ``read`` and ``split`` (library calls, the same ones ``recgraph split``
makes), ``split_command`` (the whole command: read, split, write two files),
``evaluate_command`` (the whole command) and, from its JSON, ``fit``,
``recommend`` and ``metrics``.

For reference, popularity on ML-100k with random per-user holdouts is
published at roughly recall@20 = 0.1-0.2 depending on the protocol (e.g. the
RecBole and LensKit baselines).

Run: ``python benchmarks/evaluate_popular.py`` (needs ../shared/datasets or
``RECGRAPH_DATASETS``).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, RESULTS_DIR, datasets_folder, run_cli
from recgraph.data.movielens import read_movielens
from recgraph.data.readers import read_edge_list
from recgraph.data.splits import split

RESULTS = RESULTS_DIR / "evaluate_popular.json"
KS = (10, 20, 50)


CASES = [
    {
        "name": "movielens-100k",
        "input": "movielens-100k",
        "kind": "items",
        "method": "random_per_user",
        "fraction": 0.2,
        "seed": 0,
        "read": lambda path: read_movielens(path),
    },
    {
        "name": "ego-facebook",
        "input": "snap-ego-facebook/facebook_combined.txt",
        "kind": "friends",
        "method": "edge_holdout",
        "fraction": 0.1,
        "seed": 0,
        "read": lambda path: read_edge_list(path, directed=False),
    },
]


def timed_cli(args: list[str]) -> tuple[float, str]:
    """Run a ``recgraph`` command; return its wall time and what it printed."""
    start = time.perf_counter()
    printed = run_cli(args)
    return time.perf_counter() - start, printed


def run_case(case: dict, folder: Path, work: Path) -> dict:
    source = folder / case["input"]
    stages: dict[str, float] = {}

    # library stages, the calls `recgraph split` makes
    start = time.perf_counter()
    data = case["read"](source)
    stages["read_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    split(data, case["method"], fraction=case["fraction"], seed=case["seed"])
    stages["split_seconds"] = time.perf_counter() - start

    # the commands, end to end
    train, test = work / f"{case['name']}.train.csv", work / f"{case['name']}.test.csv"
    stages["split_command_seconds"], _ = timed_cli(
        ["split", str(source), "--kind", case["kind"], "--method", case["method"]]
        + ["--fraction", str(case["fraction"]), "--seed", str(case["seed"])]
        + ["--train", str(train), "--test", str(test)]
    )
    report_path = work / f"{case['name']}.json"
    stages["evaluate_command_seconds"], table = timed_cli(
        ["evaluate", "--train", str(train), "--test", str(test), "--kind", case["kind"]]
        + ["--model", "popular", "--k", ",".join(map(str, KS)), "--json", str(report_path)]
    )
    report = json.loads(report_path.read_text())
    (result,) = report["results"]
    stages["fit_seconds"] = result["fit_seconds"]
    stages["recommend_seconds"] = result["recommend_seconds"]
    stages["metrics_seconds"] = result["metric_seconds"]
    return {
        "dataset": case["name"],
        "protocol": f"{case['method']} fraction={case['fraction']} seed={case['seed']}",
        "kind": case["kind"],
        "rows": len(data),
        "train_rows": report["n_train_rows"],
        "test_rows": report["n_test_rows"],
        "dropped_test_rows": report["dropped_test_rows"],
        "dropped_by_reason": {k: v for k, v in report["dropped_by_reason"].items() if v},
        "users_scored": report["n_users"],
        "candidates": report["n_candidates"],
        "stages": {k: round(v, 4) for k, v in stages.items()},
        "metrics": {k: round(v, 4) for k, v in result["metrics"].items()},
        "table": table,
    }


def main_benchmark() -> None:
    folder = datasets_folder()
    results = []
    with tempfile.TemporaryDirectory(prefix="recgraph-bench-") as tmp:
        for case in CASES:
            result = run_case(case, folder, Path(tmp))
            results.append(result)
            print(f"\n== {result['dataset']} ({result['protocol']})")
            print(result.pop("table").rstrip())
            print(
                f"rows {result['rows']:,}: train {result['train_rows']:,}, test "
                f"{result['test_rows']:,}, dropped {result['dropped_test_rows']:,} "
                f"{result['dropped_by_reason'] or ''}"
            )
            print("stages: " + ", ".join(f"{k} {v:.3f}" for k, v in result["stages"].items()))
    ml = results[0]["metrics"]["recall@20"]
    print(
        f"\nsanity: popular recall@20 on ML-100k = {ml:.4f} "
        f"({'inside' if 0.1 <= ml <= 0.2 else 'OUTSIDE'} the published 0.1-0.2)"
    )
    payload = {
        "benchmark": "evaluate_popular",
        "ks": list(KS),
        "results": results,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main_benchmark()
