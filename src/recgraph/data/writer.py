"""Bulk, idempotent writes: the :class:`Writer` that :meth:`Store.writer` hands out.

Every method takes DataFrame chunks keyed by external ids, validates them
(:class:`~recgraph.errors.InputError` naming the field) and upserts them in
the writer's one transaction; merge rules are in :mod:`recgraph.data.store`.
Parts that keep tables of their own add writer methods here, so that all SQL
that changes rows lives in ``data/``.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.sorted_keys import distinct_sorted
from recgraph.data.sql import (
    COUNTED,
    SQLITE_PAGE_CACHE,
    SQLITE_TEMP_STORE,
    STAGE_MIN_ROWS,
    WRITE_BATCH,
    StoreError,
    UpdateRule,
    batches,
    copy_int_columns,
    copy_rows,
    count_rows,
    earliest,
    get_meta,
    latest,
    references_checked_at_end,
    upsert_pairs,
    upsert_rows,
)
from recgraph.data.writer_keys import KeyedWriter
from recgraph.data.writer_rows import (
    Frame,
    checked_frame,
    checked_ids,
    features_json,
    kind_or_none,
    nullable_ints,
    optional_seconds,
    value_kinds,
)
from recgraph.errors import InputError

#: SQLite page cache (KiB) while a writer bulk-loads; the connection's own size comes back after.
#: A bulk load's page cache, 1 GiB: the indexes of a large load outgrow 64 MiB, and the
#: accounts of 10^8 follows (table and external-id index, ~450 MB) are probed at random.
#: Fixed SQL text: SQLite cannot bind a PRAGMA's value.
BULK_PAGE_CACHE = "PRAGMA cache_size=-1048576"
#: The page cache (KiB) while SQLite builds the indexes a first load deferred: the sorter
#: sorts runs this size in memory and merges them (:meth:`Writer._sqlite_build_indexes`);
#: 2 MiB runs sorted ix_follows_target of 10^7 follows in 5.6 CPU s, 16 MiB in 9.5, 1 GiB
#: in 14.5 (a standalone sqlite3 test).
SORT_PAGE_CACHE = "PRAGMA cache_size=-2048"


# ---------------------------------------------------------------------- writer
class Writer(KeyedWriter):
    """Bulk, idempotent writes inside one transaction (see :meth:`Store.writer`).

    Every method takes a pandas DataFrame (or an iterable of dicts) keyed by
    external ids; accounts and items it references are created on the fly
    (:class:`~recgraph.data.writer_keys.KeyedWriter`: lookups batched and cached
    for the transaction).
    """

    def __init__(self, conn: sa.Connection, dialect: str) -> None:
        super().__init__(conn, dialect, int(time.time()))
        self.batch = secrets.randbits(62)
        self._directed: bool | None = None
        self._bulk_checked: set[str] = set()
        self._deferred: list[sa.Index] = []
        self._cache_raised = False
        self._deferred_sql: list[Any] = []
        #: Tables loaded by plain ``COPY`` without their primary key (PostgreSQL first
        #: loads of follows), with the SQL that adds the key back (:meth:`_settle`).
        self._heaps: dict[str, Any] = {}
        #: SQLite first loads of untimed follows: sorted distinct packed pairs of each
        #: chunk, written at once in key order by :meth:`_flush_pairs`, or None.
        self._pending: list[np.ndarray] | None = None
        self._pending_rows = 0
        #: SQLite with its foreign keys off for this transaction (:func:`references_at_end`).
        self._references_at_end = dialect == "sqlite" and references_checked_at_end()

    # -------------------------------------------------------------- bulk loads
    def _bulk_start(self, table: sa.Table, heap: bool = False) -> None:
        """On SQLite and PostgreSQL, a first load into an empty table drops its secondary
        indexes (and on PostgreSQL its foreign keys) and
        :meth:`finish` builds them once at the end: far cheaper than keeping them
        sorted row by row. Same transaction, so an error still restores everything
        (and WAL readers keep their snapshot meanwhile).

        ``heap`` (PostgreSQL): the primary key goes too, and the rows go in by ``COPY``
        straight into the table instead of a staged ``INSERT .. ON CONFLICT`` that
        looks every key up; :meth:`_settle` merges repeats and adds the key back.
        On SQLite (untimed follows) the chunks' pairs are held, up to
        :data:`_PENDING_PAIRS`, and written merged in key order: the empty table then
        grows at its end, instead of every chunk touching every page of it."""
        if self.dialect not in ("sqlite", "postgresql") or table.name in self._bulk_checked:
            return
        self._bulk_checked.add(table.name)
        if self.dialect == "sqlite" and not self._cache_raised:
            self.conn.exec_driver_sql(BULK_PAGE_CACHE)
            self._cache_raised = True
        if self.conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
            return
        for index in table.indexes:
            index.drop(self.conn)
            self._deferred.append(index)
        if self.dialect == "postgresql":
            self._deferred_sql += self._drop_constraints(table, "f")
            if heap:
                (self._heaps[table.name],) = self._drop_constraints(table, "p")
        elif heap:
            self._pending = []

    def _drop_constraints(self, table: sa.Table, kind: str) -> list[Any]:
        """Drop ``table``'s constraints of one kind (``f``: foreign keys, ``p``: the primary
        key) and return the SQL that adds each back.

        PostgreSQL checks a foreign key row by row (a trigger each) and a primary key by an
        index probe per row; a first load into an empty table drops them and
        :meth:`finish` adds them back, which checks every row in one pass. DDL is
        transactional there: a rollback brings them back too. Until the commit other
        sessions wait to read ``table`` (it was empty)."""
        from psycopg import sql as pg_sql

        found = self.conn.execute(
            sa.text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:name AS regclass) AND contype = :kind ORDER BY conname"
            ),
            {"name": table.name, "kind": kind},
        ).all()
        restore = []
        for name, definition in found:
            self._pg_execute(
                pg_sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    pg_sql.Identifier(table.name), pg_sql.Identifier(name)
                )
            )
            # the definition is PostgreSQL's own text for the constraint it just held
            restore.append(
                pg_sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                    pg_sql.Identifier(table.name), pg_sql.Identifier(name)
                )
                + pg_sql.SQL(definition)
            )
        return restore

    def _settle(self) -> None:
        """Give the tables loaded as heaps their primary key back, first merging the rows
        that repeat a key (follows in two chunks of one file) by the rules of
        :meth:`follows`: the earliest ``created_at``, the latest ``seen_at``; and write
        the follows a SQLite first load holds. Before anything else reads or writes
        them, and before the commit."""
        self._flush_pairs()
        if not self._heaps:
            return
        self.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        for name, add_key in list(self._heaps.items()):
            assert name == schema.follows.name  # the only table loaded as a heap
            try:
                with self.conn.begin_nested():  # a repeated key fails it: merge, then again
                    self._pg_execute(add_key)
            except Exception as exc:  # psycopg's UniqueViolation, from the driver's cursor
                if getattr(exc, "sqlstate", None) != "23505":
                    raise
                self._merge_repeated_follows()
                self._pg_execute(add_key)
            del self._heaps[name]

    def _flush_pairs(self) -> None:
        """Write the held follows (see :meth:`_bulk_start`), all chunks merged, in key order."""
        if not self._pending:
            return
        pairs = distinct_sorted(np.concatenate(self._pending), runs=True)  # chunks are sorted
        self._pending, self._pending_rows = [], 0
        upsert_pairs(self.conn, schema.follows, _FOLLOW_KEY, pairs, _FOLLOW_RULES)

    def _merge_repeated_follows(self) -> None:
        """One row per follow key in a heap-loaded follows table (see :meth:`_settle`)."""
        f = schema.follows
        repeated = sa.Table(
            "_recgraph_repeated_follows",
            sa.MetaData(),
            sa.Column("source_id", sa.BigInteger),
            sa.Column("target_id", sa.BigInteger),
            sa.Column("created_at", sa.BigInteger),
            sa.Column("seen_at", sa.BigInteger),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        repeated.create(self.conn)
        merged = (
            sa.select(
                f.c.source_id, f.c.target_id, sa.func.min(f.c.created_at), sa.func.max(f.c.seen_at)
            )
            .group_by(f.c.source_id, f.c.target_id)
            .having(sa.func.count() > 1)
        )
        columns = ["source_id", "target_id", "created_at", "seen_at"]
        self.conn.execute(sa.insert(repeated).from_select(columns, merged))
        self.conn.execute(
            sa.delete(f).where(
                f.c.source_id == repeated.c.source_id, f.c.target_id == repeated.c.target_id
            )
        )
        self.conn.execute(sa.insert(f).from_select(columns, sa.select(*repeated.c)))
        repeated.drop(self.conn)

    def _pg_execute(self, statement: Any) -> None:
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    def finish(self) -> None:
        """Rebuild keys and indexes dropped for a bulk load; called before the transaction
        commits."""
        self._settle()
        if self._deferred and self.dialect == "postgresql":
            self.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        if self._deferred and self.dialect == "sqlite":
            self._sqlite_build_indexes()
        while self._deferred:
            self._deferred.pop().create(self.conn)
        while self._deferred_sql:
            self._pg_execute(self._deferred_sql.pop(0))
        if self._references_at_end:
            self._check_references()

    def _sqlite_build_indexes(self) -> None:
        """Build the indexes a SQLite first load deferred with the sorter spilling runs of
        :data:`SORT_PAGE_CACHE` to temporary files. Under ``temp_store=MEMORY`` (for staging
        tables) it never spills and sorts one linked list of every entry, cache-unfriendly
        (ix_follows_target of 10^7 follows: 21 CPU s; 2 MiB runs: 5.6). SQLite refuses the
        switch in a transaction while the connection's temporary database is open (``PRAGMA
        database_list`` lists ``temp``; writers close it at BEGIN): then as before."""
        listed = self.conn.exec_driver_sql("PRAGMA database_list").all()
        if any(row[1] == "temp" for row in listed):
            return
        self.conn.exec_driver_sql("PRAGMA temp_store=FILE")
        try:
            self.conn.exec_driver_sql(SORT_PAGE_CACHE)
            while self._deferred:
                self._deferred.pop().create(self.conn)
        finally:
            self.conn.exec_driver_sql(BULK_PAGE_CACHE)
            self.conn.exec_driver_sql(SQLITE_TEMP_STORE)

    def _check_references(self) -> None:
        """Every follow and edge event names an account, checked once before the commit of a
        writer that wrote them with SQLite's row-by-row check off (:func:`references_at_end`).

        Account keys are 1..N when as many as the largest (no account is ever deleted):
        then each key column's smallest and largest value (index ends) prove every
        reference. Otherwise SQLite's own ``foreign_key_check`` reads every row."""
        a = schema.accounts.c
        n, low, high = self.conn.execute(
            sa.select(sa.func.count(), sa.func.min(a.id), sa.func.max(a.id))
        ).one()
        contiguous = not n or (low == 1 and high == n)
        for table in (schema.follows, schema.edge_events):
            if not contiguous:
                # table names are the schema's own, never input
                bad = self.conn.exec_driver_sql(f"PRAGMA foreign_key_check({table.name})").first()
            else:
                ends = [
                    self.conn.execute(sa.select(end(table.c[column]))).scalar()
                    for column in ("source_id", "target_id")
                    for end in (sa.func.min, sa.func.max)
                ]
                bad = any(x is not None and not 1 <= x <= n for x in ends)
            if bad:
                raise StoreError(f"{table.name} names an account that does not exist; not written")

    def restore(self) -> None:
        """Give the connection back the page cache every connection starts with (after commit
        or rollback)."""
        if self._cache_raised:
            # on the driver's connection: through SQLAlchemy it would begin a transaction
            raw = self.conn.connection.dbapi_connection
            raw.execute(SQLITE_PAGE_CACHE)  # type: ignore[union-attr]
            self._cache_raised = False

    # -------------------------------------------------------------- meta
    def set_meta(self, key: str, value: str) -> None:
        upsert_rows(
            self.conn,
            self.dialect,
            schema.meta,
            ["key"],
            [{"key": key, "value": value}],
            [("value", lambda new, old: new("value"))],
        )

    def _check_directed(self, directed: bool | None) -> bool:
        """The graph's direction; the first follows written fix it, a mismatch is an error."""
        if self._directed is not None and (directed is None or directed == self._directed):
            return self._directed
        self._settle()  # held follows count as written
        stored = get_meta(self.conn, schema.META_FOLLOWS_DIRECTED)
        empty = not self.conn.execute(sa.select(schema.follows.c.source_id).limit(1)).first()
        empty = empty and not self.conn.execute(sa.select(schema.edge_events.c.ts).limit(1)).first()
        if directed is None:
            directed = stored != "false"
        elif stored is not None and (stored == "true") != directed and not empty:
            held = "a directed" if stored == "true" else "an undirected"
            given = "directed" if directed else "undirected"
            raise InputError(
                f"this store holds {held} follow graph; cannot add {given} edges to it "
                "(import into another database, or match --directed/--undirected)"
            )
        if stored != ("true" if directed else "false"):
            self.set_meta(schema.META_FOLLOWS_DIRECTED, "true" if directed else "false")
        self._directed = directed
        return directed

    # -------------------------------------------------------------- tables
    def accounts(self, rows: Frame) -> int:
        """Upsert accounts from ``external_id`` and optional ``handle``, ``created_at``.

        ``created_at`` (unix seconds; default: now) keeps the earliest value,
        so an account moved from another store keeps its age. Return rows written.
        """
        frame = checked_frame(rows, ["external_id"], "account")
        self._next_key["accounts"] = None  # rows the cache does not see
        ids = checked_ids(frame["external_id"], "external_id")
        handles = (
            frame["handle"].astype(object).where(frame["handle"].notna(), None).tolist()
            if "handle" in frame.columns
            else [None] * len(ids)
        )
        created = [self.now if c is None else c for c in optional_seconds(frame, "created_at")]
        latest = {  # the last row of an id wins
            x: (h, c) for x, h, c in zip(ids, handles, created, strict=True)
        }
        records = [
            {"external_id": x, "handle": h, "created_at": c, "updated_at": self.now}
            for x, (h, c) in latest.items()
        ]
        upsert_rows(
            self.conn,
            self.dialect,
            schema.accounts,
            ["external_id"],
            records,
            [
                (
                    "updated_at",
                    lambda new, old: sa.case(
                        (
                            sa.and_(
                                new("handle").is_not(None),
                                new("handle").is_distinct_from(old.handle),
                            ),
                            new("updated_at"),
                        ),
                        else_=old.updated_at,
                    ),
                ),
                ("handle", lambda new, old: sa.func.coalesce(new("handle"), old.handle)),
                ("created_at", lambda new, old: earliest(new("created_at"), old.created_at)),
            ],
        )
        return len(records)

    def items(self, rows: Frame) -> int:
        """Upsert items from ``external_id`` and optional ``title, author, created_at,
        features`` (a dict per row, stored as JSON); authors are accounts. Return rows written."""
        frame = checked_frame(rows, ["external_id"], "item")
        self._next_key["items"] = None  # rows the cache does not see
        ids = checked_ids(frame["external_id"], "external_id")
        n = len(ids)

        def optional(column: str) -> list:
            if column not in frame.columns:
                return [None] * n
            return frame[column].astype(object).where(frame[column].notna(), None).tolist()

        authors: list = [None] * n
        if "author" in frame.columns:
            present = frame["author"].notna().to_numpy()
            if present.any():
                keys = self._resolve(
                    schema.accounts, checked_ids(frame["author"][present], "author")
                )
                for position, key in zip(np.flatnonzero(present), keys, strict=True):
                    authors[position] = int(key)
        features = [None if f is None else features_json(f) for f in optional("features")]
        latest = {
            x: (t, a, c, f)
            for x, t, a, c, f in zip(
                ids,
                optional("title"),
                authors,
                optional_seconds(frame, "created_at"),
                features,
                strict=True,
            )
        }
        records = [
            {"external_id": x, "title": t, "author_id": a, "created_at": c, "features": f}
            for x, (t, a, c, f) in latest.items()
        ]
        upsert_rows(
            self.conn,
            self.dialect,
            schema.items,
            ["external_id"],
            records,
            [
                ("title", lambda new, old: sa.func.coalesce(new("title"), old.title)),
                ("author_id", lambda new, old: sa.func.coalesce(new("author_id"), old.author_id)),
                ("created_at", lambda new, old: earliest(new("created_at"), old.created_at)),
                ("features", lambda new, old: sa.func.coalesce(new("features"), old.features)),
            ],
        )
        return len(records)

    def follows(self, rows: Frame, directed: bool, *, checked: bool = False) -> int:
        """Upsert follow edges from ``src, dst`` and optional ``created_at, seen_at``.

        ``directed=False`` stores each friendship once (smaller key first).
        Within the chunk and against the store, ``created_at`` keeps the
        earliest time and ``seen_at`` the latest (``created_at`` when no
        ``seen_at`` is given). An edge removed earlier becomes active again
        unless it was removed after this sighting. ``checked``: the ids come from
        :mod:`recgraph.data.parsing`, which validated them. Return rows written.
        """
        frame = checked_frame(rows, ["src", "dst"], "follow")
        directed = self._check_directed(directed)
        if len(frame) >= STAGE_MIN_ROWS:
            self._bulk_start(schema.follows, heap=True)
        src, dst = self._pair_keys(frame, directed, checked)
        created = optional_seconds(frame, "created_at")
        seen = optional_seconds(frame, "seen_at") if "seen_at" in frame.columns else created
        small_keys = not len(src) or max(src.max(), dst.max()) < 2**31
        untimed = created.count(None) == len(created) and seen.count(None) == len(seen)
        if small_keys and untimed:
            # untimed edges (most static graphs): distinct pairs in key order, no grouping
            pair = distinct_sorted((src << 32) | dst)
            n = len(pair)
            if self._pending is not None:  # a first load on SQLite: see _bulk_start
                self._pending.append(pair)
                self._pending_rows += n
                if self._pending_rows > _PENDING_PAIRS:
                    self._flush_pairs()
                return n
            if self.dialect == "sqlite":
                upsert_pairs(self.conn, schema.follows, _FOLLOW_KEY, pair, _FOLLOW_RULES)
                return n
            if schema.follows.name in self._heaps:  # a first load on PostgreSQL: _bulk_start
                copy_int_columns(
                    self.conn,
                    schema.follows,
                    {"source_id": pair >> 32, "target_id": pair & 0xFFFFFFFF},
                )
                return n
            records = {
                "source_id": (pair >> 32).tolist(),
                "target_id": (pair & 0xFFFFFFFF).tolist(),
                "created_at": [None] * n,
                "seen_at": [None] * n,
                "removed_at": [None] * n,
            }
        else:
            pairs = pd.DataFrame(
                {
                    "source_id": src,
                    "target_id": dst,
                    "created_at": pd.array(created, dtype="Int64"),
                    "seen_at": pd.array(seen, dtype="Int64"),
                }
            )
            merged = pairs.groupby(["source_id", "target_id"], sort=True).agg(
                created_at=("created_at", "min"), seen_at=("seen_at", "max")
            )
            n = len(merged)
            records = {
                "source_id": merged.index.get_level_values(0).tolist(),
                "target_id": merged.index.get_level_values(1).tolist(),
                "created_at": nullable_ints(merged["created_at"]),
                "seen_at": nullable_ints(merged["seen_at"]),
                "removed_at": [None] * n,
            }
        self._flush_pairs()  # held untimed pairs go first, as they came first
        if schema.follows.name in self._heaps:  # a first load on PostgreSQL: see _bulk_start
            copy_rows(self.conn, schema.follows, records)
            return n
        upsert_rows(
            self.conn,
            self.dialect,
            schema.follows,
            list(_FOLLOW_KEY),
            records,
            _FOLLOW_RULES,
            in_key_order=True,  # sorted distinct pairs / a sorted groupby: in key order
        )
        return n

    def edge_events(
        self, rows: Frame, directed: bool | None = None, *, checked: bool = False
    ) -> int:
        """Store timestamped edge events from ``src, dst, ts``; repeats are counted, not dropped.

        ``directed`` defaults to the store's follow graph direction. Within
        one writer, chunks add up; a later import of the same events replaces
        their counts, so re-imports stay idempotent. Return events written.
        """
        frame = checked_frame(rows, ["src", "dst", "ts"], "edge event")
        directed = self._check_directed(directed)
        src, dst = self._pair_keys(frame, directed, checked)
        ts = optional_seconds(frame, "ts")
        if any(t is None for t in ts):
            raise InputError("an edge event needs a timestamp", field="ts")
        events = pd.DataFrame({"source_id": src, "target_id": dst, "ts": np.asarray(ts, np.int64)})
        grouped = events.groupby(["source_id", "target_id", "ts"], sort=True).size()
        records = {
            "source_id": grouped.index.get_level_values(0).tolist(),
            "target_id": grouped.index.get_level_values(1).tolist(),
            "ts": grouped.index.get_level_values(2).tolist(),
            "count": grouped.to_numpy().tolist(),
            "batch": [self.batch] * len(grouped),
        }
        upsert_rows(
            self.conn,
            self.dialect,
            schema.edge_events,
            ["source_id", "target_id", "ts"],
            records,
            [
                (
                    "count",
                    lambda new, old: sa.case(
                        (old.batch == new("batch"), old["count"] + new("count")),
                        else_=new("count"),
                    ),
                ),
                ("batch", lambda new, old: new("batch")),
            ],
        )
        return len(events)

    def interactions(self, rows: Frame) -> int:
        """Upsert interactions from ``user, item, kind`` and optional ``value,
        value_kind, timestamp``.

        ``kind`` is like, dislike, view or rating; ``value_kind`` what the value
        means (none, rating, count, weight; default: rating for ratings, none
        otherwise). A missing timestamp is stored as 0 and a missing value as
        NULL (read as 1). The natural key ``(user, item, kind, timestamp)``
        makes re-imports idempotent; a new non-NULL value replaces the stored
        one together with its value kind. Return rows written.
        """
        frame = checked_frame(rows, ["user", "item", "kind"], "interaction")
        if len(frame) >= STAGE_MIN_ROWS:
            self._bulk_start(schema.interactions)
        users = self._resolve(schema.accounts, checked_ids(frame["user"], "user"))
        items = self._resolve(schema.items, checked_ids(frame["item"], "item"))
        kind_codes, kind_values = pd.factorize(frame["kind"].astype(object), use_na_sentinel=False)
        kinds = np.asarray([kind_or_none(k) for k in kind_values], dtype=object)[kind_codes]
        if pd.isna(kinds).any() if len(kinds) else False:
            bad = frame["kind"].iloc[int(np.flatnonzero(pd.isna(kinds))[0])]
            raise InputError(
                f"unknown kind {bad!r}; expected one of {', '.join(schema.INTERACTION_KIND_LABELS)}",
                field="kind",
            )
        stamps = [0 if t is None else t for t in optional_seconds(frame, "timestamp")]
        if "value" in frame.columns:
            values = pd.to_numeric(frame["value"], errors="coerce")
            invalid = values.isna() & frame["value"].notna()
            if invalid.any():
                bad = frame["value"][invalid].iloc[0]
                raise InputError(f"value {bad!r} is not a number", field="value")
            if np.isinf(values.astype(float)).any():
                raise InputError("value is not a finite number", field="value")
            value_list = [None if math.isnan(v) else float(v) for v in values.astype(float)]
        else:
            value_list = [None] * len(frame)
        rows_frame = pd.DataFrame(
            {
                "user_id": users,
                "item_id": items,
                "kind": kinds,
                "timestamp": np.asarray(stamps, dtype=np.int64),
                "value": pd.Series(value_list, dtype=object),
                "value_kind": value_kinds(frame, kinds),
            }
        )
        key = ["user_id", "item_id", "kind", "timestamp"]
        rows_frame = rows_frame.drop_duplicates(key, keep="last").sort_values(key)
        records = {name: rows_frame[name].tolist() for name in rows_frame.columns}
        upsert_rows(
            self.conn,
            self.dialect,
            schema.interactions,
            key,
            records,
            [
                # Before value changes (MariaDB assigns in order): the meaning moves with a value.
                (
                    "value_kind",
                    lambda new, old: sa.case(
                        (new("value").is_not(None), new("value_kind")), else_=old.value_kind
                    ),
                ),
                ("value", lambda new, old: sa.func.coalesce(new("value"), old.value)),
            ],
        )
        return len(rows_frame)

    def replace_follows(
        self, account: str, targets: Iterable[str] | pd.DataFrame, seen_at: int
    ) -> dict[str, int]:
        """Make ``targets`` the complete, current follow set of ``account``.

        Edges of the account that are not in ``targets`` get ``removed_at =
        seen_at`` (kept, never deleted, and excluded from reads); the targets
        are upserted with ``seen_at``. ``targets`` may be external ids or a
        DataFrame with ``dst`` and optional ``created_at``. On an undirected
        graph the account's friendships are replaced, whichever end it is.

        Returns
        -------
        dict
            ``added``, ``kept`` and ``removed`` edge counts.
        """
        if isinstance(targets, pd.DataFrame):
            frame = checked_frame(targets, ["dst"], "follow").copy()
        else:
            frame = pd.DataFrame({"dst": pd.Series(list(targets), dtype=object)})
        frame["src"] = account
        frame["seen_at"] = int(seen_at)
        directed = self._check_directed(None)
        self._settle()
        me = int(self.account_keys([account])[0])
        f = schema.follows.c
        if directed:
            current_query = sa.select(f.source_id, f.target_id).where(f.source_id == me)
        else:
            current_query = sa.select(f.source_id, f.target_id).where(
                sa.or_(f.source_id == me, f.target_id == me)
            )
        current = {
            (int(s), int(t))
            for s, t in self.conn.execute(current_query.where(f.removed_at.is_(None)))
        }
        wanted: set[tuple[int, int]] = set()
        if len(frame):
            self.follows(frame, directed=directed)
            src, dst = self._pair_keys(frame, directed)
            wanted = set(zip(src.tolist(), dst.tolist(), strict=True))
        gone = sorted(current - wanted)
        if gone:
            statement = (
                sa.update(schema.follows)
                .where(
                    f.source_id == sa.bindparam("s"),
                    f.target_id == sa.bindparam("t"),
                    f.removed_at.is_(None),
                )
                .values(removed_at=int(seen_at))
            )
            for batch in batches([{"s": s, "t": t} for s, t in gone], WRITE_BATCH):
                self.conn.execute(statement, list(batch))
        return {"added": len(wanted - current), "kept": len(wanted & current), "removed": len(gone)}

    def counts(self, tables: Iterable[str] = COUNTED) -> dict[str, int]:
        """:meth:`Store.counts` as seen inside this transaction, for ``tables`` only
        (counting is a scan: an import counts just what it touches)."""
        self._settle()
        return count_rows(self.conn, tables)

    # -------------------------------------------------------------- helpers
    def _pair_keys(
        self, frame: pd.DataFrame, directed: bool, checked: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        # both ends in one lookup (new keys still go to sources first, then targets, in order)
        src_ids = checked_ids(frame["src"], "src", checked)
        dst_ids = checked_ids(frame["dst"], "dst", checked)
        if isinstance(src_ids, np.ndarray) and isinstance(dst_ids, np.ndarray):
            both = np.concatenate([src_ids, dst_ids])
        else:  # Arrow-backed text: joined without a Python object per id
            both = pd.concat([pd.Series(src_ids), pd.Series(dst_ids)], ignore_index=True).array
        keys = self._resolve(schema.accounts, both)
        src, dst = keys[: len(src_ids)], keys[len(src_ids) :]
        if not directed:
            src, dst = np.minimum(src, dst), np.maximum(src, dst)
        return src, dst


_FOLLOW_KEY = ("source_id", "target_id")
#: Follows a SQLite first load holds before writing them (8 bytes each, twice while sorted):
#: 1.2 GB at the limit. Past it the held pairs are written and later ones merge into the
#: table, which then touches every page per write (at 2e7, 10^8 follows took five such passes).
_PENDING_PAIRS = 150_000_000
#: How a follow written again merges with the stored one (:meth:`Writer.follows`).
_FOLLOW_RULES: list[UpdateRule] = [
    # Before seen_at changes: MariaDB evaluates assignments in order.
    (
        "removed_at",
        lambda new, old: sa.case(
            (
                sa.and_(
                    old.removed_at.is_not(None),
                    new("seen_at").is_not(None),
                    new("seen_at") <= old.removed_at,
                ),
                old.removed_at,
            ),
            else_=sa.null(),
        ),
    ),
    ("created_at", lambda new, old: earliest(new("created_at"), old.created_at)),
    ("seen_at", lambda new, old: latest(new("seen_at"), old.seen_at)),
]


__all__ = ["Frame", "Writer"]
