"""Neighbourhood retrievers: quality, speed, memory and the hub cap, on three SNAP graphs.

Quality goes through the command line, as a user would script it:
``recgraph split`` writes train/test files and ``recgraph evaluate`` scores
the full ranking (no sampled negatives) at k = 10, 20, 50, 100 for
``common_neighbors``, ``adamic_adar``, ``resource_allocation``, ``jaccard``,
``ppr`` and the ``popular`` baseline:

- ego-Facebook: undirected friendships, random 10% edge holdout (seed 0);
- wiki-Vote: directed votes (follows), random 10% edge holdout (seed 0);
- CollegeMsg: directed messages with time, ``temporal_pairs``: pairs first
  seen up to the 80% time quantile train, later new pairs test.

Speed: top-100 for every node of each whole graph, best of ``--repeats``,
in wall time and in process CPU time (the machine is shared, so CPU time is
the steadier figure), on all cores and on one thread, against

- the bare scipy product ``A @ (W A)`` that the two-hop scores need (the
  floor; one call, all rows, no masking or top-k), and for ``ppr`` the bare
  power iteration (the same sparse x dense products, no masking or top-k);
- NetworkX on ``--nx-sample`` random query nodes, projected to all nodes.
  NetworkX gets its best shot: each query scores only the nodes two hops
  away (``ebunch``; every other node scores 0), then ``heapq.nlargest``.
  Its link-prediction functions refuse directed graphs, so on wiki-Vote and
  CollegeMsg both sides take the graph as friendships (every edge a link
  both ways); the default ``out_out`` reading of the follows is timed too.
  ``ppr`` is compared with ``nx.pagerank(personalization={u: 1})`` on the
  directed graph with the same restart and an L1 tolerance of 1e-3, which
  it reaches in about as many iterations as the model's 20.
  The sampled nodes' top-100 scores are checked against NetworkX's.

Memory: peak RSS (``VmHWM``) of a fresh process that reads wiki-Vote, fits a
model and takes top-100 for all nodes; the peak restarts after reading the
graph, so the increase is what fit + recommend cost.

Readings: ``adamic_adar`` with each ``path`` on the two follow graphs.

Hub cap: ``adamic_adar`` and ``ppr`` through ``recgraph evaluate`` with
``hub_cap`` = 10000 (the default; above every degree here, so exact), 200,
50, 10 (``hub_policy="sample"``) and 50 with ``"skip"``, with the two-hop
paths expanded for all users (the work the cap bounds).

Prints tables, saves ``benchmarks/results/neighborhood.json`` and
``benchmarks/results/neighborhood.png`` (recall@k and nDCG@k per model per
dataset). Run: ``python benchmarks/neighborhood.py`` (needs
../shared/datasets or ``RECGRAPH_DATASETS``); a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

from common import (
    REPO,
    RESULTS_DIR,
    SNAP_CASES,
    datasets_folder,
    evaluate_models,
    plot_metric_curves,
    print_quality_table,
    split_files,
)
from recgraph.data.interactions import Interactions
from recgraph.data.readers import read_edge_list
from recgraph.retrieval import create_retriever
from recgraph.retrieval.neighborhood import resolve_threads

RESULTS = RESULTS_DIR / "neighborhood.json"
PLOT = RESULTS_DIR / "neighborhood.png"
KS = (10, 20, 50, 100)
MODELS = ["common_neighbors", "adamic_adar", "resource_allocation", "jaccard", "ppr"]
BASELINE = "popular"
TOP = 100

DATASETS = [SNAP_CASES[name] for name in ("ego-facebook", "wiki-vote", "college-msg")]

#: (label, extra parameters) of the hub-cap sweep; 10000 is the default cap.
HUB_CAPS = [
    ("10000 (default)", {"hub_cap": 10000}),
    ("200", {"hub_cap": 200}),
    ("50", {"hub_cap": 50}),
    ("10", {"hub_cap": 10}),
    ("50 skip", {"hub_cap": 50, "hub_policy": "skip"}),
]
HUB_MODELS = ["adamic_adar", "ppr"]
READINGS = ["out_out", "in_out", "out_in", "in_in", "undirected"]


def best_of(repeats: int, job) -> tuple[float, float]:
    """Smallest wall time and smallest process CPU time (all threads) of ``repeats`` runs.

    The machine is shared: CPU time is what the job itself cost, wall time
    what a user waited, slowed by whatever else ran.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        job()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


