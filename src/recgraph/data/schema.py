"""The SQL schema of the store, in SQLAlchemy Core, portable to SQLite, MariaDB and PostgreSQL.

One :data:`metadata` object holds every table so later parts (the crawlers)
can add theirs to it and ``Store`` creates them all.

Conventions, chosen so that the same statements work on all three backends:

- every time is an integer of unix seconds (``BigInteger``): no time zones,
  and the same numbers :class:`~recgraph.data.interactions.Interactions`
  carries;
- external ids are strings of at most :data:`EXTERNAL_ID_LENGTH` characters,
  compared byte for byte (``utf8mb4_bin`` on MariaDB, whose default collation
  would make ``"Alice"`` and ``"alice"`` collide); the store assigns the
  integer keys;
- ``interactions.value_kind`` says what ``value`` means for that row
  (``rating``, ``count``, ``weight`` or ``none``), as the import declared it
  (``--value``), so a play count is never read as a rating;
- ``interactions.timestamp`` is ``0`` when the source has no time: it is part
  of the natural (and primary) key ``(user_id, item_id, kind, timestamp)`` that makes
  re-imports idempotent, and a NULL in a unique key would let MariaDB and
  SQLite keep duplicates;
- an undirected friendship is stored once, with ``source_id < target_id``;
- ``edge_events`` keeps every timestamped event of a temporal edge list;
  ``count`` is how many identical ``(source, target, ts)`` events the last
  import that held it contained (CollegeMsg repeats some messages within one
  second), and ``batch`` tags the write transaction so that chunks of one
  import add up while a re-import replaces instead of doubling.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

#: Longest external id (DIDs are ~32 characters, handles at most 253).
EXTERNAL_ID_LENGTH = 255

#: Bumped when a table changes shape; stored in ``meta`` as ``schema_version``.
#: 2: ``interactions.value_kind`` (what each value means). :data:`UPGRADES` says how
#: an older store is brought up to date (``recgraph db upgrade``).
SCHEMA_VERSION = 2

#: The kinds an interaction row may have.
INTERACTION_KIND_LABELS = ("like", "dislike", "view", "rating")
#: What an interaction's value may mean (:class:`~recgraph.data.interactions.ValueKind`).
VALUE_KIND_LABELS = ("none", "rating", "count", "weight")

#: Longest name of a published candidate list (it is part of a ``meta`` key).
CANDIDATE_LIST_NAME_LENGTH = 40

#: Table options every table takes (InnoDB, utf8mb4 on MariaDB); pass as ``**MYSQL_TABLE``.
MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
_MYSQL_TABLE = MYSQL_TABLE
#: The tables keyed by their natural key (follows, edge events, interactions) are also
#: ``WITHOUT ROWID`` on SQLite: the rows live in the primary key's own B-tree, as they do
#: in InnoDB, instead of in a rowid table plus a copy of every key in a separate index, so
#: each row is written once. Stores made before keep their rowid tables, which work the
#: same; ``recgraph db upgrade`` rebuilds them (:data:`SQLITE_REBUILT`).
NATURAL_KEY_TABLE = {**MYSQL_TABLE, "sqlite_with_rowid": False}


def external_id_type() -> sa.types.TypeEngine:
    """A case-sensitive string key on every backend."""
    return sa.String(EXTERNAL_ID_LENGTH).with_variant(
        mysql.VARCHAR(EXTERNAL_ID_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"),
        "mysql",
        "mariadb",
    )


def key_type() -> sa.types.TypeEngine:
    """Integer keys: BIGINT on servers, INTEGER on SQLite so that it autoincrements.

    Tables added by other parts use it for columns that reference ``accounts.id``
    or ``items.id``.
    """
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


_key = key_type
_external_id = external_id_type


def reference(name: str, table: str, *, key: bool = True, **options) -> sa.Column:
    """A column pointing at ``table.id`` that goes when its row goes (``ON DELETE CASCADE``).

    ``key``: part of the table's primary key (the natural key of an edge or an
    interaction); otherwise ``options`` go to the column (``nullable=False``).
    """
    if key:
        options["primary_key"] = True
    return sa.Column(name, key_type(), sa.ForeignKey(f"{table}.id", ondelete="CASCADE"), **options)


metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", key_type(), primary_key=True, autoincrement=True),
    sa.Column("external_id", external_id_type(), nullable=False, unique=True),
    sa.Column("handle", sa.String(EXTERNAL_ID_LENGTH), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False, doc="first stored, unix seconds"),
    sa.Column("updated_at", sa.BigInteger, nullable=False, doc="handle last changed"),
    **MYSQL_TABLE,
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", key_type(), primary_key=True, autoincrement=True),
    sa.Column("external_id", external_id_type(), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column(
        "author_id",
        key_type(),
        sa.ForeignKey("accounts.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    sa.Column("created_at", sa.BigInteger, nullable=True, doc="posted, unix seconds"),
    sa.Column("features", sa.Text, nullable=True, doc="JSON object"),
    **MYSQL_TABLE,
)

follows = sa.Table(
    "follows",
    metadata,
    reference("source_id", "accounts"),
    reference("target_id", "accounts"),
    sa.Column("created_at", sa.BigInteger, nullable=True, doc="earliest known, unix seconds"),
    sa.Column("seen_at", sa.BigInteger, nullable=True, doc="latest observation, unix seconds"),
    sa.Column("removed_at", sa.BigInteger, nullable=True, doc="unfollowed; NULL while active"),
    sa.Index("ix_follows_target", "target_id"),
    **NATURAL_KEY_TABLE,
)

edge_events = sa.Table(
    "edge_events",
    metadata,
    reference("source_id", "accounts"),
    reference("target_id", "accounts"),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer, nullable=False, default=1),
    sa.Column("batch", sa.BigInteger, nullable=False, default=0),
    **NATURAL_KEY_TABLE,
)

interactions = sa.Table(
    "interactions",
    metadata,
    # The natural key is the primary key: no surrogate id, one index fewer to maintain.
    reference("user_id", "accounts"),
    reference("item_id", "items"),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("value", sa.Double, nullable=True, doc="rating, count or weight; NULL means 1"),
    sa.Column("timestamp", sa.BigInteger, primary_key=True, autoincrement=False, doc="0 = no time"),
    sa.Column(
        "value_kind",
        sa.String(8),
        nullable=False,
        server_default="none",
        doc="what value means: none, rating, count or weight",
    ),
    sa.CheckConstraint(
        "kind IN ('like', 'dislike', 'view', 'rating')", name="ck_interactions_kind"
    ),
    sa.CheckConstraint(
        "value_kind IN ('none', 'rating', 'count', 'weight')", name="ck_interactions_value_kind"
    ),
    sa.Index("ix_interactions_item", "item_id"),
    **NATURAL_KEY_TABLE,
)

candidate_lists = sa.Table(
    "candidate_lists",
    metadata,
    # Materialised candidates for serving (``recgraph candidates --publish store``): one row per
    # user and version of a named list; the current version of each name is in ``meta``.
    sa.Column("name", sa.String(CANDIDATE_LIST_NAME_LENGTH), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", external_id_type(), primary_key=True, doc="the user's external id"),
    sa.Column(
        "payload",
        sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
        nullable=False,
        doc="JSON: the ranked candidates with scores and sources",
    ),
    **MYSQL_TABLE,
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    **MYSQL_TABLE,
)

# ---------------------------------------------------------------------- telegram bot
telegram_subscribers = sa.Table(
    "telegram_subscribers",
    metadata,
    sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
    reference("account_id", "accounts", key=False, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("subscribed_at", sa.BigInteger, nullable=False, doc="latest /start, unix seconds"),
    sa.Column("unsubscribed_at", sa.BigInteger, nullable=True),
    sa.Column("last_delivered_at", sa.BigInteger, nullable=True),
    sa.Column("delivered", sa.Integer, nullable=False, default=0),
    **MYSQL_TABLE,
)

#: One row per post offered to a chat: the claim (``sending``) is written before the
#: send, so a post is never picked twice for a chat; ``sent`` after the answer;
#: ``unknown`` when the answer was lost (counted as delivered, never sent again);
#: ``failed`` when Telegram refused it for that chat.
telegram_deliveries = sa.Table(
    "telegram_deliveries",
    metadata,
    sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("item", _external_id(), primary_key=True),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False, doc="unix seconds (fractional)"),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("message_ids", sa.Text, nullable=True, doc="JSON list of the copies' ids"),
    sa.Index("ix_telegram_deliveries_state", "state"),
    **MYSQL_TABLE,
)

#: The messages of an album (one ``media_group_id``), stored as one post.
telegram_albums = sa.Table(
    "telegram_albums",
    metadata,
    sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("media_group_id", sa.String(64), primary_key=True),
    sa.Column("item", _external_id(), nullable=False),
    sa.Column("message_ids", sa.Text, nullable=False, doc="JSON list, increasing"),
    **MYSQL_TABLE,
)

#: Statements that bring a store of version ``v`` to ``v + 1``, run in order in one
#: transaction by :meth:`recgraph.data.store.Store.upgrade`; the same SQL on all backends.
UPGRADES: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE interactions ADD COLUMN value_kind VARCHAR(8) NOT NULL DEFAULT 'none'",
        "UPDATE interactions SET value_kind = 'rating' WHERE kind = 'rating'",
    ),
}

#: Tables that are ``WITHOUT ROWID`` on SQLite (:data:`NATURAL_KEY_TABLE`); an older SQLite
#: store that holds them as rowid tables has them rebuilt by ``recgraph db upgrade``
#: (:func:`recgraph.data.sql.rebuild_rowid_tables`). The rows, keys and schema version stay.
SQLITE_REBUILT = (follows, edge_events, interactions)

#: Keys of the ``meta`` table.
META_SCHEMA_VERSION = "schema_version"
META_FOLLOWS_DIRECTED = "follows_directed"
#: ``meta`` key prefix of the current version of each candidate list (``candidate_lists.NAME``).
META_CANDIDATE_LISTS = "candidate_lists."

__all__ = [
    "CANDIDATE_LIST_NAME_LENGTH",
    "EXTERNAL_ID_LENGTH",
    "INTERACTION_KIND_LABELS",
    "META_CANDIDATE_LISTS",
    "META_FOLLOWS_DIRECTED",
    "META_SCHEMA_VERSION",
    "MYSQL_TABLE",
    "NATURAL_KEY_TABLE",
    "SCHEMA_VERSION",
    "SQLITE_REBUILT",
    "UPGRADES",
    "VALUE_KIND_LABELS",
    "accounts",
    "candidate_lists",
    "edge_events",
    "external_id_type",
    "follows",
    "interactions",
    "items",
    "key_type",
    "meta",
    "metadata",
    "telegram_albums",
    "telegram_deliveries",
    "telegram_subscribers",
]
