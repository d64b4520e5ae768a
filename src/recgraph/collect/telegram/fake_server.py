"""A fake Telegram Bot API server on 127.0.0.1, for tests of the feed bot.

A real HTTP/1.1 server (standard library, in a thread, ephemeral port) at
``/bot<token>/<method>`` with the request and response shapes of the
reference server ``tdlib/telegram-bot-api`` (see ``shared/protocols/README.md``
part B):

- parameters in the query string or a body that is form-urlencoded (what
  python-telegram-bot sends: strings as-is, everything else JSON-encoded),
  JSON or multipart; JSON values such as ``reply_markup`` and
  ``allowed_updates`` are decoded from form values;
- the envelope ``{"ok": true, "result": ...}``, and errors as
  ``{"ok": false, "error_code": N, "description": "..."}`` with the HTTP
  status equal to ``error_code`` (401 for a wrong token, 404 ``Not Found:
  method not found``, 400 ``Bad Request: ...``, 403 ``Forbidden: bot was
  blocked by the user``, 409 for two pollers at once, 429 with
  ``parameters.retry_after``);
- ``getMe``, ``deleteWebhook``, long-polling ``getUpdates`` (offset
  confirmation, ``timeout`` capped at 50 s, ``allowed_updates``),
  ``sendMessage``, ``copyMessage`` (``{"message_id": N}``, source must exist),
  ``forwardMessage``, ``answerCallbackQuery``, ``editMessageReplyMarkup``,
  ``setMyCommands``.

Faults a real deployment meets, on demand: :meth:`FakeBotApi.fail` answers a
method with a 5xx (JSON or an HTML page from a proxy), drops the connection
before or after the call took effect (a lost answer) or answers late;
:meth:`FakeBotApi.delete_chat`, :meth:`FakeBotApi.block` and
:meth:`FakeBotApi.deactivate` make a chat unreachable with the reference
server's errors; :meth:`FakeBotApi.delete_post` removes a channel message;
:meth:`FakeBotApi.channel_service` posts a service message (a pin, a join)
that cannot be copied; :meth:`FakeBotApi.channel_album` posts an album (one
``media_group_id``), which ``copyMessages`` copies as a whole.

Tests drive it from their own thread: :meth:`FakeBotApi.channel_post`,
:meth:`FakeBotApi.user_message` and :meth:`FakeBotApi.press` queue updates,
:meth:`FakeBotApi.flood` makes the next calls fail with 429,
:meth:`FakeBotApi.calls` lists what the bot sent, and :meth:`FakeBotApi.wait_for`
waits for something to happen. With ``enforce_limits`` it also answers 429
when the bot sends faster than Telegram allows (per chat, with a short burst
tolerated, and overall).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from recgraph.collect.fake_http import FakeServer, LocalHandler, LocalServer, write_response

#: Form fields whose values are JSON (python-telegram-bot JSON-encodes non-strings).
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "allowed_updates",
        "entities",
        "caption_entities",
        "reply_parameters",
        "link_preview_options",
        "commands",
        "scope",
        "message_ids",
    }
)
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "FeedBot", "username": "feed_bot"}
DEFAULT_TOKEN = "123456789:TEST-fake-token"
#: Messages a chat may get in a burst before the fake's flood control answers 429.
_BURST = 3
#: The longest ``getUpdates`` wait the server grants, as Telegram's.
MAX_POLL_SECONDS = 50.0
#: What :meth:`FakeBotApi.fail` can do to a call.
FAULTS = ("500", "502", "502-html", "drop", "lost", "slow")
BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
#: Message fields that make a service message (never copyable).
SERVICE_FIELDS = (
    "pinned_message",
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "channel_chat_created",
    "video_chat_started",
)


class ApiError(Exception):
    """An error answer: HTTP status = ``error_code``."""

    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


@dataclass(frozen=True)
class Call:
    """One method call the bot made."""

    time: float
    method: str
    params: dict[str, Any]
    result: Any
    error: int | None = None


class _Server(LocalServer):
    api: FakeBotApi


class _Handler(LocalHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        self.server.api._handle(self, b"")

    def do_POST(self) -> None:  # noqa: N802
        self.server.api._handle(self, self.body())


class FakeBotApi(FakeServer):
    """The fake Bot API; ``with FakeBotApi() as api:`` serves on ``api.base_url``.

    Parameters
    ----------
    token
        The only token accepted.
    enforce_limits
        Answer 429 when a chat gets more than one message per
        ``per_chat_seconds`` or all chats more than ``global_per_second``.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        enforce_limits: bool = False,
        per_chat_seconds: float = 1.0,
        global_per_second: float = 30.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.enforce_limits = enforce_limits
        self.per_chat_seconds = per_chat_seconds
        self.global_per_second = global_per_second
        self._lock = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(100_000_001)
        self._poll_generation = 0
        self._chats: dict[int, dict[str, Any]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = {}
        self._queries: dict[str, bool] = {}
        self._query_ids = itertools.count(1)
        self._blocked: set[int] = set()
        self._floods: deque[tuple[str | None, int, int | None]] = deque()
        self._faults: list[list[Any]] = []  # [method, kind, chat_id, delay, passes left]
        self._deleted_chats: set[int] = set()
        self._deactivated: set[int] = set()
        self._sends: deque[tuple[float, int]] = deque()
        self.calls_log: list[Call] = []
        self._httpd = _Server((host, port), _Handler)
        self._httpd.api = self

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """What python-telegram-bot takes as ``base_url`` (the token is appended)."""
        return f"{self.url}/bot"

    def _stopping(self) -> None:
        """Wake the long polls, which would otherwise hold the shutdown for their timeout."""
        with self._lock:
            self._poll_generation += 1
            self._lock.notify_all()

    # ---------------------------------------------------------------- scripting
    def channel_post(
        self, channel_id: int, text: str, *, title: str = "News", username: str | None = "news"
    ) -> dict[str, Any]:
        """A new post in a channel the bot administers; queues a ``channel_post`` update."""
        chat = {"id": channel_id, "type": "channel", "title": title}
        if username:
            chat["username"] = username
        with self._lock:
            self._chats[channel_id] = chat
            message = self._new_message(channel_id, {"sender_chat": chat, "text": text})
            self._push({"channel_post": message})
        return message

    def user_message(self, user_id: int, text: str, *, first_name: str = "Ann") -> dict[str, Any]:
        """A private message from a user; ``/commands`` carry a ``bot_command`` entity."""
        user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        chat = {"id": user_id, "type": "private", "first_name": first_name}
        extra: dict[str, Any] = {"from": user, "text": text}
        if text.startswith("/"):
            extra["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
            ]
        with self._lock:
            self._chats[user_id] = chat
            message = self._new_message(user_id, extra)
            self._push({"message": message})
        return message

    def press(self, user_id: int, message_id: int, data: str) -> str:
        """The user presses an inline button of message ``message_id`` in their chat."""
        with self._lock:
            message = self._messages.get((user_id, message_id))
            if message is None:
                raise KeyError(f"no message {message_id} in chat {user_id}")
            query_id = f"{user_id}-{next(self._query_ids)}"
            self._queries[query_id] = False
            user = {"id": user_id, "is_bot": False, "first_name": "Ann"}
            self._push(
                {
                    "callback_query": {
                        "id": query_id,
                        "from": user,
                        "chat_instance": str(-(10**18) - user_id),
                        "data": data,
                        "message": message,
                    }
                }
            )
        return query_id

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sends to them answer 403."""
        with self._lock:
            self._blocked.add(user_id)

    def deactivate(self, user_id: int) -> None:
        """The user deleted their account: sends answer 403 "user is deactivated"."""
        with self._lock:
            self._deactivated.add(user_id)

    def delete_chat(self, chat_id: int) -> None:
        """The chat no longer exists: sends to it answer 400 "chat not found"."""
        with self._lock:
            self._deleted_chats.add(chat_id)

    def delete_post(self, channel_id: int, message_id: int) -> None:
        """The message is deleted from its channel: copies answer "message to copy not found"."""
        with self._lock:
            self._messages.pop((channel_id, message_id), None)

    def channel_service(
        self, channel_id: int, kind: str = "pinned_message", *, title: str = "News"
    ) -> dict[str, Any]:
        """A service message in the channel (``pinned_message``, ``new_chat_title``, ...)."""
        if kind not in SERVICE_FIELDS:
            raise ValueError(f"unknown service message {kind!r}; one of {SERVICE_FIELDS}")
        chat = self._chats.get(channel_id) or {"id": channel_id, "type": "channel", "title": title}
        with self._lock:
            self._chats[channel_id] = chat
            value: Any = True
            if kind == "pinned_message":
                pinned = next(
                    (m for (c, _), m in reversed(self._messages.items()) if c == channel_id), None
                )
                value = pinned or {"message_id": 1, "date": int(time.time()), "chat": chat}
            elif kind in ("new_chat_members",):
                value = [{"id": 555, "is_bot": False, "first_name": "Joe"}]
            elif kind == "left_chat_member":
                value = {"id": 555, "is_bot": False, "first_name": "Joe"}
            elif kind == "new_chat_title":
                value = "New title"
            message = self._new_message(channel_id, {"sender_chat": chat, kind: value})
            self._push({"channel_post": message})
        return message

    def channel_album(
        self, channel_id: int, count: int = 3, *, media_group_id: str | None = None
    ) -> list[dict[str, Any]]:
        """An album of ``count`` photos: ``count`` channel posts with one ``media_group_id``."""
        chat = self._chats.get(channel_id) or {
            "id": channel_id,
            "type": "channel",
            "title": "News",
            "username": "news",
        }
        with self._lock:
            self._chats[channel_id] = chat
            group = media_group_id or str(13_000_000_000_000_000 + next(self._query_ids))
            messages = []
            for n in range(count):
                photo = [
                    {
                        "file_id": f"photo-{group}-{n}",
                        "file_unique_id": f"u{n}",
                        "width": 90,
                        "height": 90,
                    }
                ]
                extra: dict[str, Any] = {
                    "sender_chat": chat,
                    "media_group_id": group,
                    "photo": photo,
                }
                if n == 0:
                    extra["caption"] = "album"
                message = self._new_message(channel_id, extra)
                messages.append(message)
                self._push({"channel_post": message})
        return messages

    def fail(
        self,
        method: str,
        kind: str = "502",
        *,
        count: int = 1,
        chat_id: int | None = None,
        delay: float = 2.0,
        after: int = 0,
    ) -> None:
        """The next ``count`` calls of ``method`` (to ``chat_id``, if given) go wrong.

        ``kind``: ``500``/``502`` (a JSON error, nothing done), ``502-html`` (a
        proxy's HTML page, nothing done), ``drop`` (the connection closes before
        the call takes effect), ``lost`` (the call takes effect, then the
        connection closes without an answer), ``slow`` (the call takes effect,
        the answer comes ``delay`` seconds later). The first ``after`` matching
        calls still succeed.
        """
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self._lock:
            for _ in range(count):
                self._faults.append([method.lower(), kind, chat_id, delay, after])

    def clear_faults(self) -> None:
        """Forget every fault and flood still pending."""
        with self._lock:
            self._faults.clear()
            self._floods.clear()

    def flood(
        self,
        method: str | None = None,
        *,
        retry_after: int = 1,
        count: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """The next ``count`` calls (of ``method``, or any sending method; to ``chat_id``,
        if given) answer 429 with ``retry_after``."""
        with self._lock:
            self._floods.extend([(method, retry_after, chat_id)] * count)

    def calls(self, method: str | None = None, **where: Any) -> list[Call]:
        """Calls that took effect, optionally of one method and with matching params.

        Values are compared as strings (form and JSON bodies differ in types).
        """
        with self._lock:
            log = list(self.calls_log)
        return [
            c
            for c in log
            if c.error is None
            and (method is None or c.method == method)
            and all(str(c.params.get(k)) == str(v) for k, v in where.items())
        ]

    def errors(self, method: str | None = None) -> list[Call]:
        """Calls answered with an error (``error`` = the code; 0 for a dropped connection)."""
        with self._lock:
            log = list(self.calls_log)
        return [c for c in log if c.error is not None and (method is None or c.method == method)]

    def messages_in(self, chat_id: int) -> list[dict[str, Any]]:
        """Every message in ``chat_id``, in order (what a user sees)."""
        with self._lock:
            return [m for (c, _), m in sorted(self._messages.items()) if c == chat_id]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll ``predicate`` until it is truthy; return its value, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise TimeoutError("the fake Bot API did not see what was expected in time")

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    # ---------------------------------------------------------------- internals
    def _push(self, payload: dict[str, Any]) -> None:
        """Queue an update; caller holds the lock."""
        self._updates.append({"update_id": next(self._update_ids), **payload})
        self._lock.notify_all()

    def _new_message(self, chat_id: int, extra: dict[str, Any]) -> dict[str, Any]:
        """Store a message in ``chat_id`` with the next id; caller holds the lock."""
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chats[chat_id],
            **extra,
        }
        self._messages[(chat_id, message_id)] = message
        return message

    def _handle(self, request: _Handler, body: bytes) -> None:
        parts = urlsplit(request.path)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 2 or not segments[0].startswith("bot"):
            self._reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        token, method = segments[0][3:], segments[1]
        if token != self.token:
            self._reply(
                request, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            )
            return
        params: dict[str, Any] = {}
        try:
            params = _params(parts.query, body, request.headers.get("Content-Type", ""))
            handler = _METHODS.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            fault = self._take_fault(method, params)
            if fault is not None and fault[0] in ("500", "502", "502-html", "drop"):
                self._fault_before(request, method, params, fault[0])
                return
            result = handler(self, params)
        except ApiError as exc:
            with self._lock:
                self.calls_log.append(Call(time.time(), _canonical(method), params, None, exc.code))
            answer: dict[str, Any] = {
                "ok": False,
                "error_code": exc.code,
                "description": exc.description,
            }
            if exc.parameters:
                answer["parameters"] = exc.parameters
            self._reply(request, exc.code, answer)
            return
        if method.lower() != "getupdates" or result:
            with self._lock:
                self.calls_log.append(Call(time.time(), _canonical(method), params, result))
        if fault is not None and fault[0] == "lost":
            request.close_connection = True  # it happened; the answer never comes
            return
        if fault is not None and fault[0] == "slow":
            time.sleep(fault[1])
        self._reply(request, 200, {"ok": True, "result": result})

    def _take_fault(self, method: str, params: dict[str, Any]) -> tuple[str, float] | None:
        """The fault this call meets, if any; a fault still counting its ``after`` passes
        lets the call through (and counts it for every fault of the same method and chat)."""
        with self._lock:
            for n, (name, kind, chat_id, delay, after) in enumerate(self._faults):
                if name != method.lower():
                    continue
                if chat_id is not None and str(params.get("chat_id")) != str(chat_id):
                    continue
                if after > 0:
                    for other in self._faults[n:]:
                        if (other[0], other[2]) == (name, chat_id) and other[4] > 0:
                            other[4] -= 1
                    return None
                del self._faults[n]
                return kind, delay
        return None

    def _fault_before(
        self, request: _Handler, method: str, params: dict[str, Any], kind: str
    ) -> None:
        """A fault that leaves the call undone: an error answer or a closed connection."""
        code = 0 if kind == "drop" else int(kind[:3])
        with self._lock:
            self.calls_log.append(Call(time.time(), _canonical(method), params, None, code))
        if kind == "drop":
            request.close_connection = True
        elif kind == "502-html":
            write_response(request, 502, BAD_GATEWAY_PAGE, "text/html")
        else:
            text = "Internal Server Error" if code == 500 else "Bad Gateway"
            self._reply(request, code, {"ok": False, "error_code": code, "description": text})

    @staticmethod
    def _reply(request: _Handler, status: int, body: dict[str, Any]) -> None:
        write_response(request, status, json.dumps(body).encode(), "application/json")

    def _check_send(self, method: str, chat_id: int) -> None:
        """Floods, blocked users and Telegram's rates for a sending method; caller holds the lock."""
        flood = next(
            (
                n
                for n, (m, _, c) in enumerate(self._floods)
                if m in (None, method) and c in (None, chat_id)
            ),
            None,
        )
        if flood is not None:
            retry_after = self._floods[flood][1]
            del self._floods[flood]
            raise ApiError(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        if chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id in self._deactivated:
            raise ApiError(403, "Forbidden: user is deactivated")
        if chat_id not in self._chats or chat_id in self._deleted_chats:
            raise ApiError(400, "Bad Request: chat not found")
        now = time.monotonic()
        if self.enforce_limits:
            # Telegram tolerates short bursts; so does the fake (and arrival times
            # jitter): a chat may get BURST messages within BURST * per_chat_seconds,
            # all chats together 10 % more than global_per_second in any second.
            horizon = max(1.0, _BURST * self.per_chat_seconds)
            while self._sends and self._sends[0][0] < now - horizon:
                self._sends.popleft()
            in_chat = sum(
                1
                for t, c in self._sends
                if c == chat_id and t >= now - _BURST * self.per_chat_seconds
            )
            in_second = sum(1 for t, _ in self._sends if t >= now - 1.0)
            if in_chat >= _BURST or in_second >= self.global_per_second * 1.1:
                raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
            self._sends.append((now, chat_id))


# ---------------------------------------------------------------------- methods
def _int(params: dict[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name, default)
    if value is None:
        raise ApiError(400, f'Bad Request: parameter "{name}" is required')
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _get_me(api: FakeBotApi, params: dict[str, Any]) -> dict[str, Any]:
    return dict(BOT_USER)


def _delete_webhook(api: FakeBotApi, params: dict[str, Any]) -> bool:
    if str(params.get("drop_pending_updates", "")).lower() == "true":
        with api._lock:
            api._updates.clear()
    return True


def _get_updates(api: FakeBotApi, params: dict[str, Any]) -> list[dict[str, Any]]:
    offset = _int(params, "offset", 0)
    limit = max(1, min(100, _int(params, "limit", 100)))
    timeout = min(MAX_POLL_SECONDS, max(0.0, float(params.get("timeout", 0) or 0)))
    allowed = params.get("allowed_updates") or None
    deadline = time.monotonic() + timeout
    with api._lock:
        api._poll_generation += 1
        generation = api._poll_generation
        api._lock.notify_all()  # an older poller is terminated by this one
        if offset > 0:
            api._updates = [u for u in api._updates if u["update_id"] >= offset]
        elif offset < 0:
            api._updates = api._updates[offset:]
        while True:
            if generation != api._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
            ready = [u for u in api._updates if not allowed or any(kind in u for kind in allowed)]
            if ready:
                return ready[:limit]
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            api._lock.wait(min(left, 0.5))


def _send_message(api: FakeBotApi, params: dict[str, Any]) -> dict[str, Any]:
    chat_id = _int(params, "chat_id")
    text = params.get("text")
    if not text:
        raise ApiError(400, "Bad Request: message text is empty")
    with api._lock:
        api._check_send("sendMessage", chat_id)
        extra: dict[str, Any] = {"from": BOT_USER, "text": str(text)}
        if params.get("reply_markup"):
            extra["reply_markup"] = params["reply_markup"]
        return api._new_message(chat_id, extra)


def _stored(api: FakeBotApi, params: dict[str, Any], chat: str, verb: str) -> dict[str, Any]:
    """The message ``(params[chat], params["message_id"])``, or the Bot API's answer for a
    missing one ("message to <verb> not found"); the caller holds the lock."""
    message = api._messages.get((_int(params, chat), _int(params, "message_id")))
    if message is None:
        raise ApiError(400, f"Bad Request: message to {verb} not found")
    return message


def _copy_message(api: FakeBotApi, params: dict[str, Any]) -> dict[str, Any]:
    chat_id = _int(params, "chat_id")
    with api._lock:
        original = _stored(api, params, "from_chat_id", "copy")
        if any(key in original for key in SERVICE_FIELDS):
            raise ApiError(400, "Bad Request: message can't be copied")
        api._check_send("copyMessage", chat_id)
        extra = _copied(original)
        if params.get("reply_markup"):
            extra["reply_markup"] = params["reply_markup"]
        copy = api._new_message(chat_id, extra)
    return {"message_id": copy["message_id"]}


def _copied(original: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {"from": BOT_USER}
    for key in ("text", "caption", "photo", "video", "document", "media_group_id"):
        if key in original:
            extra[key] = original[key]
    return extra


def _copy_messages(api: FakeBotApi, params: dict[str, Any]) -> list[dict[str, Any]]:
    """``copyMessages``: 1-100 strictly increasing ids; albums stay albums; no reply_markup."""
    chat_id = _int(params, "chat_id")
    from_chat = _int(params, "from_chat_id")
    ids = params.get("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
        raise ApiError(400, "Bad Request: message identifiers are not specified")
    ids = [int(m) for m in ids]
    if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
        raise ApiError(
            400, "Bad Request: message identifiers must be in a strictly increasing order"
        )
    with api._lock:
        originals = [api._messages.get((from_chat, m)) for m in ids]
        found = [m for m in originals if m is not None and not any(k in m for k in SERVICE_FIELDS)]
        if not found:
            raise ApiError(400, "Bad Request: messages to copy not found")
        api._check_send("copyMessages", chat_id)
        group = str(13_500_000_000_000_000 + next(api._query_ids))
        copies = []
        for original in found:
            extra = _copied(original)
            if "media_group_id" in extra:
                extra["media_group_id"] = group
            copies.append({"message_id": api._new_message(chat_id, extra)["message_id"]})
    return copies


def _get_chat(api: FakeBotApi, params: dict[str, Any]) -> dict[str, Any]:
    chat_id = _int(params, "chat_id")
    with api._lock:
        if chat_id not in api._chats or chat_id in api._deleted_chats:
            raise ApiError(400, "Bad Request: chat not found")
        return {**api._chats[chat_id], "accent_color_id": 0, "max_reaction_count": 11}


def _forward_message(api: FakeBotApi, params: dict[str, Any]) -> dict[str, Any]:
    chat_id = _int(params, "chat_id")
    with api._lock:
        original = _stored(api, params, "from_chat_id", "forward")
        api._check_send("forwardMessage", chat_id)
        origin = {
            "type": "channel",
            "chat": original["chat"],
            "message_id": original["message_id"],
            "date": original["date"],
        }
        return api._new_message(
            chat_id, {"text": original.get("text", ""), "forward_origin": origin}
        )


def _answer_callback_query(api: FakeBotApi, params: dict[str, Any]) -> bool:
    query_id = str(params.get("callback_query_id", ""))
    text = params.get("text")
    if text is not None and len(str(text)) > 200:
        raise ApiError(400, "Bad Request: text is too long")
    with api._lock:
        if api._queries.get(query_id, True):
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        api._queries[query_id] = True
    return True


def _edit_message_reply_markup(api: FakeBotApi, params: dict[str, Any]) -> dict[str, Any]:
    with api._lock:
        message = _stored(api, params, "chat_id", "edit")
        markup = params.get("reply_markup")
        if markup == message.get("reply_markup"):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        return message


def _set_my_commands(api: FakeBotApi, params: dict[str, Any]) -> bool:
    return True


_METHODS: dict[str, Callable[[FakeBotApi, dict[str, Any]], Any]] = {
    "getme": _get_me,
    "deletewebhook": _delete_webhook,
    "getupdates": _get_updates,
    "sendmessage": _send_message,
    "copymessage": _copy_message,
    "copymessages": _copy_messages,
    "getchat": _get_chat,
    "forwardmessage": _forward_message,
    "answercallbackquery": _answer_callback_query,
    "editmessagereplymarkup": _edit_message_reply_markup,
    "setmycommands": _set_my_commands,
}
_CANONICAL = {
    name: name
    for name in (
        "getMe",
        "deleteWebhook",
        "getUpdates",
        "sendMessage",
        "copyMessage",
        "copyMessages",
        "getChat",
        "forwardMessage",
        "answerCallbackQuery",
        "editMessageReplyMarkup",
        "setMyCommands",
    )
}


def _canonical(method: str) -> str:
    """The method's documented spelling (names are case-insensitive on the wire)."""
    for name in _CANONICAL:
        if name.lower() == method.lower():
            return name
    return method


def _params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Parameters from the query string and the body, in any of the four encodings."""
    values: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query).items()}
    kind = content_type.split(";")[0].strip().lower()
    if body:
        if kind == "application/json":
            try:
                decoded = json.loads(body)
            except json.JSONDecodeError:
                raise ApiError(400, "Bad Request: can't parse JSON encoded request") from None
            if isinstance(decoded, dict):
                return {**values, **decoded}
        elif kind == "multipart/form-data":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    payload = part.get_payload(decode=True) or b""
                    values[name] = payload.decode(errors="replace")
        else:
            values.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
    for name in JSON_FIELDS & values.keys():
        if isinstance(values[name], str):
            try:
                values[name] = json.loads(values[name])
            except json.JSONDecodeError:
                raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return values


__all__ = [
    "BOT_USER",
    "DEFAULT_TOKEN",
    "FAULTS",
    "SERVICE_FIELDS",
    "ApiError",
    "Call",
    "FakeBotApi",
]
