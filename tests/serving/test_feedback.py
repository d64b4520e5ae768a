"""Feedback through the API: what it may name, and what it leaves in the store."""

import pytest

from recgraph.data.store import Store
from tests.serving.app_fixtures import AUTH


def _snapshot(url: str) -> tuple[dict, list, list]:
    with Store(url) as store:
        return (
            store.counts(),
            store.items_frame().to_dict("records"),
            store.accounts_frame().to_dict("records"),
        )


@pytest.mark.parametrize(
    ("event", "noun", "how"),
    [
        ({"user": "alice-new", "kind": "like", "item": "no-such-post"}, "item", "import items"),
        ({"user": "acc:000001", "kind": "view", "item": "post/typo"}, "item", "bot"),
        ({"user": "acc:000001", "kind": "follow", "account": "nobody"}, "account", "crawl"),
    ],
)
def test_feedback_naming_what_the_store_lacks_is_404_and_writes_nothing(
    client,
    served,
    event,
    noun,
    how,
):
    settings, _ = served
    before = _snapshot(settings.database_url)
    response = client.post("/v1/feedback", json=event, headers=AUTH)
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    target = event.get("item") or event.get("account")
    assert f"unknown {noun} {target!r}" in detail and how in detail
    assert _snapshot(settings.database_url) == before  # no empty item or account row


def test_a_new_user_may_like_a_known_item(client, served):
    settings, _ = served
    response = client.post(
        "/v1/feedback", json={"user": "brand-new-user", "kind": "like", "item": "post:000003"},
        headers=AUTH,
    )  # fmt: skip
    assert response.status_code == 200 and response.json()["written"]["interactions"] == 1
    with Store(settings.database_url) as store:
        assert "brand-new-user" in set(store.accounts_frame()["external_id"])


def test_the_openapi_document_says_what_feedback_may_name(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/feedback"]["post"]
    assert "404" in operation["responses"] and "must be in" in operation["description"]


@pytest.mark.parametrize("directed", [True, False])
def test_follows_among_reads_what_the_account_follows_at_any_length(
    tmp_path, monkeypatch, directed, store_url
):
    from recgraph.data.imports import import_edges
    from recgraph.serving import feedback as F

    edges = tmp_path / "edges.txt"
    edges.write_text("a b\na c\nd a\nb c\n")
    store = Store(store_url)
    import_edges(store, edges, directed=directed)
    among = F.FeedbackStore(store)
    # a friendship ties both ends: d is a's friend, but a does not follow d
    ties = {"b", "c"} | (set() if directed else {"d"})
    for candidates in (["b"], ["d", "c"], ["c", "x", "d", "b"]):
        assert set(among.follows_among("a", candidates)) == ties & set(candidates)
    # past the statements of their own length: the expanding one, the same answer
    monkeypatch.setattr(F, "MAX_AMONG", 2)
    assert set(among.follows_among("a", ["c", "x", "d", "b"])) == ties & {"b", "c", "d"}
    assert among.follows_among("nobody", ["a", "b"]) == []
    store.close()


def test_items_among_reads_what_the_user_had_at_any_length(monkeypatch, store_url):
    import pandas as pd

    from recgraph.serving import feedback as F

    store = Store(store_url)
    with store.writer() as writer:
        writer.interactions(
            pd.DataFrame(
                {
                    "user": ["a", "a", "a", "b"],
                    "item": ["x", "y", "z", "w"],
                    "kind": ["like", "dislike", "view", "like"],
                }
            )
        )
    among = F.FeedbackStore(store)
    for candidates in (["x"], ["w", "y"], ["z", "q", "w", "x", "y"]):
        assert set(among.items_among("a", candidates)) == {"x", "y", "z"} & set(candidates)
    monkeypatch.setattr(F, "MAX_AMONG", 2)  # the expanding statement: the same answer
    assert set(among.items_among("a", ["z", "q", "w", "x", "y"])) == {"x", "y", "z"}
    assert among.items_among("nobody", ["x"]) == [] and among.items_among("a", []) == []
    assert set(among.items_among("b", ["w", "x"])) == {"w"}
    store.close()
