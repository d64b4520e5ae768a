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


def movielens_items_file(folder: Path, path: Path) -> Path:
    """Write a MovieLens folder's films as ``item,title,genres`` (what ``--items`` reads)."""
    import pandas as pd

    from recgraph.data.readers import iter_movielens_items

    frame = pd.concat(list(iter_movielens_items(folder)), ignore_index=True)
    pd.DataFrame(
        {
            "item": frame["external_id"],
            "title": frame["title"],
            "genres": ["|".join((f or {}).get("genres", [])) for f in frame["features"]],
        }
    ).to_csv(path, index=False)
    return path
