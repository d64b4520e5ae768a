"""The store suite: run unchanged on SQLite, MariaDB and PostgreSQL (see conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.imports import import_edges, import_interactions, import_movielens
from recgraph.data.interactions import Kind
from recgraph.data.store import Store, StoreError
from recgraph.errors import InputError
from tests.data.conftest import write_text

EDGES = "# temporal\r\n1 2 100\r\n2 3 50\r\n1 2 100\r\n1 2 300\r\n3 1 70\r\n"


def snapshot(store: Store) -> dict[str, list[tuple]]:
    """Every row of every table (the per-transaction ``batch`` tag aside), in key order."""
    out = {}
    with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            columns = [c for c in table.columns if c.name != "batch"]
            order = list(table.primary_key.columns)
            out[table.name] = [
                tuple(row) for row in conn.execute(sa.select(*columns).order_by(*order))
            ]
    return out


def ml100k(directory: Path) -> Path:
    directory.mkdir()
    write_text(
        directory / "u.data", "1\t10\t4\t881250949\n2\t10\t3\t891717742\n1\t20\t5\t878887116\n"
    )
    flags = "|".join(["0"] * 19)
    write_text(
        directory / "u.item",
        f"10|Café (1995)|01-Jan-1995||http://x|{flags}\n"
        f"20|Two|02-Feb-1996||http://y|{flags[:-1]}1\n",
        encoding="latin-1",
    )
    return directory


def test_idempotent_reimport(store: Store, tmp_path: Path):
    edges = write_text(tmp_path / "e.txt", EDGES)
    movies = ml100k(tmp_path / "ml")
    table = write_text(tmp_path / "i.csv", "user,item,kind,value\nu1,10,like,\nu1,10,view,\n")

    def load() -> None:
        import_edges(store, edges, directed=True, timestamps=True)
        import_movielens(store, movies)
        import_interactions(store, table)

    load()
    first = snapshot(store)
    assert store.counts()["edge_events"] == 5
    load()
    assert snapshot(store) == first
    assert store.counts()["edge_events"] == 5  # chunks add up, re-imports replace


def test_bad_row_rolls_back_the_whole_import(store: Store, tmp_path: Path):
    import_edges(store, write_text(tmp_path / "good.txt", "a b\nb c\n"), directed=True)
    before_counts, before_rows = store.counts(), snapshot(store)
    bad = write_text(tmp_path / "bad.txt", "c d\nd e\ne f\nf g\nx y z\n")
    with pytest.raises(InputError) as err:
        # two rows per chunk: the first chunks are written before line 5 fails
        import_edges(store, bad, directed=True, chunk_rows=2)
    assert "line 5" in str(err.value) and str(bad) in str(err.value)
    assert store.counts() == before_counts
    assert snapshot(store) == before_rows


def test_bad_kind_rolls_back_interactions(store: Store, tmp_path: Path):
    good = write_text(tmp_path / "i.csv", "user,item,kind\nu,i,like\nu,j,like\nu,k,loved\n")
    with pytest.raises(InputError, match="line 4.*unknown kind 'loved'"):
        import_interactions(store, good, chunk_rows=1)
    assert store.counts()["interactions"] == 0 and store.counts()["accounts"] == 0


def test_external_ids_round_trip_and_are_case_sensitive(store: Store):
    ids = ["did:plc:z72i7hdynmk6r22z27h6tvur", "Alice", "alice", "ALICE", "Jürgen ü", "42", "a b"]
    with store.writer() as w:
        w.follows(pd.DataFrame({"src": ids[:-1], "dst": ids[1:]}), directed=True)
        w.items([{"external_id": "Post"}, {"external_id": "post"}])
    graph = store.follows_graph()
    assert sorted(graph.users.ids.tolist()) == sorted(ids)
    assert store.counts()["accounts"] == len(ids)
    assert store.counts()["items"] == 2
    pairs = set(zip(graph.users.external(graph.src), graph.users.external(graph.dst), strict=True))
    assert pairs == set(zip(ids[:-1], ids[1:], strict=True))


def test_earliest_created_at_and_latest_seen_at_are_kept(store: Store):
    def write(created, seen=None) -> None:
        row = {"src": "a", "dst": "b", "created_at": created}
        if seen is not None:
            row["seen_at"] = seen
        with store.writer() as w:
            w.follows([row], directed=True)

    write(200)
    write(100)
    write(None)  # a NULL never replaces a known time
    write(300)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(schema.follows.c.created_at, schema.follows.c.seen_at)).one()
    assert tuple(row) == (100, 300)
    assert store.follows_graph().timestamp.tolist() == [100]


def test_replace_follows_marks_unfollows_instead_of_deleting(store: Store):
    assert store.replace_follows("me", ["a", "b", "c"], seen_at=1000) == {
        "added": 3,
        "kept": 0,
        "removed": 0,
    }
    assert store.replace_follows("me", ["b", "c", "d"], seen_at=2000) == {
        "added": 1,
        "kept": 2,
        "removed": 1,
    }
    counts = store.counts()
    assert counts["follows"] == 3 and counts["follows_removed"] == 1
    graph = store.follows_graph()
    targets = set(graph.users.external(graph.dst))
    assert targets == {"b", "c", "d"}
    assert "a" in graph.users  # the account is still known
    with store.engine.connect() as conn:
        f, a = schema.follows, schema.accounts
        removed = conn.execute(
            sa.select(a.c.external_id, f.c.removed_at)
            .select_from(f.join(a, f.c.target_id == a.c.id))
            .where(f.c.removed_at.is_not(None))
        ).all()
    assert [tuple(r) for r in removed] == [("a", 2000)]
    # following again later brings the edge back
    store.replace_follows("me", ["a"], seen_at=3000)
    graph = store.follows_graph()
    assert set(graph.users.external(graph.dst)) == {"a"}
    assert store.counts()["follows_removed"] == 3


def test_edge_events_keep_repeats_across_chunks(store: Store, tmp_path: Path):
    path = write_text(tmp_path / "e.txt", "1 2 5\n1 2 5\n1 2 5\n2 1 6\n")
    import_edges(store, path, directed=True, timestamps=True, chunk_rows=2)
    assert store.counts()["edge_events"] == 4
    assert store.counts()["follows"] == 2
    events = store.events_graph()
    assert len(events) == 4 and sorted(events.timestamp.tolist()) == [5, 5, 5, 6]
    import_edges(store, path, directed=True, timestamps=True, chunk_rows=3)
    assert store.counts()["edge_events"] == 4


def test_undirected_pairs_are_stored_once_and_direction_is_enforced(store: Store, tmp_path: Path):
    path = write_text(tmp_path / "f.txt", "a b\nb a\nb c\n")
    import_edges(store, path, directed=False)
    assert store.counts()["follows"] == 2
    graph = store.follows_graph()
    assert not graph.directed and graph.csr().nnz == 4
    assert store.follows_directed() is False
    with pytest.raises(InputError, match="holds an undirected follow graph"):
        import_edges(store, path, directed=True)
    assert store.counts()["follows"] == 2


def test_interactions_graph_kinds_values_and_times(store: Store):
    with store.writer() as w:
        w.interactions(
            pd.DataFrame(
                {
                    "user": ["u1", "u1", "u2", "u2"],
                    "item": ["i1", "i2", "i1", "i1"],
                    "kind": ["like", "dislike", "rating", Kind.VIEW],
                    "value": [None, None, 4.5, None],
                }
            )
        )
        w.accounts([{"external_id": "lurker"}])
    everything = store.interactions_graph()
    assert len(everything) == 4 and everything.timestamp is None
    assert everything.n_users == 3 and everything.n_items == 2  # isolated account included
    ratings = store.interactions_graph(kinds=[Kind.RATING])
    assert ratings.value.tolist() == [4.5]
    likes = store.interactions_graph(kinds=["like", "dislike"])
    assert sorted(likes.kind.tolist()) == [int(Kind.LIKE), int(Kind.DISLIKE)]
    assert likes.value.tolist() == [1.0, 1.0]


def test_same_time_same_kind_updates_value_and_other_times_add_rows(store: Store):
    for value, ts in ((3.0, 10), (4.0, 10), (2.0, 20)):
        with store.writer() as w:
            w.interactions(
                [{"user": "u", "item": "i", "kind": "rating", "value": value, "timestamp": ts}]
            )
    graph = store.interactions_graph()
    order = np.argsort(graph.timestamp)
    assert graph.timestamp[order].tolist() == [10, 20]
    assert graph.value[order].tolist() == [4.0, 2.0]


def test_unknown_kind_and_long_ids_are_input_errors(store: Store):
    with pytest.raises(InputError, match="unknown kind 'follow'"), store.writer() as w:
        w.interactions([{"user": "u", "item": "i", "kind": "follow"}])
    with pytest.raises(InputError, match="longer than 255"), store.writer() as w:
        w.accounts([{"external_id": "x" * 256}])
    assert store.counts()["accounts"] == 0


def test_items_merge_titles_features_and_authors(store: Store):
    with store.writer() as w:
        w.items([{"external_id": "p1", "title": "First", "author": "bob", "features": {"n": 1}}])
    with store.writer() as w:
        w.items([{"external_id": "p1", "created_at": 50}])  # no title: keep the old one
        w.accounts([{"external_id": "bob", "handle": "bob.example"}])
    items = store.items_frame()
    assert items.to_dict("records") == [
        {
            "external_id": "p1",
            "author": "bob",
            "title": "First",
            "created_at": 50,
            "features": {"n": 1},
        }
    ]
    accounts = store.accounts_frame()
    assert accounts["handle"].tolist() == ["bob.example"]
    updated = accounts["updated_at"].tolist()
    with store.writer() as w:
        w.accounts([{"external_id": "bob"}])  # no handle: nothing changes
    assert store.accounts_frame()["handle"].tolist() == ["bob.example"]
    assert store.accounts_frame()["updated_at"].tolist() == updated


def test_writer_rolls_back_on_any_exception(store: Store):
    with pytest.raises(RuntimeError), store.writer() as w:
        w.follows([{"src": "a", "dst": "b"}], directed=True)
        raise RuntimeError("boom")
    assert store.counts()["follows"] == 0 and store.counts()["accounts"] == 0
    assert store.follows_directed() is None


def test_reopening_keeps_data(store_url: str):
    with Store(store_url) as first, first.writer() as w:
        w.follows([{"src": "a", "dst": "b"}], directed=True)
    with Store.open(store_url) as again:
        assert again.counts()["follows"] == 1
        assert again.meta(schema.META_SCHEMA_VERSION) == str(schema.SCHEMA_VERSION)


def test_sqlite_pragmas_and_default_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "sub" / "env.db"
    monkeypatch.setenv("RECGRAPH_DATABASE_URL", f"sqlite:///{path}")
    with Store() as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert path.exists()


def test_unreachable_server_is_a_store_error():
    from recgraph.data.store import StoreError

    with pytest.raises(StoreError, match="cannot open the database"):
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=1")


def test_large_batches_take_the_bulk_path_with_the_same_rules(store: Store):
    """Over 500 rows per call: PostgreSQL goes through COPY, the others through executemany."""
    n = 1500
    src = [f"s{i % 300}" for i in range(n)]
    dst = [f"d{i}" for i in range(n)]
    with store.writer() as w:
        w.follows(
            pd.DataFrame({"src": src, "dst": dst, "created_at": range(1000, 1000 + n)}),
            directed=True,
        )
        w.edge_events(
            pd.DataFrame({"src": src + src[:700], "dst": dst + dst[:700], "ts": [7] * (n + 700)})
        )
        w.interactions(
            pd.DataFrame({"user": src, "item": dst, "kind": ["like"] * n, "value": [2.0] * n})
        )
    first = snapshot(store)
    with store.writer() as w:  # the same edges seen earlier and later: times merge
        w.follows(
            pd.DataFrame({"src": src, "dst": dst, "created_at": [5] * n, "seen_at": [9999] * n}),
            directed=True,
        )
        w.edge_events(
            pd.DataFrame({"src": src + src[:700], "dst": dst + dst[:700], "ts": [7] * (n + 700)})
        )
        w.interactions(pd.DataFrame({"user": src, "item": dst, "kind": ["like"] * n}))
    counts = store.counts()
    assert (
        counts["follows"] == n and counts["edge_events"] == n + 700 and counts["interactions"] == n
    )
    with store.engine.connect() as conn:
        times = {
            tuple(r)
            for r in conn.execute(sa.select(schema.follows.c.created_at, schema.follows.c.seen_at))
        }
    assert times == {(5, 9999)}
    after = snapshot(store)
    assert after["interactions"] == first["interactions"]  # a NULL value keeps the stored one
    assert after["edge_events"] == first["edge_events"]
    assert after["accounts"] == first["accounts"]


def test_times_may_be_datetimes(store: Store):
    with store.writer() as w:
        w.items(
            pd.DataFrame(
                {"external_id": ["p"], "created_at": pd.to_datetime(["2020-01-01T00:00:10Z"])}
            )
        )
        w.follows(
            pd.DataFrame({"src": ["a"], "dst": ["b"], "created_at": pd.to_datetime([None])}),
            directed=True,
        )
    assert store.items_frame()["created_at"].tolist() == [1577836810]
    assert store.follows_graph().timestamp is None


def test_values_keep_double_precision(store: Store):
    with store.writer() as w:
        w.interactions([{"user": "u", "item": "i", "kind": "view", "value": 0.1}])
    (frame,) = list(store.iter_frames("interactions"))
    assert frame["value"].tolist() == [0.1]


def test_sqlite_writers_wait_for_each_other_and_readers_do_not(tmp_path: Path):
    import threading

    store = Store(f"sqlite:///{tmp_path / 'busy.db'}")
    done: list[str] = []

    def second_writer() -> None:
        with store.writer() as w:  # BEGIN IMMEDIATE waits for the first writer's commit
            w.follows([{"src": "c", "dst": "d"}], directed=True)
        done.append("second")

    with store.writer() as w:
        w.follows([{"src": "a", "dst": "b"}], directed=True)
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not done  # blocked, not failed
        assert store.counts()["follows"] == 0  # a reader is not blocked (WAL)
    thread.join(timeout=30)
    assert done == ["second"] and store.counts()["follows"] == 2
    store.close()


def test_follow_chunks_stream_int32_arrays_that_match_the_graph(store: Store):
    from recgraph.data.store import NO_TIME

    rng = np.random.default_rng(3)
    src = rng.integers(0, 40, 600).astype(str)
    dst = rng.integers(0, 40, 600).astype(str)
    created = [None if i % 7 == 0 else 1_000 + i for i in range(len(src))]
    frame = pd.DataFrame({"src": src, "dst": dst, "created_at": pd.array(created, "Int64")})
    with store.writer() as w:
        w.follows(frame, directed=True)
        w.account_keys(["lonely"])
    with store.writer() as w:  # a removed follow is not streamed
        w.replace_follows(str(src[0]), [], seen_at=10**6)
    keys, ids = store.account_index()
    chunks = list(store.iter_follow_chunks(chunk_rows=97, keys=keys))
    assert len(chunks) > 1 and all(
        c.src.dtype == np.int32 and c.dst.dtype == np.int32 for c in chunks
    )
    got_src = np.concatenate([c.src for c in chunks])
    got_dst = np.concatenate([c.dst for c in chunks])
    got_ts = np.concatenate([c.ts for c in chunks])
    assert (np.diff(got_src) >= 0).all()  # sources in order: a CSR fills as chunks arrive
    graph = store.follows_graph()
    assert ids == graph.users and "lonely" in ids
    assert got_src.tolist() == graph.src.tolist() and got_dst.tolist() == graph.dst.tolist()
    times: dict = {}
    for s, d, t in zip(src, dst, created, strict=True):  # the earliest known time of a pair
        if t is not None:
            times[(s, d)] = min(t, times.get((s, d), t))
    for s, d, t in zip(ids.external(got_src), ids.external(got_dst), got_ts, strict=True):
        assert t == times.get((s, d), NO_TIME)


def test_the_busy_timeout_reaches_sqlite(tmp_path):
    from recgraph.data.sql import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'busy.db'}", busy_timeout=2.5)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    engine.dispose()


def test_follows_with_keys_just_below_2_31_round_trip(store: Store):
    """Untimed follows of keys below 2**31 travel packed as ``src << 32 | dst`` (on SQLite
    in one JSON array): the largest such keys come back exactly."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.accounts).values(
                id=2**31 - 4, external_id="z", created_at=0, updated_at=0
            )
        )
    pairs = [("z", "y"), ("y", "x"), ("x", "z"), ("x", "y")]
    with store.writer() as w:
        w.follows(pd.DataFrame(pairs, columns=["src", "dst"]), directed=True)
    stored = pd.concat(store.iter_frames("follows"))
    assert sorted(zip(stored["src"], stored["dst"], strict=True)) == sorted(pairs)
    with store.engine.connect() as conn:
        keys = conn.execute(sa.select(schema.accounts.c.id).order_by(schema.accounts.c.id))
        held = [k for (k,) in keys]
    # SQLite and MariaDB number on from the largest key; PostgreSQL's sequence from 1
    assert len(held) == 3 and 2**31 - 4 in held and max(held) < 2**31


