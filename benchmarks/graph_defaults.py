"""How the account-graph retrievers' defaults were chosen: a small grid, scored on validation only.

The question ``who_to_follow`` ships with defaults that users get without
tuning (``recgraph train`` without ``--tune``, and the code defaults of each
retriever). This script scores a small grid of each graph retriever's key
parameters on the VALIDATION split carved from the training part of each
shared graph, the way ``recgraph tune`` carves it; the test part is never
read. It reports, per point, its recall@20 on each case and its share of the
best point of that retriever on the case; the default is the point with the
highest worst-case share (then mean share): the one that is never far from
that retriever's best on any graph, not the one that wins one graph by most.

Cases: the three graphs of ``benchmarks/two_stage.py`` with their outer split
(seed 0), plus CollegeMsg with a random edge holdout (the same directed graph
asked the static question) so that the directed choice rests on three
directed cases:

- CollegeMsg, ``temporal_pairs`` 20% (directed messages with times);
- CollegeMsg, ``edge_holdout`` 10%;
- wiki-Vote, ``edge_holdout`` 10% (directed votes);
- ego-Facebook, ``edge_holdout`` 10% (undirected friendships: PPR's walk
  direction and the two-hop readings change nothing there, so one point is
  scored and stands for every reading).

Validation: :func:`recgraph.data.splits.validation_split` on the training
part (same method, 20%, seed 1), recall@20 by
:func:`recgraph.evaluation.evaluate`.

Run: ``python benchmarks/graph_defaults.py [--models ppr,adamic_adar]``.
Saves ``benchmarks/results/graph_defaults.json`` and ``graph_defaults.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import datasets_folder, validation_of  # noqa: E402
from recgraph.data.interactions import Interactions  # noqa: E402
from recgraph.evaluation import evaluate  # noqa: E402
from recgraph.retrieval.registry import create_retriever  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METRIC = "recall@20"

#: name -> (dataset folder, file, kind, outer split method, outer test fraction)
CASES: dict[str, tuple[str, str, str, str, float]] = {
    "college-msg:temporal_pairs": (
        "snap-college-msg",
        "CollegeMsg.txt",
        "follows",
        "temporal_pairs",
        0.2,
    ),
    "college-msg:edge_holdout": (
        "snap-college-msg",
        "CollegeMsg.txt",
        "follows",
        "edge_holdout",
        0.1,
    ),
    "wiki-vote:edge_holdout": ("snap-wiki-vote", "wiki-Vote.txt", "follows", "edge_holdout", 0.1),
    "ego-facebook:edge_holdout": (
        "snap-ego-facebook",
        "facebook_combined.txt",
        "friends",
        "edge_holdout",
        0.1,
    ),
}

RESTARTS = (0.15, 0.3, 0.45, 0.6)
PATHS = ("out_out", "undirected", "in_out")


def grid(model: str, directed: bool) -> list[dict[str, Any]]:
    """The points scored for ``model`` on a directed or undirected graph."""
    if model == "ppr":
        walks = ("out", "in", "undirected") if directed else ("out",)
        return [{"restart": r, "walk": w} for w, r in itertools.product(walks, RESTARTS)]
    if model == "salsa":
        return [{"circle_walk": w} for w in (("out", "in", "undirected") if directed else ("out",))]
    if model in ("adamic_adar", "resource_allocation", "common_neighbors", "jaccard"):
        return [{"path": p} for p in (PATHS if directed else ("out_out",))]
    return [{}]


def case_validation(case: str) -> tuple[Interactions, Interactions]:
    """:func:`common.validation_of` of one of :data:`CASES`."""
    folder, file, kind, method, fraction = CASES[case]
    return validation_of(datasets_folder() / folder / file, kind, method, fraction)


def label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "defaults"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ppr,adamic_adar,resource_allocation")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    models = args.models.split(",")
    out = RESULTS / "graph_defaults.json"
    saved: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    scores: dict[str, dict[str, dict[str, float]]] = saved.get("scores", {})
    for case in args.cases.split(","):
        fit, validation = case_validation(case)
        print(f"== {case}: {len(fit):,} fit / {len(validation):,} validation rows", flush=True)
        for model in models:
            for point in grid(model, fit.directed):
                retriever = create_retriever(model, point)
                cpu = time.process_time()
                report = evaluate(retriever, fit, validation, (20,), progress=False)
                value = report.results[0].metrics[METRIC]
                key = f"{model}({label(point)})"
                scores.setdefault(key, {})[case] = round(value, 4)
                # on friendships every reading is the same graph: the one point stands for all
                for same in [] if fit.directed else grid(model, True):
                    if same.get("restart", point.get("restart")) == point.get("restart"):
                        scores.setdefault(f"{model}({label(same)})", {})[case] = round(value, 4)
                print(
                    f"  {key:45s} {value:.4f}  ({time.process_time() - cpu:.1f} CPU s)", flush=True
                )
    choices: dict[str, Any] = {}
    lines = [f"# Graph retrievers' defaults: validation {METRIC}", ""]
    for model in dict.fromkeys(
        k.split("(")[0] for k in scores
    ):  # every model saved, not only this run's
        keys = [k for k in scores if k.split("(")[0] == model]
        cases = sorted({c for k in keys for c in scores[k]})
        best = {c: max(scores[k].get(c, 0.0) for k in keys) for c in cases}
        rows = []
        for key in keys:
            shares = [scores[key].get(c, 0.0) / best[c] if best[c] else 1.0 for c in cases]
            rows.append((min(shares), sum(shares) / len(shares), key))
        rows.sort(reverse=True)
        choices[model] = {"point": rows[0][2], "worst_share": round(rows[0][0], 4)}
        lines += [
            f"## {model}",
            "",
            "| point | " + " | ".join(cases) + " | worst share | mean share |",
        ]
        lines += ["|---" * (len(cases) + 3) + "|"]
        for worst, mean, key in rows:
            cells = " | ".join(f"{scores[key].get(c, float('nan')):.4f}" for c in cases)
            lines.append(f"| {key} | {cells} | {worst:.3f} | {mean:.3f} |")
        lines += ["", f"Chosen: {rows[0][2]} (worst share {rows[0][0]:.3f}).", ""]
        print(f"{model}: choose {rows[0][2]} (worst share {rows[0][0]:.3f})", flush=True)
    payload = {
        "benchmark": "graph_defaults",
        "command": "python benchmarks/graph_defaults.py " + " ".join(sys.argv[1:]),
        "metric": METRIC,
        "validation": "validation_split of the outer train (same method, 20%, seed 1)",
        "scores": scores,
        "choices": choices,
        "machine": {
            "load_average_at_end": os.getloadavg(),
            "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime,
        },
    }
    out.write_text(json.dumps(payload, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
