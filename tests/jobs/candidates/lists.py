"""Helpers the candidate-job tests share: real graphs, and "the same lists up to ties"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgraph.data.interactions import Interactions
from tests.datasets import edge_list

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_or_skip(url: str = REDIS_URL):
    """A client of the test Redis server, or a skip that names the URL."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}")
    return client


def real_graph(name: str) -> Interactions:
    """A shared dataset as Interactions (accounts numbered in sorted id order); skips if absent."""
    from recgraph.jobs.candidates.graph_input import renumber_sorted

    return renumber_sorted(edge_list(name))


def write_edges(graph: Interactions, path: Path) -> Path:
    """The graph as an edge file like ``recgraph export follows`` writes (``src, dst[, timestamp]``)."""
    columns = {
        "src": graph.users.external(graph.src).astype(str),
        "dst": graph.users.external(graph.dst).astype(str),
    }
    if graph.timestamp is not None:
        columns["timestamp"] = graph.timestamp
    pd.DataFrame(columns).to_parquet(path, index=False)
    return path


def lists_frame(users: np.ndarray, ids: np.ndarray, scores: np.ndarray, names) -> pd.DataFrame:
    """``(user, candidate, score, rank)`` rows of positive scores from ``recommend``-shaped arrays."""
    rows, slots = np.nonzero((ids >= 0) & (scores > 0))
    return pd.DataFrame(
        {
            "user": names[users[rows]].astype(str),
            "candidate": names[ids[rows, slots]].astype(str),
            "score": scores[rows, slots].astype(np.float64),
            "rank": slots + 1,
        }
    )


def model_lists(model, names, k: int) -> pd.DataFrame:
    """Every user's top-``k`` from ``model.recommend`` as :func:`lists_frame` rows: what a
    candidates job must write for that model."""
    users = np.arange(model.n_users)
    ids, scores = model.recommend(users, k)
    return lists_frame(users, ids, scores, names)


def assert_same_lists(expected: pd.DataFrame, actual: pd.DataFrame, k: int, rel: float) -> None:
    """Identical top-k lists up to ties, scores equal to ``rel`` relative.

    Per user: the same number of candidates, the same score at every rank,
    and within each group of tied scores the same candidates, except for the
    group the cut at ``k`` goes through (either side may keep any of it).
    """
    mine = expected.sort_values(["user", "rank"]).reset_index(drop=True)
    theirs = actual.sort_values(["user", "rank"]).reset_index(drop=True)
    assert set(mine["user"]) == set(theirs["user"]), "different users have candidates"
    lengths = mine.groupby("user").size()
    other = theirs.groupby("user").size()
    differ = lengths[lengths != other.reindex(lengths.index)]
    assert differ.empty, f"list lengths differ for users {list(differ.index[:5])}"
    assert (mine["user"].to_numpy() == theirs["user"].to_numpy()).all()
    a, b = mine["score"].to_numpy(), theirs["score"].to_numpy()
    np.testing.assert_allclose(b, a, rtol=rel, err_msg="scores at the same ranks differ")
    user = mine["user"].to_numpy()
    new_user = np.r_[True, user[1:] != user[:-1]]
    tied = ~new_user & np.r_[False, np.abs(np.diff(a)) <= 2 * rel * np.abs(a[1:])]
    group = np.cumsum(~tied)
    length = lengths.reindex(user).to_numpy()
    last_group = pd.Series(group).groupby(user).transform("max").to_numpy()
    cut = (length == k) & (group == last_group)
    keys = pd.DataFrame({"group": group[~cut], "a": mine["candidate"].to_numpy()[~cut]})
    other_keys = pd.DataFrame({"group": group[~cut], "b": theirs["candidate"].to_numpy()[~cut]})
    left = keys.sort_values(["group", "a"])["a"].to_numpy()
    right = other_keys.sort_values(["group", "b"])["b"].to_numpy()
    wrong = np.flatnonzero(left != right)
    assert not len(wrong), (
        f"{len(wrong)} candidates differ outside ties, e.g. {left[wrong[:3]]} vs {right[wrong[:3]]}"
    )
