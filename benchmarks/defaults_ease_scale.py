"""EASE's regularization against the size of the data: one lambda grid on two nested validations.

Question: does the best lambda move with the amount of data (so a tuned value
chosen on a validation fit of 64% of the data should be scaled before it is
used on the 80% of a test fit, and a default could follow the data)? Scored
on validation only, never on a test split:

- level 1: ``(fit, valid)`` = ``validation_split(train, method, 0.2, seed 0)``
  of each case's train (tuning's own carve; 64% / 16% of the data);
- level 2: the same carve of level 1's fit (51% / 13%).

Cases: the feed splits of benchmarks/two_stage.py (MovieLens 100k random and
global-temporal, latest-small random: the rows as two_stage reads them,
dislikes dropped) and the generated play-count log of
benchmarks/defaults_study.py. Per case and level: nDCG@20 per lambda, the
best lambda, and what the data looks like (users, items, the Gram matrix's
trace = sum of squared weights, positives).

Run: ``python benchmarks/defaults_ease_scale.py [--cases ...] [--grid 500,...]``
(``--grid``: score these lambdas, keeping the ones already saved;
``--shares-only``: score nothing, recompute ``share_of_best_per_lambda`` from the saved
rows); saves ``benchmarks/results/defaults_ease_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, save_results  # noqa: E402
from recgraph.data.splits import split, validation_split  # noqa: E402
from recgraph.evaluation import evaluate  # noqa: E402
from recgraph.retrieval.factors import positive_matrix  # noqa: E402
from recgraph.retrieval.registry import create_retriever  # noqa: E402

GRID = (50.0, 100.0, 150.0, 200.0, 300.0, 450.0, 700.0, 1000.0, 1500.0, 2500.0)
CASES = ("ml100k-random", "latest-small-random", "ml100k-temporal", "listening-counts")


def case_train(name: str):
    """``(train, method)`` of a case: the outer split's train side only."""
    if name == "listening-counts":
        from recgraph.data.listening import generate_listening

        data = generate_listening(seed=0)
        train, _ = split(data, "random_per_user", fraction=0.2, seed=0)
        return train, "random_per_user"
    from two_stage import CASES as TWO_STAGE
    from two_stage import case_split

    _source, train, _test = case_split(name)
    return train, TWO_STAGE[name][3]


def describe(fit) -> dict:
    matrix = positive_matrix(fit, count_epsilon=0.01)
    squares = matrix.multiply(matrix).sum(axis=0).A1
    active = squares > 0
    return {
        "rows": len(fit),
        "users": int(matrix.shape[0]),
        "items_with_positives": int(active.sum()),
        "positives": int(matrix.nnz),
        "gram_trace": round(float(squares.sum()), 1),
        "mean_gram_diagonal": round(float(squares[active].mean()), 3),
    }


def share_of_best_per_lambda(cases: dict) -> dict[str, dict]:
    """Per lambda scored on every carve: its nDCG@20 over that carve's best, mean and worst
    over the carves (each case's level 1 and level 2), computed from ``cases`` as saved."""
    carves = [case[level]["ndcg@20"] for case in cases.values() for level in ("level1", "level2")]
    shares = {}
    for lam in sorted({lam for carve in carves for lam in carve}, key=float):
        if any(lam not in carve for carve in carves):
            continue
        ratios = [carve[lam] / max(carve.values()) for carve in carves]
        shares[lam] = {
            "worst": round(min(ratios), 4),
            "mean": round(sum(ratios) / len(ratios), 4),
            "figures": len(ratios),
        }
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", default=str(RESULTS_DIR / "defaults_ease_scale.json"))
    parser.add_argument(
        "--grid",
        default=",".join(str(lam) for lam in GRID),
        help="lambdas to score; scores already in --out are kept (new ones merge in)",
    )
    parser.add_argument(
        "--shares-only",
        action="store_true",
        help="score nothing: recompute share_of_best_per_lambda from the rows saved in --out",
    )
    args = parser.parse_args()
    grid = [float(lam) for lam in args.grid.split(",")]
    earlier = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    out: dict = dict(earlier.get("cases", {}))
    cpu = time.process_time()
    if args.shares_only:
        drop = ("note", "benchmark", "load_average_at_end", "share_of_best_per_lambda")
        kept = {k: v for k, v in earlier.items() if k not in drop}
        scoring_load = earlier.get(
            "load_average_at_end_of_scoring", earlier.get("load_average_at_end")
        )
        save_results(
            Path(args.out),
            "defaults_ease_scale",
            **kept,
            share_of_best_per_lambda=share_of_best_per_lambda(out),
            load_average_at_end_of_scoring=scoring_load,
        )
        return
    for name in args.cases.split(","):
        train, method = case_train(name)
        fit1, valid1 = validation_split(train, method, fraction=0.2, seed=0)
        fit2, valid2 = validation_split(fit1, method, fraction=0.2, seed=0)
        levels = {}
        for level, (fit, valid) in {"level1": (fit1, valid1), "level2": (fit2, valid2)}.items():
            scores = dict(out.get(name, {}).get(level, {}).get("ndcg@20", {}))
            for lam in grid:
                report = evaluate(
                    [create_retriever("ease", {"regularization": lam})],
                    fit,
                    valid,
                    (20,),
                    progress=False,
                )
                scores[str(lam)] = round(report.results[0].metrics["ndcg@20"], 5)
            scores = dict(sorted(scores.items(), key=lambda kv: float(kv[0])))
            best = max(scores, key=scores.get)
            levels[level] = {"data": describe(fit), "ndcg@20": scores, "best": float(best)}
            print(name, level, levels[level]["data"], "best", best, scores, flush=True)
        out[name] = {"method": method, **levels}
        save_results(  # after each case: a run stopped for time keeps the cases it scored
            Path(args.out),
            "defaults_ease_scale",
            cases=out,
            grid=sorted({float(lam) for c in out.values() for lam in c["level1"]["ndcg@20"]}),
            share_of_best_per_lambda=share_of_best_per_lambda(out),
            cpu_seconds=round(time.process_time() - cpu, 1),
        )


if __name__ == "__main__":
    main()
