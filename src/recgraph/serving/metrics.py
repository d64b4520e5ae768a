"""Prometheus metrics of one app: requests by route and status, latencies, the served version.

Each app has its own registry, so apps in one process (tests) stay apart; the
dashboard reads ``/metrics`` for its live request rates and latencies.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from recgraph.serving.loader import LoadedModel

#: Latency buckets (seconds): fine below 20 ms, where the service should live.
#: Files under /static (a mount, not a route) are counted as one route.
STATIC_PREFIX, STATIC_ROUTE = "/static/", "/static/{file}"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)


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
        #: Each label set's children, looked up once: ``labels()`` takes a lock and checks its
        #: arguments, on every request otherwise (the routes' and questions' label sets are few).
        self._observers: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._answer_counters: dict[tuple[str, bool], Counter] = {}
        self.recent_unchecked = Counter(
            "recgraph_recent_feedback_unchecked_total",
            "Answers sent without the check of what the user took since training: the store "
            "could not say (reason busy: a lock outlasted the wait; error: anything else).",
            ["question", "reason"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "recgraph_feedback_total",
            "Feedback events written, by kind.",
            ["kind"],
            registry=self.registry,
        )

    def observe(self, scope: dict, status: int, seconds: float) -> None:
        """Count one request under its route's template (never its raw path: ids are unbounded)."""
        route = scope.get("route")
        # the template without converters: /v1/users/{user}/feed, as OpenAPI names it
        name = getattr(route, "path_format", None)
        if name is None:
            name = STATIC_ROUTE if scope.get("path", "").startswith(STATIC_PREFIX) else "unmatched"
        key = (scope["method"], name, status)
        children = self._observers.get(key)
        if children is None:
            children = self._observers.setdefault(
                key, (self.requests.labels(key[0], name, str(status)), self.latency.labels(name))
            )
        children[0].inc()
        children[1].observe(seconds)

    def answered(self, question: str, cold: bool) -> None:
        """Count one answer to ``question`` (``cold``: the fallback chain answered alone)."""
        counter = self._answer_counters.get((question, cold))
        if counter is None:
            counter = self._answer_counters.setdefault(
                (question, cold), self.answers.labels(question, str(cold).lower())
            )
        counter.inc()

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
            self.metrics.observe(scope, status, time.perf_counter() - start)
