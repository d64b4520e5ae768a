"""The Telegram feed bot: channel posts in, one recommended post per interval out, 👍/👎 back.

What it does (python-telegram-bot 22):

- ``/start`` subscribes the chat (and, by default, sends a first post at
  once: the cold-start pick); ``/stop`` unsubscribes it;
- ``channel_post`` updates of channels where the bot is an admin become
  items: ``tg:<channel id>:<message id>`` with the post's date and the channel
  as author, and nothing of the content (Telegram keeps that; the bot copies
  the message when it delivers it);
- every ``interval_minutes`` each subscriber gets the next recommended post by
  ``copyMessage`` from its source channel, with inline 👍 / 👎 buttons; a
  delivery is stored as a ``view`` interaction, so a post is never sent to the
  same chat twice;
- a button press stores a ``like`` or ``dislike`` (the latest press wins) and
  answers the callback query.

Recommendations come from any fitted
:class:`~recgraph.retrieval.base.Retriever` through
:func:`recgraph.retrieval.feed.recommend_feed`, which applies the feed rules:
cold start for chats with little feedback (item bias or popularity), never
what the chat already saw, liked or disliked. The model is, in order of
preference, one handed over with :meth:`FeedBot.set_model` (the scheduler's
training jobs do that), one loaded from ``model_dir`` (reloaded when it
changes), or one fitted on the store's likes and dislikes before each round
(``model``, ``popular`` by default). Posts newer than the model, which it
cannot rank, follow its picks newest first.

Sending respects Telegram's limits: about one message per second per chat
and 30 per second overall (:class:`SendThrottle`), and a 429's
``retry_after``. A chat that blocked the bot is unsubscribed; a post that
was deleted from its channel is marked gone and skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from recgraph.data import schema
from recgraph.data.interactions import Kind
from recgraph.data.schema import MYSQL_TABLE, key_type
from recgraph.data.store import Store, upsert_rows
from recgraph.errors import InputError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Which updates the bot asks Telegram for.
ALLOWED_UPDATES = ["message", "channel_post", "callback_query"]
LIKE, DISLIKE = "like", "dislike"
_BUTTONS = {LIKE: "👍", DISLIKE: "👎"}

telegram_subscribers = sa.Table(
    "telegram_subscribers",
    schema.metadata,
    sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column(
        "account_id", key_type(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("subscribed_at", sa.BigInteger, nullable=False, doc="latest /start, unix seconds"),
    sa.Column("unsubscribed_at", sa.BigInteger, nullable=True),
    sa.Column("last_delivered_at", sa.BigInteger, nullable=True),
    sa.Column("delivered", sa.Integer, nullable=False, default=0),
    **MYSQL_TABLE,
)


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


def button_data(kind: str, item: str) -> str:
    """``callback_data`` of a feedback button: ``like:<channel>:<message>`` (under 64 bytes)."""
    channel_id, message_id = parse_post_item(item)
    return f"{kind}:{channel_id}:{message_id}"


def parse_button_data(data: str) -> tuple[str, str] | None:
    """``(kind, item)`` from ``callback_data``, or None when it is not one of ours."""
    kind, _, rest = (data or "").partition(":")
    if kind not in _BUTTONS:
        return None
    try:
        channel_id, message_id = (int(x) for x in rest.split(":"))
    except ValueError:
        return None
    return kind, post_item(channel_id, message_id)


# ---------------------------------------------------------------------- config
class BotConfig(BaseModel):
    """The bot's settings.

    ``base_url`` is python-telegram-bot's (``http://host:port/bot``; the
    token is appended). ``cold_start_min_interactions`` and ``max_age_days``
    are the feed rules of :class:`recgraph.retrieval.feed.FeedConfig`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token: str
    base_url: str | None = None
    interval_minutes: float = Field(default=60.0, gt=0)
    model: str = "popular"
    model_params: dict[str, Any] = Field(default_factory=dict)
    model_dir: str | None = None
    cold_start_min_interactions: int = Field(default=5, ge=0)
    max_age_days: float | None = Field(default=None, gt=0)
    candidates: int = Field(default=5, ge=1, le=100)
    deliver_on_start: bool = True
    global_per_second: float = Field(default=30.0, gt=0)
    per_chat_seconds: float = Field(default=1.0, ge=0)
    max_send_retries: int = Field(default=3, ge=0)
    poll_timeout_seconds: float = Field(default=10.0, ge=0)


