"""Incremental training against retraining from scratch, day by day (MovieLens 100k).

The feed's question: after each day of new feedback, is a cheap incremental
update (``partial_fit``) as good as training from scratch, and does it drift?

Protocol. MovieLens 100k, every rating an implicit positive, split globally by
time (the first 80% of rows train the initial model). The test period (the
last 20%, 47 days) is streamed in daily batches. Each day, before the model
sees it, the feed (the serving pipeline's :class:`QuestionModel`) serves every user active that day,
and is scored on what they rated that day (nDCG@20, recall@20; full ranking
over every item known so far minus what the user already has; the library's
evaluation targets and metrics):

- returning users (feedback on earlier days) get their personalised feed;
- newcomers (first feedback that day) get the cold-start list (highest learnt
  item bias), the only thing a feed can show them.

Then the day is fed to the model, according to its arm:

- ``policy``: :class:`recgraph.retrieval.retraining.RetrainingDriver` with
  ``full_retrain_every = 7`` (incremental after each day, from scratch every
  7th cycle);
- ``incremental``: ``partial_fit`` every day, never from scratch (drifts?);
- ``full``: from scratch every day, the reference;
- ``static``: never updated, the floor (a returning user it has never seen
  gets the cold-start list).

All arms run ``biased_mf`` with the configuration ``benchmarks/feeds.py``
tuned on ML-100k's temporal validation split. Figures are per user-day
(daily means weighted by the users scored that day).

Saves ``benchmarks/results/incremental.json`` and ``incremental.png``.
Run: ``python benchmarks/incremental.py [--days N] [--variant unobserved]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from common import RESULTS_DIR, datasets_folder
from recgraph.data.interactions import Interactions, Kind
from recgraph.data.movielens import read_movielens
from recgraph.data.splits import split
from recgraph.evaluation.evaluate import evaluation_targets
from recgraph.evaluation.metrics import in_rows, metrics_from_hits
from recgraph.pipeline import History, QuestionConfig, QuestionModel
from recgraph.retrieval.biased_mf import BiasedMF
from recgraph.retrieval.retraining import RetrainingDriver

DAY = 86400
K = 20
#: One biased_mf configuration for every arm.
MODEL = {
    "factors": 13,
    "epochs": 40,
    "learning_rate": 0.003,
    "regularization": 0.01,
    "negatives": 4,
    "negative_weight": 1.0,
    "fold_in_epochs": 10,
    "partial_epochs": 3,
}
#: ``--variant unobserved``: the exact all-items zero target instead of sampled
#: negatives, at the point benchmarks/feeds.py picked on ML-100k's random
#: validation split, with a small partial step (its first steps move a row by
#: about that much). Saved as incremental_unobserved.json / .png.
VARIANTS = {
    "sampled": MODEL,
    "unobserved": {
        "factors": 13,
        "epochs": 60,
        "optimizer": "adagrad",
        "learning_rate": 0.1,
        "partial_learning_rate": 0.003,
        "regularization": 0.03,
        "negatives": 0,
        "unobserved_weight": 16.0,
        "fold_in_epochs": 10,
        "partial_epochs": 3,
    },
}
ARMS = {
    "policy": {"full_retrain_every": 7},
    "incremental": {"full_retrain_every": 0},
    "full": {"full_retrain_every": 1},
    "static": None,
}


def as_implicit(data: Interactions) -> Interactions:
    return replace(
        data,
        kind=np.full(len(data), Kind.LIKE, np.int8),
        value=np.ones(len(data), np.float32),
        _cache={},
    )


def feed_ids(model: BiasedMF, users: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """Top-K item ids per user through the serving pipeline (``-1`` users get the item bias)."""
    assert model.users is not None and model.items is not None
    config = QuestionConfig(
        retrievers=[{"name": model.name}], fallback=[], cold_start_min_interactions=1, explain_top=0
    )
    history = History.from_seen(model.seen_matrix(), model.users, model.items, "items")
    question = QuestionModel("feed", config, models={model.name: model}, history=history)
    return question.recommend(users, K, exclude=exclude).ids


def mean_metrics(ids: np.ndarray, truth: sp.csr_matrix) -> dict[str, float]:
    values = metrics_from_hits(in_rows(ids, truth), np.diff(truth.indptr), (K,))
    return {
        f"ndcg@{K}": float(np.mean(values[f"ndcg@{K}"])),
        f"recall@{K}": float(np.mean(values[f"recall@{K}"])),
    }


def score_day(model: BiasedMF, history: Interactions, day: Interactions) -> dict[str, Any]:
    """What ``model`` would have served on ``day``, before learning it, scored against it.

    Two groups, through the serving pipeline (:class:`QuestionModel`):

    - returning users (feedback on earlier days): their personalised feed,
      scored on the items they rated that day that were known before it
      (the library's evaluation targets: full ranking, nothing they had);
      a returning user still unknown to the model (the ``static`` arm) gets
      the cold-start list;
    - newcomers (first feedback that day): the cold-start list (highest
      learnt item bias), scored the same way.
    """
    targets = evaluation_targets(history, day)
    users = targets.users
    not_candidates = np.flatnonzero(~targets.candidates)
    row = {"day_rows": len(day), "users": int(len(users))}
    if len(users):
        exclude = (
            history.seen()[users] + _rows(not_candidates, len(users), history.n_items)
        ).tocsr()
        row.update(mean_metrics(feed_ids(model, users, exclude), targets.truth[users]))
        row["dropped"] = {k: int(v) for k, v in targets.dropped_by_reason.items() if v}
    else:
        row.update({f"ndcg@{K}": float("nan"), f"recall@{K}": float("nan")})
    newcomer_rows = ~history.active_users()[day.src] & targets.candidates[day.dst]
    newcomers, position = np.unique(day.src[newcomer_rows], return_inverse=True)
    row["cold_start_users"] = int(len(newcomers))
    if len(newcomers):
        truth = sp.csr_matrix(
            (np.ones(len(position), np.float32), (position.ravel(), day.dst[newcomer_rows])),
            shape=(len(newcomers), history.n_items),
        )
        truth.sum_duplicates()
        truth.data[:] = 1.0
        listing = feed_ids(model, np.array([-1]), _rows(not_candidates, 1, history.n_items))
        cold = mean_metrics(np.repeat(listing, len(newcomers), axis=0), truth)
        row.update({f"cold_start_{k}": v for k, v in cold.items()})
    return row


def _rows(columns: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """The same ``columns`` set in each of ``n_rows`` rows."""
    indptr = np.arange(n_rows + 1) * len(columns)
    data = np.ones(n_rows * len(columns), np.float32)
    return sp.csr_matrix((data, np.tile(columns, n_rows), indptr), shape=(n_rows, n_cols))


def run_arm(
    name: str,
    params: dict[str, Any],
    policy: dict[str, Any] | None,
    train: Interactions,
    days: list[Interactions],
) -> dict[str, Any]:
    model = BiasedMF(params)
    start = time.perf_counter()
    driver = RetrainingDriver(model, policy or {}, history=train, now=0)
    initial_seconds = time.perf_counter() - start
    history = train
    rows, update_seconds, actions = [], [], []
    for index, day in enumerate(days):
        rows.append(score_day(model, history, day) | {"day": index})
        history = history.concat(day)
        if policy is None:
            continue
        now = float(day.timestamp.max()) if day.timestamp is not None else index * DAY
        report = driver.add(day, now=now)
        update_seconds.append(report.seconds)
        actions.append(report.action.value)
    returning = user_weighted(rows, "ndcg@20", "users")
    cold = user_weighted(rows, "cold_start_ndcg@20", "cold_start_users")
    print(
        f"  {name:<12} nDCG@20 returning users {returning:.4f}, newcomers (cold start) "
        f"{cold:.4f}; initial fit {initial_seconds:.1f} s, updates {sum(update_seconds):.1f} s",
        flush=True,
    )
    return {
        "policy": policy,
        "days": rows,
        "actions": actions,
        "ndcg@20_returning": returning,
        "recall@20_returning": user_weighted(rows, "recall@20", "users"),
        "ndcg@20_cold_start": cold,
        "recall@20_cold_start": user_weighted(rows, "cold_start_recall@20", "cold_start_users"),
        "mean_daily_ndcg@20_returning": float(np.nanmean([r["ndcg@20"] for r in rows])),
        "initial_fit_seconds": round(initial_seconds, 2),
        "update_seconds": [round(s, 3) for s in update_seconds],
        "total_update_seconds": round(sum(update_seconds), 2),
    }


def user_weighted(rows: list[dict[str, Any]], metric: str, count: str) -> float:
    """Mean of a daily metric weighted by the users it was averaged over (= per user-day)."""
    weights = np.array([r[count] for r in rows], dtype=float)
    values = np.array([r.get(metric, 0.0) for r in rows], dtype=float)
    values = np.where(weights > 0, values, 0.0)
    return float((values * weights).sum() / max(weights.sum(), 1))


def plot(arms: dict[str, dict[str, Any]], path: Path, variant: str = "sampled") -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 9), layout="constrained")
    FigureCanvasAgg(fig)
    returning_axis, cold_axis, count_axis = fig.subplots(3, 1, sharex=True, height_ratios=(3, 2, 1))
    panels = (
        (returning_axis, "ndcg@20", "users", "ndcg@20_returning", "returning users"),
        (cold_axis, "cold_start_ndcg@20", "cold_start_users", "ndcg@20_cold_start", "newcomers"),
    )
    for axis, metric, count, summary, label in panels:
        for name, arm in arms.items():
            days = np.array([r["day"] for r in arm["days"]])
            weights = np.array([r[count] for r in arm["days"]], dtype=float)
            values = np.array([r.get(metric, 0.0) for r in arm["days"]], dtype=float)
            values = np.where(weights > 0, values, 0.0)
            # 7-day user-weighted moving average: single days have few users
            window = min(7, len(days))
            smooth = np.convolve(values * weights, np.ones(window), "valid") / np.maximum(
                np.convolve(weights, np.ones(window), "valid"), 1
            )
            shown = weights > 0
            line = axis.plot(days[shown], values[shown], alpha=0.25, linewidth=0.8)[0]
            axis.plot(
                days[window - 1 :],
                smooth,
                color=line.get_color(),
                linewidth=2,
                label=f"{name} ({arm[summary]:.3f} per user-day)",
            )
        axis.set_ylabel(f"nDCG@20, {label}")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    first = next(iter(arms.values()))["days"]
    returning = [r["users"] for r in first]
    newcomers = [r["cold_start_users"] for r in first]
    count_axis.bar(range(len(first)), returning, color="#4c72b0", label="returning")
    count_axis.bar(
        range(len(first)), newcomers, bottom=returning, color="#dd8452", label="newcomers"
    )
    count_axis.set_ylabel("users scored")
    count_axis.set_xlabel("day of the test period (scored before it is learnt)")
    count_axis.legend(fontsize=8)
    returning_axis.set_title(
        f"biased_mf ({variant} negatives) on MovieLens 100k, daily batches: "
        "thin = per day, thick = 7-day user-weighted mean"
    )
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=None, help="Only the first N days.")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="sampled")
    args = parser.parse_args()
    params = VARIANTS[args.variant]
    stem = "incremental" if args.variant == "sampled" else f"incremental_{args.variant}"
    data = as_implicit(read_movielens(datasets_folder() / "movielens-100k"))
    train, test = split(data, "temporal_global", fraction=0.2)
    assert test.timestamp is not None
    day_of_row = test.timestamp // DAY
    day_numbers = np.unique(day_of_row)
    if args.days:
        day_numbers = day_numbers[: args.days]
    days = [test.subset(day_of_row == d) for d in day_numbers]
    print(
        f"MovieLens 100k: {len(train):,} train rows, {sum(map(len, days)):,} test rows "
        f"in {len(days)} daily batches; biased_mf {json.dumps(params)}",
        flush=True,
    )
    started = time.perf_counter()
    arms = {name: run_arm(name, params, policy, train, days) for name, policy in ARMS.items()}
    total = time.perf_counter() - started
    full = arms["full"]
    for name, arm in arms.items():
        print(
            f"{name:<12} nDCG@20 returning {arm['ndcg@20_returning']:.4f} "
            f"({arm['ndcg@20_returning'] / full['ndcg@20_returning']:.1%} of full), "
            f"recall@20 {arm['recall@20_returning']:.4f}; newcomers nDCG@20 "
            f"{arm['ndcg@20_cold_start']:.4f} "
            f"({arm['ndcg@20_cold_start'] / full['ndcg@20_cold_start']:.1%} of full); "
            f"update time {arm['total_update_seconds']:.1f} s"
        )
    print(
        f"user-days scored: {sum(r['users'] for r in full['days'])} returning, "
        f"{sum(r['cold_start_users'] for r in full['days'])} newcomers"
    )
    print(f"total {total:.0f} s")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "incremental",
        "dataset": "movielens-100k",
        "protocol": "temporal_global 80/20, test period streamed in daily batches; each day scored "
        "before it is learnt (users known to the model, full ranking, k=20)",
        "model": {"name": "biased_mf", **params},
        "n_days": len(days),
        "arms": arms,
        "total_seconds": round(total, 1),
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
        },
    }
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(arms, RESULTS_DIR / f"{stem}.png", args.variant)
    print(f"saved benchmarks/results/{stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
