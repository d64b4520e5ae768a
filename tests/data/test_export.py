"""Exports: import -> export -> import into a fresh store gives the same store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgraph.data.export import export_table
from recgraph.data.imports import (
    import_accounts,
    import_edges,
    import_interactions,
    import_items,
)
from recgraph.data.interactions import Interactions
from recgraph.data.store import Store
from tests.data.conftest import write_text


def fill(store: Store, tmp_path: Path) -> None:
    """A little of everything: timed follows with repeated events, items, interactions."""
    import_edges(
        store,
        write_text(tmp_path / "events.txt", "a b 10\na b 10\nb c 5\na b 30\nc a 7\n"),
        directed=True,
        timestamps=True,
    )
    with store.writer() as w:
        w.accounts([{"external_id": "a", "handle": "alice.example"}, {"external_id": "lurker"}])
        w.items(
            [
                {
                    "external_id": "p1",
                    "title": "Post, one",
                    "author": "a",
                    "created_at": 3,
                    "features": {"tags": ["x", "é"], "n": 2},
                },
                {"external_id": "p2"},
            ]
        )
        w.interactions(
            pd.DataFrame(
                {
                    "user": ["b", "c", "c", "lurker"],
                    "item": ["p1", "p1", "p2", "p2"],
                    "kind": ["like", "rating", "dislike", "view"],
                    "value": [None, 3.5, None, None],
                    "timestamp": [None, 100, 101, None],
                }
            )
        )


def contents(store: Store) -> dict[str, list]:
    """Everything a user can see, keyed by external ids, order-free."""
    out = {}
    for what in ("follows", "events", "interactions", "items", "accounts"):
        frame = pd.concat(list(store.iter_frames(what)) or [pd.DataFrame()], ignore_index=True)
        if what == "accounts":
            frame = frame.drop(columns=["updated_at"])  # when the row was last written
        rows = [
            tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)
        ]
        out[what] = sorted(rows, key=repr)
    return out


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".parquet"])
def test_round_trip_gives_the_same_store(store: Store, tmp_path: Path, suffix: str):
    fill(store, tmp_path)
    files = {}
    for what in ("events", "interactions", "items", "accounts", "follows"):
        files[what] = tmp_path / f"{what}{suffix}"
        rows = export_table(store, what, files[what])
        assert rows == len(list(pd.concat(list(store.iter_frames(what))).itertuples()))
    with Store(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        import_accounts(copy, files["accounts"])
        import_edges(copy, files["events"], directed=True, timestamps=True)
        import_items(copy, files["items"])
        import_interactions(copy, files["interactions"])
        assert contents(copy) == contents(store)
        assert copy.counts() == store.counts()


def test_follows_export_reads_back_as_edges_and_for_evaluate(store: Store, tmp_path: Path):
    import_edges(store, write_text(tmp_path / "f.txt", "1 2\n2 3\n3 1\n"), directed=False)
    out = tmp_path / "follows.csv"
    assert export_table(store, "follows", out) == 3
    assert out.read_text().splitlines()[0] == "src,dst"  # no times known: no timestamp column
    friends = Interactions.read_table(str(out), "friends")
    assert len(friends) == 3 and not friends.directed
    with Store(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        import_edges(copy, out, directed=False)
        assert contents(copy)["follows"] == contents(store)["follows"]


def test_timed_follows_export_has_a_timestamp_column(store: Store, tmp_path: Path):
    import_edges(
        store,
        write_text(tmp_path / "f.txt", "a b 5\nb a 6\na b 1\n"),
        directed=True,
        timestamps=True,
    )
    out = tmp_path / "follows.tsv"
    export_table(store, "follows", out)
    lines = out.read_text().splitlines()
    assert lines[0] == "src\tdst\ttimestamp" and sorted(lines[1:]) == ["a\tb\t1", "b\ta\t6"]
    graph = Interactions.read_table(str(out), "follows")
    assert sorted(graph.timestamp.tolist()) == [1, 6]


def test_interactions_export_layout_and_compression(store: Store, tmp_path: Path):
    with store.writer() as w:
        w.interactions(
            [
                {"user": "u", "item": "i", "kind": "like"},
                {"user": "u", "item": "j", "kind": "rating", "value": 2.5, "timestamp": 9},
            ]
        )
    out = tmp_path / "i.csv.gz"
    export_table(store, "interactions", out)
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["user", "item", "kind", "value", "value_kind", "timestamp"]
    assert frame.values.tolist() == [
        ["u", "i", "like", "", "none", ""],
        ["u", "j", "rating", "2.5", "rating", "9"],
    ]


def test_empty_export_and_parquet_types(store: Store, tmp_path: Path):
    out = tmp_path / "none.parquet"
    assert export_table(store, "interactions", out) == 0
    frame = pd.read_parquet(out)
    assert (
        list(frame.columns) == ["user", "item", "kind", "value", "value_kind", "timestamp"]
        and len(frame) == 0
    )
    assert frame["timestamp"].dtype == "Int64" or np.issubdtype(
        frame["timestamp"].dtype, np.integer
    )


def test_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.writer() as w:
        w.follows([{"src": "a", "dst": "b"}], directed=True)

    def broken(*args, **kwargs):
        yield pd.DataFrame({"src": ["a"], "dst": ["b"], "created_at": [None], "seen_at": [None]})
        raise RuntimeError("disk gone")

    monkeypatch.setattr(Store, "iter_frames", broken)
    out = tmp_path / "f.csv"
    with pytest.raises(RuntimeError):
        export_table(store, "follows", out)
    assert not out.exists() and not list(tmp_path.glob(".f.csv*"))
    store.close()
