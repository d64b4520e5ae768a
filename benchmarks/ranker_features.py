"""Which candidate features lift the feed ranker, on validation carved from train (the test part is never read).

Per case (a split of ``two_stage.CASES``, seed 0) and validation draw
(``--valid-seeds``; carved as tuning carves it), the shipped feed question
(``src/recgraph/config/pipeline.toml``) is fitted with its ranker forced to
answer (``min_gain = -1``, no blend: the stand-down's choice, which moves most
between runs, is left out, so what is compared is the order the ranker learnt)
for ``--seeds`` ranker seeds (``--as-configured``: as the shipped file has it,
validation free to stand it down), once per variant:

- ``base``: every feature of ``--study`` blanked (NaN: LightGBM's missing,
  never split on), i.e. the ranker without them;
- ``+name`` (``+a+b``): ``base`` with those features given back;
- ``all``: nothing blanked.

Reported per row: validation ``metric`` and that over the best retriever alone
on the draw; the summary gives each variant's mean over draws and seeds, and
its mean difference from ``base`` on the same draw and seed with the spread
(max - min) of those differences.

Saves ``benchmarks/results/ranker_features.json`` (or ``--out``).
Run: ``python benchmarks/ranker_features.py --only ml100k-random --valid-seeds 0,1,2 --seeds 0,1``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import blank_features, save_results
from ranker_bagging import alone, train_side
from recgraph.jobs.tune.fitting import FitCache, carve_validation
from recgraph.pipeline.config import QuestionConfig, load_pipeline_config
from recgraph.pipeline.ranking import label_split_for
from recgraph.ranking.features import OPTIONAL_ITEM_FEATURES
from two_stage import CASES

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: The features under study: the taste of the user against the candidate.
STUDY = OPTIONAL_ITEM_FEATURES
#: Names that give back several features at once (``+group``).
GROUPS: dict[str, tuple[str, ...]] = {}


def ask_for(optional: tuple[str, ...]):
    """Every ranker feature matrix (and its column names) with the ``optional`` features
    (:data:`~recgraph.ranking.features.OPTIONAL_ITEM_FEATURES`) until the returned function
    is called: what the pipeline computes when a question asks for them."""
    from recgraph.pipeline import ranking as stage_module
    from recgraph.ranking import features as module

    names, matrix = module.feature_names, module.CandidateFeatures.matrix

    def with_names(graph_kind, keys, optional_=(), **named):
        extra = tuple(named.get("optional", optional_))
        return names(graph_kind, keys, extra or (optional if graph_kind == "items" else ()))

    def with_columns(self, users, items, retrievers, depth, **options):
        # the pipeline passes the optional features its (not yet fitted) ranker knows: none
        if not options.get("optional"):
            options["optional"] = optional if self.graph_kind == "items" else ()
        return matrix(self, users, items, retrievers, depth, **options)

    module.feature_names = stage_module.feature_names = with_names
    module.CandidateFeatures.matrix = with_columns

    def undo() -> None:
        module.feature_names = stage_module.feature_names = names
        module.CandidateFeatures.matrix = matrix

    return undo


def forced(
    base: QuestionConfig, method: str, seed: int, configured: bool = False
) -> QuestionConfig:
    """The question's ranker at ``seed``, always answering (no stand-down, no blend) unless
    ``configured`` (then as the shipped file configures it: validation may stand it down)."""
    values = base.model_dump()
    ranker = dict(values["ranker"] or {})
    ranker.update(label_split=label_split_for(method), seed=seed)
    if not configured:
        ranker.update(min_gain=-1.0, blend=False)
    ranker["params"] = dict(ranker.get("params") or {}) | {"seed": seed}
    values.update(ranker=ranker, fallback=[])
    return QuestionConfig.model_validate(values)


def blanked_by(variant: str, study: tuple[str, ...]) -> tuple[str, ...]:
    """The features ``variant`` leaves out: ``base`` all of ``study``, ``all`` none."""
    if variant == "all":
        return ()
    given = set()
    for part in filter(None, variant.split("+")):
        if part != "base":
            given |= set(GROUPS.get(part, (part,)))
    return tuple(name for name in study if name not in given)


def run_case(name: str, args: argparse.Namespace, work: Path, rows: list[dict]) -> None:
    _, _, _, method, _, metric, _ = CASES[name]
    train, item_features = train_side(name, work)
    base = load_pipeline_config().question("feed")
    study = tuple(args.study.split(","))
    optional = tuple(n for n in study if n in OPTIONAL_ITEM_FEATURES)
    for valid_seed in map(int, args.valid_seeds.split(",")):
        validation, description = carve_validation(train, method, 0.2, valid_seed, metric, 3000)
        cache = FitCache("feed", None, item_features)
        singles = {
            spec.key: validation.score(cache.fit(alone(base, spec), validation.fit))
            for spec in base.retrievers
        }
        best_key = max(singles, key=singles.get)
        print(f"{name} valid seed {valid_seed}: singles {singles}", flush=True)
        for seed in map(int, args.seeds.split(",")):
            for variant in args.variants.split(","):
                undo_optional = ask_for(optional)
                undo = blank_features(blanked_by(variant, study))
                began = time.process_time()
                try:
                    config = forced(base, method, seed, args.as_configured)
                    model = cache.fit(config, validation.fit)
                    value = validation.score(model)
                finally:
                    undo()
                    undo_optional()
                report = model.ranking.report if model.ranking is not None else {}
                row = {
                    "case": name,
                    "ranker": "as configured" if args.as_configured else "forced",
                    "order": report.get("order"),
                    "valid_seed": valid_seed,
                    "seed": seed,
                    "variant": variant,
                    metric: round(value, 5),
                    "best_single": best_key,
                    "over_best_single": round(value / singles[best_key], 5),
                    "fit_cpu_s": round(time.process_time() - began, 1),
                    "users": description["users"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                save(args.out, rows)  # a run stopped for time keeps its rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for case in sorted({r["case"] for r in rows}):
        mine = [r for r in rows if r["case"] == case]
        base = {
            (r["valid_seed"], r["seed"]): r["over_best_single"]
            for r in mine
            if r["variant"] == "base"
        }
        for variant in sorted({r["variant"] for r in mine}):
            runs = [r for r in mine if r["variant"] == variant]
            shares = [r["over_best_single"] for r in runs]
            gains = [
                r["over_best_single"] - base[(r["valid_seed"], r["seed"])]
                for r in runs
                if (r["valid_seed"], r["seed"]) in base
            ]
            out.append(
                {
                    "case": case,
                    "variant": variant,
                    "mean_over_best_single": round(float(np.mean(shares)), 4),
                    "runs": len(shares),
                    "mean_gain_over_base": round(float(np.mean(gains)), 4) if gains else None,
                    "gain_spread": round(float(np.ptp(gains)), 4) if gains else None,
                    "gains_above_zero": sum(g > 0 for g in gains),
                }
            )
    return out


def save(out: Path, rows: list[dict]) -> dict:
    return save_results(
        out,
        "ranker_features",
        note="validation carved from train only; the test split is never read",
        rows=rows,
        summary=summary(rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=list(CASES), required=True)
    parser.add_argument(
        "--study", default=",".join(STUDY), help="the features a variant gives back"
    )
    parser.add_argument("--variants", default="base,all")
    parser.add_argument("--seeds", default="0,1", help="ranker seeds")
    parser.add_argument("--valid-seeds", default="0,1,2", help="validation draws")
    parser.add_argument(
        "--as-configured",
        action="store_true",
        help="the ranker as the shipped file has it (stand-down, blend) rather than forced",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "ranker_features.json")
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            run_case(name, args, Path(tmp), rows)
    for row in save(args.out, rows)["summary"]:
        print(json.dumps(row))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
