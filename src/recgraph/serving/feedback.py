"""Feedback the service writes to the store, and reads back to exclude from answers.

Writes go through :meth:`Store.writer` (idempotent upserts). A user may be
new (a cold-start user's first like creates the account), but what the user
acts on must already be in the store: an unknown item or followed account is
refused with :class:`UnknownIdError` and nothing is written, since a typo
would otherwise become an empty item row that training then has to read.
Reads are two small, parameterised, indexed queries per
request: the items a user has any interaction with, and the accounts a user
follows. They catch what arrived after the served model was trained, so a
liked post leaves the feed at once rather than at the next training run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recgraph.data import schema
from recgraph.data.store import Store
from recgraph.data.writer import Writer
from recgraph.errors import RecgraphError

#: Most rows read back per user and request (a bound on the request's cost).
MAX_HISTORY_ROWS = 20_000
#: Printable text without control characters, as ids are stored.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
#: Latest accepted timestamp: the end of year 9999 (times are unix seconds).
MAX_TIMESTAMP = 253_402_300_799


class UnknownIdError(RecgraphError, LookupError):
    """Feedback names an item or account that the store does not hold."""


class _Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=schema.EXTERNAL_ID_LENGTH, pattern=ID_PATTERN)
    timestamp: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TIMESTAMP,
        description="Unix seconds (default: now).",
    )

    @field_validator("timestamp", mode="before", check_fields=False)
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        return _json_number(value)


def _json_number(value: Any) -> Any:
    """Refuse numbers written as text or booleans (JSON Schema's integer/number are neither)."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number, not text or a boolean")
    return value


class ItemFeedback(_Feedback):
    """A user liked, disliked or viewed an item."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user": "did:plc:alice", "kind": "like", "item": "post:1"}]
        }
    )

    kind: Literal["like", "dislike", "view"]
    item: str = Field(min_length=1, max_length=schema.EXTERNAL_ID_LENGTH, pattern=ID_PATTERN)
    value: float | None = Field(
        default=None, allow_inf_nan=False, ge=-1e9, le=1e9, description="A rating or weight."
    )

    @field_validator("value", mode="before")
    @classmethod
    def _value_is_a_number(cls, value: Any) -> Any:
        return _json_number(value)


class FollowFeedback(_Feedback):
    """A user followed an account."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user": "alice.bsky.social", "kind": "follow", "account": "bob.bsky.social"}
            ]
        }
    )

    kind: Literal["follow"]
    account: str = Field(min_length=1, max_length=schema.EXTERNAL_ID_LENGTH, pattern=ID_PATTERN)


#: One piece of feedback; ``kind`` says which shape (so the OpenAPI schema is exact).
FeedbackEvent = Annotated[ItemFeedback | FollowFeedback, Field(discriminator="kind")]


