"""The HTTP API and the web page, one FastAPI app (OpenAPI docs at ``/docs``).

``create_app(settings)`` builds it. Endpoints:

- ``GET /v1/accounts/{account}/suggestions?k=``: who to follow; ``account`` is
  an external id, a DID or a handle (with or without ``@``);
- ``GET /v1/users/{user}/feed?k=``: what to read, without anything the user
  already saw, liked or disliked;
- ``GET /v1/items/{item}/similar?k=``: items like this one;
- ``POST /v1/feedback``: likes, dislikes, views and follows, written to the
  store (bearer token);
- ``POST /v1/admin/reload``: load the registry's current version now (token);
- ``GET /v1/model``: the served version, its questions and example users;
- ``GET /healthz``, ``GET /metrics`` (Prometheus text format);
- ``GET /``: the web page (``serving/static``).

Every recommendation carries a score, the retrievers it came from and a
reason. A user the model never saw gets the fallback chain (``cold_start``
says so), not an error. Bad parameters get 422 with the field at fault;
requests never see a 500 for what they sent.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

from recgraph import __version__
from recgraph.data.store import Store
from recgraph.errors import InputError, NotFittedError, RecgraphError
from recgraph.pipeline import Answer, Recommendation
from recgraph.serving.feedback import ID_PATTERN, FeedbackEvent, FeedbackStore
from recgraph.serving.loader import LoadedModel, ModelLoader, NoModelError
from recgraph.serving.registry import ModelRegistry
from recgraph.serving.settings import ServeSettings

log = logging.getLogger("recgraph.serving")
STATIC_DIR = Path(__file__).parent / "static"
#: Latency buckets (seconds): fine below 20 ms, where the service should live.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)
#: Example users shown on the page: the most active ones.
EXAMPLES = 5


# ---------------------------------------------------------------------- response models
class Result(BaseModel):
    """One recommended account or item."""

    id: str = Field(description="External id (DID, account id, item id).")
    label: str | None = Field(description="Handle of an account or title of an item, if known.")
    score: float = Field(description="Merged score: higher is better (scale depends on the merge).")
    retrievers: list[str] = Field(description="Ids of the retrievers that proposed it.")
    reason: str = Field(description='Why, for people: "followed by @a and @b", ...')
    reason_code: str = Field(
        description="Why, for programs: connections, liked, popular, new_user, model, similarity, "
        "vectors, co-occurrence."
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


class Problem(BaseModel):
    detail: Any


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Not served by this model, or unknown item."},
    503: {"model": Problem, "description": "No model version loaded yet."},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not valid JSON."},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No bearer token."},
    403: {"model": Problem, "description": "Wrong bearer token, or none configured."},
}


# ---------------------------------------------------------------------- metrics
class Metrics:
    """Prometheus metrics of one app (its own registry, so apps in one process stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recgraph_http_requests_total",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recgraph_http_request_duration_seconds",
            "Request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "recgraph_model_version",
            "Number of the served model version (v3 -> 3); 0 before one is loaded.",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "recgraph_model_info",
            "1 for the served model version.",
            ["version"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "recgraph_model_loaded_timestamp_seconds",
            "When the served version was loaded (unix seconds).",
            registry=self.registry,
        )
        self.reloads = Counter(
            "recgraph_model_reloads_total",
            "Model loads by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.answers = Counter(
            "recgraph_answers_total",
            "Answers by question and whether the user was cold (fallback chain only).",
            ["question", "cold_start"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "recgraph_feedback_total",
            "Feedback events written, by kind.",
            ["kind"],
            registry=self.registry,
        )

    def swapped(self, old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None and old.version != new.version:
            self.model_info.remove(old.version)
        self.model_info.labels(new.version).set(1)
        self.model_version.set(new.version_number)
        self.model_loaded.set(new.loaded_at)
        self.reloads.labels("success").inc()

    def failed(self, version: str, exc: BaseException) -> None:
        self.reloads.labels("failure").inc()


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (pure ASGI: cheap)."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)


# ---------------------------------------------------------------------- the app
AccountPath = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=255,
        pattern=ID_PATTERN,
        description="External id, DID or handle (a leading @ is fine).",
    ),
]
bearer = HTTPBearer(auto_error=False, description="The service's API token.")


def create_app(
    settings: ServeSettings | None = None,
    *,
    loader: ModelLoader | None = None,
    store: Store | None = None,
) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings
        :class:`ServeSettings` (default: from ``RECGRAPH_*`` variables).
    loader
        A ready :class:`ModelLoader` (default: one on ``settings.registry``,
        started with the app and stopped with it).
    store
        The store for feedback (default: ``settings.database_url``).

    Returns
    -------
    FastAPI
        The app; run it with uvicorn (``recgraph serve`` does).
    """
    settings = settings or ServeSettings()
    metrics = Metrics()

    def k_query() -> Any:
        return Query(
            None,
            ge=1,
            le=settings.max_k,
            description="How many results (default: the pipeline's k; a question's own max_k "
            "may be lower).",
        )

    own_loader = loader is None
    if loader is None:
        loader = ModelLoader(ModelRegistry(settings.registry), poll_seconds=settings.poll_seconds)
    elif loader.loaded is not None:
        metrics.swapped(None, loader.loaded)
    loader.subscribe(on_swap=metrics.swapped, on_failure=metrics.failed)
    feedback = FeedbackStore(store or Store(settings.database_url))
    token = settings.token()
    examples_cache: dict[str, dict[str, list[dict[str, str | None]]]] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if own_loader:
            loader.start()
        try:
            yield
        finally:
            if own_loader:
                loader.stop()
            if store is None:
                feedback.close()

    app = FastAPI(
        title="recgraph",
        version=__version__,
        description="Who to follow and what to read, from graph data alone. "
        "Every result says which retrievers proposed it and why.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.loader = loader
    app.state.metrics = metrics
    app.state.feedback = feedback
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # ------------------------------------------------------------------ errors
    @app.exception_handler(NoModelError)
    async def _no_model(request: Request, exc: NoModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(NotFittedError)
    async def _not_served(request: Request, exc: NotFittedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError) -> JSONResponse:
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse(
            {"detail": [{"loc": loc, "msg": exc.message, "type": "value_error"}]}, status_code=422
        )

    # ------------------------------------------------------------------ helpers
    def check_k(k: int | None, question_max: int, question_k: int) -> int:
        limit = min(settings.max_k, question_max)
        if k is None:
            return min(question_k, limit)
        if k > limit:
            raise HTTPException(
                status_code=422,
                detail=[
                    {
                        "loc": ["query", "k"],
                        "msg": f"k must be at most {limit}",
                        "type": "less_than_equal",
                        "input": k,
                    }
                ],
            )
        return k

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if token is None:
            raise HTTPException(
                status_code=403,
                detail="writes are disabled: start the service with --token or RECGRAPH_API_TOKEN",
            )
        if credentials is None:
            raise HTTPException(
                status_code=401,
                detail="this endpoint needs 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(status_code=403, detail="wrong token")

    def recent(fetch: Callable[[str], list[str]], user: str) -> list[str]:
        if not settings.exclude_recent_feedback:
            return []
        try:
            return fetch(user)
        except Exception as exc:  # the store being down must not take answers down
            log.warning("cannot read recent feedback of %r: %s", user, exc)
            return []

    def respond(question: str, query: str, answer: Answer, loaded: LoadedModel) -> JSONResponse:
        # built as plain JSON: the hot path skips re-validating its own response model
        metrics.answers.labels(question, str(answer.cold).lower()).inc()
        return JSONResponse(
            {
                "query": query,
                "resolved": answer.user,
                "known": answer.known,
                "cold_start": answer.cold,
                "model_version": loaded.version,
                "results": [_result_json(r) for r in answer.results],
            }
        )

    # ------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/index.html", include_in_schema=False)
    def page_alias() -> RedirectResponse:
        return RedirectResponse("/")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ operations
    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """Liveness and the served version (``no_model`` before the first load)."""
        loaded = loader.loaded
        return Health(
            status="ok" if loaded is not None else "no_model",
            model_version=loaded.version if loaded is not None else None,
            recgraph_version=__version__,
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["operations"],
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics_endpoint() -> PlainTextResponse:
        """Prometheus text format: request counts, latency histograms, model version."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelInfo, tags=["operations"], responses=ERRORS)
    async def model_info() -> ModelInfo:
        """The served version: questions, retrievers, training data, example users."""
        loaded = loader.current
        if loaded.version not in examples_cache:
            examples_cache.clear()
            examples_cache[loaded.version] = _examples(loaded)
        pipeline = loaded.pipeline
        return ModelInfo(
            version=loaded.version,
            created_at=loaded.manifest.get("created_at"),
            trained_at=pipeline.trained_at,
            questions={
                name: {
                    "retrievers": q.main_keys,
                    "fallback": q.chain_keys,
                    "merge": q.config.merge,
                    "k": q.config.k,
                    "max_k": min(q.config.max_k, settings.max_k),
                    "n_users": len(q.users) if q.users is not None else 0,
                    "n_targets": len(q.items) if q.items is not None else 0,
                }
                for name, q in pipeline.questions.items()
            },
            examples=examples_cache[loaded.version],
            loaded_at=loaded.loaded_at,
        )

    @app.post(
        "/v1/admin/reload",
        response_model=ReloadResult,
        tags=["operations"],
        responses={**AUTH_ERRORS, 409: {"model": Problem, "description": "Load failed."}},
        dependencies=[Depends(require_token)],
    )
    def reload() -> ReloadResult:
        """Load the registry's current version now (the poller would, within seconds)."""
        previous = loader.loaded
        try:
            fresh = loader.reload()
        except (RecgraphError, OSError, ValueError, KeyError) as exc:
            metrics.failed("?", exc)
            raise HTTPException(status_code=409, detail=f"reload failed: {exc}") from None
        return ReloadResult(
            previous=previous.version if previous else None,
            version=fresh.version,
            swapped=previous is None or previous.version != fresh.version,
        )

    # ------------------------------------------------------------------ answers
    @app.get(
        "/v1/accounts/{account}/suggestions",
        response_model=Recommendations,
        tags=["recommendations"],
        responses=ERRORS,
    )
    async def suggestions(account: AccountPath, k: int | None = k_query()) -> JSONResponse:
        """Who ``account`` should follow: accounts with reasons ("followed by @a and @b")."""
        loaded = loader.current
        pipeline = loaded.pipeline
        question = pipeline.question("who_to_follow")
        k = check_k(k, question.config.max_k, question.config.k)
        resolved = pipeline.resolve_account(account)
        exclude = recent(feedback.follows_of, resolved)
        answer = pipeline.suggest_accounts(resolved, k, exclude=exclude)
        return respond("who_to_follow", account, answer, loaded)

    @app.get(
        "/v1/users/{user}/feed",
        response_model=Recommendations,
        tags=["recommendations"],
        responses=ERRORS,
    )
    async def feed(user: AccountPath, k: int | None = k_query()) -> JSONResponse:
        """What ``user`` should read next, without what they saw, liked or disliked."""
        loaded = loader.current
        pipeline = loaded.pipeline
        question = pipeline.question("feed")
        k = check_k(k, question.config.max_k, question.config.k)
        resolved = pipeline.resolve_account(user)
        exclude = recent(feedback.items_of, resolved)
        answer = pipeline.feed(resolved, k, exclude=exclude)
        return respond("feed", user, answer, loaded)

    @app.get(
        "/v1/items/{item}/similar",
        response_model=Recommendations,
        tags=["recommendations"],
        responses=ERRORS,
    )
    async def similar(
        item: Annotated[
            str, PathParam(min_length=1, max_length=255, pattern=ID_PATTERN, description="Item id.")
        ],
        k: int | None = k_query(),
    ) -> JSONResponse:
        """Items like ``item`` (404 for an item the model never saw)."""
        loaded = loader.current
        pipeline = loaded.pipeline
        pipeline.question("feed")
        cfg = pipeline.config.similar
        k = check_k(k, cfg.max_k, cfg.k)
        try:
            results = pipeline.similar_items(item, k)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"unknown item {item!r}") from None
        return JSONResponse(
            {
                "query": item,
                "resolved": item,
                "known": True,
                "cold_start": False,
                "model_version": loaded.version,
                "results": [_result_json(r) for r in results],
            }
        )

    @app.post(
        "/v1/feedback",
        response_model=FeedbackWritten,
        tags=["feedback"],
        responses={**AUTH_ERRORS, **BODY_ERRORS},
        dependencies=[Depends(require_token)],
    )
    def post_feedback(event: Annotated[FeedbackEvent, Body()]) -> FeedbackWritten:
        """Record a like, dislike or view of an item, or a follow of an account.

        Written to the store at once; the user's next answers leave it out.
        """
        written = feedback.write([event])
        metrics.feedback.labels(event.kind).inc()
        return FeedbackWritten(written=written, user=event.user)

    return app


