"""The Bluesky crawler against the fake AppView: rate-limit use, and SIGKILL recovery.

1. **Rate.** The fake AppView runs in its own process with Bluesky's
   documented budget, 3000 requests per 300 s, scaled down in time by 100:
   ``30;w=3`` (the same 10 requests/s, in 3 s windows, so that a run sees
   many windows in seconds). The crawler (8 concurrent requests) crawls a
   large generated graph for ``--seconds``. From the server's own request
   log: requests per full window in steady state (the first window, with
   start-up, and the last, cut short, are left out) as a fraction of the
   budget, and the number of 429 answers in steady state. Targets: at least
   95 % of the allowed rate, zero 429s. Two more budgets show the same
   pacing at higher rates: ``300;w=3`` (10x the documented rate) and
   ``3000;w=3`` (the documented budget squeezed into 3 s, i.e. 1000
   requests/s), where the crawler's own throughput on this machine is the
   limit rather than the budget; and an unlimited run gives that throughput.
2. **Faults.** The crawler runs as ``recgraph crawl bluesky --until-done``
   against a fake AppView that also injects 500s, 502 pages, timeouts, short
   pages, duplicate entries and end-of-list cursor bugs; it is killed with
   SIGKILL at random points ``--kills`` times and restarted each time (a
   killed worker's leases run out after ``--lease-seconds``). Then the store
   must equal the server's graph, edge for edge.

Prints a summary, saves ``benchmarks/results/crawler.json`` and a plot of
requests per second over time (``crawler_rate.png``).

Run: ``python benchmarks/crawler.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from common import REPO, RESULTS_DIR
from recgraph.collect.bluesky.crawler import Crawler
from recgraph.collect.bluesky.fake_server import (
    FakeAppView,
    FakeGraph,
    FaultConfig,
    RateLimitPolicy,
    fake_did,
    start_subprocess,
)
from recgraph.data.store import Store

#: Bluesky's documented budget, and the factor time is scaled down by.
LIMIT, WINDOW, TIME_SCALE = 3000, 300.0, 100.0


def rate_run(
    limit: int | None, window: float, seconds: float, accounts: int, concurrency: int
) -> dict:
    """Crawl for ``seconds`` against a budget of ``limit`` per ``window``; measure from the server."""
    policy = RateLimitPolicy(limit=limit, window_seconds=window) if limit else None
    process, url = start_subprocess(accounts=accounts, seed=7, mean_follows=20, rate_limit=policy)
    graph_seed = fake_did(7, 0)  # account 0 of the server's graph
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = Store(f"sqlite:///{folder}/rate.db")
            config = {
                "seeds": [graph_seed],
                "until_done": True,
                "client": {"base_url": url, "concurrency": concurrency},
            }

            async def bounded() -> object:
                crawler = Crawler(store, config)
                task = asyncio.create_task(crawler.run())
                await asyncio.sleep(seconds)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                return crawler.report

            report = asyncio.run(bounded())
            store.close()
        stats = httpx.get(f"{url}/_fake/stats", timeout=30).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    times = np.array([t for t, _ in stats["log"]], dtype=np.float64)
    status = np.array([s for _, s in stats["log"]], dtype=np.int64)
    start = times.min()
    result: dict = {
        "budget": f"{limit};w={window:g}" if limit else "none",
        "allowed_requests_per_second": (limit / window) if limit else None,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": int(len(times)),
        "status_counts": stats["statuses"],
        "accounts_crawled": report.accounts,
        "edges": report.edges,
        "client_rate_limit_sleep_seconds": round(report.rate_limit_sleep_seconds, 3),
    }
    # Requests per second in 0.5 s bins, for the plot.
    bins = np.arange(0, times.max() - start + 0.5, 0.5)
    counts, _ = np.histogram(times - start, bins=bins)
    result["series"] = {"t": bins[:-1].round(2).tolist(), "rps": (counts / 0.5).tolist()}
    if not limit:
        steady = (times >= start + 1.0) & (times < times.max() - 0.5)
        span = times[steady].max() - times[steady].min()
        result["steady_requests_per_second"] = round(float(steady.sum() / span), 2)
        return result
    windows = np.floor(times / window).astype(np.int64)
    first, last = windows.min(), windows.max()
    full = np.arange(first + 1, last)  # whole windows only, start-up window left out
    per_window = np.array([(windows == w).sum() for w in full])
    steady = np.isin(windows, full)
    result.update(
        {
            "steady_windows": int(len(full)),
            "requests_per_window": per_window.tolist(),
            "utilisation": round(float(per_window.mean() / limit), 4),
            "utilisation_min_window": round(float(per_window.min() / limit), 4),
            "steady_429": int(((status == 429) & steady).sum()),
            "all_429": int((status == 429).sum()),
        }
    )
    return result


def fault_run(kills: int, accounts: int, lease_seconds: float, rng_seed: int) -> dict:
    """SIGKILL the CLI crawler ``kills`` times at random points, restart, compare with the server."""
    graph = FakeGraph.generate(accounts, seed=13, mean_follows=20)
    seed = graph.dids[0]
    faults = FaultConfig(
        p_500=0.03,
        p_502=0.02,
        p_timeout=0.01,
        timeout_seconds=1.5,
        p_short=0.1,
        p_duplicate=0.1,
        p_repeat_end=0.05,
        p_empty_end=0.05,
        seed=rng_seed,
    )
    rng = random.Random(rng_seed)
    env = {**os.environ, "RECGRAPH_PROGRESS": "0"}
    with (
        tempfile.TemporaryDirectory() as folder,
        FakeAppView(
            graph, rate_limit={"limit": 100, "window_seconds": 1.0}, faults=faults
        ) as server,
    ):
        db = f"sqlite:///{folder}/killed.db"
        command = [
            sys.executable, "-m", "recgraph.cli.main", "crawl", "bluesky", "--seed", seed,
            "--base-url", server.url, "--until-done", "--db", db,
            "--lease-seconds", str(lease_seconds), "--timeout-seconds", "1.0",
        ]  # fmt: skip
        killed_after: list[float] = []
        started = time.monotonic()
        finished_early = False
        early_error = ""
        while len(killed_after) < kills:
            log_path = Path(folder) / f"run{len(killed_after)}.log"
            with log_path.open("w") as log_file:
                process = subprocess.Popen(
                    command, stdout=log_file, stderr=subprocess.STDOUT, env=env
                )
                delay = rng.uniform(0.3, 3.0)
                time.sleep(delay)
            if process.poll() is not None:
                finished_early = True
                early_error = log_path.read_text()[-2000:] if process.returncode else ""
                break
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed_after.append(round(delay, 2))
        final = subprocess.run(
            [*command, "--json", f"{folder}/final.json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        seconds = time.monotonic() - started
        with Store(db) as store:
            stored: set[tuple[str, str]] = set()
            for frame in store.iter_frames("follows"):
                stored.update(zip(frame["src"], frame["dst"], strict=True))
            rows = store.counts()["follows"]
        expected = graph.crawl_edges([seed])
        served = dict(server.faults_served)
    return {
        "accounts": accounts,
        "kills": len(killed_after),
        "killed_after_seconds": killed_after,
        "finished_before_all_kills": finished_early,
        "final_exit_code": final.returncode,
        "final_output": final.stdout.strip(),
        "final_error": final.stderr[-2000:] if final.returncode else "",
        "early_exit_error": early_error,
        "expected_edges": len(expected),
        "stored_edges": len(stored),
        "stored_rows": rows,
        "missing_edges": len(expected - stored),
        "extra_edges": len(stored - expected),
        "equal": stored == expected and rows == len(expected),
        "faults_served": served,
        "seconds": round(seconds, 1),
    }


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        series = run["series"]
        ax.plot(series["t"], series["rps"], drawstyle="steps-post", label="requests/s (server)")
        allowed = run["allowed_requests_per_second"]
        if allowed:
            ax.axhline(allowed, color="red", linestyle="--", label=f"allowed {allowed:g}/s")
        title = f"budget {run['budget']}"
        if "utilisation" in run:
            title += f": {run['utilisation']:.1%} of allowed, {run['steady_429']} steady 429s"
        else:
            title += f": {run['steady_requests_per_second']:.0f} requests/s"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("requests/s")
        ax.legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per rate run")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--fault-accounts", type=int, default=400)
    parser.add_argument("--lease-seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--faults-only", action="store_true", help="skip the rate runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    scaled_limit, scaled_window = int(LIMIT / TIME_SCALE), WINDOW / TIME_SCALE
    budgets = [
        (scaled_limit, scaled_window),
        (scaled_limit * 10, scaled_window),
        (LIMIT, scaled_window),
        (None, scaled_window),
    ]
    runs = []
    for limit, window in [] if args.faults_only else budgets:
        accounts = 3000 if (limit or 10**9) <= 30 else 12000
        run = rate_run(limit, window, args.seconds, accounts, args.concurrency)
        runs.append(run)
        if "utilisation" in run:
            print(
                f"budget {run['budget']:>10} ({run['allowed_requests_per_second']:g} req/s allowed): "
                f"{run['utilisation']:.1%} of the allowed rate over {run['steady_windows']} steady "
                f"windows (worst window {run['utilisation_min_window']:.1%}), "
                f"{run['steady_429']} 429s in steady state ({run['all_429']} in all), "
                f"{run['requests']} requests",
                flush=True,
            )
        else:
            print(
                f"no budget: {run['steady_requests_per_second']:.1f} requests/s sustained "
                f"({run['accounts_crawled']} accounts, {run['edges']} follows in {args.seconds:g} s)",
                flush=True,
            )
    fault = None
    if not args.skip_faults:
        fault = fault_run(args.kills, args.fault_accounts, args.lease_seconds, rng_seed=2)
        print(
            f"SIGKILL x{fault['kills']} at random points, restarted each time: "
            f"{'EQUAL' if fault['equal'] else 'DIFFERENT'} to the server's graph "
            f"({fault['stored_edges']} of {fault['expected_edges']} edges stored, "
            f"{fault['missing_edges']} missing, {fault['extra_edges']} extra, "
            f"{fault['stored_rows']} rows) in {fault['seconds']} s; faults served {fault['faults_served']}",
            flush=True,
        )
    if args.faults_only:
        print(json.dumps(fault, indent=2))  # a check, not a result: nothing saved
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    figure = RESULTS_DIR / "crawler_rate.png"
    plot(runs, figure)
    payload = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "documented_budget": f"{LIMIT};w={WINDOW:g}",
        "time_scale": TIME_SCALE,
        "rate_runs": [{k: v for k, v in r.items() if k != "series"} for r in runs],
        "fault_test": fault,
        "plot": str(figure.relative_to(REPO)),
    }
    (RESULTS_DIR / "crawler.json").write_text(json.dumps(payload, indent=2))
    print(f"saved {RESULTS_DIR / 'crawler.json'} and {figure}")


if __name__ == "__main__":
    main()
