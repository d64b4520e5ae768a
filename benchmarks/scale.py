"""Who-to-follow at scale in one process: import, training, serving and memory against follows.

For each size (``--sizes``, follows) a synthetic heavy-tailed follow graph
(power-law in- and out-degrees, :func:`imports.heavy_tailed_follows`, 10
follows per account on average) goes the real way:

1. ``import``: ``import_edges`` into a fresh SQLite store (wall time, rows/s,
   CPU seconds, peak RSS; in a child process);
2. ``train``: ``train_pipeline`` of a who-to-follow pipeline with one
   retriever (``--models``: ``ppr`` by local push, ``salsa``,
   ``adamic_adar``) into a registry (wall time, peak RSS, size on disk; a
   child process each);
3. ``serve``: ``recgraph serve --workers`` (``--workers``, default 2, sharing the
   memory-mapped graph) on 127.0.0.1: start
   time until ``/healthz`` names the model, then ``GET
   /v1/accounts/{a}/suggestions?k=10`` at ``--rate`` requests/s for
   ``--seconds`` (the open-loop generator of ``benchmarks/load.py``), for
   accounts drawn like the followers (active accounts ask more): p50/p99,
   the server's CPU per request and its resident memory. Before the measured
   phase, after 100 requests one at a time, an unmeasured burst at the same
   rate for ``--warm-seconds`` (default 2; ``0``: none, as runs before it
   had) warms what a production server would be warm in when it takes
   traffic: the server's request threads, a walk's scratch arrays per
   concurrent request, the pages and caches that many different askers
   touch (the measured phase opens its connections anew). Its p50/p99 are
   kept (``warm_burst``): what the first seconds of a cold server cost.

``--store PATH`` (with one size) trains and serves from a store imported
before instead of generating and importing one: two code versions measured
on the same follows.

``--graph-sizes`` adds the serving graph alone, without SQLite: the same
generator's edges streamed into the memory-mapped CSR
(:func:`recgraph.data.graph_csr.build_from_chunks`), then for each of
``--models`` in this process: the walk alone (``user_row``, ``ppr`` and
``salsa``) and what a served suggestion asks of the model (its top 10 without
the seen accounts, explained: CPU ms per request, without HTTP or the
pipeline), and resident memory. Where the store or the training would not
fit in time, this says what the models cost at that size. ``--graph-dir``
keeps the built CSRs and reuses them on the next run (a 10^8 build takes
~20 minutes on a loaded machine).

Saves ``benchmarks/results/scale.json`` and ``scale.png`` (``--out NAME``:
``NAME.json`` and ``NAME.png``; rewritten after each step, so a run that is
stopped keeps what it measured).
Run: ``python benchmarks/scale.py --sizes 1e5,1e6 --graph-sizes 1e8``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (
    REPO,
    RESULTS_DIR,
    BackgroundSampler,
    process_read_bytes,
    process_tree,
    stop_process,
    tree_cpu_seconds,
    tree_faults,
    tree_read_bytes,
    tree_stats,
)
from imports import heavy_tailed_follows, weighted_draw
from load import free_port, open_loop, start_server, warm_up
from load_workers import stderr_tail

MODELS = ("ppr", "salsa", "adamic_adar")
TARGET_P99_MS = 50.0

_IMPORT_CHILD = r"""
import json, resource, sys, time
from recgraph.data.imports import import_edges
from recgraph.data.store import Store
store = Store(sys.argv[2])
start, cpu = time.perf_counter(), time.process_time()
summary = import_edges(store, sys.argv[1], directed=True)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
counts = store.counts()
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": summary.rows_read,
    "follows": counts["follows"], "accounts": counts["accounts"],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_TRAIN_CHILD = r"""
import json, resource, sys, time
from recgraph.data.store import Store
from recgraph.jobs.train import train_pipeline
from recgraph.serving.registry import ModelRegistry
store = Store(sys.argv[1])
config = json.loads(sys.argv[3])
start, cpu = time.perf_counter(), time.process_time()
result = train_pipeline(store, ModelRegistry(sys.argv[2]), config)
print(json.dumps({"seconds": time.perf_counter() - start, "fit_seconds": result.fit_seconds,
    "cpu_seconds": time.process_time() - cpu, "version": result.version,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def pipeline_config(model: str) -> dict:
    """A who-to-follow pipeline with one retriever and the popular fallback; no feed."""
    return {
        "who_to_follow": {
            "retrievers": [{"name": model, "min_score": 0.0}],
            "fallback": ["popular"],
        },
        "feed": {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
    }


def child(code: str, *args: str) -> dict:
    env = {**os.environ, "RECGRAPH_PROGRESS": "0", "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def process_memory_mb(pid: int) -> dict:
    """Resident and peak resident memory of a process, from /proc (MB)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def tree_memory_mb(pids: list[int]) -> dict:
    """Resident memory of every process and their proportional sum (PSS: a page mapped by
    several workers, such as the memory-mapped graph, counts once in all)."""
    rss, pss, each = [], 0.0, []
    for pid in pids:
        rss.append(process_memory_mb(pid)["rss_mb"])
        fields = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("Pss", "Pss_Anon", "Pss_File"):
                fields[name.lower()] = round(int(value.split()[0]) / 1024, 1)
        pss += fields.get("pss", 0.0)
        each.append(fields)
    # per process: pss_anon is its own memory, pss_file its share of mapped files and libraries
    return {"rss_mb_each": rss, "pss_mb_total": round(pss, 1), "pss_mb_each": each}