class FeedbackStore:
    """The store as the service sees it: feedback in, recent history out."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._directed: bool | None = None
        self._compiled: dict[tuple[int, str], sa.engine.Compiled] = {}
        self._among: dict[tuple[str, int], sa.Select] = {}

    def directed(self) -> bool | None:
        """Whether the follow graph is directed (None before any follow); fixed once known."""
        if self._directed is None:
            self._directed = self.store.follows_directed()
        return self._directed

    def close(self) -> None:
        self.store.close()

    def write(
        self, events: Sequence[ItemFeedback | FollowFeedback], *, now: int | None = None
    ) -> dict[str, int]:
        """Write ``events`` in one transaction; return rows written per table."""
        now = int(time.time()) if now is None else now
        follows = [e for e in events if isinstance(e, FollowFeedback)]
        others = [e for e in events if isinstance(e, ItemFeedback)]
        written = {"interactions": 0, "follows": 0}
        directed = self.directed()
        with self.store.writer() as writer:
            # checked inside the write transaction: nothing can remove them before the write
            _require_known(writer, schema.items, "item", {e.item for e in others})
            _require_known(writer, schema.accounts, "account", {e.account for e in follows})
            if others:
                written["interactions"] = writer.interactions(
                    pd.DataFrame(
                        {
                            "user": [e.user for e in others],
                            "item": [e.item for e in others],
                            "kind": [e.kind for e in others],
                            "value": [e.value for e in others],
                            "timestamp": [
                                now if e.timestamp is None else e.timestamp for e in others
                            ],
                        }
                    )
                )
            if follows:
                written["follows"] = writer.follows(
                    pd.DataFrame(
                        {
                            "src": [e.user for e in follows],
                            "dst": [e.account for e in follows],
                            "created_at": [
                                now if e.timestamp is None else e.timestamp for e in follows
                            ],
                        }
                    ),
                    directed=True if directed is None else directed,
                )
        return written

    def items_of(self, user: str, limit: int = MAX_HISTORY_ROWS) -> list[str]:
        """External ids of the items ``user`` has any interaction with (dislikes included)."""
        return self._column(_ITEMS_OF, {"who": user, "limit": limit})

    def follows_of(self, account: str, limit: int = MAX_HISTORY_ROWS) -> list[str]:
        """External ids of the accounts ``account`` follows (either end of a friendship)."""
        # a friendship is stored once: on an undirected graph the account may be either end
        query = _FRIENDS_OF if self.directed() is False else _FOLLOWS_OF
        return self._column(query, {"who": account, "limit": limit})

    def follows_among(self, account: str, candidates: Sequence[str]) -> list[str]:
        """Which of ``candidates`` ``account`` follows now (either end of a friendship).

        What a suggestions request asks instead of :meth:`follows_of`: its cost
        is bounded by the answer's length (primary-key lookups), not by the
        user's follow list, which on a large graph runs to thousands.
        """
        return self._among_column(
            "friends" if self.directed() is False else "follows", account, candidates
        )

    def items_among(self, user: str, candidates: Sequence[str]) -> list[str]:
        """Which of ``candidates`` ``user`` has any interaction with (dislikes included).

        What a feed request asks instead of :meth:`items_of`, for the same
        reason as :meth:`follows_among`: a probe of the interactions' primary
        key per result, not a read of the user's whole history.
        """
        return self._among_column("items", user, candidates)

    def _among_column(self, kind: str, who: str, candidates: Sequence[str]) -> list[str]:
        """``kind``'s (``follows``, ``friends``, ``items``) ``candidates`` that ``who`` has."""
        if not candidates:
            return []
        if len(candidates) > MAX_AMONG:
            with self.store.engine.connect() as conn:
                values = {"who": who, "among": list(candidates)}
                return list(conn.execute(_AMONG[kind], values).scalars())
        # asked on every answer request: one statement per length, through _column
        key = (kind, len(candidates))
        statement = self._among.get(key)
        # setdefault: two threads racing compile the one kept (_column's key is its id)
        if statement is None:
            statement = self._among.setdefault(key, _among_queries(len(candidates))[kind])
        values = {"who": who, **{f"among_{i}": c for i, c in enumerate(candidates)}}
        return self._column(statement, values)

    def _column(self, statement: sa.Executable, values: dict[str, Any]) -> list[str]:
        """The first column of ``statement``'s rows, through the driver's own cursor.

        Run on every request, for hundreds of rows: SQLAlchemy's result rows
        cost more than the query. The statement is compiled once per dialect
        and still bound by the driver (never formatted into the SQL text).
        """
        engine = self.store.engine
        key = (id(statement), engine.dialect.name)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = statement.compile(dialect=engine.dialect)
        params = compiled.construct_params(values)
        args: Any = (
            tuple(params[name] for name in compiled.positiontup or ())
            if compiled.positional
            else params
        )
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(str(compiled), args)
                return [row[0] for row in cursor.fetchall()]
            finally:
                cursor.close()
        finally:
            raw.close()


def _require_known(writer: Writer, table: sa.Table, noun: str, external_ids: set[str]) -> None:
    """Raise :class:`UnknownIdError` naming the first of ``external_ids`` not in ``table``."""
    if not external_ids:
        return
    found = {
        row[0]
        for row in writer.conn.execute(
            sa.select(table.c.external_id).where(table.c.external_id.in_(sorted(external_ids)))
        )
    }
    missing = sorted(external_ids - found)
    if not missing:
        return
    how = (
        "import items (recgraph import items, or recgraph import interactions) or let the "
        "Telegram bot collect them"
        if noun == "item"
        else "import them (recgraph import edges or recgraph import accounts) or crawl them "
        "(recgraph crawl bluesky)"
    )
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise UnknownIdError(
        f"unknown {noun} {missing[0]!r}{more}: the store has no such {noun}, so the feedback "
        f"was not written; {how} first"
    )


def _history_queries() -> tuple[sa.Select, sa.Select, sa.CompoundSelect]:
    """The three read statements, built once (building a statement costs more than running it)."""
    i, it, a = schema.interactions.c, schema.items.c, schema.accounts.c
    who, limit = sa.bindparam("who"), sa.bindparam("limit")
    items_of = (
        sa.select(it.external_id)
        .select_from(
            schema.interactions.join(schema.items, i.item_id == it.id).join(
                schema.accounts, i.user_id == a.id
            )
        )
        .where(a.external_id == who)
        .limit(limit)
    )
    f = schema.follows.c
    source = schema.accounts.alias("source")
    target = schema.accounts.alias("target")
    joined = schema.follows.join(source, f.source_id == source.c.id).join(
        target, f.target_id == target.c.id
    )
    outgoing = (
        sa.select(target.c.external_id)
        .select_from(joined)
        .where(source.c.external_id == who, f.removed_at.is_(None))
    )
    incoming = (
        sa.select(source.c.external_id)
        .select_from(joined)
        .where(target.c.external_id == who, f.removed_at.is_(None))
    )
    return items_of, outgoing.limit(limit), sa.union_all(outgoing, incoming).limit(limit)


