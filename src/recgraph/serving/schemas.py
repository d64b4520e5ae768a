"""What the API answers, as pydantic models: they make the OpenAPI document exact.

Hot paths build the same shapes as plain JSON (see ``handlers.py``) and skip
re-validating their own output; these classes are the contract both follow.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Result(BaseModel):
    """One recommended account or item."""

    id: str = Field(description="External id (DID, account id, item id).")
    label: str | None = Field(description="Handle of an account or title of an item, if known.")
    score: float = Field(description="Merged score: higher is better (scale depends on the merge).")
    retrievers: list[str] = Field(description="Ids of the retrievers that proposed it.")
    reason: str = Field(description='Why, for people: "followed by @a and @b", ...')
    reason_code: str = Field(
        description="Why, for programs: connections, liked, popular, new_user, model, similarity, "
        "vectors, co-occurrence; from the ranker: follows_you, similar_users."
    )
    via: list[str] = Field(description="External ids the reason names.")
    fallback: bool = Field(description="Supplied by the fallback chain.")


class Recommendations(BaseModel):
    """Results for one account, user or item."""

    query: str = Field(description="What was asked for, as given.")
    resolved: str = Field(description="The external id it resolved to.")
    known: bool = Field(description="Whether the model was trained with it.")
    cold_start: bool = Field(description="Served by the fallback chain alone.")
    model_version: str
    results: list[Result]


class FeedbackWritten(BaseModel):
    written: dict[str, int]
    user: str


class ReloadResult(BaseModel):
    previous: str | None
    version: str
    swapped: bool


class Health(BaseModel):
    status: str = Field(description="ok, or no_model before a version is loaded.")
    model_version: str | None
    recgraph_version: str


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    version: str
    created_at: str | None
    trained_at: str | None
    questions: dict[str, dict[str, Any]]
    examples: dict[str, list[dict[str, str | None]]]
    loaded_at: float


class StoreStats(BaseModel):
    """What the store holds (``/v1/stats/store``)."""

    counts: dict[str, int] = Field(description="Rows per table (follows: active ones).")
    activity: dict[str, dict[str, Any]] = Field(
        description="Rows over time per table: bucket width in seconds and [start, count] pairs."
    )
    degrees: dict[str, dict[str, Any]] = Field(
        description="Degree distributions in powers-of-two bins: followers, following, "
        "item popularity, user activity."
    )
    computed_at: float = Field(description="When these figures were counted (unix seconds).")


class EvaluationStats(BaseModel):
    """The served version's evaluation, from its registry manifest (``/v1/stats/evaluation``)."""

    model_config = ConfigDict(protected_namespaces=())

    version: str
    curves: dict[str, dict[str, dict[str, list[list[float]]]]] = Field(
        description="question -> retriever (or pipeline) -> metric -> [k, value] pairs, k rising."
    )
    other: dict[str, Any] = Field(description="Manifest metrics that are not metric@k.")
    data: dict[str, Any] | None = Field(description="What the version was trained on.")
    created_at: str | None
    notes: str | None


class Problem(BaseModel):
    detail: Any


class ValidationProblem(BaseModel):
    detail: list[dict[str, Any]] = Field(
        description="One entry per fault: loc (where), msg (what), type."
    )


#: Documented answers, shared by the route table in ``app.py``.
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Not served by this model, or an unknown item."},
}
NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "No model version loaded yet."},
}
STORE_BUSY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Problem,
        "description": "The store is busy (locked by another writer past the busy timeout) or "
        "unreachable; retry after the Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    },
}
BODY: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "The body is larger than the service accepts."},
    422: {
        "model": ValidationProblem,
        "description": "The body is not valid JSON (numbers must be finite: no NaN, Infinity or "
        "1e999), or a field is at fault.",
    },
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No bearer token."},
    403: {"model": Problem, "description": "Wrong bearer token, or none configured."},
}