#: Seconds a server may take to answer with a model (10^8 follows: minutes under load).
SERVER_START_TIMEOUT = 900.0

#: A second, light phase: what one request takes when the shared machine is not saturated.
LIGHT_RATE = 20.0


class PerSecond(BackgroundSampler):
    """The server's CPU (user, system), page faults and disk reads each second while a phase
    runs (a thread reading /proc): where the slow seconds' time went. The server's process
    tree is read again each second, so that a worker started meanwhile counts from its first
    reading; each process adds what it spent since its last reading (never less than 0: a
    worker gone, or its pid reused, takes nothing away). The last row is the partial second
    before the phase ended (``seconds`` says how long each row is). A failure of the thread is
    kept in ``error`` (and printed), the rows so far kept."""

    def __init__(self, root: int) -> None:
        super().__init__()
        self.root, self.rows = root, []
        self.error: str | None = None

    def _read(self) -> dict[int, tuple[float, ...]]:
        """Each process's (user, system, minor faults, major faults, bytes read) so far."""
        out = {}
        for pid, stat in tree_stats(process_tree(self.root)).items():
            try:
                read = process_read_bytes(pid)
            except OSError:
                read = 0
            out[pid] = (stat.user, stat.system, stat.minor_faults, stat.major_faults, read)
        return out

    @staticmethod
    def row(last: dict, now: dict, seconds: float) -> dict:
        """One row: what the processes in both readings spent between them."""
        spent = [0.0] * 5
        for pid, values in now.items():
            if pid in last:
                spent = [
                    s + max(0, b - a) for s, a, b in zip(spent, last[pid], values, strict=True)
                ]
        user, system, minor, major, read = spent
        return {"seconds": round(seconds, 3), "user_ms": round(1000 * user),
                "system_ms": round(1000 * system), "minor_faults": int(minor),
                "major_faults": int(major), "disk_read_mb": round(read / 1e6, 2)}  # fmt: skip

    def _run(self) -> None:
        try:
            last, at = self._read(), time.perf_counter()
            while True:
                stopped = self._stop.wait(1.0)
                now, now_at = self._read(), time.perf_counter()
                self.rows.append(self.row(last, now, now_at - at))
                last, at = {**last, **now}, now_at  # a pid unread this time keeps its last reading
                if stopped:
                    return
        except Exception as exc:  # kept and printed: the phase goes on
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"per-second sampler failed: {self.error}", file=sys.stderr, flush=True)


def every_worker_up(url: str, paths: list[str], deadline: float) -> None:
    """Warm up again until no request times out: the first worker to answer ``/healthz`` may
    be the only one loaded (at 10^8 follows the second took a minute more)."""
    import httpx

    while True:
        try:
            asyncio.run(warm_up(url, paths))
            return
        except httpx.TimeoutException:
            if time.perf_counter() > deadline:
                raise
            time.sleep(2.0)


