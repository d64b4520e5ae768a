"""Sending posts: one delivery path, claimed in the store, chats served concurrently.

:class:`Delivery` is the only way a post reaches a chat, for a round and for
the first post after ``/start`` alike. Under a per-chat lock it claims the post
in the store (``telegram_deliveries``) before the send and settles it after,
so no two deliveries pick the same post; a round skips a chat that got a post
since the round began. What each error means is decided in :mod:`.api` by
code and description; here it becomes an action (see :meth:`Delivery._failed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from recgraph.collect.telegram.api import BotApi, Fault, TelegramError, keyboard
from recgraph.collect.telegram.config import BotConfig
from recgraph.collect.telegram.picks import PostPicker
from recgraph.data import telegram_state as state
from recgraph.data.store import Store
from recgraph.data.telegram_state import parse_post_item, post_item

log = logging.getLogger(__name__)
T = TypeVar("T")

LIKE, DISLIKE = state.LIKE, state.DISLIKE
BUTTONS = {LIKE: "👍", DISLIKE: "👎"}
#: Text of the message that carries an album's buttons.
ALBUM_BUTTONS_TEXT = "👍 or 👎?"


def button_data(kind: str, item: str) -> str:
    """``callback_data`` of a feedback button: ``like:<channel>:<message>`` (under 64 bytes)."""
    channel_id, message_id = parse_post_item(item)
    return f"{kind}:{channel_id}:{message_id}"


def parse_button_data(data: str) -> tuple[str, str] | None:
    """``(kind, item)`` from ``callback_data``, or None when it is not one of ours."""
    kind, _, rest = (data or "").partition(":")
    if kind not in BUTTONS:
        return None
    try:
        channel_id, message_id = (int(x) for x in rest.split(":"))
    except ValueError:
        return None
    return kind, post_item(channel_id, message_id)


def buttons(item: str) -> dict[str, Any]:
    """The 👍 / 👎 inline keyboard of a delivered post."""
    return keyboard([[(BUTTONS[k], button_data(k, item)) for k in (LIKE, DISLIKE)]])


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

    A send first waits until ``per_chat_seconds`` after the previous send to
    its chat (or the end of a 429's ``retry_after``, :meth:`hold`), then
    reserves the earliest free slot of the overall rate (``1 / per_second``
    apart) and sleeps until it. A chat that must wait never holds up the
    others: only sends that are ready take overall slots.
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
        while True:  # the chat's own pace first (again, if another send took its turn)
            now = self._clock()
            ready = self._last_in_chat.get(chat_id, -np.inf) + self.per_chat_seconds
            if ready <= now:
                break
            await self._sleep(ready - now)
        slot = max(now, self._next_any)
        self._next_any = slot + self.spacing
        self._last_in_chat[chat_id] = slot
        if slot > now:
            await self._sleep(slot - now)

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram asked this chat to wait ``seconds``: no send to it before then."""
        until = self._clock() + seconds - self.per_chat_seconds
        self._last_in_chat[chat_id] = max(self._last_in_chat.get(chat_id, -np.inf), until)


