"""The answers' JSON encoder writes the standard library's bytes, whatever the results hold."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from recgraph.pipeline import Recommendation
from recgraph.serving import handlers
from recgraph.serving.handlers import AnswerResponse, result_json

SCORES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e-5, 1e16, 9999999999999998.0, 5e-324, 0.1 + 0.2]),
)
TEXT = st.text(max_size=12)  # control characters, quotes, backslashes, astral planes


def body(results: list[Recommendation]) -> dict:
    return {
        "query": "q",
        "resolved": "q",
        "known": True,
        "cold_start": False,
        "model_version": "v1",
        "results": [result_json(r) for r in results],
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.builds(
            Recommendation,
            id=TEXT,
            score=SCORES,
            retrievers=st.lists(TEXT, max_size=3).map(tuple),
            reason=TEXT,
            reason_code=TEXT,
            via=st.lists(TEXT, max_size=3).map(tuple),
            fallback=st.booleans(),
            label=st.none() | TEXT,
        ),
        max_size=6,
    )
)
def test_answers_encode_to_the_standard_librarys_bytes(results):
    content = body(results)
    try:
        expected = JSONResponse(content).body
    except (UnicodeEncodeError, ValueError):  # a lone surrogate: refused both ways
        with pytest.raises((UnicodeEncodeError, ValueError)):
            AnswerResponse(content)
        return
    assert AnswerResponse(content).body == expected
    assert all(math.isfinite(r["score"]) for r in json.loads(expected)["results"])


def test_scores_orjson_spells_otherwise_go_to_the_standard_library(monkeypatch):
    used = []
    real = handlers.orjson.dumps
    monkeypatch.setattr(handlers.orjson, "dumps", lambda content: used.append(1) or real(content))
    small = Recommendation(id="a", score=1e-05, retrievers=("x",), reason="r", reason_code="c")
    plain = Recommendation(id="a", score=0.25, retrievers=("x",), reason="r", reason_code="c")
    assert AnswerResponse(body([small])).body.count(b'"score":1e-05') == 1
    assert used == []
    assert AnswerResponse(body([plain])).body.count(b'"score":0.25') == 1
    assert used == [1]
