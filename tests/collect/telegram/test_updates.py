"""Updates under real conditions (issue 12, items 2, 3, 7 and 8), against the fake Bot API.

A "kill" is a process that stops without any goodbye: here the event loop
that ran the bot ends with its tasks cancelled mid-way, and a new bot on the
same store takes over, as a restarted process would.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from recgraph.collect.telegram.bot import BotService, FeedBot, post_item
from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi
from recgraph.data.store import Store
from recgraph.data.writer import Writer

from .conftest import CHANNEL, USER, bot_config, copies_in, interactions, wait


async def _until(until, what: str, timeout: float = 20) -> None:
    """Return once ``until()`` holds, checking every 20 ms on the bot's event loop; after
    ``timeout`` seconds raise TimeoutError naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not until():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} did not get there in time")
        await asyncio.sleep(0.02)


def _killed(store: Store, config: dict, until) -> None:
    """Run a bot until ``until()`` holds, then end its loop without stopping it (a kill)."""

    async def scenario() -> None:
        service = BotService(store, config)
        await service.start()
        await _until(until, "the bot")
        # no stop(): asyncio.run cancels whatever was running

    asyncio.run(scenario())


def _restarted(store: Store, config: dict, until, settle: float = 1.5) -> None:
    """A new bot on the same store, until ``until()`` holds and then ``settle`` seconds more."""

    async def scenario() -> None:
        async with BotService(store, config):
            await _until(until, "the restarted bot")
            await asyncio.sleep(settle)

    asyncio.run(scenario())


def test_a_restart_handles_no_update_twice(api: FakeBotApi, store: Store) -> None:
    bot = FeedBot(store, bot_config(api))
    api.channel_post(CHANNEL, "a post")
    bot.record_post(CHANNEL, 1, 1_700_000_000)
    hello = api.user_message(USER, "hi")
    api.user_message(USER, "/start")
    api.press(USER, hello["message_id"], f"like:{CHANNEL}:1")
    # after the first batch, getUpdates fails: the batch is fetched but never confirmed
    api.fail("getUpdates", "502", count=10_000, after=1)

    def handled() -> bool:
        return bool(
            api.calls("answerCallbackQuery")
            and api.calls("sendMessage", chat_id=USER)
            and (f"tg:{USER}", post_item(CHANNEL, 1), "like") in interactions(store)
        )

    _killed(store, bot_config(api), handled)
    api.clear_faults()
    _restarted(store, bot_config(api), lambda: api.pending_updates() == 0)

    texts = [c.params["text"] for c in api.calls("sendMessage", chat_id=USER)]
    assert len(texts) == 1 and texts[0].startswith("Subscribed")  # no "already subscribed"
    assert len(api.calls("answerCallbackQuery")) == 1
    assert api.errors("answerCallbackQuery") == []  # never answered a second time
    likes = [x for x in interactions(store) if x[2] == "like"]
    assert likes == [(f"tg:{USER}", post_item(CHANNEL, 1), "like")]