class Delivery:
    """Sends posts to chats for a :class:`~recgraph.collect.telegram.bot.FeedBot`."""

    def __init__(self, store: Store, config: BotConfig, picker: PostPicker) -> None:
        self.store = store
        self.config = config
        self.picker = picker
        self.throttle = SendThrottle(config.global_per_second, config.per_chat_seconds)
        self._locks: dict[int, asyncio.Lock] = {}

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """:func:`~recgraph.data.telegram_state.read` off the event loop."""
        return await asyncio.to_thread(state.read, self.store, fn, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """:func:`~recgraph.data.telegram_state.write` off the event loop."""
        return await asyncio.to_thread(state.write, self.store, fn, *args)

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
                    self.throttle.hold(chat_id, wait)  # every send to this chat waits
                    if wait > self.config.max_retry_after_seconds:
                        raise
                    log.info("Telegram asks to wait %.1f s (chat %s)", wait, chat_id)
                    await asyncio.sleep(wait)
                elif exc.fault is Fault.NOT_SENT:
                    await asyncio.sleep(self.config.retry_seconds * 2 ** (attempt - 1))
                else:
                    raise

    async def _copy(self, api: BotApi, chat_id: int, item: str) -> list[int]:
        """Copy post ``item`` into ``chat_id``; return the copies' message ids."""
        channel_id, _ = parse_post_item(item)
        messages = await self._read(state.post_messages, item)
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
                last = await self._read(state.last_claim, chat_id)
                if last is not None and last >= since:
                    report.skipped += 1
                    return None
            if not await self._read(state.is_subscribed, chat_id):
                return None  # /stop, or a block found by another task
            tries = 0
            for item in candidates:
                if item in report.gone:
                    continue
                if not await self._write(state.claim, chat_id, item):
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
            await self._write(state.settle, chat_id, item, state.UNKNOWN)
            raise
        if len(ids) > 1:
            extra = await self._album_buttons(api, chat_id, item, ids[0])
            ids = ids + ([extra] if extra is not None else [])
        await self._write(state.settle, chat_id, item, state.SENT, ids)
        report.delivered += 1
        report.items[chat_id] = item
        return "done"

    async def _failed(
        self, api: BotApi, chat_id: int, item: str, exc: TelegramError, report: DeliveryReport
    ) -> str:
        fault = exc.fault
        if fault is Fault.CHAT_GONE and exc.code == 400:
            # "chat not found" may mean the source channel: ask about the user's chat
            exists = await self._chat_exists(api, chat_id)
            if exists is None:
                fault = Fault.NOT_SENT  # cannot tell now: try again next round
            elif exists:
                fault = Fault.MESSAGE_GONE  # the source is out of reach, not the user
        if fault is Fault.MAYBE_SENT:
            log.warning(
                "no answer for %s to chat %s (%s): counted as delivered", item, chat_id, exc
            )
            await self._write(state.settle, chat_id, item, state.UNKNOWN)
            report.unknown += 1
            report.items[chat_id] = item
            return "done"
        if fault is Fault.BAD_REQUEST:  # refused for this chat: never offered to it again
            log.warning("could not deliver %s to %s: %s", item, chat_id, exc.description)
            await self._write(state.settle, chat_id, item, state.FAILED)
            return "next"
        await self._write(state.release, chat_id, item)
        if fault in (Fault.MESSAGE_GONE, Fault.NOT_COPYABLE):
            log.info("post %s cannot be copied (%s); retiring it", item, exc.description)
            if item not in report.gone:  # chats served at once may find it together
                report.gone.add(item)
                report.gone_posts += 1
                await self._write(state.mark_gone, item)
            return "next"
        if fault is Fault.CHAT_GONE:
            log.info("chat %s is gone (%s); unsubscribing it", chat_id, exc.description)
            await self._write(state.unsubscribe, chat_id)
            report.blocked += 1
            return "stop"
        if fault is Fault.UNAUTHORIZED:
            raise exc
        # still flooded or unreachable after the retries: this chat waits for the next round
        log.warning("chat %s gets nothing this round: %s", chat_id, exc)
        report.failed += 1
        report.retries += 1
        return "stop"

    async def _chat_exists(self, api: BotApi, chat_id: int) -> bool | None:
        """Whether ``chat_id`` exists (``getChat``); None when the answer says nothing."""
        try:
            await api.call("getChat", chat_id=chat_id)
        except TelegramError as exc:
            if exc.fault is Fault.CHAT_GONE:
                return False
            return None
        return True

    async def deliver_round(
        self, api: BotApi, chat_ids: Sequence[int] | None = None
    ) -> DeliveryReport:
        """Send each subscriber (or each of ``chat_ids``) its next post, chats concurrently."""
        started, clock = time.time(), time.monotonic()
        if chat_ids is None:
            chat_ids = await self._read(state.subscribers)
        report = DeliveryReport(subscribers=len(chat_ids))
        plan = await asyncio.to_thread(self.picker.plan, list(chat_ids))
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


__all__ = [
    "ALBUM_BUTTONS_TEXT",
    "BUTTONS",
    "Delivery",
    "DeliveryReport",
    "SendThrottle",
    "button_data",
    "buttons",
    "parse_button_data",
]
