"""The fake Bot API: envelope, encodings, errors, long polling, and the 409 of two pollers."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi


@pytest.fixture
def api():
    with FakeBotApi() as running:
        yield running


def call(api: FakeBotApi, method: str, token: str = DEFAULT_TOKEN, **kwargs) -> httpx.Response:
    return httpx.post(f"{api.url}/bot{token}/{method}", timeout=10, **kwargs)


def test_envelope_and_errors(api: FakeBotApi) -> None:
    me = call(api, "getMe")
    assert me.status_code == 200 and me.json()["ok"] is True
    assert me.json()["result"]["is_bot"] is True
    assert call(api, "GETME").status_code == 200  # method names are case-insensitive
    assert call(api, "getMe", token="1:wrong").json() == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    missing = call(api, "noSuchMethod")
    assert (
        missing.status_code == 404
        and missing.json()["description"] == "Not Found: method not found"
    )
    lost = call(api, "sendMessage", data={"chat_id": "77", "text": "hi"})
    assert lost.status_code == 400 and lost.json()["description"] == "Bad Request: chat not found"


def test_all_four_encodings_and_json_values(api: FakeBotApi) -> None:
    api.user_message(5, "hello")
    markup = {"inline_keyboard": [[{"text": "👍", "callback_data": "like:1:2"}]]}
    form = call(
        api, "sendMessage", data={"chat_id": "5", "text": "a", "reply_markup": json.dumps(markup)}
    )
    as_json = call(api, "sendMessage", json={"chat_id": 5, "text": "b", "reply_markup": markup})
    query = httpx.get(
        f"{api.url}/bot{DEFAULT_TOKEN}/sendMessage", params={"chat_id": 5, "text": "c"}
    )
    multipart = call(api, "sendMessage", files={"chat_id": (None, "5"), "text": (None, "d")})
    for response in (form, as_json, query, multipart):
        assert response.status_code == 200, response.text
    assert form.json()["result"]["reply_markup"] == markup
    assert [c.params["text"] for c in api.calls("sendMessage")] == ["a", "b", "c", "d"]


def test_get_updates_confirms_by_offset_and_long_polls(api: FakeBotApi) -> None:
    api.channel_post(-1005, "one")
    api.channel_post(-1005, "two")
    first = call(api, "getUpdates", data={"offset": "0", "timeout": "0"}).json()["result"]
    assert [u["channel_post"]["text"] for u in first] == ["one", "two"]
    again = call(api, "getUpdates", data={"offset": "0", "timeout": "0"}).json()["result"]
    assert len(again) == 2  # not confirmed yet
    after = first[-1]["update_id"] + 1
    threading.Timer(0.3, lambda: api.user_message(9, "/start")).start()
    started = time.monotonic()
    waited = call(api, "getUpdates", data={"offset": str(after), "timeout": "5"}).json()["result"]
    assert 0.2 < time.monotonic() - started < 4
    assert waited[0]["message"]["entities"][0]["type"] == "bot_command"
    filtered = call(
        api, "getUpdates", data={"offset": str(after), "allowed_updates": '["channel_post"]'}
    ).json()["result"]
    assert filtered == []


def test_a_second_poller_terminates_the_first(api: FakeBotApi) -> None:
    answers: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: answers.append(call(api, "getUpdates", data={"timeout": "3"}))
    )
    first.start()
    time.sleep(0.3)
    call(api, "getUpdates", data={"timeout": "0"})
    first.join(timeout=5)
    assert answers[0].status_code == 409
    assert answers[0].json()["description"].startswith("Conflict: terminated by other getUpdates")


def test_copy_flood_block_and_callback_answers(api: FakeBotApi) -> None:
    post = api.channel_post(-1007, "news")
    api.user_message(3, "/start")
    copy = {"chat_id": "3", "from_chat_id": "-1007", "message_id": str(post["message_id"])}
    api.flood("copyMessage", retry_after=4)
    flooded = call(api, "copyMessage", data=copy).json()
    assert flooded == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 4",
        "parameters": {"retry_after": 4},
    }
    copied = call(api, "copyMessage", data=copy).json()["result"]
    assert set(copied) == {"message_id"}
    gone = call(api, "copyMessage", data={**copy, "message_id": "999"})
    assert gone.json()["description"] == "Bad Request: message to copy not found"
    query = api.press(3, copied["message_id"], "like:-1007:1")
    assert (
        call(api, "answerCallbackQuery", data={"callback_query_id": query}).json()["result"] is True
    )
    twice = call(api, "answerCallbackQuery", data={"callback_query_id": query})
    assert twice.status_code == 400 and "query is too old" in twice.json()["description"]
    api.block(3)
    blocked = call(api, "copyMessage", data=copy)
    assert blocked.status_code == 403
    assert blocked.json()["description"] == "Forbidden: bot was blocked by the user"


def test_injected_faults_and_what_each_leaves_done(api: FakeBotApi) -> None:
    api.user_message(5, "hello")
    send = {"data": {"chat_id": "5", "text": "x"}}
    api.fail("sendMessage", "502")
    bad = call(api, "sendMessage", **send)
    assert bad.status_code == 502 and bad.json()["error_code"] == 502
    api.fail("sendMessage", "502-html")
    page = call(api, "sendMessage", **send)
    assert page.status_code == 502 and page.text.startswith("<html>")
    api.fail("sendMessage", "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        call(api, "sendMessage", **send)
    assert api.calls("sendMessage") == []  # none of these sent anything
    api.fail("sendMessage", "lost")
    with pytest.raises(httpx.RemoteProtocolError):
        call(api, "sendMessage", **send)
    assert len(api.calls("sendMessage")) == 1  # a lost answer: the message is there
    api.fail("sendMessage", "slow", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{api.url}/bot{DEFAULT_TOKEN}/sendMessage", timeout=0.2, **send)
    api.wait_for(lambda: len(api.calls("sendMessage")) == 2)
    api.fail("sendMessage", "502", chat_id=6, after=1)  # another chat, and one pass first
    assert call(api, "sendMessage", **send).status_code == 200
    assert [c.error for c in api.errors("sendMessage")] == [502, 502, 0]


def test_floods_per_chat_and_unreachable_chats(api: FakeBotApi) -> None:
    for user in (1, 2, 3, 4):
        api.user_message(user, "hi")
    api.flood("sendMessage", retry_after=3, chat_id=2)
    assert call(api, "sendMessage", data={"chat_id": "1", "text": "x"}).status_code == 200
    flooded = call(api, "sendMessage", data={"chat_id": "2", "text": "x"}).json()
    assert flooded["parameters"] == {"retry_after": 3}
    api.delete_chat(1)
    api.block(3)
    api.deactivate(4)
    answers = [
        call(api, "sendMessage", data={"chat_id": str(u), "text": "x"}).json()["description"]
        for u in (1, 3, 4)
    ]
    assert answers == [
        "Bad Request: chat not found",
        "Forbidden: bot was blocked by the user",
        "Forbidden: user is deactivated",
    ]
    assert call(api, "getChat", data={"chat_id": "1"}).status_code == 400
    assert call(api, "getChat", data={"chat_id": "2"}).json()["result"]["id"] == 2


def test_service_messages_albums_and_copy_messages(api: FakeBotApi) -> None:
    api.user_message(5, "hello")
    pin = api.channel_service(-100, "pinned_message")
    album = api.channel_album(-100, 3)
    api.channel_post(-100, "text")
    assert "pinned_message" in pin and len({m["media_group_id"] for m in album}) == 1
    refused = call(
        api, "copyMessage", data={"chat_id": "5", "from_chat_id": "-100", "message_id": "1"}
    ).json()
    assert refused["description"] == "Bad Request: message can't be copied"
    ids = json.dumps([m["message_id"] for m in album])
    copied = call(
        api, "copyMessages", data={"chat_id": "5", "from_chat_id": "-100", "message_ids": ids}
    ).json()["result"]
    assert len(copied) == 3
    in_chat = api.messages_in(5)[-3:]
    assert len({m["media_group_id"] for m in in_chat}) == 1 and all("photo" in m for m in in_chat)
    unordered = call(
        api, "copyMessages", data={"chat_id": "5", "from_chat_id": "-100", "message_ids": "[3,2]"}
    )
    assert unordered.status_code == 400
    api.delete_post(-100, 5)
    gone = call(
        api, "copyMessage", data={"chat_id": "5", "from_chat_id": "-100", "message_id": "5"}
    )
    assert gone.json()["description"] == "Bad Request: message to copy not found"
