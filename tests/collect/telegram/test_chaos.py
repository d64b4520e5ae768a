"""Many chats, every fault at random, kills and restarts: no duplicate, no lost update."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from recgraph.collect.telegram.bot import BotService, post_item
from recgraph.collect.telegram.fake_server import FakeBotApi
from recgraph.data.store import Store

from .conftest import CHANNEL, bot_config, interactions

USERS = list(range(500, 520))
SEND_FAULTS = ("502", "502-html", "drop", "lost", "slow")


@pytest.mark.slow
def test_random_faults_kills_and_restarts(store: Store) -> None:
    rng = random.Random(12)
    config = {"request_timeout_seconds": 0.4, "retry_seconds": 0.05, "album_wait_seconds": 0}
    expected_posts: set[str] = set()
    presses: set[tuple[str, str]] = set()
    with FakeBotApi(enforce_limits=True, per_chat_seconds=0.05, global_per_second=200) as api:
        hello = {u: api.user_message(u, "hi") for u in USERS}

        def traffic(step: int) -> None:
            """New posts, service messages, albums, /start, presses and faults."""
            for _ in range(3):
                roll = rng.random()
                if roll < 0.6:
                    message = api.channel_post(CHANNEL, f"post {step}")
                    expected_posts.add(post_item(CHANNEL, message["message_id"]))
                elif roll < 0.8:
                    api.channel_service(CHANNEL, "pinned_message")
                else:
                    album = api.channel_album(CHANNEL, rng.randint(2, 4))
                    expected_posts.add(post_item(CHANNEL, album[0]["message_id"]))
            if step < len(USERS) // 2:
                for user in USERS[2 * step : 2 * step + 2]:
                    api.user_message(user, "/start")
            user = rng.choice(USERS)
            item = rng.choice(sorted(expected_posts))
            kind = rng.choice(["like", "dislike"])
            _, channel, message = item.split(":")
            api.press(user, hello[user]["message_id"], f"{kind}:{channel}:{message}")
            presses.add((f"tg:{user}", item))
            for _ in range(4):
                api.fail("copyMessage", rng.choice(SEND_FAULTS), chat_id=rng.choice(USERS), delay=1)
            api.flood("copyMessage", retry_after=1, chat_id=rng.choice(USERS))
            if rng.random() < 0.5:
                api.fail("getUpdates", rng.choice(["502", "drop", "502-html"]))
            if rng.random() < 0.3:
                api.fail("answerCallbackQuery", rng.choice(["502", "drop"]))

        async def run(steps: range, kill: bool) -> None:
            service = BotService(store, bot_config(api, **config))
            await service.start()
            for step in steps:
                traffic(step)
                await asyncio.sleep(0.3)
                await service.deliver_round()
            if not kill:
                deadline = asyncio.get_running_loop().time() + 30
                while api.pending_updates() and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                await service.stop()
            # a kill: the loop ends with everything cancelled mid-way

        for n in range(4):
            asyncio.run(run(range(5 * n, 5 * n + 5), kill=n < 3))

        copies = Counter()
        for call in api.calls("copyMessage"):
            copies[(call.params["chat_id"], call.params["message_id"])] += 1
        for call in api.calls("copyMessages"):
            for m in call.params["message_ids"]:
                copies[(call.params["chat_id"], str(m))] += 1
        texts = [c.params.get("text", "") for c in api.calls("sendMessage")]
        answered = Counter(c.params["callback_query_id"] for c in api.calls("answerCallbackQuery"))
        pending = api.pending_updates()

    assert pending == 0
    assert [key for key, n in copies.items() if n > 1] == []  # never a post twice in a chat
    stored = set(store.items_frame()["external_id"])
    assert stored == expected_posts  # every post, no service message, an album once
    felt = {(u, i) for u, i, k in interactions(store) if k in ("like", "dislike")}
    assert felt == presses  # every press recorded (the last one of a user wins)
    assert not any("already subscribed" in t for t in texts)  # no update handled twice
    assert max(answered.values()) == 1
    assert sum(copies.values()) > len(USERS)  # it did deliver through all this
