"""What the served service costs a request beside the model: uvicorn, the app and the store
read, with the pipeline's answers canned, measured from outside as ``load.py`` measures it.

``serving_overhead.py`` measures the layers in one process, uvicorn excluded;
here the ranked cases of ``load.py`` (trained into ``--reuse DIR`` by an earlier
``load.py --reuse DIR`` run) are served by uvicorn with ``--workers`` processes
built by :func:`recgraph.serving.app.create_app`, each with its pipeline's answer
(``suggest_accounts`` / ``feed``) replaced by a lookup of answers computed
before the app serves, for every path the load asks. What is left of a
request's CPU is the service's own: HTTP parsing and sockets, the thread hop,
the app, the store read the handler makes, and the JSON. Open-loop load from
``load.open_loop``; figures: the server processes' user and system CPU
milliseconds per answered request (from /proc), and the generator's own CPU
per request sent. With ``--answer-threads`` given several values, each is
served in turn (the ``answer_threads`` setting; 0 computes answers on the event loop).

``benchmarks/results/serving_canned.servefast.json`` was written by an earlier
version of this script: its ``workers`` and ``seconds_per_round`` are today's
``server_workers`` and ``seconds_per_phase`` (the length of a round).

Run: ``python benchmarks/serving_canned.py --reuse DIR [--answer-threads 40 --answer-threads 0]``.
Saves ``benchmarks/results/serving_canned[.TAG].json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import load
from common import process_tree, stop_process, tree_user_system_seconds
from load_ab import save
from recgraph.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry

HERE = Path(__file__).resolve().parent
CASES = ["ego-facebook ranked", "movielens-100k ranked"]


def canned_app():
    """The app of ``$CANNED_CASE`` (in ``$CANNED_FOLDER``) with its answers canned (a uvicorn
    factory: each worker builds its own)."""
    from recgraph.serving.app import create_app
    from recgraph.settings import load_settings

    case = next(c for c in load.CASES if c["name"] == os.environ["CANNED_CASE"])
    folder = Path(os.environ["CANNED_FOLDER"])
    settings = load_settings(
        registry=str(folder / "models"),
        database_url=f"sqlite:///{folder / 'store.db'}",
        api_token="bench",
        poll_seconds=0,
    )
    app = create_app(settings)
    app.state.loader.start()
    pipeline = app.state.loader.current.pipeline
    name = "feed" if case["question"] == "feed" else "suggest_accounts"
    ask = getattr(pipeline, name)
    answers: dict = {}

    def canned(user, k=None, *, exclude=(), **options):
        key = (user, k, tuple(exclude))
        if key not in answers:
            answers[key] = ask(user, k, exclude=exclude, **options)
        return answers[key]

    setattr(pipeline, name, canned)
    _, paths = load.asked(case, pipeline.questions[case["question"]])
    for path in paths:  # what the first round of checks asks: answers computed now
        canned(pipeline.resolve_account(path.split("/")[3]), 10, exclude=[])
    return app


def serve_and_load(name: str, reuse: Path, threads: int, args: argparse.Namespace) -> list[dict]:
    case = next(c for c in load.CASES if c["name"] == name)
    folder = reuse / name.replace(" ", "-")
    pipeline = Pipeline.load(ModelRegistry(folder / "models").local_copy("v1") / "model")
    _, paths = load.asked(case, pipeline.questions[case["question"]])
    port = load.free_port()
    env = {
        **os.environ,
        "CANNED_CASE": name,
        "CANNED_FOLDER": str(folder),
        "RECGRAPH_ANSWER_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "serving_canned:canned_app"]
    command += ["--workers", str(args.workers), "--log-level", "warning", "--no-access-log"]
    # (warnings only, no access log: its stderr stays small, read if it dies starting)
    server = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True, cwd=HERE
    )
    url = f"http://127.0.0.1:{port}"
    rounds = []
    try:
        load.wait_until_serving(server, port, timeout=300)
        time.sleep(2.0)  # every worker up and its answers computed
        load.run_loop(load.open_loop(url, paths, 400, len(paths) / 400))  # warm-up
        pids = process_tree(server.pid)
        for round_ in range(args.rounds):
            before, load_before = tree_user_system_seconds(pids), os.getloadavg()[0]
            result = load.run_loop(load.open_loop(url, paths, args.rate, args.seconds))
            after = tree_user_system_seconds(pids)
            ok = max(result["ok"], 1)
            user, system = (1000 * (a - b) / ok for a, b in zip(after, before, strict=True))
            rounds.append(
                {
                    "round": round_,
                    "answer_threads": threads,
                    "server_cpu_ms_per_request": round(user + system, 3),
                    "server_user_ms_per_request": round(user, 3),
                    "server_system_ms_per_request": round(system, 3),
                    "client_cpu_ms_per_request": result["client_cpu_ms_per_request"],
                    "errors": result["errors"],
                    "p50_ms": result["p50_ms"],
                    "p99_ms": result["p99_ms"],
                    "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }
            )
            r = rounds[-1]
            print(
                f"{name:22} answer_threads {threads:>2} round {round_}: server "
                f"{r['server_cpu_ms_per_request']} CPU ms/request (user "
                f"{r['server_user_ms_per_request']}, system {r['server_system_ms_per_request']})"
                f", generator {r['client_cpu_ms_per_request']}, errors {r['errors']}, "
                f"load {r['load_average']}",
                flush=True,
            )
    finally:
        stop_process(server, timeout=20)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuse", type=Path, required=True, help="load.py --reuse's folder")
    parser.add_argument("--only", action="append", choices=CASES, help="default: both")
    parser.add_argument("--answer-threads", type=int, action="append", help="default: 40")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tag", help="saved as serving_canned.TAG.json")
    args = parser.parse_args()
    results = {
        name: [
            r
            for threads in args.answer_threads or [40]
            for r in serve_and_load(name, args.reuse, threads, args)
        ]
        for name in args.only or CASES
    }
    save("serving_canned", args, results, rate_key="rate_rps")


if __name__ == "__main__":
    main()
