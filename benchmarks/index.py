"""Nearest-neighbour indexes: recall@10 against exact search, and queries per second.

Data: :func:`recgraph.index.synthetic.clustered_embeddings`, dimension 64, a
Gaussian mixture (``n_items / 1000`` clusters of Zipf-like sizes, within-cluster
noise with a decaying spectrum in a random basis, log-normal norms) and
queries drawn from the same mixture; metric ``ip`` (inner product, what
the matrix-factorisation models score with) unless ``--metrics`` says more.

For each size (100k and 1M items) and each index type, the index is built
once (build time recorded), then each point of its query-time sweep
(``ef_search``, ``n_probe``, ``leaves_to_search`` / ``reorder``) is measured:

- recall@10: share of the exact top 10 (``exact`` index) found, over
  ``--queries`` queries;
- batched QPS: those queries in one ``search`` call;
- single QPS: one query per call (a request of a service), over at most
  ``--single`` queries or 3 seconds.

Target (issue 6): recall >= 0.95 at >= 10x the exact QPS at 1M items, batched
and single. The script prints whether each index type meets it, at its best
sweep point. All indexes run with the machine's threads (2 here, shared with
other jobs: the load average is saved with the results, since it moves QPS).

Saves ``benchmarks/results/index.json`` and ``benchmarks/results/index.png``
(recall against QPS). Run: ``python benchmarks/index.py`` (a few minutes;
most of it builds the 1M HNSW graph), ``--quick`` for a 20k smoke test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from recgraph.index import Index, create_index
from recgraph.index.synthetic import clustered_embeddings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
K = 10
DIM = 64
RECALL_TARGET = 0.95
SPEEDUP_TARGET = 10.0
SINGLE_SECONDS = 3.0

#: Build parameters and query-time sweep per index type. The build parameters are
#: chosen to keep the 1M builds within a few minutes on 2 shared cores.
INDEXES: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "faiss_flat": ({}, [{}]),
    # FAISS's own HNSW defaults (m=16 would be hnswlib's; efConstruction=40 is FAISS's):
    # the 1M graph is the longest build here
    "faiss_hnsw": (
        {"m": 16, "ef_construction": 40},
        [{"ef_search": ef} for ef in (32, 64, 128, 256, 512)],
    ),
    "faiss_ivf": ({}, [{"n_probe": p} for p in (16, 32, 64, 128, 256)]),
    "scann": (
        {},
        [
            {"leaves_to_search": leaves, "reorder": reorder}
            for leaves, reorder in ((20, 200), (50, 500), (50, 1000), (100, 1000), (100, 2000))
        ],
    ),
}


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def single_qps(index: Index, queries: np.ndarray, limit: int) -> float:
    """Queries per second one at a time, over ``limit`` queries or ``SINGLE_SECONDS``."""
    index.search(queries[0], K)  # warm up
    start = time.perf_counter()
    done = 0
    for query in queries[:limit]:
        index.search(query, K)
        done += 1
        if time.perf_counter() - start > SINGLE_SECONDS:
            break
    return done / (time.perf_counter() - start)


def batched(index: Index, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Ids of one batched search, and its queries per second."""
    start = time.perf_counter()
    ids, _ = index.search(queries, K)
    return ids, len(queries) / (time.perf_counter() - start)


def run_size(
    n_items: int, metric: str, n_queries: int, n_single: int, types: list[str], seed: int
) -> list[dict[str, Any]]:
    items, queries = clustered_embeddings(n_items, DIM, n_queries=n_queries, seed=seed)
    rows: list[dict[str, Any]] = []

    exact = create_index("exact", metric=metric).build(items)
    truth, exact_batched = batched(exact, queries)
    exact_single = single_qps(exact, queries, n_single)
    base = {"n_items": n_items, "metric": metric}
    rows.append(
        {
            **base,
            "index": "exact",
            "build": {},
            "search": {},
            "build_seconds": 0.0,
            "recall@10": 1.0,
            "batched_qps": exact_batched,
            "single_qps": exact_single,
        }
    )
    report(rows[-1], exact_batched, exact_single)
    del exact
    gc.collect()

    for name in types:
        build_params, sweep = INDEXES[name]
        index = create_index(name, build_params, metric=metric)
        start = time.perf_counter()
        index.build(items)
        build_seconds = time.perf_counter() - start
        for point in sweep:
            for key, value in point.items():
                setattr(index.config, key, value)  # query-time knobs: no rebuild
            ids, qps = batched(index, queries)
            rows.append(
                {
                    **base,
                    "index": name,
                    "build": build_params,
                    "search": point,
                    "build_seconds": build_seconds,
                    "recall@10": recall_at_k(ids, truth),
                    "batched_qps": qps,
                    "single_qps": single_qps(index, queries, n_single),
                }
            )
            report(rows[-1], exact_batched, exact_single)
        del index
        gc.collect()
    for row in rows:
        row["batched_speedup"] = row["batched_qps"] / exact_batched
        row["single_speedup"] = row["single_qps"] / exact_single
    return rows


def report(row: dict[str, Any], exact_batched: float, exact_single: float) -> None:
    params = ",".join(f"{k}={v}" for k, v in row["search"].items()) or "-"
    print(
        f"{row['n_items']:>9,} {row['metric']:>3} {row['index']:<11} {params:<30} "
        f"build {row['build_seconds']:7.1f}s  recall@10 {row['recall@10']:.3f}  "
        f"batched {row['batched_qps']:9,.0f} q/s ({row['batched_qps'] / exact_batched:6.1f}x)  "
        f"single {row['single_qps']:8,.0f} q/s ({row['single_qps'] / exact_single:6.1f}x)",
        flush=True,
    )


