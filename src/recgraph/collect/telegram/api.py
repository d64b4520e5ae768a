"""A small Bot API client (httpx) and what each error means for the bot.

Requests are ``POST {base}/bot<token>/<method>`` with a JSON body; answers
are the ``{"ok": ..., "result" | "error_code", "description", "parameters"}``
envelope of ``shared/protocols/README.md`` part B. Every failure becomes a
:class:`TelegramError` with a :class:`Fault` that says what to do, decided by
the error code first and the exact description second (never by a bare
"not found"):

=====================  ==========================================================  =========================
fault                  when                                                        the bot
=====================  ==========================================================  =========================
``flood``              429 (``parameters.retry_after``)                            waits, that chat only
``message_gone``       400 "message to copy not found", "MESSAGE_ID_INVALID"       retires the post
``not_copyable``       400 "message can't be copied"                               retires the post
``chat_gone``          400 "chat not found", "user not found", "PEER_ID_INVALID",  unsubscribes that chat
                       403 (blocked, kicked, deactivated, can't initiate)
``query_expired``      400 "query is too old ... or query ID is invalid"           gives up on that answer
``not_sent``           the request never left (connect error, pool timeout)        retries later
``maybe_sent``         5xx, an HTML error page, a timeout or a dropped answer      never resends that post
``unauthorized``       401, 404 (wrong token or base URL)                          stops
``bad_request``        any other 4xx                                               skips that post
=====================  ==========================================================  =========================

The token is part of every URL; it never reaches a log or an exception
message (``***`` instead).
"""

from __future__ import annotations

import enum
import json
import logging
from typing import Any

from recgraph.settings import redact

log = logging.getLogger(__name__)


class Fault(enum.StrEnum):
    FLOOD = "flood"
    MESSAGE_GONE = "message_gone"
    NOT_COPYABLE = "not_copyable"
    CHAT_GONE = "chat_gone"
    QUERY_EXPIRED = "query_expired"
    NOT_SENT = "not_sent"
    MAYBE_SENT = "maybe_sent"
    UNAUTHORIZED = "unauthorized"
    BAD_REQUEST = "bad_request"

    @property
    def transient(self) -> bool:
        """A later try may succeed."""
        return self in (Fault.FLOOD, Fault.NOT_SENT, Fault.MAYBE_SENT)


#: Lower-cased description fragments of a 400, by fault (the reference server's strings).
_BAD_REQUEST = (
    (Fault.MESSAGE_GONE, ("message to copy not found", "messages to copy not found")),
    (Fault.MESSAGE_GONE, ("message_id_invalid",)),
    (Fault.NOT_COPYABLE, ("message can't be copied", "messages can't be copied")),
    (Fault.CHAT_GONE, ("chat not found", "user not found", "peer_id_invalid")),
    (Fault.CHAT_GONE, ("have no rights to send a message", "not enough rights to send")),
    (Fault.QUERY_EXPIRED, ("query is too old", "query id is invalid")),
)


def classify(code: int, description: str) -> Fault:
    """The fault of an error answer ``(error_code, description)``."""
    text = description.lower()
    if code == 429:
        return Fault.FLOOD
    if code in (401, 404):
        return Fault.UNAUTHORIZED
    if code == 403:
        return Fault.CHAT_GONE  # blocked, kicked, deactivated, can't initiate conversation
    if code >= 500:
        return Fault.MAYBE_SENT
    if code == 400:
        for fault, fragments in _BAD_REQUEST:
            if any(fragment in text for fragment in fragments):
                return fault
    return Fault.BAD_REQUEST


class TelegramError(Exception):
    """A Bot API call that failed: ``fault``, ``code`` (0: no answer), ``description``."""

    def __init__(
        self,
        method: str,
        fault: Fault,
        description: str,
        *,
        code: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{method}: {description}")
        self.method = method
        self.fault = fault
        self.code = code
        self.description = description
        self.retry_after = retry_after


class BotApi:
    """``await api.call("sendMessage", chat_id=1, text="hi")`` → the ``result``.

    ``read_timeout`` (seconds) overrides the client's for one call.

    Parameters
    ----------
    token
        The bot token (never logged).
    base_url
        ``https://api.telegram.org`` (default) or a local server such as
        ``http://127.0.0.1:8081``; python-telegram-bot style bases that end in
        ``/bot`` are accepted too.
    timeout_seconds
        Read timeout of ordinary calls; ``getUpdates`` adds its long-poll time.
    """

    def __init__(
        self, token: str, base_url: str | None = None, *, timeout_seconds: float = 10.0
    ) -> None:
        import httpx

        self.token = token
        base = (base_url or "https://api.telegram.org").rstrip("/")
        base = base.removesuffix("/bot{token}").removesuffix("/bot")
        self.base = base
        self.timeout_seconds = timeout_seconds
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    @property
    def bot_id(self) -> str:
        """The bot's numeric id: the token's public part before the colon."""
        return self.token.split(":", 1)[0]

    def _mask(self, text: str) -> str:
        return redact(text, [self.token])

    async def call(self, method: str, *, read_timeout: float | None = None, **params: Any) -> Any:
        """Call ``method`` with ``params``; return the answer's ``result``.

        The body is form-urlencoded as python-telegram-bot sends it: strings
        as they are, other values JSON-encoded, None values left out. Raises
        :class:`TelegramError` for every failure.
        """
        import httpx

        body = {
            k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in params.items()
            if v is not None
        }
        url = f"{self.base}/bot{self.token}/{method}"
        read = self.timeout_seconds if read_timeout is None else read_timeout
        try:
            response = await self._client.post(
                url, data=body, timeout=httpx.Timeout(read, connect=min(5.0, read))
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TelegramError(method, Fault.NOT_SENT, self._describe(exc)) from None
        except httpx.HTTPError as exc:  # sent, but no (whole) answer: it may have happened
            raise TelegramError(method, Fault.MAYBE_SENT, self._describe(exc)) from None
        try:
            answer = response.json()
            if not isinstance(answer, dict) or "ok" not in answer:
                raise ValueError("not a Bot API envelope")
        except ValueError:
            code = response.status_code
            fault = classify(code, "") if code >= 400 else Fault.MAYBE_SENT
            raise TelegramError(
                method, fault, f"HTTP {code} without a Bot API answer", code=code
            ) from None
        if answer.get("ok"):
            return answer.get("result")
        code = int(answer.get("error_code") or response.status_code)
        description = str(answer.get("description") or "")
        retry_after = (answer.get("parameters") or {}).get("retry_after")
        raise TelegramError(
            method,
            classify(code, description),
            self._mask(description),
            code=code,
            retry_after=None if retry_after is None else float(retry_after),
        )

    def _describe(self, exc: Exception) -> str:
        return self._mask(f"{type(exc).__name__}: {exc}") or type(exc).__name__

    async def close(self) -> None:
        await self._client.aclose()


def keyboard(rows: list[list[tuple[str, str]]]) -> dict[str, Any]:
    """An ``InlineKeyboardMarkup`` of ``(text, callback_data)`` buttons."""
    return {"inline_keyboard": [[{"text": t, "callback_data": d} for t, d in row] for row in rows]}


__all__ = ["BotApi", "Fault", "TelegramError", "classify", "keyboard"]
