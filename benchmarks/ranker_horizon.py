"""How far ahead a ranked pipeline's lead holds: CollegeMsg validation over a short and a long horizon.

CollegeMsg's test period (the newest 20% of new pairs) runs 140 days, as the
messages thin out; validation carved from train the same way runs 13 days,
and the ranker's label slice about 5. This script, on train only (the test
file is never read), cuts validation at one or more shares of the training
pairs (``--fractions``: 0.2 is what tuning carves, 13 days; 0.5 is 24 days)
and scores PPR alone against ranked variants fitted on the part before the
cut:

- ``default``: the default ranked question (Adamic-Adar, resource allocation,
  PPR, popular; an empty ``[ranker]`` table);
- ``default+folds=3``: taught by the label slice and the two periods before it;
- ``default+label_fraction=0.4``: a label slice twice as long;
- ``default+objective=binary``: pointwise log-loss instead of LambdaRank;
- ``default+notime``: the time features blanked (NaN, LightGBM's missing);
- ``default+bags=5`` (any ``gbdt_ranker`` parameter): a bag of five boosters;
- ``tuned``: what 2 minutes of ``recgraph tune`` kept (PPR, EGOML, popular
  14 days; LambdaRank with learning rate 0.066, 7 leaves, 200 per leaf);
- ``tuned0``: what tuning seed 0 kept in the latest run (PPR, popular 14
  days; learning rate 0.124, 15 leaves, 20 per leaf, every negative): 0.986x
  PPR on test.

A lead that shrinks as the horizon grows is one that no short validation can
promise.

Saves ``benchmarks/results/ranker_horizon.json``.
Run: ``python benchmarks/ranker_horizon.py [--fractions 0.2,0.5] [--variants ppr,default,...] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from common import blank_features, datasets_folder, save_results
from graph_ranker_backtest import TIME_FEATURES as BACKTEST_TIME_FEATURES
from recgraph.cli.evaluate_commands import read_split_input
from recgraph.data.splits import split
from recgraph.jobs.tune.fitting import FitCache, carve_validation
from recgraph.pipeline.config import QuestionConfig
from recgraph.ranking.gbdt_ranker import GBDTRankerConfig
from two_stage import CASES, default_question

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PPR = {"name": "ppr", "min_score": 0.0, "params": {"restart": 0.3, "walk": "undirected"}}
TUNED = (
    [PPR, {"name": "egoml"}, {"name": "popular", "params": {"window_days": 14.0}}],
    {
        "depth": 200,
        "label_split": "temporal_global",
        "negatives": 0.3,
        "max_train_users": 1500,
        "params": {
            "learning_rate": 0.066,
            "num_leaves": 7,
            "min_child_samples": 200,
            "early_stopping_rounds": 40,
            "n_threads": 1,
        },
    },
)
#: What tuning (seed 0, 2 minutes) kept in the last two_stage.json run: 0.986x PPR on test.
TUNED_SEED0 = (
    [PPR, {"name": "popular", "params": {"window_days": 14.0}}],
    {
        "depth": 200,
        "label_split": "temporal_global",
        "negatives": 1.0,
        "max_train_users": 1500,
        "params": {
            "learning_rate": 0.124,
            "num_leaves": 15,
            "min_child_samples": 20,
            "early_stopping_rounds": 40,
            "n_threads": 1,
        },
    },
)
#: The backtest's time features and the tie-time ones added since.
TIME_FEATURES = (*BACKTEST_TIME_FEATURES, "tie_back_days", "cand_recency_days", "cand_out_30d")
VARIANTS = (
    "ppr",
    "default",
    "default+folds=3",
    "default+label_fraction=0.4",
    "default+objective=binary",
    "default+notime",
    "tuned",
)


def variant(name: str, base: dict) -> QuestionConfig:
    """``head+key=value+...``: ``ppr``, ``default`` or ``tuned``, with ranker settings changed."""
    head, *mods = name.split("+")
    values = dict(base, fallback=[])
    if head == "ppr":
        return QuestionConfig.model_validate(values | {"retrievers": [PPR], "ranker": None})
    retrievers, ranker = {"tuned": TUNED, "tuned0": TUNED_SEED0}.get(head, (base["retrievers"], {}))
    ranker = json.loads(json.dumps(ranker))
    for mod in mods:
        key, _, value = mod.partition("=")
        if key == "notime":
            continue
        if key == "objective":
            ranker.setdefault("params", {})[key] = value
        elif key in GBDTRankerConfig.model_fields:  # the ranker's own parameter (bags=5)
            ranker.setdefault("params", {})[key] = json.loads(value)
        else:
            ranker[key] = float(value) if "." in value else int(value)
    return QuestionConfig.model_validate(values | {"retrievers": retrievers, "ranker": ranker})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fractions", default="0.2,0.5")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_horizon.json")
    args = parser.parse_args()
    folder, file, kind, method, fraction, metric, _ = CASES["college-msg"]
    data = read_split_input(datasets_folder() / folder / file, kind)
    train, _test = split(data, method, fraction=fraction, seed=0)
    del _test  # never read
    base = default_question(kind).model_dump()
    rows = []
    for share in map(float, args.fractions.split(",")):
        validation, description = carve_validation(train, method, share, 0, metric, 3000)
        # the horizon: from the cut to the end of train
        days = (train.timestamp.max() - validation.fit.timestamp.max()) / 86400
        cache = FitCache("who_to_follow")
        for name in args.variants.split(","):
            undo = blank_features(TIME_FEATURES) if "notime" in name else None
            started = time.process_time()
            try:
                model = cache.fit(variant(name, base), validation.fit)
                value = validation.score(model)
                ndcg = dataclasses.replace(validation, metric="ndcg@20").score(model)
            finally:
                if undo is not None:
                    undo()
            report = model.ranking.report if model.ranking is not None else {}
            row = {
                "fraction": share,
                "horizon_days": round(float(days), 1),
                "users": description["users"],
                "variant": name,
                metric: round(value, 4),
                "ndcg@20": round(ndcg, 4),
                "order": report.get("order"),
                "cpu_seconds": round(time.process_time() - started, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    for share in sorted({r["fraction"] for r in rows}):
        ppr = next((r[metric] for r in rows if r["fraction"] == share and r["variant"] == "ppr"), 0)
        for r in rows:
            if r["fraction"] == share and ppr:
                r["over_ppr"] = round(r[metric] / ppr, 4)
    out = args.out
    save_results(out, "ranker_horizon", case="college-msg", metric=metric, rows=rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
