"""The SQL store: one implementation on SQLAlchemy Core for SQLite, MariaDB and PostgreSQL.

A database URL picks the backend. Writes go through :meth:`Store.writer`, one
transaction whose bulk methods take DataFrame chunks keyed by external ids;
they are idempotent upserts (``INSERT .. ON CONFLICT`` on SQLite and
PostgreSQL, ``INSERT .. ON DUPLICATE KEY UPDATE`` on MariaDB), so importing the
same file twice leaves the same rows, and an error anywhere rolls the whole
transaction back. Reads hand out :class:`~recgraph.data.interactions.Interactions`,
never raw rows.

Merge rules when a row already exists: ``created_at`` keeps the earliest
known time and ``seen_at`` the latest (a NULL never wins over a time);
titles, handles, authors, features and values are replaced only by non-NULL
new values; an account's ``updated_at`` moves only when its handle changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from recgraph.config import database_url
from recgraph.data import schema
from recgraph.data.interactions import IdMap, Interactions, Kind
from recgraph.errors import InputError, RecgraphError

#: What :meth:`Store.iter_frames` and the export command can write.
TableName = Literal["follows", "events", "interactions", "accounts", "items"]
TABLE_NAMES: tuple[str, ...] = ("follows", "events", "interactions", "accounts", "items")

#: Ids per ``IN (...)`` lookup: well under every backend's bound-parameter limit.
_LOOKUP_BATCH = 2_000
#: Rows per executemany call.
_WRITE_BATCH = 10_000
#: From this many rows on, PostgreSQL upserts go through COPY and a staging table.
_COPY_MIN_ROWS = 500
#: Rows per partition when streaming reads.
_READ_BATCH = 50_000
#: External id -> key entries kept per writer before the cache is dropped (bounded memory).
_CACHE_LIMIT = 500_000

Frame = pd.DataFrame | Iterable[Mapping[str, Any]]

#: Execution option naming the statement that opens a SQLite transaction.
_BEGIN_OPTION = "recgraph_sqlite_begin"


class StoreError(RecgraphError):
    """The database cannot be used: unreachable, wrong schema version, conflicting meta."""


# ---------------------------------------------------------------------- engine
def _sqlite_engine(url: sa.URL) -> sa.Engine:
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
        cursor.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache (default 2 MiB): bulk upserts touch indexes all over.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Writers ask for BEGIN IMMEDIATE: they take the write lock up front and wait
        # (busy_timeout) instead of failing when another writer commits in between.
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))

    return engine


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url`` with the settings the store relies on.

    SQLite gets WAL, foreign keys and ``synchronous=NORMAL`` on every
    connection; its parent folder is created when missing.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    # Positional parameters, so bulk writes can hand the driver plain tuples.
    return sa.create_engine(parsed, pool_pre_ping=True, paramstyle="format")


# ---------------------------------------------------------------------- helpers
def _frame(rows: Frame, required: Sequence[str], what: str) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for column in required:
        if column not in frame.columns:
            raise InputError(
                f"{what} rows need a column {column!r}; got {', '.join(map(str, frame.columns))}",
                field=column,
            )
    return frame


def _external_ids(values: pd.Series, name: str) -> np.ndarray:
    """Validated external ids as an object array of str."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"missing {name} id (row {int(np.flatnonzero(missing)[0]) + 1} of the chunk)",
            field=name,
        )
    ids = values.astype(str).to_numpy(object)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    if len(ids) and lengths.min() == 0:
        raise InputError(f"empty {name} id", field=name)
    if len(ids) and lengths.max() > schema.EXTERNAL_ID_LENGTH:
        bad = ids[int(np.argmax(lengths))]
        raise InputError(
            f"{name} id longer than {schema.EXTERNAL_ID_LENGTH} characters: {bad[:40]!r}...",
            field=name,
        )
    return ids


