"""The candidate jobs on growing heavy-tailed follow graphs: local engine against Spark in local mode.

For each size (10^5, 10^6, 10^7 and, where disk and time allow, 10^8 follows)
a synthetic follow graph with power-law in- and out-degrees is written as
Parquet (integer ids), and each job runs on each engine in a fresh
subprocess while this script samples the resident memory of the whole
process tree (Python, the JVM and Spark's Python workers) every 0.2 s. Wall
time and peak memory go to ``benchmarks/results/spark.json``, a table and a
written estimate for a Bluesky-sized graph to ``spark.md``, and the curves to
``spark.png``.

    python benchmarks/spark.py                                # 1e5, 1e6, 1e7; adamic_adar, samples
    python benchmarks/spark.py --sizes 1e5,1e6 --engines local --jobs adamic_adar
    python benchmarks/spark.py --jobs samples --params '{"samples": {"num_samples": 8}}'
    python benchmarks/spark.py --sizes 1e8 --timeout 7200     # add a size to the saved results

Runs of an earlier invocation are kept in the JSON unless re-run (same size,
engine and job), so the big sizes can be added one at a time. Say what else
was running (``--note``): the machine's 2 cores may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: Mean follows per account (Bluesky: about 2e9 / 3e7 = 67; a smaller mean keeps the graphs sparse).
MEAN_FOLLOWS = 20
BLUESKY_FOLLOWS = 2e9
BLUESKY_ACCOUNTS = 3e7
#: Each job's parameters (``--params`` overrides them per job); ``samples`` runs at its defaults
#: (32 samples, degree cap 32), what the GNNs train on.
JOB_PARAMS: dict[str, dict] = {"adamic_adar": {"hub_cap": 1000}, "samples": {}}


# ---------------------------------------------------------------------- the graphs
def heavy_tailed_follows(n_follows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_follows`` distinct follows among ``n_follows / 20`` accounts, heavy-tailed both ways.

    Out-degrees follow each account's activity (Pareto, shape 1.5: a few
    accounts follow thousands) and in-degrees its fitness (Pareto, shape 1.1:
    celebrities with a large share of all followers), as in real follow
    graphs; self-follows and repeats are dropped and redrawn.
    """
    rng = np.random.default_rng(seed)
    n = max(100, n_follows // MEAN_FOLLOWS)
    activity = rng.pareto(1.5, n) + 1.0
    fitness = rng.pareto(1.1, n) + 1.0
    activity /= activity.sum()
    fitness /= fitness.sum()
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < n_follows:
        draw = int((n_follows - len(keys)) * 1.1) + 1000
        src = rng.choice(n, size=draw, p=activity)
        dst = rng.choice(n, size=draw, p=fitness)
        fresh = src.astype(np.int64) * n + dst
        fresh = fresh[src != dst]
        keys = np.unique(np.concatenate([keys, fresh]))
    keys = rng.permutation(keys)[:n_follows]
    return keys // n, keys % n


def graph_file(n_follows: int, folder: Path) -> Path:
    """The Parquet edge file of one size, made once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"follows-{n_follows:.0e}.parquet"
    if not path.exists():
        start = time.perf_counter()
        src, dst = heavy_tailed_follows(n_follows)
        pq.write_table(pa.table({"src": src, "dst": dst}), path, row_group_size=1 << 22)
        print(f"graph {n_follows:.0e}: written in {time.perf_counter() - start:.0f} s", flush=True)
    return path


# ---------------------------------------------------------------------- one run
def run_one(args: argparse.Namespace) -> None:
    """Run one job on one engine (in this subprocess) and print its summary as JSON."""
    from recgraph.jobs.candidates.graph_input import GraphSource
    from recgraph.jobs.candidates.runner import CandidatesRequest, run_candidates

    params = json.loads(args.params)
    conf = {
        "spark.driver.memory": args.spark_memory,
        "spark.sql.shuffle.partitions": str(args.partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.local.dir": args.spark_tmp,
    }
    request = CandidatesRequest(
        job=args.job,
        engine=args.engine,
        source=GraphSource(args.edges),
        output=args.output,
        k=args.k,
        params=params,
        master="local[2]" if args.engine == "spark" else None,
        spark_conf=conf,
    )
    summary = run_candidates(request)
    details = {key: round(value, 2) for key, value in summary.details.items()}
    print(
        "RESULT " + json.dumps({"rows": summary.rows, "users": summary.users, "parts": details}),
        flush=True,
    )


def measure(command: list[str], timeout: float) -> dict:
    """Run ``command``; wall time, peak RSS of its process tree, and its RESULT line."""
    import psutil

    start = time.perf_counter()
    loads = []
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    root = psutil.Process(process.pid)
    peak = 0
    outcome = "ok"
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        loads.append(os.getloadavg()[0])
        if time.perf_counter() - start > timeout:
            for child in root.children(recursive=True):
                child.kill()
            process.kill()
            outcome = "timeout"
            break
        time.sleep(0.2)
    out, err = process.communicate()
    seconds = time.perf_counter() - start
    result = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    if outcome == "ok" and process.returncode != 0:
        outcome = "failed: " + (err.strip().splitlines() or ["?"])[-1][:200]
    return {
        "seconds": round(seconds, 2),
        "peak_gb": round(peak / 1e9, 3),
        "outcome": outcome,
        # the 1-minute load average while it ran: the 2 cores are shared with other work
        "load": [round(min(loads or [0]), 1), round(max(loads or [0]), 1)],
        **result,
    }


# ---------------------------------------------------------------------- report
def write_report(runs: list[dict], note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "spark.json").write_text(
        json.dumps({"machine": machine(), "note": note, "runs": runs}, indent=2)
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, axis, label in (
        ("seconds", axes[0], "wall time (s)"),
        ("peak_gb", axes[1], "peak memory (GB)"),
    ):
        for job in sorted({r["job"] for r in runs}):
            for engine, style in (("local", "o-"), ("spark", "s--")):
                points = sorted(
                    (r["follows"], r[key])
                    for r in runs
                    if r["job"] == job and r["engine"] == engine and r["outcome"] == "ok"
                )
                if points:
                    xs, ys = zip(*points, strict=True)
                    axis.plot(xs, ys, style, label=f"{job} / {engine}")
        follows = sorted({r["follows"] for r in runs})
        if key == "seconds" and follows:
            base = (
                min(r["seconds"] for r in runs if r["outcome"] == "ok")
                if any(r["outcome"] == "ok" for r in runs)
                else 1.0
            )
            axis.plot(
                follows, [base * f / follows[0] for f in follows], ":", color="grey", label="linear"
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("follows")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("recgraph candidates: local engine vs Spark local[2], heavy-tailed follow graphs")
    fig.tight_layout()
    fig.savefig(RESULTS / "spark.png", dpi=120)
    (RESULTS / "spark.md").write_text(markdown(runs, note))


def markdown(runs: list[dict], note: str) -> str:
    lines = [
        "# Candidate jobs: local engine and Spark (local[2]) against graph size",
        "",
        f"Machine: {machine()}. {note}",
        "",
        "Synthetic follow graphs with power-law in- and out-degrees (`benchmarks/spark.py`), "
        f"{MEAN_FOLLOWS} follows per account on average; top 100 per user. Time is wall time "
        "of the whole command (reading, numbering, scoring, writing Parquet); memory is the peak "
        "resident memory of the process tree (Python, JVM, Spark's Python workers).",
        "",
        "| job | params | follows | engine | seconds | peak GB | rows written | users | µs / follow | load (1 min) | outcome |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["job"], r["follows"], r["engine"])):
        per = 1e6 * r["seconds"] / r["follows"] if r["outcome"] == "ok" else float("nan")
        load = "-".join(f"{x:g}" for x in r["load"]) if "load" in r else "?"
        lines.append(
            f"| {r['job']} | {r['params']} | {r['follows']:.0e} | {r['engine']} | {r['seconds']:.1f} "
            f"| {r['peak_gb']:.2f} | {r.get('rows', 0):,} | {r.get('users', 0):,} | {per:.1f} "
            f"| {load} | {r['outcome']} |"
        )
    lines += ["", "## Where each engine stops", ""]
    for job, engine in sorted({(r["job"], r["engine"]) for r in runs}):
        mine = sorted((r for r in runs if (r["job"], r["engine"]) == (job, engine)),
                      key=lambda r: r["follows"])  # fmt: skip
        done = [r for r in mine if r["outcome"] == "ok"]
        text = f"- {job} / {engine}: finished up to {done[-1]['follows']:.0e} follows" if done else (
            f"- {job} / {engine}: no size finished")  # fmt: skip
        for r in mine:
            if r["outcome"] != "ok":
                text += (f"; {r['follows']:.0e} stopped ({r['outcome']} after {r['seconds']:.0f} s, "
                         f"peak {r['peak_gb']:.1f} GB)")  # fmt: skip
        lines.append(text + ".")
    lines += ["", "## A Bluesky-sized graph on a Spark cluster (estimate)", ""]
    lines += bluesky_estimate(runs)
    return "\n".join(lines) + "\n"


#: The cluster the estimate plans for: executors x cores each, memory per executor.
CLUSTER_EXECUTORS = 50
CLUSTER_CORES = 8
CLUSTER_MEMORY_GB = 32
#: What a shuffle over the network costs on top of local mode (a planning factor, not measured).
NETWORK_FACTOR = 2.0


def per_follow_cost(runs: list[dict], job: str, engine: str) -> dict | None:
    """Core-seconds per follow of ``job`` on ``engine``: the marginal cost between its two largest
    finished sizes (fixed start-up costs cancel), else its largest run's average."""
    done = sorted(
        (r for r in runs if r["job"] == job and r["engine"] == engine and r["outcome"] == "ok"),
        key=lambda r: r["follows"],
    )
    if not done:
        return None
    big = done[-1]
    cores = 2
    out = {"run": big, "average": big["seconds"] * cores / big["follows"]}
    out["marginal"] = out["average"]
    if len(done) > 1:
        small = done[-2]
        slope = (big["seconds"] - small["seconds"]) / (big["follows"] - small["follows"])
        if slope > 0:
            out["marginal"] = slope * cores
            out["from"] = small
    if big.get("output_bytes") and big.get("rows"):
        out["bytes_per_row"] = big["output_bytes"] / big["rows"]
        out["rows_per_follow"] = big["rows"] / big["follows"]
    return out


def bluesky_estimate(runs: list[dict]) -> list[str]:
    """Executors, memory and hours for a Bluesky-sized graph from the measured per-follow costs."""
    lines = []
    cores = CLUSTER_EXECUTORS * CLUSTER_CORES
    for job in sorted({r["job"] for r in runs}):
        spark = per_follow_cost(runs, job, "spark")
        local = per_follow_cost(runs, job, "local")
        lines += [f"### {job}", ""]
        for engine, cost in (("local engine", local), ("Spark local[2]", spark)):
            if cost is None:
                lines.append(f"- {engine}: no finished run.")
                continue
            big = cost["run"]
            how = (
                f"marginal cost between {cost['from']['follows']:.0e} and {big['follows']:.0e} "
                f"follows ({cost['from']['seconds']:.0f} s -> {big['seconds']:.0f} s)"
                if "from" in cost
                else f"average of the {big['follows']:.0e} run ({big['seconds']:.0f} s)"
            )
            lines.append(
                f"- {engine}: {cost['marginal'] * 1e6:,.0f} core-µs per follow, the {how}, "
                f"2 shared cores; {cost['marginal'] * BLUESKY_FOLLOWS / 3600:,.0f} core-hours "
                f"for {BLUESKY_FOLLOWS:.0e} follows."
            )
        if spark is not None:
            big = spark["run"]
            for r in runs:
                if (
                    (r["job"], r["engine"]) == (job, "spark")
                    and r["outcome"] == "timeout"
                    and (r["follows"] > big["follows"])
                ):
                    predicted = big["seconds"] + spark["marginal"] / 2 * (
                        r["follows"] - big["follows"]
                    )
                    lines.append(
                        f"- The {r['follows']:.0e} Spark run stopped at its limit "
                        f"({r['seconds']:.0f} s); this rate predicts {predicted:,.0f} s for it."
                    )
            core_hours = spark["marginal"] * BLUESKY_FOLLOWS / 3600
            hours = NETWORK_FACTOR * core_hours / cores
            lines.append(
                f"- **Plan**: {CLUSTER_EXECUTORS} executors x {CLUSTER_CORES} cores "
                f"({cores} cores), {CLUSTER_MEMORY_GB} GB each: {core_hours / cores:,.1f} h at "
                f"the measured rate, x{NETWORK_FACTOR:g} for the network shuffle local mode "
                f"does not pay: **about {hours:,.1f} h** (an upper bound: measured on "
                "overloaded shared cores)."
            )
            if "rows_per_follow" in spark:
                rows = spark["rows_per_follow"] * BLUESKY_FOLLOWS
                size = rows * spark["bytes_per_row"]
                lines.append(
                    f"- **Output**: {spark['rows_per_follow']:.1f} rows per follow measured, "
                    f"so {rows:.1e} rows; at the measured {spark['bytes_per_row']:.1f} bytes a "
                    f"row (short integer ids; Bluesky's 32-character DIDs compress to more) "
                    f"about {size / 1e9:,.0f} GB of Parquet, or more with DIDs."
                )
        lines.append("")
    lines += [
        "### Memory and disk (both jobs)",
        "",
        "- The hub-capped two-hop job's state is the shuffle of the two-hop pairs: at most "
        "`hub_cap` paths per follow, summed map-side; with `spark.sql.shuffle.partitions` of "
        "4000-8000 each partition stays near 1 GB, so 8 cores x 4 GB per executor suffice and "
        "the shuffle spills to several TB of local disk across executors (Bluesky: some 10^11 "
        "paths before the map-side sums). The driver holds only the hub sample (hubs x "
        "`hub_cap` positions).",
        "- The samples job shuffles the edges three times (distinct, two degree counts, two "
        "joins): 2e9 follows of two DIDs is about 150 GB of shuffle, spread over the cluster; "
        "its output grows with `num_samples`.",
        "- EGOML (not benchmarked here): the driver writes the feature tables (about 200 bytes "
        "a follow, 400 GB at 2e9), so at Bluesky's size they would have to be built on the "
        "executors first. The rank job (not benchmarked here) holds one loaded pipeline per "
        "Python worker: a pipeline of a 2e9-follow graph does not fit one worker, so at that "
        "size the ranker's graph features would have to come from a join rather than the "
        "loaded matrices.",
    ]
    return lines


def output_size(path: Path) -> int:
    """Bytes of a Parquet file, or of a Spark output folder's parts."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def machine() -> str:
    import psutil

    return (
        f"{platform.node()} {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7")
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--jobs", default="adamic_adar,samples")
    parser.add_argument("--params", default="{}", help="JSON: job -> params, over JOB_PARAMS.")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--work", default="/tmp/recgraph-spark-bench")
    parser.add_argument("--spark-memory", default="12g")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--note", default="")
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--edges", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--spark-tmp", default="/tmp", help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true", help="Rewrite the report.")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((RESULTS / "spark.json").read_text())
        for r in saved["runs"]:
            output = Path(args.work) / f"out-{r['job']}-{r['engine']}-{r['follows']:.0e}.parquet"
            if r["outcome"] == "ok" and "output_bytes" not in r and output.exists():
                r["output_bytes"] = output_size(output)
        write_report(saved["runs"], args.note or saved.get("note", ""))
        return
    if args.run_one:
        run_one(args)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "spark.json"
    runs = json.loads(saved.read_text())["runs"] if saved.exists() else []
    overrides = json.loads(args.params)
    for size in [int(float(s)) for s in args.sizes.split(",")]:
        edges = graph_file(size, work)
        for job in args.jobs.split(","):
            params = json.dumps({**JOB_PARAMS.get(job, {}), **overrides.get(job, {})})
            for engine in args.engines.split(","):
                output = work / f"out-{job}-{engine}-{size:.0e}.parquet"
                command = [
                    sys.executable, __file__, "--run-one", "--edges", str(edges),
                    "--engine", engine, "--job", job, "--output", str(output),
                    "--k", str(args.k), "--params", params,
                    "--spark-memory", args.spark_memory, "--partitions", str(args.partitions),
                    "--spark-tmp", str(work / "spark-tmp"),
                ]  # fmt: skip
                print(f"{job} {engine} {size:.0e} ...", flush=True)
                result = measure(command, args.timeout)
                if result["outcome"] == "ok" and output.exists():
                    result["output_bytes"] = output_size(output)
                entry = {
                    "job": job,
                    "params": params,
                    "follows": size,
                    "engine": engine,
                    **result,
                }
                print(json.dumps(entry), flush=True)
                runs = [
                    r
                    for r in runs
                    if (r["job"], r["follows"], r["engine"], r["params"])
                    != (job, size, engine, params)
                ] + [entry]
                write_report(runs, args.note)


if __name__ == "__main__":
    main()
