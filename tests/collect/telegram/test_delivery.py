"""Delivery under real conditions (issue 12, items 1, 4, 5, 6 and 8), against the fake Bot API.

Each test injects one fault the fake reproduces from the protocol notes and
checks what a subscriber sees: never the same post twice, nobody held up by
somebody else's trouble, a post retired only when the post itself is gone.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from recgraph.collect.telegram.bot import BotService, FeedBot, post_item
from recgraph.collect.telegram.fake_server import FakeBotApi
from recgraph.data import telegram_state as state
from recgraph.data.store import Store

from .conftest import CHANNEL, USER, bot_config, copies_in, wait


def _posts(api: FakeBotApi, bot: FeedBot, count: int) -> list[str]:
    items = []
    for m in range(1, count + 1):
        api.channel_post(CHANNEL, f"post {m}")
        items.append(bot.record_post(CHANNEL, m, 1_700_000_000 + m))
    return items


def _subscribe(api: FakeBotApi, bot: FeedBot, chats: list[int]) -> None:
    for chat in chats:
        api.user_message(chat, "hi")
        bot.subscribe(chat)


def _round(store: Store, config: dict, rounds: int = 1):
    async def scenario():
        async with BotService(store, config) as service:
            return [await service.deliver_round() for _ in range(rounds)]

    return asyncio.run(scenario())


def test_start_just_before_a_round_never_delivers_a_post_twice(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, bot_config(api))
    _posts(api, bot, 3)
    users = [101, 102, 103]

    async def scenario() -> None:
        async with BotService(store, bot_config(api)) as service:
            for user in users:
                api.user_message(user, "/start")
                await wait(api, lambda u=user: u in service.bot.subscribers())
                await service.deliver_round()  # the scheduled round, just after /start
            # the /start deliveries in flight finish
            await wait(api, lambda: all(copies_in(api, u) for u in users))
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    for n, user in enumerate(users):
        copies = copies_in(api, user)
        assert len(copies) == len(set(copies)), f"chat {user} got {copies}"
        # at most the first post and one per round since /start
        assert len(copies) <= len(users) - n + 1


def test_one_chats_network_error_or_flood_holds_up_only_that_chat(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, bot_config(api))
    _posts(api, bot, 1)
    chats = [201, 202, 203, 204, 205, 206]
    _subscribe(api, bot, chats)
    dropped, flooded, others = chats[0], chats[1], chats[2:]
    api.fail("copyMessage", "drop", chat_id=dropped)  # the connection drops on the first
    api.flood("copyMessage", retry_after=2, chat_id=flooded)  # the second must wait 2 s

    (report,) = _round(store, bot_config(api))
    assert set(others) <= set(report.items)  # one chat's trouble ends nobody's round
    assert report.items[flooded] == post_item(CHANNEL, 1)  # the flooded chat got it after all
    flood_copy = [c.time for c in api.calls("copyMessage", chat_id=flooded)]
    other_copies = [c.time for c in api.calls("copyMessage") if int(c.params["chat_id"]) in others]
    assert len(flood_copy) == 1 and len(other_copies) == len(others)
    assert max(other_copies) < min(flood_copy)  # nobody else waited for its retry_after
    assert copies_in(api, dropped) == []  # the fake dropped it before copying
    assert [c for c in api.errors("copyMessage") if c.error == 429] != []


def test_a_missing_chat_or_a_block_unsubscribes_only_that_chat(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, bot_config(api))
    posts = _posts(api, bot, 3)
    gone_chat, blocker, deactivated, kept = 301, 302, 303, 304
    _subscribe(api, bot, [gone_chat, blocker, deactivated, kept])
    api.delete_chat(gone_chat)  # 400 "chat not found"
    api.block(blocker)  # 403 "bot was blocked by the user"
    api.deactivate(deactivated)  # 403 "user is deactivated"

    (report,) = _round(store, bot_config(api))
    assert bot.subscribers() == [kept]
    assert report.blocked == 3 and report.gone_posts == 0
    assert report.items == {kept: posts[2]}  # the newest post is not retired for anyone
    assert set(bot.plan([kept])[kept]) == {posts[0], posts[1]}

    # a post deleted from its channel ("message to copy not found") is retired for everyone
    api.delete_post(CHANNEL, 2)
    (report,) = _round(store, bot_config(api))
    assert report.gone_posts == 1 and report.items == {kept: posts[0]}
    assert bot.plan([kept]) == {kept: []}


@pytest.mark.parametrize("fault", ["lost", "slow"])
def test_a_lost_or_late_answer_never_makes_a_second_copy(
    api: FakeBotApi, store: Store, fault: str
) -> None:
    bot = FeedBot(store, bot_config(api))
    posts = _posts(api, bot, 2)
    _subscribe(api, bot, [USER])
    # the copy is made, but its answer is lost or comes after the bot stopped waiting
    api.fail("copyMessage", fault, chat_id=USER, delay=1.5)
    extra = {"request_timeout_seconds": 0.5} if fault == "slow" else {}

    first, second = _round(store, bot_config(api, **extra), rounds=2)
    copies = copies_in(api, USER)
    assert sorted(copies) == [(str(CHANNEL), "1"), (str(CHANNEL), "2")]  # each once
    assert first.items == {USER: posts[1]} and second.items == {USER: posts[0]}
    rows = state.deliveries(store.engine.connect()).set_index("item")["state"]
    assert rows[posts[1]] == state.UNKNOWN and rows[posts[0]] == state.SENT


def test_a_send_cut_off_by_a_crash_is_not_repeated_after_a_restart(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, bot_config(api))
    posts = _posts(api, bot, 2)
    _subscribe(api, bot, [USER])
    with store.writer() as w:  # the process died between the claim and the answer
        assert state.claim(w, USER, posts[1], now=time.time() - 60)

    (report,) = _round(store, bot_config(api))
    assert report.items == {USER: posts[0]}
    assert copies_in(api, USER) == [(str(CHANNEL), "1")]
    with store.engine.connect() as conn:
        rows = state.deliveries(conn).set_index("item")["state"]
    assert rows[posts[1]] == state.UNKNOWN  # counted as delivered (at most once)


def test_a_stored_service_message_is_retired_and_the_chat_gets_the_next_post(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, bot_config(api))
    api.channel_post(CHANNEL, "a post")
    pin = api.channel_service(CHANNEL, "pinned_message")
    post = bot.record_post(CHANNEL, 1, 1_700_000_000)
    service = bot.record_post(CHANNEL, pin["message_id"], 1_700_000_100)  # by an older bot
    _subscribe(api, bot, [USER, USER + 1])

    (report,) = _round(store, bot_config(api))
    assert report.items == {USER: post, USER + 1: post}  # "message can't be copied": next post
    assert report.gone == {service} and report.gone_posts == 1
    assert bot.subscribers() == [USER, USER + 1]