def test_follow_chunks_keep_every_pair_and_time_across_gaps_and_large_sources(
    store: Store, monkeypatch: pytest.MonkeyPatch
):
    """SQLite streams the follows grouped by source, one text per source
    (``_sqlite_follow_chunks``): keys with gaps (a binary search, not a subtraction),
    a source with more follows than a fetch holds sources, a source none of whose
    follows has a time and one whose follows mix times and NULLs all come back as
    written, in ``(source, target)`` order and in chunks of exactly ``chunk_rows``."""
    from recgraph.data import store as store_module
    from recgraph.data.store import NO_TIME

    monkeypatch.setattr(store_module, "SQLITE_GROUPS", 2)
    with store.engine.begin() as conn:  # keys with a gap between them (and the writer's)
        for key, name in ((10**6, "gap5"), (10**6 + 95, "gap100")):
            conn.execute(
                sa.insert(schema.accounts).values(
                    id=key, external_id=name, created_at=0, updated_at=0
                )
            )
    rows = [("hub", f"t{i}", 1_000 + i if i % 3 else None) for i in range(40)]  # mixed
    rows += [("gap5", f"t{i}", None) for i in range(0, 40, 4)]  # no time at all
    rows += [("gap100", "hub", 7), ("t3", "gap5", 9), ("t3", "gap100", None)]
    frame = pd.DataFrame(rows, columns=["src", "dst", "created_at"])
    frame["created_at"] = pd.array(frame["created_at"].tolist(), "Int64")
    with store.writer() as w:
        w.follows(frame, directed=True)
    keys, ids = store.account_index()
    assert int(keys[-1]) - int(keys[0]) != len(keys) - 1  # the binary-search path
    chunks = list(store.iter_follow_chunks(chunk_rows=7, keys=keys))
    assert [len(c) for c in chunks[:-1]] == [7] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 7
    src = np.concatenate([c.src for c in chunks])
    dst = np.concatenate([c.dst for c in chunks])
    ts = np.concatenate([c.ts for c in chunks])
    assert np.all((np.diff(src) > 0) | ((np.diff(src) == 0) & (np.diff(dst) > 0)))
    got = {(s, d): int(t) for s, d, t in zip(ids.external(src), ids.external(dst), ts, strict=True)}
    assert got == {(s, d): NO_TIME if t is None else t for s, d, t in rows}


