"""The Telegram feed bot's durable state, as writes inside one store transaction.

Every function that changes something takes a :class:`~recgraph.data.writer.Writer`
(``with store.writer() as w:``), so that a handler's effects and the record
that its update was handled commit together; the readers take a connection.

What is kept (tables in :mod:`recgraph.data.schema`):

- ``telegram_subscribers``: who gets a post every interval;
- ``telegram_deliveries``: each post offered to a chat, claimed (``sending``)
  *before* it is sent and settled after: ``sent``; ``unknown`` when the answer
  was lost (counted as delivered and never sent again); ``failed`` when
  Telegram refused it for that chat (never offered to it again). A send that
  certainly did not arrive is released (its row deleted) and may be tried again;
- ``telegram_albums``: the messages of an album (one ``media_group_id``) that
  make one post;
- ``meta`` key ``telegram.offset.<bot id>``: the last update handled.

Posts are items ``tg:<channel id>:<message id>`` (an album: its first
message's id), with nothing of their content; deliveries and 👍/👎 are
interactions (``view``, ``like``, ``dislike``) as for every other source.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import sqlalchemy as sa

from recgraph.data import schema
from recgraph.data.sql import get_meta, upsert_rows
from recgraph.data.writer import Writer
from recgraph.errors import InputError

if TYPE_CHECKING:
    from recgraph.data.store import Store

T = TypeVar("T")

LIKE, DISLIKE, VIEW = "like", "dislike", "view"
#: States of a ``telegram_deliveries`` row.
SENDING, SENT, UNKNOWN, FAILED = "sending", "sent", "unknown", "failed"
OFFSET_KEY = "telegram.offset."

_subs = schema.telegram_subscribers.c
_deliveries = schema.telegram_deliveries.c
_albums = schema.telegram_albums.c


# ---------------------------------------------------------------------- running
def write(store: Store, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(writer, *args, **kwargs)`` in one transaction of ``store``."""
    with store.writer() as w:
        return fn(w, *args, **kwargs)


def read(store: Store, fn: Callable[..., T], *args: Any) -> T:
    """``fn(connection, *args)`` on ``store``."""
    with store.engine.connect() as conn:
        return fn(conn, *args)


# ---------------------------------------------------------------------- ids
def chat_account(chat_id: int) -> str:
    """External account id of a Telegram chat (user or channel): ``tg:<id>``."""
    return f"tg:{int(chat_id)}"


def post_item(channel_id: int, message_id: int) -> str:
    """External item id of a channel post: ``tg:<channel id>:<message id>``."""
    return f"tg:{int(channel_id)}:{int(message_id)}"


def parse_post_item(item: str) -> tuple[int, int]:
    """``(channel id, message id)`` of a post item id; InputError when it is not one."""
    parts = item.split(":")
    if len(parts) != 3 or parts[0] != "tg":
        raise InputError(
            f"{item!r} is not a Telegram post id (tg:<channel>:<message>)", field="item"
        )
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        raise InputError(f"{item!r} is not a Telegram post id", field="item") from None


# ---------------------------------------------------------------------- updates
#: Telegram numbers updates at random again after a week without any: an older
#: offset says nothing about the next update's id.
OFFSET_MAX_AGE_SECONDS = 6 * 86400


def handled_offset(
    conn: sa.Connection,
    bot_id: str,
    *,
    now: float | None = None,
    max_age: float = OFFSET_MAX_AGE_SECONDS,
) -> int | None:
    """The ``update_id`` of the last update the bot handled, or None.

    None before the first update, and when it was handled more than
    ``max_age`` seconds ago (then the ids that follow may be lower).
    """
    value = get_meta(conn, OFFSET_KEY + bot_id)
    if value is None:
        return None
    update_id, _, at = value.partition(" ")
    now = time.time() if now is None else now
    if at and now - float(at) > max_age:
        return None
    return int(update_id)


def set_handled(w: Writer, bot_id: str, update_id: int, now: float | None = None) -> None:
    """Record that update ``update_id`` (and every earlier one) was handled, and when."""
    now = time.time() if now is None else now
    w.set_meta(OFFSET_KEY + bot_id, f"{int(update_id)} {int(now)}")


# ---------------------------------------------------------------------- subscribers
def subscribe(w: Writer, chat_id: int, handle: str | None = None, now: float | None = None) -> bool:
    """Subscribe ``chat_id``; return whether it was not subscribed before."""
    now = int(time.time() if now is None else now)
    # a write first: on SQLite a transaction that reads before it writes fails at
    # once when another thread committed in between
    w.accounts(pd.DataFrame({"external_id": [chat_account(chat_id)], "handle": [handle]}))
    key = int(w.account_keys([chat_account(chat_id)])[0])
    was_active = w.conn.execute(
        sa.select(_subs.active).where(_subs.chat_id == int(chat_id))
    ).scalar()
    upsert_rows(
        w.conn,
        w.dialect,
        schema.telegram_subscribers,
        ["chat_id"],
        [
            {
                "chat_id": int(chat_id),
                "account_id": key,
                "active": True,
                "subscribed_at": now,
                "unsubscribed_at": None,
                "delivered": 0,
            }
        ],
        [
            ("active", lambda new, old: new("active")),
            ("subscribed_at", lambda new, old: new("subscribed_at")),
            ("unsubscribed_at", lambda new, old: sa.null()),
        ],
    )
    return not was_active


