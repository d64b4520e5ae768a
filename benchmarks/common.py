"""What the benchmark scripts share: where the datasets are, and running ``recgraph`` in-process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from recgraph.cli.main import main as recgraph_main

if TYPE_CHECKING:
    from recgraph.data.interactions import Interactions

REPO = Path(__file__).resolve().parents[1]
#: Where the benchmarks write their figures and plots.
RESULTS_DIR = REPO / "benchmarks" / "results"

#: The SNAP graphs the graph benchmarks score, each with the ``recgraph split`` arguments
#: they all use on it: a random 10% of the edges where there is no time, the pairs first
#: seen after the 80% quantile of first-seen times where time is real.
SNAP_CASES = {
    "ego-facebook": {
        "name": "ego-facebook",
        "input": "snap-ego-facebook/facebook_combined.txt",
        "kind": "friends",
        "split": ["--method", "edge_holdout", "--fraction", "0.1", "--seed", "0"],
        "directed": False,
        "timestamps": False,
    },
    "wiki-vote": {
        "name": "wiki-vote",
        "input": "snap-wiki-vote/wiki-Vote.txt",
        "kind": "follows",
        "split": ["--method", "edge_holdout", "--fraction", "0.1", "--seed", "0"],
        "directed": True,
        "timestamps": False,
    },
    "college-msg": {
        "name": "college-msg",
        "input": "snap-college-msg/CollegeMsg.txt",
        "kind": "follows",
        "split": ["--method", "temporal_pairs", "--fraction", "0.2", "--timestamps"],
        "directed": True,
        "timestamps": True,
    },
}


def outer_split_of(case: dict) -> tuple[str, float, int]:
    """``(method, fraction, seed)`` of a :data:`SNAP_CASES` entry's ``recgraph split``
    arguments (the command's defaults where one is not given)."""
    args = case["split"]

    def value(flag: str, default: str) -> str:
        return args[args.index(flag) + 1] if flag in args else default

    return (
        value("--method", "random_per_user"),
        float(value("--fraction", "0.2")),
        int(value("--seed", "0")),
    )


def validation_of(
    source: Path,
    kind: str,
    method: str,
    fraction: float,
    *,
    seed: int = 0,
    timestamps: bool | None = None,
) -> tuple[Interactions, Interactions]:
    """``(fit, validation)`` of one dataset, the way the graph benchmarks choose defaults:
    read as ``recgraph split`` reads it, the outer split ``method`` (test share ``fraction``,
    ``seed``) set aside unread, and :func:`~recgraph.data.splits.validation_split` of its
    train part (same method, 20%, seed 1). ``timestamps``: as ``--timestamps`` (``None``: if
    the edge list has a third column)."""
    from recgraph.cli.evaluate_commands import read_split_input
    from recgraph.data.splits import split, validation_split

    data = read_split_input(source, kind, timestamps)
    train, _test = split(data, method, fraction=fraction, seed=seed)
    return validation_split(train, method, fraction=0.2, seed=1)


def case_validation(case: dict) -> tuple[Interactions, Interactions]:
    """:func:`validation_of` of a :data:`SNAP_CASES` entry, with its own outer split."""
    method, fraction, seed = outer_split_of(case)
    return validation_of(
        datasets_folder() / case["input"],
        case["kind"],
        method,
        fraction,
        seed=seed,
        timestamps=case["timestamps"],
    )


def datasets_folder() -> Path:
    """``$RECGRAPH_DATASETS``, else ``../shared/datasets`` beside the repository; exit if absent."""
    folder = Path(os.environ.get("RECGRAPH_DATASETS", REPO / ".." / "shared" / "datasets"))
    if not folder.is_dir():
        sys.exit(f"datasets folder not found: {folder} (set RECGRAPH_DATASETS)")
    return folder.resolve()


def run_cli(args: list[str]) -> str:
    """Run a ``recgraph`` command in this process; return what it printed, exit if it failed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = recgraph_main(args)
    if status != 0:
        sys.exit(f"recgraph {' '.join(args)} exited with {status}")
    return out.getvalue()


def split_files(
    source: Path, kind: str, split_args: list[str], work: Path, name: str, *, reuse: bool = False
) -> tuple[Path, Path]:
    """``recgraph split`` of ``source`` into ``work/NAME.train.csv`` and ``.test.csv``; the two
    paths. ``reuse``: keep files an earlier run left there."""
    train, test = work / f"{name}.train.csv", work / f"{name}.test.csv"
    if not (reuse and train.exists()):
        run_cli(
            ["split", str(source), "--kind", kind, *split_args]
            + ["--train", str(train), "--test", str(test)]
        )
    return train, test


def evaluate_models(
    train: Path,
    test: Path,
    kind: str,
    models: list[str],
    params: list[str],
    report_path: Path,
    ks: tuple[int, ...],
) -> dict:
    """``recgraph evaluate`` of ``models`` (with ``--param`` overrides) on split files; its JSON report."""
    args = ["evaluate", "--train", str(train), "--test", str(test), "--kind", kind]
    for model in models:
        args += ["--model", model]
    for param in params:
        args += ["--param", param]
    args += ["--k", ",".join(map(str, ks)), "--json", str(report_path)]
    run_cli(args)
    return json.loads(report_path.read_text())


def movielens_items_file(folder: Path, path: Path) -> Path:
    """Write a MovieLens folder's films as ``item,title,genres`` (what ``--items`` reads)."""
    import pandas as pd

    from recgraph.data.movielens import iter_movielens_items

    frame = pd.concat(list(iter_movielens_items(folder)), ignore_index=True)
    pd.DataFrame(
        {
            "item": frame["external_id"],
            "title": frame["title"],
            "genres": ["|".join((f or {}).get("genres", [])) for f in frame["features"]],
        }
    ).to_csv(path, index=False)
    return path


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def plot_metric_curves(
    models_by_dataset: dict[str, dict[str, dict]],
    ks: list[int] | tuple[int, ...],
    path: Path,
    *,
    dashed: Callable[[str], bool] = lambda model: False,
    legend_in_every_column: bool = True,
) -> None:
    """recall@k and nDCG@k against k, one column per dataset, one line per model; saved as PNG.

    ``models_by_dataset[dataset][model]["metrics"]`` holds ``recall@k`` and
    ``ndcg@k`` for every k; ``dashed(model)`` marks reference lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models_by_dataset)
    fig, axes = plt.subplots(2, len(names), figsize=(6 * len(names), 8), squeeze=False)
    for col, dataset in enumerate(names):
        for model, result in models_by_dataset[dataset].items():
            style = "--" if dashed(model) else "-"
            for row, metric in enumerate(("recall", "ndcg")):
                values = [result["metrics"][f"{metric}@{k}"] for k in ks]
                axes[row][col].plot(ks, values, style, marker="o", label=model)
        for row, metric in enumerate(("recall@k", "nDCG@k")):
            axes[row][col].set_title(f"{dataset}: {metric}")
            axes[row][col].set_xlabel("k")
            axes[row][col].set_xscale("log")
            axes[row][col].set_xticks(ks, [str(k) for k in ks])
            axes[row][col].grid(alpha=0.3)
        if legend_in_every_column or col == 0:
            axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_quality_table(
    title: str,
    models: dict[str, dict],
    ks: list[int] | tuple[int, ...],
    *,
    width: int = 21,
    extra: dict[str, tuple[str, str]] | None = None,
) -> None:
    """One row per model: recall@k and nDCG@k for every k, then ``extra`` columns.

    ``extra`` maps a column header to ``(field of the model's result, format)``,
    e.g. ``{"fit s": ("fit_seconds", ".2f")}``.
    """
    extra = extra or {}
    print(f"\n== {title}")
    header = "".join(f"{f'recall@{k}':>11}" for k in ks) + "".join(f"{f'ndcg@{k}':>10}" for k in ks)
    header += "".join(f"{name:>{max(9, len(name) + 2)}}" for name in extra)
    print(f"{'model':<{width}}{header}")
    for model, result in models.items():
        metrics = result["metrics"]
        cells = "".join(f"{metrics[f'recall@{k}']:>11.4f}" for k in ks)
        cells += "".join(f"{metrics[f'ndcg@{k}']:>10.4f}" for k in ks)
        cells += "".join(
            f"{result[field]:>{max(9, len(name) + 2)}{fmt}}" for name, (field, fmt) in extra.items()
        )
        print(f"{model:<{width}}{cells}")


class ProcStat(NamedTuple):
    """What one read of ``/proc/PID/stat`` says of a process: its parent, its CPU seconds so
    far (user, system) and its page faults (a major one read a page from disk, a minor one
    mapped a page already in memory)."""

    ppid: int
    user: float
    system: float
    minor_faults: int
    major_faults: int


def proc_stat(pid: int) -> ProcStat:
    """:class:`ProcStat` of ``pid`` (``OSError`` if it is gone)."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return ProcStat(
        int(parts[1]), int(parts[11]) / tick, int(parts[12]) / tick, int(parts[7]), int(parts[9])
    )


def process_read_bytes(pid: int) -> int:
    """Bytes ``pid`` read from the disk so far (``/proc/PID/io``: page cache misses of its
    reads, such as SQLite's, and of its memory maps; ``OSError`` if it cannot be read)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(": ")
        if name == "read_bytes":
            return int(value)
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (uvicorn's worker processes under ``--workers``)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if proc_stat(int(stat.parent.name)).ppid == pid:
                children.append(int(stat.parent.name))
        except OSError:
            continue
    return [pid, *children]


def tree_stats(pids: list[int]) -> dict[int, ProcStat]:
    """:class:`ProcStat` of each of ``pids`` still there, each read once."""
    out = {}
    for pid in pids:
        try:
            out[pid] = proc_stat(pid)
        except OSError:
            continue
    return out


def tree_user_system_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` together, apart (a process gone since counts
    nothing)."""
    stats = tree_stats(pids).values()
    return sum(s.user for s in stats), sum(s.system for s in stats)


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of ``pids`` together (a process gone since counts nothing)."""
    return sum(tree_user_system_seconds(pids))


def tree_faults(pids: list[int]) -> tuple[int, int]:
    """Minor and major page faults of ``pids`` together (a process gone since counts nothing)."""
    stats = tree_stats(pids).values()
    return sum(s.minor_faults for s in stats), sum(s.major_faults for s in stats)


def tree_read_bytes(pids: list[int]) -> int:
    """Bytes ``pids`` together read from the disk (:func:`process_read_bytes`; a process that
    cannot be read counts nothing)."""
    total = 0
    for pid in pids:
        try:
            total += process_read_bytes(pid)
        except OSError:
            continue
    return total


class Republisher:
    """``v1`` of the model registry at ``root`` (what ``load.py`` trained and published),
    loaded now; :meth:`publish` publishes it again as a new version (the ``reload`` phase of
    ``load.py``, and the second version ``reload_cost.py`` loads)."""

    def __init__(self, root: str | Path) -> None:
        from recgraph.pipeline import Pipeline
        from recgraph.serving.registry import ModelRegistry

        self.registry = ModelRegistry(root)
        self.model = Pipeline.load(self.registry.local_copy("v1") / "model")

    def publish(self, *, promote: bool) -> str:
        """Publish the loaded ``v1`` as a new version (the current one with ``promote``);
        the new version's name."""
        return self.registry.publish(self.model, data=self.model.snapshots, promote=promote)


def save_results(path: Path, benchmark: str, **fields) -> dict:
    """Write a benchmark's figures to ``path`` as JSON, with the load average at the end of the
    run (it says whether other jobs shared the cores); return what was written."""
    from recgraph.files import write_json

    payload = {"benchmark": benchmark, **fields, "load_average_at_end": os.getloadavg()}
    write_json(path, payload, indent=1)
    return payload


def blank_features(names):
    """Blank ``names`` in every ranker feature matrix (NaN: LightGBM's missing) until the
    returned function is called: what a ranker learns without them."""
    import numpy as np

    from recgraph.ranking import features as module

    original = module.CandidateFeatures.matrix

    def matrix(self, users, items, retrievers, depth, **options):
        out = original(self, users, items, retrievers, depth, **options)
        columns = module.feature_names(self.graph_kind, list(retrievers))
        for name in names:
            if name in columns:
                out[:, columns.index(name)] = np.nan
        return out

    module.CandidateFeatures.matrix = matrix
    return lambda: setattr(module.CandidateFeatures, "matrix", original)


class BackgroundSampler:
    """A daemon thread running ``_run`` while a ``with`` block lasts; ``_stop`` is set when the
    block ends (``_run`` watches it), then the thread is joined."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