def serve(
    registry: Path,
    db: str,
    users: list[str],
    rate: float,
    seconds: float,
    workers: int = 1,
    warm_seconds: float = 0.0,
) -> dict:
    """The server of ``registry`` under load, its stderr in a file beside the registry (its
    end printed if the run fails)."""
    port = free_port()
    started = time.perf_counter()
    stderr = registry.parent / f"{registry.name}.server.stderr"
    server = start_server(str(registry), db, port, workers, stderr, timeout=SERVER_START_TIMEOUT)
    start_seconds = time.perf_counter() - started
    url = f"http://127.0.0.1:{port}"
    paths = [f"/v1/accounts/{u}/suggestions?k=10" for u in users]
    burst = None
    try:
        asyncio.run(warm_up(url, paths))
        time.sleep(1.0)  # every worker up (warm_up may have met only the first)
        every_worker_up(url, paths[50:], started + SERVER_START_TIMEOUT)
        pids = process_tree(server.pid)
        faults_at_start = (*tree_faults(pids), round(tree_read_bytes(pids) / 1e6, 1))
        if warm_seconds > 0:  # unmeasured: askers from the end of the list, at the full rate
            with PerSecond(server.pid) as burst_seconds:
                burst = asyncio.run(open_loop(url, paths[::-1], rate, warm_seconds))
        cpu_before = tree_cpu_seconds(pids)
        with PerSecond(server.pid) as measured_seconds:
            result = asyncio.run(open_loop(url, paths, rate, seconds))
        cpu = tree_cpu_seconds(pids) - cpu_before
        memory = process_memory_mb(server.pid)
        if workers > 1:
            memory.update(tree_memory_mb(pids))
        light = asyncio.run(open_loop(url, paths[::-1], LIGHT_RATE, seconds))
    except Exception:
        print(f"the server's stderr ends:\n{stderr_tail(stderr)}", file=sys.stderr, flush=True)
        raise
    finally:
        stop_process(server, timeout=30)
    result["tail"] = tail_by_second(result.pop("latencies_ms"), rate, result["errors"])
    result.pop("versions_seen", None)
    # the server's page faults while loading and warming up (before the burst) and its
    # CPU and faults second by second (by when the sampler read them, not by due time)
    result["faults_at_load"] = dict(
        zip(("minor", "major", "disk_read_mb"), faults_at_start, strict=True)
    )
    result["per_second"] = measured_seconds.rows
    if measured_seconds.error:
        result["per_second_error"] = measured_seconds.error
    if burst is not None:
        result["warm_burst"] = {
            "seconds": warm_seconds,
            **{k: burst[k] for k in ("ok", "errors", "p50_ms", "p99_ms", "max_ms")},
            "per_second": burst_seconds.rows,
            **({"per_second_error": burst_seconds.error} if burst_seconds.error else {}),
        }
    return {
        "light": {
            "rate_rps": LIGHT_RATE,
            **{k: light[k] for k in ("ok", "errors", "p50_ms", "p99_ms", "max_ms")},
        },
        "workers": workers,
        "start_seconds": round(start_seconds, 2),
        "server_cpu_ms_per_request": round(1000 * cpu / max(result["ok"], 1), 2),
        **{f"server_{k}": v for k, v in memory.items()},
        **result,
    }


def tail_by_second(latencies_ms: np.ndarray, rate: float, errors: int) -> dict:
    """Where the slow requests fell: per second of the run (by due time), how many took more
    than the target, and the p99 without the worst second. One stall (a pause, another
    process taking the cores) shows as one second holding most of them; a request path
    that is slow for some users, as slow requests spread over the run."""
    if errors or not len(latencies_ms):
        return {}
    second = (np.arange(len(latencies_ms)) / rate).astype(np.int64)
    slow = latencies_ms > TARGET_P99_MS
    per_second = np.bincount(second, weights=slow)
    worst = int(np.argmax(per_second))
    others = latencies_ms[second != worst]
    return {
        "slow_per_second": [int(x) for x in per_second],
        "worst_second": worst,
        "slow_in_worst_second": int(per_second[worst]),
        "slow_total": int(slow.sum()),
        "p99_ms_without_worst_second": round(float(np.percentile(others, 99)), 2)
        if len(others)
        else None,
    }


