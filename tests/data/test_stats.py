"""Store summaries for the dashboard, on each backend: counts, rows over time, degrees."""

import pandas as pd
import pytest

from recgraph.data.stats import DAY, HOUR, store_summary
from recgraph.data.store import Store

T0 = 1_700_000_000 - 1_700_000_000 % DAY  # a day boundary


def test_an_empty_store_has_empty_figures(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        summary = store_summary(store)
    assert summary["activity"]["interactions"]["points"] == []
    assert summary["degrees"]["followers"] == {
        "nodes": 0, "zero": 0, "mean": 0.0, "max": 0, "bins": [],
    }  # fmt: skip


def test_summary_counts_times_and_degrees(store_url):
    # a hub followed by 5 accounts; b followed by 2; 3 follows in day 0, 4 in day 2
    follows = [(s, "hub", T0 + 10 * i) for i, s in enumerate("abcde")]
    follows += [("a", "b", T0 + 2 * DAY), ("c", "b", T0 + 2 * DAY + 5)]
    likes = [("a", "p1", T0 + HOUR), ("a", "p2", T0 + HOUR), ("b", "p1", T0 + 30 * DAY)]
    with Store(store_url) as store:
        with store.writer() as writer:
            writer.follows(
                pd.DataFrame(follows, columns=["src", "dst", "created_at"]), directed=True
            )
            writer.interactions(
                pd.DataFrame(likes, columns=["user", "item", "timestamp"]).assign(kind="like")
            )
            writer.items(pd.DataFrame({"external_id": ["p3"]}))  # never interacted with
        summary = store_summary(store, max_points=50)
    assert summary["counts"]["follows"] == 7 and summary["counts"]["interactions"] == 3
    follow_days = summary["activity"]["follows"]
    assert follow_days["bucket_seconds"] == HOUR
    assert sum(n for _, n in follow_days["points"]) == 7
    assert follow_days["points"][0] == [T0, 5]
    interactions = summary["activity"]["interactions"]
    assert interactions["bucket_seconds"] == DAY  # 30 days in hours would be 720 points
    assert interactions["points"] == [[T0, 2], [T0 + 30 * DAY, 1]]
    followers = summary["degrees"]["followers"]
    # hub 5 -> bin 4..7; b 2 -> bin 2..3; the 4 others (a, c, d, e) have no follower
    assert followers["bins"] == [
        {"low": 2, "high": 3, "nodes": 1},
        {"low": 4, "high": 7, "nodes": 1},
    ]
    assert (
        followers["max"] == 5 and followers["zero"] == 4 and followers["mean"] == pytest.approx(3.5)
    )
    popularity = summary["degrees"]["item_popularity"]
    assert popularity["bins"] == [
        {"low": 1, "high": 1, "nodes": 1},
        {"low": 2, "high": 3, "nodes": 1},
    ]
    assert popularity["zero"] == 1  # p3
    assert summary["degrees"]["user_activity"]["max"] == 2
