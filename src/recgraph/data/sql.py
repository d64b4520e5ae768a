"""The SQL layer under the store: engines, bulk upserts, counts and column reads.

Everything here takes a SQLAlchemy connection and works the same on SQLite,
MariaDB and PostgreSQL; :mod:`recgraph.data.store` (reads) and
:mod:`recgraph.data.writer` (writes) are built on it, and so are the parts
that keep tables of their own (the collectors' state).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from recgraph.data import schema
from recgraph.errors import RecgraphError
from recgraph.settings import busy_timeout as config_busy_timeout

#: Rows per executemany call.
WRITE_BATCH = 10_000
#: From this many rows on, upserts go through a staging table (COPY on PostgreSQL).
STAGE_MIN_ROWS = 2_000
#: Rows per partition when streaming reads.
READ_BATCH = 50_000

#: Execution option naming the statement that opens a SQLite transaction.
BEGIN_OPTION = "recgraph_sqlite_begin"


class StoreError(RecgraphError):
    """The database cannot be used: unreachable, wrong schema version, conflicting meta."""


# ---------------------------------------------------------------------- engine
class StoreBusyError(StoreError):
    """Another writer held the database's lock longer than the busy timeout."""


#: Every SQLite connection's page cache: 64 MiB (default 2 MiB), as bulk upserts touch
#: indexes all over. Fixed SQL text: SQLite cannot bind a PRAGMA's value.
SQLITE_PAGE_CACHE = "PRAGMA cache_size=-65536"


#: Every SQLite connection's temporary tables (the staging tables of bulk writes) live in
#: memory, not in a temporary file.
SQLITE_TEMP_STORE = "PRAGMA temp_store=MEMORY"


def is_memory(url: str | sa.URL) -> bool:
    """Whether a SQLite ``url`` names an in-memory database, not a file: ``sqlite://``,
    ``sqlite:///:memory:``, ``file::memory:`` URIs and ``mode=memory`` (in the URL's query, where
    SQLAlchemy puts it, or in a URI filename), shared-cache ones included."""
    url = sa.make_url(url)
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return True
    mode = url.query.get("mode")
    modes = mode if isinstance(mode, tuple) else (mode,)
    return "memory" in modes or "mode=memory" in database