def _optional_seconds(frame: pd.DataFrame, column: str) -> list[int | None]:
    """Unix seconds (ints or datetimes) of an optional column; NULL where absent."""
    if column not in frame.columns:
        return [None] * len(frame)
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.dt.tz is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        missing = values.isna().to_numpy()
        seconds = values.to_numpy("datetime64[s]").astype(np.int64)
        return [None if m else int(x) for x, m in zip(seconds, missing, strict=True)]
    if pd.api.types.is_integer_dtype(values) and not values.hasnans:
        return values.astype(np.int64).tolist()  # the common case, without a Python loop
    out: list[int | None] = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            out.append(None)
        elif isinstance(value, pd.Timestamp):
            out.append(int(value.timestamp()))
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{column} {value!r} is not unix seconds", field=column) from None
            if not math.isfinite(number) or number != int(number):
                raise InputError(f"{column} {value!r} is not whole unix seconds", field=column)
            out.append(int(number))
    return out


def _batches(sequence: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(sequence), size):
        yield sequence[start : start + size]


def _earliest(new: sa.ColumnElement, old: sa.ColumnElement) -> sa.ColumnElement:
    """The earlier of two nullable times; NULL only when both are."""
    return sa.case((sa.or_(old.is_(None), sa.and_(new.is_not(None), new < old)), new), else_=old)


def _latest(new: sa.ColumnElement, old: sa.ColumnElement) -> sa.ColumnElement:
    return sa.case((sa.or_(old.is_(None), sa.and_(new.is_not(None), new > old)), new), else_=old)


UpdateRule = tuple[str, Callable[[Callable[[str], sa.ColumnElement], Any], sa.ColumnElement]]


