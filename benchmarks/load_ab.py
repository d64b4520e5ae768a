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

``--paired`` serves both at once instead, base and this checkout side by side,
and sends each the same requests at the same moments (``--rate`` each, steady
phases only): at a load average of 20 alternated runs of the same code differed
by 15-20%, side-by-side phases by a few per cent. Saved as ``load_ab_paired.json``.
``--base-env`` / ``--branch-env NAME=VALUE`` set a variable of one side's server
(in either mode; with ``--base`` this very checkout's ``src``, two settings compare).

Prints a table and saves ``benchmarks/results/load_ab.json`` (``load_ab.TAG.json`` with
``--tag``); ``load.json`` is
left with this checkout's last run.
Run: ``python benchmarks/load_ab.py --base ../base/src [--paired --rate 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import load
from common import process_tree, save_results, stop_process, tree_cpu_seconds
from load_workers import stderr_tail

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CASES = ["ego-facebook ranked", "movielens-100k ranked"]


def one_run(
    src: Path,
    cases: list[str],
    reuse: Path,
    args: argparse.Namespace,
    extra_env: dict[str, str] | None = None,
) -> list[dict]:
    """``load.py`` with ``src`` on the path and ``extra_env`` set (the server inherits both);
    its results for ``cases``."""
    command = [sys.executable, str(HERE / "load.py"), "--reuse", str(reuse)]
    command += ["--workers", str(args.workers), "--rate", str(args.rate)]
    command += ["--seconds", str(args.seconds)]
    for case in cases:
        command += ["--only", case]
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(src)}
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


def side_env(pairs: list[str] | None) -> dict[str, str]:
    """``--base-env`` / ``--branch-env`` values (``NAME=VALUE``) as a mapping."""
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            sys.exit(f"expected NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def sides_of(args: argparse.Namespace) -> dict:
    """What the saved figures say of the two sides."""
    return {
        "base": str(args.base),
        "base_env": side_env(args.base_env),
        "branch_env": side_env(args.branch_env),
    }


def paired(sides: dict[str, Path], cases: list[str], reuse: Path, args) -> dict:
    """Each case served by every side at once, the same requests sent to each at the same
    moments; per phase and side: server CPU ms per answered request, p50 / p99."""
    from recgraph.pipeline import Pipeline
    from recgraph.serving.registry import ModelRegistry

    out: dict[str, dict] = {}
    for name in cases:
        case = next(c for c in load.CASES if c["name"] == name)
        folder = reuse / name.replace(" ", "-")
        registry = ModelRegistry(folder / "models")
        registry.set_current("v1")
        pipeline = Pipeline.load(registry.local_copy("v1") / "model")
        _, paths = load.asked(case, pipeline.questions[case["question"]])
        servers, urls, stderr = {}, {}, {}
        try:
            for side, src in sides.items():
                port = load.free_port()
                extra = side_env(getattr(args, f"{side}_env", None))
                env = {**os.environ, **extra, "PYTHONPATH": str(src)}
                db = f"sqlite:///{folder / 'store.db'}"
                stderr[side] = folder / f"server-{side}.stderr"
                servers[side] = load.start_server(
                    registry.root, db, port, args.workers, stderr[side], env=env
                )
                urls[side] = f"http://127.0.0.1:{port}"
            for url in urls.values():
                load.run_loop(load.warm_up(url, paths))
                load.run_loop(load.warm_up(url, paths[50:]))
            pids = {side: process_tree(server.pid) for side, server in servers.items()}
            phases = []
            for round_ in range(args.rounds):
                before = {side: tree_cpu_seconds(pids[side]) for side in sides}
                load_before = os.getloadavg()[0]

                async def together(urls=urls, paths=paths):
                    return await asyncio.gather(
                        *[load.open_loop(u, paths, args.rate, args.seconds) for u in urls.values()]
                    )

                results = dict(zip(sides, load.run_loop(together()), strict=True))
                # one generator process drove both sides: its CPU (each side's figure is the
                # whole process's over that side's requests) over both sides' requests, once
                client_ms = np.mean(
                    [r["client_cpu_ms_per_request"] * r["requests"] for r in results.values()]
                )
                requests = sum(r["requests"] for r in results.values())
                phase = {
                    "round": round_,
                    "client_cpu_ms_per_request": round(float(client_ms) / max(requests, 1), 3),
                }
                for side, result in results.items():
                    cpu = tree_cpu_seconds(pids[side]) - before[side]
                    phase[side] = {
                        "server_cpu_ms_per_request": round(1000 * cpu / max(result["ok"], 1), 3),
                        "errors": result["errors"],
                        "p50_ms": result["p50_ms"],
                        "p99_ms": result["p99_ms"],
                    }
                phase["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                phase["branch_over_base"] = round(
                    phase["branch"]["server_cpu_ms_per_request"]
                    / phase["base"]["server_cpu_ms_per_request"],
                    3,
                )
                phases.append(phase)
                print(
                    f"{name:22} round {round_}: server CPU ms/request base "
                    f"{phase['base']['server_cpu_ms_per_request']}, branch "
                    f"{phase['branch']['server_cpu_ms_per_request']} "
                    f"(x{phase['branch_over_base']}, load {phase['load_average']})",
                    flush=True,
                )
        except Exception:  # (a server that failed to start said so in its error)
            for side in servers:
                print(f"{side} server's stderr ends:\n{stderr_tail(stderr[side])}", flush=True)
            raise
        finally:
            for server in servers.values():
                stop_process(server, timeout=20)
        ratios = [p["branch_over_base"] for p in phases]
        out[name] = {
            side: {
                "server_cpu_ms_per_request_mean": round(
                    float(np.mean([p[side]["server_cpu_ms_per_request"] for p in phases])), 3
                )
            }
            for side in sides
        }
        out[name].update(branch_over_base_mean=round(float(np.mean(ratios)), 3), phases=phases)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout's src folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reuse", type=Path, help="the trained cases' folder (default: temporary)")
    parser.add_argument("--only", action="append", choices=CASES, help="default: both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--paired", action="store_true", help="serve both sides at once (steady phases only)"
    )
    parser.add_argument("--tag", help="saved as NAME.TAG.json (e.g. the branch's name)")
    for side in ("base", "branch"):
        parser.add_argument(
            f"--{side}-env",
            action="append",
            metavar="NAME=VALUE",
            help=f"an environment variable of the {side} server "
            "(e.g. RECGRAPH_ANSWER_THREADS=0; --base of this very checkout compares settings)",
        )
    args = parser.parse_args()
    cases = args.only or CASES
    reuse = args.reuse or Path(tempfile.mkdtemp(prefix="recgraph-load-ab-"))
    branch = HERE.parent / "src"
    if not all((reuse / case.replace(" ", "-")).exists() for case in cases):
        # a first run trains the cases into ``reuse``: not one of the pairs
        one_run(branch, cases, reuse, args)
    if args.paired:
        figures = paired({"base": args.base.resolve(), "branch": branch}, cases, reuse, args)
        for case, data in figures.items():
            print(
                f"{case}: server CPU ms/request base "
                f"{data['base']['server_cpu_ms_per_request_mean']}, branch "
                f"{data['branch']['server_cpu_ms_per_request_mean']} "
                f"(x{data['branch_over_base_mean']}, the mean of the rounds' ratios)"
            )
        save("load_ab_paired", args, figures, rate_key="rate_rps_each", **sides_of(args))
        return
    runs = []
    for round_ in range(args.rounds):
        for side, src in (("base", args.base.resolve()), ("branch", branch)):
            results = one_run(src, cases, reuse, args, side_env(getattr(args, f"{side}_env")))
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
    save("load_ab", args, figures, rate_key="rate_rps", **sides_of(args))


def save(name: str, args: argparse.Namespace, figures: dict, rate_key: str, **fields) -> None:
    """``figures``, ``fields`` and the run's rate, length and workers in
    ``benchmarks/results/NAME.json`` (``NAME.TAG.json`` with ``args.tag``)."""
    path = RESULTS / f"{name}{'.' + args.tag if args.tag else ''}.json"
    save_results(
        path,
        name,
        **fields,
        rounds=args.rounds,
        **{rate_key: args.rate},
        seconds_per_phase=args.seconds,
        server_workers=args.workers,
        cases=figures,
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