@dataclass
class DeliveryReport:
    """What one round did."""

    subscribers: int = 0
    delivered: int = 0
    nothing_left: int = 0
    blocked: int = 0
    gone_posts: int = 0
    retries: int = 0
    seconds: float = 0.0
    items: dict[int, str] = field(default_factory=dict)
    #: Posts found deleted this round (skipped for the remaining chats).
    gone: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------- throttle
class SendThrottle:
    """Telegram's flood limits on the sending side: per chat and overall.

    Each send reserves the earliest slot that is ``1 / per_second`` after the
    previous send and ``per_chat_seconds`` after the previous send to the same
    chat, then sleeps until it.
    """

    def __init__(
        self,
        per_second: float = 30.0,
        per_chat_seconds: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.spacing = 1.0 / per_second
        self.per_chat_seconds = per_chat_seconds
        self._clock = clock
        self._sleep = sleep
        self._next_any = 0.0
        self._last_in_chat: dict[int, float] = {}

    async def wait(self, chat_id: int) -> None:
        now = self._clock()
        slot = max(
            now,
            self._next_any,
            self._last_in_chat.get(chat_id, -np.inf) + self.per_chat_seconds,
        )
        self._next_any = slot + self.spacing
        self._last_in_chat[chat_id] = slot
        if slot > now:
            await self._sleep(slot - now)


def retry_after_seconds(exc: Exception) -> float:
    """Seconds of a ``RetryAfter`` (an int or a timedelta, depending on the PTB setting)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after  # type: ignore[attr-defined]
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


# ---------------------------------------------------------------------- the bot
class FeedBot:
    """The bot's logic on top of the store; the Telegram side is :meth:`build_application`.

    Parameters
    ----------
    store
        Where subscribers, posts, deliveries and feedback go.
    config
        A :class:`BotConfig` or its fields.
    model
        A fitted item retriever to start with (optional).
    """

    def __init__(self, store: Store, config: BotConfig | dict, model: Any | None = None) -> None:
        self.store = store
        self.config = config if isinstance(config, BotConfig) else BotConfig.model_validate(config)
        telegram_subscribers.create(store.engine, checkfirst=True)
        self.throttle = SendThrottle(self.config.global_per_second, self.config.per_chat_seconds)
        self._model = model
        self._model_external = model is not None
        self._model_stamp: float | None = None

    # ---------------------------------------------------------------- store side
    def subscribe(self, chat_id: int, handle: str | None = None, now: float | None = None) -> bool:
        """Subscribe ``chat_id``; return whether it was not subscribed before."""
        now = int(time.time() if now is None else now)
        s = telegram_subscribers.c
        with self.store.writer() as w:
            w.accounts(pd.DataFrame({"external_id": [chat_account(chat_id)], "handle": [handle]}))
            key = int(w.account_keys([chat_account(chat_id)])[0])
            was_active = w.conn.execute(
                sa.select(s.active).where(s.chat_id == int(chat_id))
            ).scalar()
            upsert_rows(
                w.conn,
                w.dialect,
                telegram_subscribers,
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

    def unsubscribe(self, chat_id: int, now: float | None = None) -> bool:
        """Unsubscribe ``chat_id``; return whether it was subscribed."""
        now = int(time.time() if now is None else now)
        s = telegram_subscribers.c
        with self.store.engine.begin() as conn:
            result = conn.execute(
                sa.update(telegram_subscribers)
                .where(s.chat_id == int(chat_id), s.active.is_(True))
                .values(active=False, unsubscribed_at=now)
            )
        return result.rowcount > 0

    def subscribers(self) -> list[int]:
        """Chat ids of active subscribers, oldest subscription first."""
        s = telegram_subscribers.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.chat_id).where(s.active.is_(True)).order_by(s.subscribed_at, s.chat_id)
            )
            return [int(r[0]) for r in rows]

    def record_post(
        self,
        channel_id: int,
        message_id: int,
        date: int,
        *,
        username: str | None = None,
    ) -> str:
        """Store a channel post as an item (ids and date only); return its item id."""
        item = post_item(channel_id, message_id)
        with self.store.writer() as w:
            w.accounts(
                pd.DataFrame({"external_id": [chat_account(channel_id)], "handle": [username]})
            )
            w.items(
                pd.DataFrame(
                    {
                        "external_id": [item],
                        "author": [chat_account(channel_id)],
                        "created_at": [int(date)],
                        "features": [{"chat_id": int(channel_id), "message_id": int(message_id)}],
                    }
                )
            )
        return item

    def record_feedback(self, user_id: int, item: str, kind: str, now: float | None = None) -> None:
        """Store a like or dislike of ``item`` by ``user_id``; it replaces an earlier press."""
        if kind not in _BUTTONS:
            raise InputError(f"feedback kind {kind!r} is not like or dislike", field="kind")
        parse_post_item(item)
        now = int(time.time() if now is None else now)
        i = schema.interactions.c
        with self.store.writer() as w:
            # A write first: on SQLite a transaction that reads before it writes fails
            # at once when another thread committed in between.
            w.accounts(pd.DataFrame({"external_id": [chat_account(user_id)]}))
            user_key = int(w.account_keys([chat_account(user_id)])[0])
            item_key = int(w.item_keys([item])[0])
            w.conn.execute(
                sa.delete(schema.interactions).where(
                    i.user_id == user_key, i.item_id == item_key, i.kind.in_([LIKE, DISLIKE])
                )
            )
            w.interactions(
                pd.DataFrame(
                    {
                        "user": [chat_account(user_id)],
                        "item": [item],
                        "kind": [kind],
                        "timestamp": [now],
                    }
                )
            )

    def record_delivery(self, chat_id: int, item: str, now: float | None = None) -> None:
        """Store that ``item`` was shown in ``chat_id`` (a ``view``; never shown again)."""
        now = int(time.time() if now is None else now)
        s = telegram_subscribers.c
        with self.store.writer() as w:
            w.accounts(pd.DataFrame({"external_id": [chat_account(chat_id)]}))  # write first
            w.interactions(
                pd.DataFrame(
                    {
                        "user": [chat_account(chat_id)],
                        "item": [item],
                        "kind": ["view"],
                        "timestamp": [now],
                    }
                )
            )
            w.conn.execute(
                sa.update(telegram_subscribers)
                .where(s.chat_id == int(chat_id))
                .values(last_delivered_at=now, delivered=s.delivered + 1)
            )

    def mark_gone(self, item: str) -> None:
        """The post was deleted from its channel: never offer it again."""
        channel_id, message_id = parse_post_item(item)
        with self.store.writer() as w:
            w.items(
                pd.DataFrame(
                    {
                        "external_id": [item],
                        "features": [
                            {"chat_id": channel_id, "message_id": message_id, "gone": True}
                        ],
                    }
                )
            )

    # ---------------------------------------------------------------- recommending
    def set_model(self, model: Any) -> None:
        """Use this fitted retriever from now on (and stop fitting one per round)."""
        self._model = model
        self._model_external = True

    def current_model(self) -> Any | None:
        """The model to rank with (see the module docstring for which one)."""
        if self._model_external:
            return self._model
        if self.config.model_dir:
            return self._load_saved_model(Path(self.config.model_dir))
        return self._fit_model()

    def _load_saved_model(self, folder: Path) -> Any | None:
        from recgraph.retrieval.base import CONFIG_FILE, Retriever

        manifest = folder / CONFIG_FILE
        if not manifest.exists():
            log.warning("no saved model in %s yet; ranking newest posts first", folder)
            return None
        stamp = manifest.stat().st_mtime
        if stamp != self._model_stamp:
            self._model = Retriever.load(folder)
            self._model_stamp = stamp
        return self._model

    def _fit_model(self) -> Any | None:
        from recgraph.retrieval.registry import create_retriever

        data = self.store.interactions_graph(kinds=[Kind.LIKE, Kind.DISLIKE])
        if data.n_items == 0 or data.n_users == 0:
            return None
        try:
            self._model = create_retriever(self.config.model, self.config.model_params).fit(data)
        except Exception as exc:  # a model that cannot fit this data: fall back to popularity
            log.warning("fitting %s failed (%s); using popular", self.config.model, exc)
            self._model = create_retriever("popular").fit(data)
        return self._model

    def plan(self, chat_ids: Sequence[int], now: float | None = None) -> dict[int, list[str]]:
        """For each chat, the posts to try, best first (never one it has already had).

        The model's picks through :func:`recgraph.retrieval.feed.recommend_feed`
        come first, then the newest eligible posts it cannot rank.
        """
        now = time.time() if now is None else now
        cfg = self.config
        posts = self._eligible_posts(now)
        if not chat_ids:
            return {}
        accounts = [chat_account(c) for c in chat_ids]
        history = self._history(set(accounts))
        model = self.current_model() if len(posts) else None
        picks: dict[int, list[str]] = {c: [] for c in chat_ids}
        if model is not None and model.is_fitted:
            picks = self._model_picks(model, chat_ids, accounts, history, posts)
        newest = posts.sort_values(["created_at", "stored"], ascending=False)["external_id"]
        for chat, account in zip(chat_ids, accounts, strict=True):
            had = history.get(account, set())
            chosen = picks[chat]
            for item in newest:
                if len(chosen) >= cfg.candidates:
                    break
                if item not in had and item not in chosen:
                    chosen.append(item)
        return picks

    def _eligible_posts(self, now: float) -> pd.DataFrame:
        items = self.store.items_frame()
        if items.empty:
            return items
        is_post = items["external_id"].str.match(r"^tg:-?\d+:\d+$")
        gone = items["features"].map(lambda f: bool(isinstance(f, dict) and f.get("gone")))
        items["stored"] = np.arange(len(items))  # insertion order breaks ties of date
        posts = items[is_post & ~gone].copy()
        posts["created_at"] = posts["created_at"].fillna(0).astype(np.int64)
        if self.config.max_age_days is not None:
            posts = posts[posts["created_at"] >= now - self.config.max_age_days * 86400]
        return posts

    def _history(self, accounts: set[str]) -> dict[str, set[str]]:
        """Items each account has any interaction with (seen, liked, disliked)."""
        history: dict[str, set[str]] = {}
        for frame in self.store.iter_frames("interactions"):
            mine = frame[frame["user"].isin(accounts)]
            for user, item in zip(mine["user"], mine["item"], strict=True):
                history.setdefault(user, set()).add(item)
        return history

    def _model_picks(
        self,
        model: Any,
        chat_ids: Sequence[int],
        accounts: list[str],
        history: dict[str, set[str]],
        posts: pd.DataFrame,
    ) -> dict[int, list[str]]:
        from recgraph.retrieval.feed import FeedConfig, recommend_feed

        eligible = set(posts["external_id"])
        item_ids = model.items.ids
        not_eligible = [i for i, x in enumerate(item_ids) if x not in eligible]
        exclude = [
            sorted(
                set(not_eligible)
                | {
                    j
                    for j in model.items.index(sorted(history.get(a, set())), missing=-1).tolist()
                    if j >= 0
                }
            )
            for a in accounts
        ]
        users = model.users.index(accounts, missing=-1)
        results = recommend_feed(
            model,
            users,
            # More than needed, so that ties (a cold start without feedback) can go to
            # the newest posts below rather than to the lowest index.
            k=max(1, min(model.n_items, self.config.candidates * 10)),
            config=FeedConfig(
                cold_start_min_interactions=self.config.cold_start_min_interactions,
                explain_top=0,
            ),
            exclude=exclude,
        )
        created = {
            item: (date, stored)
            for item, date, stored in zip(
                posts["external_id"], posts["created_at"], posts["stored"], strict=True
            )
        }
        picks: dict[int, list[str]] = {}
        for chat, account, row in zip(chat_ids, accounts, results, strict=True):
            had = history.get(account, set())
            # Among equal scores (a cold start without feedback yet) the newer post first.
            ordered = sorted(
                row, key=lambda r: (-r.score, *(-x for x in created.get(r.item_id, (0, 0))))
            )
            picks[chat] = [
                r.item_id for r in ordered if r.item_id in eligible and r.item_id not in had
            ][: self.config.candidates]
        return picks

    # ---------------------------------------------------------------- telegram side
    async def _send(self, chat_id: int, call: Callable[[], Awaitable[T]]) -> T:
        """One send under the flood limits; waits out ``retry_after`` and tries again."""
        from telegram.error import RetryAfter

        attempt = 0
        while True:
            await self.throttle.wait(chat_id)
            try:
                return await call()
            except RetryAfter as exc:
                attempt += 1
                if attempt > self.config.max_send_retries:
                    raise
                wait = retry_after_seconds(exc)
                log.info("Telegram asks to wait %.1f s (chat %s)", wait, chat_id)
                await asyncio.sleep(wait)

    async def deliver_to(
        self,
        bot: Any,
        chat_id: int,
        candidates: Sequence[str],
        report: DeliveryReport | None = None,
    ) -> str | None:
        """Copy the first deliverable of ``candidates`` into ``chat_id``; return its item id."""
        from telegram import InlineKeyboardButton, InlineKeyboardMarkup
        from telegram.error import BadRequest, Forbidden, RetryAfter

        report = report or DeliveryReport()
        for item in candidates:
            if item in report.gone:
                continue
            channel_id, message_id = parse_post_item(item)
            markup = InlineKeyboardMarkup(
                [
                    [
                        InlineKeyboardButton(_BUTTONS[k], callback_data=button_data(k, item))
                        for k in (LIKE, DISLIKE)
                    ]
                ]
            )
            try:
                await self._send(
                    chat_id,
                    lambda c=channel_id, m=message_id, k=markup: bot.copy_message(
                        chat_id=chat_id, from_chat_id=c, message_id=m, reply_markup=k
                    ),
                )
            except Forbidden as exc:
                log.info("chat %s blocked the bot (%s); unsubscribing it", chat_id, exc.message)
                await asyncio.to_thread(self.unsubscribe, chat_id)
                report.blocked += 1
                return None
            except BadRequest as exc:
                if "not found" in exc.message.lower():
                    log.info("post %s is gone from its channel (%s)", item, exc.message)
                    await asyncio.to_thread(self.mark_gone, item)
                    report.gone_posts += 1
                    report.gone.add(item)
                    continue
                log.warning("could not deliver %s to %s: %s", item, chat_id, exc.message)
                return None
            except RetryAfter:
                log.warning("chat %s still flooded after retries; skipping this round", chat_id)
                return None
            await asyncio.to_thread(self.record_delivery, chat_id, item)
            report.delivered += 1
            report.items[chat_id] = item
            return item
        report.nothing_left += 1
        return None

    async def deliver_round(
        self, bot: Any, chat_ids: Sequence[int] | None = None
    ) -> DeliveryReport:
        """Send each subscriber (or each of ``chat_ids``) its next post."""
        started = time.monotonic()
        if chat_ids is None:
            chat_ids = await asyncio.to_thread(self.subscribers)
        report = DeliveryReport(subscribers=len(chat_ids))
        plan = await asyncio.to_thread(self.plan, list(chat_ids))
        for chat_id in chat_ids:
            await self.deliver_to(bot, chat_id, plan.get(chat_id, []), report)
        report.seconds = time.monotonic() - started
        log.info(
            "delivery round: %d of %d subscribers got a post (%d had nothing left) in %.1f s",
            report.delivered,
            report.subscribers,
            report.nothing_left,
            report.seconds,
        )
        return report

    # ---------------------------------------------------------------- handlers
    async def _on_start(self, update: Any, context: Any) -> None:
        chat, user = update.effective_chat, update.effective_user
        handle = user.username.lower() if user is not None and user.username else None
        new = await asyncio.to_thread(self.subscribe, chat.id, handle)
        minutes = self.config.interval_minutes
        text = (
            f"Subscribed: a post every {minutes:g} minutes. Tap 👍 or 👎 to tune your feed; "
            "/stop to unsubscribe."
            if new
            else "You are already subscribed. /stop to unsubscribe."
        )
        await self._send(chat.id, lambda: update.effective_message.reply_text(text))
        if new and self.config.deliver_on_start:
            await self.deliver_round(context.bot, [chat.id])

    async def _on_stop(self, update: Any, context: Any) -> None:
        chat = update.effective_chat
        was = await asyncio.to_thread(self.unsubscribe, chat.id)
        text = "Unsubscribed. /start to come back." if was else "You were not subscribed."
        await self._send(chat.id, lambda: update.effective_message.reply_text(text))

    async def _on_button(self, update: Any, context: Any) -> None:
        query = update.callback_query
        parsed = parse_button_data(query.data)
        if parsed is None:
            await query.answer()
            return
        kind, item = parsed
        await asyncio.to_thread(self.record_feedback, query.from_user.id, item, kind)
        await query.answer(f"{_BUTTONS[kind]} noted")

    async def _on_channel_post(self, update: Any, context: Any) -> None:
        post = update.channel_post
        await asyncio.to_thread(
            self.record_post,
            post.chat.id,
            post.message_id,
            int(post.date.timestamp()),
            username=post.chat.username.lower() if post.chat.username else None,
        )

    async def _on_error(self, update: object, context: Any) -> None:
        log.error("update %s failed: %s", getattr(update, "update_id", "?"), context.error)

    def build_application(self) -> Any:
        """A python-telegram-bot ``Application`` with the bot's handlers (not started)."""
        from telegram.ext import (
            ApplicationBuilder,
            CallbackQueryHandler,
            CommandHandler,
            MessageHandler,
            filters,
        )

        builder = ApplicationBuilder().token(self.config.token).job_queue(None)
        if self.config.base_url:
            builder = builder.base_url(self.config.base_url)
        application = builder.build()
        application.add_handler(CommandHandler("start", self._on_start))
        application.add_handler(CommandHandler("stop", self._on_stop))
        application.add_handler(CallbackQueryHandler(self._on_button))
        application.add_handler(
            MessageHandler(filters.UpdateType.CHANNEL_POST, self._on_channel_post)
        )
        application.add_error_handler(self._on_error)
        return application


class BotService:
    """The bot's polling application, started and stopped from an existing event loop.

    ``async with BotService(store, config) as service:`` polls for updates in
    the background; call :meth:`deliver_round` on a schedule.
    """

    def __init__(self, store: Store, config: BotConfig | dict, model: Any | None = None) -> None:
        self.bot = FeedBot(store, config, model)
        self.application = self.bot.build_application()

    async def start(self) -> None:
        await self.application.initialize()
        await self.application.start()
        await self.application.updater.start_polling(
            poll_interval=0.0,
            timeout=dt.timedelta(seconds=self.bot.config.poll_timeout_seconds),
            allowed_updates=ALLOWED_UPDATES,
        )

    async def stop(self) -> None:
        if self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def deliver_round(self) -> DeliveryReport:
        return await self.bot.deliver_round(self.application.bot)

    async def __aenter__(self) -> BotService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_bot(
    store: Store, config: BotConfig | dict, *, stop: asyncio.Event | None = None
) -> None:
    """Poll and deliver every ``interval_minutes`` until ``stop`` is set (or forever)."""
    stop = stop or asyncio.Event()
    async with BotService(store, config) as service:
        period = service.bot.config.interval_minutes * 60
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                try:
                    await service.deliver_round()
                except Exception:  # a failed round is logged and tried again next time
                    log.exception("delivery round failed")


__all__ = [
    "ALLOWED_UPDATES",
    "BotConfig",
    "BotService",
    "DeliveryReport",
    "FeedBot",
    "SendThrottle",
    "button_data",
    "chat_account",
    "parse_button_data",
    "parse_post_item",
    "post_item",
    "retry_after_seconds",
    "run_bot",
    "telegram_subscribers",
]