def memory_per_thread(url: str | sa.URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database without a shared cache: the engine
    keeps a connection, so a database, per thread, and what one thread writes no other reads.
    A shared-cache one (``cache=shared``) is one database across threads."""
    url = sa.make_url(url)
    if url.get_backend_name() != "sqlite" or not is_memory(url):
        return False
    return url.query.get("cache") != "shared" and "cache=shared" not in (url.database or "")


def _sqlite_engine(url: sa.URL, busy_seconds: float) -> sa.Engine:
    database = url.database
    memory = is_memory(url)
    if not memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # pysqlite's own timeout is SQLite's busy timeout: no SQL text needed for it. An in-memory
    # database keeps a connection per thread (SingletonThreadPool): what SQLAlchemy picks for
    # it today, named here since its choice for ``mode=memory`` URLs is deprecated. A private
    # one (``sqlite://``) is then a database per thread; a shared-cache one is one database.
    options = {"poolclass": sa.pool.SingletonThreadPool} if memory else {}
    engine = sa.create_engine(url, connect_args={"timeout": busy_seconds}, **options)

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
        cursor.execute(SQLITE_PAGE_CACHE)
        # Staging tables of bulk writes live in memory, not in a temporary file.
        cursor.execute(SQLITE_TEMP_STORE)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Writers ask for BEGIN IMMEDIATE: they take the write lock up front and wait
        # (busy_timeout) instead of failing when another writer commits in between.
        # Foreign keys row by row, unless a writer checks them at its end (SQLite reads this
        # only outside a transaction; every transaction sets it, so none inherits an OFF).
        checked = "OFF" if references_checked_at_end() else "ON"
        connection.exec_driver_sql(f"PRAGMA foreign_keys={checked}")
        begin = connection.get_execution_options().get(BEGIN_OPTION, "BEGIN")
        if begin != "BEGIN":
            # A writer: changing temp_store closes the connection's temporary database (its
            # tables are staging tables, emptied before each use and made again when
            # missing), which SQLite opens on reading sqlite_temp_master (a has_table check)
            # and which it requires closed for a transaction to change temp_store: a bulk
            # load's index build does (Writer._sqlite_build_indexes). Setting the value it
            # already has would do nothing: hence the detour.
            connection.exec_driver_sql("PRAGMA temp_store=DEFAULT")
            connection.exec_driver_sql(SQLITE_TEMP_STORE)
        connection.exec_driver_sql(begin)

    return engine


#: Set around a SQLite writer whose every key comes from its own lookups (an edge import):
#: the foreign keys are not checked row by row (two index probes a follow) but once, at the
#: end, by :meth:`recgraph.data.writer.Writer.finish`, before the commit.
_REFERENCES_AT_END: ContextVar[bool] = ContextVar("recgraph_references_at_end", default=False)


@contextmanager
def references_at_end() -> Iterator[None]:
    """Writers begun inside this block check their foreign keys once, before they commit
    (SQLite; see :data:`_REFERENCES_AT_END`); elsewhere nothing changes."""
    token = _REFERENCES_AT_END.set(True)
    try:
        yield
    finally:
        _REFERENCES_AT_END.reset(token)


def references_checked_at_end() -> bool:
    """Whether a writer begun now leaves its foreign keys to :meth:`Writer.finish`."""
    return _REFERENCES_AT_END.get()


def create_engine(url: str, busy_timeout: float | None = None) -> sa.Engine:
    """An engine for ``url`` with the settings the store relies on.

    SQLite gets WAL, foreign keys, ``synchronous=NORMAL`` and a busy timeout
    (``busy_timeout`` seconds, default :func:`recgraph.settings.busy_timeout`)
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
    *,
    in_key_order: bool = False,
) -> None:
    """Insert ``rows``; on a key conflict apply ``updates`` (or leave the row as is).

    ``rows`` are columns (name -> list of plain Python values, all of one
    length) or a list of dicts with the same keys; no key may repeat among
    them. Each update rule is ``(column, rule(new, old))`` where ``new(name)``
    is the proposed value and ``old`` the table's columns. On MariaDB
    assignments run in order and later ones see earlier results, so rules that
    compare with an old value must come before the rule that overwrites it.

    Small batches go to the driver as one compiled statement and tuples
    (``executemany``). From :data:`STAGE_MIN_ROWS` rows on, the rows are
    loaded into a temporary staging table (``COPY`` on PostgreSQL, a plain
    ``executemany`` on SQLite and MariaDB, with no index or constraint to
    maintain) and merged with one ``INSERT .. SELECT .. ORDER BY key ..
    ON CONFLICT``, so the database walks the target's index in key order once.
    Both paths run inside the caller's transaction: an error rolls everything back.
    On SQLite, rows the caller already sorted by ``keys`` (``in_key_order``)
    skip the staging table: the prepared upsert walks the index in order as
    the merge would, without writing every row twice.
    """
    if isinstance(rows, list):
        if not rows:
            return
        rows = {name: [row[name] for row in rows] for name in rows[0]}
    names = list(rows)
    n = len(rows[names[0]]) if names else 0
    if not n:
        return
    # A column that is NULL in every row and NULL by default is left out of the INSERT:
    # it is NULL all the same (``excluded``/``VALUES()`` read the default), without
    # binding, copying or staging a NULL per row (untimed follows: three of five columns).
    names = [
        name for name in names if name in keys or not _null_column(table.c[name], rows[name], n)
    ]
    if n >= STAGE_MIN_ROWS and not (in_key_order and dialect == "sqlite"):
        stage = stage_rows(
            conn,
            dialect,
            table.name,
            {c: rows[c] for c in names},
            {c: table.c[c].type for c in names},
        )
        select = sa.select(*stage.c).where(sa.true()).order_by(*(stage.c[k] for k in keys))
        stmt = _dialect_insert(dialect, table).from_select(names, select)
        conn.execute(_with_conflict_rule(stmt, dialect, table, keys, updates))
        return
    stmt = _with_conflict_rule(_dialect_insert(dialect, table), dialect, table, keys, updates)
    compiled = stmt.compile(dialect=conn.dialect, column_keys=names)
    if compiled.positional and set(compiled.positiontup or ()) <= set(names):
        sql = str(compiled)
        tuples = list(zip(*(rows[name] for name in compiled.positiontup), strict=True))
        for batch in batches(tuples, WRITE_BATCH):
            conn.exec_driver_sql(sql, list(batch))
        return
    records = [
        dict(zip(names, values, strict=True))
        for values in zip(*(rows[name] for name in names), strict=True)
    ]
    for batch in batches(records, WRITE_BATCH):
        conn.execute(stmt, list(batch))


