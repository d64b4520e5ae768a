"""Feedback the service writes to the store, and reads back to exclude from answers.

Writes go through :meth:`Store.writer` (idempotent upserts; unknown users and
items are created). Reads are two small, parameterised, indexed queries per
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

#: Most rows read back per user and request (a bound on the request's cost).
MAX_HISTORY_ROWS = 20_000
#: Printable text without control characters, as ids are stored.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
#: Latest accepted timestamp: the end of year 9999 (times are unix seconds).
MAX_TIMESTAMP = 253_402_300_799


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
        with self.store.engine.connect() as conn:
            rows = conn.execute(_ITEMS_OF, {"who": user, "limit": limit})
            return [row[0] for row in rows]

    def follows_of(self, account: str, limit: int = MAX_HISTORY_ROWS) -> list[str]:
        """External ids of the accounts ``account`` follows (either end of a friendship)."""
        # a friendship is stored once: on an undirected graph the account may be either end
        query = _FRIENDS_OF if self.directed() is False else _FOLLOWS_OF
        with self.store.engine.connect() as conn:
            rows = conn.execute(query, {"who": account, "limit": limit})
            return [row[0] for row in rows]


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
