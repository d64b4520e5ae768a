"""Bagged rankers on validation carved from train: does a bag of boosters lift the ranked pipeline and narrow its spread?

Per case (a split of ``two_stage.CASES``, seed 0; the test part is never
read), validation is carved from train as tuning carves it (the case's split
method, 20%, ``--valid-seeds`` draws), and on each draw this script fits:

- each retriever of the question alone (what the pipeline must beat);
- the question with its ranker as configured and with each of ``--variants``
  (ranker settings changed: ``bags=5`` a bag of five boosters,
  ``label_fraction=0.1+folds=2`` label slices half as large, two draws, so the
  retrievers it learns from are fitted on 90% of the data rather than 80%),
  for ``--seeds`` ranker seeds (the label slice draw, the validation users,
  LightGBM's seed: what differs between two runs).

The question is the shipped one (``src/recgraph/config/pipeline.toml``), the
default ranked one (``--question default``) or the one a ``two_stage.py`` run's
tuning chose (``--question RUN.json``; ``--fraction 0.4``: the longer validation
tuning's phase 3 carves), its ranker cutting the label
slice as the split was cut (``label_split_for``). Reported: validation
``metric`` over the best retriever alone on that draw, mean and spread over
the ranker seeds, and the ranker's CPU seconds to fit and to score.

Saves ``benchmarks/results/ranker_bagging.json`` (or ``--out``).
Run: ``python benchmarks/ranker_bagging.py --only ml100k-random [--variants bags=5,...] [--seeds 0,1,2]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import movielens_items_file, save_results
from recgraph.cli.evaluate_commands import write_split_table
from recgraph.data.interactions import Interactions
from recgraph.data.item_features import ItemFeatures
from recgraph.jobs.tune.fitting import FitCache, carve_validation
from recgraph.pipeline.config import QuestionConfig, RankerSpec, load_pipeline_config
from recgraph.pipeline.ranking import label_split_for
from two_stage import CASES, case_split, default_question, question_of

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def ranked(base: QuestionConfig, method: str, seed: int, variant: str) -> QuestionConfig:
    """The question's ranker with ``variant``'s changes: ``key=value`` joined by ``+``, each a
    :class:`RankerSpec` field or else a ranker parameter (``bags=5+label_fraction=0.1``)."""
    values = base.model_dump()
    ranker = dict(values["ranker"] or {})
    ranker.update(label_split=label_split_for(method), seed=seed)
    params = {}
    for change in filter(None, variant.split("+")):
        key, _, text = change.partition("=")
        value = (
            json.loads(text) if text[:1].isdigit() or text in ("true", "false", "null") else text
        )
        if key in RankerSpec.model_fields:
            ranker[key] = value
        else:
            params[key] = value
    ranker["params"] = dict(ranker.get("params") or {}) | {"seed": seed} | params
    values.update(ranker=ranker, fallback=[])
    return QuestionConfig.model_validate(values)


def alone(base: QuestionConfig, spec) -> QuestionConfig:
    values = base.model_dump()
    values.update(retrievers=[spec.model_dump(exclude_none=True)], ranker=None, fallback=[])
    return QuestionConfig.model_validate(values)


def train_side(name: str, work: Path) -> tuple[Interactions, ItemFeatures | None]:
    """A case's train side, read back from its split file as two_stage.py and evaluate read
    it, and its item side data; the test side is never read."""
    kind = CASES[name][2]
    source, train, _test = case_split(name)
    del _test  # never read
    path = work / f"{name}.train.csv"
    write_split_table(train, path)
    train = Interactions.read_table(str(path), kind)
    item_features = None
    if kind == "items" and source.is_dir():
        item_features = ItemFeatures.read(movielens_items_file(source, work / f"{name}.items.csv"))
    return train, item_features


def run_case(name: str, args: argparse.Namespace, work: Path, done: list[dict]) -> list[dict]:
    _, _, kind, method, _, metric, _ = CASES[name]
    train, item_features = train_side(name, work)
    question = question_of(kind)
    if args.question == "default":
        base = default_question(kind)
    elif args.question == "shipped":
        base = load_pipeline_config().question(question)
    else:  # a two_stage.py run: the question its tuning chose for this case
        tuned = json.loads(Path(args.question).read_text())["cases"][name]["tuned_config"]
        base = QuestionConfig.model_validate(tuned)
        if base.ranker is None:  # else ranked() would bag a default gbdt_ranker tuning never chose
            raise SystemExit(
                f"{name}: the run {args.question} tuned a question without a ranker "
                "(its tuning kept the retrievers alone): no tuned ranker to bag"
            )
    rows = []
    for valid_seed in map(int, args.valid_seeds.split(",")):
        validation, description = carve_validation(
            train, method, args.fraction, valid_seed, metric, 3000
        )
        cache = FitCache(question, None, item_features)
        singles = {}
        for spec in base.retrievers:
            singles[spec.key] = validation.score(cache.fit(alone(base, spec), validation.fit))
        best_key = max(singles, key=singles.get)
        print(f"{name} valid seed {valid_seed}: singles {singles}", flush=True)
        variants = args.variants.split(",") + ([] if args.skip_configured else [""])
        for variant in sorted(variants, key=bool):
            for seed in map(int, args.seeds.split(",")):
                config = ranked(base, method, seed, variant)
                began = time.process_time()
                model = cache.fit(config, validation.fit)
                fit_cpu = time.process_time() - began
                began = time.process_time()
                value = validation.score(model)
                score_cpu = time.process_time() - began
                report = model.ranking.report if model.ranking is not None else {}
                row = {
                    "case": name,
                    "question": args.question,
                    "valid_seed": valid_seed,
                    "fraction": args.fraction,
                    "variant": variant or "as configured",
                    "seed": seed,
                    metric: round(value, 4),
                    "best_single": best_key,
                    "over_best_single": round(value / singles[best_key], 4),
                    "order": report.get("order"),
                    "valid_ranker": report.get("valid_ndcg@20_ranker"),
                    "fit_cpu_s": round(fit_cpu, 1),
                    "recommend_cpu_ms_per_user": round(1000 * score_cpu / len(validation.users), 3),
                    "users": description["users"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                save(args.out, done + rows)  # a run stopped for time keeps its rows
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []

    def key_of(r: dict) -> tuple:
        return (r["case"], r["question"], r["valid_seed"], r.get("fraction", 0.2), r["variant"])

    for key in sorted({key_of(r) for r in rows}):
        shares = [r["over_best_single"] for r in rows if key_of(r) == key]
        out.append(
            {
                "case": key[0],
                "question": key[1],
                "valid_seed": key[2],
                "fraction": key[3],
                "variant": key[4],
                "mean_over_best_single": round(float(np.mean(shares)), 4),
                "spread": round(float(np.max(shares) - np.min(shares)), 4),
                "runs": len(shares),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=list(CASES), required=True)
    parser.add_argument(
        "--question",
        default="shipped",
        help="shipped, default, or a two_stage.py run's JSON (the question its tuning chose)",
    )
    parser.add_argument(
        "--fraction", type=float, default=0.2, help="validation share carved from train"
    )
    parser.add_argument(
        "--variants",
        default="bags=5",
        help="ranker changes besides none, comma-separated: bags=5,label_fraction=0.1+folds=2",
    )
    parser.add_argument(
        "--skip-configured", action="store_true", help="no row for the ranker as configured"
    )
    parser.add_argument("--seeds", default="0,1,2", help="ranker seeds (the runs)")
    parser.add_argument("--valid-seeds", default="0", help="validation draws")
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_bagging.json")
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            rows += run_case(name, args, Path(tmp), rows)
    for row in save(args.out, rows)["summary"]:
        print(json.dumps(row))
    print(f"wrote {args.out}")


def save(out: Path, rows: list[dict]) -> dict:
    """Write ``rows`` over the saved ones of the same case, question, draw and variant."""
    saved = json.loads(out.read_text()) if out.exists() else {"rows": []}

    def key_of(r: dict) -> tuple:
        return (r["case"], r["question"], r["valid_seed"], r.get("fraction", 0.2), r["variant"])

    fresh = {key_of(x) for x in rows}
    keep = [r for r in saved["rows"] if key_of(r) not in fresh]
    return save_results(
        out,
        "ranker_bagging",
        note="validation carved from train only; the test split is never read",
        rows=keep + rows,
        summary=summary(keep + rows),
    )


if __name__ == "__main__":
    main()