def upsert_pairs(
    conn: sa.Connection,
    table: sa.Table,
    keys: tuple[str, str],
    pairs: np.ndarray,
    updates: list[UpdateRule],
) -> None:
    """:func:`upsert_rows` for rows that are only a two-column integer key, on SQLite:
    ``pairs`` holds ``first << 32 | second`` (both below 2**31), distinct and in key
    order, and goes to SQLite as one JSON array that ``json_each`` unpacks, instead of
    binding two parameters a row (a third less time per row); the other columns are NULL."""
    if not len(pairs):
        return
    each = sa.func.json_each(sa.bindparam("pairs", type_=sa.Text)).table_valued("value")
    rows = sa.select(each.c.value.op(">>")(32), each.c.value.op("&")(0xFFFFFFFF)).where(
        sa.true()
    )  # WHERE: SQLite's upsert after a SELECT needs one
    stmt = sqlite_dialect.insert(table).from_select(list(keys), rows)
    stmt = _with_conflict_rule(stmt, "sqlite", table, list(keys), updates)
    for batch in batches(pairs, 20 * WRITE_BATCH):
        conn.execute(stmt, {"pairs": json_int_array(batch)})


def json_int_array(values: np.ndarray) -> str:
    """``values`` (integers) as the text of a JSON array, formatted by Arrow: twice as fast
    as ``",".join(map(str, ...))`` and no Python int or str per value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return "[" + _joined(text, ",") + "]"


def _joined(text, separator: str) -> str:
    """An Arrow string array joined by ``separator`` into one Python str, in C (as one list)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    one_list = pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text)
    return pc.binary_join(one_list, separator)[0].as_py()


def _null_column(column: sa.Column, values: Sequence, n: int) -> bool:
    """Whether ``values`` (``n`` of them) are all None and ``column``'s default is NULL too."""
    if column.default is not None or column.server_default is not None:
        return False
    return isinstance(values, list) and values.count(None) == n


def stage_rows(
    conn: sa.Connection,
    dialect: str,
    name: str,
    rows: Columns,
    types: dict[str, sa.types.TypeEngine],
) -> sa.Table:
    """A temporary table holding ``rows`` (and nothing else), for set-based statements.

    One table per ``name`` and column layout, created on first use: on
    PostgreSQL it is dropped at commit, on SQLite and MariaDB it lives as long
    as the pooled connection and is emptied before each use. Rows go in by
    ``COPY`` on PostgreSQL and by one prepared ``INSERT`` on the others.
    """
    names = list(rows)
    layout = ",".join(f"{c}:{types[c]!r}" for c in names)
    digest = hashlib.sha1(layout.encode()).hexdigest()[:8]
    stage = sa.Table(
        f"_recgraph_stage_{name}_{digest}",
        sa.MetaData(),
        *[sa.Column(c, types[c]) for c in names],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    stage.create(conn, checkfirst=True)
    conn.execute(sa.delete(stage))
    if dialect == "postgresql":
        copy_rows(conn, stage, rows)
        return stage
    compiled = sa.insert(stage).compile(dialect=conn.dialect, column_keys=names)
    order = list(compiled.positiontup or names)
    tuples = list(zip(*(rows[c] for c in order), strict=True))
    for batch in batches(tuples, 5 * WRITE_BATCH):
        conn.exec_driver_sql(str(compiled), list(batch))
    return stage


def rowid_tables(conn: sa.Connection) -> list[sa.Table]:
    """The tables of :data:`~recgraph.data.schema.SQLITE_REBUILT` that this SQLite store
    still holds as rowid tables (made before they became ``WITHOUT ROWID``)."""
    found = []
    for table in schema.SQLITE_REBUILT:
        sql = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": table.name},
        ).scalar()
        if sql is not None and "WITHOUT ROWID" not in sql.upper():
            found.append(table)
    return found


