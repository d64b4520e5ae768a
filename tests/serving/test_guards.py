"""What stands before a handler: the token, the body (size, strict JSON), and error answers."""

import asyncio
import json
import socket
import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

from recgraph.data.store import Store
from recgraph.serving.app import create_app
from tests.serving.app_fixtures import TOKEN, LiveServer

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
LIKE = {"user": "did:synth:00001", "kind": "like", "item": "post:000002"}


# ---------------------------------------------------------------------- strict JSON
@pytest.mark.parametrize(
    "body",
    [
        b'{"user": "a", "kind": "like", "item": "x", "value": NaN}',
        b'{"user": "a", "kind": "like", "item": "x", "value": Infinity}',
        b'{"user": "a", "kind": "like", "item": "x", "value": -Infinity}',
        b'{"user": "a", "kind": "like", "item": "x", "value": 1e999}',
        b'{"user": "a", "kind": "like", "item": "x", "timestamp": 1e999}',
        b'{"user": "a", "kind": "like", "item": "x", "timestamp": ' + b"9" * 5000 + b"}",
        b'{"user": "a", "kind": "like", "item": "x"',
        b'{"user": "\xff\xfe", "kind": "like", "item": "x"}',
        b"not json at all",
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "1e999",
        "1e999-int",
        "5000-digits",
        "truncated",
        "not-utf8",
        "text",
    ],  # fmt: skip
)
def test_a_body_that_is_not_strict_json_is_422_and_the_answer_is_json(client, body):
    response = client.post("/v1/feedback", content=body, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = json.loads(response.text)["detail"]  # strict: the answer itself is valid JSON
    assert detail[0]["type"] == "json_invalid" and detail[0]["loc"][0] == "body"


def test_the_openapi_document_and_the_server_agree_on_invalid_json(client):
    responses = client.get("/openapi.json").json()["paths"]["/v1/feedback"]["post"]["responses"]
    assert "422" in responses and "400" not in responses
    assert "not valid JSON" in responses["422"]["description"]
    bad = client.post("/v1/feedback", content=b"{", headers=AUTH)
    assert str(bad.status_code) in responses


def test_a_non_finite_number_that_passes_json_still_answers_json(client):
    # query parameters reach validation as text; the answer must stay encodable
    response = client.get("/v1/users/x/feed", params={"k": "NaN"})
    assert response.status_code == 422 and json.loads(response.text)["detail"]


# ---------------------------------------------------------------------- body size
def test_a_body_over_the_limit_is_413(served):
    settings, _ = served
    with TestClient(create_app(settings.model_copy(update={"max_body_bytes": 2048}))) as c:
        big = json.dumps({**LIKE, "user": "u" * 4000}).encode()
        assert c.post("/v1/feedback", content=big, headers=AUTH).status_code == 413

        def chunks():  # no Content-Length: refused while it streams
            for _ in range(100):
                yield b" " * 1024

        response = c.post("/v1/feedback", content=chunks(), headers=AUTH)
        assert response.status_code == 413 and "2,048 bytes" in response.json()["detail"]
        assert c.post("/v1/feedback", json=LIKE, headers=AUTH).status_code == 200


def _raw_post(url: str, headers: dict[str, str], body_sent: bytes) -> tuple[int, float]:
    """POST with the given headers, send only ``body_sent``, and read the status line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(f"POST /v1/feedback HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        start = time.perf_counter()
        conn.sendall(body_sent)
        status = conn.recv(4096).split(b"\r\n", 1)[0]
        return int(status.split()[1]), time.perf_counter() - start


def test_the_token_is_checked_before_a_huge_body_is_read(served):
    settings, _ = served
    declared = 200 * 1024 * 1024  # what the client says it will send; it sends 64 KiB
    with LiveServer(create_app(settings)) as server:
        status, seconds = _raw_post(
            server.url,
            {"Content-Type": "application/json", "Content-Length": str(declared)},
            b" " * 65536,
        )
        assert status == 401 and seconds < 10
        # with the token, the declared size alone is refused: nothing is buffered
        status, _ = _raw_post(
            server.url,
            {
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/json",
                "Content-Length": str(declared),
            },  # fmt: skip
            b" " * 65536,
        )
        assert status == 413
        # and a chunked body is cut off once it passes the limit, not at its end
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        status, _ = _raw_post(
            server.url,
            {
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/json",
                "Transfer-Encoding": "chunked",
            },  # fmt: skip
            chunk * 20,  # 1.25 MiB of a body that never ends
        )
        assert status == 413


# ---------------------------------------------------------------------- the store
def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _spied(store, names, seen):
    for name in names:
        original = getattr(store, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            seen.append((_name, _on_event_loop()))
            return _original(*args, **kwargs)

        setattr(store, name, spy)


def test_database_work_runs_off_the_event_loop_with_answer_threads(served):
    from fastapi.testclient import TestClient

    from recgraph.serving.app import ANSWER_THREADS, create_app

    settings, _ = served
    app = create_app(settings.model_copy(update={"answer_threads": ANSWER_THREADS}))
    with TestClient(app) as client:
        feedback = client.app.state.feedback
        assert client.app.state.answer_reads is feedback  # with threads: one store
        seen: list[tuple[str, bool]] = []
        _spied(feedback, ("items_among", "follows_among", "write"), seen)
        assert client.get("/v1/users/did:synth:00001/feed").status_code == 200
        assert client.get("/v1/accounts/did:synth:00001/suggestions").status_code == 200
        assert client.post("/v1/feedback", json=LIKE, headers=AUTH).status_code == 200
        assert client.get("/v1/stats/store").status_code == 200
    assert {name for name, _ in seen} == {"items_among", "follows_among", "write"}
    assert not any(on_loop for _, on_loop in seen), seen


def test_answers_on_the_loop_read_their_own_store_and_writes_stay_off_it(served):
    """``answer_threads = 0``: answers (and their reads) on the event loop, through the
    read-only store of their own; the writers' store is not touched by them, and writes
    still run off the loop."""
    from fastapi.testclient import TestClient

    from recgraph.serving.app import create_app

    settings, _ = served
    with TestClient(create_app(settings.model_copy(update={"answer_threads": 0}))) as client:
        _answers_on_the_loop(client)


def _answers_on_the_loop(client) -> None:
    feedback, reads = client.app.state.feedback, client.app.state.answer_reads
    assert reads is not feedback
    written: list[tuple[str, bool]] = []
    read: list[tuple[str, bool]] = []
    _spied(feedback, ("items_among", "follows_among", "write"), written)
    _spied(reads, ("items_among", "follows_among"), read)
    assert client.get("/v1/users/did:synth:00001/feed").status_code == 200
    assert client.get("/v1/accounts/did:synth:00001/suggestions").status_code == 200
    assert client.post("/v1/feedback", json=LIKE, headers=AUTH).status_code == 200
    assert written == [("write", False)]
    assert {name for name, _ in read} == {"items_among", "follows_among"}
    assert all(on_loop for _, on_loop in read), read


def test_a_locked_store_answers_503_with_retry_after_within_the_busy_timeout(served):
    settings, _ = served
    fast = settings.model_copy(update={"busy_timeout": 0.3})
    path = settings.database_url.removeprefix("sqlite:///")
    with TestClient(create_app(fast)) as c:
        before = Store(settings.database_url).counts()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            start = time.perf_counter()
            response = c.post("/v1/feedback", json=LIKE, headers=AUTH)
            seconds = time.perf_counter() - start
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1" and seconds < 10
        assert "busy" in response.json()["detail"] and "busy_timeout" in response.json()["detail"]
        assert Store(settings.database_url).counts() == before
        # the lock gone, the same request goes through
        assert c.post("/v1/feedback", json=LIKE, headers=AUTH).status_code == 200
