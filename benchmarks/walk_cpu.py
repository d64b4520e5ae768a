"""CPU per suggestion request of the walk retrievers and Adamic-Adar, in this process.

What a served suggestion asks of a model (``recommend`` of the top 10
without the seen accounts, then ``explain`` of those 10 with 8 entries each),
without HTTP or the pipeline, on the serving graph of
``benchmarks/scale.py --graph-sizes``: the same generator's heavy-tailed
follows (:func:`scale.generated_chunks`) streamed into the memory-mapped CSR,
kept in ``--graph-dir`` (``graph_SIZE``, the folder ``scale.py --graph-dir``
uses) and reused. Per model: CPU ms per request (mean, p50, p99) and its parts:
``walk`` (the user's scored row, walked afresh: ``ppr``, ``salsa`` with its
circle, ``pixie``), ``recommend`` (the top 10 from that row) and ``explain``.
Askers are drawn like followers (the active ask more, seed 0); the first 20
requests are not counted (they page the mapped graph in).

``pixie`` walks the follow graph as a user x item graph: a user's query
items are the first ``query_items`` accounts it follows (the generator has no
times, so every follow is as old as the others).

Beside ``scale.py``'s graph-only mode (``ppr``, ``salsa``, ``adamic_adar``,
whole requests only) this adds ``pixie`` and the split into parts, which is
where a change to one part shows. Two code versions compare by running this
script once with each on ``PYTHONPATH``, alternating, with the same
``--graph-dir``; the figure to carry on a shared machine is CPU time.

Run: ``python benchmarks/walk_cpu.py --size 1e7 --graph-dir /tmp/graphs --out NAME``.
Saves ``benchmarks/results/NAME.json`` (default ``walk_cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from common import REPO, save_results

MODELS = ("ppr", "salsa", "pixie", "adamic_adar")
WARM = 20


def serving_graph(size: int, folder: Path):
    """The memory-mapped CSR of ``size`` generated follows, built into ``folder`` once."""
    from recgraph.data.graph_csr import GraphCSR, build_from_chunks

    if (folder / "graph.json").exists():
        return GraphCSR.load(folder, mmap=True), True
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale import generated_chunks

    chunks, n = generated_chunks(size)
    build_from_chunks(chunks, n, folder)
    return GraphCSR.load(folder, mmap=True), False


def first_follows(graph, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixie's recent items without times: each account's first ``count`` follows."""
    indptr, indices = (np.asarray(a) for a in graph.arrays("out"))
    degree = np.diff(indptr).astype(np.int64)
    taken = np.minimum(degree, count)
    recent_indptr = np.zeros(len(degree) + 1, dtype=np.int64)
    np.cumsum(taken, out=recent_indptr[1:])
    owner = np.repeat(np.arange(len(degree)), taken)
    within = np.arange(len(owner)) - recent_indptr[owner]
    items = indices[indptr[owner] + within].astype(np.int32)
    return recent_indptr, items, np.zeros(len(items), dtype=np.int64)


def model_on(name: str, graph, seen: sp.csr_matrix, ids, params: dict | None = None):
    """``name`` set up on the mapped graph as a trained model would be (no fit), with
    ``params`` over its default config."""
    from recgraph.retrieval.adamic_adar import AdamicAdar
    from recgraph.retrieval.pixie import Pixie
    from recgraph.retrieval.ppr import PersonalizedPageRank
    from recgraph.retrieval.salsa import SALSA

    cls = {"ppr": PersonalizedPageRank, "salsa": SALSA, "pixie": Pixie, "adamic_adar": AdamicAdar}
    model = cls[name](params or {})
    if name == "adamic_adar":
        model.adjacency_ = seen
    else:
        model.graph_ = graph
    model._seen, model.graph_kind, model.users, model.items = seen, "follows", ids, ids
    if name == "pixie":
        model.recent_indptr_, model.recent_items_, model.recent_times_ = first_follows(
            graph, model.config.query_items
        )
    model._build()
    return model