def run_size(
    size: int,
    models: list[str],
    rate: float,
    seconds: float,
    work: Path,
    on_step=None,
    workers: int = 1,
    store: str | None = None,
    warm_seconds: float = 0.0,
    keep: bool = False,
) -> dict:
    folder = work / f"size_{size}"
    folder.mkdir()
    if store is not None:
        imported, users = reused_store(store)
        db = imported["store"]
    else:
        imported, users, db = generate_and_import(size, folder)
    out: dict = {"follows": imported["follows"], "accounts": imported["accounts"],
                 "import": imported, "models": {}}  # fmt: skip
    if on_step is not None:
        on_step(out)
    for model in models:
        registry = folder / f"models_{model}"
        try:
            trained = child(_TRAIN_CHILD, db, str(registry), json.dumps(pipeline_config(model)))
            trained["registry_mb"] = folder_mb(registry)
            print(
                f"  {model}: trained in {trained['seconds']:.1f}s, peak {trained['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            served = serve(registry, db, users, rate, seconds, workers, warm_seconds)
            print(
                f"  {model}: server up in {served['start_seconds']}s, p50 {served['p50_ms']} ms, "
                f"p99 {served['p99_ms']} ms ({served['tail'].get('slow_total')} over "
                f"{TARGET_P99_MS:.0f} ms, {served['tail'].get('slow_in_worst_second')} of them in "
                f"one second), {served['server_cpu_ms_per_request']} CPU ms/request, "
                f"at {LIGHT_RATE:.0f}/s p50 {served['light']['p50_ms']} p99 {served['light']['p99_ms']} ms, "
                f"warm-up burst p99 {served.get('warm_burst', {}).get('p99_ms')} ms, "
                + (
                    f"PSS of the {workers} workers and supervisor {served['server_pss_mb_total']} MB"
                    if workers > 1
                    else f"RSS {served['server_rss_mb']} MB"
                ),
                flush=True,
            )
            out["models"][model] = {"train": trained, "serve": served}
        except (subprocess.CalledProcessError, RuntimeError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            out["models"][model] = {"error": detail.strip().splitlines()[-1][:500]}
            print(f"  {model}: failed: {out['models'][model]['error']}", flush=True)
        if keep:  # --keep: the trained registry stays for --reserve
            out["models"].get(model, {})["registry"] = str(registry)
        else:
            shutil.rmtree(registry, ignore_errors=True)
        if on_step is not None:
            on_step(out)
    return out


def generate_and_import(size: int, folder: Path) -> tuple[dict, list[str], str]:
    """A fresh store of ``size`` generated follows: the import's figures, askers, the store URL."""
    tsv = folder / "follows.tsv"
    started = time.perf_counter()
    rows = heavy_tailed_follows(size, tsv)
    generated = time.perf_counter() - started
    db = f"sqlite:///{folder / 'store.db'}"
    print(f"{rows:,} follows generated in {generated:.1f}s; importing", flush=True)
    imported = child(_IMPORT_CHILD, str(tsv), db)
    imported["rows_per_second"] = round(imported["rows"] / imported["seconds"])
    imported["cpu_us_per_row"] = round(1e6 * imported["cpu_seconds"] / imported["rows"], 2)
    imported["store_mb"] = folder_mb(folder) - round(tsv.stat().st_size / 1e6, 1)
    print(
        f"  import {imported['seconds']:.1f}s ({imported['rows_per_second']:,} rows/s)", flush=True
    )
    # requests: accounts drawn like followers (the active ask more), as the ids the TSV holds
    pairs = np.loadtxt(tsv, dtype=np.int64, max_rows=200_000)
    rng = np.random.default_rng(0)
    users = [str(u) for u in rng.choice(pairs[:, 0], size=2000)]
    tsv.unlink()
    return imported, users, db


def reused_store(store: str) -> tuple[dict, list[str]]:
    """A store imported before (``--store``): its counts (no import figures) and askers drawn
    from its first follows (:func:`store_askers`), so two code versions train on one store."""
    from recgraph.data.store import Store

    db = store if "://" in store else f"sqlite:///{Path(store).resolve()}"
    opened = Store(db)
    counts = opened.counts()
    opened.close()
    print(
        f"reusing {db}: {counts['follows']:,} follows, {counts['accounts']:,} accounts", flush=True
    )
    imported = {"store": db, "reused": True, "rows": counts["follows"],
                "follows": counts["follows"], "accounts": counts["accounts"]}  # fmt: skip
    return imported, store_askers(db)


_GRAPH_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
import scipy.sparse as sp
sys.path.insert(0, sys.argv[3])
from scale import generated_chunks
from recgraph.data.graph_csr import GraphCSR, build_from_chunks
from recgraph.data.interactions import IdMap
from recgraph.retrieval.adamic_adar import AdamicAdar
from recgraph.retrieval.ppr import PersonalizedPageRank
from recgraph.retrieval.salsa import SALSA
size, folder, models = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[4].split(",")
out = {"follows": size}
if (folder / "graph.json").exists():  # built by an earlier run (--graph-dir)
    graph = GraphCSR.load(folder, mmap=True)
    n = graph.n_rows
    out["reused_graph"] = str(folder)
else:
    start, cpu = time.perf_counter(), time.process_time()
    chunks, n = generated_chunks(size)
    out["generate_seconds"] = time.perf_counter() - start
    out["peak_rss_generate_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu = time.perf_counter(), time.process_time()
    graph = build_from_chunks(chunks, n, folder)
    out["build"] = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
    del chunks
out.update(follows=graph.n_edges, accounts=n)
rng = np.random.default_rng(0)
edges = rng.choice(graph.n_edges, 300)  # askers drawn like followers: the active ask more
askers = np.searchsorted(np.asarray(graph.out_indptr), edges, side="right") - 1
seen = graph.to_csr("out")  # what a served model excludes
ids = IdMap(map(str, range(n)))
no_exclusion = sp.csr_matrix((1, n), dtype=np.float32)
for name in models:
    cls = {"ppr": PersonalizedPageRank, "salsa": SALSA, "adamic_adar": AdamicAdar}[name]
    model = cls()
    if name == "adamic_adar":
        model.adjacency_ = seen
    else:
        model.graph_ = graph
    model._seen, model.graph_kind, model.users, model.items = seen, "follows", ids, ids
    t0, c0 = time.perf_counter(), time.process_time()
    model._build()
    setup, setup_cpu = time.perf_counter() - t0, time.process_time() - c0
    caches = [m._cache for m in (model, getattr(model, "circle_model_", None)) if hasattr(m, "_cache")]
    rows, requests, sizes = [], [], []
    for u in askers.tolist():
        if hasattr(model, "user_row"):
            t = time.process_time()
            nodes, _ = model.user_row(u)
            rows.append(time.process_time() - t)
            sizes.append(len(nodes))
        for cache in caches:  # each request walks again (a server walks once per request)
            cache.clear()
        # what a served suggestion asks of the model: its top 10 without the seen, explained
        t = time.process_time()
        top, _ = model.recommend([u], 10, exclude_seen=True, exclude=no_exclusion)
        model.explain(u, top[0][top[0] >= 0], 8)
        requests.append(time.process_time() - t)
    warm = np.array(requests[20:]) * 1000  # the first requests page the mapped graph in
    entry = {"setup_seconds": setup, "setup_cpu_seconds": setup_cpu,
        "request_cpu_ms_mean": float(warm.mean()),
        "request_cpu_ms_p50": float(np.percentile(warm, 50)),
        "request_cpu_ms_p99": float(np.percentile(warm, 99)),
        "request_cpu_ms_max": float(warm.max())}
    if rows:
        times = np.array(rows[20:]) * 1000
        entry.update(cpu_ms_p50=float(np.percentile(times, 50)),
            cpu_ms_p99=float(np.percentile(times, 99)), cpu_ms_mean=float(times.mean()),
            scored_per_user_mean=float(np.mean(sizes)))
    out[name] = entry
    del model
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
out["rss_after_walks_mb"] = int(status["VmRSS"].split()[0]) / 1024
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def generated_chunks(rows: int, seed: int = 0, chunk: int = 5_000_000):
    """Edges drawn as :func:`imports.heavy_tailed_follows` draws them (not the same edges for
    a seed), in memory and sorted by source.

    Returns ``(chunks, n_accounts)``; the chunks are views of one key array
    (8 bytes an edge), so the CSR build streams them as it would the store's.
    """
    from recgraph.data.sorted_keys import distinct_sorted

    rng = np.random.default_rng(seed)
    accounts = max(rows // 10, 100)
    rank = np.arange(1, accounts + 1, dtype=np.float64)
    popular = rank**-1.0
    popular /= popular.sum()
    active = rank**-0.8
    active /= active.sum()
    shuffle = rng.permutation(accounts)
    keys = []
    for start in range(0, int(rows * 1.3), 20_000_000):
        draw = min(20_000_000, int(rows * 1.3) - start)
        src = shuffle[weighted_draw(rng, active, draw)].astype(np.int64)
        dst = weighted_draw(rng, popular, draw)
        keys.append((src * accounts + dst)[src != dst])
        del src, dst
    pairs = distinct_sorted(np.concatenate(keys))  # np.unique's answer, without hashing
    del keys
    if len(pairs) > rows:  # a uniform subset, kept in key order
        keep = np.sort(rng.choice(len(pairs), size=rows, replace=False))
        pairs = pairs[keep]

    def chunks():
        for start in range(0, len(pairs), chunk):
            block = pairs[start : start + chunk]
            yield (block // accounts).astype(np.int32), (block % accounts).astype(np.int32)

    return chunks(), accounts


def run_graph_only(size: int, work: Path, models: list[str], keep_in: Path | None = None) -> dict:
    """The serving graph alone (no SQLite): built (or reused from ``keep_in``), then per model
    the walk alone (``user_row``) and what a served suggestion asks of the model (top 10
    without the seen, explained), CPU ms per request, in this process."""
    folder = (keep_in or work) / f"graph_{size}"
    print(f"graph only, {size:,} follows: building (or reusing) the CSR, asking", flush=True)
    walked = [m for m in models if m in ("ppr", "salsa", "adamic_adar")]
    here = str(Path(__file__).resolve().parent)
    out = child(_GRAPH_CHILD, str(size), str(folder), here, ",".join(walked))
    out["csr_mb"] = folder_mb(folder)
    if keep_in is None:
        shutil.rmtree(folder, ignore_errors=True)
    said = ", ".join(f"{m} {out[m]['request_cpu_ms_mean']:.2f}" for m in walked)
    print(f"  CPU ms per request (mean): {said}; peak {out['peak_rss_mb']:.0f} MB", flush=True)
    return out


def _against_follows(ax, unit: str, title: str) -> None:
    """Log-log axes of a figure against the number of follows."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("follows")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


def _model_series(runs: list[dict], model: str, *path: str) -> list[float]:
    """``run["models"][model][path...]`` of each run, NaN where a run has no such figure."""
    series = []
    for run in runs:
        value = run["models"].get(model, {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        series.append(np.nan if value is None else value)
    return series


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    runs = payload["runs"]
    graphs = [g for g in payload["graph_only"] if "build" in g]
    x = [r["follows"] for r in runs]
    ax = axes[0]
    if runs:
        ax.plot(
            x, [r["import"].get("seconds", np.nan) for r in runs], "o-", label="import (SQLite)"
        )
        for model in payload["models"]:
            ax.plot(
                x, _model_series(runs, model, "train", "seconds"), "s--", label=f"train {model}"
            )
            starts = _model_series(runs, model, "serve", "start_seconds")
            ax.plot(x, starts, "^:", label=f"server start {model}")
    if graphs:
        ax.plot([g["follows"] for g in graphs], [g["build"]["seconds"] for g in graphs], "kD-",
                label="CSR build (no SQLite)")  # fmt: skip
    _against_follows(ax, "seconds", "time")
    ax = axes[1]
    if runs:
        ax.plot(
            x, [r["import"].get("peak_rss_mb", np.nan) for r in runs], "o-", label="import peak"
        )
        for model in payload["models"]:
            peaks = _model_series(runs, model, "train", "peak_rss_mb")
            ax.plot(x, peaks, "s--", label=f"train {model} peak")
            rss = _model_series(runs, model, "serve", "server_rss_mb")
            ax.plot(x, rss, "^:", label=f"server {model} RSS")
    if graphs:
        ax.plot([g["follows"] for g in graphs], [g["peak_rss_mb"] for g in graphs], "kD-",
                label="CSR build + walks peak")  # fmt: skip
    ax.axhline(16_000, color="red", linestyle="--", linewidth=1, label="16 GB")
    _against_follows(ax, "MB", "memory")
    ax = axes[2]
    for model in payload["models"]:
        p99 = _model_series(runs, model, "serve", "p99_ms")
        ax.plot(x, p99, "o-", label=f"{model} p99 at {payload['rate_rps']:.0f}/s (HTTP)")
        light = _model_series(runs, model, "serve", "light", "p99_ms")
        ax.plot(x, light, "s-.", label=f"{model} p99 at {LIGHT_RATE:.0f}/s (HTTP)")
        cpu = _model_series(runs, model, "serve", "server_cpu_ms_per_request")
        ax.plot(x, cpu, "x:", label=f"{model} CPU ms/request")
    for model in ("ppr", "salsa", "adamic_adar"):
        asked = [g for g in payload["graph_only"] if "request_cpu_ms_mean" in g.get(model, {})]
        if asked:
            ax.plot([g["follows"] for g in asked], [g[model]["request_cpu_ms_mean"] for g in asked],
                    "D--", label=f"{model} model CPU ms/request (no HTTP)")  # fmt: skip
    ax.axhline(TARGET_P99_MS, color="red", linestyle="--", linewidth=1, label="50 ms target")
    _against_follows(ax, "ms", f"suggestions at {payload['rate_rps']:.0f} requests/s")
    fig.suptitle(
        f"recgraph at scale (2 cores shared; load average {payload['load_average_at_end'][0]:.1f})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


#: Base name of the saved results (``--out``): ``scale`` writes ``scale.json`` and ``scale.png``.
OUT = {"name": "scale"}


def save(payload: dict) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload["load_average_at_end"] = os.getloadavg()
    (RESULTS_DIR / f"{OUT['name']}.json").write_text(json.dumps(payload, indent=2) + "\n")
    if any(r["models"] for r in payload["runs"]) or payload["graph_only"]:
        # (not before a first model is measured: a log axis without data cannot be drawn)
        plot(payload, RESULTS_DIR / f"{OUT['name']}.png")


def store_askers(db: str, n: int = 2000, seed: int = 0) -> list[str]:
    """Accounts drawn like followers (the active ask more) from a store's first follows."""
    from recgraph.data.store import Store

    store = Store(db)
    keys, ids = store.account_index()
    sources = next(store.iter_follow_chunks(200_000, keys=keys)).src
    store.close()
    rng = np.random.default_rng(seed)
    return [str(u) for u in ids.external(rng.choice(sources, size=n))]


def reserve(payload: dict, args: argparse.Namespace) -> None:
    """Serve a registry trained earlier again (``--reserve SIZE:MODEL:REGISTRY:DB``) and
    put the figures in that size's run, marked as a re-run, keeping the first in ``first_serve``."""
    size, model, registry, db = args.reserve.split(":", 3)
    run = next(r for r in payload["runs"] if r["follows"] == int(float(size)))
    entry = run["models"].setdefault(model, {})  # a first serve that never finished: none
    served = serve(
        Path(registry),
        db,
        store_askers(db),
        args.rate,
        args.seconds,
        args.workers,
        args.warm_seconds,
    )
    served["rerun"] = {"at": time.strftime("%H:%M UTC", time.gmtime()), "load": os.getloadavg()}
    entry.setdefault("first_serve", entry.get("serve"))
    entry["serve"] = served
    print(
        f"  {model} at {size}: p50 {served['p50_ms']} ms, p99 {served['p99_ms']} ms, "
        f"{served['server_cpu_ms_per_request']} CPU ms/request, at {LIGHT_RATE:.0f}/s "
        f"p50 {served['light']['p50_ms']} p99 {served['light']['p99_ms']} ms",
        flush=True,
    )
    save(payload)


def sizes_arg(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=sizes_arg, default=sizes_arg("1e5,1e6"))
    parser.add_argument("--graph-sizes", type=sizes_arg, default=[])
    parser.add_argument(
        "--graph-dir",
        default=None,
        help="keep the --graph-sizes CSRs here (graph_SIZE) and reuse them on the next run",
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--warm-seconds",
        type=float,
        default=2.0,
        help="an unmeasured burst at --rate before the measured phase (0: none)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes (recgraph serve --workers)"
    )
    parser.add_argument(
        "--merge", action="store_true", help="add to scale.json instead of replacing it"
    )
    parser.add_argument(
        "--reserve",
        default=None,
        help="SIZE:MODEL:REGISTRY:DB: serve an already trained registry again into scale.json",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="a store imported before (path or URL), used for the one size given instead of "
        "generating and importing (to compare code versions on the same follows)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder (the imported stores and the trained registries) for --store "
        "and --reserve runs",
    )
    parser.add_argument(
        "--out",
        default="scale",
        help="base name of the results under benchmarks/results (NAME.json, NAME.png)",
    )
    args = parser.parse_args()
    OUT["name"] = args.out
    saved = RESULTS_DIR / f"{args.out}.json"
    if args.reserve:
        reserve(json.loads(saved.read_text()), args)
        return
    if args.store and len(args.sizes) != 1:
        sys.exit("--store is one store: give the one size it holds (--sizes)")
    if args.rate * args.seconds > 20_000 or args.seconds > 60:
        sys.exit("keep it bounded: at most 60 s and 20,000 requests a size and model")
    models = [m for m in args.models.split(",") if m]
    previous = json.loads(saved.read_text()) if args.merge and saved.exists() else {}
    payload = {
        "benchmark": "scale",
        "rate_rps": args.rate,
        "seconds_per_model": args.seconds,
        "warm_burst_seconds": args.warm_seconds,
        "server_workers": args.workers,
        "models": sorted(set(models) | set(previous.get("models", []))),
        "generator": "benchmarks/imports.py heavy_tailed_follows: Zipf in-degree (exponent 1), "
        "out-degree (0.8), 10 follows per account on average",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },  # fmt: skip
        "target": "suggestions p99 <= 50 ms at 200 requests/s at every size",
        "runs": [r for r in previous.get("runs", []) if r["follows"] not in args.sizes],
        "graph_only": [
            g for g in previous.get("graph_only", []) if g["follows"] not in args.graph_sizes
        ],
    }
    work = Path(tempfile.mkdtemp(prefix="recgraph-scale-", dir=os.environ.get("SCALE_TMP")))
    try:
        for size in args.sizes:
            kept = list(payload["runs"])

            def step(out: dict, kept: list = kept) -> None:  # saved after each model
                payload["runs"] = sorted([*kept, out], key=lambda r: r["follows"])
                save(payload)

            run_size(
                size,
                models,
                args.rate,
                args.seconds,
                work,
                step,
                args.workers,
                args.store,
                args.warm_seconds,
                args.keep,
            )
        for size in args.graph_sizes:
            try:
                keep_in = Path(args.graph_dir) if args.graph_dir else None
                payload["graph_only"].append(run_graph_only(size, work, models, keep_in))
            except subprocess.CalledProcessError as exc:
                print(f"graph only {size:,}: failed: {exc.stderr.strip().splitlines()[-1:]}")
                payload["graph_only"].append({"follows": size, "error": exc.stderr[-500:]})
            payload["graph_only"].sort(key=lambda g: g["follows"])
            save(payload)
    finally:
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"saved {saved} and {saved.with_suffix('.png')}")


if __name__ == "__main__":
    main()
