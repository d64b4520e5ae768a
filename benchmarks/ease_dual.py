"""EASE on a wide catalogue: the primal (items x items) solve against the dual (users x users) one.

Issue 11: EASE took 38 s and 6.8 GB on 15,000 items with 1,900 users. The
dual form (Woodbury: ``(X^T X + lambda I)^-1 = (I - X^T (X X^T + lambda I)^-1 X) / lambda``)
needs a users x users solve; ``EASE(solver="auto")`` takes it when users < items.

Data: the generated listening log (:mod:`recgraph.data.listening`, seed 0,
1,900 users x 15,000 artists; the artists nobody played are left out of the
matrix as EASE's ``min_item_count`` would), its training matrix as EASE
builds it. Each solver runs in its own process, so its peak memory
(``ru_maxrss`` of that process) is its own; the weights of both are compared.

Saves ``benchmarks/results/ease_dual.json`` and ``ease_dual.png``.
Run: ``python benchmarks/ease_dual.py [--artists 15000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = """
import resource, sys, time, json
import numpy as np
from recgraph.data.listening import generate_listening
from recgraph.retrieval.ease import ease_weights
from recgraph.retrieval.factors import positive_matrix

solver, artists, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
matrix = positive_matrix(generate_listening(n_artists=artists, seed=0))
played = np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0)
matrix = matrix[:, played]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
weights = ease_weights(matrix, 500.0, solver)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
np.save(out, weights[:500, :500])
print(json.dumps({"solver": solver, "seconds": seconds, "users": matrix.shape[0],
                  "items": matrix.shape[1], "nnz": int(matrix.nnz),
                  "peak_rss_gb": peak / 2**20, "rss_before_solve_gb": before / 2**20}))
"""


def run(solver: str, artists: int, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, solver, str(artists), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artists", type=int, default=15000)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for solver in ("dual", "primal"):
            rows[solver] = run(solver, args.artists, Path(tmp) / f"{solver}.npy")
            print(json.dumps(rows[solver]), flush=True)
        corner = {s: np.load(Path(tmp) / f"{s}.npy") for s in rows}
    difference = float(np.abs(corner["dual"] - corner["primal"]).max())
    payload = {
        "benchmark": "ease_dual",
        "data": f"recgraph.data.listening seed 0, {args.artists} artists (played ones kept)",
        "regularization": 500.0,
        "results": rows,
        "max_abs_weight_difference_500x500_corner": difference,
        "speedup": round(rows["primal"]["seconds"] / rows["dual"]["seconds"], 1),
        "environment": {
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
            "note": "shared 2-core machine; timings depend on the load",
        },
        "this_process_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ease_dual.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(rows, RESULTS / "ease_dual.png")
    print(
        f"dual {rows['dual']['seconds']:.1f} s / {rows['dual']['peak_rss_gb']:.2f} GB, "
        f"primal {rows['primal']['seconds']:.1f} s / {rows['primal']['peak_rss_gb']:.2f} GB; "
        f"max weight difference {difference:.2e}"
    )


def plot(rows: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    names = list(rows)
    shape = f"{rows['dual']['users']:,} users x {rows['dual']['items']:,} items"
    for axis, key, label in (
        (left, "seconds", "solve seconds"),
        (right, "peak_rss_gb", "peak memory (GB)"),
    ):
        values = [rows[n][key] for n in names]
        axis.barh(names, values, color=["#4c72b0", "#c44e52"])
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.1f}", va="center", fontsize=9)
        axis.set_title(f"EASE {label}, {shape}", fontsize=9)
        axis.set_xlim(0, max(values) * 1.3)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
