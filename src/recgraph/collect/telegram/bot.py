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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recgraph.collect.telegram.api import BotApi, Fault, TelegramError, keyboard
from recgraph.collect.telegram.picks import PostPicker
from recgraph.data import telegram_state as state
from recgraph.data.schema import telegram_subscribers
from recgraph.data.store import Store
from recgraph.data.telegram_state import chat_account, parse_post_item, post_item
from recgraph.settings import RedactingFilter

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Which updates the bot asks Telegram for.
ALLOWED_UPDATES = ["message", "channel_post", "callback_query"]
LIKE, DISLIKE = state.LIKE, state.DISLIKE
_BUTTONS = {LIKE: "👍", DISLIKE: "👎"}
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
#: Text of the message that carries an album's buttons.
ALBUM_BUTTONS_TEXT = "👍 or 👎?"
#: Loggers whose records may carry the token (request URLs).
_HTTP_LOGGERS = ("httpx", "httpcore")
_redacting = RedactingFilter()


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


def buttons(item: str) -> dict[str, Any]:
    """The 👍 / 👎 inline keyboard of a delivered post."""
    return keyboard([[(_BUTTONS[k], button_data(k, item)) for k in (LIKE, DISLIKE)]])


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


# ---------------------------------------------------------------------- config
class BotConfig(BaseModel):
    """The bot's settings.

    ``base_url`` is the Bot API server (``https://api.telegram.org`` by
    default; a python-telegram-bot style ``http://host:port/bot`` also works).
    Which model chooses the posts: ``registry`` (the serving registry's
    current version), else ``model_dir`` (a saved pipeline or retriever),
    else ``model`` fitted on the store's likes (see :mod:`.picks`);
    ``cold_start_min_interactions`` is the cold-start rule of that last one.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token: str
    base_url: str | None = None
    interval_minutes: float = Field(default=60.0, gt=0)
    model: str = "popular"
    model_params: dict[str, Any] = Field(default_factory=dict)
    model_dir: str | None = None
    registry: str | None = None
    cold_start_min_interactions: int = Field(default=5, ge=0)
    max_age_days: float | None = Field(default=None, gt=0)
    candidates: int = Field(default=5, ge=1, le=100)
    deliver_on_start: bool = True
    global_per_second: float = Field(default=30.0, gt=0)
    per_chat_seconds: float = Field(default=1.0, ge=0)
    max_send_retries: int = Field(default=3, ge=0)
    poll_timeout_seconds: float = Field(default=10.0, ge=0)
    #: Chats served at once in a round.
    concurrency: int = Field(default=16, ge=1, le=1000)
    #: Read timeout of a send; a slower answer counts as lost (the post is not resent).
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    #: First wait after a transient error (doubled each time).
    retry_seconds: float = Field(default=1.0, ge=0)
    #: A longer ``retry_after`` skips the chat until the next round.
    max_retry_after_seconds: float = Field(default=60.0, ge=0)
    #: Times an update whose handling fails is retried before it is skipped.
    max_update_attempts: int = Field(default=3, ge=1)
    verbose: bool = False


@dataclass
class DeliveryReport:
    """What one round did."""

    subscribers: int = 0
    delivered: int = 0
    nothing_left: int = 0
    blocked: int = 0
    gone_posts: int = 0
    retries: int = 0
    #: Sends whose answer was lost: counted as delivered, never sent again.
    unknown: int = 0
    #: Chats that got nothing this round because of errors (tried again next round).
    failed: int = 0
    #: Chats skipped because they got a post since the round began.
    skipped: int = 0
    seconds: float = 0.0
    items: dict[int, str] = field(default_factory=dict)
    #: Posts found gone this round (skipped for the remaining chats).
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

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram asked this chat to wait ``seconds``: no send to it before then."""
        until = self._clock() + seconds - self.per_chat_seconds
        self._last_in_chat[chat_id] = max(self._last_in_chat.get(chat_id, -np.inf), until)


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
        self.config = config if isinstance(config, BotConfig) else BotConfig.model_validate(config)
        telegram_subscribers.create(store.engine, checkfirst=True)
        self.bot_id = self.config.token.split(":", 1)[0]
        self.throttle = SendThrottle(self.config.global_per_second, self.config.per_chat_seconds)
        self.picker = PostPicker(store, self.config, model)
        self._locks: dict[int, asyncio.Lock] = {}

    # ---------------------------------------------------------------- store side
    def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.store.writer() as w:
            return fn(w, *args, **kwargs)

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        with self.store.engine.connect() as conn:
            return fn(conn, *args)

    def subscribe(self, chat_id: int, handle: str | None = None, now: float | None = None) -> bool:
        """Subscribe ``chat_id``; return whether it was not subscribed before."""
        return self._write(state.subscribe, chat_id, handle, now)

    def unsubscribe(self, chat_id: int, now: float | None = None) -> bool:
        """Unsubscribe ``chat_id``; return whether it was subscribed."""
        return self._write(state.unsubscribe, chat_id, now)

    def subscribers(self) -> list[int]:
        """Chat ids of active subscribers, oldest subscription first."""
        return self._read(state.subscribers)

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
        return self._write(
            state.record_post,
            channel_id,
            message_id,
            date,
            username=username,
            media_group_id=media_group_id,
        )

    def record_feedback(self, user_id: int, item: str, kind: str, now: float | None = None) -> None:
        """Store a like or dislike of ``item`` by ``user_id``; it replaces an earlier press."""
        self._write(state.record_feedback, user_id, item, kind, now)

    def record_delivery(self, chat_id: int, item: str, now: float | None = None) -> None:
        """Store that ``item`` was shown in ``chat_id`` (never offered to it again)."""
        with self.store.writer() as w:
            state.claim(w, chat_id, item, now)
            state.settle(w, chat_id, item, state.SENT, now=now)

    def mark_gone(self, item: str) -> None:
        """The post cannot be copied any more: never offer it again."""
        self._write(state.mark_gone, item)

    def handled_offset(self) -> int | None:
        """``update_id`` of the last update handled (None before the first)."""
        return self._read(state.handled_offset, self.bot_id)

    def reconcile(self, now: float | None = None) -> list[tuple[int, str]]:
        """Settle claims left ``sending`` by a crash as ``unknown`` (never sent again)."""
        now = time.time() if now is None else now
        cut = self._write(state.settle_pending, now)
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
    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def send(self, api: BotApi, method: str, **params: Any) -> Any:
        """One send to ``params["chat_id"]`` under the flood limits.

        A 429 (``retry_after``, that chat only) or a refused connection is
        tried again; a lost answer (:attr:`Fault.MAYBE_SENT`) is not: the
        caller decides.
        """
        chat_id = int(params["chat_id"])
        attempt = 0
        while True:
            await self.throttle.wait(chat_id)
            try:
                return await api.call(
                    method, read_timeout=self.config.request_timeout_seconds, **params
                )
            except TelegramError as exc:
                attempt += 1
                if attempt > self.config.max_send_retries:
                    raise
                if exc.fault is Fault.FLOOD:
                    wait = float(exc.retry_after or 1.0)
                    if wait > self.config.max_retry_after_seconds:
                        raise
                    log.info("Telegram asks to wait %.1f s (chat %s)", wait, chat_id)
                    self.throttle.hold(chat_id, wait)
                    await asyncio.sleep(wait)
                elif exc.fault is Fault.NOT_SENT:
                    await asyncio.sleep(self.config.retry_seconds * 2 ** (attempt - 1))
                else:
                    raise

    async def _copy(self, api: BotApi, chat_id: int, item: str) -> list[int]:
        """Copy post ``item`` into ``chat_id``; return the copies' message ids."""
        channel_id, _ = parse_post_item(item)
        messages = await self._db(self._read, state.post_messages, item)
        if len(messages) == 1:
            copied = await self.send(
                api,
                "copyMessage",
                chat_id=chat_id,
                from_chat_id=channel_id,
                message_id=messages[0],
                reply_markup=buttons(item),
            )
            return [int(copied["message_id"])]
        copied = await self.send(
            api,
            "copyMessages",
            chat_id=chat_id,
            from_chat_id=channel_id,
            message_ids=messages,
        )
        return [int(m["message_id"]) for m in copied]

    async def _album_buttons(self, api: BotApi, chat_id: int, item: str, first: int) -> int | None:
        """The buttons of an album go on a message after it (albums take no keyboard)."""
        try:
            sent = await self.send(
                api,
                "sendMessage",
                chat_id=chat_id,
                text=ALBUM_BUTTONS_TEXT,
                reply_markup=buttons(item),
                reply_parameters={"message_id": first, "allow_sending_without_reply": True},
            )
        except TelegramError as exc:
            log.warning("the buttons of %s did not reach chat %s: %s", item, chat_id, exc)
            return None
        return int(sent["message_id"])

    def _lock(self, chat_id: int) -> asyncio.Lock:
        return self._locks.setdefault(int(chat_id), asyncio.Lock())

    async def deliver_to(
        self,
        api: BotApi,
        chat_id: int,
        candidates: Sequence[str],
        report: DeliveryReport | None = None,
        *,
        since: float | None = None,
    ) -> str | None:
        """Copy the first deliverable of ``candidates`` into ``chat_id``; return its item id.

        The one delivery path: under the chat's lock, each post is claimed in
        the store before it is sent, so no two deliveries pick the same post.
        With ``since`` (a round's start), a chat that got a post after it is
        skipped.
        """
        report = report if report is not None else DeliveryReport()
        async with self._lock(chat_id):
            if since is not None:
                last = await self._db(self._read, state.last_claim, chat_id)
                if last is not None and last >= since:
                    report.skipped += 1
                    return None
            if not await self._db(self._read, state.is_subscribed, chat_id):
                return None  # /stop, or a block found by another task
            tries = 0
            for item in candidates:
                if item in report.gone:
                    continue
                if not await self._db(self._write, state.claim, chat_id, item):
                    continue  # claimed before (another path, another process)
                outcome = await self._deliver_one(api, chat_id, item, report)
                if outcome == "next":
                    tries += 1
                    if tries > self.config.max_send_retries + len(report.gone):
                        break
                    continue
                return item if outcome == "done" else None
            else:
                report.nothing_left += 1
                return None
            report.failed += 1
            return None

    async def _deliver_one(
        self, api: BotApi, chat_id: int, item: str, report: DeliveryReport
    ) -> str:
        """Send one claimed post: ``done``, ``next`` (try another post) or ``stop``."""
        try:
            ids = await self._copy(api, chat_id, item)
        except TelegramError as exc:
            return await self._failed(api, chat_id, item, exc, report)
        except Exception:
            await self._db(self._write, state.settle, chat_id, item, state.UNKNOWN)
            raise
        if len(ids) > 1:
            extra = await self._album_buttons(api, chat_id, item, ids[0])
            ids = ids + ([extra] if extra is not None else [])
        await self._db(self._write, state.settle, chat_id, item, state.SENT, ids)
        report.delivered += 1
        report.items[chat_id] = item
        return "done"

    async def _failed(
        self, api: BotApi, chat_id: int, item: str, exc: TelegramError, report: DeliveryReport
    ) -> str:
        fault = exc.fault
        if fault is Fault.CHAT_GONE and exc.code == 400 and await self._chat_exists(api, chat_id):
            fault = Fault.MESSAGE_GONE  # the source channel is out of reach, not the user
        if fault is Fault.MAYBE_SENT:
            log.warning(
                "no answer for %s to chat %s (%s): counted as delivered", item, chat_id, exc
            )
            await self._db(self._write, state.settle, chat_id, item, state.UNKNOWN)
            report.unknown += 1
            report.items[chat_id] = item
            return "done"
        await self._db(self._write, state.release, chat_id, item)
        if fault in (Fault.MESSAGE_GONE, Fault.NOT_COPYABLE):
            log.info("post %s cannot be copied (%s); retiring it", item, exc.description)
            if item not in report.gone:  # chats served at once may find it together
                report.gone.add(item)
                report.gone_posts += 1
                await self._db(self._write, state.mark_gone, item)
            return "next"
        if fault is Fault.CHAT_GONE:
            log.info("chat %s is gone (%s); unsubscribing it", chat_id, exc.description)
            await self._db(self._write, state.unsubscribe, chat_id)
            report.blocked += 1
            return "stop"
        if fault is Fault.UNAUTHORIZED:
            raise exc
        if fault is Fault.BAD_REQUEST:
            log.warning("could not deliver %s to %s: %s", item, chat_id, exc.description)
            return "next"
        # still flooded or unreachable after the retries: this chat waits for the next round
        log.warning("chat %s gets nothing this round: %s", chat_id, exc)
        report.failed += 1
        report.retries += 1
        return "stop"

    async def _chat_exists(self, api: BotApi, chat_id: int) -> bool:
        """Whether ``chat_id`` is reachable (to tell a missing user from a missing source)."""
        try:
            await api.call("getChat", chat_id=chat_id)
        except TelegramError as exc:
            return exc.fault is not Fault.CHAT_GONE
        return True

    async def deliver_round(
        self, api: BotApi, chat_ids: Sequence[int] | None = None
    ) -> DeliveryReport:
        """Send each subscriber (or each of ``chat_ids``) its next post, chats concurrently."""
        started, clock = time.time(), time.monotonic()
        if chat_ids is None:
            chat_ids = await self._db(self.subscribers)
        report = DeliveryReport(subscribers=len(chat_ids))
        plan = await self._db(self.plan, list(chat_ids))
        gate = asyncio.Semaphore(self.config.concurrency)

        async def serve(chat_id: int) -> None:
            async with gate:
                try:
                    await self.deliver_to(
                        api, chat_id, plan.get(chat_id, []), report, since=started
                    )
                except TelegramError as exc:
                    if exc.fault is Fault.UNAUTHORIZED:
                        raise
                    log.warning("chat %s: %s", chat_id, exc)
                    report.failed += 1
                except Exception:
                    log.exception("delivery to chat %s failed", chat_id)
                    report.failed += 1

        await asyncio.gather(*(serve(c) for c in chat_ids))
        report.seconds = time.monotonic() - clock
        log.info(
            "delivery round: %d of %d subscribers got a post (%d had nothing left, %d failed, "
            "%d answers lost) in %.1f s",
            report.delivered,
            report.subscribers,
            report.nothing_left,
            report.failed,
            report.unknown,
            report.seconds,
        )
        return report

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
                text = f"{_BUTTONS[kind]} noted"
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
                followup = await self._db(self.apply_update, update)
                break
            except Exception:
                if attempt == self.config.max_update_attempts:
                    log.exception(
                        "update %s failed %d times; skipping it", update.get("update_id"), attempt
                    )
                    await self._db(self._write, state.set_handled, self.bot_id, update["update_id"])
                    return None
                await asyncio.sleep(self.config.retry_seconds * attempt)
        if followup is None:
            return None
        return self._after(api, followup)

    async def _after(self, api: BotApi, f: _Followup) -> None:
        try:
            if f.kind == "answer":
                await self.answer_callback(api, f.values["query_id"], f.values["text"])
            elif f.kind == "start":
                minutes = self.config.interval_minutes
                text = (
                    f"Subscribed: a post every {minutes:g} minutes. Tap 👍 or 👎 to tune your "
                    "feed; /stop to unsubscribe."
                    if f.values["new"]
                    else "You are already subscribed. /stop to unsubscribe."
                )
                await self.send(api, "sendMessage", chat_id=f.chat_id, text=text)
                if f.values["new"] and self.config.deliver_on_start:
                    # a round that served the chat since /start was its first post
                    plan = await self._db(self.plan, [f.chat_id])
                    await self.deliver_to(
                        api, f.chat_id, plan.get(f.chat_id, []), since=f.values["at"]
                    )
            elif f.kind == "stop":
                text = (
                    "Unsubscribed. /start to come back."
                    if f.values["was"]
                    else "You were not subscribed."
                )
                await self.send(api, "sendMessage", chat_id=f.chat_id, text=text)
        except TelegramError as exc:
            log.warning("reply to chat %s failed: %s", f.chat_id, exc)
        except Exception:
            log.exception("reply to chat %s failed", f.chat_id)

    async def answer_callback(self, api: BotApi, query_id: str, text: str | None) -> bool:
        """``answerCallbackQuery``, retried with backoff on 5xx, network errors and 429."""
        delay = max(self.config.retry_seconds, 0.05) / 2
        for attempt in range(self.config.max_send_retries + 2):
            try:
                await api.call(
                    "answerCallbackQuery",
                    read_timeout=self.config.request_timeout_seconds,
                    callback_query_id=query_id,
                    text=text,
                )
                return True
            except TelegramError as exc:
                if not exc.fault.transient or attempt > self.config.max_send_retries:
                    if exc.fault is not Fault.QUERY_EXPIRED or attempt == 0:
                        log.warning("answerCallbackQuery %s: %s", query_id, exc)
                    # after a retry, "query is too old" means an earlier try got through
                    return exc.fault is Fault.QUERY_EXPIRED and attempt > 0
                wait = float(exc.retry_after) if exc.retry_after else delay * 2**attempt
                await asyncio.sleep(min(wait, 5.0))
        return False


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
    """Poll and deliver every ``interval_minutes`` until ``stop`` is set (or forever)."""
    stop = stop or asyncio.Event()
    async with BotService(store, config) as service:
        period = service.bot.config.interval_minutes * 60
        while not stop.is_set():
            if service._task is not None and service._task.done():
                service._task.result()  # polling ended (a refused token): say why
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
    "command_of",
    "is_content",
    "parse_button_data",
    "parse_post_item",
    "post_item",
    "protect_token",
    "run_bot",
    "telegram_subscribers",
]
