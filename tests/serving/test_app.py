import math

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recgraph.data.store import Store
from recgraph.pipeline import Pipeline
from recgraph.serving.app import create_app
from tests.serving.app_fixtures import AUTH, TOKEN


def known_user(client, question="feed"):
    return client.get("/v1/model").json()["examples"][question][0]


def check_results(body, k):
    assert body["model_version"] == "v1"
    assert 0 < len(body["results"]) <= k
    for r in body["results"]:
        assert r["reason"] and r["retrievers"] and math.isfinite(r["score"])
    scores = [r["score"] for r in body["results"] if not r["fallback"]]
    assert scores == sorted(scores, reverse=True)


def test_suggestions_by_id_and_by_handle_carry_reasons(client):
    example = known_user(client, "who_to_follow")
    by_id = client.get(f"/v1/accounts/{example['id']}/suggestions", params={"k": 5})
    by_handle = client.get(f"/v1/accounts/@{example['handle']}/suggestions", params={"k": 5})
    assert by_id.status_code == by_handle.status_code == 200
    body = by_id.json()
    check_results(body, 5)
    assert body["known"] and not body["cold_start"] and body["resolved"] == example["id"]
    assert by_handle.json()["resolved"] == example["id"]
    assert [r["id"] for r in by_handle.json()["results"]] == [r["id"] for r in body["results"]]
    first = body["results"][0]
    assert first["reason"].startswith("followed by @") and "adamic_adar" in first["retrievers"]


def test_the_default_k_is_the_pipelines(client):
    example = known_user(client, "who_to_follow")
    body = client.get(f"/v1/accounts/{example['id']}/suggestions").json()
    assert len(body["results"]) == 10


def test_feed_has_reasons_and_unknown_users_get_the_cold_start_fallback(client):
    user = known_user(client)
    body = client.get(f"/v1/users/{user['id']}/feed", params={"k": 8}).json()
    check_results(body, 8)
    assert any(r["reason"].startswith("because you liked") for r in body["results"])
    cold = client.get("/v1/users/someone-new/feed", params={"k": 4})
    assert cold.status_code == 200
    body = cold.json()
    assert body["cold_start"] and not body["known"] and len(body["results"]) == 4
    assert {r["reason"] for r in body["results"]} == {"popular: new user"}
    who = client.get("/v1/accounts/someone-new/suggestions").json()
    assert who["cold_start"] and who["results"][0]["reason"] == "popular: new user"


def test_similar_items_and_an_unknown_item(client):
    body = client.get("/v1/items/post:000010/similar", params={"k": 3}).json()
    check_results(body, 3)
    assert all(r["id"] != "post:000010" for r in body["results"])
    missing = client.get("/v1/items/no-such-post/similar")
    assert missing.status_code == 404 and "no-such-post" in missing.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/x/feed?k=0",
        "/v1/users/x/feed?k=-3",
        "/v1/users/x/feed?k=ten",
        "/v1/users/x/feed?k=101",
        "/v1/accounts/x/suggestions?k=100000000000000000000000",
        "/v1/items/post:000001/similar?k=0",
        "/v1/users/%01bad/feed",
        "/v1/users/" + "a" * 256 + "/feed",
    ],
)
def test_invalid_parameters_get_422_naming_the_field(client, path):
    response = client.get(path)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"][0] in ("query", "path") and detail[0]["msg"]


