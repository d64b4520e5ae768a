"""The Telegram bot's state on every backend: claims, settling, albums, the update offset."""

from __future__ import annotations

from recgraph.data import telegram_state as state
from recgraph.data.store import Store

CHANNEL = -1001234567890


def test_claims_are_taken_once_and_settle_or_release(store: Store) -> None:
    with store.writer() as w:
        post = state.record_post(w, CHANNEL, 1, 1_700_000_000)
        other = state.record_post(w, CHANNEL, 2, 1_700_000_001)
        assert state.subscribe(w, 5) and not state.subscribe(w, 5)
    with store.writer() as w:
        assert state.claim(w, 5, post, now=100.0)
        assert not state.claim(w, 5, post)  # the same post is never picked twice
        assert state.claim(w, 5, other, now=200.0)
    with store.writer() as w:
        state.settle(w, 5, post, state.SENT, [77])
        state.release(w, 5, other)  # certainly not sent: may be offered again
    with store.engine.connect() as conn:
        assert state.delivered_items(conn, [5, 6]) == {5: {post}, 6: set()}
        assert state.last_claim(conn, 5) == 100.0
        rows = state.deliveries(conn)
    assert rows[["item", "state", "message_ids"]].values.tolist() == [[post, "sent", "[77]"]]
    views = [f for f in store.iter_frames("interactions")][0]
    assert views[["user", "item", "kind"]].values.tolist() == [["tg:5", post, "view"]]

    with store.writer() as w:  # a claim a crash left open becomes "unknown", never resent
        assert state.claim(w, 5, other, now=300.0)
    with store.writer() as w:
        assert state.settle_pending(w, older_than=400.0) == [(5, other)]
    with store.engine.connect() as conn:
        assert set(state.deliveries(conn)["state"]) == {state.SENT, state.UNKNOWN}


def test_an_album_is_one_post_and_the_offset_is_kept(store: Store) -> None:
    with store.writer() as w:
        first = state.record_post(w, CHANNEL, 10, 1_700_000_000, media_group_id="g1")
        assert state.record_post(w, CHANNEL, 12, 1_700_000_000, media_group_id="g1") == first
        assert state.record_post(w, CHANNEL, 11, 1_700_000_000, media_group_id="g1") == first
        single = state.record_post(w, CHANNEL, 13, 1_700_000_001)
        assert state.handled_offset(w.conn, "42") is None
        state.set_handled(w, "42", 100_000_007)
    with store.engine.connect() as conn:
        assert state.post_messages(conn, first) == [10, 11, 12]
        assert state.post_messages(conn, single) == [13]
        assert state.handled_offset(conn, "42") == 100_000_007
    assert sorted(store.items_frame()["external_id"]) == [first, single]
    with store.writer() as w:
        state.mark_gone(w, first)
    features = store.items_frame().set_index("external_id")["features"]
    assert features[first]["gone"] is True and features[first]["media_group_id"] == "g1"
