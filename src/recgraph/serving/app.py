"""The HTTP API, the web page and the dashboard: one FastAPI app (OpenAPI docs at ``/docs``).

``create_app(settings)`` builds it from the route table :data:`ROUTES`, the
one place that lists every path, in the way Gorse lists its routes. The
handlers are methods of :class:`~recgraph.serving.handlers.Service` (the API)
and :class:`~recgraph.serving.pages.Pages` (the HTML); ``guards.py`` holds the
token check, body limits and error answers; ``server.py`` runs the app.

A user the model never saw gets the fallback chain (``cold_start`` says so),
not an error. Bad parameters get 422 with the field at fault; requests never
see a 500 for what they sent.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from recgraph import __version__
from recgraph.data.sql import is_memory, memory_per_thread
from recgraph.data.store import Store
from recgraph.errors import ConfigError
from recgraph.serving.feedback import FeedbackStore, catch_up_overlay
from recgraph.serving.guards import (
    ON_THE_LOOP,
    AnswerPlace,
    AnswerRoute,
    GuardedRoute,
    ServiceRoute,
    bearer,
    install_error_handlers,
)
from recgraph.serving.handlers import Service
from recgraph.serving.loader import ModelLoader, Periodic
from recgraph.serving.metrics import Metrics, MetricsMiddleware
from recgraph.serving.pages import Pages, mount_static
from recgraph.serving.registry import ModelRegistry
from recgraph.serving.schemas import (
    AUTH,
    BODY,
    NO_MODEL,
    NOT_FOUND,
    STORE_BUSY,
    EvaluationStats,
    FeedbackWritten,
    Health,
    ModelInfo,
    Problem,
    Recommendations,
    ReloadResult,
    StoreStats,
)
from recgraph.settings import ENV_PREFIX, Settings, load_settings

DESCRIPTION = """\
Who to follow and what to read, from graph data alone. Every result says which
retrievers proposed it and why.

**Ids in paths** are external ids (DIDs, handles, item ids) with any character
but control characters. Percent-encode what a URL reserves (`?` as `%3F`,
`#` as `%23`, `%` as `%25`); a `/` may be sent as `%2F` or as it is.

**Feedback** may come from a new user, but the item (or the followed account)
must already be in the store: an unknown one is answered 404, naming it, and
nothing is written. Items enter the store through `recgraph import items` /
`recgraph import interactions` or the Telegram bot, accounts through
`recgraph import edges` / `recgraph import accounts` or the Bluesky crawler.

**Errors**: 422 for a body that is not strict JSON (finite numbers only: no
`NaN`, `Infinity` or `1e999`) or a field at fault; 413 for a body over the
service's limit, refused while it streams in; 401 before the body is read when
a write has no token; 503 with `Retry-After` before a model is loaded or while
the store is locked by another writer past the busy timeout.
"""


@dataclass(frozen=True)
class Endpoint:
    """One route: method, path, handler and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Callable[..., Any]
    response_model: Any = None
    tags: tuple[str, ...] = ()
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    #: Needs the bearer token, checked before the body is read.
    guarded: bool = False
    in_schema: bool = True
    response_class: type = JSONResponse
    #: An answer (asked hundreds of times a second): matched before the other routes, and
    #: its clean requests skip FastAPI's parameter solving (:class:`AnswerRoute`).
    answer: bool = False


_OPS, _RECS, _DASH = ("operations",), ("recommendations",), ("dashboard",)
_UNKNOWN_TARGET = {
    404: {
        "model": Problem,
        "description": "The item or followed account is not in the store (import or collect it "
        "first); nothing was written.",
    }
}
_RELOAD_FAILED = {409: {"model": Problem, "description": "Load failed."}}
_PROMETHEUS = {200: {"content": {CONTENT_TYPE_LATEST: {}}}}

