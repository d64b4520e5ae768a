"""The SQL layer under the store: engines, bulk upserts, counts and column reads.

Everything here takes a SQLAlchemy connection and works the same on SQLite,
MariaDB and PostgreSQL; :mod:`recgraph.data.store` (reads) and
:mod:`recgraph.data.writer` (writes) are built on it, and so are the parts
that keep tables of their own (the collectors' state).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from recgraph.config import busy_timeout as config_busy_timeout
from recgraph.data import schema
from recgraph.errors import RecgraphError

#: Rows per executemany call.
WRITE_BATCH = 10_000
#: From this many rows on, PostgreSQL upserts go through COPY and a staging table.
_COPY_MIN_ROWS = 500
#: Rows per partition when streaming reads.
READ_BATCH = 50_000

#: Execution option naming the statement that opens a SQLite transaction.
BEGIN_OPTION = "recgraph_sqlite_begin"


class StoreError(RecgraphError):
    """The database cannot be used: unreachable, wrong schema version, conflicting meta."""


# ---------------------------------------------------------------------- engine
class StoreBusyError(StoreError):
    """Another writer held the database's lock longer than the busy timeout."""


def _sqlite_engine(url: sa.URL, busy_seconds: float) -> sa.Engine:
    database = url.database
    memory = not database or database == ":memory:" or database.startswith("file::memory:")
    if not memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see "begin" below),
        # so that a writer is one real transaction from its first statement.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        # 64 MiB of page cache (default 2 MiB): bulk upserts touch indexes all over.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Writers ask for BEGIN IMMEDIATE: they take the write lock up front and wait
        # (busy_timeout) instead of failing when another writer commits in between.
        connection.exec_driver_sql(connection.get_execution_options().get(BEGIN_OPTION, "BEGIN"))

    return engine


def create_engine(url: str, busy_timeout: float | None = None) -> sa.Engine:
    """An engine for ``url`` with the settings the store relies on.

    SQLite gets WAL, foreign keys, ``synchronous=NORMAL`` and a busy timeout
    (``busy_timeout`` seconds, default :func:`recgraph.config.busy_timeout`)
    on every connection; its parent folder is created when missing.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, config_busy_timeout(busy_timeout))
    # Positional parameters, so bulk writes can hand the driver plain tuples.
    return sa.create_engine(parsed, pool_pre_ping=True, paramstyle="format")


def batches(sequence: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(sequence), size):
        yield sequence[start : start + size]


def earliest(new: sa.ColumnElement, old: sa.ColumnElement) -> sa.ColumnElement:
    """The earlier of two nullable times; NULL only when both are."""
    return sa.case((sa.or_(old.is_(None), sa.and_(new.is_not(None), new < old)), new), else_=old)


def latest(new: sa.ColumnElement, old: sa.ColumnElement) -> sa.ColumnElement:
    return sa.case((sa.or_(old.is_(None), sa.and_(new.is_not(None), new > old)), new), else_=old)


UpdateRule = tuple[str, Callable[[Callable[[str], sa.ColumnElement], Any], sa.ColumnElement]]


def read_columns(conn: sa.Connection, query: sa.Select, dtypes: list) -> list[np.ndarray]:
    """Run ``query`` in partitions; one numpy array per selected column."""
    parts: list[list[np.ndarray]] = [[] for _ in dtypes]
    result = conn.execution_options(yield_per=READ_BATCH).execute(query)
    for rows in result.partitions():
        columns = list(zip(*rows, strict=True))
        for store, column, dtype in zip(parts, columns, dtypes, strict=True):
            store.append(np.asarray(column, dtype=dtype))
    return [
        np.concatenate(p) if p else np.zeros(0, dtype=d) for p, d in zip(parts, dtypes, strict=True)
    ]


def get_meta(conn: sa.Connection, key: str) -> str | None:
    return conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()


#: What :func:`count_rows` can count; ``interactions_<kind>`` come with ``interactions``.
COUNTED = ("accounts", "items", "follows", "follows_removed", "edge_events", "interactions")


def count_rows(conn: sa.Connection, names: Iterable[str] = COUNTED) -> dict[str, int]:
    def scalar(query) -> int:
        return int(conn.execute(query).scalar() or 0)

    f, e, i = schema.follows.c, schema.edge_events.c, schema.interactions.c
    queries = {
        "accounts": sa.select(sa.func.count()).select_from(schema.accounts),
        "items": sa.select(sa.func.count()).select_from(schema.items),
        "follows": sa.select(sa.func.count()).where(f.removed_at.is_(None)),
        "follows_removed": sa.select(sa.func.count()).where(f.removed_at.is_not(None)),
        "edge_events": sa.select(sa.func.sum(e["count"])),
    }
    counts: dict[str, int] = {}
    for name in names:
        if name == "interactions":
            by_kind = dict(conn.execute(sa.select(i.kind, sa.func.count()).group_by(i.kind)).all())
            counts["interactions"] = int(sum(by_kind.values()))
            for label in schema.INTERACTION_KIND_LABELS:
                counts[f"interactions_{label}"] = int(by_kind.get(label, 0))
        else:
            counts[name] = scalar(queries[name])
    return counts


def _with_conflict_rule(
    stmt: Any, dialect: str, table: sa.Table, keys: list[str], updates: list[UpdateRule]
) -> Any:
    """Add the dialect's "on conflict" clause to an INSERT (VALUES or SELECT)."""
    if dialect in ("mysql", "mariadb"):
        if updates:
            assignments = [(c, rule(lambda n: stmt.inserted[n], table.c)) for c, rule in updates]
        else:
            assignments = [(keys[0], table.c[keys[0]])]
        return stmt.on_duplicate_key_update(assignments)
    if updates:
        return stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c: rule(lambda n: stmt.excluded[n], table.c) for c, rule in updates},
        )
    return stmt.on_conflict_do_nothing(index_elements=keys)


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    if dialect in ("mysql", "mariadb"):
        return mysql_dialect.insert(table)
    return (pg_dialect if dialect == "postgresql" else sqlite_dialect).insert(table)


