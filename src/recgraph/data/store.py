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

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.interactions import IdMap, Interactions, Kind, ValueKind
from recgraph.data.sql import (
    BEGIN_OPTION,
    COUNTED,
    READ_BATCH,
    WRITE_BATCH,
    StoreBusyError,
    StoreError,
    batches,
    count_rows,
    create_engine,
    first_line,
    get_meta,
    is_lock_timeout,
    is_memory,
    read_columns,
    rebuild_rowid_tables,
    upsert_rows,
)
from recgraph.data.writer import Writer
from recgraph.errors import InputError
from recgraph.settings import busy_timeout as config_busy_timeout
from recgraph.settings import database_url

#: ``FollowChunk.ts`` of a follow whose time is unknown.
NO_TIME = -(2**63)


@dataclass(frozen=True)
class FollowChunk:
    """Consecutive active follows as arrays (see :meth:`Store.iter_follow_chunks`)."""

    src: np.ndarray  #: int32 dense index of the follower
    dst: np.ndarray  #: int32 dense index of the followed account
    ts: np.ndarray  #: int64 created_at, NO_TIME where unknown

    def __len__(self) -> int:
        return len(self.src)


#: What :meth:`Store.iter_frames` and the export command can write.
TableName = Literal["follows", "events", "interactions", "accounts", "items"]
TABLE_NAMES: tuple[str, ...] = ("follows", "events", "interactions", "accounts", "items")


# ---------------------------------------------------------------------- store