_ITEMS_OF, _FOLLOWS_OF, _FRIENDS_OF = _history_queries()


def _among_queries(n: int | None = None) -> dict[str, sa.Select]:
    """Which of ``among`` (an expanding ``IN``; with ``n``, the ``n`` parameters ``among_0``,
    ``among_1``, ...) ``who`` has: by kind, the accounts ``who`` follows (``follows``) or is
    friends with (``friends``), the items ``who`` has any interaction with (``items``).

    Written as a primary-key probe per candidate (``EXISTS`` on ``(source, target)`` or
    ``(user, item)``): a join lets SQLite walk a popular candidate's followers by the
    target index instead.
    """
    who = sa.bindparam("who")
    among: Any = (
        sa.bindparam("among", expanding=True)
        if n is None
        else [sa.bindparam(f"among_{i}") for i in range(n)]
    )
    f, a, i, it = schema.follows.c, schema.accounts.c, schema.interactions.c, schema.items.c
    asker = (
        sa.select(schema.accounts.c.id).where(schema.accounts.c.external_id == who)
    ).scalar_subquery()

    def follow(source: Any, target: Any) -> Any:
        return (
            sa.select(sa.literal(1))
            .select_from(schema.follows)
            .where(f.source_id == source, f.target_id == target, f.removed_at.is_(None))
            .exists()
        )

    had = (
        sa.select(sa.literal(1))
        .select_from(schema.interactions)
        .where(i.user_id == asker, i.item_id == it.id)
        .exists()
    )
    candidates = sa.select(a.external_id).where(a.external_id.in_(among))
    return {
        "follows": candidates.where(follow(asker, a.id)),
        "friends": candidates.where(sa.or_(follow(asker, a.id), follow(a.id, asker))),
        "items": sa.select(it.external_id).where(it.external_id.in_(among), had),
    }


_AMONG = _among_queries()
#: Longest candidate list asked with a statement of its own length (longer: the expanding one).
MAX_AMONG = 100


# ---------------------------------------------------------------------- the walks' overlay
def show_to_walks(pipeline: Any, events: Sequence[ItemFeedback | FollowFeedback]) -> int:
    """Put new follows and likes in the overlay of every served walk model; return edges added.

    GraphJet's way: the trained graph stays read-only and memory-mapped, and
    what arrived since (``POST /v1/feedback``, the crawler) is walked from a
    small in-memory overlay until the next training folds it in. Models
    without an overlay (``observe``) are left alone; a dislike is no edge.
    """
    added = 0
    for event in events:
        if isinstance(event, FollowFeedback):
            question, src, dst = "who_to_follow", event.user, event.account
        elif event.kind != "dislike":
            question, src, dst = "feed", event.user, event.item
        else:
            continue
        added += sum(model.observe([src], [dst]) for model in _walkers(pipeline, question))
    return added


def _walkers(pipeline: Any, question: str) -> list[Any]:
    """The fitted models of ``question`` that walk an overlay (they have ``observe``)."""
    models = getattr(getattr(pipeline, "questions", {}).get(question), "models", {})
    return [m for m in models.values() if getattr(m, "observe", None) and m.is_fitted]


def catch_up_overlay(pipeline: Any, store: Store, since: int | None = None) -> int:
    """Show the walks every follow and like the store got since the pipeline was trained (the
    crawler's, another worker's), or since ``since`` (unix seconds) when that is later.

    One scan of the follows and interactions tables (no index on the times):
    run it when a version is loaded and every few tens of seconds, not per
    request. Edges the walks already have are not added twice.
    """
    from datetime import datetime

    from recgraph.data.graph_overlay import recent_follows, recent_likes

    trained_at = getattr(pipeline, "trained_at", None)
    if not trained_at:
        return 0
    start = int(datetime.fromisoformat(trained_at.replace("Z", "+00:00")).timestamp())
    start = max(start, since or start)
    added = 0
    for question, recent in (("who_to_follow", recent_follows), ("feed", recent_likes)):
        walkers = _walkers(pipeline, question)
        if not walkers:
            continue
        src, dst = recent(store, start)
        if len(src):
            added += sum(model.observe(list(src), list(dst)) for model in walkers)
    return added