def unsubscribe(w: Writer, chat_id: int, now: float | None = None) -> bool:
    """Unsubscribe ``chat_id``; return whether it was subscribed."""
    now = int(time.time() if now is None else now)
    result = w.conn.execute(
        sa.update(schema.telegram_subscribers)
        .where(_subs.chat_id == int(chat_id), _subs.active.is_(True))
        .values(active=False, unsubscribed_at=now)
    )
    return result.rowcount > 0


def subscribers(conn: sa.Connection) -> list[int]:
    """Chat ids of active subscribers, oldest subscription first."""
    rows = conn.execute(
        sa.select(_subs.chat_id)
        .where(_subs.active.is_(True))
        .order_by(_subs.subscribed_at, _subs.chat_id)
    )
    return [int(r[0]) for r in rows]


def is_subscribed(conn: sa.Connection, chat_id: int) -> bool:
    return bool(conn.execute(sa.select(_subs.active).where(_subs.chat_id == int(chat_id))).scalar())


# ---------------------------------------------------------------------- posts
def record_post(
    w: Writer,
    channel_id: int,
    message_id: int,
    date: int,
    *,
    username: str | None = None,
    media_group_id: str | None = None,
) -> str:
    """Store a channel post as an item (ids and date only); return its item id.

    A message of an album whose post exists already joins that post instead.
    """
    features: dict = {"chat_id": int(channel_id), "message_id": int(message_id)}
    item = post_item(channel_id, message_id)
    if media_group_id is not None:
        group = str(media_group_id)
        where = (_albums.chat_id == int(channel_id)) & (_albums.media_group_id == group)
        w.accounts(pd.DataFrame({"external_id": [chat_account(channel_id)], "handle": [username]}))
        row = w.conn.execute(sa.select(_albums.item, _albums.message_ids).where(where)).first()
        if row is not None:
            ids = sorted(set(json.loads(row.message_ids)) | {int(message_id)})
            w.conn.execute(
                sa.update(schema.telegram_albums).where(where).values(message_ids=json.dumps(ids))
            )
            return str(row.item)
        w.conn.execute(
            sa.insert(schema.telegram_albums).values(
                chat_id=int(channel_id),
                media_group_id=group,
                item=item,
                message_ids=json.dumps([int(message_id)]),
            )
        )
        features["media_group_id"] = group
    w.accounts(pd.DataFrame({"external_id": [chat_account(channel_id)], "handle": [username]}))
    w.items(
        pd.DataFrame(
            {
                "external_id": [item],
                "author": [chat_account(channel_id)],
                "created_at": [int(date)],
                "features": [features],
            }
        )
    )
    return item


def post_messages(conn: sa.Connection, item: str) -> list[int]:
    """The message ids that make post ``item``: one, or an album's, increasing."""
    row = conn.execute(sa.select(_albums.message_ids).where(_albums.item == item)).first()
    if row is None:
        return [parse_post_item(item)[1]]
    return [int(m) for m in json.loads(row.message_ids)]


def mark_gone(w: Writer, item: str) -> None:
    """The post cannot be copied any more (deleted, or not a post): never offer it again."""
    channel_id, message_id = parse_post_item(item)
    i = schema.items.c
    w.items(pd.DataFrame({"external_id": [item]}))  # a write first (see subscribe)
    old = w.conn.execute(sa.select(i.features).where(i.external_id == item)).scalar()
    features = json.loads(old) if old else {"chat_id": channel_id, "message_id": message_id}
    features["gone"] = True
    w.items(pd.DataFrame({"external_id": [item], "features": [features]}))


# ---------------------------------------------------------------------- feedback
def record_feedback(
    w: Writer, user_id: int, item: str, kind: str, now: float | None = None
) -> None:
    """Store a like or dislike of ``item`` by ``user_id``; it replaces an earlier press."""
    if kind not in (LIKE, DISLIKE):
        raise InputError(f"feedback kind {kind!r} is not like or dislike", field="kind")
    parse_post_item(item)
    now = int(time.time() if now is None else now)
    i = schema.interactions.c
    w.accounts(pd.DataFrame({"external_id": [chat_account(user_id)]}))  # a write first
    user_key = int(w.account_keys([chat_account(user_id)])[0])
    item_key = int(w.item_keys([item])[0])
    w.conn.execute(
        sa.delete(schema.interactions).where(
            i.user_id == user_key, i.item_id == item_key, i.kind.in_([LIKE, DISLIKE])
        )
    )
    w.interactions(
        pd.DataFrame(
            {"user": [chat_account(user_id)], "item": [item], "kind": [kind], "timestamp": [now]}
        )
    )


