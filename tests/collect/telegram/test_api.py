"""The Bot API client: errors classified by code and description, the token kept out of messages."""

from __future__ import annotations

import asyncio

import pytest

from recgraph.collect.telegram.api import BotApi, Fault, TelegramError, classify
from recgraph.collect.telegram.fake_server import DEFAULT_TOKEN, FakeBotApi


@pytest.mark.parametrize(
    ("code", "description", "fault"),
    [
        (400, "Bad Request: message to copy not found", Fault.MESSAGE_GONE),
        (400, "Bad Request: MESSAGE_ID_INVALID", Fault.MESSAGE_GONE),
        (400, "Bad Request: message can't be copied", Fault.NOT_COPYABLE),
        (400, "Bad Request: chat not found", Fault.CHAT_GONE),
        (403, "Forbidden: bot was blocked by the user", Fault.CHAT_GONE),
        (403, "Forbidden: user is deactivated", Fault.CHAT_GONE),
        (403, "Forbidden: bot was kicked from the group chat", Fault.CHAT_GONE),
        (429, "Too Many Requests: retry after 35", Fault.FLOOD),
        (500, "Internal Server Error", Fault.MAYBE_SENT),
        (502, "Bad Gateway", Fault.MAYBE_SENT),
        (401, "Unauthorized", Fault.UNAUTHORIZED),
        (404, "Not Found", Fault.UNAUTHORIZED),
        (400, "Bad Request: query is too old and response timeout expired", Fault.QUERY_EXPIRED),
        # a bare "not found" is no verdict on a message or a chat
        (400, "Bad Request: file not found", Fault.BAD_REQUEST),
        (400, "Bad Request: message to edit not found", Fault.BAD_REQUEST),
    ],
)
def test_errors_are_classified_by_code_and_exact_description(
    code: int, description: str, fault: Fault
) -> None:
    assert classify(code, description) is fault


def test_client_faults_and_no_token_in_messages() -> None:
    async def scenario(api: FakeBotApi) -> list[TelegramError]:
        client = BotApi(DEFAULT_TOKEN, api.base_url, timeout_seconds=0.5)
        errors = []
        try:
            assert (await client.call("getMe"))["is_bot"] is True
            api.user_message(5, "hi")
            for kind in ("502-html", "drop", "slow"):
                api.fail("sendMessage", kind, delay=1.0)
                with pytest.raises(TelegramError) as caught:
                    await client.call("sendMessage", chat_id=5, text="x")
                errors.append(caught.value)
            api.flood("sendMessage", retry_after=7)
            with pytest.raises(TelegramError) as caught:
                await client.call("sendMessage", chat_id=5, text="x")
            errors.append(caught.value)
        finally:
            await client.close()
        refused = BotApi(DEFAULT_TOKEN, "http://127.0.0.1:9")  # nobody listens: never sent
        try:
            with pytest.raises(TelegramError) as caught:
                await refused.call("getMe")
            errors.append(caught.value)
        finally:
            await refused.close()
        return errors

    with FakeBotApi() as api:
        html, dropped, slow, flood, refused = asyncio.run(scenario(api))
    assert (html.fault, html.code) == (Fault.MAYBE_SENT, 502)
    assert dropped.fault is Fault.MAYBE_SENT and slow.fault is Fault.MAYBE_SENT
    assert flood.fault is Fault.FLOOD and flood.retry_after == 7
    assert refused.fault is Fault.NOT_SENT
    for error in (html, dropped, slow, flood, refused):
        assert DEFAULT_TOKEN not in str(error)