# ---------------------------------------------------------------------- quality
def evaluate_files(
    train: Path, test: Path, kind: str, models: list[str], params: list[str], work: Path, tag: str
) -> dict:
    return evaluate_models(train, test, kind, models, params, work / f"{tag}.json", KS)


def quality(case: dict, folder: Path, work: Path) -> dict:
    source = folder / case["input"]
    train, test = split_files(source, case["kind"], case["split"], work, case["name"])
    report = evaluate_files(
        train, test, case["kind"], [*MODELS, BASELINE], [], work, f"{case['name']}-all"
    )
    models = {
        r["model"]: {
            "metrics": {
                key: round(value, 4)
                for key, value in r["metrics"].items()
                if key.split("@")[0] in ("recall", "ndcg", "hit")
            },
            "fit_seconds": round(r["fit_seconds"], 3),
            "recommend_seconds": round(r["recommend_seconds"], 3),
            "invalid_recommendations": r["invalid_recommendations"],
        }
        for r in report["results"]
    }
    return {
        "split": " ".join(case["split"]),
        "train_rows": report["n_train_rows"],
        "test_rows": report["n_test_rows"],
        "dropped_test_rows": report["dropped_test_rows"],
        "users_scored": report["n_users"],
        "models": models,
        "files": (train, test),
    }


def hub_sweep(case: dict, files: tuple[Path, Path], work: Path) -> dict:
    train_path, test_path = files
    train = Interactions.read_table(str(train_path), case["kind"])
    out: dict[str, list] = {}
    for model in HUB_MODELS:
        rows = []
        for label, extra in HUB_CAPS:
            params = [f"{model}.{key}={value}" for key, value in extra.items()]
            report = evaluate_files(
                train_path, test_path, case["kind"], [model], params, work, f"{case['name']}-hub"
            )
            (result,) = report["results"]
            fitted = create_retriever(model, extra).fit(train)
            if model == "ppr":
                work_done = int(fitted.transition_.nnz)
                work_name = "transition_nnz"
            else:
                work_done = int(fitted.path_counts(np.arange(train.n_users)).sum())
                work_name = "paths_expanded"
            rows.append(
                {
                    "hub_cap": label,
                    "recall@20": round(result["metrics"]["recall@20"], 4),
                    "recall@100": round(result["metrics"]["recall@100"], 4),
                    "ndcg@100": round(result["metrics"]["ndcg@100"], 4),
                    work_name: work_done,
                    "recommend_seconds": round(result["recommend_seconds"], 3),
                }
            )
        out[model] = rows
    return out


def readings_sweep(case: dict, files: tuple[Path, Path], work: Path) -> list[dict]:
    """``adamic_adar`` with each reading of a follow graph (``path``), through evaluate."""
    rows = []
    for path in READINGS:
        report = evaluate_files(
            *files, case["kind"], ["adamic_adar"], [f"adamic_adar.path={path}"], work, "reading"
        )
        (result,) = report["results"]
        rows.append(
            {
                "path": path,
                **{
                    key: round(result["metrics"][key], 4)
                    for key in ("recall@20", "recall@100", "ndcg@100")
                },
            }
        )
    return rows


# ---------------------------------------------------------------------- speed
def two_hop_candidates(g, u) -> list:
    """Nodes two hops from ``u`` that are neither ``u`` nor its neighbours."""
    near = set(g[u])
    far = set()
    for w in near:
        far.update(g[w])
    far -= near
    far.discard(u)
    return sorted(far)


