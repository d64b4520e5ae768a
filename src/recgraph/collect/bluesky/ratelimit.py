"""Client-side pacing for XRPC rate limits, and the backoff used for retries.

Bluesky servers announce a fixed-window budget on every rate-limited response::

    RateLimit-Limit: 3000          points in the window
    RateLimit-Remaining: 2871      points left
    RateLimit-Reset: 1744582868    unix seconds when the window resets
    RateLimit-Policy: 3000;w=300   "<limit>;w=<window seconds>"
    Retry-After: 35                only on a 429, only on newer servers

Waiting for the 429 wastes a round trip and, on some hosts, earns a longer
ban, so :class:`RateLimiter` spends the budget evenly instead: with ``R``
points left ``T`` seconds before the reset, it sends the next request
``T / (R + 1)`` seconds after the last one (so the ``R`` remaining requests
all fall before the reset), and when ``R`` is used up it sleeps until the
reset.
Its own count of points is exact for a single client (every send takes one
point); the headers correct it, newest response first, when the budget is
shared with someone else. After a 429 it waits for ``Retry-After``, else
until ``RateLimit-Reset``, else backs off exponentially with jitter.

Servers without the headers (the public AppView applies its limits at the
edge) are not paced; only 429s slow the client down there.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from recgraph.settings import config_of


class RateLimitConfig(BaseModel):
    """How close to the announced budget the client goes.

    ``reserve_points`` are left unspent in every window (for other clients
    sharing the address); ``reset_slack_seconds`` is waited past an announced
    reset before the budget is assumed to be full again (clock skew, servers
    that round the reset down); ``backoff_*`` apply to 429s without any hint.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    reserve_points: int = Field(default=0, ge=0)
    reset_slack_seconds: float = Field(default=0.02, ge=0)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)


class BackoffConfig(BaseModel):
    """Exponential backoff with jitter for 5xx answers and network errors.

    The ``n``-th retry waits ``min(max, base * 2**n)`` seconds, half of it
    fixed and half drawn uniformly ("equal jitter"), so clients that failed
    together do not come back together.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_seconds: float = Field(default=0.5, gt=0)
    max_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = first retry), with equal jitter."""
    ceiling = min(cap, base * (2.0 ** max(0, attempt)))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def parse_policy(value: str | None) -> tuple[int | None, float | None]:
    """``"3000;w=300"`` -> ``(3000, 300.0)``; missing or malformed parts are None."""
    if not value:
        return None, None
    first = value.split(",")[0]
    parts = [p.strip() for p in first.split(";")]
    limit = _number(parts[0], int)
    window = None
    for part in parts[1:]:
        key, _, raw = part.partition("=")
        if key.strip().lower() == "w":
            window = _number(raw, float)
    return limit, window


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    seconds = _number(value, float)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _number(text: str, kind: type) -> float | int | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if kind is int else value


