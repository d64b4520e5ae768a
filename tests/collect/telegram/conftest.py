"""Fixtures of the feed bot's tests: a store, the fake Bot API and the bot's settings for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi
from recgraph.data.store import Store

CHANNEL = -1001234567890
USER = 987654321


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'bot.db'}") as opened:
        yield opened


@pytest.fixture
def api():
    with FakeBotApi(enforce_limits=True, per_chat_seconds=0.05, global_per_second=200) as running:
        yield running


def bot_config(api: FakeBotApi, **overrides: Any) -> dict[str, Any]:
    """Settings for a bot on ``api``: short polls, fast sends, quick retries."""
    values: dict[str, Any] = {
        "token": DEFAULT_TOKEN,
        "base_url": api.base_url,
        "poll_timeout_seconds": 1,
        "per_chat_seconds": 0.05,
        "global_per_second": 100,
    }
    values.update(overrides)
    return values


async def wait(api: FakeBotApi, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await asyncio.to_thread(api.wait_for, predicate, timeout)


def interactions(store: Store) -> list[tuple[str, str, str]]:
    return [
        (u, i, k)
        for frame in store.iter_frames("interactions")
        for u, i, k in zip(frame["user"], frame["item"], frame["kind"], strict=True)
    ]


def copies_in(api: FakeBotApi, chat_id: int) -> list[tuple[str, str]]:
    """``(source chat, source message)`` of every copy that reached ``chat_id``."""
    out = []
    for call in api.calls("copyMessage", chat_id=chat_id):
        out.append((str(call.params["from_chat_id"]), str(call.params["message_id"])))
    for call in api.calls("copyMessages", chat_id=chat_id):
        out += [(str(call.params["from_chat_id"]), str(m)) for m in call.params["message_ids"]]
    return out