# ---------------------------------------------------------------------- store
class Store:
    """The recgraph database, opened by URL; creates its tables when missing.

    Parameters
    ----------
    url
        ``sqlite:///path.db``, ``mysql+pymysql://user@host/db`` or
        ``postgresql+psycopg://user@host/db``; ``None`` means
        :func:`recgraph.config.database_url` (``$RECGRAPH_DATABASE_URL``, else
        ``sqlite:///recgraph.db``).
    create
        Create missing tables (and record the schema version).

    Examples
    --------
    >>> import pandas as pd
    >>> store = Store("sqlite://")
    >>> with store.writer() as w:
    ...     _ = w.follows(pd.DataFrame({"src": ["a"], "dst": ["b"]}), directed=True)
    >>> store.counts()["follows"]
    1
    """

    def __init__(self, url: str | None = None, *, create: bool = True) -> None:
        self.url = database_url(url)
        parsed = sa.make_url(self.url)
        if not create and parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and not database.startswith(("file:", ":memory:")):
                if not Path(database).expanduser().exists():
                    raise StoreError(f"no database at {self.url} (import something first)")
        self.engine = create_engine(self.url)
        self.dialect = self.engine.dialect.name  # sqlite | mysql | mariadb | postgresql
        try:
            if create:
                schema.metadata.create_all(self.engine, checkfirst=True)
            self._check_schema_version(create)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise StoreError(
                f"cannot open the database {self.safe_url}: {_first_line(exc.orig or exc)}"
            ) from None

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Store:
        """Open the store at ``url`` (see :class:`Store`)."""
        return cls(url, create=create)

    # -------------------------------------------------------------- lifecycle
    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    @property
    def is_mysql(self) -> bool:
        return self.dialect in ("mysql", "mariadb")

    def backend(self) -> str:
        """A human description of the backend, e.g. ``sqlite 3.45.1``."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                version = conn.exec_driver_sql("select sqlite_version()").scalar()
            else:
                version = conn.exec_driver_sql("select version()").scalar()
        return f"{self.dialect} {version}"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.safe_url!r})"

    def _check_schema_version(self, create: bool) -> None:
        with self.engine.begin() as conn:
            stored = conn.execute(
                sa.select(schema.meta.c.value).where(
                    schema.meta.c.key == schema.META_SCHEMA_VERSION
                )
            ).scalar()
            if stored is None and create:
                _upsert_rows(
                    conn,
                    self.dialect,
                    schema.meta,
                    ["key"],
                    [{"key": schema.META_SCHEMA_VERSION, "value": str(schema.SCHEMA_VERSION)}],
                    [],
                )
            elif stored is not None and int(stored) != schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.safe_url} has schema version {stored}; this recgraph "
                    f"expects {schema.SCHEMA_VERSION}"
                )

    # -------------------------------------------------------------- writes
    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """One transaction: commit when the block ends, roll back on any error."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with conn.begin():
                yield Writer(self, conn)

    def replace_follows(
        self, account: str, targets: Iterable[str] | pd.DataFrame, seen_at: int
    ) -> dict[str, int]:
        """:meth:`Writer.replace_follows` in a transaction of its own."""
        with self.writer() as w:
            return w.replace_follows(account, targets, seen_at)

    # -------------------------------------------------------------- reads
    def meta(self, key: str) -> str | None:
        """A value of the ``meta`` table, or None."""
        with self.engine.connect() as conn:
            return _get_meta(conn, key)

    def follows_directed(self) -> bool | None:
        """Whether the follow graph is directed; None before any follow was written."""
        value = self.meta(schema.META_FOLLOWS_DIRECTED)
        return None if value is None else value == "true"

    def follows_all_timed(self) -> bool:
        """Whether every active follow has a ``created_at`` (and there is at least one)."""
        f = schema.follows.c
        with self.engine.connect() as conn:
            active = conn.execute(
                sa.select(sa.func.count(), sa.func.count(f.created_at)).where(
                    f.removed_at.is_(None)
                )
            ).one()
        return active[0] > 0 and active[0] == active[1]

    def counts(self) -> dict[str, int]:
        """Rows per table: accounts, items, follows (active), follows_removed,
        edge_events (events, repeats included), interactions, and interactions per kind."""
        with self.engine.connect() as conn:
            return _counts(conn)

    def _account_map(self, conn: sa.Connection) -> tuple[IdMap, np.ndarray]:
        """Every account, by ascending key: the id map and the sorted keys."""
        keys, ids = _read_columns(
            conn,
            sa.select(schema.accounts.c.id, schema.accounts.c.external_id).order_by(
                schema.accounts.c.id
            ),
            [np.int64, object],
        )
        return IdMap(ids), keys

    def follows_graph(self) -> Interactions:
        """The active follow graph as a one-sided :class:`Interactions`.

        The id map covers every account (isolated ones too), in key order.
        Timestamps are ``created_at`` when every edge has one, else None.
        Directed unless the store holds an undirected graph.
        """
        with self.engine.connect() as conn:
            users, keys = self._account_map(conn)
            f = schema.follows.c
            src, dst, created = _read_columns(
                conn,
                sa.select(f.source_id, f.target_id, f.created_at)
                .where(f.removed_at.is_(None))
                .order_by(f.source_id, f.target_id),
                [np.int64, np.int64, object],
            )
            directed = _get_meta(conn, schema.META_FOLLOWS_DIRECTED) != "false"
        n = len(src)
        has_time = n > 0 and not any(x is None for x in created)
        return Interactions(
            src=np.searchsorted(keys, src),
            dst=np.searchsorted(keys, dst),
            users=users,
            items=users,
            value=np.ones(n, np.float32),
            kind=np.full(n, int(Kind.FOLLOW), np.int8),
            timestamp=np.asarray(created, dtype=np.int64) if has_time else None,
            one_sided=True,
            directed=directed,
        )

    def events_graph(self) -> Interactions:
        """Every stored edge event (repeats expanded) as a timestamped one-sided graph."""
        with self.engine.connect() as conn:
            users, keys = self._account_map(conn)
            e = schema.edge_events.c
            src, dst, ts, count = _read_columns(
                conn,
                sa.select(e.source_id, e.target_id, e.ts, e["count"]).order_by(
                    e.ts, e.source_id, e.target_id
                ),
                [np.int64, np.int64, np.int64, np.int64],
            )
            directed = _get_meta(conn, schema.META_FOLLOWS_DIRECTED) != "false"
        src, dst, ts = (np.repeat(a, count) for a in (src, dst, ts))
        n = len(src)
        return Interactions(
            src=np.searchsorted(keys, src),
            dst=np.searchsorted(keys, dst),
            users=users,
            items=users,
            value=np.ones(n, np.float32),
            kind=np.full(n, int(Kind.FOLLOW), np.int8),
            timestamp=ts,
            one_sided=True,
            directed=directed,
        )

    def interactions_graph(self, kinds: Iterable[Kind | str] | None = None) -> Interactions:
        """Users x items interactions as a two-sided :class:`Interactions`.

        Users are all accounts and items all items, in key order. Values are
        1 where the store has none; timestamps are None when no row has one
        (rows without a time have 0).

        Parameters
        ----------
        kinds
            Keep only these kinds (:class:`Kind` or labels); None keeps all.
        """
        i = schema.interactions.c
        query = sa.select(i.user_id, i.item_id, i.kind, i.value, i.timestamp).order_by(
            i.user_id, i.item_id, i.timestamp, i.kind
        )
        if kinds is not None:
            labels = [_kind_label(k) for k in kinds]
            query = query.where(i.kind.in_(labels))
        with self.engine.connect() as conn:
            users, user_keys = self._account_map(conn)
            item_keys, item_ids = _read_columns(
                conn,
                sa.select(schema.items.c.id, schema.items.c.external_id).order_by(
                    schema.items.c.id
                ),
                [np.int64, object],
            )
            user_id, item_id, kind, value, ts = _read_columns(
                conn, query, [np.int64, np.int64, object, object, np.int64]
            )
        codes = {k.label: int(k) for k in Kind}
        n = len(user_id)
        values = np.array([1.0 if v is None else v for v in value], dtype=np.float32)
        return Interactions(
            src=np.searchsorted(user_keys, user_id),
            dst=np.searchsorted(item_keys, item_id),
            users=users,
            items=IdMap(item_ids),
            value=values if n else np.zeros(0, np.float32),
            kind=np.array([codes[k] for k in kind], dtype=np.int8),
            timestamp=ts if n and ts.any() else None,
            one_sided=False,
            directed=True,
        )

    def accounts_frame(self) -> pd.DataFrame:
        """All accounts: ``external_id, handle, created_at, updated_at``."""
        return pd.concat(
            list(self.iter_frames("accounts")) or [_empty("accounts")], ignore_index=True
        )

    def items_frame(self) -> pd.DataFrame:
        """All items: ``external_id, title, author, created_at, features`` (dicts)."""
        frame = pd.concat(list(self.iter_frames("items")) or [_empty("items")], ignore_index=True)
        frame["features"] = [None if f is None else json.loads(f) for f in frame["features"]]
        return frame

    def iter_frames(self, what: TableName, chunk_rows: int = _READ_BATCH) -> Iterator[pd.DataFrame]:
        """Stream a table with external ids, in key order, ``chunk_rows`` rows at a time.

        Columns: ``follows`` -> ``src, dst, created_at, seen_at`` (active edges);
        ``events`` -> ``src, dst, ts`` (one row per event); ``interactions``
        -> ``user, item, kind, value, timestamp``; ``accounts`` ->
        ``external_id, handle, created_at, updated_at``; ``items`` ->
        ``external_id, title, author, created_at, features`` (JSON text).
        Missing times are None (interaction timestamps: 0).
        """
        query, columns = _export_query(what)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(query)
            for rows in result.partitions():
                frame = pd.DataFrame(rows, columns=columns)
                if what == "events":
                    frame = frame.loc[frame.index.repeat(frame.pop("count"))].reset_index(drop=True)
                yield frame

    # -------------------------------------------------------------- candidate lists
    def candidate_list_version(self, name: str) -> int | None:
        """The current (published) version of the candidate lists ``name``, or None."""
        value = self.meta(schema.META_CANDIDATE_LISTS + name)
        return None if value is None else int(value)

    def next_candidate_list_version(self, name: str) -> int:
        """A version number above every one written for ``name`` (published or not)."""
        c = schema.candidate_lists.c
        with self.engine.connect() as conn:
            highest = conn.execute(sa.select(sa.func.max(c.version)).where(c.name == name)).scalar()
        current = self.candidate_list_version(name) or 0
        return max(int(highest or 0), current) + 1

    def write_candidate_lists(
        self, name: str, version: int, users: Sequence[str], payloads: Sequence[str]
    ) -> int:
        """Write one payload per user under ``(name, version)`` (not yet served); returns rows."""
        _check_list_name(name)
        if len(users) != len(payloads):
            raise ValueError("users and payloads differ in length")
        rows = {
            "name": [name] * len(users),
            "version": [int(version)] * len(users),
            "user_id": [str(u) for u in users],
            "payload": list(payloads),
        }
        with self.engine.begin() as conn:
            _upsert_rows(
                conn,
                self.dialect,
                schema.candidate_lists,
                ["name", "version", "user_id"],
                rows,
                [("payload", lambda new, old: new("payload"))],
            )
        return len(users)

    def switch_candidate_lists(self, name: str, version: int, keep: int = 2) -> None:
        """Serve ``version`` of ``name`` from now on (one write), then drop all but ``keep`` versions.

        The version served before stays (with ``keep=2``) so that a reader
        that looked the version up just before the switch still finds its rows.
        """
        _check_list_name(name)
        c = schema.candidate_lists.c
        with self.engine.begin() as conn:
            _upsert_rows(
                conn,
                self.dialect,
                schema.meta,
                ["key"],
                [{"key": schema.META_CANDIDATE_LISTS + name, "value": str(int(version))}],
                [("value", lambda new, old: new("value"))],
            )
        with self.engine.begin() as conn:
            versions = [
                row[0]
                for row in conn.execute(
                    sa.select(c.version).where(c.name == name).distinct().order_by(c.version.desc())
                )
            ]
            stale = [v for v in versions if v < version][max(keep - 1, 0) :]
            if stale:
                conn.execute(
                    sa.delete(schema.candidate_lists).where(c.name == name, c.version.in_(stale))
                )

    def candidate_lists(self, name: str, users: Sequence[str]) -> dict[str, str]:
        """The current payloads of ``users`` in the lists ``name`` (users without one are left out)."""
        version = self.candidate_list_version(name)
        if version is None or not len(users):
            return {}
        c = schema.candidate_lists.c
        query = sa.select(c.user_id, c.payload).where(
            c.name == name,
            c.version == version,
            c.user_id.in_(sa.bindparam("users", expanding=True)),
        )
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for batch in _batches([str(u) for u in users], _WRITE_BATCH):
                out.update((row[0], row[1]) for row in conn.execute(query, {"users": list(batch)}))
        return out