#: Every route of the service, in one table.
ROUTES: tuple[Endpoint, ...] = (
    # pages (not in the OpenAPI document)
    Endpoint("GET", "/", Pages.index, in_schema=False),
    Endpoint("GET", "/index.html", Pages.index_alias, in_schema=False),
    Endpoint("GET", "/dashboard", Pages.dashboard, in_schema=False),
    Endpoint("GET", "/favicon.ico", Pages.favicon, in_schema=False),
    Endpoint("GET", "/docs", Pages.swagger, in_schema=False),
    Endpoint("GET", "/docs/oauth2-redirect", Pages.swagger_redirect, in_schema=False),
    # operations
    Endpoint("GET", "/healthz", Service.healthz, Health, _OPS),
    Endpoint(
        "GET", "/metrics", Service.metrics_text, None, _OPS, _PROMETHEUS,
        response_class=PlainTextResponse,
    ),
    Endpoint("GET", "/v1/model", Service.model_info, ModelInfo, _OPS, {**NOT_FOUND, **NO_MODEL}),
    Endpoint(
        "POST", "/v1/admin/reload", Service.reload, ReloadResult, _OPS,
        {**AUTH, **_RELOAD_FAILED}, guarded=True,
    ),
    # answers
    Endpoint(
        "GET", "/v1/accounts/{account:path}/suggestions", Service.suggestions, Recommendations,
        _RECS, {**NOT_FOUND, **NO_MODEL}, answer=True,
    ),
    Endpoint(
        "GET", "/v1/users/{user:path}/feed", Service.feed, Recommendations, _RECS,
        {**NOT_FOUND, **NO_MODEL}, answer=True,
    ),
    Endpoint(
        "GET", "/v1/items/{item:path}/similar", Service.similar, Recommendations, _RECS,
        {**NOT_FOUND, **NO_MODEL}, answer=True,
    ),
    # feedback
    Endpoint(
        "POST", "/v1/feedback", Service.post_feedback, FeedbackWritten, ("feedback",),
        {**AUTH, **BODY, **_UNKNOWN_TARGET, **STORE_BUSY}, guarded=True,
    ),
    # dashboard data
    Endpoint("GET", "/v1/stats/store", Service.store_stats, StoreStats, _DASH, STORE_BUSY),
    Endpoint(
        "GET", "/v1/stats/evaluation", Service.evaluation_stats, EvaluationStats, _DASH, NO_MODEL,
    ),
)  # fmt: skip


log = logging.getLogger(__name__)
#: Threads of one server process that compute answers by default (the ``answer_threads``
#: setting; :class:`AnswerRoute` hands them the plain ``def`` answers): as many as FastAPI's
#: shared pool has (AnyIO's 40 tokens), but reached by ``loop.run_in_executor``, without
#: AnyIO's capacity limiter, cancel scope and library sniffing: measured on uvloop, 18-37 us
#: of CPU a hop against 59-100 us. Fewer threads were tried (4 a process, and 1): on this
#: shared machine the server then got a smaller share of the cores and its queue, p99 and
#: all, grew for no CPU saved. ``0`` (no hop at all) saves CPU, and wins on an idle machine,
#: but collapses on a busy one: see ``answer_threads``.
ANSWER_THREADS = Settings.model_fields["answer_threads"].default
#: Seconds each of an answer's reads of a SQLite store waits for a lock, with
#: ``answer_threads = 0``. Not ``settings.busy_timeout`` (15 s by default, what a writer may
#: wait): the read runs on the event loop, where every other request of the process waits with
#: it, so it is kept small. Past it the read gives up and the answer goes out without the check
#: of what the user took since training (counted in
#: ``recgraph_recent_feedback_unchecked_total``). A reader in WAL mode does not wait for
#: writers: only a checkpoint's or a recovery's brief lock, or a store in rollback-journal mode
#: with a writer committing, makes it wait at all. Each read has its own wait, and the first
#: that gives up ends the check: a feed answer stalls the loop at most this long (0.25 s) for
#: a lock it does not get, a suggestions answer twice this (0.5 s: before its lookup it reads
#: the graph's direction from the store's meta, until the first follow is stored). Reads that
#: wait and then get their lock add up (an answer checked again reads again, up to
#: ``CHECK_ROUNDS`` rounds and the whole-list read after them).
ANSWER_READ_BUSY_TIMEOUT = 0.25