def _result_json(rec: Recommendation) -> dict[str, Any]:
    """A :class:`Result` as JSON (scores are finite: JSON has no infinity)."""
    out = rec.to_dict()
    out["score"] = rec.score if math.isfinite(rec.score) else 0.0
    return out


def _examples(loaded: LoadedModel) -> dict[str, list[dict[str, str | None]]]:
    """The most active users of each question, for the page to offer."""
    pipeline = loaded.pipeline
    out: dict[str, list[dict[str, str | None]]] = {}
    for name, question in pipeline.questions.items():
        if question.history is None or not question.history.n_users:
            continue
        counts = question.history.counts
        top = np.argsort(-counts, kind="stable")[: min(EXAMPLES, len(counts))]
        out[name] = [
            {"id": str(uid), "handle": pipeline.names.handle(str(uid))}
            for uid in question.users.external(top)
        ]
    return out


def app_from_env() -> FastAPI:
    """An app from ``RECGRAPH_*`` variables (``uvicorn --factory recgraph.serving.app:app_from_env``)."""
    return create_app(ServeSettings())


def run(settings: ServeSettings, *, log_level: str = "info", workers: int = 1) -> None:
    """Serve until interrupted (what ``recgraph serve`` and ``recgraph quickstart`` run)."""
    import os

    import uvicorn

    if workers > 1:
        # each worker process builds its own app from the environment
        os.environ["RECGRAPH_REGISTRY"] = settings.registry
        os.environ["RECGRAPH_DATABASE_URL"] = settings.database_url
        os.environ["RECGRAPH_POLL_SECONDS"] = str(settings.poll_seconds)
        os.environ["RECGRAPH_MAX_K"] = str(settings.max_k)
        if settings.token():
            os.environ["RECGRAPH_API_TOKEN"] = settings.token() or ""
        uvicorn.run(
            "recgraph.serving.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=log_level,
        )
        return
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
