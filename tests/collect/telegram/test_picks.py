"""The bot chooses posts through the pipeline's feed question, as the API does."""

from __future__ import annotations

import time
from pathlib import Path

from recgraph.collect.telegram.bot import FeedBot
from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN
from recgraph.data.interactions import Kind
from recgraph.data.store import Store
from recgraph.pipeline import Pipeline
from recgraph.serving.registry import ModelRegistry

from .conftest import CHANNEL, USER

FEED_ONLY = {
    "who_to_follow": {"enabled": False, "retrievers": [{"name": "popular"}], "fallback": []},
    "feed": {"retrievers": [{"name": "popular"}], "fallback": []},
}


def _publish(store: Store, registry: ModelRegistry) -> str:
    likes = store.interactions_graph(kinds=[Kind.LIKE, Kind.DISLIKE])
    pipeline = Pipeline(FEED_ONLY).fit(interactions=likes)
    return registry.publish(pipeline, data=pipeline.snapshots, promote=True)


def test_posts_follow_the_registrys_current_pipeline(store: Store, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    bot = FeedBot(store, {"token": DEFAULT_TOKEN, "registry": str(tmp_path / "models")})
    posts = [bot.record_post(CHANNEL, m, 1_700_000_000 + m) for m in (1, 2, 3)]
    bot.subscribe(USER)
    assert bot.plan([USER])[USER] == posts[::-1]  # no version yet: newest first

    for fan in range(10, 13):
        bot.record_feedback(fan, posts[0], "like")
    first = _publish(store, registry)
    assert bot.plan([USER])[USER][0] == posts[0]
    assert bot.current_model() is not None

    for fan in range(20, 26):  # post 2 overtakes; a new version is published
        bot.record_feedback(fan, posts[1], "like")
    second = _publish(store, registry)
    assert second != first
    plan = bot.plan([USER])[USER]
    assert plan[:2] == [posts[1], posts[0]]  # the new version, picked up without a restart
    bot.record_delivery(USER, posts[1])
    assert posts[1] not in bot.plan([USER])[USER]  # never what the chat already had


def test_a_handed_over_retriever_is_asked_through_a_pipeline(store: Store) -> None:
    from recgraph.retrieval.registry import create_retriever

    bot = FeedBot(store, {"token": DEFAULT_TOKEN})
    posts = [bot.record_post(CHANNEL, m, 1_700_000_000 + m) for m in (1, 2)]
    bot.record_feedback(5, posts[0], "like")
    bot.set_model(create_retriever("popular").fit(store.interactions_graph()))
    assert isinstance(bot.current_model(), Pipeline)
    assert bot.plan([USER]) == {USER: [posts[0], posts[1]]}


def test_an_album_waits_until_all_its_parts_are_in(store: Store) -> None:
    bot = FeedBot(store, {"token": DEFAULT_TOKEN, "album_wait_seconds": 10})
    now = time.time()
    post = bot.record_post(CHANNEL, 4, int(now) - 100)
    album = bot.record_post(CHANNEL, 5, int(now) - 2, media_group_id="g")
    assert bot.plan([USER], now=now) == {USER: [post]}  # its other photos may still come
    assert bot.plan([USER], now=now + 20) == {USER: [album, post]}
