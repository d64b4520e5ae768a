"""Pacing against the RateLimit-* headers, 429 handling and backoff, on a simulated clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from recgraph.collect.bluesky.ratelimit import (
    RateLimiter,
    RateLimitHeaders,
    backoff_delay,
    parse_policy,
    parse_retry_after,
)


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def headers(limit: int, remaining: int, reset: float, window: float) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": f"{reset:g}",
        "RateLimit-Policy": f"{limit};w={window:g}",
    }


def test_parse_headers_case_insensitively() -> None:
    parsed = RateLimitHeaders.parse(
        {
            "ratelimit-limit": "3000",
            "ratelimit-remaining": "0",
            "ratelimit-reset": "1744582868",
            "ratelimit-policy": "3000;w=300",
            "retry-after": "35",
        },
        now=1744582800,
    )
    assert parsed == RateLimitHeaders(3000, 0, 1744582868.0, 300.0, 35.0)
    assert parse_policy("100;w=60, 1000;w=3600") == (100, 60.0)
    assert parse_policy("junk") == (None, None)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert RateLimitHeaders.parse({}).has_budget is False


def test_spreads_the_budget_evenly_over_the_window() -> None:
    clock = FakeClock(1_000.0)

    async def scenario() -> list[float]:
        limiter = RateLimiter(clock=clock, sleep=clock.sleep)
        sends = []
        ticket = await limiter.acquire()
        sends.append(clock.now)
        # The server's window: 10 points, resets at 1002 (2 s windows).
        limiter.observe(ticket, 200, headers(10, 9, 1002.0, 2.0))
        for _ in range(9 + 10):
            ticket = await limiter.acquire()
            sends.append(clock.now)
            window_start = 1000.0 if clock.now < 1002.0 else 1002.0
            used = sum(1 for t in sends if window_start <= t < window_start + 2)
            limiter.observe(ticket, 200, headers(10, 10 - used, window_start + 2, 2.0))
        return sends

    sends = asyncio.run(scenario())
    first = [t for t in sends if t < 1002.0]
    second = [t for t in sends if 1002.0 <= t < 1004.0]
    assert len(first) == 10  # the whole budget of the first window, and not one more
    assert len(second) == 10
    gaps = [b - a for a, b in zip(first, first[1:], strict=False)]
    assert max(gaps) < 0.35 and min(gaps) > 0.1  # spread out, not a burst then a wall


def test_a_429_waits_for_retry_after_then_for_reset() -> None:
    clock = FakeClock(500.0)

    async def scenario() -> None:
        limiter = RateLimiter(clock=clock, sleep=clock.sleep)
        ticket = await limiter.acquire()
        limiter.observe(ticket, 429, {"Retry-After": "7"})
        await limiter.acquire()
        assert clock.now == pytest.approx(507.0)
        assert limiter.seconds_slept == pytest.approx(7.0)
        ticket = await limiter.acquire()
        limiter.observe(ticket, 429, headers(5, 0, 520.0, 30.0))
        await limiter.acquire()
        assert clock.now >= 520.0

    asyncio.run(scenario())


def test_a_429_without_any_hint_backs_off_exponentially() -> None:
    clock = FakeClock(0.0)

    async def scenario() -> list[float]:
        limiter = RateLimiter(
            {"backoff_base_seconds": 1.0, "backoff_max_seconds": 100.0},
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(0),
        )
        waits = []
        for _ in range(4):
            ticket = await limiter.acquire()
            before = clock.now
            limiter.observe(ticket, 429, {})
            await limiter.acquire()
            waits.append(clock.now - before)
        return waits

    waits = asyncio.run(scenario())
    for n, wait in enumerate(waits):
        assert 2**n / 2 <= wait <= 2**n


def test_without_headers_nothing_is_paced() -> None:
    clock = FakeClock(0.0)

    async def scenario() -> None:
        limiter = RateLimiter(clock=clock, sleep=clock.sleep)
        for _ in range(50):
            limiter.observe(await limiter.acquire(), 200, {})

    asyncio.run(scenario())
    assert clock.slept == []


def test_stale_answers_from_an_older_window_are_ignored() -> None:
    clock = FakeClock(100.0)

    async def scenario() -> RateLimiter:
        limiter = RateLimiter(clock=clock, sleep=clock.sleep)
        old = await limiter.acquire()
        new = await limiter.acquire()
        limiter.observe(new, 200, headers(10, 9, 110.0, 10.0))
        limiter.observe(old, 200, headers(10, 1, 100.0, 10.0))  # late answer, older window
        return limiter

    limiter = asyncio.run(scenario())
    assert limiter.reset_at == 110.0 and limiter.remaining == 9


def test_backoff_delay_has_equal_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt in range(10):
        delay = backoff_delay(attempt, 0.5, 8.0, rng)
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
