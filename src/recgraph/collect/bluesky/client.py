"""An async XRPC client over httpx: bounded concurrency, paced by the rate limit, retried.

Only the public, unauthenticated queries a graph crawler needs are wrapped
(``app.bsky.graph.getFollows``, ``app.bsky.actor.getProfiles``,
``com.atproto.identity.resolveHandle``); :meth:`XrpcClient.query` reaches any
other. What is retried and what is not follows the protocol notes:

- 429: wait as :class:`~recgraph.collect.bluesky.ratelimit.RateLimiter` says
  (``Retry-After``, else the reset, else backoff), then try again;
- 500, 502, 503, 504, timeouts and connection errors: exponential backoff
  with jitter, up to ``max_attempts``; error pages that are not JSON are fine;
- 400 (bad params, unknown actor, bad cursor), 401, 403, 404, 413 and 501:
  never retried; they raise :class:`XrpcError` (:class:`ActorNotFound` for
  an unknown, taken-down or deactivated actor).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from recgraph.collect.bluesky.ratelimit import (
    BackoffConfig,
    RateLimitConfig,
    RateLimiter,
    backoff_delay,
)
from recgraph.errors import RecgraphError
from recgraph.settings import config_of

#: The public, cached AppView: no authentication, generous limits applied at the edge.
DEFAULT_APPVIEW = "https://public.api.bsky.app"

#: Most actors ``app.bsky.actor.getProfiles`` takes per call.
PROFILES_PER_CALL = 25

#: Statuses worth another try after a backoff.
RETRY_STATUSES = frozenset({500, 502, 503, 504})

#: 400 error names (and message prefixes) that mean "no such account here".
_ACTOR_GONE_ERRORS = frozenset(
    {"AccountTakedown", "AccountDeactivated", "ActorNotFound", "RepoNotFound"}
)
_ACTOR_GONE_MESSAGES = ("Actor not found", "Profile not found")
_HANDLE_GONE_MESSAGES = ("Unable to resolve handle",)


class XrpcError(RecgraphError):
    """An XRPC call failed for good (not retried, or out of retries).

    Attributes
    ----------
    status
        HTTP status, or None when no response ever came (network, timeout).
    error
        The ``error`` name of the body (``InvalidRequest``...), if any.
    message
        The readable ``message`` of the body, or the start of a non-JSON page.
    """

    def __init__(
        self, nsid: str, status: int | None, error: str | None, message: str | None
    ) -> None:
        self.nsid = nsid
        self.status = status
        self.error = error
        self.message = message
        what = f"HTTP {status}" if status is not None else "no response"
        detail = ": ".join(x for x in (error, message) if x)
        super().__init__(f"{nsid}: {what}{' ' + detail if detail else ''}")


class ActorNotFound(XrpcError):
    """The actor is unknown, taken down or deactivated (a 400 that is never retried)."""


class HandleNotFound(XrpcError):
    """``resolveHandle`` found no DID for the handle."""


class ClientConfig(BaseModel):
    """Where and how hard to call.

    ``concurrency`` bounds requests in flight (and pooled connections);
    ``timeout_seconds`` applies to connecting and to each read.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: str = DEFAULT_APPVIEW
    concurrency: int = Field(default=8, ge=1, le=256)
    timeout_seconds: float = Field(default=20.0, gt=0)
    #: 429s in a row for one request before giving up.
    max_rate_limited: int = Field(default=50, ge=1)
    user_agent: str = "recgraph-crawler/0.1 (+https://github.com/recgraph)"
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)