def test_feedback_needs_the_token_and_is_written_to_the_store(client, served):
    settings, _ = served
    user = known_user(client)["id"]
    shown = client.get(f"/v1/users/{user}/feed", params={"k": 3}).json()["results"]
    liked, disliked = shown[0]["id"], shown[1]["id"]
    event = {"user": user, "kind": "like", "item": liked}
    assert client.post("/v1/feedback", json=event).status_code == 401
    wrong = client.post("/v1/feedback", json=event, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    ok = client.post("/v1/feedback", json=event, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["written"]["interactions"] == 1
    event = {"user": user, "kind": "dislike", "item": disliked, "timestamp": 1_800_000_000}
    assert client.post("/v1/feedback", json=event, headers=AUTH).status_code == 200
    rows = Store(settings.database_url).interactions_graph()
    mine = rows.src == rows.users.index_of(user)
    kinds = {
        (str(rows.items.ids[d]), int(k))
        for d, k in zip(rows.dst[mine], rows.kind[mine], strict=True)
    }
    assert (liked, 1) in kinds and (disliked, 2) in kinds
    # the next feed leaves both out, before any retraining
    again = client.get(f"/v1/users/{user}/feed", params={"k": 10}).json()["results"]
    assert not {liked, disliked} & {r["id"] for r in again}


def test_follow_feedback_leaves_suggestions(client):
    user = known_user(client, "who_to_follow")["id"]
    first = client.get(f"/v1/accounts/{user}/suggestions", params={"k": 3}).json()["results"][0]
    event = {"user": user, "kind": "follow", "account": first["id"]}
    assert client.post("/v1/feedback", json=event, headers=AUTH).status_code == 200
    after = client.get(f"/v1/accounts/{user}/suggestions", params={"k": 10}).json()["results"]
    assert first["id"] not in {r["id"] for r in after}


def answer_ids(client, url):
    """The ids of a 3-result answer at ``url`` (never empty: the tests below need some)."""
    ids = [r["id"] for r in client.get(url, params={"k": 3}).json()["results"]]
    assert ids
    return ids


def calls_to(monkeypatch, obj, name):
    """The positional arguments of each call of ``obj.name`` from now on (still called)."""
    calls, original = [], getattr(obj, name)
    monkeypatch.setattr(obj, name, lambda *a, **kw: calls.append(a) or original(*a, **kw))
    return calls


def test_follows_stored_since_training_leave_suggestions_without_the_whole_list(
    client, monkeypatch
):
    """Follows the store got after training (the crawler's, another worker's) are left
    out: the store is asked about the answer's accounts only, and asked again until
    none of them is followed; the user's whole follow list is never read."""
    user = known_user(client, "who_to_follow")["id"]
    url = f"/v1/accounts/{user}/suggestions"
    feedback, reads = client.app.state.feedback, client.app.state.answer_reads
    taken = answer_ids(client, url)
    with feedback.store.writer() as writer:
        directed = feedback.directed()
        writer.follows(
            pd.DataFrame({"src": [user] * len(taken), "dst": taken}),
            directed=True if directed is None else directed,
        )
    whole_lists = calls_to(monkeypatch, reads, "follows_of")
    assert not set(taken) & set(answer_ids(client, url))
    assert whole_lists == []


def test_interactions_stored_since_training_leave_the_feed_without_the_whole_history(
    client, monkeypatch
):
    """The feed's twin of the test above: items the store got after training are left
    out, the store asked about the answer's items only (``items_among``), never the
    user's whole history (``items_of``)."""
    user = known_user(client, "feed")["id"]
    feedback, reads = client.app.state.feedback, client.app.state.answer_reads
    url = f"/v1/users/{user}/feed"
    taken = answer_ids(client, url)
    with feedback.store.writer() as writer:
        writer.interactions(
            pd.DataFrame({"user": [user] * len(taken), "item": taken, "kind": "view"})
        )
    whole_lists = calls_to(monkeypatch, reads, "items_of")
    asked = calls_to(monkeypatch, reads, "items_among")
    assert not set(taken) & set(answer_ids(client, url))
    assert whole_lists == [] and len(asked) >= 2  # asked again until none was taken


@pytest.mark.parametrize(
    "event",
    [
        {"user": "a", "kind": "like"},
        {"user": "a", "kind": "follow", "item": "x"},
        {"user": "a", "kind": "love", "item": "x"},
        {"user": "", "kind": "like", "item": "x"},
        {"user": "a", "kind": "like", "item": "x", "value": "NaN"},
        {"user": "a", "kind": "like", "item": "x", "timestamp": -1},
        {"user": "a", "kind": "like", "item": "x", "extra": 1},
        {"user": "a", "kind": "like", "item": "x", "timestamp": "1700000000"},
        {"user": "a", "kind": "like", "item": "x", "value": True},
    ],
)
def test_bad_feedback_gets_422(client, event):
    response = client.post("/v1/feedback", json=event, headers=AUTH)
    assert response.status_code == 422, response.text


def test_writes_are_refused_without_a_configured_token(served):
    settings, _ = served
    app = create_app(settings.model_copy(update={"api_token": None}))
    with TestClient(app) as c:
        response = c.post("/v1/feedback", json={"user": "a", "kind": "like", "item": "x"})
        assert response.status_code == 403 and "disabled" in response.json()["detail"]


def test_reload_needs_the_token_and_swaps_to_a_new_version(client, served):
    settings, registry = served
    assert client.post("/v1/admin/reload").status_code == 401
    same = client.post("/v1/admin/reload", headers=AUTH).json()
    assert same == {"previous": "v1", "version": "v1", "swapped": False}
    model = Pipeline.load(registry.local_copy("v1") / "model")
    registry.publish(model, data=model.snapshots, promote=True)
    swapped = client.post("/v1/admin/reload", headers=AUTH).json()
    assert swapped == {"previous": "v1", "version": "v2", "swapped": True}
    assert client.get("/healthz").json()["model_version"] == "v2"
    assert client.get("/v1/users/x/feed").json()["model_version"] == "v2"


def test_healthz_model_and_metrics(client):
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert set(info["questions"]) == {"who_to_follow", "feed"}
    assert info["questions"]["who_to_follow"]["fallback"] == ["popular"]
    client.get("/v1/users/x/feed")
    client.get("/v1/users/x/feed?k=0")
    text = client.get("/metrics").text
    assert (
        'recgraph_http_requests_total{method="GET",route="/v1/users/{user}/feed",status="200"}'
        in text
    )
    assert 'route="/v1/users/{user}/feed",status="422"' in text
    assert "recgraph_http_request_duration_seconds_bucket" in text
    assert "recgraph_model_version 1.0" in text and 'recgraph_model_info{version="v1"} 1.0' in text
    assert 'recgraph_answers_total{cold_start="true",question="feed"}' in text


def test_page_and_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="account-form"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/accounts/{account}/suggestions" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_no_model_yet_is_503_and_a_question_the_model_lacks_is_404(tmp_path, served):
    settings, _ = served
    empty = settings.model_copy(update={"registry": str(tmp_path / "empty")})
    with TestClient(create_app(empty)) as c:
        assert c.get("/healthz").json() == {
            "status": "no_model", "model_version": None, "recgraph_version": c.app.version,
        }  # fmt: skip
        response = c.get("/v1/users/x/feed")
        assert response.status_code == 503 and "recgraph train" in response.json()["detail"]


def test_a_question_the_model_was_not_trained_for_is_404(tmp_path, served):
    from recgraph.serving.registry import ModelRegistry
    from tests.pipeline.test_pipeline import two_cliques

    settings, _ = served
    registry = ModelRegistry(tmp_path / "follows-only")
    registry.publish(Pipeline().fit(follows=two_cliques()))
    with TestClient(create_app(settings.model_copy(update={"registry": registry.root}))) as c:
        assert c.get("/v1/accounts/0/suggestions").status_code == 200
        for path in ("/v1/users/0/feed", "/v1/items/1/similar"):
            response = c.get(path)
            assert response.status_code == 404 and "feed" in response.json()["detail"]


#: Ids with characters a URL path reserves or treats specially.
ODD_ACCOUNTS = ["a/b", "c?d", "e#f", "g%h", "i j", "k/feed", "l/m/n", "o+p", "q&r", "s;t"]
ODD_ITEMS = ["post/1", "post?2", "post#3", "post%4", "post 5", "post/6/similar"]


@pytest.fixture(scope="module")
def odd_ids_client(tmp_path_factory):
    """A store whose accounts and items have ids with /, ?, #, %, spaces and more."""
    import pandas as pd

    from recgraph.serving.registry import ModelRegistry
    from recgraph.settings import Settings

    root = tmp_path_factory.mktemp("odd")
    url = f"sqlite:///{root / 'store.db'}"
    pairs = [
        (a, b) for a in ODD_ACCOUNTS for b in ODD_ACCOUNTS if a != b and (a, b) != ("a/b", "c?d")
    ]
    likes = [(u, i) for n, u in enumerate(ODD_ACCOUNTS) for i in ODD_ITEMS[n % 3 :: 2]]
    with Store(url) as store, store.writer() as writer:
        writer.follows(pd.DataFrame(pairs, columns=["src", "dst"]), directed=True)
        writer.interactions(
            pd.DataFrame(
                {
                    "user": [u for u, _ in likes],
                    "item": [i for _, i in likes],
                    "kind": "like",
                    "timestamp": 1_700_000_000,
                }  # fmt: skip
            )
        )
    with Store(url) as store:
        pipeline = Pipeline().fit_store(store)
    registry = ModelRegistry(root / "models")
    registry.publish(pipeline, data=pipeline.snapshots)
    settings = Settings(registry=registry.root, database_url=url, api_token=TOKEN, poll_seconds=0)
    with TestClient(create_app(settings)) as c:
        yield c


def _encoded(external_id: str, keep_slash: bool) -> str:
    from urllib.parse import quote

    return quote(external_id, safe="/" if keep_slash else "")


@pytest.mark.parametrize("keep_slash", [False, True], ids=["slash-as-%2F", "slash-as-is"])
@pytest.mark.parametrize("account", ODD_ACCOUNTS)
def test_ids_with_reserved_characters_are_queryable(odd_ids_client, account, keep_slash):
    path = _encoded(account, keep_slash)
    for url in (f"/v1/accounts/{path}/suggestions", f"/v1/users/{path}/feed"):
        response = odd_ids_client.get(url, params={"k": 3})
        assert response.status_code == 200, (url, response.text)
        body = response.json()
        assert body["resolved"] == account and body["known"], (url, body)
    suggested = odd_ids_client.get(f"/v1/accounts/{path}/suggestions").json()["results"]
    assert account not in {r["id"] for r in suggested}


@pytest.mark.parametrize("keep_slash", [False, True], ids=["slash-as-%2F", "slash-as-is"])
@pytest.mark.parametrize("item", ODD_ITEMS)
def test_item_ids_with_reserved_characters_are_queryable(odd_ids_client, item, keep_slash):
    response = odd_ids_client.get(f"/v1/items/{_encoded(item, keep_slash)}/similar")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resolved"] == item and item not in {r["id"] for r in body["results"]}
    event = {"user": "a/b", "kind": "view", "item": item}
    written = odd_ids_client.post("/v1/feedback", json=event, headers=AUTH)
    assert written.status_code == 200, written.text
