"""The shared datasets the slow tests read: where they are, and a skip that says so when absent.

``../shared/datasets`` beside the repository, or ``$RECGRAPH_DATASETS``; one
place for the path and the skip message, so that every test names the same
folder and the same variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recgraph.data.interactions import Interactions

#: The shared edge-list graphs: name -> (file under the datasets folder, directed, timestamps).
GRAPHS = {
    "college-msg": ("snap-college-msg/CollegeMsg.txt", True, True),
    "wiki-vote": ("snap-wiki-vote/wiki-Vote.txt", True, False),
    "ego-facebook": ("snap-ego-facebook/facebook_combined.txt", False, False),
}


def datasets_folder() -> Path:
    """``$RECGRAPH_DATASETS``, else ``../shared/datasets`` beside the repository."""
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
    return Path(os.environ.get("RECGRAPH_DATASETS", default))


def shared_path(relative: str, what: str) -> Path:
    """``relative`` inside the datasets folder; the test is skipped (naming ``what``) when absent."""
    path = datasets_folder() / relative
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set RECGRAPH_DATASETS)")
    return path


def edge_list(name: str) -> Interactions:
    """One of :data:`GRAPHS` read as ``recgraph`` reads an edge list; skips when absent."""
    from recgraph.data.readers import read_edge_list

    relative, directed, timestamps = GRAPHS[name]
    return read_edge_list(shared_path(relative, name), directed=directed, timestamps=timestamps)
