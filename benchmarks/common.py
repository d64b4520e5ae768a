"""What the benchmark scripts share: where the datasets are, and running ``recgraph`` in-process."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from recgraph.cli.main import main as recgraph_main

REPO = Path(__file__).resolve().parents[1]


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