Columns = dict[str, list]


def upsert_rows(
    conn: sa.Connection,
    dialect: str,
    table: sa.Table,
    keys: list[str],
    rows: Columns | list[dict[str, Any]],
    updates: list[UpdateRule],
) -> None:
    """Insert ``rows``; on a key conflict apply ``updates`` (or leave the row as is).

    ``rows`` are columns (name -> list of plain Python values, all of one
    length) or a list of dicts with the same keys; no key may repeat among
    them. Each update rule is ``(column, rule(new, old))`` where ``new(name)``
    is the proposed value and ``old`` the table's columns. On MariaDB
    assignments run in order and later ones see earlier results, so rules that
    compare with an old value must come before the rule that overwrites it.

    The statement is compiled once and the rows go to the driver as tuples
    (``executemany``; pymysql turns it into multi-row INSERTs); PostgreSQL
    batches go through ``COPY`` into a staging table and one
    ``INSERT .. SELECT .. ON CONFLICT``.
    """
    if isinstance(rows, list):
        if not rows:
            return
        rows = {name: [row[name] for row in rows] for name in rows[0]}
    names = list(rows)
    n = len(rows[names[0]]) if names else 0
    if not n:
        return
    if dialect == "postgresql" and n >= _COPY_MIN_ROWS:
        _copy_upsert(conn, table, keys, rows, updates)
        return
    stmt = _with_conflict_rule(_dialect_insert(dialect, table), dialect, table, keys, updates)
    compiled = stmt.compile(dialect=conn.dialect, column_keys=names)
    if compiled.positional and set(compiled.positiontup or ()) <= set(names):
        sql = str(compiled)
        tuples = list(zip(*(rows[name] for name in compiled.positiontup), strict=True))
        for batch in batches(tuples, WRITE_BATCH):
            conn.exec_driver_sql(sql, list(batch))
        return
    records = [dict(zip(names, values, strict=True)) for values in zip(*rows.values(), strict=True)]
    for batch in batches(records, WRITE_BATCH):
        conn.execute(stmt, list(batch))


def _copy_upsert(
    conn: sa.Connection,
    table: sa.Table,
    keys: list[str],
    rows: Columns,
    updates: list[UpdateRule],
) -> None:
    """PostgreSQL: COPY rows into a transaction-local staging table, then upsert from it."""
    names = list(rows)
    digest = hashlib.sha1(",".join(names).encode()).hexdigest()[:8]
    stage = sa.Table(
        f"_recgraph_stage_{table.name}_{digest}",
        sa.MetaData(),
        *[sa.Column(c, table.c[c].type) for c in names],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    stage.create(conn, checkfirst=True)
    preparer = conn.dialect.identifier_preparer
    quoted_stage = preparer.quote(stage.name)
    quoted_names = ", ".join(preparer.quote(c) for c in names)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY {quoted_stage} ({quoted_names}) FROM STDIN") as copy:
            for row in zip(*rows.values(), strict=True):
                copy.write_row(row)
    finally:
        cursor.close()
    stmt = pg_dialect.insert(table).from_select(names, sa.select(*stage.c))
    conn.execute(_with_conflict_rule(stmt, "postgresql", table, keys, updates))
    conn.exec_driver_sql(f"TRUNCATE {quoted_stage}")


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether a driver error means "another writer holds the lock" (SQLite busy)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "database is locked" in text or "database is busy" in text


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = [
    "BEGIN_OPTION",
    "COUNTED",
    "Columns",
    "READ_BATCH",
    "WRITE_BATCH",
    "StoreBusyError",
    "StoreError",
    "UpdateRule",
    "batches",
    "count_rows",
    "create_engine",
    "earliest",
    "first_line",
    "get_meta",
    "is_lock_timeout",
    "latest",
    "read_columns",
    "upsert_rows",
]
