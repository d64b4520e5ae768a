"""The feed bot against the fake Bot API: the everyday flow, limits, blocks, the plan."""

from __future__ import annotations

import asyncio
import time

import pytest

from recgraph.collect.telegram.bot import (
    BotService,
    FeedBot,
    SendThrottle,
    button_data,
    parse_button_data,
    post_item,
)
from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi
from recgraph.data.store import Store

from .conftest import CHANNEL, USER, interactions, wait
from .conftest import bot_config as config


def test_subscribe_deliver_press_and_channel_post_flow(api: FakeBotApi, store: Store) -> None:
    async def scenario() -> None:
        async with BotService(store, config(api)) as service:
            for n in range(3):
                api.channel_post(CHANNEL, f"post {n}", username="News")
            await wait(api, lambda: len(store.items_frame()) == 3)
            api.user_message(USER, "/start")
            copied = await wait(api, lambda: api.calls("copyMessage"))
            welcome = api.calls("sendMessage", chat_id=str(USER))
            assert welcome and "Subscribed" in welcome[0].params["text"]
            first = copied[0]
            assert first.params["from_chat_id"] == str(CHANNEL)
            buttons = first.params["reply_markup"]["inline_keyboard"][0]
            assert [b["text"] for b in buttons] == ["👍", "👎"]
            assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
            # Cold start without any feedback: the newest post comes first.
            assert first.params["message_id"] == "3"
            shown = post_item(CHANNEL, 3)

            query = api.press(USER, first.result["message_id"], buttons[0]["callback_data"])
            await wait(api, lambda: api.calls("answerCallbackQuery", callback_query_id=query))
            await wait(api, lambda: (f"tg:{USER}", shown, "like") in interactions(store))
            query = api.press(USER, first.result["message_id"], buttons[1]["callback_data"])
            await wait(api, lambda: api.calls("answerCallbackQuery", callback_query_id=query))
            await wait(api, lambda: (f"tg:{USER}", shown, "dislike") in interactions(store))
            assert (f"tg:{USER}", shown, "like") not in interactions(store)  # the last press wins

            delivered = [shown]
            for _ in range(2):
                report = await service.deliver_round()
                assert report.delivered == 1
                delivered.append(report.items[USER])
            assert sorted(delivered) == sorted(post_item(CHANNEL, m) for m in (1, 2, 3))
            empty = await service.deliver_round()
            assert empty.delivered == 0 and empty.nothing_left == 1  # never the same post twice

            api.user_message(USER, "/stop")
            await wait(api, lambda: not service.bot.subscribers())
            assert (await service.deliver_round()).subscribers == 0

    asyncio.run(scenario())
    items = store.items_frame()
    assert items["title"].isna().all()  # nothing of the content is stored
    assert items["features"].iloc[0] == {"chat_id": CHANNEL, "message_id": 1}
    assert set(items["author"]) == {f"tg:{CHANNEL}"}
    assert sum(k == "view" for _, _, k in interactions(store)) == 3
    assert [c for c in api.calls_log if c.error == 429] == []


def test_retry_after_is_honoured(api: FakeBotApi, store: Store) -> None:
    bot = FeedBot(store, config(api))
    bot.subscribe(USER)
    api.user_message(USER, "hi")
    api.channel_post(CHANNEL, "x")
    bot.record_post(CHANNEL, 1, int(time.time()))
    api.flood("copyMessage", retry_after=1)

    async def scenario():
        async with BotService(store, config(api)) as service:
            started = time.monotonic()
            report = await service.deliver_round()
            return report, time.monotonic() - started

    report, seconds = asyncio.run(scenario())
    assert report.delivered == 1 and seconds >= 1.0
    assert len([c for c in api.calls_log if c.error == 429]) == 1