def networkx_top(g, u, model: str, restart: float) -> list[tuple[float, int]]:
    """Top-100 ``(score, node)`` of ``u`` by NetworkX; ties to the lower node."""
    import networkx as nx

    if model == "ppr":
        ranks = nx.pagerank(
            g, alpha=1 - restart, personalization={u: 1}, tol=1e-3 / len(g), max_iter=200
        )
        seen = set(g[u]) | {u}
        scored = ((p, v) for v, p in ranks.items() if v not in seen)
    else:
        pairs = [(u, v) for v in two_hop_candidates(g, u)]
        if model == "common_neighbors":
            scored = ((len(nx.common_neighbors(g, a, b)), b) for a, b in pairs)
        else:
            function = {
                "adamic_adar": nx.adamic_adar_index,
                "resource_allocation": nx.resource_allocation_index,
                "jaccard": nx.jaccard_coefficient,
            }[model]
            scored = ((p, b) for _, b, p in function(g, pairs))
    return heapq.nlargest(TOP, scored, key=lambda item: (item[0], -item[1]))


def bare_product_seconds(model, repeats: int) -> tuple[float, float]:
    """The floor: the sparse product alone (two-hop), or the power iteration alone (ppr)."""
    if model.name != "ppr":
        return best_of(repeats, lambda: model.first_ @ model.expansion_)
    n = model.n_users
    step = model.batch_size()

    def walk() -> None:
        for start in range(0, n, step):
            x = sp.identity(n, dtype=np.float32, format="csc")[:, start : start + step].toarray()
            for _ in range(model.config.iterations):
                x = model.transition_t_ @ x

    return best_of(repeats, walk)