def test_a_kill_in_the_middle_of_a_batch_loses_no_update(
    api: FakeBotApi, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(8):  # eight posts that arrive together
        api.channel_post(CHANNEL, f"post {n}")
    original = Writer.items

    def slow_items(self, rows):  # storing is slow: the kill comes while the batch is handled
        import time

        time.sleep(0.3)
        return original(self, rows)

    monkeypatch.setattr(Writer, "items", slow_items)
    _killed(store, bot_config(api), lambda: len(store.items_frame()) >= 1)
    assert len(store.items_frame()) < 8
    monkeypatch.setattr(Writer, "items", original)

    _restarted(store, bot_config(api), lambda: len(store.items_frame()) == 8, settle=0.2)
    items = store.items_frame()
    assert sorted(items["external_id"]) == sorted(post_item(CHANNEL, m) for m in range(1, 9))


def test_answer_callback_query_is_retried_after_5xx_and_network_errors(
    api: FakeBotApi, store: Store
) -> None:
    bot = FeedBot(store, bot_config(api))
    api.channel_post(CHANNEL, "a post")
    bot.record_post(CHANNEL, 1, 1_700_000_000)
    hello = api.user_message(USER, "hi")
    api.fail("answerCallbackQuery", "502")
    api.fail("answerCallbackQuery", "502-html")
    api.fail("answerCallbackQuery", "drop")

    async def scenario() -> None:
        async with BotService(store, bot_config(api)):  # default backoff
            query = api.press(USER, hello["message_id"], f"like:{CHANNEL}:1")
            await wait(api, lambda: api.calls("answerCallbackQuery", callback_query_id=query))

    asyncio.run(scenario())
    assert len(api.errors("answerCallbackQuery")) == 3
    assert len(api.calls("answerCallbackQuery")) == 1  # the button stops spinning
    assert [x for x in interactions(store) if x[2] == "like"] == [
        (f"tg:{USER}", post_item(CHANNEL, 1), "like")  # recorded once
    ]


def test_service_messages_are_no_posts_and_an_album_is_one_post(
    api: FakeBotApi, store: Store
) -> None:
    api.channel_post(CHANNEL, "a post")  # message 1
    api.channel_service(CHANNEL, "pinned_message")  # 2
    api.channel_service(CHANNEL, "new_chat_title")  # 3
    album = api.channel_album(CHANNEL, 3)  # 4, 5, 6
    api.channel_service(CHANNEL, "new_chat_members")  # 7
    api.user_message(USER, "hi")

    async def scenario() -> list:
        config = bot_config(api, deliver_on_start=False, album_wait_seconds=0)
        async with BotService(store, config) as service:
            await wait(api, lambda: api.pending_updates() == 0)
            await asyncio.sleep(0.3)
            service.bot.subscribe(USER)
            return [await service.deliver_round() for _ in range(3)]

    reports = asyncio.run(scenario())
    items = store.items_frame()
    assert sorted(items["external_id"]) == [post_item(CHANNEL, 1), post_item(CHANNEL, 4)]
    assert [r.delivered for r in reports] == [1, 1, 0]  # two posts, then nothing left
    assert reports[0].items == {USER: post_item(CHANNEL, 4)}  # the newest: the album
    copies = api.calls("copyMessages", chat_id=USER)
    assert len(copies) == 1
    assert [int(m) for m in copies[0].params["message_ids"]] == [m["message_id"] for m in album]
    assert len(copies_in(api, USER)) == 4  # three photos once, the text post once
    keyboards = [
        m["reply_markup"]["inline_keyboard"][0]
        for m in api.messages_in(USER)
        if m.get("reply_markup")
    ]
    assert len(keyboards) == 2  # one set of buttons per post
    album_data = {b["callback_data"] for b in keyboards[0]}
    assert album_data == {f"like:{CHANNEL}:4", f"dislike:{CHANNEL}:4"}


def test_the_token_never_reaches_the_log(
    api: FakeBotApi, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.fail("getUpdates", "502-html")  # an error, logged

    async def scenario(verbose: bool) -> None:
        async with BotService(store, bot_config(api, **({"verbose": True} if verbose else {}))):
            api.channel_post(CHANNEL, "another post")
            count = len(api.calls("getUpdates"))
            await wait(api, lambda: len(api.calls("getUpdates")) > count)
            await asyncio.sleep(0.2)

    asyncio.run(scenario(False))
    assert "HTTP Request" not in caplog.text  # httpx's request lines stay quiet by default
    asyncio.run(scenario(True))
    assert "HTTP Request" in caplog.text and "/bot***/getUpdates" in caplog.text
    assert DEFAULT_TOKEN not in caplog.text
    logging.getLogger("httpx").setLevel(logging.NOTSET)


def test_an_offset_older_than_a_week_of_silence_is_not_trusted(
    api: FakeBotApi, store: Store
) -> None:
    import time

    from recgraph.data import telegram_state as state

    bot = FeedBot(store, bot_config(api))
    with store.writer() as w:  # long ago, and higher than what Telegram numbers next
        state.set_handled(w, bot.bot_id, 999_999_999, now=time.time() - 8 * 86400)
    assert bot.handled_offset() is None
    api.channel_post(CHANNEL, "after a long silence")
    _restarted(store, bot_config(api), lambda: len(store.items_frame()) == 1, settle=0.1)
    assert bot.handled_offset() == 100_000_001