def answer_threads(settings: Settings, store: Store | None = None) -> int:
    """How many threads compute a process's answers (``settings.answer_threads``), once
    :func:`check_answer_threads` lets it."""
    check_answer_threads(settings, store)
    return settings.answer_threads


def _backend(settings: Settings, store: Store | None) -> str:
    if store is not None:
        return store.dialect
    return sa.make_url(settings.database_url).get_backend_name()


def answer_executor(threads: int) -> ThreadPoolExecutor | AnswerPlace:
    """Where a process computes its plain ``def`` answers: a pool of ``threads``, or
    :data:`~recgraph.serving.guards.ON_THE_LOOP` for ``0``."""
    if threads == 0:
        return ON_THE_LOOP
    return ThreadPoolExecutor(threads, thread_name_prefix="recgraph-answer")


def check_answer_threads(settings: Settings, store: Store | None) -> None:
    """Refuse ``answer_threads = 0`` unless the store is SQLite: on the event loop an answer's
    store read would wait a network round trip (PostgreSQL, MariaDB) with every other request
    of the process stalled behind it."""
    if settings.answer_threads != 0:
        return
    backend = _backend(settings, store)
    where = store.safe_url if store is not None else settings.safe_database_url
    if backend != "sqlite":
        raise ConfigError(
            f"{ENV_PREFIX}ANSWER_THREADS=0 (answers computed on the event loop) needs a local "
            f"SQLite store; {where} is {backend}: give it threads (the default is "
            f"{ANSWER_THREADS})"
        )
    url = store.url if store is not None else settings.database_url
    if memory_per_thread(url):
        raise ConfigError(
            f"{ENV_PREFIX}ANSWER_THREADS=0 (answers computed on the event loop) cannot read "
            f"the in-memory store {where}: SQLAlchemy gives each thread a database of its own, "
            f"so answers on the loop would not see what the threads write; use a SQLite file, "
            f"a shared-cache URL (sqlite:///file:NAME?mode=memory&cache=shared&uri=true) or "
            f"threads (the default is {ANSWER_THREADS})"
        )


