"""Which retrievers the feed ranker should rank over, on validation carved from train (never test).

Per case (a split of ``two_stage.CASES``, seed 0) and validation draw
(``--valid-seeds``, carved as tuning carves it), the shipped feed question's
ranker (``src/recgraph/config/pipeline.toml``, its label slice cut as the
split was cut) is fitted over each retriever set of ``--sets`` for
``--seeds`` ranker seeds. Each figure is reported over the best retriever
ALONE on that draw among every retriever of every set (ALS included: the
bar ``two_stage.py`` sets when validation picks ALS). ``als`` runs with ALS's
code defaults (32 factors, regularization 10, alpha 1: ``ALSConfig``'s
defaults, chosen by benchmarks/defaults_study.py), not a tuned point.

Saves ``benchmarks/results/ranker_retrievers.json`` (or ``--out``).
Run: ``python benchmarks/ranker_retrievers.py --only ml100k-random --valid-seeds 0,1 --seeds 0,1``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import save_results
from ranker_bagging import alone, ranked, train_side
from recgraph.jobs.tune.fitting import FitCache, carve_validation
from recgraph.pipeline.config import QuestionConfig, RetrieverSpec, load_pipeline_config
from two_stage import CASES

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: Retrievers a set may name (key -> spec); the shipped feed's plus ALS.
EXTRA = {
    "als": RetrieverSpec(name="als", params={"factors": 32, "regularization": 10.0, "alpha": 1.0}),
}
SETS = "shipped,shipped+als,ease+als,ease+als+item_knn"


def with_retrievers(base: QuestionConfig, keys: list[str]) -> QuestionConfig:
    by_key = {spec.key: spec for spec in base.retrievers} | EXTRA
    values = base.model_dump()
    values.update(retrievers=[by_key[k].model_dump(exclude_none=True) for k in keys])
    return QuestionConfig.model_validate(values)


def keys_of(base: QuestionConfig, text: str) -> list[str]:
    keys = []
    for part in text.split("+"):
        keys += [s.key for s in base.retrievers] if part == "shipped" else [part]
    return list(dict.fromkeys(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="ml100k-random", choices=list(CASES))
    parser.add_argument("--sets", default=SETS)
    parser.add_argument("--variant", default="", help="ranker changes as ranker_bagging's")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--valid-seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_retrievers.json")
    args = parser.parse_args()
    name = args.only
    _, _, kind, method, _, metric, _ = CASES[name]
    shipped = load_pipeline_config().question("feed")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        train, item_features = train_side(name, Path(tmp))
        for valid_seed in map(int, args.valid_seeds.split(",")):
            validation, _ = carve_validation(train, method, 0.2, valid_seed, metric, 3000)
            cache = FitCache("feed", None, item_features)
            sets = {text: keys_of(shipped, text) for text in args.sets.split(",")}
            every = list(dict.fromkeys(k for keys in sets.values() for k in keys))
            everyone = with_retrievers(shipped, every)
            singles = {
                spec.key: validation.score(cache.fit(alone(everyone, spec), validation.fit))
                for spec in everyone.retrievers
            }
            best = max(singles, key=singles.get)
            print(name, valid_seed, {k: round(v, 4) for k, v in singles.items()}, flush=True)
            for text, keys in sets.items():
                for seed in map(int, args.seeds.split(",")):
                    config = ranked(with_retrievers(shipped, keys), method, seed, args.variant)
                    began = time.process_time()
                    value = validation.score(cache.fit(config, validation.fit))
                    row = {
                        "case": name,
                        "valid_seed": valid_seed,
                        "set": text,
                        "variant": args.variant or "as shipped",
                        "seed": seed,
                        metric: round(value, 4),
                        "best_single": best,
                        "best_single_value": round(singles[best], 4),
                        "over_best_single": round(value / singles[best], 4),
                        "cpu_s": round(time.process_time() - began, 1),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    save(args.out, rows)


def save(out: Path, rows: list[dict]) -> None:
    """Rows and, per case, validation draw, set and variant (as ranker_bagging.summary keys
    them), the mean and worst share of the best single over the ranker seeds."""

    def key_of(r: dict) -> tuple:
        return (r["case"], r["valid_seed"], r["set"], r["variant"])

    summary = []
    for key in dict.fromkeys(key_of(r) for r in rows):
        shares = [r["over_best_single"] for r in rows if key_of(r) == key]
        summary.append(
            {
                "case": key[0],
                "valid_seed": key[1],
                "set": key[2],
                "variant": key[3],
                "mean_over_best_single": round(float(np.mean(shares)), 4),
                "worst": round(min(shares), 4),
                "runs": len(shares),
            }
        )
    save_results(out, "ranker_retrievers", rows=rows, summary=summary)


if __name__ == "__main__":
    main()