def measure(model, askers: np.ndarray, n: int) -> dict:
    """CPU ms per request and per part, every cache emptied before each request."""
    circle = getattr(model, "circle_model_", None)
    caches = [m._cache for m in (model, circle) if hasattr(m, "_cache")]
    walks = hasattr(model, "cached_row")
    no_exclusion = sp.csr_matrix((1, n), dtype=np.float32)
    parts: dict[str, list[float]] = {"walk": [], "recommend": [], "explain": [], "request": []}
    scored = []
    for u in askers.tolist():
        for cache in caches:
            cache.clear()
        start = time.process_time()
        if walks:  # the walk, kept in the model's cache for recommend
            row = model.cached_row(u)
            scored.append(len(row[0]))
        walked = time.process_time()
        top, _ = model.recommend([u], 10, exclude_seen=True, exclude=no_exclusion)
        recommended = time.process_time()
        model.explain(u, top[0][top[0] >= 0], 8)
        done = time.process_time()
        parts["walk"].append(walked - start)
        parts["recommend"].append(recommended - walked)
        parts["explain"].append(done - recommended)
        parts["request"].append(done - start)
    out: dict = {}
    for part, values in parts.items():
        ms = np.array(values[WARM:]) * 1000
        out[f"{part}_cpu_ms_mean"] = round(float(ms.mean()), 3)
        out[f"{part}_cpu_ms_p99"] = round(float(np.percentile(ms, 99)), 3)
        out[f"{part}_cpu_ms_max"] = round(float(ms.max()), 3)
    ms = np.array(parts["request"][WARM:]) * 1000
    out["request_cpu_ms_p50"] = round(float(np.percentile(ms, 50)), 3)
    out["request_cpu_ms_p99"] = round(float(np.percentile(ms, 99)), 3)
    out["request_cpu_ms_max"] = round(float(ms.max()), 3)
    cold = np.array(parts["request"][:WARM]) * 1000  # the first requests: pages, scratch
    out["first_requests_cpu_ms"] = [round(float(x), 2) for x in cold]
    # after the warm-up, as p99 and max: the first requests pay pages and scratch
    slowest = WARM + np.argsort(parts["request"][WARM:])[::-1][:5]
    out["slowest"] = [
        {"at": int(i), "asker": int(askers[i]), "cpu_ms": round(1000 * parts["request"][i], 2),
         **{p: round(1000 * parts[p][i], 2) for p in ("walk", "recommend", "explain")}}
        for i in slowest
    ]  # fmt: skip
    if scored:
        out["scored_per_user_mean"] = round(float(np.mean(scored)), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=1e7, help="follows")
    parser.add_argument("--graph-dir", required=True, help="graph_SIZE is built or reused here")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--askers", type=int, default=300, help=f"more than the {WARM} warm-up requests"
    )
    parser.add_argument("--repeat", type=int, default=1, help="passes over the askers")
    parser.add_argument(
        "--params", default="{}", help='JSON config over the defaults, e.g. {"sweep_budget": 0}'
    )
    parser.add_argument("--out", default="walk_cpu")
    args = parser.parse_args()
    if args.askers * args.repeat <= WARM:
        parser.error(
            f"--askers x --repeat must exceed the {WARM} warm-up requests it does not count"
        )
    load_at_start = os.getloadavg()
    from recgraph.data.interactions import IdMap

    size = int(args.size)
    graph, reused = serving_graph(size, Path(args.graph_dir) / f"graph_{size}")
    n = graph.n_rows
    rng = np.random.default_rng(0)
    edges = rng.choice(graph.n_edges, args.askers)  # askers drawn like followers
    askers = np.searchsorted(np.asarray(graph.out_indptr), edges, side="right") - 1
    askers = np.tile(askers, args.repeat)
    seen = graph.to_csr("out")
    ids = IdMap(map(str, range(n)))
    results = {}
    print(
        f"{size:,} follows, {n:,} accounts; CPU ms per request (mean: walk + recommend + explain)"
    )
    for name in [m for m in args.models.split(",") if m]:
        model = model_on(name, graph, seen, ids, json.loads(args.params))
        results[name] = measure(model, askers, n)
        r = results[name]
        print(
            f"  {name:12s} {r['request_cpu_ms_mean']:7.2f}  (walk {r['walk_cpu_ms_mean']:.2f}, "
            f"recommend {r['recommend_cpu_ms_mean']:.2f}, explain {r['explain_cpu_ms_mean']:.2f}; "
            f"p50 {r['request_cpu_ms_p50']:.2f}, p99 {r['request_cpu_ms_p99']:.2f}, "
            f"max {r['request_cpu_ms_max']:.2f}; first {r['first_requests_cpu_ms'][:5]})",
            flush=True,
        )
        del model
    out = REPO / "benchmarks" / "results" / f"{args.out}.json"
    save_results(
        out,
        "walk_cpu",
        follows=graph.n_edges,
        accounts=n,
        reused_graph=reused,
        askers=args.askers,
        params=json.loads(args.params),
        repeat=args.repeat,
        code=os.environ.get("PYTHONPATH", ""),
        load_average_at_start=load_at_start,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        models=results,
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
