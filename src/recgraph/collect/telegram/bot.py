"""The Telegram feed bot: channel posts in, one recommended post per interval out, 👍/👎 back.

What it does:

- ``/start`` subscribes the chat (and, by default, sends a first post at
  once); ``/stop`` unsubscribes it;
- ``channel_post`` updates of channels where the bot is an admin become
  items: ``tg:<channel id>:<message id>`` with the post's date and the channel
  as author, and nothing of the content (Telegram keeps that; the bot copies
  the message when it delivers it). Service messages (pins, joins, title
  changes) are not posts; an album (one ``media_group_id``) is one post;
- every ``interval_minutes`` each subscriber gets the next post by
  ``copyMessage`` (an album by ``copyMessages``, its buttons on a message
  after it) with inline 👍 / 👎 buttons; the post is chosen by the pipeline's
  ``feed`` question (:mod:`.picks`);
- a button press stores a ``like`` or ``dislike`` (the latest press wins) and
  answers the callback query.

Delivery guarantees (see also the README):

- **a post reaches a chat at most once.** Each delivery is claimed in the
  store (``telegram_deliveries``, key ``(chat, post)``) before the send and
  settled after it. One delivery path, under a per-chat lock, serves both the
  round and ``/start``; a round skips a chat that got a post since the round
  began. When a send's answer is lost (a dropped connection, a timeout, a
  5xx), the post may have arrived: it is counted as delivered and never sent
  again. A send that certainly did not arrive (a refused connection, a 429,
  a message that is gone) is released and tried again;
- **updates are handled exactly once.** The bot polls ``getUpdates`` itself:
  each update's effects and its ``update_id`` commit in one transaction, and
  the next poll confirms the batch (``offset``) only after every update in it
  was handled. A restart continues from the stored ``update_id`` + 1: an
  update whose handling was cut off is handled again, one that was handled is
  skipped. Replies (the welcome text, the callback answer, the first post
  after ``/start``) follow the commit: a crash in between loses them (at most
  once);
- **one chat's trouble is its own.** Chats are served concurrently (at most
  ``concurrency`` at a time); a 429's ``retry_after``, a network error or a
  blocked user holds up only that chat. Errors are told apart by code and
  description (:mod:`.api`): a message gone retires the post, a chat gone or
  a 403 unsubscribes that chat only.

Sending respects Telegram's limits: about one message per second per chat
and 30 per second overall (:class:`SendThrottle`), and a 429's ``retry_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from recgraph.collect.telegram.api import BotApi, Fault, TelegramError
from recgraph.collect.telegram.config import BotConfig
from recgraph.collect.telegram.delivery import (
    BUTTONS,
    Delivery,
    DeliveryReport,
    SendThrottle,
    button_data,
    parse_button_data,
)
from recgraph.collect.telegram.picks import PostPicker
from recgraph.data import telegram_state as state
from recgraph.data.schema import telegram_albums, telegram_deliveries, telegram_subscribers
from recgraph.data.store import Store
from recgraph.data.telegram_state import chat_account, parse_post_item, post_item
from recgraph.settings import RedactingFilter, config_of

log = logging.getLogger(__name__)

#: Which updates the bot asks Telegram for.
ALLOWED_UPDATES = ["message", "channel_post", "callback_query"]
#: Message fields that carry content a copy can reproduce; a channel post with none
#: of them is a service message (a pin, a join, a new title) and is not stored.
CONTENT_FIELDS = (
    "text",
    "photo",
    "video",
    "animation",
    "audio",
    "document",
    "voice",
    "video_note",
    "sticker",
    "poll",
    "location",
    "venue",
    "contact",
    "dice",
    "story",
    "paid_media",
    "checklist",
)
#: Loggers whose records may carry the token (request URLs).
_HTTP_LOGGERS = ("httpx", "httpcore")
_redacting = RedactingFilter()


def is_content(message: dict[str, Any]) -> bool:
    """Whether a channel message is a post (something a copy can reproduce)."""
    return any(key in message for key in CONTENT_FIELDS)


def command_of(message: dict[str, Any]) -> str | None:
    """``start`` for ``/start`` or ``/start@feed_bot``; None when the text is no command."""
    text = message.get("text") or ""
    if not text.startswith("/"):
        return None
    return text.split()[0][1:].split("@")[0].lower() or None


def protect_token(token: str, *, verbose: bool = False) -> None:
    """Keep the token out of logs: mask it in the HTTP libraries' records.

    httpx logs every request URL (with the token) at INFO; unless ``verbose``
    its loggers are set to WARNING when nobody set their level.
    """
    _redacting.add(token)
    for name in (__name__, "recgraph", *_HTTP_LOGGERS):
        logger = logging.getLogger(name)
        if _redacting not in logger.filters:
            logger.addFilter(_redacting)
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if verbose:
            logger.setLevel(logging.INFO)
        elif logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in root.handlers:  # records of any logger pass the root's handlers
        if _redacting not in handler.filters:
            handler.addFilter(_redacting)


class _Followup:
    """What an update asks for after its effects were committed."""

    def __init__(self, kind: str, chat_id: int, **values: Any) -> None:
        self.kind = kind
        self.chat_id = chat_id
        self.values = values


# ---------------------------------------------------------------------- the bot
class FeedBot:
    """The bot's logic on top of the store; the Telegram side is :class:`BotService`.

    Parameters
    ----------
    store
        Where subscribers, posts, deliveries and feedback go.
    config
        A :class:`BotConfig` or its fields.
    model
        A pipeline or fitted item retriever to start with (optional).
    """

    def __init__(self, store: Store, config: BotConfig | dict, model: Any | None = None) -> None:
        self.store = store
        self.config = config_of(BotConfig, config)
        for table in (telegram_subscribers, telegram_deliveries, telegram_albums):
            table.create(store.engine, checkfirst=True)  # a store opened without create
        self.bot_id = self.config.token.split(":", 1)[0]
        self.picker = PostPicker(store, self.config, model)
        self.delivery = Delivery(store, self.config, self.picker)
        self.throttle = self.delivery.throttle

    # ---------------------------------------------------------------- store side
    def subscribe(self, chat_id: int, handle: str | None = None, now: float | None = None) -> bool:
        """Subscribe ``chat_id``; return whether it was not subscribed before."""
        return state.write(self.store, state.subscribe, chat_id, handle, now)

    def unsubscribe(self, chat_id: int, now: float | None = None) -> bool:
        """Unsubscribe ``chat_id``; return whether it was subscribed."""
        return state.write(self.store, state.unsubscribe, chat_id, now)

    def subscribers(self) -> list[int]:
        """Chat ids of active subscribers, oldest subscription first."""
        return state.read(self.store, state.subscribers)

    def record_post(
        self,
        channel_id: int,
        message_id: int,
        date: int,
        *,
        username: str | None = None,
        media_group_id: str | None = None,
    ) -> str:
        """Store a channel post as an item (ids and date only); return its item id."""
        return state.write(
            self.store,
            state.record_post,
            channel_id,
            message_id,
            date,
            username=username,
            media_group_id=media_group_id,
        )

    def record_feedback(self, user_id: int, item: str, kind: str, now: float | None = None) -> None:
        """Store a like or dislike of ``item`` by ``user_id``; it replaces an earlier press."""
        state.write(self.store, state.record_feedback, user_id, item, kind, now)

    def record_delivery(self, chat_id: int, item: str, now: float | None = None) -> None:
        """Store that ``item`` was shown in ``chat_id`` (never offered to it again)."""
        with self.store.writer() as w:
            state.claim(w, chat_id, item, now)
            state.settle(w, chat_id, item, state.SENT, now=now)

    def mark_gone(self, item: str) -> None:
        """The post cannot be copied any more: never offer it again."""
        state.write(self.store, state.mark_gone, item)

    def handled_offset(self) -> int | None:
        """``update_id`` of the last update handled (None before the first)."""
        return state.read(self.store, state.handled_offset, self.bot_id)

    def reconcile(self, now: float | None = None) -> list[tuple[int, str]]:
        """Settle claims left ``sending`` by a crash as ``unknown`` (never sent again)."""
        now = time.time() if now is None else now
        cut = state.write(self.store, state.settle_pending, now)
        for chat_id, item in cut:
            log.warning(
                "the send of %s to chat %s was cut off; counted as delivered", item, chat_id
            )
        return cut

    # ---------------------------------------------------------------- choosing
    def set_model(self, model: Any) -> None:
        """Use this pipeline or fitted retriever from now on."""
        self.picker.set_model(model)

    def current_model(self) -> Any | None:
        """The pipeline that chooses posts (see :mod:`.picks`)."""
        return self.picker.current()

    def plan(self, chat_ids: Sequence[int], now: float | None = None) -> dict[int, list[str]]:
        """For each chat, the posts to try, best first (never one it has already had)."""
        return self.picker.plan(chat_ids, now)

    # ---------------------------------------------------------------- sending
    async def deliver_round(
        self, api: BotApi, chat_ids: Sequence[int] | None = None
    ) -> DeliveryReport:
        """Send each subscriber (or each of ``chat_ids``) its next post, chats concurrently."""
        return await self.delivery.deliver_round(api, chat_ids)

    # ---------------------------------------------------------------- updates
    def apply_update(self, update: dict[str, Any]) -> _Followup | None:
        """An update's effects on the store, committed with its ``update_id``.

        Returns what to send afterwards. An update at or below the stored
        offset was handled before: nothing happens (handlers are idempotent).
        """
        update_id = int(update["update_id"])
        with self.store.writer() as w:  # on SQLite: BEGIN IMMEDIATE, so reading first is safe
            done = state.handled_offset(w.conn, self.bot_id)
            if done is not None and update_id <= done:
                return None
            followup = self._effects(w, update)
            state.set_handled(w, self.bot_id, update_id)
            return followup

    def _effects(self, w: Any, update: dict[str, Any]) -> _Followup | None:
        if "channel_post" in update:
            post = update["channel_post"]
            if not is_content(post):
                return None  # a service message: a pin, a join, a title
            chat = post.get("chat") or {}
            state.record_post(
                w,
                int(chat["id"]),
                int(post["message_id"]),
                int(post.get("date") or time.time()),
                username=(chat.get("username") or "").lower() or None,
                media_group_id=post.get("media_group_id"),
            )
            return None
        if "callback_query" in update:
            query = update["callback_query"]
            parsed = parse_button_data(query.get("data") or "")
            text = None
            if parsed is not None:
                kind, item = parsed
                state.record_feedback(w, int(query["from"]["id"]), item, kind)
                text = f"{BUTTONS[kind]} noted"
            return _Followup("answer", int(query["from"]["id"]), query_id=query["id"], text=text)
        message = update.get("message")
        if not message:
            return None
        command = command_of(message)
        chat_id = int(message["chat"]["id"])
        if command == "start":
            user = message.get("from") or {}
            handle = (user.get("username") or "").lower() or None
            new = state.subscribe(w, chat_id, handle)
            return _Followup("start", chat_id, new=new, at=time.time())
        if command == "stop":
            was = state.unsubscribe(w, chat_id)
            return _Followup("stop", chat_id, was=was)
        return None

    async def handle_update(self, api: BotApi, update: dict[str, Any]) -> Awaitable[None] | None:
        """Commit ``update``'s effects and offset; return what to send after (not awaited).

        A failure is retried ``max_update_attempts`` times; then the update is
        logged and skipped, so one bad update cannot stop the bot.
        """
        for attempt in range(1, self.config.max_update_attempts + 1):
            try:
                followup = await asyncio.to_thread(self.apply_update, update)
                break
            except Exception:
                if attempt == self.config.max_update_attempts:
                    log.exception(
                        "update %s failed %d times; skipping it", update.get("update_id"), attempt
                    )
                    await asyncio.to_thread(
                        state.write, self.store, state.set_handled, self.bot_id, update["update_id"]
                    )
                    return None
                await asyncio.sleep(self.config.retry_seconds * attempt)
        if followup is None:
            return None
        return self._after(api, followup)

    async def _after(self, api: BotApi, f: _Followup) -> None:
        try:
            if f.kind == "answer":
                await self.delivery.answer_callback(api, f.values["query_id"], f.values["text"])
            elif f.kind == "start":
                minutes = self.config.interval_minutes
                text = (
                    f"Subscribed: a post every {minutes:g} minutes. Tap 👍 or 👎 to tune your "
                    "feed; /stop to unsubscribe."
                    if f.values["new"]
                    else "You are already subscribed. /stop to unsubscribe."
                )
                await self.delivery.send(api, "sendMessage", chat_id=f.chat_id, text=text)
                if f.values["new"] and self.config.deliver_on_start:
                    # a round that served the chat since /start was its first post
                    plan = await asyncio.to_thread(self.plan, [f.chat_id])
                    await self.delivery.deliver_to(
                        api, f.chat_id, plan.get(f.chat_id, []), since=f.values["at"]
                    )
            elif f.kind == "stop":
                text = (
                    "Unsubscribed. /start to come back."
                    if f.values["was"]
                    else "You were not subscribed."
                )
                await self.delivery.send(api, "sendMessage", chat_id=f.chat_id, text=text)
        except TelegramError as exc:
            log.warning("reply to chat %s failed: %s", f.chat_id, exc)
        except Exception:
            log.exception("reply to chat %s failed", f.chat_id)


# ---------------------------------------------------------------------- polling
class BotService:
    """The bot's polling loop, started and stopped from an existing event loop.

    ``async with BotService(store, config) as service:`` polls for updates in
    the background; call :meth:`deliver_round` on a schedule.
    """

    def __init__(self, store: Store, config: BotConfig | dict, model: Any | None = None) -> None:
        self.bot = FeedBot(store, config, model)
        config = self.bot.config
        protect_token(config.token, verbose=config.verbose)
        self.api = BotApi(
            config.token, config.base_url, timeout_seconds=config.request_timeout_seconds
        )
        self._task: asyncio.Task | None = None
        self._followups: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Settle cut-off sends, then poll in a background task."""
        await asyncio.to_thread(self.bot.reconcile)
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self.poll(), name="telegram-getUpdates")

    async def stop(self) -> None:
        """Stop polling, let the replies in flight finish, close the connections."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._followups:
            await asyncio.wait(set(self._followups), timeout=10)
        await self.api.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def poll(self) -> None:
        """Long-poll ``getUpdates``; a batch is confirmed only after every update in it was handled."""
        cfg = self.bot.config
        last = await asyncio.to_thread(self.bot.handled_offset)
        failures = 0
        while not self._stopping.is_set():
            try:
                updates = await self._get_updates(last)
                failures = 0
            except TelegramError as exc:
                if exc.fault is Fault.UNAUTHORIZED:
                    log.error("the Bot API refuses the token or URL: %s; polling stops", exc)
                    raise
                failures += 1
                wait = float(
                    exc.retry_after or min(30.0, cfg.retry_seconds * 2 ** min(failures, 5))
                )
                log.warning("getUpdates failed (%s); again in %.1f s", exc, wait)
                await asyncio.sleep(wait)
                continue
            for update in sorted(updates or [], key=lambda u: int(u["update_id"])):
                update_id = int(update["update_id"])
                if last is not None and update_id <= last:
                    continue  # handled before a restart: never twice
                after = await self.bot.handle_update(self.api, update)
                last = update_id
                if after is not None:
                    task = asyncio.create_task(after)
                    self._followups.add(task)
                    task.add_done_callback(self._followups.discard)

    async def _get_updates(self, last: int | None) -> list[dict[str, Any]]:
        cfg = self.bot.config
        params: dict[str, Any] = {
            "timeout": int(cfg.poll_timeout_seconds),
            "allowed_updates": ALLOWED_UPDATES,
        }
        if last is not None:
            params["offset"] = last + 1
        return await self.api.call(
            "getUpdates",
            read_timeout=cfg.poll_timeout_seconds + cfg.request_timeout_seconds,
            **params,
        )

    async def deliver_round(self) -> DeliveryReport:
        return await self.bot.deliver_round(self.api)

    async def __aenter__(self) -> BotService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_bot(
    store: Store, config: BotConfig | dict, *, stop: asyncio.Event | None = None
) -> None:
    """Poll and deliver every ``interval_minutes`` until ``stop`` is set (or forever).

    SIGTERM sets ``stop`` (as Ctrl-C would end the loop): the round in flight
    and the replies being sent finish, polling stops. Polling that ends by
    itself (a refused token) ends this with its error.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # the main thread only
    try:
        async with BotService(store, config) as service:
            period = service.bot.config.interval_minutes * 60
            while not stop.is_set():
                assert service._task is not None
                stopped = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {stopped, service._task}, timeout=period, return_when=asyncio.FIRST_COMPLETED
                )
                stopped.cancel()
                if service._task in done:
                    service._task.result()  # polling ended: say why
                    raise RuntimeError("polling ended")
                if stop.is_set():
                    break
                try:
                    await service.deliver_round()
                except Exception:  # a failed round is logged and tried again next time
                    log.exception("delivery round failed")
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


__all__ = [
    "ALLOWED_UPDATES",
    "BotConfig",
    "BotService",
    "DeliveryReport",
    "FeedBot",
    "SendThrottle",
    "button_data",
    "chat_account",
    "command_of",
    "is_content",
    "parse_button_data",
    "parse_post_item",
    "post_item",
    "protect_token",
    "run_bot",
    "telegram_subscribers",
]