def speed(case: dict, folder: Path, repeats: int, nx_sample: int) -> dict:
    import networkx as nx

    graph = read_edge_list(
        folder / case["input"], directed=case["directed"], timestamps=case["timestamps"]
    )
    n = graph.n_users
    users = np.arange(n)
    g_directed = nx.DiGraph() if case["directed"] else nx.Graph()
    g_directed.add_nodes_from(range(n))
    g_directed.add_edges_from(
        (a, b) for a, b in zip(graph.src.tolist(), graph.dst.tolist(), strict=True) if a != b
    )
    g_undirected = g_directed.to_undirected() if case["directed"] else g_directed
    rng = np.random.default_rng(0)
    active = np.flatnonzero(np.asarray(graph.csr().sum(axis=1)).ravel() > 0)
    sample = rng.choice(active, size=min(nx_sample, len(active)), replace=False)
    # what NetworkX can do for the two-hop scores: the graph as friendships
    friends = Interactions.from_indices(
        graph.src, graph.dst, n_users=n, one_sided=True, directed=False
    )
    rows = {}
    for name in MODELS:
        data = graph if name == "ppr" else friends
        model = create_retriever(name).fit(data)
        runs = repeats if name != "ppr" else max(1, repeats // 3)
        ours_wall, ours_cpu = best_of(runs, lambda m=model: m.recommend(users, k=TOP))
        one_thread = create_retriever(name, {"n_threads": 1}).fit(data)
        one_wall, one_cpu = best_of(runs, lambda m=one_thread: m.recommend(users, k=TOP))
        bare_wall, bare_cpu = bare_product_seconds(model, runs)
        g = g_directed if name == "ppr" else g_undirected
        restart = model.config.restart if name == "ppr" else 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        reference = {int(u): networkx_top(g, int(u), name, restart) for u in sample}
        nx_wall = (time.perf_counter() - wall) / len(sample) * n
        nx_cpu = (time.process_time() - cpu) / len(sample) * n
        # our top-100 of the sampled users, against NetworkX's
        ids, scores = model.recommend(sample, k=TOP)
        agree = True
        for row, u in enumerate(sample):
            theirs = np.array([s for s, _ in reference[int(u)]], dtype=np.float64)
            mine = scores[row][: len(theirs)].astype(np.float64)
            tol = dict(rtol=1e-2, atol=2e-4) if name == "ppr" else dict(rtol=1e-5, atol=1e-7)
            if name != "ppr":
                # NetworkX only lists nonzero two-hop scores; compare those
                mine = mine[: int((theirs > 0).sum())]
                theirs = theirs[: len(mine)]
            agree &= bool(np.allclose(mine, theirs, **tol))
        entry = {
            "reading": ("walk=out" if case["directed"] else "friends")
            if name == "ppr"
            else "friends",
            "wall_seconds": round(ours_wall, 4),
            "cpu_seconds": round(ours_cpu, 4),
            "wall_seconds_1_thread": round(one_wall, 4),
            "cpu_seconds_1_thread": round(one_cpu, 4),
            "bare_wall_seconds": round(bare_wall, 4),
            "bare_cpu_seconds": round(bare_cpu, 4),
            "ratio_to_bare_wall": round(ours_wall / bare_wall, 2),
            "ratio_to_bare_cpu_1_thread": round(one_cpu / bare_cpu, 2),
            "networkx_sample_nodes": len(sample),
            "networkx_projected_wall_seconds": round(nx_wall, 2),
            "networkx_projected_cpu_seconds": round(nx_cpu, 2),
            "speedup_vs_networkx_wall": round(nx_wall / ours_wall, 1),
            "speedup_vs_networkx_cpu": round(nx_cpu / ours_cpu, 1),
            "agrees_with_networkx_on_sample": agree,
        }
        if case["directed"] and name != "ppr":
            default = create_retriever(name).fit(graph)
            wall, cpu = best_of(runs, lambda m=default: m.recommend(users, k=TOP))
            entry["out_out_reading_wall_seconds"] = round(wall, 4)
            entry["out_out_reading_cpu_seconds"] = round(cpu, 4)
        rows[name] = entry
    return {"nodes": n, "edges": int(graph.csr().nnz), "models": rows}


# ---------------------------------------------------------------------- memory
MEMORY_SCRIPT = """
import sys, time
import numpy as np
from recgraph.data.readers import read_edge_list
from recgraph.retrieval import create_retriever

def status(field):
    # kB figures of this process (ru_maxrss would carry the parent's peak across exec)
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])

graph = read_edge_list(sys.argv[1], directed=True)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # restart the peak (VmHWM) from the current RSS
model = create_retriever(sys.argv[2]).fit(graph)
start = time.perf_counter()
ids, scores = model.recommend(np.arange(graph.n_users), k=100)
seconds = time.perf_counter() - start
print(before, status("VmHWM"), seconds, ids.shape[0])
"""


def memory(folder: Path) -> dict:
    path = folder / "snap-wiki-vote" / "wiki-Vote.txt"
    out = {}
    for name in MODELS:
        result = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(path), name],
            check=True,
            capture_output=True,
            text=True,
        )
        before, peak, seconds, users = result.stdout.split()
        out[name] = {
            "peak_rss_mb": round(int(peak) / 1024, 1),
            "rss_before_fit_mb": round(int(before) / 1024, 1),
            "peak_increase_fit_and_recommend_mb": round((int(peak) - int(before)) / 1024, 1),
            "users": int(users),
            "seconds": round(float(seconds), 3),
        }
    return out


# ---------------------------------------------------------------------- output
def plot(quality_results: dict) -> None:
    plot_metric_curves(
        {dataset: r["models"] for dataset, r in quality_results.items()},
        KS,
        PLOT,
        dashed=lambda model: model == BASELINE,
        legend_in_every_column=False,
    )


def print_quality(dataset: str, result: dict) -> None:
    print_quality_table(
        f"quality: {dataset} ({result['split']}; train {result['train_rows']:,} rows, "
        f"test {result['test_rows']:,}, {result['users_scored']:,} users scored)",
        result["models"],
        KS,
        extra={"recommend s": ("recommend_seconds", ".3f")},
    )