# ---------------------------------------------------------------------- deliveries
def claim(w: Writer, chat_id: int, item: str, now: float | None = None) -> bool:
    """Claim ``item`` for ``chat_id`` before sending it; False when it was claimed before.

    The row's primary key ``(chat, item)`` makes the claim atomic across
    tasks and processes: two deliveries can never pick the same post.
    """
    now = time.time() if now is None else float(now)
    exists = w.conn.execute(
        sa.select(_deliveries.state).where(
            _deliveries.chat_id == int(chat_id), _deliveries.item == item
        )
    ).first()
    if exists is not None:
        return False
    try:
        with w.conn.begin_nested():
            w.conn.execute(
                sa.insert(schema.telegram_deliveries).values(
                    chat_id=int(chat_id), item=item, state=SENDING, claimed_at=now
                )
            )
    except sa.exc.IntegrityError:  # another process claimed it in between
        return False
    return True


def settle(
    w: Writer,
    chat_id: int,
    item: str,
    state: str,
    message_ids: Sequence[int] = (),
    now: float | None = None,
) -> None:
    """Settle a claimed delivery; the post is never offered to the chat again.

    ``sent`` and ``unknown`` (the answer was lost) are stored as a ``view``
    and count as delivered; ``failed`` (Telegram refused it for this chat) is not.
    """
    if state not in (SENT, UNKNOWN, FAILED):
        raise ValueError(f"a delivery settles as sent, unknown or failed, not {state!r}")
    now = time.time() if now is None else float(now)
    w.accounts(pd.DataFrame({"external_id": [chat_account(chat_id)]}))  # a write first
    if state != FAILED:
        w.interactions(
            pd.DataFrame(
                {
                    "user": [chat_account(chat_id)],
                    "item": [item],
                    "kind": [VIEW],
                    "timestamp": [int(now)],
                }
            )
        )
    w.conn.execute(
        sa.update(schema.telegram_deliveries)
        .where(_deliveries.chat_id == int(chat_id), _deliveries.item == item)
        .values(
            state=state,
            finished_at=now,
            message_ids=json.dumps([int(m) for m in message_ids]) if message_ids else None,
        )
    )
    if state != FAILED:
        w.conn.execute(
            sa.update(schema.telegram_subscribers)
            .where(_subs.chat_id == int(chat_id))
            .values(last_delivered_at=int(now), delivered=_subs.delivered + 1)
        )


def release(w: Writer, chat_id: int, item: str) -> None:
    """Forget a claim whose send certainly did not arrive (it may be offered again)."""
    w.conn.execute(
        sa.delete(schema.telegram_deliveries).where(
            _deliveries.chat_id == int(chat_id),
            _deliveries.item == item,
            _deliveries.state == SENDING,
        )
    )


def settle_pending(w: Writer, older_than: float) -> list[tuple[int, str]]:
    """Claims still ``sending`` since before ``older_than`` become ``unknown``; return them.

    Such a send was cut off (a crash, a lost answer): it may have arrived, so
    it is counted as delivered and never sent again (at most once).
    """
    rows = w.conn.execute(
        sa.select(_deliveries.chat_id, _deliveries.item).where(
            _deliveries.state == SENDING, _deliveries.claimed_at < older_than
        )
    ).all()
    for chat_id, item in rows:
        settle(w, int(chat_id), str(item), UNKNOWN)
    return [(int(c), str(i)) for c, i in rows]


def delivered_items(conn: sa.Connection, chat_ids: Sequence[int]) -> dict[int, set[str]]:
    """Per chat, every post claimed for it (in any state)."""
    out: dict[int, set[str]] = {int(c): set() for c in chat_ids}
    if not out:
        return out
    rows = conn.execute(
        sa.select(_deliveries.chat_id, _deliveries.item).where(_deliveries.chat_id.in_(list(out)))
    )
    for chat_id, item in rows:
        out[int(chat_id)].add(str(item))
    return out


def last_claim(conn: sa.Connection, chat_id: int) -> float | None:
    """Unix seconds of the latest claim for ``chat_id`` (None: never)."""
    value = conn.execute(
        sa.select(sa.func.max(_deliveries.claimed_at)).where(_deliveries.chat_id == int(chat_id))
    ).scalar()
    return None if value is None else float(value)


def deliveries(conn: sa.Connection) -> pd.DataFrame:
    """Every delivery row (chat_id, item, state, claimed_at, finished_at, message_ids)."""
    return pd.read_sql(sa.select(schema.telegram_deliveries), conn)


__all__ = [
    "DISLIKE",
    "FAILED",
    "LIKE",
    "OFFSET_MAX_AGE_SECONDS",
    "SENDING",
    "SENT",
    "UNKNOWN",
    "VIEW",
    "chat_account",
    "claim",
    "delivered_items",
    "deliveries",
    "handled_offset",
    "is_subscribed",
    "last_claim",
    "mark_gone",
    "parse_post_item",
    "post_item",
    "post_messages",
    "read",
    "record_feedback",
    "record_post",
    "release",
    "set_handled",
    "settle",
    "settle_pending",
    "subscribe",
    "subscribers",
    "unsubscribe",
    "write",
]