def test_opening_without_create_tests_a_files_path_but_not_a_memory_db_or_a_file_uri(tmp_path):
    """``create=False`` says "no database at" for a missing file only: an in-memory database
    (:func:`~recgraph.data.sql.is_memory`) has no file, and a ``file:`` URI's path sits inside
    the URI; both fail on opening instead (no schema, no file)."""
    with pytest.raises(StoreError, match="no database at"):
        Store(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    for url in (
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:nocreate?mode=memory&cache=shared&uri=true",
        f"sqlite:///{tmp_path / 'memory.db'}?mode=memory&uri=true",  # memory: no file to test
        f"sqlite:///file:{tmp_path / 'missing.db'}?mode=rw&uri=true",
    ):
        with pytest.raises(StoreError, match="cannot open the database"):
            Store(url, create=False)
    assert not {p.name for p in tmp_path.iterdir()} & {"missing.db", "memory.db"}


def _open_at_once(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        Store(url).engine.dispose()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_sqlite_file_at_once_all_open_it(tmp_path):
    """``serve --workers N`` opens a new store in each worker at the same moment: creating
    the schema reads before it writes, and SQLite answers a read-then-write transaction that
    meets another writer with "database is locked" at once, busy timeout or not (each of 8
    tries failed so before); one write transaction from the start waits its turn."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    barrier, results = context.Barrier(3), context.Queue()
    workers = [
        context.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["ok"] * 3
    assert Store(url, create=False).schema_version() == schema.SCHEMA_VERSION
