"""How a train/test pair of split files was cut, read from the rows' times alone.

A pipeline's ranker learns from a label slice of the training data and
decides on it whether to rank at all; the slice should ask the question the
test asks (:func:`recgraph.pipeline.ranking.label_kinds`). Served, that is
the future; on split files it is how the files were cut, which
:func:`detect_holdout` reads from the layout of the timestamps: the users
and times of the test rows, never which items they hold, so nothing of what
is scored reaches training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from recgraph.data.interactions import Interactions
from recgraph.pipeline.ranking import HOLDOUT_LABEL_SPLITS

#: The holdouts ``recgraph evaluate --holdout`` accepts besides ``auto``: those a ranker
#: can be taught for, every split method :func:`detect_holdout` may report included.
HOLDOUTS = tuple(HOLDOUT_LABEL_SPLITS)


@dataclass(frozen=True)
class Holdout:
    """A split method of :mod:`recgraph.data.splits` (or ``future``) and why it was chosen."""

    method: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "reason": self.reason}


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%d %H:%M")


def detect_holdout(train: Interactions, test: Interactions) -> Holdout:
    """The split method that explains the files' times (:class:`Holdout`).

    - every test row at or after the last train row: one cut in time for
      everyone (``temporal_global``; ``temporal_pairs`` on an account graph);
    - else every test row of a user at or after that user's last train row:
      ``temporal_per_user``;
    - else, or without timestamps on both sides: a random holdout
      (``random_per_user``; ``edge_holdout`` on an account graph).

    ``test`` must index users as ``train`` does (``Interactions.read_table``
    with ``users=train.users``). Only the test rows' users and times are read.
    """
    items = train.graph_kind == "items"
    random = "random_per_user" if items else "edge_holdout"
    if not (train.has_timestamps and test.has_timestamps) or not len(train) or not len(test):
        return Holdout(random, "no timestamps on both sides: a random holdout is assumed")
    assert train.timestamp is not None and test.timestamp is not None
    last, first = float(train.timestamp.max()), float(test.timestamp.min())
    if first >= last:
        return Holdout(
            "temporal_global" if items else "temporal_pairs",
            f"every test row is at or after the last train row ({_day(last)})",
        )
    latest = np.full(train.n_users, -np.inf)
    np.maximum.at(latest, train.src, train.timestamp)
    known = test.src < train.n_users
    if not known.any():
        return Holdout(random, "no test user is in train: a random holdout is assumed")
    before = test.timestamp[known] < latest[test.src[known]]
    if not before.any():
        return Holdout(
            "temporal_per_user", "every test row is at or after its user's last train row"
        )
    return Holdout(
        random,
        f"{before.mean():.0%} of the test rows are older than their user's last train row",
    )
