"""What a ranked MovieLens feed request spends on its candidate features, in process (CPU ms).

Trains the ranked MovieLens 100k feed of ``benchmarks/load.py`` (EASE and
item-kNN, 250 candidates each, a LightGBM ranker: ~300 candidates ranked per
request) in a temporary store, then, over ``--users`` known users (each asked
once, after a warm-up on others, as ``load.request_cpu`` does):

- ``features_ms``: the ranking stage's feature rows of one request
  (``RankingStage.batch``: ``CandidateFeatures.matrix`` and the batch), CPU ms
  per request, the least and the median of ``--repeats`` passes;
- ``answer_ms``: one ``answer`` (results and reasons, HTTP aside), p50/p99;
- with ``--profile``: the functions that took most of the answers' time
  (stdlib cProfile), printed.

CPU time, not wall time: the machine is shared. Saves
``benchmarks/results/request_features.json`` (or ``--out``).
Run: ``python benchmarks/request_features.py [--users 200] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np

from common import datasets_folder, save_results
from load import RANKED_FEED, request_cpu
from recgraph.data.imports import import_movielens
from recgraph.data.store import Store
from recgraph.jobs.train import train_pipeline
from recgraph.serving.registry import ModelRegistry

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "request_features.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'store.db'}")
        import_movielens(store, datasets_folder() / "movielens-100k")
        trained = train_pipeline(store, ModelRegistry(Path(tmp) / "models"), RANKED_FEED)
        store.close()
        figures = measure(trained.pipeline.questions["feed"], args)
    save_results(args.out, "request_features", **figures)
    print(f"wrote {args.out}")


def measure(question, args: argparse.Namespace) -> dict:
    """The figures of the module docstring for a trained ranked feed question."""
    stage = question.ranking
    rng = np.random.default_rng(0)
    users = [str(u) for u in rng.choice(question.users.ids, size=2000)]
    index = np.array([question.user_index(u) for u in users[: args.users]])
    pools = [question.pool(np.array([i]), question.config.ranker.depth) for i in index]
    for pool in pools[-10:]:
        stage.batch(pool)
    passes = []
    for _ in range(args.repeats):
        began = time.process_time()
        for pool in pools:
            stage.batch(pool)
        passes.append(1000 * (time.process_time() - began) / len(pools))
    answer = request_cpu(question, users[600:], n=args.users, reasons=True)
    figures = {
        "users": len(pools),
        "candidates_per_request": round(float(np.mean([p.valid.sum() for p in pools])), 1),
        "features_ms": {"min": round(min(passes), 3), "median": round(float(np.median(passes)), 3)},
        "answer_ms": answer,
    }
    print(figures, flush=True)
    if args.profile:
        asks = [lambda u=u: question.answer(u, 10) for u in users[1000 : 1000 + args.users]]
        profile = cProfile.Profile()
        profile.enable()
        for ask in asks:
            ask()
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(30)
        print(text.getvalue())
    return figures


if __name__ == "__main__":
    main()
