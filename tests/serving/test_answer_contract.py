"""The answers' bytes, pinned: what a client of suggestions and feed gets, to the byte, and the
exact 422 bodies for parameters the service refuses (FastAPI's wording, whichever path parsed them)."""

import json
import math

import pytest

from tests.serving.app_fixtures import AUTH


def expected_body(query: str, answer, version: str) -> bytes:
    """The answer as the API has always encoded it: keys in this order, compact, UTF-8."""
    body = {
        "query": query,
        "resolved": answer.user,
        "known": answer.known,
        "cold_start": answer.cold,
        "model_version": version,
        "results": [
            {**r.to_dict(), "score": r.score if math.isfinite(r.score) else 0.0}
            for r in answer.results
        ],
    }
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def examples(client, question: str) -> list[str]:
    return [e["id"] for e in client.get("/v1/model").json()["examples"][question]]


@pytest.mark.parametrize(
    ("question", "template", "ask"),
    [
        ("who_to_follow", "/v1/accounts/{}/suggestions", "suggest_accounts"),
        ("feed", "/v1/users/{}/feed", "feed"),
    ],
)
def test_answers_are_pinned_to_the_byte(client, question, template, ask):
    loaded = client.app.state.loader.current
    for user in [*examples(client, question)[:3], "someone-new"]:
        for k in (None, 3):
            response = client.get(template.format(user), params={} if k is None else {"k": k})
            assert response.status_code == 200, response.text
            answer = getattr(loaded.pipeline, ask)(user, k, exclude=[])
            assert response.content == expected_body(user, answer, loaded.version)
            assert response.headers["content-type"] == "application/json"
            assert response.headers["content-length"] == str(len(response.content))
            assert set(response.headers) == {"content-type", "content-length"}


def test_a_handle_is_answered_as_its_account(client):
    loaded = client.app.state.loader.current
    example = client.get("/v1/model").json()["examples"]["who_to_follow"][0]
    query = f"@{example['handle']}"
    response = client.get(f"/v1/accounts/{query}/suggestions", params={"k": 4})
    answer = loaded.pipeline.suggest_accounts(query, 4, exclude=[])
    assert response.content == expected_body(query, answer, loaded.version)


PATTERN = "^[^\\\\x00-\\\\x1f\\\\x7f]+$"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/users/x/feed?k=0",
            '{"detail":[{"type":"greater_than_equal","loc":["query","k"],"msg":"Input should be '
            'greater than or equal to 1","input":"0","ctx":{"ge":1}}]}',
        ),
        (
            "/v1/accounts/x/suggestions?k=ten",
            '{"detail":[{"type":"int_parsing","loc":["query","k"],"msg":"Input should be a valid '
            'integer, unable to parse string as an integer","input":"ten"}]}',
        ),
        (
            "/v1/accounts/x/suggestions?k=",
            '{"detail":[{"type":"int_parsing","loc":["query","k"],"msg":"Input should be a valid '
            'integer, unable to parse string as an integer","input":""}]}',
        ),
        (
            "/v1/users/x/feed?k=101",
            '{"detail":[{"type":"less_than_equal","loc":["query","k"],"msg":"Input should be less '
            'than or equal to 100","input":"101","ctx":{"le":100}}]}',
        ),
        (
            "/v1/accounts/%01bad/suggestions",
            '{"detail":[{"type":"string_pattern_mismatch","loc":["path","account"],"msg":"String '
            f'should match pattern \'{PATTERN}\'","input":"\\u0001bad","ctx":{{"pattern":'
            f'"{PATTERN}"}}}}]}}',
        ),
        (
            "/v1/users/" + "a" * 256 + "/feed",
            '{"detail":[{"type":"string_too_long","loc":["path","user"],"msg":"String should '
            f'have at most 255 characters","input":"{"a" * 256}","ctx":{{"max_length":255}}}}]}}',
        ),
    ],
)
def test_refused_parameters_get_fastapis_exact_422(client, path, body):
    response = client.get(path)
    assert response.status_code == 422
    assert response.text == body


@pytest.mark.parametrize("odd_k", ["%2B3", "03", "%203", "3&k=3"])
def test_k_spelt_oddly_is_read_as_fastapi_reads_it(client, odd_k):
    user = examples(client, "feed")[0]
    plain = client.get(f"/v1/users/{user}/feed?k=3")
    odd = client.get(f"/v1/users/{user}/feed?k={odd_k}")
    assert odd.status_code == plain.status_code == 200
    assert odd.content == plain.content


def test_the_last_k_wins_when_k_is_repeated(client):
    user = examples(client, "feed")[0]
    assert len(client.get(f"/v1/users/{user}/feed?k=5&k=2").json()["results"]) == 2


def test_answers_are_counted_by_route_and_question(client):
    user = examples(client, "feed")[0]
    for _ in range(3):
        client.get(f"/v1/users/{user}/feed")
    client.get("/v1/users/x/feed?k=0")
    text = client.get("/metrics").text
    assert (
        'recgraph_http_requests_total{method="GET",route="/v1/users/{user}/feed",status="200"} 3.0'
        in text
    )
    assert (
        'recgraph_http_requests_total{method="GET",route="/v1/users/{user}/feed",status="422"} 1.0'
        in text
    )
    assert 'recgraph_answers_total{cold_start="false",question="feed"} 3.0' in text
    # the 422 is timed too
    assert 'recgraph_http_request_duration_seconds_count{route="/v1/users/{user}/feed"} 4.0' in text


def test_the_openapi_document_lists_paths_in_the_route_tables_order(client):
    from recgraph.serving.app import ROUTES

    listed = [p for p in client.get("/openapi.json").json()["paths"]]
    documented = list(dict.fromkeys(r.path.replace(":path", "") for r in ROUTES if r.in_schema))
    assert listed == documented


def test_feedback_still_parses_its_body(client):
    event = {"user": "new-user", "kind": "view", "item": "post:000010"}
    assert client.post("/v1/feedback", json=event, headers=AUTH).status_code == 200


def test_clean_answers_skip_fastapis_parameter_solving_and_refusals_do_not(client, monkeypatch):
    import fastapi.routing

    user = examples(client, "feed")[0]
    solved = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args, **kwargs):
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    assert client.get(f"/v1/users/{user}/feed?k=3").status_code == 200
    assert client.get("/v1/items/post:000010/similar").status_code == 200
    assert solved == []
    assert client.get(f"/v1/users/{user}/feed?k=0").status_code == 422
    assert client.get("/healthz").status_code == 200
    assert solved == [f"/v1/users/{user}/feed", "/healthz"]


def test_answer_routes_read_models_and_callable_objects_as_fastapi_does():
    from typing import Annotated

    from fastapi import APIRouter, FastAPI, Query
    from fastapi.responses import JSONResponse
    from fastapi.testclient import TestClient
    from pydantic import BaseModel

    from recgraph.serving.guards import AnswerRoute

    class Filters(BaseModel):
        a: int = 0

    class Echo:
        async def __call__(self, x: str) -> JSONResponse:
            return JSONResponse({"x": x})

    def with_model(x: str, m: Annotated[Filters | None, Query()] = None) -> JSONResponse:
        return JSONResponse({"m": None if m is None else m.a})

    router = APIRouter(route_class=AnswerRoute)
    router.add_api_route("/model/{x}", with_model)
    router.add_api_route("/object/{x}", Echo())
    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    assert client.get("/model/hi?a=5").json() == {"m": 5}  # the model's own field, read
    assert client.get("/object/hi").json() == {"x": "hi"}  # an async __call__, awaited
