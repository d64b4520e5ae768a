"""Keys of new accounts and items: a first import on SQLite assigns them without lookups
(the table was empty and the writer has seen every id since); everywhere else they are
looked up. Both give the same keys, in order of first appearance."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.store import Store


def keys_by_id(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.accounts.c.external_id, schema.accounts.c.id))
        return {external: int(key) for external, key in rows.all()}


def follows(store: Store) -> set[tuple[str, str]]:
    a, b, f = schema.accounts.alias(), schema.accounts.alias(), schema.follows
    query = sa.select(a.c.external_id, b.c.external_id).select_from(
        f.join(a, f.c.source_id == a.c.id).join(b, f.c.target_id == b.c.id)
    )
    with store.engine.connect() as conn:
        return set(conn.execute(query).all())


EDGES = pd.DataFrame({"src": ["x", "y", "é\u4e2d", "x"], "dst": ["y", "z", "x", 'w"q']})


def test_a_first_import_keys_accounts_in_order_of_first_appearance(store) -> None:
    with store.writer() as writer:
        writer.follows(EDGES.iloc[:2], directed=True)
        writer.follows(EDGES.iloc[2:], directed=True)  # a second chunk: new and known ids
    assert keys_by_id(store) == {"x": 1, "y": 2, "z": 3, "é\u4e2d": 4, 'w"q': 5}
    assert follows(store) == set(zip(EDGES.src, EDGES.dst, strict=True))


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_accounts_written_directly_or_present_before_are_looked_up(store) -> None:
    with store.writer() as writer:
        writer.follows(EDGES.iloc[:1], directed=True)  # x=1, y=2, keyed without lookups
        writer.accounts(pd.DataFrame({"external_id": ["z", "v"]}))  # past the writer's cache
        writer.follows(EDGES.iloc[1:], directed=True)  # z must be found, not added again
    assert keys_by_id(store) == {"x": 1, "y": 2, "z": 3, "v": 4, "é\u4e2d": 5, 'w"q': 6}
    with store.writer() as writer:  # a store that holds accounts: every new id looked up
        writer.follows(pd.DataFrame({"src": ["v", "n"], "dst": ["m", "x"]}), directed=True)
    assert keys_by_id(store)["n"] == 7 and keys_by_id(store)["m"] == 8
    assert ("n", "x") in follows(store) and len(follows(store)) == 6


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_refused_first_import_leaves_no_account_behind(store) -> None:
    with pytest.raises(ValueError), store.writer() as writer:
        writer.follows(EDGES, directed=True)
        raise ValueError("stop")
    assert keys_by_id(store) == {}
    with store.writer() as writer:  # and the next writer starts from key 1 again
        writer.follows(EDGES.iloc[:1], directed=True)
    assert keys_by_id(store) == {"x": 1, "y": 2}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("gap", [False, True])
def test_an_edge_import_checks_its_references_once_before_the_commit(store, tmp_path, gap) -> None:
    from recgraph.data.imports import import_edges
    from recgraph.data.sql import StoreError, references_at_end

    path = tmp_path / "edges.txt"
    path.write_text("a b\nb c\nc a\n")
    import_edges(store, path, directed=True)
    assert follows(store) == {("a", "b"), ("b", "c"), ("c", "a")}
    with store.engine.connect() as conn:  # the next transaction checks row by row again
        with conn.begin():
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    if gap:  # keys no longer 1..N: every row is checked (SQLite's foreign_key_check)
        with store.engine.begin() as conn:
            conn.execute(sa.delete(schema.accounts).where(schema.accounts.c.external_id == "a"))
    before, accounts = follows(store), keys_by_id(store)
    with pytest.raises(StoreError, match="does not exist"), references_at_end():
        with store.writer() as writer:
            writer.follows(pd.DataFrame({"src": ["b"], "dst": ["z"]}), directed=True)
            writer.conn.execute(sa.insert(schema.follows).values(source_id=2, target_id=99))
    assert follows(store) == before and keys_by_id(store) == accounts  # rolled back whole


def test_an_untimed_first_bulk_load_keeps_every_distinct_follow_once(store, tmp_path) -> None:
    """Chunks past the bulk threshold, a pair repeated across chunks: on PostgreSQL the
    rows go in by one formatted COPY a block, on SQLite held and written in key order."""
    import numpy as np

    from recgraph.data.imports import import_edges

    rng = np.random.default_rng(4)
    src, dst = rng.integers(0, 500, 6_000), rng.integers(0, 500, 6_000)
    path = tmp_path / "edges.txt"
    path.write_text("".join(f"n{a} n{b}\n" for a, b in zip(src, dst, strict=True)))
    first = import_edges(store, path, directed=True, chunk_rows=2_500)
    expected = {(f"n{a}", f"n{b}") for a, b in zip(src, dst, strict=True)}
    assert follows(store) == expected and first.new["follows"] == len(expected)
    assert import_edges(store, path, directed=True, chunk_rows=2_500).new["follows"] == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_numeric_ids_are_keyed_as_numbers_until_a_chunk_is_not(store, tmp_path) -> None:
    """A first import of canonical decimal ids keys them as int64 arrays; "007" is not "7",
    and the first chunk that is not all canonical numbers hands the ids held so far to the
    id cache: the keys are those of first appearance throughout."""
    from recgraph.data.imports import import_edges

    path = tmp_path / "edges.tsv"
    path.write_text("5\t7\n7\t12\n12\t007\n0\t5\n9\t5\n7\t0\n")
    import_edges(store, path, directed=True, chunk_rows=2)
    assert keys_by_id(store) == {"5": 1, "7": 2, "12": 3, "0": 4, "007": 5, "9": 6}
    edges = {("5", "7"), ("7", "12"), ("12", "007"), ("0", "5"), ("9", "5"), ("7", "0")}
    assert follows(store) == edges
    again = tmp_path / "more.tsv"  # a second writer: the store is no longer empty
    again.write_text("7\t13\n13\t5\n")
    import_edges(store, again, directed=True)
    assert keys_by_id(store)["13"] == 7 and len(keys_by_id(store)) == 7
    assert follows(store) == edges | {("7", "13"), ("13", "5")}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_hex_ids_stay_text_beside_their_decimal_value(store, tmp_path) -> None:
    """Arrow's cast reads "0xFFFFF" as 1048575: it must stay its own account."""
    from recgraph.data.imports import import_edges

    path = tmp_path / "edges.tsv"
    path.write_text("1048575\t2\n0xFFFFF\t3\n")
    import_edges(store, path, directed=True, chunk_rows=2)
    assert set(keys_by_id(store)) == {"1048575", "2", "0xFFFFF", "3"}
    assert follows(store) == {("1048575", "2"), ("0xFFFFF", "3")}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_first_import_holds_numeric_ids_as_numbers_then_hands_them_over(store) -> None:
    def chunk(src: list[str], dst: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"src": src, "dst": dst}, dtype="string[pyarrow]")

    with store.writer() as writer:
        writer.follows(chunk(["5", "7"], ["7", "12"]), directed=True, checked=True)
        assert writer._numbers["accounts"].ids.tolist() == [5, 7, 12]
        assert writer._keys["accounts"] == {}  # no Python str per id
        writer.follows(chunk(["12"], ["007"]), directed=True, checked=True)
        assert writer._numbers["accounts"] is None
        assert writer._keys["accounts"] == {"5": 1, "7": 2, "12": 3, "007": 4}
    assert keys_by_id(store) == {"5": 1, "7": 2, "12": 3, "007": 4}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_refused_numeric_first_import_leaves_no_account_behind(store, tmp_path) -> None:
    from recgraph.data.imports import import_edges
    from recgraph.errors import InputError

    rows = "".join(f"{i}\t{(i * 7) % 300}\n" for i in range(1, 600))
    bad = tmp_path / "bad.tsv"
    bad.write_text(rows + "5\t6\t7\t8\n")
    with pytest.raises(InputError, match="line 600"):
        import_edges(store, bad, directed=True, chunk_rows=250)
    assert keys_by_id(store) == {} and follows(store) == set()
    good = tmp_path / "good.tsv"
    good.write_text(rows)
    import_edges(store, good, directed=True, chunk_rows=250)
    assert keys_by_id(store)["1"] == 1 and keys_by_id(store)["250"] == 250
    assert len(follows(store)) == 599