@dataclass(frozen=True)
class RateLimitHeaders:
    """The ``RateLimit-*`` and ``Retry-After`` headers of one response (None when absent).

    ``reset`` is unix seconds; a fractional value is accepted (the fake
    server sends one when its window is scaled below a second).
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    window: float | None = None
    retry_after: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str], now: float | None = None) -> RateLimitHeaders:
        """Read the headers case-insensitively (httpx headers or any mapping)."""
        now = time.time() if now is None else now
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
        policy_limit, window = parse_policy(lower.get("ratelimit-policy"))
        limit = _number(lower.get("ratelimit-limit", ""), int)
        remaining = _number(lower.get("ratelimit-remaining", ""), int)
        reset = _number(lower.get("ratelimit-reset", ""), float)
        return cls(
            limit=limit if limit is not None else policy_limit,
            remaining=remaining,
            reset=reset,
            window=window,
            retry_after=parse_retry_after(lower.get("retry-after"), now),
        )

    @property
    def has_budget(self) -> bool:
        """Whether the response announced a budget the client can pace against."""
        return self.remaining is not None and self.reset is not None


class RateLimiter:
    """Paces requests against the server's announced budget; shared by all tasks of a client.

    Call :meth:`acquire` before each request, which returns a ticket, and
    :meth:`observe` with the ticket and the response's status and headers.

    Parameters
    ----------
    config
        A :class:`RateLimitConfig` or its fields.
    clock, sleep
        Injected for tests; wall-clock unix seconds and ``asyncio.sleep`` by default.
    """

    def __init__(
        self,
        config: RateLimitConfig | Mapping | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config_of(RateLimitConfig, config)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self.limit: int | None = None
        self.window: float | None = None
        self.reset_at: float | None = None
        #: Points this client believes are left in the current window.
        self.remaining: int | None = None
        self._sent = 0
        self._newest_applied = -1
        self._last_send: float | None = None
        self._blocked_until = 0.0
        self._consecutive_429 = 0
        #: When set, the client is waiting for the budget (for progress displays).
        self.sleeping_until: float | None = None
        self.seconds_slept = 0.0

    # ---------------------------------------------------------------- sending
    async def acquire(self) -> int:
        """Wait until a request may be sent; return its ticket for :meth:`observe`."""
        async with self._lock:
            while True:
                now = self._clock()
                wait, pacing = self._wait_seconds(now)
                if wait <= 0:
                    break
                if not pacing:
                    self.sleeping_until = now + wait
                try:
                    await self._sleep(wait)
                finally:
                    if not pacing:
                        self.seconds_slept += wait
                    self.sleeping_until = None
            ticket = self._sent
            self._sent += 1
            self._last_send = self._clock()
            if self.remaining is not None:
                self.remaining -= 1
            return ticket

    def _wait_seconds(self, now: float) -> tuple[float, bool]:
        """How long to wait before the next send (0: now), and whether it is mere pacing.

        A wait that is not pacing is a sleep for the rate limit: the budget is
        spent, or a 429 asked the client to stay away.
        """
        if now < self._blocked_until:
            return self._blocked_until - now, False
        if not self.config.enabled or self.reset_at is None or self.remaining is None:
            return 0.0, True
        slack = self.config.reset_slack_seconds
        if now >= self.reset_at + slack:
            self._roll_window(now)
            if self.reset_at is None or self.remaining is None:
                return 0.0, True
        available = self.remaining - self.config.reserve_points
        if available <= 0:
            return max(self.reset_at + slack - now, 1e-3), False
        if self._last_send is None:
            return 0.0, True
        # ``available`` sends spaced evenly between the last send and the reset,
        # the last of them one interval before the reset (not on it).
        interval = max(0.0, self.reset_at - self._last_send) / (available + 1)
        return self._last_send + interval - now, True

    def _roll_window(self, now: float) -> None:
        """The announced reset has passed: assume a full budget until a response says otherwise."""
        assert self.reset_at is not None
        if self.limit is None:
            # No limit known: stop pacing until the next response announces one.
            self.remaining = None
            self.reset_at = None
            return
        self.remaining = self.limit
        if self.window:
            periods = math.floor((now - self.reset_at) / self.window) + 1
            self.reset_at += periods * self.window
        else:
            self.reset_at = now + 1.0
        self._last_send = None

    # ---------------------------------------------------------------- responses
    def observe(self, ticket: int, status: int | None, headers: Mapping[str, str] | None) -> None:
        """Learn from the response to request ``ticket`` (``status`` None: no response)."""
        now = self._clock()
        parsed = RateLimitHeaders.parse(headers or {}, now)
        if parsed.limit is not None:
            self.limit = parsed.limit
        if parsed.window is not None:
            self.window = parsed.window
        if parsed.has_budget:
            self._apply_budget(ticket, parsed)
        if status == 429:
            self._on_rate_limited(now, parsed)
        elif status is not None and status < 500:
            self._consecutive_429 = 0

    def _apply_budget(self, ticket: int, parsed: RateLimitHeaders) -> None:
        assert parsed.remaining is not None and parsed.reset is not None
        newer_window = self.reset_at is None or parsed.reset > self.reset_at + 1e-6
        same_window = self.reset_at is not None and abs(parsed.reset - self.reset_at) <= 1e-6
        if not (newer_window or (same_window and ticket > self._newest_applied)):
            return  # an answer from an older window, or older than what we know
        # Requests sent after this one have not been counted by the server yet
        # (it counts in arrival order), so they still have to come off.
        sent_after = self._sent - 1 - ticket
        self.remaining = parsed.remaining - sent_after
        if newer_window:
            self.reset_at = parsed.reset
        self._newest_applied = ticket

    def _on_rate_limited(self, now: float, parsed: RateLimitHeaders) -> None:
        cfg = self.config
        if parsed.retry_after is not None:
            until = now + parsed.retry_after
        elif parsed.reset is not None and parsed.reset > now:
            until = parsed.reset + cfg.reset_slack_seconds
        else:
            until = now + backoff_delay(
                self._consecutive_429, cfg.backoff_base_seconds, cfg.backoff_max_seconds, self._rng
            )
        self._consecutive_429 += 1
        self._blocked_until = max(self._blocked_until, until)
        if self.remaining is not None:
            self.remaining = min(self.remaining, 0)

    # ---------------------------------------------------------------- status
    def is_sleeping(self) -> bool:
        """Whether some request is waiting for the budget right now."""
        return self.sleeping_until is not None and self.sleeping_until > self._clock()


__all__ = [
    "BackoffConfig",
    "RateLimitConfig",
    "RateLimitHeaders",
    "RateLimiter",
    "backoff_delay",
    "parse_policy",
    "parse_retry_after",
]