def print_speed(dataset: str, result: dict) -> None:
    print(f"\n== speed: {dataset} ({result['nodes']:,} nodes), top-{TOP} for every node")
    print(
        f"{'model':<20}{'reading':>9}{'wall s':>8}{'cpu s':>8}{'1t wall':>8}{'1t cpu':>8}"
        f"{'bare wall':>10}{'bare cpu':>9}{'x bare wall':>12}{'x bare cpu 1t':>14}"
        f"{'nx wall s':>10}{'nx cpu s':>9}{'speedup wall':>13}{'speedup cpu':>12}{'agree':>6}"
    )
    for model, r in result["models"].items():
        print(
            f"{model:<20}{r['reading']:>9}{r['wall_seconds']:>8.3f}{r['cpu_seconds']:>8.3f}"
            f"{r['wall_seconds_1_thread']:>8.3f}{r['cpu_seconds_1_thread']:>8.3f}"
            f"{r['bare_wall_seconds']:>10.3f}{r['bare_cpu_seconds']:>9.3f}"
            f"{r['ratio_to_bare_wall']:>12.2f}{r['ratio_to_bare_cpu_1_thread']:>14.2f}"
            f"{r['networkx_projected_wall_seconds']:>10.1f}"
            f"{r['networkx_projected_cpu_seconds']:>9.1f}"
            f"{r['speedup_vs_networkx_wall']:>12.0f}x{r['speedup_vs_networkx_cpu']:>11.0f}x"
            f"{str(r['agrees_with_networkx_on_sample']):>6}"
        )
        if "out_out_reading_wall_seconds" in r:
            print(
                f"{'':<20}{'out_out':>9}{r['out_out_reading_wall_seconds']:>8.3f}"
                f"{r['out_out_reading_cpu_seconds']:>8.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept")
    parser.add_argument("--nx-sample", type=int, default=20, help="query nodes for NetworkX")
    args = parser.parse_args()
    folder = datasets_folder()
    load_before = os.getloadavg()
    started = time.perf_counter()
    payload: dict = {"benchmark": "neighborhood", "ks": list(KS), "top": TOP}
    quality_results, hub_results, speed_results, reading_results = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="recgraph-neighborhood-") as tmp:
        work = Path(tmp)
        for case in DATASETS:
            result = quality(case, folder, work)
            files = result.pop("files")
            quality_results[case["name"]] = result
            print_quality(case["name"], result)
            hub_results[case["name"]] = hub_sweep(case, files, work)
            if case["directed"]:
                reading_results[case["name"]] = readings_sweep(case, files, work)
    print("\n== hub cap (recommend through `recgraph evaluate --param model.hub_cap=...`)")
    for dataset, models in hub_results.items():
        for model, rows in models.items():
            for row in rows:
                cells = ", ".join(f"{k} {v}" for k, v in row.items() if k != "hub_cap")
                print(f"{dataset:<13}{model:<13}cap {row['hub_cap']:<16}{cells}")
    print("\n== readings of the follow graphs (adamic_adar --param adamic_adar.path=...)")
    for dataset, rows in reading_results.items():
        for row in rows:
            cells = ", ".join(f"{k} {v}" for k, v in row.items() if k != "path")
            print(f"{dataset:<13}{row['path']:<12}{cells}")
    for case in DATASETS:
        speed_results[case["name"]] = speed(case, folder, args.repeats, args.nx_sample)
        print_speed(case["name"], speed_results[case["name"]])
    memory_results = memory(folder)
    print("\n== memory: wiki-Vote, top-100 for all 7,115 nodes, fresh process each")
    for model, r in memory_results.items():
        print(
            f"{model:<21}peak RSS {r['peak_rss_mb']:>7.1f} MB (RSS before fit "
            f"{r['rss_before_fit_mb']:.1f} MB, fit + recommend added "
            f"{r['peak_increase_fit_and_recommend_mb']:.1f} MB), {r['seconds']:.2f} s"
        )
    payload.update(
        quality=quality_results,
        hub_cap=hub_results,
        readings=reading_results,
        speed=speed_results,
        memory_wiki_vote=memory_results,
        environment={
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "cpus": os.cpu_count(),
            "threads_used": resolve_threads(0),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    plot(quality_results)
    print(f"\nsaved {RESULTS.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