def _account_graph(
    users: IdMap,
    keys: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    timestamp: np.ndarray | None,
    directed: bool,
) -> Interactions:
    """Account-to-account edges (store keys) as a one-sided follow :class:`Interactions`."""
    return Interactions(
        src=np.searchsorted(keys, src),
        dst=np.searchsorted(keys, dst),
        users=users,
        items=users,
        value=np.ones(len(src), np.float32),
        kind=np.full(len(src), int(Kind.FOLLOW), np.int8),
        timestamp=timestamp,
        one_sided=True,
        directed=directed,
    )


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions (int32) of store keys in the sorted ``keys``: a subtraction when the keys
    are consecutive (as the store hands them out), else a binary search."""
    if len(keys) and int(keys[-1]) - int(keys[0]) == len(keys) - 1:
        return (values - keys[0]).astype(np.int32)
    return np.searchsorted(keys, values).astype(np.int32)


#: Sources fetched per round trip of the grouped SQLite read (their follows as one text each).
SQLITE_GROUPS = 20_000


def _sqlite_follow_chunks(
    conn: sa.Connection, keys: np.ndarray, chunk_rows: int
) -> Iterator[FollowChunk]:
    """The active follows of a SQLite store, ``chunk_rows`` at a time, one row per source.

    SQLite hands a row per follow to Python as a tuple of Python ints (3 objects an
    edge, most of a 10^8-follow read's CPU through SQLAlchemy's rows). Here SQLite groups
    by source (the table is ordered by ``(source_id, target_id)``, so each group's targets
    come in key order) and writes each source's targets, and their times when any has
    one, as one text that numpy parses: a Python object per source, not per value.
    """
    f = schema.follows.c
    times = sa.func.group_concat(sa.func.coalesce(f.created_at, NO_TIME))
    query = (
        sa.select(
            f.source_id,
            sa.func.count(),
            sa.func.group_concat(f.target_id),
            sa.case((sa.func.count(f.created_at) == 0, sa.null()), else_=times),
        )
        .where(f.removed_at.is_(None))
        .group_by(f.source_id)
        .order_by(f.source_id)
    )
    # on the DBAPI cursor (same connection, same read): a row per source, no SQLAlchemy row
    compiled = query.compile(dialect=conn.dialect)
    parameters = [compiled.params[name] for name in compiled.positiontup or ()]
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), parameters)
        rest: tuple[np.ndarray, ...] = ()
        while rows := cursor.fetchmany(SQLITE_GROUPS):
            sources, counts, targets, times = zip(*rows, strict=True)
            count = np.asarray(counts, dtype=np.int64)
            dst = np.fromstring(",".join(targets), dtype=np.int64, sep=",")
            if len(dst) != int(count.sum()):
                raise StoreError("a follow's target did not read back as an integer")
            ts = np.full(len(dst), NO_TIME, dtype=np.int64)
            timed = np.fromiter((t is not None for t in times), dtype=bool, count=len(times))
            if timed.any():  # sources none of whose follows has a time sent NULL
                parsed = [t for t in times if t is not None]
                where = slice(None) if timed.all() else np.repeat(timed, count)
                ts[where] = np.fromstring(",".join(parsed), dtype=np.int64, sep=",")
            src = np.repeat(_positions(keys, np.asarray(sources, dtype=np.int64)), count)
            falls = np.diff(dst) <= 0
            falls[np.cumsum(count)[:-1] - 1] = False  # a new source may start anywhere
            if falls.any():  # a plan that grouped out of key order: sort this fetch
                order = np.lexsort((dst, src))
                src, dst, ts = src[order], dst[order], ts[order]
            held = (src, _positions(keys, dst), ts)
            if rest:
                held = tuple(np.concatenate(pair) for pair in zip(rest, held, strict=True))
            start = 0
            while len(held[0]) - start >= chunk_rows:
                part = slice(start, start + chunk_rows)
                yield FollowChunk(src=held[0][part], dst=held[1][part], ts=held[2][part])
                start += chunk_rows
            rest = tuple(a[start:] for a in held)
        if rest and len(rest[0]):
            yield FollowChunk(src=rest[0], dst=rest[1], ts=rest[2])
    finally:
        cursor.close()


class Store:
    """The recgraph database, opened by URL; creates its tables when missing.

    Parameters
    ----------
    url
        ``sqlite:///path.db``, ``mysql+pymysql://user@host/db`` or
        ``postgresql+psycopg://user@host/db``; ``None`` means
        :func:`recgraph.settings.database_url` (``$RECGRAPH_DATABASE_URL``, else
        ``sqlite:///recgraph.db``).
    create
        Create missing tables (and record the schema version).
    busy_timeout
        Seconds a SQLite write waits for another writer's lock before
        :class:`StoreBusyError` (default ``RECGRAPH_BUSY_TIMEOUT``, 15).
    upgrade
        Bring a store of an older schema version up to date (see
        :data:`recgraph.data.schema.UPGRADES`); without it such a store is
        refused with a :class:`StoreError` that says how to upgrade. On SQLite it
        also rebuilds natural-key tables an older recgraph made as rowid tables
        (:data:`recgraph.data.schema.SQLITE_REBUILT`), which work either way.

    Examples
    --------
    >>> import pandas as pd
    >>> store = Store("sqlite://")
    >>> with store.writer() as w:
    ...     _ = w.follows(pd.DataFrame({"src": ["a"], "dst": ["b"]}), directed=True)
    >>> store.counts()["follows"]
    1
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        create: bool = True,
        upgrade: bool = False,
        busy_timeout: float | None = None,
    ) -> None:
        self.url = database_url(url)
        parsed = sa.make_url(self.url)
        if not create and parsed.get_backend_name() == "sqlite" and not is_memory(parsed):
            # a ``file:`` URI (``file:x.db?mode=ro``) names its file inside the URI: not tested
            database = parsed.database
            if not database.startswith("file:") and not Path(database).expanduser().exists():
                raise StoreError(f"no database at {self.url} (import something first)")
        self.busy_timeout = config_busy_timeout(busy_timeout)
        self.engine = create_engine(self.url, self.busy_timeout)
        self.dialect = self.engine.dialect.name  # sqlite | mysql | mariadb | postgresql
        try:
            self._prepare_schema(create, upgrade)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise StoreError(
                f"cannot open the database {self.safe_url}: {first_line(exc.orig or exc)}"
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

    def _prepare_schema(self, create: bool, upgrade: bool) -> None:
        """Create what is missing of the schema and check (or upgrade) its version.

        A store that is complete and current is only read, in a plain transaction, so
        opening it never waits for a writer. On SQLite, a transaction that reads and then
        writes gets "database is locked" at once, busy timeout or not, when another one
        wrote first: what processes opening one new file at the same moment meet
        (``serve --workers N``). That one is done again as one write transaction from the
        start (``BEGIN IMMEDIATE``), which waits its turn for the busy timeout.
        """
        immediate = False
        while True:
            try:
                with self.engine.connect() as conn:
                    if immediate:
                        conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
                    with conn.begin():
                        if create:
                            schema.metadata.create_all(conn, checkfirst=True)
                        self._check_schema_version(conn, create, upgrade)
                return
            except sa.exc.OperationalError as exc:
                writes = create or upgrade
                if immediate or self.dialect != "sqlite" or not writes or not is_lock_timeout(exc):
                    raise
                immediate = True

    def _check_schema_version(
        self, conn: sa.Connection, create: bool, upgrade: bool = False
    ) -> None:
        stored = get_meta(conn, schema.META_SCHEMA_VERSION)
        if stored is None and create:
            upsert_rows(
                conn,
                self.dialect,
                schema.meta,
                ["key"],
                [{"key": schema.META_SCHEMA_VERSION, "value": str(schema.SCHEMA_VERSION)}],
                [],
            )
            return
        if stored is None or int(stored) == schema.SCHEMA_VERSION:
            if upgrade and self.dialect == "sqlite":
                rebuild_rowid_tables(conn)  # storage only: rows, keys and version stay
            return
        version = int(stored)
        if version > schema.SCHEMA_VERSION or not upgrade:
            hint = (
                "a newer recgraph wrote it; upgrade recgraph"
                if version > schema.SCHEMA_VERSION
                else f"upgrade it in place with `recgraph db upgrade --db {self.safe_url}` "
                "(interactions gain a value_kind column: ratings become 'rating', "
                "other rows 'none')"
            )
            raise StoreError(
                f"{self.safe_url} has schema version {stored}; this recgraph expects "
                f"{schema.SCHEMA_VERSION}: {hint}"
            )
        for step in range(version, schema.SCHEMA_VERSION):
            for statement in schema.UPGRADES[step]:
                conn.exec_driver_sql(statement)
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == schema.META_SCHEMA_VERSION)
            .values(value=str(schema.SCHEMA_VERSION))
        )
        if self.dialect == "sqlite":
            rebuild_rowid_tables(conn)  # after the steps: they alter the old layout

    def schema_version(self) -> int:
        """The schema version the store records."""
        return int(self.meta(schema.META_SCHEMA_VERSION) or schema.SCHEMA_VERSION)

    # -------------------------------------------------------------- writes
    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """One transaction: commit when the block ends, roll back on any error.

        Raises
        ------
        StoreBusyError
            When another writer held the lock longer than the busy timeout;
            nothing of this transaction was written.
        """
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    conn.execution_options(**{BEGIN_OPTION: "BEGIN IMMEDIATE"})
                writer = Writer(conn, self.dialect)
                try:
                    with conn.begin():
                        yield writer
                        writer.finish()
                finally:
                    with contextlib.suppress(Exception):  # a closed or broken connection
                        writer.restore()
        except sa.exc.OperationalError as exc:
            if not is_lock_timeout(exc):
                raise
            raise StoreBusyError(
                f"{self.safe_url} is locked by another writer (an import, a crawl or the "
                f"server) and stayed locked for the {self.busy_timeout:g} s busy timeout; "
                "nothing was written. Run this again when the other writer is done, or "
                "wait longer with RECGRAPH_BUSY_TIMEOUT=<seconds>."
            ) from None

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
            return get_meta(conn, key)

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
            return count_rows(conn)

    def _account_map(self, conn: sa.Connection) -> tuple[IdMap, np.ndarray]:
        """Every account, by ascending key: the id map and the sorted keys."""
        keys, ids = read_columns(
            conn,
            sa.select(schema.accounts.c.id, schema.accounts.c.external_id).order_by(
                schema.accounts.c.id
            ),
            [np.int64, object],
        )
        return IdMap(ids), keys

    def follows_graph(self, chunk_rows: int = 50_000) -> Interactions:
        """The active follow graph as a one-sided :class:`Interactions`.

        The id map covers every account (isolated ones too), in key order.
        Timestamps are ``created_at`` when every edge has one, else None.
        Directed unless the store holds an undirected graph.

        Streamed: rows arrive ``chunk_rows`` at a time (as in
        :meth:`iter_follow_chunks`) into arrays sized from a count taken in
        the same read transaction, so the peak is the graph's own arrays
        (29 bytes an edge) plus one chunk, not a Python object per value.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name != "sqlite":  # the count, the ids and the rows: one snapshot
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            users, keys = self._account_map(conn)
            total = count_rows(conn, ["follows"])["follows"]
            src = np.empty(total, dtype=np.int64)
            dst = np.empty(total, dtype=np.int64)
            timestamp = np.empty(total, dtype=np.int64)
            filled = 0
            for chunk in self._follow_chunks(conn, keys, chunk_rows):
                end = filled + len(chunk)
                if end > total:  # more rows than counted: cannot happen inside one read
                    raise StoreError("the follows changed while they were read")
                src[filled:end], dst[filled:end], timestamp[filled:end] = (
                    chunk.src,
                    chunk.dst,
                    chunk.ts,
                )
                filled = end
            directed = get_meta(conn, schema.META_FOLLOWS_DIRECTED) != "false"
        src, dst, timestamp = src[:filled], dst[:filled], timestamp[:filled]
        has_time = filled > 0 and not bool((timestamp == NO_TIME).any())
        return Interactions(
            src=src,
            dst=dst,
            users=users,
            items=users,
            value=np.ones(filled, np.float32),
            kind=np.full(filled, int(Kind.FOLLOW), np.int8),
            timestamp=timestamp if has_time else None,
            one_sided=True,
            directed=directed,
        )

    def account_index(self) -> tuple[np.ndarray, IdMap]:
        """Every account by ascending key: ``(keys, ids)``.

        Position ``i`` is the dense index :meth:`iter_follow_chunks` hands out;
        ``keys[i]`` is the store's integer key (int64) and ``ids.external([i])``
        the external id. The same order as :meth:`follows_graph`'s id map.
        """
        with self.engine.connect() as conn:
            users, keys = self._account_map(conn)
        return keys, users

    def iter_follow_chunks(
        self, chunk_rows: int = 1_000_000, *, keys: np.ndarray | None = None
    ) -> Iterator[FollowChunk]:
        """Stream the active follows as int32 arrays, never building a frame of every edge.

        For compact graph forms at scale (a memory-mapped CSR): the database
        streams rows in ``(source, target)`` key order through a server-side
        cursor, ``chunk_rows`` at a time, and each chunk arrives as numpy arrays.
        Peak memory is one chunk plus the key array, whatever the graph's size.

        Parameters
        ----------
        chunk_rows
            Edges per chunk (about 20 bytes each in flight).
        keys
            The sorted account keys from :meth:`account_index`; read here when
            not given. Pass them when you also need the id map, so both come
            from the same read.

        Yields
        ------
        FollowChunk
            ``src``, ``dst``: dense account indices (int32, positions in
            :meth:`account_index`); ``ts``: ``created_at`` (int64 unix
            seconds, :data:`NO_TIME` where unknown). Sources are non-decreasing
            across chunks, so a CSR's row pointer can be filled as chunks
            arrive. An undirected store holds each friendship once (smaller key
            first): add the reverse edges for a symmetric graph
            (:meth:`follows_directed` says which).

        Examples
        --------
        >>> keys, ids = store.account_index()  # doctest: +SKIP
        >>> for chunk in store.iter_follow_chunks(keys=keys):  # doctest: +SKIP
        ...     degree += np.bincount(chunk.src, minlength=len(keys))
        """
        if keys is None:
            keys, _ = self.account_index()
        with self.engine.connect() as conn:
            yield from self._follow_chunks(conn, keys, chunk_rows)

    @staticmethod
    def _follow_chunks(
        conn: sa.Connection, keys: np.ndarray, chunk_rows: int
    ) -> Iterator[FollowChunk]:
        """:meth:`iter_follow_chunks` on an open connection (inside its read transaction)."""
        if len(keys) > np.iinfo(np.int32).max:
            raise StoreError("more accounts than int32 indices can hold")
        if conn.dialect.name == "sqlite":
            yield from _sqlite_follow_chunks(conn, keys, chunk_rows)
            return
        f = schema.follows.c
        query = (
            sa.select(f.source_id, f.target_id, sa.func.coalesce(f.created_at, NO_TIME))
            .where(f.removed_at.is_(None))
            .order_by(f.source_id, f.target_id)
        )
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
        for rows in result.partitions(chunk_rows):
            # column tuples first: numpy reads a tuple of ints far faster than a list of rows
            source, target, created = (
                np.asarray(c, dtype=np.int64) for c in zip(*rows, strict=True)
            )
            yield FollowChunk(
                src=_positions(keys, source), dst=_positions(keys, target), ts=created
            )

    def events_graph(self) -> Interactions:
        """Every stored edge event (repeats expanded) as a timestamped one-sided graph."""
        with self.engine.connect() as conn:
            users, keys = self._account_map(conn)
            e = schema.edge_events.c
            src, dst, ts, count = read_columns(
                conn,
                sa.select(e.source_id, e.target_id, e.ts, e["count"]).order_by(
                    e.ts, e.source_id, e.target_id
                ),
                [np.int64, np.int64, np.int64, np.int64],
            )
            directed = get_meta(conn, schema.META_FOLLOWS_DIRECTED) != "false"
        src, dst, ts = (np.repeat(a, count) for a in (src, dst, ts))
        return _account_graph(users, keys, src, dst, ts, directed)

    def interactions_graph(self, kinds: Iterable[Kind | str] | None = None) -> Interactions:
        """Users x items interactions as a two-sided :class:`Interactions`.

        Users are all accounts and items all items, in key order. Values are
        1 where the store has none, and ``value_kind`` says per row what they
        mean (as the import declared); timestamps are None when no row has one
        (rows without a time have 0).

        Parameters
        ----------
        kinds
            Keep only these kinds (:class:`Kind` or labels); None keeps all.
        """
        i = schema.interactions.c
        query = sa.select(
            i.user_id, i.item_id, i.kind, i.value, i.timestamp, i.value_kind
        ).order_by(i.user_id, i.item_id, i.timestamp, i.kind)
        if kinds is not None:
            labels = [_kind_label(k) for k in kinds]
            query = query.where(i.kind.in_(labels))
        with self.engine.connect() as conn:
            users, user_keys = self._account_map(conn)
            item_keys, item_ids = read_columns(
                conn,
                sa.select(schema.items.c.id, schema.items.c.external_id).order_by(
                    schema.items.c.id
                ),
                [np.int64, object],
            )
            user_id, item_id, kind, value, ts, value_kind = read_columns(
                conn, query, [np.int64, np.int64, object, object, np.int64, object]
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
            value_kind=_value_kind_codes(value_kind),
            timestamp=ts if n and ts.any() else None,
            one_sided=False,
            directed=True,
        )

    def account_names(self) -> tuple[np.ndarray, np.ndarray]:
        """Every account's external id and handle (None when none), in key order: the two
        columns of :meth:`accounts_frame` a training snapshot keeps, without the times."""
        a = schema.accounts.c
        with self.engine.connect() as conn:
            _, ids, handles = read_columns(
                conn,
                sa.select(a.id, a.external_id, a.handle).order_by(a.id),
                [np.int64, object, object],
            )
        return ids, handles

    def accounts_frame(self) -> pd.DataFrame:
        """All accounts: ``external_id, handle, created_at, updated_at``."""
        return pd.concat(
            list(self.iter_frames("accounts")) or [_empty("accounts")], ignore_index=True
        )

    def items_frame(self) -> pd.DataFrame:
        """All items: ``external_id, title, author, created_at, features`` (dicts)."""
        frame = pd.concat(list(self.iter_frames("items")) or [_empty("items")], ignore_index=True)
        frame["features"] = [
            json.loads(f) if isinstance(f, str) and f.strip() else None for f in frame["features"]
        ]
        return frame

    def iter_frames(self, what: TableName, chunk_rows: int = READ_BATCH) -> Iterator[pd.DataFrame]:
        """Stream a table with external ids, in key order, ``chunk_rows`` rows at a time.

        Columns: ``follows`` -> ``src, dst, created_at, seen_at`` (active edges);
        ``events`` -> ``src, dst, ts`` (one row per event); ``interactions``
        -> ``user, item, kind, value, value_kind, timestamp``; ``accounts`` ->
        ``external_id, handle, created_at, updated_at``; ``items`` ->
        ``external_id, title, author, created_at, features`` (JSON text).
        Missing times are None (interaction timestamps: 0). Every column is
        object dtype holding Python values and None for NULL, never NaN (pandas 3
        would otherwise turn a text column with a NULL into ``str`` with NaN).
        """
        query, columns = _export_query(what)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(query)
            for rows in result.partitions():
                frame = _object_frame(rows, columns)
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
            upsert_rows(
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
            upsert_rows(
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
            for batch in batches([str(u) for u in users], WRITE_BATCH):
                out.update((row[0], row[1]) for row in conn.execute(query, {"users": list(batch)}))
        return out


def _object_frame(rows: Sequence[Sequence[object]], columns: list[str]) -> pd.DataFrame:
    """Rows as a frame of object columns (Python values, None for NULL), built column by
    column: ``pd.DataFrame(rows)`` asks each SQLAlchemy row for attributes it lacks (an
    exception raised and caught twice a row, half of a 10^6-account read)."""
    values = list(zip(*rows, strict=True)) or [()] * len(columns)
    data = {}
    for name, column in zip(columns, values, strict=True):
        array = np.empty(len(column), dtype=object)
        array[:] = column
        data[name] = array
    return pd.DataFrame(data, columns=columns, dtype=object, copy=False)


def _check_list_name(name: str) -> None:
    if not name or len(name) > schema.CANDIDATE_LIST_NAME_LENGTH:
        raise InputError(
            f"a candidate list name has 1 to {schema.CANDIDATE_LIST_NAME_LENGTH} characters",
            field="name",
        )


def _empty(what: TableName) -> pd.DataFrame:
    return pd.DataFrame(columns=_export_query(what)[1], dtype=object)


def _value_kind_codes(labels: np.ndarray) -> np.ndarray:
    """:class:`ValueKind` codes of stored labels (NULL or unknown: none)."""
    codes = {v.label: int(v) for v in ValueKind}
    return np.fromiter((codes.get(label, 0) for label in labels), dtype=np.int8, count=len(labels))


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
            sa.select(
                a.c.external_id,
                it.c.external_id,
                i.c.kind,
                i.c.value,
                i.c.value_kind,
                i.c.timestamp,
            )
            .select_from(i.join(a, i.c.user_id == a.c.id).join(it, i.c.item_id == it.c.id))
            .order_by(i.c.user_id, i.c.item_id, i.c.timestamp, i.c.kind)
        )
        return query, ["user", "item", "kind", "value", "value_kind", "timestamp"]
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


__all__ = [
    "COUNTED",
    "NO_TIME",
    "FollowChunk",
    "TABLE_NAMES",
    "Store",
    "StoreBusyError",
    "StoreError",
    "TableName",
    "Writer",
    "create_engine",
    "upsert_rows",
]