def best_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (size, metric, index): the fastest sweep point with recall >= the target, per mode."""
    verdicts = []
    keys = sorted({(r["n_items"], r["metric"], r["index"]) for r in rows if r["index"] != "exact"})
    for n_items, metric, name in keys:
        points = [
            r for r in rows if (r["n_items"], r["metric"], r["index"]) == (n_items, metric, name)
        ]
        verdict: dict[str, Any] = {"n_items": n_items, "metric": metric, "index": name}
        for mode in ("batched", "single"):
            good = [r for r in points if r["recall@10"] >= RECALL_TARGET]
            best = max(good, key=lambda r: r[f"{mode}_qps"]) if good else None
            verdict[mode] = (
                None
                if best is None
                else {
                    "search": best["search"],
                    "recall@10": best["recall@10"],
                    "qps": best[f"{mode}_qps"],
                    "speedup": best[f"{mode}_speedup"],
                    "meets_target": best[f"{mode}_speedup"] >= SPEEDUP_TARGET,
                }
            )
        verdict["best_recall"] = max(r["recall@10"] for r in points)
        verdicts.append(verdict)
    return verdicts


def print_verdicts(verdicts: list[dict[str, Any]]) -> None:
    print(
        f"\nbest point with recall@10 >= {RECALL_TARGET} (target: >= {SPEEDUP_TARGET:.0f}x exact QPS)"
    )
    print(f"{'items':>9} {'metric':>6} {'index':<11} {'batched':<44} {'single':<44}")
    for v in verdicts:
        cells = []
        for mode in ("batched", "single"):
            best = v[mode]
            if best is None:
                cells.append(f"none (best recall {v['best_recall']:.3f})")
                continue
            params = ",".join(f"{k}={x}" for k, x in best["search"].items()) or "-"
            mark = "MET" if best["meets_target"] else "missed"
            cells.append(f"{best['speedup']:6.1f}x r={best['recall@10']:.3f} {params} {mark}")
        print(f"{v['n_items']:>9,} {v['metric']:>6} {v['index']:<11} {cells[0]:<44} {cells[1]:<44}")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({(r["n_items"], r["metric"]) for r in rows})
    fig, axes = plt.subplots(
        2, len(sizes), figsize=(5.5 * len(sizes), 8), squeeze=False, sharey="row"
    )
    for col, (n_items, metric) in enumerate(sizes):
        subset = [r for r in rows if (r["n_items"], r["metric"]) == (n_items, metric)]
        exact = next(r for r in subset if r["index"] == "exact")
        for row_i, mode in enumerate(("batched", "single")):
            ax = axes[row_i][col]
            for name in [n for n in INDEXES if any(r["index"] == n for r in subset)]:
                points = [r for r in subset if r["index"] == name]
                ax.plot(
                    [r["recall@10"] for r in points],
                    [r[f"{mode}_qps"] for r in points],
                    marker="o",
                    label=name,
                )
            ax.axhline(exact[f"{mode}_qps"], color="black", lw=1, label="exact")
            ax.axhline(
                SPEEDUP_TARGET * exact[f"{mode}_qps"],
                color="black",
                ls="--",
                lw=1,
                label="10x exact",
            )
            ax.axvline(RECALL_TARGET, color="grey", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_ylabel(f"{mode} queries / s")
            ax.set_title(f"{n_items:,} items, {metric}, {mode}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="item counts, comma-separated")
    parser.add_argument("--metrics", default="ip", help="ip and/or l2, comma-separated")
    parser.add_argument(
        "--queries", type=int, default=500, help="queries for recall and batched QPS"
    )
    parser.add_argument("--single", type=int, default=300, help="most queries timed one by one")
    parser.add_argument("--indexes", default=",".join(INDEXES), help="index types to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20k items, 200 queries: a smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS / "index.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "index.png")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.single = "20000", 200, 50
    types = [t for t in args.indexes.split(",") if t]
    for name in types:
        if name not in INDEXES:
            parser.error(f"unknown index {name!r}; choose from {', '.join(INDEXES)}")
    if "scann" in types:
        try:
            import scann  # noqa: F401
        except ImportError:
            print("scann is not installed: skipping it (pip install 'recgraph[scann]')")
            types.remove("scann")

    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for n_items in (int(s) for s in args.sizes.split(",")):
        for metric in args.metrics.split(","):
            rows += run_size(n_items, metric, args.queries, args.single, types, args.seed)
    verdicts = best_points(rows)
    print_verdicts(verdicts)
    elapsed = time.perf_counter() - started
    print(
        f"\ntotal {elapsed:.0f}s; load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "index",
        "data": {
            "generator": "recgraph.index.synthetic.clustered_embeddings",
            "dim": DIM,
            "clusters": "n_items // 1000",
            "seed": args.seed,
            "queries": args.queries,
            "single_queries_max": args.single,
            "k": K,
        },
        "targets": {"recall@10": RECALL_TARGET, "speedup_over_exact": SPEEDUP_TARGET},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "seconds": elapsed,
        "results": rows,
        "best": verdicts,
    }
    args.out.write_text(json.dumps(result, indent=2))
    plot(rows, args.plot)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
