"""Handle and DID syntax, and resolution through the fake AppView."""

from __future__ import annotations

import pytest

from recgraph.collect.bluesky.fake_server import FakeAppView
from recgraph.collect.bluesky.identity import (
    IdentityResolver,
    clean_handle,
    normalize_actor,
)
from recgraph.errors import InputError
from tests.collect.bluesky.conftest import fast_client


def test_normalize_actor() -> None:
    assert normalize_actor("@Alice.BSKY.social") == "alice.bsky.social"
    assert normalize_actor("did:plc:ewvi7nxzyoun6zhxrhs64oiz") == "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    assert normalize_actor("at://did:web:example.org/app.bsky.feed.post/1") == "did:web:example.org"
    for bad in ("alice", "did:plc:", "bob.local", "-x.com", "a..b"):
        with pytest.raises(InputError) as caught:
            normalize_actor(bad, field="seed")
        assert caught.value.field == "seed"


def test_clean_handle_drops_invalid() -> None:
    assert clean_handle("handle.invalid") is None
    assert clean_handle("Bob.Example.com") == "bob.example.com"
    assert clean_handle(None) is None


def test_resolver_maps_both_ways(server: FakeAppView) -> None:
    graph = server.graph
    resolver = IdentityResolver(fast_client(server.url))
    present = next(
        i for i in range(1, 80) if i not in graph.missing and graph.handles[i] != "handle.invalid"
    )
    dids = resolver.to_dids([graph.handles[present], graph.dids[2]])
    assert dids == {graph.handles[present]: graph.dids[present], graph.dids[2]: graph.dids[2]}
    handles = resolver.to_handles([graph.dids[present], "did:plc:" + "q" * 24])
    assert handles == {graph.dids[present]: graph.handles[present], "did:plc:" + "q" * 24: None}
    requests = len(server.log)
    resolver.to_dids([graph.handles[present]])  # cached
    assert len(server.log) == requests
    with pytest.raises(InputError, match="does not resolve"):
        resolver.to_dids(["ghost.example.com"])
