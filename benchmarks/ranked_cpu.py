"""CPU milliseconds of one ranked answer in process, this checkout against another, paired.

The two ranked cases of ``load.py`` (ego-Facebook who-to-follow, MovieLens
100k feed; ~300 candidates ranked per request) are trained once and saved
(``train``); ``measure`` loads them in a fresh process and times
``question.answer(user, 10)`` (results and reasons, HTTP aside) over
``--users`` users never asked before in that process (the walks cache each
user's row), after a warm-up on 20 others, and writes every answer (ids,
scores, retrievers, reasons) beside the figures. ``ab`` runs ``measure`` alternately with
two source trees (``--base``, ``--branch``: folders put first on
``PYTHONPATH``) for ``--pairs`` pairs on the same saved models, checks that the
two trees' answers are bit-identical, and saves the per-pair figures.

CPU time of the process (``time.process_time``), not wall time: the machine
is shared; pairs alternate so both trees see the same load.
With ``--profile``, ``measure`` prints the functions that took the most time.

Run::

    python benchmarks/ranked_cpu.py train /tmp/ranked-models
    python benchmarks/ranked_cpu.py ab /tmp/ranked-models --base /work/main/src \\
        --branch src --pairs 4 --out benchmarks/results/ranked_cpu_rankcpu.json
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = {"ego-facebook": "who_to_follow", "movielens-100k": "feed"}


def train(folder: Path) -> None:
    from common import datasets_folder
    from load import CASES as LOAD_CASES
    from recgraph.data.store import Store
    from recgraph.jobs.train import train_pipeline
    from recgraph.serving.registry import ModelRegistry

    root = datasets_folder()
    for name in CASES:
        case = next(c for c in LOAD_CASES if c["name"] == f"{name} ranked")
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{Path(tmp) / 'store.db'}")
            case["load"](store, root)
            trained = train_pipeline(store, ModelRegistry(Path(tmp) / "models"), case["pipeline"])
            store.close()
            trained.pipeline.save(folder / name)
        print(f"saved {folder / name}")


def measure(folder: Path, users: int, profile: bool) -> dict:
    """Per case: CPU ms of each answer and the answers themselves."""
    from recgraph.pipeline.pipeline import Pipeline

    out = {}
    for name, question_name in CASES.items():
        question = Pipeline.load(folder / name).questions[question_name]
        assert question.ranked, f"{name}: the saved pipeline is not ranked"
        ids = [str(u) for u in np.random.default_rng(0).permutation(question.users.ids)]
        for user in ids[users : users + 20]:
            question.answer(user, 10)
        asked = ids[:users]
        times, answers = [], []
        profiler = cProfile.Profile() if profile else None
        for user in asked:
            if profiler:
                profiler.enable()
            start = time.process_time()
            answer = question.answer(user, 10)
            times.append(1000 * (time.process_time() - start))
            if profiler:
                profiler.disable()
            answers.append(
                [
                    [r.id, r.score.hex(), list(r.retrievers), r.reason_code, r.reason, r.via,
                     r.fallback, r.label]
                    for r in answer.results
                ]
                + [answer.known, answer.cold]
            )  # fmt: skip
        if profiler:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
            print(f"== {name}\n{text.getvalue()}", file=sys.stderr)
        out[name] = {
            "mean_ms": round(float(np.mean(times)), 3),
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "answers": answers,
        }
    return out


def run_tree(src: str, folder: Path, users: int) -> dict:
    """``measure`` in a fresh process importing recgraph from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    done = subprocess.run(
        [sys.executable, __file__, "measure", str(folder), "--users", str(users)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def ab(args: argparse.Namespace) -> None:
    from common import save_results

    pairs = []
    identical = True
    for pair in range(args.pairs):
        order = ["base", "branch"] if pair % 2 == 0 else ["branch", "base"]
        got = {way: run_tree(getattr(args, way), args.folder, args.users) for way in order}
        for name in CASES:
            same = got["base"][name]["answers"] == got["branch"][name]["answers"]
            identical &= same
            row = {
                "pair": pair,
                "case": name,
                "load_average": os.getloadavg()[0],
                "identical_answers": same,
                **{
                    f"{way}_{stat}": got[way][name][stat]
                    for way in ("base", "branch")
                    for stat in ("mean_ms", "p50_ms", "p99_ms")
                },
            }
            pairs.append(row)
            print(json.dumps(row))
    summary = {
        name: {
            f"{way}_mean_ms_median": round(
                float(np.median([r[f"{way}_mean_ms"] for r in pairs if r["case"] == name])), 3
            )
            for way in ("base", "branch")
        }
        for name in CASES
    }
    print(json.dumps(summary, indent=1))
    save_results(
        args.out,
        "ranked_cpu",
        how="CPU ms (time.process_time) per question.answer(user, 10), in process, fresh users, "
        "base and branch trees alternated in fresh processes on the same saved models",
        base=args.base,
        branch=args.branch,
        users=args.users,
        identical_answers=identical,
        summary=summary,
        pairs=pairs,
    )
    print(f"wrote {args.out}; answers identical: {identical}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("folder", type=Path)
    p = sub.add_parser("measure")
    p.add_argument("folder", type=Path)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--profile", action="store_true")
    p = sub.add_parser("ab")
    p.add_argument("folder", type=Path)
    p.add_argument("--base", default="/work/main/src")
    p.add_argument("--branch", default=str(HERE.parent / "src"))
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--out", type=Path, default=HERE / "results" / "ranked_cpu_rankcpu.json")
    args = parser.parse_args()
    if args.command == "train":
        train(args.folder)
    elif args.command == "measure":
        print(json.dumps(measure(args.folder, args.users, args.profile)))
    else:
        ab(args)


if __name__ == "__main__":
    main()