def _check_list_name(name: str) -> None:
    if not name or len(name) > schema.CANDIDATE_LIST_NAME_LENGTH:
        raise InputError(
            f"a candidate list name has 1 to {schema.CANDIDATE_LIST_NAME_LENGTH} characters",
            field="name",
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _empty(what: TableName) -> pd.DataFrame:
    return pd.DataFrame(columns=_export_query(what)[1])


def _kind_label(kind: Kind | str) -> str:
    label = kind.label if isinstance(kind, Kind) else Kind.parse(str(kind)).label
    if label not in schema.INTERACTION_KIND_LABELS:
        raise ValueError(f"{label!r} is not an interaction kind")
    return label


def _export_query(what: str) -> tuple[sa.Select, list[str]]:
    a = schema.accounts
    if what == "follows":
        src, dst = a.alias("src"), a.alias("dst")
        f = schema.follows
        query = (
            sa.select(src.c.external_id, dst.c.external_id, f.c.created_at, f.c.seen_at)
            .select_from(
                f.join(src, f.c.source_id == src.c.id).join(dst, f.c.target_id == dst.c.id)
            )
            .where(f.c.removed_at.is_(None))
            .order_by(f.c.source_id, f.c.target_id)
        )
        return query, ["src", "dst", "created_at", "seen_at"]
    if what == "events":
        src, dst = a.alias("src"), a.alias("dst")
        e = schema.edge_events
        query = (
            sa.select(src.c.external_id, dst.c.external_id, e.c.ts, e.c["count"])
            .select_from(
                e.join(src, e.c.source_id == src.c.id).join(dst, e.c.target_id == dst.c.id)
            )
            .order_by(e.c.ts, e.c.source_id, e.c.target_id)
        )
        return query, ["src", "dst", "ts", "count"]
    if what == "interactions":
        i, it = schema.interactions, schema.items
        query = (
            sa.select(a.c.external_id, it.c.external_id, i.c.kind, i.c.value, i.c.timestamp)
            .select_from(i.join(a, i.c.user_id == a.c.id).join(it, i.c.item_id == it.c.id))
            .order_by(i.c.user_id, i.c.item_id, i.c.timestamp, i.c.kind)
        )
        return query, ["user", "item", "kind", "value", "timestamp"]
    if what == "accounts":
        query = sa.select(a.c.external_id, a.c.handle, a.c.created_at, a.c.updated_at).order_by(
            a.c.id
        )
        return query, ["external_id", "handle", "created_at", "updated_at"]
    if what == "items":
        it = schema.items
        query = (
            sa.select(it.c.external_id, a.c.external_id, it.c.title, it.c.created_at, it.c.features)
            .select_from(it.outerjoin(a, it.c.author_id == a.c.id))
            .order_by(it.c.id)
        )
        return query, ["external_id", "author", "title", "created_at", "features"]
    raise InputError(f"unknown table {what!r}; expected one of {', '.join(TABLE_NAMES)}")


def _read_columns(conn: sa.Connection, query: sa.Select, dtypes: list) -> list[np.ndarray]:
    """Run ``query`` in partitions; one numpy array per selected column."""
    parts: list[list[np.ndarray]] = [[] for _ in dtypes]
    result = conn.execution_options(yield_per=_READ_BATCH).execute(query)
    for rows in result.partitions():
        columns = list(zip(*rows, strict=True))
        for store, column, dtype in zip(parts, columns, dtypes, strict=True):
            store.append(np.asarray(column, dtype=dtype))
    return [
        np.concatenate(p) if p else np.zeros(0, dtype=d) for p, d in zip(parts, dtypes, strict=True)
    ]


def _get_meta(conn: sa.Connection, key: str) -> str | None:
    return conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()


#: What :func:`_counts` can count; ``interactions_<kind>`` come with ``interactions``.
COUNTED = ("accounts", "items", "follows", "follows_removed", "edge_events", "interactions")


def _counts(conn: sa.Connection, names: Iterable[str] = COUNTED) -> dict[str, int]:
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
        for batch in _batches(tuples, _WRITE_BATCH):
            conn.exec_driver_sql(sql, list(batch))
        return
    records = [dict(zip(names, values, strict=True)) for values in zip(*rows.values(), strict=True)]
    for batch in _batches(records, _WRITE_BATCH):
        conn.execute(stmt, list(batch))


_upsert_rows = upsert_rows  # the name other parts first imported


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


# ---------------------------------------------------------------------- writer
class Writer:
    """Bulk, idempotent writes inside one transaction (see :meth:`Store.writer`).

    Every method takes a pandas DataFrame (or an iterable of dicts) keyed by
    external ids; accounts and items it references are created on the fly.
    External id -> key lookups are batched and cached for the transaction.
    """

    def __init__(self, store: Store, conn: sa.Connection) -> None:
        self.store = store
        self.conn = conn
        self.dialect = store.dialect
        self.now = int(time.time())
        self.batch = secrets.randbits(62)
        self._keys: dict[str, dict[str, int]] = {"accounts": {}, "items": {}}
        self._directed: bool | None = None

    # -------------------------------------------------------------- keys
    def _resolve(self, table: sa.Table, ids: np.ndarray) -> np.ndarray:
        """Integer keys of external ids, inserting the unknown ones."""
        cache = self._keys[table.name]
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        codes, uniques = pd.factorize(ids)
        keys = [cache.get(x) for x in uniques]
        wanted = [x for x, key in zip(uniques, keys, strict=True) if key is None]
        if wanted:
            self._lookup(table, wanted, cache)
            missing = [x for x in wanted if x not in cache]
            if missing:
                rows: Columns = {"external_id": missing}
                if table is schema.accounts:
                    rows["created_at"] = rows["updated_at"] = [self.now] * len(missing)
                _upsert_rows(self.conn, self.dialect, table, ["external_id"], rows, [])
                self._lookup(table, missing, cache)
            keys = [cache[x] for x in uniques]
        return np.asarray(keys, dtype=np.int64)[codes] if len(codes) else np.zeros(0, np.int64)

    def _lookup(self, table: sa.Table, external_ids: list[str], cache: dict[str, int]) -> None:
        for batch in _batches(external_ids, _LOOKUP_BATCH):
            rows = self.conn.execute(
                sa.select(table.c.external_id, table.c.id).where(table.c.external_id.in_(batch))
            )
            cache.update((external_id, key) for external_id, key in rows)

    def account_keys(self, external_ids: Iterable[str]) -> np.ndarray:
        """Integer keys of accounts, creating unknown ones."""
        return self._resolve(
            schema.accounts, _external_ids(pd.Series(list(external_ids)), "account")
        )

    def item_keys(self, external_ids: Iterable[str]) -> np.ndarray:
        """Integer keys of items, creating unknown ones."""
        return self._resolve(schema.items, _external_ids(pd.Series(list(external_ids)), "item"))

    # -------------------------------------------------------------- meta
    def set_meta(self, key: str, value: str) -> None:
        _upsert_rows(
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
        stored = _get_meta(self.conn, schema.META_FOLLOWS_DIRECTED)
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
        frame = _frame(rows, ["external_id"], "account")
        ids = _external_ids(frame["external_id"], "external_id")
        handles = (
            frame["handle"].astype(object).where(frame["handle"].notna(), None).tolist()
            if "handle" in frame.columns
            else [None] * len(ids)
        )
        created = [self.now if c is None else c for c in _optional_seconds(frame, "created_at")]
        latest = {  # the last row of an id wins
            x: (h, c) for x, h, c in zip(ids, handles, created, strict=True)
        }
        records = [
            {"external_id": x, "handle": h, "created_at": c, "updated_at": self.now}
            for x, (h, c) in latest.items()
        ]
        _upsert_rows(
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
                ("created_at", lambda new, old: _earliest(new("created_at"), old.created_at)),
            ],
        )
        return len(records)

    def items(self, rows: Frame) -> int:
        """Upsert items from ``external_id`` and optional ``title, author, created_at,
        features`` (a dict per row, stored as JSON); authors are accounts. Return rows written."""
        frame = _frame(rows, ["external_id"], "item")
        ids = _external_ids(frame["external_id"], "external_id")
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
                    schema.accounts, _external_ids(frame["author"][present], "author")
                )
                for position, key in zip(np.flatnonzero(present), keys, strict=True):
                    authors[position] = int(key)
        features = [None if f is None else _features_json(f) for f in optional("features")]
        latest = {
            x: (t, a, c, f)
            for x, t, a, c, f in zip(
                ids,
                optional("title"),
                authors,
                _optional_seconds(frame, "created_at"),
                features,
                strict=True,
            )
        }
        records = [
            {"external_id": x, "title": t, "author_id": a, "created_at": c, "features": f}
            for x, (t, a, c, f) in latest.items()
        ]
        _upsert_rows(
            self.conn,
            self.dialect,
            schema.items,
            ["external_id"],
            records,
            [
                ("title", lambda new, old: sa.func.coalesce(new("title"), old.title)),
                ("author_id", lambda new, old: sa.func.coalesce(new("author_id"), old.author_id)),
                ("created_at", lambda new, old: _earliest(new("created_at"), old.created_at)),
                ("features", lambda new, old: sa.func.coalesce(new("features"), old.features)),
            ],
        )
        return len(records)

    def follows(self, rows: Frame, directed: bool) -> int:
        """Upsert follow edges from ``src, dst`` and optional ``created_at, seen_at``.

        ``directed=False`` stores each friendship once (smaller key first).
        Within the chunk and against the store, ``created_at`` keeps the
        earliest time and ``seen_at`` the latest (``created_at`` when no
        ``seen_at`` is given). An edge removed earlier becomes active again
        unless it was removed after this sighting. Return rows written.
        """
        frame = _frame(rows, ["src", "dst"], "follow")
        directed = self._check_directed(directed)
        src, dst = self._pair_keys(frame, directed)
        created = _optional_seconds(frame, "created_at")
        seen = _optional_seconds(frame, "seen_at") if "seen_at" in frame.columns else created
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
        records = {
            "source_id": merged.index.get_level_values(0).tolist(),
            "target_id": merged.index.get_level_values(1).tolist(),
            "created_at": _nullable_ints(merged["created_at"]),
            "seen_at": _nullable_ints(merged["seen_at"]),
            "removed_at": [None] * len(merged),
        }
        _upsert_rows(
            self.conn,
            self.dialect,
            schema.follows,
            ["source_id", "target_id"],
            records,
            [
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
                ("created_at", lambda new, old: _earliest(new("created_at"), old.created_at)),
                ("seen_at", lambda new, old: _latest(new("seen_at"), old.seen_at)),
            ],
        )
        return len(merged)

    def edge_events(self, rows: Frame, directed: bool | None = None) -> int:
        """Store timestamped edge events from ``src, dst, ts``; repeats are counted, not dropped.

        ``directed`` defaults to the store's follow graph direction. Within
        one writer, chunks add up; a later import of the same events replaces
        their counts, so re-imports stay idempotent. Return events written.
        """
        frame = _frame(rows, ["src", "dst", "ts"], "edge event")
        directed = self._check_directed(directed)
        src, dst = self._pair_keys(frame, directed)
        ts = _optional_seconds(frame, "ts")
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
        _upsert_rows(
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
        """Upsert interactions from ``user, item, kind`` and optional ``value, timestamp``.

        ``kind`` is like, dislike, view or rating; a missing timestamp is
        stored as 0 and a missing value as NULL (read as 1). The natural key
        ``(user, item, kind, timestamp)`` makes re-imports idempotent; a new
        non-NULL value replaces the stored one. Return rows written.
        """
        frame = _frame(rows, ["user", "item", "kind"], "interaction")
        users = self._resolve(schema.accounts, _external_ids(frame["user"], "user"))
        items = self._resolve(schema.items, _external_ids(frame["item"], "item"))
        kind_codes, kind_values = pd.factorize(frame["kind"].astype(object), use_na_sentinel=False)
        kinds = np.asarray([_kind_or_none(k) for k in kind_values], dtype=object)[kind_codes]
        if pd.isna(kinds).any() if len(kinds) else False:
            bad = frame["kind"].iloc[int(np.flatnonzero(pd.isna(kinds))[0])]
            raise InputError(
                f"unknown kind {bad!r}; expected one of {', '.join(schema.INTERACTION_KIND_LABELS)}",
                field="kind",
            )
        stamps = [0 if t is None else t for t in _optional_seconds(frame, "timestamp")]
        if "value" in frame.columns:
            values = pd.to_numeric(frame["value"], errors="coerce")
            invalid = values.isna() & frame["value"].notna()
            if invalid.any():
                bad = frame["value"][invalid].iloc[0]
                raise InputError(f"value {bad!r} is not a number", field="value")
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
            }
        )
        key = ["user_id", "item_id", "kind", "timestamp"]
        rows_frame = rows_frame.drop_duplicates(key, keep="last").sort_values(key)
        records = {name: rows_frame[name].tolist() for name in rows_frame.columns}
        _upsert_rows(
            self.conn,
            self.dialect,
            schema.interactions,
            key,
            records,
            [("value", lambda new, old: sa.func.coalesce(new("value"), old.value))],
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
            frame = _frame(targets, ["dst"], "follow").copy()
        else:
            frame = pd.DataFrame({"dst": pd.Series(list(targets), dtype=object)})
        frame["src"] = account
        frame["seen_at"] = int(seen_at)
        directed = self._check_directed(None)
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
            for batch in _batches([{"s": s, "t": t} for s, t in gone], _WRITE_BATCH):
                self.conn.execute(statement, list(batch))
        return {"added": len(wanted - current), "kept": len(wanted & current), "removed": len(gone)}

    def counts(self, tables: Iterable[str] = COUNTED) -> dict[str, int]:
        """:meth:`Store.counts` as seen inside this transaction, for ``tables`` only
        (counting is a scan: an import counts just what it touches)."""
        return _counts(self.conn, tables)

    # -------------------------------------------------------------- helpers
    def _pair_keys(self, frame: pd.DataFrame, directed: bool) -> tuple[np.ndarray, np.ndarray]:
        src = self._resolve(schema.accounts, _external_ids(frame["src"], "src"))
        dst = self._resolve(schema.accounts, _external_ids(frame["dst"], "dst"))
        if not directed:
            src, dst = np.minimum(src, dst), np.maximum(src, dst)
        return src, dst


def _kind_or_none(value: object) -> str | None:
    if not isinstance(value, str | Kind):
        return None
    try:
        label = value.label if isinstance(value, Kind) else Kind.parse(value).label
    except ValueError:
        return None
    return label if label in schema.INTERACTION_KIND_LABELS else None


def _features_json(features: object) -> str:
    if isinstance(features, str):
        try:
            features = json.loads(features)
        except json.JSONDecodeError:
            raise InputError(f"features {features[:40]!r} are not JSON", field="features") from None
    if not isinstance(features, Mapping):
        raise InputError(
            f"features must be a dict, got {type(features).__name__}", field="features"
        )
    return json.dumps(features, sort_keys=True, ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _nullable_ints(series: pd.Series) -> list[int | None]:
    """A nullable integer column as Python ints and None."""
    values = series.astype(object)
    return values.where(series.notna(), None).tolist()


__all__ = [
    "COUNTED",
    "TABLE_NAMES",
    "Store",
    "StoreError",
    "TableName",
    "Writer",
    "create_engine",
    "upsert_rows",
]