def test_blocked_chats_are_unsubscribed_and_deleted_posts_skipped(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, config(api))
    for chat in (1, 2):
        api.user_message(chat, "hi")
        bot.subscribe(chat)
    api.channel_post(CHANNEL, "kept")
    bot.record_post(CHANNEL, 1, 1_700_000_000)
    bot.record_post(CHANNEL, 99, 1_800_000_000)  # newer, but deleted from the channel
    api.block(2)

    async def scenario():
        async with BotService(store, config(api)) as service:
            return await service.deliver_round()

    report = asyncio.run(scenario())
    assert report.items == {1: post_item(CHANNEL, 1)}
    assert report.blocked == 1 and report.gone_posts == 1
    assert bot.subscribers() == [1]
    assert bot.plan([1]) == {1: []}  # the gone post is never offered again


def test_flood_limits_are_kept_across_many_chats(store: Store) -> None:
    with FakeBotApi(enforce_limits=True, per_chat_seconds=1.0, global_per_second=30) as api:
        bot = FeedBot(store, config(api, global_per_second=30, per_chat_seconds=1.0))
        api.channel_post(CHANNEL, "x")
        bot.record_post(CHANNEL, 1, 1_700_000_000)
        for chat in range(100, 140):
            api.user_message(chat, "hi")
            bot.subscribe(chat)

        async def scenario():
            async with BotService(store, config(api, global_per_second=30)) as service:
                started = time.monotonic()
                report = await service.deliver_round()
                return report, time.monotonic() - started

        report, seconds = asyncio.run(scenario())
        assert report.delivered == 40
        assert seconds >= 39 / 30 * 0.95
        assert [c for c in api.calls_log if c.error == 429] == []


def test_plan_follows_the_model_and_excludes_feedback(any_store: Store) -> None:
    store = any_store  # on every backend
    bot = FeedBot(store, {"token": DEFAULT_TOKEN, "cold_start_min_interactions": 0})
    posts = [bot.record_post(CHANNEL, m, 1_700_000_000 + m) for m in range(1, 6)]
    for fan in range(10, 16):  # post 2 is liked by the most, then post 4
        bot.record_feedback(fan, posts[1], "like")
        if fan % 2:
            bot.record_feedback(fan, posts[3], "like")
    bot.subscribe(USER)
    bot.record_feedback(USER, posts[0], "like")
    bot.record_feedback(USER, posts[3], "dislike")
    bot.record_delivery(USER, posts[4])
    plan = bot.plan([USER])[USER]
    assert plan[0] == posts[1]
    assert posts[3] not in plan and posts[4] not in plan and posts[0] not in plan
    assert set(plan) == {posts[1], posts[2]}


def test_button_data_round_trip() -> None:
    item = post_item(CHANNEL, 77)
    assert parse_button_data(button_data("like", item)) == ("like", item)
    assert parse_button_data("something:else") is None
    assert parse_button_data("dislike:x:y") is None


def test_throttle_spaces_sends_per_chat_and_overall() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    throttle = SendThrottle(30.0, 1.0, clock=lambda: now[0], sleep=sleep)

    async def scenario() -> list[float]:
        times = []
        for chat in [1, 2, 3, 1]:
            await throttle.wait(chat)
            times.append(now[0])
        return times

    times = asyncio.run(scenario())
    assert times[:3] == pytest.approx([0.0, 1 / 30, 2 / 30])
    assert times[3] == pytest.approx(1.0)  # chat 1 again only a second after its last


def test_a_chat_that_must_wait_does_not_hold_up_the_others() -> None:
    throttle = SendThrottle(1000.0, 0.3)
    sent: list[tuple[int, float]] = []

    async def to(chat: int, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        await throttle.wait(chat)
        sent.append((chat, time.monotonic()))

    async def scenario() -> None:
        async def twice() -> None:  # an album: its copies, then its buttons, in one chat
            await to(1)
            await to(1)

        await asyncio.gather(twice(), to(2, delay=0.05))

    asyncio.run(scenario())
    assert [chat for chat, _ in sent] == [1, 2, 1]  # chat 2 went while chat 1 waited
    assert sent[2][1] - sent[0][1] >= 0.3 * 0.95  # chat 1 kept its own pace
