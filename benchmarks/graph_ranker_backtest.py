"""Why CollegeMsg's validation and test disagree about the ranker: the same pipeline at earlier cuts of train.

The test split of CollegeMsg is the newest 20% of new pairs. Tuning carves
its validation the same way from train (the 20% before test), and that
validation put a ranked pipeline well above PPR alone, where test did not.
This script backtests on train only (the test file is never read): for
``--cuts`` successive cuts (0: validation carved from train, as tuning does;
1: validation carved from the first 80% of train; ...) it scores PPR alone
(undirected, restart 0.43, what tuning picks) and the ranked pipeline
tuning chose (PPR, EGOML, popular; depth 200; LambdaRank with labels cut at
one moment), with and without the ranker's time features. A ratio that
falls from older cuts to newer ones is drift that no validation on older
data can see; a ratio that jumps around is noise of a small validation set.

Saves ``benchmarks/results/graph_ranker_backtest.json``.
Run: ``python benchmarks/graph_ranker_backtest.py [--case college-msg] [--cuts 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from common import blank_features, datasets_folder
from recgraph.cli.evaluate_commands import read_split_input
from recgraph.data.splits import split, validation_split
from recgraph.jobs.tune.fitting import FitCache, carve_validation
from recgraph.pipeline.config import QuestionConfig
from two_stage import CASES, default_question

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
TIME_FEATURES = (
    "time_affinity",
    "cand_pop_in_user_weeks",
    "cand_pop_7d",
    "cand_pop_30d",
    "user_recency_days",
)
PPR = {"name": "ppr", "min_score": 0.0, "params": {"restart": 0.43, "walk": "undirected"}}
RANKED = (
    [PPR, {"name": "egoml"}, {"name": "popular"}],
    {
        "depth": 200,
        "label_split": "temporal_global",
        "negatives": 0.3,
        "max_train_users": 1500,
        "params": {"learning_rate": 0.066, "num_leaves": 7, "min_child_samples": 200},
    },
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", default="college-msg", choices=["college-msg"])
    parser.add_argument("--cuts", type=int, default=2)
    args = parser.parse_args()
    folder, file, kind, method, fraction, metric, _ = CASES[args.case]
    data = read_split_input(datasets_folder() / folder / file, kind)
    train, _test = split(data, method, fraction=fraction, seed=0)
    del _test  # never read
    base = default_question(kind).model_dump()

    def question(retrievers, ranker) -> QuestionConfig:
        values = dict(base)
        values.update(retrievers=retrievers, ranker=ranker, fallback=[])
        return QuestionConfig.model_validate(values)

    rows = []

    for cut in range(args.cuts):
        history = train
        for _ in range(cut):
            history, _ = validation_split(history, method, fraction=0.2, seed=0)
        validation, description = carve_validation(history, method, 0.2, 0, metric, 3000)
        cache = FitCache("who_to_follow")
        row = {"cut": cut, "validation": description}
        for label, retrievers, ranker, blank in (
            ("ppr_alone", [PPR], None, False),
            ("ranked", *RANKED, False),
            ("ranked_without_time_features", *RANKED, True),
        ):
            undo = blank_features(TIME_FEATURES) if blank else None
            started = time.process_time()
            try:
                model = cache.fit(question(retrievers, ranker), validation.fit)
                value = validation.score(model)
            finally:
                if undo is not None:
                    undo()
            row[label] = round(value, 4)
            print(
                f"cut {cut} ({description['users']} users): {label} {metric} {value:.4f} "
                f"({time.process_time() - started:.0f} s CPU)",
                flush=True,
            )
        row["ranked_over_ppr"] = round(row["ranked"] / row["ppr_alone"], 4)
        row["without_time_over_ppr"] = round(
            row["ranked_without_time_features"] / row["ppr_alone"], 4
        )
        print(
            f"cut {cut}: ranked / PPR {row['ranked_over_ppr']:.4f}x, without time features "
            f"{row['without_time_over_ppr']:.4f}x",
            flush=True,
        )
        rows.append(row)
    out = RESULTS / "graph_ranker_backtest.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "graph_ranker_backtest",
                "case": args.case,
                "metric": metric,
                "load_average_at_end": os.getloadavg(),
                "cuts": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
