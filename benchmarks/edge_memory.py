"""Where the bytes of training and serving go, per follow: stages of ``train_pipeline`` and a loaded pipeline.

For a store already imported (``--store``, e.g. one ``scale.py`` would build;
``--make SIZE`` generates and imports one like it) and a who-to-follow pipeline
with one retriever and the ``popular`` fallback (``--models``, as in
``scale.py``), two child processes per model:

1. ``train``: resident memory (RSS) after the imports, and the peak of each
   stage on its own (``VmHWM`` reset between stages): reading the store
   (``TrainingSnapshot.from_store``, or drawing the edges), the fit,
   publishing to a registry;
2. ``serve``: a process that loads the published pipeline as a server worker
   does (``Pipeline.load``: wall and CPU seconds) and answers 200 suggestions
   (CPU ms an answer, the first 20 left out): RSS after the
   imports, after the load and after the answers, split by
   ``/proc/self/smaps_rollup`` into anonymous memory (the process's own, which
   every worker pays again) and file-backed pages (memory-mapped files, which
   workers mapping the same files share through the page cache), and the
   allocations a second load keeps alive, by source line (tracemalloc, top
   ten; traced apart, as tracing costs memory of its own).

Figures are also divided by the store's follows (bytes per edge above the
imports). ``--src`` runs the children on another source tree (a checkout of
the code before a change) to compare two versions on one store. Saves
``benchmarks/results/edge_memory[.OUT].json``.
Run: ``python benchmarks/edge_memory.py --make 1e6 --models ppr``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

_COMMON = r"""
import json, sys, time
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
def reset_peak():  # the next stage's peak is its own (Linux: clear_refs 5 resets VmHWM)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
def rollup():
    out = {}
    for line in open("/proc/self/smaps_rollup").read().splitlines()[1:]:
        name, _, value = line.partition(":")
        if name in ("Rss", "Anonymous", "Pss_Anon", "Pss_File", "Private_Dirty", "Shared_Clean"):
            out[name.lower()] = round(int(value.split()[0]) / 1024, 1)
    out["file_backed"] = round(out["rss"] - out["anonymous"], 1)
    return out
stages = {}
def stage(name):
    stages[name] = {"rss_mb": round(rss(), 1), "peak_rss_mb": round(hwm(), 1), **rollup()}
"""

_TRAIN = (
    _COMMON
    + r"""
from recgraph.data.snapshot import TrainingSnapshot
from recgraph.data.store import Store
from recgraph.pipeline.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry
import recgraph.retrieval.registry
from recgraph.retrieval.registry import get_retriever_class
config = json.loads(sys.argv[3])
for spec in config["who_to_follow"]["retrievers"] + [{"name": n} for n in config["who_to_follow"]["fallback"]]:
    get_retriever_class(spec["name"])  # its module imported before the first figure
if sys.argv[1].startswith("generate:"):  # edges drawn in memory, no store (see --generate)
    import numpy as np
    from recgraph.data.interactions import Interactions
    sys.path.insert(0, sys.argv[4])
    from scale import generated_chunks
stage("imports")
start = time.perf_counter()
if sys.argv[1].startswith("generate:"):
    chunks, n = generated_chunks(int(sys.argv[1].split(":")[1]))
    parts = list(chunks)
    src = np.concatenate([p[0] for p in parts]); dst = np.concatenate([p[1] for p in parts])
    del parts, chunks
    follows = Interactions.from_indices(src, dst, n_users=n, one_sided=True)
    del src, dst
    snapshot = TrainingSnapshot.from_frames(follows=follows)
else:
    snapshot = TrainingSnapshot.from_store(Store(sys.argv[1]))
stage("snapshot")
reset_peak()
pipeline = Pipeline(config).fit(snapshot)
stage("fitted")
reset_peak()
ModelRegistry(sys.argv[2]).publish(pipeline)
stage("published")
print(json.dumps({"stages": stages, "seconds": time.perf_counter() - start}))
"""
)

_SERVE = (
    _COMMON
    + r"""
