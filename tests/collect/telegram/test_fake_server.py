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
