"""EGOML against Adamic-Adar and common neighbours: quality, training and candidate time.

Quality goes through the command line, as a user would script it:
``recgraph split`` writes train/test files and ``recgraph evaluate --model
egoml ...`` scores the full ranking (no sampled negatives) at k = 10, 20, 50,
100, next to ``adamic_adar`` and ``common_neighbors`` on the same files:

- CollegeMsg (directed messages with real time): ``temporal_pairs``, pairs
  first seen up to the 80% quantile of first-seen times train, later new
  pairs test (the split of the neighbourhood benchmark). ``recgraph split``
  keeps each train pair's first message only, so a second train file holds
  *every* message up to the same cut (same pairs, same test file): the
  message counts EGOML can use as intensity. Adamic-Adar and common
  neighbours see only the structure, which is the same in both files.
- ego-Facebook (undirected friendships, no timestamps): ``edge_holdout``, a
  random 10% of the edges (seed 0) test; EGOML itself then has no time to
  learn from and labels its training pairs by a random holdout of train.

Rows: ``egoml`` A/B (the default) and exact; the original triple-level
``lambdarank`` objective; on the follow graph A/B without
``centre_as_candidate`` (which scores accounts that wrote to ``u`` first and
share no neighbour with it, pairs the two-hop baselines cannot reach); and
Adamic-Adar with its default ``out_out`` reading and with ``undirected``
(the structure EGOML walks). The target: EGOML's recall@50 at least 10%
above Adamic-Adar where time is real (CollegeMsg), against the better of the
two readings.

Time: each model's fit time and evaluation recommend time from ``recgraph
evaluate``; then, in this process, the top-100 of *every* node by
``EgoML.all_candidates`` (A/B: the map over centres and reduce over pairs;
exact: every 2-hop path through the model), and the A/B speed-up over
exact. Online: ``score_pair`` latency from an in-process store and, when a
server answers on 127.0.0.1:6379, from Redis.

Prints tables, saves ``benchmarks/results/egoml.json`` and
``benchmarks/results/egoml.png``. Run: ``python benchmarks/egoml.py`` (needs
../shared/datasets or ``RECGRAPH_DATASETS``); about ten minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

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

RESULTS = RESULTS_DIR / "egoml.json"
PLOT = RESULTS_DIR / "egoml.png"
KS = (10, 20, 50, 100)
TOP = 100

DATASETS = [SNAP_CASES["college-msg"], SNAP_CASES["ego-facebook"]]

#: (row label, train file tag, models, --param values) of each ``recgraph evaluate`` run.
RUNS = [
    ("baselines", "split", ["adamic_adar", "common_neighbors"], []),
    ("adamic_adar undirected", "split", ["adamic_adar"], ["adamic_adar.path=undirected"]),
    ("egoml ab", "split", ["egoml"], ["egoml.variant=ab"]),
    ("egoml exact", "split", ["egoml"], ["egoml.variant=exact"]),
    ("egoml ab lambdarank", "split", ["egoml"], ["egoml.objective=lambdarank"]),
    # follow graphs only (on friendships the option changes nothing)
    ("egoml ab, no centre as candidate", "split", ["egoml"], ["egoml.centre_as_candidate=false"]),
    ("egoml ab, message counts", "messages", ["egoml"], ["egoml.variant=ab"]),
    ("egoml exact, message counts", "messages", ["egoml"], ["egoml.variant=exact"]),
]


def make_files(case: dict, folder: Path, work: Path) -> dict[str, Path]:
    """``recgraph split`` files, plus (temporal data) all messages up to the cut as train."""
    source = folder / case["input"]
    train, test = split_files(source, case["kind"], case["split"], work, case["name"])
    files = {"split": train, "test": test}
    if case["timestamps"]:
        import pandas as pd

        cut = int(pd.read_csv(train)["timestamp"].max())
        events = read_edge_list(source, directed=case["kind"] == "follows", timestamps=True)
        assert events.timestamp is not None
        before = events.subset(events.timestamp <= cut)
        messages = work / f"{case['name']}.train-messages.csv"
        pd.DataFrame(
            {
                "src": before.users.external(before.src).astype(str),
                "dst": before.users.external(before.dst).astype(str),
                "timestamp": before.timestamp,
            }
        ).to_csv(messages, index=False)
        files["messages"] = messages
    return files


def quality(case: dict, folder: Path, work: Path) -> dict:
    files = make_files(case, folder, work)
    rows: dict[str, dict] = {}
    info: dict = {"split": " ".join(case["split"])}
    for number, (label, train_tag, models, params) in enumerate(RUNS):
        if train_tag not in files:
            continue
        if "centre as candidate" in label and case["kind"] != "follows":
            continue
        start = time.perf_counter()
        report_path = work / f"{case['name']}-run{number}.json"
        report = evaluate_models(
            files[train_tag], files["test"], case["kind"], models, params, report_path, KS
        )
        print(f"  [{case['name']}] {label}: {time.perf_counter() - start:.1f} s", flush=True)
        info.setdefault(f"train_rows[{train_tag}]", report["n_train_rows"])
        info.update(
            test_rows=report["n_test_rows"],
            dropped_test_rows=report["dropped_test_rows"],
            users_scored=report["n_users"],
        )
        for r in report["results"]:
            name = r["model"] if label == "baselines" else label
            rows[name] = {
                "metrics": {
                    key: round(value, 4)
                    for key, value in r["metrics"].items()
                    if key.split("@")[0] in ("recall", "ndcg")
                },
                "params": r["params"],
                "train_file": train_tag,
                "fit_seconds": round(r["fit_seconds"], 3),
                "recommend_seconds": round(r["recommend_seconds"], 3),
            }
    info["models"] = rows
    info["files"] = {key: str(path) for key, path in files.items()}
    return info


def target_check(result: dict) -> dict:
    """recall@50 of each EGOML row over the better Adamic-Adar reading."""
    models = result["models"]
    aa = {
        name: models[name]["metrics"]["recall@50"] for name in models if name.startswith("adamic")
    }
    best_name = max(aa, key=aa.get)
    out = {"adamic_adar_best": best_name, "adamic_adar_recall@50": aa[best_name], "egoml": {}}
    for name, r in models.items():
        if name.startswith("egoml"):
            value = r["metrics"]["recall@50"]
            out["egoml"][name] = {
                "recall@50": value,
                "gain_over_adamic_adar": round(value / aa[best_name] - 1.0, 4),
                "gain_over_adamic_adar_default": round(
                    value / models["adamic_adar"]["metrics"]["recall@50"] - 1.0, 4
                ),
            }
    return out


# ---------------------------------------------------------------------- time
def candidate_speed(case: dict, files: dict[str, Path]) -> dict:
    """Fit both variants in this process; time all-node top-100 and online scoring."""
    from recgraph.retrieval.egoml.model import EgoML
    from recgraph.retrieval.egoml.online import RedisVectorStore

    train = Interactions.read_table(str(files["split"]), case["kind"])
    out: dict = {"nodes": train.n_users}
    for variant in ("ab", "exact"):
        model = EgoML(variant=variant)
        start = time.perf_counter()
        model.fit(train)
        fit = time.perf_counter() - start
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        ids, _ = model.all_candidates(TOP)
        out[variant] = {
            "fit_seconds": round(fit, 3),
            "all_candidates_seconds": round(time.perf_counter() - start_wall, 3),
            "all_candidates_cpu_seconds": round(time.process_time() - start_cpu, 3),
            "candidates_per_node": round(float((ids >= 0).sum(axis=1).mean()), 2),
            "labels": model.training_["labels"],
            "triples_trained": model.training_["triples"],
            "boost_seconds": model.training_["boost_seconds"],
        }
        print(f"  [{case['name']}] {variant}: {out[variant]}", flush=True)
        if variant == "ab":
            out["online"] = online_latency(model, RedisVectorStore)
    out["ab_speedup_all_candidates"] = round(
        out["exact"]["all_candidates_seconds"] / out["ab"]["all_candidates_seconds"], 1
    )
    return out


def online_latency(model, redis_store_class) -> dict:
    rng = np.random.default_rng(0)
    ids = model.users.ids
    pairs = [(str(ids[u]), str(ids[v])) for u, v in rng.integers(0, len(ids), (2000, 2))]
    result = {}
    stores = [("dict", None)]
    redis_store = redis_store_class("redis://127.0.0.1:6379/0")
    if redis_store.ping():
        stores.append(("redis", redis_store))
    for name, store in stores:
        namespace = f"bench-egoml-{os.getpid()}"
        start = time.perf_counter()
        scorer = model.online_scorer(store, namespace=namespace)
        export = time.perf_counter() - start
        start = time.perf_counter()
        for u, v in pairs:
            scorer.score(u, v)
        per_pair = (time.perf_counter() - start) / len(pairs)
        result[name] = {
            "export_seconds": round(export, 3),
            "microseconds_per_pair": round(per_pair * 1e6, 1),
        }
        if name == "redis":
            redis_store.delete_namespace(namespace)
    return result


# ---------------------------------------------------------------------- output
def plot(results: dict) -> None:
    plot_metric_curves(
        {dataset: r["models"] for dataset, r in results.items()},
        KS,
        PLOT,
        dashed=lambda model: not model.startswith("egoml"),
    )


def print_quality(dataset: str, result: dict) -> None:
    print_quality_table(
        f"quality: {dataset} ({result['split']}; test {result['test_rows']:,} rows, "
        f"{result['users_scored']:,} users scored)",
        result["models"],
        KS,
        width=34,
        extra={"fit s": ("fit_seconds", ".2f"), "recommend s": ("recommend_seconds", ".3f")},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-speed", action="store_true", help="Quality only.")
    args = parser.parse_args()
    folder = datasets_folder()
    results: dict = {}
    speed: dict = {}
    targets: dict = {}
    with tempfile.TemporaryDirectory(prefix="recgraph-egoml-") as tmp:
        work = Path(tmp)
        for case in DATASETS:
            print(f"\n-- {case['name']}", flush=True)
            results[case["name"]] = quality(case, folder, work)
            print_quality(case["name"], results[case["name"]])
            if case["timestamps"]:
                targets[case["name"]] = target_check(results[case["name"]])
            if not args.skip_speed:
                files = {k: Path(v) for k, v in results[case["name"]]["files"].items()}
                speed[case["name"]] = candidate_speed(case, files)
            results[case["name"]].pop("files")

    print("\n== target: recall@50 over Adamic-Adar where time is real")
    for dataset, t in targets.items():
        print(
            f"{dataset}: best Adamic-Adar reading = {t['adamic_adar_best']} "
            f"(recall@50 {t['adamic_adar_recall@50']:.4f})"
        )
        for name, g in t["egoml"].items():
            print(
                f"  {name:<34} recall@50 {g['recall@50']:.4f}  "
                f"{g['gain_over_adamic_adar']:+.1%} over it, "
                f"{g['gain_over_adamic_adar_default']:+.1%} over adamic_adar (out_out)"
            )
    if speed:
        print("\n== time (this process; top-100 for every node)")
        for dataset, s in speed.items():
            for variant in ("ab", "exact"):
                v = s[variant]
                print(
                    f"{dataset:<14}{variant:<7} fit {v['fit_seconds']:>7.2f} s "
                    f"(boosting {v['boost_seconds']:.2f} s on {v['triples_trained']:,} triples)  "
                    f"all-node candidates {v['all_candidates_seconds']:>7.2f} s "
                    f"(cpu {v['all_candidates_cpu_seconds']:.2f} s)"
                )
            print(f"{dataset:<14}A/B speed-up over exact: {s['ab_speedup_all_candidates']}x")
            print(f"{dataset:<14}training labels: {s['ab']['labels']}")
            for store, o in s["online"].items():
                print(
                    f"{dataset:<14}online score_pair from {store}: "
                    f"{o['microseconds_per_pair']} us/pair (export {o['export_seconds']} s)"
                )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "egoml",
                "ks": KS,
                "quality": results,
                "target_recall@50": targets,
                "time": speed,
                "environment": {
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
    )
    plot(results)
    print(f"\nwrote {RESULTS.relative_to(REPO)} and {PLOT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