import tracemalloc
import numpy as np
import recgraph.serving.app
from recgraph.pipeline.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry, MODEL_DIR
import recgraph.retrieval.registry
registry = ModelRegistry(sys.argv[1])
folder = registry.local_copy(registry.current_version()) / MODEL_DIR
stage("imports")
started, cpu = time.perf_counter(), time.process_time()
pipeline = Pipeline.load(folder)
load = {"seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2)}
stage("loaded")
question = pipeline.questions["who_to_follow"]
rng = np.random.default_rng(0)
answer_ms = []
for user in rng.choice(len(question.users), 200):
    asker = str(question.users.ids[user])
    cpu = time.process_time()
    pipeline.suggest_accounts(asker, 10)
    answer_ms.append(1000 * (time.process_time() - cpu))
stage("answered")
warm = np.array(answer_ms[20:])  # the first answers page the mapped files in
load["answer_cpu_ms"] = {"mean": round(float(warm.mean()), 2),
    "p50": round(float(np.percentile(warm, 50)), 2), "p99": round(float(np.percentile(warm, 99)), 2)}
follows = int(question.history.seen.nnz)
# what the load allocates, by line: a second load, traced (tracing costs memory of its own,
# so the figures above are taken without it)
tracemalloc.start()
again = Pipeline.load(folder)
traced = tracemalloc.take_snapshot()
tracemalloc.stop()
top = [{"where": f"{s.traceback[0].filename.split('/src/')[-1]}:{s.traceback[0].lineno}",
        "mb": round(s.size / 2**20, 2)} for s in traced.statistics("lineno")[:10]]
print(json.dumps({"stages": stages, "traced_after_load": top, "follows": follows, "load": load}))
"""
)


def child(code: str, src: Path, *args: str) -> dict:
    env = {**os.environ, "RECGRAPH_PROGRESS": "0", "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_edge(stages: dict, follows: int, base: str = "imports") -> dict:
    """Each stage's RSS (and peak) above the ``base`` stage, in bytes per follow."""
    zero = stages[base]["rss_mb"]
    return {
        name: {
            "rss": round((s["rss_mb"] - zero) * 2**20 / follows, 1),
            "peak": round((s["peak_rss_mb"] - zero) * 2**20 / follows, 1),
            "anonymous": round((s["anonymous"] - stages[base]["anonymous"]) * 2**20 / follows, 1),
        }
        for name, s in stages.items()
    }


def make_store(size: int, folder: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from imports import heavy_tailed_follows
    from recgraph.data.imports import import_edges
    from recgraph.data.store import Store

    tsv = folder / "follows.tsv"
    heavy_tailed_follows(size, tsv)
    db = f"sqlite:///{folder / 'store.db'}"
    import_edges(Store(db), str(tsv), directed=True)
    tsv.unlink()
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="a store imported before (path or URL)")
    parser.add_argument("--make", type=float, help="generate and import this many follows")
    parser.add_argument(
        "--generate",
        type=float,
        help="no store: this many follows drawn in memory as scale.py's graph-only runs draw "
        "them (generated_chunks), trained from an Interactions (sizes the import cannot reach)",
    )
    parser.add_argument("--models", default="ppr")
    parser.add_argument("--src", default=str(REPO / "src"), help="source tree the children run")
    parser.add_argument("--out", default="", help="saved as edge_memory.OUT.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edge-memory-", dir=os.environ.get("SCALE_TMP")))
    if args.store:
        db = args.store if "://" in args.store else f"sqlite:///{Path(args.store).resolve()}"
    elif args.make:
        db = make_store(int(args.make), work)
    elif args.generate:
        db = f"generate:{int(args.generate)}"
    else:
        sys.exit("give --store, --make or --generate")
    sys.path.insert(0, args.src)
    if args.generate:
        counts = {"follows": None, "accounts": max(int(args.generate) // 10, 100)}
    else:
        from recgraph.data.store import Store

        store = Store(db)
        counts = store.counts()
        store.close()
    follows = counts["follows"]
    payload = {
        "store": db,
        "follows": follows,
        "accounts": counts["accounts"],
        "src": args.src,
        "load_average": os.getloadavg(),
        "at": time.strftime("%H:%M UTC", time.gmtime()),
        "models": {},
    }
    for model in [m for m in args.models.split(",") if m]:
        config = {
            "who_to_follow": {
                "retrievers": [{"name": model, "min_score": 0.0}],
                "fallback": ["popular"],
            },
            "feed": {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
        }
        registry = work / f"registry_{model}"
        here = str(Path(__file__).resolve().parent)
        train = child(_TRAIN, Path(args.src), db, str(registry), json.dumps(config), here)
        serve = child(_SERVE, Path(args.src), str(registry))
        if follows is None:
            follows = payload["follows"] = serve["follows"]
        disk = sum(p.stat().st_size for p in registry.rglob("*") if p.is_file())
        payload["models"][model] = {
            "train": {**train, "bytes_per_edge": per_edge(train["stages"], follows)},
            "serve": {**serve, "bytes_per_edge": per_edge(serve["stages"], follows)},
            "registry_mb_apparent": round(disk / 1e6, 1),
        }
        t, s, s_load = train["stages"], serve["stages"], serve["load"]
        edge = payload["models"][model]["train"]["bytes_per_edge"]
        print(
            f"{model} at {follows:,} follows: train peak RSS by stage: reading "
            f"{t['snapshot']['peak_rss_mb']:.0f} MB, fit {t['fitted']['peak_rss_mb']:.0f}, "
            f"publish {t['published']['peak_rss_mb']:.0f} (imports {t['imports']['rss_mb']:.0f}: "
            f"{edge['snapshot']['peak']} / {edge['fitted']['peak']} / {edge['published']['peak']} "
            f"B/edge above them). Loaded: RSS {s['imports']['rss_mb']:.0f} -> "
            f"{s['loaded']['rss_mb']:.0f} MB (anonymous {s['imports']['anonymous']:.0f} -> "
            f"{s['loaded']['anonymous']:.0f}, file-backed {s['loaded']['file_backed']:.0f}); "
            f"after 200 answers anonymous {s['answered']['anonymous']:.0f} MB = "
            f"{payload['models'][model]['serve']['bytes_per_edge']['answered']['anonymous']} "
            f"B/edge of the worker's own; loaded in {s_load['seconds']} s "
            f"({s_load['cpu_seconds']} CPU s), {s_load['answer_cpu_ms']['mean']} CPU ms an answer",
            flush=True,
        )
        for row in serve["traced_after_load"][:6]:
            print(f"    {row['mb']:8.2f} MB  {row['where']}")
    shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"edge_memory{'.' + args.out if args.out else ''}.json"
    (RESULTS / name).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {RESULTS / name}")


if __name__ == "__main__":
    main()
