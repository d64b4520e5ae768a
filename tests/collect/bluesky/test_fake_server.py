"""The fake AppView speaks the reference server's shapes, errors and rate-limit headers."""

from __future__ import annotations

import time

import httpx
import pytest

from recgraph.collect.bluesky.fake_server import FakeAppView, FakeGraph, fake_did
from recgraph.collect.bluesky.identity import is_did


def get(server: FakeAppView, nsid: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}/xrpc/{nsid}", params=params, timeout=5)


def test_graph_is_deterministic_and_reachable_from_account_zero() -> None:
    a = FakeGraph.generate(60, seed=4)
    b = FakeGraph.generate(60, seed=4)
    assert a.follows == b.follows and a.dids == b.dids
    assert all(is_did(d) and len(d) == len("did:plc:") + 24 for d in a.dids)
    assert set(a.crawl_depths([a.dids[0]])) == set(range(60))
    assert fake_did(4, 0) == a.dids[0]
    assert 0 not in a.missing


def test_get_follows_pages_with_an_opaque_cursor_absent_at_the_end(
    server: FakeAppView, small_graph: FakeGraph
) -> None:
    account = max(small_graph.follows, key=lambda a: len(small_graph.follows[a]))
    expected = [small_graph.dids[t] for t in small_graph.follows[account]]
    listed, cursor, pages = [], None, 0
    while True:
        params = {"actor": small_graph.dids[account], "limit": 7}
        if cursor:
            params["cursor"] = cursor
        response = get(server, "app.bsky.graph.getFollows", **params)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        body = response.json()
        assert body["subject"]["did"] == small_graph.dids[account]
        assert all({"did", "handle"} <= set(p) for p in body["follows"])
        listed += [p["did"] for p in body["follows"]]
        pages += 1
        cursor = body.get("cursor")
        if cursor is None:
            break
    assert listed == expected  # newest first, nothing lost or repeated
    assert pages == -(-len(expected) // 7)


def test_reference_error_bodies(server: FakeAppView) -> None:
    missing = get(server, "app.bsky.graph.getFollows", actor="nobody.example.com")
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "InvalidRequest",
        "message": "Actor not found: nobody.example.com",
    }
    no_actor = get(server, "app.bsky.graph.getFollows")
    assert no_actor.json()["message"] == 'Params must have the property "actor"'
    too_many = get(server, "app.bsky.graph.getFollows", actor=server.graph.dids[0], limit=101)
    assert too_many.status_code == 400
    bad_cursor = get(server, "app.bsky.graph.getFollows", actor=server.graph.dids[0], cursor="zz")
    assert bad_cursor.json() == {"error": "InvalidRequest", "message": "Malformed cursor"}
    unknown = get(server, "app.bsky.nothing.here")
    assert unknown.status_code == 501 and unknown.json()["error"] == "MethodNotImplemented"
    post = httpx.post(f"{server.url}/xrpc/app.bsky.graph.getFollows", timeout=5)
    assert post.json()["message"] == "Incorrect HTTP method (POST) expected GET"
    handle = get(server, "com.atproto.identity.resolveHandle", handle="nobody.example.com")
    assert handle.json()["message"] == "Unable to resolve handle"


def test_profiles_leave_unknown_actors_out(server: FakeAppView) -> None:
    graph = server.graph
    response = httpx.get(
        f"{server.url}/xrpc/app.bsky.actor.getProfiles",
        params=[
            ("actors", graph.dids[1]),
            ("actors", "ghost.example.com"),
            ("actors", graph.dids[2]),
        ],
        timeout=5,
    )
    profiles = response.json()["profiles"]
    assert [p["did"] for p in profiles] == [graph.dids[1], graph.dids[2]]
    assert profiles[0]["followsCount"] == len(graph.follows[1])


def test_rate_limit_headers_and_429_with_retry_after(small_graph: FakeGraph) -> None:
    with FakeAppView(small_graph, rate_limit={"limit": 3, "window_seconds": 10}) as server:
        # Stay clear of a window boundary so all four requests share one window.
        while time.time() % 10 > 8:
            time.sleep(0.1)
        answers = [
            get(server, "app.bsky.actor.getProfile", actor=small_graph.dids[0]) for _ in range(4)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    last = answers[-1]
    assert last.headers["RateLimit-Policy"] == "3;w=10"
    reset = int(last.headers["RateLimit-Reset"])  # whole unix seconds
    assert reset % 10 == 0 and 0 < reset - time.time() <= 10
    assert 1 <= int(last.headers["Retry-After"]) <= 10
    assert last.json() == {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        ("429", 429, "RateLimitExceeded"),
        ("500", 500, "InternalServerError"),
        ("503", 503, "NotEnoughResources"),
    ],
)
def test_injected_status_faults(server: FakeAppView, fault: str, status: int, error: str) -> None:
    server.inject(fault)
    response = get(server, "app.bsky.graph.getFollows", actor=server.graph.dids[0])
    assert response.status_code == status and response.json()["error"] == error
    assert get(server, "app.bsky.graph.getFollows", actor=server.graph.dids[0]).status_code == 200


def test_injected_502_is_an_html_page(server: FakeAppView) -> None:
    server.inject("502")
    response = get(server, "app.bsky.graph.getFollows", actor=server.graph.dids[0])
    assert response.status_code == 502 and response.text.startswith("<html>")


def test_end_of_list_bugs_carry_a_cursor(server: FakeAppView) -> None:
    actor = server.graph.dids[0]
    server.inject("empty_end")
    last = get(server, "app.bsky.graph.getFollows", actor=actor, limit=100).json()
    assert "cursor" in last
    after = get(server, "app.bsky.graph.getFollows", actor=actor, limit=100, cursor=last["cursor"])
    assert after.json()["follows"] == []
    with pytest.raises(ValueError, match="unknown fault"):
        server.inject("explode")