@dataclass
class ClientStats:
    """What the client did: counts, and a log of send times for rate plots."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    network_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    #: ``(unix seconds sent, status or 0 for no response)``, newest last.
    log: deque = field(default_factory=lambda: deque(maxlen=1_000_000))

    def requests_per_second(self, seconds: float = 10.0, now: float | None = None) -> float:
        """Requests sent over the last ``seconds``."""
        now = time.time() if now is None else now
        start = now - seconds
        count = 0
        for sent, _ in reversed(self.log):
            if sent < start:
                break
            count += 1
        return count / seconds


class XrpcClient:
    """Async XRPC queries against one host.

    Use as ``async with XrpcClient(config) as client:``. One client is shared
    by every task of a crawl, so the concurrency bound and the rate limit are
    global.

    Parameters
    ----------
    config
        A :class:`ClientConfig` or its fields.
    transport
        An httpx transport for tests (``httpx.MockTransport``).
    """

    def __init__(
        self,
        config: ClientConfig | Mapping[str, Any] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config_of(ClientConfig, config)
        self.base_url = self.config.base_url.rstrip("/")
        self.limiter = RateLimiter(self.config.rate_limit, rng=rng)
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    async def __aenter__(self) -> XrpcClient:
        limits = httpx.Limits(
            max_connections=self.config.concurrency,
            max_keepalive_connections=self.config.concurrency,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.config.timeout_seconds),
            limits=limits,
            headers={"User-Agent": self.config.user_agent, "Accept": "application/json"},
            transport=self._transport,
        )
        self._slots = asyncio.Semaphore(self.config.concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ---------------------------------------------------------------- core
    async def query(self, nsid: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``GET /xrpc/{nsid}`` with ``params`` (lists repeat the key); the JSON body.

        Raises
        ------
        XrpcError
            A status that is not retried, or retries exhausted.
        """
        if self._http is None or self._slots is None:
            raise RuntimeError("use the client inside 'async with XrpcClient(...)'")
        query = _query_params(params or {})
        cfg = self.config
        failures = 0
        rate_limited = 0
        async with self._slots:
            while True:
                ticket = await self.limiter.acquire()
                sent = time.time()
                self.stats.requests += 1
                try:
                    response = await self._http.get(f"/xrpc/{nsid}", params=query)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    self.limiter.observe(ticket, None, None)
                    self.stats.log.append((sent, 0))
                    self.stats.network_errors += 1
                    failures += 1
                    if failures >= cfg.backoff.max_attempts:
                        raise XrpcError(nsid, None, type(exc).__name__, str(exc) or None) from exc
                    await self._backoff(failures - 1)
                    continue
                status = response.status_code
                self.limiter.observe(ticket, status, response.headers)
                self.stats.log.append((sent, status))
                self.stats.statuses[status] += 1
                if status == 200:
                    return _json_body(nsid, response)
                error, message = _error_body(response)
                if status == 429:
                    self.stats.rate_limited += 1
                    rate_limited += 1
                    if rate_limited >= cfg.max_rate_limited:
                        raise XrpcError(nsid, status, error, message)
                    self.stats.retries += 1
                    continue  # the limiter makes the next acquire wait
                if status in RETRY_STATUSES:
                    failures += 1
                    if failures >= cfg.backoff.max_attempts:
                        raise XrpcError(nsid, status, error, message)
                    await self._backoff(failures - 1)
                    continue
                raise _classify(nsid, status, error, message)

    async def _backoff(self, attempt: int) -> None:
        self.stats.retries += 1
        b = self.config.backoff
        await asyncio.sleep(backoff_delay(attempt, b.base_seconds, b.max_seconds, self._rng))

    # ---------------------------------------------------------------- endpoints
    async def get_follows(
        self, actor: str, cursor: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """One page of ``app.bsky.graph.getFollows``: ``{"subject", "follows", "cursor"?}``."""
        params: dict[str, Any] = {"actor": actor, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = await self.query("app.bsky.graph.getFollows", params)
        if not isinstance(page.get("follows"), list) or not isinstance(page.get("subject"), dict):
            raise XrpcError(
                "app.bsky.graph.getFollows", 200, "InvalidResponse", "no subject/follows"
            )
        return page

    async def get_profiles(self, actors: Sequence[str]) -> list[dict[str, Any]]:
        """Profiles of ``actors`` (handles or DIDs), 25 per call; unknown actors are left out."""
        profiles: list[dict[str, Any]] = []
        for start in range(0, len(actors), PROFILES_PER_CALL):
            chunk = list(actors[start : start + PROFILES_PER_CALL])
            body = await self.query("app.bsky.actor.getProfiles", {"actors": chunk})
            profiles.extend(body.get("profiles", []))
        return profiles

    async def resolve_handle(self, handle: str) -> str:
        """The DID of ``handle``; :class:`HandleNotFound` when it does not resolve."""
        body = await self.query("com.atproto.identity.resolveHandle", {"handle": handle})
        did = body.get("did")
        if not isinstance(did, str):
            raise HandleNotFound("com.atproto.identity.resolveHandle", 200, None, "no did")
        return did


def _query_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query pairs: lists repeat their key, booleans are ``true``/``false``, None is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            pairs.append((key, str(item)))
    return pairs


def _json_body(nsid: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise XrpcError(nsid, response.status_code, "InvalidResponse", "body is not JSON") from None
    if not isinstance(body, dict):
        raise XrpcError(nsid, response.status_code, "InvalidResponse", "body is not an object")
    return body


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(error, message)`` of an error response; a non-JSON page gives its first characters."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip().replace("\n", " ")
        return None, text[:120] or None
    if not isinstance(body, dict):
        return None, None
    error, message = body.get("error"), body.get("message")
    return (
        error if isinstance(error, str) else None,
        message if isinstance(message, str) else None,
    )


def _classify(nsid: str, status: int, error: str | None, message: str | None) -> XrpcError:
    if status == 400:
        if error in _ACTOR_GONE_ERRORS or (message or "").startswith(_ACTOR_GONE_MESSAGES):
            return ActorNotFound(nsid, status, error, message)
        if error == "HandleNotFound" or (message or "").startswith(_HANDLE_GONE_MESSAGES):
            return HandleNotFound(nsid, status, error, message)
    return XrpcError(nsid, status, error, message)


__all__ = [
    "DEFAULT_APPVIEW",
    "PROFILES_PER_CALL",
    "ActorNotFound",
    "ClientConfig",
    "ClientStats",
    "HandleNotFound",
    "XrpcClient",
    "XrpcError",
]
