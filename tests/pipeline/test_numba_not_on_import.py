"""Importing the pipeline, the server or the GBDT ranker does not load numba (0.3-2.4 s a
process: the CLI, jobs and a server answering no ranked request never run a kernel); the
kernel modules are imported inside the functions that run them."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "recgraph.pipeline.pipeline",
        "recgraph.pipeline.question",
        "recgraph.pipeline.merge",
        "recgraph.serving.app",
        "recgraph.ranking.gbdt_ranker",
        "recgraph.ranking.features",
    ],
)
def test_importing_does_not_load_numba(module: str) -> None:
    script = f"import sys, {module}\nprint('numba' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_merge_still_runs_its_kernel_once_imported_lazily() -> None:
    """The lazy import is the compiled merge's: merging loads numba (the kernel ran)."""
    script = (
        "import sys, numpy as np\n"
        "from recgraph.pipeline.merge import COMPILED, MergeRule, _merge\n"
        "ids = [np.array([[3, 1, 2]]), np.array([[2, 5, -1]])]\n"
        "scores = [np.array([[0.9, 0.5, 0.1]]), np.array([[0.8, 0.2, 0.0]])]\n"
        "sources = [np.zeros((1, 3), np.int64), np.ones((1, 3), np.int64)]\n"
        "out = _merge(ids, scores, sources, MergeRule(k=3, method='rrf'))\n"
        "print(COMPILED and 'numba' in sys.modules, out[0].tolist())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1)[0] == "True"