def answer_reads(feedback: FeedbackStore, threads: int) -> FeedbackStore:
    """The store an answer reads the user's recent feedback from.

    Answers on the event loop (``threads == 0``, a SQLite file) read through an
    engine of their own on the same file, so an answer never waits for a pooled
    connection while feedback writes hold every one of the writers' pool (30 s
    of a frozen loop). The loop uses one of its connections at a time; answers
    that come before the lifespan starts, or past a route's fast path, run in
    AnyIO's threads and use it too (a pool, not one connection, so they never
    queue for it). Its connections are read-only (``PRAGMA query_only``), so
    they never take the write lock; in WAL mode a reader does not wait for
    writers, and a short busy timeout (:data:`ANSWER_READ_BUSY_TIMEOUT`) bounds
    what is left. An in-memory store has no file for a second engine to open:
    SQLAlchemy keeps one connection per thread (``SingletonThreadPool``), and a
    private one (``sqlite://``) is a database per thread, refused with
    ``threads == 0`` (:func:`check_answer_threads`); a shared-cache one is one
    database for all of the process's connections, read through the writers'
    store (its pool is per thread: there is no pooled connection to wait for).
    With threads the answers share the writers' store, as before.
    """
    store = feedback.store
    if threads != 0 or store.dialect != "sqlite" or is_memory(store.url):
        return feedback
    reader = Store(store.url, create=False, busy_timeout=ANSWER_READ_BUSY_TIMEOUT)

    @sa.event.listens_for(reader.engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    reader.engine.dispose()  # the schema check's connection was opened before the pragma
    return FeedbackStore(reader)


class OverlayRefresher:
    """The follows and likes stored since the last look go into the walks' overlay: once when
    a version is loaded (since its training), then every ``seconds``.

    With several server processes a follow POSTed to one reaches only that
    process's overlay at once; the others (and the crawler's writes) are read
    from the store here. Each look starts ``MARGIN`` seconds before the
    previous one began, so a write that committed late is not missed; the
    overlay skips what it holds already.
    """

    MARGIN = 60

    def __init__(self, loader: ModelLoader, store: Store, seconds: float) -> None:
        self.loader, self.store = loader, store
        self.periodic = Periodic("recgraph-overlay-refresh", seconds, self._tick_logged)
        self._version: str | None = None
        self._since: int | None = None
        self._lock = threading.Lock()  # one look at a time

    def tick(self) -> int:
        """One look; returns the edges added. A new version is read since its training."""
        with self._lock:
            loaded = self.loader.loaded
            if loaded is None:
                return 0
            if loaded.version != self._version:
                self._version, self._since = loaded.version, None
            began = int(time.time())
            added = catch_up_overlay(loaded.pipeline, self.store, since=self._since)
            self._since = began - self.MARGIN
            return added

    def tick_soon(self) -> None:
        """One look in a thread of its own (a swap must not wait for a table scan)."""
        threading.Thread(
            target=self._tick_logged, name="recgraph-overlay-catch-up", daemon=True
        ).start()

    def _tick_logged(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # the overlay is a bonus: never take serving down
            log.warning("cannot refresh the walks' overlay: %s", exc)


def create_app(
    settings: Settings | None = None,
    *,
    loader: ModelLoader | None = None,
    store: Store | None = None,
) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings
        The process settings (default: :func:`~recgraph.settings.load_settings`).
    loader
        A ready :class:`ModelLoader` (default: one on ``settings.registry``,
        started with the app and stopped with it).
    store
        The store for feedback and the dashboard (default: ``settings.database_url``).

    Returns
    -------
    FastAPI
        The app; run it with :func:`recgraph.serving.server.run` (``recgraph serve`` does).
    """
    settings = settings or load_settings()
    threads = answer_threads(settings, store)
    metrics = Metrics()
    own_loader = loader is None
    if loader is None:
        loader = ModelLoader(ModelRegistry(settings.registry), poll_seconds=settings.poll_seconds)
    elif loader.loaded is not None:
        metrics.swapped(None, loader.loaded)
    loader.subscribe(on_swap=metrics.swapped, on_failure=metrics.failed)
    feedback = FeedbackStore(
        store or Store(settings.database_url, busy_timeout=settings.busy_timeout)
    )
    reads = feedback

    def close_stores() -> None:
        if reads is not feedback:
            reads.close()
        if store is None:
            feedback.close()

    try:
        reads = answer_reads(feedback, threads)
        app = _build_app(settings, loader, own_loader, metrics, feedback, reads, close_stores)
    except BaseException:
        close_stores()  # nothing will run the lifespan that closes them
        raise
    return app


def _build_app(
    settings: Settings,
    loader: ModelLoader,
    own_loader: bool,
    metrics: Metrics,
    feedback: FeedbackStore,
    reads: FeedbackStore,
    close_stores: Callable[[], None],
) -> FastAPI:
    """The app of :func:`create_app` on its stores (closed by ``close_stores`` when its
    lifespan ends, or when it fails to start)."""
    threads = settings.answer_threads
    service = Service(settings, loader, feedback, metrics, reads=reads)
    refresher = OverlayRefresher(loader, feedback.store, settings.overlay_refresh_seconds)
    loader.subscribe(on_swap=lambda old, new: refresher.tick_soon())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            # a pool per run of the lifespan: an app started again (a second TestClient, a
            # host restarting it) gets fresh threads, not the stopped ones
            app.state.answer_executor = answer_executor(threads)
            if own_loader:
                loader.start()
            refresher.periodic.start()
            yield
        finally:
            # also when the startup above failed: the threads and stores are let go
            refresher.periodic.stop()
            executor, app.state.answer_executor = app.state.answer_executor, None
            if isinstance(executor, ThreadPoolExecutor):
                # off the event loop: an answer still waiting on the store must not freeze it
                await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            if own_loader:
                loader.stop()
            close_stores()

    app = FastAPI(
        title="recgraph",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by Pages, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.loader = loader
    app.state.metrics = metrics
    app.state.feedback = feedback
    app.state.answer_threads = threads
    app.state.answer_reads = reads
    app.state.service = service
    app.state.overlay_refresher = refresher
    app.state.answer_executor = None  # until the lifespan starts: AnyIO's pool answers
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)
    register(app, ROUTES, [service, Pages(app.title)])
    mount_static(app)
    return app


def register(app: FastAPI, routes: tuple[Endpoint, ...], owners: list[Any]) -> None:
    """Add ``routes`` to ``app``, each handler bound to the one of ``owners`` that defines it."""
    for route in routes:
        owner = next(
            o for o in owners if getattr(type(o), route.handler.__name__, None) is route.handler
        )
        endpoint = getattr(owner, route.handler.__name__)
        if isinstance(owner, Service) and "k" in inspect.signature(endpoint).parameters:
            endpoint = with_defaults(endpoint, k=owner.k_param())
        app.router.add_api_route(
            route.path,
            endpoint,
            methods=[route.method],
            response_model=route.response_model,
            tags=list(route.tags),
            responses=dict(route.responses),
            include_in_schema=route.in_schema,
            response_class=route.response_class,
            dependencies=[Depends(bearer)] if route.guarded else None,
            route_class_override=route_class(route),
        )
    match_answers_first(app, [r.path for r in routes if r.answer])


def route_class(route: Endpoint) -> type[ServiceRoute]:
    """The token check for guarded routes, the fast parameter path for answers."""
    if route.guarded:
        return GuardedRoute
    return AnswerRoute if route.answer else ServiceRoute


def match_answers_first(app: FastAPI, paths: list[str]) -> None:
    """Try the routes at ``paths`` first when matching a request; the OpenAPI document keeps
    the route table's order.

    Starlette tries routes in order, each a regular expression and some
    bookkeeping: an answer listed eleventh paid ten failed matches on every
    request. The answers' paths overlap no other route's, so the order
    changes which route is tried first, never which one matches.
    """
    table = list(app.router.routes)
    position = {id(r): i for i, r in enumerate(table)}
    app.router.routes[:] = sorted(table, key=lambda r: getattr(r, "path", None) not in paths)
    build_openapi = app.openapi

    def openapi_in_table_order() -> dict[str, Any]:
        if app.openapi_schema is None:
            # built once, synchronously: no request is matched meanwhile
            served = list(app.router.routes)
            app.router.routes[:] = sorted(served, key=lambda r: position.get(id(r), len(table)))
            try:
                build_openapi()
            finally:
                app.router.routes[:] = served
        return app.openapi_schema

    app.openapi = openapi_in_table_order  # type: ignore[method-assign]


def with_defaults(endpoint: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
    """``endpoint`` with some parameters' defaults replaced (what FastAPI reads them from).

    Used for ``k``, whose bound comes from the settings of this app.
    """
    if inspect.iscoroutinefunction(endpoint):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await endpoint(*args, **kwargs)
    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return endpoint(*args, **kwargs)

    functools.update_wrapper(wrapper, endpoint)
    signature = inspect.signature(endpoint)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=defaults[p.name]) if p.name in defaults else p
            for p in signature.parameters.values()
        ]
    )
    return wrapper


def app_from_env() -> FastAPI:
    """An app from ``RECGRAPH_*`` variables (``uvicorn --factory recgraph.serving.app:app_from_env``)."""
    return create_app(load_settings())
