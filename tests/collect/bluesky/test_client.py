"""What the XRPC client retries and what it does not, against the fake AppView."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from recgraph.collect.bluesky.client import ActorNotFound, HandleNotFound, XrpcClient, XrpcError
from recgraph.collect.bluesky.fake_server import FakeAppView
from tests.collect.bluesky.conftest import fast_client


def run(server: FakeAppView, coroutine_factory, **overrides):
    async def go():
        async with XrpcClient(fast_client(server.url, **overrides)) as client:
            return await coroutine_factory(client), client

    return asyncio.run(go())


def test_retries_5xx_timeouts_and_html_error_pages(server: FakeAppView) -> None:
    server.faults.timeout_seconds = 0.6
    server.inject("500", "502", "timeout", "503", "429")
    page, client = run(server, lambda c: c.get_follows(server.graph.dids[0]))
    assert page["subject"]["did"] == server.graph.dids[0]
    assert client.stats.statuses[200] == 1
    assert client.stats.network_errors == 1
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 5


def test_gives_up_after_max_attempts(server: FakeAppView) -> None:
    server.inject(*["500"] * 3)
    with pytest.raises(XrpcError) as caught:
        run(
            server,
            lambda c: c.get_follows(server.graph.dids[0]),
            backoff={"base_seconds": 0.001, "max_attempts": 3},
        )
    assert caught.value.status == 500 and caught.value.error == "InternalServerError"


def test_actor_not_found_is_not_retried(server: FakeAppView) -> None:
    missing = (
        server.graph.dids[min(server.graph.missing)]
        if server.graph.missing
        else "did:plc:" + "a" * 24
    )
    with pytest.raises(ActorNotFound) as caught:
        run(server, lambda c: c.get_follows(missing))
    assert caught.value.message == f"Actor not found: {missing}"
    assert server.statuses[400] == 1  # one request, no retry


def test_not_implemented_is_not_retried(server: FakeAppView) -> None:
    with pytest.raises(XrpcError) as caught:
        run(server, lambda c: c.query("app.bsky.unknown.method"))
    assert caught.value.status == 501
    assert sum(server.statuses.values()) == 1


def test_resolve_handle_and_profiles(server: FakeAppView) -> None:
    graph = server.graph
    did, _ = run(server, lambda c: c.resolve_handle(graph.handles[3]))
    assert did == graph.dids[3]
    with pytest.raises(HandleNotFound):
        run(server, lambda c: c.resolve_handle("nobody.example.com"))
    actors = graph.dids[:30]
    profiles, client = run(server, lambda c: c.get_profiles(actors))
    present = [d for i, d in enumerate(actors) if i not in graph.missing]
    assert [p["did"] for p in profiles] == present
    assert client.stats.requests == 2  # 25 actors per call


def test_array_params_repeat_the_key() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"profiles": []})

    async def go():
        async with XrpcClient(
            {"base_url": "http://fake"}, transport=httpx.MockTransport(handler)
        ) as c:
            await c.query("app.bsky.actor.getProfiles", {"actors": ["a.test", "b.test"], "x": True})

    asyncio.run(go())
    assert seen == [
        "http://fake/xrpc/app.bsky.actor.getProfiles?actors=a.test&actors=b.test&x=true"
    ]
