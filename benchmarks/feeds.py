"""What to read: every item model, with its DEFAULTS and tuned, against popularity and peers.

Cases: MovieLens 100k and latest-small, every rating an implicit like
(binary), split random 80/20 per user (seed 0) and global temporal 80/20; and
``listening-counts``, a play-count log GENERATED to resemble public listening
data (:mod:`recgraph.data.listening`, seed 0: 1,900 users x 15,000 artists,
heavy-tailed plays per user-artist, Zipf artist popularity, a fifth of the
users with short lists; no bundled dataset has counts), read as
``value_kind=count`` and split random 80/20 per user. Splits by ``recgraph
split``; every figure by ``recgraph evaluate`` on the split files (the count
case needs ``--value count``; while the installed CLI lacks it, that case is
split and scored by the same library functions, and its ``route`` says so).

Two tables per case, saved side by side:

1. DEFAULTS: every model with its default parameters, next to popularity (the
   defaults were chosen on validation splits of these cases by
   ``benchmarks/defaults_study.py``; ``recgraph models`` says so per model);
2. TUNED-ON-VALIDATION (a separate table, never mixed with the defaults): a small grid per model, each point fitted on a validation split
   carved from train only (:func:`recgraph.data.splits.validation_split`,
   20% of train, same method as the outer split) and scored by nDCG@20,
   within a time budget per model; the best point per model is then scored on
   test by ``recgraph evaluate``. Next to its fit times, ``implicit``'s own
   models fitted bare on the same matrix with the same parameters.

Targets: with its defaults every model beats popularity on every target case
(issue 11: the shared splits ML-100k random and global temporal, latest-small
random, and the count case; latest-small temporal is shown, outside the target); tuned, the best model at least matches the best of EASE / ALS / item-kNN
and ``biased_mf`` is within 10% of that best on nDCG@20 (issue 5).

Saves ``benchmarks/results/feeds.json`` (both tables), ``feeds.md``,
``feeds.png`` (tuned) and ``feeds_defaults.png`` (defaults against popularity).
Run: ``python benchmarks/feeds.py [--quick] [--only DATASET:SPLIT] [--defaults-only]``
(``--quick``: ML-100k random only and one point per grid, a smoke test that
saves nothing; ``--only``: rerun one case and replace it in the saved
``feeds.json``; ``--defaults-only``: no tuning, the tuned table kept from the
saved run). Needs ../shared/datasets or ``RECGRAPH_DATASETS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from common import RESULTS_DIR, datasets_folder, run_cli
from feeds_report import markdown, plot_defaults, print_summary
from recgraph.data.interactions import Interactions, Kind, ValueKind
from recgraph.data.listening import generate_listening
from recgraph.data.movielens import read_movielens
from recgraph.data.splits import split, validation_split
from recgraph.evaluation import evaluate
from recgraph.retrieval.factors import positive_matrix
from recgraph.retrieval.registry import create_retriever

KS = (10, 20, 50)
TUNE_METRIC = "ndcg@20"
DATASETS = ("movielens-100k", "movielens-latest-small")
SPLITS = ("random_per_user", "temporal_global")
#: The generated play-count case (recgraph.data.listening, seed 0), random split only:
#: listening totals have no time.
COUNT_DATASET = "listening-counts"
CASES = [(d, m) for d in DATASETS for m in SPLITS] + [(COUNT_DATASET, "random_per_user")]
#: Where issue 11 wants every model, with its defaults, above popularity: the
#: shared splits (ML-100k random and global temporal, latest-small random) and
#: the count-valued case. Latest-small global temporal is scored and shown too,
#: marked as outside the target.
TARGET_CASES = [
    ("movielens-100k", "random_per_user"),
    ("movielens-100k", "temporal_global"),
    ("movielens-latest-small", "random_per_user"),
    (COUNT_DATASET, "random_per_user"),
]
#: How a case was scored when the installed ``recgraph`` cannot read play counts yet.
LIBRARY_ROUTE = "library split + evaluate (recgraph split/evaluate --value not installed)"
#: Seconds of tuning per model and (dataset, split): the grid stops after the
#: point that crosses it (so at least one point is always tried). The machine
#: is shared; these keep the whole run to minutes.
TUNE_BUDGET_SECONDS = {"biased_mf": 120.0, "ease": 60.0}
DEFAULT_BUDGET_SECONDS = 30.0
PEERS = ("ease", "als", "item_knn")

#: The grids, most promising first (the budget may cut the tail). They were
#: set from a look at ML-100k / latest-small validation splits only.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular": [{}],
    "ease": [{"regularization": lam} for lam in (500.0, 200.0, 1000.0)],
    "item_knn": [
        {"similarity": sim, "neighbours": k} for sim in ("bm25", "cosine") for k in (100, 30)
    ],
    "als": [
        {"factors": f, "regularization": reg, "alpha": alpha, "iterations": 15}
        for f, reg, alpha in (
            (16, 10.0, 5.0),
            (32, 10.0, 1.0),
            (16, 1.0, 5.0),
            (32, 30.0, 2.0),
            (16, 30.0, 5.0),
            (64, 10.0, 1.0),
        )
    ],
    "bpr": [
        {"factors": f, "learning_rate": lr, "regularization": reg, "iterations": iterations}
        for f, lr, reg, iterations in (
            (64, 0.02, 0.03, 50),
            (128, 0.01, 0.01, 100),
            (64, 0.05, 0.01, 100),
        )
    ],
    "biased_mf": [
        # unobserved_weight (every unseen pair a zero through the item
        # Gramian, no sampling): 0.2304 validation nDCG@20 on latest-small at
        # K=32 and 0.2277 at K=13, against 0.2256 for the best sampled point,
        # at a quarter of the fit time (benchmarks/biased_mf_tuning.py).
        {
            "factors": factors,
            "learning_rate": 0.1,
            "regularization": reg,
            "optimizer": "adagrad",
            "epochs": 60,
            "negatives": 0,
            "unobserved_weight": alpha,
        }
        for factors, reg, alpha in (
            (32, 0.1, 48.0),
            (13, 0.03, 64.0),
            (13, 0.01, 48.0),
            (32, 0.03, 48.0),
            (13, 0.03, 16.0),
        )
    ]
    + [
        {
            "factors": 13,
            "learning_rate": lr,
            "regularization": 0.01,
            "epochs": epochs,
            "negatives": negatives,
            "negative_weight": weight,
            **({"optimizer": "adagrad"} if lr > 0.01 else {}),
        }
        for lr, negatives, weight, epochs in (
            # Adagrad: +4% (100k) to +9% (latest-small) validation nDCG@20 over
            # Adam (benchmarks/biased_mf_tuning.py); run before Adam's points.
            (0.1, 16, 4.0, 30),
            (0.05, 8, 2.0, 30),
            (0.003, 4, 4.0, 40),
            (0.003, 16, 4.0, 20),
            (0.003, 4, 8.0, 40),
            (0.003, 4, 1.0, 40),
        )
    ],
}


#: The models a run scores (``--models``; popularity always): the others'
#: default figures are kept from the saved run.
MODELS: list[str] = list(GRIDS)


def as_implicit(data: Interactions) -> Interactions:
    """Every rating a like of value 1 (binary: ``value_kind=none``): the implicit-feedback protocol."""
    return replace(
        data,
        kind=np.full(len(data), Kind.LIKE, np.int8),
        value=np.ones(len(data), np.float32),
        value_kind=np.full(len(data), ValueKind.NONE, np.int8),
        _cache={},
    )


def write_table(data: Interactions, path: Path) -> None:
    """``user,item[,value][,timestamp]``: the layout ``recgraph split`` and ``evaluate`` read.

    ``value`` (play counts, read with ``--value count``) only for count-valued data.
    """
    import pandas as pd

    columns = {"user": data.users.external(data.src), "item": data.items.external(data.dst)}
    if (data.value_kind == ValueKind.COUNT).any():
        columns["value"] = data.value.astype(np.int64)
    if data.timestamp is not None:
        columns["timestamp"] = data.timestamp
    pd.DataFrame(columns).to_csv(path, index=False)


def tune(
    name: str, grid: list[dict[str, Any]], fit: Interactions, validation: Interactions
) -> dict[str, Any]:
    """Best grid point by validation nDCG@20, within the time budget."""
    tried = []
    started = time.perf_counter()
    for params in grid:
        report = evaluate([create_retriever(name, params)], fit, validation, (20,), progress=False)
        result = report.results[0]
        tried.append(
            {
                "params": params,
                TUNE_METRIC: round(result.metrics[TUNE_METRIC], 4),
                "fit_seconds": round(result.fit_seconds, 2),
            }
        )
        print(
            f"    {name:<10} {json.dumps(params):<95} val {TUNE_METRIC} "
            f"{result.metrics[TUNE_METRIC]:.4f}  fit {result.fit_seconds:6.1f} s",
            flush=True,
        )
        if time.perf_counter() - started > TUNE_BUDGET_SECONDS.get(name, DEFAULT_BUDGET_SECONDS):
            break
    best = max(tried, key=lambda t: t[TUNE_METRIC])
    return {
        "best": best["params"],
        "tried": tried,
        "grid_size": len(grid),
        "seconds": round(time.perf_counter() - started, 1),
    }


def implicit_fit_seconds(train: Interactions, tuned: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Bare ``implicit`` fits on the same matrix and parameters (no recgraph wrapper)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
    from implicit.utils import ParameterWarning
    from threadpoolctl import threadpool_limits

    matrix = positive_matrix(train, binary=True)
    seconds: dict[str, float] = {}
    als = tuned["als"]
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=als["factors"],
            regularization=als["regularization"],
            alpha=als["alpha"],
            iterations=als["iterations"],
            random_state=0,
        )
        # the very matrix recgraph's ALS hands implicit (its weighting, factors.bm25_weight
        # for bm25, over the users and items with a pair)
        weighted = create_retriever("als", als).implicit_input(train)
        start = time.perf_counter()
        model.fit(weighted, show_progress=False)
        seconds["als"] = time.perf_counter() - start
    bpr = tuned["bpr"]
    model = BayesianPersonalizedRanking(
        factors=bpr["factors"],
        learning_rate=bpr["learning_rate"],
        regularization=bpr["regularization"],
        iterations=bpr["iterations"],
        num_threads=1,
        random_state=0,
    )
    start = time.perf_counter()
    model.fit(matrix, show_progress=False)
    seconds["bpr"] = time.perf_counter() - start
    knn = tuned["item_knn"]
    klass = BM25Recommender if knn["similarity"] == "bm25" else CosineRecommender
    model = klass(K=knn["neighbours"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParameterWarning)  # BM25's own COO matrix
        model.fit(positive_matrix(train), show_progress=False)
    seconds["item_knn"] = time.perf_counter() - start
    return {k: round(v, 3) for k, v in seconds.items()}


def cli_takes_value() -> bool:
    """Whether ``recgraph split`` / ``evaluate`` take ``--value`` (the data part's option)."""
    return "--value" in run_cli(["split", "--help"])


def value_args(dataset: str) -> list[str]:
    """``--value count`` for the play-count case, nothing for the binary ones."""
    return ["--value", "count"] if dataset == COUNT_DATASET else []


def split_case(
    dataset: str, method: str, source: Path, data: Interactions, work: Path
) -> tuple[Path, Path, Interactions, Interactions, str]:
    """Train and test files by ``recgraph split`` (or, when the installed CLI cannot yet
    read play counts, the same split by the library), read back."""
    train_path, test_path = (
        work / f"{dataset}.{method}.train.csv",
        work / f"{dataset}.{method}.test.csv",
    )
    if dataset != COUNT_DATASET or cli_takes_value():
        run_cli(
            ["split", str(source), "--kind", "items", "--method", method, "--fraction", "0.2"]
            + ["--seed", "0", "--train", str(train_path), "--test", str(test_path)]
            + value_args(dataset)
        )
        options = {"value_kind": "count"} if dataset == COUNT_DATASET else {}
        train = Interactions.read_table(str(train_path), "items", **options)
        test = Interactions.read_table(
            str(test_path), "items", users=train.users, items=train.items, **options
        )
        return train_path, test_path, train, test, "recgraph split + recgraph evaluate"
    train, test = split(data, method, fraction=0.2, seed=0)
    write_table(train, train_path)
    write_table(test, test_path)
    return train_path, test_path, train, test, LIBRARY_ROUTE


def evaluate_case(
    dataset: str,
    paths: tuple[Path, Path],
    data: tuple[Interactions, Interactions],
    route: str,
    params: dict[str, dict[str, Any]],
    report_path: Path,
) -> tuple[dict[str, Any], str, float]:
    """Every model of ``GRIDS`` with ``params`` (empty: the defaults), scored on test."""
    started = time.perf_counter()
    if route == LIBRARY_ROUTE:
        report = evaluate(list(MODELS), *data, KS, params=params, progress=False)
        report.to_json(report_path)
        table = "\n".join(
            f"  {r.model:<10} "
            + "  ".join(f"{k} {v:.4f}" for k, v in r.metrics.items() if "@20" in k)
            for r in report.results
        )
    else:
        params_path = report_path.with_suffix(".params.toml")
        params_path.write_text(tomli_w.dumps({k: v for k, v in params.items() if v}))
        table = run_cli(
            ["evaluate", "--train", str(paths[0]), "--test", str(paths[1]), "--kind", "items"]
            + [arg for name in MODELS for arg in ("--model", name)]
            + ["--params", str(params_path), "--k", ",".join(map(str, KS))]
            + ["--json", str(report_path)]
            + value_args(dataset)
        )
    return json.loads(report_path.read_text()), table, time.perf_counter() - started


#: ``--paired``: each default's test nDCG@20 against popularity's, user by user.
PAIRED = [False]


def paired_with_popular(train: Interactions, test: Interactions) -> dict[str, dict[str, Any]]:
    """Each model of ``MODELS`` (defaults) minus popularity, test nDCG@20 user by user.

    ``diff`` ± ``se`` (standard error of the mean difference), and how many users
    each side wins. Run on the split files as read back (what ``recgraph
    evaluate`` sees) and on the same split made in memory from the source: the
    same users and targets scored, but the source's id maps also hold the items
    and users only the test side has. A model that reads the catalogue's size
    differs between the two: item_knn's BM25 did (0.1577 against 0.1592 on the
    ML-100k temporal test, 0.1442 against 0.1331 on latest-small's) until it
    counted only the items that have pairs; both routes now agree.
    """
    report = evaluate(list(MODELS), train, test, (20,), progress=False)
    values = {r.model: r.per_user[TUNE_METRIC] for r in report.results}
    out = {}
    for name, per_user in values.items():
        if name == "popular":
            continue
        delta = per_user - values["popular"]
        se = float(delta.std(ddof=1) / np.sqrt(len(delta))) if len(delta) > 1 else 0.0
        out[name] = {
            "model": round(float(per_user.mean()), 4),
            "popular": round(float(values["popular"].mean()), 4),
            "diff": round(float(delta.mean()), 4),
            "se": round(se, 4),
            "users": len(delta),
            "better": int((delta > 0).sum()),
            "worse": int((delta < 0).sum()),
        }
        out[name]["text"] = (
            f"{out[name]['model']:.4f} vs {out[name]['popular']:.4f}: "
            f"{out[name]['diff']:+.4f} ± {se:.4f} ({out[name]['better']} users better, "
            f"{out[name]['worse']} worse of {len(delta)})"
        )
    return out


def paired_markdown(cases: list[dict[str, Any]]) -> str:
    """``--paired``'s figures: each default minus popularity on test, user by user."""
    rows = [
        f"| {c['dataset']} {c['split']} | {order} | {model} | {g['model']:.4f} | {g['popular']:.4f} "
        f"| {g['diff']:+.4f} ± {g['se']:.4f} | {g['better']} / {g['worse']} / {g['users']} |"
        for c in cases
        for order, gaps in c.get("defaults_paired_with_popular", {}).items()
        for model, g in gaps.items()
    ]
    if not rows:
        return ""
    return (
        "\n".join(
            [
                "# DEFAULTS against popularity on test, user by user (nDCG@20)",
                "",
                "Produced by `benchmarks/feeds.py --defaults-only --paired` (see "
                "`paired_with_popular`: the split files as `recgraph evaluate` reads them, and the "
                "same split in memory, whose id maps also hold the test side's own items and users).",
                "",
                "| case | ids | model | model | popular | gain ± se | users better / worse / scored |",
                "|---|---|---|---|---|---|---|",
                *rows,
            ]
        )
        + "\n"
    )


def run_case(
    dataset: str, method: str, source: Path, data: Interactions, work: Path, with_tuning: bool
) -> dict[str, Any]:
    """The defaults-only table of one case and, ``with_tuning``, the tuned one."""
    print(f"\n== {dataset}, {method}", flush=True)
    train_path, test_path, train, test, route = split_case(dataset, method, source, data, work)
    paths, pair = (train_path, test_path), (train, test)
    report, table, seconds = evaluate_case(
        dataset, paths, pair, route, {}, work / f"{dataset}.{method}.defaults.json"
    )
    print("  defaults:\n" + table.rstrip())
    defaults = {
        r["model"]: {
            "metrics": {k: round(v, 4) for k, v in r["metrics"].items()},
            "fit_seconds": round(r["fit_seconds"], 3),
        }
        for r in report["results"]
    }
    case = {
        "dataset": dataset,
        "split": method,
        "route": route,
        "train_rows": report["n_train_rows"],
        "test_rows": report["n_test_rows"],
        "dropped_test_rows": sum(report["dropped_by_reason"].values()),
        "users_scored": report.get("n_users"),
        "candidates": report["n_candidates"],
        "defaults": defaults,
        "defaults_evaluate_seconds": round(seconds, 1),
        "target_case": (dataset, method) in TARGET_CASES,
        "defaults_beat_popular": {
            name: r["metrics"][TUNE_METRIC] > defaults["popular"]["metrics"][TUNE_METRIC]
            for name, r in defaults.items()
            if name != "popular"
        },
    }
    if PAIRED[0]:
        case["defaults_paired_with_popular"] = {
            "split files": paired_with_popular(train, test),
            "in-memory split, full id maps": paired_with_popular(
                *split(data, method, fraction=0.2, seed=0)
            ),
        }
        for order, gaps in case["defaults_paired_with_popular"].items():
            print(f"  {order}: " + "; ".join(f"{m} {g['text']}" for m, g in gaps.items()))
    if not with_tuning:
        return case
    fit, validation = validation_split(train, method, fraction=0.2, seed=1)
    print(f"  tuning on {len(fit):,} rows, validating on {len(validation):,}", flush=True)
    tuning = {name: tune(name, grid, fit, validation) for name, grid in GRIDS.items()}
    tuned = {name: t["best"] for name, t in tuning.items()}
    report, table, seconds = evaluate_case(
        dataset, paths, pair, route, tuned, work / f"{dataset}.{method}.json"
    )
    print("  tuned:\n" + table.rstrip())
    results = {
        r["model"]: {
            "params": tuned[r["model"]],
            "validation_" + TUNE_METRIC: max(t[TUNE_METRIC] for t in tuning[r["model"]]["tried"]),
            "metrics": {k: round(v, 4) for k, v in r["metrics"].items()},
            "fit_seconds": round(r["fit_seconds"], 3),
        }
        for r in report["results"]
    }
    case.update(
        results=results,
        implicit_fit_seconds=implicit_fit_seconds(train, tuned),
        tuning=tuning,
        evaluate_command_seconds=round(seconds, 1),
        targets=targets(results),
    )
    return case


def targets(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's two targets on test nDCG@20."""
    ndcg = {name: r["metrics"][TUNE_METRIC] for name, r in results.items()}
    ours = [m for m in ndcg if m != "popular"]
    best_model = max(ours, key=ndcg.get)
    best_peer = max(PEERS, key=ndcg.get)
    ratio = ndcg["biased_mf"] / ndcg[best_peer]
    return {
        "best_model": best_model,
        "best_peer": best_peer,
        "best_matches_peers": ndcg[best_model] >= ndcg[best_peer],
        "biased_mf_over_best_peer": round(ratio, 4),
        "biased_mf_within_10pct": ratio >= 0.9,
    }


def plot(cases: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.2 * len(cases)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(cases), 2, squeeze=False)
    for row, case in zip(axes, cases, strict=True):
        names = list(case["results"])
        for axis, metric in zip(row, ("ndcg@20", "recall@20"), strict=True):
            values = [case["results"][n]["metrics"][metric] for n in names]
            colours = ["#c44e52" if n == "biased_mf" else "#4c72b0" for n in names]
            axis.barh(names, values, color=colours)
            for y, value in enumerate(values):
                axis.text(value, y, f" {value:.3f}", va="center", fontsize=8)
            axis.set_title(f"{case['dataset']}, {case['split']}: test {metric}")
            axis.set_xlim(0, max(values) * 1.2)
            axis.invert_yaxis()
            axis.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ML-100k, one point per grid")
    parser.add_argument(
        "--only",
        help="one case, e.g. movielens-latest-small:random_per_user: rerun it and replace "
        "it in the saved feeds.json (the other cases are kept as they were)",
    )
    parser.add_argument(
        "--models",
        help="comma-separated: score only these (and popular) with --defaults-only; the other "
        "models' default figures are kept from the saved feeds.json",
    )
    parser.add_argument(
        "--defaults-only",
        action="store_true",
        help="score the defaults only; keep the tuned table saved in feeds.json",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="with --defaults-only: each default against popularity user by user (diff ± se), "
        "on the split files and on the same split in memory (full id maps)",
    )
    args = parser.parse_args()
    PAIRED[0] = args.paired
    if args.models:
        if not args.defaults_only:
            sys.exit("--models needs --defaults-only (the tuned table scores every model)")
        MODELS[:] = ["popular"] + [m for m in args.models.split(",") if m and m != "popular"]
    cases = CASES[:1] if args.quick else CASES
    if args.only is not None:
        only = tuple(args.only.split(":"))
        if only not in CASES:
            sys.exit(f"--only wants DATASET:SPLIT, one of {[':'.join(c) for c in CASES]}")
        cases = [only]
    if args.quick:
        for name in GRIDS:
            GRIDS[name] = GRIDS[name][:1]
        TUNE_BUDGET_SECONDS.clear()

    saved_path = RESULTS_DIR / "feeds.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {"cases": []}
    folder = datasets_folder()
    started = time.perf_counter()
    fresh = []
    with tempfile.TemporaryDirectory(prefix="recgraph-feeds-") as tmp:
        work = Path(tmp)
        for dataset in dict.fromkeys(d for d, _ in cases):
            source = work / f"{dataset}.csv"
            if dataset == COUNT_DATASET:
                data = generate_listening(seed=0)
            else:
                data = as_implicit(read_movielens(folder / dataset))
            write_table(data, source)
            for method in (m for d, m in cases if d == dataset):
                fresh.append(run_case(dataset, method, source, data, work, not args.defaults_only))
    total = time.perf_counter() - started

    # keep every saved case not rerun, and the tuned table of a case rerun defaults-only
    by_case = {(c["dataset"], c["split"]): c for c in saved["cases"]}
    for case in fresh:
        old = by_case.get((case["dataset"], case["split"]), {})
        kept = [m for m in old.get("defaults", {}) if m not in case["defaults"]]
        if kept:  # models this run did not score (--models): their saved figures
            case["defaults"] = {
                m: case["defaults"].get(m) or old["defaults"][m] for m in old["defaults"]
            }
            case["defaults_kept_from_earlier_run"] = kept
            popular = case["defaults"]["popular"]["metrics"][TUNE_METRIC]
            case["defaults_beat_popular"] = {
                m: r["metrics"][TUNE_METRIC] > popular
                for m, r in case["defaults"].items()
                if m != "popular"
            }
        if "results" not in case and "results" in old:
            for key in ("results", "implicit_fit_seconds", "tuning", "targets"):
                case[key] = old[key]
            case["evaluate_command_seconds"] = old.get("evaluate_command_seconds")
            case["tuned_table_from_earlier_run"] = True
        by_case[(case["dataset"], case["split"])] = case
    all_cases = [by_case[c] for c in CASES if c in by_case]
    print_summary(all_cases)
    print(f"total {total:.0f} s")
    if args.quick:
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    below = {
        f"{c['dataset']}:{c['split']}": [
            m for m, ok in c["defaults_beat_popular"].items() if not ok
        ]
        for c in all_cases
        if c.get("target_case") and "defaults_beat_popular" in c
    }
    payload = {
        "benchmark": "feeds",
        "protocol": "MovieLens: all ratings as implicit positives (binary); listening-counts: "
        "generated play counts (recgraph.data.listening, seed 0) read as value_kind=count; "
        "recgraph split --fraction 0.2 --seed 0; DEFAULTS table: every model with its "
        "default parameters; TUNED table: tuning on validation_split(train, fraction=0.2, "
        "seed=1) by nDCG@20, then recgraph evaluate on test",
        "ks": list(KS),
        "tune_budget_seconds_per_model": {
            name: TUNE_BUDGET_SECONDS.get(name, DEFAULT_BUDGET_SECONDS) for name in GRIDS
        },
        "target_cases": [f"{d}:{m}" for d, m in TARGET_CASES],
        "defaults_below_popular_on_target_cases": below,
        "defaults_beat_popular_everywhere": not any(below.values()),
        "tuned_table": "results (per case) is TUNED-ON-VALIDATION: each model's best grid "
        "point on validation_split(train), never on test; the defaults are in 'defaults'",
        "cases": all_cases,
        "last_run_seconds": round(total, 1),
        "last_run_cases": [f"{c['dataset']}:{c['split']}" for c in fresh],
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
            "note": "shared 2-core machine; timings depend on the load",
        },
    }
    saved_path.write_text(json.dumps(payload, indent=2) + "\n")
    tuned_cases = [c for c in all_cases if "results" in c]
    if tuned_cases:
        plot(tuned_cases, RESULTS_DIR / "feeds.png")
    plot_defaults(all_cases, RESULTS_DIR / "feeds_defaults.png")
    (RESULTS_DIR / "feeds.md").write_text(markdown(all_cases))
    paired = paired_markdown(all_cases)
    if paired:
        (RESULTS_DIR / "feeds_paired.md").write_text(paired)
    print("saved benchmarks/results/feeds.json, feeds.md, feeds.png and feeds_defaults.png")


if __name__ == "__main__":
    main()
