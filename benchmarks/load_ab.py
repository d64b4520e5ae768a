"""A/B of the served CPU per request: ``load.py`` run alternately on two checkouts, one model.

``load.py --reuse`` trains each case once into a folder and serves that model
again on later runs, so two versions of the code (``--base``, the ``src``
folder of another checkout, e.g. ``git worktree add --detach ../base main``;
and this checkout) answer with the same trained model. The runs alternate,
base then this checkout, ``--rounds`` times, back to back: on a machine shared
with other jobs the load drifts, and alternating spreads the drift over both.
The figure that survives a loaded machine is the server's CPU milliseconds per
answered request (all its processes, from /proc); latencies and the load
average are kept beside it.

Prints a table and saves ``benchmarks/results/load_ab.json``; ``load.json`` is
left with this checkout's last run.
Run: ``python benchmarks/load_ab.py --base ../base/src``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import save_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CASES = ["ego-facebook ranked", "movielens-100k ranked"]


def one_run(src: Path, cases: list[str], reuse: Path, args: argparse.Namespace) -> list[dict]:
    """``load.py`` with ``src`` on the path (the server inherits it); its results for ``cases``."""
    command = [sys.executable, str(HERE / "load.py"), "--reuse", str(reuse)]
    command += ["--workers", str(args.workers), "--rate", str(args.rate)]
    command += ["--seconds", str(args.seconds)]
    for case in cases:
        command += ["--only", case]
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    results = json.loads((RESULTS / "load.json").read_text())["results"]
    return [r for r in results if r["dataset"] in cases]


def summary(runs: list[dict], cases: list[str]) -> dict:
    """Per case and side: the runs' server CPU ms per request (each phase), their mean,
    p50 / p99 and load averages; and branch / base."""
    out: dict[str, dict] = {}
    for case in cases:
        sides: dict[str, dict] = {}
        for side in ("base", "branch"):
            phases = [
                {"round": run["round"], "phase": name, **_phase(data)}
                for run in runs
                if run["side"] == side
                for result in run["results"]
                if result["dataset"] == case
                for name, data in result["phases"].items()
            ]
            answer = [
                result["answer_cpu_ms_in_process"]["mean"]
                for run in runs
                if run["side"] == side
                for result in run["results"]
                if result["dataset"] == case
            ]
            sides[side] = {
                "server_cpu_ms_per_request_mean": round(
                    float(np.mean([p["server_cpu_ms_per_request"] for p in phases])), 2
                ),
                "answer_cpu_ms_in_process_mean": round(float(np.mean(answer)), 2),
                "phases": phases,
            }
        ratio = (
            sides["branch"]["server_cpu_ms_per_request_mean"]
            / sides["base"]["server_cpu_ms_per_request_mean"]
        )
        out[case] = {**sides, "branch_over_base_server_cpu": round(ratio, 3)}
    return out


def _phase(data: dict) -> dict:
    keys = ("server_cpu_ms_per_request", "p50_ms", "p99_ms", "errors", "load_average")
    return {key: data[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout's src folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reuse", type=Path, help="the trained cases' folder (default: temporary)")
    parser.add_argument("--only", action="append", choices=CASES, help="default: both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    cases = args.only or CASES
    reuse = args.reuse or Path(tempfile.mkdtemp(prefix="recgraph-load-ab-"))
    branch = HERE.parent / "src"
    if not all((reuse / case.replace(" ", "-")).exists() for case in cases):
        # a first run trains the cases into ``reuse``: not one of the pairs
        one_run(branch, cases, reuse, args)
    runs = []
    for round_ in range(args.rounds):
        for side, src in (("base", args.base.resolve()), ("branch", branch)):
            results = one_run(src, cases, reuse, args)
            runs.append({"round": round_, "side": side, "results": results})
            for result in results:
                figures = ", ".join(
                    f"{name} {data['server_cpu_ms_per_request']} CPU ms/req "
                    f"(p99 {data['p99_ms']} ms, load {data['load_average']})"
                    for name, data in result["phases"].items()
                )
                print(f"round {round_} {side:6} {result['dataset']:22} {figures}", flush=True)
    figures = summary(runs, cases)
    for case, data in figures.items():
        print(
            f"{case}: server CPU ms/request base {data['base']['server_cpu_ms_per_request_mean']}"
            f", branch {data['branch']['server_cpu_ms_per_request_mean']} "
            f"(x{data['branch_over_base_server_cpu']}); in-process answer base "
            f"{data['base']['answer_cpu_ms_in_process_mean']}, branch "
            f"{data['branch']['answer_cpu_ms_in_process_mean']}"
        )
    save_results(
        RESULTS / "load_ab.json",
        "load_ab",
        base=str(args.base),
        rounds=args.rounds,
        rate_rps=args.rate,
        seconds_per_phase=args.seconds,
        server_workers=args.workers,
        cases=figures,
    )
    print(f"saved {RESULTS / 'load_ab.json'}")


if __name__ == "__main__":
    main()