def rebuild_rowid_tables(conn: sa.Connection) -> list[str]:
    """Rebuild the rowid tables :func:`rowid_tables` finds as ``WITHOUT ROWID`` (SQLite only),
    in the caller's transaction; return their names.

    Each table is renamed aside, created anew (with its indexes) from the schema, filled
    from the old one in key order and the old one dropped: the same rows and keys, one
    B-tree fewer. Nothing references these tables, so no foreign key has to move.
    The names are the schema's own, never input.
    """
    rebuilt = []
    quote = conn.dialect.identifier_preparer.quote
    for table in rowid_tables(conn):
        for index in table.indexes:  # index names are per database: the new table reuses them
            index.drop(conn, checkfirst=True)
        aside = f"_recgraph_rowid_{table.name}"
        conn.exec_driver_sql(f"ALTER TABLE {quote(table.name)} RENAME TO {quote(aside)}")
        old = sa.Table(aside, sa.MetaData(), autoload_with=conn)
        table.create(conn)
        names = [c.name for c in table.columns]
        rows = sa.select(*(old.c[n] for n in names)).order_by(
            *(old.c[c.name] for c in table.primary_key)
        )
        conn.execute(sa.insert(table).from_select(names, rows))
        old.drop(conn)
        rebuilt.append(table.name)
    return rebuilt


def copy_rows(conn: sa.Connection, table: sa.Table, rows: Columns) -> None:
    """Append ``rows`` (columns of plain Python values) to ``table`` with one ``COPY``
    (PostgreSQL only): no conflict handling, so the caller knows no key repeats or has
    dropped the keys. Columns NULL in every row that default to NULL are left out."""
    from psycopg import sql as pg_sql

    n = len(next(iter(rows.values()))) if rows else 0
    if not n:
        return
    names = [name for name in rows if not _null_column(table.c[name], rows[name], n)]
    names = names or list(rows)
    statement = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        pg_sql.Identifier(table.name), pg_sql.SQL(", ").join(map(pg_sql.Identifier, names))
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            for row in zip(*(rows[name] for name in names), strict=True):
                copy.write_row(row)
    finally:
        cursor.close()


#: Rows per block of :func:`copy_int_columns` (about 15 bytes of text each).
COPY_BLOCK = 1_000_000


def copy_int_columns(conn: sa.Connection, table: sa.Table, columns: dict[str, np.ndarray]) -> None:
    """:func:`copy_rows` for integer columns given as numpy arrays (PostgreSQL only): the
    ``COPY`` text is formatted by Arrow a block at a time, not row by row in Python (a
    third of an edge import's client time on PostgreSQL went to ``write_row``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from psycopg import sql as pg_sql

    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    if not n:
        return
    statement = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        pg_sql.Identifier(table.name), pg_sql.SQL(", ").join(map(pg_sql.Identifier, names))
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            for start in range(0, n, COPY_BLOCK):
                text = [
                    pc.cast(
                        pa.array(np.asarray(columns[c][start : start + COPY_BLOCK], np.int64)),
                        pa.string(),
                    )
                    for c in names
                ]
                lines = pc.binary_join_element_wise(*text, "\t") if len(text) > 1 else text[0]
                copy.write(_joined(lines, "\n").encode() + b"\n")
    finally:
        cursor.close()


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
    "STAGE_MIN_ROWS",
    "WRITE_BATCH",
    "StoreBusyError",
    "StoreError",
    "UpdateRule",
    "batches",
    "copy_int_columns",
    "copy_rows",
    "count_rows",
    "create_engine",
    "earliest",
    "first_line",
    "get_meta",
    "is_lock_timeout",
    "is_memory",
    "memory_per_thread",
    "json_int_array",
    "latest",
    "read_columns",
    "rebuild_rowid_tables",
    "references_at_end",
    "references_checked_at_end",
    "rowid_tables",
    "stage_rows",
    "upsert_pairs",
    "upsert_rows",
]
